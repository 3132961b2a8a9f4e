//! A shard: one pinned executor, the partitions it owns, and the jobs other shards send it.
//!
//! Every partition is owned by exactly one shard ([`owner`]); only that shard touches its
//! log. A connection on any shard turns a request into per-partition [`Job`]s, runs local
//! ones directly and sends the others to their owners over glommio's channel mesh, then
//! merges the replies in request order.

use crate::config::Config;
use crate::metrics::Metrics;
use crate::producers::{ProducerStates, SequenceCheck};
use crate::registry::{partition_dir, SharedRegistry};
use bytes::{Bytes, BytesMut};
use glommio::channels::channel_mesh::Receivers;
use keel_engine::{Batch, Error as EngineError, Log, LogConfig};
use keel_protocol::api::{
    ErrorCode, FetchPartitionResult, ListOffsetsPartitionResult, PartitionMetadata,
    ProducePartitionResult, EARLIEST_TIMESTAMP, LATEST_TIMESTAMP, MAX_TIMESTAMP,
};
use keel_protocol::batch::peek_batch_len;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

mod delete_records;
mod fan_out;
mod housekeeping;
mod job;
mod leadership;
mod offline;
mod outcome;
mod poll;
mod produce;

pub use fan_out::{fan_out, on_every_partition, on_partitions};
pub use job::{Job, Read, Reply};
pub use outcome::{ClusterAnswer, Fetched, Outcome, ReplicaFetched};
pub use poll::{long_poll, Enough};

/// The shard owning `partition` of `topic`.
pub fn owner(topic: &str, partition: u32, shards: usize) -> usize {
    // FNV-1a: stable across runs and builds, unlike the std hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in topic.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    ((hash.wrapping_add(u64::from(partition))) % shards as u64) as usize
}

/// One shard's state.
pub struct Shard {
    /// This shard's index (its mesh peer id).
    pub id: usize,
    /// Validated configuration.
    pub config: Arc<Config>,
    /// The topic registry, shared by all shards (read on every request, written by admin
    /// requests only).
    pub registry: Arc<SharedRegistry>,
    /// The users SASL authenticates and the ACLs, shared by all shards.
    pub security: Arc<crate::security::Stores>,
    /// Metrics, shared by all shards.
    pub metrics: Arc<Metrics>,
    logs: RefCell<HashMap<(String, u32), Log>>,
    peers: Rc<crate::peers::Peers>,
    /// State services keep on this shard (the group coordinator's on its shard), set at
    /// start-up by `main`, found by type: the shard layer does not know the services.
    services: RefCell<Vec<Rc<dyn std::any::Any>>>,
    producers: RefCell<HashMap<(String, u32), ProducerStates>>,
    /// Bytes of requests this shard has read and not yet answered (its share of the
    /// broker's `requests_bytes_max`): connections wait for it before reading more.
    pub request_budget: Rc<glommio::sync::Semaphore>,
    /// Size of `request_budget`.
    pub request_budget_bytes: u64,
    /// Partition jobs this shard's requests may have in flight (its share of
    /// `partition_jobs_max`): `fan_out` and `long_poll` wait for room.
    partition_jobs: Rc<glommio::sync::Semaphore>,
    /// Each open log's share of this shard's tail-cache budget.
    tail_share: keel_engine::TailShare,
    /// Per-partition counter handles used on this shard (any partition, owned or not).
    partition_metrics: RefCell<HashMap<String, HashMap<u32, crate::metrics::PartitionMetrics>>>,
    /// Test-only fault injection: (topic, appends left to fail).
    fault_appends: Option<(String, std::cell::Cell<u32>)>,
    /// Test-only fault injection: appends to topics with this prefix wait this long first,
    /// as on a stalled disk (`KEEL_FAULT_STALL_APPENDS=PREFIX:MS`).
    fault_stall: Option<(String, std::time::Duration)>,
    /// Offline logs' next retries.
    offline_retries: RefCell<offline::Retries>,
    /// Cluster mode: the applied metadata and this broker's lease.
    pub cluster: Option<Arc<crate::cluster::ClusterView>>,
    /// Cluster mode, shard 0: the controller and broker agent.
    pub cluster_node: RefCell<Option<Rc<RefCell<crate::cluster::node::Node>>>>,
    /// Cluster mode: the roles of the replicated partitions this shard owns.
    pub replicas: crate::replication::Replicas,
    /// The producer ids this shard may still hand out.
    pub producer_ids: crate::producer_ids::ProducerIds,
}

