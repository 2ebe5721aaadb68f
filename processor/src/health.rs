//! What `/healthz` answers for a processor: healthy, or the reason it is not (a stalled
//! or halted partition). Shared between the processor thread, which sets it, and the
//! metrics endpoint, which reads it; a supervisor (Kubernetes' liveness probe) restarts
//! a processor whose `/healthz` keeps failing.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Problems by the partition they concern; healthy when there are none.
#[derive(Debug, Clone, Default)]
pub struct Health {
    problems: Arc<Mutex<BTreeMap<i32, String>>>,
}

impl Health {
    pub fn new() -> Self {
        Self::default()
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
