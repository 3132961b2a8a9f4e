//! A deterministic simulation of the controller quorum and its brokers.
//!
//! One seed drives everything: separate PRNG streams for the workload (topic creates,
//! deletes, config changes), the network (loss, delay, reordering) and faults (crashes that
//! lose unsynced writes, restarts with a new incarnation, network splits). After every step
//! it checks:
//! - at most one controller leader per term;
//! - every applied entry equals the committed entry at its index on every voter (nothing
//!   committed is lost or changed), and every acknowledged change is in the committed log;
//! - every voter's and broker's metadata equals the committed log applied up to its offset
//!   (a prefix, never a fork);
//! - at most one leader per partition and leader epoch, and at most one broker acting as a
//!   partition's leader at any moment.
//!
//! At the end the network heals and everyone restarts: a leader must emerge, every broker
//! must register and catch up, and a final topic creation must commit.

use std::collections::{BTreeMap, BTreeSet};

use raft::eraftpb::Message;

use crate::broker::{BrokerAgent, BrokerConfig, Sent};
use crate::error::Error;
use crate::image::MetadataImage;
use crate::node::{Controller, ControllerConfig, Reply, Request};
use crate::store::Persist;

mod check;
mod drive;
mod faults;
mod jepsen;
mod rep_messages;
mod replication;

/// How a run is shaped.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Voters (each also runs a broker of the same id).
    pub voters: u64,
    /// Extra brokers that are not voters.
    pub brokers_only: u32,
    /// Simulated milliseconds of faults before the healing phase.
    pub duration_ms: u64,
    /// Also replicate a partition (three replicas, acks=all) under the faults, with
    /// broker pauses, and check it with the Jepsen-style checker.
    pub replicated: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            voters: 3,
            brokers_only: 1,
            duration_ms: 8_000,
            replicated: false,
        }
    }
}

/// What a run saw.
#[derive(Debug, Default, Clone)]
pub struct SimReport {
    /// Entries compared across voters.
    pub entries_compared: u64,
    /// Images (voter and broker) compared with the committed log.
    pub images_compared: u64,
    /// Changes acknowledged to the workload.
    pub acknowledged: u64,
    /// Leader elections seen (distinct terms with a leader).
    pub terms_with_leader: u64,
    /// Crashes injected.
    pub crashes: u64,
    /// Network splits injected.
    pub splits: u64,
    /// Broker pauses injected (replicated runs).
    pub pauses: u64,
    /// Appends acknowledged with acks=all (replicated runs).
    pub replicated_acknowledged: u64,
    /// Records the consumer read (replicated runs).
    pub replicated_reads: u64,
    /// Divergent suffixes followers truncated (replicated runs).
    pub truncations: u64,
}

/// A splitmix64 stream.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A stream from a seed and a stream number.
    pub fn new(seed: u64, stream: u64) -> Rng {
        Rng(seed ^ stream.wrapping_mul(0xa076_1d64_78bd_642f))
    }
    /// The next 64 bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    /// True with probability `per_mille`/1000.
    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

/// A voter's metadata log file as the device holds it durably: the bytes of
/// [`crate::disklog`] records. A crash keeps any byte prefix of a write not yet synced.
#[derive(Debug, Clone, Default)]
struct Disk {
    file: Vec<u8>,
}

struct Voter {
    controller: Option<Controller>,
    disk: Disk,
    /// A persist written but not yet synced, and when its fsync completes.
    syncing: Option<(Persist, Vec<Message>, u64)>,
}

struct Broker {
    agent: Option<BrokerAgent>,
    starts: u32,
}

enum Payload {
    Raft(Message),
    Request(u32, Sent, Request),
    Answer(u32, Sent, Result<Reply, Error>),
    Admin(u64, Request),
    AdminAnswer(u64, Result<Reply, Error>),
    Rep(replication::RepMessage),
}

struct InFlight {
    at_ms: u64,
    from: u64,
    to: u64,
    payload: Payload,
}

/// Client address of the workload in the network (not a node).
const WORKLOAD: u64 = 1_000;

/// One simulated cluster.
pub struct Sim {
    seed: u64,
    config: SimConfig,
    now_ms: u64,
    voters: BTreeMap<u64, Voter>,
    brokers: BTreeMap<u32, Broker>,
    network: Vec<InFlight>,
    split: Option<BTreeSet<u64>>,
    loss_per_mille: u64,
    delay_ms_max: u64,
    work: Rng,
    net: Rng,
    fault: Rng,
    committed: BTreeMap<u64, (u64, Vec<u8>)>,
    reference: MetadataImage,
    reference_hashes: BTreeMap<u64, Vec<u8>>,
    leaders: BTreeMap<u64, u64>,
    partition_leaders: BTreeMap<(u64, u32, u32), i32>,
    admin: BTreeMap<u64, Request>,
    acknowledged: Vec<(u64, Request)>,
    next_token: u64,
    down_until: BTreeMap<u64, u64>,
    report: SimReport,
    rep: replication::Replication,
}

