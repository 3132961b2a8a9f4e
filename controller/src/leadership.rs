//! Which partitions change leader (and ISR) when a broker is fenced, unfenced or
//! (re)registers. Every change of leader moves the partition's leader epoch forward.
//!
//! A fenced or restarted broker leaves the ISR of every partition that has another member
//! (it rejoins once it caught up, through its leader's `AlterIsr`); the last member stays,
//! so the partition waits offline for it rather than losing acknowledged data. Only a topic
//! with `unclean.leader.election.enable=true` takes a live replica outside the ISR instead.

use crate::image::{MetadataImage, TopicInfo};
use crate::records::{PartitionState, Record};

/// The topic config allowing a replica outside the ISR to lead (data may be lost).
pub const UNCLEAN_ELECTION: &str = "unclean.leader.election.enable";

fn unclean_allowed(topic: &TopicInfo) -> bool {
    topic
        .configs
        .get(UNCLEAN_ELECTION)
        .is_some_and(|v| v == "true")
}

/// Partition changes taking `id` out: it leaves the ISR where another member remains, and
/// another live in-sync replica leads what it led, or nobody (offline) when there is none.
fn step_down(
    topic: &TopicInfo,
    state: &PartitionState,
    id: u32,
    live: &[u32],
) -> Option<PartitionState> {
    let leads = state.leader == id as i32;
    let in_isr = state.isr.contains(&id);
    if !(leads || in_isr && state.isr.len() > 1) {
        return None;
    }
    let others: Vec<u32> = state.isr.iter().copied().filter(|r| *r != id).collect();
    if !leads {
        return Some(PartitionState {
            isr: others,
            ..state.next()
        });
    }
    let next = others.iter().find(|r| live.contains(r)).copied();
    let (leader, isr) = match next {
        Some(next) => (next as i32, others),
        None if unclean_allowed(topic) => {
            match state
                .replicas
                .iter()
                .find(|r| **r != id && live.contains(r))
            {
                Some(r) => (*r as i32, vec![*r]),
                None => (-1, state.isr.clone()),
            }
        }
        // No other live in-sync copy: offline, and the ISR keeps the broker going away (it
        // holds everything committed) until it or another member returns.
        None => (-1, state.isr.clone()),
    };
    Some(PartitionState {
        replicas: state.replicas.clone(),
        isr,
        leader,
        leader_epoch: state.leader_epoch + 1,
        partition_epoch: state.partition_epoch + 1,
        ..state.clone()
    })
}

/// The change moving one partition off broker `id`, whose log of it failed (Kafka's
/// offline log directory): another live in-sync replica leads at a new epoch and `id`
/// leaves the ISR (it rejoins once its log is back and caught up). `None` when `id` does
/// not lead it at `leader_epoch`, or no other live in-sync copy exists: then it keeps
/// leading and its log comes back where it is.
pub(crate) fn move_off_failed_log(
    image: &MetadataImage,
    (name, partition, leader_epoch): (&str, u32, u32),
    id: u32,
) -> Option<Record> {
    let topic = image.topic(name)?;
    let state = topic.partitions.get(partition as usize)?;
    if state.leader != id as i32 || state.leader_epoch != leader_epoch {
        return None;
    }
    let live = image.live_brokers();
    if !state.isr.iter().any(|r| *r != id && live.contains(r)) {
        return None;
    }
    let state = step_down(topic, state, id, &live)?;
    Some(Record::PartitionChange {
        topic_id: topic.id,
        partition,
        state,
    })
}

/// Partition changes when broker `id` is fenced.
pub(crate) fn move_leadership_from(image: &MetadataImage, id: u32) -> Vec<Record> {
    let live = image.live_brokers();
    partition_changes(image, |topic, state| step_down(topic, state, id, &live))
}

/// Partition changes when broker `id` registers a new incarnation (it restarted): with
/// other live in-sync replicas it steps down as above (it may have lost what it had not
/// synced); otherwise it leads again what it led, and the offline partitions it is in
/// sync for.
pub(crate) fn lead_again(image: &MetadataImage, id: u32) -> Vec<Record> {
    let live: Vec<u32> = image
        .live_brokers()
        .into_iter()
        .filter(|r| *r != id)
        .collect();
    partition_changes(image, |topic, state| {
        let replicated = state.replicas.len() > 1;
        if replicated {
            let has_other = state.isr.iter().any(|r| *r != id && live.contains(r));
            if has_other {
                return step_down(topic, state, id, &live);
            }
        }
        offline_lead(topic, state, id)
            .or_else(|| (state.leader == id as i32).then(|| new_epoch(state, id)))
    })
}

