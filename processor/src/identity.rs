//! The transactional ids of one processor instance's producers.
//!
//! Every producer gets a fresh id, `<group>-<instance>-<nonce>`, and no id is used again
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
//! are theirs to manage.

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
}

#[derive(Debug)]
pub struct Identity {
    /// `<group>-<instance>`: the prefix of every id of this instance.
    base: String,
    file: PathBuf,
    current: String,
    fenced: BTreeSet<String>,
}

impl Identity {
    /// Fence what the data directory remembers (and the bare id of older versions).
    pub fn open(config: &ProcessorConfig) -> Result<Self, OutputError> {
        let base = config.transactional_id();
        let file = config.data_dir.join("transactional-ids");
        let mut me = Self { base, file, current: String::new(), fenced: BTreeSet::new() };
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

    /// Fence every id of this instance among `ids` that is not the current one and was
    /// not fenced before. Returns how many were fenced now.
    pub fn fence_all<'a>(
        &mut self,
        config: &ProcessorConfig,
        ids: impl Iterator<Item = &'a str>,
    ) -> Result<usize, KafkaError> {
        let mut n = 0;
        for id in ids {
            if !self.is_ours(id) || id == self.current || self.fenced.contains(id) {
                continue;
            }
            fence(config, id)?;
            self.fenced.insert(id.to_owned());
            n += 1;
        }
        Ok(n)
    }

    fn is_ours(&self, id: &str) -> bool {
        id == self.base
            || id
                .strip_prefix(&self.base)
                .and_then(|rest| rest.strip_prefix('-'))
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_hexdigit()))
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
        let next = format!("{}-{}", self.base, nonce());
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
        std::fs::rename(&tmp, &self.file).map_err(io)
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

/// Unique per producer: the time in nanoseconds and the process id, in hex.
fn nonce() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{nanos:x}{:x}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_instances_ids_are_ours() {
        let id = Identity {
            base: "g-p-1".into(),
            file: PathBuf::new(),
            current: String::new(),
            fenced: BTreeSet::new(),
        };
        assert!(id.is_ours("g-p-1"));
        assert!(id.is_ours("g-p-1-18a3f0"));
        assert!(!id.is_ours("g-p-10-18a3f0"), "another instance whose name extends ours");
        assert!(!id.is_ours("g-p-1-"));
        assert!(!id.is_ours("g-p-2-18a3f0"));
        assert!(!id.is_ours(""));
    }

    #[test]
    fn nonces_differ() {
        assert_ne!(nonce(), nonce());
    }
}
