//! The auditor: invariants I1–I7 checked from what a deployment wrote to Kafka.
//!
//! 1. **Replay** (I3, I4, I6): the commands topic is applied again through the same
//!    state machine; the replies, events and dead letters it yields must be exactly the
//!    ones in the output topics (after dropping duplicates by record id, which must be
//!    byte-identical), the last availability per SKU must match, and the state rebuilt
//!    from the changelog topic must equal the replayed state.
//! 2. **Structure** (I1, I2, I7), from the events topic alone: no stock row ever has more
//!    reserved than on hand; `on_hand + sold` moves only with stock-keeping commands; a
//!    reservation ends at most once and only after it began; after every command each
//!    touched row's `reserved` equals the units its active reservations hold.
//!
//! I5 (nothing uncommitted is shown) is what read_committed gives the auditor: anything
//! a zombie or an aborted transaction wrote would surface here as a duplicate id with
//! other bytes or as an output the replay does not produce.

use std::collections::{BTreeMap, BTreeSet};

use broker::read::ReadRecord;
use processor::batch::{InRecord, OutRecord, Source, apply_routed};
use state::store::{Change, Store};
use state::{Machine, MachineConfig, PartitionState, Snapshot};
use topics::codec::Format;
use topics::envelope::ID_HEADER;
use topics::{
    Event, LogCommand, LogTime, RecordId, ReservationId, Sku, StockLevel, Topic, WarehouseId,
};

use crate::log::Log;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub invariant: &'static str,
    pub detail: String,
}

/// What the auditor saw and found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub command_records: usize,
    pub requests: usize,
    pub ticks: usize,
    pub dead_lettered: usize,
    /// Distinct reply ids in the replies topic.
    pub replies: usize,
    pub events: usize,
    /// Output records seen more than once (same id, same bytes): harmless, counted.
    pub duplicates: usize,
    pub violations: Vec<Violation>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }

    fn violate(&mut self, invariant: &'static str, detail: impl Into<String>) {
        if self.violations.len() < 100 {
            self.violations.push(Violation { invariant, detail: detail.into() });
        }
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} command records ({} requests, {} ticks, {} dead-lettered), {} replies, {} events, {} duplicate outputs dropped",
            self.command_records,
            self.requests,
            self.ticks,
            self.dead_lettered,
            self.replies,
            self.events,
            self.duplicates
        )?;
        if self.violations.is_empty() {
            return writeln!(f, "I1-I7 hold");
        }
        for v in &self.violations {
            writeln!(f, "{}: {}", v.invariant, v.detail)?;
        }
        Ok(())
    }
}

/// Audit `log` as written by processors running `machine`.
pub fn audit(log: &Log, machine: MachineConfig) -> Report {
    let mut report = Report { command_records: log.commands.len(), ..Report::default() };
    let replies = dedup(&log.replies, &mut report, "replies");
    let events = dedup(&log.events, &mut report, "events");
    let dead = dedup(&log.dead_letters, &mut report, "dead letters");
    report.replies = replies.len();
    report.events = events.len();
    report.dead_lettered = dead.len();
    let mut stock_offsets = BTreeSet::new();
    for r in &log.commands {
        match log.format.decode::<LogCommand>(r.payload.as_deref()).map(|e| e.body) {
            Ok(LogCommand::Tick) => report.ticks += 1,
            Ok(LogCommand::Request(req)) => {
                report.requests += 1;
                if req.command.is_admin() {
                    stock_offsets.insert((r.partition, r.offset));
                }
            }
            Err(_) => {}
        }
    }
    let replayed = replay(log, machine, &mut report);
    compare(&mut report, "I4", "reply", &replies, &replayed.outputs(Topic::Replies));
    compare(&mut report, "I3", "event", &events, &replayed.outputs(Topic::Events));
    compare(&mut report, "I4", "dead letter", &dead, &replayed.outputs(Topic::DeadLetter));
    check_availability(&mut report, log, &replayed);
    check_changelog(&mut report, log, &replayed);
    check_events(&mut report, &log.format, &events, &stock_offsets);
    report
}

type ById = BTreeMap<RecordId, Vec<u8>>;

fn record_id(headers: &[(String, Vec<u8>)]) -> Option<RecordId> {
    let v = headers.iter().find(|(k, _)| k == ID_HEADER)?;
    std::str::from_utf8(&v.1).ok()?.parse().ok()
}

/// Outputs by record id; the same id twice must carry the same bytes (I3/I5).
fn dedup(records: &[ReadRecord], report: &mut Report, what: &str) -> ById {
    let mut out = ById::new();
    for r in records {
        let Some(id) = record_id(&r.headers) else {
            report
                .violate("I5", format!("{what}: record at {}/{} has no id", r.partition, r.offset));
            continue;
        };
        let bytes = r.payload.clone().unwrap_or_default();
        match out.get(&id) {
            Some(seen) if *seen == bytes => report.duplicates += 1,
            Some(_) => {
                report.violate("I3", format!("{what}: id {id} seen with different contents"))
            }
            None => {
                out.insert(id, bytes);
            }
        }
    }
    out
}

