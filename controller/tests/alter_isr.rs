//! ISR changes through the controller: only the current leader at the current epoch may
//! change a partition's ISR, and only within its replicas, keeping itself, adding only live
//! brokers. A single-voter controller driven by hand.

use keel_controller::node::{Controller, ControllerConfig, Reply, Request};
use keel_controller::store::LogStore;
use keel_controller::Error;

struct Harness {
    controller: Controller,
    now: u64,
    token: u64,
}

impl Harness {
    fn new() -> Harness {
        let mut controller =
            Controller::new(ControllerConfig::new(1, vec![1]), LogStore::new(&[1]), 0).unwrap();
        let mut now = 0;
        while !controller.is_leader() {
            now += 100;
            controller.tick(now);
            drain(&mut controller);
        }
        Harness {
            controller,
            now,
            token: 0,
        }
    }

    fn ask(&mut self, request: Request) -> Result<Reply, Error> {
        self.token += 1;
        let token = self.token;
        if let Some(answer) = self.controller.request(token, request) {
            return answer;
        }
        drain(&mut self.controller);
        let answers = self.controller.take_answers();
        answers
            .into_iter()
            .find(|(t, _)| *t == token)
            .map(|(_, a)| a)
            .expect("answered once applied")
    }

    /// Registers brokers 1..=count, each at its first incarnation.
    fn register(&mut self, count: u32) {
        for id in 1..=count {
            let register = Request::Register {
                id,
                address: format!("127.0.0.1:{}", 7000 + id),
                incarnation: u64::from(id) << 32 | 1,
            };
            assert!(self.ask(register).is_ok());
        }
    }

    fn partition(&self, topic: &str, partition: usize) -> keel_controller::records::PartitionState {
        self.controller.image().topic(topic).unwrap().partitions[partition].clone()
    }
}

fn drain(controller: &mut Controller) {
    while controller.has_ready() {
        let _ = controller.ready();
        controller.advance();
    }
}

fn alter(h: &Harness, topic: &str, leader: u32, leader_epoch: u32, isr: &[u32]) -> Request {
    Request::AlterIsr {
        topic: topic.into(),
        partition: 0,
        leader,
        leader_epoch,
        partition_epoch: h.partition(topic, 0).partition_epoch,
        isr: isr.to_vec(),
    }
}

#[test]
fn only_the_current_leader_changes_the_isr() {
    let mut h = Harness::new();
    h.register(3);
    let create = Request::CreateTopic {
        name: "r".into(),
        partitions: 1,
        replication_factor: 3,
        configs: vec![],
    };
    assert!(h.ask(create).is_ok());
    let state = h.partition("r", 0);
    assert_eq!(state.isr.len(), 3);
    let leader = state.leader as u32;
    let follower = *state.replicas.iter().find(|r| **r != leader).unwrap();
    let keep: Vec<u32> = state
        .replicas
        .iter()
        .copied()
        .filter(|r| *r != follower)
        .collect();

    // The leader shrinks the ISR at its epoch: committed, same leader and epoch.
    assert!(matches!(
        h.ask(alter(&h, "r", leader, 0, &keep)),
        Ok(Reply::Committed { .. })
    ));
    let after = h.partition("r", 0);
    assert_eq!(after.isr, keep);
    assert_eq!((after.leader, after.leader_epoch), (leader as i32, 0));

    // A stale epoch, or a broker that is not the leader, is refused.
    assert!(matches!(
        h.ask(alter(&h, "r", leader, 7, &state.replicas)),
        Err(Error::StaleLeader { .. })
    ));
    assert!(matches!(
        h.ask(alter(&h, "r", follower, 0, &state.replicas)),
        Err(Error::StaleLeader { .. })
    ));
    // An ISR without the leader, or with a broker that is not a replica, is refused.
    let without_leader: Vec<u32> = state
        .replicas
        .iter()
        .copied()
        .filter(|r| *r != leader)
        .collect();
    assert!(matches!(
        h.ask(alter(&h, "r", leader, 0, &without_leader)),
        Err(Error::Invalid { .. })
    ));
    assert!(matches!(
        h.ask(alter(&h, "r", leader, 0, &[leader, 9])),
        Err(Error::Invalid { .. })
    ));
    assert_eq!(h.partition("r", 0).isr, keep, "refusals changed nothing");

    // The follower catches up: the leader adds it back, in the replicas' order.
    let mut back: Vec<u32> = keep.clone();
    back.insert(0, follower);
    assert!(h.ask(alter(&h, "r", leader, 0, &back)).is_ok());
    assert_eq!(h.partition("r", 0).isr, state.replicas);

    // A fenced broker cannot join: fence it by letting its lease lapse.
    assert!(h.ask(alter(&h, "r", leader, 0, &keep)).is_ok());
    for _ in 0..60 {
        h.now += 100;
        // Everyone but the follower keeps heartbeating.
        for id in (1..=3u32).filter(|id| *id != follower) {
            let beat = Request::Heartbeat {
                id,
                incarnation: u64::from(id) << 32 | 1,
                offset: 0,
            };
            let _ = h.ask(beat);
        }
        h.controller.tick(h.now);
        drain(&mut h.controller);
    }
    assert!(h.controller.image().brokers()[&follower].fenced);
    assert!(matches!(
        h.ask(alter(&h, "r", leader, 0, &state.replicas)),
        Err(Error::Invalid { .. })
    ));
}

