//! The APIs and versions the Kafka listener serves, and which versions are flexible.

use kafka_protocol::messages::ApiKey;

/// ApiVersions' key: its response header is always version 0.
pub const API_VERSIONS: i16 = ApiKey::ApiVersions as i16;

/// Every API served with its version range (docs/kafka-compatibility.md), and the first
/// flexible version of each.
pub const SUPPORTED: [(ApiKey, i16, i16, i16); 34] = [
    (ApiKey::Produce, 3, 10, 9),
    (ApiKey::Fetch, 4, 16, 12),
    (ApiKey::ListOffsets, 1, 8, 6),
    (ApiKey::Metadata, 0, 12, 9),
    (ApiKey::OffsetCommit, 2, 9, 8),
    (ApiKey::OffsetFetch, 1, 9, 6),
    (ApiKey::FindCoordinator, 0, 4, 3),
    (ApiKey::JoinGroup, 0, 9, 6),
    (ApiKey::Heartbeat, 0, 4, 4),
    (ApiKey::LeaveGroup, 0, 5, 4),
    (ApiKey::SyncGroup, 0, 5, 4),
    (ApiKey::DescribeGroups, 0, 5, 5),
    (ApiKey::ListGroups, 0, 4, 3),
    (ApiKey::ApiVersions, 0, 3, 3),
    (ApiKey::CreateTopics, 2, 7, 5),
    (ApiKey::DeleteTopics, 1, 6, 4),
    (ApiKey::DeleteRecords, 0, 2, 2),
    // Versions 0 and 1 left Kafka in 4.0 (KIP-896).
    (ApiKey::OffsetForLeaderEpoch, 2, 4, 4),
    (ApiKey::InitProducerId, 0, 4, 2),
    (ApiKey::DescribeConfigs, 1, 4, 4),
    (ApiKey::AlterConfigs, 0, 2, 2),
    (ApiKey::CreatePartitions, 0, 3, 2),
    (ApiKey::DeleteGroups, 0, 2, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1, 1),
    (ApiKey::DescribeCluster, 0, 1, 0),
    // After version 0 of SaslHandshake a client sends raw tokens outside Kafka framing
    // (before KIP-152), which the listener does not read (the connection closes); every
    // client since Kafka 1.0 uses version 1 and SaslAuthenticate. Version 0 is advertised
    // because librdkafka's feature table asks for it before it uses SASL at all.
    (ApiKey::SaslHandshake, 0, 1, i16::MAX),
    (ApiKey::SaslAuthenticate, 0, 2, 2),
    // Version 0 (no pattern types) left Kafka in 4.0.
    (ApiKey::DescribeAcls, 1, 3, 2),
    (ApiKey::CreateAcls, 1, 3, 2),
    (ApiKey::DeleteAcls, 1, 3, 2),
    (ApiKey::DescribeUserScramCredentials, 0, 0, 0),
    (ApiKey::AlterUserScramCredentials, 0, 0, 0),
    (ApiKey::DescribeClientQuotas, 0, 1, 1),
    (ApiKey::AlterClientQuotas, 0, 1, 1),
];

/// The name of a served API in metrics (`kafka_` and Kafka's name in snake case).
pub fn metric_name(api: ApiKey) -> &'static str {
    match api {
        ApiKey::Produce => "kafka_produce",
        ApiKey::Fetch => "kafka_fetch",
        ApiKey::ListOffsets => "kafka_list_offsets",
        ApiKey::Metadata => "kafka_metadata",
        ApiKey::OffsetCommit => "kafka_offset_commit",
        ApiKey::OffsetFetch => "kafka_offset_fetch",
        ApiKey::FindCoordinator => "kafka_find_coordinator",
        ApiKey::JoinGroup => "kafka_join_group",
        ApiKey::Heartbeat => "kafka_heartbeat",
        ApiKey::LeaveGroup => "kafka_leave_group",
        ApiKey::SyncGroup => "kafka_sync_group",
        ApiKey::DescribeGroups => "kafka_describe_groups",
        ApiKey::ListGroups => "kafka_list_groups",
        ApiKey::ApiVersions => "kafka_api_versions",
        ApiKey::CreateTopics => "kafka_create_topics",
        ApiKey::DeleteTopics => "kafka_delete_topics",
        ApiKey::DeleteRecords => "kafka_delete_records",
        ApiKey::OffsetForLeaderEpoch => "kafka_offset_for_leader_epoch",
        ApiKey::InitProducerId => "kafka_init_producer_id",
        ApiKey::DescribeConfigs => "kafka_describe_configs",
        ApiKey::AlterConfigs => "kafka_alter_configs",
        ApiKey::CreatePartitions => "kafka_create_partitions",
        ApiKey::DeleteGroups => "kafka_delete_groups",
        ApiKey::IncrementalAlterConfigs => "kafka_incremental_alter_configs",
        ApiKey::DescribeCluster => "kafka_describe_cluster",
        ApiKey::SaslHandshake => "kafka_sasl_handshake",
        ApiKey::SaslAuthenticate => "kafka_sasl_authenticate",
        ApiKey::DescribeAcls => "kafka_describe_acls",
        ApiKey::CreateAcls => "kafka_create_acls",
        ApiKey::DeleteAcls => "kafka_delete_acls",
        ApiKey::DescribeUserScramCredentials => "kafka_describe_user_scram_credentials",
        ApiKey::AlterUserScramCredentials => "kafka_alter_user_scram_credentials",
        ApiKey::DescribeClientQuotas => "kafka_describe_client_quotas",
        ApiKey::AlterClientQuotas => "kafka_alter_client_quotas",
        _ => "kafka_invalid",
    }
}

/// The served API named by `key` at `version`, if that version is served.
pub fn served(key: i16, version: i16) -> Option<ApiKey> {
    SUPPORTED
        .iter()
        .find(|(api, min, max, _)| *api as i16 == key && (*min..=*max).contains(&version))
        .map(|(api, ..)| *api)
}

/// Whether `version` of API `key` uses the flexible encoding (compact types, tagged fields,
/// header version 2). Versions not served are judged by Kafka's schemas where known.
pub fn flexible(key: i16, version: i16) -> bool {
    if let Some((_, _, _, first)) = SUPPORTED.iter().find(|(api, ..)| *api as i16 == key) {
        return version >= *first;
    }
    ApiKey::try_from(key).is_ok_and(|api| api.request_header_version(version) >= 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn served_ranges_are_within_the_crates_and_flexibility_agrees() {
        // Goal: nothing is advertised the response types cannot encode, and the first
        // flexible versions match Kafka's schemas (as the crate encodes them).
        for (api, min, max, _) in SUPPORTED {
            let range = api.valid_versions();
            assert!(range.min <= min && max <= range.max, "{api:?}");
            for version in min..=max {
                assert_eq!(
                    flexible(api as i16, version),
                    api.request_header_version(version) >= 2,
                    "{api:?} v{version}"
                );
            }
        }
        assert_eq!(served(1, 16), Some(ApiKey::Fetch));
        assert_eq!(served(1, 17), None);
        assert_eq!(served(999, 0), None);
    }
}
