//! Settings of the four programs: `config/base.yaml`, `APP_*` variables, then flags.

use clap::Parser;
use cruncan_config::{ConfigArgs, Sources};
use cruncan_db::DatabaseSettings;
use serde::Deserialize;
use std::time::Duration;

/// Starts users (8501), products (8502), orders (8503) and the gateway (8500).
#[derive(Debug, Clone, Parser)]
#[command(name = "services", version)]
pub struct Cli {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// PostgreSQL URL; overrides host, port, user and password of the three databases
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
}

/// Everything the four programs are configured with.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    /// The user service.
    pub users: ServiceSettings,
    /// The product service.
    pub products: ServiceSettings,
    /// The order service and how it calls the other two.
    pub orders: OrdersSettings,
    /// The gateway.
    pub gateway: GatewaySettings,
}

/// Where a service listens and which database it owns.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSettings {
    /// Bind address.
    pub host: String,
    /// Bind port (0: any free port).
    pub port: u16,
    /// Its own database.
    pub database: DatabaseSettings,
    /// Longest time a request may take, and the cap on a caller's deadline header.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
}

/// The order service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrdersSettings {
    /// Listener, database and time cap.
    #[serde(flatten)]
    pub service: ServiceSettings,
    /// Base URL of the user service.
    pub users_url: String,
    /// Base URL of the product service.
    pub products_url: String,
    /// The layers on calls to the user service.
    pub users_calls: CallSettings,
    /// The layers on calls to the product service.
    pub products_calls: CallSettings,
    /// How long a product's price may be served from cache when the product service fails.
    #[serde(with = "humantime_serde")]
    pub price_staleness: Duration,
    /// Most orders in flight at once; more are answered 503 at once.
    pub max_in_flight: usize,
    /// Time budget of releasing reservations after a failed order (its own, not the request's).
    #[serde(with = "humantime_serde")]
    pub release_timeout: Duration,
    /// Pause between two sweeps for reservations that failed orders still hold.
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
}

// ANCHOR: call_settings
/// The resilience layers on the calls to one dependency.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallSettings {
    /// Timeout of one attempt.
    #[serde(with = "humantime_serde")]
    pub attempt_timeout: Duration,
    /// Most attempts of one idempotent call (1: never retry).
    pub max_attempts: u32,
    /// Retries allowed as a fraction of calls (0.1: one retry per ten calls)...
    pub retry_budget_percent: f32,
    /// ...plus this many retries per second regardless.
    pub retry_budget_min_per_sec: u32,
    /// First backoff; it doubles per retry, with up to 100% jitter added.
    #[serde(with = "humantime_serde")]
    pub backoff_min: Duration,
    /// Largest backoff.
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// Bulkhead: most calls in flight to this dependency; more fail at once.
    pub max_concurrent: usize,
    /// Breaker: failure rate (0..=1) over the window that opens it.
    pub breaker_failure_rate: f64,
    /// Breaker: calls in the sliding window.
    pub breaker_window: usize,
    /// Breaker: fewest calls in the window before the rate counts.
    pub breaker_min_calls: usize,
    /// Breaker: how long it stays open before letting a probe through (half-open).
    #[serde(with = "humantime_serde")]
    pub breaker_open: Duration,
    /// Breaker: probes in half-open; all must succeed to close.
    pub breaker_half_open_calls: usize,
}
// ANCHOR_END: call_settings

/// The gateway.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySettings {
    /// Bind address.
    pub host: String,
    /// Bind port.
    pub port: u16,
    /// Upstream of `/users`.
    pub users_url: String,
    /// Upstream of `/products`.
    pub products_url: String,
    /// Upstream of `/orders`.
    pub orders_url: String,
    /// Longest a proxied request may take (504 after), also sent downstream as the deadline.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Most requests in flight; more are shed with 503 and `Retry-After`.
    pub max_in_flight: usize,
    /// Requests per second each client (JWT `sub`) may make, sustained.
    pub rate_per_second: u32,
    /// Requests a client may make in a burst.
    pub rate_burst: u32,
    /// Origins allowed by CORS.
    pub cors_origins: Vec<String>,
    /// Largest request body.
    pub body_limit_bytes: usize,
    /// Token checks.
    pub jwt: JwtSettings,
}

/// How the gateway checks bearer tokens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtSettings {
    /// The issuer's JWKS.
    pub jwks_url: String,
    /// Expected `iss`.
    pub issuer: String,
    /// Expected `aud`.
    pub audience: String,
    /// E-mails allowed in.
    pub allowed_emails: Vec<String>,
    /// The `client_id` accepted.
    pub client_id: String,
}

impl Settings {
    /// Loads the layered settings; `DATABASE_URL` points the three databases at its server.
    pub fn load(cli: &Cli) -> anyhow::Result<Self> {
        let dir = cli.config.dir_or(cruncan_config::crate_dir!().join("config"));
        let mut s: Self = cruncan_config::load(&Sources::new(dir, cli.config.environment.clone()))?;
        if let Some(url) = &cli.database_url {
            for db in [&mut s.users.database, &mut s.products.database, &mut s.orders.service.database] {
                let name = db.name.clone();
                db.apply_url(url)?;
                // One server, three databases: the URL never merges them into one.
                db.name = name;
            }
        }
        Ok(s)
    }
}
