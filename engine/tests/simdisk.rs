//! Randomized crash test over a simulated disk: the flusher's writes, truncations and
//! fdatasyncs go to `keel_engine::simdisk`, which at a crash keeps only what was synced
//! plus random prefixes of what was written since (the last write possibly torn), and can
//! fail any one operation with EIO.
//!
//! Over many seeds: every append acknowledged under `fsync=always` is in the recovered log
//! byte for byte at its offset, recovery never serves a torn or corrupt batch (every batch
//! read back passes its CRC, offsets are dense), and an injected EIO fails the appends it
//! affects instead of acknowledging them, as does a full disk (ENOSPC until space is
//! freed), or a write cut short (only its first sectors reach the file); the log then
//! resumes (`Log::resume`) and what it acknowledges after that
//! survives the crash too. The leader epoch changes during a run: every recovered batch's
//! epoch is the one the recovered leader-epoch checkpoint names for its offset. `KEEL_SIM_SEEDS` sets the number of seeds
//! (default 2,000) and `KEEL_SIM_SEED` runs one seed.

mod common;

use common::{batch, batches, run};
use keel_engine::simdisk::{self, SimConfig};
use keel_engine::{FsyncPolicy, Log, LogConfig};
use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;

fn random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn config(rng: &mut u64) -> LogConfig {
    LogConfig {
        segment_bytes: [16 * 1024, 64 * 1024, 1 << 20][(random(rng) % 3) as usize],
        index_interval_bytes: 1024,
        tail_cache_bytes: [4 * 1024, 256 * 1024][(random(rng) % 2) as usize],
        write_chunk_bytes: [4096, 16 * 1024, 1 << 20][(random(rng) % 3) as usize],
        fsync: FsyncPolicy::Always,
        retention_ms: None,
        segment_ms: None,
        ..LogConfig::default()
    }
}

/// The bytes of a stored batch that the producer chose: all but the base offset (0..8) and
/// the partition leader epoch (12..16), which the log stamps.
fn producer_bytes(stored: &[u8]) -> Vec<u8> {
    let mut out = stored[8..12].to_vec();
    out.extend_from_slice(&stored[16..]);
    out
}

struct Outcome {
    acked: Vec<(i64, Vec<u8>)>,
    failed: usize,
    resumed: usize,
    report: simdisk::SimReport,
}

