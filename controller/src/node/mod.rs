//! The controller on one voter: raft-rs's `RawNode` over [`LogStore`], the metadata image it
//! applies, and the service brokers talk to (registration, heartbeats and leases, topic
//! changes). Sans-IO: the caller brings time, messages and durability.
//!
//! The loop the I/O layer runs:
//! 1. feed inputs: [`Controller::tick`], [`Controller::step`], [`Controller::request`];
//! 2. while [`Controller::has_ready`]: take [`Controller::ready`], make its [`Persist`]
//!    durable (write + fsync), send its messages, then call [`Controller::advance`] and send
//!    what that returns;
//! 3. deliver [`Controller::take_answers`] to whoever asked.
//!
//! Every metadata change is one Raft entry; a request is answered once the entry at its
//! index is applied: `Ok` if that entry is ours, [`Error::Dropped`] if another leader's
//! entry took the index. So a change either commits and is reported, or is reported lost.

use std::collections::BTreeMap;

use raft::eraftpb::{Entry, EntryType, Message};
use raft::{RawNode, StateRole};

mod reassign;
mod requests;

pub use crate::api::{incarnation, ControllerConfig, Ready, Reply, Request, Token, Update};
use crate::error::{Error, Result};
use crate::image::{check_topic_name, MetadataImage};
use crate::leadership::{lead_again, move_leadership_from, unfence_records};
use crate::placement::place;
use crate::records::{decode_entry, encode_entry, PartitionState, Record};
use crate::store::{LogStore, Persist, SnapshotWrite};
#[derive(Debug, Clone)]
struct Pending {
    term: u64,
    token: Option<Token>,
    /// Partitions whose state the entry sets (topic id, index).
    partitions: Vec<(u64, u32)>,
}

/// The controller on one voter.
pub struct Controller {
    config: ControllerConfig,
    raw: RawNode<LogStore>,
    image: MetadataImage,
    ready: Option<raft::Ready>,
    compaction: Option<SnapshotWrite>,
    pending: BTreeMap<u64, Pending>,
    answers: Vec<(Token, Result<Reply>)>,
    leases: BTreeMap<u32, u64>,
    proposed_at_ms: BTreeMap<(u32, bool), u64>,
    now_ms: u64,
    ticked_ms: u64,
    rng: u64,
    role: (u64, StateRole),
    applied_log: Vec<(u64, u64, Vec<u8>)>,
    /// Inputs that arrived while a ready was being persisted (raft-rs takes no input
    /// between `ready` and `advance`), replayed by `advance`.
    deferred: std::collections::VecDeque<Deferred>,
    /// Heartbeats of brokers that have everything: `(token, offset, since)`.
    parked: Vec<(Token, u32, u64, u64)>,
    /// The term in which this voter proposed the cluster id.
    cluster_id_proposed: Option<u64>,
}

enum Deferred {
    Step(Message),
    Request(Token, Request),
}

/// Most heartbeats held at once (more are answered at once).
pub const PARKED_MAX: usize = 10_000;

/// Most inputs held while a ready is persisted; more are dropped (Raft messages are
/// retried by their senders; requests are answered busy).
pub const DEFERRED_MAX: usize = 4_096;

impl Controller {
    /// A voter over the log the I/O layer recovered (or [`LogStore::new`] on first start).
    ///
    /// # Errors
    /// The configuration is invalid, or the stored snapshot does not decode.
    pub fn new(config: ControllerConfig, store: LogStore, now_ms: u64) -> Result<Controller> {
        assert!(
            config.voters.contains(&config.node_id),
            "a controller is a voter"
        );
        let snapshot = store.snapshot_ref().clone();
        let image = if snapshot.get_data().is_empty() {
            MetadataImage::default()
        } else {
            MetadataImage::decode(snapshot.get_data())?
        };
        let raft_config = raft::Config {
            id: config.node_id,
            election_tick: config.election_ticks,
            heartbeat_tick: config.heartbeat_ticks,
            applied: snapshot.get_metadata().index,
            check_quorum: true,
            pre_vote: true,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            ..Default::default()
        };
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let raw = RawNode::new(&raft_config, store, &logger)?;
        let mut controller = Controller {
            rng: config.seed ^ config.node_id.wrapping_mul(0x9e37_79b9_7f4a_7c15),
            config,
            raw,
            image,
            ready: None,
            compaction: None,
            pending: BTreeMap::new(),
            answers: Vec::new(),
            leases: BTreeMap::new(),
            proposed_at_ms: BTreeMap::new(),
            now_ms,
            ticked_ms: now_ms,
            role: (0, StateRole::Follower),
            applied_log: Vec::new(),
            deferred: std::collections::VecDeque::new(),
            parked: Vec::new(),
            cluster_id_proposed: None,
        };
        controller.randomize_timeout();
        Ok(controller)
    }

