//! Where an orchestrator can die between two side effects, and the hook tests use to kill it
//! there.

use crate::domain::Step;
use std::sync::Arc;

/// Whether a call is the step or its compensation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// The step.
    Execute,
    /// Its compensation.
    Compensate,
}

// ANCHOR: kill_point
/// The places a replica can die between two side effects, named for the crash-resume test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KillPoint {
    /// The state "calling" was written; the participant was not called yet.
    Written(Step, Phase),
    /// The participant answered; its answer is not written yet.
    Answered(Step, Phase),
    /// The answer was written.
    Recorded(Step, Phase),
}

/// Decides whether the orchestrator dies at a point; tests only. `true`: the drive stops there,
/// as if the process had been killed (nothing more is written, the lease is kept).
pub type KillHook = Arc<dyn Fn(KillPoint) -> bool + Send + Sync>;
// ANCHOR_END: kill_point

impl KillPoint {
    /// Every kill point of every step and compensation.
    pub fn all() -> Vec<KillPoint> {
        let mut all = Vec::new();
        for phase in [Phase::Execute, Phase::Compensate] {
            for step in Step::ALL {
                all.extend([
                    KillPoint::Written(step, phase),
                    KillPoint::Answered(step, phase),
                    KillPoint::Recorded(step, phase),
                ]);
            }
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_points_per_step_and_phase() {
        let all = KillPoint::all();
        assert_eq!(all.len(), 3 * 4 * 2);
        let distinct: std::collections::HashSet<_> = all.iter().collect();
        assert_eq!(distinct.len(), all.len());
    }
}
