//! keel-client: the native Rust client for Keel (tokio).
//!
//! ```no_run
//! use keel_client::{Producer, ProducerRecord};
//!
//! # async fn example() -> keel_client::Result<()> {
//! let producer = Producer::builder("127.0.0.1:7070").build().await?;
//! // Synchronous style: wait for the offset.
//! let stored = producer.send(ProducerRecord::new("orders", "order 1").key("customer-7")).await?;
//! println!("stored at {}-{} offset {}", stored.topic, stored.partition, stored.offset);
//! // Asynchronous style: many in flight, awaited later.
//! let mut deliveries = Vec::new();
//! for i in 0..100 {
//!     deliveries.push(producer.enqueue(ProducerRecord::new("orders", format!("order {i}"))).await?);
//! }
//! for delivery in deliveries {
//!     delivery.await?;
//! }
//! producer.close().await;
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

pub mod admin;
pub mod connection;
pub mod consumer;
pub mod error;
pub mod partitioner;
pub mod producer;
mod router;
mod sasl;
pub mod security;

pub use admin::{Admin, ClusterDescription, GroupPartitionOffset, ResetTo, TopicDescription};
pub use consumer::{
    Consumer, ConsumerBuilder, ConsumerRecord, OffsetReset, RebalanceListener, RecordStream,
    TopicPartition,
};
pub use error::{Error, Result};
pub use keel_auth::Mechanism;
pub use keel_protocol::api::{
    Acl, AclFilter, GroupDescription, MemberDescription, QuotaEntry, QuotaName, UserDescription,
};
pub use keel_protocol::batch::{BatchBuilder, BatchView, NewRecord};
pub use keel_protocol::Compression;
pub use partitioner::{murmur2, partition_for_key, Partitioner};
pub use producer::{
    Acks, DeliveryFuture, Producer, ProducerBuilder, ProducerRecord, RecordMetadata, RecordSet,
    WhenFull,
};
pub use sasl::SaslCredentials;
pub use security::ClientSecurity;
