use crate::helpers::{json_of, spawn_system};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn users_create_get_and_validate() {
    let sys = spawn_system().await;
    let id = sys.user().await;
    let (status, user) =
        json_of(sys.client.get(format!("{}/users/{id}", sys.users.base)).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((user["name"].as_str(), user["active"].as_bool()), (Some("Ada"), Some(true)));
    let (status, v) =
        json_of(sys.client.get(format!("{}/users/{id}/validate", sys.users.base)).send().await.unwrap())
            .await;
    assert_eq!((status, v), (StatusCode::OK, json!({"valid": true})));
}

#[tokio::test]
async fn users_duplicate_email_is_409_whatever_its_case() {
    let sys = spawn_system().await;
    let post = |email: &str| {
        sys.client
            .post(format!("{}/users", sys.users.base))
            .json(&json!({"email": email, "name": "A"}))
            .send()
    };
    assert_eq!(post("Same@Example.com").await.unwrap().status(), StatusCode::CREATED);
    let (status, body) = json_of(post("same@example.com").await.unwrap()).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::CONFLICT, Some("email_taken")));
}

#[tokio::test]
async fn users_bad_input_is_400_naming_the_field_and_unknown_is_404() {
    let sys = spawn_system().await;
    let base = &sys.users.base;
    for (body, field) in [
        (json!({"email": "nope", "name": "A"}), "email"),
        (json!({"email": "a@b.io", "name": " "}), "name"),
        (json!({"email": "a@b.io"}), "name"),
        (json!({"email": 7, "name": "A"}), "email"),
    ] {
        let (status, err) =
            json_of(sys.client.post(format!("{base}/users")).json(&body).send().await.unwrap()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(err["detail"].as_str().unwrap().contains(field), "{err}");
    }
    let r = sys.client.post(format!("{base}/users")).header("content-type", "application/json").body("{");
    assert_eq!(r.send().await.unwrap().status(), StatusCode::BAD_REQUEST);
    let r = sys.client.post(format!("{base}/users")).header("content-type", "text/plain").body("{}");
    assert_eq!(r.send().await.unwrap().status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let unknown = uuid::Uuid::new_v4();
    assert_eq!(
        sys.client.get(format!("{base}/users/{unknown}")).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    let r = sys.client.get(format!("{base}/users/{unknown}/validate")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let (status, err) = json_of(sys.client.get(format!("{base}/users/abc")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(err["detail"].as_str().unwrap().starts_with("id"), "{err}");
}
