//! The mirror tasks (glommio): on every shard, one worker per cluster link fetches the
//! source partitions whose mirror partitions this shard owns and this broker leads, and
//! appends the source's batches verbatim at their own offsets (as a follower appends its
//! leader's), following [`MirrorPartition`]'s answers. The controller leader's shard 0 also
//! makes the mirror topics the link selects. A restart resumes each partition from its
//! own log end: nothing else is checkpointed.

use super::definition::Definition;
use super::partition::MirrorPartition;
use super::source::{SourceConnection, CLIENT_ID};
use crate::cluster::ClusterView;
use crate::config::topic::{
    read_only_mirror, MIRROR_LINK, MIRROR_SOURCE_TOPIC, MIRROR_SOURCE_TOPIC_ID,
};
use crate::registry::parse_id;
use crate::shard::{owner, Shard};
use keel_controller::image::LINK_KIND;
use keel_kafka::source as wire;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often links and owned partitions are looked at while idle.
const IDLE: Duration = Duration::from_millis(500);
/// Pause after a source failure.
pub(super) const BACKOFF: Duration = Duration::from_secs(1);
/// How long source metadata is trusted before it is asked again.
const METADATA_TTL: Duration = Duration::from_secs(10);
/// How often the link's topic selection is looked at (new topics).
const DISCOVER_EVERY: Duration = Duration::from_secs(5);
/// How long the source must say a topic does not exist before its mirror stops (a source
/// broker that just started may not know its topics yet).
const GONE_GRACE: Duration = Duration::from_secs(15);

/// Runs on every shard of a cluster broker until the process ends: starts a worker for
/// each link in the metadata.
pub async fn run(shard: Rc<Shard>) {
    let Some(view) = shard.cluster.clone() else {
        return;
    };
    let running: Rc<RefCell<BTreeSet<String>>> = Rc::default();
    loop {
        glommio::timer::sleep(IDLE).await;
        let image = view.image();
        let links = image
            .security()
            .range((LINK_KIND, String::new())..(LINK_KIND + 1, String::new()));
        for ((_, name), _) in links {
            if running.borrow_mut().insert(name.clone()) {
                let (shard, view, running, name) =
                    (shard.clone(), view.clone(), running.clone(), name.clone());
                glommio::spawn_local(async move {
                    Worker::new(shard, view, name.clone()).run().await;
                    running.borrow_mut().remove(&name);
                })
                .detach();
            }
        }
    }
}

/// What the source's metadata says about the topics a link reads.
#[derive(Default)]
pub(super) struct SourceMetadata {
    pub(super) brokers: HashMap<i32, String>,
    /// Per source topic: its id and each partition's leader.
    pub(super) topics: HashMap<String, ([u8; 16], HashMap<i32, i32>)>,
    pub(super) partitions: HashMap<String, u32>,
    pub(super) at: Option<Instant>,
}

/// One destination partition this worker mirrors.
pub(super) struct Owned {
    pub(super) source_topic: String,
    pub(super) expected_id: [u8; 16],
    /// Since when the source has said the topic does not exist.
    pub(super) missing_since: Option<Instant>,
    /// Why its last append failed (a full disk), until one succeeds.
    pub(super) storage_error: Option<String>,
    /// Its log's end is not what the mirror thinks (an append failed): it fetches again
    /// from the log's end once the log is back online.
    pub(super) resync: bool,
    /// Whether its log was checked against the source's history (a log that held
    /// records when the partition became this broker's; see `check_histories`).
    pub(super) checked: bool,
    pub(super) mirror: MirrorPartition,
}

pub(super) struct Worker {
    pub(super) shard: Rc<Shard>,
    pub(super) view: Arc<ClusterView>,
    pub(super) name: String,
    pub(super) owned: BTreeMap<(String, u32), Owned>,
    pub(super) connections: HashMap<String, SourceConnection>,
    pub(super) metadata: SourceMetadata,
    pub(super) discovered: Option<Instant>,
    pub(super) groups_synced: Option<Instant>,
    pub(super) started: Instant,
}

impl Worker {
    fn new(shard: Rc<Shard>, view: Arc<ClusterView>, name: String) -> Worker {
        Worker {
            shard,
            view,
            name,
            owned: BTreeMap::new(),
            connections: HashMap::new(),
            metadata: SourceMetadata::default(),
            discovered: None,
            groups_synced: None,
            started: Instant::now(),
        }
    }

    pub(super) fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    pub(super) fn definition(&self) -> Option<Definition> {
        let image = self.view.image();
        let text = image.security().get(&(LINK_KIND, self.name.clone()))?;
        Definition::parse(text).ok()
    }

