//! A broker's side of the controller: registration, heartbeats, its lease, and its applied
//! copy of the metadata. Sans-IO: the I/O layer sends what [`BrokerAgent::poll`] returns to
//! the controller and feeds the answers back.
//!
//! The lease is counted from when a heartbeat was *sent*, so it always ends before the
//! controller's view of it (counted from when the heartbeat arrived): a broker stops acting
//! as leader before the controller can give its partitions to anyone else.

use crate::error::{Error, Result};
use crate::image::MetadataImage;
use crate::node::{Reply, Request, Update};
use crate::records::decode_entry;

/// Settings of a broker's agent.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Node id.
    pub id: u32,
    /// Advertised address.
    pub address: String,
    /// This process's incarnation ([`crate::node::incarnation`]).
    pub incarnation: u64,
    /// Milliseconds between heartbeats.
    pub heartbeat_ms: u64,
    /// How long an acknowledged heartbeat keeps the broker a valid leader. Must not be more
    /// than the controller's `lease_ms`.
    pub lease_ms: u64,
}

/// What the broker asked and when, so the answer can be matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// When it was sent.
    pub at_ms: u64,
    /// True for a registration.
    pub register: bool,
}

/// A broker's view of the controller.
#[derive(Debug, Clone)]
pub struct BrokerAgent {
    config: BrokerConfig,
    image: MetadataImage,
    registered: bool,
    in_flight: Option<Sent>,
    last_sent_ms: Option<u64>,
    lease_until_ms: u64,
    fenced: bool,
    fatal: Option<Error>,
    /// When the controller first said another live process holds this id.
    duplicate_since_ms: Option<u64>,
    controller_term: u64,
    caught_up: bool,
}

impl BrokerAgent {
    /// A broker that has not registered yet.
    pub fn new(config: BrokerConfig) -> BrokerAgent {
        BrokerAgent {
            config,
            image: MetadataImage::default(),
            registered: false,
            in_flight: None,
            last_sent_ms: None,
            lease_until_ms: 0,
            fenced: true,
            fatal: None,
            duplicate_since_ms: None,
            controller_term: 0,
            caught_up: false,
        }
    }

