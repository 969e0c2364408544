//! The events between the services and to the browsers, and the one JetStream stream that keeps
//! them: `user.created` (user service → notes service) and `note.created|updated|shared|deleted`
//! (notes service → gateway → browsers).

use anyhow::Context as _;
use async_nats::jetstream::{self, stream};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use uuid::Uuid;

use crate::config::NatsSettings;
use crate::domain::{NoteId, UserId};

/// Subject of the user service's event.
pub const USER_CREATED: &str = "user.created";
/// Subjects of the notes service's events (a wildcard for consumers).
pub const NOTE_EVENTS: &str = "note.*";

// ANCHOR: events
/// `user.created`: the notes service keeps its own copy of the users from these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserCreated {
    /// Unique per event (also the `Nats-Msg-Id`, so a re-publish inside the window is dropped).
    pub event_id: Uuid,
    /// The new user.
    pub user_id: UserId,
    /// Their name.
    pub name: String,
    /// When it happened.
    pub at: DateTime<Utc>,
}

/// What happened to a note.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoteEventKind {
    /// A new note.
    Created,
    /// Title or body changed.
    Updated,
    /// Shared with one more user.
    Shared,
    /// Deleted.
    Deleted,
}

impl NoteEventKind {
    /// The subject, without prefix: `note.created` ...
    pub fn subject(self) -> &'static str {
        match self {
            Self::Created => "note.created",
            Self::Updated => "note.updated",
            Self::Shared => "note.shared",
            Self::Deleted => "note.deleted",
        }
    }
}

/// A note as everyone sees it: the REST answers and the events carry this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoteView {
    /// Id.
    pub id: NoteId,
    /// Who made it (and alone may share or delete it).
    pub owner_id: UserId,
    /// Title.
    pub title: String,
    /// Body.
    pub body: String,
    /// Bumped by every change; an edit names the version it was made on.
    pub version: i64,
    /// The users it is shared with.
    pub shared_with: Vec<UserId>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl NoteView {
    /// Everyone who can see the note: the owner and the users it is shared with.
    pub fn audience(&self) -> Vec<UserId> {
        let mut a = Vec::with_capacity(self.shared_with.len() + 1);
        a.push(self.owner_id);
        a.extend(self.shared_with.iter().copied().filter(|u| *u != self.owner_id));
        a
    }
}

/// `note.*`: a change, with the note after it (before it, for a delete) and who may see it —
/// the gateway routes by `audience` without asking the notes service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoteEvent {
    /// Unique per event.
    pub event_id: Uuid,
    /// What happened.
    pub kind: NoteEventKind,
    /// The note.
    pub note: NoteView,
    /// Who is told.
    pub audience: Vec<UserId>,
    /// Who did it.
    pub by: UserId,
    /// When.
    pub at: DateTime<Utc>,
}
// ANCHOR_END: events

// ANCHOR: stream
/// Creates (or finds) the stream of every event. File storage survives a server restart;
/// `max_age` is how far back a client can resume; the duplicate window drops a re-publish with
/// the same `Nats-Msg-Id` (an outbox relay that crashed between publish and delete).
pub async fn ensure_stream(js: &jetstream::Context, s: &NatsSettings) -> anyhow::Result<stream::Stream> {
    js.get_or_create_stream(stream::Config {
        name: s.stream.clone(),
        subjects: vec![s.subject(USER_CREATED), s.subject(NOTE_EVENTS)],
        storage: stream::StorageType::File,
        max_age: Duration::from_secs(s.max_age_hours * 3600),
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await
    .with_context(|| format!("creating or reading stream {}", s.stream))
}
// ANCHOR_END: stream

/// Connects to NATS with the client's own reconnect loop (it retries forever in the background).
pub async fn connect(s: &NatsSettings, name: &str) -> anyhow::Result<async_nats::Client> {
    async_nats::ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(2))
        .connect(&s.url)
        .await
        .with_context(|| format!("connecting to NATS at {}", s.url))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owner_is_in_the_audience_once() {
        let owner = UserId(Uuid::now_v7());
        let bob = UserId(Uuid::now_v7());
        let note = NoteView {
            id: NoteId(Uuid::now_v7()),
            owner_id: owner,
            title: "t".into(),
            body: String::new(),
            version: 1,
            shared_with: vec![bob, owner],
            updated_at: Utc::now(),
        };
        assert_eq!(note.audience(), vec![owner, bob]);
    }
}