fn controller_config(id: u64, voters: u64, seed: u64) -> ControllerConfig {
    let mut c = ControllerConfig::new(id, (1..=voters).collect());
    c.tick_ms = 10;
    c.election_ticks = 10;
    c.heartbeat_ticks = 2;
    c.lease_ms = 400;
    c.snapshot_entries = 16;
    c.update_entries_max = 8;
    c.heartbeat_hold_ms = 100;
    c.seed = seed;
    c.record_applied = true;
    c.new_cluster_id = format!("sim-{seed}-{id}");
    c
}

impl Sim {
    /// A cluster for `seed`.
    pub fn new(seed: u64, config: SimConfig) -> Sim {
        let mut sim = Sim {
            seed,
            now_ms: 0,
            voters: BTreeMap::new(),
            brokers: BTreeMap::new(),
            network: Vec::new(),
            split: None,
            loss_per_mille: 0,
            delay_ms_max: 1,
            work: Rng::new(seed, 1),
            net: Rng::new(seed, 2),
            fault: Rng::new(seed, 3),
            committed: BTreeMap::new(),
            reference: MetadataImage::default(),
            reference_hashes: BTreeMap::new(),
            leaders: BTreeMap::new(),
            partition_leaders: BTreeMap::new(),
            admin: BTreeMap::new(),
            acknowledged: Vec::new(),
            next_token: 1,
            down_until: BTreeMap::new(),
            report: SimReport::default(),
            rep: replication::Replication::default(),
            config,
        };
        sim.loss_per_mille = sim.fault.below(100);
        sim.delay_ms_max = 1 + sim.fault.below(30);
        for id in 1..=sim.config.voters {
            sim.voters.insert(
                id,
                Voter {
                    controller: None,
                    disk: Disk::default(),
                    syncing: None,
                },
            );
            sim.start_voter(id);
        }
        let broker_count = sim.config.voters as u32 + sim.config.brokers_only;
        for id in 1..=broker_count {
            sim.brokers.insert(
                id,
                Broker {
                    agent: None,
                    starts: 0,
                },
            );
            sim.start_broker(id);
        }
        sim
    }

    fn start_voter(&mut self, id: u64) {
        let (voters, seed, now) = (self.config.voters, self.seed, self.now_ms);
        let voter = self.voters.get_mut(&id).expect("voter exists");
        let ids: Vec<u64> = (1..=voters).collect();
        let recovered = crate::disklog::recover(&voter.disk.file);
        voter.disk.file.truncate(recovered.valid_bytes);
        let store = recovered.into_store(&ids);
        let config = controller_config(id, voters, seed.wrapping_add(now));
        voter.controller = Some(Controller::new(config, store, now).expect("valid config"));
    }

    fn start_broker(&mut self, id: u32) {
        let directory_id = (self.seed as u32).wrapping_mul(31).wrapping_add(id);
        let broker = self.brokers.get_mut(&id).expect("broker exists");
        broker.starts += 1;
        let incarnation = crate::node::incarnation(directory_id, broker.starts);
        broker.agent = Some(BrokerAgent::new(BrokerConfig {
            id,
            address: format!("127.0.0.1:{}", 7_000 + id),
            incarnation,
            heartbeat_ms: 50,
            lease_ms: 400,
        }));
    }

    fn fail(&self, what: String) -> String {
        format!(
            "seed {} at {} ms: {what}\nreproduce with: cargo run -p keel-controller --release --example sim -- --seed {}",
            self.seed, self.now_ms, self.seed
        )
    }

