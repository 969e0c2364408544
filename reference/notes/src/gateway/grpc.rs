//! The same feed as a gRPC server stream (`NoteEvents.Follow`), for backend clients: the token in
//! the `authorization` metadata, `since` to resume. A client that reads too slowly gets
//! `RESOURCE_EXHAUSTED` and resumes with its last `seq`, exactly as a browser gets close 4008.

use cruncan_shutdown::Shutdown;
use std::pin::Pin;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::auth::Verifier;
use crate::events::{NoteEvent, NoteEventKind};
use crate::gateway::follow::{Follower, Next, Start};

/// The generated protobuf types and service stubs.
#[allow(missing_docs, clippy::all, clippy::pedantic, clippy::unwrap_used, clippy::expect_used)]
pub mod pb {
    tonic::include_proto!("cruncan.notes.v1");
}

use pb::note_events_server::{NoteEvents, NoteEventsServer};

/// The gRPC service.
#[derive(Clone)]
pub struct GrpcFeed {
    follower: Follower,
    verifier: Verifier,
    shutdown: Shutdown,
}

impl GrpcFeed {
    /// The service over `follower`.
    pub fn new(follower: Follower, verifier: Verifier, shutdown: Shutdown) -> Self {
        Self { follower, verifier, shutdown }
    }
}

fn to_pb(seq: u64, e: &NoteEvent) -> pb::Event {
    let kind = match e.kind {
        NoteEventKind::Created => "created",
        NoteEventKind::Updated => "updated",
        NoteEventKind::Shared => "shared",
        NoteEventKind::Deleted => "deleted",
    };
    pb::Event {
        seq,
        kind: kind.into(),
        note: Some(pb::Note {
            id: e.note.id.to_string(),
            owner_id: e.note.owner_id.to_string(),
            title: e.note.title.clone(),
            body: e.note.body.clone(),
            version: e.note.version,
            shared_with: e.note.shared_with.iter().map(ToString::to_string).collect(),
            updated_at: e.note.updated_at.to_rfc3339(),
        }),
        by: e.by.to_string(),
        at: e.at.to_rfc3339(),
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::Event, Status>> + Send>>;

#[tonic::async_trait]
impl NoteEvents for GrpcFeed {
    type FollowStream = EventStream;

    // ANCHOR: follow
    async fn follow(&self, req: Request<pb::FollowRequest>) -> Result<Response<EventStream>, Status> {
        let token = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| Status::unauthenticated("authorization: Bearer <token> is required"))?;
        let user = self.verifier.user(token).await.map_err(|e| Status::unauthenticated(e.to_string()))?;
        let start = req.get_ref().since.map_or(Start::Fresh, Start::After);
        let mut feed = self.follower.follow(user, start).await.map_err(|e| {
            tracing::warn!(error = %format!("{e:#}"), "opening the feed failed");
            Status::unavailable("the event feed is unavailable")
        })?;
        if feed.resync {
            return Err(Status::out_of_range("too far behind to resume: reload, then follow without since"));
        }
        // A small buffer: when the client stops reading, HTTP/2 flow control stops tonic, the
        // send below waits, the hub queue fills and the feed reports TooSlow.
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let stop = self.shutdown.clone();
        tokio::spawn(async move {
            loop {
                let next = tokio::select! { () = stop.wait() => break, n = feed.next() => n };
                let item = match next {
                    Next::Event(d) => Ok(to_pb(d.seq, &d.event)),
                    Next::TooSlow => {
                        Err(Status::resource_exhausted("too slow: follow again with since = your last seq"))
                    }
                };
                let last = item.is_err();
                if tx.send(item).await.is_err() || last {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }
    // ANCHOR_END: follow
}

/// Serves the gRPC feed (plain HTTP/2 on loopback; put TLS in front as `reference/email` does).
pub async fn serve(
    listener: tokio::net::TcpListener,
    service: GrpcFeed,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .add_service(NoteEventsServer::new(service))
        .serve_with_incoming_shutdown(incoming, shutdown.wait())
        .await?;
    Ok(())
}
