//! `cargo run --example retention_cleanup -- --retention-days 30 [--batch-size 1000] [--dry-run]`
//!
//! Deletes `request` rows of service one older than the retention period. Prints one summary line;
//! exits 0 on success, 1 on a run-time failure (the CronJob retries), 2 on bad arguments.

use clap::Parser;
use cruncan_db::DatabaseSettings;
use std::time::Duration;

/// Delete expired request rows in batches.
#[derive(Debug, Parser)]
struct Args {
    /// Delete rows older than this many days
    #[arg(long, env = "RETENTION_DAYS", value_parser = clap::value_parser!(u32).range(1..))]
    retention_days: u32,
    /// Rows deleted per batch
    #[arg(long, env = "RETENTION_BATCH_SIZE", default_value_t = 1000, value_parser = clap::value_parser!(i64).range(1..=100_000))]
    batch_size: i64,
    /// Pause between batches, in milliseconds
    #[arg(long, default_value_t = 50)]
    pause_ms: u64,
    /// Only count what would be deleted
    #[arg(long)]
    dry_run: bool,
    /// PostgreSQL URL of service one's database
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres:postgres@127.0.0.1:15432/one",
        hide_env_values = true
    )]
    database_url: String,
}

#[tokio::main]
async fn main() {
    // clap exits with 2 on bad arguments: the "do not retry" code.
    let args = Args::parse();
    let code = match run(args).await {
        Ok(summary) => {
            println!("{summary}");
            cronjob::EXIT_OK
        }
        Err(e) => {
            eprintln!("retention: failed: {e:#}");
            cronjob::EXIT_FAILED
        }
    };
    std::process::exit(code);
}

async fn run(args: Args) -> anyhow::Result<cronjob::Summary> {
    let mut db = DatabaseSettings {
        host: String::new(),
        port: 5432,
        username: String::new(),
        password: String::new().into(),
        name: "one".into(),
        ssl_mode: cruncan_db::PgSslMode::Prefer,
        ssl_root_cert: None,
        application_name: Some("retention-cleanup".into()),
        max_connections: 2,
        acquire_timeout: std::time::Duration::from_secs(5),
        create_if_missing: false,
    };
    db.apply_url(&args.database_url)?;
    let pool = db.lazy_pool();
    let retention = cronjob::Retention {
        cutoff: chrono::Utc::now() - chrono::Duration::days(i64::from(args.retention_days)),
        batch_size: args.batch_size,
        dry_run: args.dry_run,
        pause: Duration::from_millis(args.pause_ms),
    };
    cronjob::run(&pool, &retention).await
}
