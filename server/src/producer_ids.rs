//! Producer ids unique across the cluster and across restarts (Kafka's
//! `AllocateProducerIds`): each shard hands out ids from a block it took, and takes the next
//! block when its block runs out. In cluster mode a block is an entry of the metadata log
//! (`Record::AllocateProducerIds`), so no two brokers ever get the same one; a single node
//! keeps the end of its last block in `producer-ids` in its data directory (fsynced before
//! any id of the block is handed out), so a restart never repeats an id.

use std::cell::RefCell;
use std::ops::Range;
use std::path::Path;
use std::rc::Rc;

use anyhow::Context;
use keel_protocol::api::ErrorCode;

use crate::shard::Shard;

/// Ids per block, as Kafka's controller hands out.
pub const BLOCK_IDS: u32 = 1_000;

/// The file a single node keeps its counter in.
const COUNTER_FILE: &str = "producer-ids";

/// The ids a shard may still hand out.
#[derive(Debug, Default)]
pub struct ProducerIds {
    block: RefCell<Range<u64>>,
}

impl ProducerIds {
    /// The next id of the current block, if any is left.
    fn take(&self) -> Option<i64> {
        let mut block = self.block.borrow_mut();
        let id = block.next()?;
        Some(id as i64)
    }
}

/// A producer id no other producer of this cluster (or of any earlier start of this node)
/// was given.
///
/// # Errors
/// `NotController` when the controller could not be reached (retriable), `StorageError`
/// when a single node cannot write its counter.
pub async fn next(shard: &Rc<Shard>) -> Result<i64, ErrorCode> {
    // A reservation may come while a block is taken: at most a few rounds.
    for _ in 0..4 {
        drop_below_floor(shard);
        if let Some(id) = shard.producer_ids.take() {
            return Ok(id);
        }
        let block = match shard.cluster.is_some() {
            true => cluster_block(shard).await?,
            false => local_block(&shard.config.data_dir).map_err(|e| {
                tracing::error!("cannot allocate producer ids: {e:#}");
                ErrorCode::StorageError
            })?,
        };
        // Another task of this shard may have taken a block meanwhile: the newer one wins
        // and the rest of the older is never used (ids are plentiful; uniqueness counts).
        *shard.producer_ids.block.borrow_mut() = block;
    }
    Err(ErrorCode::NotController)
}

/// Ids below a reservation (mirrored producers' ids, issue 23) are never handed out: a
/// block from before it is dropped.
fn drop_below_floor(shard: &Shard) {
    if let Some(view) = &shard.cluster {
        let floor = reserved_floor(&view.image());
        let mut block = shard.producer_ids.block.borrow_mut();
        if block.start < floor {
            *block = 0..0;
        }
    }
}

/// A block from the controller, read from the applied metadata once its entry is applied
/// (as the broker's latest block: one shard of the broker at a time takes one).
async fn cluster_block(shard: &Rc<Shard>) -> Result<Range<u64>, ErrorCode> {
    use std::sync::atomic::Ordering;
    let view = shard.cluster.as_ref().ok_or(ErrorCode::NotController)?;
    let taken = &view.producer_block_taken;
    while taken
        .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
    }
    struct Release<'a>(&'a std::sync::atomic::AtomicBool);
    impl Drop for Release<'_> {
        fn drop(&mut self) {
            self.0.store(false, Ordering::Release);
        }
    }
    let _release = Release(taken);
    let id = view.node_id;
    let request = keel_controller::node::Request::AllocateProducerIds {
        id,
        count: BLOCK_IDS,
    };
    let offset = crate::cluster::change(shard, request).await.map_err(|e| {
        tracing::warn!("producer id block not allocated: {e}");
        ErrorCode::NotController
    })?;
    let image = view.image();
    if image.offset() < offset {
        return Err(ErrorCode::NotController);
    }
    let (first, count) = image.producer_block(id).ok_or(ErrorCode::NotController)?;
    Ok(first..first + u64::from(count))
}

/// The first producer id a broker may hand out: blocks taken before the latest
/// reservation (which may hold mirrored producers' ids) are left unused.
pub fn reserved_floor(image: &keel_controller::image::MetadataImage) -> u64 {
    image
        .producer_block(keel_controller::image::RESERVED_PRODUCER_IDS)
        .map_or(0, |(first, count)| first + u64::from(count))
}

/// Makes sure no broker of the cluster hands out producer ids up to `highest` (the largest
/// a mirror partition appended): the controller's next id moves past it.
///
/// # Errors
/// The controller could not be reached; the caller asks again after its next append.
pub async fn reserve_through(shard: &Rc<Shard>, highest: u64) -> Result<(), ErrorCode> {
    let view = shard.cluster.as_ref().ok_or(ErrorCode::NotController)?;
    while reserved_floor(&view.image()) <= highest {
        let request = keel_controller::node::Request::ReserveProducerIds {
            id: view.node_id,
            below: highest + 1,
        };
        crate::cluster::change(shard, request).await.map_err(|e| {
            tracing::warn!("producer ids not reserved past mirrored ones: {e}");
            ErrorCode::NotController
        })?;
    }
    Ok(())
}

/// A single node's next block: the counter file moves past it (fsynced) first.
///
/// # Errors
/// The counter file cannot be read, parsed or written.
pub fn local_block(data_dir: &Path) -> anyhow::Result<Range<u64>> {
    // Shards take blocks from one file: one at a time.
    static FILE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = FILE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let path = data_dir.join(COUNTER_FILE);
    let first = match std::fs::read_to_string(&path) {
        Ok(text) => text
            .trim()
            .parse::<u64>()
            .with_context(|| format!("{} does not hold a number", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let end = first + u64::from(BLOCK_IDS);
    anyhow::ensure!(end <= i64::MAX as u64, "producer ids exhausted");
    crate::registry::write_durably(&path, format!("{end}\n").as_bytes())?;
    Ok(first..end)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: a single node never hands out an id twice, across restarts (each block is
    // recorded before it is used) and across shards (blocks come from one counter).
    #[test]
    fn local_blocks_follow_each_other_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let first = local_block(dir.path()).unwrap();
        let second = local_block(dir.path()).unwrap();
        assert_eq!(first, 0..u64::from(BLOCK_IDS));
        assert_eq!(second.start, first.end);
        let text = std::fs::read_to_string(dir.path().join(COUNTER_FILE)).unwrap();
        assert_eq!(
            text.trim(),
            second.end.to_string(),
            "the counter is on disk"
        );
        std::fs::write(dir.path().join(COUNTER_FILE), "garbage").unwrap();
        assert!(local_block(dir.path()).is_err(), "a bad counter is refused");
    }
}
