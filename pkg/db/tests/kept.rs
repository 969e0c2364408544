//! A kept connection against the local stack's PostgreSQL (`make up`): the same backend serves
//! uses within a second; an idle one goes back to the pool; one held past the pool's
//! `max_lifetime` is renewed, even when it is the pool's only one; one that met a terminated
//! backend is closed, not reused. Each test has a database of its own.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may panic: that is its failure report

use cruncan_db::{DatabaseSettings, KeptConnection, PING_AFTER_IDLE};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use std::time::Duration;

async fn database() -> DatabaseSettings {
    cruncan_db::create_test_database(&cruncan_db::local_test_settings().unwrap()).await.unwrap()
}

fn pool(db: &DatabaseSettings, max_connections: u32, max_lifetime: Option<Duration>) -> PgPool {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .max_lifetime(max_lifetime)
        .acquire_timeout(Duration::from_secs(2))
        .connect_lazy_with(db.connect_options())
}

/// The backend (server process) serving the kept connection, recording the use.
async fn backend(kept: &mut KeptConnection, pool: &PgPool) -> Result<i32, sqlx::Error> {
    kept.run(pool, async |conn| sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(conn).await).await
}

async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..50 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn uses_within_a_second_share_one_backend_and_an_idle_connection_goes_back() {
    let pool = pool(&database().await, 2, None);
    let mut kept = KeptConnection::default();
    let first = backend(&mut kept, &pool).await.unwrap();
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(backend(&mut kept, &pool).await.unwrap(), first);
    }
    tokio::time::sleep(Duration::from_millis(100)).await; // a connection handed back would be idle by now
    assert_eq!((pool.size(), pool.num_idle()), (1, 0), "kept, not handed back between uses");

    kept.release_if_idle();
    assert!(kept.is_kept(), "used just now");
    tokio::time::sleep(kept.idle_at().unwrap().saturating_duration_since(std::time::Instant::now())).await;
    kept.release_if_idle();
    assert!(!kept.is_kept());
    wait_for("the connection back in the pool", || pool.num_idle() == 1).await;
}

#[tokio::test]
async fn a_connection_held_past_the_pools_lifetime_is_renewed_even_in_a_pool_of_one() {
    // A pool of one: the old connection must go back before the new one is taken, or taking it
    // waits for itself until the acquire timeout.
    let pool = pool(&database().await, 1, Some(Duration::from_millis(300)));
    let mut kept = KeptConnection::default();
    let first = backend(&mut kept, &pool).await.unwrap();
    // Used every 100 ms, so never idle, but held longer than the 300 ms lifetime.
    let mut last = first;
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        last = backend(&mut kept, &pool).await.unwrap();
    }
    assert_ne!(last, first, "still on the first backend after 500 ms");
    assert!(Duration::from_millis(300) < PING_AFTER_IDLE, "the renewal is not the idle rule");
}

#[tokio::test]
async fn a_connection_whose_backend_died_is_closed_and_the_next_use_gets_a_new_one() {
    let db = database().await;
    let pool = pool(&db, 2, None);
    let mut kept = KeptConnection::default();
    let first = backend(&mut kept, &pool).await.unwrap();
    let admin = self::pool(&db, 1, None);
    let killed: bool =
        sqlx::query_scalar("SELECT pg_terminate_backend($1)").bind(first).fetch_one(&admin).await.unwrap();
    assert!(killed);

    let failed = backend(&mut kept, &pool).await;
    assert!(failed.as_ref().is_err_and(cruncan_db::is_unavailable), "{failed:?}");
    assert!(!kept.is_kept(), "a broken connection is not kept");
    let second = backend(&mut kept, &pool).await.unwrap();
    assert_ne!(second, first);
    wait_for("the broken connection closed, not returned", || pool.size() == 1).await;
}
