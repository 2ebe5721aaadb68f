//! The store-backed view against the whole state: a processor that loads only what each
//! batch needs from RocksDB (and caches 0, a few or many rows between batches) must
//! answer exactly as the whole state in memory does, byte for byte, whatever the batch
//! boundaries; and its store must then hold the same state.
//!
//! The workload makes every kind of row come and go: holds with short TTLs that expire
//! (timers fire, also many at once after a gap in log time), releases and purchases of
//! live, expired and forgotten reservations, retries of ids inside and after the
//! idempotency window (forgotten ids), conflicting retries, stock changes, ticks.

use processor::{InRecord, OutRecord, Source, apply_batch, apply_routed};
use state::store::Store;
use state::{Machine, MachineConfig, PartitionState};
use topics::codec::to_json;
use topics::*;

const P: i32 = 2;
const SKUS: [&str; 5] = ["a", "b", "c", "d", "e"];

fn config() -> MachineConfig {
    MachineConfig {
        default_ttl_ms: 300,
        max_ttl_ms: 2_000,
        dedup_window_ms: 3_000,
        reservation_retention_ms: 1_500,
        ..MachineConfig::default()
    }
}

/// Windows of zero: ids and finished reservations are forgotten at the next entry, so
/// timers are due exactly at the log time.
fn zero_windows() -> MachineConfig {
    MachineConfig { dedup_window_ms: 0, reservation_retention_ms: 0, ..config() }
}

/// A small deterministic generator (xorshift), so the workload needs no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Entry {
    at: LogTime,
    key: Vec<u8>,
    payload: Vec<u8>,
}

fn workload(n: usize, seed: u64) -> Vec<Entry> {
    let mut rng = Rng(seed);
    let mut at = 1_000_000u64;
    let mut reserves: Vec<(Sku, u64)> = Vec::new();
    let mut sent: Vec<Request> = Vec::new();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let offset = i as u64;
        // Mostly small steps; now and then a long quiet spell, so that many timers fall
        // due at one entry; now and then a step back (a broker clock that stepped back:
        // log time stays where it was).
        at += if rng.below(200) == 0 { 4_000 } else { rng.below(40) };
        let stepped_back = rng.below(50) == 0;
        if stepped_back {
            at -= rng.below(100);
        }
        if rng.below(20) == 0 {
            let payload = to_json(&Envelope::command(LogCommand::Tick)).unwrap();
            out.push(Entry { at: LogTime(at), key: b"a".to_vec(), payload });
            continue;
        }
        let request = if stepped_back && let Some(last) = sent.last() {
            // Stamped before the log time, a retry of the entry before: with windows of
            // zero its id is forgotten exactly at the log time, so it is a new command.
            last.clone()
        } else if !sent.is_empty() && rng.below(10) == 0 {
            // A retry of an earlier id: the same command, or another one (conflict).
            let mut r = sent[rng.below(sent.len() as u64) as usize].clone();
            if rng.below(3) == 0 {
                // The same id (and SKU) with another command: a conflict while remembered.
                let reservation = ReservationId::new(r.command.sku().clone(), u64::MAX);
                r.command = Command::Release(Release { reservation });
            }
            r
        } else {
            let sku = Sku::new(SKUS[rng.below(SKUS.len() as u64) as usize]).unwrap();
            let wh = WarehouseId::new(["w1", "w2", "w3"][rng.below(3) as usize]).unwrap();
            let held = |rng: &mut Rng| {
                // Mostly a recent hold (live), sometimes any (expired, forgotten).
                let n = reserves.len();
                let back =
                    if rng.below(4) == 0 { rng.below(n.max(1) as u64) } else { rng.below(8) };
                let (sku, seq) = n
                    .checked_sub(1 + back as usize)
                    .and_then(|i| reserves.get(i).cloned())
                    .unwrap_or((sku.clone(), 0));
                ReservationId::new(sku, seq)
            };
            let command = match rng.below(10) {
                0 | 1 => Command::Restock(Restock {
                    sku: sku.clone(),
                    warehouse: wh,
                    quantity: Quantity::new(1 + rng.below(20) as u32).unwrap(),
                }),
                2 => Command::Adjust(Adjust { sku: sku.clone(), warehouse: wh, delta: -1 }),
                3..=5 => {
                    reserves.push((sku.clone(), offset));
                    Command::Reserve(Reserve {
                        sku: sku.clone(),
                        quantity: Quantity::new(1 + rng.below(4) as u32).unwrap(),
                        warehouse: None,
                        strategy: None,
                        allow_partial: rng.below(2) == 0,
                        ttl_ms: Some(1 + rng.below(600)),
                    })
                }
                6 => Command::Release(Release { reservation: held(&mut rng) }),
                7 => Command::Purchase(Purchase { reservation: held(&mut rng), quantity: None }),
                8 => Command::Extend(Extend { reservation: held(&mut rng), ttl_ms: 500 }),
                _ => Command::SetStock(SetStock {
                    sku: sku.clone(),
                    warehouse: wh,
                    on_hand: rng.below(30),
                    expected_version: rng.below(3),
                }),
            };
            Request {
                tenant: TenantId::new(["acme", "globex"][rng.below(2) as usize]).unwrap(),
                command_id: CommandId::new(format!("c{i}")).unwrap(),
                command,
            }
        };
        let key = request.command.sku().as_str().as_bytes().to_vec();
        let payload = to_json(&Envelope::command(LogCommand::Request(request.clone()))).unwrap();
        sent.push(request);
        out.push(Entry { at: LogTime(at), key, payload });
    }
    out
}

