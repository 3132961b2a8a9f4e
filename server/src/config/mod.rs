//! Broker configuration: defaults, then the TOML file, then command-line flags; validated
//! once at start-up and passed down as `&Config`.

pub mod cluster;
pub mod group;
pub mod listeners;
pub mod security;
pub mod topic;

use anyhow::{bail, Context};
use keel_engine::{FsyncPolicy, LogConfig};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Command line of `keel-server` (the contract in the product brief).
#[derive(clap::Parser, Debug, Default)]
#[command(name = "keel-server", version, about = "The Keel broker")]
pub struct Args {
    /// TOML file with the same keys as the flags (snake_case).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Where partitions live.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Native protocol listener.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Prometheus metrics listener (`GET /metrics`).
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
    /// Executors, one per core (default: all cores).
    #[arg(long)]
    pub shards: Option<usize>,
    /// This broker's node id.
    #[arg(long)]
    pub node_id: Option<u32>,
    /// Default durability for topics: always | interval:MS | never.
    #[arg(long)]
    pub fsync: Option<String>,
    /// Default retention by time.
    #[arg(long)]
    pub retention_ms: Option<u64>,
    /// Default retention by size per partition.
    #[arg(long)]
    pub retention_bytes: Option<u64>,
    /// Default segment size.
    #[arg(long)]
    pub segment_bytes: Option<u64>,
    /// Controller listener (used when this node is a voter). Default 127.0.0.1:7072.
    #[arg(long)]
    pub controller_listen: Option<SocketAddr>,
    /// The controller quorum, `ID@HOST:PORT,...`, the same on every node. Given, the node
    /// runs in cluster mode; absent, it is today's single-node broker.
    #[arg(long)]
    pub controller_voters: Option<String>,
    /// The address clients and other brokers are told (default: --listen).
    #[arg(long)]
    pub advertised_listen: Option<SocketAddr>,
    /// Kafka wire protocol listener, HOST:PORT or `off`. Default 127.0.0.1:9092.
    #[arg(long)]
    pub kafka_listen: Option<String>,
    /// The Kafka address clients are told in metadata (default: --kafka-listen).
    #[arg(long)]
    pub advertised_kafka_listen: Option<SocketAddr>,
    /// Several Kafka listeners, NAME://HOST:PORT,… (each name a security protocol, or
    /// mapped with --listener-security-protocol-map); instead of --kafka-listen and
    /// --kafka-security.
    #[arg(long)]
    pub kafka_listeners: Option<String>,
    /// The addresses clients are told per listener, NAME://HOST:PORT,… (default: the
    /// listener's own).
    #[arg(long)]
    pub advertised_kafka_listeners: Option<String>,
    /// Listener names to security protocols, NAME:PROTOCOL,… (Kafka's
    /// listener.security.protocol.map).
    #[arg(long)]
    pub listener_security_protocol_map: Option<String>,
    /// Security: listener protocols, SASL mechanisms, users made at start-up.
    #[command(flatten)]
    pub security: security::SecurityArgs,
}

