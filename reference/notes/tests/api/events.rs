//! The events between the services, against real NATS and PostgreSQL: each change leaves through
//! the outbox as one event; the notes service's handling of `user.created` is idempotent.

use crate::helpers::*;
use async_nats::jetstream::consumer;
use futures::StreamExt as _;
use serde_json::Value;
use std::time::Duration;

/// Every event on the test's subjects, in stream order.
async fn events(app: &TestApp, want: usize) -> Vec<(String, Value)> {
    let stream = app.js.get_stream(&app.settings.nats.stream).await.unwrap();
    let c = stream
        .create_consumer(consumer::pull::Config {
            ack_policy: consumer::AckPolicy::None,
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut out = Vec::new();
    let mut msgs = c.messages().await.unwrap();
    while out.len() < want {
        let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(10), msgs.next()).await else { break };
        let m = m.unwrap();
        out.push((m.subject.to_string(), serde_json::from_slice(&m.payload).unwrap()));
    }
    out
}

#[tokio::test]
async fn each_change_publishes_one_event_through_the_outbox() {
    let app = spawn_app().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let note = app.create_note(&alice, "t", "").await;
    let id = note["id"].as_str().unwrap();
    assert_eq!(app.update_note(&alice, id, 1, "t2", "").await.status(), 200);
    assert_eq!(app.share(&alice, id, &bob.id).await.status(), 200);
    let del =
        app.http.delete(format!("{}/notes/{id}", app.notes)).bearer_auth(&alice.token).send().await.unwrap();
    assert_eq!(del.status(), 204);

    let got = events(&app, 6).await;
    let subjects: Vec<String> =
        got.iter().map(|(s, _)| s.trim_start_matches(&app.settings.nats.subject_prefix).to_owned()).collect();
    assert_eq!(
        subjects,
        ["user.created", "user.created", "note.created", "note.updated", "note.shared", "note.deleted"]
    );
    assert_eq!(got[4].1["audience"], serde_json::json!([alice.id, bob.id]));
    assert_eq!(
        got[5].1["audience"],
        serde_json::json!([alice.id, bob.id]),
        "a delete tells everyone who saw it"
    );
    // The relay deletes after JetStream acked, so the rows go just after the events appear.
    let pool = app.notes_pool.clone();
    wait_until(Duration::from_secs(10), "published rows to leave the outbox", || {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM outbox").fetch_one(&pool).await.unwrap_or(-1)
                == 0
        }
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn duplicate_user_created_events_are_harmless() {
    let app = spawn_app().await;
    let alice = app.user("alice").await;
    // The same event again, twice, with new message ids so JetStream's duplicate window does not
    // hide them: what a relay that crashed after publishing, and restarted late, would send.
    let payload = serde_json::json!({
        "event_id": uuid::Uuid::now_v7(), "user_id": alice.id, "name": "alice", "at": chrono::Utc::now(),
    });
    for _ in 0..2 {
        app.js
            .publish(app.subject("user.created"), serde_json::to_vec(&payload).unwrap().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    // All three are consumed and acked ...
    let stream = app.js.get_stream(&app.settings.nats.stream).await.unwrap();
    let name = app.settings.nats.users_consumer.clone();
    wait_until(Duration::from_secs(10), "the consumer acked every user.created", || {
        let (stream, name) = (stream.clone(), name.clone());
        async move {
            let mut c: consumer::PullConsumer = stream.get_consumer(&name).await.unwrap();
            let info = c.info().await.unwrap();
            info.num_pending == 0 && info.num_ack_pending == 0 && info.ack_floor.stream_sequence >= 3
        }
    })
    .await;
    // ... and the copy of the users still has alice once, and works.
    let rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM known_users").fetch_one(&app.notes_pool).await.unwrap();
    assert_eq!(rows, 1);
    let bob = app.user("bob").await;
    let note = app.create_note(&bob, "n", "").await;
    assert_eq!(app.share(&bob, note["id"].as_str().unwrap(), &alice.id).await.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn an_unreadable_event_is_terminated_not_retried_forever() {
    let app = spawn_app().await;
    app.js.publish(app.subject("user.created"), "not json".into()).await.unwrap().await.unwrap();
    let alice = app.user("alice").await; // the consumer went past it
    let stream = app.js.get_stream(&app.settings.nats.stream).await.unwrap();
    let mut c: consumer::PullConsumer = stream.get_consumer(&app.settings.nats.users_consumer).await.unwrap();
    let info = c.info().await.unwrap();
    assert_eq!(info.num_ack_pending, 0, "{info:?}");
    assert!(!alice.id.is_empty());
    app.stop().await;
}
