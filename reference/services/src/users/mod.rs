//! The user service: `POST /users`, `GET /users/{id}`, `GET /users/{id}/validate`.

mod store;

use crate::error::ApiError;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse as _;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use cruncan_http::ErrorBody;
use cruncan_http::ValidJson;
use serde::{Deserialize, Serialize};
pub use store::{MIGRATOR, UserStore};
use uuid::Uuid;

/// `POST /users` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct NewUserBody {
    /// The address; unique, whatever its case.
    pub email: String,
    /// Display name, 1 to 100 characters.
    pub name: String,
}

/// A user as the API shows it (the seed's shape).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct User {
    /// Id.
    pub id: Uuid,
    /// E-mail.
    pub email: String,
    /// Name.
    pub name: String,
    /// Inactive users cannot order.
    pub active: bool,
    /// Created.
    pub created_at: DateTime<Utc>,
}

/// `GET /users/{id}/validate` body.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Validity {
    /// Whether the user may order.
    pub valid: bool,
}

/// A validated new user.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// Trimmed e-mail.
    pub email: String,
    /// Trimmed name.
    pub name: String,
}

impl NewUserBody {
    fn validate(self) -> Result<NewUser, ApiError> {
        let email = self.email.trim().to_owned();
        let at = email.find('@');
        let ok = email.len() <= 254
            && at.is_some_and(|i| i > 0 && i + 1 < email.len())
            && !email.chars().any(char::is_whitespace);
        if !ok {
            return Err(ApiError::invalid("email", "must be an e-mail address (local@domain)"));
        }
        let name = self.name.trim().to_owned();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(ApiError::invalid("name", "must be 1 to 100 characters"));
        }
        Ok(NewUser { email, name })
    }
}

/// A path id, or a 400 naming it.
pub fn path_id(raw: &str) -> Result<Uuid, ApiError> {
    raw.parse().map_err(|_| ApiError::invalid("id", format!("{raw:?} is not a UUID")))
}

/// The user service's routes.
pub fn router(store: UserStore) -> Router {
    Router::new()
        .route("/users", post(create_user))
        .route("/users/{id}", get(get_user))
        .route("/users/{id}/validate", get(validate_user))
        .with_state(store)
}

/// Creates a user.
#[utoipa::path(post, path = "/users", tag = "users", request_body = NewUserBody, responses(
    (status = 201, body = User), (status = 400, body = ErrorBody),
    (status = 409, description = "E-mail taken", body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn create_user(
    State(store): State<UserStore>,
    ValidJson(body): ValidJson<NewUserBody>,
) -> Result<axum::response::Response, ApiError> {
    let user = store.create(&body.validate()?).await?;
    Ok((StatusCode::CREATED, Json(user)).into_response())
}

/// Returns a user.
#[utoipa::path(get, path = "/users/{id}", tag = "users", params(("id" = Uuid, Path)), responses(
    (status = 200, body = User), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_user(
    State(store): State<UserStore>,
    Path(id): Path<String>,
) -> Result<Json<User>, ApiError> {
    let id = path_id(&id)?;
    store.get(id).await?.map(Json).ok_or_else(|| ApiError::NotFound(format!("no user {id}")))
}

/// Whether a user may order.
#[utoipa::path(get, path = "/users/{id}/validate", tag = "users", params(("id" = Uuid, Path)), responses(
    (status = 200, body = Validity), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn validate_user(
    State(store): State<UserStore>,
    Path(id): Path<String>,
) -> Result<Json<Validity>, ApiError> {
    let id = path_id(&id)?;
    let user = store.get(id).await?.ok_or_else(|| ApiError::NotFound(format!("no user {id}")))?;
    Ok(Json(Validity { valid: user.active }))
}

/// The user service's OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "users"),
    paths(create_user, get_user, validate_user),
    components(schemas(NewUserBody, User, Validity, ErrorBody))
)]
pub struct ApiDoc;
