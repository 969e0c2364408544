//! The name of an outbox table, checked once so that statements can name it.

use std::fmt;
use std::sync::Arc;

/// A table name that is not one or two plain lower-case identifiers.
#[derive(Debug, thiserror::Error)]
#[error("outbox table name {0:?} is not `table` or `schema.table` of lower-case letters, digits and `_`")]
pub struct InvalidTable(String);

/// An outbox table: `outbox`, or `payments.outbox` for a participant with a schema of its own.
///
/// A table name cannot be a bind parameter, so statements are built with it. Only plain
/// identifiers (lower-case ASCII letters, digits, `_`, not starting with a digit, at most 63
/// bytes each) are accepted, so a name can never change what a statement does; statements quote
/// each part (`"payments"."outbox"`), so a reserved word such as `order` works too.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Table {
    name: Arc<str>,
    quoted: Arc<str>,
}

impl Table {
    /// Checks `name`.
    pub fn new(name: &str) -> Result<Self, InvalidTable> {
        let plain = |part: &str| {
            (1..=63).contains(&part.len())
                && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                && !part.as_bytes()[0].is_ascii_digit()
        };
        let parts: Vec<&str> = name.split('.').collect();
        if parts.len() <= 2 && parts.iter().all(|p| plain(p)) {
            let quoted = parts.iter().map(|p| format!("\"{p}\"")).collect::<Vec<_>>().join(".");
            Ok(Self { name: name.into(), quoted: quoted.into() })
        } else {
            Err(InvalidTable(name.to_owned()))
        }
    }

    /// The name, as written in statements.
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// `template` with `{outbox}` replaced by this table's quoted name.
    pub(crate) fn sql(&self, template: &str) -> sqlx::AssertSqlSafe<String> {
        // Safe: the name was checked to be plain identifiers in `Table::new`.
        sqlx::AssertSqlSafe(template.replace("{outbox}", &self.quoted))
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_with_or_without_a_schema_are_accepted() {
        for name in ["outbox", "payments.outbox", "_x.o2", &"a".repeat(63)] {
            assert_eq!(Table::new(name).unwrap().as_str(), name);
        }
    }

    #[test]
    fn anything_that_could_change_a_statement_is_refused() {
        for name in [
            "",
            "a.b.c",
            ".outbox",
            "outbox.",
            "Outbox",
            "1outbox",
            "outbox; DROP TABLE request",
            "\"outbox\"",
            "out box",
            "outbox--",
            "é",
            &"a".repeat(64),
        ] {
            assert!(Table::new(name).is_err(), "{name:?} was accepted");
        }
    }

    #[test]
    fn statements_name_the_table() {
        let t = Table::new("payments.outbox").unwrap();
        assert_eq!(t.sql("SELECT 1 FROM {outbox}").0, r#"SELECT 1 FROM "payments"."outbox""#);
        assert_eq!(Table::new("order").unwrap().sql("{outbox}").0, r#""order""#);
        assert_eq!(t.to_string(), "payments.outbox");
    }
}
