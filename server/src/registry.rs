//! The durable list of topics: `topics.toml` in the data directory, replaced atomically
//! (write a temporary file, fsync, rename, fsync the directory).
//!
//! Create writes the registry before creating partition directories and delete removes the
//! topic from the registry before deleting them, so a crash in between never leaves a
//! half-made topic: at start-up, partitions of registered topics are (re)created and
//! directories of unregistered topics are removed.

use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// One topic's durable description.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TopicEntry {
    /// Partition count.
    pub partitions: u32,
    /// Topic configs that override broker defaults.
    #[serde(default)]
    pub configs: BTreeMap<String, String>,
    /// Its Kafka topic id (hex), made when the topic was: a topic deleted and created again
    /// has another. Topics made before ids were kept (and `__consumer_offsets`) have none
    /// and answer with one derived from the name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

impl TopicEntry {
    /// The Kafka topic id of topic `name` (this entry's).
    pub fn kafka_id(&self, name: &str) -> [u8; 16] {
        self.id
            .as_deref()
            .and_then(parse_id)
            .unwrap_or_else(|| keel_kafka::fetch::topic_id(name))
    }
}

/// A new topic's id on a single broker: random.
pub fn new_topic_id() -> Option<String> {
    let mut id = [0u8; 16];
    getrandom::getrandom(&mut id).ok()?;
    Some(id_hex(&id))
}

/// A topic's id in a cluster, the same on every broker: from the cluster's id, the topic's
/// name and the controller's number for this creation of it.
pub fn cluster_topic_id(cluster_id: &str, name: &str, creation: u64) -> String {
    id_hex(&keel_kafka::fetch::topic_id(&format!(
        "{cluster_id}\0{name}\0{creation}"
    )))
}

