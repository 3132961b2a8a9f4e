//! keel-client against three real `keel-server` processes: producers and consumers through
//! a leader move, a consumer group with one coordinator, fetches across leaders.

use keel_protocol::api::ErrorCode;
use keel_tests::cluster::{create_everywhere, runtime, Cluster};
use keel_tests::tool::ok;
use std::collections::BTreeSet;
use std::time::Duration;

// keel-client through a leader move: a producer (bootstrap list, acks=all, idempotent) and a
// consumer keep going while the broker leading one partition is killed and restarted (its
// partition is offline meanwhile: replication factor 1). Every record is acknowledged and
// read back once, in order, per partition.
#[test]
fn producers_and_consumers_keep_going_while_leadership_moves() {
    use keel_client::{Consumer, OffsetReset, Producer, ProducerRecord};
    let mut cluster = Cluster::start(3);
    create_everywhere(&cluster, "flow", 3);
    let controller = cluster.controller_leader(0).unwrap() as usize - 1;
    let victim = (0..3).find(|i| *i != controller).unwrap();
    let bootstrap = cluster.bootstrap();
    let runtime = runtime();
    let count: u32 = 600;
    let (kill_tx, kill_rx) = std::sync::mpsc::channel::<()>();
    let producing = {
        let bootstrap = bootstrap.clone();
        runtime.spawn(async move {
            let producer = Producer::builder(bootstrap)
                .retries(400, Duration::from_millis(50))
                .build()
                .await
                .unwrap();
            let mut deliveries = Vec::new();
            for i in 0..count {
                if i == count / 3 {
                    let _ = kill_tx.send(());
                }
                let record = ProducerRecord::new("flow", i.to_string()).partition(i % 3);
                deliveries.push(producer.enqueue(record).await.unwrap());
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let mut failed = Vec::new();
            for (i, delivery) in deliveries.into_iter().enumerate() {
                if let Err(e) = delivery.await {
                    failed.push(format!("{i}: {e}"));
                }
            }
            producer.close().await;
            failed
        })
    };
    kill_rx.recv().unwrap();
    cluster.nodes[victim].stop_with(libc::SIGKILL);
    std::thread::sleep(Duration::from_millis(500));
    cluster.nodes[victim].restart();
    let failed = runtime.block_on(producing).unwrap();
    assert!(
        failed.is_empty(),
        "every record acknowledged; {} failed, first: {:?}",
        failed.len(),
        &failed[..failed.len().min(3)]
    );
    let consumed = runtime.block_on(async move {
        let mut consumer = Consumer::builder(bootstrap)
            .offset_reset(OffsetReset::Earliest)
            .build()
            .await
            .unwrap();
        consumer.assign((0..3).map(|p| ("flow".to_owned(), p)));
        let mut seen: Vec<Vec<u32>> = vec![Vec::new(); 3];
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while seen.iter().map(Vec::len).sum::<usize>() < count as usize {
            assert!(
                std::time::Instant::now() < deadline,
                "consumed {:?}",
                seen.iter().map(Vec::len).collect::<Vec<_>>()
            );
            let Ok(records) = consumer.poll(Duration::from_millis(500)).await else {
                continue;
            };
            for record in records {
                let value: u32 = std::str::from_utf8(record.value.as_ref().unwrap())
                    .unwrap()
                    .parse()
                    .unwrap();
                seen[record.partition as usize].push(value);
            }
        }
        seen
    });
    for (p, values) in consumed.iter().enumerate() {
        let expected: Vec<u32> = (0..count).filter(|i| i % 3 == p as u32).collect();
        assert_eq!(
            values, &expected,
            "partition {p}: every record once, in order"
        );
    }
}

// Consumer groups in a cluster: the coordinator is the leader of the group's
// `__consumer_offsets` partition, found with FindCoordinator. Two members that bootstrap
// from different brokers join the same group, split the partitions and commit; a broker
// that is not the coordinator refuses the group's requests; the tool finds the group from
// any broker.
#[test]
fn a_group_has_one_coordinator_whichever_broker_members_reach() {
    use keel_client::{Consumer, OffsetReset, Producer, ProducerRecord};
    let cluster = Cluster::start(3);
    create_everywhere(&cluster, "grouped", 4);
    let (first, second) = (
        format!("{},{}", cluster.nodes[0].addr, cluster.nodes[1].addr),
        format!("{},{}", cluster.nodes[1].addr, cluster.nodes[2].addr),
    );
    let runtime = runtime();
    let count = 40u32;
    let (members, committed) = runtime.block_on(async move {
        let producer = Producer::builder(first.clone()).build().await.unwrap();
        for i in 0..count {
            let record = ProducerRecord::new("grouped", i.to_string()).partition(i % 4);
            producer.send(record).await.unwrap();
        }
        producer.close().await;
        // Each member polls in its own task (a join waits for every member to join).
        let seen = std::sync::Arc::new(std::sync::Mutex::new(BTreeSet::new()));
        let assigned = std::sync::Arc::new(std::sync::Mutex::new(vec![Vec::new(), Vec::new()]));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut tasks = Vec::new();
        for (index, bootstrap) in [first.clone(), second.clone()].into_iter().enumerate() {
            let (seen, assigned, stop) = (seen.clone(), assigned.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let mut consumer = Consumer::builder(bootstrap)
                    .group("g")
                    .offset_reset(OffsetReset::Earliest)
                    .build()
                    .await
                    .unwrap();
                consumer.subscribe(&["grouped"]).unwrap();
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    if let Ok(records) = consumer.poll(Duration::from_millis(200)).await {
                        let mut seen = seen.lock().unwrap();
                        for r in records {
                            seen.insert(String::from_utf8(r.value.unwrap().to_vec()).unwrap());
                        }
                    }
                    assigned.lock().unwrap()[index] = consumer.assignment();
                }
                let _ = consumer.commit_sync().await;
                consumer.assignment()
            }));
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let done = {
                let assigned = assigned.lock().unwrap();
                let mut all: Vec<(String, u32)> = assigned.iter().flatten().cloned().collect();
                let total = all.len();
                all.sort();
                all.dedup();
                seen.lock().unwrap().len() == count as usize
                    && assigned.iter().all(|a| !a.is_empty())
                    && total == 4
                    && all.len() == 4
            };
            if done {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "seen {} assigned {:?}",
                seen.lock().unwrap().len(),
                assigned.lock().unwrap()
            );
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let mut all: Vec<(String, u32)> = Vec::new();
        for task in tasks {
            all.extend(task.await.unwrap());
        }
        all.sort();
        all.dedup();
        let seen = seen.lock().unwrap().len();
        (all.len(), seen)
    });
    assert_eq!(members, 4, "the two members split the four partitions");
    assert_eq!(committed, count as usize);
    // Whichever broker the tool reaches, it finds the coordinator and the group's offsets.
    for i in 0..3 {
        let out = ok(&cluster.keel(i, &["group", "describe", "g"]));
        assert!(out.contains("grouped"), "node {i}: {out}");
    }
    // Listing groups from any broker finds it.
    for i in 0..3 {
        let out = ok(&cluster.keel(i, &["group", "list"]));
        assert!(
            out.lines()
                .any(|l| l.split_whitespace().next() == Some("g")),
            "node {i}: {out}"
        );
    }
    // The brokers that do not coordinate "g" refuse its requests.
    let refusals = (0..3)
        .filter(|i| {
            let mut client = cluster.nodes[*i].client();
            let request = keel_protocol::api::Request::OffsetFetch {
                group: "g".into(),
                topics: vec![],
            };
            client.send(&request);
            client
                .receive_raw()
                .is_some_and(|r| r.error_code == ErrorCode::NotCoordinator)
        })
        .count();
    assert_eq!(refusals, 2, "exactly one coordinator");
}

