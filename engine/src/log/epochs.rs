//! Where each leader epoch starts on this log, kept in `leader-epoch-checkpoint` (Kafka's
//! name and text format: a version line, a count line, then `epoch start_offset` lines).
//!
//! Replication asks it two questions: a leader answers "where did epoch E end on your
//! log?" for a returning follower (KIP-279), and a follower names the epoch of its last
//! batch when it fetches. An entry is written durably *before* the first batch of its epoch
//! enters the log, so after a crash the file never lacks the epoch of a stored batch; an
//! entry left past the recovered log end is dropped on open.

use super::*;

/// File name in the partition directory.
pub(super) const CHECKPOINT: &str = "leader-epoch-checkpoint";

#[derive(Debug, Default)]
pub(super) struct Epochs {
    path: PathBuf,
    /// `(epoch, start offset)`, both strictly increasing.
    entries: Vec<(i32, i64)>,
}

impl Epochs {
    /// Loads the checkpoint of `dir` and fits it to the recovered log `[log_start,
    /// log_end)`; without a checkpoint (a log written before replication), rebuilds it from
    /// the batch headers.
    pub(super) async fn load(
        dir: &Path,
        segments: &BTreeMap<i64, Segment>,
        log_start: i64,
        log_end: i64,
    ) -> Result<Epochs> {
        let path = dir.join(CHECKPOINT);
        let mut epochs = Epochs {
            path,
            entries: Vec::new(),
        };
        match std::fs::read_to_string(&epochs.path) {
            Ok(text) => epochs.entries = parse(&text, &epochs.path)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if log_end > log_start {
                    epochs.entries = scan(dir, segments).await?;
                    epochs.save()?;
                }
            }
            Err(e) => return Err(Error::io(format!("reading {}", epochs.path.display()), e)),
        }
        let before = epochs.entries.len();
        epochs.entries.retain(|(_, start)| *start < log_end);
        if epochs.entries.len() != before {
            epochs.save()?;
        }
        Ok(epochs)
    }

    /// The latest epoch with a batch in the log.
    pub(super) fn latest(&self) -> Option<i32> {
        self.entries.last().map(|(e, _)| *e)
    }

    /// Records that `epoch` starts at `start` (before that batch is stored).
    ///
    /// # Errors
    /// An epoch older than the latest (replicated batches must not go back), or I/O.
    pub(super) fn begin(&mut self, epoch: i32, start: i64) -> Result<()> {
        match self.entries.last() {
            Some((latest, _)) if *latest == epoch => return Ok(()),
            Some((latest, _)) if *latest > epoch => {
                return Err(Error::InvalidAppend(format!(
                    "leader epoch {epoch} is older than the log's latest {latest}"
                )))
            }
            _ => {}
        }
        self.entries.push((epoch, start));
        self.save()
    }

    /// The log was truncated to `end`.
    pub(super) fn truncate(&mut self, end: i64) -> Result<()> {
        let before = self.entries.len();
        self.entries.retain(|(_, start)| *start < end);
        if self.entries.len() == before {
            return Ok(());
        }
        self.save()
    }

    /// The epoch of the batch holding `offset - 1` (what a follower fetching from `offset`
    /// last fetched); `None` at the log's start.
    pub(super) fn epoch_before(&self, offset: i64) -> Option<i32> {
        self.entries
            .iter()
            .rev()
            .find(|(_, start)| *start < offset)
            .map(|(e, _)| *e)
    }

    /// The largest epoch at most `epoch` on this log and where the next one starts
    /// (`log_end` for the latest): a leader's answer to a returning follower. `None`: the
    /// log holds nothing at or before `epoch`.
    pub(super) fn end_offset_for(&self, epoch: i32, log_end: i64) -> Option<(i32, i64)> {
        let index = self.entries.iter().rposition(|(e, _)| *e <= epoch)?;
        let end = self
            .entries
            .get(index + 1)
            .map_or(log_end, |(_, start)| *start);
        Some((self.entries[index].0, end))
    }

    fn save(&self) -> Result<()> {
        let mut text = format!("0\n{}\n", self.entries.len());
        for (epoch, start) in &self.entries {
            text.push_str(&format!("{epoch} {start}\n"));
        }
        // Blocking, on purpose: an epoch starts once per leader change, and the entry must
        // be durable before the batch it describes is appended.
        io::replace_file_blocking(&self.path, text.as_bytes())
    }
}

