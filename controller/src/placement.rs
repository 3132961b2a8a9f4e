//! Where a new topic's partitions go: replicas on distinct live brokers, leaders spread so
//! each live broker leads about as many partitions as the others.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::image::MetadataImage;
use crate::records::PartitionState;

/// Replicas and leaders for `partitions` new partitions of `replication_factor` copies.
///
/// Each partition's leader is the live broker leading the fewest partitions so far (counting
/// the ones placed by this call; ties go to the lowest id), and its followers are the next
/// live brokers after it in id order, so replicas are distinct.
///
/// # Errors
/// No live broker, or more replicas than live brokers.
pub fn place(
    image: &MetadataImage,
    partitions: u32,
    replication_factor: u32,
) -> Result<Vec<PartitionState>> {
    let live = image.live_brokers();
    if replication_factor == 0 {
        return Err(Error::Invalid {
            field: "replication factor",
            reason: "must be at least 1".into(),
        });
    }
    if replication_factor as usize > live.len() {
        return Err(Error::NotEnoughBrokers {
            asked: replication_factor,
            alive: live.len() as u32,
        });
    }
    let mut leading: BTreeMap<u32, usize> = live.iter().map(|id| (*id, 0)).collect();
    for topic in image.topics().values() {
        for p in &topic.partitions {
            if let Some(count) = u32::try_from(p.leader)
                .ok()
                .and_then(|l| leading.get_mut(&l))
            {
                *count += 1;
            }
        }
    }
    let mut placed = Vec::with_capacity(partitions as usize);
    for _ in 0..partitions {
        let (position, leader) = live
            .iter()
            .enumerate()
            .min_by_key(|(_, id)| (leading[id], **id))
            .map(|(i, id)| (i, *id))
            .expect("live is not empty");
        *leading.get_mut(&leader).expect("leader is live") += 1;
        let replicas: Vec<u32> = (0..replication_factor as usize)
            .map(|k| live[(position + k) % live.len()])
            .collect();
        placed.push(PartitionState {
            isr: replicas.clone(),
            replicas,
            leader: leader as i32,
            leader_epoch: 0,
            partition_epoch: 0,
            adding: Vec::new(),
            removing: Vec::new(),
        });
    }
    Ok(placed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::Record;

    fn image_with(brokers: &[u32]) -> MetadataImage {
        let mut image = MetadataImage::default();
        let records: Vec<Record> = brokers
            .iter()
            .map(|id| Record::RegisterBroker {
                id: *id,
                address: format!("h:{id}"),
                incarnation: 1,
            })
            .collect();
        image.apply(1, &records).unwrap();
        image
    }

    // Leaders spread evenly, also across topics; replicas are distinct brokers.
    #[test]
    fn spreads_leaders_evenly() {
        let mut image = image_with(&[1, 2, 3]);
        let first = place(&image, 4, 1).unwrap();
        let leaders: Vec<i32> = first.iter().map(|p| p.leader).collect();
        assert_eq!(leaders, vec![1, 2, 3, 1]);
        image
            .apply(
                2,
                &[Record::CreateTopic {
                    name: "a".into(),
                    configs: vec![],
                    partitions: first,
                }],
            )
            .unwrap();
        let second = place(&image, 2, 3).unwrap();
        let leaders: Vec<i32> = second.iter().map(|p| p.leader).collect();
        assert_eq!(leaders, vec![2, 3], "broker 1 already leads two");
        assert_eq!(second[0].replicas, vec![2, 3, 1]);
    }

    // Fenced brokers get nothing; more replicas than live brokers is refused.
    #[test]
    fn only_live_brokers() {
        let mut image = image_with(&[1, 2]);
        image
            .apply(
                2,
                &[Record::FenceBroker {
                    id: 1,
                    incarnation: 1,
                }],
            )
            .unwrap();
        assert!(place(&image, 3, 1).unwrap().iter().all(|p| p.leader == 2));
        assert_eq!(
            place(&image, 1, 2).unwrap_err(),
            Error::NotEnoughBrokers { asked: 2, alive: 1 }
        );
        assert!(place(&MetadataImage::default(), 1, 1).is_err());
    }
}
