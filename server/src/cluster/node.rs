//! Shard 0's cluster node: the controller (on voters), the broker agent, and the routing
//! of frames between them and the network. All state is one `RefCell` on shard 0, never
//! borrowed across an await; [`drive`] is the loop that ticks, persists and sends.

use super::net::Outbox;
use super::{ClusterConfig, ClusterView, ControllerStatus};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use keel_controller::broker::{BrokerAgent, BrokerConfig, Sent};
use keel_controller::node::{Controller, ControllerConfig, Reply, Request, Token};
use keel_controller::store::LogStore;
use keel_controller::wire::Frame;
use keel_controller::Error;
use protobuf::Message as _;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// Heartbeat interval of the broker agent.
pub const HEARTBEAT_MS: u64 = 250;
/// Broker lease (the controller fences after this long without a heartbeat).
pub const LEASE_MS: u64 = 4_000;
/// Backoff between retries of a metadata-log write that failed.
const METALOG_RETRY_MIN: Duration = Duration::from_millis(10);
/// See [`METALOG_RETRY_MIN`].
const METALOG_RETRY_MAX: Duration = Duration::from_secs(1);
/// Longest a topic change waits for the controller's answer.
pub const ADMIN_TIMEOUT_MS: u64 = 10_000;

/// A test knob: `KEEL_METADATA_<NAME>` overrides a default (tests make snapshots and log
/// rewrites happen after a few entries).
pub(super) fn knob(name: &str, default: u64) -> u64 {
    std::env::var(format!("KEEL_METADATA_{name}"))
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

enum Waiter {
    Agent(Sent),
    Admin(futures_channel::oneshot::Sender<Result<Reply, Error>>),
}

/// The cluster state of this node.
pub struct Node {
    config: ClusterConfig,
    view: Arc<ClusterView>,
    controller: Option<Controller>,
    agent: BrokerAgent,
    peers: HashMap<u64, Outbox>,
    /// Accepted connections: their queue and the node id they said hello as (proven by
    /// its certificate with `--inter-broker-security SSL`).
    inbound: HashMap<u64, (Outbox, u64)>,
    next_conn: u64,
    remote: HashMap<Token, (u64, u64)>,
    waiting: HashMap<Token, (u64, Waiter)>,
    /// The voter each waiting request went to.
    sent_to: HashMap<Token, u64>,
    next_token: Token,
    leader_hint: Option<u64>,
    round_robin: usize,
    welcomed_once: bool,
    published_offset: u64,
    wake: LocalSender<()>,
    reconcile_wake: LocalSender<()>,
    metrics: Arc<crate::metrics::Metrics>,
    /// This data directory's cluster: metadata of another is never published.
    identity: super::identity::ClusterIdentity,
}

impl Node {
    /// A node; `store` is the recovered metadata log when this node is a voter.
    pub fn new(
        config: ClusterConfig,
        view: Arc<ClusterView>,
        store: Option<LogStore>,
        (incarnation, identity): (u64, super::identity::ClusterIdentity),
        reconcile_wake: LocalSender<()>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> anyhow::Result<(Node, LocalReceiver<()>)> {
        let voter_ids: Vec<u64> = config.voters.iter().map(|(id, _)| *id).collect();
        let now = view.now_ms();
        // Every node of a cluster must run with the same lease (a test knob).
        let heartbeat_ms = knob("HEARTBEAT_MS", HEARTBEAT_MS).max(10);
        let lease_ms = knob("LEASE_MS", LEASE_MS).max(heartbeat_ms * 4);
        let controller = match store {
            Some(store) => {
                let mut c = ControllerConfig::new(u64::from(config.node_id), voter_ids);
                c.lease_ms = lease_ms;
                // Raft's tick: an election after 10–20 ticks without a leader.
                c.tick_ms = knob("TICK_MS", c.tick_ms).max(10);
                // A heartbeat held this long still leaves most of the lease (counted from
                // its sending) to the next.
                c.heartbeat_hold_ms = c.heartbeat_hold_ms.min(lease_ms / 4);
                c.seed = incarnation;
                c.new_cluster_id = super::identity::new_cluster_id();
                c.snapshot_entries = knob("SNAPSHOT_ENTRIES", c.snapshot_entries).max(1);
                Some(Controller::new(c, store, now).map_err(|e| anyhow::anyhow!("{e}"))?)
            }
            None => None,
        };
        let agent = BrokerAgent::new(BrokerConfig {
            id: config.node_id,
            address: super::registration_address(config.advertised, &config.advertised_kafka),
            incarnation,
            heartbeat_ms,
            lease_ms,
        });
        let (wake, wake_rx) = local_channel::new_bounded(1);
        Ok((
            Node {
                config,
                view,
                controller,
                agent,
                peers: HashMap::new(),
                inbound: HashMap::new(),
                next_conn: 1,
                remote: HashMap::new(),
                waiting: HashMap::new(),
                sent_to: HashMap::new(),
                next_token: 1,
                leader_hint: None,
                round_robin: 0,
                welcomed_once: false,
                published_offset: 0,
                wake,
                reconcile_wake,
                metrics,
                identity,
            },
            wake_rx,
        ))
    }

    fn poke(&self) {
        let _ = self.wake.try_send(());
    }

    /// Our hello frame.
    pub fn hello(&self) -> Frame {
        Frame::Hello {
            node_id: u64::from(self.config.node_id),
            voters: self
                .config
                .voters
                .iter()
                .map(|(id, a)| (*id, a.to_string()))
                .collect(),
        }
    }

    /// Accepts a peer's hello when its voter list is ours.
    pub fn check_hello(&self, node_id: u64, voters: &[(u64, String)]) -> Result<(), String> {
        self.config.check_hello(node_id, voters)
    }

    /// A voter refused our hello: before any voter accepted us, the fault is ours, so the
    /// process stops with the reason; later, it is logged and retried.
    pub fn refused_by(&mut self, peer: u64, reason: &str) {
        if !self.welcomed_once {
            eprintln!("keel-server: refused by controller {peer}: {reason}");
            std::process::exit(2);
        }
        tracing::error!(peer, reason, "controller refused this node");
    }

    /// A voter accepted our hello.
    pub fn welcomed(&mut self) {
        self.welcomed_once = true;
    }

    /// An outgoing connection to `peer` is up.
    pub fn add_peer(&mut self, peer: u64, outbox: Outbox) {
        self.peers.insert(peer, outbox);
    }
    /// It went down.
    pub fn remove_peer(&mut self, peer: u64) {
        self.peers.remove(&peer);
        // What went to it will not be answered: say so now, so the asker tries elsewhere
        // instead of waiting for its timeout.
        let lost: Vec<Token> = self
            .sent_to
            .iter()
            .filter(|(_, p)| **p == peer)
            .map(|(t, _)| *t)
            .collect();
        for token in lost {
            self.complete(token, Err(Error::NotController { leader: None }));
        }
    }
    /// An accepted connection is up; returns its id.
    pub fn add_inbound(&mut self, outbox: Outbox, node_id: u64) -> u64 {
        let conn = self.next_conn;
        self.next_conn += 1;
        self.inbound.insert(conn, (outbox, node_id));
        conn
    }
    /// It went down.
    pub fn remove_inbound(&mut self, conn: u64) {
        self.inbound.remove(&conn);
        self.remote.retain(|_, (c, _)| *c != conn);
    }

    fn token(&mut self) -> Token {
        let token = self.next_token;
        self.next_token += 1;
        token
    }

    /// A frame on an accepted connection: Raft from a voter, or a request. What the frame
    /// claims must be the connection's node: a Raft message from another node, or a
    /// request a broker makes for itself (registration, heartbeat, ISR change, ...) naming
    /// another broker is refused and logged.
    pub fn on_inbound(&mut self, conn: u64, frame: Frame) {
        let Some(peer) = self.inbound.get(&conn).map(|(_, id)| *id) else {
            return;
        };
        match frame {
            Frame::Raft(data) => {
                let Some(c) = self.controller.as_mut() else {
                    return;
                };
                match raft::eraftpb::Message::parse_from_bytes(&data) {
                    Ok(message) if message.from != peer => {
                        tracing::warn!(target: "keel::audit", peer, from = message.from, "raft message refused: its sender is not the connection's node");
                        self.metrics.peer_claims_refused.inc();
                    }
                    Ok(message) => {
                        if let Err(e) = c.step(message) {
                            tracing::debug!(error = %e, "raft message refused");
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "undecodable raft message"),
                }
            }
            Frame::Request(theirs, request) => {
                let claimed = request.claimed_broker();
                let answer = match self.controller.as_mut() {
                    _ if claimed.is_some_and(|id| u64::from(id) != peer) => {
                        tracing::warn!(target: "keel::audit", peer, claimed, "controller request refused: it speaks for another broker");
                        self.metrics.peer_claims_refused.inc();
                        Some(Err(Error::Invalid {
                            field: "broker id",
                            reason: format!(
                                "node {peer} may not speak for broker {}",
                                claimed.unwrap_or_default()
                            ),
                        }))
                    }
                    None => Some(Err(Error::NotController { leader: None })),
                    Some(_) => {
                        let token = self.token();
                        self.remote.insert(token, (conn, theirs));
                        let c = self.controller.as_mut().expect("checked");
                        let answer = c.request(token, request);
                        if answer.is_some() {
                            self.remote.remove(&token);
                        }
                        answer
                    }
                };
                if let Some(answer) = answer {
                    self.send_inbound(conn, Frame::Answer(theirs, answer));
                }
            }
            _ => {}
        }
        self.poke();
    }

    /// A frame on our connection to a voter: an answer.
    pub fn on_outbound(&mut self, _peer: u64, frame: Frame) {
        if let Frame::Answer(token, answer) = frame {
            self.complete(token, answer);
        }
    }

    fn send_inbound(&self, conn: u64, frame: Frame) {
        if let Some((outbox, _)) = self.inbound.get(&conn) {
            let _ = outbox.try_send(frame);
        }
    }

    fn complete(&mut self, token: Token, answer: Result<Reply, Error>) {
        self.sent_to.remove(&token);
        let Some((_, waiter)) = self.waiting.remove(&token) else {
            return;
        };
        if let Err(Error::NotController { leader }) = &answer {
            self.leader_hint = *leader;
            if leader.is_none() {
                self.round_robin += 1;
            }
        }
        match waiter {
            Waiter::Agent(sent) => match self.agent.answered(sent, answer) {
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "metadata update refused"),
            },
            Waiter::Admin(tx) => {
                let _ = tx.send(answer);
            }
        }
    }

    fn target(&mut self) -> u64 {
        if let Some(c) = &self.controller {
            if let Some(leader) = c.leader() {
                return leader;
            }
        }
        if let Some(leader) = self.leader_hint {
            return leader;
        }
        let voters = &self.config.voters;
        voters[self.round_robin % voters.len()].0
    }

    fn route(&mut self, token: Token, request: Request) {
        let target = self.target();
        if target == u64::from(self.config.node_id) {
            if let Some(c) = self.controller.as_mut() {
                if let Some(answer) = c.request(token, request) {
                    self.complete(token, answer);
                }
                return;
            }
        }
        let sent = self
            .peers
            .get(&target)
            .is_some_and(|outbox| outbox.try_send(Frame::Request(token, request)).is_ok());
        if sent {
            self.sent_to.insert(token, target);
        } else {
            // Not connected to it (or its queue is full): the asker tries another voter.
            self.complete(token, Err(Error::NotController { leader: None }));
        }
    }

    /// Advances time: Raft ticks, the agent's heartbeat, expired requests.
    pub fn tick(&mut self) {
        let now = self.view.now_ms();
        if let Some(c) = self.controller.as_mut() {
            c.tick(now);
        }
        if let Some(e) = self.agent.fatal() {
            eprintln!("keel-server: the controller refused this broker: {e}");
            std::process::exit(2);
        }
        if let Some((sent, request)) = self.agent.poll(now) {
            let token = self.token();
            self.waiting.insert(token, (now, Waiter::Agent(sent)));
            self.route(token, request);
        }
        let expired: Vec<Token> = self
            .waiting
            .iter()
            .filter(|(_, (at, _))| now.saturating_sub(*at) > ADMIN_TIMEOUT_MS)
            .map(|(t, _)| *t)
            .collect();
        for token in expired {
            self.complete(
                token,
                Err(Error::Remote(
                    "no answer from the controller in time: the change may or may not be applied"
                        .into(),
                )),
            );
        }
    }

    fn send_raft(&mut self, messages: Vec<raft::eraftpb::Message>) {
        for message in messages {
            let to = message.to;
            let Ok(data) = message.write_to_bytes() else {
                continue;
            };
            let sent = self
                .peers
                .get(&to)
                .is_some_and(|outbox| outbox.try_send(Frame::Raft(data)).is_ok());
            if !sent {
                if let Some(c) = self.controller.as_mut() {
                    c.unreachable(to);
                }
            }
        }
    }

    /// The last ready is durable: send its messages, advance, route answers.
    fn persisted(&mut self, messages: Vec<raft::eraftpb::Message>) {
        self.send_raft(messages);
        let more = match self.controller.as_mut() {
            Some(c) => c.advance(),
            None => Vec::new(),
        };
        self.send_raft(more);
        self.deliver_answers();
    }

    fn deliver_answers(&mut self) {
        let answers = match self.controller.as_mut() {
            Some(c) => c.take_answers(),
            None => return,
        };
        for (token, answer) in answers {
            if let Some((conn, theirs)) = self.remote.remove(&token) {
                self.send_inbound(conn, Frame::Answer(theirs, answer));
            } else {
                self.complete(token, answer);
            }
        }
    }

    /// Shares the agent's view with every shard.
    fn publish(&mut self) {
        let lease = if self.agent.lease_valid(self.view.now_ms()) {
            self.agent.lease_until_ms()
        } else {
            0
        };
        self.view.set_lease_until_ms(lease);
        let status = match &self.controller {
            Some(c) => ControllerStatus {
                leader: c.leader(),
                term: c.term(),
            },
            None => ControllerStatus {
                leader: self.leader_hint,
                term: self.agent.controller_term(),
            },
        };
        self.view.set_controller(status);
        let m = &self.metrics;
        m.cluster_controller_leader
            .set(status.leader.map_or(-1, |l| l as i64));
        m.cluster_controller_term.set(status.term as i64);
        m.cluster_lease_valid.set(i64::from(lease > 0));
        if let Some(id) = self.agent.image().cluster_id() {
            if let Err(e) = self.identity.check(id) {
                // Nothing of that quorum's metadata was published: no shard acted on it.
                eprintln!("keel-server: {e:#}");
                std::process::exit(2);
            }
        }
        let caught_up = self.agent.caught_up() && self.agent.image().cluster_id().is_some();
        if caught_up != self.view.caught_up() {
            self.view.set_caught_up(caught_up);
            let _ = self.reconcile_wake.try_send(());
        }
        let offset = self.agent.image().offset();
        if offset != self.published_offset {
            self.published_offset = offset;
            let image = self.agent.image();
            m.cluster_metadata_offset.set(offset as i64);
            let fenced = image.brokers().values().filter(|b| b.fenced).count() as i64;
            m.cluster_brokers_fenced.set(fenced);
            m.cluster_brokers_alive
                .set(image.brokers().len() as i64 - fenced);
            let offline = image
                .topics()
                .values()
                .flat_map(|t| &t.partitions)
                .filter(|p| p.leader < 0)
                .count();
            m.cluster_offline_partitions.set(offline as i64);
            let under = image
                .topics()
                .values()
                .flat_map(|t| &t.partitions)
                .filter(|p| p.isr.len() < p.replicas.len())
                .count();
            m.cluster_under_replicated_partitions.set(under as i64);
            for (name, topic) in image.topics() {
                for (partition, state) in topic.partitions.iter().enumerate() {
                    let label = crate::metrics::PartitionLabel {
                        topic: name.clone(),
                        partition: partition as u32,
                    };
                    m.partition_isr_size
                        .get_or_create(&label)
                        .set(state.isr.len() as i64);
                }
            }
            self.view.set_image(image.clone());
            let _ = self.reconcile_wake.try_send(());
        }
    }

    /// Starts a topic change; the receiver gets the controller's answer.
    pub fn submit(
        &mut self,
        request: Request,
    ) -> futures_channel::oneshot::Receiver<Result<Reply, Error>> {
        let (tx, rx) = futures_channel::oneshot::channel();
        let token = self.token();
        let now = self.view.now_ms();
        self.waiting.insert(token, (now, Waiter::Admin(tx)));
        self.route(token, request);
        self.poke();
        rx
    }
}

/// Runs the node: ticks every 10 ms or when poked, persists each ready, sends, publishes.
/// A failed write of the metadata log ends the process (the quorum cannot trust it).
pub async fn drive(
    node: Rc<RefCell<Node>>,
    mut log: Option<super::metalog::MetaLog>,
    wake: LocalReceiver<()>,
) {
    // A round the metadata log could not take (a full or failing disk): retried with
    // backoff, the whole round rewritten each time, while nothing of it is sent and no
    // later round is made; the broker agent goes on meanwhile.
    let mut unsaved: Option<keel_controller::node::Ready> = None;
    let mut backoff = METALOG_RETRY_MIN;
    loop {
        futures_lite::future::or(
            async {
                glommio::timer::sleep(Duration::from_millis(10)).await;
            },
            async {
                let _ = wake.recv().await;
            },
        )
        .await;
        node.borrow_mut().tick();
        loop {
            let ready = match unsaved.take() {
                Some(ready) => ready,
                None => {
                    let mut n = node.borrow_mut();
                    match n.controller.as_mut() {
                        Some(c) if c.has_ready() => c.ready(),
                        _ => break,
                    }
                }
            };
            if !ready.persist.is_empty() {
                let log = log.as_mut().expect("voters have a metadata log");
                if let Err(e) = log.append(&ready.persist).await {
                    tracing::error!(error = %format!("{e:#}"), retry_in_ms = backoff.as_millis() as u64, "metadata log write failed: metadata changes wait");
                    unsaved = Some(ready);
                    glommio::timer::sleep(backoff).await;
                    backoff = (backoff * 2).min(METALOG_RETRY_MAX);
                    break;
                }
                backoff = METALOG_RETRY_MIN;
            }
            node.borrow_mut().persisted(ready.messages);
        }
        if let Some(log) = log.as_mut() {
            let snapshot_index = node
                .borrow()
                .controller
                .as_ref()
                .map_or(0, |c| c.store().snapshot_ref().get_metadata().index);
            // Cloned (a copy of the log) only when a rewrite is due.
            let due = log.size >= log.rewrite_bytes && snapshot_index > log.rewritten_at_index;
            let store = due
                .then(|| node.borrow().controller.as_ref().map(|c| c.store().clone()))
                .flatten();
            if let Some(store) = store {
                // A failed rewrite leaves the old file whole: it is tried again later.
                if let Err(e) = log.maybe_rewrite(&store).await {
                    tracing::warn!(error = %format!("{e:#}"), "metadata log rewrite failed");
                    log.rewritten_at_index = snapshot_index;
                }
            }
        }
        let mut n = node.borrow_mut();
        n.deliver_answers();
        n.publish();
    }
}
