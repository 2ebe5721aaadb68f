//! The processor's batch step without Kafka: outputs, identities, dead letters, and
//! byte-identical outputs when the same commands are applied again in other batches.

use processor::batch::{ID_HEADER, REASON_HEADER};
use processor::{InRecord, OutRecord, apply_batch};
use state::{Machine, MachineConfig, PartitionState};
use topics::codec::{from_json, to_json};
use topics::*;

const P: i32 = 3;

fn command(sku: &str, id: &str, command: Command) -> (Vec<u8>, Vec<u8>) {
    let request = Request {
        tenant: TenantId::new("acme").unwrap(),
        command_id: CommandId::new(id).unwrap(),
        command,
    };
    (sku.as_bytes().to_vec(), to_json(&Envelope::command(LogCommand::Request(request))).unwrap())
}

fn restock(sku: &str, id: &str, n: u32) -> (Vec<u8>, Vec<u8>) {
    let c = Command::Restock(Restock {
        sku: Sku::new(sku).unwrap(),
        warehouse: WarehouseId::new("w1").unwrap(),
        quantity: Quantity::new(n).unwrap(),
    });
    command(sku, id, c)
}

fn reserve(sku: &str, id: &str, n: u32) -> (Vec<u8>, Vec<u8>) {
    let c = Command::Reserve(Reserve {
        sku: Sku::new(sku).unwrap(),
        quantity: Quantity::new(n).unwrap(),
        warehouse: None,
        strategy: None,
        allow_partial: false,
        ttl_ms: None,
    });
    command(sku, id, c)
}

/// The log: (key, payload) per offset, offsets from 100.
fn log() -> Vec<(Vec<u8>, Vec<u8>)> {
    vec![
        restock("a", "r1", 5),
        reserve("a", "h1", 2),
        (b"a".to_vec(), b"{not json".to_vec()),
        restock("b", "r2", 1),
        reserve("b", "h2", 1),
        reserve("a", "h1", 2),
        // Keyed by "a" but for SKU b: routed to a partition that is not b's.
        (b"a".to_vec(), reserve("b", "mis", 1).1),
        (b"a".to_vec(), to_json(&Envelope::command(LogCommand::Tick)).unwrap()),
    ]
}

fn records(log: &[(Vec<u8>, Vec<u8>)], from: usize, to: usize) -> Vec<InRecord<'_>> {
    (from..to)
        .map(|i| InRecord {
            offset: 100 + i as i64,
            timestamp: LogTime(1_000_000 + i as u64),
            key: Some(&log[i].0),
            payload: Some(&log[i].1),
            trace: None,
        })
        .collect()
}

/// Apply the log in batches of `size`; return all outputs.
fn run(size: usize) -> (PartitionState, Vec<OutRecord>) {
    let machine = Machine::new(MachineConfig::default());
    let mut state = PartitionState::new();
    let log = log();
    let mut out = Vec::new();
    let mut from = 0;
    while from < log.len() {
        let to = (from + size).min(log.len());
        let applied = apply_batch(&machine, &mut state, P, &records(&log, from, to)).unwrap();
        assert_eq!(applied.next_offset, 100 + to as i64);
        out.extend(applied.records);
        from = to;
    }
    (state, out)
}

fn of(records: &[OutRecord], topic: Topic) -> Vec<&OutRecord> {
    records.iter().filter(|r| r.topic == topic).collect()
}

fn header<'a>(r: &'a OutRecord, name: &str) -> &'a str {
    let (_, v) = r.headers.iter().find(|(n, _)| *n == name).unwrap();
    std::str::from_utf8(v).unwrap()
}

#[test]
fn one_reply_per_request_with_stable_ids_in_the_source_partition() {
    let (_, out) = run(100);
    let replies = of(&out, Topic::Replies);
    let ids: Vec<&str> = replies.iter().map(|r| header(r, ID_HEADER)).collect();
    // offsets 100..107: 102 is poison (no sender to answer), 106 has the wrong key (its
    // sender is answered `refused`), 107 is a tick.
    assert_eq!(ids, ["3/100/0", "3/101/0", "3/103/0", "3/104/0", "3/105/0", "3/106/0"]);
    let refused: Envelope<Reply> = from_json(replies[5].payload.as_deref()).unwrap();
    assert!(
        matches!(&refused.body.outcome, Outcome::Rejected(Rejection::Refused { detail }) if detail.starts_with("wrong_key")),
        "{:?}",
        refused.body.outcome
    );
    assert!(out.iter().all(|r| r.partition == P));
    let retry: Envelope<Reply> = from_json(replies[4].payload.as_deref()).unwrap();
    let first: Envelope<Reply> = from_json(replies[1].payload.as_deref()).unwrap();
    assert_eq!(retry.body, first.body, "a retry is answered with the original reply");
    assert_eq!(replies[1].key, b"acme/h1");
}

