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
mod prefetch;
pub mod values;

pub use prefetch::Needs;

use std::path::Path;

use rocksdb::{
    BlockBasedIndexType, BlockBasedOptions, Cache, DB, Direction, IteratorMode, Options,
    WriteBatch, WriteOptions,
};

use crate::partition::{EntityKey, PartitionState};
use keys::Key;
use values::{BadValue, Checkpoint, Meta};

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
pub fn batch(partition: i32, state: &mut PartitionState) -> Result<Batch, BadValue> {
    let mut changes = Vec::new();
    for k in state.take_changes() {
        let value = entity_value(state, &k)?;
        changes.push(Change { key: keys::encode(&Key::Entity(k)), value });
    }
    let meta = Meta { log_time: state.log_time(), applied: state.applied_offset() };
    changes.push(Change { key: keys::encode(&Key::Meta), value: Some(values::meta(&meta)) });
    Ok(Batch { partition, changes })
}

fn entity_value(state: &PartitionState, key: &EntityKey) -> Result<Option<Vec<u8>>, BadValue> {
    Ok(match key {
        EntityKey::Stock(s, w) => state.stock_level(s, w).map(values::stock),
        EntityKey::Reservation(id) => state.reservation(id).map(values::reservation).transpose()?,
        EntityKey::Dedup(k) => state.dedup(k).map(values::dedup).transpose()?,
        EntityKey::Timer(k) => state.timer(k).map(values::timer).transpose()?,
    })
}

/// The store's memory by where it is, in bytes ([`Store::memory`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreMemory {
    pub block_cache: u64,
    pub memtables: u64,
    pub table_readers: u64,
}

/// This process's resident memory, in MiB, from `/proc/self/status`: now (`VmRSS`) and
/// at its peak (`VmHWM`); 0 where the system does not say. For the benchmarks and
/// `skuflow bench`, which report what a store of a given size costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProcessMemory {
    pub rss_mib: u64,
    pub peak_mib: u64,
}

pub fn process_memory() -> ProcessMemory {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb / 1024)
    };
    ProcessMemory { rss_mib: field("VmRSS:"), peak_mib: field("VmHWM:") }
}

