//! Administration: topics and their configs, consumer groups and their offsets.

use crate::error::{Error, Result};
use keel_protocol::api::{
    ConfigEntry, ErrorCode, GroupDescription, ListOffsetsPartition, NewTopic, PartitionMetadata,
    Request, Response, TopicEntries, TopicResult, EARLIEST_TIMESTAMP, LATEST_TIMESTAMP,
};
use std::collections::BTreeMap;
use std::time::Duration;

mod link;
mod replicas;
mod security;

/// A topic as the broker describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDescription {
    /// Name.
    pub name: String,
    /// Partitions with leader, log start, high watermark, log end and size.
    pub partitions: Vec<PartitionMetadata>,
    /// Effective configs (broker defaults and topic overrides).
    pub configs: BTreeMap<String, String>,
}

/// A group's position in one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupPartitionOffset {
    /// Partition.
    pub partition: u32,
    /// Committed offset (-1: none).
    pub committed: i64,
    /// The partition's high watermark.
    pub high_watermark: i64,
}

impl GroupPartitionOffset {
    /// Records not yet consumed by the group (everything when nothing is committed).
    pub fn lag(&self) -> i64 {
        (self.high_watermark - self.committed.max(0)).max(0)
    }
}

/// Where `reset_offsets` moves a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTo {
    /// Each partition's first offset.
    Earliest,
    /// Each partition's end.
    Latest,
    /// This offset in every partition.
    Offset(i64),
}

/// Creates, deletes, lists and describes topics, and changes their configs; lists and
/// describes consumer groups and resets their offsets.
#[derive(Clone)]
pub struct Admin {
    router: std::sync::Arc<crate::router::Router>,
    timeout: Duration,
}

/// The cluster as a broker knows it.
#[derive(Debug, Clone)]
pub struct ClusterDescription {
    /// The controller quorum's leader, when known.
    pub controller_leader: Option<u32>,
    /// Its term.
    pub controller_term: u64,
    /// Voter ids.
    pub voters: Vec<u32>,
    /// The metadata offset the broker has applied.
    pub metadata_offset: u64,
    /// Registered brokers (id, address, incarnation, fenced).
    pub brokers: Vec<keel_protocol::api::ClusterBroker>,
}

fn check(results: Vec<TopicResult>) -> Result<()> {
    for result in results {
        if result.error != ErrorCode::None {
            return Err(Error::broker(
                result.error,
                format!("{}: {}", result.topic, result.message),
            ));
        }
    }
    Ok(())
}

impl Admin {
    /// Connects to `bootstrap` (`host:port`).
    ///
    /// # Errors
    /// [`Error::Connect`].
    pub async fn connect(bootstrap: &str) -> Result<Admin> {
        Admin::connect_with(bootstrap, crate::ClientSecurity::default()).await
    }

    /// As [`Admin::connect`], with `security`'s settings (TLS).
    ///
    /// # Errors
    /// [`Error::Connect`].
    pub async fn connect_with(bootstrap: &str, security: crate::ClientSecurity) -> Result<Admin> {
        let router =
            crate::router::Router::connect(bootstrap, Duration::from_secs(30), security).await?;
        Ok(Admin {
            router: std::sync::Arc::new(router),
            timeout: Duration::from_secs(30),
        })
    }

    /// A request to the bootstrap broker, over a fresh connection when the last one broke
    /// (a broker restarted, or closed it as idle: `connections_max_idle_ms`).
    async fn call(&self, request: Request) -> Result<Response> {
        self.router.reconnect_bootstrap().await?;
        self.router
            .bootstrap()
            .call_timeout(&request, self.timeout)
            .await
    }

    /// A group request, sent to the group's coordinator (in a cluster: the broker
    /// FindCoordinator names).
    async fn call_group(&self, group: &str, request: Request) -> Result<Response> {
        let connection = self.router.coordinator(group).await?;
        connection.call_timeout(&request, self.timeout).await
    }