#[test]
fn poison_and_misrouted_records_are_dead_lettered_and_the_partition_flows_on() {
    let (state, out) = run(100);
    let dead = of(&out, Topic::DeadLetter);
    assert_eq!(dead.len(), 2);
    assert!(
        header(dead[0], REASON_HEADER).starts_with("malformed"),
        "{}",
        header(dead[0], REASON_HEADER)
    );
    assert!(
        header(dead[1], REASON_HEADER).starts_with("wrong_key"),
        "{}",
        header(dead[1], REASON_HEADER)
    );
    assert_eq!(dead[0].payload.as_deref(), Some(&b"{not json"[..]), "the original bytes are kept");
    assert_eq!(state.applied_offset(), Some(107));
}

#[test]
fn availability_once_per_touched_sku_and_changelog_ending_with_meta() {
    let (_, out) = run(100);
    let availability = of(&out, Topic::Availability);
    let docs: Vec<Availability> = availability
        .iter()
        .map(|r| from_json::<Availability>(r.payload.as_deref()).unwrap().body)
        .collect();
    assert_eq!(
        docs.iter().map(|a| (a.sku.as_str(), a.available)).collect::<Vec<_>>(),
        [("a", 3), ("b", 0)]
    );
    assert_eq!(docs[0].position, Position { partition: P, offset: 101 });
    let changelog = of(&out, Topic::Changelog);
    assert_eq!(changelog.last().unwrap().key, [0x01], "META closes the batch");
}

#[test]
fn replies_and_events_are_byte_identical_whatever_the_batch_boundaries() {
    let (state_a, out_a) = run(100);
    let (state_b, out_b) = run(3);
    assert_eq!(state_a.snapshot(), state_b.snapshot());
    for topic in [Topic::Replies, Topic::Events, Topic::DeadLetter] {
        assert!(!of(&out_a, topic).is_empty(), "{topic:?} has records to compare");
        assert_eq!(of(&out_a, topic), of(&out_b, topic), "{topic:?}");
    }
}

#[test]
fn a_batch_at_or_before_the_applied_offset_is_refused() {
    let machine = Machine::new(MachineConfig::default());
    let mut state = PartitionState::new();
    let log = log();
    apply_batch(&machine, &mut state, P, &records(&log, 0, 2)).unwrap();
    assert!(apply_batch(&machine, &mut state, P, &records(&log, 1, 3)).is_err());
}

#[test]
fn a_request_on_another_partition_than_its_key_maps_to_is_dead_lettered() {
    let machine = Machine::new(MachineConfig::default());
    let partitions = 8;
    // One SKU that murmur2 maps to P, one that it maps elsewhere.
    let sku = |home: bool| {
        (0..)
            .map(|i| format!("sku-{i}"))
            .find(|s| (keys::partition_for(s.as_bytes(), partitions) == P) == home)
            .unwrap()
    };
    let (here, elsewhere) = (sku(true), sku(false));
    let log = [restock(&here, "ok", 1), restock(&elsewhere, "foreign", 1)];
    let mut state = PartitionState::new();
    let applied = processor::apply_routed(
        &machine,
        processor::Source::Whole,
        &mut state,
        P,
        Some(partitions),
        &topics::codec::Format::Json,
        &records(&log, 0, 2),
    )
    .unwrap();
    let dead = of(&applied.records, Topic::DeadLetter);
    assert_eq!(dead.len(), 1);
    assert!(
        header(dead[0], REASON_HEADER).starts_with("wrong_partition"),
        "{}",
        header(dead[0], REASON_HEADER)
    );
    let replies = of(&applied.records, Topic::Replies);
    assert_eq!(replies.len(), 2, "the command at home is applied, the other refused");
    let refused: Envelope<Reply> = from_json(replies[1].payload.as_deref()).unwrap();
    assert_eq!(
        refused.body.outcome.clone(),
        Outcome::Rejected(Rejection::Refused { detail: header(dead[0], REASON_HEADER).to_owned() })
    );
}
