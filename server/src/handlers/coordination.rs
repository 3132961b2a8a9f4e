//! Which groups this broker coordinates, kept true on the coordinator shard. A group's
//! records live in one partition of `__consumer_offsets` (`Ownership::partition`). A
//! single node loads its one partition at start-up. In a cluster the topic is replicated
//! like any other; each broker follows the metadata: when it becomes the leader of an
//! offsets partition it reads the partition from its start up to the log end (once the
//! high watermark has reached it: only committed records), and serves its groups from then
//! on; when it stops leading it forgets them, and their requests are answered
//! NotCoordinator so that clients find the new coordinator.

use super::groups::{append, now_ms, parse_offset_key, GroupService, OFFSETS_TOPIC};
use crate::group::ownership::Epoch;
use crate::group::record::{group_key, parse_group_key, SavedGroup};
use crate::shard::{owner, Fetched, Job, Shard};
use bytes::Bytes;
use keel_protocol::api::ErrorCode;
use keel_protocol::batch::{BatchBuilder, NewRecord};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// How long a load waits for the high watermark to reach the log end (the followers to
/// fetch) before giving up and trying again on the next round.
const LOAD_WAIT: Duration = Duration::from_secs(30);
/// How often the coordinator shard compares the metadata with what it has loaded.
const FOLLOW_EVERY: Duration = Duration::from_millis(100);

/// The offsets partitions this broker leads now, with their leader epochs.
fn led(shard: &Shard) -> BTreeMap<u32, Epoch> {
    let Some(view) = &shard.cluster else {
        return BTreeMap::new();
    };
    let image = view.image();
    let me = i32::try_from(shard.config.node_id).unwrap_or(-1);
    image
        .topic(OFFSETS_TOPIC)
        .map(|topic| {
            topic
                .partitions
                .iter()
                .enumerate()
                .filter(|(_, state)| state.leader == me)
                .map(|(index, state)| (index as u32, state.leader_epoch))
                .collect()
        })
        .unwrap_or_default()
}

/// Cluster mode: loads and unloads offsets partitions as their leadership moves; runs on
/// the coordinator shard for the broker's life.
pub async fn follow_leadership(shard: Rc<Shard>) {
    loop {
        glommio::timer::sleep(FOLLOW_EVERY).await;
        let Some(service) = super::groups::service(&shard) else {
            return;
        };
        let plan = service.ownership.borrow_mut().plan(&led(&shard));
        for partition in plan.unload {
            tracing::info!(
                partition,
                "no longer coordinating the groups of this offsets partition"
            );
            service.forget_partition(partition);
        }
        for (partition, epoch) in plan.load {
            let started = Instant::now();
            match service.load(&shard, partition).await {
                Ok(loaded) if service.ownership.borrow_mut().loaded(partition, epoch) => {
                    tracing::info!(
                        partition,
                        epoch,
                        offsets = loaded,
                        took_ms = started.elapsed().as_millis() as u64,
                        "coordinating the groups of this offsets partition"
                    );
                }
                Ok(_) => service.forget_partition(partition),
                Err(e) => {
                    // Typically a partition just made, not yet led on its shard: tried again
                    // on the next round.
                    tracing::debug!(partition, error = %e, "loading offsets partition failed; will retry");
                    service.ownership.borrow_mut().load_failed(partition, epoch);
                    service.forget_partition(partition);
                }
            }
        }
    }
}

impl GroupService {
    /// Whether this broker coordinates `group` now, or the error to answer.
    pub fn serves(&self, group: &str) -> Result<(), ErrorCode> {
        self.ownership.borrow().serves(group)
    }

    /// The partition of `__consumer_offsets` holding `group`'s records.
    pub fn offsets_partition(&self, group: &str) -> u32 {
        self.ownership.borrow().partition(group)
    }

    /// Queues the membership records due (after a request of `group`, or the tick's
    /// expiries) for the writer task. The answers do not wait: a record lost with its
    /// coordinator only makes the members rejoin at the next one. At most one record per
    /// group waits (a newer one replaces it), so the queue is bounded by the groups.
    pub fn save(&self, shard: &Rc<Shard>, group: Option<&str>) {
        let due = {
            let mut coordinator = self.coordinator.borrow_mut();
            if let Some(group) = group {
                coordinator.note(group);
            }
            coordinator.take_saved()
        };
        for (group, saved) in due {
            match saved.map(|s| s.encode()).transpose() {
                Ok(value) => {
                    self.outbox.borrow_mut().insert(group, value);
                }
                Err(e) => tracing::warn!(group, error = %e, "group record not written"),
            }
        }
        if !self.outbox.borrow().is_empty() && !self.writing.replace(true) {
            glommio::spawn_local(write_records(shard.clone())).detach();
        }
    }

    /// Forgets the groups of an offsets partition; their parked joins are answered.
    pub fn forget_partition(&self, partition: u32) {
        let (answers, classic) = {
            let ownership = self.ownership.borrow();
            let gone = |group: &str| ownership.partition(group) == partition;
            self.outbox.borrow_mut().retain(|group, _| !gone(group));
            self.coordinator.borrow_mut().forget(&gone)
        };
        self.answer(answers);
        self.answer_classic(classic);
    }

