//! Each served version of each request, encoded by kafka-protocol (Kafka's schemas) and
//! decoded here: every byte consumed, the fields the broker uses intact.

use super::{decode, KafkaRequest};
use crate::frame::parse_header;
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::create_partitions_request::*;
use kafka_protocol::messages::create_topics_request::*;
use kafka_protocol::messages::delete_records_request::*;
use kafka_protocol::messages::delete_topics_request::*;
use kafka_protocol::messages::describe_configs_request::*;
use kafka_protocol::messages::fetch_request::FetchTopic;
use kafka_protocol::messages::join_group_request::*;
use kafka_protocol::messages::leave_group_request::*;
use kafka_protocol::messages::list_offsets_request::*;
use kafka_protocol::messages::metadata_request::*;
use kafka_protocol::messages::offset_commit_request::*;
use kafka_protocol::messages::offset_fetch_request::*;
use kafka_protocol::messages::offset_for_leader_epoch_request::*;
use kafka_protocol::messages::produce_request::*;
use kafka_protocol::messages::sync_group_request::*;
use kafka_protocol::messages::{
    AlterConfigsRequest, ApiKey, ApiVersionsRequest, DeleteGroupsRequest, DescribeClusterRequest,
    DescribeGroupsRequest, FetchRequest, FindCoordinatorRequest, GroupId, HeartbeatRequest,
    IncrementalAlterConfigsRequest, InitProducerIdRequest, ListGroupsRequest,
    OffsetForLeaderEpochRequest, RequestHeader, TopicName,
};
use kafka_protocol::protocol::{Encodable, StrBytes};

fn s(text: &'static str) -> StrBytes {
    StrBytes::from_static_str(text)
}

fn round_trip<T: Encodable>(api: ApiKey, version: i16, request: &T) -> KafkaRequest {
    let mut body = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(9)
        .with_client_id(Some(s("test")))
        .encode(&mut body, api.request_header_version(version))
        .unwrap();
    request.encode(&mut body, version).unwrap();
    let (header, mut r) = parse_header(body.freeze()).unwrap();
    assert_eq!(
        (header.api_key, header.api_version, header.correlation_id),
        (api as i16, version, 9)
    );
    let decoded =
        decode(api, version, &mut r).unwrap_or_else(|e| panic!("{api:?} v{version}: {e}"));
    assert_eq!(r.remaining(), 0, "{api:?} v{version}: bytes left");
    decoded
}

fn versions(api: ApiKey) -> std::ops::RangeInclusive<i16> {
    let (_, min, max, _) = crate::versions::SUPPORTED
        .iter()
        .find(|(a, ..)| *a == api)
        .copied()
        .unwrap();
    min..=max
}

#[test]
fn produce_every_version() {
    let records = Bytes::from_static(b"batch bytes");
    for v in versions(ApiKey::Produce) {
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(1500)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(s("orders")))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(3)
                    .with_records(Some(records.clone()))])]);
        let KafkaRequest::Produce(p) = round_trip(ApiKey::Produce, v, &request) else {
            panic!()
        };
        assert_eq!((p.acks, p.timeout_ms), (-1, 1500));
        assert_eq!(
            p.topics,
            [("orders".into(), vec![(3, Some(records.clone()))])]
        );
    }
}

#[test]
fn fetch_every_version() {
    let id = crate::fetch::topic_id("orders");
    for v in versions(ApiKey::Fetch) {
        let mut topic = FetchTopic::default().with_partitions(vec![
            kafka_protocol::messages::fetch_request::FetchPartition::default()
                .with_partition(2)
                .with_fetch_offset(77)
                .with_partition_max_bytes(1 << 20),
        ]);
        topic = if v >= 13 {
            topic.with_topic_id(uuid::Uuid::from_bytes(id))
        } else {
            topic.with_topic(TopicName(s("orders")))
        };
        let mut request = FetchRequest::default()
            .with_max_wait_ms(500)
            .with_min_bytes(1)
            .with_max_bytes(50 << 20)
            .with_topics(vec![topic]);
        if v >= 7 {
            request = request.with_session_id(0).with_session_epoch(-1);
        }
        let KafkaRequest::Fetch(f) = round_trip(ApiKey::Fetch, v, &request) else {
            panic!()
        };
        assert_eq!(
            (f.max_wait_ms, f.min_bytes, f.max_bytes),
            (500, 1, 50 << 20)
        );
        let t = &f.topics[0];
        if v >= 13 {
            assert_eq!(t.id, id);
        } else {
            assert_eq!(t.name, "orders");
        }
        assert_eq!(t.partitions[0].fetch_offset, 77);
        assert_eq!(t.partitions[0].partition, 2);
    }
}

