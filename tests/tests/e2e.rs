//! Every end-to-end test of real Keel processes, in one test binary: one link, one
//! build of the binaries under test, and the harness's threads kept busy across files (cargo
//! runs test binaries one after another). One module per concept; run one with
//! `cargo test -p keel-tests --test e2e MODULE::`.

mod replicated;

mod acls;
mod bad_input;
mod batching;
mod bench;
mod broker;
mod broker_identity;
mod budget;
mod client;
mod client_timeouts;
mod cluster;
mod cluster_clients;
mod cluster_identity;
mod cluster_security;
mod cold_reads;
mod compaction;
mod connection_limits;
mod crash;
mod embedded;
mod full_disk;
mod fuzz_seeds;
mod group_move;
mod groups;
mod hostile;
mod hostile_memory;
mod idempotence;
mod isolation;
mod kafka_bad_input;
mod kafka_clients;
mod kafka_cluster;
mod metrics;
mod mirror;
mod mirror_faults;
mod mirror_runbook;
mod mirror_source;
mod mirror_tls;
mod native_sasl;
mod producer_ids;
mod quotas;
mod readme_cluster;
mod reassignment;
mod record_sets;
mod replicated_groups;
mod replicated_offsets;
mod replication;
mod request_path;
mod sasl;
mod scale;
mod security_walkthrough;
mod startup;
mod tidy;
mod tls;
mod tool;
mod tool_errors;