struct Replayed {
    records: Vec<OutRecord>,
    states: BTreeMap<i32, PartitionState>,
}

impl Replayed {
    fn outputs(&self, topic: Topic) -> ById {
        self.records
            .iter()
            .filter(|r| r.topic == topic)
            .filter_map(|r| {
                let headers: Vec<(String, Vec<u8>)> =
                    r.headers.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
                Some((record_id(&headers)?, r.payload.clone().unwrap_or_default()))
            })
            .collect()
    }
}

fn replay(log: &Log, config: MachineConfig, report: &mut Report) -> Replayed {
    let machine = Machine::new(config);
    let mut by_partition: BTreeMap<i32, Vec<&ReadRecord>> = BTreeMap::new();
    for r in &log.commands {
        by_partition.entry(r.partition).or_default().push(r);
    }
    let mut replayed = Replayed { records: Vec::new(), states: BTreeMap::new() };
    let applied = changelog_applied(log);
    for (p, records) in by_partition {
        // A running processor may not have applied the newest commands yet: replay what
        // the changelog says was applied.
        let upto = applied.get(&p).copied().unwrap_or(-1);
        let ins: Vec<InRecord<'_>> = records
            .iter()
            .filter(|r| r.offset <= upto)
            .map(|r| InRecord {
                offset: r.offset,
                timestamp: LogTime(r.timestamp.max(0) as u64),
                key: r.key.as_deref(),
                payload: r.payload.as_deref(),
                trace: None,
            })
            .collect();
        let mut state = PartitionState::new();
        let partitions = (log.partitions > 0).then_some(log.partitions);
        if !ins.is_empty() {
            match apply_routed(
                &machine,
                Source::Whole,
                &mut state,
                p,
                partitions,
                &log.format,
                &ins,
            ) {
                Ok(applied) => replayed.records.extend(applied.records),
                Err(e) => report.violate("I6", format!("partition {p}: replay failed: {e}")),
            }
        }
        replayed.states.insert(p, state);
    }
    replayed
}

/// The last applied offset each changelog partition records (its last META record).
fn changelog_applied(log: &Log) -> BTreeMap<i32, i64> {
    use state::store::{keys, values};
    let mut applied = BTreeMap::new();
    for r in &log.changelog {
        let is_meta = r.key.as_deref().is_some_and(|k| keys::decode(k) == Ok(keys::Key::Meta));
        let meta = r.payload.as_deref().filter(|_| is_meta).and_then(|v| values::meta_from(v).ok());
        if let Some(values::Meta { applied: Some(a), .. }) = meta {
            applied.insert(r.partition, a);
        }
    }
    applied
}

fn compare(report: &mut Report, invariant: &'static str, what: &str, seen: &ById, want: &ById) {
    for (id, bytes) in want {
        match seen.get(id) {
            None => report.violate(invariant, format!("{what} {id} missing")),
            Some(b) if b != bytes => {
                report.violate("I6", format!("{what} {id} differs from replay"))
            }
            Some(_) => {}
        }
    }
    for id in seen.keys().filter(|id| !want.contains_key(id)) {
        report.violate("I5", format!("{what} {id} not produced by replay"));
    }
}

/// The last availability record per SKU equals the replay's.
fn check_availability(report: &mut Report, log: &Log, replayed: &Replayed) {
    let last = |records: Vec<(Vec<u8>, Vec<u8>)>| -> BTreeMap<Vec<u8>, Vec<u8>> {
        records.into_iter().collect()
    };
    let seen = last(
        log.availability
            .iter()
            .map(|r| (r.key.clone().unwrap_or_default(), r.payload.clone().unwrap_or_default()))
            .collect(),
    );
    let want = last(
        replayed
            .records
            .iter()
            .filter(|r| r.topic == Topic::Availability)
            .map(|r| (r.key.clone(), r.payload.clone().unwrap_or_default()))
            .collect(),
    );
    for (sku, bytes) in &want {
        if seen.get(sku) != Some(bytes) {
            report.violate(
                "I6",
                format!("availability of {} differs from replay", String::from_utf8_lossy(sku)),
            );
        }
    }
}

