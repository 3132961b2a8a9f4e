//! Prometheus metrics shared by all shards (atomic counters, no locks), served as text on
//! `GET /metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Label of per-API metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabel {
    /// API name.
    pub api: String,
}

/// Label of per-partition metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabel {
    /// Topic.
    pub topic: String,
    /// Partition index.
    pub partition: u32,
}

/// Label of fetch read paths.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PathLabel {
    /// `memory` (tail cache) or `file` (zero-copy from a segment).
    pub path: String,
}

/// The counters of one API, looked up once so the request path touches only atomics.
#[derive(Clone)]
pub struct ApiMetrics {
    /// Requests handled.
    pub requests: Counter,
    /// Requests answered with an error.
    pub errors: Counter,
    /// Latency.
    pub seconds: Histogram,
}

/// Every metric of the broker.
pub struct Metrics {
    /// Per-API handles, by name (`invalid` for undecodable requests).
    pub apis: std::collections::HashMap<&'static str, ApiMetrics>,
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
    /// Log end offset per partition.
    pub log_end_offset: Family<PartitionLabel, Gauge>,
    /// Bytes on disk per partition.
    pub partition_size_bytes: Family<PartitionLabel, Gauge>,
    /// fdatasync calls, all partitions.
    pub fsyncs: Gauge,
    /// Time spent in fdatasync, all partitions, microseconds.
    pub fsync_us: Gauge,
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("keel");
        let requests = Family::<ApiLabel, Counter>::default();
        let request_errors = Family::<ApiLabel, Counter>::default();
        let request_seconds = Family::<ApiLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_05, 2.0, 18))
        });
        let bytes_in = Counter::default();
        let bytes_out = Counter::default();
        let connections = Gauge::default();
        let fetch_reads = Family::<PathLabel, Counter>::default();
        let log_end_offset = Family::<PartitionLabel, Gauge>::default();
        let partition_size_bytes = Family::<PartitionLabel, Gauge>::default();
        let fsyncs = Gauge::default();
        let fsync_us = Gauge::default();
        registry.register("requests", "Requests handled", requests.clone());
        registry.register(
            "request_errors",
            "Requests answered with an error",
            request_errors.clone(),
        );
        registry.register(
            "request_seconds",
            "Request latency",
            request_seconds.clone(),
        );
        registry.register("bytes_in", "Record bytes received", bytes_in.clone());
        registry.register(
            "bytes_out",
            "Record bytes sent to consumers",
            bytes_out.clone(),
        );
        registry.register(
            "connections",
            "Open client connections",
            connections.clone(),
        );
        registry.register(
            "fetch_reads",
            "Partition reads by path (memory: tail cache, file: zero-copy)",
            fetch_reads.clone(),
        );
        registry.register("log_end_offset", "Log end offset", log_end_offset.clone());
        registry.register(
            "partition_size_bytes",
            "Partition size on disk",
            partition_size_bytes.clone(),
        );
        registry.register("fsyncs", "fdatasync calls since start", fsyncs.clone());
        registry.register(
            "fsync_microseconds",
            "Time in fdatasync since start",
            fsync_us.clone(),
        );
        let mut names: Vec<&'static str> = keel_protocol::api::ApiKey::ALL
            .iter()
            .map(|(key, _, _)| key.name())
            .collect();
        names.push("invalid");
        let apis = names
            .into_iter()
            .map(|api| {
                let label = ApiLabel { api: api.into() };
                let handles = ApiMetrics {
                    requests: requests.get_or_create(&label).clone(),
                    errors: request_errors.get_or_create(&label).clone(),
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
            bytes_in,
            bytes_out,
            connections,
            log_end_offset,
            partition_size_bytes,
            fsyncs,
            fsync_us,
        }
    }

    /// The handles of API `name`.
    ///
    /// # Panics
    /// For a name that is not an API (a programming error).
    pub fn api(&self, name: &str) -> &ApiMetrics {
        self.apis.get(name).expect("every API has metrics")
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
