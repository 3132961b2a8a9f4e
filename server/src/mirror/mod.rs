//! Mirroring between clusters (issue 23): cluster links defined on the destination, mirror
//! topics whose partitions append the source's batches byte for byte at the same offsets.
//! This is the sans-IO core, driven by method calls with time as an input and tested
//! without sockets or disks: what a link selects (`link.rs`) and where each mirror
//! partition stands (`partition.rs`). Nothing serves links yet: no command or flag reaches
//! this code.

pub mod admin;
pub mod definition;
pub mod link;
pub mod partition;
