//! The consumer's group membership: joining and syncing, the heartbeat task, committed
//! offsets (fetch, commit sync and async) and leaving on close.

use super::*;
use std::sync::atomic::Ordering::SeqCst;

/// How often a consumer whose coordinator moved asks where it is now.
const FOLLOW_EVERY: Duration = Duration::from_millis(250);

impl Consumer {
    pub(super) async fn ensure_group(&mut self) -> Result<()> {
        let Some(membership) = &mut self.membership else {
            return Ok(());
        };
        *membership.last_poll.lock().expect("last poll lock") = std::time::Instant::now();
        let member = membership.joined && !membership.rejoin.load(SeqCst);
        if member && (!membership.moved.load(SeqCst) || self.follow_coordinator().await) {
            return Ok(());
        }
        // Revoke what we had: commit first when committing automatically.
        let revoked = self.assignment();
        if !revoked.is_empty() {
            if self.config.auto_commit.is_some() {
                if let Err(e) = self.commit_sync().await {
                    tracing::warn!(error = %e, "commit before rebalance failed");
                }
            }
            if let Some(listener) = &self.config.listener {
                listener.on_revoked(&revoked);
            }
        }
        self.assign(Vec::new());
        let membership = self.membership.as_mut().expect("checked above");
        if let Some(heartbeat) = membership.heartbeat.take() {
            heartbeat.abort();
        }
        membership.rejoin.store(false, SeqCst);
        membership.moved.store(false, SeqCst);
        // Not joined until this completes: an error below leaves the next poll to try again
        // (finding the coordinator afresh: in a cluster it may have moved).
        membership.joined = false;
        let group = membership.group.clone();
        self.connection = self.router.coordinator(&group).await?;
        let membership = self.membership.as_mut().expect("checked above");
        let assignment = loop {
            let join = Request::JoinGroup(keel_protocol::api::JoinGroup {
                group: membership.group.clone(),
                member_id: membership.member_id.clone(),
                session_timeout_ms: self.config.session_timeout.as_millis() as u32,
                rebalance_timeout_ms: self.config.rebalance_timeout.as_millis() as u32,
                assignor: self.config.assignor.clone(),
                topics: membership.topics.clone(),
            });
            let Response::JoinGroup {
                error,
                generation,
                member_id,
                ..
            } = self
                .connection
                .call_timeout(
                    &join,
                    self.config
                        .rebalance_timeout
                        .saturating_add(REQUEST_TIMEOUT),
                )
                .await?
            else {
                return Err(Error::Protocol("join-group response expected".into()));
            };
            match error {
                ErrorCode::None => {}
                ErrorCode::UnknownMemberId => {
                    membership.member_id.clear();
                    continue;
                }
                ErrorCode::RebalanceInProgress => continue,
                code => {
                    return Err(Error::broker(
                        code,
                        format!("joining group {}", membership.group),
                    ))
                }
            }
            membership.member_id = member_id;
            membership.generation = generation;
            let sync = Request::SyncGroup {
                group: membership.group.clone(),
                generation,
                member_id: membership.member_id.clone(),
            };
            let Response::SyncGroup { error, assignment } = self.connection.call(&sync).await?
            else {
                return Err(Error::Protocol("sync-group response expected".into()));
            };
            match error {
                ErrorCode::None => break assignment,
                ErrorCode::UnknownMemberId => membership.member_id.clear(),
                ErrorCode::RebalanceInProgress | ErrorCode::IllegalGeneration => {}
                code => {
                    return Err(Error::broker(
                        code,
                        format!("syncing group {}", membership.group),
                    ))
                }
            }
        };
        membership.joined = true;
        let partitions: Vec<TopicPartition> = assignment
            .iter()
            .flat_map(|entry| entry.partitions.iter().map(|p| (entry.topic.clone(), *p)))
            .collect();
        self.start_heartbeat();
        // Positions start at the committed offsets; the reset policy covers the rest.
        let committed = match self.fetch_committed(&partitions).await {
            Ok(committed) => committed,
            Err(e) => {
                // Without the committed offsets there are no positions: join again.
                self.need_rejoin();
                return Err(e);
            }
        };
        self.assign(partitions.clone());
        for (tp, offset) in committed {
            if offset >= 0 {
                self.positions.insert(tp, Some(offset));
            }
        }
        if let Some(listener) = &self.config.listener {
            listener.on_assigned(&partitions);
        }
        Ok(())
    }

