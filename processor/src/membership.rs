//! The group as its coordinator sees it, compared with what this member holds.
//!
//! A consumer learns of a rebalance only from its coordinator. A coordinator that fails to
//! tell a member (the dev broker does, after a member rejoins under its instance name
//! during a network fault: BROKERS.md) leaves two members applying the same partitions
//! and others applied by nobody, for ever: the member holding them never hears that they
//! were given away, and its heartbeats keep succeeding. Apache Kafka fences such a member
//! (its generation is stale, KIP-447) and ends a rebalance that waits too long; on a
//! broker that does neither, nothing would.
//!
//! So every few seconds the processor asks the coordinator to describe the group
//! (`DescribeGroups`) and [`judge`]s the answer: a rebalance that does not finish, an
//! assignment that is not what this member holds, a partition of the commands topic held
//! by nobody or by two members. A finding that persists for the group patience makes the
//! member rejoin (a new consumer under the same instance name), which starts a rebalance
//! every member takes part in. Safety never rests on this: a second writer on a partition
//! is kept from applying over the first by the offsets and the changelog checks; this
//! restores liveness.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};

/// One member as the coordinator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    pub client_id: String,
    /// Its partitions of the commands topic, from the assignment the coordinator holds.
    pub partitions: BTreeSet<i32>,
}

/// The group as the coordinator describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupView {
    /// `Stable`, `PreparingRebalance`, `CompletingRebalance`, `Empty`, `Dead`.
    pub state: String,
    pub members: Vec<MemberView>,
}

/// What is wrong with the group, seen from one member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// The group is not stable (a rebalance is in progress).
    Rebalancing(String),
    /// The coordinator does not list this member at all.
    Absent,
    /// The coordinator gave this member other partitions than it holds.
    Mine { holds: BTreeSet<i32>, given: BTreeSet<i32> },
    /// Partitions of the commands topic no member holds.
    Orphaned(BTreeSet<i32>),
    /// Partitions two or more members hold.
    Shared(BTreeSet<i32>),
}

impl Finding {
    /// A short stable name for the metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            Finding::Rebalancing(_) => "rebalancing",
            Finding::Absent => "absent",
            Finding::Mine { .. } => "assignment",
            Finding::Orphaned(_) => "orphaned",
            Finding::Shared(_) => "shared",
        }
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::Rebalancing(state) => write!(f, "the group is {state}"),
            Finding::Absent => write!(f, "the coordinator does not list this member"),
            Finding::Mine { holds, given } => {
                write!(
                    f,
                    "this member holds partitions {holds:?}, the coordinator gave it {given:?}"
                )
            }
            Finding::Orphaned(p) => write!(f, "partitions {p:?} are held by no member"),
            Finding::Shared(p) => write!(f, "partitions {p:?} are held by more than one member"),
        }
    }
}

/// The first thing wrong with `view` for the member `me` holding `holds`, out of
/// `partitions` partitions of the commands topic; `None` when the group is consistent.
pub fn judge(
    view: &GroupView,
    me: &str,
    holds: &BTreeSet<i32>,
    partitions: i32,
) -> Option<Finding> {
    if view.state != "Stable" {
        return Some(Finding::Rebalancing(view.state.clone()));
    }
    // This consumer's own client id, or else one an earlier consumer of this instance
    // joined with (Kafka keeps that one when a static member is replaced).
    let mine = view
        .members
        .iter()
        .find(|m| m.client_id == me)
        .or_else(|| view.members.iter().find(|m| instance_of(&m.client_id) == instance_of(me)));
    let Some(mine) = mine else {
        return Some(Finding::Absent);
    };
    if &mine.partitions != holds {
        return Some(Finding::Mine { holds: holds.clone(), given: mine.partitions.clone() });
    }
    let mut holders: BTreeMap<i32, usize> = BTreeMap::new();
    for p in view.members.iter().flat_map(|m| &m.partitions) {
        *holders.entry(*p).or_default() += 1;
    }
    let shared: BTreeSet<i32> = holders.iter().filter(|(_, n)| **n > 1).map(|(p, _)| *p).collect();
    if !shared.is_empty() {
        return Some(Finding::Shared(shared));
    }
    let orphaned: BTreeSet<i32> = (0..partitions).filter(|p| !holders.contains_key(p)).collect();
    if !orphaned.is_empty() {
        return Some(Finding::Orphaned(orphaned));
    }
    None
}

/// The instance name in a processor's client id, `<instance>-<pid>-<n>`.
fn instance_of(client_id: &str) -> &str {
    let mut parts = client_id.rsplitn(3, '-');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(_), Some(_), Some(instance)) => instance,
        _ => client_id,
    }
}

