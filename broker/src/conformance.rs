//! The broker conformance suite behind `skuflow doctor`.
//!
//! Each [`Check`] proves one broker behaviour that skuflow's exactly-once design relies
//! on (ARCHITECTURE.md, "Exactly-once"). Checks use fresh topic and group names derived from a run id, so
//! the suite can run against a shared cluster without touching anything else.

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::Producer;
use rdkafka::{Offset, TopicPartitionList};

use crate::client;
use crate::dev::DevBroker;
use crate::kafka::{self, Isolation, Read};

/// Key of the plain record appended after a check's data: once a reader sees it on a
/// partition, everything committed before it on that partition has been read.
const END: &str = "__end__";

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("{0}")]
    Violated(String),
    #[error("dev broker: {0}")]
    Broker(#[from] crate::dev::DevBrokerError),
}

fn violated(msg: impl Into<String>) -> CheckError {
    CheckError::Violated(msg.into())
}

/// What skuflow relies on, one check each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Check {
    TopicCreate,
    IdempotentProduce,
    TransactionalCtp,
    AbortInvisible,
    ReadAfterAbort,
    ZombieFenced,
    CommittedOffsets,
    GroupRebalance,
    KillRestart,
    KillAcked,
    LargeBacklog,
    LogAppendTime,
}

impl Check {
    pub const ALL: [Check; 12] = [
        Check::TopicCreate,
        Check::IdempotentProduce,
        Check::TransactionalCtp,
        Check::AbortInvisible,
        Check::ReadAfterAbort,
        Check::ZombieFenced,
        Check::CommittedOffsets,
        Check::GroupRebalance,
        Check::KillRestart,
        Check::KillAcked,
        Check::LargeBacklog,
        Check::LogAppendTime,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Check::TopicCreate => "topic_create",
            Check::IdempotentProduce => "idempotent_produce",
            Check::TransactionalCtp => "transactional_ctp",
            Check::AbortInvisible => "abort_invisible",
            Check::ReadAfterAbort => "read_after_abort",
            Check::ZombieFenced => "zombie_fenced",
            Check::CommittedOffsets => "committed_offsets",
            Check::GroupRebalance => "group_rebalance",
            Check::KillRestart => "kill9_restart",
            Check::KillAcked => "kill9_acked",
            Check::LargeBacklog => "large_backlog",
            Check::LogAppendTime => "log_append_time",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Check::TopicCreate => "topic with N partitions and cleanup.policy=compact",
            Check::IdempotentProduce => "idempotent produce: every record once, in order",
            Check::TransactionalCtp => "consume-transform-produce with send_offsets_to_transaction",
            Check::AbortInvisible => "aborted transaction invisible to read_committed",
            Check::ReadAfterAbort => {
                "read_committed from after an abort marker sees the producer's later commits"
            }
            Check::ZombieFenced => "zombie fenced by a new producer with the same transactional.id",
            Check::CommittedOffsets => "committed offsets seen by a new group member",
            Check::GroupRebalance => "two-member group splits partitions, rebalances on leave",
            Check::KillRestart => "persisted data and offsets survive kill -9 and restart",
            Check::KillAcked => "acknowledged writes survive a kill -9 right after the ack",
            Check::LargeBacklog => "a backlog above 100 MiB is consumed from offset 0",
            Check::LogAppendTime => {
                "message.timestamp.type=LogAppendTime: the broker stamps records"
            }
        }
    }

    pub fn from_name(name: &str) -> Option<Check> {
        Check::ALL.into_iter().find(|c| c.name() == name)
    }
}

/// The verdict of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Pass(String),
    Fail(String),
    Skip(String),
}

#[derive(Debug, Clone)]
pub struct CheckResult {
    pub check: Check,
    pub verdict: Verdict,
    pub elapsed: Duration,
}

impl CheckResult {
    pub fn passed(&self) -> bool {
        matches!(self.verdict, Verdict::Pass(_))
    }
}

/// The broker under test: an address, and the process when the suite owns it (only
/// then can `kill9_restart` run).
#[derive(Debug)]
pub enum Target<'a> {
    External(String),
    Owned(&'a mut DevBroker),
}