    /// Heartbeats in the background: a rebalance or a stalled poll loop sets `rejoin`, a
    /// coordinator gone or moved sets `moved`.
    fn start_heartbeat(&mut self) {
        let Some(membership) = self.membership.as_mut() else {
            return;
        };
        if let Some(heartbeat) = membership.heartbeat.take() {
            heartbeat.abort();
        }
        let (connection, rejoin, moved, last_poll) = (
            self.connection.clone(),
            membership.rejoin.clone(),
            membership.moved.clone(),
            membership.last_poll.clone(),
        );
        let (group, member_id, generation) = (
            membership.group.clone(),
            membership.member_id.clone(),
            membership.generation,
        );
        let every = self.config.session_timeout / 3;
        let max_poll_interval = self.config.max_poll_interval;
        membership.heartbeat = Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let stalled =
                    last_poll.lock().expect("last poll lock").elapsed() > max_poll_interval;
                if stalled {
                    tracing::warn!(%group, %member_id, "poll not called within max_poll_interval: leaving the group");
                    let leave = Request::LeaveGroup {
                        group: group.clone(),
                        member_id: member_id.clone(),
                    };
                    let _ = connection.call(&leave).await;
                    rejoin.store(true, SeqCst);
                    return;
                }
                let beat = Request::Heartbeat {
                    group: group.clone(),
                    generation,
                    member_id: member_id.clone(),
                };
                let timeout = every.max(Duration::from_millis(100));
                match connection.call_timeout(&beat, timeout).await {
                    Ok(Response::Heartbeat {
                        error: ErrorCode::None,
                    }) => {}
                    Ok(Response::Heartbeat { error }) if coordinator_moved(error) => {
                        moved.store(true, SeqCst);
                        return;
                    }
                    Ok(_) => {
                        rejoin.store(true, SeqCst);
                        return;
                    }
                    Err(e) if connection.is_broken() => {
                        tracing::debug!(error = %e, "heartbeat connection lost; finding the coordinator");
                        moved.store(true, SeqCst);
                        return;
                    }
                    Err(e) => tracing::debug!(error = %e, "heartbeat failed"),
                }
            }
        }));
    }

    /// The coordinator moved: finds the new one and heartbeats there in the current
    /// generation. Returns whether the consumer carries on with its assignment (the new
    /// coordinator knows it, or cannot answer yet: asked again on a later poll); `false`
    /// when the member must rejoin.
    async fn follow_coordinator(&mut self) -> bool {
        let Some(membership) = self.membership.as_mut() else {
            return true;
        };
        if membership
            .last_follow
            .is_some_and(|at| at.elapsed() < FOLLOW_EVERY)
        {
            return true;
        }
        membership.last_follow = Some(std::time::Instant::now());
        let beat = Request::Heartbeat {
            group: membership.group.clone(),
            generation: membership.generation,
            member_id: membership.member_id.clone(),
        };
        let Ok(connection) = self.router.coordinator(&membership.group).await else {
            return true;
        };
        match connection.call_timeout(&beat, REQUEST_TIMEOUT).await {
            Ok(Response::Heartbeat {
                error: ErrorCode::None,
            }) => {
                tracing::debug!(group = %membership.group, "carrying on at the new coordinator");
                membership.moved.store(false, SeqCst);
                self.connection = connection;
                self.start_heartbeat();
                true
            }
            Ok(Response::Heartbeat { error }) => coordinator_moved(error),
            Ok(_) => false,
            Err(_) => true,
        }
    }

    async fn fetch_committed(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<Vec<(TopicPartition, i64)>> {
        let Some(membership) = &self.membership else {
            return Ok(Vec::new());
        };
        let mut by_topic: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        for (topic, partition) in partitions {
            by_topic.entry(topic.clone()).or_default().push(*partition);
        }
        if by_topic.is_empty() {
            return Ok(Vec::new());
        }
        let request = Request::OffsetFetch {
            group: membership.group.clone(),
            topics: by_topic
                .into_iter()
                .map(|(topic, partitions)| TopicEntries { topic, partitions })
                .collect(),
        };
        let Response::OffsetFetch { error, topics } = self.connection.call(&request).await? else {
            return Err(Error::Protocol("offset-fetch response expected".into()));
        };
        if error != ErrorCode::None {
            return Err(Error::broker(error, "fetching committed offsets"));
        }
        Ok(topics
            .into_iter()
            .flat_map(|t| {
                t.partitions
                    .into_iter()
                    .map(move |(p, o)| ((t.topic.clone(), p), o))
            })
            .collect())
    }

    /// The group's committed offset for `partition` (`None` when nothing is committed).
    ///
    /// # Errors
    /// Connection and broker errors.
    pub async fn committed(&self, partition: &TopicPartition) -> Result<Option<i64>> {
        let found = self
            .fetch_committed(std::slice::from_ref(partition))
            .await?;
        Ok(found
            .into_iter()
            .find(|(tp, _)| tp == partition)
            .map(|(_, o)| o)
            .filter(|o| *o >= 0))
    }

    fn commit_request(&self) -> Option<Request> {
        let membership = self.membership.as_ref()?;
        let mut by_topic: BTreeMap<String, Vec<(u32, i64)>> = BTreeMap::new();
        for ((topic, partition), position) in &self.positions {
            if let Some(offset) = position {
                by_topic
                    .entry(topic.clone())
                    .or_default()
                    .push((*partition, *offset));
            }
        }
        Some(Request::OffsetCommit {
            group: membership.group.clone(),
            generation: membership.generation,
            member_id: membership.member_id.clone(),
            topics: by_topic
                .into_iter()
                .map(|(topic, partitions)| TopicEntries { topic, partitions })
                .collect(),
        })
    }

    /// Commits the current positions of every assigned partition and waits for the broker.
    ///
    /// # Errors
    /// Broker errors (`RebalanceInProgress`, `IllegalGeneration`: the partitions moved on).
    pub async fn commit_sync(&mut self) -> Result<()> {
        let Some(request) = self.commit_request() else {
            return Err(Error::InvalidRecord("commit needs a group".into()));
        };
        let answer = self.connection.call(&request).await;
        let answer = match answer {
            Err(e) if e.is_retriable() => {
                // The coordinator is gone or moved: find it again on the next poll. (The
                // positions stay; what this commit covered may be read again.)
                self.coordinator_gone();
                return Err(e);
            }
            answer => answer?,
        };
        let Response::OffsetCommit { topics } = answer else {
            return Err(Error::Protocol("offset-commit response expected".into()));
        };
        if let Some(membership) = &mut self.membership {
            membership.last_commit = std::time::Instant::now();
        }
        for topic in topics {
            for (partition, error) in topic.partitions {
                if error != ErrorCode::None {
                    if coordinator_moved(error) {
                        self.coordinator_gone();
                    } else if matches!(
                        error,
                        ErrorCode::RebalanceInProgress
                            | ErrorCode::IllegalGeneration
                            | ErrorCode::UnknownMemberId
                    ) {
                        self.need_rejoin();
                    }
                    return Err(Error::broker(
                        error,
                        format!("committing {}-{partition}", topic.topic),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Makes the next poll rejoin the group (finding its coordinator again).
    fn need_rejoin(&self) {
        if let Some(membership) = &self.membership {
            membership.rejoin.store(true, SeqCst);
        }
    }

    /// Makes the next poll find the coordinator again and carry on there.
    fn coordinator_gone(&self) {
        if let Some(membership) = &self.membership {
            membership.moved.store(true, SeqCst);
        }
    }

    /// Commits the current positions without waiting; failures are logged.
    pub fn commit_async(&mut self) {
        let Some(request) = self.commit_request() else {
            return;
        };
        if let Some(membership) = &mut self.membership {
            membership.last_commit = std::time::Instant::now();
        }
        let connection = self.connection.clone();
        tokio::spawn(async move {
            match connection.call(&request).await {
                Ok(Response::OffsetCommit { topics }) => {
                    if let Some((topic, (partition, error))) = topics
                        .iter()
                        .flat_map(|t| t.partitions.iter().map(move |p| (&t.topic, *p)))
                        .find(|(_, (_, e))| *e != ErrorCode::None)
                    {
                        tracing::warn!(%topic, partition, ?error, "asynchronous commit failed");
                    }
                }
                Ok(_) => tracing::warn!("asynchronous commit: unexpected response"),
                Err(e) => tracing::warn!(error = %e, "asynchronous commit failed"),
            }
        });
    }

    /// Commits (when auto-committing), leaves the group and stops heartbeating.
    ///
    /// # Errors
    /// Connection errors while leaving.
    pub async fn close(mut self) -> Result<()> {
        if self.membership.as_ref().is_some_and(|m| m.joined) {
            if self.config.auto_commit.is_some() {
                let _ = self.commit_sync().await;
            }
            let membership = self.membership.as_mut().expect("checked");
            if let Some(heartbeat) = membership.heartbeat.take() {
                heartbeat.abort();
            }
            let leave = Request::LeaveGroup {
                group: membership.group.clone(),
                member_id: membership.member_id.clone(),
            };
            self.connection.call(&leave).await?;
        }
        Ok(())
    }
}

/// Whether a group error means the coordinator is elsewhere or not ready yet (not that the
/// member must rejoin).
fn coordinator_moved(error: ErrorCode) -> bool {
    matches!(
        error,
        ErrorCode::NotCoordinator
            | ErrorCode::CoordinatorLoadInProgress
            | ErrorCode::CoordinatorNotAvailable
    )
}
