//! JWT bearer-token validation for axum against a JWKS URL.
//!
//! - Keys come from the issuer's JWKS and are trusted for a TTL; a token with an unknown `kid`
//!   triggers one refetch, at most once per interval, so key rotation works and a flood of
//!   made-up kids cannot hammer the JWKS endpoint. When a refresh fails, the last keys are served
//!   stale for at most `max_stale` past their TTL (with a warning and a metric per failed
//!   refresh), so a JWKS outage does not reject every token the moment the TTL runs out.
//! - Only RS256 and ES256 are accepted (`none` and HMAC never are: an HMAC "signed" with the
//!   public key is the classic algorithm-confusion attack); `exp`/`nbf` are checked with leeway,
//!   `iss` and `aud` must match.
//! - Valid claims land in the request's extensions; anything else is a 401 with a JSON error and
//!   `WWW-Authenticate`. A [`Policy`] then decides 403 for valid tokens that may not pass.
//!
//! We use jsonwebtoken's `jwk` module; the once-popular `jwks-client` crate is unmaintained.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use opentelemetry::metrics::Counter;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

/// Verifier settings.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// The issuer's JWKS document.
    pub jwks_url: String,
    /// Expected `iss`.
    pub issuer: String,
    /// Expected `aud`.
    pub audience: String,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway: Duration,
    /// How long fetched keys are trusted before they are fetched again.
    pub keys_ttl: Duration,
    /// Fewest time between two refetches caused by unknown `kid`s.
    pub min_refetch_interval: Duration,
}

/// The claims a handler can read from the request extensions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Subject.
    pub sub: String,
    /// Issuer.
    pub iss: String,
    /// Expiry (seconds since the epoch).
    pub exp: u64,
    /// The user's e-mail, when the token carries one.
    #[serde(default)]
    pub email: Option<String>,
    /// The OAuth2 client the token was issued to.
    #[serde(default)]
    pub client_id: Option<String>,
}

/// Why a request was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    #[error("missing bearer token")]
    Missing,
    /// The token is malformed, expired, not yet valid, for another issuer or audience, badly
    /// signed, or signed with an algorithm we do not accept.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// No key with the token's `kid`, even after a refetch.
    #[error("unknown signing key")]
    UnknownKey,
    /// The token is valid but the policy says no.
    #[error("forbidden: {0}")]
    Forbidden(String),
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let (status, code) = match self {
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            _ => (StatusCode::UNAUTHORIZED, "invalid_token"),
        };
        let mut response = cruncan_http::json_error(status, code, self.to_string());
        // RFC 6750: no error attribute when no token was sent at all.
        let challenge = match &self {
            Self::Missing => r#"Bearer realm="cruncan""#.to_owned(),
            Self::Forbidden(_) => r#"Bearer realm="cruncan", error="insufficient_scope""#.to_owned(),
            other => format!(
                r#"Bearer realm="cruncan", error="invalid_token", error_description="{}""#,
                other.to_string().replace('"', "'")
            ),
        };
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        response
    }
}

/// The accepted algorithms.
pub const ALLOWED: [Algorithm; 2] = [Algorithm::RS256, Algorithm::ES256];

// ANCHOR: jwks_cache
/// How long past `keys_ttl` the last keys are still used while every refresh fails, unless
/// [`Jwks::with_max_stale`] says otherwise.
pub const DEFAULT_MAX_STALE: Duration = Duration::from_secs(3600);

/// One successful fetch of the JWKS document.
struct KeySet {
    keys: HashMap<String, Arc<(DecodingKey, Algorithm)>>,
    fetched: Instant,
}

/// Keys by `kid` from the last successful fetch: fresh for `keys_ttl`, then refreshed; served
/// stale for at most `max_stale` more while the refresh fails. Fetches (for an expired set or an
/// unknown `kid`) happen one at a time and at most once per `min_refetch_interval`.
pub struct Jwks {
    http: reqwest::Client,
    cfg: AuthSettings,
    max_stale: Duration,
    set: RwLock<Option<Arc<KeySet>>>,
    /// When the last fetch was attempted; held while fetching.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
    refresh_failures: Counter<u64>,
    stale_used: Counter<u64>,
}

impl Jwks {
    /// A cache over `cfg.jwks_url`, serving stale keys for up to [`DEFAULT_MAX_STALE`].
    pub fn new(http: reqwest::Client, cfg: AuthSettings) -> Self {
        let meter = opentelemetry::global::meter("jwt");
        Self {
            http,
            cfg,
            max_stale: DEFAULT_MAX_STALE,
            set: RwLock::new(None),
            last_fetch: tokio::sync::Mutex::new(None),
            refresh_failures: meter
                .u64_counter("jwt.jwks.refresh.failures")
                .with_description("JWKS fetches that failed (the cached keys, if any, are kept)")
                .build(),
            stale_used: meter
                .u64_counter("jwt.jwks.stale_keys.used")
                .with_description("Tokens checked with a key past keys_ttl because the refresh failed")
                .build(),
        }
    }

