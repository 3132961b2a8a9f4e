//! `keel log dump PATH` and `keel log verify DIR`: offline inspection of segment files,
//! like Kafka's dump-log tool. No broker needed; safe on a stopped broker's data.

use anyhow::{bail, Context};
use keel_engine::index::OffsetIndex;
use keel_engine::recovery::{Scanner, Step, Stop};
use keel_engine::segment::parse_log_file_name;
use keel_protocol::batch::BatchView;
use std::path::{Path, PathBuf};

#[derive(clap::Subcommand)]
pub enum LogCommand {
    /// Print the batches and records of a segment file.
    Dump {
        /// A `.log` segment file.
        path: PathBuf,
        /// Batch headers only.
        #[arg(long)]
        headers_only: bool,
    },
    /// Check every segment (CRC, lengths, offsets) and index of a data directory.
    Verify {
        /// A broker data directory, or one partition's directory.
        dir: PathBuf,
    },
}

pub fn run(command: LogCommand) -> anyhow::Result<()> {
    match command {
        LogCommand::Dump { path, headers_only } => dump(&path, headers_only),
        LogCommand::Verify { dir } => verify(&dir),
    }
}

fn text(bytes: &Option<bytes::Bytes>) -> String {
    match bytes {
        None => "null".into(),
        Some(bytes) => format!("{:?}", String::from_utf8_lossy(bytes)),
    }
}

fn dump(path: &Path, headers_only: bool) -> anyhow::Result<()> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    out!("Dumping {}", path.display());
    let mut position = 0usize;
    while position < data.len() {
        let rest = &data[position..];
        if rest.len() >= 12 && rest[8..12] == [0, 0, 0, 0] {
            out!(
                "zero padding from position {position} ({} bytes): end of log",
                rest.len()
            );
            break;
        }
        let view = BatchView::new(rest)
            .with_context(|| format!("{} at byte {position}", path.display()))?;
        let crc_ok = view.verify_crc().is_ok();
        out!(
            "baseOffset: {} lastOffset: {} count: {} position: {} size: {} magic: 2 compression: {} crc: {:#010x} isValid: {} baseTimestamp: {} maxTimestamp: {} producerId: {} producerEpoch: {} baseSequence: {} partitionLeaderEpoch: {}",
            view.base_offset(),
            view.last_offset(),
            view.records_count(),
            position,
            view.len(),
            view.compression().map_or("invalid", |c| c.name()),
            view.crc(),
            crc_ok,
            view.base_timestamp(),
            view.max_timestamp(),
            view.producer_id(),
            view.producer_epoch(),
            view.base_sequence(),
            view.partition_leader_epoch(),
        );
        if !headers_only && crc_ok {
            for record in view
                .records()
                .with_context(|| format!("{} at byte {position}", path.display()))?
            {
                let headers: Vec<String> = record
                    .headers
                    .iter()
                    .map(|h| format!("{}={}", h.key, text(&h.value)))
                    .collect();
                out!(
                    "| offset: {} timestamp: {} key: {} value: {} headers: [{}]",
                    record.offset,
                    record.timestamp,
                    text(&record.key),
                    text(&record.value),
                    headers.join(", ")
                );
            }
        }
        position += view.len();
    }
    Ok(())
}

/// Every directory under `dir` (itself included) that holds segment files.
fn partition_dirs(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut has_logs = false;
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type()?.is_dir() {
            found.extend(partition_dirs(&entry.path())?);
        } else if parse_log_file_name(&name).is_some() {
            has_logs = true;
        }
    }
    if has_logs {
        found.push(dir.to_owned());
    }
    found.sort();
    Ok(found)
}

fn verify(dir: &Path) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    let mut checked = 0u64;
    for partition in partition_dirs(dir)? {
        let mut bases: Vec<i64> = std::fs::read_dir(&partition)?
            .filter_map(|e| e.ok())
            .filter_map(|e| parse_log_file_name(&e.file_name().to_string_lossy()))
            .collect();
        bases.sort_unstable();
        let mut previous_end: Option<i64> = None;
        for base in bases {
            let path = partition.join(format!("{base:020}.log"));
            let data =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            let mut scanner = Scanner::from_start(base, 4096, true);
            let stop = match scanner.feed(&data, true) {
                Step::Stop(stop) => stop,
                Step::NeedMore { .. } => unreachable!("the whole file was fed"),
            };
            checked += scanner.batches_count();
            if let Stop::Invalid { reason, .. } = &stop {
                problems.push(format!(
                    "{}: bad batch at byte {}: {reason}",
                    path.display(),
                    scanner.position()
                ));
            }
            if let Some(end) = previous_end {
                if base < end {
                    problems.push(format!(
                        "{}: starts at offset {base} but the previous segment ends at {end}",
                        path.display()
                    ));
                }
            }
            previous_end = scanner.next_offset();
            // The batch starts the scan found are where index entries may point.
            let starts: std::collections::BTreeMap<u64, i64> =
                batch_starts(&data, scanner.position());
            let index_path = path.with_extension("index");
            if let Ok(bytes) = std::fs::read(&index_path) {
                match OffsetIndex::from_bytes(base, &bytes, data.len() as u64) {
                    Err(reason) => {
                        problems.push(format!("{}: invalid index: {reason}", index_path.display()))
                    }
                    Ok(index) => {
                        for entry in index.entries() {
                            if starts.get(&entry.position) != Some(&entry.last_offset) {
                                problems.push(format!(
                                    "{}: entry (offset {}, position {}) does not point at that batch",
                                    index_path.display(),
                                    entry.last_offset,
                                    entry.position
                                ));
                            }
                        }
                    }
                }
            }
        }
    }
    if problems.is_empty() {
        out!("ok: {checked} batches checked under {}", dir.display());
        return Ok(());
    }
    for problem in &problems {
        eprintln!("{problem}");
    }
    bail!(
        "{} problem(s) found under {}",
        problems.len(),
        dir.display()
    )
}

/// Position → last offset of every valid batch before `valid_end`.
fn batch_starts(data: &[u8], valid_end: u64) -> std::collections::BTreeMap<u64, i64> {
    let mut starts = std::collections::BTreeMap::new();
    let mut position = 0usize;
    while (position as u64) < valid_end {
        let Ok(view) = BatchView::new(&data[position..]) else {
            break;
        };
        starts.insert(position as u64, view.last_offset());
        position += view.len();
    }
    starts
}
