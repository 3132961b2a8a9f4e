//! SASL on the native listener (`--native-security SASL_PLAINTEXT`) and the security admin
//! APIs behind `keel user|acl|quota`: the tool and keel-client authenticate with
//! SCRAM-SHA-512, SCRAM-SHA-256 and PLAIN from a client config file; users, ACLs and quotas
//! are made, listed and removed through the native protocol and take effect at once; a wrong
//! password, an unknown user and a client without SASL are refused; a session with a
//! lifetime (KIP-368) is renewed by the client and refused once it has ended.

use keel_client::connection::Connection;
use keel_client::{ClientSecurity, Consumer, OffsetReset, Producer, ProducerRecord};
use keel_protocol::api::{
    ErrorCode, FetchPartition, ListOffsetsPartition, ProducePartition, Request, Response,
    TopicEntries,
};
use keel_tests::in_process::InProcess;
use keel_tests::tool::{keel, ok};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

fn broker(dir: &Path, reauth_ms: &str) -> InProcess {
    InProcess::start(
        dir,
        &[
            "--native-security",
            "SASL_PLAINTEXT",
            "--sasl-mechanisms",
            "SCRAM-SHA-512,SCRAM-SHA-256,PLAIN",
            "--add-scram",
            "SCRAM-SHA-512:admin:admin-secret",
            "--authorizer",
            "on",
            "--super-users",
            "User:admin",
            "--connections-max-reauth-ms",
            reauth_ms,
        ],
    )
}

