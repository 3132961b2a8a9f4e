//! Kafka's authorization model, as its standard authorizer decides: ACL bindings of a
//! principal and host to an operation on resources named literally or by prefix, ALLOW or
//! DENY; DENY beats ALLOW; READ, WRITE, DELETE and ALTER imply DESCRIBE, ALTER_CONFIGS
//! implies DESCRIBE_CONFIGS; super users may do anything; a resource no ACL matches is
//! denied unless `allow.everyone.if.no.acl.found`. Codes are Kafka's wire values.

/// A resource type (Kafka's `ResourceType` codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceType {
    /// Any type (filters only).
    Any = 1,
    /// A topic.
    Topic = 2,
    /// A consumer group.
    Group = 3,
    /// The cluster (its name is `kafka-cluster`).
    Cluster = 4,
    /// A transactional id.
    TransactionalId = 5,
    /// A delegation token.
    DelegationToken = 6,
    /// A user (for their SCRAM credentials and quotas).
    User = 7,
}

/// How a binding's name matches (Kafka's `PatternType` codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PatternType {
    /// Any pattern (filters only).
    Any = 1,
    /// Bindings that match a name: literal, wildcard or prefixed (filters only).
    Match = 2,
    /// The name itself, or `*` for every name.
    Literal = 3,
    /// Every name starting with it.
    Prefixed = 4,
}

/// An operation (Kafka's `AclOperation` codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    /// Any operation (filters only).
    Any = 1,
    /// Every operation.
    All = 2,
    /// Read.
    Read = 3,
    /// Write.
    Write = 4,
    /// Create.
    Create = 5,
    /// Delete.
    Delete = 6,
    /// Alter.
    Alter = 7,
    /// Describe.
    Describe = 8,
    /// Cluster actions (brokers' own requests).
    ClusterAction = 9,
    /// Describe configs.
    DescribeConfigs = 10,
    /// Alter configs.
    AlterConfigs = 11,
    /// Idempotent writes.
    IdempotentWrite = 12,
    /// Create delegation tokens.
    CreateTokens = 13,
    /// Describe delegation tokens.
    DescribeTokens = 14,
}

/// ALLOW or DENY (Kafka's `AclPermissionType` codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    /// Any (filters only).
    Any = 1,
    /// Deny: beats every ALLOW.
    Deny = 2,
    /// Allow.
    Allow = 3,
}

macro_rules! codes {
    ($type:ident { $($variant:ident = $name:literal),* $(,)? }) => {
        impl $type {
            /// The value with Kafka's wire code `code`.
            pub fn from_code(code: i8) -> Option<$type> {
                [$($type::$variant),*].into_iter().find(|v| *v as i8 == code)
            }

            /// Kafka's name (`READ`, `TOPIC`, …), as the `keel` tool and logs show it.
            pub fn name(self) -> &'static str {
                match self { $($type::$variant => $name),* }
            }

            /// The value named `name` (Kafka's names, any case).
            pub fn parse(name: &str) -> Option<$type> {
                let wanted = name.to_ascii_uppercase().replace('-', "_");
                [$($type::$variant),*].into_iter().find(|v| v.name() == wanted)
            }
        }
    };
}

codes!(ResourceType { Any = "ANY", Topic = "TOPIC", Group = "GROUP", Cluster = "CLUSTER",
    TransactionalId = "TRANSACTIONAL_ID", DelegationToken = "DELEGATION_TOKEN", User = "USER" });
codes!(PatternType { Any = "ANY", Match = "MATCH", Literal = "LITERAL", Prefixed = "PREFIXED" });
codes!(Operation { Any = "ANY", All = "ALL", Read = "READ", Write = "WRITE", Create = "CREATE",
    Delete = "DELETE", Alter = "ALTER", Describe = "DESCRIBE", ClusterAction = "CLUSTER_ACTION",
    DescribeConfigs = "DESCRIBE_CONFIGS", AlterConfigs = "ALTER_CONFIGS",
    IdempotentWrite = "IDEMPOTENT_WRITE", CreateTokens = "CREATE_TOKENS",
    DescribeTokens = "DESCRIBE_TOKENS" });
