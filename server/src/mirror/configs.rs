//! Topic configs synced from the source to the mirror topics: on each discovery round (the
//! controller leader's shard 0), the configs the source sets on each mirrored topic
//! (DescribeConfigs, "set on the topic" only), minus the link's `config.sync.exclude`,
//! `mirror.*` and what Keel does not know, become the mirror topic's; one the source no
//! longer sets goes back to this cluster's default. Excluded configs stay this cluster's
//! own; promoted topics are left alone.

use super::definition::Definition;
use super::link::Pattern;
use super::source::CLIENT_ID;
use super::task::Worker;
use crate::config::topic::read_only_mirror;
use keel_kafka::source_configs::{self as wire, SourceConfig, DYNAMIC_TOPIC_CONFIG};
use std::collections::BTreeMap;

/// Whether a config is the link's to sync (not excluded, not a mirror's own).
fn synced_key(key: &str, exclude: &[Pattern]) -> bool {
    !key.starts_with("mirror.") && !exclude.iter().any(|p| p.matches(key))
}

/// The configs a mirror takes from the source's answer: those set on the source topic,
/// not excluded, that this cluster accepts (`known`: the key and value alone are valid).
pub fn wanted(
    source: &[SourceConfig],
    exclude: &[Pattern],
    known: impl Fn(&str, &str) -> bool,
) -> BTreeMap<String, String> {
    source
        .iter()
        .filter(|c| c.source == DYNAMIC_TOPIC_CONFIG && !c.sensitive)
        .filter(|c| synced_key(&c.name, exclude))
        .filter_map(|c| Some((c.name.clone(), c.value.clone()?)))
        .filter(|(key, value)| known(key, value))
        .collect()
}

/// The changes that make a mirror's synced configs `wanted` (an empty value removes a key):
/// what differs, and what it has that the source no longer sets.
pub fn changes(
    current: &BTreeMap<String, String>,
    wanted: &BTreeMap<String, String>,
    exclude: &[Pattern],
) -> BTreeMap<String, String> {
    let mut changes: BTreeMap<String, String> = wanted
        .iter()
        .filter(|(key, value)| current.get(*key) != Some(value))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    for key in current.keys() {
        if synced_key(key, exclude) && !wanted.contains_key(key) {
            changes.insert(key.clone(), String::new());
        }
    }
    changes
}

/// Whether the source's configs say the topic is itself a read-only mirror there (of a
/// third cluster, or of this one on an active/active pair): such a topic is never mirrored
/// again, so records go round no loop.
pub fn mirror_on_source(configs: &[SourceConfig]) -> bool {
    let set: BTreeMap<String, String> = configs
        .iter()
        .filter(|c| c.source == DYNAMIC_TOPIC_CONFIG && c.name.starts_with("mirror."))
        .filter_map(|c| Some((c.name.clone(), c.value.clone()?)))
        .collect();
    read_only_mirror(&set)
}

/// The source's answer for each topic asked (topics it answered with an error left out).
pub type SourceTopicConfigs = BTreeMap<String, Vec<SourceConfig>>;

impl Worker {
    /// The configs the source sets on `topics` (`Err`: no source broker answered).
    pub(super) async fn source_configs(
        &mut self,
        definition: &Definition,
        topics: &[String],
    ) -> Result<SourceTopicConfigs, String> {
        if topics.is_empty() {
            return Ok(SourceTopicConfigs::new());
        }
        let body = self
            .ask_bootstrap(definition, |c| {
                wire::describe_configs_request(c, CLIENT_ID, topics)
            })
            .await?;
        let (_, answers) = wire::describe_configs_response(body)
            .map_err(|e| format!("its configs answer: {e}"))?;
        Ok(answers
            .into_iter()
            .filter(|a| a.error == 0)
            .map(|a| (a.topic, a.configs))
            .collect())
    }

