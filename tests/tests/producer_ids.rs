//! Producer ids are unique across a cluster and across restarts: two brokers asked in the
//! same instant never hand out the same id, so two idempotent producers' first batches are
//! never taken for one another's retries.

use bytes::Bytes;
use keel_protocol::api::{ErrorCode, Request, Response};
use keel_protocol::batch::{BatchBuilder, NewRecord, ProducerFields};
use keel_tests::broker::{server_binary, Broker, Client};
use keel_tests::cluster::{create_everywhere, Cluster};
use std::sync::{Arc, Barrier};

fn init_producer_id(client: &mut Client) -> i64 {
    match client.call(Request::InitProducerId) {
        Response::InitProducerId {
            error: ErrorCode::None,
            producer_id,
            ..
        } => producer_id,
        other => panic!("InitProducerId answered {other:?}"),
    }
}

/// The first batch of an idempotent producer: epoch 0, sequence 0, one record.
fn first_batch(producer_id: i64, value: &str) -> Bytes {
    let mut builder = BatchBuilder::new();
    builder.producer(ProducerFields {
        producer_id,
        producer_epoch: 0,
        base_sequence: 0,
    });
    builder.push(NewRecord::value(0, value.as_bytes().to_vec()));
    Bytes::from(builder.finish().expect("batch"))
}

#[test]
fn two_brokers_asked_at_once_give_disjoint_ids_and_both_first_batches_are_stored() {
    // Goal: before, a producer id was the wall-clock second of a broker's first
    // InitProducerId plus a counter: brokers 1 and 2 asked in the same second gave the same
    // id, and the second producer's first batch (same id, epoch 0, sequence 0) was answered
    // as a duplicate of the first one's and never stored.
    let cluster = Cluster::start(3);
    create_everywhere(&cluster, "pids", 1);
    let barrier = Arc::new(Barrier::new(2));
    let askers: Vec<_> = [0usize, 1]
        .into_iter()
        .map(|i| {
            let (addr, barrier) = (cluster.nodes[i].addr, barrier.clone());
            std::thread::spawn(move || {
                let mut client = Client::connect(addr);
                barrier.wait();
                let first = init_producer_id(&mut client);
                let more: Vec<i64> = (0..3).map(|_| init_producer_id(&mut client)).collect();
                (first, more)
            })
        })
        .collect();
    let answers: Vec<(i64, Vec<i64>)> = askers.into_iter().map(|t| t.join().unwrap()).collect();
    let mut every: Vec<i64> = answers
        .iter()
        .flat_map(|(first, more)| std::iter::once(*first).chain(more.iter().copied()))
        .collect();
    every.sort_unstable();
    every.dedup();
    assert_eq!(every.len(), 8, "every id handed out once: {answers:?}");
    assert!(
        every.iter().all(|id| *id >= 0),
        "Kafka's ids are non-negative"
    );

    let leader = cluster.topic(0, "pids").expect("topic")["partitions"][0]["leader"]
        .as_u64()
        .expect("a leader") as usize;
    let mut client = cluster.nodes[leader - 1].client();
    for (value, (id, _)) in ["from broker 1", "from broker 2"].iter().zip(&answers) {
        let error = client.produce("pids", 0, -1, first_batch(*id, value));
        assert_eq!(error, ErrorCode::None, "{value}");
    }
    let stored: Vec<String> = client
        .read_partition("pids", 0)
        .into_iter()
        .map(|(_, _, value)| value)
        .collect();
    assert_eq!(stored, vec!["from broker 1", "from broker 2"]);
}

#[test]
fn a_single_node_never_repeats_an_id_across_restarts() {
    // Goal: a single node's ids come from a durable counter; a restart (even within the
    // same second, which the old clock-based ids could not tell apart) starts a new block.
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(&server_binary(), dir.path(), &["--shards", "2"]);
    let mut seen = Vec::new();
    for _ in 0..2 {
        let mut client = broker.client();
        for _ in 0..3 {
            seen.push(init_producer_id(&mut client));
        }
        drop(client);
        broker.stop_with(libc::SIGKILL);
        broker.restart();
    }
    let mut distinct = seen.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), seen.len(), "no id twice: {seen:?}");
    assert!(
        dir.path().join("producer-ids").exists(),
        "the counter lives in the data directory"
    );
}
