//! The gRPC edge's certificate when no files are configured: a throw-away CA and a server
//! certificate for `localhost` / `127.0.0.1`, made with rcgen at start (the same recipe as
//! reference/grpc's `tls` module). In production `grpc.cert_path` and `grpc.key_path` name files
//! from your PKI.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

/// A development CA (what clients trust) and the server identity it signed.
pub struct DevPki {
    /// CA certificate, PEM.
    pub ca_pem: String,
    /// Server certificate, PEM.
    pub cert_pem: String,
    /// Server key, PEM (never printed).
    pub key_pem: String,
}

impl std::fmt::Debug for DevPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevPki").field("key_pem", &"[REDACTED]").finish_non_exhaustive()
    }
}

/// Makes the CA and the server certificate.
pub fn dev_pki() -> anyhow::Result<DevPki> {
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "cruncan email dev CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);
    let server_key = KeyPair::generate()?;
    let mut server = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
    server.distinguished_name.push(DnType::CommonName, "localhost");
    let server_cert = server.signed_by(&server_key, &issuer)?;
    Ok(DevPki { ca_pem: ca_cert.pem(), cert_pem: server_cert.pem(), key_pem: server_key.serialize_pem() })
}