// Leadership goes back to the preferred replica (the first) once it is in sync again, at a
// new leader epoch; a partition already led by it, or whose preferred replica is out of
// sync, does not move.
#[test]
fn elect_leaders_moves_leadership_back_to_the_preferred_replica() {
    let mut h = Harness::new();
    h.register(3);
    let create = Request::CreateTopic {
        name: "r".into(),
        partitions: 1,
        replication_factor: 3,
        configs: vec![],
    };
    assert!(h.ask(create).is_ok());
    let elect = |partition| Request::ElectLeaders {
        topic: "r".into(),
        partition,
    };
    let before = h.partition("r", 0);
    let preferred = before.replicas[0];
    assert_eq!(before.leader, preferred as i32, "placed leading");
    assert!(h.ask(elect(None)).is_ok());
    assert_eq!(h.partition("r", 0), before, "nothing to move");
    // The preferred replica restarts: leadership moves away and it leaves the ISR.
    let restart = Request::Register {
        id: preferred,
        address: format!("127.0.0.1:{}", 7000 + preferred),
        incarnation: u64::from(preferred) << 32 | 2,
    };
    assert!(h.ask(restart).is_ok());
    let moved = h.partition("r", 0);
    assert_ne!(moved.leader, preferred as i32);
    assert!(!moved.isr.contains(&preferred));
    assert!(h.ask(elect(Some(0))).is_ok());
    assert_eq!(h.partition("r", 0), moved, "out of sync: stays where it is");
    // Caught up, it rejoins the ISR through the leader; then it leads again.
    let rejoin = Request::AlterIsr {
        topic: "r".into(),
        partition: 0,
        leader: moved.leader as u32,
        leader_epoch: moved.leader_epoch,
        partition_epoch: moved.partition_epoch,
        isr: moved.replicas.clone(),
    };
    assert!(h.ask(rejoin).is_ok());
    assert!(h.ask(elect(Some(0))).is_ok());
    let back = h.partition("r", 0);
    assert_eq!(back.leader, preferred as i32);
    assert_eq!(back.leader_epoch, moved.leader_epoch + 1);
    assert!(matches!(
        h.ask(elect(Some(5))),
        Err(Error::UnknownPartition { .. })
    ));
    assert!(matches!(
        h.ask(Request::ElectLeaders {
            topic: "nope".into(),
            partition: None
        }),
        Err(Error::UnknownTopic(_))
    ));
}

