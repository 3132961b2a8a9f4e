//! Native error codes as Kafka's: the same condition under Kafka's number, chosen so a
//! Kafka client reacts as it would to Kafka (retry, refresh metadata, rejoin, give up).

use keel_protocol::api::ErrorCode;

/// Kafka's UNKNOWN_SERVER_ERROR.
pub const UNKNOWN_SERVER_ERROR: i16 = -1;
/// No error.
pub const NONE: i16 = 0;
/// Kafka's UNSUPPORTED_SASL_MECHANISM.
pub const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
/// Kafka's ILLEGAL_SASL_STATE.
pub const ILLEGAL_SASL_STATE: i16 = 34;
/// Kafka's TOPIC_AUTHORIZATION_FAILED.
pub const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
/// Kafka's GROUP_AUTHORIZATION_FAILED.
pub const GROUP_AUTHORIZATION_FAILED: i16 = 30;
/// Kafka's CLUSTER_AUTHORIZATION_FAILED.
pub const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;
/// Kafka's SECURITY_DISABLED (ACL requests while no authorizer is configured).
pub const SECURITY_DISABLED: i16 = 54;
/// Kafka's RESOURCE_NOT_FOUND.
pub const RESOURCE_NOT_FOUND: i16 = 91;
/// Kafka's DUPLICATE_RESOURCE.
pub const DUPLICATE_RESOURCE: i16 = 92;
/// Kafka's UNACCEPTABLE_CREDENTIAL.
pub const UNACCEPTABLE_CREDENTIAL: i16 = 93;
/// Kafka's SASL_AUTHENTICATION_FAILED.
pub const SASL_AUTHENTICATION_FAILED: i16 = 58;
/// Kafka's UNSUPPORTED_VERSION.
pub const UNSUPPORTED_VERSION: i16 = 35;
/// Kafka's INVALID_REQUEST.
pub const INVALID_REQUEST: i16 = 42;
/// Kafka's CORRUPT_MESSAGE.
pub const CORRUPT_MESSAGE: i16 = 2;
/// Kafka's UNKNOWN_TOPIC_OR_PARTITION.
pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
/// Kafka's UNKNOWN_TOPIC_ID.
pub const UNKNOWN_TOPIC_ID: i16 = 100;
/// Kafka's NOT_COORDINATOR.
pub const NOT_COORDINATOR: i16 = 16;
/// Kafka's INVALID_CONFIG.
pub const INVALID_CONFIG: i16 = 40;
/// Kafka's TRANSACTIONAL_ID_AUTHORIZATION_FAILED is not used: transactions answer this.
pub const TRANSACTIONS_UNSUPPORTED: i16 = UNSUPPORTED_VERSION;
/// Kafka's INVALID_GROUP_ID.
pub const INVALID_GROUP_ID: i16 = 24;
/// Kafka's GROUP_ID_NOT_FOUND.
pub const GROUP_ID_NOT_FOUND: i16 = 69;
/// Kafka's NON_EMPTY_GROUP.
pub const NON_EMPTY_GROUP: i16 = 68;
/// Kafka's INCONSISTENT_GROUP_PROTOCOL.
pub const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
/// Kafka's MEMBER_ID_REQUIRED.
pub const MEMBER_ID_REQUIRED: i16 = 79;
/// Kafka's FENCED_INSTANCE_ID.
pub const FENCED_INSTANCE_ID: i16 = 82;
/// Kafka's UNKNOWN_MEMBER_ID.
pub const UNKNOWN_MEMBER_ID: i16 = 25;
/// Kafka's ILLEGAL_GENERATION.
pub const ILLEGAL_GENERATION: i16 = 22;
/// Kafka's REBALANCE_IN_PROGRESS.
pub const REBALANCE_IN_PROGRESS: i16 = 27;
/// Kafka's OFFSET_OUT_OF_RANGE.
pub const OFFSET_OUT_OF_RANGE: i16 = 1;
/// Kafka's INVALID_PARTITIONS.
pub const INVALID_PARTITIONS: i16 = 37;
/// Kafka's POLICY_VIOLATION.
pub const POLICY_VIOLATION: i16 = 44;
/// Kafka's COORDINATOR_NOT_AVAILABLE.
pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
/// Kafka's DUPLICATE_SEQUENCE_NUMBER.
pub const DUPLICATE_SEQUENCE_NUMBER: i16 = 46;

