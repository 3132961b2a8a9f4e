//! What the broker allows consumer groups and their members (docs/limits.md); the
//! coordinator (`group/`) enforces them.

/// What the broker allows groups and members (docs/limits.md).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Shortest allowed session timeout (Kafka's `group.min.session.timeout.ms`).
    pub session_timeout_ms_min: u32,
    /// Longest allowed session timeout (Kafka's `group.max.session.timeout.ms`).
    pub session_timeout_ms_max: u32,
    /// Longest allowed rebalance timeout: how long a join may be parked.
    pub rebalance_timeout_ms_max: u32,
    /// Longest group id, in bytes; member ids are built from it and must fit the wire.
    pub group_id_bytes_max: usize,
    /// Groups with members at once (empty groups are forgotten; their offsets stay).
    pub groups_max: usize,
    /// Members of one group (Kafka's `group.max.size`).
    pub members_max: usize,
    /// Groups with committed offsets; a commit from one more is refused.
    pub offset_groups_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            session_timeout_ms_min: 1_000,
            session_timeout_ms_max: 300_000,
            rebalance_timeout_ms_max: 600_000,
            group_id_bytes_max: 1_024,
            groups_max: 10_000,
            members_max: 1_000,
            offset_groups_max: 100_000,
        }
    }
}