#[test]
fn metadata_every_version() {
    for v in versions(ApiKey::Metadata) {
        let request = MetadataRequest::default().with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(TopicName(s("orders")))),
        ]));
        let KafkaRequest::Metadata(m) = round_trip(ApiKey::Metadata, v, &request) else {
            panic!()
        };
        assert_eq!(m.topics, Some(vec!["orders".to_string()]));
        if v >= 1 {
            let all = MetadataRequest::default().with_topics(None);
            let KafkaRequest::Metadata(m) = round_trip(ApiKey::Metadata, v, &all) else {
                panic!()
            };
            assert_eq!(m.topics, None);
        }
    }
}

#[test]
fn list_offsets_and_delete_records_every_version() {
    for v in versions(ApiKey::ListOffsets) {
        let request = ListOffsetsRequest::default().with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(s("t")))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(1)
                .with_timestamp(-2)])]);
        let KafkaRequest::ListOffsets(l) = round_trip(ApiKey::ListOffsets, v, &request) else {
            panic!()
        };
        assert_eq!(l.topics, [("t".into(), vec![(1, -2)])]);
    }
    for v in versions(ApiKey::DeleteRecords) {
        let request = DeleteRecordsRequest::default()
            .with_topics(vec![DeleteRecordsTopic::default()
                .with_name(TopicName(s("t")))
                .with_partitions(vec![DeleteRecordsPartition::default()
                    .with_partition_index(0)
                    .with_offset(10)])])
            .with_timeout_ms(100);
        let KafkaRequest::DeleteRecords(d) = round_trip(ApiKey::DeleteRecords, v, &request) else {
            panic!()
        };
        assert_eq!(d.topics, [("t".into(), vec![(0, 10)])]);
    }
    for v in versions(ApiKey::OffsetForLeaderEpoch) {
        let request = OffsetForLeaderEpochRequest::default()
            .with_replica_id(kafka_protocol::messages::BrokerId(-1))
            .with_topics(vec![OffsetForLeaderTopic::default()
                .with_topic(TopicName(s("t")))
                .with_partitions(vec![OffsetForLeaderPartition::default()
                    .with_partition(2)
                    .with_current_leader_epoch(5)
                    .with_leader_epoch(3)])]);
        let KafkaRequest::OffsetForLeaderEpoch(e) =
            round_trip(ApiKey::OffsetForLeaderEpoch, v, &request)
        else {
            panic!()
        };
        assert_eq!(e.topics, [("t".into(), vec![(2, 5, 3)])]);
    }
    for v in versions(ApiKey::InitProducerId) {
        let request = InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(100);
        let KafkaRequest::InitProducerId(i) = round_trip(ApiKey::InitProducerId, v, &request)
        else {
            panic!()
        };
        assert_eq!(i.transactional_id, None);
    }
}

