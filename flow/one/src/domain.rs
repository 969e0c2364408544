//! Parse, don't validate: the JSON body becomes a [`NewRequest`] at the edge, or a
//! [`ValidationError`] naming the field; inner code only ever sees valid requests.

use crate::config::Limits;
use cruncan_model::OneRequest;

// ANCHOR: created_body
/// The body of `201 Created`: the handler sends it, an idempotency key stores it, the OpenAPI
/// document describes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct CreatedBody {
    /// The Snowflake id, 20 zero-padded digits.
    #[schema(pattern = "^0[0-9]{19}$")]
    pub request_id: String,
}
// ANCHOR_END: created_body

/// A field that failed validation, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    /// JSON path of the field, e.g. `data[3].value`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

/// A request that passed validation: the only form of a request past the HTTP edge (the
/// repository and the outbox take nothing else).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRequest(OneRequest);

impl NewRequest {
    /// The validated request.
    pub fn as_request(&self) -> &OneRequest {
        &self.0
    }
}

// ANCHOR: validate
impl NewRequest {
    /// Checks a request as sent (`OneRequest`, the one definition of its shape) against `limits`.
    pub fn parse(body: OneRequest, limits: &Limits) -> Result<Self, ValidationError> {
        let err = |field: &str, message: String| ValidationError { field: field.to_owned(), message };
        let check = |field: &str, value: &str, max: usize, required: bool| {
            if required && value.trim().is_empty() {
                return Err(err(field, "must not be empty".into()));
            }
            // Valid JSON, but PostgreSQL cannot store U+0000 in text or jsonb: refuse it here,
            // by name, instead of failing in the database with a 500.
            if value.contains('\0') {
                return Err(err(field, "must not contain the NUL character (\\u0000)".into()));
            }
            let len = value.chars().count();
            if len > max {
                return Err(err(field, format!("must be at most {max} characters, got {len}")));
            }
            Ok(())
        };
        check("user_id", &body.user_id, limits.max_user_id_len, true)?;
        check("prompt", &body.prompt, limits.max_prompt_len, true)?;
        if body.data.len() > limits.max_data_entries {
            return Err(err(
                "data",
                format!("must have at most {} entries, got {}", limits.max_data_entries, body.data.len()),
            ));
        }
        for (i, entry) in body.data.iter().enumerate() {
            check(&format!("data[{i}].key"), &entry.key, limits.max_data_key_len, true)?;
            check(&format!("data[{i}].value"), &entry.value, limits.max_data_value_len, false)?;
        }
        Ok(NewRequest(body))
    }
}
// ANCHOR_END: validate

#[cfg(test)]
mod tests {
    use super::*;
    use cruncan_model::DataEntry;

    fn limits() -> Limits {
        Limits {
            max_user_id_len: 5,
            max_prompt_len: 10,
            max_data_entries: 2,
            max_data_key_len: 3,
            max_data_value_len: 4,
        }
    }

    fn body(user_id: &str, prompt: &str, data: &[(&str, &str)]) -> OneRequest {
        OneRequest {
            user_id: user_id.into(),
            prompt: prompt.into(),
            data: data.iter().map(|(k, v)| DataEntry { key: (*k).into(), value: (*v).into() }).collect(),
        }
    }

    #[test]
    fn table_of_invalid_bodies_names_the_field() {
        let cases = [
            (body("", "p", &[]), "user_id", "must not be empty"),
            (body("   ", "p", &[]), "user_id", "must not be empty"),
            (body("u", "", &[]), "prompt", "must not be empty"),
            (body("toolong", "p", &[]), "user_id", "at most 5"),
            (body("u", "01234567890", &[]), "prompt", "at most 10"),
            (body("u", "p", &[("a", "b"), ("c", "d"), ("e", "f")]), "data", "at most 2 entries"),
            (body("u", "p", &[("a", "b"), ("", "d")]), "data[1].key", "must not be empty"),
            (body("u", "p", &[("abcd", "b")]), "data[0].key", "at most 3"),
            (body("u", "p", &[("a", "12345")]), "data[0].value", "at most 4"),
            (body("u\0", "p", &[]), "user_id", "NUL"),
            (body("u", "p\0q", &[]), "prompt", "NUL"),
            (body("u", "p", &[("k", "\0")]), "data[0].value", "NUL"),
        ];
        for (b, field, msg) in cases {
            let e = NewRequest::parse(b.clone(), &limits()).unwrap_err();
            assert_eq!(e.field, field, "{b:?}");
            assert!(e.message.contains(msg), "{b:?}: {}", e.message);
        }
    }

    #[test]
    fn limits_count_characters_not_bytes_and_empty_values_are_fine() {
        let ok = NewRequest::parse(body("ééééé", "p", &[("k", "")]), &limits()).unwrap();
        assert_eq!(ok.as_request().user_id, "ééééé");
    }
}
