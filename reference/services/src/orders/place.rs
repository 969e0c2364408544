//! Placing an order — the use case, over three traits so it runs without HTTP.
//!
//! The seed validates the user, prices the items, reserves each item and inserts the order; when
//! a later step fails the earlier reservations stay taken forever. Here the order is written as
//! `pending` first (a record of what to undo), every reservation carries its own id, and any
//! failure releases every reservation that was attempted — including one whose answer was lost,
//! since the product service may have taken the stock anyway.

use crate::deadline::Deadline;
use crate::error::ApiError;
use crate::resilience::DependencyError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// A validated order request.
#[derive(Debug, Clone)]
pub struct OrderRequest {
    /// Who orders.
    pub user_id: Uuid,
    /// What, each product once.
    pub lines: Vec<Line>,
}

/// One product and how many.
#[derive(Debug, Clone, Copy)]
pub struct Line {
    /// The product.
    pub product_id: Uuid,
    /// Units, at least one.
    pub quantity: i32,
}

/// Where an order is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Written, stock being reserved.
    Pending,
    /// Every item reserved.
    Confirmed,
    /// Failed; every reservation released.
    Cancelled,
    /// Failed, and a release did not get through: a retry is owed.
    ReleasePending,
}

impl Status {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Confirmed => "confirmed",
            Self::Cancelled => "cancelled",
            Self::ReleasePending => "release_pending",
        }
    }
}

/// An order (the seed's shape, money in cents).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Order {
    /// Id.
    pub id: Uuid,
    /// Who ordered.
    pub user_id: Uuid,
    /// What, at which price.
    pub items: Vec<OrderItem>,
    /// Sum of price × quantity.
    pub total_cents: i64,
    /// Where it is.
    pub status: Status,
    /// Created.
    pub created_at: DateTime<Utc>,
}

/// One line of an order.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OrderItem {
    /// The product.
    pub product_id: Uuid,
    /// Units.
    pub quantity: i32,
    /// Unit price when ordered.
    pub price_cents: i64,
    /// The reservation holding its stock.
    pub reservation_id: Uuid,
}

/// What the user service says about a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserCheck {
    /// May order.
    Valid,
    /// Exists, may not order.
    Inactive,
    /// No such user.
    Unknown,
}

/// The product service's answer to a reserve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stock {
    /// Taken.
    Reserved,
    /// Not enough.
    Insufficient,
    /// No such product.
    UnknownProduct,
}

/// The user service.
#[async_trait]
pub trait Users: Send + Sync {
    /// Whether `user` may order.
    async fn check(&self, user: Uuid, deadline: Deadline) -> Result<UserCheck, DependencyError>;
}

/// The product service.
#[async_trait]
pub trait Catalog: Send + Sync {
    /// The unit price of `product`, `None` when unknown.
    async fn price(&self, product: Uuid, deadline: Deadline) -> Result<Option<i64>, DependencyError>;
    /// Takes stock under `reservation` (idempotent).
    async fn reserve(
        &self,
        reservation: Uuid,
        line: Line,
        deadline: Deadline,
    ) -> Result<Stock, DependencyError>;
    /// Gives `reservation` back (idempotent, also before its reserve arrived).
    async fn release(&self, reservation: Uuid, deadline: Deadline) -> Result<(), DependencyError>;
}

/// The order service's own storage.
#[async_trait]
pub trait OrderStore: Send + Sync {
    /// Writes a `pending` order with its items.
    async fn insert_pending(&self, order: &Order) -> Result<(), ApiError>;
    /// Moves an order to `status`.
    async fn set_status(&self, id: Uuid, status: Status) -> Result<(), ApiError>;
}

/// What placing an order needs.
#[derive(Clone)]
pub struct Ports {
    /// The user service.
    pub users: Arc<dyn Users>,
    /// The product service.
    pub catalog: Arc<dyn Catalog>,
    /// Our database.
    pub store: Arc<dyn OrderStore>,
    /// Budget of the releases after a failure (the request's may be spent by then).
    pub release_timeout: Duration,
}