pub(crate) fn storage_error(e: &EngineError) -> (ErrorCode, String) {
    match e {
        EngineError::InvalidBatch(inner) => (ErrorCode::CorruptMessage, inner.to_string()),
        EngineError::InvalidAppend(message) => (ErrorCode::CorruptMessage, message.clone()),
        EngineError::OffsetOutOfRange { .. } => (ErrorCode::OffsetOutOfRange, e.to_string()),
        EngineError::Config(message) => (ErrorCode::InvalidConfig, message.clone()),
        _ => (ErrorCode::StorageError, e.to_string()),
    }
}

impl Shard {
    /// A shard with no partitions open yet.
    pub fn new(
        id: usize,
        config: Arc<Config>,
        registry: Arc<SharedRegistry>,
        security: Arc<crate::security::Stores>,
        metrics: Arc<Metrics>,
        peers: Rc<crate::peers::Peers>,
        cluster: Option<Arc<crate::cluster::ClusterView>>,
    ) -> Shard {
        // Each shard gets its share, but always room for one frame of the largest size.
        let request_budget_bytes = (config.requests_bytes_max / config.shards.max(1))
            .max(config.frame_bytes_max as usize + 16) as u64;
        let partition_jobs = (config.partition_jobs_max / config.shards.max(1))
            .max(config.request_partitions_max) as u64;
        let replicas = crate::replication::Replicas::new(&config.data_dir);
        Shard {
            id,
            request_budget: Rc::new(glommio::sync::Semaphore::new(request_budget_bytes)),
            request_budget_bytes,
            partition_jobs: Rc::new(glommio::sync::Semaphore::new(partition_jobs)),
            tail_share: Rc::default(),
            config,
            registry,
            security,
            metrics,
            logs: RefCell::new(HashMap::new()),
            peers,
            services: RefCell::default(),
            producers: RefCell::new(HashMap::new()),
            partition_metrics: RefCell::new(HashMap::new()),
            fault_appends: std::env::var("KEEL_FAULT_FAIL_APPENDS")
                .ok()
                .and_then(|spec| {
                    let (topic, count) = spec.rsplit_once(':')?;
                    Some((topic.to_owned(), std::cell::Cell::new(count.parse().ok()?)))
                }),
            fault_stall: std::env::var("KEEL_FAULT_STALL_APPENDS")
                .ok()
                .and_then(|spec| {
                    let (prefix, ms) = spec.rsplit_once(':')?;
                    let stall = std::time::Duration::from_millis(ms.parse().ok()?);
                    Some((prefix.to_owned(), stall))
                }),
            cluster,
            offline_retries: RefCell::default(),
            cluster_node: RefCell::new(None),
            replicas,
            producer_ids: crate::producer_ids::ProducerIds::default(),
        }
    }

