//! The label sets of the broker's metric families.

use prometheus_client::encoding::EncodeLabelSet;

/// Label of per-API metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabel {
    /// API name.
    pub api: String,
}

/// Label of request errors: the API and the error answered.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabel {
    /// API name.
    pub api: String,
    /// Error name, e.g. `MessageTooLarge`.
    pub error: String,
    /// Its stable numeric code.
    pub code: u16,
}

/// Label of per-partition metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabel {
    /// Topic.
    pub topic: String,
    /// Partition index.
    pub partition: u32,
}

/// Label of per-group, per-partition metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupPartitionLabel {
    /// Group id.
    pub group: String,
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

/// Label of shard-job counters: the job's kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabel {
    /// `fetch`, `replica_fetch`, `poll`, `produce`, …
    pub job: &'static str,
}

/// Label of authentication counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthLabel {
    /// The SASL mechanism.
    pub mechanism: &'static str,
    /// `succeeded` or `failed`.
    pub outcome: &'static str,
}

/// Label of admin change counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AdminLabel {
    /// Kafka's operation name (`CREATE`, `DELETE`, `ALTER`, `ALTER_CONFIGS`).
    pub operation: &'static str,
    /// `allowed` or `denied`.
    pub outcome: &'static str,
}

/// Label of per-shard gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShardLabel {
    /// The shard's index.
    pub shard: u32,
}

/// Label of the build info metric.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabel {
    /// Crate version.
    pub version: String,
}
