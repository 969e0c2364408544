//! The order saga as a workflow: four steps in order; on a failure, the compensations of the
//! steps that ran, in reverse. The state that `reference/saga` writes to its `saga.sagas` table
//! before and after each call is, here, the workflow's history.

use super::activities::{STEP_REJECTED, SagaActivities, StepCall};
use crate::retry::{compensation, saga_step};
use saga::domain::{OrderSaga, Step};
use serde::{Deserialize, Serialize};
use temporalio_common::error::IncomingError;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{ActivityExecutionError, WorkflowContext, WorkflowContextView, WorkflowResult};

/// Where one step is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    /// Not reached yet.
    Pending,
    /// Done; the participant's reference (order, payment, reservation, shipment id).
    Completed(String),
    /// Refused or never answered.
    Failed(String),
    /// Undone.
    Compensated,
}

/// One step and its state; the `progress` query answers with all four.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepProgress {
    /// The step.
    pub step: Step,
    /// Its state.
    pub state: StepState,
}

/// How the saga ended: the workflow's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum SagaOutcome {
    /// All four steps done.
    Completed,
    /// `step` failed for `reason`; the steps before it (and it, if it may have happened) were
    /// compensated in reverse.
    Compensated {
        /// The failed step.
        step: Step,
        /// Why.
        reason: String,
    },
}

/// One workflow per saga; its id is `saga-<saga id>`.
#[workflow]
pub struct OrderSagaWorkflow {
    saga: OrderSaga,
    progress: Vec<StepProgress>,
}

// ANCHOR: saga_run
#[workflow_methods]
impl OrderSagaWorkflow {
    /// Starts with every step pending.
    #[init]
    pub fn new(_ctx: &WorkflowContextView, saga: OrderSaga) -> Self {
        let progress = Step::ALL.map(|step| StepProgress { step, state: StepState::Pending }).to_vec();
        Self { saga, progress }
    }

    /// Runs the steps; compensates on the first failure.
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<SagaOutcome> {
        let saga = ctx.state(|s| s.saga.clone());
        let mut to_undo = Vec::new();
        for step in Step::ALL {
            let call = StepCall { step, saga: saga.clone() };
            let answer = ctx.execute_activity(SagaActivities::execute_step, call, saga_step());
            match answer.await {
                Ok(out) => {
                    to_undo.push(step);
                    set(ctx, step, StepState::Completed(out.reference));
                }
                Err(e) => {
                    let (reason, may_have_happened) = match rejected(&e) {
                        Some(reason) => (reason, false),
                        None => (e.to_string(), true),
                    };
                    // A step that never answered may have happened: undo it too (a
                    // no-op if not).
                    if may_have_happened {
                        to_undo.push(step);
                    }
                    set(ctx, step, StepState::Failed(reason.clone()));
                    for done in to_undo.into_iter().rev() {
                        let call = StepCall { step: done, saga: saga.clone() };
                        let undo = SagaActivities::compensate_step;
                        ctx.execute_activity(undo, call, compensation()).await?;
                        set(ctx, done, StepState::Compensated);
                    }
                    return Ok(SagaOutcome::Compensated { step, reason });
                }
            }
        }
        Ok(SagaOutcome::Completed)
    }
    // ANCHOR_END: saga_run

    /// Query: every step's state.
    #[query]
    pub fn progress(&self, _ctx: &WorkflowContextView) -> Vec<StepProgress> {
        self.progress.clone()
    }
}

fn set(ctx: &WorkflowContext<OrderSagaWorkflow>, step: Step, state: StepState) {
    ctx.state_mut(|s| {
        if let Some(p) = s.progress.iter_mut().find(|p| p.step == step) {
            p.state = state;
        }
    });
}

/// The participant's reason, when the failure is a refusal.
fn rejected(e: &ActivityExecutionError) -> Option<String> {
    match e.cause() {
        Some(IncomingError::Application(app)) if app.type_name() == Some(STEP_REJECTED) => {
            Some(app.source_error().to_string())
        }
        _ => None,
    }
}
