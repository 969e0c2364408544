//! The WebSocket endpoint, one connection per signed-in browser tab:
//!
//! - the token comes in the first message `{"token": "...", "since": 41}` (or, for clients that
//!   cannot send one first, `?token=...&since=41`); no valid token in time: close 4001;
//! - the server says `{"type":"hello","seq":N,"resync":false}`, then pushes
//!   `{"type":"event","seq":N,"event":{...}}`; the client keeps the last `seq` to resume with;
//! - a ping every `ping_interval`; nothing heard (not even a pong) for `idle_timeout`: close 4000;
//! - a frame that cannot be written within `write_timeout`, or a queue that overflows: close
//!   4008, the client reconnects with its last `seq` and misses nothing;
//! - gateway shutdown: close 1001.

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt as _, StreamExt as _};
use serde::Deserialize;
use std::time::Duration;
use tokio::time::{Instant, MissedTickBehavior, timeout};

use crate::domain::UserId;
use crate::gateway::GatewayState;
use crate::gateway::follow::{Next, Start};

/// Close code: no valid token.
pub const CLOSE_UNAUTHORIZED: u16 = 4001;
/// Close code: the client reads too slowly (its queue overflowed or a write timed out).
pub const CLOSE_TOO_SLOW: u16 = 4008;
/// Close code: nothing heard from the client for the idle timeout.
pub const CLOSE_IDLE: u16 = 4000;
/// Close code: the gateway is shutting down.
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// Close code: the gateway could not open the event feed.
pub const CLOSE_INTERNAL: u16 = 1011;

/// The query string (`token` and `since` may come in the first message instead).
#[derive(Debug, Default, Deserialize)]
pub struct Hello {
    /// The bearer token.
    pub token: Option<String>,
    /// The last sequence the client saw.
    pub since: Option<u64>,
}

/// `GET /ws`.
pub async fn upgrade(
    ws: WebSocketUpgrade,
    State(g): State<GatewayState>,
    Query(q): Query<Hello>,
) -> Response {
    // ANCHOR: buffers
    // Memory per connection: tungstenite's defaults are a 128 KiB read buffer and a 128 KiB write
    // buffer per socket — 256 KiB × 500 clients. Clients send only a few small frames; events
    // are written in batches of what is queued (one flush each), and 8 KiB already gathers a
    // backlog of typical events into a few writes.
    ws.read_buffer_size(4 * 1024)
        .write_buffer_size(8 * 1024)
        .max_message_size(16 * 1024)
        .max_frame_size(16 * 1024)
        .on_upgrade(move |socket| session(socket, g, q))
    // ANCHOR_END: buffers
}

type Sink = SplitSink<WebSocket, Message>;

/// Most events written before one flush.
const MAX_BATCH: usize = 64;

type Source = SplitStream<WebSocket>;

/// The closing handshake: our close frame, then (briefly) the client's, so the client reads our
/// code before the TCP connection goes. A client that does not read gets neither: after a second
/// the socket is just dropped.
async fn close(sink: &mut Sink, stream: &mut Source, code: u16, reason: &'static str) {
    let frame = Message::Close(Some(CloseFrame { code, reason: Utf8Bytes::from_static(reason) }));
    let handshake = async {
        sink.send(frame).await.ok()?;
        while let Some(Ok(msg)) = stream.next().await {
            if matches!(msg, Message::Close(_)) {
                break;
            }
        }
        Some(())
    };
    let _ = timeout(Duration::from_secs(1), handshake).await;
}

/// Reads the token (query or first message) and checks it.
async fn sign_in(stream: &mut Source, g: &GatewayState, q: Hello) -> Option<(UserId, Option<u64>)> {
    let hello = if q.token.is_some() {
        q
    } else {
        let first = timeout(g.settings.auth_timeout, stream.next()).await.ok()??.ok()?;
        let Message::Text(text) = first else { return None };
        serde_json::from_str::<Hello>(&text).ok()?
    };
    let user = g.verifier.user(hello.token.as_deref()?).await.ok()?;
    Some((user, hello.since))
}

// ANCHOR: session
async fn session(socket: WebSocket, g: GatewayState, q: Hello) {
    let (mut sink, mut stream) = socket.split();
    let Some((user, since)) = sign_in(&mut stream, &g, q).await else {
        return close(&mut sink, &mut stream, CLOSE_UNAUTHORIZED, "a valid token is required").await;
    };
    let start = since.map_or(Start::Fresh, Start::After);
    let mut feed = match g.follower.follow(user, start).await {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "opening the feed failed");
            return close(&mut sink, &mut stream, CLOSE_INTERNAL, "the event feed is unavailable").await;
        }
    };
    let s = &g.settings;
    let write = s.write_timeout;
    let idle = s.idle_timeout;
    let hello =
        serde_json::json!({"type": "hello", "seq": feed.hello_seq, "resync": feed.resync, "user_id": user});
    if timeout(write, sink.send(Message::Text(hello.to_string().into()))).await.map_or(true, |r| r.is_err()) {
        return;
    }
    let mut ping = tokio::time::interval_at(Instant::now() + s.ping_interval, s.ping_interval);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut heard = Instant::now();
    loop {
        tokio::select! {
            () = g.shutdown.wait() => return close(&mut sink, &mut stream, CLOSE_GOING_AWAY, "the gateway is restarting").await,
            next = feed.next() => match next {
                Next::Event(d) => {
                    // This event and whatever else is already queued, in one flush.
                    let batch = async {
                        sink.feed(Message::Text(d.json.clone())).await?;
                        for _ in 1..MAX_BATCH {
                            let Some(more) = feed.ready() else { break };
                            sink.feed(Message::Text(more.json.clone())).await?;
                        }
                        sink.flush().await
                    };
                    match timeout(write, batch).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => return, // the client went away
                        Err(_) => return close(&mut sink, &mut stream, CLOSE_TOO_SLOW, "too slow: resume with your last seq").await,
                    }
                }
                Next::TooSlow => return close(&mut sink, &mut stream, CLOSE_TOO_SLOW, "too slow: resume with your last seq").await,
            },
            _ = ping.tick() => {
                if heard.elapsed() > idle {
                    return close(&mut sink, &mut stream, CLOSE_IDLE, "no pong").await;
                }
                if timeout(write, sink.send(Message::Ping(Default::default()))).await.map_or(true, |r| r.is_err()) {
                    return;
                }
            }
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                Some(Ok(_)) => heard = Instant::now(), // pongs and anything else count as alive
            },
        }
    }
}
// ANCHOR_END: session