    /// The same cache, serving stale keys for at most `max_stale` past `keys_ttl` (zero: never).
    #[must_use]
    pub fn with_max_stale(mut self, max_stale: Duration) -> Self {
        self.max_stale = max_stale;
        self
    }

    /// The key for `kid`: from a fresh set; else after a refresh (rate limited); else, when the
    /// refresh failed, from the stale set if it is within `max_stale`.
    pub async fn key(&self, kid: &str) -> Result<Arc<(DecodingKey, Algorithm)>, AuthError> {
        let ttl = self.cfg.keys_ttl;
        let stale_limit = ttl.saturating_add(self.max_stale);
        if let Some(k) = self.lookup(kid, ttl) {
            return Ok(k);
        }
        // One fetch at a time; with a usable stale key nobody waits for someone else's fetch.
        let mut last = match self.last_fetch.try_lock() {
            Ok(guard) => guard,
            Err(_) => match self.lookup(kid, stale_limit) {
                Some(k) => return Ok(self.stale(k)),
                None => self.last_fetch.lock().await,
            },
        };
        if let Some(k) = self.lookup(kid, ttl) {
            return Ok(k); // refreshed while we waited
        }
        if last.is_none_or(|t| t.elapsed() >= self.cfg.min_refetch_interval) {
            *last = Some(Instant::now());
            match self.fetch().await {
                Ok(set) => {
                    // A fresh set is the truth: a kid it lacks is unknown (revoked keys go now).
                    let key = set.keys.get(kid).cloned();
                    *self.set.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(set));
                    return key.ok_or(AuthError::UnknownKey);
                }
                Err(e) => {
                    self.refresh_failures.add(1, &[]);
                    let age = self.age();
                    tracing::warn!(
                        jwks_url = %self.cfg.jwks_url,
                        error = %format!("{e:#}"),
                        keys_age_s = age.map(|a| a.as_secs()),
                        serving_stale = age.is_some_and(|a| a < stale_limit),
                        "JWKS refresh failed; the cached keys are used until keys_ttl + max_stale"
                    );
                }
            }
        }
        // No fresh set to be had: the stale one, within bounds.
        self.lookup(kid, stale_limit).map(|k| self.stale(k)).ok_or(AuthError::UnknownKey)
    }

    /// `kid` from the current set, if the set is younger than `max_age`.
    fn lookup(&self, kid: &str, max_age: Duration) -> Option<Arc<(DecodingKey, Algorithm)>> {
        let set = self.set.read().unwrap_or_else(PoisonError::into_inner).clone()?;
        if set.fetched.elapsed() < max_age { set.keys.get(kid).cloned() } else { None }
    }

    fn stale(&self, key: Arc<(DecodingKey, Algorithm)>) -> Arc<(DecodingKey, Algorithm)> {
        self.stale_used.add(1, &[]);
        key
    }

    fn age(&self) -> Option<Duration> {
        self.set.read().unwrap_or_else(PoisonError::into_inner).as_ref().map(|s| s.fetched.elapsed())
    }

    /// One fetch; a document without a single usable key counts as a failure (the old keys stay).
    async fn fetch(&self) -> anyhow::Result<KeySet> {
        let set: JwkSet = self.http.get(&self.cfg.jwks_url).send().await?.error_for_status()?.json().await?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let (Some(kid), Some(alg)) = (jwk.common.key_id.clone(), key_algorithm(jwk)) else { continue };
            match DecodingKey::from_jwk(jwk) {
                Ok(key) => {
                    keys.insert(kid, Arc::new((key, alg)));
                }
                Err(e) => tracing::warn!(%kid, error = %e, "skipping unusable JWK"),
            }
        }
        anyhow::ensure!(!keys.is_empty(), "the JWKS document has no usable key");
        Ok(KeySet { keys, fetched: Instant::now() })
    }
}
// ANCHOR_END: jwks_cache

/// The algorithm a JWK is for: its `alg` when present, else what its key type implies.
fn key_algorithm(jwk: &jsonwebtoken::jwk::Jwk) -> Option<Algorithm> {
    use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve};
    let implied = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
        _ => return None,
    };
    let declared = jwk.common.key_algorithm.and_then(|a| a.to_string().parse::<Algorithm>().ok());
    match declared {
        Some(a) if a != implied => None,
        _ => Some(implied),
    }
}