impl Target<'_> {
    fn bootstrap(&self) -> String {
        match self {
            Target::External(addr) => addr.clone(),
            Target::Owned(b) => b.bootstrap(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    /// Suffix for topic, group and transactional ids, unique per run.
    pub run_id: String,
    /// Size of the `large_backlog` topic.
    pub backlog_bytes: usize,
    /// Upper bound for any one wait inside a check.
    pub timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Self {
            run_id: format!("{}-{}", std::process::id(), nanos % 1_000_000_000),
            backlog_bytes: 128 << 20,
            timeout: Duration::from_secs(60),
        }
    }
}

/// Run one check against `target`.
pub fn run(check: Check, target: &mut Target<'_>, opts: &Options) -> CheckResult {
    let started = Instant::now();
    let verdict = match run_inner(check, target, opts) {
        Ok(Some(detail)) => Verdict::Pass(detail),
        Ok(None) => Verdict::Skip("needs a broker the suite starts itself".into()),
        Err(e) => Verdict::Fail(e.to_string()),
    };
    CheckResult { check, verdict, elapsed: started.elapsed() }
}

/// Run every check in order.
pub fn run_all(target: &mut Target<'_>, opts: &Options) -> Vec<CheckResult> {
    Check::ALL.into_iter().map(|c| run(c, target, opts)).collect()
}

fn run_inner(
    check: Check,
    target: &mut Target<'_>,
    o: &Options,
) -> Result<Option<String>, CheckError> {
    let b = target.bootstrap();
    let id = |what: &str| format!("conformance-{what}-{}", o.run_id);
    Ok(Some(match check {
        Check::TopicCreate => topic_create(&b, &id("compact"))?,
        Check::IdempotentProduce => idempotent_produce(&b, &id("idem"), o)?,
        Check::TransactionalCtp => transactional_ctp(&b, &id("ctp"), o)?,
        Check::AbortInvisible => abort_invisible(&b, &id("abort"), o)?,
        Check::ReadAfterAbort => read_after_abort(&b, &id("after-abort"), o)?,
        Check::ZombieFenced => zombie_fenced(&b, &id("zombie"), o)?,
        Check::CommittedOffsets => committed_offsets(&b, &id("offsets"), o)?,
        Check::GroupRebalance => group_rebalance(&b, &id("group"), o)?,
        Check::LargeBacklog => large_backlog(&b, &id("backlog"), o)?,
        Check::LogAppendTime => log_append_time(&b, &id("logtime"), o)?,
        Check::KillRestart | Check::KillAcked => match target {
            Target::Owned(broker) => {
                kill_restart(broker, &id(check.name()), check == Check::KillAcked, o)?
            }
            Target::External(_) => return Ok(None),
        },
    }))
}

fn topic_create(b: &str, topic: &str) -> Result<String, CheckError> {
    kafka::create_topic(b, topic, 4, &[("cleanup.policy", "compact")])?;
    let n = kafka::partition_count(b, topic)?;
    if n != 4 {
        return Err(violated(format!("asked for 4 partitions, metadata shows {n}")));
    }
    let policy = kafka::topic_config(b, topic, "cleanup.policy")?;
    match policy.as_deref() {
        Some("compact") => Ok("4 partitions, cleanup.policy=compact".into()),
        other => Err(violated(format!("cleanup.policy is {other:?}, expected compact"))),
    }
}

fn idempotent_produce(b: &str, topic: &str, o: &Options) -> Result<String, CheckError> {
    const N: usize = 3000;
    kafka::create_topic(b, topic, 3, &[])?;
    let producer = kafka::idempotent_producer(b)?;
    kafka::produce_all(
        &producer,
        topic,
        (0..N).map(|i| ((i % 3) as i32, format!("k{i}"), i.to_be_bytes().to_vec())),
    )?;
    let hw: i64 = kafka::high_watermarks(b, topic)?.iter().sum();
    if hw != N as i64 {
        return Err(violated(format!("{N} records produced, log holds {hw}")));
    }
    let reads =
        kafka::read_from_start(b, topic, Isolation::Uncommitted, o.timeout, |r| r.len() >= N)?;
    expect_each_once(&reads, (0..N).map(|i| format!("k{i}")))?;
    for p in 0..3 {
        let seq: Vec<usize> = reads
            .iter()
            .filter(|r| r.partition == p)
            .map(|r| usize::from_be_bytes(r.value[..8].try_into().unwrap_or_default()))
            .collect();
        if !seq.is_sorted() {
            return Err(violated(format!("partition {p} out of produce order")));
        }
    }
    Ok(format!("{N} records, each once, in order"))
}

/// Every expected key exactly once, nothing else.
fn expect_each_once(
    reads: &[Read],
    expected: impl IntoIterator<Item = String>,
) -> Result<(), CheckError> {
    let counts = kafka::key_counts(reads);
    let expected: HashSet<String> = expected.into_iter().collect();
    let missing = expected.iter().filter(|k| !counts.contains_key(k.as_str())).count();
    let dup = counts.values().filter(|&&c| c > 1).count();
    let extra = counts.keys().filter(|k| !expected.contains(**k)).count();
    if missing + dup + extra > 0 {
        return Err(violated(format!(
            "{missing} missing, {dup} duplicated, {extra} unexpected keys"
        )));
    }
    Ok(())
}

/// Read `topic` with `isolation` until the END marker was seen on every partition.
fn read_to_end(
    b: &str,
    topic: &str,
    isolation: Isolation,
    o: &Options,
) -> Result<Vec<Read>, CheckError> {
    let partitions = kafka::partition_count(b, topic)?;
    let reads = kafka::read_from_start(b, topic, isolation, o.timeout, |r| {
        r.iter().filter(|r| r.key == END).count() >= partitions
    })?;
    let ends = reads.iter().filter(|r| r.key == END).count();
    if ends < partitions {
        return Err(violated(format!(
            "{isolation:?} reader saw the end marker on {ends} of {partitions} partitions within {:?}",
            o.timeout
        )));
    }
    Ok(reads.into_iter().filter(|r| r.key != END).collect())
}

fn append_end_markers(b: &str, topic: &str) -> Result<(), CheckError> {
    let partitions = kafka::partition_count(b, topic)? as i32;
    let producer = kafka::idempotent_producer(b)?;
    kafka::produce_all(&producer, topic, (0..partitions).map(|p| (p, END.to_owned(), Vec::new())))?;
    Ok(())
}

fn transactional_ctp(b: &str, name: &str, o: &Options) -> Result<String, CheckError> {
    const N: usize = 600;
    let (input, output) = (format!("{name}-in"), format!("{name}-out"));
    kafka::create_topic(b, &input, 3, &[])?;
    kafka::create_topic(b, &output, 3, &[])?;
    let producer = kafka::idempotent_producer(b)?;
    kafka::produce_all(
        &producer,
        &input,
        (0..N).map(|i| ((i % 3) as i32, format!("k{i}"), b"v".to_vec())),
    )?;

    let consumer: BaseConsumer = client::consumer_config(b, name).create()?;
    consumer.subscribe(&[&input])?;
    let txn = kafka::transactional_producer(b, name)?;
    txn.init_transactions(o.timeout)?;
    let (mut consumed, mut transactions) = (0, 0);
    let started = Instant::now();
    while consumed < N {
        if started.elapsed() > o.timeout {
            return Err(violated(format!("consumed {consumed} of {N} within {:?}", o.timeout)));
        }
        let batch = poll_batch(&consumer, 100)?;
        if batch.is_empty() {
            continue;
        }
        txn.begin_transaction()?;
        let mut next = TopicPartitionList::new();
        kafka::produce_all(
            &txn,
            &output,
            batch.iter().map(|r| (r.partition, r.key.clone(), b"V".to_vec())),
        )?;
        for r in &batch {
            next.add_partition_offset(&input, r.partition, Offset::Offset(r.offset + 1))?;
        }
        let cgm =
            consumer.group_metadata().ok_or_else(|| violated("consumer has no group metadata"))?;
        txn.send_offsets_to_transaction(&next, &cgm, o.timeout)?;
        txn.commit_transaction(o.timeout)?;
        consumed += batch.len();
        transactions += 1;
    }
    drop(consumer);
    append_end_markers(b, &output)?;
    let reads = read_to_end(b, &output, Isolation::Committed, o)?;
    expect_each_once(&reads, (0..N).map(|i| format!("k{i}")))?;

    let fresh: BaseConsumer = client::consumer_config(b, name).create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition(&input, p);
    }
    let committed = fresh.committed_offsets(tpl, o.timeout)?;
    let hws = kafka::high_watermarks(b, &input)?;
    for (p, hw) in hws.iter().enumerate() {
        let got = committed.find_partition(&input, p as i32).map(|e| e.offset());
        if got != Some(Offset::Offset(*hw)) {
            return Err(violated(format!("partition {p}: committed {got:?}, end of log {hw}")));
        }
    }
    Ok(format!("{N} records in {transactions} transactions, offsets committed with them"))
}