    /// Creates a topic with `partitions` partitions and config overrides.
    ///
    /// # Errors
    /// The broker's error (e.g. `TopicAlreadyExists`, `InvalidTopic`, `InvalidConfig`).
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        configs: &[(&str, &str)],
    ) -> Result<()> {
        self.create_topic_replicated(name, partitions, 1, configs)
            .await
    }

    /// As [`Admin::create_topic`] with `replication_factor` copies of each partition.
    ///
    /// # Errors
    /// As [`Admin::create_topic`]; `InvalidReplicationFactor` when the cluster cannot
    /// hold that many copies.
    pub async fn create_topic_replicated(
        &self,
        name: &str,
        partitions: u32,
        replication_factor: u16,
        configs: &[(&str, &str)],
    ) -> Result<()> {
        let topic = NewTopic {
            name: name.to_owned(),
            partitions,
            replication_factor,
            configs: configs
                .iter()
                .map(|(k, v)| ConfigEntry {
                    key: (*k).to_owned(),
                    value: (*v).to_owned(),
                })
                .collect(),
        };
        match self
            .call(Request::CreateTopics {
                topics: vec![topic],
            })
            .await?
        {
            Response::CreateTopics { topics } => check(topics),
            _ => Err(Error::Protocol("create-topics response expected".into())),
        }
    }

    /// Deletes a topic and its data.
    ///
    /// # Errors
    /// The broker's error (e.g. `UnknownTopicOrPartition`).
    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        match self
            .call(Request::DeleteTopics {
                topics: vec![name.to_owned()],
            })
            .await?
        {
            Response::DeleteTopics { topics } => check(topics),
            _ => Err(Error::Protocol("delete-topics response expected".into())),
        }
    }

    /// Every topic's name.
    ///
    /// # Errors
    /// Connection failures.
    pub async fn list_topics(&self) -> Result<Vec<String>> {
        match self.call(Request::Metadata { topics: vec![] }).await? {
            Response::Metadata { topics, .. } => Ok(topics.into_iter().map(|t| t.topic).collect()),
            _ => Err(Error::Protocol("metadata response expected".into())),
        }
    }

    /// A topic's partitions and configs.
    ///
    /// # Errors
    /// [`Error::UnknownTopic`].
    pub async fn describe_topic(&self, name: &str) -> Result<TopicDescription> {
        let Response::Metadata { topics, .. } = self
            .call(Request::Metadata {
                topics: vec![name.to_owned()],
            })
            .await?
        else {
            return Err(Error::Protocol("metadata response expected".into()));
        };
        let topic = topics
            .into_iter()
            .next()
            .ok_or_else(|| Error::UnknownTopic(name.to_owned()))?;
        if topic.error != ErrorCode::None {
            return Err(Error::topic_unusable(name, topic.error));
        }
        let described = self
            .call(Request::DescribeConfigs {
                topics: vec![name.to_owned()],
            })
            .await;
        let configs = match described {
            Ok(Response::DescribeConfigs { topics }) => topics
                .into_iter()
                .next()
                .map(|(_, _, entries)| entries.into_iter().map(|e| (e.key, e.value)).collect())
                .unwrap_or_default(),
            // Configs need DESCRIBE_CONFIGS, which a reader may not have: the partitions
            // are still described.
            Err(Error::Broker {
                code: ErrorCode::TopicAuthorizationFailed,
                ..
            }) => Default::default(),
            Ok(_) => return Err(Error::Protocol("describe-configs response expected".into())),
            Err(e) => return Err(e),
        };
        let mut partitions = topic.partitions;
        if let Ok(cluster) = self.describe_cluster().await {
            self.fill_from_leaders(name, &cluster, &mut partitions)
                .await;
        }
        Ok(TopicDescription {
            name: topic.topic,
            partitions,
            configs,
        })
    }

    /// Asks each partition's leader for the offsets the answering broker did not have.
    async fn fill_from_leaders(
        &self,
        name: &str,
        cluster: &ClusterDescription,
        partitions: &mut [keel_protocol::api::PartitionMetadata],
    ) {
        let mut leaders: Vec<u32> = partitions
            .iter()
            .filter(|p| p.error == ErrorCode::None && p.log_end_offset < 0)
            .map(|p| p.leader)
            .collect();
        leaders.sort_unstable();
        leaders.dedup();
        for leader in leaders {
            let Some(broker) = cluster.brokers.iter().find(|b| b.node_id == leader) else {
                continue;
            };
            let Ok(connection) = self.router.connect_to(&broker.address).await else {
                continue;
            };
            let request = Request::Metadata {
                topics: vec![name.to_owned()],
            };
            let Ok(Response::Metadata { topics, .. }) =
                connection.call_timeout(&request, self.timeout).await
            else {
                continue;
            };
            for theirs in topics.into_iter().flat_map(|t| t.partitions) {
                if let Some(ours) = partitions
                    .iter_mut()
                    .find(|p| p.partition == theirs.partition && p.leader == leader)
                {
                    // Only the offsets: leadership is what the asked broker's metadata says
                    // (the leader's own view may be older).
                    if theirs.log_end_offset >= 0 {
                        ours.log_start_offset = theirs.log_start_offset;
                        ours.high_watermark = theirs.high_watermark;
                        ours.log_end_offset = theirs.log_end_offset;
                        ours.size_bytes = theirs.size_bytes;
                    }
                }
            }
        }
    }

    /// ListOffsets for one topic, each partition asked of its leader (one request on a
    /// single broker).
    async fn list_offsets_by_leader(
        &self,
        topic: &str,
        request: Request,
    ) -> Result<Vec<keel_protocol::api::TopicEntries<keel_protocol::api::ListOffsetsPartitionResult>>>
    {
        let Request::ListOffsets { topics } = request else {
            return Err(Error::Protocol("list-offsets request expected".into()));
        };
        self.router.mark_stale();
        self.router.refresh_if_stale(&[topic.to_owned()]).await;
        let mut by_leader: std::collections::BTreeMap<
            crate::router::BrokerId,
            Vec<ListOffsetsPartition>,
        > = std::collections::BTreeMap::new();
        for entry in topics {
            for p in entry.partitions {
                by_leader
                    .entry(self.router.leader(topic, p.partition))
                    .or_default()
                    .push(p);
            }
        }
        let mut merged = Vec::new();
        for (leader, partitions) in by_leader {
            let request = Request::ListOffsets {
                topics: vec![TopicEntries {
                    topic: topic.to_owned(),
                    partitions,
                }],
            };
            let connection = self.router.connection(leader).await?;
            let Response::ListOffsets { topics } =
                connection.call_timeout(&request, self.timeout).await?
            else {
                return Err(Error::Protocol("list-offsets response expected".into()));
            };
            merged.extend(topics);
        }
        Ok(merged)
    }

    /// The controller, voters and brokers as the connected broker knows them.
    ///
    /// # Errors
    /// Connection failures.
    pub async fn describe_cluster(&self) -> Result<ClusterDescription> {
        match self.call(Request::DescribeCluster).await? {
            Response::DescribeCluster {
                controller_leader,
                controller_term,
                voters,
                metadata_offset,
                brokers,
                ..
            } => Ok(ClusterDescription {
                controller_leader: (controller_leader >= 0).then_some(controller_leader as u32),
                controller_term,
                voters,
                metadata_offset,
                brokers,
            }),
            _ => Err(Error::Protocol("describe-cluster response expected".into())),
        }
    }

    /// Sets config overrides on a topic.
    ///
    /// # Errors
    /// The broker's error (e.g. `InvalidConfig`).
    pub async fn alter_configs(&self, name: &str, configs: &[(&str, &str)]) -> Result<()> {
        let entries = configs
            .iter()
            .map(|(k, v)| ConfigEntry {
                key: (*k).to_owned(),
                value: (*v).to_owned(),
            })
            .collect();
        match self
            .call(Request::AlterConfigs {
                topics: vec![(name.to_owned(), entries)],
            })
            .await?
        {
            Response::AlterConfigs { topics } => check(topics),
            _ => Err(Error::Protocol("alter-configs response expected".into())),
        }
    }

    /// Every consumer group and its state.
    ///
    /// # Errors
    /// Connection failures.
    pub async fn list_groups(&self) -> Result<Vec<(String, String)>> {
        let mut groups = match self.call(Request::ListGroups).await? {
            Response::ListGroups { groups } => groups,
            _ => return Err(Error::Protocol("list-groups response expected".into())),
        };
        // In a cluster each broker knows the groups it coordinates: ask every alive one
        // (Metadata lists them, as Kafka's admin client finds brokers; DescribeCluster
        // needs DESCRIBE on the cluster, which a user listing their own groups lacks).
        let Response::Metadata { brokers, .. } =
            self.call(Request::Metadata { topics: vec![] }).await?
        else {
            return Err(Error::Protocol("metadata response expected".into()));
        };
        if brokers.len() > 1 {
            for broker in &brokers {
                let address = format!("{}:{}", broker.host, broker.port);
                if address == self.router.bootstrap().addr() {
                    continue;
                }
                let connection = self.router.connect_to(&address).await?;
                match connection
                    .call_timeout(&Request::ListGroups, self.timeout)
                    .await?
                {
                    Response::ListGroups { groups: theirs } => groups.extend(theirs),
                    _ => return Err(Error::Protocol("list-groups response expected".into())),
                }
            }
            groups.sort();
            groups.dedup_by(|a, b| a.0 == b.0);
        }
        Ok(groups)
    }

    /// A group's state, members and assignments.
    ///
    /// # Errors
    /// Connection failures; a broker error for an unknown group.
    pub async fn describe_group(&self, group: &str) -> Result<GroupDescription> {
        let Response::DescribeGroups { groups } = self
            .call_group(
                group,
                Request::DescribeGroups {
                    groups: vec![group.to_owned()],
                },
            )
            .await?
        else {
            return Err(Error::Protocol("describe-groups response expected".into()));
        };
        let description = groups
            .into_iter()
            .next()
            .ok_or_else(|| Error::Protocol("empty describe-groups response".into()))?;
        if description.error != ErrorCode::None {
            return Err(Error::broker(description.error, format!("group {group}")));
        }
        Ok(description)
    }

    async fn latest(
        &self,
        topic: &str,
        partitions: &[u32],
        timestamp: i64,
    ) -> Result<Vec<(u32, i64)>> {
        let request = Request::ListOffsets {
            topics: vec![TopicEntries {
                topic: topic.to_owned(),
                partitions: partitions
                    .iter()
                    .map(|p| ListOffsetsPartition {
                        partition: *p,
                        timestamp,
                    })
                    .collect(),
            }],
        };
        let topics = self.list_offsets_by_leader(topic, request).await?;
        Ok(topics
            .into_iter()
            .flat_map(|t| t.partitions)
            .map(|p| (p.partition, p.offset))
            .collect())
    }

    /// A group's committed offset, high watermark and lag for every partition of `topic`.
    ///
    /// # Errors
    /// [`Error::UnknownTopic`], connection failures.
    pub async fn group_offsets(
        &self,
        group: &str,
        topic: &str,
    ) -> Result<Vec<GroupPartitionOffset>> {
        let partitions: Vec<u32> = self
            .describe_topic(topic)
            .await?
            .partitions
            .iter()
            .map(|p| p.partition)
            .collect();
        let Response::OffsetFetch { topics, .. } = self
            .call_group(
                group,
                Request::OffsetFetch {
                    group: group.to_owned(),
                    topics: vec![TopicEntries {
                        topic: topic.to_owned(),
                        partitions: partitions.clone(),
                    }],
                },
            )
            .await?
        else {
            return Err(Error::Protocol("offset-fetch response expected".into()));
        };
        let committed: BTreeMap<u32, i64> = topics.into_iter().flat_map(|t| t.partitions).collect();
        let ends = self.latest(topic, &partitions, LATEST_TIMESTAMP).await?;
        Ok(ends
            .into_iter()
            .map(|(partition, high_watermark)| GroupPartitionOffset {
                partition,
                committed: committed.get(&partition).copied().unwrap_or(-1),
                high_watermark,
            })
            .collect())
    }

    /// Moves a group's committed offsets for `topic`; allowed only while the group has no
    /// members (as in Kafka).
    ///
    /// # Errors
    /// `RebalanceInProgress` while members are active; connection failures.
    pub async fn reset_offsets(
        &self,
        group: &str,
        topic: &str,
        to: ResetTo,
    ) -> Result<Vec<(u32, i64)>> {
        let partitions: Vec<u32> = self
            .describe_topic(topic)
            .await?
            .partitions
            .iter()
            .map(|p| p.partition)
            .collect();
        let targets = match to {
            ResetTo::Earliest => self.latest(topic, &partitions, EARLIEST_TIMESTAMP).await?,
            ResetTo::Latest => self.latest(topic, &partitions, LATEST_TIMESTAMP).await?,
            ResetTo::Offset(offset) => partitions.iter().map(|p| (*p, offset)).collect(),
        };
        let request = Request::OffsetCommit {
            group: group.to_owned(),
            generation: -1,
            member_id: String::new(),
            topics: vec![TopicEntries {
                topic: topic.to_owned(),
                partitions: targets.clone(),
            }],
        };
        let Response::OffsetCommit { topics } = self.call_group(group, request).await? else {
            return Err(Error::Protocol("offset-commit response expected".into()));
        };
        if let Some((_, error)) = topics
            .iter()
            .flat_map(|t| t.partitions.iter())
            .find(|(_, e)| *e != ErrorCode::None)
        {
            return Err(Error::broker(
                *error,
                format!("resetting {group} on {topic}"),
            ));
        }
        Ok(targets)
    }
}