fn records(log: &[Entry], from: usize, to: usize) -> Vec<InRecord<'_>> {
    (from..to)
        .map(|i| InRecord {
            offset: i as i64,
            timestamp: log[i].at,
            key: Some(&log[i].key),
            payload: Some(&log[i].payload),
            trace: None,
        })
        .collect()
}

/// Replies, events and dead letters: the outputs that do not depend on batch boundaries
/// (the changelog and availability are written once per batch).
fn answers(out: Vec<OutRecord>) -> Vec<OutRecord> {
    out.into_iter()
        .filter(|r| matches!(r.topic, Topic::Replies | Topic::Events | Topic::DeadLetter))
        .collect()
}

/// The last availability document of every SKU.
fn availability(out: &[OutRecord]) -> std::collections::BTreeMap<String, String> {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    out.iter()
        .filter(|r| r.topic == Topic::Availability)
        .map(|r| (text(&r.key), text(r.payload.as_deref().unwrap())))
        .collect()
}

/// The whole state in memory, one entry per batch: what every other run must equal.
fn whole(log: &[Entry], config: MachineConfig) -> (PartitionState, Vec<OutRecord>) {
    let machine = Machine::new(config);
    let mut state = PartitionState::new();
    let mut out = Vec::new();
    for i in 0..log.len() {
        out.extend(apply_batch(&machine, &mut state, P, &records(log, i, i + 1)).unwrap().records);
    }
    (state, out)
}

/// A store-backed view, as the processor runs it: prefetch, apply, write, evict.
fn viewed(
    log: &[Entry],
    config: MachineConfig,
    batch: usize,
    cache_rows: usize,
) -> (Store, Vec<OutRecord>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.keep(), false).unwrap();
    let machine = Machine::new(config);
    let mut view = store.view(P).unwrap();
    let mut out = Vec::new();
    let mut from = 0;
    let mut largest_view = 0;
    while from < log.len() {
        let to = (from + batch).min(log.len());
        let applied = apply_routed(
            &machine,
            Source::Store(&store),
            &mut view,
            P,
            None,
            &topics::codec::Format::Json,
            &records(log, from, to),
        )
        .unwrap();
        store.write(&applied.store).unwrap();
        largest_view = largest_view.max(view.rows());
        view.evict(cache_rows);
        assert!(view.rows() <= cache_rows, "after a batch the view holds at most the cache");
        out.extend(applied.records);
        from = to;
        // Now and then the processor loses its view (a rewind, a restart): it must not
        // matter.
        if from % 997 < batch {
            view = store.view(P).unwrap();
        }
    }
    assert!(largest_view > 0);
    (store, out)
}