/// The default block cache: hot rows a read away, and a bounded part of the memory.
pub const DEFAULT_BLOCK_CACHE_BYTES: usize = 64 << 20;
/// Size of one memtable; at most two exist, so writes hold at most 64 MiB.
const WRITE_BUFFER_BYTES: usize = 32 << 20;

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
        Self::open_with(path, sync, DEFAULT_BLOCK_CACHE_BYTES)
    }

    /// [`Store::open`] with a block cache of `block_cache_bytes` (index and filter blocks
    /// included, so the store's memory is this plus its write buffers, whatever it holds).
    /// Whole-key Bloom filters make the common lookup, an idempotency key never seen,
    /// cost no disk read.
    pub fn open_with(
        path: &Path,
        sync: bool,
        block_cache_bytes: usize,
    ) -> Result<Self, StoreError> {
        // Index and filters are partitioned and live in the block cache: with hundreds of
        // millions of keys they would otherwise be held in memory whole, outside any bound.
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&Cache::new_lru_cache(block_cache_bytes));
        table.set_bloom_filter(10.0, false);
        table.set_index_type(BlockBasedIndexType::TwoLevelIndexSearch);
        table.set_partition_filters(true);
        table.set_metadata_block_size(4096);
        table.set_cache_index_and_filter_blocks(true);
        table.set_pin_top_level_index_and_filter(true);
        table.set_pin_l0_filter_and_index_blocks_in_cache(true);
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        opts.increase_parallelism(2);
        opts.set_block_based_table_factory(&table);
        opts.set_write_buffer_size(WRITE_BUFFER_BYTES);
        // A Bloom filter on the memtable too: a new idempotency key is not searched for in
        // the skiplist.
        opts.set_memtable_whole_key_filtering(true);
        opts.set_memtable_prefix_bloom_ratio(0.05);
        opts.set_max_write_buffer_number(2);
        Ok(Self { db: DB::open(&opts, path)?, sync })
    }

    /// Write one batch atomically.
    pub fn write(&self, batch: &Batch) -> Result<(), StoreError> {
        self.write_batch(batch, WriteBatch::default())
    }

    /// Write one applied batch atomically with the partition's checkpoint: the changelog
    /// offset its META record got (`None`: not known, and the old checkpoint is removed
    /// with the batch, since it no longer describes the state).
    pub fn write_at(&self, batch: &Batch, meta_offset: Option<i64>) -> Result<(), StoreError> {
        let mut wb = WriteBatch::default();
        let key = keys::checkpoint_in(batch.partition);
        match (meta_offset, batch.changes.last()) {
            (Some(offset), Some(Change { key: k, value: Some(v) })) if keys::is_meta(k) => {
                let meta = values::meta_from(v)?;
                wb.put(&key, values::checkpoint(&Checkpoint::now(offset, meta)));
            }
            _ => wb.delete(&key),
        }
        self.write_batch(batch, wb)
    }

    fn write_batch(&self, batch: &Batch, mut wb: WriteBatch) -> Result<(), StoreError> {
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
        Ok(self.meta(partition)?.and_then(|m| m.applied))
    }

    /// Where `partition` stands, `None` if it has no META.
    pub fn meta(&self, partition: i32) -> Result<Option<Meta>, StoreError> {
        match self.db.get(keys::encode_in(partition, &Key::Meta))? {
            Some(v) => Ok(Some(values::meta_from(&v)?)),
            None => Ok(None),
        }
    }

    /// Where `partition`'s META sits in the changelog, if the store knows.
    pub fn checkpoint(&self, partition: i32) -> Result<Option<Checkpoint>, StoreError> {
        match self.db.get(keys::checkpoint_in(partition))? {
            Some(v) => Ok(Some(values::checkpoint_from(&v)?)),
            None => Ok(None),
        }
    }

    /// Note `checkpoint` as where `partition` stands in the changelog.
    pub fn set_checkpoint(&self, partition: i32, checkpoint: Checkpoint) -> Result<(), StoreError> {
        Ok(self.db.put(keys::checkpoint_in(partition), values::checkpoint(&checkpoint))?)
    }

    /// Forget where `partition`'s META sits in the changelog: its next restore reads the
    /// whole changelog partition.
    pub fn forget_checkpoint(&self, partition: i32) -> Result<(), StoreError> {
        Ok(self.db.delete(keys::checkpoint_in(partition))?)
    }

    /// An empty view of `partition` at its META, for [`Store::prefetch`] to fill batch by
    /// batch. Memory does not depend on how much the partition holds.
    pub fn view(&self, partition: i32) -> Result<PartitionState, StoreError> {
        Ok(match self.meta(partition)? {
            Some(m) => PartitionState::view(m.log_time, m.applied),
            None => PartitionState::new(),
        })
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
            // The checkpoint's kind sorts last: found first, it is all there is.
            Some(item) => {
                let key = item?.0;
                Ok(key.starts_with(&prefix) && !keys::is_checkpoint(&key))
            }
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
            if keys::is_checkpoint(&k) {
                continue;
            }
            out.push(Change { key: k[prefix.len()..].to_vec(), value: Some(v.to_vec()) });
        }
        Ok(out)
    }

    /// The partition's whole state, in memory: for audits and tests of small logs (the
    /// processor works on a [`Store::view`]).
    pub fn load(&self, partition: i32) -> Result<PartitionState, StoreError> {
        let mut state = PartitionState::new();
        for c in self.export(partition)? {
            let v = c.value.unwrap_or_default();
            match keys::decode(&c.key)? {
                Key::Meta => state.load_meta(values::meta_from(&v)?),
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

    /// RocksDB's estimate of the keys it holds (all partitions): the live rows, which is
    /// what the compacted changelog converges to.
    pub fn estimate_keys(&self) -> Result<u64, StoreError> {
        self.property("rocksdb.estimate-num-keys")
    }

    /// Where the store's memory is, in bytes: block cache in use (data, index and filter
    /// blocks), memtables, and table readers outside the cache.
    pub fn memory(&self) -> Result<StoreMemory, StoreError> {
        Ok(StoreMemory {
            block_cache: self.property("rocksdb.block-cache-usage")?,
            memtables: self.property("rocksdb.cur-size-all-mem-tables")?,
            table_readers: self.property("rocksdb.estimate-table-readers-mem")?,
        })
    }

    fn property(&self, name: &str) -> Result<u64, StoreError> {
        Ok(self.db.property_int_value(name)?.unwrap_or(0))
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
        let mut import = self.begin_import(partition)?;
        for change in records {
            import.push(change)?;
        }
        import.finish()
    }

    /// Start rebuilding `partition` record by record ([`Import::push`]), in chunks of
    /// bounded size: memory does not depend on the changelog's length.
    pub fn begin_import(&self, partition: i32) -> Result<Import<'_>, StoreError> {
        self.drop_partition(partition)?;
        Ok(Import::new(self, partition, None))
    }

    /// Start bringing `partition` up to date with the changelog records that follow its
    /// `checkpoint` (which the caller found unchanged in the changelog). The state is
    /// kept; its META and the checkpoint are removed (one write), so an import cut short
    /// leaves the partition incomplete ([`Store::is_incomplete`]) and it is imported
    /// again from the beginning: the records this one wrote may be gone from the
    /// changelog by then (a broker that lost them), and must not stay in the state.
    pub fn begin_import_after(
        &self,
        partition: i32,
        checkpoint: Checkpoint,
    ) -> Result<Import<'_>, StoreError> {
        let mut wb = WriteBatch::default();
        wb.delete(keys::encode_in(partition, &Key::Meta));
        wb.delete(keys::checkpoint_in(partition));
        self.db.write(wb)?;
        Ok(Import::new(self, partition, Some(checkpoint)))
    }
}

