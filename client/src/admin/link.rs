//! Admin calls for cluster links (issue 23): a link lives on the destination cluster; each
//! broker leads some of its mirror partitions, so describing a link asks every broker and
//! merges what each reports.

use super::Admin;
use crate::error::{Error, Result};
use keel_protocol::api::{
    ErrorCode, LinkAction, LinkRequest, LinkResponse, LinkStatus, Request, Response,
};

impl Admin {
    /// Sends a link request to the bootstrap broker.
    ///
    /// # Errors
    /// The broker's refusal (`LinkNotFound`, `LinkExists`, `InvalidLink`,
    /// `ClusterAuthorizationFailed`, …), I/O.
    pub async fn link(
        &self,
        action: LinkAction,
        name: &str,
        definition: &str,
        topics: Vec<String>,
    ) -> Result<Vec<LinkStatus>> {
        let request = Request::Link(LinkRequest {
            action,
            name: name.to_owned(),
            definition: definition.to_owned(),
            topics,
        });
        link_statuses(self.call(request).await?)
    }

    /// The links (every one for an empty name), each with the mirror partitions of every
    /// broker that answers (a broker that does not is left out of the partitions).
    ///
    /// # Errors
    /// `LinkNotFound`, the broker's refusal, I/O.
    pub async fn describe_links(&self, name: &str) -> Result<Vec<LinkStatus>> {
        let mut links = self
            .link(LinkAction::Describe, name, "", Vec::new())
            .await?;
        let Ok(cluster) = self.describe_cluster().await else {
            return Ok(links);
        };
        for link in &mut links {
            link.partitions.clear();
        }
        let request = Request::Link(LinkRequest {
            action: LinkAction::Describe,
            name: name.to_owned(),
            definition: String::new(),
            topics: Vec::new(),
        });
        for broker in cluster.brokers.iter().filter(|b| !b.fenced) {
            let Ok(connection) = self.router.connect_to(&broker.address).await else {
                continue;
            };
            let Ok(Ok(theirs)) = connection
                .call_timeout(&request, self.timeout)
                .await
                .map(link_statuses)
            else {
                continue;
            };
            for their in theirs {
                if let Some(ours) = links.iter_mut().find(|l| l.name == their.name) {
                    ours.partitions.extend(their.partitions);
                    // A failure one broker sees (its source connection) is the link's.
                    if their.state.starts_with("failed") && ours.state == "active" {
                        ours.state = their.state;
                    }
                }
            }
        }
        for link in &mut links {
            link.partitions
                .sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        }
        Ok(links)
    }
}

fn link_statuses(response: Response) -> Result<Vec<LinkStatus>> {
    match response {
        Response::Link(LinkResponse {
            error: ErrorCode::None,
            links,
            ..
        }) => Ok(links),
        Response::Link(LinkResponse { error, message, .. }) => Err(Error::broker(error, message)),
        _ => Err(Error::Protocol("a link response expected".into())),
    }
}
