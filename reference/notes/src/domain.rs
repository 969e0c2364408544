//! The validated types that travel past the edges. Each parses from the raw JSON value (serde's
//! `try_from`), so a bad field is a 400 naming it, and inner code never re-checks.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A user's id (UUID v7, made by the user service).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, sqlx::Type)]
#[serde(transparent)]
#[sqlx(transparent)]
pub struct UserId(pub Uuid);

/// A note's id (UUID v7, made by the notes service).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[serde(transparent)]
#[sqlx(transparent)]
pub struct NoteId(pub Uuid);

impl std::fmt::Display for UserId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::fmt::Display for NoteId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for UserId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

/// A user name: 1–32 characters of `a-z`, `0-9`, `-`, `_` (it is also the sign-in name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserName(String);

impl TryFrom<String> for UserName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if s.is_empty() || s.len() > 32 {
            return Err("must be 1 to 32 characters".into());
        }
        if !s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_') {
            return Err("may contain only a-z, 0-9, '-' and '_'".into());
        }
        Ok(Self(s))
    }
}

impl From<UserName> for String {
    fn from(n: UserName) -> Self {
        n.0
    }
}

impl UserName {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A note title: 1–200 characters after trimming.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Title(String);

impl TryFrom<String> for Title {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let t = s.trim();
        match t.chars().count() {
            0 => Err("must not be empty".into()),
            n if n > 200 => Err("must be at most 200 characters".into()),
            _ => Ok(Self(t.to_owned())),
        }
    }
}

impl From<Title> for String {
    fn from(t: Title) -> Self {
        t.0
    }
}

impl Title {
    /// The title.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Largest note body, in bytes: every change of a note travels whole in its event.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A note body: at most [`MAX_BODY_BYTES`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Body(String);

impl TryFrom<String> for Body {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if s.len() > MAX_BODY_BYTES {
            return Err(format!("must be at most {MAX_BODY_BYTES} bytes"));
        }
        Ok(Self(s))
    }
}

impl From<Body> for String {
    fn from(b: Body) -> Self {
        b.0
    }
}

impl Body {
    /// The body.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A note version as a client sends it back: at least 1 (a new note has version 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct Version(i64);

impl TryFrom<i64> for Version {
    type Error = String;
    fn try_from(v: i64) -> Result<Self, String> {
        if v < 1 { Err("must be at least 1".into()) } else { Ok(Self(v)) }
    }
}

impl From<Version> for i64 {
    fn from(v: Version) -> Self {
        v.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_are_checked() {
        assert!(UserName::try_from("alice_1-b".to_owned()).is_ok());
        for bad in ["", "Alice", "a b", "ü", &"x".repeat(33)] {
            assert!(UserName::try_from(bad.to_owned()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn titles_are_trimmed_and_bounded() {
        assert_eq!(Title::try_from("  hi ".to_owned()).map(String::from), Ok("hi".to_owned()));
        assert!(Title::try_from("   ".to_owned()).is_err());
        assert!(Title::try_from("é".repeat(200)).is_ok());
        assert!(Title::try_from("é".repeat(201)).is_err());
    }

    #[test]
    fn bodies_and_versions_are_bounded() {
        assert!(Body::try_from("x".repeat(MAX_BODY_BYTES)).is_ok());
        assert!(Body::try_from("x".repeat(MAX_BODY_BYTES + 1)).is_err());
        assert!(Version::try_from(0).is_err());
        assert_eq!(Version::try_from(3).map(i64::from), Ok(3));
    }
}