/// Poll up to `max` records, returning early when the consumer goes quiet.
fn poll_batch(consumer: &BaseConsumer, max: usize) -> Result<Vec<Read>, CheckError> {
    let mut batch = Vec::new();
    let mut wait = Duration::from_millis(200);
    while batch.len() < max {
        match consumer.poll(wait) {
            Some(msg) => {
                batch.push(Read::from_message(&msg?));
                wait = Duration::from_millis(20);
            }
            None => break,
        }
    }
    Ok(batch)
}

fn abort_invisible(b: &str, topic: &str, o: &Options) -> Result<String, CheckError> {
    abort_then_commit(b, topic, 10, o)?;
    let committed = read_to_end(b, topic, Isolation::Committed, o)?;
    expect_each_once(&committed, (0..10).map(|i| format!("committed{i}")))?;
    let uncommitted = read_to_end(b, topic, Isolation::Uncommitted, o)?;
    Ok(format!(
        "read_committed saw 10 of 10 committed, 0 aborted (read_uncommitted saw {})",
        uncommitted.len()
    ))
}

/// A 1-partition `topic` holding one producer's aborted transaction of `n` records
/// (`aborted0..`), then its committed one (`committed0..`), then the end marker.
fn abort_then_commit(b: &str, topic: &str, n: usize, o: &Options) -> Result<(), CheckError> {
    kafka::create_topic(b, topic, 1, &[])?;
    let txn = kafka::transactional_producer(b, topic)?;
    txn.init_transactions(o.timeout)?;
    for (what, commit) in [("aborted", false), ("committed", true)] {
        txn.begin_transaction()?;
        kafka::produce_all(&txn, topic, (0..n).map(|i| (0, format!("{what}{i}"), Vec::new())))?;
        if commit {
            txn.commit_transaction(o.timeout)?;
        } else {
            txn.abort_transaction(o.timeout)?;
        }
    }
    append_end_markers(b, topic)?;
    Ok(())
}

