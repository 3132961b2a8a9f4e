//! The controller listener's framing (docs/protocol.md, "Controller protocol").
//!
//! A frame is a u32 big-endian length of what follows, a kind byte, then the body. A
//! connection opens with `Hello` (the sender's node id and its voter list); the listener
//! answers `Welcome` or `Refused` with one line naming the problem (voter lists that differ,
//! a node id that is not a voter), then Raft messages, requests and answers flow. Decoding
//! is incremental: [`decode_frame`] returns `Ok(None)` until a whole frame is buffered.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use keel_protocol::wire::{DecodeError, Reader, WriteExt};

use crate::api::{Reply, Request, Update};
use crate::error::{Error, Result};

mod requests;
use requests::{decode_request, encode_request};

/// Largest frame accepted (a metadata snapshot of many topics fits).
pub const FRAME_BYTES_MAX: usize = 16 << 20;

/// One frame of the controller protocol.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// First frame of a connection.
    Hello {
        /// The sender's node id.
        node_id: u64,
        /// The voters it was configured with, as `(id, address)`.
        voters: Vec<(u64, String)>,
    },
    /// The listener accepts the connection.
    Welcome,
    /// The listener refuses the connection, saying why in one line.
    Refused(String),
    /// A Raft message (raft-rs's protobuf encoding).
    Raft(Vec<u8>),
    /// A request from a broker or tool.
    Request(u64, Request),
    /// The answer to the request with that token.
    Answer(u64, Result<Reply>),
}

const HELLO: u8 = 1;
const WELCOME: u8 = 2;
const REFUSED: u8 = 3;
const RAFT: u8 = 4;
const REQUEST: u8 = 5;
const ANSWER: u8 = 6;

/// Error codes on the wire; what the broker agent acts on keeps its fields.
const ERR_NOT_CONTROLLER: u16 = 1;
const ERR_STALE_BROKER: u16 = 2;
const ERR_DUPLICATE_BROKER: u16 = 3;
const ERR_TOPIC_EXISTS: u16 = 4;
const ERR_UNKNOWN_TOPIC: u16 = 5;
const ERR_STALE_LEADER: u16 = 6;
const ERR_OTHER: u16 = 99;

/// Appends one frame to `out`.
///
/// # Errors
/// A field too long for its length, or a frame over [`FRAME_BYTES_MAX`].
pub fn encode_frame(out: &mut BytesMut, frame: &Frame) -> Result<()> {
    let start = out.len();
    out.put_u32(0);
    match frame {
        Frame::Hello { node_id, voters } => {
            out.put_u8(HELLO);
            out.put_u64(*node_id);
            out.put_count("voters", voters.len())?;
            for (id, address) in voters {
                out.put_u64(*id);
                out.put_string("voter address", address)?;
            }
        }
        Frame::Welcome => out.put_u8(WELCOME),
        Frame::Refused(reason) => {
            out.put_u8(REFUSED);
            out.put_string("reason", reason)?;
        }
        Frame::Raft(data) => {
            out.put_u8(RAFT);
            out.put_sized("raft message", data)?;
        }
        Frame::Request(token, request) => {
            out.put_u8(REQUEST);
            out.put_u64(*token);
            encode_request(out, request)?;
        }
        Frame::Answer(token, answer) => {
            out.put_u8(ANSWER);
            out.put_u64(*token);
            encode_answer(out, answer)?;
        }
    }
    let len = out.len() - start - 4;
    if len > FRAME_BYTES_MAX {
        out.truncate(start);
        return Err(Error::Invalid {
            field: "frame",
            reason: format!("{len} bytes, over the limit of {FRAME_BYTES_MAX}"),
        });
    }
    out[start..start + 4].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(())
}

