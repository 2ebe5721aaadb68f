//! The RocksDB store: reopen, batch atomicity under a real kill -9, restore from the
//! changelog, export/import and dropping one partition.

use std::io::{BufRead, BufReader};
use std::process::{Command as Process, Stdio};

use crate::support::*;
use state::store::{self, Change, Store};
use state::{LogEntry, Machine, PartitionState};
use topics::*;

/// A deterministic workload: entry `i` of partition `p`'s log.
fn workload(i: i64) -> (LogTime, LogCommand) {
    let n = (i as u64).wrapping_mul(2_654_435_761) % 1000;
    let s = ["a", "b", "c"][(n % 3) as usize];
    let at = LogTime(1_000_000 + i as u64 * 700);
    let tenant = TenantId::new("t").unwrap();
    let command = match n % 7 {
        0 | 1 => restock(s, ["w1", "w2"][(n % 2) as usize], 1 + (n % 5) as u32),
        2..=4 => Command::Reserve(Reserve {
            ttl_ms: Some(5_000 + n * 10),
            allow_partial: n.is_multiple_of(2),
            ..reserve(s, 1 + (n % 4) as u32)
        }),
        5 => purchase(&rid(s, (i as u64).saturating_sub(3)), None),
        _ => release(&rid(s, (i as u64).saturating_sub(2))),
    };
    let command_id = CommandId::new(format!("c{}", i - i64::from(n.is_multiple_of(11)))).unwrap();
    (at, LogCommand::Request(Request { tenant, command_id, command }))
}

/// Apply entries `from..to` of the workload to `state` (partition `p`).
fn apply(machine: &Machine, state: &mut PartitionState, p: i32, from: i64, to: i64) {
    for offset in from..to {
        let (at, command) = workload(offset);
        let position = Position { partition: p, offset };
        machine.apply(state, LogEntry { position, at, command: &command }).unwrap();
    }
}

/// Apply the workload in batches of `size`, writing each batch; return the changelog.
fn run_batches(
    store: &Store,
    state: &mut PartitionState,
    p: i32,
    batches: i64,
    size: i64,
) -> Vec<Change> {
    let machine = Machine::new(config());
    let mut changelog = Vec::new();
    for b in 0..batches {
        apply(&machine, state, p, b * size, (b + 1) * size);
        let batch = store::batch(p, state).unwrap();
        store.write(&batch).unwrap();
        changelog.extend(batch.changes);
    }
    changelog
}

#[test]
fn reopen_yields_the_last_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut live = PartitionState::new();
    {
        let store = Store::open(dir.path(), false).unwrap();
        run_batches(&store, &mut live, 0, 20, 37);
    }
    let store = Store::open(dir.path(), false).unwrap();
    assert_eq!(store.applied_offset(0).unwrap(), Some(20 * 37 - 1));
    assert_eq!(store.load(0).unwrap().snapshot(), live.snapshot());
}

#[test]
fn restore_from_the_changelog_equals_the_live_state() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), false).unwrap();
    let mut live = PartitionState::new();
    let changelog = run_batches(&store, &mut live, 2, 30, 25);
    // A compacted topic keeps only the last record per key; restore must not care.
    let mut compacted: Vec<Change> = Vec::new();
    for c in changelog.iter().rev() {
        if !compacted.iter().any(|k| k.key == c.key) {
            compacted.push(c.clone());
        }
    }
    compacted.reverse();
    for records in [changelog, compacted] {
        let other = tempfile::tempdir().unwrap();
        let restored = Store::open(other.path(), false).unwrap();
        restored.import(2, records).unwrap();
        assert_eq!(restored.load(2).unwrap().snapshot(), live.snapshot());
        assert_eq!(restored.export(2).unwrap(), store.export(2).unwrap());
    }
}

