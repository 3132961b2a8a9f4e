//! A cluster link's definition, no I/O: where the source is and how to reach it, what the
//! link selects, whether it is paused, and its byte-rate throttle. Kept as text (one
//! `key=value` per line) in the destination's metadata log, so every broker reads the same
//! link; [`Definition::parse`] checks everything a link's text may hold, whoever wrote it.

use super::link::{Pattern, Selection};
use std::collections::BTreeMap;

/// Longest link name.
pub const LINK_NAME_BYTES_MAX: usize = 249;
/// Most source bootstrap addresses.
pub const SOURCES_MAX: usize = 16;
/// The source settings a link accepts (Kafka's client property names).
pub const SOURCE_PROPERTIES: [&str; 7] = [
    "security.protocol",
    "sasl.mechanism",
    "sasl.username",
    "sasl.password",
    "ssl.ca.location",
    "ssl.certificate.location",
    "ssl.key.location",
];
/// How often group offsets are synced, unless the link says.
pub const GROUP_SYNC_INTERVAL_MS_DEFAULT: u64 = 5_000;
/// Source topic configs not synced to mirrors unless the link says otherwise: the
/// destination's own durability and replication choices (MirrorMaker 2's default list, and
/// Keel's `fsync`).
pub const CONFIG_SYNC_EXCLUDE_DEFAULT: &str = "min.insync.replicas,unclean.leader.election.enable,\
    fsync,replica.lag.time.max.ms,reassignment.throttle.bytes.per.sec,\
    follower.replication.throttled.replicas,leader.replication.throttled.replicas";

/// A cluster link.
#[derive(Debug, Clone)]
pub struct Definition {
    /// Bootstrap addresses of the source cluster (`HOST:PORT`).
    pub sources: Vec<String>,
    /// The source's security settings (Kafka client property names).
    pub source_config: BTreeMap<String, String>,
    /// What it mirrors, and under which names.
    pub selection: Selection,
    /// Stopped by `keel link pause`.
    pub paused: bool,
    /// Most bytes per second the link fetches on each broker (0: unlimited).
    pub throttle_bytes_per_second: u64,
    /// How often group offsets are synced.
    pub group_sync_interval_ms: u64,
    /// Source topic configs not synced to the mirror topics (`mirror.*` never are).
    pub config_sync_exclude: Vec<Pattern>,
    /// A failback link: topics the destination already has (the promoted cluster's old
    /// mirrors' sources) become its mirrors, each truncated where its history parts from
    /// the source's.
    pub failback: bool,
    /// The definition's text, as [`Definition::parse`] read it.
    text: String,
}

