//! The replication checker, in the style of Jepsen's Kafka analyses. It keeps the history
//! of acknowledged appends and consumer reads and, after every step, what every replica
//! holds below its high watermark; it reports:
//! - **lost acknowledged writes**: an acknowledged value not at its offset in the log every
//!   replica ends with (or a committed offset holding another value);
//! - **divergent replicas**: an offset two replicas hold with different data below their
//!   high watermarks, or different logs once everything healed;
//! - **non-monotonic or skipped offsets** in what the consumer read;
//! - **reads past the high watermark**: a value read that the final log does not hold at
//!   that offset (it was read before it was committed, and then lost).

use std::collections::BTreeMap;

use super::replication::{Role, TOPIC};
use super::Sim;

/// What the workload saw, and what the checker learnt.
#[derive(Debug, Default)]
pub(super) struct History {
    /// Acknowledged value → its offset.
    acked: BTreeMap<u64, i64>,
    /// Offset → value, as held below some replica's high watermark.
    committed: BTreeMap<i64, u64>,
    /// (offset, value) as the consumer read them.
    reads: Vec<(i64, u64)>,
    /// The consumer's next offset.
    pub(super) position: i64,
    /// Per broker, offsets below its high watermark already compared.
    pub(super) checked: BTreeMap<u32, usize>,
    pub(super) failures: Vec<String>,
}

impl History {
    pub(super) fn acknowledged(&mut self, value: u64, offset: i64) {
        if let Some(other) = self.acked.insert(value, offset) {
            if other != offset {
                self.failures.push(format!(
                    "value {value} acknowledged at offsets {other} and {offset}"
                ));
            }
        }
        if let Some(held) = self.committed.get(&offset) {
            if *held != value {
                self.failures.push(format!(
                    "lost acknowledged write: {value} at offset {offset}, committed there is {held}"
                ));
            }
        }
    }

    pub(super) fn read(&mut self, offset: i64, entries: &[(i64, u64)]) {
        if offset != self.position {
            // An answer to a read given up on and asked again: the consumer is elsewhere.
            return;
        }
        for (i, (o, value)) in entries.iter().enumerate() {
            if *o != offset + i as i64 {
                self.failures.push(format!(
                    "consumer at {} was given offset {o}: skipped or out of order",
                    offset + i as i64
                ));
                return;
            }
            if let Some(held) = self.committed.get(o) {
                if held != value {
                    self.failures.push(format!(
                        "consumer read {value} at {o}, committed there is {held}"
                    ));
                }
            }
            self.reads.push((*o, *value));
        }
        self.position += entries.len() as i64;
    }

    pub(super) fn reads(&self) -> usize {
        self.reads.len()
    }

    pub(super) fn acknowledged_count(&self) -> usize {
        self.acked.len()
    }
}

impl Sim {
    /// After every step: what each replica holds below its high watermark agrees with
    /// every other copy ever seen there.
    pub(super) fn rep_check(&mut self, failures: &mut Vec<String>) {
        if !self.rep_enabled() {
            return;
        }
        let history = &mut self.rep.history;
        for (id, replica) in &self.rep.replicas {
            let hw = (replica.high_watermark().max(0) as usize).min(replica.log.len());
            let from = history.checked.get(id).copied().unwrap_or(0).min(hw);
            for offset in from..hw {
                let value = replica.log[offset].1;
                let offset = offset as i64;
                match history.committed.get(&offset) {
                    Some(held) if *held != value => failures.push(format!(
                        "broker {id} holds {value} at offset {offset} below its high watermark; another replica held {held}"
                    )),
                    Some(_) => {}
                    None => {
                        history.committed.insert(offset, value);
                    }
                }
            }
            history.checked.insert(*id, hw);
        }
        let found = !history.failures.is_empty() || !failures.is_empty();
        failures.append(&mut history.failures);
        if found {
            if let Some(first) = failures.first_mut() {
                first.push_str(&self.rep_debug());
            }
        }
    }

    /// A crash forgets what was compared for that broker (its log may be shorter now).
    pub(super) fn rep_forget_checked(&mut self, id: u32) {
        self.rep.history.checked.remove(&id);
    }

    /// Once healed and converged: the final log holds every acknowledged value at its
    /// offset and every value the consumer read.
    pub(super) fn rep_final_check(&self) -> Result<(), String> {
        if !self.rep_enabled() {
            return Ok(());
        }
        let Some(final_log) = self
            .rep
            .replicas
            .values()
            .find(|r| r.leads())
            .map(|r| &r.log)
        else {
            return Err(self.fail("no replica leads after healing".into()));
        };
        let history = &self.rep.history;
        for (value, offset) in &history.acked {
            let held = final_log.get(*offset as usize).map(|(_, v)| *v);
            if held != Some(*value) {
                return Err(self.fail(format!(
                    "lost acknowledged write: {value} at offset {offset}, the final log holds {held:?}{}",
                    self.rep_debug()
                )));
            }
        }
        for (offset, value) in &history.reads {
            let held = final_log.get(*offset as usize).map(|(_, v)| *v);
            if held != Some(*value) {
                return Err(self.fail(format!(
                    "read past the high watermark: the consumer read {value} at {offset}, the final log holds {held:?}"
                )));
            }
        }
        for (offset, value) in &history.committed {
            if final_log.get(*offset as usize).map(|(_, v)| *v) != Some(*value) {
                return Err(self.fail(format!(
                    "committed offset {offset} ({value}) is not in the final log"
                )));
            }
        }
        Ok(())
    }

    /// The replicas' state, for failure reports.
    pub(super) fn rep_debug(&self) -> String {
        if !self.rep_enabled() {
            return String::new();
        }
        let state = self.rep_state(1);
        let replicas: Vec<String> = self
            .rep
            .replicas
            .iter()
            .map(|(id, r)| {
                let role = match &r.role {
                    Role::Leader(l) => format!("leads at {} isr {:?}", l.epoch, l.isr),
                    Role::Follower { leader, epoch } => format!("follows {leader} at {epoch}"),
                    Role::Idle => "idle".into(),
                };
                format!(
                    "{id}: {role}, log {} durable {} hw {:?} last {:?}",
                    r.log.len(),
                    r.durable,
                    r.cap,
                    r.log.last()
                )
            })
            .collect();
        let topic_id = self.reference.topic(TOPIC).map(|t| t.id);
        let changes: Vec<String> = self
            .committed
            .iter()
            .filter_map(|(index, (_, data))| {
                let records = crate::records::decode_entry(data).ok()?;
                let shown: Vec<String> = records
                    .iter()
                    .filter(|r| match r {
                        crate::records::Record::PartitionChange { topic_id: t, .. } => {
                            Some(*t) == topic_id
                        }
                        crate::records::Record::FenceBroker { .. }
                        | crate::records::Record::UnfenceBroker { .. }
                        | crate::records::Record::RegisterBroker { .. } => true,
                        _ => false,
                    })
                    .map(|r| format!("{r:?}"))
                    .collect();
                (!shown.is_empty()).then(|| format!("{index}: {}", shown.join(", ")))
            })
            .collect();
        let events: Vec<&String> = self.rep.events.iter().chain(changes.iter()).collect();
        format!("; partition {state:?}; replicas {replicas:?}; events {events:#?}")
    }
}
