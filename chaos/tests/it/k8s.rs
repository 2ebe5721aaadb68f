//! The Kubernetes driver offline: every fault kind's manifests validate against the
//! Chaos Mesh fields skuflow uses (check-jsonschema, installed by scripts/setup), and
//! the kubectl steps name the right objects.

use chaos::k8s::{Action, Cluster, manifests, plan};
use chaos::proxy::Toxics;
use chaos::scenario::{FaultKind, Planned};

fn cluster() -> Cluster {
    toml::from_str("namespace = \"shop\"\nkafka = \"events\"\nkafka_namespace = \"kafka\"").unwrap()
}

fn planned(kind: FaultKind) -> Planned {
    let toxics =
        Toxics { latency_ms: 100, jitter_ms: 20, bandwidth_kbps: 300, ..Toxics::default() };
    Planned { kind, start_s: 10.0, end_s: 25.0, target: 1, toxics }
}

const ALL: [FaultKind; 11] = [
    FaultKind::KillProcessor,
    FaultKind::PauseProcessor,
    FaultKind::StopProcessor,
    FaultKind::AddProcessor,
    FaultKind::KillApi,
    FaultKind::KillBroker,
    FaultKind::RestartBroker,
    FaultKind::NetworkLatency,
    FaultKind::NetworkBandwidth,
    FaultKind::NetworkBlackhole,
    FaultKind::FillDisk,
];

#[test]
fn every_manifest_validates_against_the_chaos_mesh_schema() {
    let c = cluster();
    let plan_: Vec<Planned> = ALL.iter().map(|k| planned(*k)).collect();
    let made: Vec<_> = manifests(&c, &plan_).into_iter().map(Result::unwrap).collect();
    assert_eq!(
        made.len(),
        7,
        "pause, kill-api, kill-broker, three network faults and fill-disk are manifests"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for m in &made {
        let path = dir.path().join(format!("{}.json", m["metadata"]["name"].as_str().unwrap()));
        std::fs::write(&path, m.to_string()).unwrap();
        files.push(path);
    }
    // A manifest with a misspelt field must fail, or the validation proves nothing.
    let mut broken = made[0].clone();
    broken["spec"]["gracePeriod"] = serde_json::json!("zero");
    let bad = dir.path().join("broken.json");
    std::fs::write(&bad, broken.to_string()).unwrap();
    let schema = crate::manifest_dir().join("k8s/chaos-mesh.schema.json");
    let bin = broker::dev::install_root().join("bin/check-jsonschema");
    assert!(bin.exists(), "check-jsonschema missing at {}: run scripts/setup", bin.display());
    let check = |paths: &[std::path::PathBuf]| {
        std::process::Command::new(&bin)
            .arg("--schemafile")
            .arg(&schema)
            .args(paths)
            .output()
            .unwrap()
    };
    let out = check(&files);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!check(&[bad]).status.success(), "a wrong type must not validate");
}

#[test]
fn kubectl_steps_target_the_named_objects_and_heal_what_they_break() {
    let c = cluster();
    let (inject, heal) = plan(&c, &planned(FaultKind::KillProcessor), 0).unwrap();
    let Action::Kubectl(args) = &inject[0] else { panic!("{inject:?}") };
    assert_eq!(
        args.join(" "),
        "--namespace shop delete pod skuflow-processor-1 --grace-period=0 --force --wait=false"
    );
    assert!(heal.is_empty(), "the StatefulSet brings the pod back");

    let (inject, heal) = plan(&c, &planned(FaultKind::AddProcessor), 3).unwrap();
    let text = |a: &[Action]| format!("{a:?}");
    assert!(text(&inject).contains("--replicas=4") && text(&heal).contains("--replicas=3"));

    let (inject, heal) = plan(&c, &planned(FaultKind::NetworkLatency), 7).unwrap();
    let (Action::Apply(m), Action::Delete(d)) = (&inject[0], &heal[0]) else { panic!() };
    assert_eq!(m, d, "healing deletes what was applied");
    assert_eq!(m["spec"]["delay"]["latency"], "100ms");
    assert_eq!(m["spec"]["target"]["selector"]["namespaces"][0], "kafka");
    assert_eq!(m["spec"]["duration"], "15s");

    let (inject, _) = plan(&c, &planned(FaultKind::RestartBroker), 1).unwrap();
    assert!(text(&inject).contains("events-kafka-1") && text(&inject).contains("\"kafka\""));

    assert!(plan(&c, &planned(FaultKind::NetworkReset), 0).is_err(), "no Chaos Mesh equivalent");
}