/// A client config file logging in as `user`.
fn login(dir: &Path, mechanism: &str, user: &str, password: &str) -> PathBuf {
    let path = dir.join(format!("{user}-{password}.properties"));
    let text = format!(
        "security.protocol=SASL_PLAINTEXT\nsasl.mechanism={mechanism}\nsasl.username={user}\nsasl.password={password}\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn tool(broker: &InProcess, config: Option<&Path>, args: &[&str], stdin: Option<&str>) -> Output {
    let addr = broker.addr.to_string();
    let mut all = vec!["--bootstrap", addr.as_str()];
    let config = config.map(|c| c.display().to_string());
    if let Some(config) = &config {
        all.extend(["--command-config", config.as_str()]);
    }
    all.extend_from_slice(args);
    keel(None, &all, stdin)
}

/// The standard error of a run that failed.
fn refused(output: &Output) -> String {
    assert!(
        !output.status.success(),
        "expected a refusal, got {}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn the_tool_authenticates_and_manages_users_acls_and_quotas() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let broker = broker(&data, "0");
    let admin = login(dir.path(), "SCRAM-SHA-512", "admin", "admin-secret");
    let admin = Some(admin.as_path());
    let run = |config, args: &[&str]| tool(&broker, config, args, None);

    // Users: made with the password salted by the tool; listed without their keys.
    ok(&run(
        admin,
        &["user", "create", "alice", "--password", "alice-secret"],
    ));
    let bob = [
        "user",
        "create",
        "bob",
        "--mechanism",
        "SCRAM-SHA-256",
        "--password-stdin",
    ];
    ok(&tool(&broker, admin, &bob, Some("bob-secret\n")));
    let users = ok(&run(admin, &["user", "list"]));
    for line in [
        "admin\tSCRAM-SHA-512\titerations=4096",
        "alice\tSCRAM-SHA-512\titerations=4096",
        "bob\tSCRAM-SHA-256\titerations=4096",
    ] {
        assert!(users.contains(line), "{line} in {users}");
    }
    let on_disk = std::fs::read_to_string(data.join("users.toml")).unwrap();
    assert!(on_disk.contains("alice") && !on_disk.contains("alice-secret"));

    // ACLs: alice may write and read topics prefixed orders-, except orders-secret (DENY
    // beats ALLOW); she may do nothing else.
    for topic in ["orders-eu", "orders-secret", "payments"] {
        ok(&run(admin, &["topic", "create", topic]));
    }
    for operation in ["WRITE", "READ"] {
        let add = [
            "acl",
            "add",
            "--principal",
            "User:alice",
            "--operation",
            operation,
        ];
        ok(&run(
            admin,
            &[&add[..], &["--topic", "orders-", "--prefixed"]].concat(),
        ));
    }
    let deny = [
        "acl",
        "add",
        "--principal",
        "User:alice",
        "--operation",
        "ALL",
    ];
    ok(&run(
        admin,
        &[&deny[..], &["--topic", "orders-secret", "--deny"]].concat(),
    ));
    let acls = ok(&run(admin, &["acl", "list", "--principal", "User:alice"]));
    assert_eq!(acls.lines().count(), 3, "{acls}");
    assert!(
        acls.contains("ALLOW User:alice WRITE TOPIC:orders- PREFIXED from *"),
        "{acls}"
    );
    assert!(
        acls.contains("DENY User:alice ALL TOPIC:orders-secret LITERAL from *"),
        "{acls}"
    );

    let alice = login(dir.path(), "SCRAM-SHA-512", "alice", "alice-secret");
    let alice = Some(alice.as_path());
    ok(&tool(
        &broker,
        alice,
        &["produce", "orders-eu"],
        Some("one\ntwo\n"),
    ));
    let read = [
        "consume",
        "orders-eu",
        "--from-beginning",
        "--max-messages",
        "2",
    ];
    assert_eq!(ok(&run(alice, &read)), "one\ntwo\n");
    let error = refused(&tool(&broker, alice, &["produce", "payments"], Some("x\n")));
    assert!(
        error.contains("not authorized to access this topic"),
        "{error}"
    );
    let error = refused(&tool(
        &broker,
        alice,
        &["produce", "orders-secret"],
        Some("x\n"),
    ));
    assert!(
        error.contains("not authorized to access this topic"),
        "{error}"
    );
    let error = refused(&run(alice, &["user", "list"]));
    assert!(
        error.contains("not authorized to act on the cluster"),
        "{error}"
    );
    let error = refused(&run(alice, &["topic", "delete", "orders-eu"]));
    assert!(error.contains("not authorized"), "{error}");

    // bob authenticates with SCRAM-SHA-256 (and PLAIN) but has no ACL: refused (his
    // idempotent producer's id first: no WRITE anywhere, no IDEMPOTENT_WRITE).
    let bob = login(dir.path(), "SCRAM-SHA-256", "bob", "bob-secret");
    let error = refused(&tool(
        &broker,
        Some(&bob),
        &["produce", "orders-eu"],
        Some("x\n"),
    ));
    assert!(error.contains("not authorized"), "{error}");
    let plain = login(dir.path(), "PLAIN", "bob", "bob-secret");
    let error = refused(&tool(
        &broker,
        Some(&plain),
        &["produce", "orders-eu"],
        Some("x\n"),
    ));
    assert!(error.contains("not authorized"), "{error}");

    // A wrong password, an unknown user, and no SASL at all are refused.
    let wrong = login(dir.path(), "SCRAM-SHA-512", "alice", "guess");
    let unknown = login(dir.path(), "SCRAM-SHA-512", "mallory", "alice-secret");
    for config in [Some(wrong.as_path()), Some(unknown.as_path()), None] {
        let error = refused(&run(config, &["topic", "list"]));
        assert!(
            error.to_lowercase().contains("authentication failed"),
            "{error}"
        );
    }

    // Quotas: set, listed, a rate of 0 removes it.
    let set = [
        "quota",
        "set",
        "--user",
        "alice",
        "--producer-byte-rate",
        "1048576",
    ];
    ok(&run(admin, &set));
    let default = [
        "quota",
        "set",
        "--user",
        "default",
        "--consumer-byte-rate",
        "2000000",
    ];
    ok(&run(admin, &default));
    let quotas = ok(&run(admin, &["quota", "list"]));
    assert!(
        quotas.contains("user=alice\tproducer_byte_rate=1048576"),
        "{quotas}"
    );
    assert!(
        quotas.contains("user=<default>\tconsumer_byte_rate=2000000"),
        "{quotas}"
    );
    let zero = [
        "quota",
        "set",
        "--user",
        "default",
        "--consumer-byte-rate",
        "0",
    ];
    ok(&run(admin, &zero));
    assert!(!ok(&run(admin, &["quota", "list"])).contains("<default>"));
    let error = refused(&run(alice, &["quota", "list"]));
    assert!(
        error.contains("not authorized to act on the cluster"),
        "{error}"
    );

    // Removing the WRITE binding takes effect at once; deleting alice ends her logins.
    let remove = [
        "acl",
        "remove",
        "--principal",
        "User:alice",
        "--operation",
        "WRITE",
    ];
    let removed = ok(&run(
        admin,
        &[&remove[..], &["--topic", "orders-", "--prefixed"]].concat(),
    ));
    assert_eq!(
        removed,
        "removed ALLOW User:alice WRITE TOPIC:orders- PREFIXED from *\n"
    );
    // No WRITE left anywhere: the idempotent producer cannot get an id (Kafka's rule).
    let error = refused(&tool(
        &broker,
        alice,
        &["produce", "orders-eu"],
        Some("x\n"),
    ));
    assert!(
        error.contains("not authorized to act on the cluster"),
        "{error}"
    );
    ok(&run(admin, &["user", "delete", "alice"]));
    let error = refused(&run(alice, &["topic", "list"]));
    assert!(
        error.to_lowercase().contains("authentication failed"),
        "{error}"
    );
    let users = ok(&run(admin, &["user", "list"]));
    assert!(!users.contains("alice"), "{users}");

    let page = broker.metrics();
    let count = |outcome: &str| {
        let labels = format!("mechanism=\"SCRAM-SHA-512\",outcome=\"{outcome}\"");
        keel_tests::broker::metric(&page, "keel_authentications_total", &labels)
    };
    let lines: Vec<&str> = page
        .lines()
        .filter(|l| l.contains("authentications"))
        .collect();
    assert!(
        count("failed") >= 3.0 && count("succeeded") >= 10.0,
        "{lines:?}"
    );
    // Every admin change is audited with its decision: the admin's topics, users, ACLs and
    // quotas allowed, alice's topic deletion denied.
    let changes = |operation: &str, outcome: &str| {
        let labels = format!("operation=\"{operation}\",outcome=\"{outcome}\"");
        keel_tests::broker::metric(&page, "keel_admin_changes_total", &labels)
    };
    let lines: Vec<&str> = page
        .lines()
        .filter(|l| l.contains("admin_changes"))
        .collect();
    assert!(changes("CREATE", "allowed") >= 3.0, "{lines:?}");
    assert!(changes("ALTER", "allowed") >= 6.0, "{lines:?}");
    assert!(changes("ALTER_CONFIGS", "allowed") >= 3.0, "{lines:?}");
    assert!(changes("DELETE", "denied") >= 1.0, "{lines:?}");
}

#[test]
fn keel_client_renews_sessions_with_a_lifetime_and_ended_ones_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path(), "1500");
    let addr = broker.addr.to_string();
    let admin = ClientSecurity::default()
        .sasl("SCRAM-SHA-512", "admin", "admin-secret")
        .unwrap();
    keel_tests::cluster::runtime().block_on(async move {
        // A raw connection: served within its session, refused once it has ended.
        let connection = Connection::connect_with(&addr, &admin).await.unwrap();
        let started = std::time::Instant::now();
        // Served until the 1.5 s session ends, then refused (asked every 50 ms, for at most
        // 10 s).
        let refused_after = loop {
            match connection.call(&Request::ListGroups).await {
                Ok(_) => assert!(started.elapsed() < Duration::from_secs(10), "never refused"),
                Err(keel_client::Error::Broker { code, .. }) => {
                    assert_eq!(code, ErrorCode::SaslAuthenticationFailed);
                    break started.elapsed();
                }
                Err(other) => panic!("an ended session is refused, got {other}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(
            refused_after >= Duration::from_millis(1300),
            "{refused_after:?}"
        );
        assert!(connection.is_broken(), "the client knows its session ended");
        // Producers and consumers connect again as sessions near their end.
        let admin_client = keel_client::Admin::connect_with(&addr, admin.clone())
            .await
            .unwrap();
        admin_client
            .create_topic("lifetimes", 1, &[])
            .await
            .unwrap();
        let producer = Producer::builder(addr.clone())
            .security(admin.clone())
            .build()
            .await
            .unwrap();
        for i in 0..16 {
            let record = ProducerRecord::new("lifetimes", format!("record-{i}"));
            producer.send(record).await.unwrap();
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        producer.close().await;
        let mut consumer = Consumer::builder(addr.clone())
            .security(admin.clone())
            .offset_reset(OffsetReset::Earliest)
            .build()
            .await
            .unwrap();
        consumer.assign([("lifetimes".to_string(), 0)]);
        let mut values = Vec::new();
        while values.len() < 16 {
            for record in consumer.poll(Duration::from_secs(5)).await.unwrap() {
                values.push(String::from_utf8(record.value.unwrap().to_vec()).unwrap());
            }
        }
        let wanted: Vec<String> = (0..16).map(|i| format!("record-{i}")).collect();
        assert_eq!(values, wanted);
    });
}

/// Kafka's rules on the native listener: what a user lists is what they may describe —
/// topics in Metadata, groups in ListGroups, and a group's committed offsets fetched for
/// every topic; a produce or fetch naming a topic they may use and one they may not is
/// served for the first and refused for the second.
#[test]
fn a_user_gets_and_lists_only_what_acls_allow() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(&dir.path().join("data"), "0");
    let admin = login(dir.path(), "SCRAM-SHA-512", "admin", "admin-secret");
    let admin = Some(admin.as_path());
    let run = |args: &[&str], stdin| ok(&tool(&broker, admin, args, stdin));
    run(
        &["user", "create", "alice", "--password", "alice-secret"],
        None,
    );
    let bindings = [
        ("READ", "--topic", "orders-"),
        ("WRITE", "--topic", "orders-"),
        ("READ", "--group", "alice-group"),
    ];
    for (operation, resource, name) in bindings {
        let mut add = vec!["acl", "add", "--principal", "User:alice"];
        add.extend(["--operation", operation, resource, name]);
        if resource == "--topic" {
            add.push("--prefixed");
        }
        run(&add, None);
    }
    // The admin reads both topics in alice's group and in another.
    for topic in ["orders-eu", "payments"] {
        run(&["topic", "create", topic], None);
        run(&["produce", topic], Some("one\n"));
        for group in ["alice-group", "admin-group"] {
            let read = ["consume", topic, "--group", group, "--from-beginning"];
            run(&[&read[..], &["--max-messages", "1"]].concat(), None);
        }
    }
    let alice = login(dir.path(), "SCRAM-SHA-512", "alice", "alice-secret");
    let as_alice = |args: &[&str]| ok(&tool(&broker, Some(&alice), args, None));
    let topics = as_alice(&["topic", "list"]);
    assert_eq!(topics, "orders-eu\n", "alice's topics");
    let groups = as_alice(&["group", "list"]);
    assert!(
        groups.contains("alice-group") && !groups.contains("admin-group"),
        "alice's groups: {groups}"
    );
    let addr = broker.addr.to_string();
    let security = ClientSecurity::default()
        .sasl("SCRAM-SHA-512", "alice", "alice-secret")
        .unwrap();
    keel_tests::cluster::runtime().block_on(async move {
        let connection = Connection::connect_with(&addr, &security).await.unwrap();
        let every = Request::OffsetFetch {
            group: "alice-group".into(),
            topics: Vec::new(),
        };
        let answer = connection.call(&every).await.unwrap();
        let Response::OffsetFetch { topics, .. } = answer else {
            panic!("an offset-fetch answer expected, got {answer:?}");
        };
        let names: Vec<&str> = topics.iter().map(|t| t.topic.as_str()).collect();
        assert_eq!(names, ["orders-eu"], "alice's group's offsets");

        // One request, two topics: orders-eu served, payments refused.
        let mut batch = keel_protocol::batch::BatchBuilder::new();
        batch.push(keel_protocol::batch::NewRecord::value(1, b"two".to_vec()));
        let records = bytes::Bytes::from(batch.build().unwrap());
        let produce = Request::Produce {
            acks: -1,
            timeout_ms: 10_000,
            topics: ["orders-eu", "payments"]
                .map(|topic| TopicEntries {
                    topic: topic.into(),
                    partitions: vec![ProducePartition {
                        partition: 0,
                        records: records.clone(),
                    }],
                })
                .to_vec(),
        };
        let answer = connection.call(&produce).await.unwrap();
        let Response::Produce { topics } = answer else {
            panic!("a produce answer expected, got {answer:?}");
        };
        let outcome = |topic: &str| {
            let entry = topics.iter().find(|t| t.topic == topic).unwrap();
            (entry.partitions[0].error, entry.partitions[0].base_offset)
        };
        assert_eq!(
            outcome("orders-eu"),
            (ErrorCode::None, 1),
            "alice writes orders-eu"
        );
        assert_eq!(outcome("payments").0, ErrorCode::TopicAuthorizationFailed);
        let fetch = Request::Fetch {
            max_wait_ms: 0,
            min_bytes: 1,
            max_bytes: 1 << 20,
            topics: ["orders-eu", "payments"]
                .map(|topic| TopicEntries {
                    topic: topic.into(),
                    partitions: vec![FetchPartition {
                        partition: 0,
                        fetch_offset: 0,
                        partition_max_bytes: 1 << 20,
                    }],
                })
                .to_vec(),
        };
        let answer = connection.call(&fetch).await.unwrap();
        let Response::Fetch { topics } = answer else {
            panic!("a fetch answer expected, got {answer:?}");
        };
        let read =
            |topic: &str| topics.iter().find(|t| t.topic == topic).unwrap().partitions[0].clone();
        let orders = read("orders-eu");
        assert_eq!((orders.error, orders.high_watermark), (ErrorCode::None, 2));
        assert!(
            orders.records.windows(3).any(|w| w == b"two"),
            "alice reads orders-eu"
        );
        let payments = read("payments");
        assert_eq!(payments.error, ErrorCode::TopicAuthorizationFailed);
        assert!(payments.records.is_empty());

        let latest = Request::ListOffsets {
            topics: ["orders-eu", "payments"]
                .map(|topic| TopicEntries {
                    topic: topic.into(),
                    partitions: vec![ListOffsetsPartition {
                        partition: 0,
                        timestamp: -1,
                    }],
                })
                .to_vec(),
        };
        let answer = connection.call(&latest).await.unwrap();
        let Response::ListOffsets { topics } = answer else {
            panic!("a list-offsets answer expected, got {answer:?}");
        };
        let found = |topic: &str| {
            let p = &topics.iter().find(|t| t.topic == topic).unwrap().partitions[0];
            (p.error, p.offset)
        };
        assert_eq!(found("orders-eu"), (ErrorCode::None, 2));
        assert_eq!(found("payments").0, ErrorCode::TopicAuthorizationFailed);

        let commit = Request::OffsetCommit {
            group: "alice-group".into(),
            generation: -1,
            member_id: String::new(),
            topics: ["orders-eu", "payments"]
                .map(|topic| TopicEntries {
                    topic: topic.into(),
                    partitions: vec![(0, 1)],
                })
                .to_vec(),
        };
        let answer = connection.call(&commit).await.unwrap();
        let Response::OffsetCommit { topics } = answer else {
            panic!("an offset-commit answer expected, got {answer:?}");
        };
        let committed =
            |topic: &str| topics.iter().find(|t| t.topic == topic).unwrap().partitions[0].1;
        assert_eq!(
            committed("orders-eu"),
            ErrorCode::None,
            "alice commits orders-eu"
        );
        assert_eq!(committed("payments"), ErrorCode::TopicAuthorizationFailed);

        // Past request_partitions_max (10,000) entries nothing is looked at, denied or
        // not: every entry answers INVALID_REQUEST.
        let entries = (0..10_001)
            .map(|partition| ProducePartition {
                partition,
                records: records.clone(),
            })
            .collect();
        let produce = Request::Produce {
            acks: 1,
            timeout_ms: 10_000,
            topics: vec![TopicEntries {
                topic: "payments".into(),
                partitions: entries,
            }],
        };
        let answer = connection.call(&produce).await.unwrap();
        let Response::Produce { topics } = answer else {
            panic!("a produce answer expected, got {answer:?}");
        };
        let partitions = &topics[0].partitions;
        assert_eq!(partitions.len(), 10_001);
        assert!(
            partitions
                .iter()
                .all(|p| p.error == ErrorCode::InvalidRequest),
            "every entry refused as invalid: {:?}",
            partitions[0]
        );
    });
}
