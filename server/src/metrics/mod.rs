//! Prometheus metrics shared by all shards (atomic counters, no locks on the request path:
//! handles are looked up once), served as text on `GET /metrics`. Counters end in
//! `_total`, durations are seconds. The process metrics (`process_*`) are read from
//! `/proc` when the page is rendered.

use keel_protocol::api::ErrorCode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

mod cluster;
mod labels;

pub use labels::*;

/// The counters of one API, looked up once so the request path touches only atomics.
#[derive(Clone)]
pub struct ApiMetrics {
    /// Requests handled.
    pub requests: Counter,
    /// Handling time, without long-poll waiting.
    pub seconds: Histogram,
}

/// Counters of one partition, looked up when its log opens.
#[derive(Clone, Default)]
pub struct PartitionMetrics {
    /// Record bytes produced to it.
    pub bytes_in: Counter,
    /// Record bytes fetched from it.
    pub bytes_out: Counter,
}

/// Consumer-group series exported at most (peers create groups; the rest are left out).
pub const GROUP_SERIES_MAX: usize = 10_000;

/// Every metric of the broker.
pub struct Metrics {
    /// Per-API handles, by name (`invalid` for undecodable requests).
    pub apis: std::collections::HashMap<&'static str, ApiMetrics>,
    request_errors: Family<ErrorLabel, Counter>,
    /// SASL authentications, by mechanism and outcome.
    authentications: Family<AuthLabel, Counter>,
    /// Admin changes asked for, by operation and decision.
    admin_changes: Family<AdminLabel, Counter>,
    /// Messages and requests of peers refused because they spoke for another node (a Raft
    /// message's sender, a broker id, a follower id).
    pub peer_claims_refused: Counter,
    /// Mesh messages sent to another shard, by job kind.
    shard_calls: Family<JobLabel, Counter>,
    /// Partition reads run on owning shards, by kind (`fetch`, `replica_fetch`).
    partition_reads: Family<JobLabel, Counter>,
    /// Reads served from the tail cache.
    pub reads_memory: Counter,
    /// Reads served from segment files.
    pub reads_file: Counter,
    registry: Registry,
    /// Record bytes received in produce requests.
    pub bytes_in: Counter,
    /// Record bytes sent in fetch responses.
    pub bytes_out: Counter,
    /// Open client connections.
    pub connections: Gauge,
    /// Time fetches spent parked waiting for data (long polling).
    pub fetch_wait_seconds: Histogram,
    /// Connections that had to wait for the request budget.
    pub request_budget_waits: Counter,
    /// Time spent waiting for the request budget.
    pub request_budget_wait_seconds: Counter<f64, AtomicU64>,
    /// Per-partition record bytes in.
    pub partition_bytes_in: Family<PartitionLabel, Counter>,
    /// Per-partition record bytes out.
    pub partition_bytes_out: Family<PartitionLabel, Counter>,
    /// Log start offset per partition.
    pub log_start_offset: Family<PartitionLabel, Gauge>,
    /// Log end offset per partition.
    pub log_end_offset: Family<PartitionLabel, Gauge>,
    /// High watermark per partition.
    pub high_watermark: Family<PartitionLabel, Gauge>,
    /// Bytes on disk per partition.
    pub partition_size_bytes: Family<PartitionLabel, Gauge>,
    /// Bytes in the shard's tail caches (refreshed every second).
    pub tail_cache_bytes: Family<ShardLabel, Gauge>,
    /// Committed offset per group and partition.
    pub group_committed_offset: Family<GroupPartitionLabel, Gauge>,
    /// High watermark minus committed offset, per group and partition.
    pub group_lag: Family<GroupPartitionLabel, Gauge>,
    /// fdatasync calls, all partitions.
    pub fsyncs: Counter,
    /// Bytes the log cleaner read.
    pub cleaner_bytes_read: Counter,
    /// Bytes the log cleaner took off the disk (segment bytes before minus after).
    pub cleaner_bytes_reclaimed: Counter,
    /// Time in fdatasync, all partitions.
    pub fsync_seconds: Counter<f64, AtomicU64>,
    /// Cluster mode: the controller leader this node knows of (-1: none).
    pub cluster_controller_leader: Gauge,
    /// Cluster mode: the controller's term.
    pub cluster_controller_term: Gauge,
    /// Cluster mode: the metadata offset this broker applied.
    pub cluster_metadata_offset: Gauge,
    /// Cluster mode: 1 while this broker's lease holds (it may lead partitions).
    pub cluster_lease_valid: Gauge,
    /// Cluster mode: registered brokers alive and fenced.
    pub cluster_brokers_alive: Gauge,
    /// Cluster mode: registered brokers fenced.
    pub cluster_brokers_fenced: Gauge,
    /// Cluster mode: partitions without a leader.
    pub cluster_offline_partitions: Gauge,
    /// Cluster mode: partitions whose ISR is smaller than their replicas.
    pub cluster_under_replicated_partitions: Gauge,
    /// Cluster mode: ISR size per partition (from the metadata).
    pub partition_isr_size: Family<PartitionLabel, Gauge>,
    /// On leaders: how many offsets each follower is behind.
    pub follower_lag_offsets: Family<FollowerLabel, Gauge>,
    /// On leaders: milliseconds since each follower last had everything.
    pub follower_lag_ms: Family<FollowerLabel, Gauge>,
    /// Record bytes appended from leaders (this broker as a follower).
    pub replication_bytes_in: Counter,
    /// Record bytes sent to followers.
    pub replication_bytes_out: Counter,
    /// Record bytes appended from source clusters (cluster links).
    pub mirror_bytes_in: Counter,
    /// On mirror partition leaders: offsets not mirrored yet.
    pub mirror_lag_records: Family<PartitionLabel, Gauge>,
    /// On mirror partition leaders: milliseconds since the mirror last had everything.
    pub mirror_lag_ms: Family<PartitionLabel, Gauge>,
}