    /// Runs the whole scenario.
    ///
    /// # Errors
    /// The first broken invariant, with how to reproduce it.
    pub fn run(mut self) -> Result<SimReport, String> {
        while self.now_ms < self.config.duration_ms {
            self.inject_faults();
            self.rep_faults();
            self.workload();
            self.rep_workload();
            self.step()?;
        }
        // Heal: no more faults, everyone up, then wait for the cluster to settle.
        self.split = None;
        self.loss_per_mille = 0;
        self.rep.paused_until.clear();
        let down: Vec<u64> = self.down_until.keys().copied().collect();
        for id in down {
            self.restart(id);
        }
        let deadline = self.now_ms + if self.rep_enabled() { 15_000 } else { 5_000 };
        let mut final_token = None;
        loop {
            self.step()?;
            self.rep_ensure_topic();
            if final_token.is_none() && self.leader().is_some() && self.all_brokers_live() {
                let token = self.next_token;
                self.next_token += 1;
                let request = Request::CreateTopic {
                    name: "final".into(),
                    partitions: 4,
                    replication_factor: 1,
                    configs: vec![],
                };
                self.admin.insert(token, request.clone());
                let to = self.leader().expect("checked");
                self.send(WORKLOAD, to, Payload::Admin(token, request));
                final_token = Some(token);
            }
            let created = self
                .acknowledged
                .iter()
                .any(|(_, r)| matches!(r, Request::CreateTopic { name, .. } if name == "final"));
            // An answer that was not a commit (the leader changed under it): ask again.
            if let Some(t) = final_token {
                if !created && !self.admin.contains_key(&t) {
                    final_token = None;
                }
            }
            let done = created;
            if done && self.converged() && self.rep_converged() {
                break;
            }
            if self.now_ms > deadline {
                let brokers: Vec<String> = self
                    .brokers
                    .iter()
                    .map(|(id, b)| {
                        let a = b.agent.as_ref().expect("up");
                        format!(
                            "{id}: registered {} lease {} offset {} fatal {:?}",
                            a.registered(),
                            a.lease_valid(self.now_ms),
                            a.image().offset(),
                            a.fatal()
                        )
                    })
                    .collect();
                let leader_image = self.leader().map(|l| {
                    format!(
                        "{:?}",
                        self.voters[&l]
                            .controller
                            .as_ref()
                            .expect("up")
                            .image()
                            .brokers()
                    )
                });
                return Err(self.fail(format!(
                    "no progress after healing: leader {:?}, brokers live {}, final create {:?}, replicas converged {}; brokers {brokers:?}; leader's view {leader_image:?}{}",
                    self.leader(),
                    self.all_brokers_live(),
                    final_token,
                    self.rep_converged(),
                    self.rep_debug()
                )));
            }
        }
        self.check_acknowledged()?;
        self.rep_final_check()?;
        if self.rep_enabled() {
            self.report.replicated_acknowledged = self.rep.history.acknowledged_count() as u64;
            self.report.replicated_reads = self.rep.history.reads() as u64;
        }
        if self.report.entries_compared == 0 || self.report.images_compared == 0 {
            return Err(self.fail("the checkers compared nothing".into()));
        }
        Ok(self.report)
    }

    fn leader(&self) -> Option<u64> {
        self.voters
            .iter()
            .find(|(_, v)| v.controller.as_ref().is_some_and(|c| c.is_leader()))
            .map(|(id, _)| *id)
    }

    fn all_brokers_live(&self) -> bool {
        let Some(leader) = self.leader() else {
            return false;
        };
        let image = self.voters[&leader]
            .controller
            .as_ref()
            .expect("up")
            .image();
        self.brokers.iter().all(|(id, b)| {
            let agent = b.agent.as_ref().expect("all up");
            agent.registered()
                && image.brokers().get(id).is_some_and(|info| {
                    !info.fenced && info.incarnation == agent.config().incarnation
                })
        })
    }

    fn converged(&self) -> bool {
        let Some(leader) = self.leader() else {
            return false;
        };
        let offset = self.voters[&leader]
            .controller
            .as_ref()
            .expect("up")
            .image()
            .offset();
        // Every broker has all of it, knows it has (so it may act on deletions), and the
        // cluster has named itself.
        self.brokers.values().all(|b| {
            b.agent.as_ref().is_some_and(|a| {
                a.image().offset() == offset && a.caught_up() && a.image().cluster_id().is_some()
            })
        })
    }
}

/// Runs seeds `first..first + count` over one thread per core (each thread takes every
/// n-th seed; a seed's run depends only on the seed), each thread stopping at its first
/// failure.
///
/// # Errors
/// A failing seed's report (the first thread's, in thread order, that failed).
pub fn run_seeds(first: u64, count: u64, config: &SimConfig) -> Result<SimReport, String> {
    let workers = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .clamp(1, usize::try_from(count.max(1)).unwrap_or(1));
    let results: Vec<Result<SimReport, String>> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..workers)
            .map(|worker| {
                let seeds = (first + worker as u64..first + count).step_by(workers);
                scope.spawn(move || run_in_turn(seeds, config))
            })
            .collect();
        threads
            .into_iter()
            .map(|thread| {
                thread
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    let mut total = SimReport::default();
    for result in results {
        total.add(&result?);
    }
    Ok(total)
}

/// Runs `seeds` one after another, stopping at the first failure.
fn run_in_turn(seeds: impl Iterator<Item = u64>, config: &SimConfig) -> Result<SimReport, String> {
    let mut total = SimReport::default();
    for seed in seeds {
        total.add(&Sim::new(seed, config.clone()).run()?);
    }
    Ok(total)
}

impl SimReport {
    fn add(&mut self, report: &SimReport) {
        self.entries_compared += report.entries_compared;
        self.images_compared += report.images_compared;
        self.acknowledged += report.acknowledged;
        self.terms_with_leader += report.terms_with_leader;
        self.crashes += report.crashes;
        self.splits += report.splits;
        self.pauses += report.pauses;
        self.replicated_acknowledged += report.replicated_acknowledged;
        self.replicated_reads += report.replicated_reads;
        self.truncations += report.truncations;
    }
}