    async fn run(mut self) {
        while let Some(definition) = self.definition() {
            let fetched = self.round(&definition).await;
            self.publish(&definition);
            if !fetched {
                glommio::timer::sleep(IDLE).await;
            }
        }
        let mut status = self.view.mirrors.lock().unwrap_or_else(|e| e.into_inner());
        for key in self.owned.keys() {
            status.partitions.remove(key);
        }
        if self.shard.id == 0 {
            status.link_failures.remove(&self.name);
        }
        tracing::info!(link = %self.name, "cluster link gone: its worker stops");
    }

    /// One round: discover, follow ownership, fetch and append. Whether anything was
    /// fetched (else the caller waits before the next round).
    async fn round(&mut self, definition: &Definition) -> bool {
        if self.shard.id == 0 && self.leads_controller() {
            let due = self
                .discovered
                .is_none_or(|at| at.elapsed() >= DISCOVER_EVERY);
            if due && !definition.paused {
                self.discovered = Some(Instant::now());
                if let Err(reason) = self.discover(definition).await {
                    self.fail_link(&reason);
                }
            }
        }
        self.follow_ownership();
        self.raise_promoted_epochs().await;
        if self.shard.id == 0 && !definition.paused {
            self.sync_groups(definition).await;
        }
        if definition.paused {
            self.owned.values_mut().for_each(|o| o.mirror.pause());
            return false;
        }
        self.owned.values_mut().for_each(|o| o.mirror.resume());
        if !self.owned.values().any(|o| o.mirror.next_fetch().is_some()) {
            return false;
        }
        let stale = self
            .metadata
            .at
            .is_none_or(|at| at.elapsed() >= METADATA_TTL);
        if stale {
            if let Err(reason) = self.refresh_metadata(definition).await {
                self.fail_link(&reason);
                glommio::timer::sleep(BACKOFF).await;
                return false;
            }
        }
        self.clear_link_failure();
        self.check_histories(definition).await;
        if self.owned.values().any(|o| o.resync) {
            // This cluster's disk refused an append: not a fetch a moment later.
            glommio::timer::sleep(BACKOFF).await;
            self.resync();
        }
        // Nothing to fetch (every partition waiting on a check, a resync or its leader):
        // the caller waits before the next round rather than spinning on the shard.
        let Some(bytes) = self.fetch_all(definition).await else {
            return false;
        };
        if self.metadata.at.is_none() {
            // A source answer asked for new metadata: not at once (no spinning on a source
            // that keeps refusing).
            glommio::timer::sleep(IDLE).await;
        }
        if definition.throttle_bytes_per_second > 0 && bytes > 0 {
            let seconds = bytes as f64 / definition.throttle_bytes_per_second as f64;
            glommio::timer::sleep(Duration::from_secs_f64(seconds.min(10.0))).await;
        }
        true
    }

    pub(super) fn leads_controller(&self) -> bool {
        self.view.controller().leader == Some(u64::from(self.view.node_id))
    }

    pub(super) fn fail_link(&self, reason: &str) {
        let mut status = self.view.mirrors.lock().unwrap_or_else(|e| e.into_inner());
        if status.link_failures.get(&self.name).map(String::as_str) != Some(reason) {
            tracing::warn!(link = %self.name, reason, "cluster link cannot read its source");
        }
        status
            .link_failures
            .insert(self.name.clone(), reason.to_owned());
    }

    pub(super) fn clear_link_failure(&self) {
        let mut status = self.view.mirrors.lock().unwrap_or_else(|e| e.into_inner());
        if status.link_failures.remove(&self.name).is_some() {
            tracing::info!(link = %self.name, "cluster link reads its source again");
        }
    }

    /// Partitions whose log end is not what their mirror thinks start again from it, once
    /// the log is online (an offline log's end still counts what was never written).
    fn resync(&mut self) {
        let now_ms = self.now_ms();
        for ((topic, partition), owned) in &mut self.owned {
            if !owned.resync {
                continue;
            }
            let Some(log) = self.shard.log_handle(topic, *partition) else {
                continue;
            };
            if !log.is_offline() {
                owned.mirror =
                    MirrorPartition::new(owned.expected_id, log.log_end_offset(), now_ms);
                owned.resync = false;
            }
        }
    }

