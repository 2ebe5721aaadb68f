//! The Kubernetes driver: the same faults against a deployment on a cluster, through
//! `kubectl` and Chaos Mesh (v2.x, `chaos-mesh.org/v1alpha1`).
//!
//! | fault | on Kubernetes | healed by |
//! |---|---|---|
//! | `kill-processor` | `kubectl delete pod <processor-N> --grace-period=0 --force` | the StatefulSet |
//! | `stop-processor` | `kubectl delete pod <processor-N>` (graceful) | the StatefulSet |
//! | `pause-processor` | PodChaos `pod-failure` on `<processor-N>` (its containers replaced by a pause image) | deleting the PodChaos |
//! | `add-processor` | `kubectl scale statefulset --replicas=N+1` | scaling back |
//! | `kill-api` | PodChaos `pod-kill` on one API pod | the Deployment |
//! | `kill-broker` | PodChaos `pod-kill` (grace period 0) on one Kafka pod | Strimzi |
//! | `restart-broker` | `kubectl delete pod <kafka-pod-N>` (graceful) | Strimzi |
//! | `network-latency` | NetworkChaos `delay` processors → Kafka pods | deleting it |
//! | `network-bandwidth` | NetworkChaos `bandwidth` processors → Kafka pods | deleting it |
//! | `network-blackhole` | NetworkChaos `partition` processors ↔ Kafka pods | deleting it |
//! | `network-reset` | none in Chaos Mesh: refused | |
//! | `fill-disk` | IOChaos `fault` errno 28 (ENOSPC) on `<processor-N>`'s data volume | deleting it |
//!
//! [`plan`] turns a planned fault into the actions to apply and to heal, as data; the
//! tests validate every manifest it makes against the Chaos Mesh fields skuflow uses
//! (`chaos/k8s/chaos-mesh.schema.json`, from the Chaos Mesh v2.7 CRDs).

use std::process::Command;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::scenario::{FaultKind, Planned};

/// Where skuflow runs on the cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    pub namespace: String,
    /// The processors' StatefulSet (pods `<name>-0`, `<name>-1`, ...).
    #[serde(default = "processors")]
    pub processors: String,
    /// Replicas of that StatefulSet (to scale back after `add-processor`).
    #[serde(default = "replicas")]
    pub replicas: u32,
    /// Labels of the API pods.
    #[serde(default = "api_labels")]
    pub api_labels: std::collections::BTreeMap<String, String>,
    /// The Strimzi Kafka cluster's name (pods `<name>-kafka-N`, label
    /// `strimzi.io/cluster=<name>`) and its namespace.
    #[serde(default = "kafka")]
    pub kafka: String,
    #[serde(default)]
    pub kafka_namespace: Option<String>,
    #[serde(default = "kubectl")]
    pub kubectl: String,
    /// Where the processors' data volume is mounted (for `fill-disk`).
    #[serde(default = "data_path")]
    pub data_path: String,
}

fn data_path() -> String {
    "/var/lib/skuflow".into()
}

fn processors() -> String {
    "skuflow-processor".into()
}
fn replicas() -> u32 {
    3
}
fn api_labels() -> std::collections::BTreeMap<String, String> {
    [("app.kubernetes.io/name".to_owned(), "skuflow-api".to_owned())].into()
}
fn kafka() -> String {
    "skuflow".into()
}
fn kubectl() -> String {
    "kubectl".into()
}

/// One step against the cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Action {
    /// `kubectl <args>`.
    Kubectl(Vec<String>),
    /// `kubectl apply -f -` of this manifest.
    Apply(Value),
    /// `kubectl delete -f -` of this manifest.
    Delete(Value),
}

impl Cluster {
    fn kafka_namespace(&self) -> &str {
        self.kafka_namespace.as_deref().unwrap_or(&self.namespace)
    }

    fn processor_selector(&self) -> Value {
        json!({ "namespaces": [self.namespace],
                "labelSelectors": { "app.kubernetes.io/name": self.processors } })
    }

    fn kafka_selector(&self) -> Value {
        json!({ "namespaces": [self.kafka_namespace()],
                "labelSelectors": { "strimzi.io/cluster": self.kafka, "strimzi.io/kind": "Kafka" } })
    }

    fn chaos(&self, kind: &str, name: &str, spec: Value) -> Value {
        json!({ "apiVersion": "chaos-mesh.org/v1alpha1", "kind": kind,
                "metadata": { "name": name, "namespace": self.namespace,
                              "labels": { "app.kubernetes.io/managed-by": "skuflow-chaos" } },
                "spec": spec })
    }

    fn kubectl_args(&self, args: &[&str]) -> Action {
        let mut all = vec!["--namespace".to_owned(), self.namespace.clone()];
        all.extend(args.iter().map(|s| (*s).to_owned()));
        Action::Kubectl(all)
    }
}

