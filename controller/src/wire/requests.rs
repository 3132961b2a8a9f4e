//! The request kinds of the controller framing (`Frame::Request`): their tags and codec.

use bytes::{BufMut, BytesMut};
use keel_protocol::wire::{DecodeError, Reader, WriteExt};

use crate::api::Request;
use crate::error::Result;

const REQ_REGISTER: u8 = 1;
const REQ_HEARTBEAT: u8 = 2;
const REQ_FETCH: u8 = 3;
const REQ_CREATE: u8 = 4;
const REQ_DELETE: u8 = 5;
const REQ_CONFIGS: u8 = 6;
const REQ_ALTER_ISR: u8 = 7;
const REQ_ELECT_LEADERS: u8 = 8;
const REQ_REASSIGN: u8 = 9;
const REQ_DECOMMISSION: u8 = 10;
const REQ_PRODUCER_IDS: u8 = 11;
const REQ_LOG_OFFLINE: u8 = 12;
const REQ_SECURITY: u8 = 13;
const REQ_RESERVE_PRODUCER_IDS: u8 = 14;
const REQ_RAISE_LEADER_EPOCH: u8 = 15;
const REQ_ADD_PARTITIONS: u8 = 16;

pub(super) fn encode_request(out: &mut BytesMut, request: &Request) -> Result<()> {
    match request {
        Request::Register {
            id,
            address,
            incarnation,
        } => {
            out.put_u8(REQ_REGISTER);
            out.put_u32(*id);
            out.put_string("address", address)?;
            out.put_u64(*incarnation);
        }
        Request::Heartbeat {
            id,
            incarnation,
            offset,
        } => {
            out.put_u8(REQ_HEARTBEAT);
            out.put_u32(*id);
            out.put_u64(*incarnation);
            out.put_u64(*offset);
        }
        Request::Fetch { offset } => {
            out.put_u8(REQ_FETCH);
            out.put_u64(*offset);
        }
        Request::CreateTopic {
            name,
            partitions,
            replication_factor,
            configs,
        } => {
            out.put_u8(REQ_CREATE);
            out.put_string("topic", name)?;
            out.put_u32(*partitions);
            out.put_u32(*replication_factor);
            crate::records::encode_configs(out, configs)?;
        }
        Request::DeleteTopic { name } => {
            out.put_u8(REQ_DELETE);
            out.put_string("topic", name)?;
        }
        Request::AddPartitions { name, count } => {
            out.put_u8(REQ_ADD_PARTITIONS);
            out.put_string("topic", name)?;
            out.put_u32(*count);
        }
        Request::SetConfigs { name, configs } => {
            out.put_u8(REQ_CONFIGS);
            out.put_string("topic", name)?;
            crate::records::encode_configs(out, configs)?;
        }
        Request::AlterIsr {
            topic,
            partition,
            leader,
            leader_epoch,
            partition_epoch,
            isr,
        } => {
            out.put_u8(REQ_ALTER_ISR);
            out.put_string("topic", topic)?;
            out.put_u32(*partition);
            out.put_u32(*leader);
            out.put_u32(*leader_epoch);
            out.put_u32(*partition_epoch);
            out.put_count("isr", isr.len())?;
            for id in isr {
                out.put_u32(*id);
            }
        }
        Request::SetSecurity { entries } => {
            out.put_u8(REQ_SECURITY);
            crate::records::encode_security(out, entries)?;
        }
        Request::RaiseLeaderEpoch {
            id,
            topic,
            partition,
            above,
        } => {
            out.put_u8(REQ_RAISE_LEADER_EPOCH);
            out.put_u32(*id);
            out.put_string("topic", topic)?;
            out.put_u32(*partition);
            out.put_u32(*above);
        }
        Request::ElectLeaders { topic, partition } => {
            out.put_u8(REQ_ELECT_LEADERS);
            out.put_string("topic", topic)?;
            out.put_i64(partition.map_or(-1, i64::from));
        }
        Request::Reassign {
            topic,
            partition,
            replicas,
        } => {
            out.put_u8(REQ_REASSIGN);
            out.put_string("topic", topic)?;
            out.put_u32(*partition);
            out.put_count("replicas", replicas.len())?;
            for id in replicas {
                out.put_u32(*id);
            }
        }
        Request::Decommission { id } => {
            out.put_u8(REQ_DECOMMISSION);
            out.put_u32(*id);
        }
        Request::AllocateProducerIds { id, count } => {
            out.put_u8(REQ_PRODUCER_IDS);
            out.put_u32(*id);
            out.put_u32(*count);
        }
        Request::ReserveProducerIds { id, below } => {
            out.put_u8(REQ_RESERVE_PRODUCER_IDS);
            out.put_u32(*id);
            out.put_u64(*below);
        }
        Request::LogOffline {
            id,
            topic,
            partition,
            leader_epoch,
        } => {
            out.put_u8(REQ_LOG_OFFLINE);
            out.put_u32(*id);
            out.put_string("topic", topic)?;
            out.put_u32(*partition);
            out.put_u32(*leader_epoch);
        }
    }
    Ok(())
}

