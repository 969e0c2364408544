//! Resume: a client that reconnects with the last sequence it saw gets what it missed, then the
//! live events — each exactly once, in order; over the WebSocket and over gRPC.

use crate::helpers::*;
use notes::gateway::grpc::pb;
use std::time::Duration;

const T: Duration = Duration::from_secs(10);

// ANCHOR: resume_test
#[tokio::test]
async fn resume_after_reconnect_delivers_what_was_missed_exactly_once() {
    let app = spawn_app().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let mut ws = ws_connect(&app, &alice.token, None).await;
    let note = app.create_note(&alice, "v1", "").await;
    let id = note["id"].as_str().unwrap().to_owned();
    ws.event(T).await;
    let seen = ws.last_seq;
    drop(ws); // the train enters a tunnel

    // Missed: three edits, and a note of bob's that alice must not get.
    for v in 1..=3 {
        assert_eq!(app.update_note(&alice, &id, v, &format!("v{}", v + 1), "").await.status(), 200);
    }
    app.create_note(&bob, "bob's", "").await;

    let mut ws = ws_connect(&app, &alice.token, Some(seen)).await;
    assert_eq!(ws.hello["resync"], false);
    let mut titles = Vec::new();
    for _ in 0..3 {
        titles.push(ws.event(T).await["event"]["note"]["title"].as_str().unwrap().to_owned());
    }
    assert_eq!(titles, ["v2", "v3", "v4"]);
    // Then live, with nothing repeated.
    assert_eq!(app.update_note(&alice, &id, 4, "v5", "").await.status(), 200);
    assert_eq!(ws.event(T).await["event"]["note"]["title"], "v5");
    ws.expect_quiet(Duration::from_millis(500)).await;
    app.stop().await;
}
// ANCHOR_END: resume_test

#[tokio::test]
async fn resume_while_events_keep_coming_misses_and_repeats_nothing() {
    let app = spawn_app().await;
    let alice = app.user("alice").await;
    let before = publish_event(&app, &[&alice.id], 10, "before").await;
    // Events published while the client reconnects land in the replay, the live queue or both.
    let publisher = {
        let (js, subject, id) = (app.js.clone(), app.subject("note.updated"), alice.id.clone());
        tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..200 {
                let e = serde_json::json!({"event_id": uuid::Uuid::now_v7(), "kind": "updated", "by": id, "at": chrono::Utc::now(),
                    "audience": [id], "note": {"id": uuid::Uuid::now_v7(), "owner_id": id, "title": format!("e{i}"), "body": "",
                    "version": 2, "shared_with": [], "updated_at": chrono::Utc::now()}});
                seqs.push(
                    js.publish(subject.clone(), serde_json::to_vec(&e).unwrap().into())
                        .await
                        .unwrap()
                        .await
                        .unwrap()
                        .sequence,
                );
            }
            seqs
        })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut ws = ws_connect(&app, &alice.token, Some(before)).await;
    let sent = publisher.await.unwrap();
    let mut got = Vec::new();
    while got.len() < sent.len() {
        got.push(ws.event(T).await["seq"].as_u64().unwrap());
    }
    assert_eq!(got, sent);
    ws.expect_quiet(Duration::from_millis(300)).await;
    app.stop().await;
}

#[tokio::test]
async fn resuming_too_far_back_asks_the_client_to_reload() {
    let app = spawn_app_with(|s| s.gateway.max_replay = 5).await;
    let alice = app.user("alice").await;
    for i in 0..10 {
        publish_event(&app, &[&alice.id], 10, &format!("e{i}")).await;
    }
    let ws = ws_connect(&app, &alice.token, Some(1)).await;
    assert_eq!(ws.hello["resync"], true);
    let ws = ws_connect(&app, &alice.token, Some(10_000)).await;
    assert_eq!(ws.hello["resync"], true, "a sequence past the stream's end is from another stream");
    app.stop().await;
}

#[tokio::test]
async fn the_grpc_stream_follows_and_resumes() {
    let app = spawn_app().await;
    let alice = app.user("alice").await;
    let mut client =
        pb::note_events_client::NoteEventsClient::connect(format!("http://{}", app.grpc)).await.unwrap();
    let follow = |since: Option<u64>| {
        let mut req = tonic::Request::new(pb::FollowRequest { since });
        req.metadata_mut().insert("authorization", format!("Bearer {}", alice.token).parse().unwrap());
        req
    };
    let mut stream = client.follow(follow(None)).await.unwrap().into_inner();
    let note = app.create_note(&alice, "rpc", "").await;
    let e = tokio::time::timeout(T, stream.message()).await.unwrap().unwrap().unwrap();
    assert_eq!(
        (e.kind.as_str(), e.note.as_ref().unwrap().id.as_str()),
        ("created", note["id"].as_str().unwrap())
    );
    drop(stream);
    let id = note["id"].as_str().unwrap();
    assert_eq!(app.update_note(&alice, id, 1, "rpc 2", "").await.status(), 200);
    let mut stream = client.follow(follow(Some(e.seq))).await.unwrap().into_inner();
    let missed = tokio::time::timeout(T, stream.message()).await.unwrap().unwrap().unwrap();
    assert_eq!((missed.kind.as_str(), missed.note.unwrap().title.as_str()), ("updated", "rpc 2"));

    let mut bad = tonic::Request::new(pb::FollowRequest { since: None });
    bad.metadata_mut().insert("authorization", "Bearer forged".parse().unwrap());
    assert_eq!(client.follow(bad).await.unwrap_err().code(), tonic::Code::Unauthenticated);
    app.stop().await;
}
