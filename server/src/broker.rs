//! A broker in this process: one pinned glommio executor per shard, every shard accepting
//! connections on the same port (SO_REUSEPORT) and owning a share of the partitions.

use crate::accept;
use crate::background;
use crate::cluster;
use crate::compaction;
use crate::config::Config;
use crate::handlers;
use crate::metrics::Metrics;
use crate::offsets_migration;
use crate::peers::{Meshes, Peers};
use crate::ports;
use crate::registry;
use crate::registry::{parse_partition_dir, Registry, SharedRegistry};
use crate::replication;
use crate::shard::Shard;
use anyhow::Context;
use glommio::net::TcpListener;
use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Registered I/O memory per shard; three io_uring rings register it, and the total must
/// stay within a small memlock limit.
const IO_MEMORY_BYTES: usize = 1 << 20;

/// A broker running in this process.
pub struct Broker {
    config: Arc<Config>,
    partitions: usize,
    started: Instant,
    stop: Arc<AtomicBool>,
    handles: Vec<glommio::ExecutorJoinHandle<anyhow::Result<()>>>,
    security: Arc<crate::security::Stores>,
    _lock: std::fs::File,
}

impl Broker {
    /// Its configuration, listen addresses resolved (a port 0 is the port it got).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The line the binary prints when the broker is ready.
    pub fn ready_line(&self) -> String {
        let config = &self.config;
        format!(
            "keel-server {} listening on {} (Kafka protocol on {}, metrics on {}, {} shards, {} partitions, data in {}, ready in {} ms)",
            env!("CARGO_PKG_VERSION"),
            config.listen,
            match config.kafka_listeners.as_slice() {
                [] => "off".to_owned(),
                [one] => one.listen.to_string(),
                many => many
                    .iter()
                    .map(|l| format!("{}://{}", l.name, l.listen))
                    .collect::<Vec<_>>()
                    .join(","),
            },
            config.metrics_listen,
            config.shards,
            self.partitions,
            config.data_dir.display(),
            self.started.elapsed().as_millis()
        )
    }

    /// Reads the TLS certificate, key and CA files again (SIGHUP): new connections use
    /// them, open ones keep theirs. Nothing to do without TLS.
    ///
    /// # Errors
    /// A file that cannot be read or used; the settings in use stay.
    pub fn reload_tls(&self) -> anyhow::Result<()> {
        match &self.security.tls {
            Some(tls) => tls.reload(),
            None => Ok(()),
        }
    }

    /// Stops it: no new connections, pending requests answered, every log flushed and
    /// closed; returns when every shard has stopped.
    ///
    /// # Errors
    /// The shards that stopped with an error or panicked.
    pub fn stop(self) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::SeqCst);
        let mut failed = Vec::new();
        for (index, handle) in self.handles.into_iter().enumerate() {
            match handle.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failed.push(format!("shard {index} stopped with an error: {e:#}")),
                Err(e) => failed.push(format!("shard {index} panicked: {e:?}")),
            }
        }
        if !failed.is_empty() {
            anyhow::bail!("{}", failed.join("; "));
        }
        tracing::info!("stopped cleanly");
        Ok(())
    }
}

