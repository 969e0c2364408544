//! Where the Temporal server is, and a client for it.

use anyhow::Context as _;
use std::time::Duration;
use temporalio_client::{Client, ClientOptions, Connection, ConnectionOptions, Url};

/// The local dev server (`make up-temporal`).
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:17233";

/// Server address and namespace.
#[derive(Debug, Clone)]
pub struct TemporalSettings {
    /// `host:port` of the frontend (gRPC).
    pub address: String,
    /// Namespace; the dev server creates `default`.
    pub namespace: String,
    /// Who this process is in the workflow history (worker or client identity).
    pub identity: String,
}

impl TemporalSettings {
    /// `TEMPORAL_ADDRESS` and `TEMPORAL_NAMESPACE`, with the local dev server's defaults.
    pub fn from_env(identity: &str) -> Self {
        Self {
            address: std::env::var("TEMPORAL_ADDRESS").unwrap_or_else(|_| DEFAULT_ADDRESS.to_owned()),
            namespace: std::env::var("TEMPORAL_NAMESPACE").unwrap_or_else(|_| "default".to_owned()),
            identity: format!("{identity}-{}", std::process::id()),
        }
    }
}

// ANCHOR: connect
/// Connects to the server (plain gRPC on loopback; a real cluster would add TLS or an
/// API key to [`ConnectionOptions`]).
pub async fn connect(settings: &TemporalSettings) -> anyhow::Result<Client> {
    let address = &settings.address;
    let url = Url::parse(&format!("http://{address}"))
        .with_context(|| format!("TEMPORAL_ADDRESS {address:?} is not host:port"))?;
    let options = ConnectionOptions::new(url)
        .identity(settings.identity.clone())
        .connect_timeout(Duration::from_secs(5))
        .build();
    let connection = Connection::connect(options)
        .await
        .with_context(|| format!("connecting to Temporal at {address} (make up-temporal)"))?;
    Ok(Client::new(connection, ClientOptions::new(settings.namespace.clone()).build())?)
}
// ANCHOR_END: connect
