//! A follower's fetch as its leader checks it, where a diverged follower truncates, and a
//! broker's role for a partition from the metadata (KIP-101/KIP-279/KIP-320).

/// Why a leader refuses a follower's fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchRefusal {
    /// The follower names an older leader epoch: it must refresh its metadata.
    FencedLeaderEpoch,
    /// The follower names a newer leader epoch than this leader knows yet.
    UnknownLeaderEpoch,
    /// The offset is past this leader's log end (and no divergence explains it), or before
    /// its log start (retention deleted it: the follower starts again at the log start).
    OffsetOutOfRange,
    /// The fetching replica is not one of the partition's followers.
    NotAFollower,
}

/// What a leader does with a follower's fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchDecision {
    /// Send batches from the offset asked for.
    Serve,
    /// The follower's last fetched epoch ends earlier on this leader (or is unknown here):
    /// answer where (`epoch`, `end_offset`) so it truncates first (KIP-320). `epoch` is -1
    /// when this log has nothing at or before the follower's epoch.
    Diverging {
        /// The largest epoch this log has at most the follower's.
        epoch: i32,
        /// Where that epoch ends here.
        end_offset: i64,
    },
}

/// A follower's fetch as its leader (leading at `leader_epoch`) checks it: the epoch the
/// follower names, then whether its last fetched epoch ends where this log's does.
/// `epoch_end(e)` is the largest epoch at most `e` on this log and where it ends (the log
/// end for the latest), `None` when the log holds nothing at or before `e`.
///
/// # Errors
/// The refusal to answer.
pub fn check_fetch(
    leader_epoch: u32,
    (request_epoch, last_fetched_epoch, fetch_offset): (i32, i32, i64),
    epoch_end: impl FnOnce(i32) -> Option<(i32, i64)>,
    (log_start, log_end): (i64, i64),
) -> Result<FetchDecision, FetchRefusal> {
    match i64::from(request_epoch).cmp(&i64::from(leader_epoch)) {
        std::cmp::Ordering::Less => return Err(FetchRefusal::FencedLeaderEpoch),
        std::cmp::Ordering::Greater => return Err(FetchRefusal::UnknownLeaderEpoch),
        std::cmp::Ordering::Equal => {}
    }
    if last_fetched_epoch >= 0 {
        match epoch_end(last_fetched_epoch) {
            Some((epoch, end)) if epoch == last_fetched_epoch && end >= fetch_offset => {}
            Some((epoch, end)) => {
                return Ok(FetchDecision::Diverging {
                    epoch,
                    end_offset: end,
                })
            }
            None => {
                return Ok(FetchDecision::Diverging {
                    epoch: -1,
                    end_offset: log_start,
                })
            }
        }
    }
    if fetch_offset > log_end || fetch_offset < log_start {
        return Err(FetchRefusal::OffsetOutOfRange);
    }
    Ok(FetchDecision::Serve)
}

/// Where a follower truncates when its leader answered [`FetchDecision::Diverging`]: no
/// further than where the leader's epoch ends, nor than where this log's largest epoch at
/// most that one ends (`own_end`, as `epoch_end` of [`check_fetch`]); never below
/// the log start.
pub fn diverged_truncation(
    (leader_epoch, leader_end): (i32, i64),
    own_end: Option<(i32, i64)>,
    log_start: i64,
) -> i64 {
    let ours = if leader_epoch >= 0 {
        own_end.map_or(log_start, |(_, end)| end)
    } else {
        log_start
    };
    leader_end.min(ours).max(log_start)
}

/// What a broker is for a replicated partition, from the metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleDecision {
    /// It leads (it is the leader and in the ISR).
    Lead,
    /// It follows this leader.
    Follow(u32),
    /// Neither (not a replica, or the partition has no leader).
    Idle,
}

/// The role of broker `me` for a partition whose metadata names `leader` (-1: none),
/// `replicas` and `isr`.
pub fn role_of(me: u32, leader: i32, replicas: &[u32], isr: &[u32]) -> RoleDecision {
    if leader == me as i32 && isr.contains(&me) {
        RoleDecision::Lead
    } else if leader >= 0 && leader != me as i32 && replicas.contains(&me) {
        RoleDecision::Follow(leader as u32)
    } else {
        RoleDecision::Idle
    }
}