    /// The applied metadata.
    pub fn image(&self) -> &MetadataImage {
        &self.image
    }
    /// The settings.
    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }
    /// True once the controller accepted the registration of this incarnation.
    pub fn registered(&self) -> bool {
        self.registered
    }
    /// True when the last metadata answer brought nothing new: the image holds everything
    /// the controller had applied then. A partial image (a restart catching up in batches)
    /// lacks topics created later, so nothing is deleted on its word.
    pub fn caught_up(&self) -> bool {
        self.caught_up
    }
    /// Why this broker must stop (a second live process has its id), if so.
    pub fn fatal(&self) -> Option<&Error> {
        self.fatal.as_ref()
    }

    /// When the lease from the last acknowledged heartbeat ends.
    pub fn lease_until_ms(&self) -> u64 {
        self.lease_until_ms
    }
    /// The controller term of the last metadata answer.
    pub fn controller_term(&self) -> u64 {
        self.controller_term
    }

    /// True while this broker may act as a leader: its lease holds, it is not fenced, and
    /// its metadata holds this incarnation's registration (a restarted broker does not act
    /// on what its previous incarnation was given, which its registration may have moved).
    pub fn lease_valid(&self, now_ms: u64) -> bool {
        self.registered
            && !self.fenced
            && now_ms < self.lease_until_ms
            && self
                .image
                .brokers()
                .get(&self.config.id)
                .is_some_and(|b| b.incarnation == self.config.incarnation && !b.fenced)
    }

    /// True while this broker may serve `partition` of `topic` as its leader at the epoch
    /// the metadata gives.
    pub fn leads(&self, topic: &str, partition: u32, now_ms: u64) -> Option<u32> {
        if !self.lease_valid(now_ms) {
            return None;
        }
        let state = self
            .image
            .topic(topic)?
            .partitions
            .get(partition as usize)?;
        (state.leader == self.config.id as i32).then_some(state.leader_epoch)
    }

    /// The request to send now, if one is due.
    pub fn poll(&mut self, now_ms: u64) -> Option<(Sent, Request)> {
        if self.fatal.is_some() {
            return None;
        }
        if let Some(sent) = self.in_flight {
            // An answer that never comes (lost, controller gone) is given up on after one
            // lease; the next request goes out then.
            if now_ms.saturating_sub(sent.at_ms) < self.config.lease_ms {
                return None;
            }
            self.in_flight = None;
        }
        if let Some(last) = self.last_sent_ms {
            if now_ms.saturating_sub(last) < self.config.heartbeat_ms {
                return None;
            }
        }
        let sent = Sent {
            at_ms: now_ms,
            register: !self.registered,
        };
        let request = if self.registered {
            Request::Heartbeat {
                id: self.config.id,
                incarnation: self.config.incarnation,
                offset: self.image.offset(),
            }
        } else {
            Request::Register {
                id: self.config.id,
                address: self.config.address.clone(),
                incarnation: self.config.incarnation,
            }
        };
        self.in_flight = Some(sent);
        self.last_sent_ms = Some(now_ms);
        Some((sent, request))
    }

    /// Forgets the request in flight (its connection broke), so the next goes out on time.
    pub fn lost(&mut self) {
        self.in_flight = None;
    }

    /// The controller's answer to what was sent at `sent`. Returns true when the metadata
    /// changed.
    ///
    /// # Errors
    /// An update that does not decode (the image is left as it was before that entry).
    pub fn answered(&mut self, sent: Sent, answer: Result<Reply>) -> Result<bool> {
        if self.in_flight == Some(sent) {
            self.in_flight = None;
        }
        match answer {
            Ok(Reply::Committed { .. }) if sent.register => {
                self.registered = true;
                self.duplicate_since_ms = None;
                // Heartbeat at once: the lease starts with the first acknowledged heartbeat.
                self.last_sent_ms = None;
                Ok(false)
            }
            Ok(Reply::Committed { .. }) => Ok(false),
            Ok(Reply::Metadata { fenced, update, .. }) => {
                if !sent.register {
                    self.fenced = fenced;
                    self.lease_until_ms =
                        self.lease_until_ms.max(sent.at_ms + self.config.lease_ms);
                }
                match update {
                    Some(update) => {
                        let moved = self.apply(update)?;
                        self.caught_up = !moved;
                        if moved {
                            // Long polling: more may follow at once; ask again now rather
                            // than a heartbeat interval after the last ask.
                            self.last_sent_ms = None;
                        }
                        Ok(moved)
                    }
                    None => {
                        self.caught_up = true;
                        Ok(false)
                    }
                }
            }
            Err(Error::StaleBroker { .. }) => {
                self.registered = false;
                self.fenced = true;
                self.last_sent_ms = None;
                Ok(false)
            }
            Err(e @ Error::DuplicateBroker { .. }) => {
                // A broker restarted without its incarnation (a lost disk) is refused until
                // its dead registration's lease ends: keep registering for two leases. Past
                // that, another live process really holds the id.
                let since = *self.duplicate_since_ms.get_or_insert(sent.at_ms);
                if sent.at_ms.saturating_sub(since) > 2 * self.config.lease_ms {
                    self.fatal = Some(e);
                }
                Ok(false)
            }
            Err(_) => Ok(false),
        }
    }

    /// Applies metadata fetched from the controller. Returns true when it moved forward.
    ///
    /// # Errors
    /// An entry or image that does not decode.
    pub fn apply(&mut self, update: Update) -> Result<bool> {
        let before = self.image.offset();
        match update {
            Update::Image(data) => {
                let image = MetadataImage::decode(&data)?;
                if image.offset() > self.image.offset() {
                    self.image = image;
                }
            }
            Update::Entries(entries) => {
                for (offset, data) in entries {
                    if offset <= self.image.offset() {
                        continue;
                    }
                    if offset != self.image.offset() + 1 {
                        break;
                    }
                    if data.is_empty() {
                        self.image.skip(offset);
                        continue;
                    }
                    let records = decode_entry(&data)?;
                    // A refused entry is refused identically here: the offset moves on.
                    let _ = self.image.apply(offset, &records);
                }
            }
        }
        Ok(self.image.offset() > before)
    }
}
