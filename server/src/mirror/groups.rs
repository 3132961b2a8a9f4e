//! Consumer group offsets synced exactly (issue 23): mirror partitions hold the source's
//! records at the same offsets, so a group's committed offset on the source is its offset
//! on the destination — no translation. Shard 0 of every destination broker, at the link's
//! interval, reads the selected groups' offsets from the source (ListGroups on each source
//! broker, FindCoordinator, OffsetFetch) and commits those of the mirror partitions this
//! broker leads, capped at what is mirrored, to the group's coordinator as a commit from
//! outside the group: the coordinator refuses it while the group has members on the
//! destination, so a group consuming there is never moved.

use super::definition::Definition;
use super::source::{ask, cached, SourceConnection, CLIENT_ID};
use crate::cluster::ClusterView;
use crate::shard::Shard;
use keel_kafka::source as wire;
use keel_kafka::source_groups as groups;
use keel_protocol::api::{ErrorCode, Request, Response, TopicEntries};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

/// Most groups synced per round.
pub const GROUPS_MAX: usize = 10_000;

/// One sync round for link `link`; how many partition offsets were committed.
///
/// # Errors
/// The source could not be read (the round is skipped).
pub async fn sync(
    shard: &Rc<Shard>,
    view: &ClusterView,
    (link, definition): (&str, &Definition),
    connections: &mut HashMap<String, SourceConnection>,
) -> Result<usize, String> {
    let mirrored = mirrored_ends(view, link);
    if mirrored.is_empty() || definition.selection.groups.is_empty() {
        return Ok(0);
    }
    let config = &definition.source_config;
    let bootstrap = definition
        .sources
        .first()
        .ok_or("the link has no source address")?;
    let body = ask(cached(connections, bootstrap, config).await?, |c| {
        wire::metadata_request(c, CLIENT_ID, Some(&[]))
    })
    .await?;
    let (_, brokers, _) = wire::metadata_response(body).map_err(|e| e.to_string())?;
    let mut selected = Vec::new();
    for broker in brokers {
        let address = format!("{}:{}", broker.host, broker.port);
        let connection = cached(connections, &address, config).await?;
        let body = ask(connection, |c| groups::list_groups_request(c, CLIENT_ID)).await?;
        let (_, _, listed) = groups::list_groups_response(body).map_err(|e| e.to_string())?;
        selected.extend(
            listed
                .into_iter()
                .filter(|(group, kind)| {
                    (kind == "consumer" || kind.is_empty())
                        && definition.selection.syncs_group(group)
                })
                .map(|(group, _)| group),
        );
    }
    selected.truncate(GROUPS_MAX);
    let mut committed = 0;
    for group in selected {
        let offsets = source_offsets(connections, (bootstrap, config), &group).await?;
        let mut topics: BTreeMap<String, Vec<(u32, i64)>> = BTreeMap::new();
        for offset in offsets {
            let Some(name) = definition.selection.mirror_name(&offset.topic) else {
                continue;
            };
            let Ok(partition) = u32::try_from(offset.partition) else {
                continue;
            };
            if let Some(end) = mirrored.get(&(name.clone(), partition)) {
                // Never past what the mirror holds: after a promotion the group reads on
                // from a record that is there.
                topics
                    .entry(name)
                    .or_default()
                    .push((partition, offset.offset.min(*end)));
            }
        }
        if !topics.is_empty() {
            committed += commit(shard, &group, topics).await;
        }
    }
    Ok(committed)
}

/// Each mirror partition this broker leads for `link`, and its mirrored end.
fn mirrored_ends(view: &ClusterView, link: &str) -> BTreeMap<(String, u32), i64> {
    let status = view.mirrors.lock().unwrap_or_else(|e| e.into_inner());
    status
        .partitions
        .iter()
        .filter(|(_, entry)| entry.link == link)
        .map(|(key, entry)| (key.clone(), entry.status.mirrored_offset))
        .collect()
}

async fn source_offsets(
    connections: &mut HashMap<String, SourceConnection>,
    (bootstrap, config): (&str, &BTreeMap<String, String>),
    group: &str,
) -> Result<Vec<groups::Committed>, String> {
    let body = ask(cached(connections, bootstrap, config).await?, |c| {
        groups::find_coordinator_request(c, CLIENT_ID, group)
    })
    .await?;
    let (_, error, coordinator) =
        groups::find_coordinator_response(body).map_err(|e| e.to_string())?;
    if error != 0 {
        return Ok(Vec::new());
    }
    let body = ask(cached(connections, &coordinator, config).await?, |c| {
        groups::offset_fetch_request(c, CLIENT_ID, group)
    })
    .await?;
    let (_, error, offsets) = groups::offset_fetch_response(body).map_err(|e| e.to_string())?;
    Ok(if error == 0 { offsets } else { Vec::new() })
}

/// Commits `topics`' offsets for `group` at its coordinator on this cluster, as a commit
/// from outside the group; how many partitions it took.
async fn commit(
    shard: &Rc<Shard>,
    group: &str,
    topics: BTreeMap<String, Vec<(u32, i64)>>,
) -> usize {
    let Ok((coordinator, _)) = crate::handlers::cluster_admin::coordinator(shard, group).await
    else {
        return 0;
    };
    let request = Request::OffsetCommit {
        group: group.to_owned(),
        generation: -1,
        member_id: String::new(),
        topics: topics
            .into_iter()
            .map(|(topic, partitions)| TopicEntries { topic, partitions })
            .collect(),
    };
    let Some(mut stream) = crate::cluster::call::connect(shard, coordinator).await else {
        return 0;
    };
    match crate::cluster::call::exchange(&mut stream, 1, &request, 1 << 20).await {
        Ok(Response::OffsetCommit { topics }) => topics
            .iter()
            .flat_map(|t| &t.partitions)
            .filter(|(_, error)| *error == ErrorCode::None)
            .count(),
        _ => 0,
    }
}