/// Starts a broker in this process: its shards' executors, its partitions opened and its
/// listeners bound; returns once it serves (or the first shard's failure). The binary
/// installs its signal handlers first; tests start several in one process.
///
/// # Errors
/// A data directory that cannot be used, an address in use, a shard failing to start.
pub fn start(mut config: Config) -> anyhow::Result<Broker> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let lock = lock_data_dir(&config.data_dir)?;
    let registry_found = config.data_dir.join("topics.toml").exists();
    let mut registry = Registry::load(&config.data_dir)?;
    if config.cluster.is_some() {
        // The cluster's replicated `__consumer_offsets` comes from the metadata.
        offsets_migration::set_local_offsets_aside(&config.data_dir, &mut registry)?;
    } else {
        // Committed offsets of consumer groups live in this internal topic, compacted
        // by the cleaner; broker-wide retention must never trim it.
        let found = registry.get(handlers::groups::OFFSETS_TOPIC).cloned();
        let mut offsets = found.clone().unwrap_or(registry::TopicEntry {
            partitions: 1,
            ..registry::TopicEntry::default()
        });
        let configs = handlers::cluster_admin::offsets_topic_configs(config.offsets_segment_bytes);
        offsets.configs.extend(configs);
        if found.as_ref() != Some(&offsets) {
            registry.put(handlers::groups::OFFSETS_TOPIC, offsets)?;
        }
    }
    clean_data_dir(&config, &registry, registry_found)?;
    config.listen = ports::resolve_listen(config.listen, "clients")?;
    config.metrics_listen = ports::resolve_listen(config.metrics_listen, "metrics")?;
    for listener in &mut config.kafka_listeners {
        let listen = ports::resolve_listen(listener.listen, "the Kafka protocol")?;
        if listener.advertised == listener.listen {
            listener.advertised = listen;
        }
        listener.listen = listen;
    }
    if let Some(first) = config.kafka_listeners.first() {
        config.kafka_listen = Some(first.listen);
        config.advertised_kafka_listen = Some(first.advertised);
    }
    // The registration tells other brokers these (ports resolved).
    if let Some(cluster) = config.cluster.as_mut() {
        cluster.advertised_kafka = config
            .kafka_listeners
            .iter()
            .map(|l| (l.name.clone(), l.advertised))
            .collect();
    }
    if let Some(cluster) = config.cluster.as_mut().filter(|c| c.is_voter()) {
        cluster.controller_listen =
            ports::resolve_listen(cluster.controller_listen, "the controller")?;
    }
    let cluster_boot = match &config.cluster {
        Some(cluster) => Some(cluster::boot(&config.data_dir, cluster)?),
        None => None,
    };
    let started = Instant::now();
    let config = Arc::new(config);
    let registry = Arc::new(SharedRegistry::new(registry));
    let security = Arc::new(security(&config)?);
    let metrics = Arc::new(Metrics::new());
    let connections = Arc::new(AtomicUsize::new(0));
    let shards_open = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let cluster_view = cluster_boot.as_ref().map(|boot| boot.view.clone());
    let cluster_boot = Arc::new(std::sync::Mutex::new(cluster_boot));
    let mesh = Meshes::new(config.shards);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<anyhow::Result<usize>>();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut handles = Vec::with_capacity(config.shards);
    for index in 0..config.shards {
        let shared = Shared {
            config: config.clone(),
            registry: registry.clone(),
            security: security.clone(),
            metrics: metrics.clone(),
            connections: connections.clone(),
            stop: stop.clone(),
            shards_open: shards_open.clone(),
            cluster: cluster_view.clone(),
            cluster_boot: cluster_boot.clone(),
        };
        let (mesh, ready_tx) = (mesh.clone(), ready_tx.clone());
        let handle = glommio::LocalExecutorBuilder::new(glommio::Placement::Fixed(index % cores))
            .name(&format!("keel-shard-{index}"))
            .io_memory(IO_MEMORY_BYTES)
            .spawn(move || async move {
                let result = run_shard(shared, mesh, &ready_tx).await;
                if let Err(e) = &result {
                    let _ = ready_tx.send(Err(anyhow::anyhow!("{e:#}")));
                }
                result
            })
            .map_err(|e| anyhow::anyhow!("cannot start shard {index}: {e}"))?;
        handles.push(handle);
    }
    drop(ready_tx);
    let mut partitions = 0;
    for _ in 0..config.shards {
        match ready_rx.recv() {
            Ok(Ok(opened)) => partitions += opened,
            Ok(Err(e)) => return Err(e),
            Err(_) => anyhow::bail!("a shard stopped before it was ready"),
        }
    }
    let listeners: Vec<_> = config
        .listeners()
        .iter()
        .map(|(a, what, _)| (*a, *what))
        .collect();
    ports::check_own(&listeners)?;
    Ok(Broker {
        config,
        partitions,
        started,
        stop,
        handles,
        security,
        _lock: lock,
    })
}

/// Holds `DIR/keel.lock` with flock(2) for the life of the process, so a second broker on
/// the same data directory is refused (naming the holder's pid) instead of overwriting the
/// first one's acknowledged data. The kernel drops the lock when the process dies, even
/// by kill -9.
fn lock_data_dir(dir: &std::path::Path) -> anyhow::Result<std::fs::File> {
    use std::io::{Read, Seek, Write};
    use std::os::fd::AsRawFd;
    let path = dir.join("keel.lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: flock(2) on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let error = std::io::Error::last_os_error();
        if error.raw_os_error() == Some(libc::EWOULDBLOCK) {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let holder = if holder.is_empty() { "unknown" } else { holder };
            anyhow::bail!(
                "data directory {} is in use by another keel-server (pid {holder}); stop it or pick another --data-dir",
                dir.display()
            );
        }
        return Err(error).with_context(|| format!("locking {}", path.display()));
    }
    file.set_len(0)?;
    file.rewind()?;
    writeln!(file, "{}", std::process::id())?;
    Ok(file)
}

