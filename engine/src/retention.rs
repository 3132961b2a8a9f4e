//! Retention decisions: which old segments to delete. Pure bookkeeping; the log deletes.

/// What retention needs to know about a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentSummary {
    /// Segment size in bytes.
    pub size: u64,
    /// Largest record timestamp in the segment (-1 when none).
    pub max_timestamp: i64,
    /// Offset after the segment's last batch.
    pub next_offset: i64,
}

/// Retention limits; `None` means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetentionPolicy {
    /// Delete segments whose newest record is older than this many milliseconds.
    pub retention_ms: Option<u64>,
    /// Delete old segments while the log is larger than this many bytes.
    pub retention_bytes: Option<u64>,
}

/// How many of the oldest segments to delete.
///
/// `segments` is oldest first and its last entry is the active segment, which is never
/// deleted. A segment is deleted only when every segment before it is, and only when all
/// its offsets are below `high_watermark` (no consumer can still be owed them).
pub fn segments_to_delete(
    segments: &[SegmentSummary],
    policy: RetentionPolicy,
    now_ms: i64,
    high_watermark: i64,
) -> usize {
    let Some((_active, closed)) = segments.split_last() else {
        return 0;
    };
    let total: u64 = segments.iter().map(|s| s.size).sum();
    let mut excess = match policy.retention_bytes {
        Some(limit) => total.saturating_sub(limit),
        None => 0,
    };
    let mut count = 0;
    for segment in closed {
        if segment.next_offset > high_watermark {
            break;
        }
        let expired = policy.retention_ms.is_some_and(|ms| {
            // A retention past i64::MAX ms keeps everything (a cast would wrap negative
            // and delete everything).
            segment.max_timestamp < now_ms.saturating_sub(i64::try_from(ms).unwrap_or(i64::MAX))
        });
        let too_big =
            policy.retention_bytes.is_some() && excess >= segment.size && segment.size > 0;
        if !(expired || too_big) {
            break;
        }
        excess = excess.saturating_sub(segment.size);
        count += 1;
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(size: u64, max_timestamp: i64, next_offset: i64) -> SegmentSummary {
        SegmentSummary {
            size,
            max_timestamp,
            next_offset,
        }
    }

    #[test]
    fn table() {
        let segments = [
            seg(100, 1_000, 10),
            seg(100, 2_000, 20),
            seg(100, 3_000, 30),
            seg(50, 4_000, 35),
        ];
        let bytes = |n| RetentionPolicy {
            retention_ms: None,
            retention_bytes: Some(n),
        };
        let time = |ms| RetentionPolicy {
            retention_ms: Some(ms),
            retention_bytes: None,
        };
        let cases: &[(&str, RetentionPolicy, i64, i64, usize)] = &[
            // why: unlimited retention never deletes
            ("unlimited", RetentionPolicy::default(), 10_000, 35, 0),
            // why: 350 bytes, limit 200: deleting one leaves 250; a second would leave 150,
            // below the limit, so Kafka keeps it (the log stays at or above retention.bytes)
            ("bytes 200", bytes(200), 0, 35, 1),
            // why: limit 150: two deletions leave exactly 150
            ("bytes 150", bytes(150), 0, 35, 2),
            // why: limit exactly met after one deletion
            ("bytes 250", bytes(250), 0, 35, 1),
            // why: the active segment is never deleted even if over the limit
            ("bytes 0", bytes(0), 0, 35, 3),
            // why: newest record 2_000 is older than 5_000 - 2_500 = 2_500; 3_000 is not
            ("time 2500", time(2_500), 5_000, 35, 2),
            // why: nothing older than the cut-off
            ("time long", time(100_000), 5_000, 35, 0),
            // why: a segment whose offsets are above the high watermark is still owed
            ("hw", time(0), 100_000, 15, 1),
            // why: a retention past i64::MAX ms (a u64 flag) keeps everything; a cast once
            // wrapped it negative and deleted everything
            ("time u64::MAX", time(u64::MAX), 5_000, 35, 0),
        ];
        for (name, policy, now, hw, want) in cases {
            assert_eq!(
                segments_to_delete(&segments, *policy, *now, *hw),
                *want,
                "{name}"
            );
        }
        assert_eq!(segments_to_delete(&[], time(0), 0, 0), 0, "empty log");
    }
}
