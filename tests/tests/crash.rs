//! Kill -9 a process appending with fsync=always at random moments; after every kill,
//! every acknowledged append must be in the log byte for byte and no torn batch may be
//! readable. Reproduce a run with `KEEL_CRASH_SEED=N`.

use keel_engine::{Log, LogConfig, ReadData};
use keel_protocol::batch::{set_base_offset, set_partition_leader_epoch, BatchView};
use keel_tests::{crash_batch, crash_batch_records};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ROUNDS: u64 = 24;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Reads the whole log and returns base offset -> batch bytes, checking every batch's CRC
/// and that offsets are dense.
fn read_log(dir: std::path::PathBuf) -> (BTreeMap<i64, Vec<u8>>, usize) {
    glommio::LocalExecutorBuilder::default()
        .io_memory(1 << 20)
        .spawn(move || async move {
            let log = Log::open(
                &dir,
                LogConfig {
                    retention_ms: None,
                    ..LogConfig::default()
                },
            )
            .await
            .expect("reopen after kill");
            let mut out = BTreeMap::new();
            let mut next = 0;
            while next < log.high_watermark() {
                let read = log.read(next, 1 << 20).await.expect("read");
                let bytes = match &read.data {
                    ReadData::Empty => panic!("empty read below the high watermark"),
                    data => data.to_vec().unwrap(),
                };
                let mut rest = bytes.as_slice();
                while !rest.is_empty() {
                    let view = BatchView::new_verified(rest)
                        .expect("no torn or corrupt batch is ever served");
                    assert!(view.base_offset() <= next, "offsets are dense");
                    next = view.next_offset();
                    out.insert(view.base_offset(), view.as_bytes().to_vec());
                    rest = &rest[view.len()..];
                }
            }
            let segments = log.segments().len();
            log.close().await.unwrap();
            (out, segments)
        })
        .unwrap()
        .join()
        .unwrap()
}

#[test]
fn kill_9_never_loses_an_acknowledged_append() {
    let seed = std::env::var("KEEL_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("crash test seed {seed}: reproduce with KEEL_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut acked: BTreeMap<i64, u64> = BTreeMap::new();
    let mut compared = 0usize;
    let mut segments = 0;
    for round in 0..ROUNDS {
        let mut child = Command::new(env!("CARGO_BIN_EXE_keel-crash-writer"))
            .arg(dir.path())
            .arg((round * 1_000_000).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start crash writer");
        let stdout = child.stdout.take().unwrap();
        let (lines_tx, lines_rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Wait for the writer to be appending, then let it run a random while.
        let ready_by = Instant::now() + Duration::from_secs(30);
        let first = lines_rx
            .recv_timeout(ready_by - Instant::now())
            .expect("writer ready line");
        assert!(
            first.starts_with("ready"),
            "unexpected first line {first:?}"
        );
        let run_for = Duration::from_millis(20 + rng.next() % 300);
        std::thread::sleep(run_for);
        // SAFETY: plain kill(2) on our own child's pid.
        let killed = unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        assert_eq!(killed, 0, "kill -9 the writer");
        child.wait().unwrap();
        reader.join().unwrap();
        let mut round_acks = 0;
        for line in lines_rx.try_iter() {
            // Only complete lines reach here; a line cut by the kill never parses as an ack.
            let mut parts = line.split(' ');
            if let (Some("ack"), Some(tag), Some(base), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            {
                let (Ok(tag), Ok(base)) = (tag.parse::<u64>(), base.parse::<i64>()) else {
                    continue;
                };
                assert!(
                    acked.insert(base, tag).is_none(),
                    "offset {base} acknowledged twice"
                );
                round_acks += 1;
            }
        }
        let (stored, segment_count) = read_log(dir.path().to_owned());
        segments = segment_count;
        for (&base, &tag) in &acked {
            let got = stored.get(&base).unwrap_or_else(|| {
                panic!("round {round}: acked batch at {base} (tag {tag}) lost; seed {seed}")
            });
            let mut want = crash_batch(tag);
            set_base_offset(&mut want, base);
            set_partition_leader_epoch(&mut want, 0);
            assert_eq!(
                got, &want,
                "round {round}: batch at {base} differs; seed {seed}"
            );
            assert_eq!(
                BatchView::new(got).unwrap().last_offset(),
                base + crash_batch_records(tag) - 1
            );
            compared += 1;
        }
        eprintln!("round {round}: ran {run_for:?}, {round_acks} acks, {} stored batches, {segment_count} segments", stored.len());
    }
    assert!(
        acked.len() > ROUNDS as usize,
        "the writer must have acknowledged appends"
    );
    assert!(compared > 0, "the checker compared nothing");
    assert!(segments > 1, "the run should cross segment rolls");
    eprintln!("compared {compared} acknowledged batches over {ROUNDS} kills");
}