/// Removes directories of partitions whose topic is not registered (a delete interrupted
/// after the registry was updated) and a leftover temporary registry. Without a registry
/// file (lost, or never written) nothing says those topics were deleted: every partition
/// directory is kept, and reported.
fn clean_data_dir(
    config: &Config,
    registry: &Registry,
    registry_found: bool,
) -> anyhow::Result<()> {
    let _ = std::fs::remove_file(config.data_dir.join("topics.toml.tmp"));
    let mut kept = Vec::new();
    for entry in std::fs::read_dir(&config.data_dir)
        .with_context(|| format!("listing {}", config.data_dir.display()))?
    {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some((topic, partition)) = parse_partition_dir(&name) {
            let known = registry
                .get(topic)
                .is_some_and(|t| partition < t.partitions);
            if !known && !registry_found {
                kept.push(name);
            } else if !known {
                tracing::warn!(dir = %entry.path().display(), "removing partition of a deleted topic");
                std::fs::remove_dir_all(entry.path())
                    .with_context(|| format!("removing {}", entry.path().display()))?;
            }
        }
    }
    if !kept.is_empty() {
        kept.sort();
        tracing::warn!(
            directories = %kept.join(", "),
            "topics.toml is missing: partition directories of topics it does not list are kept, not served (create each topic again with its partition count to serve them)"
        );
    }
    Ok(())
}

/// The users and ACLs in the data directory, with the users `--add-scram` names made if
/// absent.
fn security(config: &Config) -> anyhow::Result<crate::security::Stores> {
    use crate::security::{acls::Acls, quotas::Quotas, users::Users};
    let tls = match &config.security.tls {
        Some(settings) => Some(crate::security::tls::Tls::load(settings)?),
        None => None,
    };
    if config.cluster.is_some() {
        // The metadata log keeps them; `--add-scram` users are made through the controller
        // once the cluster runs (cluster::add_scram_users).
        return Ok(crate::security::Stores {
            users: Users::in_metadata(),
            acls: Acls::in_metadata(config.security.authorizer, acl_policy(config)),
            quotas: Quotas::in_metadata(),
            tls,
            // Refusing users and authorizing before the metadata is read would be wrong;
            // without an authorizer or SASL nothing depends on it.
            settled: if config.security.authorizer || config.sasl_listener() {
                crate::security::settle::Settled::later()
            } else {
                crate::security::settle::Settled::now()
            },
        });
    }
    let users = crate::security::users::Users::load(&config.data_dir)?;
    for (mechanism, name, password) in &config.security.add_scram {
        if users.create_if_absent(name, *mechanism, password)? {
            tracing::info!(user = %name, %mechanism, "user made (--add-scram)");
        }
    }
    let acls = crate::security::acls::Acls::load(
        &config.data_dir,
        config.security.authorizer,
        acl_policy(config),
    )?;
    let quotas = crate::security::quotas::Quotas::load(&config.data_dir)?;
    Ok(crate::security::Stores {
        users,
        acls,
        quotas,
        tls,
        settled: crate::security::settle::Settled::now(),
    })
}

fn acl_policy(config: &Config) -> crate::security::acls::Policy {
    crate::security::acls::Policy {
        super_users: config.security.super_users.clone(),
        allow_if_no_acl: config.security.allow_everyone_if_no_acl_found,
    }
}

/// What every shard shares.
#[derive(Clone)]
struct Shared {
    config: Arc<Config>,
    registry: Arc<SharedRegistry>,
    security: Arc<crate::security::Stores>,
    metrics: Arc<Metrics>,
    connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    shards_open: Arc<AtomicUsize>,
    cluster: Option<Arc<cluster::ClusterView>>,
    cluster_boot: Arc<std::sync::Mutex<Option<cluster::Boot>>>,
}

