use crate::helpers::spawn_app;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_the_right_status_a_json_error_and_writes_nothing() {
    let app = spawn_app().await;
    let long = |n: usize| "x".repeat(n);
    let many: Vec<_> = (0..101).map(|i| json!({"key": format!("k{i}"), "value": "v"})).collect();
    let cases: Vec<(&str, &str, String, u16, &str, &str)> = vec![
        // (case, content type, body, status, code, message must contain)
        (
            "malformed JSON",
            "application/json",
            "{\"user_id\": ".into(),
            400,
            "malformed_json",
            "not valid JSON",
        ),
        ("not an object", "application/json", "[1,2]".into(), 400, "validation_failed", "JSON object"),
        (
            "the struct's fields as an array",
            "application/json",
            r#"["u","p",[]]"#.into(),
            400,
            "validation_failed",
            "JSON object",
        ),
        (
            "NUL in a string",
            "application/json",
            r#"{"user_id":"u","prompt":"a\u0000b"}"#.into(),
            400,
            "validation_failed",
            "NUL",
        ),
        (
            "a duplicate key",
            "application/json",
            r#"{"user_id":"u","prompt":"p","user_id":"v"}"#.into(),
            400,
            "validation_failed",
            "duplicate field",
        ),
        (
            "wrong type",
            "application/json",
            json!({"user_id": 5, "prompt": "p"}).to_string(),
            400,
            "validation_failed",
            "user_id",
        ),
        (
            "wrong data type",
            "application/json",
            json!({"user_id": "u", "prompt": "p", "data": "x"}).to_string(),
            400,
            "validation_failed",
            "data",
        ),
        (
            "missing user_id",
            "application/json",
            json!({"prompt": "p"}).to_string(),
            400,
            "validation_failed",
            "user_id",
        ),
        (
            "missing prompt",
            "application/json",
            json!({"user_id": "u"}).to_string(),
            400,
            "validation_failed",
            "prompt",
        ),
        (
            "empty user_id",
            "application/json",
            json!({"user_id": "", "prompt": "p"}).to_string(),
            400,
            "validation_failed",
            "user_id",
        ),
        (
            "blank prompt",
            "application/json",
            json!({"user_id": "u", "prompt": "  "}).to_string(),
            400,
            "validation_failed",
            "prompt",
        ),
        (
            "user_id too long",
            "application/json",
            json!({"user_id": long(129), "prompt": "p"}).to_string(),
            400,
            "validation_failed",
            "user_id",
        ),
        (
            "prompt too long",
            "application/json",
            json!({"user_id": "u", "prompt": long(16385)}).to_string(),
            400,
            "validation_failed",
            "prompt",
        ),
        (
            "too many data entries",
            "application/json",
            json!({"user_id": "u", "prompt": "p", "data": many}).to_string(),
            400,
            "validation_failed",
            "data",
        ),
        (
            "data value too long",
            "application/json",
            json!({"user_id": "u", "prompt": "p", "data": [{"key": "k", "value": long(4097)}]}).to_string(),
            400,
            "validation_failed",
            "data[0].value",
        ),
        (
            "body over 1 MiB",
            "application/json",
            json!({"user_id": "u", "prompt": long(1_100_000)}).to_string(),
            413,
            "payload_too_large",
            "larger than",
        ),
        (
            "text/plain",
            "text/plain",
            json!({"user_id": "u", "prompt": "p"}).to_string(),
            415,
            "unsupported_media_type",
            "application/json",
        ),
        (
            "form",
            "application/x-www-form-urlencoded",
            "user_id=u&prompt=p".into(),
            415,
            "unsupported_media_type",
            "application/json",
        ),
    ];
    for (case, ct, body, status, code, needle) in cases {
        let resp = app.post_raw(ct, body, &[]).await;
        assert_eq!(resp.status().as_u16(), status, "{case}");
        assert_eq!(resp.headers()["content-type"], "application/problem+json", "{case}");
        let err: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(err["code"], code, "{case}: {err}");
        let message = err["detail"].as_str().unwrap();
        assert!(message.contains(needle), "{case}: message {message:?} should mention {needle:?}");
    }

    let unknown = app.get("/nope").await;
    assert_eq!(unknown.status(), 404);
    assert_eq!(unknown.json::<serde_json::Value>().await.unwrap()["code"], "not_found");

    let wrong_method = app.client.delete(format!("{}/one", app.base)).send().await.unwrap();
    assert_eq!(wrong_method.status(), 405);
    assert_eq!(wrong_method.headers()["allow"], "POST");
    assert_eq!(wrong_method.json::<serde_json::Value>().await.unwrap()["code"], "method_not_allowed");

    // Unknown fields are ignored, not rejected.
    let extra = app.post_one(&json!({"user_id": "u", "prompt": "p", "colour": "blue"})).await;
    assert_eq!(extra.status(), 201);

    // Nothing but the one valid request was written.
    assert_eq!(app.count("request").await, 1);
    assert_eq!(app.count("outbox").await, 1);
    app.stop().await;
}