/// A producer aborts a transaction, then commits one; a `read_committed` reader that
/// starts after the abort marker must see the commit. Kafka lists in a fetch response only
/// the aborted transactions that overlap the fetched range; a broker that lists older ones
/// makes librdkafka drop every later batch of that producer id as aborted, so a reader
/// that starts (or continues) past the marker never sees the producer's output again.
fn read_after_abort(b: &str, topic: &str, o: &Options) -> Result<String, CheckError> {
    abort_then_commit(b, topic, 5, o)?;
    let all = read_to_end(b, topic, Isolation::Committed, o)?;
    let first = all
        .iter()
        .filter(|r| r.key.starts_with("committed"))
        .map(|r| r.offset)
        .min()
        .ok_or_else(|| violated("a reader from the start saw none of the committed records"))?;
    let reads =
        kafka::read_from(b, topic, Isolation::Committed, Offset::Offset(first), o.timeout, |r| {
            r.iter().any(|r| r.key == END)
        })?;
    let reads: Vec<Read> = reads.into_iter().filter(|r| r.key != END).collect();
    expect_each_once(&reads, (0..5).map(|i| format!("committed{i}"))).map_err(|e| {
        violated(format!("reader starting at offset {first}, after the abort marker: {e}"))
    })?;
    Ok(format!(
        "a reader starting at offset {first}, after the abort marker, saw 5 of 5 later commits"
    ))
}