// ANCHOR: verify
/// Verifies a bearer token and returns its claims.
pub async fn verify(jwks: &Jwks, token: &str) -> Result<Claims, AuthError> {
    let header =
        jsonwebtoken::decode_header(token).map_err(|_| AuthError::Invalid("malformed token".into()))?;
    // Refuse before touching keys: `none`, HS256 and friends never get near a verifier.
    if !ALLOWED.contains(&header.alg) {
        return Err(AuthError::Invalid(format!("algorithm {:?} is not accepted", header.alg)));
    }
    let kid = header.kid.ok_or_else(|| AuthError::Invalid("token has no kid".into()))?;
    let key = jwks.key(&kid).await?;
    if key.1 != header.alg {
        return Err(AuthError::Invalid("algorithm does not match the key".into()));
    }
    let mut v = Validation::new(key.1);
    v.algorithms = vec![key.1];
    v.leeway = jwks.cfg.leeway.as_secs();
    v.validate_nbf = true;
    v.set_issuer(&[&jwks.cfg.issuer]);
    v.set_audience(&[&jwks.cfg.audience]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    jsonwebtoken::decode::<Claims>(token, &key.0, &v)
        .map(|d| d.claims)
        .map_err(|e| AuthError::Invalid(reason(&e).into()))
}

/// A stable, short reason for the client (never the library's internal wording).
fn reason(e: &jsonwebtoken::errors::Error) -> &'static str {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::ExpiredSignature => "token expired",
        K::ImmatureSignature => "token not yet valid",
        K::InvalidIssuer => "wrong issuer",
        K::InvalidAudience => "wrong audience",
        K::InvalidSignature => "bad signature",
        K::InvalidAlgorithm => "algorithm not accepted",
        K::MissingRequiredClaim(_) => "a required claim is missing",
        _ => "malformed token",
    }
}
// ANCHOR_END: verify

// ANCHOR: policy
/// What a valid token must also satisfy (like the Go original's): an allowed e-mail and the
/// expected client.
#[derive(Debug, Clone)]
pub struct Policy {
    /// E-mails allowed in.
    pub allowed_emails: BTreeSet<String>,
    /// The only `client_id` accepted.
    pub client_id: String,
}

impl Policy {
    /// `Ok` when the claims pass, `Forbidden` naming the reason otherwise.
    pub fn check(&self, claims: &Claims) -> Result<(), AuthError> {
        let email =
            claims.email.as_deref().ok_or_else(|| AuthError::Forbidden("the token has no email".into()))?;
        if !self.allowed_emails.contains(email) {
            return Err(AuthError::Forbidden("email is not allowed".into()));
        }
        if claims.client_id.as_deref() != Some(self.client_id.as_str()) {
            return Err(AuthError::Forbidden("client_id is not allowed".into()));
        }
        Ok(())
    }
}
// ANCHOR_END: policy

/// What the middleware needs.
#[derive(Clone)]
pub struct Auth {
    /// The key cache.
    pub jwks: Arc<Jwks>,
    /// The policy.
    pub policy: Arc<Policy>,
}

// ANCHOR: middleware
/// The middleware: `router.layer(axum::middleware::from_fn_with_state(auth, jwt::require))`.
pub async fn require(State(auth): State<Auth>, mut req: Request, next: Next) -> Response {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return AuthError::Missing.into_response();
    };
    let claims = match verify(&auth.jwks, token).await {
        Ok(c) => c,
        Err(e) => {
            tracing::info!(error = %e, "token refused");
            return e.into_response();
        }
    };
    if let Err(e) = auth.policy.check(&claims) {
        return e.into_response();
    }
    req.extensions_mut().insert(claims);
    next.run(req).await
}
// ANCHOR_END: middleware

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(email: Option<&str>, client: Option<&str>) -> Claims {
        Claims {
            sub: "s".into(),
            iss: "i".into(),
            exp: 0,
            email: email.map(Into::into),
            client_id: client.map(Into::into),
        }
    }

    #[test]
    fn policy_table() {
        let p = Policy { allowed_emails: ["a@x.io".to_owned()].into(), client_id: "app".into() };
        assert_eq!(p.check(&claims(Some("a@x.io"), Some("app"))), Ok(()));
        for (email, client) in [
            (None, Some("app")),
            (Some("b@x.io"), Some("app")),
            (Some("a@x.io"), None),
            (Some("a@x.io"), Some("other")),
        ] {
            assert!(
                matches!(p.check(&claims(email, client)), Err(AuthError::Forbidden(_))),
                "{email:?} {client:?}"
            );
        }
    }
}