/// The actions that apply fault number `index` of a run and the ones that heal it.
pub fn plan(c: &Cluster, p: &Planned, index: usize) -> Result<(Vec<Action>, Vec<Action>), String> {
    let name = format!("skuflow-{}-{index}", p.kind.name());
    let pod = format!("{}-{}", c.processors, p.target);
    let seconds = format!("{}s", ((p.end_s - p.start_s).ceil() as u64).max(1));
    let network = |action: &str, extra: (&str, Value)| {
        let mut spec = json!({ "action": action, "mode": "all", "selector": c.processor_selector(),
                               "direction": "to", "target": { "mode": "all", "selector": c.kafka_selector() },
                               "duration": seconds });
        spec[extra.0] = extra.1;
        c.chaos("NetworkChaos", &name, spec)
    };
    let applied_and_deleted =
        |m: Value| Ok((vec![Action::Apply(m.clone())], vec![Action::Delete(m)]));
    match p.kind {
        FaultKind::KillProcessor => Ok((vec![c.kubectl_args(&["delete", "pod", &pod, "--grace-period=0", "--force", "--wait=false"])], vec![])),
        FaultKind::StopProcessor => Ok((vec![c.kubectl_args(&["delete", "pod", &pod, "--wait=false"])], vec![])),
        FaultKind::PauseProcessor => applied_and_deleted(c.chaos("PodChaos", &name, json!({
            "action": "pod-failure", "mode": "one", "duration": seconds,
            "selector": { "namespaces": [c.namespace], "pods": { c.namespace.clone(): [pod] } } }))),
        FaultKind::AddProcessor => {
            let scale = |n: u32| c.kubectl_args(&["scale", "statefulset", &c.processors, &format!("--replicas={n}")]);
            Ok((vec![scale(c.replicas + 1)], vec![scale(c.replicas)]))
        }
        FaultKind::KillApi => applied_and_deleted(c.chaos("PodChaos", &name, json!({
            "action": "pod-kill", "mode": "one", "gracePeriod": 0,
            "selector": { "namespaces": [c.namespace], "labelSelectors": c.api_labels } }))),
        FaultKind::KillBroker => applied_and_deleted(c.chaos("PodChaos", &name, json!({
            "action": "pod-kill", "mode": "one", "gracePeriod": 0, "selector": c.kafka_selector() }))),
        FaultKind::RestartBroker => {
            let broker = format!("{}-kafka-{}", c.kafka, p.target);
            Ok((vec![Action::Kubectl(vec!["--namespace".into(), c.kafka_namespace().into(), "delete".into(), "pod".into(), broker, "--wait=false".into()])], vec![]))
        }
        FaultKind::NetworkLatency => applied_and_deleted(network("delay", ("delay", json!({
            "latency": format!("{}ms", p.toxics.latency_ms), "jitter": format!("{}ms", p.toxics.jitter_ms), "correlation": "0" })))),
        FaultKind::NetworkBandwidth => applied_and_deleted(network("bandwidth", ("bandwidth", json!({
            "rate": format!("{}kbps", p.toxics.bandwidth_kbps.max(1)), "limit": 20_971_520, "buffer": 10_000 })))),
        FaultKind::NetworkBlackhole => {
            let mut m = network("partition", ("direction", json!("both")));
            m["spec"].as_object_mut().map(|s| s.remove("duration"));
            m["spec"]["duration"] = json!(seconds);
            applied_and_deleted(m)
        }
        FaultKind::FillDisk => applied_and_deleted(c.chaos("IOChaos", &name, json!({
            "action": "fault", "mode": "one", "duration": seconds, "volumePath": c.data_path,
            "path": format!("{}/**/*", c.data_path), "errno": 28, "percent": 100,
            "selector": { "namespaces": [c.namespace], "pods": { c.namespace.clone(): [pod] } } }))),
        FaultKind::NetworkReset => Err("network-reset has no Chaos Mesh equivalent (NetworkChaos cannot send TCP resets)".into()),
    }
}

/// Run `actions` with `c.kubectl`; the first failure is the error.
pub fn execute(c: &Cluster, actions: &[Action]) -> Result<(), String> {
    for action in actions {
        let (args, stdin): (Vec<String>, Option<String>) = match action {
            Action::Kubectl(args) => (args.clone(), None),
            Action::Apply(m) => {
                (vec!["apply".into(), "-f".into(), "-".into()], Some(m.to_string()))
            }
            Action::Delete(m) => (
                vec!["delete".into(), "--ignore-not-found".into(), "-f".into(), "-".into()],
                Some(m.to_string()),
            ),
        };
        let mut child = Command::new(&c.kubectl)
            .args(&args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("{} {}: {e}", c.kubectl, args.join(" ")))?;
        if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
            use std::io::Write;
            input.write_all(text.as_bytes()).map_err(|e| e.to_string())?;
        }
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "{} {}: {}",
                c.kubectl,
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    Ok(())
}

/// Every manifest the scenario's faults would apply, in order (for review, and for the
/// offline validation in the tests).
pub fn manifests(c: &Cluster, plan_: &[Planned]) -> Vec<Result<Value, String>> {
    plan_
        .iter()
        .enumerate()
        .flat_map(|(i, p)| match plan(c, p, i) {
            Ok((apply, _)) => apply
                .into_iter()
                .filter_map(|a| match a {
                    Action::Apply(m) => Some(Ok(m)),
                    _ => None,
                })
                .collect::<Vec<_>>(),
            Err(e) => vec![Err(e)],
        })
        .collect()
}