#[test]
fn export_import_and_drop_touch_one_partition() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), false).unwrap();
    let (mut p1, mut p2) = (PartitionState::new(), PartitionState::new());
    run_batches(&store, &mut p1, 1, 5, 20);
    run_batches(&store, &mut p2, 2, 5, 20);
    let exported = store.export(1).unwrap();
    assert!(!exported.is_empty());

    let other = tempfile::tempdir().unwrap();
    let copy = Store::open(other.path(), false).unwrap();
    copy.import(1, exported.clone()).unwrap();
    assert_eq!(copy.export(1).unwrap(), exported);
    assert!(copy.export(2).unwrap().is_empty());

    store.drop_partition(1).unwrap();
    assert!(store.export(1).unwrap().is_empty());
    assert_eq!(store.applied_offset(1).unwrap(), None);
    assert_eq!(store.load(2).unwrap().snapshot(), p2.snapshot(), "the neighbour is untouched");
}

#[test]
fn an_interrupted_import_leaves_no_meta() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), false).unwrap();
    let mut live = PartitionState::new();
    let changelog = run_batches(&store, &mut live, 0, 3, 10);
    let other = tempfile::tempdir().unwrap();
    let restored = Store::open(other.path(), false).unwrap();
    let bad = Change { key: vec![0xee], value: Some(vec![]) };
    let records = changelog.into_iter().take(5).chain([bad]);
    assert!(restored.import(0, records).is_err());
    assert_eq!(restored.applied_offset(0).unwrap(), None, "a half restore must not look complete");
}

const CHILD: &str = "SKUFLOW_STORE_CRASH_CHILD";

