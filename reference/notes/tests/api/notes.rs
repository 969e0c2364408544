//! The notes service's REST edge: optimistic concurrency, sharing against its own copy of the
//! users, who may do what, and bad input answered with the field named.

use crate::helpers::*;
use serde_json::json;

#[tokio::test]
async fn a_stale_edit_is_409_with_the_current_version() {
    let app = spawn_app().await;
    let alice = app.user("alice").await;
    let note = app.create_note(&alice, "groceries", "milk").await;
    let id = note["id"].as_str().unwrap();
    assert_eq!(note["version"], 1);

    let first = app.update_note(&alice, id, 1, "groceries", "milk, eggs").await;
    assert_eq!(first.status(), 200);
    assert_eq!(first.json::<serde_json::Value>().await.unwrap()["version"], 2);
    // A second edit made on version 1 (another tab) loses, and is told the version to reload.
    let stale = app.update_note(&alice, id, 1, "groceries", "milk, bread").await;
    assert_eq!(stale.status(), 409);
    let body: serde_json::Value = stale.json().await.unwrap();
    assert_eq!(body["code"], "stale_version");
    assert_eq!(body["current_version"], 2);
    let list = app.list(&alice).await;
    assert_eq!(list[0]["body"], "milk, eggs");
    app.stop().await;
}

#[tokio::test]
async fn concurrent_edits_on_one_version_exactly_one_wins() {
    let app = spawn_app().await;
    let alice = app.user("alice").await;
    let note = app.create_note(&alice, "race", "").await;
    let id = note["id"].as_str().unwrap().to_owned();
    let edits = (0..8).map(|i| {
        let (app, alice, id) = (&app, &alice, &id);
        async move { app.update_note(alice, id, 1, "race", &format!("edit {i}")).await.status().as_u16() }
    });
    let mut statuses = futures::future::join_all(edits).await;
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409, 409, 409, 409, 409, 409, 409]);
    app.stop().await;
}

#[tokio::test]
async fn sharing_is_checked_against_the_notes_services_own_users() {
    let app = spawn_app().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let note = app.create_note(&alice, "plans", "").await;
    let id = note["id"].as_str().unwrap();

    let unknown = uuid::Uuid::now_v7().to_string();
    let r = app.share(&alice, id, &unknown).await;
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("user_id"));

    let r = app.share(&alice, id, &bob.id).await;
    assert_eq!(r.status(), 200);
    let shared: serde_json::Value = r.json().await.unwrap();
    assert_eq!(shared["shared_with"], json!([bob.id]));
    assert_eq!(shared["version"], 2, "sharing is a change: it bumps the version");
    // Sharing again changes nothing.
    let again: serde_json::Value = app.share(&alice, id, &bob.id).await.json().await.unwrap();
    assert_eq!(again["version"], 2);
    assert_eq!(app.list(&bob).await.len(), 1, "bob sees the note shared with him");
    // Bob may edit it, but neither share nor delete it.
    assert_eq!(app.update_note(&bob, id, 2, "plans", "bob was here").await.status(), 200);
    assert_eq!(app.share(&bob, id, &alice.id).await.status(), 403);
    let del =
        app.http.delete(format!("{}/notes/{id}", app.notes)).bearer_auth(&bob.token).send().await.unwrap();
    assert_eq!(del.status(), 403);
    let del =
        app.http.delete(format!("{}/notes/{id}", app.notes)).bearer_auth(&alice.token).send().await.unwrap();
    assert_eq!(del.status(), 204);
    assert!(app.list(&bob).await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn bad_input_is_a_4xx_naming_the_field() {
    let app = spawn_app().await;
    let alice = app.user("alice").await;
    let note = app.create_note(&alice, "n", "").await;
    let id = note["id"].as_str().unwrap();
    let cases = [
        (format!("{}/users", app.users), None, json!({"name": "Not Valid"}), 400, "name"),
        (format!("{}/users", app.users), None, json!({"name": "alice"}), 409, "name"),
        (format!("{}/sessions", app.users), None, json!({"name": "nobody"}), 404, "name"),
        (format!("{}/notes", app.notes), Some(alice.token.as_str()), json!({"title": "  "}), 400, "title"),
        (
            format!("{}/notes", app.notes),
            Some(alice.token.as_str()),
            json!({"title": "t", "body": 5}),
            400,
            "body",
        ),
        (format!("{}/notes", app.notes), None, json!({"title": "t"}), 401, "token"),
        (format!("{}/notes", app.notes), Some("not-a-token"), json!({"title": "t"}), 401, "token"),
        (
            format!("{}/notes/{id}/shares", app.notes),
            Some(alice.token.as_str()),
            json!({"user_id": "x"}),
            400,
            "user_id",
        ),
    ];
    for (url, token, body, status, field) in cases {
        let r = app.post(url.clone(), token, body.clone()).await;
        assert_eq!(r.status(), status, "{url} {body}");
        assert!(r.text().await.unwrap().contains(field), "{url} {body}: names {field}");
    }
    let r = app.update_note(&alice, id, 0, "n", "").await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("version"));
    let r = app
        .http
        .get(format!("{}/notes/not-a-uuid", app.notes))
        .bearer_auth(&alice.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    app.stop().await;
}