    /// The mirror partitions of this link this shard owns and this broker leads now.
    fn follow_ownership(&mut self) {
        let shards = self.shard.config.shards;
        let registry = self.shard.registry.read();
        let mut now = BTreeMap::new();
        for (topic, entry) in registry.topics() {
            let configs = &entry.configs;
            if configs.get(MIRROR_LINK) != Some(&self.name) {
                continue;
            }
            let promoted = !read_only_mirror(configs);
            let (Some(source), Some(id)) = (
                configs.get(MIRROR_SOURCE_TOPIC),
                configs
                    .get(MIRROR_SOURCE_TOPIC_ID)
                    .and_then(|h| parse_id(h)),
            ) else {
                continue;
            };
            for partition in 0..entry.partitions {
                let mine = owner(topic, partition, shards) == self.shard.id
                    && self.view.leads(topic, partition).is_ok();
                if mine {
                    now.insert((topic.clone(), partition), (source.clone(), id, promoted));
                }
            }
        }
        drop(registry);
        let gone: Vec<(String, u32)> = self
            .owned
            .keys()
            .filter(|k| !now.contains_key(*k))
            .cloned()
            .collect();
        let mut status = self.view.mirrors.lock().unwrap_or_else(|e| e.into_inner());
        for key in gone {
            self.owned.remove(&key);
            status.partitions.remove(&key);
            status.writable.remove(&key);
        }
        drop(status);
        let now_ms = self.now_ms();
        for ((topic, partition), (source_topic, expected_id, promoted)) in now {
            if let Some(owned) = self.owned.get_mut(&(topic.clone(), partition)) {
                if promoted {
                    if let Some(at) = owned.mirror.promote() {
                        tracing::info!(link = %self.name, topic, partition, at, "mirror partition promoted: mirroring ended at this offset");
                    }
                }
                continue;
            }
            let Some(log) = self.shard.log_handle(&topic, partition) else {
                continue;
            };
            let mut mirror = MirrorPartition::new(expected_id, log.log_end_offset(), now_ms);
            if promoted {
                let _ = mirror.promote();
            }
            tracing::info!(link = %self.name, topic, partition, from = log.log_end_offset(), "mirroring a partition from its log end");
            self.owned.insert(
                (topic, partition),
                Owned {
                    source_topic,
                    expected_id,
                    missing_since: None,
                    storage_error: None,
                    resync: false,
                    checked: log.latest_epoch().is_none(),
                    mirror,
                },
            );
        }
    }

    pub(super) async fn connection(
        &mut self,
        address: &str,
        definition: &Definition,
    ) -> Result<&mut SourceConnection, String> {
        super::source::cached(&mut self.connections, address, &definition.source_config).await
    }

    /// Source metadata for every topic (`None`) or the named ones, from the first
    /// bootstrap address that answers.
    pub(super) async fn source_metadata(
        &mut self,
        definition: &Definition,
        topics: Option<&[String]>,
    ) -> Result<(Vec<wire::SourceBroker>, Vec<wire::SourceTopicMetadata>), String> {
        let body = self
            .ask_bootstrap(definition, |c| wire::metadata_request(c, CLIENT_ID, topics))
            .await?;
        let (_, brokers, topics) = wire::metadata_response(body)
            .map_err(|e| format!("its metadata answer: {e}: not a Kafka broker?"))?;
        Ok((brokers, topics))
    }

    /// One request's answer from the first bootstrap address that answers (`request`
    /// builds the frame for a correlation id); any broker can answer it.
    pub(super) async fn ask_bootstrap(
        &mut self,
        definition: &Definition,
        request: impl Fn(i32) -> bytes::BytesMut,
    ) -> Result<bytes::Bytes, String> {
        let mut last = String::from("no source address");
        for address in &definition.sources {
            let answer = async {
                let connection = self.connection(address, definition).await?;
                super::source::ask(connection, &request).await
            }
            .await;
            match answer {
                Ok(answer) => return Ok(answer),
                Err(e) => {
                    self.connections.remove(address);
                    last = format!("source {address}: {e}");
                }
            }
        }
        Err(last)
    }

    async fn refresh_metadata(&mut self, definition: &Definition) -> Result<(), String> {
        let mut wanted: Vec<String> = self
            .owned
            .values()
            .map(|o| o.source_topic.clone())
            .collect();
        wanted.sort();
        wanted.dedup();
        let (brokers, topics) = self.source_metadata(definition, Some(&wanted)).await?;
        let mut metadata = SourceMetadata {
            brokers: brokers
                .into_iter()
                .map(|b| (b.node_id, format!("{}:{}", b.host, b.port)))
                .collect(),
            at: Some(Instant::now()),
            ..SourceMetadata::default()
        };
        const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
        let mut gone = BTreeSet::new();
        for topic in topics {
            if topic.error == UNKNOWN_TOPIC_OR_PARTITION {
                gone.insert(topic.name);
                continue;
            }
            if topic.error != 0 {
                // Not ready, or not readable: asked again next round.
                continue;
            }
            let leaders = topic.partitions.iter().map(|p| (p.0, p.1)).collect();
            metadata
                .partitions
                .insert(topic.name.clone(), topic.partitions.len() as u32);
            metadata.topics.insert(topic.name, (topic.id, leaders));
        }
        // A topic gone from the source: its mirror stops (what it holds stays, read-only).
        for owned in self.owned.values_mut() {
            if !gone.contains(&owned.source_topic) {
                owned.missing_since = None;
                continue;
            }
            let since = *owned.missing_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= GONE_GRACE && owned.mirror.next_fetch().is_some() {
                let _ = owned.mirror.fail("the source topic was deleted");
                tracing::warn!(link = %self.name, source_topic = %owned.source_topic, "the source topic is gone: its mirror stops");
            }
        }
        self.metadata = metadata;
        Ok(())
    }
}
