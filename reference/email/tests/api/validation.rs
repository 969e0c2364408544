//! Hostile bodies: every one is a 4xx naming the field, never a 5xx, and nothing is stored.

use crate::helpers::*;
use serde_json::{Value, json};

#[tokio::test]
async fn hostile_bodies_are_4xx_naming_the_field() {
    let app = spawn_app(Options { workers: 0, ..Options::default() }).await;
    let ok = new_email("fine");
    let with = |field: &str, value: Value| {
        let mut body = ok.clone();
        body[field] = value;
        body
    };
    let many: Vec<String> = (0..51).map(|i| format!("user{i}@example.com")).collect();
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        ("CRLF in subject", with("subject", json!("Hi\r\nBcc: victim@example.com")), 400, "subject"),
        ("LF in subject", with("subject", json!("Hi\nX-Evil: 1")), 400, "subject"),
        ("subject over 998", with("subject", json!("s".repeat(999))), 400, "subject"),
        ("51 recipients", with("to", json!(many)), 400, "to"),
        ("no recipients", with("to", json!([])), 400, "to"),
        ("to not a list", with("to", json!("alice@example.com")), 400, "to"),
        ("bad recipient", with("to", json!(["alice@example.com", "not an address"])), 400, "to[1]"),
        ("display name", with("to", json!(["Eve <eve@example.com>"])), 400, "to[0]"),
        ("header in from", with("from", json!("a@example.com\r\nBcc: x@example.com")), 400, "from"),
        ("no domain", with("from", json!("sender@")), 400, "from"),
        ("NUL in message", with("message", json!("a\u{0}b")), 400, "message"),
        ("message over 256 KiB", with("message", json!("m".repeat(256 * 1024 + 1))), 400, "message"),
        (
            "missing field",
            json!({"from": "a@example.com", "to": ["b@example.com"], "subject": "s"}),
            400,
            "message",
        ),
        ("wrong type", with("subject", json!(42)), 400, "subject"),
    ];
    for (name, body, status, field) in cases {
        let r = app.post(&body).await;
        assert_eq!(r.status().as_u16(), status, "{name}");
        let err: Value = r.json().await.unwrap();
        assert_eq!(err["code"], "validation_failed", "{name}: {err}");
        let message = err["detail"].as_str().unwrap();
        assert!(message.starts_with(&format!("{field}:")) || message.contains(field), "{name}: {message}");
    }

    // Not JSON, the wrong media type, 10 MB.
    let raw = |body: Vec<u8>, ct: &'static str| {
        app.http.post(format!("{}/api/v1/email", app.base)).header("content-type", ct).body(body).send()
    };
    assert_eq!(raw(b"{not json".to_vec(), "application/json").await.unwrap().status(), 400);
    assert_eq!(raw(b"from=a".to_vec(), "application/x-www-form-urlencoded").await.unwrap().status(), 415);
    let ten_mb = serde_json::to_vec(&with("message", json!("x".repeat(10 << 20)))).unwrap();
    let r = raw(ten_mb, "application/json").await.unwrap();
    assert_eq!(r.status(), 413);

    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM email").fetch_one(&app.pool).await.unwrap();
    assert_eq!(stored, 0, "nothing hostile was stored");
    app.stop().await;
}
