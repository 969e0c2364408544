//! The orchestrator: drives each saga forward step by step, and on failure undoes the steps
//! that need it in reverse order, writing the saga's state to PostgreSQL before each participant
//! call and after each answer.
//!
//! Any replica may die between any two lines. What makes that safe:
//! - the state says which call to make next, and every call carries the key `<saga>:<step>`, so
//!   a call repeated after a crash changes nothing at the participant;
//! - a saga is driven by the replica holding its lease; a dead replica's lease runs out and
//!   another replica claims the saga and carries on from the last write;
//! - a step that never answered is compensated as well (its compensation is a no-op, or a
//!   tombstone that stops the step if it arrives late).

use crate::domain::{NewOrder, OrderSaga, Step};
pub use crate::killpoint::{KillHook, KillPoint, Phase};
use crate::participants::{Participants, StepError};
use crate::state::{SagaRecord, SagaStatus, StepState};
use crate::store::{ClientKey, Inserted, SagaStore};
use backon::{BackoffBuilder as _, ExponentialBuilder};
use cruncan_shutdown::Shutdown;
use opentelemetry::KeyValue;
use opentelemetry::metrics::Counter;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};
use tracing::Instrument as _;
use uuid::Uuid;

/// Orchestrator settings, as the `orchestrator:` section of the config files deserializes them
/// (durations as `15s`, `100ms`; a key it does not know is an error; a key left out keeps its
/// default).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OrchestratorConfig {
    /// How long a claim lasts without a write; must exceed `step_timeout` + `backoff_max`.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// Longest wait for one participant call.
    #[serde(with = "humantime_serde")]
    pub step_timeout: Duration,
    /// Calls of a step (first call and retries) before it counts as failed.
    pub max_attempts: u32,
    /// Calls of a compensation before the saga is parked as `failed`.
    pub max_compensation_attempts: u32,
    /// First retry delay (doubles, with jitter).
    #[serde(with = "humantime_serde")]
    pub backoff_initial: Duration,
    /// Largest retry delay.
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// Sagas driven at once by this replica.
    pub concurrency: usize,
    /// How often to look for sagas to claim (new ones from other replicas, expired leases).
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// On shutdown, how long running sagas may take before their leases are released.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
}

impl Default for OrchestratorConfig {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(15),
            step_timeout: Duration::from_secs(2),
            max_attempts: 3,
            max_compensation_attempts: 5,
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(2),
            concurrency: 32,
            poll_interval: Duration::from_millis(500),
            drain_timeout: Duration::from_secs(10),
        }
    }
}

impl OrchestratorConfig {
    /// Rejects settings under which a healthy replica could lose its lease mid-step.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.lease > self.step_timeout + self.backoff_max,
            "lease ({:?}) must exceed step_timeout + backoff_max ({:?})",
            self.lease,
            self.step_timeout + self.backoff_max
        );
        anyhow::ensure!(
            self.max_attempts >= 1 && self.max_compensation_attempts >= 1,
            "attempts must be >= 1"
        );
        anyhow::ensure!(self.concurrency >= 1, "concurrency must be >= 1");
        Ok(())
    }
}

/// Why a drive stopped before the saga ended.
#[derive(Debug, thiserror::Error)]
pub enum DriveError {
    /// The kill hook fired (tests).
    #[error("killed at {0:?}")]
    Killed(KillPoint),
    /// The state could not be written (database down, or the lease was lost); another replica
    /// resumes from the last write.
    #[error("saga state: {0:#}")]
    Store(#[from] anyhow::Error),
}

struct Metrics {
    finished: Counter<u64>,
    calls: Counter<u64>,
    parked: Counter<u64>,
}

impl Metrics {
    fn new() -> Self {
        let meter = cruncan_telemetry::meter("saga");
        let parked = meter
            .u64_counter("saga.compensation.parked")
            .with_description("Sagas parked as failed because a compensation kept failing: alert on any")
            .build();
        parked.add(0, &[]);
        Self {
            finished: meter
                .u64_counter("saga.finished")
                .with_description("Sagas that ended, by status: completed, compensated, failed")
                .build(),
            calls: meter
                .u64_counter("saga.step.calls")
                .with_description("Participant calls by step, phase and outcome")
                .build(),
            parked,
        }
    }
}

/// One orchestrator replica. Cheap to share (`Arc`); see the module docs.
pub struct Orchestrator {
    store: SagaStore,
    participants: Participants,
    cfg: OrchestratorConfig,
    owner: String,
    kill: Option<KillHook>,
    slots: Arc<Semaphore>,
    wake: Notify,
    metrics: Metrics,
}

impl std::fmt::Debug for Orchestrator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Orchestrator").field("owner", &self.owner).field("cfg", &self.cfg).finish()
    }
}