/// One seeded run: appenders on one log until the crash, then the image is recovered into
/// `recovered` and checked.
async fn one_seed(seed: u64, root: &Path) -> Outcome {
    let mut rng = seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1;
    let live = root.join(format!("live-{seed}"));
    let recovered = root.join(format!("recovered-{seed}"));
    let config = config(&mut rng);
    // Every run crashes; a third of them also fail one earlier operation with EIO, and a
    // third fill the disk before it (ENOSPC until the appenders free space).
    let crash_after = 20 + random(&mut rng) % 400;
    let (mut fail_op, mut full_from_op, mut short_write_op) = (None, None, None);
    match random(&mut rng) % 4 {
        0 => fail_op = Some(1 + random(&mut rng) % crash_after),
        1 => full_from_op = Some(1 + random(&mut rng) % crash_after),
        2 => short_write_op = Some(1 + random(&mut rng) % crash_after),
        _ => {}
    }
    simdisk::install(SimConfig {
        seed,
        crash_after_ops: Some(crash_after),
        fail_op,
        full_from_op,
        short_write_op,
    });
    let log = Rc::new(Log::open(&live, config.clone()).await.expect("open"));
    let acked = Rc::new(RefCell::new(Vec::new()));
    let failed = Rc::new(RefCell::new(0usize));
    let resumed = Rc::new(RefCell::new(0usize));
    // Leadership changes now and then: each new epoch is written to the leader-epoch
    // checkpoint (through the simulated disk) before its first batch.
    let epoch = Rc::new(std::cell::Cell::new(0));
    let appenders = 1 + random(&mut rng) % 6;
    let mut tasks = Vec::new();
    for appender in 0..appenders {
        let (log, acked, failed) = (log.clone(), acked.clone(), failed.clone());
        let (resumed, epoch) = (resumed.clone(), epoch.clone());
        let mut local = random(&mut rng) | 1;
        tasks.push(glommio::spawn_local(async move {
            for n in 0..200u64 {
                if random(&mut local).is_multiple_of(16) {
                    epoch.set(epoch.get() + 1);
                    log.set_leader_epoch(epoch.get());
                }
                let tag = appender * 1_000 + n;
                let count = 1 + (random(&mut local) % 8) as usize;
                let value_len = (random(&mut local) % 900) as usize;
                let bytes = batch(tag, count, value_len, 1_700_000_000_000);
                let sent = bytes.to_vec();
                match log.append(bytes).await {
                    Ok(info) => acked.borrow_mut().push((info.base_offset, sent)),
                    Err(_) => {
                        *failed.borrow_mut() += 1;
                        // The log is offline after an I/O error; later appends fail too.
                        if simdisk::report().crashed {
                            return;
                        }
                        // Before the crash the device works again (space is freed):
                        // the log resumes.
                        simdisk::free_space();
                        if log.is_offline() && log.resume().await.is_ok() && !log.is_offline() {
                            *resumed.borrow_mut() += 1;
                        }
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await;
    }
    let image = simdisk::crash_image();
    let report = simdisk::uninstall().expect("installed");
    let _ = log.close().await;
    drop(log);
    // Only this run's directory: a write of an earlier seed's log still in flight when
    // this simulation was installed lands in the image too (under that seed's path).
    simdisk::write_image(&image, &live, &recovered).expect("write image");
    let acked = acked.take();
    check_recovered(seed, &recovered, &config, &acked).await;
    let _ = std::fs::remove_dir_all(&live);
    let _ = std::fs::remove_dir_all(&recovered);
    Outcome {
        acked,
        failed: failed.take(),
        resumed: resumed.take(),
        report,
    }
}

async fn check_recovered(seed: u64, dir: &Path, config: &LogConfig, acked: &[(i64, Vec<u8>)]) {
    let log = Log::open(dir, config.clone())
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: recovery failed: {e}"));
    let mut stored = std::collections::BTreeMap::new();
    let mut next = log.log_start_offset();
    while next < log.high_watermark() {
        let read = log.read(next, 1 << 20).await.expect("read");
        // `batches` CRC-checks every batch served.
        let got = batches(&read.data);
        assert!(!got.is_empty(), "seed {seed}: empty read at {next}");
        for (base, last, bytes) in got {
            assert_eq!(base, next, "seed {seed}: offsets are dense");
            let epoch = i32::from_be_bytes(bytes[12..16].try_into().expect("4 bytes"));
            assert_eq!(
                log.epoch_before(base + 1),
                Some(epoch),
                "seed {seed}: the leader-epoch checkpoint names the epoch of the batch at {base}"
            );
            next = last + 1;
            stored.insert(base, bytes);
        }
    }
    for (offset, sent) in acked {
        let Some(bytes) = stored.get(offset) else {
            panic!(
                "seed {seed}: acknowledged batch at offset {offset} lost (recovered log ends at {next})"
            );
        };
        assert_eq!(
            producer_bytes(bytes),
            producer_bytes(sent),
            "seed {seed}: acknowledged batch at {offset} differs"
        );
    }
    log.close().await.expect("close");
}

/// What the seeds of one run added up to.
#[derive(Default)]
struct Totals {
    acked: usize,
    failed: usize,
    with_eio: usize,
    syncs: u64,
    resumed: usize,
    no_space: usize,
    short: usize,
}

impl Totals {
    fn add(&mut self, other: Totals) {
        self.acked += other.acked;
        self.failed += other.failed;
        self.with_eio += other.with_eio;
        self.syncs += other.syncs;
        self.resumed += other.resumed;
        self.no_space += other.no_space;
        self.short += other.short;
    }
}

/// Runs `seeds` one after another on one executor (the simulated disk is per thread).
async fn run_seeds(seeds: Vec<u64>, root: &Path) -> Totals {
    let mut totals = Totals::default();
    for seed in seeds {
        let outcome = one_seed(seed, root).await;
        totals.acked += outcome.acked.len();
        totals.failed += outcome.failed;
        totals.resumed += outcome.resumed;
        totals.no_space += usize::from(outcome.report.no_space > 0);
        totals.short += usize::from(outcome.report.short_writes > 0);
        totals.with_eio += usize::from(outcome.report.failed);
        totals.syncs += outcome.report.syncs;
        assert!(outcome.report.crashed, "seed {seed}: every run crashes");
    }
    totals
}

fn seeds() -> Vec<u64> {
    match std::env::var("KEEL_SIM_SEED") {
        Ok(one) => vec![one.parse().expect("KEEL_SIM_SEED is a number")],
        Err(_) => {
            let n = std::env::var("KEEL_SIM_SEEDS")
                .ok()
                .and_then(|n| n.parse().ok())
                // The slow tier (`KEEL_SLOW=1`, run by `.ci/run`) takes 2,000.
                .unwrap_or(if std::env::var_os("KEEL_SLOW").is_some() {
                    2_000u64
                } else {
                    400
                });
            (1..=n).collect()
        }
    }
}

#[test]
fn acknowledged_appends_survive_simulated_crashes_and_eio() {
    let seeds = seeds();
    let root = tempfile::tempdir().unwrap();
    // One executor thread per core, each over every `workers`-th seed: a seed's outcome
    // depends only on the seed.
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(seeds.len());
    let threads: Vec<_> = (0..workers)
        .map(|worker| {
            let mine: Vec<u64> = seeds
                .iter()
                .copied()
                .skip(worker)
                .step_by(workers)
                .collect();
            let path = root.path().to_owned();
            std::thread::spawn(move || run(move || async move { run_seeds(mine, &path).await }))
        })
        .collect();
    let mut t = Totals::default();
    for thread in threads {
        t.add(thread.join().expect("a simulation thread panicked"));
    }
    eprintln!(
        "simdisk: {} acknowledged appends checked, {} failed appends, {} runs with an injected EIO, {} with a full disk, {} with a short write, {} resumes, {} fdatasyncs",
        t.acked, t.failed, t.with_eio, t.no_space, t.short, t.resumed, t.syncs
    );
    assert!(t.acked > 0 && t.failed > 0 && t.with_eio > 0 && t.no_space > 0 && t.syncs > 0);
    assert!(t.resumed > 0, "some logs resume after a failure");
    assert!(t.short > 0, "some runs cut a write short");
}
