//! The four participants as Kafka consumers: each reacts to the events before its step, in one
//! transaction that records the event in its inbox, applies (or undoes) its step with the same
//! idempotency keys as the orchestrated saga, and writes the next event to its outbox.

use super::events::{Envelope, Event};
use super::outbox::{self, OutboxWaker};
use crate::domain::{NewOrder, OrderSaga, Step};
use crate::participants::{Inventory, LocalStep, Orders, Payments, Shipping, ledger};
use anyhow::Context as _;
use cruncan_kafka::{Consumer, ConsumerSettings, Handler, HandlerError, Message, Producer, ProducerSettings};
use cruncan_shutdown::Shutdown;
use sqlx::{PgConnection, PgPool};
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument as _;

/// Where the choreography's events go.
#[derive(Debug, Clone)]
pub struct ChoreographyConfig {
    /// Kafka bootstrap servers.
    pub brokers: String,
    /// The topic of every saga event (dead letters go to `<topic>.dlq`).
    pub topic: String,
    /// Consumer groups are `<prefix>-orders`, `<prefix>-payments`, ...
    pub group_prefix: String,
    /// Partitions of the topic when it is created.
    pub partitions: i32,
    /// The four outbox relays (`OutboxSettings::default()`: 100 rows a round, a day of retention).
    pub outbox: cruncan_outbox::OutboxSettings,
    /// Inbox rows are deleted this long after they were received ([`super::inbox`];
    /// `inbox::DEFAULT_RETENTION`: 15 days).
    pub inbox_retention: Duration,
}

/// One participant's role in the choreography.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Orders,
    Payments,
    Inventory,
    Shipping,
}

impl Role {
    const ALL: [Role; 4] = [Role::Orders, Role::Payments, Role::Inventory, Role::Shipping];

    fn schema(self) -> &'static str {
        match self {
            Role::Orders => Orders::SCHEMA,
            Role::Payments => Payments::SCHEMA,
            Role::Inventory => Inventory::SCHEMA,
            Role::Shipping => Shipping::SCHEMA,
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    /// The events this participant acts on; it ignores the rest without touching its database.
    fn reacts_to(self, event: &Event) -> bool {
        matches!(
            (self, event),
            (Role::Payments, Event::OrderCreated { .. } | Event::InventoryFailed { .. })
                | (Role::Payments, Event::InventoryReleased { .. })
                | (Role::Inventory, Event::PaymentProcessed { .. } | Event::ShipmentFailed { .. })
                | (Role::Shipping, Event::InventoryReserved { .. })
                | (Role::Orders, Event::ShipmentScheduled { .. } | Event::PaymentFailed { .. })
                | (Role::Orders, Event::PaymentRefunded { .. })
        )
    }
}

/// The local participants, on one pool.
#[derive(Debug)]
struct Locals {
    orders: Orders,
    payments: Payments,
    inventory: Inventory,
    shipping: Shipping,
}

/// Applies `step` of `saga` once (by its idempotency key): `Err(reason)` when refused.
async fn apply<S: LocalStep>(
    local: &S,
    conn: &mut PgConnection,
    saga: &OrderSaga,
    step: Step,
) -> sqlx::Result<Result<(), String>> {
    let outcome = ledger::execute_once(local, conn, &saga.key(step), saga).await?;
    Ok(outcome.result.map(drop))
}

/// Undoes `step` of `saga` once.
async fn undo<S: LocalStep>(
    local: &S,
    conn: &mut PgConnection,
    saga: &OrderSaga,
    step: Step,
) -> sqlx::Result<()> {
    ledger::compensate_once(local, conn, &saga.key(step), saga).await.map(drop)
}

/// One participant as a consumer.
struct Reactor {
    role: Role,
    pool: PgPool,
    topic: String,
    waker: OutboxWaker,
    locals: Arc<Locals>,
}

impl Reactor {
    // ANCHOR: react
    /// The participant's step for `event`, and the event it publishes next.
    async fn step(&self, conn: &mut PgConnection, event: &Event) -> sqlx::Result<Option<Event>> {
        use Event as E;
        let l = &self.locals;
        let next = match event.clone() {
            E::OrderCreated { saga } => match apply(&l.payments, conn, &saga, Step::ProcessPayment).await? {
                Ok(()) => E::PaymentProcessed { saga },
                Err(reason) => E::PaymentFailed { saga, reason },
            },
            E::PaymentProcessed { saga } => {
                match apply(&l.inventory, conn, &saga, Step::ReserveInventory).await? {
                    Ok(()) => E::InventoryReserved { saga },
                    Err(reason) => E::InventoryFailed { saga, reason },
                }
            }
            E::InventoryReserved { saga } => {
                match apply(&l.shipping, conn, &saga, Step::ScheduleShipment).await? {
                    Ok(()) => E::ShipmentScheduled { saga },
                    Err(reason) => E::ShipmentFailed { saga, reason },
                }
            }
            E::ShipmentScheduled { saga } => {
                l.orders.confirm(conn, saga.order_id).await?;
                E::OrderConfirmed { saga }
            }
            // The failure path: each participant undoes its own step and passes the reason back.
            E::ShipmentFailed { saga, reason } => {
                undo(&l.inventory, conn, &saga, Step::ReserveInventory).await?;
                E::InventoryReleased { saga, reason }
            }
            E::InventoryFailed { saga, reason } | E::InventoryReleased { saga, reason } => {
                undo(&l.payments, conn, &saga, Step::ProcessPayment).await?;
                E::PaymentRefunded { saga, reason }
            }
            E::PaymentFailed { saga, reason } | E::PaymentRefunded { saga, reason } => {
                undo(&l.orders, conn, &saga, Step::CreateOrder).await?;
                E::OrderCancelled { saga, reason }
            }
            E::OrderConfirmed { .. } | E::OrderCancelled { .. } => return Ok(None),
        };
        Ok(Some(next))
    }
    // ANCHOR_END: react