fn zombie_fenced(b: &str, topic: &str, o: &Options) -> Result<String, CheckError> {
    kafka::create_topic(b, topic, 1, &[])?;
    let zombie = kafka::transactional_producer(b, topic)?;
    zombie.init_transactions(o.timeout)?;
    zombie.begin_transaction()?;
    kafka::produce_all(&zombie, topic, [(0, "zombie-before".into(), vec![])])?;

    let fresh = kafka::transactional_producer(b, topic)?;
    fresh.init_transactions(o.timeout)?;

    // The zombie keeps going as if nothing happened; the broker must refuse it.
    let zombie_result = kafka::produce_all(&zombie, topic, [(0, "zombie-after".into(), vec![])])
        .and_then(|()| zombie.commit_transaction(o.timeout));
    let zombie_err = match zombie_result {
        Ok(()) => return Err(violated("zombie producer committed after being fenced")),
        Err(e) => e,
    };

    fresh.begin_transaction()?;
    kafka::produce_all(&fresh, topic, [(0, "fresh".into(), vec![])])?;
    fresh.commit_transaction(o.timeout)?;
    append_end_markers(b, topic)?;
    let reads = read_to_end(b, topic, Isolation::Committed, o)?;
    expect_each_once(&reads, ["fresh".to_owned()])?;
    Ok(format!("zombie refused ({zombie_err}); only the new producer's record visible"))
}

fn committed_offsets(b: &str, topic: &str, o: &Options) -> Result<String, CheckError> {
    kafka::create_topic(b, topic, 1, &[])?;
    let producer = kafka::idempotent_producer(b)?;
    kafka::produce_all(&producer, topic, (0..100).map(|i| (0, format!("k{i}"), Vec::new())))?;
    let first: BaseConsumer = client::consumer_config(b, topic).create()?;
    first.subscribe(&[topic])?;
    let mut seen = 0;
    let started = Instant::now();
    while seen < 50 && started.elapsed() < o.timeout {
        if let Some(m) = first.poll(Duration::from_millis(100)) {
            m?;
            seen += 1;
        }
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(50))?;
    first.commit(&tpl, CommitMode::Sync)?;
    drop(first);

    let second: BaseConsumer = client::consumer_config(b, topic).create()?;
    second.subscribe(&[topic])?;
    let started = Instant::now();
    let first_offset = loop {
        if started.elapsed() > o.timeout {
            return Err(violated("new group member read nothing"));
        }
        if let Some(m) = second.poll(Duration::from_millis(100)) {
            break m?.offset();
        }
    };
    if first_offset != 50 {
        return Err(violated(format!("committed 50, new member started at {first_offset}")));
    }
    Ok("new member resumed at the committed offset 50".into())
}

fn group_rebalance(b: &str, topic: &str, o: &Options) -> Result<String, CheckError> {
    kafka::create_topic(b, topic, 4, &[])?;
    let all: BTreeSet<i32> = (0..4).collect();
    let a = Member::join(b, topic)?;
    let second = Member::join(b, topic)?;
    let split = wait_for(o.timeout, || {
        let (x, y) = (a.assigned(), second.assigned());
        let union: BTreeSet<i32> = x.union(&y).copied().collect();
        (!x.is_empty() && !y.is_empty() && x.is_disjoint(&y) && union == all).then_some((x, y))
    })
    .ok_or_else(|| {
        violated(format!(
            "no disjoint split of 4 partitions: {:?} / {:?}",
            a.assigned(),
            second.assigned()
        ))
    })?;
    second.leave();
    wait_for(o.timeout, || (a.assigned() == all).then_some(())).ok_or_else(|| {
        violated(format!("after one member left the other holds {:?}", a.assigned()))
    })?;
    a.leave();
    Ok(format!("split {:?} / {:?}, then one member took all 4", split.0, split.1))
}