/// The partitions of `topic` in a consumer-protocol assignment (`ConsumerProtocolAssignment`:
/// version, then topics with their partitions, then user data). `None` if it does not parse.
pub fn assigned_partitions(bytes: &[u8], topic: &str) -> Option<BTreeSet<i32>> {
    let mut r = Reader(bytes);
    let _version = r.i16()?;
    let topics = r.i32()?;
    let mut out = BTreeSet::new();
    // Each topic takes at least 6 bytes: a hostile count cannot make this loop long.
    for _ in 0..topics.max(0) {
        let len = usize::try_from(r.i16()?).ok()?;
        let name = r.take(len)?;
        let n = r.i32()?;
        for _ in 0..n.max(0) {
            let p = r.i32()?;
            if name == topic.as_bytes() {
                out.insert(p);
            }
        }
    }
    Some(out)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn i16(&mut self) -> Option<i16> {
        self.take(2).map(|b| i16::from_be_bytes([b[0], b[1]]))
    }
    fn i32(&mut self) -> Option<i32> {
        self.take(4).map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// Ask the coordinator to describe `group` (only its coordinator lists it; librdkafka asks
/// every broker, and fails the whole call when one does not answer). `None`: not
/// described, or an assignment in it that does not parse.
pub fn describe<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    group: &str,
    topic: &str,
    timeout: Duration,
) -> rdkafka::error::KafkaResult<Option<GroupView>> {
    let list = consumer.client().fetch_group_list(Some(group), timeout)?;
    let view = list
        .groups()
        .iter()
        .filter(|g| g.name() == group && !g.state().is_empty())
        .max_by_key(|g| g.members().len())
        .map(|g| {
            g.members()
                .iter()
                .map(|m| {
                    // No assignment yet is none; one that does not parse makes the
                    // whole look worthless (`None` below), never a finding.
                    let partitions = match m.assignment() {
                        None | Some([]) => Some(BTreeSet::new()),
                        Some(a) => assigned_partitions(a, topic),
                    };
                    partitions.map(|partitions| MemberView {
                        client_id: m.client_id().to_owned(),
                        partitions,
                    })
                })
                .collect::<Option<Vec<_>>>()
                .map(|members| GroupView { state: g.state().to_owned(), members })
        });
    Ok(view.flatten())
}

/// How often the coordinator is asked.
pub const AUDIT_EVERY: Duration = Duration::from_secs(5);

/// How long after a look that got no answer the next is made: the look blocks the
/// processing thread up to its timeout while a broker is away.
pub const AUDIT_AFTER_FAILURE: Duration = Duration::from_secs(30);

/// Findings over time: rejoin once the group has been found wrong at every look for
/// `patience`.
#[derive(Debug)]
pub struct Audit {
    patience: Duration,
    last: Option<Instant>,
    /// The last look got no answer.
    failed: bool,
    /// Since when every look found something wrong.
    wrong_since: Option<Instant>,
}

impl Audit {
    pub fn new(patience: Duration) -> Self {
        Self { patience, last: None, failed: false, wrong_since: None }
    }

    /// Whether it is time to look again.
    pub fn due(&self, now: Instant) -> bool {
        let every = if self.failed { AUDIT_AFTER_FAILURE } else { AUDIT_EVERY };
        self.last.is_none_or(|t| now.duration_since(t) >= every)
    }

    /// Record a look's finding (`None`: consistent). Returns the finding when it has
    /// persisted for the patience: time to rejoin.
    pub fn record(&mut self, now: Instant, finding: Option<Finding>) -> Option<Finding> {
        self.last = Some(now);
        self.failed = false;
        let Some(finding) = finding else {
            self.wrong_since = None;
            return None;
        };
        let since = *self.wrong_since.get_or_insert(now);
        (now.duration_since(since) >= self.patience).then_some(finding)
    }

    /// A look that got no answer (a broker is away): says nothing either way, and the
    /// next is made later.
    pub fn skipped(&mut self, now: Instant) {
        self.last = Some(now);
        self.failed = true;
    }

    /// A new member starts with a clean record.
    pub fn reset(&mut self) {
        self.wrong_since = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, parts: &[i32]) -> MemberView {
        MemberView { client_id: id.into(), partitions: parts.iter().copied().collect() }
    }

    fn view(state: &str, members: Vec<MemberView>) -> GroupView {
        GroupView { state: state.into(), members }
    }

    fn set(p: &[i32]) -> BTreeSet<i32> {
        p.iter().copied().collect()
    }

    #[test]
    fn a_consistent_group_has_no_finding() {
        let v = view("Stable", vec![member("a", &[0, 2]), member("b", &[1, 3])]);
        assert_eq!(judge(&v, "a", &set(&[0, 2]), 4), None);
        assert_eq!(judge(&v, "b", &set(&[1, 3]), 4), None);
    }

    #[test]
    fn a_replaced_static_member_is_found_by_its_instance_name() {
        // Kafka kept the client id of processor-0's first consumer.
        let v = view("Stable", vec![member("processor-0-7-0", &[0, 2]), member("b-8-0", &[1, 3])]);
        assert_eq!(judge(&v, "processor-0-7-3", &set(&[0, 2]), 4), None);
        assert_eq!(judge(&v, "processor-1-7-0", &set(&[]), 4), Some(Finding::Absent));
    }

    #[test]
    fn each_inconsistency_is_found() {
        let ok = vec![member("a", &[0, 2]), member("b", &[1, 3])];
        assert_eq!(
            judge(&view("PreparingRebalance", ok.clone()), "a", &set(&[0, 2]), 4),
            Some(Finding::Rebalancing("PreparingRebalance".into()))
        );
        assert_eq!(
            judge(&view("Stable", ok.clone()), "c-1-0", &set(&[]), 4),
            Some(Finding::Absent)
        );
        // What the ci-network run showed: a member still applying what was given away.
        assert_eq!(
            judge(&view("Stable", ok), "a", &set(&[1, 3]), 4),
            Some(Finding::Mine { holds: set(&[1, 3]), given: set(&[0, 2]) })
        );
        let v = view("Stable", vec![member("a", &[1, 3]), member("b", &[1, 3])]);
        assert_eq!(judge(&v, "a", &set(&[1, 3]), 4), Some(Finding::Shared(set(&[1, 3]))));
        let v = view("Stable", vec![member("a", &[0, 3]), member("b", &[1])]);
        assert_eq!(judge(&v, "a", &set(&[0, 3]), 4), Some(Finding::Orphaned(set(&[2]))));
    }

    /// Bytes as librdkafka's assignor writes them (ConsumerProtocolAssignment v1).
    fn assignment(topics: &[(&str, &[i32])]) -> Vec<u8> {
        let mut b = 1i16.to_be_bytes().to_vec();
        b.extend((topics.len() as i32).to_be_bytes());
        for (name, parts) in topics {
            b.extend((name.len() as i16).to_be_bytes());
            b.extend(name.as_bytes());
            b.extend((parts.len() as i32).to_be_bytes());
            for p in *parts {
                b.extend(p.to_be_bytes());
            }
        }
        b.extend((-1i32).to_be_bytes()); // no user data
        b
    }

    #[test]
    fn assignments_parse_and_garbage_does_not() {
        let b = assignment(&[("other", &[7]), ("cmds", &[0, 2])]);
        assert_eq!(assigned_partitions(&b, "cmds"), Some(set(&[0, 2])));
        assert_eq!(assigned_partitions(&b, "none"), Some(set(&[])));
        assert_eq!(assigned_partitions(&b[..b.len() - 9], "cmds"), None);
        let mut hostile = 0i16.to_be_bytes().to_vec();
        hostile.extend(i32::MAX.to_be_bytes());
        assert_eq!(assigned_partitions(&hostile, "cmds"), None);
        assert_eq!(assigned_partitions(&[], "cmds"), None);
    }

    #[test]
    fn only_a_finding_that_persists_for_the_patience_rejoins() {
        let t0 = Instant::now();
        let mut audit = Audit::new(Duration::from_secs(20));
        let wrong = Some(Finding::Orphaned(set(&[2])));
        assert!(audit.due(t0));
        assert_eq!(audit.record(t0, wrong.clone()), None);
        assert!(!audit.due(t0 + Duration::from_secs(1)));
        assert_eq!(audit.record(t0 + Duration::from_secs(10), wrong.clone()), None);
        // A consistent look in between starts the count again.
        assert_eq!(audit.record(t0 + Duration::from_secs(15), None), None);
        assert_eq!(audit.record(t0 + Duration::from_secs(25), wrong.clone()), None);
        audit.skipped(t0 + Duration::from_secs(30));
        assert!(!audit.due(t0 + Duration::from_secs(35)), "after no answer, a longer pause");
        assert!(audit.due(t0 + Duration::from_secs(60)));
        assert_eq!(audit.record(t0 + Duration::from_secs(60), wrong.clone()), wrong);
        assert!(audit.due(t0 + Duration::from_secs(65)));
        audit.reset();
        assert_eq!(audit.record(t0 + Duration::from_secs(50), wrong), None);
    }
}
