//! Cluster mode: the glommio layer around `keel-controller`.
//!
//! With `--controller-voters`, shard 0 of every node runs a [`node::Node`]: the controller
//! (when the node is a voter: raft-rs over a metadata log file, its listener and connections
//! to the other voters) and the broker agent (registration, heartbeats, lease, applied
//! metadata). Every shard reads the applied metadata and the lease from the shared
//! [`ClusterView`] to refuse partitions this broker does not lead; shard 0 makes the local
//! registry and partition logs follow the metadata ([`reconcile`]).

pub mod call;
pub mod identity;
pub mod metalog;
pub mod net;
pub mod node;
pub mod reconcile;

use anyhow::{bail, Context};
use keel_controller::image::MetadataImage;
use keel_protocol::api::ErrorCode;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

pub use crate::config::cluster::ClusterConfig;

/// A broker registration's address: the native endpoint, then tagged endpoints,
/// space-separated: `kafka=HOST:PORT` (its first Kafka listener) and `kafka.NAME=HOST:PORT`
/// for every Kafka listener by name. The controller keeps it as an opaque string.
pub fn registration_address(native: SocketAddr, kafka: &[(String, SocketAddr)]) -> String {
    let mut address = native.to_string();
    if let Some((_, first)) = kafka.first() {
        address += &format!(" kafka={first}");
    }
    for (name, advertised) in kafka {
        address += &format!(" kafka.{name}={advertised}");
    }
    address
}

/// The native endpoint of a registration's address.
pub fn native_address(address: &str) -> &str {
    address.split(' ').next().unwrap_or_default()
}

/// The endpoint of a registration's Kafka listener `listener` (Kafka's rule: a client is
/// told each broker's address on the listener it connected through; a broker without it
/// is left out). A registration naming no listener (an older broker) has one, for every
/// name.
pub fn kafka_address(address: &str, listener: &str) -> Option<SocketAddr> {
    let named = format!("kafka.{listener}=");
    let mut parts = address.split(' ');
    let found = parts
        .clone()
        .find_map(|part| part.strip_prefix(named.as_str()));
    let any_named = parts.any(|part| part.starts_with("kafka."));
    let endpoint = match found {
        Some(endpoint) => endpoint,
        None if any_named => return None,
        None => address
            .split(' ')
            .find_map(|part| part.strip_prefix("kafka="))?,
    };
    endpoint.parse().ok()
}

/// The controller as this node last knew it.
#[derive(Debug, Clone, Copy, Default)]
pub struct ControllerStatus {
    /// Leader id, when known.
    pub leader: Option<u64>,
    /// Its term.
    pub term: u64,
}

/// What every shard reads: the applied metadata and whether this broker's lease holds.
pub struct ClusterView {
    /// This broker's node id.
    pub node_id: u32,
    started: Instant,
    image: RwLock<Arc<MetadataImage>>,
    lease_until_ms: AtomicU64,
    reconciled_offset: AtomicU64,
    caught_up: std::sync::atomic::AtomicBool,
    controller: RwLock<ControllerStatus>,
    /// Where this broker's mirror partitions stand (`mirror/`), for `keel link describe`.
    pub mirrors: std::sync::Mutex<MirrorStatus>,
    /// Set while one of this broker's shards takes a block of producer ids: a block is read
    /// back as "the broker's latest", so two taken at once would both read the second.
    pub producer_block_taken: std::sync::atomic::AtomicBool,
}

/// Where the mirror partitions this broker leads stand, and why a link cannot reach its
/// source (by link name), as the mirror tasks last saw them.
#[derive(Debug, Default)]
pub struct MirrorStatus {
    /// Per (destination topic, partition): its link and where it stands.
    pub partitions: std::collections::BTreeMap<(String, u32), MirrorEntry>,
    /// Per link: why its source cannot be read now.
    pub link_failures: std::collections::BTreeMap<String, String>,
    /// Promoted mirror partitions this broker leads whose leader epoch is above every
    /// mirrored one: only these take writes (`mirror/upkeep.rs`).
    pub writable: std::collections::BTreeSet<(String, u32)>,
}

/// One mirror partition's link and state.
#[derive(Debug, Clone)]
pub struct MirrorEntry {
    /// The link.
    pub link: String,
    /// Where it stands.
    pub status: keel_protocol::api::MirrorPartitionStatus,
}