/// State rebuilt from the changelog equals the replayed state (I6).
fn check_changelog(report: &mut Report, log: &Log, replayed: &Replayed) {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => return report.violate("I6", format!("no temporary store: {e}")),
    };
    let store = match Store::open(dir.path(), false) {
        Ok(s) => s,
        Err(e) => return report.violate("I6", format!("temporary store: {e}")),
    };
    let mut by_partition: BTreeMap<i32, Vec<Change>> = BTreeMap::new();
    for r in &log.changelog {
        by_partition
            .entry(r.partition)
            .or_default()
            .push(Change { key: r.key.clone().unwrap_or_default(), value: r.payload.clone() });
    }
    for (p, state) in &replayed.states {
        let changes = by_partition.remove(p).unwrap_or_default();
        let rebuilt: Result<Snapshot, _> =
            store.import(*p, changes).and_then(|_| store.load(*p)).map(|s| s.snapshot());
        match rebuilt {
            Ok(s) if s == state.snapshot() => {}
            Ok(s) => {
                let want = state.snapshot();
                let differs: Vec<&str> = [
                    ("log_time", s.log_time != want.log_time),
                    ("applied", s.applied != want.applied),
                    ("stock", s.stock != want.stock),
                    ("reservations", s.reservations != want.reservations),
                    ("dedup", s.dedup != want.dedup),
                    ("timers", s.timers != want.timers),
                ]
                .into_iter()
                .filter_map(|(name, d)| d.then_some(name))
                .collect();
                report.violate(
                    "I6",
                    format!(
                        "partition {p}: changelog state differs from replay in {differs:?} (changelog: applied {:?}, log time {:?}; replay: {:?}, {:?})",
                        s.applied, s.log_time, want.applied, want.log_time
                    ),
                )
            }
            Err(e) => report.violate("I6", format!("partition {p}: changelog import: {e}")),
        }
    }
}

/// I1, I2 and I7 from the events alone, in log order. `stock_offsets` are the positions
/// of stock-keeping commands, the only ones allowed to move `on_hand + sold`.
fn check_events(
    report: &mut Report,
    format: &Format,
    events: &ById,
    stock_offsets: &BTreeSet<(i32, i64)>,
) {
    type Row = (Sku, WarehouseId);
    let mut rows: BTreeMap<Row, StockLevel> = BTreeMap::new();
    // Units held per row by active reservations, and what each reservation holds.
    // i128: sums of u64 quantities never overflow here, and a release of more than is
    // held shows as a negative number instead of wrapping.
    let mut held: BTreeMap<Row, i128> = BTreeMap::new();
    let mut holds: BTreeMap<ReservationId, Option<Vec<(Row, i128)>>> = BTreeMap::new();
    let mut touched: BTreeSet<Row> = BTreeSet::new();
    let mut current: Option<(i32, i64)> = None;
    let check = |report: &mut Report,
                 touched: &BTreeSet<Row>,
                 rows: &BTreeMap<Row, StockLevel>,
                 held: &BTreeMap<Row, i128>| {
        for key in touched {
            let reserved = rows.get(key).map_or(0, |l| i128::from(l.reserved));
            let active = held.get(key).copied().unwrap_or(0);
            if active != reserved {
                report.violate(
                    "I7",
                    format!(
                        "{}/{}: reserved {reserved} but active holds have {active}",
                        key.0, key.1
                    ),
                );
            }
        }
    };
    for (&RecordId { partition: p, offset: o, .. }, bytes) in events {
        if current != Some((p, o)) {
            check(report, &touched, &rows, &held);
            touched.clear();
            current = Some((p, o));
        }
        let Ok(event) = format.decode::<Event>(Some(bytes)).map(|e| e.body) else {
            report.violate("I3", format!("event {p}/{o} does not decode"));
            continue;
        };
        match event {
            Event::ReservationCreated { reservation, allocations, .. } => {
                let parts: Vec<(Row, i128)> = allocations
                    .iter()
                    .map(|a| {
                        ((reservation.sku.clone(), a.warehouse.clone()), i128::from(a.quantity))
                    })
                    .collect();
                for (row, q) in &parts {
                    *held.entry(row.clone()).or_default() += q;
                }
                if holds.insert(reservation.clone(), Some(parts)).is_some() {
                    report.violate("I7", format!("reservation {reservation} created twice"));
                }
            }
            Event::ReservationReleased { reservation, .. }
            | Event::ReservationExpired { reservation, .. }
            | Event::ReservationPurchased { reservation, .. } => {
                match holds.get_mut(&reservation) {
                    None => report
                        .violate("I7", format!("reservation {reservation} ended before it began")),
                    Some(None) => {
                        report.violate("I7", format!("reservation {reservation} ended twice"))
                    }
                    Some(parts) => {
                        for (row, q) in parts.take().unwrap_or_default() {
                            *held.entry(row).or_default() -= q;
                        }
                    }
                }
            }
            Event::StockChanged { sku, warehouse, level } => {
                if level.reserved > level.on_hand {
                    report.violate(
                        "I1",
                        format!(
                            "{sku}/{warehouse} at {p}/{o}: reserved {} > on hand {}",
                            level.reserved, level.on_hand
                        ),
                    );
                }
                let key = (sku, warehouse);
                let before = rows.get(&key).copied().unwrap_or_default();
                let units = |l: &StockLevel| u128::from(l.on_hand) + u128::from(l.sold);
                if units(&level) != units(&before) && !stock_offsets.contains(&(p, o)) {
                    report.violate(
                        "I2",
                        format!("{}/{} at {p}/{o}: on_hand + sold moved without a stock-keeping command", key.0, key.1),
                    );
                }
                rows.insert(key.clone(), level);
                touched.insert(key);
            }
            Event::ReservationExtended { .. }
            | Event::OutOfStock { .. }
            | Event::BackInStock { .. } => {}
        }
    }
    check(report, &touched, &rows, &held);
}