/// Takes one whole frame off the front of `buf`, or `Ok(None)` until one is there.
///
/// # Errors
/// A length over [`FRAME_BYTES_MAX`] or a malformed body: the connection should close.
pub fn decode_frame(buf: &mut BytesMut) -> Result<Option<Frame>> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len == 0 || len > FRAME_BYTES_MAX {
        return Err(DecodeError::BadLength {
            field: "frame length",
            len: len as u64,
        }
        .into());
    }
    if buf.len() < 4 + len {
        return Ok(None);
    }
    buf.advance(4);
    let body: Bytes = buf.split_to(len).freeze();
    let mut r = Reader::new(body);
    let frame = match r.i8("frame kind")? as u8 {
        HELLO => {
            let node_id = r.i64("node id")? as u64;
            let count = r.count("voters", 10)?;
            let mut voters = Vec::with_capacity(count);
            for _ in 0..count {
                voters.push((r.i64("voter id")? as u64, r.string("voter address")?));
            }
            Frame::Hello { node_id, voters }
        }
        WELCOME => Frame::Welcome,
        REFUSED => Frame::Refused(r.string("reason")?),
        RAFT => Frame::Raft(r.bytes("raft message")?.to_vec()),
        REQUEST => {
            let token = r.i64("token")? as u64;
            Frame::Request(token, decode_request(&mut r)?)
        }
        ANSWER => {
            let token = r.i64("token")? as u64;
            Frame::Answer(token, decode_answer(&mut r)?)
        }
        other => {
            return Err(DecodeError::BadValue {
                field: "frame kind",
                value: other.to_string(),
            }
            .into())
        }
    };
    r.finish()?;
    Ok(Some(frame))
}

fn encode_answer(out: &mut BytesMut, answer: &Result<Reply>) -> Result<()> {
    match answer {
        Ok(Reply::Committed { offset }) => {
            out.put_u8(1);
            out.put_u64(*offset);
        }
        Ok(Reply::Metadata {
            term,
            fenced,
            update,
        }) => {
            out.put_u8(2);
            out.put_u64(*term);
            out.put_u8(u8::from(*fenced));
            match update {
                None => out.put_u8(0),
                Some(Update::Entries(entries)) => {
                    out.put_u8(1);
                    out.put_count("entries", entries.len())?;
                    for (offset, data) in entries {
                        out.put_u64(*offset);
                        out.put_sized("entry", data)?;
                    }
                }
                Some(Update::Image(data)) => {
                    out.put_u8(2);
                    out.put_sized("image", data)?;
                }
            }
        }
        Err(e) => {
            out.put_u8(0);
            let (code, leader, id, incarnation, text) = match e {
                Error::NotController { leader } => {
                    (ERR_NOT_CONTROLLER, leader.unwrap_or(0), 0, 0, String::new())
                }
                Error::StaleBroker { id, incarnation } => {
                    (ERR_STALE_BROKER, 0, *id, *incarnation, String::new())
                }
                Error::DuplicateBroker {
                    id,
                    address,
                    incarnation,
                } => (ERR_DUPLICATE_BROKER, 0, *id, *incarnation, address.clone()),
                Error::TopicExists(name) => (ERR_TOPIC_EXISTS, 0, 0, 0, name.clone()),
                Error::UnknownTopic(name) => (ERR_UNKNOWN_TOPIC, 0, 0, 0, name.clone()),
                Error::StaleLeader { .. } => (ERR_STALE_LEADER, 0, 0, 0, e.to_string()),
                other => (ERR_OTHER, 0, 0, 0, other.to_string()),
            };
            out.put_u16(code);
            out.put_u64(leader);
            out.put_u32(id);
            out.put_u64(incarnation);
            let text: String = text.chars().take(1_000).collect();
            out.put_string("error", &text)?;
        }
    }
    Ok(())
}