impl ClusterView {
    /// A view with no metadata and no lease.
    pub fn new(node_id: u32) -> ClusterView {
        ClusterView {
            node_id,
            started: Instant::now(),
            image: RwLock::new(Arc::new(MetadataImage::default())),
            lease_until_ms: AtomicU64::new(0),
            reconciled_offset: AtomicU64::new(0),
            caught_up: std::sync::atomic::AtomicBool::new(false),
            controller: RwLock::new(ControllerStatus::default()),
            mirrors: std::sync::Mutex::default(),
            producer_block_taken: std::sync::atomic::AtomicBool::new(false),
        }
    }
    /// Milliseconds since start (the clock leases are counted in).
    pub fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
    /// The applied metadata.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.image.read().expect("image lock").clone()
    }
    /// Publishes newly applied metadata.
    pub fn set_image(&self, image: MetadataImage) {
        *self.image.write().expect("image lock") = Arc::new(image);
    }
    /// Sets when this broker's lease ends (0: no lease).
    pub fn set_lease_until_ms(&self, until: u64) {
        self.lease_until_ms.store(until, Ordering::SeqCst);
    }
    /// True while this broker's lease with the controller holds.
    pub fn lease_valid(&self) -> bool {
        self.now_ms() < self.lease_until_ms.load(Ordering::SeqCst)
    }
    /// How long the lease still holds (zero once lapsed).
    pub fn lease_left(&self) -> std::time::Duration {
        let until = self.lease_until_ms.load(Ordering::SeqCst);
        std::time::Duration::from_millis(until.saturating_sub(self.now_ms()))
    }
    /// True when the applied metadata held everything the controller had at its last
    /// answer, and names this broker's own cluster: only then may it delete local data.
    pub fn caught_up(&self) -> bool {
        self.caught_up.load(Ordering::SeqCst)
    }
    /// Set by the agent: see `BrokerAgent::caught_up`.
    pub fn set_caught_up(&self, caught_up: bool) {
        self.caught_up.store(caught_up, Ordering::SeqCst);
    }
    /// The metadata offset the registry and logs were last brought in line with.
    pub fn reconciled_offset(&self) -> u64 {
        self.reconciled_offset.load(Ordering::SeqCst)
    }
    /// Records that the registry and logs follow the metadata up to `offset`.
    pub fn set_reconciled_offset(&self, offset: u64) {
        self.reconciled_offset.store(offset, Ordering::SeqCst);
    }
    /// The controller as last known.
    pub fn controller(&self) -> ControllerStatus {
        *self.controller.read().expect("controller lock")
    }
    /// Records the controller's leader and term.
    pub fn set_controller(&self, status: ControllerStatus) {
        *self.controller.write().expect("controller lock") = status;
    }

    /// Whether this broker may serve `partition` of `topic` as its leader now: `Ok` with
    /// the leader epoch, or the error to answer.
    pub fn leads(&self, topic: &str, partition: u32) -> Result<u32, ErrorCode> {
        let image = self.image();
        let Some(state) = image
            .topic(topic)
            .and_then(|t| t.partitions.get(partition as usize))
        else {
            // Without a lease this broker may simply not have the metadata yet (it just
            // started): the client should ask again, not give up on the topic.
            if !self.lease_valid() {
                return Err(ErrorCode::NotLeaderOrFollower);
            }
            return Err(ErrorCode::UnknownTopicOrPartition);
        };
        if state.leader < 0 {
            return Err(ErrorCode::LeaderNotAvailable);
        }
        if state.leader != self.node_id as i32 || !self.lease_valid() {
            return Err(ErrorCode::NotLeaderOrFollower);
        }
        Ok(state.leader_epoch)
    }
}

