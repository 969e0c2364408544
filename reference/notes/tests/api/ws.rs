//! The gateway's WebSocket: events reach the sockets of their audience (and only those), many
//! clients each get every event, a slow client is cut with 4008 while the others carry on, a
//! socket without a valid token is closed with 4001, a silent one with 4000.

use crate::helpers::*;
use std::sync::atomic::Ordering;
use std::time::Duration;

const T: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_note_change_reaches_the_sockets_of_its_audience_only() {
    let app = spawn_app().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let mut a = ws_connect(&app, &alice.token, None).await;
    let mut b = ws_connect(&app, &bob.token, None).await;
    assert_eq!(a.hello["user_id"], alice.id.as_str());

    let note = app.create_note(&alice, "secret", "").await;
    let id = note["id"].as_str().unwrap();
    let e = a.event(T).await;
    assert_eq!((e["event"]["kind"].as_str(), e["event"]["note"]["id"].as_str()), (Some("created"), Some(id)));
    b.expect_quiet(Duration::from_millis(500)).await;

    assert_eq!(app.share(&alice, id, &bob.id).await.status(), 200);
    assert_eq!(a.event(T).await["event"]["kind"], "shared");
    assert_eq!(b.event(T).await["event"]["kind"], "shared", "bob learns of the note when it is shared");
    assert_eq!(app.update_note(&bob, id, 2, "secret", "by bob").await.status(), 200);
    for ws in [&mut a, &mut b] {
        let e = ws.event(T).await;
        assert_eq!(
            (e["event"]["kind"].as_str(), e["event"]["note"]["body"].as_str()),
            (Some("updated"), Some("by bob"))
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn many_clients_each_receive_every_event() {
    const USERS: usize = 50;
    const SOCKETS_PER_USER: usize = 10; // 500 sockets
    const EVENTS: usize = 20;
    let app = spawn_app().await;
    let names: Vec<String> = (0..USERS).map(|i| format!("u{i}")).collect();
    let users = futures::future::join_all(names.iter().map(|n| app.user(n))).await;
    let mut clients = Vec::new();
    for u in &users {
        for _ in 0..SOCKETS_PER_USER {
            clients.push(ws_connect(&app, &u.token, None).await);
        }
    }
    assert_eq!(app.hub.stats().connected.load(Ordering::Relaxed), (USERS * SOCKETS_PER_USER) as u64);
    let audience: Vec<&str> = users.iter().map(|u| u.id.as_str()).collect();
    let mut seqs = Vec::new();
    for i in 0..EVENTS {
        seqs.push(publish_event(&app, &audience, 100, &format!("e{i}")).await);
    }
    let readers = clients.into_iter().map(|mut ws| async move {
        let mut got = Vec::new();
        for _ in 0..EVENTS {
            got.push(ws.event(Duration::from_secs(30)).await["seq"].as_u64().unwrap());
        }
        got
    });
    for got in futures::future::join_all(readers).await {
        assert_eq!(got, seqs, "every socket gets every event, once, in order");
    }
    assert_eq!(app.hub.stats().slow_dropped.load(Ordering::Relaxed), 0);
    app.stop().await;
}

// ANCHOR: slow_client_test
#[tokio::test]
async fn a_slow_client_is_cut_and_the_others_are_not() {
    const EVENTS: usize = 300;
    let app = spawn_app_with(|s| {
        s.gateway.queue_capacity = 8;
        s.gateway.write_timeout = Duration::from_millis(1_000);
    })
    .await;
    let alice = app.user("alice").await;
    // The slow client: a tiny receive buffer, and it does not read.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let tcp = sock.connect(app.gateway).await.unwrap();
    let (inner, _) =
        tokio_tungstenite::client_async(app.ws_url(), tokio_tungstenite::MaybeTlsStream::Plain(tcp))
            .await
            .unwrap();
    let mut slow = ws_hello(inner, &alice.token, None).await;
    let mut fast = ws_connect(&app, &alice.token, None).await;
    let reader = tokio::spawn(async move {
        let mut n = 0;
        while n < EVENTS {
            fast.event(Duration::from_secs(30)).await;
            n += 1;
        }
        n
    });
    for i in 0..EVENTS {
        publish_event(&app, &[&alice.id], 32 * 1024, &format!("e{i}")).await; // ~10 MB in all
    }
    assert_eq!(reader.await.unwrap(), EVENTS, "the reading client got everything");
    wait_until(T, "the slow client was cut", || async {
        app.hub.stats().slow_dropped.load(Ordering::Relaxed)
            + app.hub.stats().connected.load(Ordering::Relaxed)
            == 2
            && app.hub.stats().connected.load(Ordering::Relaxed) == 1
    })
    .await;
    // It reads now: what was in flight, then the close (4008) or a reset — never all of it.
    let mut got = 0;
    let end = loop {
        match slow.read(T).await {
            Some(Frame::Event(_)) => got += 1,
            Some(Frame::Closed(code)) => break code,
            None => panic!("the slow client was neither closed nor fed"),
        }
    };
    assert!(got < EVENTS, "the slow client got {got} events");
    assert!(matches!(end, Some(4008) | None), "closed with {end:?}");
    app.stop().await;
}
// ANCHOR_END: slow_client_test

#[tokio::test]
async fn a_socket_without_a_valid_token_is_closed_4001() {
    let app = spawn_app_with(|s| s.gateway.auth_timeout = Duration::from_millis(500)).await;
    for first in [Some("{\"token\":\"forged\"}"), Some("hello"), None] {
        let (mut ws, _) = tokio_tungstenite::connect_async(app.ws_url()).await.unwrap();
        if let Some(text) = first {
            futures::SinkExt::send(&mut ws, tokio_tungstenite::tungstenite::Message::Text(text.into()))
                .await
                .unwrap();
        }
        let mut ws = Ws { inner: ws, hello: serde_json::Value::Null, last_seq: 0 };
        assert!(matches!(ws.read(T).await, Some(Frame::Closed(Some(4001)))), "{first:?}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_silent_client_is_pinged_then_closed_4000() {
    let app = spawn_app_with(|s| {
        s.gateway.ping_interval = Duration::from_millis(250);
        s.gateway.idle_timeout = Duration::from_millis(1_500);
    })
    .await;
    let alice = app.user("alice").await;
    let ws = ws_connect(&app, &alice.token, None).await;
    // A client that never answers: after the hello it is a bare TCP socket (tungstenite would
    // answer pings while reading), read only after the server gave up on it.
    let tokio_tungstenite::MaybeTlsStream::Plain(mut tcp) = ws.inner.into_inner() else {
        panic!("plain TCP")
    };
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    let mut bytes = Vec::new();
    tokio::time::timeout(T, tokio::io::AsyncReadExt::read_to_end(&mut tcp, &mut bytes))
        .await
        .unwrap()
        .unwrap();
    // Server frames are unmasked: opcode in the low bits of byte 0, lengths below 126 here.
    let (mut pings, mut close, mut at) = (0, None, 0);
    while at + 2 <= bytes.len() {
        let (opcode, len) = (bytes[at] & 0x0f, usize::from(bytes[at + 1] & 0x7f));
        let payload = &bytes[at + 2..(at + 2 + len).min(bytes.len())];
        match opcode {
            0x9 => pings += 1,
            0x8 => close = Some(u16::from_be_bytes([payload[0], payload[1]])),
            _ => {}
        }
        at += 2 + len;
    }
    assert!(pings >= 2, "{pings} pings");
    assert_eq!(close, Some(4000), "closed for silence");

    // A client that reads (and so answers pings) stays connected well past the idle timeout.
    let mut live = ws_connect(&app, &alice.token, None).await;
    live.expect_quiet(Duration::from_millis(3_000)).await;
    app.create_note(&alice, "still here", "").await;
    assert_eq!(live.event(T).await["event"]["kind"], "created");
    app.stop().await;
}
