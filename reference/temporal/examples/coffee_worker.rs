//! `cargo run --example coffee_worker`: a worker for the coffee shop and the order saga on task
//! queue `coffee-shop`, against the dev server at `TEMPORAL_ADDRESS` (default 127.0.0.1:17233)
//! and PostgreSQL at `DATABASE_URL` (databases `temporal_ref` and `temporal_saga`, created and
//! migrated at start). Run two of them to share the work; kill one mid-order and the other
//! finishes it. SIGINT/SIGTERM stops it after in-flight tasks finish. `--help` lists the flags.

use clap::Parser as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    temporal_ref::program::main(temporal_ref::program::WorkerArgs::parse()).await
}