async fn run_shard(
    shared: Shared,
    mesh: Meshes,
    ready: &std::sync::mpsc::Sender<anyhow::Result<usize>>,
) -> anyhow::Result<()> {
    let Shared {
        config,
        registry,
        security,
        metrics,
        connections,
        stop,
        shards_open,
        cluster,
        cluster_boot,
    } = shared;
    let (peers, jobs, replies) = Peers::join(mesh).await?;
    let id = peers.id();
    let shard = Rc::new(Shard::new(
        id,
        config.clone(),
        registry,
        security,
        metrics.clone(),
        Rc::new(peers),
        cluster,
    ));
    handlers::groups::start_service(&shard);
    shard.serve_peers(jobs, replies);
    let opened = shard.open_owned_partitions().await?;
    shards_open.fetch_add(1, Ordering::SeqCst);
    while shards_open.load(Ordering::SeqCst) < config.shards {
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
    if let Some(groups) = handlers::groups::service(&shard) {
        if shard.cluster.is_none() {
            // Committed offsets are replayed once every shard has its partitions open.
            let loaded = groups.load(&shard, 0).await?;
            tracing::info!(offsets = loaded, "committed offsets replayed");
        } else {
            // Groups are served as their offsets partitions are led and loaded.
            glommio::spawn_local(handlers::coordination::follow_leadership(shard.clone())).detach();
            glommio::spawn_local(offsets_migration::import(shard.clone())).detach();
        }
        // One past the shard count: the groups are ready too.
        shards_open.fetch_add(1, Ordering::SeqCst);
        let ticker = shard.clone();
        glommio::spawn_local(async move {
            loop {
                glommio::timer::sleep(Duration::from_millis(100)).await;
                if let Some(groups) = handlers::groups::service(&ticker) {
                    groups.tick(&ticker);
                }
            }
        })
        .detach();
    }
    // Listen only once every shard has opened its partitions and the groups have their
    // offsets: connections land on any shard, and one listening earlier would answer for
    // partitions another shard has not opened yet as unknown.
    while shards_open.load(Ordering::SeqCst) <= config.shards {
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
    let listener = TcpListener::bind(config.listen)
        .map_err(std::io::Error::from)
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let stopping = Rc::new(Cell::new(false));
    let mut metrics_server = None;
    if id == 0 {
        let boot = cluster_boot.lock().expect("boot lock").take();
        if let Some(boot) = boot {
            cluster::start(shard.clone(), boot).await?;
        }
        let metrics_listener = TcpListener::bind(config.metrics_listen)
            .map_err(std::io::Error::from)
            .with_context(|| format!("cannot listen on {} for metrics", config.metrics_listen))?;
        metrics_server = Some(glommio::spawn_local(background::serve_metrics(
            metrics_listener,
            metrics.clone(),
            shard.clone(),
            stopping.clone(),
        )));
    }
    glommio::spawn_local(background::housekeeping(shard.clone(), stopping.clone())).detach();
    // The cleaner runs in a task queue of its own with a small share of the shard's CPU:
    // produce and fetch come first.
    let cleaner_queue = glommio::executor().create_task_queue(
        glommio::Shares::Static(compaction::CPU_SHARES),
        glommio::Latency::NotImportant,
        "log-cleaner",
    );
    glommio::spawn_local_into(
        compaction::run(shard.clone(), stopping.clone()),
        cleaner_queue,
    )
    .map_err(|e| anyhow::anyhow!("starting the log cleaner: {e}"))?
    .detach();
    if shard.cluster.is_some() {
        glommio::spawn_local(replication::run(shard.clone())).detach();
        glommio::spawn_local(crate::mirror::task::run(shard.clone())).detach();
    }
    let kafka_listeners = config
        .kafka_listeners
        .iter()
        .map(|listener| {
            let addr = listener.listen;
            TcpListener::bind(addr)
                .map_err(std::io::Error::from)
                .with_context(|| format!("cannot listen on {addr} for the Kafka protocol"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    // Every listener is bound: start-up checks they are this process's alone.
    let _ = ready.send(Ok(opened));
    // Fault injection for the test that shows a dead shard ends the process.
    if std::env::var("KEEL_FAULT_PANIC_SHARD").ok() == Some(id.to_string()) {
        glommio::spawn_local(async move {
            glommio::timer::sleep(Duration::from_millis(300)).await;
            panic!("fault injected by KEEL_FAULT_PANIC_SHARD");
        })
        .detach();
    }

    let acceptor = accept::Acceptor {
        shard: shard.clone(),
        stopping: stopping.clone(),
        stop,
        connections,
        metrics,
        local: Rc::new(Cell::new(0usize)),
        sockets: Rc::default(),
    };
    let kafka: Vec<_> = kafka_listeners
        .into_iter()
        .enumerate()
        .map(|(number, listener)| {
            let protocol = accept::Protocol::Kafka(number);
            glommio::spawn_local(acceptor.clone().run(listener, protocol))
        })
        .collect();
    acceptor
        .clone()
        .run(listener, accept::Protocol::Native)
        .await;
    for kafka in kafka {
        kafka.await;
    }
    let (local_connections, open_sockets) = (acceptor.local, acceptor.sockets);
    // Drain: stop reading from clients (their pending requests still get answers), wait
    // for the connections to finish, then flush and close every log.
    stopping.set(true);
    for socket in open_sockets.borrow().iter() {
        // SAFETY: shutdown(2) of a socket that is still open (it leaves the set when its
        // connection task ends, before the descriptor closes).
        unsafe { libc::shutdown(*socket, libc::SHUT_RD) };
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while local_connections.get() > 0 && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    shard.close_all().await;
    if let Some(server) = metrics_server {
        server.await;
    }
    tracing::info!(shard = id, "shard stopped");
    Ok(())
}