/// Records unfencing broker `id`: it leads the offline partitions it is in sync for (or,
/// where the topic allows unclean election, any offline partition it holds a replica of).
pub(crate) fn unfence_records(image: &MetadataImage, id: u32, incarnation: u64) -> Vec<Record> {
    let mut records = vec![Record::UnfenceBroker { id, incarnation }];
    records.extend(partition_changes(image, |topic, state| {
        offline_lead(topic, state, id)
    }));
    records
}

fn offline_lead(topic: &TopicInfo, state: &PartitionState, id: u32) -> Option<PartitionState> {
    if state.leader >= 0 {
        return None;
    }
    if state.isr.contains(&id) {
        return Some(new_epoch(state, id));
    }
    (unclean_allowed(topic) && state.replicas.contains(&id)).then(|| PartitionState {
        replicas: state.replicas.clone(),
        isr: vec![id],
        leader: id as i32,
        leader_epoch: state.leader_epoch + 1,
        partition_epoch: state.partition_epoch + 1,
        ..state.clone()
    })
}

fn new_epoch(state: &PartitionState, id: u32) -> PartitionState {
    PartitionState {
        replicas: state.replicas.clone(),
        isr: state.isr.clone(),
        leader: id as i32,
        leader_epoch: state.leader_epoch + 1,
        partition_epoch: state.partition_epoch + 1,
        ..state.clone()
    }
}

fn partition_changes(
    image: &MetadataImage,
    change: impl Fn(&TopicInfo, &PartitionState) -> Option<PartitionState>,
) -> Vec<Record> {
    let mut records = Vec::new();
    for topic in image.topics().values() {
        for (partition, state) in topic.partitions.iter().enumerate() {
            if let Some(state) = change(topic, state) {
                records.push(Record::PartitionChange {
                    topic_id: topic.id,
                    partition: partition as u32,
                    state,
                });
            }
        }
    }
    records
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(unclean: bool) -> TopicInfo {
        let mut configs = std::collections::BTreeMap::new();
        if unclean {
            configs.insert(UNCLEAN_ELECTION.to_owned(), "true".to_owned());
        }
        TopicInfo {
            id: 1,
            configs,
            partitions: Vec::new(),
        }
    }

    fn state(leader: i32, isr: &[u32]) -> PartitionState {
        PartitionState {
            replicas: vec![1, 2, 3],
            isr: isr.to_vec(),
            leader,
            leader_epoch: 4,
            partition_epoch: 9,
            adding: vec![],
            removing: vec![],
        }
    }

    // A fenced leader hands over to a live in-sync replica and leaves the ISR; a fenced
    // follower leaves the ISR; the last in-sync member stays and the partition goes offline.
    #[test]
    fn fencing_moves_leadership_within_the_isr() {
        let t = topic(false);
        let moved = step_down(&t, &state(1, &[1, 2, 3]), 1, &[2, 3]).unwrap();
        assert_eq!(
            (moved.leader, moved.isr.clone(), moved.leader_epoch),
            (2, vec![2, 3], 5)
        );
        let follower = step_down(&t, &state(1, &[1, 2, 3]), 3, &[1, 2]).unwrap();
        assert_eq!(
            (follower.leader, follower.isr, follower.leader_epoch),
            (1, vec![1, 2], 4)
        );
        let last = step_down(&t, &state(1, &[1]), 1, &[2, 3]).unwrap();
        assert_eq!(
            (last.leader, last.isr),
            (-1, vec![1]),
            "offline, no data lost"
        );
        assert_eq!(
            step_down(&t, &state(2, &[2]), 1, &[2]),
            None,
            "not a member"
        );
    }

    // Unclean election, only where the topic allows it.
    #[test]
    fn unclean_election_takes_a_live_replica() {
        let moved = step_down(&topic(true), &state(1, &[1]), 1, &[3]).unwrap();
        assert_eq!((moved.leader, moved.isr), (3, vec![3]));
        assert_eq!(offline_lead(&topic(false), &state(-1, &[1]), 2), None);
        let back = offline_lead(&topic(true), &state(-1, &[1]), 2).unwrap();
        assert_eq!((back.leader, back.isr), (2, vec![2]));
        let in_sync = offline_lead(&topic(false), &state(-1, &[1]), 1).unwrap();
        assert_eq!((in_sync.leader, in_sync.leader_epoch), (1, 5));
    }
}