/// This data directory's incarnation for this start: its random id (made on first start)
/// and a start counter, kept in `node.incarnation`.
///
/// # Errors
/// The file cannot be read or written.
pub fn next_incarnation(data_dir: &Path) -> anyhow::Result<u64> {
    let path = data_dir.join("node.incarnation");
    let (directory_id, starts) = match std::fs::read_to_string(&path) {
        Ok(text) => {
            let mut parts = text.split_whitespace().map(str::parse::<u32>);
            match (parts.next(), parts.next()) {
                (Some(Ok(id)), Some(Ok(starts))) => (id, starts),
                _ => bail!("{} is not two numbers", path.display()),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let seed = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
                ^ u64::from(std::process::id()).rotate_left(32);
            ((seed ^ (seed >> 32)) as u32 | 1, 0)
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let starts = starts.wrapping_add(1);
    crate::registry::write_durably(&path, format!("{directory_id} {starts}\n").as_bytes())?;
    Ok(keel_controller::node::incarnation(directory_id, starts))
}

/// What start-up prepares for shard 0: the view, the recovered metadata log (voters), the
/// incarnation.
pub struct Boot {
    /// Shared with every shard.
    pub view: Arc<ClusterView>,
    config: ClusterConfig,
    log: Option<(std::path::PathBuf, keel_controller::store::LogStore)>,
    incarnation: u64,
    identity: identity::ClusterIdentity,
}

/// Start-up checks and recovery before the shards start.
///
/// # Errors
/// The metadata log belongs to another quorum or cannot
/// be read, or the incarnation file cannot be written.
pub fn boot(data_dir: &Path, config: &ClusterConfig) -> anyhow::Result<Boot> {
    let log = if config.is_voter() {
        Some(metalog::recover_log(data_dir, config)?)
    } else {
        None
    };
    Ok(Boot {
        view: Arc::new(ClusterView::new(config.node_id)),
        config: config.clone(),
        log,
        incarnation: next_incarnation(data_dir)?,
        identity: identity::ClusterIdentity::load(data_dir)?,
    })
}

/// Starts the node on shard 0: its listener (voters), connections to the voters, the driver
/// and the reconciler.
///
/// # Errors
/// The controller listener or the metadata log cannot be opened.
pub async fn start(shard: std::rc::Rc<crate::shard::Shard>, boot: Boot) -> anyhow::Result<()> {
    use std::cell::RefCell;
    use std::rc::Rc;
    let Boot {
        view,
        config,
        log,
        incarnation,
        identity,
    } = boot;
    let (reconcile_tx, reconcile_rx) = glommio::channels::local_channel::new_bounded(1);
    let store = log.as_ref().map(|(_, store)| store.clone());
    let (node, wake) = node::Node::new(
        config.clone(),
        view.clone(),
        store,
        (incarnation, identity),
        reconcile_tx,
        shard.metrics.clone(),
    )?;
    let node = Rc::new(RefCell::new(node));
    *shard.cluster_node.borrow_mut() = Some(node.clone());
    let metalog = match log {
        Some((path, _)) => Some(metalog::MetaLog::open(path).await?),
        None => None,
    };
    let peers = crate::security::peer::PeerSecurity::new(
        &shard.security,
        shard.config.security.inter_broker_tls,
    );
    if config.is_voter() {
        let listener = glommio::net::TcpListener::bind(config.controller_listen)
            .map_err(std::io::Error::from)
            .with_context(|| {
                format!(
                    "cannot listen on {} for the controller",
                    config.controller_listen
                )
            })?;
        glommio::spawn_local(net::serve(listener, node.clone(), peers.clone())).detach();
    }
    for (id, address) in &config.voters {
        if *id != u64::from(config.node_id) {
            let connect = net::connect_loop(*id, *address, node.clone(), peers.clone());
            glommio::spawn_local(connect).detach();
        }
    }
    glommio::spawn_local(node::drive(node, metalog, wake)).detach();
    glommio::spawn_local(crate::security::settle::settle(shard.clone())).detach();
    glommio::spawn_local(reconcile::run(shard, view, reconcile_rx)).detach();
    tracing::info!(
        node = config.node_id,
        voter = config.is_voter(),
        voters = %config.voters_text(),
        incarnation,
        "cluster mode"
    );
    Ok(())
}

/// Sends a topic change to the controller (through shard 0) and waits until it is applied
/// here too, so the caller's next request on this broker sees it.
///
/// # Errors
/// The controller's refusal, or [`keel_controller::Error::Remote`] when no answer came in
/// time (the outcome is then unknown).
pub async fn change(
    shard: &std::rc::Rc<crate::shard::Shard>,
    request: keel_controller::node::Request,
) -> Result<u64, keel_controller::Error> {
    use keel_controller::node::Reply;
    let answer = if shard.id == 0 {
        submit_here(shard, request).await
    } else {
        shard
            .ask::<crate::shard::ClusterAnswer>(0, crate::shard::Job::Cluster(request))
            .await
            .unwrap_or_else(|_| {
                Err(keel_controller::Error::Remote(
                    "shard 0 did not answer".into(),
                ))
            })
    };
    let offset = match answer? {
        Reply::Committed { offset } => offset,
        Reply::Metadata { .. } => {
            return Err(keel_controller::Error::Remote("unexpected answer".into()))
        }
    };
    let Some(view) = shard.cluster.as_ref() else {
        return Ok(offset);
    };
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    while view.reconciled_offset() < offset && Instant::now() < deadline {
        glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
    }
    Ok(offset)
}

/// On shard 0: submits to the node, following "not the controller" hints a few times.
pub async fn submit_here(
    shard: &std::rc::Rc<crate::shard::Shard>,
    request: keel_controller::node::Request,
) -> Result<keel_controller::node::Reply, keel_controller::Error> {
    let Some(node) = shard.cluster_node.borrow().clone() else {
        return Err(keel_controller::Error::Remote(
            "cluster mode is not running".into(),
        ));
    };
    let mut last = keel_controller::Error::NotController { leader: None };
    for attempt in 0..20u64 {
        if attempt > 0 {
            glommio::timer::sleep(std::time::Duration::from_millis(100 + 50 * attempt)).await;
        }
        let rx = node.borrow_mut().submit(request.clone());
        match rx.await {
            Ok(Err(e @ keel_controller::Error::NotController { .. })) => last = e,
            Ok(Err(e @ keel_controller::Error::Dropped)) => last = e,
            Ok(answer) => return answer,
            Err(_) => last = keel_controller::Error::Remote("request dropped".into()),
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    // The voter list is checked in one line per problem.
    #[test]
    fn voters_are_checked() {
        let listen = addr("127.0.0.1:7072");
        let ok =
            ClusterConfig::new(2, "1@127.0.0.1:7072,2@127.0.0.1:7172", listen, listen).unwrap();
        assert_eq!(
            ok.controller_listen,
            addr("127.0.0.1:7172"),
            "taken from the list"
        );
        assert!(ok.is_voter());
        for (text, expected) in [
            ("1@127.0.0.1:1,1@127.0.0.1:2", "duplicate node id 1"),
            ("1@127.0.0.1:1,2@127.0.0.1:1", "duplicate address"),
            ("1-127.0.0.1:1", "is not ID@HOST:PORT"),
            ("0@127.0.0.1:1", "is not a node id"),
            ("1@localhost", "is not HOST:PORT"),
            ("", "is empty"),
        ] {
            let err = ClusterConfig::new(1, text, listen, listen)
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{text}: {err}");
        }
        let err = ClusterConfig::new(1, "1@127.0.0.1:9", addr("127.0.0.1:8"), listen)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--controller-listen is 127.0.0.1:8"), "{err}");
    }

    // Goal: a client is told each broker's address on the listener it came through; a
    // broker without that listener is left out; an older registration (one `kafka=`)
    // serves every name.
    #[test]
    fn registrations_carry_every_kafka_listener_by_name() {
        let native: SocketAddr = "10.0.0.1:7070".parse().unwrap();
        let listeners = vec![
            ("PLAINTEXT".to_owned(), "10.0.0.1:9092".parse().unwrap()),
            ("SASL_SSL".to_owned(), "192.0.2.1:9093".parse().unwrap()),
        ];
        let address = registration_address(native, &listeners);
        assert_eq!(native_address(&address), "10.0.0.1:7070");
        let told = |name| kafka_address(&address, name).map(|a| a.to_string());
        assert_eq!(told("PLAINTEXT").as_deref(), Some("10.0.0.1:9092"));
        assert_eq!(told("SASL_SSL").as_deref(), Some("192.0.2.1:9093"));
        assert_eq!(told("INTERNAL"), None);
        let older = "10.0.0.2:7070 kafka=10.0.0.2:9092";
        assert_eq!(
            kafka_address(older, "SASL_SSL")
                .map(|a| a.to_string())
                .as_deref(),
            Some("10.0.0.2:9092")
        );
        assert_eq!(registration_address(native, &[]), "10.0.0.1:7070");
    }
}
