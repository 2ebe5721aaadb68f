//! The nemesis: applies each planned fault to the local cluster at its time and heals it
//! at its end, recording when each really happened.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

use crate::cluster::LocalCluster;
use crate::scenario::{FaultKind, Planned};

/// A fault as it happened: milliseconds since the workload started.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Applied {
    pub kind: FaultKind,
    pub target: String,
    pub start_ms: f64,
    pub end_ms: f64,
    /// What went wrong applying or healing it, if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What the faults are applied to.
#[derive(Debug, Clone)]
pub enum Injector {
    Local(Arc<Mutex<LocalCluster>>),
    Kubernetes(crate::k8s::Cluster),
}

/// Run `plan` against `injector` from `start`, and keep a local cluster's members
/// running (a member that exits on its own is started again) until `stop` is set; once
/// it is, faults not yet applied are skipped. Returns the faults as applied.
pub fn run(
    injector: &Injector,
    plan: &[Planned],
    start: Instant,
    tick_interval_ms: u64,
    stop: &AtomicBool,
) -> Vec<Applied> {
    let ms = || start.elapsed().as_secs_f64() * 1000.0;
    // Apply and heal in time order, overlapping windows included.
    let mut events: Vec<(f64, bool, usize)> = plan
        .iter()
        .enumerate()
        .flat_map(|(i, p)| [(p.start_s, true, i), (p.end_s, false, i)])
        .collect();
    // At the same time, heals (false) go first.
    events.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut applied: Vec<Option<Applied>> = vec![None; plan.len()];
    let mut added: Vec<Option<usize>> = vec![None; plan.len()];
    let mut heals: Vec<Vec<crate::k8s::Action>> = vec![Vec::new(); plan.len()];
    for (at_s, apply, i) in events {
        let p = &plan[i];
        if apply && stop.load(Ordering::Relaxed) {
            continue;
        }
        while !stop.load(Ordering::Relaxed) && ms() < at_s * 1000.0 {
            if let Injector::Local(cluster) = injector {
                cluster.lock().unwrap_or_else(std::sync::PoisonError::into_inner).supervise();
            }
            std::thread::sleep(
                Duration::from_millis(20)
                    .min(Duration::from_secs_f64((at_s - ms() / 1000.0).max(0.0))),
            );
        }
        match injector {
            Injector::Local(cluster) => {
                let mut c = cluster.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if apply {
                    let (target, error) = inject(&mut c, p, tick_interval_ms, &mut added[i]);
                    applied[i] =
                        Some(Applied { kind: p.kind, target, start_ms: ms(), end_ms: ms(), error });
                } else if let Some(a) = applied[i].as_mut() {
                    if let Err(e) = heal(&mut c, p, added[i]) {
                        a.error = Some(e);
                    }
                    a.end_ms = ms();
                }
            }
            Injector::Kubernetes(k) => {
                if apply {
                    let start_ms = ms();
                    let error = crate::k8s::plan(k, p, i).and_then(|(inject, heal)| {
                        heals[i] = heal;
                        crate::k8s::execute(k, &inject)
                    });
                    let target = format!("{} on {}", p.kind.name(), k.namespace);
                    applied[i] = Some(Applied {
                        kind: p.kind,
                        target,
                        start_ms,
                        end_ms: ms(),
                        error: error.err(),
                    });
                } else if let Some(a) = applied[i].as_mut() {
                    if let Err(e) = crate::k8s::execute(k, &heals[i]) {
                        a.error = Some(e);
                    }
                    a.end_ms = ms();
                }
            }
        }
    }
    // Until the run is over, members that exit on their own are started again.
    if let Injector::Local(cluster) = injector {
        while !stop.load(Ordering::Relaxed) {
            cluster.lock().unwrap_or_else(std::sync::PoisonError::into_inner).supervise();
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    applied.into_iter().flatten().collect()
}

fn inject(
    c: &mut LocalCluster,
    p: &Planned,
    tick_interval_ms: u64,
    added: &mut Option<usize>,
) -> (String, Option<String>) {
    let processor = p.target % c.processors.len().max(1);
    let api = p.target % c.apis.len().max(1);
    let result: Result<String, String> = match p.kind {
        FaultKind::KillProcessor => {
            c.processors[processor].kill9();
            Ok(c.processors[processor].name.clone())
        }
        FaultKind::PauseProcessor => {
            c.processors[processor].signal(Signal::SIGSTOP);
            Ok(c.processors[processor].name.clone())
        }
        FaultKind::StopProcessor => {
            c.processors[processor].stop();
            Ok(c.processors[processor].name.clone())
        }
        FaultKind::AddProcessor => c
            .add_processor(tick_interval_ms)
            .map(|i| {
                *added = Some(i);
                c.processors[i].name.clone()
            })
            .map_err(|e| e.to_string()),
        FaultKind::KillApi => {
            c.apis[api].kill9();
            Ok(c.apis[api].name.clone())
        }
        FaultKind::KillBroker => {
            c.broker.kill9().map(|()| "broker".to_owned()).map_err(|e| e.to_string())
        }
        FaultKind::RestartBroker => {
            c.broker.stop().map(|()| "broker".to_owned()).map_err(|e| e.to_string())
        }
        FaultKind::FillDisk => {
            let dir = c.data_dir(processor);
            crate::cluster::fill_disk(&dir)
                .map(|bytes| {
                    format!("{} (filled {} MiB)", c.processors[processor].name, bytes >> 20)
                })
                .map_err(|e| format!("filling {}: {e}", dir.display()))
        }
        FaultKind::NetworkLatency
        | FaultKind::NetworkBandwidth
        | FaultKind::NetworkBlackhole
        | FaultKind::NetworkReset => match &c.proxy {
            Some(proxy) => {
                proxy.set(p.toxics);
                Ok("processors ↔ broker".to_owned())
            }
            None => Err("no proxy: the cluster was started without network faults".to_owned()),
        },
    };
    match result {
        Ok(target) => (target, None),
        Err(e) => (p.kind.name().to_owned(), Some(e)),
    }
}

fn heal(c: &mut LocalCluster, p: &Planned, added: Option<usize>) -> Result<(), String> {
    let processor = p.target % c.processors.len().max(1);
    let api = p.target % c.apis.len().max(1);
    match p.kind {
        FaultKind::KillProcessor | FaultKind::StopProcessor => {
            c.processors[processor].start().map_err(|e| e.to_string())
        }
        FaultKind::PauseProcessor => {
            c.processors[processor].signal(Signal::SIGCONT);
            Ok(())
        }
        FaultKind::AddProcessor => {
            if let Some(i) = added {
                c.processors[i].stop();
            }
            Ok(())
        }
        FaultKind::KillApi => {
            c.apis[api].start().map_err(|e| e.to_string())?;
            c.wait_api_ready(api, Duration::from_secs(60)).map_err(|e| e.to_string())
        }
        FaultKind::KillBroker | FaultKind::RestartBroker => {
            c.broker.restart().map_err(|e| e.to_string())
        }
        FaultKind::FillDisk => {
            crate::cluster::free_disk(&c.data_dir(processor)).map_err(|e| e.to_string())
        }
        _ => {
            if let Some(proxy) = &c.proxy {
                proxy.set(crate::proxy::Toxics::default());
            }
            Ok(())
        }
    }
}