    // ANCHOR: handle
    /// Inbox, step and outbox in one transaction: a redelivered event finds its id in the inbox
    /// and changes nothing; a crash before the commit leaves no trace, and the redelivery runs it.
    async fn react(&self, envelope: &Envelope) -> anyhow::Result<()> {
        let schema = self.role.schema();
        let mut tx = self.pool.begin().await.context("starting transaction")?;
        let seen: i32 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {schema}.inbox (event_id, event_type) VALUES ($1, $2)
             ON CONFLICT (event_id) DO UPDATE SET duplicates = {schema}.inbox.duplicates + 1
             RETURNING duplicates"
        )))
        .bind(envelope.event_id)
        .bind(envelope.event.name())
        .fetch_one(&mut *tx)
        .await
        .context("recording the event in the inbox")?;
        if seen > 0 {
            tracing::info!(event = envelope.event.name(), event_id = %envelope.event_id, "duplicate event ignored");
            tx.commit().await?;
            return Ok(());
        }
        let next = self.step(&mut tx, &envelope.event).await.context("applying the step")?;
        if let Some(next) = next {
            let out = Envelope {
                event_id: uuid::Uuid::new_v4(),
                correlation_id: envelope.correlation_id,
                event: next,
            };
            outbox::enqueue(&mut tx, schema, &self.topic, &out).await?;
        }
        tx.commit().await.context("committing")?;
        self.waker.wake();
        Ok(())
    }
    // ANCHOR_END: handle
}

impl Handler for Reactor {
    async fn handle(&self, msg: &Message) -> Result<(), HandlerError> {
        let payload = msg.payload.as_deref().unwrap_or_default();
        let envelope: Envelope = serde_json::from_slice(payload)
            .map_err(|e| HandlerError::permanent(anyhow::Error::new(e).context("not a saga event")))?;
        if !self.role.reacts_to(&envelope.event) {
            return Ok(());
        }
        let span = tracing::info_span!(
            "react",
            otel.name = format!("{:?} on {}", self.role, envelope.event.name()),
            correlation_id = %envelope.correlation_id,
        );
        self.react(&envelope).instrument(span).await.map_err(HandlerError::retryable)
    }
}

/// The choreographed saga: the order service's entry point and the four participants.
#[derive(Debug)]
pub struct Choreography {
    pool: PgPool,
    cfg: ChoreographyConfig,
    producer: Producer,
    locals: Arc<Locals>,
    wakers: [OutboxWaker; 4],
}

