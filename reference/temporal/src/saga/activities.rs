//! One activity per direction: run a step, undo a step. Each calls the participant of
//! `reference/saga` with the step's idempotency key, so a repeated call returns the first answer.

use saga::domain::{OrderSaga, Step};
use saga::participants::{Participants, StepError, StepOutput};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use temporalio_macros::activities;
use temporalio_sdk::ApplicationFailure;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

/// The failure type of a participant's refusal (a business rule said no).
pub const STEP_REJECTED: &str = "StepRejected";

/// Input of both activities.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepCall {
    /// Which step.
    pub step: Step,
    /// The saga (its ids, the order, the amount).
    pub saga: OrderSaga,
}

/// Where a worker kills itself: right after a participant answered a step (`ProcessPayment`)
/// or a compensation (`RefundPayment`), before the answer reaches Temporal — the "effect made,
/// answer lost" crash. For crash tests and demos (`coffee_worker --crash-after NAME`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrashPoint {
    /// The step.
    pub step: Step,
    /// Its compensation rather than the step itself.
    pub compensation: bool,
}

impl CrashPoint {
    /// `ProcessPayment`, `RefundPayment`, ... (a step's or a compensation's name).
    pub fn parse(name: &str) -> Option<Self> {
        Step::ALL.into_iter().find_map(|step| {
            (step.name() == name)
                .then_some(CrashPoint { step, compensation: false })
                .or((step.compensation_name() == name).then_some(CrashPoint { step, compensation: true }))
        })
    }
}

/// The activities over the saga's participants.
pub struct SagaActivities {
    participants: Participants,
    crash: Option<CrashPoint>,
}

impl std::fmt::Debug for SagaActivities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SagaActivities").field("crash", &self.crash).finish_non_exhaustive()
    }
}

impl SagaActivities {
    /// Activities over `participants`; the worker aborts at `crash` if set.
    pub fn new(participants: Participants, crash: Option<CrashPoint>) -> Self {
        Self { participants, crash }
    }

    fn crash_if(&self, step: Step, compensation: bool) {
        if self.crash == Some(CrashPoint { step, compensation }) {
            tracing::error!(%step, compensation, "crash point reached: aborting the worker");
            std::process::abort();
        }
    }
}

// ANCHOR: activities
#[activities]
impl SagaActivities {
    /// Runs `step`. A refusal is final (non-retryable); no answer is retried by the
    /// policy.
    #[activity]
    pub async fn execute_step(
        self: Arc<Self>,
        _ctx: ActivityContext,
        call: StepCall,
    ) -> Result<StepOutput, ActivityError> {
        let key = call.saga.key(call.step);
        let participant = self.participants.for_step(call.step);
        let answer = participant.execute(&key, &call.saga).await;
        self.crash_if(call.step, false);
        match answer {
            Ok(output) => Ok(output),
            Err(StepError::Rejected(reason)) => Err(ActivityError::application(
                ApplicationFailure::builder(reason)
                    .type_name(STEP_REJECTED.to_owned())
                    .non_retryable(true)
                    .build(),
            )),
            Err(StepError::Unavailable(e)) => Err(e.into()),
        }
    }

    /// Undoes `step` (a no-op if it never happened; it then can no longer happen).
    #[activity]
    pub async fn compensate_step(
        self: Arc<Self>,
        _ctx: ActivityContext,
        call: StepCall,
    ) -> Result<(), ActivityError> {
        let key = call.saga.key(call.step);
        let participant = self.participants.for_step(call.step);
        let answer = participant.compensate(&key, &call.saga).await;
        self.crash_if(call.step, true);
        match answer {
            Ok(()) => Ok(()),
            Err(StepError::Rejected(r)) => Err(anyhow::anyhow!("refused: {r}").into()),
            Err(StepError::Unavailable(e)) => Err(e.into()),
        }
    }
}
// ANCHOR_END: activities
