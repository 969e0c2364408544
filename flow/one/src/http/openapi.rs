//! The OpenAPI document served at `/openapi.json`: generated from the handlers and types, then
//! given the limits this instance enforces, so the document is the contract the service checks
//! (a schema-valid request is accepted; anything the service refuses is outside the schema).

use super::handlers::{__path_create_request, __path_get_request, StoredBody};
use crate::config::Limits;
use crate::domain::CreatedBody;
use cruncan_http::ErrorBody;
use cruncan_model::{DataEntry, OneRequest};
use utoipa::OpenApi as _;
use utoipa::openapi::schema::Schema;
use utoipa::openapi::{OpenApi, RefOr};

// ANCHOR: api_doc
/// The OpenAPI document of service one (without the configured limits: see [`document`]).
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "cruncan service one", description = "Accepts requests and publishes them to Kafka."),
    paths(create_request, get_request),
    components(schemas(OneRequest, DataEntry, CreatedBody, StoredBody, ErrorBody))
)]
pub struct ApiDoc;

/// Text with a character that is neither NUL (PostgreSQL cannot store U+0000) nor white space.
/// The white space is spelled out: it is exactly what Rust's `char::is_whitespace` (used by the
/// validation's `trim`) counts, where a regex's `\s` differs between dialects (U+0085, U+FEFF).
const NOT_BLANK: &str = concat!(
    "^[^\\u0000]*",
    "[^\\u0000\\t\\n\\u000b\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]",
    "[^\\u0000]*$"
);
/// Text without NUL.
const NO_NUL: &str = "^[^\\u0000]*$";

/// [`ApiDoc`] with `limits` as `minLength`, `maxLength`, `maxItems` and patterns.
pub fn document(limits: &Limits) -> OpenApi {
    let mut doc = ApiDoc::openapi();
    if let Some(components) = doc.components.as_mut() {
        let schemas = &mut components.schemas;
        constrain(schemas, "OneRequest", "user_id", limits.max_user_id_len, NOT_BLANK);
        constrain(schemas, "OneRequest", "prompt", limits.max_prompt_len, NOT_BLANK);
        constrain(schemas, "DataEntry", "key", limits.max_data_key_len, NOT_BLANK);
        constrain(schemas, "DataEntry", "value", limits.max_data_value_len, NO_NUL);
        if let Some(RefOr::T(Schema::Object(request))) = schemas.get_mut("OneRequest")
            && let Some(RefOr::T(Schema::Array(data))) = request.properties.get_mut("data")
        {
            data.max_items = Some(limits.max_data_entries);
        }
    }
    doc
}
// ANCHOR_END: api_doc

fn constrain(
    schemas: &mut std::collections::BTreeMap<String, RefOr<Schema>>,
    schema: &str,
    field: &str,
    max: usize,
    pattern: &str,
) {
    if let Some(RefOr::T(Schema::Object(object))) = schemas.get_mut(schema)
        && let Some(RefOr::T(Schema::Object(property))) = object.properties.get_mut(field)
    {
        property.max_length = Some(max);
        property.min_length = Some(usize::from(pattern == NOT_BLANK));
        property.pattern = Some(pattern.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_carries_the_configured_limits() {
        let limits = Limits {
            max_user_id_len: 7,
            max_prompt_len: 8,
            max_data_entries: 9,
            max_data_key_len: 10,
            max_data_value_len: 11,
        };
        let json = serde_json::to_value(document(&limits)).unwrap();
        let s = &json["components"]["schemas"];
        assert_eq!(s["OneRequest"]["properties"]["user_id"]["maxLength"], 7);
        assert_eq!(s["OneRequest"]["properties"]["user_id"]["minLength"], 1);
        assert_eq!(s["OneRequest"]["properties"]["prompt"]["maxLength"], 8);
        assert_eq!(s["OneRequest"]["properties"]["data"]["maxItems"], 9);
        assert_eq!(s["DataEntry"]["properties"]["key"]["maxLength"], 10);
        assert_eq!(s["DataEntry"]["properties"]["value"]["maxLength"], 11);
        assert_eq!(s["DataEntry"]["properties"]["value"]["pattern"], NO_NUL);
    }
}