/// Records written to the store in one WriteBatch during an import.
const IMPORT_CHUNK: usize = 10_000;

/// An import in progress ([`Store::begin_import`]): holds at most one chunk of records
/// and the latest META, with its changelog offset when known.
#[derive(Debug)]
pub struct Import<'a> {
    store: &'a Store,
    partition: i32,
    meta_key: Vec<u8>,
    meta: Option<Change>,
    meta_offset: Option<i64>,
    chunk: Vec<Change>,
    records: u64,
}

impl<'a> Import<'a> {
    fn new(store: &'a Store, partition: i32, from: Option<Checkpoint>) -> Self {
        let meta_key = keys::encode(&Key::Meta);
        Import {
            store,
            partition,
            meta: from
                .map(|c| Change { key: meta_key.clone(), value: Some(values::meta(&c.meta)) }),
            meta_offset: from.map(|c| c.offset),
            meta_key,
            chunk: Vec::with_capacity(IMPORT_CHUNK),
            records: 0,
        }
    }

    /// Add the next changelog record, found at `offset` of the changelog partition:
    /// the import then ends with a checkpoint at its last META.
    pub fn push_at(&mut self, offset: i64, change: Change) -> Result<(), StoreError> {
        let is_meta = change.key == self.meta_key;
        self.push(change)?;
        if is_meta {
            self.meta_offset = Some(offset);
        }
        Ok(())
    }

    /// Add the next changelog record (checked: an undecodable key stops the import).
    /// Its offset is not known, so the import ends without a checkpoint.
    pub fn push(&mut self, change: Change) -> Result<(), StoreError> {
        self.records += 1;
        keys::decode(&change.key)?;
        if change.key == self.meta_key {
            self.meta = Some(change);
            self.meta_offset = None;
            return Ok(());
        }
        self.chunk.push(change);
        if self.chunk.len() == IMPORT_CHUNK {
            let changes = std::mem::replace(&mut self.chunk, Vec::with_capacity(IMPORT_CHUNK));
            self.store.write(&Batch { partition: self.partition, changes })?;
        }
        Ok(())
    }

    /// Records pushed so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Write the last chunk with META (and the checkpoint, when its offset is known):
    /// the partition is a state again. Returns the number of records imported.
    pub fn finish(mut self) -> Result<u64, StoreError> {
        let mut changes = std::mem::take(&mut self.chunk);
        let offset = self.meta_offset;
        changes.extend(self.meta.take());
        self.store.write_at(&Batch { partition: self.partition, changes }, offset)?;
        Ok(self.records)
    }
}