pub(super) fn decode_request(r: &mut Reader) -> Result<Request> {
    Ok(match r.i8("request kind")? as u8 {
        REQ_REGISTER => Request::Register {
            id: r.u32("broker id")?,
            address: r.string("address")?,
            incarnation: r.i64("incarnation")? as u64,
        },
        REQ_HEARTBEAT => Request::Heartbeat {
            id: r.u32("broker id")?,
            incarnation: r.i64("incarnation")? as u64,
            offset: r.i64("offset")? as u64,
        },
        REQ_FETCH => Request::Fetch {
            offset: r.i64("offset")? as u64,
        },
        REQ_CREATE => Request::CreateTopic {
            name: r.string("topic")?,
            partitions: r.u32("partitions")?,
            replication_factor: r.u32("replication factor")?,
            configs: crate::records::decode_configs(r)?,
        },
        REQ_DELETE => Request::DeleteTopic {
            name: r.string("topic")?,
        },
        REQ_ADD_PARTITIONS => Request::AddPartitions {
            name: r.string("topic")?,
            count: r.u32("partition count")?,
        },
        REQ_CONFIGS => Request::SetConfigs {
            name: r.string("topic")?,
            configs: crate::records::decode_configs(r)?,
        },
        REQ_ALTER_ISR => {
            let topic = r.string("topic")?;
            let partition = r.u32("partition")?;
            let leader = r.u32("leader")?;
            let leader_epoch = r.u32("leader epoch")?;
            let partition_epoch = r.u32("partition epoch")?;
            let count = r.count("isr", 4)?;
            let mut isr = Vec::with_capacity(count);
            for _ in 0..count {
                isr.push(r.u32("isr")?);
            }
            Request::AlterIsr {
                topic,
                partition,
                leader,
                leader_epoch,
                partition_epoch,
                isr,
            }
        }
        REQ_REASSIGN => {
            let topic = r.string("topic")?;
            let partition = r.u32("partition")?;
            let count = r.count("replicas", 4)?;
            let mut replicas = Vec::with_capacity(count);
            for _ in 0..count {
                replicas.push(r.u32("replicas")?);
            }
            Request::Reassign {
                topic,
                partition,
                replicas,
            }
        }
        REQ_DECOMMISSION => Request::Decommission {
            id: r.u32("broker id")?,
        },
        REQ_PRODUCER_IDS => Request::AllocateProducerIds {
            id: r.u32("broker id")?,
            count: r.u32("producer id count")?,
        },
        REQ_RESERVE_PRODUCER_IDS => Request::ReserveProducerIds {
            id: r.u32("broker id")?,
            below: r.i64("producer id")? as u64,
        },
        REQ_LOG_OFFLINE => Request::LogOffline {
            id: r.u32("broker id")?,
            topic: r.string("topic")?,
            partition: r.u32("partition")?,
            leader_epoch: r.u32("leader epoch")?,
        },
        REQ_SECURITY => Request::SetSecurity {
            entries: crate::records::decode_security(r)?,
        },
        REQ_RAISE_LEADER_EPOCH => Request::RaiseLeaderEpoch {
            id: r.u32("broker id")?,
            topic: r.string("topic")?,
            partition: r.u32("partition")?,
            above: r.u32("leader epoch")?,
        },
        REQ_ELECT_LEADERS => {
            let topic = r.string("topic")?;
            let partition = r.i64("partition")?;
            Request::ElectLeaders {
                topic,
                partition: match partition {
                    -1 => None,
                    p => Some(u32::try_from(p).map_err(|_| DecodeError::BadValue {
                        field: "partition",
                        value: p.to_string(),
                    })?),
                },
            }
        }
        other => {
            return Err(DecodeError::BadValue {
                field: "request kind",
                value: other.to_string(),
            }
            .into())
        }
    })
}
