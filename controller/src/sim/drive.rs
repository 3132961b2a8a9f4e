//! One simulation step: the network delivers what is due, voters persist and send, broker
//! agents poll; and where each message goes.

use super::{InFlight, Payload, Sim, WORKLOAD};
use crate::broker::Sent;
use crate::node::Reply;

impl Sim {
    pub(super) fn connected(&self, a: u64, b: u64) -> bool {
        match &self.split {
            None => true,
            Some(side) => {
                let side_of = |n: u64| n == WORKLOAD || side.contains(&n);
                a == WORKLOAD || b == WORKLOAD || side_of(a) == side_of(b)
            }
        }
    }

    pub(super) fn send(&mut self, from: u64, to: u64, payload: Payload) {
        if self.net.chance(self.loss_per_mille) || !self.connected(from, to) {
            return;
        }
        let at_ms = self.now_ms + self.net.below(self.delay_ms_max);
        self.network.push(InFlight {
            at_ms,
            from,
            to,
            payload,
        });
    }

    pub(super) fn step(&mut self) -> Result<(), String> {
        self.now_ms += 1 + self.net.below(3);
        let now = self.now_ms;
        // Deliver what is due, in the order of arrival times (ties: send order).
        let mut due = Vec::new();
        let mut i = 0;
        while i < self.network.len() {
            if self.network[i].at_ms <= now {
                due.push(self.network.swap_remove(i));
            } else {
                i += 1;
            }
        }
        due.sort_by_key(|m| m.at_ms);
        for mut m in due {
            if !self.connected(m.from, m.to) {
                continue;
            }
            // A paused broker reads its messages when it resumes.
            if let Some(until) = self.rep.paused_until.get(&(m.to as u32)) {
                if *until > now && m.to != WORKLOAD {
                    m.at_ms = *until;
                    self.network.push(m);
                    continue;
                }
            }
            self.deliver(m);
        }
        let ids: Vec<u64> = self.voters.keys().copied().collect();
        for id in ids {
            self.drive_voter(id);
        }
        let brokers: Vec<u32> = self.brokers.keys().copied().collect();
        for id in brokers {
            if self.rep_paused(id) {
                continue;
            }
            let target = self.broker_target(id);
            let Some(agent) = self.brokers.get_mut(&id).and_then(|b| b.agent.as_mut()) else {
                continue;
            };
            if let Some((sent, request)) = agent.poll(now) {
                self.send(u64::from(id), target, Payload::Request(id, sent, request));
            }
        }
        self.rep_step();
        self.check()
    }

    pub(super) fn broker_target(&mut self, id: u32) -> u64 {
        let known = self
            .voters
            .get(&u64::from(id))
            .and_then(|v| v.controller.as_ref())
            .and_then(|c| c.leader());
        known.unwrap_or_else(|| 1 + self.net.below(self.config.voters))
    }

    fn deliver(&mut self, m: InFlight) {
        match m.payload {
            Payload::Raft(message) => {
                if let Some(c) = self
                    .voters
                    .get_mut(&m.to)
                    .and_then(|v| v.controller.as_mut())
                {
                    let _ = c.step(message);
                }
            }
            Payload::Request(broker, sent, request) => {
                let Some(c) = self
                    .voters
                    .get_mut(&m.to)
                    .and_then(|v| v.controller.as_mut())
                else {
                    return;
                };
                let token = u64::from(broker) << 48 | u64::from(sent.register) << 47 | sent.at_ms;
                if let Some(answer) = c.request(token, request) {
                    self.send(m.to, m.from, Payload::Answer(broker, sent, answer));
                }
            }
            Payload::Answer(broker, sent, answer) => {
                if let Some(agent) = self.brokers.get_mut(&broker).and_then(|b| b.agent.as_mut()) {
                    let _ = agent.answered(sent, answer);
                }
            }
            Payload::Admin(token, request) => {
                let Some(c) = self
                    .voters
                    .get_mut(&m.to)
                    .and_then(|v| v.controller.as_mut())
                else {
                    return;
                };
                if let Some(answer) = c.request(token, request) {
                    self.send(m.to, WORKLOAD, Payload::AdminAnswer(token, answer));
                }
            }
            Payload::Rep(message) => self.rep_deliver(m.from, m.to, message),
            Payload::AdminAnswer(token, answer) => {
                if let Some(request) = self.admin.remove(&token) {
                    if let Ok(Reply::Committed { offset }) = answer {
                        self.acknowledged.push((offset, request));
                        self.report.acknowledged += 1;
                    }
                }
            }
        }
    }

    fn drive_voter(&mut self, id: u64) {
        let now = self.now_ms;
        let mut outbox = Vec::new();
        let mut answers = Vec::new();
        {
            let voter = self.voters.get_mut(&id).expect("voter");
            let Some(c) = voter.controller.as_mut() else {
                return;
            };
            c.tick(now);
            loop {
                if let Some((persist, messages, at)) = voter.syncing.take() {
                    if at > now {
                        voter.syncing = Some((persist, messages, at));
                        break;
                    }
                    voter
                        .disk
                        .file
                        .extend(crate::disklog::encode_persist(&persist));
                    outbox.extend(messages);
                    outbox.extend(c.advance());
                    continue;
                }
                if !c.has_ready() {
                    break;
                }
                let ready = c.ready();
                let at = now
                    + if ready.persist.is_empty() {
                        0
                    } else {
                        1 + self.fault.below(8)
                    };
                voter.syncing = Some((ready.persist, ready.messages, at));
            }
            answers.extend(c.take_answers());
        }
        for message in outbox {
            let to = message.to;
            self.send(id, to, Payload::Raft(message));
        }
        for (token, answer) in answers {
            if token & super::replication::REP_TOKEN != 0 {
                // A replica's ISR request: the metadata tells the outcome.
                continue;
            }
            if self.admin.contains_key(&token) {
                self.send(id, WORKLOAD, Payload::AdminAnswer(token, answer));
            } else {
                let broker = (token >> 48) as u32;
                let sent = Sent {
                    at_ms: token & ((1 << 47) - 1),
                    register: token & (1 << 47) != 0,
                };
                self.send(id, u64::from(broker), Payload::Answer(broker, sent, answer));
            }
        }
    }
}
