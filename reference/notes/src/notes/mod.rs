//! The notes service: REST for the signed-in user's notes, and the consumer that keeps its own
//! copy of the users from `user.created`.

pub mod consumer;
pub mod store;

use axum::extract::{FromRef, Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use uuid::Uuid;

use crate::auth::{SignedIn, Verifier};
use crate::domain::{Body, NoteId, Title, UserId, Version};
use crate::error::ApiError;
use crate::events::NoteView;
use cruncan_http::ValidJson;
use cruncan_jetstream::Relay;
use store::Notes;

/// What the notes service's handlers share.
#[derive(Clone)]
pub struct NotesState {
    /// The use cases.
    pub notes: Notes,
    /// Its outbox relay (woken after each commit).
    pub relay: Relay,
    /// Token verification.
    pub verifier: Verifier,
}

impl FromRef<NotesState> for Verifier {
    fn from_ref(s: &NotesState) -> Self {
        s.verifier.clone()
    }
}

/// `POST /notes` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateNote {
    /// Title.
    pub title: Title,
    /// Body (may be empty).
    #[serde(default)]
    pub body: Body,
}

/// `PUT /notes/{id}` body: the new title and body, and the version they were made on.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateNote {
    /// Title.
    pub title: Title,
    /// Body.
    pub body: Body,
    /// The version the client read.
    pub version: Version,
}

/// `POST /notes/{id}/shares` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShareNote {
    /// The user to share with.
    pub user_id: UserId,
}

/// The notes service's routes.
pub fn router(state: NotesState) -> Router {
    Router::new()
        .route("/notes", get(list).post(create))
        .route("/notes/{id}", get(read).put(update).delete(remove))
        .route("/notes/{id}/shares", post(share))
        .with_state(state)
}

fn note_id(raw: &str) -> Result<NoteId, ApiError> {
    Uuid::parse_str(raw).map(NoteId).map_err(|_| ApiError::invalid("id", "must be a UUID"))
}

async fn list(
    State(s): State<NotesState>,
    SignedIn(user): SignedIn,
) -> Result<Json<Vec<NoteView>>, ApiError> {
    Ok(Json(s.notes.list(user).await?))
}

async fn read(
    State(s): State<NotesState>,
    SignedIn(user): SignedIn,
    Path(id): Path<String>,
) -> Result<Json<NoteView>, ApiError> {
    Ok(Json(s.notes.get(user, note_id(&id)?).await?))
}

async fn create(
    State(s): State<NotesState>,
    SignedIn(user): SignedIn,
    ValidJson(req): ValidJson<CreateNote>,
) -> Result<(StatusCode, Json<NoteView>), ApiError> {
    let note = s.notes.create(user, req.title, req.body).await?;
    s.relay.wake();
    Ok((StatusCode::CREATED, Json(note)))
}

async fn update(
    State(s): State<NotesState>,
    SignedIn(user): SignedIn,
    Path(id): Path<String>,
    ValidJson(req): ValidJson<UpdateNote>,
) -> Result<Json<NoteView>, ApiError> {
    let note = s.notes.update(user, note_id(&id)?, req.version, req.title, req.body).await?;
    s.relay.wake();
    Ok(Json(note))
}

async fn share(
    State(s): State<NotesState>,
    SignedIn(user): SignedIn,
    Path(id): Path<String>,
    ValidJson(req): ValidJson<ShareNote>,
) -> Result<Json<NoteView>, ApiError> {
    let note = s.notes.share(user, note_id(&id)?, req.user_id).await?;
    s.relay.wake();
    Ok(Json(note))
}

async fn remove(
    State(s): State<NotesState>,
    SignedIn(user): SignedIn,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.notes.delete(user, note_id(&id)?).await?;
    s.relay.wake();
    Ok(StatusCode::NO_CONTENT)
}
