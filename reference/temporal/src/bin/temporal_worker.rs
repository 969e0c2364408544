//! The same worker as `cargo run --example coffee_worker`, as a binary target: integration
//! tests get its path from cargo (`CARGO_BIN_EXE_temporal_worker`), always freshly built.

use clap::Parser as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    temporal_ref::program::main(temporal_ref::program::WorkerArgs::parse()).await
}
