//! A group's membership as one record of `__consumer_offsets`, so that the broker taking
//! over the group's partition knows its generation, members and assignment: members keep
//! heartbeating to the new coordinator and nothing rebalances. Written when a generation
//! becomes Stable (a tombstone when the group empties); keyed by [`group_key`], so
//! compaction keeps only the latest. The format is ours (big-endian, versioned), the same
//! for native and Kafka (classic) groups.

use bytes::{BufMut, Bytes, BytesMut};
use keel_protocol::wire::{DecodeError, EncodeError, Reader, WriteExt};
use std::collections::BTreeMap;

const VERSION: i8 = 0;

/// Which coordinator a saved group belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A native group: the broker assigned (subscription: topics; assignment: partitions).
    Native,
    /// A Kafka client's group: the consumer protocol's bytes, as the members sent them.
    Classic,
}

/// One member as saved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedMember {
    /// Member id.
    pub member_id: String,
    /// Static membership.
    pub instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client address.
    pub client_host: String,
    /// Session timeout.
    pub session_timeout_ms: i64,
    /// Rebalance timeout.
    pub rebalance_timeout_ms: i64,
    /// Native: [`encode_topics`]; classic: the metadata for the chosen protocol.
    pub subscription: Bytes,
    /// Native: [`encode_assignment`]; classic: the leader's bytes for this member.
    pub assignment: Bytes,
}

/// A Stable group as saved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedGroup {
    /// Native or classic.
    pub kind: Kind,
    /// Generation.
    pub generation: i32,
    /// Protocol type (`consumer`; empty for native groups).
    pub protocol_type: String,
    /// The chosen protocol (classic) or assignor (native).
    pub protocol: String,
    /// The leader (classic).
    pub leader: Option<String>,
    /// Members.
    pub members: Vec<SavedMember>,
}

/// The key of a group's membership record: the group id and one NUL, which no offset key
/// (`group NUL topic NUL partition`) can be, since group ids hold no NUL.
pub fn group_key(group: &str) -> String {
    format!("{group}\u{0}")
}

/// The group of a membership key.
pub fn parse_group_key(key: &[u8]) -> Option<&str> {
    let group = std::str::from_utf8(key.strip_suffix(b"\0")?).ok()?;
    (!group.is_empty() && !group.contains('\u{0}')).then_some(group)
}

fn put_optional(
    out: &mut BytesMut,
    field: &'static str,
    value: Option<&str>,
) -> Result<(), EncodeError> {
    out.put_u8(u8::from(value.is_some()));
    out.put_string(field, value.unwrap_or_default())
}

fn optional(r: &mut Reader, field: &'static str) -> Result<Option<String>, DecodeError> {
    let present = r.i8(field)? != 0;
    let value = r.string(field)?;
    Ok(present.then_some(value))
}

impl SavedGroup {
    /// The record's value.
    ///
    /// # Errors
    /// A field too long for its length (ids are bounded far below by the limits).
    pub fn encode(&self) -> Result<Bytes, EncodeError> {
        let mut out = BytesMut::new();
        out.put_i8(VERSION);
        out.put_u8(match self.kind {
            Kind::Native => 0,
            Kind::Classic => 1,
        });
        out.put_i32(self.generation);
        out.put_string("protocol type", &self.protocol_type)?;
        out.put_string("protocol", &self.protocol)?;
        put_optional(&mut out, "leader", self.leader.as_deref())?;
        out.put_count("members", self.members.len())?;
        for m in &self.members {
            out.put_string("member id", &m.member_id)?;
            put_optional(&mut out, "instance id", m.instance_id.as_deref())?;
            out.put_string("client id", &m.client_id)?;
            out.put_string("client host", &m.client_host)?;
            out.put_i64(m.session_timeout_ms);
            out.put_i64(m.rebalance_timeout_ms);
            out.put_sized("subscription", &m.subscription)?;
            out.put_sized("assignment", &m.assignment)?;
        }
        Ok(out.freeze())
    }

    /// Reads a record's value.
    ///
    /// # Errors
    /// Malformed or of an unknown version.
    pub fn decode(value: Bytes) -> Result<SavedGroup, DecodeError> {
        let mut r = Reader::new(value);
        let version = r.i8("version")?;
        if version != VERSION {
            let value = version.to_string();
            return Err(DecodeError::BadValue {
                field: "version",
                value,
            });
        }
        let kind = match r.i8("kind")? {
            0 => Kind::Native,
            1 => Kind::Classic,
            other => {
                let value = other.to_string();
                return Err(DecodeError::BadValue {
                    field: "kind",
                    value,
                });
            }
        };
        let generation = r.i32("generation")?;
        let protocol_type = r.string("protocol type")?;
        let protocol = r.string("protocol")?;
        let leader = optional(&mut r, "leader")?;
        // A member is at least 2+3+2+2+8+8+4+4 bytes.
        let count = r.count("members", 33)?;
        let mut members = Vec::with_capacity(count);
        for _ in 0..count {
            members.push(SavedMember {
                member_id: r.string("member id")?,
                instance_id: optional(&mut r, "instance id")?,
                client_id: r.string("client id")?,
                client_host: r.string("client host")?,
                session_timeout_ms: r.i64("session timeout")?,
                rebalance_timeout_ms: r.i64("rebalance timeout")?,
                subscription: r.bytes("subscription")?,
                assignment: r.bytes("assignment")?,
            });
        }
        r.finish()?;
        Ok(SavedGroup {
            kind,
            generation,
            protocol_type,
            protocol,
            leader,
            members,
        })
    }
}

