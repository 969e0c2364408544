//! The processed-id store against the real PostgreSQL: its questions keep using the primary key
//! when the table grows under a connection that first saw it nearly empty.

use cruncan_db::{create_test_database, local_test_settings, table_scans};
use futures::future::join_all;
use std::time::Duration;
use two::store::ProcessedStore;

/// 64 lanes asking at once, as two's lanes do under load (the store batches their questions).
async fn ask(store: &ProcessedStore, round: usize) {
    join_all((0..64).map(|lane| async move {
        let seeded = format!("seeded-{}", round * 64 + lane + 1);
        assert!(store.is_processed(&seeded).await.unwrap(), "{seeded} is there");
        assert!(!store.is_processed(&format!("new-{round}-{lane}")).await.unwrap());
    }))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grown_table_is_searched_by_its_index_not_scanned() {
    let db = create_test_database(&local_test_settings().unwrap()).await.unwrap();
    let admin = db.lazy_pool();
    two::MIGRATOR.run(&admin).await.unwrap();
    // The store's one connection meets the table nearly empty, with batches of many ids.
    let store_pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_with(db.connect_options())
        .await
        .unwrap();
    let seed = |from: i32, to: i32| {
        sqlx::query(
            "INSERT INTO processed_request (request_id, third_party_status)
             SELECT 'seeded-' || n, 200 FROM generate_series($1, $2) AS n",
        )
        .bind(from)
        .bind(to)
        .execute(&admin)
    };
    // The store's connection meets the table small (1,000 rows, about ten pages) and asks about
    // many ids at once, as two's lanes do under load: the plan PostgreSQL would cache for
    // `= ANY($1)` now is a sequential scan, cheaper than the index at this size.
    seed(1, 1_000).await.unwrap();
    let store = ProcessedStore::new(store_pool.clone());
    for round in 0..10 {
        ask(&store, round).await;
    }
    // The table grows (other replicas, a backlog delivered) and the same connection keeps asking.
    seed(1_001, 51_000).await.unwrap();
    for round in 10..40 {
        ask(&store, round).await;
    }
    // A backend reports its table statistics when it ends: close the store's connection, then
    // wait until its index scans show.
    drop(store);
    store_pool.close().await;
    let scans = table_scans(&admin, "processed_request", 30, Duration::from_secs(15)).await.unwrap();
    let (read, index) = (scans.seq_rows_read, scans.index_scans);
    // Scanning the small table early is fine (a few dozen batches × 1,000 rows); scanning the
    // grown one once per batch would read millions.
    assert!(read < 200_000, "questions scanned the grown table: {read} rows read by sequential scans");
    assert!(index >= 30, "the questions after the growth used the primary key (index scans: {index})");
}