fn parse(text: &str, path: &Path) -> Result<Vec<(i32, i64)>> {
    let corrupt = |reason: &str| Error::Corrupt {
        path: path.to_owned(),
        position: 0,
        reason: reason.to_owned(),
    };
    let mut lines = text.lines();
    if lines.next() != Some("0") {
        return Err(corrupt("unknown leader-epoch-checkpoint version"));
    }
    let count: usize = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| corrupt("no entry count"))?;
    let mut entries: Vec<(i32, i64)> = Vec::with_capacity(count.min(1 << 16));
    for line in lines {
        let mut fields = line.split_whitespace();
        let (Some(epoch), Some(start), None) = (fields.next(), fields.next(), fields.next()) else {
            return Err(corrupt("an entry is not `epoch offset`"));
        };
        let (Ok(epoch), Ok(start)) = (epoch.parse::<i32>(), start.parse::<i64>()) else {
            return Err(corrupt("an entry is not two numbers"));
        };
        if entries
            .last()
            .is_some_and(|(e, s)| *e >= epoch || *s >= start)
        {
            return Err(corrupt("entries do not increase"));
        }
        entries.push((epoch, start));
    }
    if entries.len() != count {
        return Err(corrupt("entry count does not match"));
    }
    Ok(entries)
}

/// Rebuilds the entries from every batch header (logs written before the checkpoint
/// existed).
async fn scan(dir: &Path, segments: &BTreeMap<i64, Segment>) -> Result<Vec<(i32, i64)>> {
    let mut entries: Vec<(i32, i64)> = Vec::new();
    for segment in segments.values() {
        if segment.written_size == 0 {
            continue;
        }
        let path = log_path(dir, segment.base_offset);
        let file = io::open_read(&path).await?;
        let mut position = 0u64;
        while position < segment.written_size {
            let header = io::read_exact(&file, &path, position, 17).await?;
            let total = match peek_batch_len(&header) {
                Ok(Some(total)) => total as u64,
                _ => break,
            };
            let base = i64::from_be_bytes(header[0..8].try_into().expect("8 bytes"));
            let epoch = i32::from_be_bytes(header[12..16].try_into().expect("4 bytes"));
            if entries.last().is_none_or(|(e, _)| *e < epoch) {
                entries.push((epoch, base));
            }
            position += total;
        }
        file.close()
            .await
            .map_err(io::error(format!("closing {}", path.display())))?;
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_text_round_trips_and_refuses_garbage() {
        let path = Path::new("x");
        assert_eq!(
            parse("0\n2\n0 0\n3 17\n", path).unwrap(),
            vec![(0, 0), (3, 17)]
        );
        for bad in [
            "",
            "1\n0\n",
            "0\n1\n",
            "0\n2\n3 1\n2 5\n",
            "0\n1\nx y\n",
            "0\n1\n1 2 3\n",
        ] {
            assert!(parse(bad, path).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn end_offsets_answer_returning_followers() {
        let epochs = Epochs {
            path: PathBuf::new(),
            entries: vec![(0, 0), (2, 8)],
        };
        assert_eq!(epochs.end_offset_for(1, 12), Some((0, 8)));
        assert_eq!(epochs.end_offset_for(2, 12), Some((2, 12)));
        assert_eq!(epochs.end_offset_for(5, 12), Some((2, 12)));
        assert_eq!(epochs.epoch_before(8), Some(0));
        assert_eq!(epochs.epoch_before(9), Some(2));
        assert_eq!(epochs.epoch_before(0), None);
    }
}
