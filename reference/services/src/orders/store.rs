//! Orders in PostgreSQL.

use super::place::{Order, OrderItem, OrderStore, Status};
use crate::error::{ApiError, db};
use async_trait::async_trait;
use sqlx::PgPool;
use uuid::Uuid;

/// The order service's migrations.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/orders");

/// The `orders` and `order_items` tables.
#[derive(Debug, Clone)]
pub struct PgOrders(pub PgPool);

#[async_trait]
impl OrderStore for PgOrders {
    async fn insert_pending(&self, order: &Order) -> Result<(), ApiError> {
        let mut tx = self.0.begin().await.map_err(db)?;
        sqlx::query(
            "INSERT INTO orders (id, user_id, status, total_cents, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(order.id)
        .bind(order.user_id)
        .bind(order.status.as_str())
        .bind(order.total_cents)
        .bind(order.created_at)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        for (position, item) in order.items.iter().enumerate() {
            sqlx::query(
                "INSERT INTO order_items (order_id, position, product_id, quantity, price_cents, reservation_id)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(order.id)
            .bind(i32::try_from(position).unwrap_or(i32::MAX))
            .bind(item.product_id)
            .bind(item.quantity)
            .bind(item.price_cents)
            .bind(item.reservation_id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }

    async fn set_status(&self, id: Uuid, status: Status) -> Result<(), ApiError> {
        // Only an unfinished order moves: a confirmed or cancelled one never changes again.
        sqlx::query(
            "UPDATE orders SET status = $2, updated_at = now()
             WHERE id = $1 AND status IN ('pending', 'release_pending')",
        )
        .bind(id)
        .bind(status.as_str())
        .execute(&self.0)
        .await
        .map_err(db)?;
        Ok(())
    }
}

impl PgOrders {
    /// An order with its items.
    pub async fn get(&self, id: Uuid) -> Result<Option<Order>, ApiError> {
        let head: Option<(Uuid, String, i64, chrono::DateTime<chrono::Utc>)> =
            sqlx::query_as("SELECT user_id, status, total_cents, created_at FROM orders WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.0)
                .await
                .map_err(db)?;
        let Some((user_id, status, total_cents, created_at)) = head else { return Ok(None) };
        let items: Vec<(Uuid, i32, i64, Uuid)> = sqlx::query_as(
            "SELECT product_id, quantity, price_cents, reservation_id FROM order_items
             WHERE order_id = $1 ORDER BY position",
        )
        .bind(id)
        .fetch_all(&self.0)
        .await
        .map_err(db)?;
        let status = match status.as_str() {
            "confirmed" => Status::Confirmed,
            "cancelled" => Status::Cancelled,
            "release_pending" => Status::ReleasePending,
            _ => Status::Pending,
        };
        let items = items
            .into_iter()
            .map(|(product_id, quantity, price_cents, reservation_id)| OrderItem {
                product_id,
                quantity,
                price_cents,
                reservation_id,
            })
            .collect();
        Ok(Some(Order { id, user_id, items, total_cents, status, created_at }))
    }
}
