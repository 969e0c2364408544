//! Keys made in the test, a JWKS served by wiremock, tokens minted and forged.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // test and demo key material: a failure is fatal

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use std::time::{SystemTime, UNIX_EPOCH};

pub const ISS: &str = "https://auth.example.com/";
pub const AUD: &str = "cruncan-api";

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub struct TestKey {
    pub kid: String,
    pub alg: Algorithm,
    pub encoding: EncodingKey,
    pub jwk: serde_json::Value,
    /// The public key as PEM (for the HS256-with-public-key attack).
    pub public_pem: Vec<u8>,
}

fn pem(label: &str, der: &[u8]) -> Vec<u8> {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n")).into_bytes()
}

pub fn rsa_key(kid: &str) -> TestKey {
    let kp = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let pkcs8 = kp.as_der().unwrap();
    let encoding = EncodingKey::from_rsa_pem(&pem("PRIVATE KEY", pkcs8.as_ref())).unwrap();
    let components = aws_lc_rs::rsa::PublicKeyComponents::<Vec<u8>>::from(kp.public_key());
    let spki = kp.public_key().as_der().unwrap();
    TestKey {
        kid: kid.into(),
        alg: Algorithm::RS256,
        encoding,
        jwk: serde_json::json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": b64(&components.n), "e": b64(&components.e)}),
        public_pem: pem("PUBLIC KEY", spki.as_ref()),
    }
}

pub fn ec_key(kid: &str) -> TestKey {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &rng,
    )
    .unwrap();
    let kp = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        pkcs8.as_ref(),
    )
    .unwrap();
    let point = kp.public_key().as_ref().to_vec(); // 0x04 || x || y
    TestKey {
        kid: kid.into(),
        alg: Algorithm::ES256,
        encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
        jwk: serde_json::json!({"kty": "EC", "kid": kid, "use": "sig", "alg": "ES256", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..65])}),
        public_pem: Vec::new(),
    }
}

pub fn jwks(keys: &[&TestKey]) -> serde_json::Value {
    serde_json::json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()})
}

pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

pub fn claims() -> serde_json::Value {
    serde_json::json!({
        "sub": "user-1", "iss": ISS, "aud": AUD, "exp": now() + 600, "nbf": now() - 10,
        "email": "alice@example.com", "client_id": "cruncan-web"
    })
}

pub fn sign(key: &TestKey, claims: &serde_json::Value) -> String {
    let mut header = Header::new(key.alg);
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, claims, &key.encoding).unwrap()
}
