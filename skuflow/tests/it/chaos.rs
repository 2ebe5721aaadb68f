//! `skuflow chaos run` end to end on a local cluster it starts itself: process faults
//! and broker restarts under load with the independent checker passing, and a
//! deliberately broken deployment that the checker must catch. Part of the process
//! faults' workload goes through the `ingest` library rather than HTTP. Network and disk
//! faults need root (iptables, tmpfs mounts), as CI has.

use serde_json::Value;

fn run(scenario: &str) -> (bool, Value, String) {
    let (passed, report, stdout, _) = run_with_history(scenario);
    (passed, report, stdout)
}

/// [`run`], and the history's entries.
fn run_with_history(scenario: &str) -> (bool, Value, String, Vec<Value>) {
    // Kept after the run (and replaced by the next) so that a failure can be read:
    // report.html, history.jsonl and every member's log under cluster/.
    let out =
        std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("chaos-{scenario}"));
    let _ = std::fs::remove_dir_all(&out);
    let path = format!("{}/../chaos/scenarios/", crate::manifest_dir().display());
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_skuflow"))
        .args(["chaos", "run", &format!("{path}{scenario}.toml"), "--out"])
        .arg(&out)
        .env("SKUFLOW_LOG", "warn,processor=info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let output = child.wait_with_output().unwrap();
    let mut stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        stdout.push_str(&processor_notes(&out.join("cluster")));
    }
    let text = std::fs::read_to_string(out.join("report.json")).unwrap_or_else(|e| {
        let stderr = String::from_utf8_lossy(&output.stderr);
        // How it ended (an exit code, or the signal that ended it) comes last, where a
        // truncated log still shows it.
        panic!(
            "no report ({e}): {stdout}\n{stderr}\nchaos run (pid {pid}) ended: {}",
            output.status
        )
    });
    assert!(out.join("report.html").exists());
    let history = std::fs::read_to_string(out.join("history.jsonl")).unwrap();
    let entries = history.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    (output.status.success(), serde_json::from_str(&text).unwrap(), stdout, entries)
}

/// What the processors said about their group, restores and halts, for a failed run's
/// message (the full logs stay under the run's directory).
fn processor_notes(cluster: &std::path::Path) -> String {
    let mut notes = String::new();
    let Ok(dir) = std::fs::read_dir(cluster) else { return notes };
    let mut logs: Vec<_> = dir
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("processor-")))
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    for log in logs {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.contains(" processor::") && !l.contains("consumer error"))
            .collect();
        notes.push_str(&format!("\n--- {} (last of {} lines)\n", log.display(), lines.len()));
        for l in &lines[lines.len().saturating_sub(40)..] {
            notes.push_str(&l.chars().take(400).collect::<String>());
            notes.push('\n');
        }
    }
    notes
}

fn checked(report: &Value, check: &str) -> u64 {
    let checks = report["verdict"]["checks"].as_array().unwrap();
    checks.iter().find(|c| c["check"] == check).map_or(0, |c| c["checked"].as_u64().unwrap())
}

/// The faults were applied as planned, without error. (How fast the system recovered
/// is a measurement, in the report and RELIABILITY.md, not a test: it depends on what
/// else the machine runs.)
fn assert_faults(report: &Value, kinds: &[&str]) {
    let faults = report["faults"].as_array().unwrap();
    let applied: Vec<&str> = faults.iter().map(|f| f["kind"].as_str().unwrap()).collect();
    assert_eq!(applied, kinds, "{faults:?}");
    assert!(faults.iter().all(|f| f["error"].is_null()), "{faults:?}");
}

