//! Start-up behaviour: refusal lines, and recovery from interrupted topic changes.

use keel_protocol::api::{ErrorCode, Request, Response};
use keel_tests::broker::{server_binary, Broker};
use std::process::Command;

#[test]
fn low_memlock_is_refused_with_one_clear_line() {
    // Goal: a host glommio cannot run on gets one line naming the fix, not a panic.
    let dir = tempfile::tempdir().unwrap();
    let script = format!(
        "ulimit -l 64 && exec {} --data-dir {} --listen 127.0.0.1:0",
        server_binary().display(),
        dir.path().display()
    );
    let output = Command::new("sh")
        .arg("-c")
        .arg(script)
        .output()
        .expect("run keel-server");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "exactly one line: {stderr}");
    assert!(
        lines[0].contains("locked-memory limit") && lines[0].contains("ulimit -l"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"));
}

#[test]
fn bad_flags_are_refused_with_usage_exit_code() {
    // Goal: invalid configuration is named and exits 2.
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(server_binary())
        .args(["--fsync", "sometimes", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("fsync"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn interrupted_topic_changes_leave_no_half_made_topic() {
    // Goal: a partition directory without a registered topic (delete interrupted after the
    // registry was written) is removed; a registered topic whose directories are missing
    // (create interrupted before they were made) comes up whole.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("ghost-0")).unwrap();
    std::fs::write(
        dir.path().join("ghost-0").join("00000000000000000000.log"),
        b"",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("topics.toml"),
        "[topics.born]\npartitions = 3\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("topics.toml.tmp"),
        "garbage from an interrupted write",
    )
    .unwrap();
    let broker = Broker::start(&server_binary(), dir.path(), &["--shards", "2"]);
    assert!(
        !dir.path().join("ghost-0").exists(),
        "orphan partition removed"
    );
    assert!(
        !dir.path().join("topics.toml.tmp").exists(),
        "stale temporary registry removed"
    );
    let mut client = broker.client();
    let Response::Metadata { topics, .. } = client.call(Request::Metadata { topics: vec![] })
    else {
        panic!()
    };
    let topics: Vec<_> = topics
        .into_iter()
        .filter(|t| !t.topic.starts_with("__"))
        .collect();
    assert_eq!(topics.len(), 1);
    assert_eq!(topics[0].topic, "born");
    assert!(
        topics[0]
            .partitions
            .iter()
            .all(|p| p.error == ErrorCode::None),
        "{topics:?}"
    );
    for partition in 0..3 {
        assert!(dir.path().join(format!("born-{partition}")).is_dir());
    }
}

#[test]
fn sigterm_with_idle_clients_connected_stops_promptly_and_cleanly() {
    // Goal: a clean stop does not wait for idle clients to hang up, and exits 0.
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(&server_binary(), dir.path(), &["--shards", "2"]);
    let mut clients: Vec<_> = (0..6).map(|_| broker.client()).collect();
    for client in &mut clients {
        let Response::ApiVersions { .. } = client.call(Request::ApiVersions) else {
            panic!()
        };
    }
    let started = std::time::Instant::now();
    let status = broker.stop();
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "stopped in {:?}",
        started.elapsed()
    );
}

#[test]
fn config_file_limits_connections_and_partitions() {
    // Goal: keel.toml is read, and the connection and partition limits answer with their
    // error codes instead of failing later.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("keel.toml");
    std::fs::write(
        &config,
        "connections_max = 2\npartitions_max = 5\nshards = 1\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let broker = Broker::start(
        &server_binary(),
        &data,
        &["--config", config.to_str().unwrap()],
    );
    let mut first = broker.client();
    let mut second = broker.client();
    let Response::ApiVersions { .. } = first.call(Request::ApiVersions) else {
        panic!()
    };
    let Response::ApiVersions { .. } = second.call(Request::ApiVersions) else {
        panic!()
    };
    let mut third = broker.client();
    let refused = third.receive_raw().expect("an error frame before closing");
    assert_eq!(refused.error_code, ErrorCode::TooManyConnections);
    assert!(third.receive_raw().is_none(), "then closed");

    let topic = |name: &str, partitions| keel_protocol::api::NewTopic {
        name: name.into(),
        partitions,
        replication_factor: 1,
        configs: vec![],
    };
    let Response::CreateTopics { topics } = first.call(Request::CreateTopics {
        topics: vec![topic("a", 3), topic("b", 3)],
    }) else {
        panic!()
    };
    assert_eq!(topics[0].error, ErrorCode::None);
    assert_eq!(
        topics[1].error,
        ErrorCode::TooManyPartitions,
        "{}",
        topics[1].message
    );
    let Response::CreateTopics { topics } = first.call(Request::CreateTopics {
        topics: vec![topic("r", 1)]
            .into_iter()
            .map(|mut t| {
                t.replication_factor = 3;
                t
            })
            .collect(),
    }) else {
        panic!()
    };
    assert_eq!(topics[0].error, ErrorCode::InvalidReplicationFactor);
}

#[test]
fn the_default_relative_data_dir_works() {
    // Goal: `keel-server` with no --data-dir (./keel-data) stores and serves data; io_uring
    // cannot open relative paths, so the broker must resolve them.
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let metrics = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(server_binary())
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--metrics-listen",
            &format!("127.0.0.1:{metrics}"),
            "--kafka-listen",
            "127.0.0.1:0",
        ])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    let mut client =
        keel_tests::broker::Client::connect(format!("127.0.0.1:{port}").parse().unwrap());
    let Response::ApiVersions { .. } = client.call(Request::ApiVersions) else {
        panic!()
    };
    let topic = keel_protocol::api::NewTopic {
        name: "rel".into(),
        partitions: 1,
        replication_factor: 1,
        configs: vec![],
    };
    let Response::CreateTopics { topics } = client.call(Request::CreateTopics {
        topics: vec![topic],
    }) else {
        panic!()
    };
    assert_eq!(topics[0].error, ErrorCode::None);
    let mut builder = keel_protocol::batch::BatchBuilder::new();
    builder.push(keel_protocol::batch::NewRecord::value(1, "x"));
    let request = Request::Produce {
        acks: -1,
        timeout_ms: 5000,
        topics: vec![keel_protocol::api::TopicEntries {
            topic: "rel".into(),
            partitions: vec![keel_protocol::api::ProducePartition {
                partition: 0,
                records: builder.build().unwrap().into(),
            }],
        }],
    };
    let Response::Produce { topics } = client.call(request) else {
        panic!()
    };
    assert_eq!(topics[0].partitions[0].error, ErrorCode::None);
    assert!(dir
        .path()
        .join("keel-data")
        .join("rel-0")
        .join("00000000000000000000.log")
        .exists());
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
}

/// Runs `keel-server` with `args` until it exits (at most 30 s); (status, stderr).
fn run_to_exit(args: &[String], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut child = Command::new(server_binary())
        .args(args)
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start keel-server");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status.code(), stderr_of(&mut child));
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("keel-server did not exit within 30 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// What an exited child wrote to its piped standard error.
fn stderr_of(child: &mut std::process::Child) -> String {
    use std::io::Read;
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr piped")
        .read_to_string(&mut stderr)
        .expect("stderr is text");
    stderr
}

/// Flags for a broker on `dir` listening on `listen` and `metrics`.
fn server_args(dir: &std::path::Path, listen: String, metrics: String) -> Vec<String> {
    vec![
        "--data-dir".to_string(),
        dir.display().to_string(),
        "--listen".into(),
        listen,
        "--metrics-listen".into(),
        metrics,
        "--kafka-listen".into(),
        "127.0.0.1:0".into(),
    ]
}

fn free_addr() -> String {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string()
}

#[test]
fn a_second_broker_on_a_data_directory_in_use_is_refused_naming_the_holder() {
    // Goal: two brokers on one directory once both ran and overwrote each other's data.
    let dir = tempfile::tempdir().unwrap();
    let mut first = Broker::start(&server_binary(), dir.path(), &[]);
    let args = server_args(dir.path(), free_addr(), free_addr());
    let (code, stderr) = run_to_exit(&args, &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("in use by another keel-server")
            && stderr.contains(&format!("pid {}", first.pid())),
        "{stderr}"
    );
    // The first broker is untouched and still serves.
    let mut client = first.client();
    assert!(matches!(
        client.call(Request::Metadata { topics: vec![] }),
        Response::Metadata { .. }
    ));
    // Once it is gone (even by kill -9) the directory is free again.
    first.stop_with(9);
    let again = Broker::start(&server_binary(), dir.path(), &[]);
    drop(again);
}

#[test]
fn a_second_broker_on_a_port_in_use_is_refused() {
    // Goal: SO_REUSEPORT once let a second broker share the port; clients then reached
    // either broker at random.
    let first_dir = tempfile::tempdir().unwrap();
    let second_dir = tempfile::tempdir().unwrap();
    let first = Broker::start(&server_binary(), first_dir.path(), &[]);
    for (listen, metrics) in [
        (first.addr.to_string(), free_addr()),
        (free_addr(), first.metrics_addr.to_string()),
    ] {
        let args = server_args(second_dir.path(), listen.clone(), metrics.clone());
        let (code, stderr) = run_to_exit(&args, &[]);
        assert_eq!(code, Some(1), "{stderr}");
        assert!(stderr.contains("address is in use"), "{stderr}");
    }
}

#[test]
fn two_brokers_started_in_the_same_instant_never_share_a_port() {
    // Goal: the check before binding passes for both of two brokers started together (the
    // README's cluster recipe once started three on the default Kafka port 9092, and all
    // three listened there through SO_REUSEPORT). Once bound, each checks every listener
    // is its own: at most one keeps the port, and a refusal names the address.
    for shared in ["--listen", "--kafka-listen"] {
        let addr = free_addr();
        let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        let mut children: Vec<std::process::Child> = dirs
            .iter()
            .map(|dir| {
                let mut args = server_args(dir.path(), free_addr(), free_addr());
                let at = args.iter().position(|a| a == shared).unwrap();
                args[at + 1] = addr.clone();
                Command::new(server_binary())
                    .args(&args)
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .expect("start keel-server")
            })
            .collect();
        let mut announced = 0;
        for child in &mut children {
            let mut line = String::new();
            use std::io::BufRead;
            let stdout = child.stdout.take().unwrap();
            let _ = std::io::BufReader::new(stdout).read_line(&mut line);
            if line.contains("listening on") {
                announced += 1;
                continue;
            }
            let status = child.wait().unwrap();
            let stderr = stderr_of(child);
            assert_eq!(status.code(), Some(1), "{stderr}");
            assert!(
                stderr.contains(&format!("cannot listen on {addr}"))
                    && stderr.contains("address is in use"),
                "{shared}: {stderr}"
            );
        }
        assert!(announced <= 1, "{shared}: both brokers announced {addr}");
        for mut child in children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn a_shard_that_dies_ends_the_process_with_a_line_naming_it() {
    // Goal: no zombie broker: a panicking shard once left the port open while requests
    // hung forever, and the process later exited 0.
    let dir = tempfile::tempdir().unwrap();
    let mut args = server_args(dir.path(), free_addr(), free_addr());
    args.extend(["--shards".into(), "2".into()]);
    let (code, stderr) = run_to_exit(&args, &[("KEEL_FAULT_PANIC_SHARD", "1")]);
    assert_eq!(code, Some(70), "{stderr}");
    assert!(
        stderr.contains("keel-server: keel-shard-1")
            && stderr.contains("failed: fault injected by KEEL_FAULT_PANIC_SHARD"),
        "{stderr}"
    );
}

#[test]
fn logs_to_a_pipe_carry_no_colour_codes() {
    // Goal: only a terminal gets ANSI colours.
    let dir = tempfile::tempdir().unwrap();
    let args = server_args(dir.path(), free_addr(), free_addr());
    let (_, stderr) = run_to_exit(
        &args,
        &[("KEEL_FAULT_PANIC_SHARD", "0"), ("RUST_LOG", "info")],
    );
    assert!(stderr.contains("INFO"), "{stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "colour codes in piped logs: {stderr:?}"
    );
}

#[test]
fn every_partition_answers_from_the_first_accepted_connection() {
    // Goal: a shard once listened as soon as its own partitions were open, so a client
    // connecting while the other shard still recovered a big segment was told that
    // shard's partitions did not exist.
    use keel_protocol::batch::{BatchBuilder, NewRecord};
    let dir = tempfile::tempdir().unwrap();
    {
        let mut broker = Broker::start(&server_binary(), dir.path(), &["--shards", "2"]);
        let mut client = broker.client();
        client.create_topic("early", 2);
        // Partition 0 gets ~96 MiB, so its shard takes a while to scan it on restart.
        let mut builder = BatchBuilder::new();
        for i in 0..1000 {
            builder.push(NewRecord::value(i, vec![b'x'; 1024]));
        }
        let batch = bytes::Bytes::from(builder.build().unwrap());
        for _ in 0..96 {
            assert_eq!(
                client.produce("early", 0, 1, batch.clone()),
                ErrorCode::None
            );
        }
        broker.stop();
    }
    let (listen, metrics) = (free_addr(), free_addr());
    let mut child = Command::new(server_binary())
        .args(server_args(dir.path(), listen.clone(), metrics))
        .args(["--shards", "2"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::net::TcpStream::connect(&listen).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "broker never listened"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    // Connections land on either shard: ask from several.
    let mut refused = Vec::new();
    for _ in 0..8 {
        let mut client = keel_tests::broker::Client::connect(listen.parse().unwrap());
        let Response::Fetch { topics } = client.call(Request::Fetch {
            max_wait_ms: 0,
            min_bytes: 1,
            max_bytes: 1 << 20,
            topics: vec![keel_protocol::api::TopicEntries {
                topic: "early".into(),
                partitions: (0..2)
                    .map(|partition| keel_protocol::api::FetchPartition {
                        partition,
                        fetch_offset: 0,
                        partition_max_bytes: 1024,
                    })
                    .collect(),
            }],
        }) else {
            panic!("Fetch answered with another response")
        };
        refused.extend(
            topics[0]
                .partitions
                .iter()
                .filter(|p| p.error != ErrorCode::None)
                .map(|p| (p.partition, p.error)),
        );
    }
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait().unwrap();
    assert!(
        refused.is_empty(),
        "partitions refused at start-up: {refused:?}"
    );
}

#[test]
fn a_listener_beyond_loopback_without_authentication_needs_allow_plaintext() {
    // Goal: a broker moved onto a real network must not serve everyone by accident.
    let dir = tempfile::tempdir().unwrap();
    let port = free_addr().rsplit_once(':').unwrap().1.to_owned();
    let args = server_args(dir.path(), format!("0.0.0.0:{port}"), free_addr());
    let (code, stderr) = run_to_exit(&args, &[]);
    assert_eq!(code, Some(2), "a configuration refused: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(
        lines[0].contains(&format!("0.0.0.0:{port}")) && lines[0].contains("--allow-plaintext"),
        "{stderr}"
    );
    // The same on a trusted network, said so: it starts, and serves on loopback too.
    let mut args = args;
    args.push("--allow-plaintext".into());
    let mut child = Command::new(server_binary())
        .args(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start keel-server");
    let mut ready = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut ready,
    )
    .unwrap();
    assert!(
        ready.contains(&format!("listening on 0.0.0.0:{port}")),
        "{ready}"
    );
    let served = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).is_ok();
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
    assert!(served);
}
