//! The shipping participant: ScheduleShipment / CancelShipment over `shipping.shipments`.

use super::LocalStep;
use crate::domain::OrderSaga;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// The carrier takes at most this many units in one shipment.
pub const SHIPMENT_UNIT_LIMIT: u64 = 200;

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
        let units: u64 = saga.items.iter().map(|i| u64::from(i.quantity)).sum();
        if units > SHIPMENT_UNIT_LIMIT {
            return Ok(Err(format!(
                "shipment too large: {units} units, carrier limit {SHIPMENT_UNIT_LIMIT}"
            )));
        }
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
