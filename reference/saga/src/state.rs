//! The saga's persisted state: one [`SagaRecord`] per saga, its status and every step's.

use crate::domain::{OrderSaga, Step};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Where a saga is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SagaStatus {
    /// Accepted, no step started yet.
    Pending,
    /// Steps are running forward.
    Running,
    /// Every step completed.
    Completed,
    /// A step failed; completed steps are being undone in reverse order.
    Compensating,
    /// Every completed step was undone.
    Compensated,
    /// A compensation kept failing and was parked: an operator must look.
    Failed,
}

impl SagaStatus {
    /// The status as stored, e.g. `compensating`.
    pub fn as_str(self) -> &'static str {
        match self {
            SagaStatus::Pending => "pending",
            SagaStatus::Running => "running",
            SagaStatus::Completed => "completed",
            SagaStatus::Compensating => "compensating",
            SagaStatus::Compensated => "compensated",
            SagaStatus::Failed => "failed",
        }
    }

    /// Parses [`SagaStatus::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        [
            SagaStatus::Pending,
            SagaStatus::Running,
            SagaStatus::Completed,
            SagaStatus::Compensating,
            SagaStatus::Compensated,
            SagaStatus::Failed,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }

    /// Completed, compensated or failed: nothing more will happen on its own.
    pub fn is_terminal(self) -> bool {
        matches!(self, SagaStatus::Completed | SagaStatus::Compensated | SagaStatus::Failed)
    }
}

/// Where a step is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    /// Not started.
    Pending,
    /// Called (the state was written before the call); on resume it is called again.
    Running,
    /// The participant answered with a result.
    Completed,
    /// Refused, or no answer after every attempt.
    Failed,
    /// Its compensation was called; on resume it is called again.
    Compensating,
    /// Undone.
    Compensated,
    /// The compensation kept failing and was parked.
    CompensationFailed,
}

/// One step's state, attempts and error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Which step.
    pub step: Step,
    /// Its state.
    pub state: StepState,
    /// Calls of the step so far.
    pub attempts: u32,
    /// Calls of its compensation so far.
    pub compensation_attempts: u32,
    /// Last error, if any.
    pub error: Option<String>,
    /// What the step created (payment id, ...).
    pub reference: Option<String>,
    /// Whether it must be undone if the saga fails: it completed, or it may have (no answer).
    pub needs_compensation: bool,
}

impl StepRecord {
    fn new(step: Step) -> Self {
        Self {
            step,
            state: StepState::Pending,
            attempts: 0,
            compensation_attempts: 0,
            error: None,
            reference: None,
            needs_compensation: false,
        }
    }
}

/// A saga as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SagaRecord {
    /// The saga's input (ids, user, items, total).
    pub input: OrderSaga,
    /// Its status.
    pub status: SagaStatus,
    /// Its steps, in execution order.
    pub steps: Vec<StepRecord>,
    /// When it was accepted.
    pub created_at: DateTime<Utc>,
    /// Last write.
    pub updated_at: DateTime<Utc>,
}

impl SagaRecord {
    /// A pending saga for `input`.
    pub fn new(input: OrderSaga) -> Self {
        let now = Utc::now();
        Self {
            input,
            status: SagaStatus::Pending,
            steps: Step::ALL.into_iter().map(StepRecord::new).collect(),
            created_at: now,
            updated_at: now,
        }
    }

    /// The saga id.
    pub fn id(&self) -> Uuid {
        self.input.saga_id
    }
}