/// Kafka's code for a native error.
pub fn kafka_code(error: ErrorCode) -> i16 {
    match error {
        ErrorCode::None => 0,
        ErrorCode::TopicAuthorizationFailed => TOPIC_AUTHORIZATION_FAILED,
        ErrorCode::GroupAuthorizationFailed => GROUP_AUTHORIZATION_FAILED,
        ErrorCode::ClusterAuthorizationFailed => CLUSTER_AUTHORIZATION_FAILED,
        ErrorCode::Unknown | ErrorCode::TooManyConnections => UNKNOWN_SERVER_ERROR,
        ErrorCode::CorruptMessage => CORRUPT_MESSAGE,
        ErrorCode::UnknownTopicOrPartition => UNKNOWN_TOPIC_OR_PARTITION,
        ErrorCode::InvalidTopic => 17,
        ErrorCode::TopicAlreadyExists => 36,
        ErrorCode::InvalidPartitions => INVALID_PARTITIONS,
        ErrorCode::InvalidReplicationFactor => 38,
        ErrorCode::InvalidConfig => INVALID_CONFIG,
        ErrorCode::MessageTooLarge => 10,
        ErrorCode::OffsetOutOfRange => OFFSET_OUT_OF_RANGE,
        ErrorCode::UnsupportedVersion | ErrorCode::UnknownApi => UNSUPPORTED_VERSION,
        ErrorCode::InvalidRequest | ErrorCode::FrameTooLarge | ErrorCode::InvalidClientId => {
            INVALID_REQUEST
        }
        ErrorCode::RequestTimedOut => 7,
        ErrorCode::StorageError => 56,
        ErrorCode::TooManyPartitions => POLICY_VIOLATION,
        ErrorCode::InvalidRequiredAcks => 21,
        // Retriable: clients refresh metadata and retry elsewhere or later.
        ErrorCode::ShuttingDown | ErrorCode::NotLeaderOrFollower => 6,
        ErrorCode::UnknownMemberId => UNKNOWN_MEMBER_ID,
        ErrorCode::IllegalGeneration => ILLEGAL_GENERATION,
        ErrorCode::RebalanceInProgress => REBALANCE_IN_PROGRESS,
        ErrorCode::InvalidGroupId => INVALID_GROUP_ID,
        ErrorCode::InvalidSessionTimeout | ErrorCode::InvalidRebalanceTimeout => 26,
        ErrorCode::UnknownAssignor => INCONSISTENT_GROUP_PROTOCOL,
        ErrorCode::OutOfOrderSequence => 45,
        ErrorCode::InvalidProducerEpoch => 47,
        ErrorCode::GroupMaxSizeReached => 81,
        ErrorCode::TooManyGroups => COORDINATOR_NOT_AVAILABLE,
        ErrorCode::LeaderNotAvailable => 5,
        ErrorCode::NotController => 41,
        ErrorCode::NotCoordinator => NOT_COORDINATOR,
        ErrorCode::FencedLeaderEpoch => 74,
        ErrorCode::UnknownLeaderEpoch => 75,
        ErrorCode::NotEnoughReplicas => 19,
        ErrorCode::NotEnoughReplicasAfterAppend => 20,
        ErrorCode::CoordinatorLoadInProgress => 14,
        ErrorCode::CoordinatorNotAvailable => COORDINATOR_NOT_AVAILABLE,
        ErrorCode::InvalidRecord => 87,
        ErrorCode::SaslAuthenticationFailed => SASL_AUTHENTICATION_FAILED,
        ErrorCode::UnsupportedSaslMechanism => UNSUPPORTED_SASL_MECHANISM,
        ErrorCode::IllegalSaslState => ILLEGAL_SASL_STATE,
        ErrorCode::SecurityDisabled => SECURITY_DISABLED,
        ErrorCode::ResourceNotFound => RESOURCE_NOT_FOUND,
        ErrorCode::UnacceptableCredential => UNACCEPTABLE_CREDENTIAL,
        ErrorCode::DuplicateResource => DUPLICATE_RESOURCE,
        ErrorCode::InvalidQuota => INVALID_REQUEST,
        // Kafka has no read-only-topic code yet (KIP-1279 proposes one): a non-retriable
        // refusal, with the native message beside it where the version carries one.
        ErrorCode::ReadOnlyTopic => INVALID_REQUEST,
        ErrorCode::LinkNotFound => RESOURCE_NOT_FOUND,
        ErrorCode::LinkExists => DUPLICATE_RESOURCE,
        ErrorCode::InvalidLink => INVALID_REQUEST,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_native_error_has_a_kafka_code() {
        // Goal: no native code reaches a Kafka client as "no error" by accident.
        for code in 1..=43u16 {
            let error = ErrorCode::from_u16(code);
            assert_ne!(kafka_code(error), 0, "{error:?}");
        }
        assert_eq!(kafka_code(ErrorCode::NotLeaderOrFollower), 6);
    }
}
