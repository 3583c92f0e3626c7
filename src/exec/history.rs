//! The history writer: a [`Reporter`] that writes what each finished step
//! recorded ([`StepReport::records`]: attempts, materializations, checks,
//! lease releases) to the state store, through a [`Recorder`] thread that
//! batches them into transactions. A step skipped before it ran gets an
//! attempt record saying why. It only listens to run events, so any
//! executor's steps, and `dg step`, are recorded the same way.

use super::{Event, Reporter, RunCtx, StepStatus};
use crate::state::{AttemptRecord, Record, Recorder, StateStore};

/// Subscribes to run events and records finished steps.
pub struct History {
    recorder: Recorder,
}

impl History {
    pub fn start(store: std::sync::Arc<dyn StateStore>) -> History {
        History {
            recorder: Recorder::start(store),
        }
    }

    /// Flushes everything; returns write errors, if any.
    pub fn finish(self) -> Vec<String> {
        self.recorder.finish()
    }
}

impl Reporter for History {
    fn event(&self, rc: &RunCtx, e: &Event<'_>) {
        let Event::StepFinished(r) = e else { return };
        let mut batch = Vec::new();
        if r.status == StepStatus::Skipped
            && !r.records.iter().any(|x| matches!(x, Record::Attempt(_)))
        {
            let st = &rc.plan.steps[r.step];
            let key = rc.partition_key(r.step);
            batch.push(Record::Attempt(AttemptRecord {
                run_id: rc.run_id.clone(),
                step_id: rc.step_id(r.step),
                asset: rc.defs.assets[st.asset].key.clone(),
                partition: (!key.is_empty()).then_some(key),
                attempt: 0,
                status: "skipped".into(),
                started_at: super::timestamp(),
                duration_ms: 0,
                exit_code: None,
                error: r.error.clone(),
                log_path: None,
            }));
        }
        batch.extend(r.records.iter().cloned());
        if !batch.is_empty() {
            self.recorder.send(batch);
        }
    }
}

/// Sends every event to each subscriber, in order.
pub struct Fanout<'a>(pub Vec<&'a dyn Reporter>);

impl Reporter for Fanout<'_> {
    fn event(&self, rc: &RunCtx, e: &Event<'_>) {
        for r in &self.0 {
            r.event(rc, e);
        }
    }
}