/// A topic id as 32 hex digits.
pub fn id_hex(id: &[u8; 16]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// What [`id_hex`] wrote.
pub fn parse_id(text: &str) -> Option<[u8; 16]> {
    let mut id = [0u8; 16];
    for (i, byte) in id.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    (text.len() == 32).then_some(id)
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct RegistryFile {
    #[serde(default)]
    topics: BTreeMap<String, TopicEntry>,
}

/// The topics of this broker.
#[derive(Debug)]
pub struct Registry {
    path: PathBuf,
    topics: BTreeMap<String, TopicEntry>,
    /// Topic names by their Kafka topic id (Fetch v13+ and Metadata v10+ name topics by
    /// id): derived from `topics`, rebuilt whenever they change.
    ids: std::collections::HashMap<[u8; 16], String>,
}

fn index(topics: &BTreeMap<String, TopicEntry>) -> std::collections::HashMap<[u8; 16], String> {
    topics
        .iter()
        .map(|(name, entry)| (entry.kafka_id(name), name.clone()))
        .collect()
}

impl Registry {
    /// Loads `topics.toml` from `data_dir` (empty when absent).
    ///
    /// # Errors
    /// An unreadable or unparsable file, named.
    pub fn load(data_dir: &Path) -> anyhow::Result<Registry> {
        let path = data_dir.join("topics.toml");
        let topics = match std::fs::read_to_string(&path) {
            Ok(text) => {
                toml::from_str::<RegistryFile>(&text)
                    .with_context(|| format!("parsing {}", path.display()))?
                    .topics
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let ids = index(&topics);
        Ok(Registry { path, topics, ids })
    }

    /// The Kafka topic id of `name` (derived from the name for a topic not here).
    pub fn kafka_id(&self, name: &str) -> [u8; 16] {
        self.topics
            .get(name)
            .map_or_else(|| keel_kafka::fetch::topic_id(name), |e| e.kafka_id(name))
    }

    /// The topic with this Kafka topic id.
    pub fn by_id(&self, id: &[u8; 16]) -> Option<&str> {
        self.ids.get(id).map(String::as_str)
    }

    /// Every topic.
    pub fn topics(&self) -> &BTreeMap<String, TopicEntry> {
        &self.topics
    }

    /// One topic.
    pub fn get(&self, name: &str) -> Option<&TopicEntry> {
        self.topics.get(name)
    }

    /// Adds or replaces a topic and makes the registry durable.
    ///
    /// # Errors
    /// I/O errors writing the file (the in-memory state is left unchanged).
    pub fn put(&mut self, name: &str, entry: TopicEntry) -> anyhow::Result<()> {
        let previous = self.topics.insert(name.to_owned(), entry);
        if let Err(e) = self.save() {
            match previous {
                Some(previous) => self.topics.insert(name.to_owned(), previous),
                None => self.topics.remove(name),
            };
            return Err(e);
        }
        self.ids = index(&self.topics);
        Ok(())
    }

    /// Removes a topic and makes the registry durable.
    ///
    /// # Errors
    /// I/O errors writing the file (the in-memory state is left unchanged).
    pub fn remove(&mut self, name: &str) -> anyhow::Result<Option<TopicEntry>> {
        let Some(previous) = self.topics.remove(name) else {
            return Ok(None);
        };
        if let Err(e) = self.save() {
            self.topics.insert(name.to_owned(), previous);
            return Err(e);
        }
        self.ids = index(&self.topics);
        Ok(Some(previous))
    }

    fn save(&self) -> anyhow::Result<()> {
        save(&self.path, &self.topics)
    }
}

/// Writes `topics` to `path` durably.
fn save(path: &Path, topics: &BTreeMap<String, TopicEntry>) -> anyhow::Result<()> {
    let text = toml::to_string(&RegistryFile {
        topics: topics.clone(),
    })
    .context("encoding the topic registry")?;
    write_durably(path, text.as_bytes())
}

/// Replaces `path` with `bytes` durably: temporary file, fsync, rename, fsync the directory.
/// A crash leaves the old file or the new one, never a mix.
///
/// # Errors
/// Any step failed; the error names the file.
pub fn write_durably(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    let mut file = std::fs::File::create(&temporary)
        .with_context(|| format!("creating {}", temporary.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("writing {}", temporary.display()))?;
    file.sync_all()
        .with_context(|| format!("syncing {}", temporary.display()))?;
    std::fs::rename(&temporary, path).with_context(|| format!("renaming to {}", path.display()))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))?;
    Ok(())
}

/// Why a registry change was refused: the error to answer and a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Error code for the response.
    pub code: keel_protocol::api::ErrorCode,
    /// What is wrong.
    pub message: String,
}

impl Refusal {
    /// A refusal with `code` and `message`.
    pub fn new(code: keel_protocol::api::ErrorCode, message: impl Into<String>) -> Refusal {
        Refusal {
            code,
            message: message.into(),
        }
    }
}

/// The registry shared by every shard. Data requests only read the in-memory topics,
/// briefly; a change is applied to a copy, written and synced with no lock that readers
/// take, then published. Changes take turns (admin requests only), and
/// a panic elsewhere cannot poison the readers: a poisoned lock is used as is (its data is
/// only ever replaced whole).
pub struct SharedRegistry {
    current: std::sync::RwLock<Registry>,
    /// Set while a change is being written (changes take turns).
    writing: std::sync::atomic::AtomicBool,
}

/// The writer's turn; ends when dropped.
struct Turn<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.0.store(false, std::sync::atomic::Ordering::Release);
    }
}

