//! Sign-in tokens. The user service issues ES256 JWTs with a key it makes at start and publishes
//! the public half as a JWKS; the notes service and the gateway verify tokens with
//! `reference/jwt` (its JWKS cache and `verify`), so no shared secret travels.
//!
//! The sign-in itself (`POST /sessions` with a user name) is a development identity provider:
//! there is no password. Production puts a real one (OIDC) in front; the verifying side does not
//! change, it only gets another JWKS URL.

use anyhow::Context as _;
use aws_lc_rs::signature::KeyPair as _;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use jwt::{AuthError, Jwks};
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::AuthSettings;
use crate::domain::UserId;

/// The user service's signing key and token settings.
pub struct Issuer {
    key: EncodingKey,
    kid: String,
    jwks: serde_json::Value,
    settings: AuthSettings,
}

#[derive(Serialize)]
struct TokenClaims<'a> {
    sub: String,
    name: &'a str,
    iss: &'a str,
    aud: &'a str,
    iat: u64,
    nbf: u64,
    exp: u64,
}

// ANCHOR: issuer
impl Issuer {
    /// A fresh P-256 key (tokens of an earlier run no longer verify: users sign in again).
    pub fn generate(settings: AuthSettings) -> anyhow::Result<Self> {
        let alg = &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 =
            aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(alg, &aws_lc_rs::rand::SystemRandom::new())
                .map_err(|_| anyhow::anyhow!("generating the signing key"))?;
        let pair = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref())
            .map_err(|_| anyhow::anyhow!("reading the signing key"))?;
        let point = pair.public_key().as_ref(); // 0x04 || x || y
        anyhow::ensure!(point.len() == 65, "unexpected P-256 public key length");
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let kid = format!("notes-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let jwks = serde_json::json!({"keys": [{
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
            "x": b64(&point[1..33]), "y": b64(&point[33..65]),
        }]});
        Ok(Self { key: EncodingKey::from_ec_der(pkcs8.as_ref()), kid, jwks, settings })
    }

    /// The public keys, served at `/.well-known/jwks.json`.
    pub fn jwks(&self) -> &serde_json::Value {
        &self.jwks
    }

    /// A token for `user`.
    pub fn sign(&self, user: UserId, name: &str) -> anyhow::Result<String> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let claims = TokenClaims {
            sub: user.to_string(),
            name,
            iss: &self.settings.issuer,
            aud: &self.settings.audience,
            iat: now,
            nbf: now.saturating_sub(5),
            exp: now + self.settings.token_ttl.as_secs(),
        };
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.key).context("signing the token")
    }
}
// ANCHOR_END: issuer

/// Checks tokens against the user service's JWKS (cached by `reference/jwt`).
#[derive(Clone)]
pub struct Verifier {
    jwks: Arc<Jwks>,
}

impl Verifier {
    /// A verifier of tokens from `jwks_url` with `settings`' issuer and audience.
    pub fn new(jwks_url: String, settings: &AuthSettings) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?;
        let cfg = jwt::AuthSettings {
            jwks_url,
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
            leeway: Duration::from_secs(30),
            keys_ttl: Duration::from_secs(600),
            min_refetch_interval: Duration::from_secs(5),
        };
        Ok(Self { jwks: Arc::new(Jwks::new(http, cfg)) })
    }

    /// The user a token was issued to.
    pub async fn user(&self, token: &str) -> Result<UserId, AuthError> {
        let claims = jwt::verify(&self.jwks, token).await?;
        claims.sub.parse().map_err(|_| AuthError::Invalid("sub is not a user id".into()))
    }
}

/// The signed-in user of a request (`Authorization: Bearer <token>`), or a 401.
#[derive(Debug, Clone, Copy)]
pub struct SignedIn(pub UserId);

impl<S: Send + Sync> FromRequestParts<S> for SignedIn
where
    Verifier: FromRef<S>,
{
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::Missing)?;
        Verifier::from_ref(state).user(token).await.map(SignedIn)
    }
}
