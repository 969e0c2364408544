//! OAuth2 client-credentials tokens for calling a third party, cached with moka:
//!
//! - one token is fetched and shared by every caller until shortly before it expires (the
//!   *refresh margin*), so a request never leaves with a token about to die in flight;
//! - concurrent misses cause a single fetch (moka's `try_get_with` coalesces them);
//! - a 401 from the third party drops the token it rejected, so the next call fetches anew;
//! - `expires_in` is accepted as a number or a string (real token servers send both).

use cruncan_config::{ExposeSecret as _, Secret};
use opentelemetry::KeyValue;
use opentelemetry::metrics::Counter;
use serde::{Deserialize, Deserializer};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Token client settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSettings {
    /// Base URL of the token server; the token endpoint is `{url}/v2/oauth/token`.
    pub url: String,
    /// OAuth2 client id.
    pub client_id: String,
    /// OAuth2 client secret (never printed).
    pub client_secret: Secret,
    /// Requested scope.
    #[serde(default = "default_scope")]
    pub scope: String,
    /// Refresh this long before the token expires (humantime: `30s`).
    #[serde(default = "default_margin", with = "humantime_serde")]
    pub refresh_margin: Duration,
    /// Timeout of one token request (humantime: `5s`).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_scope() -> String {
    "general".into()
}

fn default_margin() -> Duration {
    Duration::from_secs(30)
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

/// A bearer token. Its `Debug` output never shows the token.
pub struct Token {
    value: Secret,
    /// Lifetime the server granted.
    pub expires_in: Duration,
    /// When the cache will fetch a new one.
    refresh_after: Duration,
    fetched_at: Instant,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token").field("value", &"[REDACTED]").field("expires_in", &self.expires_in).finish()
    }
}

impl Token {
    /// The token, for the `Authorization: Bearer` header only.
    pub fn bearer(&self) -> &str {
        self.value.expose_secret()
    }

    /// How long until the cache refreshes it.
    pub fn refreshes_in(&self) -> Duration {
        self.refresh_after.saturating_sub(self.fetched_at.elapsed())
    }
}

/// Why no token could be had.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The token server could not be reached or timed out.
    #[error("token request failed: {0}")]
    Transport(#[source] reqwest::Error),
    /// The token server answered with an error status.
    #[error("token server answered {status}")]
    Status {
        /// The HTTP status.
        status: u16,
    },
    /// The answer was not a token response.
    #[error("token response could not be read: {0}")]
    Decode(String),
}

impl TokenError {
    /// Whether trying again later may help (transport errors, 429, 5xx).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Transport(_) => true,
            Self::Status { status } => *status == 429 || *status == 408 || *status >= 500,
            Self::Decode(_) => false,
        }
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(deserialize_with = "number_or_string")]
    expires_in: u64,
}

// ANCHOR: expires_in
/// `expires_in` as `3600` or `"3600"`.
fn number_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Number(n) => Ok(n),
        Raw::Text(s) => s.trim().parse().map_err(serde::de::Error::custom),
    }
}
// ANCHOR_END: expires_in

/// Entries live until their token's refresh time.
struct RefreshAhead;

impl moka::Expiry<(), Arc<Token>> for RefreshAhead {
    fn expire_after_create(&self, _key: &(), token: &Arc<Token>, _created_at: Instant) -> Option<Duration> {
        Some(token.refresh_after)
    }
}

/// The cached token client; cheap to clone.
#[derive(Clone)]
pub struct TokenCache {
    http: reqwest::Client,
    settings: Arc<TokenSettings>,
    cache: moka::future::Cache<(), Arc<Token>>,
    fetches: Counter<u64>,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache").field("url", &self.settings.url).finish_non_exhaustive()
    }
}

impl TokenCache {
    /// A cache fetching from `settings.url` with `http`.
    pub fn new(http: reqwest::Client, settings: TokenSettings) -> Self {
        Self {
            http,
            settings: Arc::new(settings),
            cache: moka::future::Cache::builder().max_capacity(1).expire_after(RefreshAhead).build(),
            fetches: cruncan_telemetry::meter("cruncan-accesstoken")
                .u64_counter("token.fetches")
                .with_description("Token requests sent to the token server, by outcome")
                .build(),
        }
    }

    // ANCHOR: token
    /// The current token: cached, or fetched once however many callers miss at the same time.
    pub async fn token(&self) -> Result<Arc<Token>, Arc<TokenError>> {
        self.cache.try_get_with((), async { self.fetch().await.map(Arc::new) }).await
    }

    /// Drops `rejected` (the third party answered 401 with it), unless a newer token already
    /// replaced it — so a burst of 401s for one old token causes one new fetch, not many.
    pub async fn reject(&self, rejected: &Arc<Token>) {
        if let Some(current) = self.cache.get(&()).await
            && Arc::ptr_eq(&current, rejected)
        {
            self.cache.invalidate(&()).await;
        }
    }
    // ANCHOR_END: token

    async fn fetch(&self) -> Result<Token, TokenError> {
        let s = &self.settings;
        let request = self
            .http
            .post(format!("{}/v2/oauth/token", s.url.trim_end_matches('/')))
            .basic_auth(&s.client_id, Some(s.client_secret.expose_secret()))
            .form(&[("grant_type", "client_credentials"), ("scope", s.scope.as_str())])
            .timeout(s.timeout)
            .build()
            .map_err(TokenError::Transport)?;
        let outcome = async {
            let response = cruncan_http::client::send_traced(&self.http, request)
                .await
                .map_err(TokenError::Transport)?;
            let status = response.status();
            if !status.is_success() {
                return Err(TokenError::Status { status: status.as_u16() });
            }
            let body = response.bytes().await.map_err(TokenError::Transport)?;
            let parsed: TokenResponse =
                serde_json::from_slice(&body).map_err(|e| TokenError::Decode(e.to_string()))?;
            let expires_in = Duration::from_secs(parsed.expires_in);
            let margin = s.refresh_margin;
            // A lifetime shorter than the margin: refresh at half-life instead of never caching.
            let refresh_after = if expires_in > margin { expires_in - margin } else { expires_in / 2 };
            Ok(Token {
                value: Secret::from(parsed.access_token),
                expires_in,
                refresh_after,
                fetched_at: Instant::now(),
            })
        }
        .await;
        let label = match &outcome {
            Ok(_) => "success",
            Err(_) => "error",
        };
        self.fetches.add(1, &[KeyValue::new("outcome", label)]);
        match &outcome {
            Ok(t) => {
                tracing::info!(expires_in = ?t.expires_in, refresh_after = ?t.refresh_after, "access token fetched")
            }
            Err(e) => tracing::warn!(error = %e, "access token fetch failed"),
        }
        outcome
    }
}
