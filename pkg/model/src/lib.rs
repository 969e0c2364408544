//! The shapes that cross service boundaries: what a client sends to one, and the event one
//! publishes and two consumes. One definition, used by both services, so they cannot drift.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Default topic one publishes to and two consumes from.
pub const DEFAULT_TOPIC: &str = "one-request-local";

// ANCHOR: one_request
/// One key/value entry of a request's `data`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DataEntry {
    /// Entry name.
    pub key: String,
    /// Entry value.
    pub value: String,
}

/// The body of `POST /one` as it is stored and forwarded (after validation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OneRequest {
    /// Who asked.
    pub user_id: String,
    /// What was asked.
    pub prompt: String,
    /// Extra key/value data.
    #[serde(default)]
    pub data: Vec<DataEntry>,
}
// ANCHOR_END: one_request

// ANCHOR: event
/// The Kafka event value: the request, its id and when it was accepted. On the wire the
/// request's fields sit beside `request_id` and `created_at` (one flat object).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OneRequestEvent {
    /// Snowflake id, 20 zero-padded digits.
    pub request_id: String,
    /// The request as accepted.
    #[serde(flatten)]
    pub request: OneRequest,
    /// When one accepted the request.
    pub created_at: DateTime<Utc>,
}
// ANCHOR_END: event

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_wire_shape_is_stable() {
        let event = OneRequestEvent {
            request_id: "00000000000000000042".into(),
            request: OneRequest {
                user_id: "u1".into(),
                prompt: "hello".into(),
                data: vec![DataEntry { key: "k".into(), value: "v".into() }],
            },
            created_at: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "request_id": "00000000000000000042",
                "user_id": "u1",
                "prompt": "hello",
                "data": [{"key": "k", "value": "v"}],
                "created_at": "2023-11-14T22:13:20Z"
            })
        );
        let back: OneRequestEvent = serde_json::from_value(json).unwrap();
        assert_eq!(back, event);
    }
}

// ANCHOR: three_request
/// The body two posts to the third party's `POST /three`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreeRequest {
    /// The request id (also sent as `Idempotency-Key`).
    pub id: String,
    /// Where the request came from (topic, partition, offset), for the third party's support.
    pub metadata: String,
    /// The request as the client sent it.
    pub one_request: OneRequest,
}
// ANCHOR_END: three_request
