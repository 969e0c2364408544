//! The user service: create and list users, sign in (a token), and the JWKS the other services
//! verify tokens with. Creating a user writes the row and its `user.created` event in one
//! transaction (the outbox), so the notes service learns of every user, exactly as committed.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use std::sync::Arc;
use uuid::Uuid;

use crate::auth::Issuer;
use crate::domain::{UserId, UserName};
use crate::error::ApiError;
use crate::events::UserCreated;
use cruncan_http::ValidJson;
use cruncan_jetstream::{Relay, enqueue, trace_headers};

/// What the user service's handlers share.
#[derive(Clone)]
pub struct UsersState {
    /// Its database.
    pub pool: PgPool,
    /// Its outbox relay (woken after each commit).
    pub relay: Relay,
    /// Its signing key.
    pub issuer: Arc<Issuer>,
    /// `user.created` with the configured prefix.
    pub subject: String,
}

/// A user as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
pub struct User {
    /// Id.
    pub id: UserId,
    /// Name.
    pub name: String,
}

/// `POST /users` and `POST /sessions` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NameRequest {
    /// The user name.
    pub name: UserName,
}

/// `POST /sessions` answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct Session {
    /// Bearer token for the notes service and the gateway.
    pub token: String,
    /// Who it is for.
    pub user: User,
}

/// The user service's routes.
pub fn router(state: UsersState) -> Router {
    Router::new()
        .route("/users", post(create_user).get(list_users))
        .route("/sessions", post(sign_in))
        .route("/.well-known/jwks.json", get(jwks))
        .with_state(state)
}

// ANCHOR: create_user
/// `POST /users`: 201 with the user; 409 when the name is taken.
async fn create_user(
    State(s): State<UsersState>,
    ValidJson(req): ValidJson<NameRequest>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    let user = User { id: UserId(Uuid::now_v7()), name: req.name.as_str().to_owned() };
    let event =
        UserCreated { event_id: Uuid::now_v7(), user_id: user.id, name: user.name.clone(), at: Utc::now() };
    let mut tx = s.pool.begin().await?;
    let inserted = sqlx::query("INSERT INTO users (id, name) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
        .bind(user.id)
        .bind(&user.name)
        .execute(&mut *tx)
        .await?;
    if inserted.rows_affected() == 0 {
        return Err(ApiError::Conflict {
            code: "name_taken",
            message: format!("name: {} is taken", user.name),
            current_version: None,
        });
    }
    enqueue(&mut tx, &s.subject, event.event_id, &event, &trace_headers()).await?;
    tx.commit().await?;
    s.relay.wake();
    Ok((StatusCode::CREATED, Json(user)))
}
// ANCHOR_END: create_user

/// `GET /users`: everyone, by name (the page's share picker).
async fn list_users(State(s): State<UsersState>) -> Result<Json<Vec<User>>, ApiError> {
    let users = sqlx::query_as::<_, User>("SELECT id, name FROM users ORDER BY name LIMIT 1000")
        .fetch_all(&s.pool)
        .await?;
    Ok(Json(users))
}

/// `POST /sessions`: a token for the named user; 404 when there is none.
async fn sign_in(
    State(s): State<UsersState>,
    ValidJson(req): ValidJson<NameRequest>,
) -> Result<Json<Session>, ApiError> {
    let user = sqlx::query_as::<_, User>("SELECT id, name FROM users WHERE name = $1")
        .bind(req.name.as_str())
        .fetch_optional(&s.pool)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("name: no user {}", req.name.as_str())))?;
    let token = s.issuer.sign(user.id, &user.name)?;
    Ok(Json(Session { token, user }))
}

async fn jwks(State(s): State<UsersState>) -> Json<serde_json::Value> {
    Json(s.issuer.jwks().clone())
}