impl Definition {
    /// Reads a definition's text.
    ///
    /// # Errors
    /// An unknown key, a bad value, a missing source or topic list, naming the problem.
    pub fn parse(text: &str) -> Result<Definition, String> {
        let mut definition = Definition {
            sources: Vec::new(),
            source_config: BTreeMap::new(),
            selection: Selection::default(),
            paused: false,
            throttle_bytes_per_second: 0,
            group_sync_interval_ms: GROUP_SYNC_INTERVAL_MS_DEFAULT,
            config_sync_exclude: Pattern::parse_list(CONFIG_SYNC_EXCLUDE_DEFAULT)?,
            failback: false,
            text: String::new(),
        };
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| format!("{line:?}: not key=value"))?;
            definition.set(key.trim(), value.trim())?;
        }
        if definition.sources.is_empty() {
            return Err("a link needs --source HOST:PORT".into());
        }
        if definition.selection.topics.is_empty() {
            return Err("a link needs --topics PATTERN[,…]".into());
        }
        definition.text = definition.encode();
        Ok(definition)
    }

    fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let number = |value: &str| {
            value
                .parse::<u64>()
                .map_err(|_| format!("{key}={value}: not a whole number"))
        };
        match key {
            "source" => self.sources = parse_sources(value)?,
            "topics" => self.selection.topics = Pattern::parse_list(value)?,
            "exclude" => self.selection.exclude = Pattern::parse_list(value)?,
            "groups" => self.selection.groups = Pattern::parse_list(value)?,
            "topic.prefix" => {
                if !value.is_empty() {
                    keel_protocol::api::validate_topic_name(value)
                        .map_err(|e| format!("topic.prefix: {e}"))?;
                    self.selection.topic_prefix = Some(value.to_owned());
                }
            }
            "paused" => {
                self.paused = value
                    .parse()
                    .map_err(|_| format!("paused={value}: true or false"))?;
            }
            "failback" => {
                self.failback = value
                    .parse()
                    .map_err(|_| format!("failback={value}: true or false"))?;
            }
            "throttle.bytes.per.second" => self.throttle_bytes_per_second = number(value)?,
            "group.sync.interval.ms" => self.group_sync_interval_ms = number(value)?.max(100),
            "config.sync.exclude" => self.config_sync_exclude = Pattern::parse_list(value)?,
            _ => match key.strip_prefix("source.") {
                Some(property) if SOURCE_PROPERTIES.contains(&property) => {
                    self.source_config
                        .insert(property.to_owned(), value.to_owned());
                }
                _ => return Err(format!("unknown link setting {key:?}")),
            },
        }
        Ok(())
    }

    /// The definition as text (what [`Definition::parse`] reads back the same).
    pub fn encode(&self) -> String {
        let list = |patterns: &[Pattern]| {
            patterns
                .iter()
                .map(Pattern::text)
                .collect::<Vec<_>>()
                .join(",")
        };
        let mut lines = vec![
            format!("source={}", self.sources.join(",")),
            format!("topics={}", list(&self.selection.topics)),
        ];
        if !self.selection.exclude.is_empty() {
            lines.push(format!("exclude={}", list(&self.selection.exclude)));
        }
        if !self.selection.groups.is_empty() {
            lines.push(format!("groups={}", list(&self.selection.groups)));
        }
        if let Some(prefix) = &self.selection.topic_prefix {
            lines.push(format!("topic.prefix={prefix}"));
        }
        lines.push(format!("paused={}", self.paused));
        if self.failback {
            lines.push("failback=true".to_owned());
        }
        lines.push(format!(
            "throttle.bytes.per.second={}",
            self.throttle_bytes_per_second
        ));
        lines.push(format!(
            "group.sync.interval.ms={}",
            self.group_sync_interval_ms
        ));
        lines.push(format!(
            "config.sync.exclude={}",
            list(&self.config_sync_exclude)
        ));
        for (property, value) in &self.source_config {
            lines.push(format!("source.{property}={value}"));
        }
        lines.join("\n")
    }

    /// The text it was read from, in its canonical form.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The same link, paused or not.
    pub fn with_paused(&self, paused: bool) -> Definition {
        let mut changed = self.clone();
        changed.paused = paused;
        changed.text = changed.encode();
        changed
    }

    /// The definition's text for the describe answer: the source password left out.
    pub fn redacted(&self) -> String {
        self.text
            .lines()
            .map(|line| {
                if line.starts_with("source.sasl.password=") {
                    "source.sasl.password=[hidden]"
                } else {
                    line
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Checks a link's name: Kafka's topic-name rules (it names metrics and topic configs).
///
/// # Errors
/// What is wrong with it.
pub fn check_name(name: &str) -> Result<(), String> {
    keel_protocol::api::validate_topic_name(name).map_err(|e| format!("link name: {e}"))?;
    if name.len() > LINK_NAME_BYTES_MAX {
        return Err(format!(
            "a link name is at most {LINK_NAME_BYTES_MAX} bytes"
        ));
    }
    Ok(())
}

fn parse_sources(value: &str) -> Result<Vec<String>, String> {
    let sources: Vec<String> = value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if sources.len() > SOURCES_MAX {
        return Err(format!("at most {SOURCES_MAX} source addresses"));
    }
    for source in &sources {
        let port = source.rsplit_once(':').and_then(|(host, port)| {
            (!host.is_empty()).then_some(())?;
            port.parse::<u16>().ok()
        });
        if port.is_none() {
            return Err(format!("source {source:?}: not HOST:PORT"));
        }
    }
    Ok(sources)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_definition_reads_back_the_same_and_hides_its_password() {
        let text = "source=a:9092,b:9093\ntopics=orders.*,re:audit-(eu|us)\nexclude=orders.tmp*\n\
                    groups=billing-*\ntopic.prefix=east.\nsource.security.protocol=SASL_SSL\n\
                    source.sasl.password=secret\nthrottle.bytes.per.second=1048576";
        let link = Definition::parse(text).unwrap();
        assert_eq!(link.sources, ["a:9092", "b:9093"]);
        assert_eq!(
            link.selection.mirror_name("orders.eu").as_deref(),
            Some("east.orders.eu")
        );
        assert!(link.selection.mirror_name("orders.tmp1").is_none());
        assert_eq!(link.throttle_bytes_per_second, 1 << 20);
        let again = Definition::parse(link.text()).unwrap();
        assert_eq!(again.text(), link.text());
        assert!(!link.redacted().contains("secret"));
        assert!(link.with_paused(true).text().contains("paused=true"));
    }

    #[test]
    fn bad_definitions_are_refused_naming_the_problem() {
        for (text, says) in [
            ("topics=a", "--source"),
            ("source=a:1", "--topics"),
            ("source=a\ntopics=t", "not HOST:PORT"),
            (
                "source=a:1\ntopics=t\nsource.sasl.jaas.config=x",
                "unknown link setting",
            ),
            ("source=a:1\ntopics=t\npaused=maybe", "true or false"),
            ("source=a:1\ntopics=t\nwhat", "not key=value"),
            ("source=a:1\ntopics=or*ders", "only ends a prefix"),
        ] {
            let error = Definition::parse(text).unwrap_err();
            assert!(error.contains(says), "{text}: {error}");
        }
        assert!(check_name("east").is_ok());
        assert!(check_name("a/b").is_err());
    }
}
