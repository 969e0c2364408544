//! The email as the rest of the service sees it: validated types made once at the edge (REST or
//! gRPC), so the use cases, the store and the worker never see an unchecked string.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// Most recipients one email may have.
pub const MAX_RECIPIENTS: usize = 50;
/// Longest subject, in characters (RFC 5322's line limit).
pub const MAX_SUBJECT_CHARS: usize = 998;
/// Largest message body, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// A field that failed validation; the message names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    /// JSON path of the field, e.g. `to[3]`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl ValidationError {
    /// An error for `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

/// An email's id: a UUID v7, so ids sort by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EmailId(pub uuid::Uuid);

impl EmailId {
    /// A new, time-ordered id.
    pub fn new() -> Self {
        Self(uuid::Uuid::now_v7())
    }
}

impl Default for EmailId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for EmailId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for EmailId {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        uuid::Uuid::try_parse(s).map(Self).map_err(|_| ValidationError::new("email_id", "must be a UUID"))
    }
}

// ANCHOR: address
/// A mailbox address (`local@domain`) that lettre, our SMTP client, accepts: RFC 5321 syntax,
/// no display name, no whitespace or control characters (so no header injection), ≤ 254 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address(lettre::Address);

impl Address {
    /// Parses `raw`; `field` names it in the error.
    pub fn parse(field: &str, raw: &str) -> Result<Self, ValidationError> {
        if raw.is_empty() {
            return Err(ValidationError::new(field, "must not be empty"));
        }
        if raw.len() > 254 {
            return Err(ValidationError::new(field, "must be at most 254 bytes"));
        }
        if raw.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(ValidationError::new(field, "must not contain spaces or control characters"));
        }
        raw.parse::<lettre::Address>()
            .map(Self)
            .map_err(|e| ValidationError::new(field, format!("is not an email address ({e})")))
    }
}
// ANCHOR_END: address

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.as_ref())
    }
}

/// A subject line: ≤ 998 characters, no CR, LF or other control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject(String);

impl Subject {
    /// Validates `raw`.
    pub fn parse(raw: String) -> Result<Self, ValidationError> {
        if raw.chars().count() > MAX_SUBJECT_CHARS {
            return Err(ValidationError::new(
                "subject",
                format!("must be at most {MAX_SUBJECT_CHARS} characters"),
            ));
        }
        if raw.chars().any(char::is_control) {
            return Err(ValidationError::new(
                "subject",
                "must not contain CR, LF or other control characters",
            ));
        }
        Ok(Self(raw))
    }
}

/// A plain-text body: ≤ 256 KiB, no NUL (PostgreSQL text cannot hold one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message(String);

impl Message {
    /// Validates `raw`.
    pub fn parse(raw: String) -> Result<Self, ValidationError> {
        if raw.len() > MAX_MESSAGE_BYTES {
            return Err(ValidationError::new(
                "message",
                format!("must be at most {MAX_MESSAGE_BYTES} bytes"),
            ));
        }
        if raw.contains('\0') {
            return Err(ValidationError::new("message", "must not contain NUL characters"));
        }
        Ok(Self(raw))
    }
}

/// The create request as it arrives (REST JSON or gRPC), before validation.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
pub struct CreateEmail {
    /// Sender address.
    #[schema(example = "alerts@example.com")]
    pub from: String,
    /// 1 to 50 recipient addresses.
    #[schema(example = json!(["alice@example.com"]))]
    pub to: Vec<String>,
    /// Subject line, at most 998 characters, no line breaks.
    pub subject: String,
    /// Plain-text body, at most 256 KiB.
    pub message: String,
}

// ANCHOR: new_email
/// A create request that passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEmail {
    /// Sender.
    pub from: Address,
    /// 1..=50 recipients.
    pub to: Vec<Address>,
    /// Subject.
    pub subject: Subject,
    /// Body.
    pub message: Message,
}