    /// Syncs the configs of the link's read-only mirror topics (`mirrors`: source topic,
    /// mirror topic) from the source's answer.
    pub(super) async fn sync_configs(
        &mut self,
        definition: &Definition,
        mirrors: &[(String, String)],
        source: &SourceTopicConfigs,
    ) {
        let config = self.shard.config.clone();
        let known = |key: &str, value: &str| {
            let one = BTreeMap::from([(key.to_owned(), value.to_owned())]);
            config.topic_log_config(&one).is_ok()
        };
        for (source_topic, mirror) in mirrors {
            let Some(configs) = source.get(source_topic) else {
                continue;
            };
            let Some(current) = self.view.image().topic(mirror).map(|t| t.configs.clone()) else {
                continue;
            };
            if !read_only_mirror(&current) {
                continue;
            }
            let wanted = wanted(configs, &definition.config_sync_exclude, known);
            let changes = changes(&current, &wanted, &definition.config_sync_exclude);
            if changes.is_empty() {
                continue;
            }
            let mut after = current.clone();
            for (key, value) in &changes {
                if value.is_empty() {
                    after.remove(key);
                } else {
                    after.insert(key.clone(), value.clone());
                }
            }
            if let Err(e) = config.topic_log_config(&after) {
                tracing::warn!(link = %self.name, topic = mirror, error = %e, "the source's topic configs do not go together here; not synced");
                continue;
            }
            let shown: Vec<String> = changes.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let result =
                crate::handlers::cluster_admin::alter(&self.shard, mirror.clone(), changes).await;
            tracing::info!(link = %self.name, topic = mirror, changes = ?shown, error = ?result.error, "topic configs synced from the source");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(name: &str, value: &str, source: i8) -> SourceConfig {
        SourceConfig {
            name: name.into(),
            value: Some(value.into()),
            source,
            sensitive: false,
        }
    }

    #[test]
    fn set_configs_are_synced_except_excluded_unknown_and_mirror_ones() {
        let exclude = Pattern::parse_list("min.insync.replicas,segment.*").unwrap();
        let source = [
            config("retention.ms", "3600000", DYNAMIC_TOPIC_CONFIG),
            config("cleanup.policy", "compact,delete", DYNAMIC_TOPIC_CONFIG),
            config("retention.bytes", "-1", 5),
            config("min.insync.replicas", "2", DYNAMIC_TOPIC_CONFIG),
            config("segment.bytes", "1024", DYNAMIC_TOPIC_CONFIG),
            config("mirror.link", "other", DYNAMIC_TOPIC_CONFIG),
            config("confluent.placement", "x", DYNAMIC_TOPIC_CONFIG),
        ];
        let known = |key: &str, _: &str| key != "confluent.placement";
        let wanted = wanted(&source, &exclude, known);
        assert_eq!(
            wanted,
            BTreeMap::from([
                ("cleanup.policy".into(), "compact,delete".into()),
                ("retention.ms".into(), "3600000".into()),
            ])
        );
        let current = BTreeMap::from([
            ("mirror.link".to_owned(), "east".to_owned()),
            ("retention.ms".to_owned(), "60000".to_owned()),
            ("retention.bytes".to_owned(), "1000".to_owned()),
            ("min.insync.replicas".to_owned(), "3".to_owned()),
        ]);
        assert_eq!(
            changes(&current, &wanted, &exclude),
            BTreeMap::from([
                ("cleanup.policy".into(), "compact,delete".into()),
                ("retention.ms".into(), "3600000".into()),
                // No longer set on the source: back to the default.
                ("retention.bytes".into(), String::new()),
            ]),
            "mirror.* and excluded keys stay"
        );
        let mirroring = [
            config("mirror.link", "west", DYNAMIC_TOPIC_CONFIG),
            config("mirror.state", "mirroring", DYNAMIC_TOPIC_CONFIG),
        ];
        assert!(mirror_on_source(&mirroring), "a read-only mirror there");
        let promoted = [
            config("mirror.link", "west", DYNAMIC_TOPIC_CONFIG),
            config("mirror.state", "promoted", DYNAMIC_TOPIC_CONFIG),
        ];
        assert!(
            !mirror_on_source(&promoted),
            "an ordinary topic once promoted"
        );
        let mut synced = current.clone();
        synced.extend(wanted.clone());
        synced.remove("retention.bytes");
        assert!(changes(&synced, &wanted, &exclude).is_empty());
    }
}
