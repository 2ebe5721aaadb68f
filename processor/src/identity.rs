//! The transactional ids of one processor instance's producers.
//!
//! Every producer gets a fresh id, `<group>-<instance>-<incarnation>-<n>`, and no id is used again
//! once one of its transactions was aborted or its producer replaced: a fresh id means a
//! fresh producer id at the broker, so committed records never follow an aborted
//! transaction of the same producer id (the dev broker mis-serves that, BROKERS.md).
//!
//! Fencing still ends every earlier producer of the instance before a new one works:
//! initialising a producer under an id bumps that id's epoch, which fences whoever used it
//! and aborts the transaction it left open. The earlier ids are found in
//! - the data directory's `transactional-ids` file, written (and synced) before a new id
//!   is first used, so even a producer that crashed before its first commit is found;
//! - the metadata of the group's committed offsets, which every transaction writes (see
//!   `Outputs::publish`), so a successor on a fresh disk (a rescheduled pod) finds the
//!   producer of a frozen predecessor;
//! - the bare `<group>-<instance>` id that earlier versions of skuflow used.
//!
//! Only ids of this instance (its prefix) are ever fenced: other instances' producers
//! are theirs to manage. The incarnation (start time in nanoseconds, then the process id,
//! fixed-width hex, so that text order is time order) says which of two live processes
//! of one instance is the newer: ids of older incarnations are fenced; an id of a newer
//! one means this process is the zombie, and it stops ([`OutputError::Superseded`])
//! instead of fencing the newer one.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;

use rdkafka::error::KafkaError;

use crate::config::{Delivery, ProcessorConfig};
use crate::output::{OutputProducer, create_producer};

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("transactional ids file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// A newer incarnation of this instance committed under `id`: this one is a zombie.
    #[error("a newer incarnation of this instance is working (transactional id {id})")]
    Superseded { id: String },
}

#[derive(Debug)]
pub struct Identity {
    /// `<group>-<instance>`: the prefix of every id of this instance.
    base: String,
    /// This process's incarnation: fixed-width hex of start time and process id.
    incarnation: String,
    /// Producers made so far in this incarnation.
    made: u64,
    file: PathBuf,
    current: String,
    fenced: BTreeSet<String>,
}

impl Identity {
    /// Fence what the data directory remembers (and the bare id of older versions).
    pub fn open(config: &ProcessorConfig) -> Result<Self, OutputError> {
        let base = config.transactional_id();
        let file = config.data_dir.join("transactional-ids");
        let mut me = Self {
            base,
            incarnation: incarnation(),
            made: 0,
            file,
            current: String::new(),
            fenced: BTreeSet::new(),
        };
        if config.delivery == Delivery::AtLeastOnce {
            return Ok(me);
        }
        let known = match std::fs::read_to_string(&me.file) {
            Ok(text) => text.lines().map(str::to_owned).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => return Err(OutputError::Io { path: me.file.clone(), source }),
        };
        let base = me.base.clone();
        me.fence_all(
            config,
            std::iter::once(base.as_str()).chain(known.iter().map(String::as_str)),
        )?;
        Ok(me)
    }

    pub fn current(&self) -> &str {
        &self.current
    }

