//! Processed ids past `dedup.retention` are deleted, oldest first and in chunks, by statements that
//! find them through the index on `processed_at`; the running service does it on its own.

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

/// Adds ids `<prefix>-<from>` ..= `<prefix>-<to>`, processed `age` ago (one second apart, the
/// first oldest).
async fn add_ids(pool: &PgPool, prefix: &str, (from, to): (i32, i32), age: Duration) {
    sqlx::query(
        "INSERT INTO processed_request (request_id, third_party_status, processed_at)
         SELECT $1 || '-' || n, 200, now() - make_interval(secs => $4) + make_interval(secs => n - $2)
         FROM generate_series($2, $3) AS n",
    )
    .bind(prefix)
    .bind(from)
    .bind(to)
    .bind(age.as_secs_f64())
    .execute(pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn processed_ids_past_their_retention_are_deleted_oldest_first_in_chunks() {
    let pool = migrated_database().await;
    add_ids(&pool, "old", (1, 23), 2 * HOUR).await;
    add_ids(&pool, "young", (1, 5), Duration::from_secs(60)).await;

    let mut chunks = Vec::new();
    let mut first_left = Vec::new();
    while let n @ 1.. = delete_expired(&pool, HOUR, 7).await.unwrap() {
        chunks.push(n);
        let oldest: String =
            sqlx::query_scalar("SELECT request_id FROM processed_request ORDER BY processed_at LIMIT 1")
                .fetch_one(&pool)
                .await
                .unwrap();
        first_left.push(oldest);
    }

    assert_eq!(chunks, [7, 7, 7, 2]);
    assert_eq!(first_left, ["old-8", "old-15", "old-22", "young-1"], "oldest first");
    let left: i64 =
        sqlx::query_scalar("SELECT count(*) FROM processed_request").fetch_one(&pool).await.unwrap();
    assert_eq!(left, 5, "the young ids stay");
}

#[tokio::test]
async fn deleting_expired_ids_reads_the_age_index_not_the_table() {
    let pool = migrated_database().await;
    add_ids(&pool, "young", (1, 50_000), Duration::from_secs(60)).await;
    add_ids(&pool, "old", (1, 1_000), 2 * HOUR).await;
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
    // One sequential scan would read 51,000 rows; eleven statements scanning, 500,000.
    assert!(scans.seq_rows_read < 10_000, "{} rows read by sequential scans", scans.seq_rows_read);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_running_service_deletes_processed_ids_after_the_retention() {
    let two = spawn_two(|s| s.dedup.retention = Duration::from_secs(1)).await;
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
    wait_until(Duration::from_secs(15), "the id deleted after the 1 s retention", || async {
        !two.processed(id).await
    })
    .await;
    two.stop().await;
}