    /// Keeps a service's state on this shard, for [`Shard::service`].
    pub fn add_service<T: 'static>(&self, service: Rc<T>) {
        self.services.borrow_mut().push(service);
    }

    /// The state of type `T` a service keeps on this shard, if it keeps one here.
    pub fn service<T: 'static>(&self) -> Option<Rc<T>> {
        self.services
            .borrow()
            .iter()
            .find_map(|service| service.clone().downcast::<T>().ok())
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.config.shards
    }

    /// Runs `job` on the shard owning its partition and returns the reply.
    pub async fn call(self: &Rc<Self>, owner: usize, job: Job) -> Reply {
        if owner == self.id {
            return self.execute(job).await;
        }
        self.metrics.shard_call(job.kind());
        self.peers.call(owner, job).await.unwrap_or_else(|| {
            Reply::Done(Err((
                ErrorCode::ShuttingDown,
                format!("shard {owner} is gone or dropped the request"),
            )))
        })
    }

    /// Runs `work` on shard `owner` (made there into a future on that shard) and returns
    /// its answer: how a service runs its own code where its state lives, without the
    /// shard layer knowing the service.
    ///
    /// # Errors
    /// The shard's error when it is gone (ShuttingDown).
    pub async fn run_on<T, F, Fut>(
        self: &Rc<Self>,
        owner: usize,
        kind: &'static str,
        work: F,
    ) -> Result<T, (ErrorCode, String)>
    where
        T: Send + 'static,
        F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = T> + 'static,
    {
        let work: Box<dyn FnOnce(Rc<Shard>) -> job::LocalAnswer + Send> = Box::new(move |shard| {
            Box::pin(async move { Box::new(work(shard).await) as Box<dyn std::any::Any + Send> })
        });
        match self.call(owner, Job::Run(job::Remote { kind, work })).await {
            Reply::Ran(answer) => match answer.downcast::<T>() {
                Ok(answer) => Ok(*answer),
                Err(_) => unreachable!("a Run job answers the type its work returns"),
            },
            Reply::Done(Err(error)) => Err(error),
            _ => unreachable!("a Run job is answered Ran or, when its shard is gone, Done"),
        }
    }

    /// Serves jobs sent by other shards until they hang up.
    pub fn serve_peers(
        self: &Rc<Self>,
        mut jobs: Receivers<crate::peers::Envelope>,
        replies: Receivers<crate::peers::ReplyEnvelope>,
    ) {
        self.peers.serve_replies(replies);
        for (_, stream) in jobs.streams() {
            let shard = self.clone();
            glommio::spawn_local(async move {
                while let Some((job, reply_to, call)) = stream.recv().await {
                    let shard = shard.clone();
                    glommio::spawn_local(async move {
                        let answer = shard.execute(job).await;
                        shard.peers.reply(reply_to, call, answer).await;
                    })
                    .detach();
                }
            })
            .detach();
        }
    }

    /// Opens (or recovers) a partition's log and starts serving it from this shard.
    async fn open_log(
        &self,
        topic: String,
        partition: u32,
        config: LogConfig,
    ) -> Result<(), (ErrorCode, String)> {
        let dir = partition_dir(&self.config.data_dir, &topic, partition);
        let opened = Log::open(&dir, config)
            .await
            .map_err(|e| storage_error(&e))?;
        self.restore_producers(&topic, partition, &opened).await;
        // Borrow only after the awaits: other tasks on this shard use `logs` meanwhile.
        // A reopened log starts uncapped: its role is made again from the metadata.
        self.replicas.forget(&topic, partition);
        self.add_log(topic, partition, opened);
        Ok(())
    }

    /// Starts serving `log` from this shard, its tail cache within the shard's budget.
    fn add_log(&self, topic: String, partition: u32, log: Log) {
        log.share_tail_cache(self.tail_share.clone());
        self.logs.borrow_mut().insert((topic, partition), log);
        self.reshare_tail_cache();
    }

    /// Splits the shard's tail-cache budget evenly over its open logs. A shrinking share
    /// applies at each log's next write, and to every log at the next housekeeping round
    /// (each second).
    fn reshare_tail_cache(&self) {
        let budget = self.config.tail_cache_budget_bytes / self.shards() as u64;
        let logs = self.logs.borrow().len().max(1) as u64;
        self.tail_share.set(budget / logs);
    }

    /// The counters of a partition, looked up once per shard.
    pub fn partition_metrics(
        &self,
        topic: &str,
        partition: u32,
    ) -> crate::metrics::PartitionMetrics {
        // Looked up by `&str`: the request path allocates nothing once the handles exist.
        if let Some(found) = self
            .partition_metrics
            .borrow()
            .get(topic)
            .and_then(|partitions| partitions.get(&partition))
        {
            return found.clone();
        }
        let mut cache = self.partition_metrics.borrow_mut();
        if cache.values().map(HashMap::len).sum::<usize>() >= self.config.partitions_max as usize {
            // Handles of deleted partitions would otherwise pile up.
            cache.clear();
        }
        cache
            .entry(topic.to_owned())
            .or_default()
            .entry(partition)
            .or_insert_with(|| self.metrics.partition(topic, partition))
            .clone()
    }

    /// Every open log of this shard.
    pub(crate) fn owned_logs(&self) -> Vec<((String, u32), Log)> {
        let logs = self.logs.borrow();
        logs.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// The log of a partition this shard owns, if open.
    pub(crate) fn log_handle(&self, topic: &str, partition: u32) -> Option<Log> {
        self.log(topic, partition)
    }

    fn log(&self, topic: &str, partition: u32) -> Option<Log> {
        self.logs
            .borrow()
            .get(&(topic.to_owned(), partition))
            .cloned()
    }

    /// Opens every partition of every registered topic that this shard owns.
    ///
    /// # Errors
    /// The first partition that cannot be opened (corruption, I/O), named.
    pub async fn open_owned_partitions(&self) -> anyhow::Result<usize> {
        let owned: Vec<(String, u32, LogConfig)> = {
            let registry = self.registry.read();
            let mut owned = Vec::new();
            for (topic, entry) in registry.topics() {
                let log = self
                    .config
                    .topic_log_config(&entry.configs)
                    .map_err(|e| anyhow::anyhow!("topic {topic}: {e}"))?;
                for partition in 0..entry.partitions {
                    if owner(topic, partition, self.shards()) == self.id {
                        owned.push((topic.clone(), partition, log.clone()));
                    }
                }
            }
            owned
        };
        let count = owned.len();
        for (topic, partition, log) in owned {
            let dir = partition_dir(&self.config.data_dir, &topic, partition);
            let opened = Log::open(&dir, log)
                .await
                .map_err(|e| anyhow::anyhow!("opening partition {topic}-{partition}: {e}"))?;
            self.restore_producers(&topic, partition, &opened).await;
            self.add_log(topic, partition, opened);
        }
        Ok(count)
    }

    /// Closes every log (flushing it).
    pub async fn close_all(&self) {
        let logs: Vec<((String, u32), Log)> = self.logs.borrow_mut().drain().collect();
        for ((topic, partition), log) in logs {
            if let Err(e) = log.close().await {
                tracing::error!(%topic, partition, error = %e, "closing partition failed");
            }
        }
    }

    /// Runs a job on this shard (which must own the partition).
    pub async fn execute(self: &Rc<Self>, job: Job) -> Reply {
        if let Some(refused) = self.leadership_refusal(&job) {
            return refused;
        }
        match job {
            Job::Cluster(request) => {
                Reply::Cluster(crate::cluster::submit_here(self, request).await)
            }
            Job::DeleteRecords {
                topic,
                partition,
                offset,
            } => self.delete_records(&topic, partition, offset).await,
            Job::Run(remote) => Reply::Ran((remote.work)(self.clone()).await),
            Job::Open {
                topic,
                partition,
                log,
            } => Reply::Done(self.open_log(topic, partition, log).await),
            Job::Remove { topic, partition } => {
                self.replicas.forget(&topic, partition);
                let removed = self.logs.borrow_mut().remove(&(topic.clone(), partition));
                self.reshare_tail_cache();
                self.producers
                    .borrow_mut()
                    .remove(&(topic.clone(), partition));
                if let Some(partitions) = self.partition_metrics.borrow_mut().get_mut(&topic) {
                    partitions.remove(&partition);
                }
                self.metrics.forget_partition(&topic, partition);
                if let Some(log) = removed {
                    let _ = log.close().await;
                }
                let dir = partition_dir(&self.config.data_dir, &topic, partition);
                let result = match std::fs::remove_dir_all(&dir) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err((
                        ErrorCode::StorageError,
                        format!("removing {}: {e}", dir.display()),
                    )),
                };
                Reply::Done(result)
            }
            Job::Reconfigure {
                topic,
                partition,
                log,
            } => {
                let removed = self.logs.borrow_mut().remove(&(topic.clone(), partition));
                self.reshare_tail_cache();
                if let Some(old) = removed {
                    if let Err(e) = old.close().await {
                        return Reply::Done(Err(storage_error(&e)));
                    }
                }
                Reply::Done(self.open_log(topic, partition, log).await)
            }
            Job::Produce {
                topic,
                partition,
                records,
                acks,
                timeout_ms,
            } => Reply::Produced(
                self.produce(&topic, partition, records, (acks, timeout_ms))
                    .await,
            ),
            Job::Read(read) => self.read(read).await,
            Job::Many { jobs, deadline } => Reply::Many(self.run_many(jobs, deadline).await),
            Job::Poll {
                reads,
                after,
                deadline,
            } => {
                let (replies, waited) = self.poll(reads, after, deadline).await;
                Reply::Polled(replies, waited)
            }
            Job::ListOffsets {
                topic,
                partition,
                timestamp,
            } => {
                let Some(log) = self.log(&topic, partition) else {
                    return Reply::Offsets(ListOffsetsPartitionResult {
                        partition,
                        error: ErrorCode::UnknownTopicOrPartition,
                        offset: -1,
                        timestamp: -1,
                    });
                };
                let found = match timestamp {
                    EARLIEST_TIMESTAMP => Ok(Some((log.log_start_offset(), -1))),
                    LATEST_TIMESTAMP => Ok(Some((log.high_watermark(), -1))),
                    MAX_TIMESTAMP => match log.max_timestamp() {
                        Some(max) => log.offset_for_timestamp(max).await,
                        None => Ok(None),
                    },
                    at => log.offset_for_timestamp(at).await,
                };
                Reply::Offsets(match found {
                    Ok(Some((offset, timestamp))) => ListOffsetsPartitionResult {
                        partition,
                        error: ErrorCode::None,
                        offset,
                        timestamp,
                    },
                    Ok(None) => ListOffsetsPartitionResult {
                        partition,
                        error: ErrorCode::None,
                        offset: -1,
                        timestamp: -1,
                    },
                    Err(e) => ListOffsetsPartitionResult {
                        partition,
                        error: storage_error(&e).0,
                        offset: -1,
                        timestamp: -1,
                    },
                })
            }
            Job::Describe { topic, partition } => {
                let described = match self.log(&topic, partition) {
                    Some(log) => PartitionMetadata {
                        partition,
                        error: ErrorCode::None,
                        leader: self.config.node_id,
                        log_start_offset: log.log_start_offset(),
                        high_watermark: log.high_watermark(),
                        log_end_offset: log.log_end_offset(),
                        size_bytes: log.size_bytes(),
                        leader_epoch: 0,
                        replicas: vec![self.config.node_id],
                        isr: vec![self.config.node_id],
                    },
                    None => PartitionMetadata {
                        partition,
                        error: ErrorCode::UnknownTopicOrPartition,
                        leader: self.config.node_id,
                        log_start_offset: -1,
                        high_watermark: -1,
                        log_end_offset: -1,
                        size_bytes: 0,
                        leader_epoch: 0,
                        replicas: Vec::new(),
                        isr: Vec::new(),
                    },
                };
                Reply::Described(described)
            }
        }
    }
}

fn fetch_error(partition: u32, error: ErrorCode) -> FetchPartitionResult {
    FetchPartitionResult {
        partition,
        error,
        high_watermark: -1,
        log_start_offset: -1,
        records: Bytes::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ownership_is_stable_and_spread() {
        // Goal: the same partition always maps to the same shard, and load spreads.
        assert_eq!(owner("orders", 3, 4), owner("orders", 3, 4));
        let mut counts = [0usize; 4];
        for partition in 0..400 {
            counts[owner("orders", partition, 4)] += 1;
        }
        assert!(counts.iter().all(|&c| c == 100), "{counts:?}");
        assert_eq!(owner("anything", 7, 1), 0);
    }
}
