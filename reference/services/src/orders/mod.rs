//! The order service: `POST /orders` and `GET /orders/{id}`.

pub mod clients;
pub mod place;
mod store;
pub mod sweeper;

use crate::deadline::Deadline;
use crate::error::ApiError;
use crate::products::MAX_QUANTITY;
use crate::users::path_id;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse as _;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use cruncan_http::ErrorBody;
use cruncan_http::ValidJson;
use place::{Line, Order, OrderRequest, PlaceError, Ports};
use serde::Deserialize;
pub use store::{MIGRATOR, PgOrders};
use uuid::Uuid;

/// Most lines in one order.
pub const MAX_LINES: usize = 20;

/// `POST /orders` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct PlaceOrderBody {
    /// Who orders.
    pub user_id: Uuid,
    /// What: 1 to 20 lines, each product once.
    pub items: Vec<ItemBody>,
}

/// One line of `POST /orders`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ItemBody {
    /// The product.
    pub product_id: Uuid,
    /// Units, 1 to 1000.
    pub quantity: i32,
}

impl PlaceOrderBody {
    fn validate(self) -> Result<OrderRequest, ApiError> {
        if self.items.is_empty() || self.items.len() > MAX_LINES {
            return Err(ApiError::invalid("items", format!("must hold 1 to {MAX_LINES} lines")));
        }
        let mut lines: Vec<Line> = Vec::with_capacity(self.items.len());
        for (i, item) in self.items.into_iter().enumerate() {
            if !(1..=MAX_QUANTITY).contains(&item.quantity) {
                return Err(ApiError::invalid(
                    format!("items[{i}].quantity"),
                    format!("must be 1 to {MAX_QUANTITY}"),
                ));
            }
            if lines.iter().any(|l| l.product_id == item.product_id) {
                return Err(ApiError::invalid(format!("items[{i}].product_id"), "is listed twice"));
            }
            lines.push(Line { product_id: item.product_id, quantity: item.quantity });
        }
        Ok(OrderRequest { user_id: self.user_id, lines })
    }
}

/// What the handlers share.
#[derive(Clone)]
pub struct OrdersState {
    /// The use case's ports.
    pub ports: Ports,
    /// Reads.
    pub store: PgOrders,
}

/// The order service's routes (the deadline middleware is added by the app).
pub fn router(state: OrdersState) -> Router {
    Router::new().route("/orders", post(place)).route("/orders/{id}", get(get_order)).with_state(state)
}

impl From<PlaceError> for ApiError {
    fn from(e: PlaceError) -> Self {
        match e {
            PlaceError::UnknownUser(_) => {
                Self::Unprocessable { code: "unknown_user", message: e.to_string() }
            }
            PlaceError::InactiveUser(_) => {
                Self::Unprocessable { code: "inactive_user", message: e.to_string() }
            }
            PlaceError::UnknownProduct { .. } => {
                Self::Unprocessable { code: "unknown_product", message: e.to_string() }
            }
            PlaceError::Insufficient(_) => {
                Self::Conflict { code: "insufficient_stock", message: e.to_string() }
            }
            PlaceError::Dependency(d) => Self::Dependency(d),
            PlaceError::Store(s) => s,
        }
    }
}

// ANCHOR: place_handler
/// Places an order.
#[utoipa::path(post, path = "/orders", tag = "orders", request_body = PlaceOrderBody, responses(
    (status = 201, body = Order), (status = 400, body = ErrorBody),
    (status = 409, description = "Not enough stock", body = ErrorBody),
    (status = 422, description = "Unknown or inactive user, unknown product", body = ErrorBody),
    (status = 503, description = "A dependency is down, slow or saturated", body = ErrorBody),
    (status = 504, description = "The deadline passed", body = ErrorBody)))]
pub async fn place(
    State(state): State<OrdersState>,
    Extension(deadline): Extension<Deadline>,
    ValidJson(body): ValidJson<PlaceOrderBody>,
) -> Result<axum::response::Response, ApiError> {
    let request = body.validate()?;
    // A task of its own: if the client hangs up, the order still finishes or is released.
    let ports = state.ports.clone();
    let order = tokio::spawn(async move { place::place_order(&ports, request, deadline).await })
        .await
        .map_err(|e| ApiError::Unexpected(e.into()))??;
    Ok((StatusCode::CREATED, Json(order)).into_response())
}
// ANCHOR_END: place_handler

/// Returns an order.
#[utoipa::path(get, path = "/orders/{id}", tag = "orders", params(("id" = Uuid, Path)), responses(
    (status = 200, body = Order), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_order(
    State(state): State<OrdersState>,
    Path(id): Path<String>,
) -> Result<Json<Order>, ApiError> {
    let id = path_id(&id)?;
    state.store.get(id).await?.map(Json).ok_or_else(|| ApiError::NotFound(format!("no order {id}")))
}

/// The order service's OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "orders"),
    paths(place, get_order),
    components(schemas(PlaceOrderBody, ItemBody, Order, place::OrderItem, place::Status, ErrorBody))
)]
pub struct ApiDoc;
