//! The native protocol's security APIs: SASL (SaslHandshake, SaslAuthenticate, as Kafka's)
//! and the admin APIs for SCRAM users, ACLs and client quotas. Codes inside ACLs are
//! Kafka's (resource types, pattern types, operations, permissions), so both listeners
//! describe the same bindings the same way. Their codecs: `security_codec.rs`.

use super::*;

/// One ACL binding, with Kafka's codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acl {
    /// Kafka's resource type code (2 topic, 3 group, 4 cluster, 5 transactional id, 7 user).
    pub resource_type: i8,
    /// The resource name, a prefix, or `*`.
    pub name: String,
    /// 3 literal, 4 prefixed.
    pub pattern: i8,
    /// `User:NAME`.
    pub principal: String,
    /// A host or `*`.
    pub host: String,
    /// Kafka's operation code.
    pub operation: i8,
    /// 2 DENY, 3 ALLOW.
    pub permission: i8,
}

/// A filter over ACL bindings: codes 1 (ANY) and `None` strings match anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclFilter {
    /// Resource type code, 1 for any.
    pub resource_type: i8,
    /// The name, or any.
    pub name: Option<String>,
    /// 1 any, 2 match, 3 literal, 4 prefixed.
    pub pattern: i8,
    /// The principal, or any.
    pub principal: Option<String>,
    /// The host, or any.
    pub host: Option<String>,
    /// Operation code, 1 for any.
    pub operation: i8,
    /// Permission code, 1 for any.
    pub permission: i8,
}

/// A SCRAM credential to set: the client salts the password (as Kafka's
/// AlterUserScramCredentials), so the password never reaches the broker.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramUpsertion {
    /// The user.
    pub user: String,
    /// `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: String,
    /// PBKDF2 iterations.
    pub iterations: u32,
    /// The salt.
    pub salt: Bytes,
    /// PBKDF2(password, salt, iterations).
    pub salted_password: Bytes,
}

impl std::fmt::Debug for ScramUpsertion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramUpsertion")
            .field("user", &self.user)
            .field("mechanism", &self.mechanism)
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

/// A user as described: its mechanisms and iteration counts, never its keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserDescription {
    /// The user.
    pub user: String,
    /// Outcome (`ResourceNotFound` for a user asked for by name that has no credential).
    pub error: ErrorCode,
    /// (mechanism, iterations).
    pub credentials: Vec<(String, u32)>,
}

/// Who a quota entry is for, one part of it (Kafka's `/users/…/clients/…` entity).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QuotaName {
    /// Not part of the entity.
    Absent,
    /// The default user or client id.
    Default,
    /// This one.
    Named(String),
}

/// A quota entry: its entity and values (`None`: remove that value, in a change).
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaEntry {
    /// The user part.
    pub user: QuotaName,
    /// The client id part.
    pub client_id: QuotaName,
    /// (Kafka's key, e.g. `producer_byte_rate`, value).
    pub values: Vec<(String, Option<f64>)>,
}

/// Where a DeleteAcls filter stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteAclsResult {
    /// Outcome.
    pub error: ErrorCode,
    /// Detail for people (empty when none).
    pub message: String,
    /// The bindings removed.
    pub removed: Vec<Acl>,
}

/// A security request.
#[derive(Debug, Clone, PartialEq)]
pub enum SecurityRequest {
    /// Choose a SASL mechanism.
    SaslHandshake {
        /// `SCRAM-SHA-512`, `SCRAM-SHA-256` or `PLAIN`.
        mechanism: String,
    },
    /// The mechanism's next message.
    SaslAuthenticate {
        /// The message.
        auth_bytes: Bytes,
    },
    /// Users and their mechanisms (empty: every user).
    DescribeUsers {
        /// Names.
        users: Vec<String>,
    },
    /// Set and remove SCRAM credentials.
    AlterUsers {
        /// Credentials to set.
        upsertions: Vec<ScramUpsertion>,
        /// (user, mechanism) to remove.
        deletions: Vec<(String, String)>,
    },
    /// The bindings a filter matches.
    DescribeAcls {
        /// The filter.
        filter: AclFilter,
    },
    /// Add bindings.
    CreateAcls {
        /// The bindings.
        acls: Vec<Acl>,
    },
    /// Remove what each filter matches.
    DeleteAcls {
        /// The filters.
        filters: Vec<AclFilter>,
    },
    /// Every quota entry.
    DescribeQuotas,
    /// Set or remove quota values.
    AlterQuotas {
        /// The changes.
        changes: Vec<QuotaEntry>,
    },
}

/// A security response.
#[derive(Debug, Clone, PartialEq)]
pub enum SecurityResponse {
    /// The mechanisms the listener offers.
    SaslHandshake {
        /// Outcome (`UnsupportedSaslMechanism`, `IllegalSaslState`).
        error: ErrorCode,
        /// Offered mechanisms.
        mechanisms: Vec<String>,
    },
    /// The mechanism's next message, or why the exchange failed.
    SaslAuthenticate {
        /// Outcome (`SaslAuthenticationFailed`, `IllegalSaslState`).
        error: ErrorCode,
        /// Detail for people (empty when none).
        message: String,
        /// The mechanism's message.
        auth_bytes: Bytes,
        /// Once authenticated: the session ends after this long unless the client
        /// authenticates again (0: never).
        session_lifetime_ms: u64,
    },
    /// Users.
    DescribeUsers {
        /// Outcome for the whole request.
        error: ErrorCode,
        /// Per user.
        users: Vec<UserDescription>,
    },
    /// Per change, named by user.
    AlterUsers {
        /// Results.
        results: Vec<TopicResult>,
    },
    /// Bindings.
    DescribeAcls {
        /// Outcome for the whole request.
        error: ErrorCode,
        /// Detail for people.
        message: String,
        /// Bindings.
        acls: Vec<Acl>,
    },
    /// Per binding, in request order (named by its principal).
    CreateAcls {
        /// Results.
        results: Vec<TopicResult>,
    },
    /// Per filter.
    DeleteAcls {
        /// Results.
        results: Vec<DeleteAclsResult>,
    },
    /// Quota entries.
    DescribeQuotas {
        /// Outcome.
        error: ErrorCode,
        /// Entries.
        quotas: Vec<QuotaEntry>,
    },
    /// Per entry (named `user/client`).
    AlterQuotas {
        /// Results.
        results: Vec<TopicResult>,
    },
}