/// Why an order was not placed.
#[derive(Debug, thiserror::Error)]
pub enum PlaceError {
    /// No such user.
    #[error("user {0} does not exist")]
    UnknownUser(Uuid),
    /// The user may not order.
    #[error("user {0} is not active")]
    InactiveUser(Uuid),
    /// An item names no product.
    #[error("items[{index}].product_id: no product {product}")]
    UnknownProduct {
        /// Position in `items`.
        index: usize,
        /// The id.
        product: Uuid,
    },
    /// Not enough stock of a product; nothing stays reserved.
    #[error("not enough stock of product {0}")]
    Insufficient(Uuid),
    /// A dependency failed; nothing stays reserved.
    #[error(transparent)]
    Dependency(#[from] DependencyError),
    /// Our database failed.
    #[error(transparent)]
    Store(#[from] ApiError),
}

// ANCHOR: place_order
/// Validates the user, prices the items, writes the order as `pending`, reserves each item and
/// confirms; on any failure after the write, releases what it tried to reserve.
pub async fn place_order(ports: &Ports, req: OrderRequest, deadline: Deadline) -> Result<Order, PlaceError> {
    match ports.users.check(req.user_id, deadline).await? {
        UserCheck::Valid => {}
        UserCheck::Inactive => return Err(PlaceError::InactiveUser(req.user_id)),
        UserCheck::Unknown => return Err(PlaceError::UnknownUser(req.user_id)),
    }
    let mut items = Vec::with_capacity(req.lines.len());
    for (index, line) in req.lines.iter().enumerate() {
        let price = ports.catalog.price(line.product_id, deadline).await?;
        let price_cents = price.ok_or(PlaceError::UnknownProduct { index, product: line.product_id })?;
        let (product_id, quantity, reservation_id) = (line.product_id, line.quantity, Uuid::new_v4());
        items.push(OrderItem { product_id, quantity, price_cents, reservation_id });
    }
    let total_cents = items.iter().map(|i| i.price_cents * i64::from(i.quantity)).sum();
    let (id, created_at) = (Uuid::new_v4(), Utc::now());
    let mut order =
        Order { id, user_id: req.user_id, items, total_cents, status: Status::Pending, created_at };
    ports.store.insert_pending(&order).await?;

    for (tried, item) in order.items.iter().enumerate() {
        let line = Line { product_id: item.product_id, quantity: item.quantity };
        let failure = match ports.catalog.reserve(item.reservation_id, line, deadline).await {
            Ok(Stock::Reserved) => continue,
            Ok(Stock::Insufficient) => PlaceError::Insufficient(item.product_id),
            Ok(Stock::UnknownProduct) => {
                PlaceError::UnknownProduct { index: tried, product: item.product_id }
            }
            // Timed out or cut off: the stock may be taken all the same, so release it too.
            Err(e) => PlaceError::Dependency(e),
        };
        compensate(ports, &order, tried + 1).await;
        return Err(failure);
    }
    if let Err(e) = ports.store.set_status(order.id, Status::Confirmed).await {
        compensate(ports, &order, order.items.len()).await;
        return Err(e.into());
    }
    order.status = Status::Confirmed;
    Ok(order)
}

/// Releases the first `attempted` reservations of `order` on a budget of its own, then records
/// the outcome; a release that fails leaves the order `release_pending` for a retry.
async fn compensate(ports: &Ports, order: &Order, attempted: usize) {
    let deadline = Deadline::after(ports.release_timeout);
    let mut all_released = true;
    for item in &order.items[..attempted] {
        if let Err(e) = ports.catalog.release(item.reservation_id, deadline).await {
            tracing::error!(order = %order.id, reservation = %item.reservation_id, error = %e, "release failed");
            all_released = false;
        }
    }
    let status = if all_released { Status::Cancelled } else { Status::ReleasePending };
    if let Err(e) = ports.store.set_status(order.id, status).await {
        tracing::error!(order = %order.id, error = %e, "could not record the cancelled order");
    }
}
// ANCHOR_END: place_order