impl CreateEmail {
    /// Checks every field; the error names the first that fails.
    pub fn validate(self) -> Result<NewEmail, ValidationError> {
        let from = Address::parse("from", &self.from)?;
        if self.to.is_empty() || self.to.len() > MAX_RECIPIENTS {
            return Err(ValidationError::new("to", format!("must list 1 to {MAX_RECIPIENTS} addresses")));
        }
        let to = self
            .to
            .iter()
            .enumerate()
            .map(|(i, raw)| Address::parse(&format!("to[{i}]"), raw))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(NewEmail {
            from,
            to,
            subject: Subject::parse(self.subject)?,
            message: Message::parse(self.message)?,
        })
    }
}
// ANCHOR_END: new_email

impl NewEmail {
    /// Sender as text.
    pub fn sender(&self) -> String {
        self.from.to_string()
    }
    /// Recipients as text.
    pub fn recipients(&self) -> Vec<String> {
        self.to.iter().map(ToString::to_string).collect()
    }
    /// Subject as text.
    pub fn subject(&self) -> &str {
        &self.subject.0
    }
    /// Body as text.
    pub fn message(&self) -> &str {
        &self.message.0
    }
}

/// Where an email is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Accepted, not yet accepted by the SMTP server.
    Queued,
    /// The SMTP server accepted it.
    Sent,
    /// Given up: a permanent SMTP error or too many attempts (see the dead-letter subject).
    Failed,
}

impl Status {
    /// The column value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Sent => "sent",
            Self::Failed => "failed",
        }
    }
}

impl FromStr for Status {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "queued" => Ok(Self::Queued),
            "sent" => Ok(Self::Sent),
            "failed" => Ok(Self::Failed),
            other => anyhow::bail!("unknown email status {other:?}"),
        }
    }
}

/// A stored email, as reads return it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Email {
    /// UUID v7.
    #[schema(value_type = String)]
    pub email_id: EmailId,
    /// Sender.
    pub from: String,
    /// Recipients.
    pub to: Vec<String>,
    /// Subject.
    pub subject: String,
    /// Body.
    pub message: String,
    /// queued, sent or failed.
    pub status: Status,
    /// SMTP attempts so far.
    pub attempts: u32,
    /// When it was accepted.
    pub created_at: DateTime<Utc>,
    /// When the SMTP server accepted it.
    pub sent_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(from: &str, to: &[&str], subject: &str, message: &str) -> CreateEmail {
        CreateEmail {
            from: from.into(),
            to: to.iter().map(|s| (*s).to_owned()).collect(),
            subject: subject.into(),
            message: message.into(),
        }
    }

    #[test]
    fn a_good_email_passes() {
        let ok = body("a@example.com", &["b@example.com", "c@sub.example.org"], "Hi", "Hello\nthere");
        let new = ok.validate().unwrap();
        assert_eq!(new.recipients(), ["b@example.com", "c@sub.example.org"]);
    }

    #[test]
    fn each_bad_field_is_named() {
        let many: Vec<String> = (0..51).map(|i| format!("u{i}@example.com")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let long_subject = "x".repeat(999);
        let big = "x".repeat(MAX_MESSAGE_BYTES + 1);
        let cases = [
            (body("not-an-address", &["b@example.com"], "s", "m"), "from"),
            (body("a@example.com\r\nBcc: x@evil.com", &["b@example.com"], "s", "m"), "from"),
            (body("a@example.com", &[], "s", "m"), "to"),
            (body("a@example.com", &many, "s", "m"), "to"),
            (body("a@example.com", &["b@example.com", "Eve <e@x.com>"], "s", "m"), "to[1]"),
            (body("a@example.com", &["b@example.com"], "Hi\r\nBcc: x@evil.com", "m"), "subject"),
            (body("a@example.com", &["b@example.com"], &long_subject, "m"), "subject"),
            (body("a@example.com", &["b@example.com"], "s", &big), "message"),
            (body("a@example.com", &["b@example.com"], "s", "nul\0"), "message"),
        ];
        for (input, field) in cases {
            let err = input.clone().validate().unwrap_err();
            assert_eq!(err.field, field, "{input:?}: {err}");
        }
    }

    #[test]
    fn ids_are_uuid_v7_and_parse_back() {
        let id = EmailId::new();
        assert_eq!(id.0.get_version_num(), 7);
        assert_eq!(id.to_string().parse::<EmailId>().unwrap(), id);
        assert_eq!("nope".parse::<EmailId>().unwrap_err().field, "email_id");
    }
}