impl SharedRegistry {
    /// Shares `registry`.
    pub fn new(registry: Registry) -> SharedRegistry {
        SharedRegistry {
            current: std::sync::RwLock::new(registry),
            writing: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The topics now (hold the guard briefly, never across an await).
    pub fn read(&self) -> std::sync::RwLockReadGuard<'_, Registry> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Applies `change` to a copy of the topics and makes it durable, then visible.
    ///
    /// # Errors
    /// What `change` refuses, or `StorageError` when the file cannot be written (nothing
    /// changes then).
    pub async fn update<T>(
        &self,
        change: impl FnOnce(&mut BTreeMap<String, TopicEntry>) -> Result<T, Refusal>,
    ) -> Result<T, Refusal> {
        // Take the writer's turn without blocking this shard's thread while another shard
        // writes.
        use std::sync::atomic::Ordering;
        while self
            .writing
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
        }
        let _turn = Turn(&self.writing);
        let (path, mut topics) = {
            let current = self.read();
            (current.path.clone(), current.topics.clone())
        };
        let answer = change(&mut topics)?;
        // Written on this shard's thread (admin requests only; the write is short), with no
        // lock held that readers take. glommio's blocking pool is not used here: waking
        // shard tasks from it in quick succession (a CreateTopics of 100 topics) crashed a
        // debug broker once in glommio's waker (RawTask::do_wake on a freed task).
        if let Err(e) = save(&path, &topics) {
            return Err(Refusal::new(
                keel_protocol::api::ErrorCode::StorageError,
                format!("{e:#}"),
            ));
        }
        let ids = index(&topics);
        let mut current = self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        current.topics = topics;
        current.ids = ids;
        Ok(answer)
    }
}

/// Directory of a partition: `<data>/<topic>-<partition>`, as in Kafka.
pub fn partition_dir(data_dir: &Path, topic: &str, partition: u32) -> PathBuf {
    data_dir.join(format!("{topic}-{partition}"))
}

/// The (topic, partition) a directory name stands for.
pub fn parse_partition_dir(name: &str) -> Option<(&str, u32)> {
    let (topic, partition) = name.rsplit_once('-')?;
    Some((topic, partition.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_survives_reload_and_removal() {
        // Goal: what put/remove report is what a restart sees.
        let dir = tempfile::tempdir().unwrap();
        let mut registry = Registry::load(dir.path()).unwrap();
        assert!(registry.topics().is_empty());
        let entry = TopicEntry {
            partitions: 3,
            configs: BTreeMap::from([("retention.ms".into(), "1000".into())]),
            id: None,
        };
        registry.put("orders", entry.clone()).unwrap();
        registry
            .put(
                "audit",
                TopicEntry {
                    partitions: 1,
                    configs: BTreeMap::new(),
                    id: None,
                },
            )
            .unwrap();
        registry.remove("audit").unwrap();
        let reloaded = Registry::load(dir.path()).unwrap();
        assert_eq!(reloaded.topics().len(), 1);
        assert_eq!(reloaded.get("orders"), Some(&entry));
        assert!(!dir.path().join("topics.toml.tmp").exists());
    }

    #[test]
    fn shared_updates_are_durable_and_refusals_change_nothing() {
        // Goal: a change is visible only once written; a refused one leaves file and memory.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_owned();
        glommio::LocalExecutorBuilder::default()
            .io_memory(1 << 20)
            .spawn(move || async move {
                let shared = SharedRegistry::new(Registry::load(&path).unwrap());
                let entry = TopicEntry {
                    partitions: 2,
                    configs: BTreeMap::new(),
                    id: None,
                };
                shared
                    .update(|topics| {
                        topics.insert("a".into(), entry.clone());
                        Ok(())
                    })
                    .await
                    .unwrap();
                let refused = shared
                    .update(|topics| -> Result<(), Refusal> {
                        topics.insert("b".into(), entry.clone());
                        Err(Refusal::new(
                            keel_protocol::api::ErrorCode::InvalidConfig,
                            "no",
                        ))
                    })
                    .await;
                assert_eq!(refused.unwrap_err().message, "no");
                assert!(shared.read().get("b").is_none());
                let reloaded = Registry::load(&path).unwrap();
                assert_eq!(reloaded.topics().len(), 1);
                assert_eq!(reloaded.get("a"), Some(&entry));
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn partition_dirs_parse_back() {
        // Goal: topic names with dashes still parse.
        assert_eq!(parse_partition_dir("my-topic-12"), Some(("my-topic", 12)));
        assert_eq!(parse_partition_dir("nodash"), None);
        assert_eq!(
            partition_dir(Path::new("/d"), "t", 3),
            PathBuf::from("/d/t-3")
        );
    }

    #[test]
    fn topic_ids_are_kept_per_creation_and_old_topics_keep_the_name_one() {
        let old = TopicEntry {
            partitions: 1,
            ..TopicEntry::default()
        };
        assert_eq!(
            old.kafka_id("orders"),
            keel_kafka::fetch::topic_id("orders")
        );
        let text = toml::to_string(&old).unwrap();
        assert!(!text.contains("id"), "no id written for it: {text}");
        let made = new_topic_id().unwrap();
        assert_ne!(Some(made.clone()), new_topic_id(), "random");
        let new = TopicEntry {
            id: Some(made.clone()),
            ..old.clone()
        };
        assert_eq!(id_hex(&new.kafka_id("orders")), made);
        let back: TopicEntry = toml::from_str(&toml::to_string(&new).unwrap()).unwrap();
        assert_eq!(back, new);
        // In a cluster: the same on every broker, another for another creation.
        let first = cluster_topic_id("c1", "orders", 4);
        assert_eq!(first, cluster_topic_id("c1", "orders", 4));
        assert_ne!(first, cluster_topic_id("c1", "orders", 9));
        assert_ne!(first, cluster_topic_id("c2", "orders", 4));
        assert_eq!(parse_id("xyz"), None);
        assert_eq!(parse_id(&first[..30]), None);
    }
}
