//! Processed ids past `dedup.retention` are deleted by a walk over the primary key below the first
//! id of the cutoff time (Snowflake ids sort by time): it steps over ids processed late, never
//! reads the young part of the table, and the running service does it on its own.

use crate::helpers::{mount_token, spawn_two, wait_calls, wait_until};
use cruncan_db::{create_test_database, local_test_settings, table_scans};
use sqlx::PgPool;
use std::time::Duration;
use two::retention::{delete_expired, first_id_since};
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

const HOUR: Duration = Duration::from_secs(3600);

async fn migrated_database() -> PgPool {
    let pool = create_test_database(&local_test_settings().unwrap()).await.unwrap().lazy_pool();
    two::MIGRATOR.run(&pool).await.unwrap();
    pool
}

/// Adds ids `from` ..= `to` (20 digits, zero-padded, as Snowflake ids are written), processed
/// `age` ago. Small numbers are ids made in 2010, far below any cutoff.
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

/// Walks windows of `window` ids from the smallest until the walk's end; the deletions of each.
async fn walk(pool: &PgPool, window: i64) -> Vec<u64> {
    let (below, mut after, mut deleted) = (first_id_since(HOUR).unwrap(), String::new(), Vec::new());
    loop {
        let w = delete_expired(pool, HOUR, &after, &below, window).await.unwrap();
        match w.last {
            Some(last) => {
                deleted.push(w.deleted);
                after = last;
            }
            None => return deleted,
        }
    }
}

#[tokio::test]
async fn the_walk_deletes_expired_ids_and_steps_over_ids_processed_late() {
    let pool = migrated_database().await;
    // Ids 1-7 and 10 were processed late (young), the rest of 1-23 long ago; 24-26 late too.
    add_ids(&pool, (1, 7), Duration::from_secs(60)).await;
    add_ids(&pool, (8, 9), 2 * HOUR).await;
    add_ids(&pool, (10, 10), Duration::from_secs(60)).await;
    add_ids(&pool, (11, 23), 2 * HOUR).await;
    add_ids(&pool, (24, 26), Duration::from_secs(60)).await;

    // Windows of seven: 1-7 (all young: nothing, but the walk goes on), 8-14 (6), 15-21 (7),
    // 22-26 (2), then the end.
    assert_eq!(walk(&pool, 7).await, [0, 6, 7, 2]);
    assert_eq!(ids_left(&pool).await, [1, 2, 3, 4, 5, 6, 7, 10, 24, 25, 26], "young ids stay");
    assert_eq!(walk(&pool, 7).await, [0, 0], "a second pass finds nothing more");
}

#[tokio::test]
async fn the_walk_reads_the_expired_ids_by_primary_key_never_the_young_ones() {
    let pool = migrated_database().await;
    add_ids(&pool, (1, 1_000), 2 * HOUR).await;
    // 50,000 ids made a minute ago: above the cutoff's first id, so the walk never reads them.
    let recent: i64 = first_id_since(Duration::from_secs(60)).unwrap().parse().unwrap();
    add_ids(&pool, (recent, recent + 49_999), Duration::from_secs(60)).await;
    // The deleting connection alone, closed before the statistics are read (a backend reports
    // them when it ends).
    let deleter = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_with((*pool.connect_options()).clone())
        .await
        .unwrap();
    let deleted = walk(&deleter, 100).await;
    deleter.close().await;

    assert_eq!(deleted, vec![100; 10]);
    assert_eq!(ids_left(&pool).await.len(), 50_000);
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