    /// The applied metadata.
    pub fn image(&self) -> &MetadataImage {
        &self.image
    }
    /// This voter's id.
    pub fn node_id(&self) -> u64 {
        self.config.node_id
    }
    /// The voters.
    pub fn voters(&self) -> &[u64] {
        &self.config.voters
    }
    /// The current term.
    pub fn term(&self) -> u64 {
        self.raw.raft.term
    }
    /// True while this voter leads the quorum.
    pub fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }
    /// A leader that applied an entry of its own term: everything earlier leaders
    /// committed (a fencing among it) is in its image. Before that it grants no lease.
    pub(crate) fn leader_caught_up(&self) -> bool {
        let log = &self.raw.raft.raft_log;
        self.is_leader() && log.term(log.applied).is_ok_and(|t| t == self.raw.raft.term)
    }

    /// The leader this voter knows of.
    pub fn leader(&self) -> Option<u64> {
        match self.raw.raft.leader_id {
            0 => None,
            id => Some(id),
        }
    }
    /// The Raft log in memory.
    pub fn store(&self) -> &LogStore {
        self.raw.store()
    }
    /// Changes proposed and not yet applied.
    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// Advances time: Raft ticks, and the leader fences brokers whose lease lapsed.
    pub fn tick(&mut self, now_ms: u64) {
        self.now_ms = self.now_ms.max(now_ms);
        if self.ready.is_some() {
            return;
        }
        while self.now_ms.saturating_sub(self.ticked_ms) >= self.config.tick_ms {
            self.ticked_ms += self.config.tick_ms;
            self.raw.tick();
            self.after_raft_call();
        }
        self.release_parked(false);
        if self.is_leader() {
            self.fence_lapsed();
            self.name_the_cluster();
        }
    }

    /// A new cluster gets its id from its first leader, once per term (a proposal lost to a
    /// leadership change is made again by whoever leads next; two racing ones apply once).
    fn name_the_cluster(&mut self) {
        let term = self.raw.raft.term;
        if self.image.cluster_id().is_some()
            || self.cluster_id_proposed == Some(term)
            || !self.leader_caught_up()
        {
            return;
        }
        let id = self.config.new_cluster_id.clone();
        if self
            .propose(vec![Record::SetClusterId { id }], None)
            .is_ok()
        {
            self.cluster_id_proposed = Some(term);
        }
    }

    /// A Raft message from another voter.
    ///
    /// # Errors
    /// The library refused it (from a non-voter, a local message type).
    pub fn step(&mut self, message: Message) -> Result<()> {
        if !self.config.voters.contains(&message.from) {
            return Err(Error::Invalid {
                field: "raft message",
                reason: format!("from {} which is not a voter", message.from),
            });
        }
        if self.ready.is_some() {
            if self.deferred.len() < DEFERRED_MAX {
                self.deferred.push_back(Deferred::Step(message));
            }
            return Ok(());
        }
        let result = self.raw.step(message);
        self.after_raft_call();
        Ok(result?)
    }

    /// Tells Raft a voter could not be reached (it then probes instead of streaming).
    pub fn unreachable(&mut self, node_id: u64) {
        self.raw.report_unreachable(node_id);
    }

    /// A request from a broker or tool. The answer is returned at once when no change needs
    /// committing; otherwise it comes later from [`Self::take_answers`] under `token`.
    pub fn request(&mut self, token: Token, request: Request) -> Option<Result<Reply>> {
        if self.ready.is_some() {
            if self.deferred.len() >= DEFERRED_MAX {
                return Some(Err(Error::Busy("too many inputs while persisting")));
            }
            self.deferred.push_back(Deferred::Request(token, request));
            return None;
        }
        if !self.is_leader() {
            if let Request::Fetch { offset } = request {
                return Some(Ok(self.metadata_reply(offset, false)));
            }
            return Some(Err(Error::NotController {
                leader: self.leader(),
            }));
        }
        match self.handle(token, request) {
            Ok(None) => None,
            Ok(Some(reply)) => Some(Ok(reply)),
            Err(e) => Some(Err(e)),
        }
    }

    /// Answers whose changes were applied (or lost) since the last call.
    pub fn take_answers(&mut self) -> Vec<(Token, Result<Reply>)> {
        std::mem::take(&mut self.answers)
    }

    /// The entries applied since the last call, as `(index, term, data)`, when
    /// [`ControllerConfig::record_applied`] is set.
    pub fn take_applied(&mut self) -> Vec<(u64, u64, Vec<u8>)> {
        std::mem::take(&mut self.applied_log)
    }

    /// True when [`Self::ready`] has something.
    pub fn has_ready(&self) -> bool {
        self.ready.is_none() && (self.raw.has_ready() || self.compaction.is_some())
    }

    /// What to persist and send now. Committed entries it carries are applied at once.
    ///
    /// # Panics
    /// Called again before [`Self::advance`].
    pub fn ready(&mut self) -> Ready {
        assert!(self.ready.is_none(), "advance() the previous ready first");
        let mut out = Ready {
            persist: Persist {
                snapshot: self.compaction.take(),
                ..Persist::default()
            },
            messages: Vec::new(),
        };
        if !self.raw.has_ready() {
            return out;
        }
        let mut rd = self.raw.ready();
        if !rd.snapshot().is_empty() {
            let write = SnapshotWrite {
                snapshot: rd.snapshot().clone(),
                replaces_log: true,
            };
            match MetadataImage::decode(write.snapshot.get_data()) {
                Ok(image) => self.image = image,
                Err(_) => self.image = MetadataImage::default(),
            }
            self.raw.mut_store().apply_snapshot(&write);
            self.resolve_through(write.snapshot.get_metadata().index);
            out.persist.snapshot = Some(write);
        }
        let committed = rd.take_committed_entries();
        self.apply(committed);
        if !rd.entries().is_empty() {
            self.raw.mut_store().append(rd.entries());
            out.persist.entries = rd.take_entries();
        }
        if let Some(hs) = rd.hs() {
            self.raw.mut_store().set_hard_state(hs.clone());
            out.persist.hard_state = Some(hs.clone());
        }
        out.messages = rd.take_messages();
        out.messages.extend(rd.take_persisted_messages());
        self.ready = Some(rd);
        out
    }

    /// The last [`Self::ready`] is durable: returns messages to send now.
    pub fn advance(&mut self) -> Vec<Message> {
        let Some(rd) = self.ready.take() else {
            return Vec::new();
        };
        let mut light = self.raw.advance(rd);
        if let Some(commit) = light.commit_index() {
            self.raw.mut_store().set_commit(commit);
        }
        let messages = light.take_messages();
        let committed = light.take_committed_entries();
        self.apply(committed);
        self.raw.advance_apply();
        self.after_raft_call();
        self.maybe_compact();
        while let Some(input) = self.deferred.pop_front() {
            match input {
                Deferred::Step(message) => {
                    let _ = self.step(message);
                }
                Deferred::Request(token, request) => {
                    if let Some(answer) = self.request(token, request) {
                        self.answers.push((token, answer));
                    }
                }
            }
        }
        let now = self.now_ms;
        self.tick(now);
        messages
    }

    fn propose(&mut self, records: Vec<Record>, token: Option<Token>) -> Result<()> {
        if self.pending.len() >= self.config.pending_max {
            return Err(Error::Busy("too many metadata changes in flight"));
        }
        // A partition change is computed from the applied image: while another change of
        // the same partition is in flight (ours, or an earlier leader's not applied yet), it
        // would be computed from a state about to be replaced, and undo that change.
        let partitions: Vec<(u64, u32)> = records
            .iter()
            .filter_map(|r| match r {
                Record::PartitionChange {
                    topic_id,
                    partition,
                    ..
                } => Some((*topic_id, *partition)),
                _ => None,
            })
            .collect();
        if !partitions.is_empty() {
            let in_flight = self
                .pending
                .values()
                .any(|p| p.partitions.iter().any(|k| partitions.contains(k)));
            if in_flight || !self.leader_caught_up() {
                return Err(Error::Busy("a change of the same partition is in flight"));
            }
        }
        let data = encode_entry(&records)?;
        self.raw
            .propose(Vec::new(), data)
            .map_err(|_| Error::NotController {
                leader: self.leader(),
            })?;
        let index = self.raw.raft.raft_log.last_index();
        let pending = Pending {
            term: self.raw.raft.term,
            token,
            partitions,
        };
        if let Some(old) = self.pending.insert(index, pending) {
            self.answer(old.token, Err(Error::Dropped));
        }
        Ok(())
    }

    fn answer(&mut self, token: Option<Token>, result: Result<Reply>) {
        if let Some(token) = token {
            self.answers.push((token, result));
        }
    }

    fn apply(&mut self, entries: Vec<Entry>) {
        let before = self.image.offset();
        self.apply_entries(entries);
        if self.image.offset() > before {
            self.release_parked(true);
        }
    }

    fn apply_entries(&mut self, entries: Vec<Entry>) {
        for entry in entries {
            if entry.index <= self.image.offset() {
                continue;
            }
            if self.config.record_applied {
                self.applied_log
                    .push((entry.index, entry.term, entry.data.to_vec()));
            }
            let result =
                if entry.data.is_empty() || entry.get_entry_type() != EntryType::EntryNormal {
                    self.image.skip(entry.index);
                    Ok(())
                } else {
                    match decode_entry(&entry.data) {
                        Ok(records) => self.image.apply(entry.index, &records),
                        Err(e) => {
                            self.image.skip(entry.index);
                            Err(e)
                        }
                    }
                };
            self.resolve_through(entry.index - 1);
            if let Some(pending) = self.pending.remove(&entry.index) {
                let result = if pending.term == entry.term {
                    result.map(|()| Reply::Committed {
                        offset: entry.index,
                    })
                } else {
                    Err(Error::Dropped)
                };
                self.answer(pending.token, result);
            }
        }
    }

    /// Proposals at or below `index` that were not matched by an applied entry are lost.
    fn resolve_through(&mut self, index: u64) {
        while let Some((&at, _)) = self.pending.first_key_value() {
            if at > index {
                break;
            }
            let pending = self.pending.remove(&at).expect("first key exists");
            self.answer(pending.token, Err(Error::Dropped));
        }
    }

    fn maybe_compact(&mut self) {
        let store = self.raw.store();
        let snapshot_index = store.snapshot_ref().get_metadata().index;
        let applied = self.image.offset();
        if applied < snapshot_index + self.config.snapshot_entries || self.compaction.is_some() {
            return;
        }
        let Ok(data) = self.image.encode() else {
            return;
        };
        let write = store.compaction(applied, data);
        self.raw.mut_store().apply_snapshot(&write);
        self.compaction = Some(write);
    }

    fn after_raft_call(&mut self) {
        let role = (self.raw.raft.term, self.raw.raft.state);
        if role == self.role {
            return;
        }
        self.role = role;
        self.randomize_timeout();
        if role.1 == StateRole::Leader {
            // A new controller gives every broker a full lease before fencing anyone.
            let now = self.now_ms;
            self.leases = self.image.brokers().keys().map(|id| (*id, now)).collect();
            self.proposed_at_ms.clear();
        }
    }

    /// raft-rs draws election timeouts from the thread's RNG; we draw them from our seed so
    /// a simulation replays exactly.
    fn randomize_timeout(&mut self) {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let base = self.config.election_ticks;
        let timeout = base + (self.rng % base as u64) as usize;
        self.raw.raft.set_randomized_election_timeout(timeout);
    }

    fn may_propose(&mut self, id: u32, fence: bool) -> bool {
        let key = (id, fence);
        let now = self.now_ms;
        match self.proposed_at_ms.get(&key) {
            Some(at) if now.saturating_sub(*at) < self.config.lease_ms / 2 => false,
            _ => {
                self.proposed_at_ms.insert(key, now);
                true
            }
        }
    }

    fn fence_lapsed(&mut self) {
        let now = self.now_ms;
        let lapsed: Vec<(u32, u64)> = self
            .image
            .brokers()
            .iter()
            .filter(|(_, b)| !b.fenced)
            .filter(|(id, _)| {
                let last = self.leases.get(id).copied().unwrap_or(now);
                now.saturating_sub(last) > self.config.lease_ms
            })
            .map(|(id, b)| (*id, b.incarnation))
            .collect();
        for (id, incarnation) in lapsed {
            self.leases.entry(id).or_insert(now);
            if !self.may_propose(id, true) {
                continue;
            }
            let mut records = vec![Record::FenceBroker { id, incarnation }];
            records.extend(move_leadership_from(&self.image, id));
            let _ = self.propose(records, None);
        }
    }
}