/// What [`Orchestrator::start`] did with an order.
#[derive(Debug)]
pub enum Started {
    /// A new saga, running.
    New(SagaRecord),
    /// The idempotency key started this saga before, for the same order: nothing new started.
    Replayed(SagaRecord),
    /// The idempotency key started a saga before for another order: refused.
    KeyReused,
}

impl Orchestrator {
    /// A replica over `pool` (saga state) calling `participants`, with a unique owner id.
    pub fn new(pool: PgPool, participants: Participants, cfg: OrchestratorConfig) -> Self {
        Self {
            store: SagaStore::new(pool),
            participants,
            slots: Arc::new(Semaphore::new(cfg.concurrency)),
            cfg,
            owner: format!("orchestrator-{}", Uuid::new_v4().simple()),
            kill: None,
            wake: Notify::new(),
            metrics: Metrics::new(),
        }
    }

    /// Installs a kill hook (tests only).
    pub fn with_kill_hook(mut self, hook: KillHook) -> Self {
        self.kill = Some(hook);
        self
    }

    /// This replica's lease owner id.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The saga store.
    pub fn store(&self) -> &SagaStore {
        &self.store
    }

    /// Stores a new saga for `order`, leased to this replica, without driving it.
    pub async fn accept(&self, order: NewOrder) -> anyhow::Result<SagaRecord> {
        let record = SagaRecord::new(OrderSaga::new(order));
        self.store.insert(&record, Some((&self.owner, self.cfg.lease)), None).await?;
        Ok(record)
    }

    // ANCHOR: start
    /// Accepts `order` and drives its saga in the background. With every slot busy the saga is
    /// stored unclaimed, and this replica (or another) claims it when a slot frees. With an
    /// idempotency key seen before, starts nothing: the first saga of that key is the answer.
    pub async fn start(self: &Arc<Self>, order: NewOrder, key: Option<String>) -> anyhow::Result<Started> {
        let key = key.map(|key| ClientKey { request_hash: order.fingerprint(), key });
        let record = SagaRecord::new(OrderSaga::new(order));
        let permit = Arc::clone(&self.slots).try_acquire_owned().ok();
        let lease = permit.as_ref().map(|_| (self.owner.as_str(), self.cfg.lease));
        if let Inserted::Existing(first, hash) = self.store.insert(&record, lease, key.as_ref()).await? {
            let same_order = key.is_some_and(|k| k.request_hash == hash);
            return Ok(if same_order { Started::Replayed(*first) } else { Started::KeyReused });
        }
        if let Some(permit) = permit {
            let this = Arc::clone(self);
            let driven = record.clone();
            tokio::spawn(async move {
                this.drive_logged(driven).await;
                drop(permit);
                this.wake.notify_one();
            });
        }
        Ok(Started::New(record))
    }
    // ANCHOR_END: start

    async fn drive_logged(&self, record: SagaRecord) {
        let id = record.id();
        if let Err(e) = self.drive(record).await {
            tracing::warn!(saga_id = %id, error = %e, "saga drive stopped; another replica resumes it");
        }
    }

    // ANCHOR: drive
    /// Drives a saga this replica holds the lease of until it ends.
    pub async fn drive(&self, mut rec: SagaRecord) -> Result<SagaStatus, DriveError> {
        let span = tracing::info_span!(
            "saga",
            otel.name = "saga OrderSaga",
            saga_id = %rec.id(),
            order_id = %rec.input.order_id,
        );
        async move {
            loop {
                match rec.status {
                    status if status.is_terminal() => return Ok(status),
                    SagaStatus::Pending | SagaStatus::Running => {
                        match rec.steps.iter().position(|s| s.state != StepState::Completed) {
                            Some(i) => self.run_step(&mut rec, i).await?,
                            None => return self.finish(&mut rec, SagaStatus::Completed).await,
                        }
                    }
                    _ => {
                        let undo = |s: &&crate::state::StepRecord| {
                            s.needs_compensation && s.state != StepState::Compensated
                        };
                        match rec.steps.iter().rposition(|s| undo(&s)) {
                            Some(i) => self.compensate_step(&mut rec, i).await?,
                            None => return self.finish(&mut rec, SagaStatus::Compensated).await,
                        }
                    }
                }
            }
        }
        .instrument(span)
        .await
    }
    // ANCHOR_END: drive

