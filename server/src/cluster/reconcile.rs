//! Makes the local registry and partition logs follow the applied metadata (shard 0).
//!
//! Every broker keeps every topic of the metadata in its registry and opens a log for each
//! of its partitions, so a partition it comes to lead has a log at once; only the
//! leader appends client data (followers append what they fetch from it, `replication/`).
//! A topic gone from the metadata, or recreated
//! with another id, is removed here with its logs, once the applied metadata is whole and
//! this cluster's (`ClusterView::caught_up`). `__consumer_offsets` is a topic
//! like the others here.

use super::ClusterView;
use crate::registry::TopicEntry;
use crate::shard::{on_every_partition, on_partitions};
use crate::shard::{Job, Shard};
use glommio::channels::local_channel::LocalReceiver;
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// Runs until the process ends: after each change of the metadata (or every second),
/// brings the registry and logs in line.
pub async fn run(shard: Rc<Shard>, view: Arc<ClusterView>, wake: LocalReceiver<()>) {
    // The topic id each local topic was made for, so a recreated topic is recreated here.
    let mut ids: HashMap<String, u64> = HashMap::new();
    // The security metadata applied last.
    let mut security = BTreeMap::new();
    loop {
        futures_lite::future::or(
            async {
                glommio::timer::sleep(Duration::from_secs(1)).await;
            },
            async {
                let _ = wake.recv().await;
            },
        )
        .await;
        let image = view.image();
        if image.offset() == 0 || image.offset() == view.reconciled_offset() {
            continue;
        }
        if image.security() != &security {
            shard
                .security
                .replace_from_metadata(&security, image.security());
            security = image.security().clone();
        }
        shard.security.settled.applied(image.offset());
        let local: BTreeMap<String, TopicEntry> = shard.registry.read().topics().clone();
        let gone: Vec<(&String, &TopicEntry)> = local
            .iter()
            .filter(|(name, _)| {
                image
                    .topic(name)
                    .is_none_or(|t| ids.get(*name).is_some_and(|id| *id != t.id))
            })
            .collect();
        // Local data is deleted only on the word of metadata that is whole and this
        // cluster's: a broker catching up in batches after a restart has not yet applied
        // the topics created later, and would delete their logs.
        let may_delete = view.caught_up();
        for (name, entry) in &gone {
            if may_delete {
                remove(&shard, name, entry.partitions).await;
                ids.remove(*name);
            }
        }
        let local: BTreeMap<String, TopicEntry> = shard.registry.read().topics().clone();
        for (name, topic) in image.topics() {
            let configs: BTreeMap<String, String> = topic.configs.clone();
            let partitions = topic.partitions.len() as u32;
            let cluster_id = image.cluster_id().unwrap_or_default();
            let id = crate::registry::cluster_topic_id(cluster_id, name, topic.id);
            match local.get(name) {
                None => create(&shard, name, (partitions, id), configs).await,
                Some(entry) => {
                    // The same id on every broker (a topic kept from before ids were
                    // made takes it here).
                    if entry.id.as_ref() != Some(&id) {
                        set_id(&shard, name, id).await;
                    }
                    if entry.partitions < partitions {
                        grow(&shard, name, entry.partitions..partitions, &configs).await;
                    }
                    if entry.configs != configs {
                        reconfigure(&shard, name, partitions, configs).await;
                    }
                }
            }
            // Made here now, or first seen: it is this id's. A local topic already known by
            // another id is a recreated one still waiting to be removed.
            if !local.contains_key(name) || !ids.contains_key(name) {
                ids.insert(name.clone(), topic.id);
            }
        }
        if gone.is_empty() || may_delete {
            view.set_reconciled_offset(image.offset());
        }
    }
}

/// The topic made here from the metadata: `(partitions, id)`, its partition count and
/// Kafka topic id.
async fn create(
    shard: &Rc<Shard>,
    name: &str,
    (partitions, id): (u32, String),
    configs: BTreeMap<String, String>,
) {
    let log = match shard.config.topic_log_config(&configs) {
        Ok(log) => log,
        Err(message) => {
            tracing::error!(topic = name, %message, "topic configs from the controller refused; using defaults");
            shard.config.log_defaults.clone()
        }
    };
    let entry = TopicEntry {
        partitions,
        configs,
        id: Some(id),
    };
    let owned = name.to_owned();
    let put = shard
        .registry
        .update(move |topics| {
            topics.insert(owned, entry);
            Ok(())
        })
        .await;
    if let Err(refusal) = put {
        tracing::error!(topic = name, message = %refusal.message, "registry update failed");
        return;
    }
    let opened = on_every_partition(shard, name, partitions, |partition| Job::Open {
        topic: name.to_owned(),
        partition,
        log: log.clone(),
    })
    .await;
    match opened {
        Ok(()) => tracing::info!(topic = name, partitions, "topic created from the metadata"),
        Err(message) => tracing::error!(topic = name, %message, "opening partitions failed"),
    }
}

async fn set_id(shard: &Rc<Shard>, name: &str, id: String) {
    let owned = name.to_owned();
    let _ = shard
        .registry
        .update(move |topics| {
            if let Some(entry) = topics.get_mut(&owned) {
                entry.id = Some(id);
            }
            Ok(())
        })
        .await;
}

/// The topic grew (CreatePartitions): the new partitions' logs open empty, and the
/// registry counts them once they are there.
async fn grow(
    shard: &Rc<Shard>,
    name: &str,
    added: Range<u32>,
    configs: &BTreeMap<String, String>,
) {
    let log = shard
        .config
        .topic_log_config(configs)
        .unwrap_or_else(|_| shard.config.log_defaults.clone());
    let opened = on_partitions(shard, name, added.clone(), |partition| Job::Open {
        topic: name.to_owned(),
        partition,
        log: log.clone(),
    })
    .await;
    if let Err(message) = opened {
        tracing::error!(topic = name, %message, "opening added partitions failed");
        return;
    }
    let (owned, count) = (name.to_owned(), added.end);
    let _ = shard
        .registry
        .update(move |topics| {
            if let Some(entry) = topics.get_mut(&owned) {
                entry.partitions = entry.partitions.max(count);
            }
            Ok(())
        })
        .await;
    tracing::info!(
        topic = name,
        from = added.start,
        to = added.end,
        "partitions added from the metadata"
    );
}

async fn remove(shard: &Rc<Shard>, name: &str, partitions: u32) {
    let owned = name.to_owned();
    let _ = shard
        .registry
        .update(move |topics| {
            topics.remove(&owned);
            Ok(())
        })
        .await;
    let removed = on_every_partition(shard, name, partitions, |partition| Job::Remove {
        topic: name.to_owned(),
        partition,
    })
    .await;
    match removed {
        Ok(()) => tracing::info!(topic = name, "topic removed: gone from the metadata"),
        Err(message) => tracing::error!(topic = name, %message, "removing partitions failed"),
    }
}

async fn reconfigure(
    shard: &Rc<Shard>,
    name: &str,
    partitions: u32,
    configs: BTreeMap<String, String>,
) {
    let Ok(log) = shard.config.topic_log_config(&configs) else {
        tracing::error!(topic = name, "topic configs from the controller refused");
        return;
    };
    let (owned, stored) = (name.to_owned(), configs.clone());
    let _ = shard
        .registry
        .update(move |topics| {
            if let Some(entry) = topics.get_mut(&owned) {
                entry.configs = stored;
            }
            Ok(())
        })
        .await;
    let _ = on_every_partition(shard, name, partitions, |partition| Job::Reconfigure {
        topic: name.to_owned(),
        partition,
        log: log.clone(),
    })
    .await;
}
