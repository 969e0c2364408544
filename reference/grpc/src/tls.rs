//! Certificates for the example and the tests, made at start with rcgen: a throw-away CA and a
//! server certificate for `localhost` and `127.0.0.1` signed by it. Nothing secret is committed;
//! in production the certificate comes from your PKI (cert-manager, a mesh, …).

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

/// The server's certificate chain and key, PEM.
#[derive(Clone)]
pub struct ServerTls {
    /// Certificate, PEM.
    pub cert_pem: String,
    /// Private key, PEM (never printed).
    pub key_pem: String,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").field("key_pem", &"[REDACTED]").finish_non_exhaustive()
    }
}

impl ServerTls {
    /// The tonic identity.
    pub fn identity(&self) -> Identity {
        Identity::from_pem(&self.cert_pem, &self.key_pem)
    }
}

/// A CA and a server certificate signed by it.
#[derive(Debug, Clone)]
pub struct DevPki {
    /// The CA certificate, PEM: what clients trust.
    pub ca_pem: String,
    /// The server's certificate and key.
    pub server: ServerTls,
}

// ANCHOR: pki
/// Makes a CA and a server certificate for `localhost` / `127.0.0.1`.
pub fn dev_pki() -> anyhow::Result<DevPki> {
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "cruncan dev CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);

    let server_key = KeyPair::generate()?;
    let mut server = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
    server.distinguished_name.push(DnType::CommonName, "localhost");
    let server_cert = server.signed_by(&server_key, &issuer)?;
    Ok(DevPki {
        ca_pem: ca_cert.pem(),
        server: ServerTls { cert_pem: server_cert.pem(), key_pem: server_key.serialize_pem() },
    })
}
// ANCHOR_END: pki

/// Client TLS trusting `ca_pem`, expecting the server name `localhost`.
pub fn client_tls(ca_pem: &str) -> ClientTlsConfig {
    ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca_pem)).domain_name("localhost")
}