#[test]
fn group_requests_every_version() {
    let metadata = Bytes::from_static(b"\0\0subscription");
    for v in versions(ApiKey::JoinGroup) {
        let mut request = JoinGroupRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_session_timeout_ms(10_000)
            .with_member_id(s("m-1"))
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(s("range"))
                .with_metadata(metadata.clone())]);
        if v >= 1 {
            request = request.with_rebalance_timeout_ms(20_000);
        }
        if v >= 5 {
            request = request.with_group_instance_id(Some(s("static-1")));
        }
        let KafkaRequest::JoinGroup(j) = round_trip(ApiKey::JoinGroup, v, &request) else {
            panic!()
        };
        assert_eq!((j.group.as_str(), j.member_id.as_str()), ("g", "m-1"));
        assert_eq!(j.protocols, [("range".into(), metadata.clone())]);
        assert_eq!(j.rebalance_timeout_ms, if v >= 1 { 20_000 } else { 10_000 });
        assert_eq!(j.group_instance_id.is_some(), v >= 5);
    }
    for v in versions(ApiKey::SyncGroup) {
        let request = SyncGroupRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_generation_id(4)
            .with_member_id(s("m-1"))
            .with_assignments(vec![SyncGroupRequestAssignment::default()
                .with_member_id(s("m-1"))
                .with_assignment(Bytes::from_static(b"a"))]);
        let KafkaRequest::SyncGroup(g) = round_trip(ApiKey::SyncGroup, v, &request) else {
            panic!()
        };
        assert_eq!(g.generation, 4);
        assert_eq!(g.assignments, [("m-1".into(), Bytes::from_static(b"a"))]);
    }
    for v in versions(ApiKey::Heartbeat) {
        let request = HeartbeatRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_generation_id(4)
            .with_member_id(s("m-1"));
        let KafkaRequest::Heartbeat(h) = round_trip(ApiKey::Heartbeat, v, &request) else {
            panic!()
        };
        assert_eq!((h.generation, h.member_id.as_str()), (4, "m-1"));
    }
    for v in versions(ApiKey::LeaveGroup) {
        let request = if v <= 2 {
            LeaveGroupRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_member_id(s("m-1"))
        } else {
            LeaveGroupRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_members(vec![MemberIdentity::default().with_member_id(s("m-1"))])
        };
        let KafkaRequest::LeaveGroup(l) = round_trip(ApiKey::LeaveGroup, v, &request) else {
            panic!()
        };
        assert_eq!(l.members, [("m-1".to_string(), None)]);
    }
    for v in versions(ApiKey::FindCoordinator) {
        let request = if v <= 3 {
            FindCoordinatorRequest::default().with_key(s("g"))
        } else {
            FindCoordinatorRequest::default().with_coordinator_keys(vec![s("g")])
        };
        let KafkaRequest::FindCoordinator(f) = round_trip(ApiKey::FindCoordinator, v, &request)
        else {
            panic!()
        };
        assert_eq!(f.keys, ["g"]);
    }
}

#[test]
fn offset_requests_every_version() {
    for v in versions(ApiKey::OffsetCommit) {
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_generation_id_or_member_epoch(2)
            .with_member_id(s("m"))
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(s("t")))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(1)
                    .with_committed_offset(42)])]);
        let KafkaRequest::OffsetCommit(c) = round_trip(ApiKey::OffsetCommit, v, &request) else {
            panic!()
        };
        assert_eq!(c.topics, [("t".into(), vec![(1, 42)])]);
        assert_eq!(c.generation, 2);
    }
    for v in versions(ApiKey::OffsetFetch) {
        let request = if v <= 7 {
            OffsetFetchRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                    .with_name(TopicName(s("t")))
                    .with_partition_indexes(vec![0, 1])]))
        } else {
            OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
                .with_group_id(GroupId(s("g")))
                .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                    .with_name(TopicName(s("t")))
                    .with_partition_indexes(vec![0, 1])]))])
        };
        let KafkaRequest::OffsetFetch(f) = round_trip(ApiKey::OffsetFetch, v, &request) else {
            panic!()
        };
        assert_eq!(f.groups[0].group, "g");
        assert_eq!(f.groups[0].topics, Some(vec![("t".into(), vec![0, 1])]));
    }
    for (api, v) in versions(ApiKey::DescribeGroups)
        .map(|v| (ApiKey::DescribeGroups, v))
        .chain(versions(ApiKey::DeleteGroups).map(|v| (ApiKey::DeleteGroups, v)))
    {
        let decoded = if api == ApiKey::DescribeGroups {
            round_trip(
                api,
                v,
                &DescribeGroupsRequest::default().with_groups(vec![GroupId(s("g"))]),
            )
        } else {
            round_trip(
                api,
                v,
                &DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s("g"))]),
            )
        };
        match decoded {
            KafkaRequest::DescribeGroups(g) | KafkaRequest::DeleteGroups(g) => assert_eq!(g, ["g"]),
            other => panic!("{other:?}"),
        }
    }
    for v in versions(ApiKey::ListGroups) {
        assert_eq!(
            round_trip(ApiKey::ListGroups, v, &ListGroupsRequest::default()),
            KafkaRequest::ListGroups(Vec::new())
        );
    }
}

