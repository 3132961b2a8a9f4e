//! The Link API on a broker: creating, deleting, pausing and resuming links (entries in the
//! controller's metadata log, so every broker sees the same links), promoting mirror
//! topics (a topic config change through the controller), and describing links with the
//! mirror partitions this broker leads.

use super::definition::{check_name, Definition};
use crate::config::topic::{MIRROR_LINK, MIRROR_PROMOTED, MIRROR_STATE};
use crate::shard::Shard;
use keel_controller::image::LINK_KIND;
use keel_controller::records::SecurityEntry;
use keel_protocol::api::{ErrorCode, LinkAction, LinkRequest, LinkResponse, LinkStatus};
use std::collections::BTreeMap;
use std::rc::Rc;

fn refused(error: ErrorCode, message: impl Into<String>) -> LinkResponse {
    LinkResponse {
        error,
        message: message.into(),
        links: Vec::new(),
    }
}

/// Serves one Link request.
pub async fn handle(shard: &Rc<Shard>, request: LinkRequest) -> LinkResponse {
    let Some(view) = shard.cluster.clone() else {
        return refused(
            ErrorCode::InvalidRequest,
            "cluster links are kept in the controller's metadata log: run the destination as a cluster (--node-id, --controller-voters)",
        );
    };
    let image = view.image();
    let current = image
        .security()
        .get(&(LINK_KIND, request.name.clone()))
        .cloned();
    let stored =
        |text: &str| Definition::parse(text).map_err(|e| refused(ErrorCode::InvalidLink, e));
    let outcome = match request.action {
        LinkAction::Describe => return describe(&view, &image, &request.name),
        LinkAction::Create => {
            if let Err(message) = check_name(&request.name) {
                return refused(ErrorCode::InvalidLink, message);
            }
            if current.is_some() {
                return refused(
                    ErrorCode::LinkExists,
                    format!("link {} exists", request.name),
                );
            }
            match stored(&request.definition) {
                Ok(definition) => set(shard, &request.name, Some(definition.text())).await,
                Err(refusal) => return refusal,
            }
        }
        _ if current.is_none() && request.action != LinkAction::Promote => {
            return refused(ErrorCode::LinkNotFound, format!("no link {}", request.name));
        }
        LinkAction::Delete => set(shard, &request.name, None).await,
        LinkAction::Pause | LinkAction::Resume => {
            let paused = request.action == LinkAction::Pause;
            match stored(current.as_deref().unwrap_or_default()) {
                Ok(definition) => {
                    let text = definition.with_paused(paused).text().to_owned();
                    set(shard, &request.name, Some(&text)).await
                }
                Err(refusal) => return refusal,
            }
        }
        LinkAction::Promote => promote(shard, &request.name, &request.topics).await,
    };
    match outcome {
        Ok(()) => {
            tracing::info!(link = %request.name, action = ?request.action, "cluster link changed");
            if request.action == LinkAction::Delete {
                return refused(ErrorCode::None, "");
            }
            describe(&view, &view.image(), &request.name)
        }
        Err(refusal) => refusal,
    }
}

/// Sets (or removes) a link's definition through the controller.
async fn set(shard: &Rc<Shard>, name: &str, text: Option<&str>) -> Result<(), LinkResponse> {
    let request = keel_controller::node::Request::SetSecurity {
        entries: vec![SecurityEntry {
            kind: LINK_KIND,
            key: name.to_owned(),
            value: text.map(str::to_owned),
        }],
    };
    crate::cluster::change(shard, request)
        .await
        .map(|_| ())
        .map_err(|e| refused(ErrorCode::NotController, format!("the controller: {e}")))
}

/// Makes the link's mirror topics (those named, or all) writable.
async fn promote(shard: &Rc<Shard>, link: &str, topics: &[String]) -> Result<(), LinkResponse> {
    let mirrors: Vec<String> = shard
        .registry
        .read()
        .topics()
        .iter()
        .filter(|(_, t)| t.configs.get(MIRROR_LINK).map(String::as_str) == Some(link))
        .filter(|(_, t)| t.configs.get(MIRROR_STATE).map(String::as_str) != Some(MIRROR_PROMOTED))
        .map(|(name, _)| name.clone())
        .filter(|name| topics.is_empty() || topics.contains(name))
        .collect();
    if let Some(missing) = topics.iter().find(|t| !mirrors.contains(t)) {
        return Err(refused(
            ErrorCode::UnknownTopicOrPartition,
            format!("{missing} is not a mirror topic of link {link} (or is promoted already)"),
        ));
    }
    if mirrors.is_empty() {
        return Err(refused(
            ErrorCode::LinkNotFound,
            format!("link {link} has no mirror topic to promote"),
        ));
    }
    for topic in mirrors {
        let change = BTreeMap::from([(MIRROR_STATE.to_owned(), MIRROR_PROMOTED.to_owned())]);
        let result = crate::handlers::cluster_admin::alter(shard, topic.clone(), change).await;
        if result.error != ErrorCode::None {
            return Err(refused(result.error, result.message));
        }
        tracing::info!(link, topic, "mirror topic promoted (writable once each partition's leader epoch is above the mirrored ones)");
    }
    Ok(())
}

/// The links named (every link for an empty name), with this broker's mirror partitions.
fn describe(
    view: &crate::cluster::ClusterView,
    image: &keel_controller::image::MetadataImage,
    name: &str,
) -> LinkResponse {
    let status = view.mirrors.lock().unwrap_or_else(|e| e.into_inner());
    let links: Vec<LinkStatus> = image
        .security()
        .range((LINK_KIND, String::new())..(LINK_KIND + 1, String::new()))
        .filter(|((_, key), _)| name.is_empty() || key == name)
        .map(|((_, key), text)| {
            let definition = Definition::parse(text);
            let state = match (&definition, status.link_failures.get(key)) {
                (Err(e), _) => format!("failed: {e}"),
                (Ok(d), _) if d.paused => "paused".to_owned(),
                (Ok(_), Some(reason)) => format!("failed: {reason}"),
                (Ok(_), None) => "active".to_owned(),
            };
            let partitions = status
                .partitions
                .iter()
                .filter(|(_, p)| p.link == *key)
                .map(|(_, p)| p.status.clone())
                .collect();
            LinkStatus {
                name: key.clone(),
                definition: definition.map_or_else(|_| String::new(), |d| d.redacted()),
                state,
                partitions,
            }
        })
        .collect();
    if !name.is_empty() && links.is_empty() {
        return refused(ErrorCode::LinkNotFound, format!("no link {name}"));
    }
    LinkResponse {
        error: ErrorCode::None,
        message: String::new(),
        links,
    }
}
