//! Steps about service one alone: posting, validation, idempotency, storage and publishing.

use crate::world::*;
use cruncan_testkit::{read_topic, unique_name};
use cucumber::{given, then, when};
use std::collections::BTreeSet;
use std::time::Duration;

#[given("service one is running")]
pub(crate) async fn one_running(w: &mut FlowWorld) {
    w.start_one(&unique_name("bdd-one")).await;
}

#[when("a client posts a valid request")]
pub(crate) async fn post_valid(w: &mut FlowWorld) {
    w.post("application/json", valid_body().to_string(), None).await;
}

pub(crate) fn valid_body() -> serde_json::Value {
    serde_json::json!({"user_id": "bdd-user", "prompt": "hello from cucumber", "data": [{"key": "lang", "value": "en"}]})
}

#[then("the response is 201 with a request id and its location")]
pub(crate) async fn created(w: &mut FlowWorld) {
    let (status, body) = w.responses.last().cloned().unwrap();
    assert_eq!(status, 201, "expected 201, saw {status}: {body}");
    let id = body["request_id"].as_str().unwrap_or_else(|| panic!("no request_id in {body}"));
    assert!(id.len() == 20 && id.bytes().all(|b| b.is_ascii_digit()), "expected a 20-digit id, saw {id:?}");
    assert_eq!(body["__location"], format!("/one/{id}"), "expected Location /one/{id}");
}

#[then("the request is stored in PostgreSQL")]
pub(crate) async fn stored(w: &mut FlowWorld) {
    let id = w.request_ids.last().cloned().unwrap();
    let n = w.count("SELECT count(*) FROM request WHERE req_id = $1", Some(&id)).await;
    assert_eq!(n, 1, "expected one row for {id}, saw {n}");
}

#[then("exactly one message keyed by the request id is published")]
pub(crate) async fn published_once(w: &mut FlowWorld) {
    let id = w.request_ids.last().cloned().unwrap();
    let records =
        read_topic(&w.one().settings.kafka.topic, 1, Duration::from_secs(30), Duration::from_secs(1)).await;
    let keys: Vec<&str> = records.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, [id.as_str()], "expected exactly one message keyed {id}, saw {keys:?}");
}

#[when(expr = "a client posts the {string} body")]
pub(crate) async fn post_case(w: &mut FlowWorld, case: String) {
    let long = |n: usize| "x".repeat(n);
    let (ct, body) = match case.as_str() {
        "malformed JSON" => ("application/json", "{\"user_id\":".to_owned()),
        "wrong type" => ("application/json", serde_json::json!({"user_id": 42, "prompt": "p"}).to_string()),
        "missing prompt" => ("application/json", serde_json::json!({"user_id": "u"}).to_string()),
        "empty user_id" => {
            ("application/json", serde_json::json!({"user_id": "", "prompt": "p"}).to_string())
        }
        "user_id too long" => {
            ("application/json", serde_json::json!({"user_id": long(200), "prompt": "p"}).to_string())
        }
        "too many data entries" => {
            let data: Vec<_> =
                (0..101).map(|i| serde_json::json!({"key": format!("k{i}"), "value": "v"})).collect();
            ("application/json", serde_json::json!({"user_id": "u", "prompt": "p", "data": data}).to_string())
        }
        "body over the limit" => {
            ("application/json", serde_json::json!({"user_id": "u", "prompt": long(1 << 21)}).to_string())
        }
        "text/plain" => ("text/plain", valid_body().to_string()),
        other => panic!("no body defined for case {other:?}"),
    };
    w.post(ct, body, None).await;
}

#[then(expr = "the response is {int} with error code {string}")]
pub(crate) async fn error_response(w: &mut FlowWorld, status: u16, code: String) {
    let (got, body) = w.responses.last().cloned().unwrap();
    assert_eq!(got, status, "expected status {status}, saw {got}: {body}");
    assert_eq!(body["code"], code.as_str(), "expected error code {code:?}, saw {body}");
    assert!(body["detail"].as_str().is_some_and(|m| !m.is_empty()), "expected a message, saw {body}");
}

#[then("nothing is stored or published")]
pub(crate) async fn nothing_written(w: &mut FlowWorld) {
    let rows = w.count("SELECT count(*) FROM request", None).await;
    let outbox = w.count("SELECT count(*) FROM outbox", None).await;
    assert_eq!((rows, outbox), (0, 0), "expected no request and no outbox row, saw {rows} and {outbox}");
}

#[when(expr = "a client posts a valid request with idempotency key {string}")]
pub(crate) async fn post_with_key(w: &mut FlowWorld, key: String) {
    w.post("application/json", valid_body().to_string(), Some(&key)).await;
}

#[when(expr = "the client posts the same request with idempotency key {string} again")]
pub(crate) async fn post_again(w: &mut FlowWorld, key: String) {
    w.post("application/json", valid_body().to_string(), Some(&key)).await;
}

#[then("both responses carry the same request id")]
pub(crate) async fn same_id(w: &mut FlowWorld) {
    let statuses: Vec<u16> = w.responses.iter().map(|r| r.0).collect();
    assert_eq!(statuses, [201, 201], "expected two 201s, saw {statuses:?}");
    let ids: BTreeSet<&String> = w.request_ids.iter().collect();
    assert_eq!(ids.len(), 1, "expected one id for both, saw {ids:?}");
}

#[then("exactly one request is stored")]
pub(crate) async fn one_stored(w: &mut FlowWorld) {
    let rows = w.count("SELECT count(*) FROM request", None).await;
    assert_eq!(rows, 1, "expected one row, saw {rows}");
}