fn decode_answer(r: &mut Reader) -> Result<Result<Reply>> {
    Ok(match r.i8("answer kind")? as u8 {
        1 => Ok(Reply::Committed {
            offset: r.i64("offset")? as u64,
        }),
        2 => {
            let term = r.i64("term")? as u64;
            let fenced = r.i8("fenced")? != 0;
            let update = match r.i8("update kind")? as u8 {
                0 => None,
                1 => {
                    let count = r.count("entries", 12)?;
                    let mut entries = Vec::with_capacity(count);
                    for _ in 0..count {
                        entries.push((r.i64("offset")? as u64, r.bytes("entry")?.to_vec()));
                    }
                    Some(Update::Entries(entries))
                }
                2 => Some(Update::Image(r.bytes("image")?.to_vec())),
                other => {
                    return Err(DecodeError::BadValue {
                        field: "update kind",
                        value: other.to_string(),
                    }
                    .into())
                }
            };
            Ok(Reply::Metadata {
                term,
                fenced,
                update,
            })
        }
        0 => {
            let code = r.u16("error code")?;
            let leader = r.i64("leader")? as u64;
            let id = r.u32("broker id")?;
            let incarnation = r.i64("incarnation")? as u64;
            let text = r.string("error")?;
            Err(match code {
                ERR_NOT_CONTROLLER => Error::NotController {
                    leader: (leader != 0).then_some(leader),
                },
                ERR_STALE_BROKER => Error::StaleBroker { id, incarnation },
                ERR_DUPLICATE_BROKER => Error::DuplicateBroker {
                    id,
                    address: text,
                    incarnation,
                },
                ERR_TOPIC_EXISTS => Error::TopicExists(text),
                ERR_UNKNOWN_TOPIC => Error::UnknownTopic(text),
                ERR_STALE_LEADER => Error::Remote(text),
                _ => Error::Remote(text),
            })
        }
        other => {
            return Err(DecodeError::BadValue {
                field: "answer kind",
                value: other.to_string(),
            }
            .into())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames() -> Vec<Frame> {
        vec![
            Frame::Hello {
                node_id: 2,
                voters: vec![(1, "127.0.0.1:7072".into()), (2, "127.0.0.1:7172".into())],
            },
            Frame::Welcome,
            Frame::Refused("voter lists differ".into()),
            Frame::Raft(vec![1, 2, 3]),
            Frame::Request(
                7,
                Request::CreateTopic {
                    name: "t".into(),
                    partitions: 3,
                    replication_factor: 1,
                    configs: vec![("fsync".into(), "never".into())],
                },
            ),
            Frame::Request(
                8,
                Request::Heartbeat {
                    id: 1,
                    incarnation: 2,
                    offset: 3,
                },
            ),
            Frame::Request(
                11,
                Request::AlterIsr {
                    topic: "t".into(),
                    partition: 2,
                    leader: 1,
                    leader_epoch: 4,
                    partition_epoch: 6,
                    isr: vec![1, 3],
                },
            ),
            Frame::Request(
                12,
                Request::ElectLeaders {
                    topic: "t".into(),
                    partition: Some(3),
                },
            ),
            Frame::Request(
                13,
                Request::ElectLeaders {
                    topic: "t".into(),
                    partition: None,
                },
            ),
            Frame::Request(
                14,
                Request::Reassign {
                    topic: "t".into(),
                    partition: 1,
                    replicas: vec![3, 1],
                },
            ),
            Frame::Request(15, Request::Decommission { id: 2 }),
            Frame::Request(16, Request::AllocateProducerIds { id: 2, count: 7 }),
            Frame::Request(
                18,
                Request::ReserveProducerIds {
                    id: 2,
                    below: 5_000,
                },
            ),
            Frame::Request(
                17,
                Request::LogOffline {
                    id: 2,
                    topic: "t".into(),
                    partition: 3,
                    leader_epoch: 4,
                },
            ),
            Frame::Answer(7, Ok(Reply::Committed { offset: 9 })),
            Frame::Answer(
                8,
                Ok(Reply::Metadata {
                    term: 3,
                    fenced: false,
                    update: Some(Update::Entries(vec![(4, vec![]), (5, vec![1])])),
                }),
            ),
            Frame::Answer(9, Err(Error::NotController { leader: Some(3) })),
            Frame::Answer(
                10,
                Err(Error::DuplicateBroker {
                    id: 1,
                    address: "h:1".into(),
                    incarnation: 5,
                }),
            ),
        ]
    }

    // Every frame survives encode then decode, also when bytes arrive one at a time.
    #[test]
    fn round_trip_incrementally() {
        let mut all = BytesMut::new();
        for frame in frames() {
            encode_frame(&mut all, &frame).unwrap();
        }
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for byte in all.iter() {
            buf.put_u8(*byte);
            while let Some(frame) = decode_frame(&mut buf).unwrap() {
                got.push(frame);
            }
        }
        assert_eq!(got, frames());
    }

    // Hostile lengths and kinds are errors, not allocations or panics.
    #[test]
    fn hostile_frames_are_errors() {
        let mut huge = BytesMut::from(&[0xff, 0xff, 0xff, 0xff, 1][..]);
        assert!(decode_frame(&mut huge).is_err());
        let mut zero = BytesMut::from(&[0, 0, 0, 0][..]);
        assert!(decode_frame(&mut zero).is_err());
        let mut kind = BytesMut::from(&[0, 0, 0, 1, 77][..]);
        assert!(decode_frame(&mut kind).is_err());
        let mut count = BytesMut::from(
            &[
                0, 0, 0, 13, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff,
            ][..],
        );
        assert!(decode_frame(&mut count).is_err());
    }

    proptest::proptest! {
        // Arbitrary bytes never panic the decoder.
        #[test]
        fn arbitrary_bytes(data in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let mut buf = BytesMut::from(&data[..]);
            while let Ok(Some(_)) = decode_frame(&mut buf) {}
        }
    }
}
