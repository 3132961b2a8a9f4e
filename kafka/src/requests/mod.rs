//! Request bodies of the APIs served, decoded by hand over the raw bytes (see the crate's
//! Cargo.toml for why), into the fields the broker uses. Field order and version ranges
//! follow Kafka's message schemas; the tests check each version against kafka-protocol's
//! own encoders.

mod acls;
mod admin;
mod data;
mod groups;

pub use acls::{
    AclCreation, AclFilterCodes, AlterQuotas, AlterScram, DescribeQuotas, QuotaAlteration,
    QuotaMatch, ScramUpsertion,
};
pub use admin::*;
pub use data::*;
pub use groups::*;

use crate::read::{Reader, Result};
use kafka_protocol::messages::ApiKey;

/// A decoded request.
#[derive(Debug, Clone, PartialEq)]
pub enum KafkaRequest {
    /// ApiVersions.
    ApiVersions,
    /// Metadata: `None` means every topic.
    Metadata(Metadata),
    /// Produce.
    Produce(Produce),
    /// Fetch.
    Fetch(Fetch),
    /// ListOffsets.
    ListOffsets(ListOffsets),
    /// DeleteRecords.
    DeleteRecords(DeleteRecords),
    /// OffsetForLeaderEpoch.
    OffsetForLeaderEpoch(OffsetForLeaderEpoch),
    /// InitProducerId.
    InitProducerId(InitProducerId),
    /// FindCoordinator.
    FindCoordinator(FindCoordinator),
    /// JoinGroup.
    JoinGroup(JoinGroup),
    /// SyncGroup.
    SyncGroup(SyncGroup),
    /// Heartbeat.
    Heartbeat(Heartbeat),
    /// LeaveGroup.
    LeaveGroup(LeaveGroup),
    /// OffsetCommit.
    OffsetCommit(OffsetCommit),
    /// OffsetFetch.
    OffsetFetch(OffsetFetch),
    /// DescribeGroups.
    DescribeGroups(Vec<String>),
    /// ListGroups (state filter).
    ListGroups(Vec<String>),
    /// DeleteGroups.
    DeleteGroups(Vec<String>),
    /// CreateTopics.
    CreateTopics(CreateTopics),
    /// DeleteTopics.
    DeleteTopics(DeleteTopics),
    /// CreatePartitions.
    CreatePartitions(CreatePartitions),
    /// DescribeConfigs.
    DescribeConfigs(Vec<ConfigResource>),
    /// AlterConfigs.
    AlterConfigs(AlterConfigs),
    /// IncrementalAlterConfigs.
    IncrementalAlterConfigs(AlterConfigs),
    /// DescribeCluster.
    DescribeCluster,
    /// SaslHandshake: the mechanism the client asks for.
    SaslHandshake(String),
    /// SaslAuthenticate: the mechanism's next message.
    SaslAuthenticate(bytes::Bytes),
    /// CreateAcls.
    CreateAcls(Vec<AclCreation>),
    /// DescribeAcls.
    DescribeAcls(AclFilterCodes),
    /// DeleteAcls.
    DeleteAcls(Vec<AclFilterCodes>),
    /// DescribeUserScramCredentials: `None` for every user.
    DescribeUserScramCredentials(Option<Vec<String>>),
    /// AlterUserScramCredentials.
    AlterUserScramCredentials(AlterScram),
    /// DescribeClientQuotas.
    DescribeClientQuotas(DescribeQuotas),
    /// AlterClientQuotas.
    AlterClientQuotas(AlterQuotas),
}

impl KafkaRequest {
    /// How many topic–partition entries the request names (0 for requests that name
    /// none): what a broker's limit on partition entries per request counts.
    pub fn partition_entries(&self) -> usize {
        fn sum<T>(topics: &[(String, Vec<T>)]) -> usize {
            topics.iter().map(|(_, partitions)| partitions.len()).sum()
        }
        match self {
            KafkaRequest::Produce(r) => sum(&r.topics),
            KafkaRequest::Fetch(r) => r.topics.iter().map(|t| t.partitions.len()).sum(),
            KafkaRequest::ListOffsets(r) => sum(&r.topics),
            KafkaRequest::DeleteRecords(r) => sum(&r.topics),
            KafkaRequest::OffsetForLeaderEpoch(r) => sum(&r.topics),
            KafkaRequest::OffsetCommit(r) => sum(&r.topics),
            KafkaRequest::OffsetFetch(r) => r
                .groups
                .iter()
                .filter_map(|g| g.topics.as_deref())
                .map(sum)
                .sum(),
            _ => 0,
        }
    }
}

