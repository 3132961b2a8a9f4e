//! Administration: topics and their configs.

use crate::connection::Connection;
use crate::error::{Error, Result};
use keel_protocol::api::{
    ConfigEntry, ErrorCode, NewTopic, PartitionMetadata, Request, Response, TopicResult,
};
use std::collections::BTreeMap;
use std::time::Duration;

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

/// Creates, deletes, lists and describes topics, and changes their configs.
#[derive(Clone)]
pub struct Admin {
    connection: Connection,
    timeout: Duration,
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
        Ok(Admin {
            connection: Connection::connect(bootstrap).await?,
            timeout: Duration::from_secs(30),
        })
    }

    async fn call(&self, request: Request) -> Result<Response> {
        self.connection.call_timeout(&request, self.timeout).await
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
        let topic = NewTopic {
            name: name.to_owned(),
            partitions,
            replication_factor: 1,
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
            .filter(|t| t.error == ErrorCode::None)
            .ok_or_else(|| Error::UnknownTopic(name.to_owned()))?;
        let Response::DescribeConfigs { topics } = self
            .call(Request::DescribeConfigs {
                topics: vec![name.to_owned()],
            })
            .await?
        else {
            return Err(Error::Protocol("describe-configs response expected".into()));
        };
        let configs = topics
            .into_iter()
            .next()
            .map(|(_, _, entries)| entries.into_iter().map(|e| (e.key, e.value)).collect())
            .unwrap_or_default();
        Ok(TopicDescription {
            name: topic.topic,
            partitions: topic.partitions,
            configs,
        })
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
}
