//! The orders participant: CreateOrder / CancelOrder over `orders.orders` and
//! `orders.order_items`.

use super::LocalStep;
use crate::domain::OrderSaga;
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// Creates and cancels orders.
#[derive(Debug, Clone)]
pub struct Orders {
    pool: PgPool,
}

/// An order as the orders participant stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct OrderRow {
    /// Order id.
    pub id: Uuid,
    /// Who ordered.
    pub user_id: String,
    /// Total in minor units.
    pub total: i64,
    /// `created`, `confirmed` (choreography) or `cancelled`.
    pub status: String,
}

impl Orders {
    /// The participant over `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Marks a created order confirmed, inside the caller's transaction (the choreography's
    /// last step; a repeat changes nothing).
    pub async fn confirm(&self, conn: &mut PgConnection, id: Uuid) -> sqlx::Result<()> {
        sqlx::query(
            "UPDATE orders.orders SET status = 'confirmed', updated_at = now() WHERE id = $1 AND status = 'created'",
        )
        .bind(id)
        .execute(&mut *conn)
        .await
        .map(drop)
    }

    /// The stored order, if any.
    pub async fn get(&self, id: Uuid) -> sqlx::Result<Option<OrderRow>> {
        sqlx::query_as("SELECT id, user_id, total, status FROM orders.orders WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
    }
}

#[async_trait::async_trait]
impl LocalStep for Orders {
    const SCHEMA: &'static str = "orders";

    fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn apply(&self, conn: &mut PgConnection, saga: &OrderSaga) -> sqlx::Result<Result<String, String>> {
        sqlx::query("INSERT INTO orders.orders (id, user_id, total, status) VALUES ($1, $2, $3, 'created')")
            .bind(saga.order_id)
            .bind(&saga.user_id)
            .bind(saga.total.0)
            .execute(&mut *conn)
            .await?;
        let lines: Vec<i32> = (1..).take(saga.items.len()).collect();
        let products: Vec<&str> = saga.items.iter().map(|i| i.product_id.as_str()).collect();
        let quantities: Vec<i32> = saga.items.iter().map(|i| i.quantity as i32).collect();
        let prices: Vec<i64> = saga.items.iter().map(|i| i.price.0).collect();
        sqlx::query(
            "INSERT INTO orders.order_items (order_id, line, product_id, quantity, price)
             SELECT $1, * FROM unnest($2::int[], $3::text[], $4::int[], $5::bigint[])",
        )
        .bind(saga.order_id)
        .bind(lines)
        .bind(products)
        .bind(quantities)
        .bind(prices)
        .execute(&mut *conn)
        .await?;
        Ok(Ok(saga.order_id.to_string()))
    }

    async fn undo(&self, conn: &mut PgConnection, _reference: &str, saga: &OrderSaga) -> sqlx::Result<()> {
        sqlx::query("UPDATE orders.orders SET status = 'cancelled', updated_at = now() WHERE id = $1")
            .bind(saga.order_id)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }
}
