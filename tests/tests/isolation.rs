//! A leader cut off from the other brokers (its own network namespace, link down) while it
//! keeps running: it acknowledges nothing with acks=all, the others elect a new leader and
//! go on, and when it returns what it wrote alone is truncated, so every replica ends with
//! the same bytes, and its producers forget the sequences it cut. Needs root and iproute2 (the test says so otherwise).

use bytes::Bytes;
use keel_client::{Acks, Consumer, OffsetReset, Producer, ProducerRecord};
use keel_protocol::api::{ErrorCode, ProducePartition, Request, Response, TopicEntries};
use keel_protocol::batch::{BatchBuilder, NewRecord, ProducerFields};
use keel_tests::broker::Client;
use keel_tests::cluster::{runtime, segment_data};
use keel_tests::netns::{Net, NsBroker};
use keel_tests::tool::{keel, ok};
use std::time::{Duration, Instant};

fn tool(bootstrap: &str, args: &[&str]) -> std::process::Output {
    let mut all = vec!["--bootstrap", bootstrap];
    all.extend_from_slice(args);
    keel(None, &all, None)
}

fn describe(bootstrap: &str) -> Option<serde_json::Value> {
    let output = tool(bootstrap, &["topic", "describe", "cut", "--format", "json"]);
    output
        .status
        .success()
        .then(|| serde_json::from_slice(&output.stdout).ok())
        .flatten()
}

