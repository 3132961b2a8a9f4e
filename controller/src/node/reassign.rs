//! Moving replicas without downtime (Kafka KIP-455): a reassignment adds the new replicas
//! to the partition (they follow and catch up), and once every added one is in the ISR the
//! old ones leave and, if the leader was among them, a new replica leads. Decommissioning a
//! broker reassigns every partition it holds to another live broker.

use super::*;
use crate::image::TopicInfo;

/// Group coordinator placement, not moved by decommissioning.
const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// The state starting a reassignment of `state` to `target` (which `validate_target`
/// checked), or completing it at once when nothing is added; `None` when `target` is what
/// the partition has. The partition epoch is the caller's to bump.
pub(crate) fn start_reassignment(state: &PartitionState, target: &[u32]) -> Option<PartitionState> {
    if target == state.replicas.as_slice() {
        return None;
    }
    let adding: Vec<u32> = target
        .iter()
        .copied()
        .filter(|r| !state.replicas.contains(r))
        .collect();
    let removing: Vec<u32> = state
        .replicas
        .iter()
        .copied()
        .filter(|r| !target.contains(r))
        .collect();
    // During the move the replicas are the target (in its order) and then those leaving.
    let replicas: Vec<u32> = target.iter().chain(&removing).copied().collect();
    let moving = PartitionState {
        replicas,
        adding,
        removing,
        ..state.clone()
    };
    Some(complete_reassignment(&moving).unwrap_or(moving))
}

/// The completed state once every added replica is in the ISR: the target replicas, the
/// ISR within them, a leader among them (a new leader epoch if it changed). `None` while
/// an added replica is not in sync, or no target replica is.
pub(crate) fn complete_reassignment(state: &PartitionState) -> Option<PartitionState> {
    if state.adding.is_empty() && state.removing.is_empty() {
        return None;
    }
    if !state.adding.iter().all(|r| state.isr.contains(r)) {
        return None;
    }
    let target: Vec<u32> = state
        .replicas
        .iter()
        .copied()
        .filter(|r| !state.removing.contains(r))
        .collect();
    let isr: Vec<u32> = target
        .iter()
        .copied()
        .filter(|r| state.isr.contains(r))
        .collect();
    let first_in_sync = *isr.first()?;
    let (leader, leader_epoch) = if state.leader >= 0 && target.contains(&(state.leader as u32)) {
        (state.leader, state.leader_epoch)
    } else {
        (first_in_sync as i32, state.leader_epoch + 1)
    };
    Some(PartitionState {
        replicas: target,
        isr,
        leader,
        leader_epoch,
        partition_epoch: state.partition_epoch,
        adding: Vec::new(),
        removing: Vec::new(),
    })
}

impl Controller {
    fn check_target(&self, target: &[u32]) -> Result<()> {
        let invalid = |reason: String| Error::Invalid {
            field: "replicas",
            reason,
        };
        if target.is_empty() {
            return Err(invalid("no replicas given".into()));
        }
        let live = self.image.live_brokers();
        for (i, id) in target.iter().enumerate() {
            if target[..i].contains(id) {
                return Err(invalid(format!("{id} is listed twice")));
            }
            if !live.contains(id) {
                return Err(invalid(format!("{id} is not a live broker")));
            }
        }
        Ok(())
    }

    fn reassignment_record(
        &self,
        info: &TopicInfo,
        partition: u32,
        target: &[u32],
    ) -> Result<Option<Record>> {
        let state = &info.partitions[partition as usize];
        if !state.adding.is_empty() || !state.removing.is_empty() {
            return Err(Error::Invalid {
                field: "replicas",
                reason: format!("partition {partition} is already being reassigned"),
            });
        }
        Ok(
            start_reassignment(state, target).map(|next| Record::PartitionChange {
                topic_id: info.id,
                partition,
                state: PartitionState {
                    partition_epoch: state.partition_epoch + 1,
                    ..next
                },
            }),
        )
    }

    /// Starts moving a partition's replicas; answered once that is committed (the move
    /// completes later, when the new replicas are in sync).
    pub(super) fn reassign(
        &mut self,
        token: Token,
        (topic, partition): (String, u32),
        target: Vec<u32>,
    ) -> Result<Option<Reply>> {
        self.check_target(&target)?;
        let info = self
            .image
            .topic(&topic)
            .ok_or_else(|| Error::UnknownTopic(topic.clone()))?;
        if partition as usize >= info.partitions.len() {
            return Err(Error::UnknownPartition { topic, partition });
        }
        match self.reassignment_record(info, partition, &target)? {
            None => Ok(Some(Reply::Committed {
                offset: self.image.offset(),
            })),
            Some(record) => {
                self.propose(vec![record], Some(token))?;
                Ok(None)
            }
        }
    }

