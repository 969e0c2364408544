//! Reading a workflow's history: which activities ran, on which attempt, on which worker. The
//! history is Temporal's source of truth — a worker rebuilds a workflow's state by replaying it.

use temporalio_client::{Client, UntypedWorkflow, WorkflowFetchHistoryOptions};
use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;

/// One activity that finished (completed or failed for good), as the history records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityRun {
    /// Activity type, e.g. `CoffeeActivities::brew_drink`.
    pub activity: String,
    /// The attempt that finished it (1 unless it was retried).
    pub attempt: i32,
    /// Identity of the worker that ran that attempt (`name-pid`).
    pub worker: String,
}

// ANCHOR: activity_runs
/// The finished activities of workflow `workflow_id`, in history order. Only the last
/// attempt of a retried activity has a "started" event, and it carries the attempt
/// number.
pub async fn activity_runs(client: &Client, workflow_id: &str) -> anyhow::Result<Vec<ActivityRun>> {
    let handle = client.get_workflow_handle::<UntypedWorkflow>(workflow_id);
    let history = handle.fetch_history(WorkflowFetchHistoryOptions::default());
    let events = history.into_events().await?;
    let mut scheduled = std::collections::HashMap::new();
    let mut runs = Vec::new();
    for event in events {
        match event.attributes {
            Some(Attributes::ActivityTaskScheduledEventAttributes(a)) => {
                let name = a.activity_type.map(|t| t.name).unwrap_or_default();
                scheduled.insert(event.event_id, name);
            }
            Some(Attributes::ActivityTaskStartedEventAttributes(a)) => runs.push(ActivityRun {
                activity: scheduled.get(&a.scheduled_event_id).cloned().unwrap_or_default(),
                attempt: a.attempt,
                worker: a.identity,
            }),
            _ => {}
        }
    }
    Ok(runs)
}
// ANCHOR_END: activity_runs