/// A native member's subscribed topics as saved.
///
/// # Errors
/// A topic name too long (topic names are bounded far below).
pub fn encode_topics(topics: &[String]) -> Result<Bytes, EncodeError> {
    let mut out = BytesMut::new();
    out.put_count("topics", topics.len())?;
    for topic in topics {
        out.put_string("topic", topic)?;
    }
    Ok(out.freeze())
}

/// Reads [`encode_topics`].
///
/// # Errors
/// Malformed.
pub fn decode_topics(bytes: Bytes) -> Result<Vec<String>, DecodeError> {
    let mut r = Reader::new(bytes);
    let count = r.count("topics", 2)?;
    let topics = (0..count).map(|_| r.string("topic")).collect();
    r.finish()?;
    topics
}

/// A native member's assignment (topic → partitions) as saved.
///
/// # Errors
/// A topic name too long.
pub fn encode_assignment(assignment: &BTreeMap<String, Vec<u32>>) -> Result<Bytes, EncodeError> {
    let mut out = BytesMut::new();
    out.put_count("topics", assignment.len())?;
    for (topic, partitions) in assignment {
        out.put_string("topic", topic)?;
        out.put_count("partitions", partitions.len())?;
        partitions.iter().for_each(|p| out.put_u32(*p));
    }
    Ok(out.freeze())
}

/// Reads [`encode_assignment`].
///
/// # Errors
/// Malformed.
pub fn decode_assignment(bytes: Bytes) -> Result<BTreeMap<String, Vec<u32>>, DecodeError> {
    let mut r = Reader::new(bytes);
    let count = r.count("topics", 6)?;
    let mut assignment = BTreeMap::new();
    for _ in 0..count {
        let topic = r.string("topic")?;
        let partitions = r.count("partitions", 4)?;
        let partitions = (0..partitions)
            .map(|_| r.u32("partition"))
            .collect::<Result<_, _>>()?;
        assignment.insert(topic, partitions);
    }
    r.finish()?;
    Ok(assignment)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved() -> SavedGroup {
        let mut assignment = BTreeMap::new();
        assignment.insert("t".to_owned(), vec![0, 2]);
        SavedGroup {
            kind: Kind::Native,
            generation: 7,
            protocol_type: String::new(),
            protocol: "range".into(),
            leader: None,
            members: vec![SavedMember {
                member_id: "member-1".into(),
                instance_id: Some("i".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                session_timeout_ms: 10_000,
                rebalance_timeout_ms: 30_000,
                subscription: encode_topics(&["t".to_owned()]).unwrap(),
                assignment: encode_assignment(&assignment).unwrap(),
            }],
        }
    }

    #[test]
    fn a_saved_group_reads_back_whole() {
        // Goal: what the old coordinator wrote is what the new one restores.
        let group = saved();
        let decoded = SavedGroup::decode(group.encode().unwrap()).unwrap();
        assert_eq!(decoded, group);
        let member = &decoded.members[0];
        assert_eq!(decode_topics(member.subscription.clone()).unwrap(), ["t"]);
        let assignment = decode_assignment(member.assignment.clone()).unwrap();
        assert_eq!(assignment["t"], [0, 2]);
    }

    #[test]
    fn damaged_records_are_errors_not_panics() {
        // Goal: a record from a peer's log never panics the coordinator, whatever its bytes.
        let bytes = saved().encode().unwrap();
        for len in 0..bytes.len() {
            assert!(
                SavedGroup::decode(bytes.slice(..len)).is_err(),
                "cut at {len}"
            );
        }
        for (at, value) in [(0, 1), (1, 7)] {
            let mut bad = BytesMut::from(&bytes[..]);
            bad[at] = value;
            assert!(
                SavedGroup::decode(bad.freeze()).is_err(),
                "byte {at} = {value}"
            );
        }
        let mut longer = BytesMut::from(&bytes[..]);
        longer.put_u8(0);
        assert!(SavedGroup::decode(longer.freeze()).is_err());
        assert!(decode_assignment(Bytes::from_static(&[0xff; 9])).is_err());
    }

    #[test]
    fn membership_keys_never_look_like_offset_keys() {
        // Goal: compaction keeps a group's membership and its offsets under different keys.
        assert_eq!(parse_group_key(group_key("g").as_bytes()), Some("g"));
        let offset = crate::group::offsets::offset_key("g", "t", 0);
        assert_eq!(parse_group_key(offset.as_bytes()), None);
        assert_eq!(
            crate::group::offsets::parse_offset_key(group_key("g").as_bytes()),
            None
        );
    }
}