#[test]
fn every_process_fault_under_load_leaves_the_invariants_intact() {
    let (_, report, stdout, history) = run_with_history("ci-processes");
    // Nothing at all: under CI's load a partition once stopped being answered after a
    // kill -9 restart (a pause librdkafka kept across a rebalance, fixed; the run's logs
    // stay in the target directory's chaos-ci-processes/).
    assert_eq!(report["verdict"]["findings"], serde_json::json!([]), "{stdout}");
    // A share of the commands went through the ingest library, and were answered.
    let via_ingest: Vec<&Value> =
        history.iter().filter(|e| e["api"].as_u64() == Some(u64::MAX)).collect();
    assert!(
        via_ingest.iter().filter(|e| matches!(e["status"].as_u64(), Some(200 | 409))).count() > 50,
        "{} commands through ingest: {stdout}",
        via_ingest.len()
    );
    assert_faults(
        &report,
        &["kill-processor", "pause-processor", "stop-processor", "add-processor", "kill-api"],
    );
    for check in [
        "model-replay",
        "conservation",
        "one-reply-per-key",
        "every-command-answered",
        "holds-end-once",
        "expired-holds-return",
        "read-your-writes",
    ] {
        assert!(checked(&report, check) > 0, "{check} looked at nothing: {stdout}");
    }
    assert!(report["audit"]["ran"] == true && report["audit"]["ok"] == true, "{}", report["audit"]);
}

/// Network faults between the processors and the broker (through the harness's proxy
/// and an iptables rule: root, as CI has) and a full data disk: every command answered,
/// nothing found.
#[test]
fn network_faults_and_a_full_disk_leave_the_invariants_intact() {
    let (_, report, stdout) = run("ci-network");
    assert_eq!(report["verdict"]["findings"], serde_json::json!([]), "{stdout}");
    assert_faults(&report, &["network-latency", "network-reset", "network-blackhole", "fill-disk"]);
    for check in ["model-replay", "conservation", "every-command-answered", "read-your-writes"] {
        assert!(checked(&report, check) > 0, "{check} looked at nothing: {stdout}");
    }
    assert!(report["audit"]["ran"] == true && report["audit"]["ok"] == true, "{}", report["audit"]);
}

/// Broker restarts on the dev broker: it loses what it acknowledged shortly before, so
/// findings there are expected, and must be ones that loss explains. Commands left
/// unanswered are reported but not asserted here: after a restart the dev broker may
/// leave a partition stalled (BROKERS.md) and the run is too short to tell that from a
/// processor stuck for good (RELIABILITY.md). What is asserted: after the broker is back,
/// commands are answered again (before the API replaced its producer after a fatal
/// error, every command answered 503 for good).
#[test]
fn broker_restarts_lose_only_what_the_dev_broker_is_known_to_lose() {
    let (_, report, stdout, history) = run_with_history("ci-broker");
    assert_faults(&report, &["restart-broker", "kill-broker"]);
    let findings = report["verdict"]["findings"].as_array().unwrap();
    assert!(
        findings
            .iter()
            .filter(|f| f["invariant"] != "I4")
            .all(|f| f["explained_by"].as_str().is_some_and(|e| e.contains("BROKERS.md"))),
        "{stdout}"
    );
    let healed = report["faults"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["end_ms"].as_f64().unwrap())
        .fold(0.0, f64::max);
    let answered_after = history.iter().filter(|e| {
        e["method"] == "POST"
            && e["hostile"] != true
            && e["sent_ms"].as_f64().unwrap() > healed
            && matches!(e["status"].as_u64(), Some(200 | 409))
    });
    assert!(
        answered_after.count() > 0,
        "no command was answered after the broker came back: {stdout}"
    );
    assert!(checked(&report, "every-command-answered") > 0, "{stdout}");
}

#[test]
fn a_deployment_whose_expired_holds_keep_their_units_is_caught() {
    let (passed, report, stdout) = run("broken-no-ticks");
    assert!(!passed, "the checker passed a deployment without ticks: {stdout}");
    let findings = report["verdict"]["findings"].as_array().unwrap();
    assert!(
        findings
            .iter()
            .any(|f| f["check"] == "expired-holds-return" && f["explained_by"].is_null()),
        "{stdout}"
    );
}
