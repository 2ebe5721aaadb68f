//! What `/healthz` and `/readyz` answer for a processor. Healthy, or the reason it is
//! not (a stalled or halted partition): a supervisor (Kubernetes' liveness probe)
//! restarts a processor whose `/healthz` keeps failing. Ready once the group has given
//! it its partitions (none is an answer too: a spare member) and none of them is being
//! restored, which a rolling update waits for before it moves to the next processor.
//! Shared between the processor thread, which sets both, and the metrics endpoint.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Problems by the partition they concern; healthy when there are none.
#[derive(Debug, Clone)]
pub struct Health {
    problems: Arc<Mutex<BTreeMap<i32, String>>>,
    /// Why the processor is not ready; `None` when it is.
    unready: Arc<Mutex<Option<String>>>,
}

impl Default for Health {
    fn default() -> Self {
        Self { problems: Arc::default(), unready: Arc::new(Mutex::new(Some("starting".into()))) }
    }
}

impl Health {
    pub fn new() -> Self {
        Self::default()
    }

    /// `Ok` when ready, otherwise why not.
    pub fn ready(&self) -> Result<(), String> {
        match &*self.unready.lock().unwrap_or_else(|e| e.into_inner()) {
            None => Ok(()),
            Some(why) => Err(why.clone()),
        }
    }

    pub(crate) fn set_ready(&self, ready: Result<(), String>) {
        *self.unready.lock().unwrap_or_else(|e| e.into_inner()) = ready.err();
    }

    /// `Ok` when healthy, otherwise every problem, one per line.
    pub fn check(&self) -> Result<(), String> {
        let problems = self.lock();
        if problems.is_empty() {
            return Ok(());
        }
        Err(problems.iter().map(|(p, why)| format!("partition {p}: {why}\n")).collect())
    }

    pub(crate) fn set(&self, partition: i32, problem: String) {
        self.lock().insert(partition, problem);
    }

    pub(crate) fn clear(&self, partition: i32) {
        self.lock().remove(&partition);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<i32, String>> {
        self.problems.lock().unwrap_or_else(|e| e.into_inner())
    }
}
