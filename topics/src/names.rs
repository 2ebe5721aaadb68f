//! Topic names, partition counts and topic-level configs, in one place.

/// The topics skuflow uses; names are `{prefix}.{suffix}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    /// Client commands and ticks, keyed by SKU. The source of truth.
    Commands,
    /// One reply per request, keyed by tenant and command id.
    Replies,
    /// Domain events for other services, keyed by SKU.
    Events,
    /// The processor's store changes, compacted; a partition is rebuilt from it.
    Changelog,
    /// Latest availability per SKU, compacted; feeds the API's read model.
    Availability,
    /// Records that could not be decoded or applied, with the reason in headers.
    DeadLetter,
}

impl Topic {
    pub const ALL: [Topic; 6] = [
        Topic::Commands,
        Topic::Replies,
        Topic::Events,
        Topic::Changelog,
        Topic::Availability,
        Topic::DeadLetter,
    ];

    pub fn suffix(self) -> &'static str {
        match self {
            Topic::Commands => "commands",
            Topic::Replies => "replies",
            Topic::Events => "events",
            Topic::Changelog => "changelog",
            Topic::Availability => "availability",
            Topic::DeadLetter => "deadletter",
        }
    }

    /// Topic-level configs skuflow creates the topic with.
    pub fn configs(self) -> &'static [(&'static str, &'static str)] {
        const WEEK: &str = "604800000";
        match self {
            // Log time must not depend on producers' clocks: the broker stamps records.
            Topic::Commands => {
                &[("retention.ms", WEEK), ("message.timestamp.type", "LogAppendTime")]
            }
            Topic::Replies => &[("retention.ms", "86400000")],
            Topic::Events => &[("retention.ms", WEEK)],
            // Compaction only cleans closed segments: 128 MiB segments (Kafka's default is
            // 1 GiB) keep a changelog partition near its live rows, so a restore reads
            // about what the store holds, not its history. Tombstones are kept 24 h (Kafka's
            // default, stated): a restore from a store's checkpoint (up to 12 h old) reads
            // every tombstone written after it.
            Topic::Changelog => &[
                ("cleanup.policy", "compact"),
                ("segment.bytes", "134217728"),
                ("delete.retention.ms", "86400000"),
            ],
            Topic::Availability => &[("cleanup.policy", "compact"), ("segment.bytes", "134217728")],
            Topic::DeadLetter => &[("retention.ms", "2592000000")],
        }
    }

    /// Changelog and availability partitions mirror the commands partitions one to one,
    /// so a processor restores partition p from changelog partition p.
    pub fn mirrors_commands(self) -> bool {
        matches!(self, Topic::Commands | Topic::Changelog | Topic::Availability)
    }
}

/// One topic as it should exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicLayout {
    pub name: String,
    pub partitions: i32,
    pub configs: &'static [(&'static str, &'static str)],
}

/// Topic names for one deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    pub prefix: String,
}

impl Default for Topics {
    fn default() -> Self {
        Self { prefix: "skuflow".to_owned() }
    }
}

impl Topics {
    pub fn name(&self, topic: Topic) -> String {
        format!("{}.{}", self.prefix, topic.suffix())
    }

    /// Every topic with its name, partition count and configs, for creation. All topics
    /// get the commands topic's partition count: changelog and availability must mirror
    /// it, and replies and events are spread the same way.
    pub fn layout(&self, partitions: i32) -> Vec<TopicLayout> {
        Topic::ALL
            .iter()
            .map(|t| TopicLayout { name: self.name(*t), partitions, configs: t.configs() })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_names_every_topic_with_its_configs() {
        let layout = Topics { prefix: "shop".into() }.layout(6);
        assert_eq!(layout.len(), Topic::ALL.len());
        assert!(layout.iter().all(|t| t.partitions == 6));
        let configs =
            |name: &str| layout.iter().find(|t| t.name == name).map(|t| t.configs).unwrap();
        assert!(configs("shop.commands").contains(&("message.timestamp.type", "LogAppendTime")));
        assert!(configs("shop.changelog").contains(&("cleanup.policy", "compact")));
        assert!(configs("shop.changelog").contains(&("delete.retention.ms", "86400000")));
        assert!(configs("shop.availability").contains(&("cleanup.policy", "compact")));
    }
}
