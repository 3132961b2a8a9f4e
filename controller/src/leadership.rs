//! Which partitions change leader when a broker is fenced, unfenced or (re)registers.
//! Every change of leader moves the partition's leader epoch forward.

use crate::image::MetadataImage;
use crate::records::{PartitionState, Record};

/// Partition changes taking leadership from a fenced broker: another live in-sync
/// replica leads, or nobody (offline) when there is none.
pub(crate) fn move_leadership_from(image: &MetadataImage, id: u32) -> Vec<Record> {
    let live = image.live_brokers();
    partition_changes(image, |state| {
        if state.leader != id as i32 {
            return None;
        }
        let next = state
            .isr
            .iter()
            .find(|r| **r != id && live.contains(r))
            .map_or(-1, |r| *r as i32);
        let isr = if next >= 0 {
            state.isr.iter().copied().filter(|r| *r != id).collect()
        } else {
            state.isr.clone()
        };
        Some(PartitionState {
            replicas: state.replicas.clone(),
            isr,
            leader: next,
            leader_epoch: state.leader_epoch + 1,
        })
    })
}

/// Partition changes giving a broker that (re)joins the partitions it should lead: the
/// offline ones it is in sync for, and the ones its previous incarnation led.
pub(crate) fn lead_again(image: &MetadataImage, id: u32) -> Vec<Record> {
    partition_changes(image, |state| {
        let offline_in_sync = state.leader < 0 && state.isr.contains(&id);
        if !(offline_in_sync || state.leader == id as i32) {
            return None;
        }
        Some(PartitionState {
            replicas: state.replicas.clone(),
            isr: state.isr.clone(),
            leader: id as i32,
            leader_epoch: state.leader_epoch + 1,
        })
    })
}

pub(crate) fn unfence_records(image: &MetadataImage, id: u32, incarnation: u64) -> Vec<Record> {
    let mut records = vec![Record::UnfenceBroker { id, incarnation }];
    records.extend(partition_changes(image, |state| {
        (state.leader < 0 && state.isr.contains(&id)).then(|| PartitionState {
            replicas: state.replicas.clone(),
            isr: state.isr.clone(),
            leader: id as i32,
            leader_epoch: state.leader_epoch + 1,
        })
    }));
    records
}

fn partition_changes(
    image: &MetadataImage,
    change: impl Fn(&PartitionState) -> Option<PartitionState>,
) -> Vec<Record> {
    let mut records = Vec::new();
    for topic in image.topics().values() {
        for (partition, state) in topic.partitions.iter().enumerate() {
            if let Some(state) = change(state) {
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