impl Choreography {
    /// The choreography over `pool` (migrated with [`crate::MIGRATOR`]).
    pub fn new(pool: PgPool, cfg: ChoreographyConfig) -> anyhow::Result<Self> {
        let producer = Producer::new(&cfg.brokers, &ProducerSettings::new("saga-choreography"))?;
        let locals = Arc::new(Locals {
            orders: Orders::new(pool.clone()),
            payments: Payments::new(pool.clone()),
            inventory: Inventory::new(pool.clone()),
            shipping: Shipping::new(pool.clone()),
        });
        Ok(Self { pool, cfg, producer, locals, wakers: Default::default() })
    }

    // ANCHOR: place_order
    /// The order service: creates the order and writes `OrderCreated` to its outbox, in one
    /// transaction. What happens next is up to the other participants.
    pub async fn place_order(&self, order: NewOrder) -> anyhow::Result<OrderSaga> {
        let saga = OrderSaga::new(order);
        let span =
            tracing::info_span!("place order", otel.name = "place order", correlation_id = %saga.saga_id);
        async {
            let mut tx = self.pool.begin().await?;
            let created =
                ledger::execute_once(&self.locals.orders, &mut tx, &saga.key(Step::CreateOrder), &saga)
                    .await?;
            anyhow::ensure!(created.result.is_ok(), "order refused: {:?}", created.result);
            let envelope = Envelope::new(Event::OrderCreated { saga: saga.clone() });
            outbox::enqueue(&mut tx, Orders::SCHEMA, &self.cfg.topic, &envelope).await?;
            tx.commit().await?;
            self.wakers[Role::Orders.index()].wake();
            Ok(())
        }
        .instrument(span)
        .await?;
        Ok(saga)
    }
    // ANCHOR_END: place_order

    /// Runs the four consumers, the four outbox relays and the four inboxes' retention until
    /// `shutdown`. The relays stop after the consumers, and drain what the consumers' last
    /// handlers wrote. If a consumer fails, the other consumers are stopped (not `shutdown`,
    /// which is the caller's), the relays drain, and the first error is returned.
    pub async fn run(&self, shutdown: Shutdown) -> anyhow::Result<()> {
        let cfg = &self.cfg;
        cruncan_kafka::ensure_topic(&cfg.brokers, &cfg.topic, cfg.partitions, 1).await?;
        cruncan_kafka::ensure_topic(&cfg.brokers, &format!("{}.dlq", cfg.topic), 1, 1).await?;
        let (mut consumers, mut relays) = (tokio::task::JoinSet::new(), tokio::task::JoinSet::new());
        let (consumers_stop, relays_stop) = (shutdown.child(), Shutdown::new());
        for role in Role::ALL {
            let waker = self.wakers[role.index()].clone();
            let relay = outbox::relay(
                self.pool.clone(),
                self.producer.clone(),
                role.schema(),
                waker.clone(),
                &cfg.outbox,
            )?;
            relays.spawn(relay.run(relays_stop.clone()));
            relays.spawn(super::inbox::run(
                self.pool.clone(),
                role.schema(),
                cfg.inbox_retention,
                relays_stop.clone(),
            ));
            let consumer_settings = ConsumerSettings {
                concurrency: 8,
                max_attempts: 5,
                backoff_initial: Duration::from_millis(50),
                backoff_max: Duration::from_secs(1),
                drain_timeout: Duration::from_secs(5),
                ..ConsumerSettings::new(format!("{}-{}", cfg.group_prefix, role.schema()))
            };
            let consumer = Consumer::new(
                &cfg.brokers,
                std::slice::from_ref(&cfg.topic),
                consumer_settings,
                self.producer.clone(),
            )?;
            let reactor = Reactor {
                role,
                pool: self.pool.clone(),
                topic: cfg.topic.clone(),
                waker,
                locals: Arc::clone(&self.locals),
            };
            let stop = consumers_stop.clone();
            consumers.spawn(async move { consumer.run(Arc::new(reactor), stop).await });
        }
        // The first consumer failure is returned, but only after the relays drained.
        let mut failed = Ok(());
        while let Some(done) = consumers.join_next().await {
            if let Err(e) = done.context("choreography consumer panicked").and_then(|r| r) {
                consumers_stop.trigger();
                failed = failed.and(Err(e));
            }
        }
        relays_stop.trigger();
        while let Some(done) = relays.join_next().await {
            done.context("choreography outbox relay or inbox retention panicked")?;
        }
        failed
    }
}
