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

/// Every metric of the broker.
pub struct Metrics {
    registry: Registry,
    /// Requests handled, per API.
    pub requests: Family<ApiLabel, Counter>,
    /// Requests answered with an error, per API.
    pub request_errors: Family<ApiLabel, Counter>,
    /// Request latency, per API.
    pub request_seconds: Family<ApiLabel, Histogram>,
    /// Record bytes received in produce requests.
    pub bytes_in: Counter,
    /// Record bytes sent in fetch responses.
    pub bytes_out: Counter,
    /// Open client connections.
    pub connections: Gauge,
    /// Partition reads by path.
    pub fetch_reads: Family<PathLabel, Counter>,
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
        Metrics {
            registry,
            requests,
            request_errors,
            request_seconds,
            bytes_in,
            bytes_out,
            connections,
            fetch_reads,
            log_end_offset,
            partition_size_bytes,
            fsyncs,
            fsync_us,
        }
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