/// The TOML file: every key optional.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct File {
    data_dir: Option<PathBuf>,
    listen: Option<SocketAddr>,
    metrics_listen: Option<SocketAddr>,
    shards: Option<usize>,
    node_id: Option<u32>,
    fsync: Option<String>,
    retention_ms: Option<u64>,
    retention_bytes: Option<u64>,
    segment_bytes: Option<u64>,
    controller_listen: Option<SocketAddr>,
    controller_voters: Option<String>,
    advertised_listen: Option<SocketAddr>,
    kafka_listen: Option<String>,
    advertised_kafka_listen: Option<SocketAddr>,
    kafka_listeners: Option<String>,
    advertised_kafka_listeners: Option<String>,
    listener_security_protocol_map: Option<String>,
    frame_bytes_max: Option<u32>,
    batch_bytes_max: Option<u32>,
    connections_max: Option<usize>,
    connections_max_idle_ms: Option<u64>,
    partitions_max: Option<u32>,
    tail_cache_bytes: Option<u64>,
    tail_cache_budget_bytes: Option<u64>,
    offsets_segment_bytes: Option<u64>,
    offsets_topic_replication_factor: Option<u32>,
    log_cleaner_backoff_ms: Option<u64>,
    log_cleaner_dedupe_buffer_bytes: Option<usize>,
    log_cleaner_io_bytes_per_second: Option<u64>,
    batch_decompressed_bytes_max: Option<usize>,
    requests_bytes_max: Option<usize>,
    connection_requests_max: Option<usize>,
    group_session_timeout_ms_min: Option<u32>,
    group_session_timeout_ms_max: Option<u32>,
    group_rebalance_timeout_ms_max: Option<u32>,
    groups_max: Option<usize>,
    group_members_max: Option<usize>,
    fetch_wait_ms_max: Option<u32>,
    request_partitions_max: Option<usize>,
    partition_jobs_max: Option<usize>,
    kafka_security: Option<String>,
    native_security: Option<String>,
    inter_broker_security: Option<String>,
    metrics_security: Option<String>,
    tls_cert: Option<String>,
    tls_key: Option<String>,
    tls_ca: Option<String>,
    tls_client_auth: Option<String>,
    ssl_principal_mapping_rules: Option<String>,
    sasl_mechanisms: Option<String>,
    add_scram: Option<Vec<String>>,
    connection_failed_authentication_delay_ms: Option<u64>,
    allow_plaintext: Option<bool>,
    authorizer: Option<String>,
    super_users: Option<String>,
    allow_everyone_if_no_acl_found: Option<bool>,
    connections_max_reauth_ms: Option<u64>,
}

/// Validated broker configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where partitions live.
    pub data_dir: PathBuf,
    /// Native protocol listener.
    pub listen: SocketAddr,
    /// Metrics listener.
    pub metrics_listen: SocketAddr,
    /// Kafka wire protocol listener (`None`: off).
    pub kafka_listen: Option<SocketAddr>,
    /// The Kafka address told to clients (default: `kafka_listen`).
    pub advertised_kafka_listen: Option<SocketAddr>,
    /// Every Kafka listener, the first one `kafka_listen` with `security.kafka` (empty:
    /// the Kafka protocol is off).
    pub kafka_listeners: Vec<listeners::KafkaListener>,
    /// Number of shards (executors).
    pub shards: usize,
    /// This broker's node id.
    pub node_id: u32,
    /// Defaults for new topics.
    pub log_defaults: LogConfig,
    /// Largest request frame.
    pub frame_bytes_max: u32,
    /// Largest record batch in a produce request.
    pub batch_bytes_max: u32,
    /// Connections per broker.
    pub connections_max: usize,
    /// A client connection that sends nothing for this long is closed (Kafka's
    /// `connections.max.idle.ms`).
    pub connections_max_idle_ms: u64,
    /// Partitions per broker.
    pub partitions_max: u32,
    /// Segment size of `__consumer_offsets` (the cleaner compacts sealed segments only).
    pub offsets_segment_bytes: u64,
    /// Cluster mode: copies of each `__consumer_offsets` partition (fewer when fewer
    /// brokers are live when it is made).
    pub offsets_replication_factor: u32,
    /// Pause between two rounds of each shard's log cleaner.
    pub log_cleaner_backoff_ms: u64,
    /// Memory of the cleaners' offset maps, broker-wide (shared out over the shards).
    pub log_cleaner_dedupe_buffer_bytes: usize,
    /// Bytes a second the cleaners read, broker-wide (shared out over the shards).
    pub log_cleaner_io_bytes_per_second: u64,
    /// Largest decompressed records section of one produced batch the broker checks.
    pub batch_decompressed_bytes_max: usize,
    /// Bytes of requests read but not yet answered, broker-wide; past it shards stop
    /// reading sockets until answers go out (backpressure).
    pub requests_bytes_max: usize,
    /// Requests of one connection handled at once.
    pub connection_requests_max: usize,
    /// Group limits.
    pub group_limits: group::Limits,
    /// Longest a fetch may wait for data (a longer `max_wait_ms` is cut to this).
    pub fetch_wait_ms_max: u32,
    /// Bytes all partitions' tail caches may hold together, broker-wide (split over the
    /// shards, and over each shard's partitions).
    pub tail_cache_budget_bytes: u64,
    /// Partition entries (topic and partition pairs) one request may name.
    pub request_partitions_max: usize,
    /// Partition jobs in flight for requests, broker-wide (split over the shards, each at
    /// least `request_partitions_max`); past it requests wait for room (backpressure).
    pub partition_jobs_max: usize,
    /// Cluster mode (`--controller-voters` given), or `None` for the single-node broker.
    pub cluster: Option<cluster::ClusterConfig>,
    /// Listener protocols, SASL mechanisms, users made at start-up.
    pub security: security::SecurityConfig,
}

