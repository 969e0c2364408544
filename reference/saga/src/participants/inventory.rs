//! The inventory participant: ReserveInventory / ReleaseReservation over `inventory.stock` and
//! `inventory.reservations`. Every line of the order is reserved, or none is.

use super::LocalStep;
use crate::domain::OrderSaga;
use sqlx::{Acquire as _, PgConnection, PgPool};
use std::collections::BTreeMap;
use uuid::Uuid;

/// Reserves and releases stock.
#[derive(Debug, Clone)]
pub struct Inventory {
    pool: PgPool,
}

impl Inventory {
    /// The participant over `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Units of `product_id` available now (`None`: unknown product).
    pub async fn available(&self, product_id: &str) -> sqlx::Result<Option<i64>> {
        sqlx::query_scalar("SELECT available FROM inventory.stock WHERE product_id = $1")
            .bind(product_id)
            .fetch_optional(&self.pool)
            .await
    }
}

/// Quantities per product, in product order: rows are always locked in the same order, so two
/// reservations never deadlock.
fn per_product(saga: &OrderSaga) -> BTreeMap<&str, i64> {
    let mut wanted = BTreeMap::new();
    for item in &saga.items {
        *wanted.entry(item.product_id.as_str()).or_insert(0) += i64::from(item.quantity);
    }
    wanted
}

#[async_trait::async_trait]
impl LocalStep for Inventory {
    const SCHEMA: &'static str = "inventory";

    fn pool(&self) -> &PgPool {
        &self.pool
    }

    // ANCHOR: reserve
    async fn apply(&self, conn: &mut PgConnection, saga: &OrderSaga) -> sqlx::Result<Result<String, String>> {
        // A savepoint: a later line's refusal undoes the earlier lines' decrements.
        let mut sp = conn.begin().await?;
        for (product, need) in per_product(saga) {
            // Check and decrement in one statement: two orders can never both take the last unit.
            let taken = sqlx::query(
                "UPDATE inventory.stock SET available = available - $2
                 WHERE product_id = $1 AND available >= $2",
            )
            .bind(product)
            .bind(need)
            .execute(&mut *sp)
            .await?
            .rows_affected();
            if taken == 0 {
                let have: Option<i64> =
                    sqlx::query_scalar("SELECT available FROM inventory.stock WHERE product_id = $1")
                        .bind(product)
                        .fetch_optional(&mut *sp)
                        .await?;
                sp.rollback().await?;
                return Ok(Err(match have {
                    None => format!("product not found: {product}"),
                    Some(have) => format!("insufficient stock for {product}: have {have}, need {need}"),
                }));
            }
            sqlx::query(
                "INSERT INTO inventory.reservations (id, order_id, product_id, quantity, status)
                 VALUES ($1, $2, $3, $4, 'reserved')",
            )
            .bind(Uuid::new_v4())
            .bind(saga.order_id)
            .bind(product)
            .bind(need)
            .execute(&mut *sp)
            .await?;
        }
        sp.commit().await?;
        Ok(Ok(saga.order_id.to_string()))
    }
    // ANCHOR_END: reserve

    async fn undo(&self, conn: &mut PgConnection, _reference: &str, saga: &OrderSaga) -> sqlx::Result<()> {
        let released: Vec<(String, i64)> = sqlx::query_as(
            "UPDATE inventory.reservations SET status = 'released'
             WHERE order_id = $1 AND status = 'reserved' RETURNING product_id, quantity",
        )
        .bind(saga.order_id)
        .fetch_all(&mut *conn)
        .await?;
        let mut released = released;
        released.sort();
        for (product, quantity) in released {
            sqlx::query("UPDATE inventory.stock SET available = available + $2 WHERE product_id = $1")
                .bind(product)
                .bind(quantity)
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }
}
