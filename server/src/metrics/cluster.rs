//! The cluster-mode metrics' registration: the controller and broker agent's gauges,
//! replication (ISR sizes, follower lag, replicated bytes) and cluster links (mirrored
//! bytes, mirror lag). Their values are set where each is known (`cluster/`,
//! `replication/`, `mirror/`).

use super::Metrics;
use prometheus_client::registry::Registry;

/// Registers the cluster-mode metrics of `m` in `registry`.
pub(super) fn register(registry: &mut Registry, m: &Metrics) {
    for (name, help, gauge) in [
        (
            "cluster_controller_leader",
            "Controller leader known to this node (-1: none; cluster mode)",
            &m.cluster_controller_leader,
        ),
        (
            "cluster_controller_term",
            "Controller term (cluster mode)",
            &m.cluster_controller_term,
        ),
        (
            "cluster_metadata_offset",
            "Metadata offset this broker applied (cluster mode)",
            &m.cluster_metadata_offset,
        ),
        (
            "cluster_lease_valid",
            "1 while this broker's lease holds (cluster mode)",
            &m.cluster_lease_valid,
        ),
        (
            "cluster_brokers_alive",
            "Registered brokers alive (cluster mode)",
            &m.cluster_brokers_alive,
        ),
        (
            "cluster_brokers_fenced",
            "Registered brokers fenced (cluster mode)",
            &m.cluster_brokers_fenced,
        ),
        (
            "cluster_offline_partitions",
            "Partitions without a leader (cluster mode)",
            &m.cluster_offline_partitions,
        ),
        (
            "cluster_under_replicated_partitions",
            "Partitions whose ISR is smaller than their replica set (cluster mode)",
            &m.cluster_under_replicated_partitions,
        ),
    ] {
        registry.register(name, help, gauge.clone());
    }
    registry.register(
        "partition_isr_size",
        "In-sync replicas per partition (cluster mode)",
        m.partition_isr_size.clone(),
    );
    registry.register(
        "follower_lag_offsets",
        "Offsets each follower is behind its leader (on the leader)",
        m.follower_lag_offsets.clone(),
    );
    registry.register(
        "follower_lag_ms",
        "Milliseconds since each follower last had everything its leader had (on the leader)",
        m.follower_lag_ms.clone(),
    );
    registry.register(
        "mirror_bytes_in",
        "Record bytes appended from source clusters (cluster links)",
        m.mirror_bytes_in.clone(),
    );
    registry.register(
        "mirror_lag_records",
        "Offsets each mirror partition is behind its source (on its leader)",
        m.mirror_lag_records.clone(),
    );
    registry.register(
        "mirror_lag_ms",
        "Milliseconds since each mirror partition last had everything its source had",
        m.mirror_lag_ms.clone(),
    );
    registry.register(
        "replication_bytes_in",
        "Record bytes appended from partition leaders",
        m.replication_bytes_in.clone(),
    );
    registry.register(
        "replication_bytes_out",
        "Record bytes sent to followers",
        m.replication_bytes_out.clone(),
    );
}