/// Poll `f` until it yields a value or `timeout` passes. Each probe reads state that
/// another thread maintains, so this is an observation loop, not a sleep.
fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let started = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if started.elapsed() > timeout {
            return None;
        }
        std::thread::park_timeout(Duration::from_millis(50));
    }
}

/// A consumer-group member polling on its own thread and publishing its assignment.
struct Member {
    assigned: Arc<Mutex<BTreeSet<i32>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Member {
    fn join(b: &str, topic: &str) -> Result<Self, CheckError> {
        let consumer: BaseConsumer = client::consumer_config(b, topic)
            .set("partition.assignment.strategy", "cooperative-sticky")
            .create()?;
        consumer.subscribe(&[topic])?;
        let assigned = Arc::new(Mutex::new(BTreeSet::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, s) = (assigned.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let _ = consumer.poll(Duration::from_millis(50));
                if let Ok(tpl) = consumer.assignment() {
                    let set = tpl.elements().iter().map(|e| e.partition()).collect();
                    *a.lock().unwrap_or_else(|e| e.into_inner()) = set;
                }
            }
            consumer.unsubscribe();
            // Dropping the consumer closes it, which leaves the group.
        });
        Ok(Self { assigned, stop, thread: Some(thread) })
    }

    fn assigned(&self) -> BTreeSet<i32> {
        self.assigned.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn leave(mut self) {
        self.stop_thread();
    }

    fn stop_thread(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.stop_thread();
    }
}

/// Write plain records, a committed transaction and a group offset, kill -9 the broker
/// and restart it: all of it must be there. `immediate`: kill right after the last
/// acknowledgement, with a burst of writes in flight to the disk (Kafka has acked data
/// in the page cache, which a process kill does not lose); otherwise wait until the
/// broker's own snapshot holds the data first.
fn kill_restart(
    broker: &mut DevBroker,
    name: &str,
    immediate: bool,
    o: &Options,
) -> Result<String, CheckError> {
    const BURST: usize = 8 << 10;
    let b = broker.bootstrap();
    kafka::create_topic(&b, name, 2, &[])?;
    let producer = kafka::idempotent_producer(&b)?;
    let burst = if immediate { BURST } else { 0 };
    kafka::produce_all(
        &producer,
        name,
        (0..100 + burst).map(|i| ((i % 2) as i32, format!("plain{i}"), vec![b'x'; 1024])),
    )?;
    let txn = kafka::transactional_producer(&b, name)?;
    txn.init_transactions(o.timeout)?;
    txn.begin_transaction()?;
    kafka::produce_all(&txn, name, (0..10).map(|i| (i % 2, format!("txn{i}"), Vec::new())))?;
    txn.commit_transaction(o.timeout)?;
    let consumer: BaseConsumer = client::consumer_config(&b, name).create()?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(name, 0, Offset::Offset(7))?;
    consumer.commit(&tpl, CommitMode::Sync)?;
    drop((producer, txn, consumer));

    if !immediate {
        // Transaction markers are written after the commit returns: wait until the
        // transaction is visible, then until the broker has saved data and offset.
        let expected = 110 + burst;
        kafka::read_from_start(&b, name, Isolation::Committed, o.timeout, |r| r.len() >= expected)?;
        let hws = kafka::high_watermarks(&b, name)?;
        let saved = crate::Saved { topic: name, high_watermarks: &hws, offsets: &[(name, 0, 7)] };
        if !broker.wait_persisted(saved, o.timeout) {
            return Err(violated(format!(
                "broker did not save {hws:?} and offset 7 within {:?}",
                o.timeout
            )));
        }
    }
    broker.kill9()?;
    broker.restart()?;

    append_end_markers(&b, name)?;
    let reads = read_to_end(&b, name, Isolation::Committed, o)?;
    let expected =
        (0..100 + burst).map(|i| format!("plain{i}")).chain((0..10).map(|i| format!("txn{i}")));
    expect_each_once(&reads, expected)?;
    let consumer: BaseConsumer = client::consumer_config(&b, name).create()?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(name, 0);
    let committed = consumer.committed_offsets(tpl, o.timeout)?;
    let got = committed.find_partition(name, 0).map(|e| e.offset());
    if got != Some(Offset::Offset(7)) {
        return Err(violated(format!("committed offset 7 before the kill, {got:?} after")));
    }
    Ok(format!("{} records and the committed offset survived", 110 + burst))
}

fn large_backlog(b: &str, topic: &str, o: &Options) -> Result<String, CheckError> {
    const RECORD: usize = 1024;
    let n = o.backlog_bytes.div_ceil(RECORD);
    kafka::create_topic(b, topic, 1, &[])?;
    let producer = kafka::idempotent_producer(b)?;
    let value = vec![b'x'; RECORD];
    kafka::produce_all(&producer, topic, (0..n).map(|i| (0, format!("{i}"), value.clone())))?;
    let started = Instant::now();
    let reads =
        kafka::read_from_start(b, topic, Isolation::Committed, o.timeout, |r| r.len() >= n)?;
    if reads.len() < n {
        return Err(violated(format!(
            "read {} of {n} records within {:?}",
            reads.len(),
            o.timeout
        )));
    }
    Ok(format!(
        "{n} records ({} MiB) read from offset 0 in {:.1?}",
        (n * RECORD) >> 20,
        started.elapsed()
    ))
}

/// skuflow's log time is the commands topic's record timestamp; with LogAppendTime the
/// broker sets it, so a producer with a skewed clock cannot move log time (and expire
/// holds early). A record sent with a CreateTime an hour in the past must come back
/// stamped by the broker, at about the time it was appended.
fn log_append_time(b: &str, topic: &str, o: &Options) -> Result<String, CheckError> {
    use rdkafka::message::Timestamp;
    const HOUR_MS: i64 = 3_600_000;
    kafka::create_topic(b, topic, 1, &[("message.timestamp.type", "LogAppendTime")])?;
    let now_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    };
    let before = now_ms();
    let producer = kafka::idempotent_producer(b)?;
    kafka::produce_at(&producer, topic, before - HOUR_MS)?;
    let after = now_ms();
    let reads = kafka::read_timestamps(b, topic, o.timeout)?;
    match reads.first() {
        Some(Timestamp::LogAppendTime(t)) if (before - 5_000..=after + 5_000).contains(t) => {
            Ok(format!("stamped by the broker {} ms after the send", t - before))
        }
        Some(other) => Err(violated(format!(
            "sent with CreateTime {} (an hour ago), read back {other:?}",
            before - HOUR_MS
        ))),
        None => Err(violated("the record was not read back")),
    }
}

/// The pass/fail table `skuflow doctor` prints.
pub fn render_table(bootstrap: &str, results: &[CheckResult]) -> String {
    use std::fmt::Write;
    let mut out = format!("broker conformance against {bootstrap}\n\n");
    let _ = writeln!(out, "{:<20} {:<6} {:>8}  detail", "check", "result", "time");
    for r in results {
        let (tag, detail) = match &r.verdict {
            Verdict::Pass(d) => ("PASS", d),
            Verdict::Fail(d) => ("FAIL", d),
            Verdict::Skip(d) => ("SKIP", d),
        };
        let _ = writeln!(
            out,
            "{:<20} {:<6} {:>7.1}s  {}",
            r.check.name(),
            tag,
            r.elapsed.as_secs_f64(),
            detail
        );
    }
    let failed = results.iter().filter(|r| matches!(r.verdict, Verdict::Fail(_))).count();
    let _ = writeln!(
        out,
        "\n{} passed, {failed} failed, {} skipped",
        results.iter().filter(|r| r.passed()).count(),
        results.iter().filter(|r| matches!(r.verdict, Verdict::Skip(_))).count()
    );
    out
}
