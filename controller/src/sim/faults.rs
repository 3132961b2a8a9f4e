//! The simulation's fault schedule (crashes, restarts, splits) and workload.

use std::collections::BTreeSet;

use super::{Payload, Sim, WORKLOAD};
use crate::node::Request;

impl Sim {
    pub(super) fn inject_faults(&mut self) {
        // Crash a node (its voter and its broker), losing what was not synced.
        if self.fault.chance(3) {
            // Prefer a voter with a write not yet synced: that is where lost writes bite.
            let syncing: Vec<u64> = self
                .voters
                .iter()
                .filter(|(_, v)| v.syncing.is_some())
                .map(|(id, _)| *id)
                .collect();
            let id = match syncing.len() {
                0 => 1 + self.fault.below(self.config.voters),
                n => syncing[self.fault.below(n as u64) as usize],
            };
            if !self.down_until.contains_key(&id) {
                self.crash(id);
                let back = self.now_ms + 50 + self.fault.below(1_500);
                self.down_until.insert(id, back);
            }
        }
        let due: Vec<u64> = self
            .down_until
            .iter()
            .filter(|(_, at)| **at <= self.now_ms)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.restart(id);
        }
        // A broker-only process restarts now and then.
        if self.fault.chance(1) {
            let id = self.config.voters as u32
                + 1
                + self.fault.below(u64::from(self.config.brokers_only)) as u32;
            if self.brokers.contains_key(&id) {
                self.rep_crash(id);
                self.rep_forget_checked(id);
                self.start_broker(id);
            }
        }
        // Network splits: one side holds a random subset; heal later.
        if self.split.is_none() && self.fault.chance(2) {
            let nodes = self.config.voters + u64::from(self.config.brokers_only);
            let side: BTreeSet<u64> = (1..=nodes).filter(|_| self.fault.chance(500)).collect();
            self.split = Some(side);
            self.report.splits += 1;
        } else if self.split.is_some() && self.fault.chance(4) {
            self.split = None;
        }
    }

    fn crash(&mut self, id: u64) {
        self.report.crashes += 1;
        let keep = self.fault.next_u64();
        let voter = self.voters.get_mut(&id).expect("voter");
        if let Some((persist, _, _)) = voter.syncing.take() {
            let bytes = crate::disklog::encode_persist(&persist);
            let kept = keep as usize % (bytes.len() + 1);
            voter.disk.file.extend_from_slice(&bytes[..kept]);
        }
        voter.controller = None;
        if let Some(b) = self.brokers.get_mut(&(id as u32)) {
            b.agent = None;
        }
        self.rep_crash(id as u32);
        self.rep_forget_checked(id as u32);
        self.network.retain(|m| m.to != id && m.from != id);
    }

    pub(super) fn restart(&mut self, id: u64) {
        self.down_until.remove(&id);
        self.start_voter(id);
        self.start_broker(id as u32);
    }

    pub(super) fn workload(&mut self) {
        if !self.work.chance(30) {
            return;
        }
        let name = format!("t{}", self.work.below(6));
        let request = match self.work.below(5) {
            0 | 1 => Request::CreateTopic {
                name,
                partitions: 1 + self.work.below(4) as u32,
                replication_factor: 1,
                configs: vec![("fsync".into(), "always".into())],
            },
            2 => Request::DeleteTopic { name },
            3 => Request::AllocateProducerIds {
                id: 1 + self.work.below(self.config.voters) as u32,
                count: 1 + self.work.below(1_000) as u32,
            },
            _ => Request::SetConfigs {
                name,
                configs: vec![("retention.ms".into(), self.work.below(100).to_string())],
            },
        };
        let token = self.next_token;
        self.next_token += 1;
        let to = 1 + self.work.below(self.config.voters);
        self.admin.insert(token, request.clone());
        self.send(WORKLOAD, to, Payload::Admin(token, request));
    }
}