fn check(log: &[Entry], config: MachineConfig, batch: usize, cache_rows: usize) {
    let (state, expected) = whole(log, config);
    let (store, got) = viewed(log, config, batch, cache_rows);
    assert_eq!(availability(&got), availability(&expected), "batch {batch}, cache {cache_rows}");
    let (got, expected) = (answers(got), answers(expected));
    assert_eq!(got.len(), expected.len(), "batch {batch}, cache {cache_rows}");
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(g, e, "record {i}, batch {batch}, cache {cache_rows}");
    }
    assert_eq!(
        store.load(P).unwrap().snapshot(),
        state.snapshot(),
        "the store holds the whole state (batch {batch}, cache {cache_rows})"
    );
}

#[test]
fn the_workload_exercises_what_the_view_must_load() {
    let log = workload(3_000, 7);
    let (state, out) = whole(&log, config());
    let replies: Vec<Reply> = out
        .iter()
        .filter(|r| r.topic == Topic::Replies)
        .map(|r| codec::from_json::<Reply>(r.payload.as_deref()).unwrap().body)
        .collect();
    let events: Vec<Event> = out
        .iter()
        .filter(|r| r.topic == Topic::Events)
        .map(|r| codec::from_json::<Event>(r.payload.as_deref()).unwrap().body)
        .collect();
    let reason = |want: &str| {
        replies
            .iter()
            .filter(|r| matches!(&r.outcome, Outcome::Rejected(x) if x.reason() == want))
            .count()
    };
    assert!(events.iter().filter(|e| matches!(e, Event::ReservationExpired { .. })).count() > 50);
    let count = |f: fn(&Event) -> bool| events.iter().filter(|e| f(e)).count();
    eprintln!(
        "expired {} purchased {} released {} extended {}",
        count(|e| matches!(e, Event::ReservationExpired { .. })),
        count(|e| matches!(e, Event::ReservationPurchased { .. })),
        count(|e| matches!(e, Event::ReservationReleased { .. })),
        count(|e| matches!(e, Event::ReservationExtended { .. })),
    );
    assert!(count(|e| matches!(e, Event::ReservationPurchased { .. })) > 10);
    assert!(count(|e| matches!(e, Event::ReservationReleased { .. })) > 10);
    assert!(count(|e| matches!(e, Event::ReservationExtended { .. })) > 10);
    assert!(replies.iter().filter(|r| matches!(r.outcome, Outcome::Reserved { .. })).count() > 100);
    assert!(reason("conflict") > 10, "conflicting retries");
    assert!(reason("not_found") > 10, "forgotten reservations");
    assert!(reason("reservation_expired") > 5);
    assert!(state.dedup_records().len() < 2_000, "ids are forgotten after the window");
}

#[test]
fn a_view_without_cache_answers_as_the_whole_state_in_every_batch_size() {
    let log = workload(3_000, 7);
    for batch in [1, 5, 64, 3_000] {
        check(&log, config(), batch, 0);
    }
}

#[test]
fn a_view_with_a_small_or_large_cache_answers_as_the_whole_state() {
    let log = workload(3_000, 11);
    for (batch, cache) in [(1, 10), (17, 10), (17, 1_000_000), (500, 1_000_000)] {
        check(&log, config(), batch, cache);
    }
}

#[test]
fn a_view_answers_as_the_whole_state_when_timers_are_due_at_the_log_time() {
    let log = workload(3_000, 13);
    for (batch, cache) in [(1, 0), (7, 0), (7, 1_000_000)] {
        check(&log, zero_windows(), batch, cache);
    }
}

#[test]
fn a_forgotten_row_leaves_the_store_and_the_changelog_says_so() {
    let log = workload(3_000, 7);
    let (store, out) = viewed(&log, config(), 50, 0);
    let live = store.export(P).unwrap().len();
    let tombstones = |kind: u8| {
        out.iter()
            .filter(|r| r.topic == Topic::Changelog && r.key[0] == kind && r.payload.is_none())
            .count()
    };
    assert!(tombstones(0x06) > 500, "forgotten idempotency records are tombstones");
    assert!(tombstones(0x03) > 100, "forgotten reservations are tombstones");
    assert!(tombstones(0x05) > 500, "fired timers are tombstones");
    // Every forgotten idempotency record and reservation became a tombstone: the store
    // holds what is live, not what happened.
    let (state, _) = whole(&log, config());
    let s = state.snapshot();
    let want = s.stock.len() + s.reservations.len() + s.dedup.len() + s.timers.len() + 1;
    assert_eq!(live, want);
}
