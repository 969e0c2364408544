//! Cache-aside reads in Redis: a read looks in the cache, falls back to PostgreSQL and fills the
//! cache with a TTL; every status change deletes the entry. Redis is an optimisation, never a
//! dependency: a slow or absent Redis turns into a miss within `timeout`, logged and counted.

use redis::AsyncCommands as _;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::RwLock;

use crate::config::RedisSettings;
use crate::domain::{Email, EmailId};
use crate::metrics::Metrics;

/// The email cache.
#[derive(Clone)]
pub struct Cache {
    conn: Arc<RwLock<Option<ConnectionManager>>>,
    ttl_secs: u64, // Redis's SET EX takes whole seconds
    timeout: Duration,
    prefix: String,
    metrics: Metrics,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache").field("ttl_secs", &self.ttl_secs).finish_non_exhaustive()
    }
}

impl Cache {
    /// A cache for `s.url`. When Redis does not answer at start, reads go to PostgreSQL while a
    /// background task keeps connecting; once connected, the client reconnects by itself.
    pub fn new(
        s: &RedisSettings,
        metrics: Metrics,
        stop: cruncan_shutdown::Shutdown,
    ) -> anyhow::Result<Self> {
        let client = redis::Client::open(s.url.as_str())?;
        let timeout = s.timeout;
        let cache = Self {
            conn: Arc::default(),
            ttl_secs: s.ttl.as_secs().max(1),
            timeout,
            prefix: s.key_prefix.clone(),
            metrics,
        };
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1);
        let slot = Arc::clone(&cache.conn);
        tokio::spawn(async move {
            let mut delay = Duration::from_millis(100);
            loop {
                match ConnectionManager::new_with_config(client.clone(), config.clone()).await {
                    Ok(conn) => {
                        *slot.write().await = Some(conn);
                        return;
                    }
                    Err(e) => tracing::warn!(error = %e, "redis not reachable; reads go to PostgreSQL"),
                }
                tokio::select! {
                    () = stop.wait() => return,
                    () = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        });
        Ok(cache)
    }

    fn key(&self, id: EmailId) -> String {
        format!("{}{id}", self.prefix)
    }

    async fn conn(&self) -> Option<ConnectionManager> {
        self.conn.read().await.clone()
    }

    // ANCHOR: cache_ops
    /// The cached email, or `None` on a miss, an error or a timeout.
    pub async fn get(&self, id: EmailId) -> Option<Email> {
        let mut conn = self.conn().await?;
        let key = self.key(id);
        let got: Option<Option<String>> = self.bounded("get", conn.get(&key)).await;
        let email = got.flatten().and_then(|json| serde_json::from_str(&json).ok());
        self.metrics.cache(if email.is_some() { "hit" } else { "miss" });
        email
    }

    /// Caches `email` for the TTL.
    pub async fn put(&self, email: &Email) {
        let (Some(mut conn), Ok(json)) = (self.conn().await, serde_json::to_string(email)) else { return };
        let key = self.key(email.email_id);
        let _: Option<()> = self.bounded("set", conn.set_ex(&key, json, self.ttl_secs)).await;
    }

    /// Drops the entry; called after every status change is committed.
    pub async fn invalidate(&self, id: EmailId) {
        let Some(mut conn) = self.conn().await else { return };
        let key = self.key(id);
        let _: Option<()> = self.bounded("del", conn.del(&key)).await;
    }

    async fn bounded<T>(&self, op: &str, call: impl Future<Output = redis::RedisResult<T>>) -> Option<T> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                tracing::warn!(op, error = %e, "redis call failed; using PostgreSQL");
                self.metrics.cache("error");
                None
            }
            Err(_) => {
                tracing::warn!(op, timeout = ?self.timeout, "redis call timed out; using PostgreSQL");
                self.metrics.cache("error");
                None
            }
        }
    }
    // ANCHOR_END: cache_ops
}
