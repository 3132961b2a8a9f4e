//! What a connection may do, asked before a resource is served (by each Kafka API's
//! adapter, and for each native request in `native_acls.rs`): ACLs (`security::acls`) for
//! the connection's principal and host. Every decision on an admin change (create, delete,
//! alter, alter configs) is an audit line and a count in `keel_admin_changes_total`.

use super::Session;
use crate::shard::Shard;
use keel_auth::acl::{Operation, ResourceType, CLUSTER_NAME};

/// A connection's view of the ACLs.
pub struct Gate<'a> {
    shard: &'a Shard,
    session: &'a Session,
}

impl<'a> Gate<'a> {
    /// The gate of `session` on `shard`.
    pub fn new(shard: &'a Shard, session: &'a Session) -> Gate<'a> {
        Gate { shard, session }
    }

    /// The connection.
    pub fn session(&self) -> &'a Session {
        self.session
    }

    /// Whether `operation` on topic `name` is allowed.
    pub fn topic(&self, operation: Operation, name: &str) -> bool {
        self.may(operation, ResourceType::Topic, name)
    }

    /// Whether `operation` on group `name` is allowed.
    pub fn group(&self, operation: Operation, name: &str) -> bool {
        self.may(operation, ResourceType::Group, name)
    }

    /// Whether `operation` on the cluster is allowed.
    pub fn cluster(&self, operation: Operation) -> bool {
        self.may(operation, ResourceType::Cluster, CLUSTER_NAME)
    }

    /// Whether `operation` on some topic is allowed.
    pub fn any_topic(&self, operation: Operation) -> bool {
        self.session
            .may_any(&self.shard.security.acls, operation, ResourceType::Topic)
    }

    /// Whether `operation` on some group is allowed.
    pub fn any_group(&self, operation: Operation) -> bool {
        self.session
            .may_any(&self.shard.security.acls, operation, ResourceType::Group)
    }

    fn may(&self, operation: Operation, resource_type: ResourceType, name: &str) -> bool {
        let allowed = self
            .session
            .may(&self.shard.security.acls, operation, resource_type, name);
        if changes(operation) {
            // The audit trail of admin changes: who, from where, what, and the decision
            // (allowed also when no authorizer is on).
            let outcome = if allowed { "allowed" } else { "denied" };
            let principal = self.session.principal().map(|p| p.0).unwrap_or_default();
            tracing::info!(target: "keel::audit", peer = %self.session.peer, %principal, operation = operation.name(), resource = resource_type.name(), name = %crate::config::clip(name), outcome, "admin change");
            self.shard.metrics.admin_change(operation.name(), outcome);
        } else if !allowed {
            tracing::debug!(peer = %self.session.peer, principal = ?self.session.principal(), operation = operation.name(), resource = resource_type.name(), name, "denied");
        }
        allowed
    }
}

/// Whether `operation` changes what the cluster holds or how (topics, partitions, records,
/// configs, groups, users, ACLs, quotas, replicas): each decision on one is audited.
pub fn changes(operation: Operation) -> bool {
    matches!(
        operation,
        Operation::Create | Operation::Delete | Operation::Alter | Operation::AlterConfigs
    )
}