impl Config {
    /// Builds the configuration from flags and the file they name.
    ///
    /// # Errors
    /// An unreadable or invalid file, or invalid values, each named.
    pub fn load(args: &Args) -> anyhow::Result<Config> {
        let file: File = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config file {}", path.display()))?;
                toml::from_str(&text)
                    .with_context(|| format!("parsing config file {}", path.display()))?
            }
            None => File::default(),
        };
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let fsync_text = args
            .fsync
            .clone()
            .or(file.fsync)
            .unwrap_or_else(|| "always".into());
        let fsync: FsyncPolicy = fsync_text
            .parse()
            .map_err(|e| anyhow::anyhow!("--fsync: {e}"))?;
        let mut log_defaults = LogConfig {
            fsync,
            ..LogConfig::default()
        };
        if let Some(ms) = args.retention_ms.or(file.retention_ms) {
            log_defaults.retention_ms = Some(ms);
        }
        if let Some(bytes) = args.retention_bytes.or(file.retention_bytes) {
            log_defaults.retention_bytes = Some(bytes);
        }
        if let Some(bytes) = args.segment_bytes.or(file.segment_bytes) {
            log_defaults.segment_bytes = bytes;
        }
        log_defaults.tail_cache_bytes = file.tail_cache_bytes.unwrap_or(256 << 10);
        log_defaults
            .validate()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let named_listeners = [
            args.kafka_listeners
                .clone()
                .or(file.kafka_listeners.clone()),
            args.advertised_kafka_listeners
                .clone()
                .or(file.advertised_kafka_listeners.clone()),
            args.listener_security_protocol_map
                .clone()
                .or(file.listener_security_protocol_map.clone()),
        ];
        let named_listeners = match &named_listeners {
            [Some(listeners), advertised, map] => {
                listeners::parse(listeners, advertised.as_deref(), map.as_deref())?
            }
            [None, None, None] => Vec::new(),
            _ => bail!("--advertised-kafka-listeners and --listener-security-protocol-map go with --kafka-listeners"),
        };
        let more_tls = named_listeners.iter().any(|l| l.protocol.tls());
        let one_listener_flags = args.kafka_listen.is_some()
            || file.kafka_listen.is_some()
            || args.advertised_kafka_listen.is_some()
            || file.advertised_kafka_listen.is_some()
            || args.security.kafka_security.is_some()
            || file.kafka_security.is_some();
        let config = Config {
            data_dir: args
                .data_dir
                .clone()
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("./keel-data")),
            listen: args
                .listen
                .or(file.listen)
                .unwrap_or_else(|| "127.0.0.1:7070".parse().expect("valid")),
            metrics_listen: args
                .metrics_listen
                .or(file.metrics_listen)
                .unwrap_or_else(|| "127.0.0.1:7071".parse().expect("valid")),
            kafka_listen: match args.kafka_listen.clone().or(file.kafka_listen) {
                None => Some("127.0.0.1:9092".parse().expect("valid")),
                Some(off) if off == "off" => None,
                Some(addr) => Some(addr.parse().map_err(|_| {
                    anyhow::anyhow!("--kafka-listen must be HOST:PORT or off, got {addr:?}")
                })?),
            },
            advertised_kafka_listen: args
                .advertised_kafka_listen
                .or(file.advertised_kafka_listen),
            shards: args.shards.or(file.shards).unwrap_or(cores),
            node_id: args.node_id.or(file.node_id).unwrap_or(1),
            log_defaults,
            frame_bytes_max: file.frame_bytes_max.unwrap_or(64 << 20),
            batch_bytes_max: file.batch_bytes_max.unwrap_or(8 << 20),
            connections_max: file.connections_max.unwrap_or(10_000),
            connections_max_idle_ms: file.connections_max_idle_ms.unwrap_or(600_000).max(1),
            partitions_max: file.partitions_max.unwrap_or(100_000),
            offsets_segment_bytes: file.offsets_segment_bytes.unwrap_or(16 << 20).max(4096),
            offsets_replication_factor: file.offsets_topic_replication_factor.unwrap_or(3).max(1),
            // A test knob may shorten the pause (`KEEL_LOG_CLEANER_BACKOFF_MS`).
            log_cleaner_backoff_ms: std::env::var("KEEL_LOG_CLEANER_BACKOFF_MS")
                .ok()
                .and_then(|v| v.parse().ok())
                .or(file.log_cleaner_backoff_ms)
                .unwrap_or(15_000)
                .max(10),
            log_cleaner_dedupe_buffer_bytes: file
                .log_cleaner_dedupe_buffer_bytes
                .unwrap_or(32 << 20)
                .max(1 << 10),
            log_cleaner_io_bytes_per_second: file
                .log_cleaner_io_bytes_per_second
                .unwrap_or(64 << 20)
                .max(1 << 20),
            batch_decompressed_bytes_max: file.batch_decompressed_bytes_max.unwrap_or(32 << 20),
            requests_bytes_max: file.requests_bytes_max.unwrap_or(256 << 20),
            connection_requests_max: file.connection_requests_max.unwrap_or(64),
            fetch_wait_ms_max: file.fetch_wait_ms_max.unwrap_or(30_000),
            tail_cache_budget_bytes: file.tail_cache_budget_bytes.unwrap_or(1 << 30),
            request_partitions_max: file.request_partitions_max.unwrap_or(10_000),
            partition_jobs_max: file.partition_jobs_max.unwrap_or(100_000),
            cluster: None,
            kafka_listeners: Vec::new(),
            security: security::SecurityConfig::load(
                &args.security,
                security::SecurityFile {
                    kafka_security: file.kafka_security,
                    native_security: file.native_security,
                    inter_broker_security: file.inter_broker_security,
                    metrics_security: file.metrics_security,
                    tls: [
                        file.tls_cert,
                        file.tls_key,
                        file.tls_ca,
                        file.tls_client_auth,
                        file.ssl_principal_mapping_rules,
                    ],
                    sasl_mechanisms: file.sasl_mechanisms,
                    add_scram: file.add_scram,
                    failed_authentication_delay_ms: file.connection_failed_authentication_delay_ms,
                    allow_plaintext: file.allow_plaintext,
                    authorizer: file.authorizer,
                    super_users: file.super_users,
                    allow_everyone_if_no_acl_found: file.allow_everyone_if_no_acl_found,
                    connections_max_reauth_ms: file.connections_max_reauth_ms,
                },
                more_tls,
            )?,
            group_limits: {
                let default = group::Limits::default();
                group::Limits {
                    session_timeout_ms_min: file
                        .group_session_timeout_ms_min
                        .unwrap_or(default.session_timeout_ms_min),
                    session_timeout_ms_max: file
                        .group_session_timeout_ms_max
                        .unwrap_or(default.session_timeout_ms_max),
                    rebalance_timeout_ms_max: file
                        .group_rebalance_timeout_ms_max
                        .unwrap_or(default.rebalance_timeout_ms_max),
                    groups_max: file.groups_max.unwrap_or(default.groups_max),
                    members_max: file.group_members_max.unwrap_or(default.members_max),
                    ..default
                }
            },
        };
        let mut config = config;
        let voters = args.controller_voters.clone().or(file.controller_voters);
        config.set_kafka_listeners(named_listeners, one_listener_flags)?;
        if let Some(voters) = voters {
            let controller_listen = args
                .controller_listen
                .or(file.controller_listen)
                .unwrap_or_else(|| "127.0.0.1:7072".parse().expect("valid address"));
            let advertised = args
                .advertised_listen
                .or(file.advertised_listen)
                .unwrap_or(config.listen);
            config.cluster = Some(cluster::ClusterConfig::new(
                config.node_id,
                &voters,
                controller_listen,
                advertised,
            )?);
            // Followers fetch from the native listener; they prove themselves there by
            // certificate, not by SASL.
            if config.security.native.sasl() && !config.security.inter_broker_tls {
                bail!("--native-security {} in a cluster needs --inter-broker-security SSL (followers fetch from the native listener and prove who they are with their certificates)", config.security.native.name());
            }
        } else if args.controller_listen.is_some() || args.advertised_listen.is_some() {
            bail!("--controller-listen and --advertised-listen need --controller-voters (cluster mode)");
        }
        config.data_dir = std::path::absolute(&config.data_dir)
            .with_context(|| format!("resolving data directory {}", config.data_dir.display()))?;
        if config.shards == 0 || config.shards > 256 {
            bail!("--shards must be between 1 and 256, got {}", config.shards);
        }
        if config.connection_requests_max == 0 {
            bail!("connection_requests_max must be at least 1");
        }
        if config.request_partitions_max == 0 || config.request_partitions_max > 1_000_000 {
            bail!(
                "request_partitions_max must be between 1 and 1,000,000, got {}",
                config.request_partitions_max
            );
        }
        if config.requests_bytes_max < config.frame_bytes_max as usize {
            bail!(
                "requests_bytes_max ({}) must be at least frame_bytes_max ({}): one request of the largest size must fit",
                config.requests_bytes_max,
                config.frame_bytes_max
            );
        }
        security::check_exposure(&config.listeners(), config.security.allow_plaintext)?;
        if config.batch_bytes_max > config.frame_bytes_max {
            bail!(
                "batch_bytes_max ({}) must not exceed frame_bytes_max ({})",
                config.batch_bytes_max,
                config.frame_bytes_max
            );
        }
        Ok(config)
    }

    /// Fills `kafka_listeners`: the one listener of `--kafka-listen` and `--kafka-security`
    /// when given (named after its protocol), then those of `--kafka-listeners` (with its
    /// advertised addresses and protocol map, `named`); the first is also `kafka_listen`.
    /// `--kafka-listeners` alone names every listener, as Kafka's `listeners`.
    fn set_kafka_listeners(
        &mut self,
        named: Vec<listeners::KafkaListener>,
        one_listener_flags: bool,
    ) -> anyhow::Result<()> {
        let mut all = Vec::new();
        if let Some(listen) = self
            .kafka_listen
            .filter(|_| one_listener_flags || named.is_empty())
        {
            all.push(listeners::KafkaListener {
                name: self.security.kafka.name().to_owned(),
                listen,
                advertised: self.advertised_kafka_listen.unwrap_or(listen),
                protocol: self.security.kafka,
            });
        }
        for listener in named {
            anyhow::ensure!(
                all.iter().all(|l: &listeners::KafkaListener| l.name != listener.name),
                "--kafka-listeners: {} is --kafka-listen's listener already (named after --kafka-security)",
                listener.name
            );
            all.push(listener);
        }
        anyhow::ensure!(
            all.len() <= listeners::KAFKA_LISTENERS_MAX,
            "at most {} Kafka listeners",
            listeners::KAFKA_LISTENERS_MAX
        );
        if all.iter().any(|l| l.protocol.tls()) && self.security.tls.is_none() {
            bail!("an SSL or SASL_SSL listener needs --tls-cert and --tls-key (PEM files)");
        }
        if let Some(first) = all.first() {
            self.kafka_listen = Some(first.listen);
            self.advertised_kafka_listen = Some(first.advertised);
            self.security.kafka = first.protocol;
        }
        self.kafka_listeners = all;
        Ok(())
    }

    /// Whether a client listener (native or Kafka) runs SASL.
    pub fn sasl_listener(&self) -> bool {
        self.security.native.sasl() || self.kafka_listeners.iter().any(|l| l.protocol.sasl())
    }

    /// Every address the broker listens on: what it serves and whether it authenticates
    /// who connects.
    pub fn listeners(&self) -> Vec<(SocketAddr, &'static str, bool)> {
        let mut out = vec![
            (
                self.listen,
                "clients",
                self.security.authenticates(self.security.native),
            ),
            (
                self.metrics_listen,
                "metrics",
                self.security.metrics_tls
                    && self.security.authenticates(security::SecurityProtocol::Ssl),
            ),
        ];
        for kafka in &self.kafka_listeners {
            out.push((
                kafka.listen,
                "the Kafka protocol",
                self.security.authenticates(kafka.protocol),
            ));
        }
        if let Some(cluster) = self.cluster.as_ref().filter(|c| c.is_voter()) {
            out.push((
                cluster.controller_listen,
                "the controller",
                self.security.inter_broker_tls,
            ));
        }
        out
    }

    /// The log configuration of a topic: broker defaults overridden by its configs.
    ///
    /// # Errors
    /// The first unknown key or bad value, as a sentence.
    pub fn topic_log_config(
        &self,
        configs: &std::collections::BTreeMap<String, String>,
    ) -> Result<LogConfig, String> {
        let mut log = self.log_defaults.clone();
        for (key, value) in configs {
            // Values a peer sent are echoed back clipped: an error message must fit the wire.
            let (key_shown, value_shown) = (clip(key), clip(value));
            let number = || {
                value.parse::<u64>().map_err(|_| {
                    format!("{key_shown} must be a non-negative integer, got {value_shown:?}")
                })
            };
            match key.as_str() {
                "retention.ms" => log.retention_ms = if value == "-1" { None } else { Some(number()?) },
                "retention.bytes" => log.retention_bytes = if value == "-1" { None } else { Some(number()?) },
                "segment.bytes" => log.segment_bytes = number()?,
                "segment.ms" => log.segment_ms = Some(number()?),
                "fsync" => log.fsync = value.parse().map_err(|e: keel_engine::Error| clip(&e.to_string()))?,
                // Compaction settings: checked here, used by the cleaner (`compaction.rs`).
                key if topic::check_compaction(key, value).is_some() => {
                    topic::check_compaction(key, value).unwrap_or(Ok(()))?;
                }
                // A mirror's settings: checked here, used by `mirror/`.
                key if topic::check_mirror(key, value).is_some() => {
                    topic::check_mirror(key, value).unwrap_or(Ok(()))?;
                }
                // Replication settings: checked here, used by `replication/`.
                key if topic::check_replication(key, value).is_some() => {
                    topic::check_replication(key, value).unwrap_or(Ok(()))?;
                }
                _ => return Err(format!("unknown topic config {key_shown:?}; known: retention.ms, retention.bytes, segment.bytes, segment.ms, fsync, cleanup.policy, delete.retention.ms, min.compaction.lag.ms, max.compaction.lag.ms, min.cleanable.dirty.ratio, min.insync.replicas, replica.lag.time.max.ms, unclean.leader.election.enable, reassignment.throttle.bytes.per.sec")),
            }
        }
        if !topic::policy(configs).delete {
            // compact alone: retention never deletes (the cleaner bounds the log).
            log.retention_ms = None;
            log.retention_bytes = None;
        }
        log.validate().map_err(|e| e.to_string())?;
        Ok(log)
    }
}

/// At most 128 characters of `text`, marked when cut.
pub fn clip(text: &str) -> String {
    const SHOWN: usize = 128;
    match text.char_indices().nth(SHOWN) {
        Some((at, _)) => format!("{}… ({} bytes)", &text[..at], text.len()),
        None => text.to_owned(),
    }
}
