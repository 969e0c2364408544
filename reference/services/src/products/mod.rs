//! The product service: `POST /products`, `GET /products/{id}`, `POST /products/reserve` and
//! `POST /products/release`.

mod store;

use crate::error::ApiError;
use crate::users::path_id;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse as _;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use cruncan_http::ErrorBody;
use cruncan_http::ValidJson;
use serde::{Deserialize, Serialize};
pub use store::{MIGRATOR, ProductStore, Reserve};
use uuid::Uuid;

/// Most units one reservation may take.
pub const MAX_QUANTITY: i32 = 1000;

/// `POST /products` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct NewProductBody {
    /// Name, 1 to 200 characters.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Price in cents (money is never a float).
    pub price_cents: i64,
    /// Units in stock.
    pub stock: i32,
}

/// A product (the seed's shape, with the price in cents).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Product {
    /// Id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Price in cents.
    pub price_cents: i64,
    /// Units not reserved.
    pub stock: i32,
    /// Created.
    pub created_at: DateTime<Utc>,
}

// ANCHOR: reserve_body
/// `POST /products/reserve` body: the seed's, plus the caller's reservation id, which makes the
/// call idempotent (safe to retry) and releasable.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReserveBody {
    /// The product.
    pub product_id: Uuid,
    /// Units, 1 to 1000.
    pub quantity: i32,
    /// The caller's key for this reservation; a new one is made when absent.
    #[serde(default)]
    pub reservation_id: Option<Uuid>,
}
// ANCHOR_END: reserve_body

/// `POST /products/reserve` answer.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Reserved {
    /// Always `reserved`.
    pub status: String,
    /// The reservation, to release it.
    pub reservation_id: Uuid,
}

/// `POST /products/release` body.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReleaseBody {
    /// The reservation to give back.
    pub reservation_id: Uuid,
}

/// `POST /products/release` answer.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Released {
    /// Always `released`.
    pub status: String,
}

/// The product service's routes.
pub fn router(store: ProductStore) -> Router {
    Router::new()
        .route("/products", post(create_product))
        .route("/products/{id}", get(get_product))
        .route("/products/reserve", post(reserve))
        .route("/products/release", post(release))
        .with_state(store)
}

/// Creates a product.
#[utoipa::path(post, path = "/products", tag = "products", request_body = NewProductBody, responses(
    (status = 201, body = Product), (status = 400, body = ErrorBody)))]
pub async fn create_product(
    State(store): State<ProductStore>,
    ValidJson(body): ValidJson<NewProductBody>,
) -> Result<axum::response::Response, ApiError> {
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(ApiError::invalid("name", "must be 1 to 200 characters"));
    }
    if body.price_cents < 0 {
        return Err(ApiError::invalid("price_cents", "must not be negative"));
    }
    if body.stock < 0 {
        return Err(ApiError::invalid("stock", "must not be negative"));
    }
    let product = store.create(name, &body.description, body.price_cents, body.stock).await?;
    Ok((StatusCode::CREATED, Json(product)).into_response())
}

/// Returns a product.
#[utoipa::path(get, path = "/products/{id}", tag = "products", params(("id" = Uuid, Path)), responses(
    (status = 200, body = Product), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_product(
    State(store): State<ProductStore>,
    Path(id): Path<String>,
) -> Result<Json<Product>, ApiError> {
    let id = path_id(&id)?;
    store.get(id).await?.map(Json).ok_or_else(|| ApiError::NotFound(format!("no product {id}")))
}

/// Takes `quantity` units of stock, atomically, once per reservation id.
#[utoipa::path(post, path = "/products/reserve", tag = "products", request_body = ReserveBody, responses(
    (status = 200, body = Reserved), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
    (status = 409, description = "Not enough stock, or the reservation was released", body = ErrorBody)))]
pub async fn reserve(
    State(store): State<ProductStore>,
    ValidJson(body): ValidJson<ReserveBody>,
) -> Result<Json<Reserved>, ApiError> {
    if !(1..=MAX_QUANTITY).contains(&body.quantity) {
        return Err(ApiError::invalid("quantity", format!("must be 1 to {MAX_QUANTITY}")));
    }
    let id = body.reservation_id.unwrap_or_else(Uuid::new_v4);
    match store.reserve(id, body.product_id, body.quantity).await? {
        Reserve::Taken => Ok(Json(Reserved { status: "reserved".into(), reservation_id: id })),
        Reserve::UnknownProduct => Err(ApiError::NotFound(format!("no product {}", body.product_id))),
        Reserve::Insufficient => Err(ApiError::Conflict {
            code: "insufficient_stock",
            message: format!("not enough stock of {} for {}", body.product_id, body.quantity),
        }),
        Reserve::KeyReused => Err(ApiError::Conflict {
            code: "reservation_conflict",
            message: format!("reservation {id} was released or is for another product"),
        }),
    }
}

/// Gives a reservation's stock back; releasing twice, or before the reserve, is fine.
#[utoipa::path(post, path = "/products/release", tag = "products", request_body = ReleaseBody, responses(
    (status = 200, body = Released), (status = 400, body = ErrorBody)))]
pub async fn release(
    State(store): State<ProductStore>,
    ValidJson(body): ValidJson<ReleaseBody>,
) -> Result<Json<Released>, ApiError> {
    store.release(body.reservation_id).await?;
    Ok(Json(Released { status: "released".into() }))
}

/// The product service's OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "products"),
    paths(create_product, get_product, reserve, release),
    components(schemas(NewProductBody, Product, ReserveBody, Reserved, ReleaseBody, Released, ErrorBody))
)]
pub struct ApiDoc;