fn wait_for(timeout: Duration, what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn send_all(bootstrap: String, values: Vec<String>) {
    runtime().block_on(async move {
        let producer = Producer::builder(bootstrap)
            .acks(Acks::All)
            .retries(200, Duration::from_millis(50))
            .build()
            .await
            .unwrap();
        for value in values {
            producer
                .send(ProducerRecord::new("cut", value).partition(0))
                .await
                .expect("acknowledged");
        }
        producer.close().await;
    });
}

#[test]
fn an_isolated_leader_acknowledges_nothing_and_its_lone_writes_are_truncated() {
    let net = Net::new(3);
    let dir = tempfile::tempdir().unwrap();
    let voters = (1..=3)
        .map(|i| format!("{i}@{}:7072", net.addr(i)))
        .collect::<Vec<_>>()
        .join(",");
    let mut nodes: Vec<NsBroker> = (1..=3)
        .map(|i| NsBroker::start(&net, i, &voters, &dir.path().join(format!("node{i}"))))
        .collect();
    let all = |skip: Option<usize>| {
        nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != skip)
            .map(|(_, n)| n.addr.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let bootstrap = all(None);
    wait_for(Duration::from_secs(30), "three brokers alive", || {
        let output = tool(&bootstrap, &["cluster", "describe", "--format", "json"]);
        serde_json::from_slice::<serde_json::Value>(&output.stdout)
            .ok()
            .and_then(|d| d["brokers"].as_array().cloned())
            .is_some_and(|b| b.iter().filter(|b| b["state"] == "alive").count() == 3)
    });
    ok(&tool(
        &bootstrap,
        &[
            "topic",
            "create",
            "cut",
            "--partitions",
            "1",
            "--replication-factor",
            "3",
            "--config",
            "min.insync.replicas=2",
        ],
    ));
    wait_for(Duration::from_secs(20), "ISR of three", || {
        describe(&bootstrap).is_some_and(|d| {
            d["partitions"][0]["isr"]
                .as_array()
                .is_some_and(|i| i.len() == 3)
        })
    });
    send_all(
        bootstrap.clone(),
        (0..50).map(|i| format!("before-{i}")).collect(),
    );
    let leader = describe(&bootstrap).unwrap()["partitions"][0]["leader"]
        .as_u64()
        .unwrap() as usize;
    let leader_addr = nodes[leader - 1].addr;

    // Cut the leader off. From inside its namespace, an acks=all write reaches it: it is
    // appended there alone and never acknowledged.
    net.isolate(leader);
    // An idempotent producer's batch: the leader remembers its sequence as stored.
    let lone = idempotent_batch("written-alone");
    let answer = net.inside(leader, move || {
        let mut client = Client::connect(leader_addr);
        client.produce("cut", 0, -1, lone)
    });
    assert_ne!(
        answer,
        ErrorCode::None,
        "an isolated leader acknowledged an acks=all write"
    );

    // The others elect a new leader and acknowledge writes.
    let others = all(Some(leader - 1));
    wait_for(
        Duration::from_secs(30),
        "a new leader among the others",
        || {
            describe(&others).is_some_and(|d| {
                let l = d["partitions"][0]["leader"].as_i64().unwrap_or(-1);
                l > 0 && l as usize != leader
            })
        },
    );
    send_all(
        others.clone(),
        (0..50).map(|i| format!("during-{i}")).collect(),
    );

    // It returns: truncates its lone write, catches up, rejoins the ISR.
    net.heal(leader);
    wait_for(
        Duration::from_secs(40),
        "the old leader back in the ISR",
        || {
            describe(&others).is_some_and(|d| {
                d["partitions"][0]["isr"]
                    .as_array()
                    .is_some_and(|i| i.iter().any(|r| r.as_u64() == Some(leader as u64)))
            })
        },
    );
    // Leading again, it has forgotten the sequence it cut: the producer's retry is
    // stored, not answered as a duplicate of offset 50 (which holds "during-0" now).
    let replicas = describe(&bootstrap).unwrap()["partitions"][0]["replicas"].clone();
    assert_eq!(
        replicas[0].as_u64(),
        Some(leader as u64),
        "preferred leader"
    );
    ok(&tool(&bootstrap, &["partition", "elect-leaders", "cut"]));
    wait_for(
        Duration::from_secs(30),
        "the old leader leading again",
        || {
            describe(&bootstrap)
                .is_some_and(|d| d["partitions"][0]["leader"].as_u64() == Some(leader as u64))
        },
    );
    let mut client = Client::connect(leader_addr);
    // The broker may learn that it leads a moment after the controller says so.
    let deadline = Instant::now() + Duration::from_secs(10);
    let retried = loop {
        let answer = produce_at(&mut client, idempotent_batch("retried-alone"));
        if answer.0 != ErrorCode::NotLeaderOrFollower || Instant::now() > deadline {
            break answer;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        retried,
        (ErrorCode::None, 100),
        "the retry of a batch cut by the truncation"
    );
    send_all(
        bootstrap.clone(),
        (0..10).map(|i| format!("after-{i}")).collect(),
    );
    let read = runtime().block_on({
        let bootstrap = bootstrap.clone();
        async move {
            let mut consumer = Consumer::builder(bootstrap)
                .offset_reset(OffsetReset::Earliest)
                .build()
                .await
                .unwrap();
            consumer.assign([("cut".to_owned(), 0)]);
            let mut seen = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(30);
            while seen.len() < 111 && Instant::now() < deadline {
                if let Ok(records) = consumer.poll(Duration::from_millis(300)).await {
                    for r in records {
                        seen.push(String::from_utf8(r.value.unwrap().to_vec()).unwrap());
                    }
                }
            }
            seen
        }
    });
    let expected: Vec<String> = (0..50)
        .map(|i| format!("before-{i}"))
        .chain((0..50).map(|i| format!("during-{i}")))
        .chain(["retried-alone".to_owned()])
        .chain((0..10).map(|i| format!("after-{i}")))
        .collect();
    assert_eq!(
        read, expected,
        "every acknowledged record once, in order, nothing else"
    );

    // Every replica holds the same bytes, and the lone write is nowhere.
    let path = |i: usize| {
        dir.path()
            .join(format!("node{i}/cut-0/00000000000000000000.log"))
    };
    let stored = |i: usize| segment_data(&path(i));
    wait_for(
        Duration::from_secs(20),
        "every replica holding the same bytes",
        || {
            let first = stored(1);
            (2..=3).all(|i| stored(i) == first)
        },
    );
    for node in &mut nodes {
        node.kill();
    }
    for i in 1..=3 {
        let log = std::fs::read(path(i)).unwrap();
        assert!(
            !log.windows(13).any(|w| w == b"written-alone"),
            "node {i}: the isolated leader's lone write survived"
        );
    }
}

/// A batch of one record from idempotent producer 4242, epoch 0, sequence 0.
fn idempotent_batch(value: &str) -> Bytes {
    let mut builder = BatchBuilder::new();
    builder.producer(ProducerFields {
        producer_id: 4242,
        producer_epoch: 0,
        base_sequence: 0,
    });
    builder.push(NewRecord::value(1_700_000_000_000, value.to_owned()));
    Bytes::from(builder.build().unwrap())
}

/// Produces `records` to partition 0 of "cut" with acks=all: (error, base offset).
fn produce_at(client: &mut Client, records: Bytes) -> (ErrorCode, i64) {
    let Response::Produce { topics } = client.call(Request::Produce {
        acks: -1,
        timeout_ms: 10_000,
        topics: vec![TopicEntries {
            topic: "cut".into(),
            partitions: vec![ProducePartition {
                partition: 0,
                records,
            }],
        }],
    }) else {
        panic!("Produce answered with another response")
    };
    let answer = &topics[0].partitions[0];
    (answer.error, answer.base_offset)
}