/// Label of per-follower metrics on a partition's leader.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FollowerLabel {
    /// Topic.
    pub topic: String,
    /// Partition index.
    pub partition: u32,
    /// The follower's node id.
    pub follower: u32,
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("keel");
        let requests = Family::<ApiLabel, Counter>::default();
        let request_errors = Family::<ErrorLabel, Counter>::default();
        let request_seconds = Family::<ApiLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_05, 2.0, 18))
        });
        let fetch_wait_seconds = Histogram::new(exponential_buckets(0.000_1, 2.0, 18));
        let fetch_reads = Family::<PathLabel, Counter>::default();
        let build_info = Family::<BuildLabel, Gauge>::default();
        build_info
            .get_or_create(&BuildLabel {
                version: env!("CARGO_PKG_VERSION").into(),
            })
            .set(1);
        let metrics = Metrics {
            apis: Default::default(),
            request_errors: request_errors.clone(),
            authentications: Family::default(),
            admin_changes: Family::default(),
            peer_claims_refused: Counter::default(),
            shard_calls: Family::default(),
            partition_reads: Family::default(),
            reads_memory: Counter::default(),
            reads_file: Counter::default(),
            registry: Registry::default(),
            bytes_in: Counter::default(),
            bytes_out: Counter::default(),
            connections: Gauge::default(),
            fetch_wait_seconds: fetch_wait_seconds.clone(),
            request_budget_waits: Counter::default(),
            request_budget_wait_seconds: Counter::default(),
            partition_bytes_in: Family::default(),
            partition_bytes_out: Family::default(),
            log_start_offset: Family::default(),
            log_end_offset: Family::default(),
            high_watermark: Family::default(),
            partition_size_bytes: Family::default(),
            tail_cache_bytes: Family::default(),
            group_committed_offset: Family::default(),
            group_lag: Family::default(),
            fsyncs: Counter::default(),
            cleaner_bytes_read: Counter::default(),
            cleaner_bytes_reclaimed: Counter::default(),
            fsync_seconds: Counter::default(),
            cluster_controller_leader: Gauge::default(),
            cluster_controller_term: Gauge::default(),
            cluster_metadata_offset: Gauge::default(),
            cluster_lease_valid: Gauge::default(),
            cluster_brokers_alive: Gauge::default(),
            cluster_brokers_fenced: Gauge::default(),
            cluster_offline_partitions: Gauge::default(),
            cluster_under_replicated_partitions: Gauge::default(),
            partition_isr_size: Family::default(),
            follower_lag_offsets: Family::default(),
            follower_lag_ms: Family::default(),
            replication_bytes_in: Counter::default(),
            replication_bytes_out: Counter::default(),
            mirror_bytes_in: Counter::default(),
            mirror_lag_records: Family::default(),
            mirror_lag_ms: Family::default(),
        };
        let m = &metrics;
        registry.register("build_info", "Keel version (value 1)", build_info);
        cluster::register(&mut registry, m);
        registry.register(
            "shard_calls",
            "Messages sent to another shard over the mesh, by job kind",
            m.shard_calls.clone(),
        );
        registry.register(
            "partition_reads",
            "Partition reads run on their owning shards, by kind",
            m.partition_reads.clone(),
        );
        registry.register("requests", "Requests handled", requests.clone());
        registry.register(
            "authentications",
            "SASL authentications, by mechanism and outcome (succeeded, failed)",
            m.authentications.clone(),
        );
        registry.register(
            "admin_changes",
            "Admin changes asked for (topics, partitions, records, configs, groups, users, ACLs, quotas, replicas), by operation and decision (allowed, denied)",
            m.admin_changes.clone(),
        );
        registry.register(
            "peer_claims_refused",
            "Peer messages refused for speaking for another node (Raft sender, broker id, follower id)",
            m.peer_claims_refused.clone(),
        );
        registry.register(
            "request_errors",
            "Requests answered with an error, by API and error (once per distinct error)",
            request_errors,
        );
        registry.register(
            "request_seconds",
            "Request handling time (long-poll waiting excluded)",
            request_seconds.clone(),
        );
        registry.register(
            "fetch_wait_seconds",
            "Time fetches waited for data (long polling)",
            fetch_wait_seconds,
        );
        registry.register("bytes_in", "Record bytes received", m.bytes_in.clone());
        registry.register("bytes_out", "Record bytes sent", m.bytes_out.clone());
        registry.register(
            "connections",
            "Open client connections",
            m.connections.clone(),
        );
        registry.register(
            "request_budget_waits",
            "Times a connection stopped reading until the request budget had room",
            m.request_budget_waits.clone(),
        );
        registry.register(
            "request_budget_wait_seconds",
            "Time connections waited for the request budget",
            m.request_budget_wait_seconds.clone(),
        );
        registry.register(
            "fetch_reads",
            "Partition reads by path (memory: tail cache, file: zero-copy)",
            fetch_reads.clone(),
        );
        registry.register(
            "partition_bytes_in",
            "Record bytes produced, per partition",
            m.partition_bytes_in.clone(),
        );
        registry.register(
            "partition_bytes_out",
            "Record bytes fetched, per partition",
            m.partition_bytes_out.clone(),
        );
        registry.register(
            "log_start_offset",
            "Log start offset",
            m.log_start_offset.clone(),
        );
        registry.register("log_end_offset", "Log end offset", m.log_end_offset.clone());
        registry.register(
            "high_watermark",
            "High watermark (readable end)",
            m.high_watermark.clone(),
        );
        registry.register(
            "partition_size_bytes",
            "Partition size on disk",
            m.partition_size_bytes.clone(),
        );
        registry.register(
            "tail_cache_bytes",
            "Bytes of recent batches the shard's logs keep in memory",
            m.tail_cache_bytes.clone(),
        );
        registry.register(
            "group_committed_offset",
            "Committed offset per consumer group and partition",
            m.group_committed_offset.clone(),
        );
        registry.register(
            "group_lag",
            "High watermark minus committed offset, per consumer group and partition",
            m.group_lag.clone(),
        );
        registry.register("fsyncs", "fdatasync calls", m.fsyncs.clone());
        registry.register(
            "cleaner_bytes_read",
            "Bytes the log cleaner read (compacted topics)",
            m.cleaner_bytes_read.clone(),
        );
        registry.register(
            "cleaner_bytes_reclaimed",
            "Segment bytes the log cleaner removed",
            m.cleaner_bytes_reclaimed.clone(),
        );
        registry.register(
            "fsync_seconds",
            "Time spent in fdatasync",
            m.fsync_seconds.clone(),
        );
        let mut names: Vec<&'static str> = keel_protocol::api::ApiKey::ALL
            .iter()
            .map(|(key, _, _)| key.name())
            .collect();
        names.push("invalid");
        names.extend(
            keel_kafka::versions::SUPPORTED
                .iter()
                .map(|(api, ..)| keel_kafka::versions::metric_name(*api)),
        );
        names.push("kafka_invalid");
        let apis = names
            .into_iter()
            .map(|api| {
                let label = ApiLabel { api: api.into() };
                let handles = ApiMetrics {
                    requests: requests.get_or_create(&label).clone(),
                    seconds: request_seconds.get_or_create(&label).clone(),
                };
                (api, handles)
            })
            .collect();
        let reads_memory = fetch_reads
            .get_or_create(&PathLabel {
                path: "memory".into(),
            })
            .clone();
        let reads_file = fetch_reads
            .get_or_create(&PathLabel {
                path: "file".into(),
            })
            .clone();
        Metrics {
            apis,
            reads_memory,
            reads_file,
            registry,
            ..metrics
        }
    }

    /// Counts a message sent to another shard.
    pub fn shard_call(&self, job: &'static str) {
        self.shard_calls.get_or_create(&JobLabel { job }).inc();
    }

    /// Counts a partition read run on its owning shard.
    pub fn partition_read(&self, job: &'static str) {
        self.partition_reads.get_or_create(&JobLabel { job }).inc();
    }

    /// The handles of API `name`.
    ///
    /// # Panics
    /// For a name that is not an API (a programming error).
    pub fn api(&self, name: &str) -> &ApiMetrics {
        self.apis.get(name).expect("every API has metrics")
    }

    /// Counts a request of `api` answered with `error`.
    pub fn request_error(&self, api: &str, error: ErrorCode) {
        self.request_errors
            .get_or_create(&ErrorLabel {
                api: api.into(),
                error: format!("{error:?}"),
                code: error as u16,
            })
            .inc();
    }

    /// Counts one SASL authentication with `mechanism` that `succeeded` or not.
    pub fn authentication(&self, mechanism: keel_auth::Mechanism, succeeded: bool) {
        let outcome = if succeeded { "succeeded" } else { "failed" };
        self.authentications
            .get_or_create(&AuthLabel {
                mechanism: mechanism.name(),
                outcome,
            })
            .inc();
    }

    /// Counts an admin change's authorization.
    pub fn admin_change(&self, operation: &'static str, outcome: &'static str) {
        self.admin_changes
            .get_or_create(&AdminLabel { operation, outcome })
            .inc();
    }

    /// The counters of one partition (created once, when its log opens).
    pub fn partition(&self, topic: &str, partition: u32) -> PartitionMetrics {
        let label = PartitionLabel {
            topic: topic.into(),
            partition,
        };
        PartitionMetrics {
            bytes_in: self.partition_bytes_in.get_or_create(&label).clone(),
            bytes_out: self.partition_bytes_out.get_or_create(&label).clone(),
        }
    }

    /// Drops a deleted partition's series.
    pub fn forget_partition(&self, topic: &str, partition: u32) {
        let label = PartitionLabel {
            topic: topic.into(),
            partition,
        };
        for family in [
            &self.log_start_offset,
            &self.log_end_offset,
            &self.high_watermark,
            &self.partition_size_bytes,
        ] {
            family.remove(&label);
        }
        self.partition_bytes_in.remove(&label);
        self.partition_bytes_out.remove(&label);
    }

    /// The Prometheus text exposition, process metrics included.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        // `# EOF` ends an OpenMetrics page: the process metrics go before it.
        let body = out.trim_end().trim_end_matches("# EOF").to_owned();
        format!("{body}{}# EOF\n", process_metrics())
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Resident memory, CPU time, open descriptors and start time of this process, in the
/// standard `process_*` names.
fn process_metrics() -> String {
    let mut out = String::new();
    // SAFETY: sysconf has no preconditions.
    let (page, ticks) = unsafe {
        (
            libc::sysconf(libc::_SC_PAGESIZE).max(1) as f64,
            libc::sysconf(libc::_SC_CLK_TCK).max(1) as f64,
        )
    };
    if let Ok(statm) = std::fs::read_to_string("/proc/self/statm") {
        if let Some(resident) = statm
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse::<f64>().ok())
        {
            out.push_str(&format!(
                "# HELP process_resident_memory_bytes Resident memory size in bytes.\n# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {}\n",
                resident * page
            ));
        }
    }
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // Fields after the command name (which may hold spaces) start at field 3.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok());
        if let (Some(user), Some(system)) = (field(14), field(15)) {
            out.push_str(&format!(
                "# HELP process_cpu_seconds_total Total user and system CPU time in seconds.\n# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total {}\n",
                (user + system) / ticks
            ));
        }
        if let (Some(start), Ok(uptime)) = (field(22), std::fs::read_to_string("/proc/uptime")) {
            let boot = uptime
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .map(|up| {
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0.0, |d| d.as_secs_f64())
                        - up
                });
            if let Some(boot) = boot {
                out.push_str(&format!(
                    "# HELP process_start_time_seconds Start time of the process since the epoch in seconds.\n# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds {}\n",
                    (boot + start / ticks).round()
                ));
            }
        }
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        out.push_str(&format!(
            "# HELP process_open_fds Number of open file descriptors.\n# TYPE process_open_fds gauge\nprocess_open_fds {}\n",
            fds.count()
        ));
    }
    out
}
