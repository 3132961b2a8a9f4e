//! Which groups this broker coordinates now. A group belongs to one partition of
//! `__consumer_offsets` (a hash of its id); in a cluster, the broker leading that partition
//! coordinates the group once it has loaded the partition, for that leader epoch. Losing
//! the leadership (or a new epoch) unloads it. A single node coordinates every group.
//!
//! Sans-IO: the caller passes the partitions it leads, loads what [`Ownership::plan`] names
//! and reports each load done.

use keel_protocol::api::ErrorCode;
use std::collections::BTreeMap;

/// Partitions of `__consumer_offsets` in a cluster (`offsets.topic.num.partitions`).
pub const OFFSETS_PARTITIONS: u32 = 8;

/// The partition of `__consumer_offsets` holding `group` (FNV-1a of the id), out of
/// `partitions`.
pub fn partition_of(group: &str, partitions: u32) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in group.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash % partitions.max(1)
}

/// A partition's leader epoch as this broker leads it.
pub type Epoch = u32;

/// What to do after a change of leadership.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Partitions whose groups to forget (answered NotCoordinator from now on).
    pub unload: Vec<u32>,
    /// Partitions to read from their start, at the epoch they are led in.
    pub load: Vec<(u32, Epoch)>,
}

/// The offsets partitions this broker coordinates or is loading.
#[derive(Debug)]
pub struct Ownership {
    /// `None`: a single node, which coordinates every group from partition 0.
    partitions: Option<u32>,
    loaded: BTreeMap<u32, Epoch>,
    loading: BTreeMap<u32, Epoch>,
}

impl Ownership {
    /// A single node: every group, from partition 0, loaded at start-up.
    pub fn single() -> Ownership {
        Ownership {
            partitions: None,
            loaded: BTreeMap::new(),
            loading: BTreeMap::new(),
        }
    }

    /// A cluster broker: no group until it leads and has loaded their partition.
    pub fn cluster(partitions: u32) -> Ownership {
        Ownership {
            partitions: Some(partitions.max(1)),
            loaded: BTreeMap::new(),
            loading: BTreeMap::new(),
        }
    }

    /// The partition of `__consumer_offsets` that holds `group`'s records.
    pub fn partition(&self, group: &str) -> u32 {
        self.partitions.map_or(0, |n| partition_of(group, n))
    }

    /// Whether this broker serves `group` now, or the error to answer.
    pub fn serves(&self, group: &str) -> Result<(), ErrorCode> {
        if self.partitions.is_none() {
            return Ok(());
        }
        let partition = self.partition(group);
        if self.loaded.contains_key(&partition) {
            Ok(())
        } else if self.loading.contains_key(&partition) {
            Err(ErrorCode::CoordinatorLoadInProgress)
        } else {
            Err(ErrorCode::NotCoordinator)
        }
    }

    /// Compares the partitions led now (partition → leader epoch) with those loaded or
    /// loading: what to unload, and what to start loading (marked as loading).
    pub fn plan(&mut self, led: &BTreeMap<u32, Epoch>) -> Plan {
        let mut plan = Plan::default();
        for (partition, epoch) in self.loaded.clone() {
            if led.get(&partition) != Some(&epoch) {
                self.loaded.remove(&partition);
                plan.unload.push(partition);
            }
        }
        for (partition, epoch) in self.loading.clone() {
            if led.get(&partition) != Some(&epoch) {
                self.loading.remove(&partition);
                plan.unload.push(partition);
            }
        }
        for (&partition, &epoch) in led {
            if !self.loaded.contains_key(&partition) && !self.loading.contains_key(&partition) {
                self.loading.insert(partition, epoch);
                plan.load.push((partition, epoch));
            }
        }
        plan.unload.sort_unstable();
        plan.unload.dedup();
        plan
    }

    /// A load finished: `true` when it still counts (the partition is led at that epoch).
    pub fn loaded(&mut self, partition: u32, epoch: Epoch) -> bool {
        if self.loading.get(&partition) != Some(&epoch) {
            return false;
        }
        self.loading.remove(&partition);
        self.loaded.insert(partition, epoch);
        true
    }

    /// A load failed (the log not open yet, a read error): the next plan tries again.
    pub fn load_failed(&mut self, partition: u32, epoch: Epoch) {
        if self.loading.get(&partition) == Some(&epoch) {
            self.loading.remove(&partition);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn led(pairs: &[(u32, u32)]) -> BTreeMap<u32, Epoch> {
        pairs.iter().copied().collect()
    }

    fn group_in(partition: u32) -> String {
        (0..)
            .map(|i| format!("g{i}"))
            .find(|g| partition_of(g, OFFSETS_PARTITIONS) == partition)
            .unwrap()
    }

    #[test]
    fn a_single_node_serves_every_group() {
        let ownership = Ownership::single();
        assert_eq!(ownership.serves("any"), Ok(()));
        assert_eq!(ownership.partition("any"), 0);
    }

    #[test]
    fn a_group_is_served_only_once_its_partition_is_loaded_at_the_led_epoch() {
        // Goal: leading is not enough; a load from an older epoch never makes a broker
        // coordinate, and losing leadership unloads.
        let mut ownership = Ownership::cluster(OFFSETS_PARTITIONS);
        let group = group_in(3);
        assert_eq!(ownership.serves(&group), Err(ErrorCode::NotCoordinator));
        let plan = ownership.plan(&led(&[(3, 5)]));
        assert_eq!(plan.load, vec![(3, 5)]);
        assert_eq!(
            ownership.serves(&group),
            Err(ErrorCode::CoordinatorLoadInProgress)
        );
        // Leadership moves away and back (epoch 7) while epoch 5's load runs.
        assert_eq!(ownership.plan(&led(&[])).unload, vec![3]);
        assert_eq!(ownership.plan(&led(&[(3, 7)])).load, vec![(3, 7)]);
        assert!(!ownership.loaded(3, 5), "a stale load must not count");
        assert_eq!(
            ownership.serves(&group),
            Err(ErrorCode::CoordinatorLoadInProgress)
        );
        assert!(ownership.loaded(3, 7));
        assert_eq!(ownership.serves(&group), Ok(()));
        // Same leadership: nothing to do.
        assert_eq!(ownership.plan(&led(&[(3, 7)])), Plan::default());
        // A new epoch (the broker lost and regained it): unload, then load again.
        let plan = ownership.plan(&led(&[(3, 8)]));
        assert_eq!(plan.unload, vec![3]);
        assert_eq!(plan.load, vec![(3, 8)]);
        assert_eq!(
            ownership.serves(&group),
            Err(ErrorCode::CoordinatorLoadInProgress)
        );
    }

    #[test]
    fn a_failed_load_is_tried_again() {
        let mut ownership = Ownership::cluster(OFFSETS_PARTITIONS);
        assert_eq!(ownership.plan(&led(&[(1, 2)])).load, vec![(1, 2)]);
        ownership.load_failed(1, 2);
        assert_eq!(
            ownership.serves(&group_in(1)),
            Err(ErrorCode::NotCoordinator)
        );
        assert_eq!(ownership.plan(&led(&[(1, 2)])).load, vec![(1, 2)]);
    }

    #[test]
    fn groups_spread_over_the_partitions() {
        let mut seen = [0u32; OFFSETS_PARTITIONS as usize];
        for i in 0..800 {
            seen[partition_of(&format!("group-{i}"), OFFSETS_PARTITIONS) as usize] += 1;
        }
        assert!(seen.iter().all(|n| *n > 50), "{seen:?}");
    }
}
