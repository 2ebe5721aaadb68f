//! The RocksDB store of one processor: every partition it owns, one key range each
//! (layout in [`keys`]).
//!
//! One applied batch is one atomic `WriteBatch` holding the changed entities *and* the
//! partition's META (log time, last applied offset), so a reopened store always
//! reflects exactly the last complete batch: never half a batch, never state without
//! the offset it belongs to. The same key/value bytes form the changelog records, so a
//! partition can be rebuilt from the compacted changelog topic ([`Store::import`]),
//! exported, or dropped alone.

pub mod keys;
pub mod values;

use std::path::Path;

use rocksdb::{DB, Direction, IteratorMode, Options, WriteBatch, WriteOptions};

use crate::partition::{EntityKey, PartitionState};
use keys::Key;
use values::{BadValue, Meta};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error(transparent)]
    BadKey(#[from] keys::BadKey),
    #[error(transparent)]
    BadValue(#[from] BadValue),
}

/// One store change, without the partition prefix: a changelog record's key and value
/// (`None`: deleted, a tombstone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
}

/// The encoded changes of one applied batch, META last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub partition: i32,
    pub changes: Vec<Change>,
}

/// Encode what changed in `state` since the last batch, followed by its META.
pub fn batch(partition: i32, state: &mut PartitionState) -> Batch {
    let mut changes: Vec<Change> = state
        .take_changes()
        .into_iter()
        .map(|k| {
            let value = entity_value(state, &k);
            Change { key: keys::encode(&Key::Entity(k)), value }
        })
        .collect();
    let meta = Meta { log_time: state.log_time(), applied: state.applied_offset() };
    changes.push(Change { key: keys::encode(&Key::Meta), value: Some(values::meta(&meta)) });
    Batch { partition, changes }
}

fn entity_value(state: &PartitionState, key: &EntityKey) -> Option<Vec<u8>> {
    match key {
        EntityKey::Stock(s, w) => state.stock_level(s, w).map(values::stock),
        EntityKey::Reservation(id) => state.reservation(id).map(values::reservation),
        EntityKey::Dedup(k) => state.dedup(k).map(values::dedup),
        EntityKey::Timer(k) => state.timers().get(k).map(values::timer),
    }
}

#[derive(Debug)]
pub struct Store {
    db: DB,
    sync: bool,
}

impl Store {
    /// Open (creating if missing). `sync`: fsync the WAL on every batch. Without it a
    /// batch survives a process crash but may not survive a machine crash; the
    /// processor then finds the store behind the committed offset and restores.
    pub fn open(path: &Path, sync: bool) -> Result<Self, StoreError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        opts.increase_parallelism(2);
        Ok(Self { db: DB::open(&opts, path)?, sync })
    }

    /// Write one batch atomically.
    pub fn write(&self, batch: &Batch) -> Result<(), StoreError> {
        let mut wb = WriteBatch::default();
        let prefix = keys::partition_prefix(batch.partition);
        let mut key = Vec::with_capacity(64);
        for c in &batch.changes {
            key.clear();
            key.extend_from_slice(&prefix);
            key.extend_from_slice(&c.key);
            match &c.value {
                Some(v) => wb.put(&key, v),
                None => wb.delete(&key),
            }
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(self.sync);
        self.db.write_opt(wb, &wo)?;
        Ok(())
    }

    /// The last applied offset of `partition`, `None` if it has none.
    pub fn applied_offset(&self, partition: i32) -> Result<Option<i64>, StoreError> {
        match self.db.get(keys::encode_in(partition, &Key::Meta))? {
            Some(v) => Ok(values::meta_from(&v)?.applied),
            None => Ok(None),
        }
    }

    /// True when `partition` holds entities but no META: an import was cut short (META is
    /// written last), so what is there is not a state and must be imported again.
    pub fn is_incomplete(&self, partition: i32) -> Result<bool, StoreError> {
        if self.applied_offset(partition)?.is_some() {
            return Ok(false);
        }
        let prefix = keys::partition_prefix(partition);
        let mut it = self.db.iterator(IteratorMode::From(&prefix, Direction::Forward));
        match it.next() {
            Some(item) => Ok(item?.0.starts_with(&prefix)),
            None => Ok(false),
        }
    }

    /// Every key/value of `partition`, keys without the prefix, in key order.
    pub fn export(&self, partition: i32) -> Result<Vec<Change>, StoreError> {
        let prefix = keys::partition_prefix(partition);
        let mut out = Vec::new();
        for item in self.db.iterator(IteratorMode::From(&prefix, Direction::Forward)) {
            let (k, v) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            out.push(Change { key: k[prefix.len()..].to_vec(), value: Some(v.to_vec()) });
        }
        Ok(out)
    }

    /// The partition's state as the machine needs it.
    pub fn load(&self, partition: i32) -> Result<PartitionState, StoreError> {
        let mut state = PartitionState::new();
        for c in self.export(partition)? {
            let v = c.value.unwrap_or_default();
            match keys::decode(&c.key)? {
                Key::Meta => {
                    let m = values::meta_from(&v)?;
                    state.load_meta(m.log_time, m.applied);
                }
                Key::Entity(EntityKey::Stock(s, w)) => {
                    state.load_stock(s, w, values::stock_from(&v)?)
                }
                Key::Entity(EntityKey::Reservation(_)) => {
                    state.load_reservation(values::reservation_from(&v)?)
                }
                Key::Entity(EntityKey::Dedup(k)) => state.load_dedup(k, values::dedup_from(&v)?),
                Key::Entity(EntityKey::Timer(k)) => state.load_timer(k, values::timer_from(&v)?),
            }
        }
        Ok(state)
    }

    /// Remove everything of `partition`.
    pub fn drop_partition(&self, partition: i32) -> Result<(), StoreError> {
        let from = keys::partition_prefix(partition);
        let to = ((partition as u32) + 1).to_be_bytes();
        let mut wb = WriteBatch::default();
        wb.delete_range(from, to);
        self.db.write(wb)?;
        Ok(())
    }

    /// Rebuild `partition` from changelog records read in log order (later records win,
    /// tombstones delete). The partition is dropped first and META is written last, so
    /// a restore cut short leaves no META and is simply restarted.
    pub fn import(
        &self,
        partition: i32,
        records: impl IntoIterator<Item = Change>,
    ) -> Result<u64, StoreError> {
        const CHUNK: usize = 10_000;
        self.drop_partition(partition)?;
        let meta_key = keys::encode(&Key::Meta);
        let (mut meta, mut chunk, mut count) = (None, Vec::with_capacity(CHUNK), 0u64);
        for change in records {
            count += 1;
            keys::decode(&change.key)?;
            if change.key == meta_key {
                meta = Some(change);
                continue;
            }
            chunk.push(change);
            if chunk.len() == CHUNK {
                self.write(&Batch { partition, changes: std::mem::take(&mut chunk) })?;
            }
        }
        chunk.extend(meta);
        self.write(&Batch { partition, changes: chunk })?;
        Ok(count)
    }
}