codes!(Permission { Any = "ANY", Deny = "DENY", Allow = "ALLOW" });

/// The cluster resource's name.
pub const CLUSTER_NAME: &str = "kafka-cluster";
/// The name of a literal binding for every resource of its type, and the principal or host
/// of a binding for everyone.
pub const WILDCARD: &str = "*";

/// One ACL: `principal` from `host` may (ALLOW) or may not (DENY) do `operation` on the
/// resources of `resource_type` that `pattern` and `name` select.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AclBinding {
    /// The resource type (not `Any`).
    pub resource_type: ResourceType,
    /// The name, a prefix, or `*`.
    pub name: String,
    /// Literal or prefixed.
    pub pattern: PatternType,
    /// `User:NAME` or `User:*`.
    pub principal: String,
    /// An address or `*`.
    pub host: String,
    /// The operation (not `Any`).
    pub operation: Operation,
    /// ALLOW or DENY.
    pub permission: Permission,
}

impl AclBinding {
    /// Why this binding cannot be stored, if it cannot: the filter-only values, an empty
    /// name, or a principal that is not `User:…`.
    pub fn invalid(&self) -> Option<&'static str> {
        if self.resource_type == ResourceType::Any
            || !matches!(self.pattern, PatternType::Literal | PatternType::Prefixed)
            || self.operation == Operation::Any
            || self.permission == Permission::Any
        {
            return Some("ANY and MATCH are for filters, not bindings");
        }
        if self.name.is_empty() || self.host.is_empty() {
            return Some("the resource name and the host must not be empty");
        }
        if !self.principal.starts_with("User:") || self.principal.len() == "User:".len() {
            return Some("the principal must be User:NAME or User:*");
        }
        if self.resource_type == ResourceType::Cluster && self.name != CLUSTER_NAME {
            return Some("the cluster resource is named kafka-cluster");
        }
        None
    }

    /// Whether the binding selects the resource `name` of `resource_type`.
    fn selects(&self, resource_type: ResourceType, name: &str) -> bool {
        self.resource_type == resource_type
            && match self.pattern {
                PatternType::Literal => self.name == name || self.name == WILDCARD,
                PatternType::Prefixed => name.starts_with(&self.name),
                PatternType::Any | PatternType::Match => false,
            }
    }

    /// Whether the binding applies to `principal` connecting from `host`.
    fn applies_to(&self, principal: &str, host: &str) -> bool {
        (self.principal == principal || self.principal == "User:*")
            && (self.host == host || self.host == WILDCARD)
    }
}

/// A filter over bindings (DescribeAcls and DeleteAcls): `None` matches anything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AclFilter {
    /// The resource type, or `Any`.
    pub resource_type: Option<ResourceType>,
    /// The name (with `pattern`).
    pub name: Option<String>,
    /// `Any`, `Match` (bindings that would select `name`), `Literal` or `Prefixed`.
    pub pattern: Option<PatternType>,
    /// The principal.
    pub principal: Option<String>,
    /// The host.
    pub host: Option<String>,
    /// The operation, or `Any`.
    pub operation: Option<Operation>,
    /// The permission, or `Any`.
    pub permission: Option<Permission>,
}

impl AclFilter {
    /// Whether `binding` passes the filter.
    pub fn matches(&self, binding: &AclBinding) -> bool {
        let any =
            |value: Option<i8>, any: i8, actual: i8| value.is_none_or(|v| v == any || v == actual);
        if !any(
            self.resource_type.map(|t| t as i8),
            1,
            binding.resource_type as i8,
        ) || !any(self.operation.map(|o| o as i8), 1, binding.operation as i8)
            || !any(
                self.permission.map(|p| p as i8),
                1,
                binding.permission as i8,
            )
            || self
                .principal
                .as_ref()
                .is_some_and(|p| *p != binding.principal)
            || self.host.as_ref().is_some_and(|h| *h != binding.host)
        {
            return false;
        }
        match (self.pattern.unwrap_or(PatternType::Any), &self.name) {
            (PatternType::Match, Some(name)) => binding.selects(binding.resource_type, name),
            (PatternType::Any | PatternType::Match, name) => {
                name.as_ref().is_none_or(|n| *n == binding.name)
            }
            (pattern, name) => {
                pattern == binding.pattern && name.as_ref().is_none_or(|n| *n == binding.name)
            }
        }
    }
}