/// A writer process applies and writes batches until it is killed with SIGKILL at a
/// random moment; the reopened store must hold exactly the state after some whole
/// batch — the one its META names — and never part of the next.
#[test]
fn batch_atomicity_under_kill9() {
    if let Some(dir) = std::env::var_os(CHILD) {
        let store = Store::open(std::path::Path::new(&dir), false).unwrap();
        let machine = Machine::new(config());
        let mut state = PartitionState::new();
        for b in 0.. {
            apply(&machine, &mut state, 0, b * 50, (b + 1) * 50);
            store.write(&store::batch(0, &mut state).unwrap()).unwrap();
            println!("written {b}");
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = Process::new(std::env::current_exe().unwrap())
        .args(["--exact", "store::batch_atomicity_under_kill9", "--nocapture", "--test-threads=1"])
        .env(CHILD, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut written = 0;
    for line in lines {
        if line.unwrap().starts_with("written") {
            written += 1;
            if written == 60 {
                break;
            }
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(written, 60, "the writer stopped early");

    let store = Store::open(dir.path(), false).unwrap();
    let applied = store.applied_offset(0).unwrap().expect("some batch was written");
    assert!(applied >= 60 * 50 - 1, "a written batch was lost: applied {applied}");
    assert_eq!((applied + 1) % 50, 0, "META must name the end of a whole batch");
    let mut expected = PartitionState::new();
    apply(&Machine::new(config()), &mut expected, 0, 0, applied + 1);
    assert_eq!(store.load(0).unwrap().snapshot(), expected.snapshot());
}

/// An import cut short leaves entities without META: the store says so, and a complete
/// partition or an empty one is never called incomplete.
#[test]
fn entities_without_meta_are_an_incomplete_import() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), false).unwrap();
    let mut p1 = PartitionState::new();
    run_batches(&store, &mut p1, 1, 5, 20);
    assert!(!store.is_incomplete(1).unwrap(), "a whole partition");
    assert!(!store.is_incomplete(2).unwrap(), "an empty partition");
    let nothing = store::values::Meta { log_time: LogTime(0), applied: None };
    store.set_checkpoint(2, store::values::Checkpoint::now(-2, nothing)).unwrap();
    assert!(!store.is_incomplete(2).unwrap(), "a checkpoint alone is no import cut short");
    // What an interrupted import writes: the entities, not META (written last).
    let entities: Vec<Change> = store
        .export(1)
        .unwrap()
        .into_iter()
        .filter(|c| c.key != store::keys::encode(&store::keys::Key::Meta))
        .collect();
    let other = tempfile::tempdir().unwrap();
    let cut = Store::open(other.path(), false).unwrap();
    cut.write(&store::Batch { partition: 1, changes: entities }).unwrap();
    assert_eq!(cut.applied_offset(1).unwrap(), None);
    assert!(cut.is_incomplete(1).unwrap());
    cut.import(1, store.export(1).unwrap()).unwrap();
    assert!(!cut.is_incomplete(1).unwrap(), "imported again, whole");
}

/// A store that knows where its META sits in the changelog (its checkpoint) catches up by
/// importing only the records after it, onto the state it keeps, and ends where a whole
/// import ends; an import after the checkpoint cut short leaves the partition incomplete
/// and without a checkpoint, to be imported again from the beginning.
#[test]
fn an_import_after_the_checkpoint_equals_a_whole_import() {
    let dir = tempfile::tempdir().unwrap();
    let here = Store::open(dir.path(), false).unwrap();
    let machine = Machine::new(config());
    let mut live = PartitionState::new();
    // The changelog as a list: a record's offset is its index.
    let mut changelog: Vec<Change> = Vec::new();
    let mut publish = |live: &mut PartitionState, b: i64, store: Option<&Store>| {
        apply(&machine, live, 2, b * 25, (b + 1) * 25);
        let batch = store::batch(2, live).unwrap();
        changelog.extend(batch.changes.iter().cloned());
        if let Some(store) = store {
            store.write_at(&batch, Some(changelog.len() as i64 - 1)).unwrap();
        }
    };
    for b in 0..10 {
        publish(&mut live, b, Some(&here));
    }
    let checkpoint = here.checkpoint(2).unwrap().expect("written with the batch");
    assert_eq!(Some(checkpoint.meta), here.meta(2).unwrap());
    assert!(checkpoint.age().is_some_and(|a| a < std::time::Duration::from_secs(60)));
    // Another owner goes on: 20 batches this store never wrote.
    for b in 10..30 {
        publish(&mut live, b, None);
    }
    let after = checkpoint.offset as usize + 1;
    assert!(changelog[after..].iter().any(|c| c.value.is_none()), "tombstones follow");

    drop(here.begin_import_after(2, checkpoint).unwrap());
    assert!(here.is_incomplete(2).unwrap(), "cut short: no META");
    assert_eq!(here.checkpoint(2).unwrap(), None, "cut short: no checkpoint");
    let mut import = here.begin_import_after(2, checkpoint).unwrap();
    for (offset, c) in changelog.iter().enumerate().skip(after) {
        import.push_at(offset as i64, c.clone()).unwrap();
    }
    assert_eq!(import.finish().unwrap(), (changelog.len() - after) as u64);
    assert_eq!(here.load(2).unwrap().snapshot(), live.snapshot());
    assert_eq!(here.checkpoint(2).unwrap().map(|c| c.offset), Some(changelog.len() as i64 - 1));

    let other = tempfile::tempdir().unwrap();
    let whole = Store::open(other.path(), false).unwrap();
    whole.import(2, changelog).unwrap();
    assert_eq!(here.export(2).unwrap(), whole.export(2).unwrap(), "the checkpoint is not exported");
    assert_eq!(whole.checkpoint(2).unwrap(), None, "offsets unknown: no checkpoint");

    // A batch whose META offset is not known removes the checkpoint.
    apply(&machine, &mut live, 2, 30 * 25, 31 * 25);
    here.write_at(&store::batch(2, &mut live).unwrap(), None).unwrap();
    assert_eq!(here.checkpoint(2).unwrap(), None);
    assert_eq!(here.load(2).unwrap().snapshot(), live.snapshot());
    here.write_at(&store::batch(2, &mut live).unwrap(), Some(7)).unwrap();
    here.drop_partition(2).unwrap();
    assert_eq!(here.checkpoint(2).unwrap(), None, "dropped with the partition");
}
