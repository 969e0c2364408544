//! Processed ids past `dedup.retention` are deleted in chunks, each statement looking only at the
//! smallest ids (Snowflake ids sort by time), so it reads the same few rows on any table size; the
//! running service does it on its own.

use crate::helpers::{mount_token, spawn_two, wait_calls, wait_until};
use cruncan_db::{create_test_database, local_test_settings, table_scans};
use sqlx::PgPool;
use std::time::Duration;
use two::retention::delete_expired;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

const HOUR: Duration = Duration::from_secs(3600);

async fn migrated_database() -> PgPool {
    let pool = create_test_database(&local_test_settings().unwrap()).await.unwrap().lazy_pool();
    two::MIGRATOR.run(&pool).await.unwrap();
    pool
}

/// Adds ids `from` ..= `to` (20-digit, zero-padded, as Snowflake ids are), processed `age` ago.
async fn add_ids(pool: &PgPool, (from, to): (i64, i64), age: Duration) {
    sqlx::query(
        "INSERT INTO processed_request (request_id, third_party_status, processed_at)
         SELECT lpad(n::text, 20, '0'), 200, now() - make_interval(secs => $3)
         FROM generate_series($1::bigint, $2::bigint) AS n",
    )
    .bind(from)
    .bind(to)
    .bind(age.as_secs_f64())
    .execute(pool)
    .await
    .unwrap();
}

async fn ids_left(pool: &PgPool) -> Vec<i64> {
    sqlx::query_scalar("SELECT request_id::bigint FROM processed_request ORDER BY request_id")
        .fetch_all(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn expired_ids_are_deleted_in_chunks_of_the_smallest_and_young_ones_stay() {
    let pool = migrated_database().await;
    // Ids 1-23 expired, except id 10, processed late (a redrive); ids 24-30 young.
    add_ids(&pool, (1, 9), 2 * HOUR).await;
    add_ids(&pool, (10, 10), Duration::from_secs(60)).await;
    add_ids(&pool, (11, 23), 2 * HOUR).await;
    add_ids(&pool, (24, 30), Duration::from_secs(60)).await;

    // Seven smallest at a time: 1-7 all go; 8-14 without 10; 10 and 15-20 without 10; 10 and
    // 21-26: 21-23; then only young ones.
    let mut chunks = Vec::new();
    while let n @ 1.. = delete_expired(&pool, HOUR, 7).await.unwrap() {
        chunks.push(n);
    }

    assert_eq!(chunks, [7, 6, 6, 3]);
    assert_eq!(ids_left(&pool).await, [10, 24, 25, 26, 27, 28, 29, 30], "young ids stay, wherever they are");
}

#[tokio::test]
async fn deleting_expired_ids_walks_the_primary_key_not_the_table() {
    let pool = migrated_database().await;
    add_ids(&pool, (1, 1_000), 2 * HOUR).await;
    add_ids(&pool, (1_001, 51_000), Duration::from_secs(60)).await;
    // The deleting connection alone, closed before the statistics are read (a backend reports
    // them when it ends).
    let deleter = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_with((*pool.connect_options()).clone())
        .await
        .unwrap();
    let mut deleted = 0;
    while let n @ 1.. = delete_expired(&deleter, HOUR, 100).await.unwrap() {
        deleted += n;
    }
    deleter.close().await;

    assert_eq!(deleted, 1_000);
    let scans = table_scans(&pool, "processed_request", 11, Duration::from_secs(15)).await.unwrap();
    assert!(scans.index_scans >= 11, "the statistics came in: {} index scans", scans.index_scans);
    // One sequential scan reads 51,000 rows; eleven statements scanning, over 500,000.
    assert!(scans.seq_rows_read < 10_000, "{} rows read by sequential scans", scans.seq_rows_read);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_running_service_deletes_processed_ids_after_the_retention() {
    // 3 s: long enough to see the id recorded on a busy machine, short enough to see it go.
    let two = spawn_two(|s| s.dedup.retention = Duration::from_secs(3)).await;
    mount_token(&two.token_server, "tok-r", 1).await;
    Mock::given(method("POST"))
        .and(path("/three"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&two.three)
        .await;

    let id = "00000000000000000042";
    two.publish_event(id).await;
    wait_calls(&two.three, "/three", 1, Duration::from_secs(20)).await;
    wait_until(Duration::from_secs(10), "the id recorded as processed", || two.processed(id)).await;
    wait_until(Duration::from_secs(20), "the id deleted after the 3 s retention", || async {
        !two.processed(id).await
    })
    .await;
    two.stop().await;
}
