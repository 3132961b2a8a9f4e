//! Where each partition's leader is, and a connection to each broker of a cluster.
//!
//! A single broker answers metadata naming only itself: everything then goes over the
//! bootstrap connection, as before clusters existed. With several brokers, requests for a
//! partition go to its leader's connection (opened on first use); an answer saying the
//! broker does not lead the partition, or a broken connection, marks the metadata stale and
//! the next request asks for it again.

use crate::connection::Connection;
use crate::error::{Error, Result};
use keel_protocol::api::{ErrorCode, Request, Response};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// A broker's node id as the router knows it (`None`: the bootstrap connection).
pub type BrokerId = Option<u32>;

#[derive(Default)]
struct State {
    cluster: bool,
    brokers: HashMap<u32, String>,
    connections: HashMap<u32, Connection>,
    leaders: HashMap<(String, u32), u32>,
}

/// Connections to a cluster, routed by partition leader.
pub struct Router {
    bootstrap_list: String,
    /// How every connection is made.
    security: crate::ClientSecurity,
    bootstrap: Mutex<Connection>,
    state: Mutex<State>,
    stale: AtomicBool,
    timeout: Duration,
}

impl Router {
    /// Connects to the first answering address of `bootstrap` (comma-separated).
    ///
    /// # Errors
    /// [`Error::Connect`].
    pub async fn connect(
        bootstrap: &str,
        timeout: Duration,
        security: crate::ClientSecurity,
    ) -> Result<Router> {
        let connection = Connection::connect_with(bootstrap, &security).await?;
        Ok(Router {
            security,
            bootstrap_list: bootstrap.to_owned(),
            bootstrap: Mutex::new(connection),
            state: Mutex::new(State::default()),
            stale: AtomicBool::new(true),
            timeout,
        })
    }

    /// A connection to `address` made as every connection of this client.
    ///
    /// # Errors
    /// [`crate::Error::Connect`].
    pub async fn connect_to(&self, address: &str) -> Result<Connection> {
        Connection::connect_with(address, &self.security).await
    }

    /// The bootstrap connection (groups, admin, metadata).
    pub fn bootstrap(&self) -> Connection {
        self.bootstrap.lock().expect("router lock").clone()
    }

    /// Marks the leaders stale (a NotLeaderOrFollower answer, a broken connection).
    pub fn mark_stale(&self) {
        self.stale.store(true, Ordering::SeqCst);
    }

    /// Replaces a broken bootstrap connection (trying every bootstrap address).
    pub async fn reconnect_bootstrap(&self) -> Result<()> {
        if !self.bootstrap().is_broken() {
            return Ok(());
        }
        let fresh = Connection::connect_with(&self.bootstrap_list, &self.security).await?;
        *self.bootstrap.lock().expect("router lock") = fresh;
        Ok(())
    }

    /// Asks for the leaders of `topics` when stale.
    pub async fn refresh_if_stale(&self, topics: &[String]) {
        if !self.stale.swap(false, Ordering::SeqCst) {
            return;
        }
        if let Err(e) = self.refresh(topics).await {
            tracing::debug!(error = %e, "metadata refresh failed");
            self.stale.store(true, Ordering::SeqCst);
        }
    }

    async fn refresh(&self, topics: &[String]) -> Result<()> {
        let _ = self.reconnect_bootstrap().await;
        let request = Request::Metadata {
            topics: topics.to_vec(),
        };
        let Response::Metadata { brokers, topics } = self
            .bootstrap()
            .call_timeout(&request, self.timeout)
            .await?
        else {
            return Err(Error::Protocol("metadata response expected".into()));
        };
        let mut state = self.state.lock().expect("router lock");
        if brokers.len() <= 1 {
            // One broker: the bootstrap connection serves everything.
            state.leaders.clear();
            state.cluster = false;
            return Ok(());
        }
        state.cluster = true;
        state.brokers = brokers
            .iter()
            .map(|b| (b.node_id, format!("{}:{}", b.host, b.port)))
            .collect();
        for topic in topics {
            for p in topic.partitions {
                let key = (topic.topic.clone(), p.partition);
                if p.error == ErrorCode::None && p.leader != u32::MAX {
                    state.leaders.insert(key, p.leader);
                } else {
                    state.leaders.remove(&key);
                }
            }
        }
        Ok(())
    }

    /// The connection to `group`'s coordinator: the bootstrap connection on a single broker,
    /// else the broker FindCoordinator names.
    ///
    /// # Errors
    /// Connection failures, or the broker's error (no coordinator available now).
    pub async fn coordinator(&self, group: &str) -> Result<Connection> {
        self.refresh_if_stale(&[]).await;
        if !self.state.lock().expect("router lock").cluster {
            return Ok(self.bootstrap());
        }
        // The bootstrap broker may be the one that went down.
        let _ = self.reconnect_bootstrap().await;
        let request = Request::FindCoordinator {
            group: group.to_owned(),
        };
        match self
            .bootstrap()
            .call_timeout(&request, self.timeout)
            .await?
        {
            Response::FindCoordinator {
                error: ErrorCode::None,
                broker,
            } => {
                let address = format!("{}:{}", broker.host, broker.port);
                self.state
                    .lock()
                    .expect("router lock")
                    .brokers
                    .insert(broker.node_id, address);
                self.connection(Some(broker.node_id)).await
            }
            Response::FindCoordinator { error, .. } => Err(Error::broker(
                error,
                format!("finding the coordinator of group {group}"),
            )),
            _ => Err(Error::Protocol("find-coordinator response expected".into())),
        }
    }

    /// The broker leading `partition` of `topic`, as last known.
    pub fn leader(&self, topic: &str, partition: u32) -> BrokerId {
        let state = self.state.lock().expect("router lock");
        if state.leaders.is_empty() {
            // A single broker: nothing to look up (and no key to allocate per batch).
            return None;
        }
        state.leaders.get(&(topic.to_owned(), partition)).copied()
    }

    /// A connection to `broker` (opened when needed; the bootstrap one for `None`, opened
    /// again when it broke).
    ///
    /// # Errors
    /// [`Error::Connect`]; the metadata is then marked stale (for a broker's connection).
    pub async fn connection(&self, broker: BrokerId) -> Result<Connection> {
        let Some(id) = broker else {
            // A bootstrap connection the broker closed (restarted, or idle past
            // `connections_max_idle_ms`) is replaced before use.
            self.reconnect_bootstrap().await?;
            return Ok(self.bootstrap());
        };
        let address = {
            let state = self.state.lock().expect("router lock");
            if let Some(c) = state.connections.get(&id).filter(|c| !c.is_broken()) {
                return Ok(c.clone());
            }
            state.brokers.get(&id).cloned()
        };
        let Some(address) = address else {
            self.mark_stale();
            return Ok(self.bootstrap());
        };
        match Connection::connect_with(&address, &self.security).await {
            Ok(connection) => {
                let mut state = self.state.lock().expect("router lock");
                state.connections.insert(id, connection.clone());
                Ok(connection)
            }
            Err(e) => {
                self.mark_stale();
                Err(e)
            }
        }
    }
}