    /// Fence every id of this instance among `ids` from this or an older incarnation that
    /// is not the current one and was not fenced before; returns how many were fenced
    /// now. An id of a newer incarnation is [`OutputError::Superseded`].
    pub fn fence_all<'a>(
        &mut self,
        config: &ProcessorConfig,
        ids: impl Iterator<Item = &'a str>,
    ) -> Result<usize, OutputError> {
        let mut n = 0;
        for id in ids {
            let Some(stamp) = self.incarnation_of(id) else { continue };
            if stamp > self.incarnation.as_str() {
                return Err(OutputError::Superseded { id: id.to_owned() });
            }
            if id == self.current || self.fenced.contains(id) {
                continue;
            }
            fence(config, id)?;
            self.fenced.insert(id.to_owned());
            n += 1;
        }
        Ok(n)
    }

    /// The incarnation an id of this instance was made in (`""` for older id forms, which
    /// count as the oldest); `None` for another instance's id.
    fn incarnation_of<'a>(&self, id: &'a str) -> Option<&'a str> {
        if id == self.base {
            return Some("");
        }
        let rest = id.strip_prefix(&self.base)?.strip_prefix('-')?;
        let hex = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
        match rest.split_once('-') {
            Some((inc, n))
                if inc.len() == INCARNATION_LEN
                    && hex(inc)
                    && !n.is_empty()
                    && n.bytes().all(|b| b.is_ascii_digit()) =>
            {
                Some(inc)
            }
            None if hex(rest) => Some(""),
            _ => None,
        }
    }

    /// A producer under a fresh id. The current one, if any, is fenced first (which
    /// completes or aborts whatever it left open); the new id is on disk before it is used.
    pub fn fresh_producer(
        &mut self,
        config: &ProcessorConfig,
    ) -> Result<OutputProducer, OutputError> {
        if config.delivery == Delivery::AtLeastOnce {
            return Ok(create_producer(config, "")?);
        }
        self.made += 1;
        let next = format!("{}-{}-{}", self.base, self.incarnation, self.made);
        let previous = std::mem::take(&mut self.current);
        self.remember(&[previous.as_str(), next.as_str()])?;
        if !previous.is_empty() {
            fence(config, &previous)?;
            self.fenced.insert(previous);
        }
        let producer = create_producer(config, &next)?;
        self.current = next;
        self.remember(&[self.current.as_str()])?;
        tracing::info!(transactional_id = %self.current, "producer ready");
        Ok(producer)
    }

    /// Replace the file with `ids` (empty ones skipped), synced.
    fn remember(&self, ids: &[&str]) -> Result<(), OutputError> {
        let io = |source| OutputError::Io { path: self.file.clone(), source };
        let tmp = self.file.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        for id in ids.iter().filter(|id| !id.is_empty()) {
            writeln!(f, "{id}").map_err(io)?;
        }
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &self.file).map_err(io)?;
        // The rename itself is durable only once the directory is synced.
        let dir = self.file.parent().unwrap_or(std::path::Path::new("."));
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)
    }
}

/// Initialise (and drop) a producer under `id`: whoever used it is fenced and its open
/// transaction aborted.
fn fence(config: &ProcessorConfig, id: &str) -> Result<(), KafkaError> {
    // Initialised (which is the fencing) inside; dropped here.
    drop(create_producer(config, id)?);
    tracing::info!(transactional_id = %id, "fenced an earlier producer of this instance");
    Ok(())
}

/// Length of an incarnation stamp: 16 hex digits of nanoseconds, 8 of the process id.
const INCARNATION_LEN: usize = 24;

/// This process's incarnation stamp: start time in nanoseconds and process id, fixed-width
/// hex, so that a later start sorts after an earlier one.
fn incarnation() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    format!("{nanos:016x}{:08x}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(incarnation: &str) -> Identity {
        Identity {
            base: "g-p-1".into(),
            incarnation: incarnation.into(),
            made: 0,
            file: PathBuf::new(),
            current: String::new(),
            fenced: BTreeSet::new(),
        }
    }

    #[test]
    fn only_this_instances_ids_are_ours_with_their_incarnation() {
        let me = identity(&incarnation());
        let inc = "0000018a3f0000000000abcd";
        assert_eq!(me.incarnation_of("g-p-1"), Some(""), "the legacy bare id");
        assert_eq!(me.incarnation_of("g-p-1-18a3f0"), Some(""), "the earlier nonce form");
        assert_eq!(me.incarnation_of(&format!("g-p-1-{inc}-3")), Some(inc));
        assert_eq!(me.incarnation_of(&format!("g-p-10-{inc}-3")), None, "another instance");
        assert_eq!(me.incarnation_of("g-p-1-"), None);
        assert_eq!(me.incarnation_of(&format!("g-p-2-{inc}-1")), None);
        assert_eq!(me.incarnation_of(""), None);
    }

    #[test]
    fn an_id_of_a_newer_incarnation_means_this_one_is_the_zombie() {
        let mut old = identity("000000000000000100000001");
        let config = ProcessorConfig::new("127.0.0.1:1", "p-1", "/nonexistent");
        let newer = format!("{}-000000000000000200000001-1", config.transactional_id());
        old.base = config.transactional_id();
        assert!(matches!(
            old.fence_all(&config, std::iter::once(newer.as_str())),
            Err(OutputError::Superseded { .. })
        ));
        // Another instance's ids and its own current id are left alone.
        old.current = format!("{}-000000000000000100000001-1", old.base);
        let current = old.current.clone();
        assert_eq!(old.fence_all(&config, ["g-p-2", current.as_str()].into_iter()).unwrap(), 0);
    }

    #[test]
    fn incarnations_sort_by_start() {
        let a = incarnation();
        let b = incarnation();
        assert_eq!(a.len(), INCARNATION_LEN);
        assert!(a <= b);
    }
}