    /// Reads an offsets partition from its start into the coordinator: committed offsets
    /// and their tombstones. Returns how many offsets were loaded.
    ///
    /// # Errors
    /// The partition is not open here, cannot be read, or (cluster) its high watermark did
    /// not reach its log end within [`LOAD_WAIT`].
    pub async fn load(&self, shard: &Rc<Shard>, partition: u32) -> anyhow::Result<usize> {
        let owner = owner(OFFSETS_TOPIC, partition, shard.shards());
        let started = Instant::now();
        let (mut offset, mut loaded) = (0i64, 0usize);
        loop {
            let job = Job::Read(crate::shard::Read::Fetch {
                topic: OFFSETS_TOPIC.into(),
                partition,
                offset,
                max_bytes: 1 << 20,
            });
            let (result, data) = match shard.ask::<Fetched>(owner, job).await {
                Ok(read) => read,
                Err(error) => anyhow::bail!("reading {OFFSETS_TOPIC}-{partition}: {error:?}"),
            };
            if result.error == ErrorCode::OffsetOutOfRange && result.log_start_offset > offset {
                // Compaction or retention removed the oldest records.
                offset = result.log_start_offset;
                continue;
            }
            if result.error != ErrorCode::None {
                anyhow::bail!("reading {OFFSETS_TOPIC}-{partition}: {:?}", result.error);
            }
            let bytes = data
                .to_vec()
                .map_err(|e| anyhow::anyhow!("reading {OFFSETS_TOPIC}-{partition}: {e}"))?;
            if bytes.is_empty() {
                if shard.cluster.is_none() || offset >= log_end(shard, owner, partition).await? {
                    return Ok(loaded);
                }
                // A new leader's high watermark passes its log end's records once the
                // followers have fetched them: only committed records are loaded.
                anyhow::ensure!(
                    started.elapsed() < LOAD_WAIT,
                    "the high watermark stayed at {offset}, below the log end"
                );
                glommio::timer::sleep(Duration::from_millis(20)).await;
                continue;
            }
            let (next, count) = self.apply(&bytes, offset)?;
            offset = next;
            loaded += count;
        }
    }

    /// Applies the records of whole batches at or past `from`; returns the next offset and
    /// how many offsets were stored.
    fn apply(&self, mut rest: &[u8], from: i64) -> anyhow::Result<(i64, usize)> {
        let (mut next, mut stored) = (from, 0);
        let mut coordinator = self.coordinator.borrow_mut();
        while !rest.is_empty() {
            let view = keel_protocol::batch::BatchView::new_verified(rest)?;
            for record in view.records()? {
                if record.offset < from {
                    continue;
                }
                let key = record.key.as_deref().unwrap_or_default();
                if let Some(group) = parse_group_key(key) {
                    restore(&mut coordinator, group, record.value);
                    continue;
                }
                let Some((group, topic, partition)) = parse_offset_key(key) else {
                    continue;
                };
                match record.value.map(|v| <[u8; 8]>::try_from(&v[..])) {
                    // A tombstone: the group was deleted (DeleteGroups).
                    None => coordinator.remove_offset(&group, &topic, partition),
                    Some(Ok(raw)) => {
                        coordinator.store_offset(
                            &group,
                            &topic,
                            partition,
                            i64::from_be_bytes(raw),
                        );
                        stored += 1;
                    }
                    Some(Err(_)) => {}
                }
            }
            next = view.next_offset();
            rest = &rest[view.len()..];
        }
        Ok((next, stored))
    }
}

/// Writes queued membership records to the groups' offsets partitions until none waits.
async fn write_records(shard: Rc<Shard>) {
    let Some(service) = super::groups::service(&shard) else {
        return;
    };
    loop {
        let next = service.outbox.borrow_mut().pop_first();
        let Some((group, value)) = next else {
            service.writing.set(false);
            return;
        };
        let _turn = service.offsets_writer.acquire_permit(1).await;
        let mut builder = BatchBuilder::new();
        builder.push(NewRecord {
            timestamp: now_ms(),
            key: Some(Bytes::from(group_key(&group))),
            value,
            headers: Vec::new(),
        });
        let partition = service.offsets_partition(&group);
        let error = match builder.build() {
            Ok(records) => append(&shard, partition, Bytes::from(records)).await,
            Err(_) => ErrorCode::MessageTooLarge,
        };
        if error != ErrorCode::None {
            tracing::info!(
                group,
                ?error,
                "group record not written; members rejoin after a coordinator move"
            );
        }
    }
}

/// Applies a membership record read from the offsets log (a tombstone forgets the group).
fn restore(
    coordinator: &mut crate::group::coordinator::Coordinator,
    group: &str,
    value: Option<Bytes>,
) {
    let Some(value) = value else {
        coordinator.unsave(group);
        return;
    };
    let restored =
        SavedGroup::decode(value).and_then(|saved| coordinator.restore(group, saved, now_ms()));
    if let Err(e) = restored {
        tracing::warn!(group, error = %e, "unreadable group record skipped; its members rejoin");
        coordinator.unsave(group);
    }
}

async fn log_end(shard: &Rc<Shard>, owner: usize, partition: u32) -> anyhow::Result<i64> {
    let job = Job::Describe {
        topic: OFFSETS_TOPIC.into(),
        partition,
    };
    match shard
        .ask::<keel_protocol::api::PartitionMetadata>(owner, job)
        .await
    {
        Ok(described) if described.error == ErrorCode::None => Ok(described.log_end_offset),
        Ok(described) => anyhow::bail!(
            "describing {OFFSETS_TOPIC}-{partition}: {:?}",
            described.error
        ),
        Err(error) => anyhow::bail!("describing {OFFSETS_TOPIC}-{partition}: {error:?}"),
    }
}