// A consumer reading partitions led by three brokers gets a record as soon as its leader
// answers: the other brokers' long polls (5 s here) do not hold it up.
#[test]
fn one_leader_long_poll_does_not_hold_up_another() {
    use keel_client::{Consumer, OffsetReset, Producer, ProducerRecord};
    let cluster = Cluster::start(3);
    create_everywhere(&cluster, "polled", 3);
    let bootstrap = cluster.bootstrap();
    let runtime = runtime();
    let waited = runtime.block_on(async move {
        let mut consumer = Consumer::builder(bootstrap.clone())
            .max_wait(Duration::from_secs(5))
            .offset_reset(OffsetReset::Earliest)
            .build()
            .await
            .unwrap();
        consumer.assign((0..3).map(|p| ("polled".to_owned(), p)));
        // Nothing there yet: every leader parks the fetch.
        assert!(consumer
            .poll(Duration::from_secs(5))
            .await
            .unwrap()
            .is_empty());
        let producer = Producer::builder(bootstrap).build().await.unwrap();
        let started = std::time::Instant::now();
        producer
            .send(ProducerRecord::new("polled", "now").partition(1))
            .await
            .unwrap();
        loop {
            let records = consumer.poll(Duration::from_secs(5)).await.unwrap();
            if !records.is_empty() {
                assert_eq!(records[0].value.as_deref(), Some(&b"now"[..]));
                break started.elapsed();
            }
            assert!(started.elapsed() < Duration::from_secs(20));
        }
    });
    assert!(waited < Duration::from_millis(2_500), "waited {waited:?}");
}