    /// Reassigns every partition holding a replica on broker `id` to another live broker
    /// (the one holding the fewest replicas), in one entry. Group coordinator placement
    /// (`__consumer_offsets`) is left alone: committed offsets are local to a broker.
    pub(super) fn decommission(&mut self, token: Token, id: u32) -> Result<Option<Reply>> {
        if !self.image.brokers().contains_key(&id) {
            return Err(Error::Invalid {
                field: "broker",
                reason: format!("{id} is not a registered broker"),
            });
        }
        let live: Vec<u32> = self
            .image
            .live_brokers()
            .into_iter()
            .filter(|b| *b != id)
            .collect();
        let mut hosted: BTreeMap<u32, usize> = live.iter().map(|b| (*b, 0)).collect();
        for topic in self.image.topics().values() {
            for state in &topic.partitions {
                for r in &state.replicas {
                    if let Some(count) = hosted.get_mut(r) {
                        *count += 1;
                    }
                }
            }
        }
        let mut records = Vec::new();
        for (name, info) in self.image.topics() {
            if name == OFFSETS_TOPIC {
                continue;
            }
            for (p, state) in info.partitions.iter().enumerate() {
                if !state.replicas.contains(&id) || state.removing.contains(&id) {
                    continue;
                }
                let replacement = hosted
                    .iter()
                    .filter(|(b, _)| !state.replicas.contains(b))
                    .min_by_key(|(b, count)| (**count, **b))
                    .map(|(b, _)| *b)
                    .ok_or(Error::NotEnoughBrokers {
                        asked: state.replicas.len() as u32,
                        alive: live.len() as u32,
                    })?;
                *hosted.get_mut(&replacement).expect("a live broker") += 1;
                let target: Vec<u32> = state
                    .replicas
                    .iter()
                    .map(|r| if *r == id { replacement } else { *r })
                    .collect();
                if let Some(record) = self.reassignment_record(info, p as u32, &target)? {
                    records.push(record);
                }
            }
        }
        if records.is_empty() {
            return Ok(Some(Reply::Committed {
                offset: self.image.offset(),
            }));
        }
        self.propose(records, Some(token))?;
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(replicas: &[u32], isr: &[u32], leader: i32) -> PartitionState {
        PartitionState {
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            leader,
            leader_epoch: 3,
            partition_epoch: 7,
            adding: vec![],
            removing: vec![],
        }
    }

    // A move adds first and removes once the added replicas are in sync; a leader that
    // leaves hands over to an in-sync target replica at a new epoch.
    #[test]
    fn reassignments_add_then_remove() {
        let start = start_reassignment(&state(&[1, 2, 3], &[1, 2, 3], 1), &[4, 2, 3]).unwrap();
        assert_eq!(start.replicas, vec![4, 2, 3, 1]);
        assert_eq!(
            (start.adding.clone(), start.removing.clone()),
            (vec![4], vec![1])
        );
        assert_eq!(start.leader, 1, "the leader stays while 4 catches up");
        assert_eq!(complete_reassignment(&start), None, "4 is not in sync");
        let caught_up = PartitionState {
            isr: vec![1, 2, 3, 4],
            ..start
        };
        let done = complete_reassignment(&caught_up).unwrap();
        assert_eq!(done.replicas, vec![4, 2, 3]);
        assert_eq!(done.isr, vec![4, 2, 3]);
        assert_eq!((done.leader, done.leader_epoch), (4, 4), "the leader left");
        assert!(done.adding.is_empty() && done.removing.is_empty());
        // Shrinking adds nothing: done at once, the leader kept.
        let shrunk = start_reassignment(&state(&[1, 2, 3], &[1, 2, 3], 2), &[2, 3]).unwrap();
        assert_eq!(
            (shrunk.replicas, shrunk.leader, shrunk.leader_epoch),
            (vec![2, 3], 2, 3)
        );
        assert_eq!(
            start_reassignment(&state(&[1, 2], &[1, 2], 1), &[1, 2]),
            None
        );
    }
}