/// Decodes the body of `api` at `version` (a served pair: [`crate::versions::served`]).
///
/// # Errors
/// [`crate::read::DecodeError`] for a malformed body.
pub fn decode(api: ApiKey, version: i16, r: &mut Reader) -> Result<KafkaRequest> {
    let request = match api {
        ApiKey::ApiVersions => {
            // Client name and version (v3+) are informational.
            if version >= 3 {
                r.string("client software name")?;
                r.string("client software version")?;
            }
            KafkaRequest::ApiVersions
        }
        ApiKey::Metadata => KafkaRequest::Metadata(data::metadata(r, version)?),
        ApiKey::Produce => KafkaRequest::Produce(data::produce(r, version)?),
        ApiKey::Fetch => KafkaRequest::Fetch(data::fetch(r, version)?),
        ApiKey::ListOffsets => KafkaRequest::ListOffsets(data::list_offsets(r, version)?),
        ApiKey::DeleteRecords => KafkaRequest::DeleteRecords(data::delete_records(r)?),
        ApiKey::OffsetForLeaderEpoch => {
            KafkaRequest::OffsetForLeaderEpoch(data::offset_for_leader_epoch(r, version)?)
        }
        ApiKey::InitProducerId => KafkaRequest::InitProducerId(data::init_producer_id(r, version)?),
        ApiKey::FindCoordinator => {
            KafkaRequest::FindCoordinator(groups::find_coordinator(r, version)?)
        }
        ApiKey::JoinGroup => KafkaRequest::JoinGroup(groups::join_group(r, version)?),
        ApiKey::SyncGroup => KafkaRequest::SyncGroup(groups::sync_group(r, version)?),
        ApiKey::Heartbeat => KafkaRequest::Heartbeat(groups::heartbeat(r, version)?),
        ApiKey::LeaveGroup => KafkaRequest::LeaveGroup(groups::leave_group(r, version)?),
        ApiKey::OffsetCommit => KafkaRequest::OffsetCommit(groups::offset_commit(r, version)?),
        ApiKey::OffsetFetch => KafkaRequest::OffsetFetch(groups::offset_fetch(r, version)?),
        ApiKey::DescribeGroups => {
            let groups = r.array("groups", |r| r.string("group"))?;
            if version >= 3 {
                r.bool("include authorized operations")?;
            }
            KafkaRequest::DescribeGroups(groups)
        }
        ApiKey::ListGroups => {
            let states = if version >= 4 {
                r.array("states filter", |r| r.string("state"))?
            } else {
                Vec::new()
            };
            KafkaRequest::ListGroups(states)
        }
        ApiKey::DeleteGroups => {
            KafkaRequest::DeleteGroups(r.array("groups", |r| r.string("group"))?)
        }
        ApiKey::CreateTopics => KafkaRequest::CreateTopics(admin::create_topics(r)?),
        ApiKey::DeleteTopics => KafkaRequest::DeleteTopics(admin::delete_topics(r, version)?),
        ApiKey::CreatePartitions => KafkaRequest::CreatePartitions(admin::create_partitions(r)?),
        ApiKey::DescribeConfigs => {
            KafkaRequest::DescribeConfigs(admin::describe_configs(r, version)?)
        }
        ApiKey::AlterConfigs => KafkaRequest::AlterConfigs(admin::alter_configs(r, false)?),
        ApiKey::IncrementalAlterConfigs => {
            KafkaRequest::IncrementalAlterConfigs(admin::alter_configs(r, true)?)
        }
        ApiKey::DescribeCluster => {
            r.bool("include cluster authorized operations")?;
            if version >= 1 {
                r.i8("endpoint type")?;
            }
            KafkaRequest::DescribeCluster
        }
        ApiKey::SaslHandshake => KafkaRequest::SaslHandshake(r.string("mechanism")?),
        ApiKey::SaslAuthenticate => KafkaRequest::SaslAuthenticate(r.bytes("auth bytes")?),
        ApiKey::CreateAcls => KafkaRequest::CreateAcls(acls::create_acls(r)?),
        ApiKey::DescribeAcls => KafkaRequest::DescribeAcls(acls::acl_filter(r)?),
        ApiKey::DeleteAcls => KafkaRequest::DeleteAcls(acls::delete_acls(r)?),
        ApiKey::DescribeUserScramCredentials => {
            KafkaRequest::DescribeUserScramCredentials(acls::describe_scram(r)?)
        }
        ApiKey::AlterUserScramCredentials => {
            KafkaRequest::AlterUserScramCredentials(acls::alter_scram(r)?)
        }
        ApiKey::DescribeClientQuotas => {
            KafkaRequest::DescribeClientQuotas(acls::describe_quotas(r)?)
        }
        ApiKey::AlterClientQuotas => KafkaRequest::AlterClientQuotas(acls::alter_quotas(r)?),
        _ => return Err(crate::read::DecodeError::Null("api")),
    };
    r.tagged_fields()?;
    Ok(request)
}

#[cfg(test)]
mod tests;
