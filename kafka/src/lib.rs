//! Keel's Kafka wire protocol pieces, without I/O: framing and request headers
//! ([`frame`]), request bodies decoded over the raw bytes ([`requests`]), the APIs and
//! versions served ([`versions`]), error codes ([`errors`]), the hand-encoded Fetch
//! response ([`fetch`]) and the consumer protocol's embedded formats ([`consumer`]); and
//! the other side, for reading another cluster as a mirror does ([`source`]).
//! Responses other than Fetch are kafka-protocol's types, re-exported as
//! [`kafka_protocol`].

pub mod consumer;
pub mod errors;
pub mod fetch;
pub mod frame;
pub mod read;
pub mod requests;
pub mod source;
pub mod source_configs;
pub mod source_groups;
pub mod versions;

pub use kafka_protocol;
pub use uuid;
