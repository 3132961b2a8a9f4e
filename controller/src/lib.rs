//! Keel's metadata quorum, sans-IO: the records of the metadata log ([`records`]), the state
//! machine they build ([`image`]), where new partitions go ([`placement`]), the Raft log as
//! raft-rs reads it ([`store`]), the controller on each voter ([`node`]), a broker's side of
//! it ([`broker`]), and a deterministic simulator of all of them ([`sim`]), and the controller listener's
//! framing ([`wire`]).
//!
//! Nothing here does I/O or reads a clock: the server (glommio) and the simulator drive the
//! same structs with time, messages and durability as inputs.
//!
//! ```
//! use keel_controller::node::{Controller, ControllerConfig, Request, Reply};
//! use keel_controller::store::LogStore;
//!
//! // A quorum of one: it elects itself, then commits a broker's registration.
//! let mut c = Controller::new(ControllerConfig::new(1, vec![1]), LogStore::new(&[1]), 0).unwrap();
//! let mut now = 0;
//! while !c.is_leader() {
//!     now += 100;
//!     c.tick(now);
//!     while c.has_ready() { let _ = c.ready(); c.advance(); }
//! }
//! let register = Request::Register { id: 1, address: "127.0.0.1:7070".into(), incarnation: 7 };
//! assert!(c.request(1, register).is_none(), "answered once committed");
//! while c.has_ready() { let _ = c.ready(); c.advance(); }
//! assert!(matches!(c.take_answers()[0].1, Ok(Reply::Committed { .. })));
//! assert_eq!(c.image().live_brokers(), vec![1]);
//! ```
#![deny(missing_docs)]

pub mod api;
pub mod broker;
pub mod disklog;
pub mod error;
pub mod image;
pub mod leadership;
pub mod node;
pub mod placement;
pub mod records;
pub mod replica;
pub mod sim;
pub mod store;
pub mod wire;

pub use error::{Error, Result};