/// The ACLs and what decides with them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Authorizer {
    bindings: std::collections::BTreeSet<AclBinding>,
    /// Principals allowed everything.
    pub super_users: Vec<String>,
    /// Whether a resource no binding selects is open to everyone (Kafka's
    /// `allow.everyone.if.no.acl.found`; off).
    pub allow_if_no_acl: bool,
}

impl Authorizer {
    /// An authorizer with `bindings`.
    pub fn new(bindings: impl IntoIterator<Item = AclBinding>, super_users: Vec<String>) -> Self {
        Authorizer {
            bindings: bindings.into_iter().collect(),
            super_users,
            allow_if_no_acl: false,
        }
    }

    /// Every binding, ordered.
    pub fn bindings(&self) -> impl Iterator<Item = &AclBinding> {
        self.bindings.iter()
    }

    /// Adds a binding; whether it was new.
    pub fn add(&mut self, binding: AclBinding) -> bool {
        self.bindings.insert(binding)
    }

    /// Removes the bindings `filter` matches, returning them.
    pub fn remove(&mut self, filter: &AclFilter) -> Vec<AclBinding> {
        let removed: Vec<AclBinding> = self
            .bindings
            .iter()
            .filter(|b| filter.matches(b))
            .cloned()
            .collect();
        for binding in &removed {
            self.bindings.remove(binding);
        }
        removed
    }

    /// Whether `principal` from `host` may do `operation` on `name` of `resource_type`.
    pub fn allows(
        &self,
        principal: &str,
        host: &str,
        operation: Operation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool {
        if self.super_users.iter().any(|s| s == principal) {
            return true;
        }
        let mut selecting = self
            .bindings
            .iter()
            .filter(|b| b.selects(resource_type, name))
            .peekable();
        if selecting.peek().is_none() {
            return self.allow_if_no_acl;
        }
        let mut allowed = false;
        for binding in selecting.filter(|b| b.applies_to(principal, host)) {
            match binding.permission {
                Permission::Deny
                    if binding.operation == operation || binding.operation == Operation::All =>
                {
                    return false
                }
                Permission::Allow if grants(binding.operation, operation) => allowed = true,
                _ => {}
            }
        }
        allowed
    }

    /// Whether `principal` may do `operation` on some resource of `resource_type` (Kafka's
    /// `authorizeByResourceType`: an ALLOW that applies and no DENY of every name).
    pub fn allows_any(
        &self,
        principal: &str,
        host: &str,
        operation: Operation,
        resource_type: ResourceType,
    ) -> bool {
        if self.super_users.iter().any(|s| s == principal) {
            return true;
        }
        let applying = || {
            self.bindings
                .iter()
                .filter(move |b| b.resource_type == resource_type && b.applies_to(principal, host))
        };
        let denied_everywhere = applying().any(|b| {
            b.permission == Permission::Deny
                && (b.operation == operation || b.operation == Operation::All)
                && b.pattern == PatternType::Literal
                && b.name == WILDCARD
        });
        !denied_everywhere
            && applying()
                .any(|b| b.permission == Permission::Allow && grants(b.operation, operation))
    }
}

/// Whether an ALLOW of `granted` allows `wanted`: itself, ALL, and Kafka's implications.
fn grants(granted: Operation, wanted: Operation) -> bool {
    use Operation::*;
    granted == wanted
        || granted == All
        || (wanted == Describe && matches!(granted, Read | Write | Delete | Alter))
        || (wanted == DescribeConfigs && granted == AlterConfigs)
}

#[cfg(test)]
#[path = "acl_tests.rs"]
mod tests;