    async fn finish(&self, rec: &mut SagaRecord, status: SagaStatus) -> Result<SagaStatus, DriveError> {
        rec.status = status;
        self.save(rec).await?;
        self.metrics.finished.add(1, &[KeyValue::new("status", status.as_str())]);
        tracing::info!(saga_id = %rec.id(), status = status.as_str(), "saga ended");
        Ok(status)
    }

    // ANCHOR: run_step
    /// Calls step `i` until it answers, is refused, or runs out of attempts.
    async fn run_step(&self, rec: &mut SagaRecord, i: usize) -> Result<(), DriveError> {
        let step = rec.steps[i].step;
        let participant = Arc::clone(self.participants.for_step(step));
        let key = rec.input.key(step);
        let mut delays = self.delays(rec.steps[i].attempts, self.cfg.max_attempts);
        loop {
            rec.status = SagaStatus::Running;
            rec.steps[i].state = StepState::Running;
            rec.steps[i].attempts += 1;
            self.save(rec).await?; // written before the call
            self.kill(KillPoint::Written(step, Phase::Execute))?;
            let answer = self.bounded(participant.execute(&key, &rec.input)).await;
            self.kill(KillPoint::Answered(step, Phase::Execute))?;
            self.count(step, Phase::Execute, &answer);
            let s = &mut rec.steps[i];
            match answer {
                Ok(output) => {
                    s.state = StepState::Completed;
                    s.reference = Some(output.reference);
                    s.needs_compensation = true;
                    s.error = None;
                }
                Err(StepError::Rejected(reason)) => {
                    tracing::info!(%step, %reason, "step refused; compensating");
                    s.state = StepState::Failed;
                    s.error = Some(reason);
                    rec.status = SagaStatus::Compensating;
                }
                Err(StepError::Unavailable(e)) => match delays.next() {
                    Some(delay) => {
                        tracing::info!(%step, error = %format!("{e:#}"), ?delay, "no answer; retrying");
                        s.error = Some(format!("{e:#}"));
                        self.save(rec).await?;
                        self.kill(KillPoint::Recorded(step, Phase::Execute))?;
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                    None => {
                        // It may have happened: compensate it too (a no-op if it did not).
                        tracing::warn!(%step, error = %format!("{e:#}"), "no answer after every attempt");
                        s.state = StepState::Failed;
                        s.error = Some(format!("no answer after {} attempts: {e:#}", s.attempts));
                        s.needs_compensation = true;
                        rec.status = SagaStatus::Compensating;
                    }
                },
            }
            self.save(rec).await?; // written after the answer
            self.kill(KillPoint::Recorded(step, Phase::Execute))?;
            return Ok(());
        }
    }
    // ANCHOR_END: run_step

    /// Calls the compensation of step `i` until it succeeds or is parked.
    async fn compensate_step(&self, rec: &mut SagaRecord, i: usize) -> Result<(), DriveError> {
        let step = rec.steps[i].step;
        let participant = Arc::clone(self.participants.for_step(step));
        let key = rec.input.key(step);
        let mut delays = self.delays(rec.steps[i].compensation_attempts, self.cfg.max_compensation_attempts);
        loop {
            rec.steps[i].state = StepState::Compensating;
            rec.steps[i].compensation_attempts += 1;
            self.save(rec).await?;
            self.kill(KillPoint::Written(step, Phase::Compensate))?;
            let answer = self.bounded(participant.compensate(&key, &rec.input)).await;
            self.kill(KillPoint::Answered(step, Phase::Compensate))?;
            self.count(step, Phase::Compensate, &answer);
            let s = &mut rec.steps[i];
            match answer {
                Ok(()) => s.state = StepState::Compensated,
                Err(e) => match delays.next() {
                    Some(delay) => {
                        tracing::info!(%step, error = %e, ?delay, "compensation failed; retrying");
                        s.error = Some(format!("{}: {e}", step.compensation_name()));
                        self.save(rec).await?;
                        self.kill(KillPoint::Recorded(step, Phase::Compensate))?;
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                    None => {
                        // ANCHOR: parked
                        s.state = StepState::CompensationFailed;
                        s.error = Some(format!("{}: {e}", step.compensation_name()));
                        rec.status = SagaStatus::Failed;
                        self.metrics.parked.add(1, &[KeyValue::new("step", step.name())]);
                        tracing::error!(
                            saga_id = %rec.input.saga_id, %step, error = %e, attempts = s.compensation_attempts,
                            "compensation keeps failing; saga parked as failed: needs an operator"
                        );
                        // ANCHOR_END: parked
                    }
                },
            }
            self.save(rec).await?;
            self.kill(KillPoint::Recorded(step, Phase::Compensate))?;
            if rec.status == SagaStatus::Failed {
                self.metrics.finished.add(1, &[KeyValue::new("status", "failed")]);
            }
            return Ok(());
        }
    }

    /// The delays of the retries left, `done` calls having been made already (also by a replica
    /// that died).
    fn delays(&self, done: u32, max: u32) -> impl Iterator<Item = Duration> + use<> {
        let left = max.saturating_sub(done + 1) as usize;
        ExponentialBuilder::default()
            .with_min_delay(self.cfg.backoff_initial)
            .with_max_delay(self.cfg.backoff_max)
            .with_max_times(left)
            .with_jitter()
            .build()
    }

    async fn bounded<T>(&self, call: impl Future<Output = Result<T, StepError>>) -> Result<T, StepError> {
        let timeout = self.cfg.step_timeout;
        tokio::time::timeout(timeout, call)
            .await
            .unwrap_or_else(|_| Err(StepError::Unavailable(anyhow::anyhow!("no answer within {timeout:?}"))))
    }

    async fn save(&self, rec: &SagaRecord) -> anyhow::Result<()> {
        self.store.save(rec, &self.owner, self.cfg.lease).await
    }

    fn kill(&self, point: KillPoint) -> Result<(), DriveError> {
        match &self.kill {
            Some(hook) if hook(point) => Err(DriveError::Killed(point)),
            _ => Ok(()),
        }
    }

    fn count<T>(&self, step: Step, phase: Phase, answer: &Result<T, StepError>) {
        let outcome = match answer {
            Ok(_) => "ok",
            Err(StepError::Rejected(_)) => "rejected",
            Err(StepError::Unavailable(_)) => "unavailable",
        };
        let phase = if phase == Phase::Execute { "execute" } else { "compensate" };
        self.metrics.calls.add(
            1,
            &[
                KeyValue::new("step", step.name()),
                KeyValue::new("phase", phase),
                KeyValue::new("outcome", outcome),
            ],
        );
    }

    /// Claims up to `limit` sagas nobody holds (new, or left by a dead replica) and drives them
    /// to the end, concurrently. Returns each saga's outcome.
    pub async fn resume(&self, limit: i64) -> anyhow::Result<Vec<(Uuid, Result<SagaStatus, DriveError>)>> {
        let claimed = self.store.claim(&self.owner, self.cfg.lease, limit).await?;
        let drives = claimed.into_iter().map(|rec| async move { (rec.id(), self.drive(rec).await) });
        Ok(futures::future::join_all(drives).await)
    }

    // ANCHOR: run
    /// Claims and drives sagas until `shutdown`: woken when a slot frees, and every
    /// `poll_interval` for sagas of other replicas (new ones, or ones whose replica died). On
    /// shutdown, waits up to `drain` for running sagas, then gives up its leases.
    pub async fn run(self: Arc<Self>, shutdown: Shutdown, drain: Duration) {
        while !shutdown.is_triggered() {
            let free = self.slots.available_permits();
            if free > 0 {
                match self.store.claim(&self.owner, self.cfg.lease, free as i64).await {
                    Ok(claimed) => {
                        for rec in claimed {
                            let Ok(permit) = Arc::clone(&self.slots).acquire_owned().await else { return };
                            let this = Arc::clone(&self);
                            tokio::spawn(async move {
                                this.drive_logged(rec).await;
                                drop(permit);
                                this.wake.notify_one();
                            });
                        }
                    }
                    Err(e) => tracing::warn!(error = %format!("{e:#}"), "claiming sagas failed"),
                }
            }
            tokio::select! {
                () = shutdown.wait() => break,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(self.cfg.poll_interval) => {}
            }
        }
        let all = u32::try_from(self.cfg.concurrency).unwrap_or(u32::MAX);
        if tokio::time::timeout(drain, self.slots.acquire_many(all)).await.is_err() {
            tracing::warn!(?drain, "sagas still running at shutdown; their leases are released");
        }
        match self.store.release(&self.owner).await {
            Ok(n) => tracing::info!(released = n, "orchestrator stopped"),
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "releasing leases failed; they expire"),
        }
    }
    // ANCHOR_END: run
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_shorter_than_a_step_and_its_backoff_is_refused() {
        assert!(OrchestratorConfig::default().validate().is_ok());
        let short = OrchestratorConfig { lease: Duration::from_secs(2), ..OrchestratorConfig::default() };
        let err = short.validate().unwrap_err().to_string();
        assert!(err.contains("lease"), "{err}");
        assert!(OrchestratorConfig { concurrency: 0, ..OrchestratorConfig::default() }.validate().is_err());
    }
}
