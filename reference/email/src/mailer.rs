//! Sending one email over SMTP with lettre, and the one decision the worker needs from it: was a
//! failure transient (retry later) or permanent (dead-letter now)?

use anyhow::Context as _;
use async_trait::async_trait;
use cruncan_config::ExposeSecret as _;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Mailboxes};
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Tokio1Executor};
use std::time::Duration;

use crate::config::SmtpSettings;
use crate::domain::Email;

/// Why a send failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Worth retrying: connection refused or reset, timeout, an SMTP 4xx reply.
    #[error("transient: {0}")]
    Transient(String),
    /// Retrying cannot help: an SMTP 5xx reply, an address the server refuses, a bad message.
    #[error("permanent: {0}")]
    Permanent(String),
}

/// Sends emails. The worker talks to this trait; tests wrap it to inject faults.
#[async_trait]
pub trait Mailer: Send + Sync + 'static {
    /// Hands `email` to the SMTP server; `Ok` once the server accepted it (250).
    async fn send(&self, email: &Email) -> Result<(), SendError>;
}

/// The lettre SMTP mailer, with a connection pool.
#[derive(Clone)]
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    message_id_domain: String,
}

impl std::fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpMailer").finish_non_exhaustive()
    }
}

impl SmtpMailer {
    /// A mailer for `s.url` (`smtp://`, `smtp://…?tls=required`, `smtps://`).
    pub fn new(s: &SmtpSettings) -> anyhow::Result<Self> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(s.url.expose_secret())
            .context("smtp.url is not a valid SMTP URL")?
            .timeout(Some(s.timeout))
            .pool_config(PoolConfig::new().max_size(s.pool_size).idle_timeout(Duration::from_secs(30)))
            .build();
        Ok(Self { transport, message_id_domain: s.message_id_domain.clone() })
    }

    /// Whether the server answers (readiness).
    pub async fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.transport.test_connection().await?, "SMTP server did not answer NOOP");
        Ok(())
    }
}

// ANCHOR: build_message
/// The RFC 5322 message. `Message-ID` is derived from the email id, so a resend after a crash
/// (the one at-least-once window) carries the same id and receivers can drop the copy.
pub fn build_message(email: &Email, message_id_domain: &str) -> Result<lettre::Message, SendError> {
    let permanent = |what: &str, e: &dyn std::fmt::Display| SendError::Permanent(format!("{what}: {e}"));
    let from: Mailbox = email.from.parse().map_err(|e| permanent("from", &e))?;
    let to: Mailboxes = email
        .to
        .iter()
        .map(|a| a.parse::<Mailbox>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| permanent("to", &e))?
        .into_iter()
        .collect();
    let mut builder = lettre::Message::builder()
        .from(from)
        .subject(email.subject.clone())
        .message_id(Some(format!("<{}@{message_id_domain}>", email.email_id)))
        .header(ContentType::TEXT_PLAIN);
    for mailbox in to {
        builder = builder.to(mailbox);
    }
    builder.body(email.message.clone()).map_err(|e| permanent("message", &e))
}
// ANCHOR_END: build_message

// ANCHOR: classify
#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, email: &Email) -> Result<(), SendError> {
        let message = build_message(email, &self.message_id_domain)?;
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            // 5xx: the server will say the same next time.
            Err(e) if e.is_permanent() => Err(SendError::Permanent(e.to_string())),
            // 4xx, refused or reset connections, timeouts, TLS hiccups: try again later.
            Err(e) => Err(SendError::Transient(format!("{e}: {}", source_chain(&e)))),
        }
    }
}
// ANCHOR_END: classify

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut parts = Vec::new();
    let mut source = e.source();
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    parts.join(": ")
}