#[test]
fn admin_requests_every_version() {
    for v in versions(ApiKey::CreateTopics) {
        let request = CreateTopicsRequest::default()
            .with_topics(vec![CreatableTopic::default()
                .with_name(TopicName(s("t")))
                .with_num_partitions(3)
                .with_replication_factor(1)
                .with_configs(vec![CreatableTopicConfig::default()
                    .with_name(s("retention.ms"))
                    .with_value(Some(s("1000")))])])
            .with_timeout_ms(100);
        let KafkaRequest::CreateTopics(c) = round_trip(ApiKey::CreateTopics, v, &request) else {
            panic!()
        };
        assert_eq!(c.topics[0].num_partitions, 3);
        assert_eq!(
            c.topics[0].configs,
            [("retention.ms".into(), Some("1000".into()))]
        );
    }
    for v in versions(ApiKey::DeleteTopics) {
        let request = if v >= 6 {
            DeleteTopicsRequest::default().with_topics(vec![
                DeleteTopicState::default().with_name(Some(TopicName(s("t"))))
            ])
        } else {
            DeleteTopicsRequest::default().with_topic_names(vec![TopicName(s("t"))])
        };
        let KafkaRequest::DeleteTopics(d) = round_trip(ApiKey::DeleteTopics, v, &request) else {
            panic!()
        };
        assert_eq!(d.names, ["t"]);
    }
    for v in versions(ApiKey::CreatePartitions) {
        let request =
            CreatePartitionsRequest::default().with_topics(vec![CreatePartitionsTopic::default()
                .with_name(TopicName(s("t")))
                .with_count(5)]);
        let KafkaRequest::CreatePartitions(c) = round_trip(ApiKey::CreatePartitions, v, &request)
        else {
            panic!()
        };
        assert_eq!(c.topics, [("t".into(), 5, false)]);
    }
    for v in versions(ApiKey::DescribeConfigs) {
        let request = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s("t")),
        ]);
        let KafkaRequest::DescribeConfigs(d) = round_trip(ApiKey::DescribeConfigs, v, &request)
        else {
            panic!()
        };
        assert_eq!((d[0].resource_type, d[0].name.as_str()), (2, "t"));
    }
    for v in versions(ApiKey::AlterConfigs) {
        let request = AlterConfigsRequest::default().with_resources(vec![
            kafka_protocol::messages::alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s("t"))
                .with_configs(vec![
                    kafka_protocol::messages::alter_configs_request::AlterableConfig::default()
                        .with_name(s("retention.ms"))
                        .with_value(Some(s("5"))),
                ]),
        ]);
        let KafkaRequest::AlterConfigs(a) = round_trip(ApiKey::AlterConfigs, v, &request) else {
            panic!()
        };
        assert_eq!(a.resources[0].2[0].value.as_deref(), Some("5"));
    }
    for v in versions(ApiKey::IncrementalAlterConfigs) {
        use kafka_protocol::messages::incremental_alter_configs_request as inc;
        let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
            inc::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s("t"))
                .with_configs(vec![inc::AlterableConfig::default()
                    .with_name(s("retention.ms"))
                    .with_config_operation(1)]),
        ]);
        let KafkaRequest::IncrementalAlterConfigs(a) =
            round_trip(ApiKey::IncrementalAlterConfigs, v, &request)
        else {
            panic!()
        };
        assert_eq!(a.resources[0].2[0].operation, 1);
    }
    for v in versions(ApiKey::DescribeCluster) {
        assert_eq!(
            round_trip(
                ApiKey::DescribeCluster,
                v,
                &DescribeClusterRequest::default()
            ),
            KafkaRequest::DescribeCluster
        );
    }
    for v in versions(ApiKey::ApiVersions) {
        assert_eq!(
            round_trip(ApiKey::ApiVersions, v, &ApiVersionsRequest::default()),
            KafkaRequest::ApiVersions
        );
    }
}

mod security;
