//! Shared test setup: a fresh database, fast orchestrator settings, and a participant decorator
//! that records every call and injects failures.

use saga::domain::{CreateOrderBody, IdempotencyKey, NewOrder, OrderSaga, Step};
use saga::participants::{Participant, Participants, StepError, StepOutput};
use saga::{OrchestratorConfig, Phase};
use sqlx::PgPool;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A migrated database of its own.
pub async fn test_db() -> PgPool {
    let settings = test_db_settings().await;
    let pool = settings.lazy_pool();
    saga::MIGRATOR.run(&pool).await.unwrap();
    pool
}

/// Settings of a fresh, empty database.
pub async fn test_db_settings() -> cruncan_db::DatabaseSettings {
    let base = cruncan_db::local_test_settings().unwrap();
    let mut settings = cruncan_db::create_test_database(&base).await.unwrap();
    settings.max_connections = 16;
    // The whole suite runs at once on two cores: waiting for a connection is slow, not broken.
    settings.acquire_timeout = Duration::from_secs(30);
    settings
}

/// Short backoff so failure paths take milliseconds; a step timeout generous enough for a
/// loaded CI machine (the tests that want timeouts use slower participants).
pub fn fast_config() -> OrchestratorConfig {
    OrchestratorConfig {
        lease: Duration::from_secs(3),
        step_timeout: Duration::from_secs(2),
        max_attempts: 3,
        max_compensation_attempts: 3,
        backoff_initial: Duration::from_millis(5),
        backoff_max: Duration::from_millis(20),
        concurrency: 64,
        poll_interval: Duration::from_millis(50),
        drain_timeout: Duration::from_secs(1),
    }
}

/// An order of `(product, quantity, price)` lines, validated like the API does.
pub fn order(user: &str, lines: &[(&str, i64, f64)]) -> NewOrder {
    CreateOrderBody::from_lines(user, lines).validate().unwrap()
}

/// One call a participant received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub saga_id: uuid::Uuid,
    pub step: Step,
    pub phase: Phase,
}

/// Every call of every participant, in order.
#[derive(Debug, Clone, Default)]
pub struct CallLog(Arc<Mutex<Vec<Call>>>);

impl CallLog {
    pub fn of(&self, saga_id: uuid::Uuid) -> Vec<(Step, Phase)> {
        self.0.lock().unwrap().iter().filter(|c| c.saga_id == saga_id).map(|c| (c.step, c.phase)).collect()
    }
    pub fn all(&self) -> Vec<Call> {
        self.0.lock().unwrap().clone()
    }
}

/// How a decorated participant misbehaves.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Refuse the step for users starting with this prefix.
    pub reject_users: Option<(String, String)>,
    /// Answer `Unavailable` to this many first calls of the step (after really doing it when
    /// `apply_then_lose` is set: the answer is lost, not the call).
    pub unavailable_first: u32,
    pub apply_then_lose: bool,
    /// Every compensation fails.
    pub compensation_fails: bool,
    /// The first call of the step takes this long before doing it (a slow participant).
    pub first_call_delay: Option<Duration>,
}

/// A participant that logs its calls and injects [`Faults`].
pub struct Faulty {
    inner: Arc<dyn Participant>,
    step: Step,
    log: CallLog,
    faults: Faults,
    calls: AtomicU32,
}

#[async_trait::async_trait]
impl Participant for Faulty {
    async fn execute(&self, key: &IdempotencyKey, saga: &OrderSaga) -> Result<StepOutput, StepError> {
        self.log.0.lock().unwrap().push(Call {
            saga_id: saga.saga_id,
            step: self.step,
            phase: Phase::Execute,
        });
        if let Some((prefix, reason)) = &self.faults.reject_users
            && saga.user_id.starts_with(prefix.as_str())
        {
            return Err(StepError::Rejected(reason.clone()));
        }
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        if call == 0
            && let Some(delay) = self.faults.first_call_delay
        {
            tokio::time::sleep(delay).await;
        }
        if call < self.faults.unavailable_first {
            if self.faults.apply_then_lose {
                let _ = self.inner.execute(key, saga).await;
            }
            return Err(StepError::Unavailable(anyhow::anyhow!("injected: answer lost")));
        }
        self.inner.execute(key, saga).await
    }

    async fn compensate(&self, key: &IdempotencyKey, saga: &OrderSaga) -> Result<(), StepError> {
        self.log.0.lock().unwrap().push(Call {
            saga_id: saga.saga_id,
            step: self.step,
            phase: Phase::Compensate,
        });
        if self.faults.compensation_fails {
            return Err(StepError::Unavailable(anyhow::anyhow!("injected: compensation down")));
        }
        self.inner.compensate(key, saga).await
    }
}

/// Wraps every participant in `p` in a [`Faulty`] logging to `log`, with `faults(step)`.
pub fn faulty(p: Participants, log: &CallLog, faults: impl Fn(Step) -> Faults) -> Participants {
    let wrap = |inner: Arc<dyn Participant>, step: Step| -> Arc<dyn Participant> {
        Arc::new(Faulty { inner, step, log: log.clone(), faults: faults(step), calls: AtomicU32::new(0) })
    };
    Participants {
        orders: wrap(p.orders, Step::CreateOrder),
        payments: wrap(p.payments, Step::ProcessPayment),
        inventory: wrap(p.inventory, Step::ReserveInventory),
        shipping: wrap(p.shipping, Step::ScheduleShipment),
    }
}

/// Shipping refuses users named `noship…` ("no carrier"), orders refuse `blocked…`.
pub fn business_faults(step: Step) -> Faults {
    match step {
        Step::ScheduleShipment => {
            Faults { reject_users: Some(("noship".into(), "no carrier".into())), ..Faults::default() }
        }
        Step::CreateOrder => {
            Faults { reject_users: Some(("blocked".into(), "user is blocked".into())), ..Faults::default() }
        }
        _ => Faults::default(),
    }
}

/// Units of `product` available.
pub async fn stock(pool: &PgPool, product: &str) -> i64 {
    sqlx::query_scalar("SELECT available FROM inventory.stock WHERE product_id = $1")
        .bind(product)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Statuses of the rows of `table` (`schema.table`) for `order_id`.
pub async fn statuses(pool: &PgPool, table: &str, order_id: uuid::Uuid) -> Vec<String> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT status FROM {table} WHERE order_id = $1 ORDER BY status"
    )))
    .bind(order_id)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// Order row status (`None`: never created).
pub async fn order_status(pool: &PgPool, order_id: uuid::Uuid) -> Option<String> {
    sqlx::query_scalar("SELECT status FROM orders.orders WHERE id = $1")
        .bind(order_id)
        .fetch_optional(pool)
        .await
        .unwrap()
}
