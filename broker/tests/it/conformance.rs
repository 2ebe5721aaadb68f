//! The conformance suite against the default dev broker, one test per check, each on
//! its own broker so that a failure names exactly one behaviour.

use broker::DevBroker;
use broker::conformance::{self, Check, Options, Target, Verdict};

fn check(check: Check) {
    let mut broker = DevBroker::start().expect("dev broker starts (run scripts/setup)");
    let opts = Options::default();
    let result = conformance::run(check, &mut Target::Owned(&mut broker), &opts);
    match &result.verdict {
        Verdict::Pass(_) => {}
        other => {
            panic!("{} did not pass: {other:?}\nbroker log:\n{}", check.name(), broker.log_tail())
        }
    }
}

#[test]
fn topic_create() {
    check(Check::TopicCreate);
}

#[test]
fn idempotent_produce() {
    check(Check::IdempotentProduce);
}

#[test]
fn transactional_ctp() {
    check(Check::TransactionalCtp);
}

#[test]
fn abort_invisible() {
    check(Check::AbortInvisible);
}

/// The dev broker lists an aborted transaction to fetches that start after its abort
/// marker, so librdkafka drops the producer's later commits (BROKERS.md; skuflow never
/// commits under a producer id after an abort because of it). If this test fails, the
/// dev broker got better: update BROKERS.md and make this a plain `check`.
#[test]
fn noida_hides_commits_from_readers_that_start_after_an_abort_marker() {
    let mut broker = DevBroker::start().expect("dev broker starts");
    let result = conformance::run(
        Check::ReadAfterAbort,
        &mut Target::Owned(&mut broker),
        &Options::default(),
    );
    match result.verdict {
        Verdict::Fail(detail) => {
            assert!(
                detail.contains("after the abort marker") && detail.contains("5 missing"),
                "{detail}"
            )
        }
        other => {
            panic!("read_after_abort now passes on the dev broker ({other:?}): update BROKERS.md")
        }
    }
}

#[test]
fn zombie_fenced() {
    check(Check::ZombieFenced);
}

#[test]
fn committed_offsets() {
    check(Check::CommittedOffsets);
}

#[test]
fn group_rebalance() {
    check(Check::GroupRebalance);
}

#[test]
fn kill9_restart() {
    check(Check::KillRestart);
}

/// A known gap of noida-db 0.2.3 (BROKERS.md): it acknowledges writes before saving
/// them, so a kill -9 right after the acknowledgement loses them. Apache Kafka keeps
/// acknowledged data in the page cache and passes this check. If this test fails, the
/// dev broker got better: update BROKERS.md and make this a plain `check`.
/// The loss depends on when the broker's snapshot runs relative to the kill, so it is
/// seen in most attempts, not all (10 of 10 in BROKERS.md's runs, but once an attempt under
/// a loaded CPU kept everything): up to three attempts, one loss is enough; three without
/// a loss mean the broker got better.
#[test]
fn noida_loses_acknowledged_writes_on_an_immediate_kill9() {
    let mut kept = Vec::new();
    for _ in 0..3 {
        let mut broker = DevBroker::start().expect("dev broker starts");
        let result = conformance::run(
            Check::KillAcked,
            &mut Target::Owned(&mut broker),
            &Options::default(),
        );
        match result.verdict {
            Verdict::Fail(detail) => {
                assert!(detail.contains("missing"), "{detail}");
                return;
            }
            other => kept.push(other),
        }
    }
    panic!("kill9_acked passed three times on the dev broker ({kept:?}): update BROKERS.md");
}

#[test]
fn large_backlog() {
    check(Check::LargeBacklog);
}

#[test]
fn log_append_time() {
    check(Check::LogAppendTime);
}

#[test]
fn external_target_skips_the_kill_check() {
    let broker = DevBroker::start().expect("dev broker starts");
    let result = conformance::run(
        Check::KillRestart,
        &mut Target::External(broker.bootstrap()),
        &Options::default(),
    );
    assert!(matches!(result.verdict, Verdict::Skip(_)), "{result:?}");
}

#[test]
fn a_dead_address_fails_instead_of_hanging() {
    let port = broker::dev::free_port("127.0.0.1").expect("free port");
    let opts = Options { timeout: std::time::Duration::from_secs(5), ..Options::default() };
    let result = conformance::run(
        Check::TopicCreate,
        &mut Target::External(format!("127.0.0.1:{port}")),
        &opts,
    );
    assert!(matches!(result.verdict, Verdict::Fail(_)), "{result:?}");
}

#[test]
fn dev_broker_survives_kill9_and_restart_on_the_same_port() {
    let mut broker = DevBroker::start().expect("dev broker starts");
    let before = broker.bootstrap();
    broker.kill9().expect("kill -9");
    assert!(!broker.is_running());
    broker.restart().expect("restart");
    assert!(broker.is_running());
    assert_eq!(broker.bootstrap(), before);
}