// A reassignment adds the new replica first, completes when the leader brings it into the
// ISR (the old replica leaves in the same change), and is refused for dead or repeated
// brokers; decommissioning moves every replica off a broker the same way.
#[test]
fn reassignments_and_decommissioning_move_replicas() {
    let mut h = Harness::new();
    h.register(4);
    let create = Request::CreateTopic {
        name: "r".into(),
        partitions: 1,
        replication_factor: 3,
        configs: vec![],
    };
    assert!(h.ask(create).is_ok());
    let before = h.partition("r", 0);
    let outside = (1..=4).find(|b| !before.replicas.contains(b)).unwrap();
    let leaving = *before
        .replicas
        .iter()
        .find(|r| **r as i32 != before.leader)
        .unwrap();
    let target: Vec<u32> = before
        .replicas
        .iter()
        .map(|r| if *r == leaving { outside } else { *r })
        .collect();
    for bad in [vec![], vec![1, 1], vec![1, 9]] {
        let refused = h.ask(Request::Reassign {
            topic: "r".into(),
            partition: 0,
            replicas: bad.clone(),
        });
        assert!(matches!(refused, Err(Error::Invalid { .. })), "{bad:?}");
    }
    let reassign = Request::Reassign {
        topic: "r".into(),
        partition: 0,
        replicas: target.clone(),
    };
    assert!(h.ask(reassign.clone()).is_ok());
    let moving = h.partition("r", 0);
    assert_eq!(moving.adding, vec![outside]);
    assert_eq!(moving.removing, vec![leaving]);
    assert!(moving.replicas.contains(&outside) && moving.replicas.contains(&leaving));
    assert!(
        matches!(h.ask(reassign), Err(Error::Invalid { .. })),
        "one move at a time"
    );
    // The leader brings the new replica into the ISR: the move completes.
    let mut isr = moving.isr.clone();
    isr.push(outside);
    let join = Request::AlterIsr {
        topic: "r".into(),
        partition: 0,
        leader: moving.leader as u32,
        leader_epoch: moving.leader_epoch,
        partition_epoch: moving.partition_epoch,
        isr,
    };
    assert!(h.ask(join).is_ok());
    let done = h.partition("r", 0);
    assert_eq!(done.replicas, target);
    assert!(!done.isr.contains(&leaving) && done.isr.contains(&outside));
    assert!(done.adding.is_empty() && done.removing.is_empty());
    assert_eq!(done.leader, before.leader, "the leader stayed");

    // Decommissioning the leader's broker: a replacement is added; once it is in sync the
    // broker leaves and another replica leads, at a new epoch.
    let gone = done.leader as u32;
    assert!(h.ask(Request::Decommission { id: gone }).is_ok());
    let moving = h.partition("r", 0);
    assert_eq!(moving.removing, vec![gone]);
    let replacement = moving.adding[0];
    let mut isr = moving.isr.clone();
    isr.push(replacement);
    let join = Request::AlterIsr {
        topic: "r".into(),
        partition: 0,
        leader: gone,
        leader_epoch: moving.leader_epoch,
        partition_epoch: moving.partition_epoch,
        isr,
    };
    assert!(h.ask(join).is_ok());
    let done = h.partition("r", 0);
    assert!(!done.replicas.contains(&gone) && done.replicas.contains(&replacement));
    assert_ne!(done.leader, gone as i32);
    assert_eq!(done.leader_epoch, moving.leader_epoch + 1);
    assert!(
        h.ask(Request::Decommission { id: 9 }).is_err(),
        "unknown broker"
    );
}

#[test]
fn added_partitions_are_placed_with_the_topics_replication_factor() {
    let mut h = Harness::new();
    h.register(3);
    let create = Request::CreateTopic {
        name: "grown".into(),
        partitions: 2,
        replication_factor: 2,
        configs: vec![],
    };
    assert!(h.ask(create).is_ok());
    let before: Vec<_> = (0..2).map(|p| h.partition("grown", p)).collect();
    let add = |count| Request::AddPartitions {
        name: "grown".into(),
        count,
    };
    // Not more than it has, or past the limit: refused.
    assert!(matches!(h.ask(add(2)), Err(Error::Invalid { .. })));
    assert!(matches!(h.ask(add(1_000_000)), Err(Error::Invalid { .. })));
    let unknown = Request::AddPartitions {
        name: "absent".into(),
        count: 3,
    };
    assert!(matches!(h.ask(unknown), Err(Error::UnknownTopic(_))));
    assert!(h.ask(add(5)).is_ok());
    let topic = h.controller.image().topic("grown").unwrap().clone();
    assert_eq!(topic.partitions.len(), 5);
    assert_eq!(
        &topic.partitions[..2],
        &before[..],
        "the old ones unchanged"
    );
    for p in &topic.partitions[2..] {
        assert_eq!(p.replicas.len(), 2);
        assert_eq!(p.isr, p.replicas);
        assert!(p.replicas.contains(&(p.leader as u32)));
    }
    let leaders: std::collections::BTreeSet<i32> =
        topic.partitions.iter().map(|p| p.leader).collect();
    assert_eq!(leaders.len(), 3, "leaders spread over the brokers");
}
