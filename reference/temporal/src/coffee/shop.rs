//! The coffee shop's side effects in PostgreSQL: orders, charges, refunds, cups brewed.
//!
//! Temporal runs an activity *at least* once: a retry, or a new worker after a crash, may run it
//! again after its effect was already made. So every write here is keyed by an idempotency key
//! and a second call with the same key returns the first call's result instead of acting twice.

use super::cards::{self, CardError};
use super::order::{CoffeeOrder, Drink};
use sqlx::PgPool;

/// A charge that did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ChargeError {
    /// The processor said no, or could not be reached.
    #[error(transparent)]
    Card(#[from] CardError),
    /// Our own database failed.
    #[error("charge store: {0}")]
    Store(#[from] sqlx::Error),
}

/// What the shop did for one order, read back from the database (demos and tests).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effects {
    /// The order row's status (`received`, `collected`, `declined`, `refunded`), if it exists.
    pub status: Option<String>,
    /// Charges made.
    pub charges: i64,
    /// Refunds made.
    pub refunds: i64,
    /// Cups taken for brewing.
    pub cups: i64,
    /// Cups finished.
    pub cups_ready: i64,
    /// The attempt that finished each cup, in order (1 unless a retry or a new worker did).
    pub cup_ready_attempts: Vec<i32>,
    /// The attempt that made the charge.
    pub charge_attempt: Option<i32>,
}

/// The shop: a pool and nothing else, cheap to clone into every activity.
#[derive(Debug, Clone)]
pub struct CoffeeShop {
    pool: PgPool,
}

impl CoffeeShop {
    /// A shop over `pool` (migrated with [`crate::MIGRATOR`]).
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Records the order (`received`); a second call changes nothing.
    pub async fn take_order(&self, order_id: &str, order: &CoffeeOrder) -> sqlx::Result<()> {
        let drinks: Vec<&str> = order.drinks().iter().map(|d| d.as_str()).collect();
        sqlx::query(
            "INSERT INTO coffee_order (order_id, customer, drinks, total_cents, status)
             VALUES ($1, $2, $3, $4, 'received') ON CONFLICT (order_id) DO NOTHING",
        )
        .bind(order_id)
        .bind(order.customer())
        .bind(&drinks)
        .bind(order.total_cents())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    // ANCHOR: charge
    /// Charges the card once per key and returns the charge id. A repeated call finds
    /// the charge made by an earlier attempt and returns it without asking the
    /// processor again. (A real processor call would carry `key` as its idempotency key
    /// too, for an attempt whose charge went through but whose row was never written.)
    pub async fn charge(
        &self,
        key: &str,
        order_id: &str,
        card: &str,
        amount_cents: i64,
        attempt: u32,
    ) -> Result<String, ChargeError> {
        if let Some(id) = self.charge_id(key).await? {
            return Ok(id);
        }
        cards::authorize(card, amount_cents, attempt)?;
        let charge_id = format!("ch_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(
            "INSERT INTO coffee_charge
               (idempotency_key, charge_id, order_id, amount_cents, card, attempt)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (idempotency_key) DO NOTHING",
        )
        .bind(key)
        .bind(&charge_id)
        .bind(order_id)
        .bind(amount_cents)
        .bind(card)
        .bind(i32::try_from(attempt).unwrap_or(i32::MAX))
        .execute(&self.pool)
        .await?;
        // Whoever inserted first (this attempt or a concurrent one) owns the charge.
        Ok(self.charge_id(key).await?.unwrap_or(charge_id))
    }
    // ANCHOR_END: charge

    async fn charge_id(&self, key: &str) -> sqlx::Result<Option<String>> {
        sqlx::query_scalar("SELECT charge_id FROM coffee_charge WHERE idempotency_key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
    }

    /// Refunds a charge in full, once per key; returns the refund id.
    pub async fn refund(&self, key: &str, charge_id: &str, reason: &str) -> sqlx::Result<String> {
        let refund_id = format!("re_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(
            "INSERT INTO coffee_refund (idempotency_key, refund_id, charge_id, amount_cents, reason)
             SELECT $1, $2, charge_id, amount_cents, $4 FROM coffee_charge WHERE charge_id = $3
             ON CONFLICT (idempotency_key) DO NOTHING",
        )
        .bind(key)
        .bind(&refund_id)
        .bind(charge_id)
        .bind(reason)
        .execute(&self.pool)
        .await?;
        sqlx::query_scalar("SELECT refund_id FROM coffee_refund WHERE idempotency_key = $1")
            .bind(key)
            .fetch_one(&self.pool)
            .await
    }

    /// Takes a cup for drink `position` of the order (the effect, once per key).
    pub async fn start_brew(
        &self,
        key: &str,
        order_id: &str,
        position: u32,
        drink: Drink,
        attempt: u32,
    ) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO coffee_brew (idempotency_key, order_id, position, drink, started_attempt)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (idempotency_key) DO NOTHING",
        )
        .bind(key)
        .bind(order_id)
        .bind(i32::try_from(position).unwrap_or(i32::MAX))
        .bind(drink.as_str())
        .bind(i32::try_from(attempt).unwrap_or(i32::MAX))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Marks the cup ready (the first attempt to get here wins).
    pub async fn finish_brew(&self, key: &str, attempt: u32) -> sqlx::Result<()> {
        sqlx::query(
            "UPDATE coffee_brew SET ready_at = now(), ready_attempt = $2
             WHERE idempotency_key = $1 AND ready_at IS NULL",
        )
        .bind(key)
        .bind(i32::try_from(attempt).unwrap_or(i32::MAX))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Sets the order's final status (`collected`, `declined`, `refunded`).
    pub async fn close_order(&self, order_id: &str, status: &str) -> sqlx::Result<()> {
        sqlx::query("UPDATE coffee_order SET status = $2, updated_at = now() WHERE order_id = $1")
            .bind(order_id)
            .bind(status)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// What was done for `order_id`.
    pub async fn effects(&self, order_id: &str) -> sqlx::Result<Effects> {
        let status = sqlx::query_scalar("SELECT status FROM coffee_order WHERE order_id = $1")
            .bind(order_id)
            .fetch_optional(&self.pool)
            .await?;
        let (charges, charge_attempt): (i64, Option<i32>) =
            sqlx::query_as("SELECT count(*), max(attempt) FROM coffee_charge WHERE order_id = $1")
                .bind(order_id)
                .fetch_one(&self.pool)
                .await?;
        let refunds = sqlx::query_scalar(
            "SELECT count(*) FROM coffee_refund r JOIN coffee_charge c USING (charge_id)
             WHERE c.order_id = $1",
        )
        .bind(order_id)
        .fetch_one(&self.pool)
        .await?;
        let cups: Vec<(Option<i32>,)> =
            sqlx::query_as("SELECT ready_attempt FROM coffee_brew WHERE order_id = $1 ORDER BY position")
                .bind(order_id)
                .fetch_all(&self.pool)
                .await?;
        let cup_ready_attempts: Vec<i32> = cups.iter().filter_map(|(a,)| *a).collect();
        Ok(Effects {
            status,
            charges,
            refunds,
            cups: i64::try_from(cups.len()).unwrap_or(i64::MAX),
            cups_ready: i64::try_from(cup_ready_attempts.len()).unwrap_or(i64::MAX),
            cup_ready_attempts,
            charge_attempt,
        })
    }
}
