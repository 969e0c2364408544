//! The payments participant: ProcessPayment / RefundPayment over `payments.payments`.

use super::LocalStep;
use crate::domain::{Money, OrderSaga};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// The seed's rule: a payment over 10,000.00 is refused ("amount exceeds limit").
pub const PAYMENT_LIMIT: Money = Money(1_000_000);

/// Captures and refunds payments.
#[derive(Debug, Clone)]
pub struct Payments {
    pool: PgPool,
}

impl Payments {
    /// The participant over `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[async_trait::async_trait]
impl LocalStep for Payments {
    const SCHEMA: &'static str = "payments";

    fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn apply(&self, conn: &mut PgConnection, saga: &OrderSaga) -> sqlx::Result<Result<String, String>> {
        if saga.total > PAYMENT_LIMIT {
            return Ok(Err("amount exceeds limit".to_owned()));
        }
        let id = Uuid::new_v4();
        sqlx::query(
            "INSERT INTO payments.payments (id, order_id, amount, status) VALUES ($1, $2, $3, 'captured')",
        )
        .bind(id)
        .bind(saga.order_id)
        .bind(saga.total.0)
        .execute(&mut *conn)
        .await?;
        Ok(Ok(id.to_string()))
    }

    async fn undo(&self, conn: &mut PgConnection, reference: &str, _saga: &OrderSaga) -> sqlx::Result<()> {
        sqlx::query(
            "UPDATE payments.payments SET status = 'refunded', updated_at = now()
             WHERE id = $1::uuid AND status = 'captured'",
        )
        .bind(reference)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}
