//! The shipping participant: ScheduleShipment / CancelShipment over `shipping.shipments`.

use super::LocalStep;
use crate::domain::OrderSaga;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// Schedules and cancels shipments.
#[derive(Debug, Clone)]
pub struct Shipping {
    pool: PgPool,
}

impl Shipping {
    /// The participant over `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[async_trait::async_trait]
impl LocalStep for Shipping {
    const SCHEMA: &'static str = "shipping";

    fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn apply(&self, conn: &mut PgConnection, saga: &OrderSaga) -> sqlx::Result<Result<String, String>> {
        let id = Uuid::new_v4();
        let tracking = format!("TRK{}", &id.simple().to_string()[..12].to_uppercase());
        sqlx::query(
            "INSERT INTO shipping.shipments (id, order_id, tracking_number, status, scheduled_for)
             VALUES ($1, $2, $3, 'scheduled', now() + interval '1 day')",
        )
        .bind(id)
        .bind(saga.order_id)
        .bind(&tracking)
        .execute(&mut *conn)
        .await?;
        Ok(Ok(id.to_string()))
    }

    async fn undo(&self, conn: &mut PgConnection, reference: &str, _saga: &OrderSaga) -> sqlx::Result<()> {
        sqlx::query("UPDATE shipping.shipments SET status = 'cancelled' WHERE id = $1::uuid")
            .bind(reference)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }
}
