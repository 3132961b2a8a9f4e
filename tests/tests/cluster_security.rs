//! Users and ACLs on three brokers live in the controller's metadata log: a super user
//! sets them through one broker's Kafka listener (confluent-kafka, `tests/kafka/acl_test.py`)
//! and every broker enforces them; they survive the controller leader's SIGKILL and a full
//! restart of the cluster.

use keel_tests::cluster::Cluster;
use keel_tests::kafka_clients::{clients, run};
use keel_tests::kafka_wire::scram_login;
use std::time::Duration;

#[test]
fn users_and_acls_are_the_clusters_and_survive_failover_and_restart() {
    let clients = clients();
    let dir = tempfile::tempdir().unwrap();
    let flags = || {
        [
            "--kafka-security",
            "SASL_PLAINTEXT",
            "--authorizer",
            "on",
            // Brokers reach each other in plaintext here: as Kafka's, their principal
            // (User:ANONYMOUS) must be a super user for replication to pass the ACLs.
            "--super-users",
            "User:admin,User:ANONYMOUS",
            "--add-scram",
            "SCRAM-SHA-512:admin:admin-secret",
            "--add-scram",
            "SCRAM-SHA-512:alice:alice-secret",
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let mut cluster = Cluster::start_in(dir, 3, &[], |_| flags(), None);
    let script = clients.scripts.join("acl_test.py");
    let phase = |cluster: &Cluster, node: usize, phase: &str| {
        let bootstrap = cluster.nodes[node].kafka_addr.to_string();
        run(
            &clients.python,
            &[script.to_str().unwrap(), &bootstrap, phase],
            &[],
            Duration::from_secs(240),
        );
    };
    // Set through node 1, enforced by nodes 2 and 3.
    phase(&cluster, 0, "setup");
    phase(&cluster, 1, "alice");
    phase(&cluster, 2, "make-carol");
    phase(&cluster, 1, "survived");

    // The controller leader dies; a new one is elected while it is down.
    let leader = cluster.controller_leader(1).expect("a controller leader") as usize;
    cluster.nodes[leader - 1].stop_with(libc::SIGKILL);
    let other = (0..3).find(|i| *i != leader - 1).unwrap();
    cluster.wait_for(Duration::from_secs(30), "a new controller leader", |c| {
        c.controller_leader(other)
            .is_some_and(|l| l as usize != leader)
    });
    cluster.nodes[leader - 1].restart();
    phase(&cluster, leader - 1, "survived");

    // Every node stops, then starts again.
    for node in &mut cluster.nodes {
        node.stop();
    }
    for node in &mut cluster.nodes {
        node.restart();
    }
    cluster.wait_for(Duration::from_secs(30), "every broker alive", |c| {
        c.alive_brokers(0).is_some_and(|alive| alive.len() == 3)
    });
    phase(&cluster, 2, "survived");
    for node in &mut cluster.nodes {
        node.stop();
    }
}

/// A broker of a cluster reads its users from the metadata log. Started for the first
/// time (its `--add-scram` users made through the controller), or restarted after a
/// SIGKILL, it holds a client's authentication until it has them instead of refusing a
/// user it does not know yet: each login right after the start succeeds, and a wrong
/// password is still refused.
#[test]
fn a_starting_broker_authenticates_its_users_from_the_first_request() {
    let dir = tempfile::tempdir().unwrap();
    let flags = |_| {
        [
            "--kafka-security",
            "SASL_PLAINTEXT",
            "--add-scram",
            "SCRAM-SHA-512:alice:alice-secret",
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let login = |cluster: &Cluster, node: usize, password: &str| {
        let mut stream = std::net::TcpStream::connect(cluster.nodes[node].kafka_addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        scram_login(&mut stream, "alice", password).map(|(code, _)| code)
    };
    let mut cluster = Cluster::start_in(dir, 3, &[], flags, None);
    for node in 0..3 {
        assert_eq!(
            login(&cluster, node, "alice-secret"),
            Some(0),
            "node {node}"
        );
    }
    for node in 0..3 {
        cluster.nodes[node].stop_with(libc::SIGKILL);
        cluster.nodes[node].restart();
        assert_eq!(
            login(&cluster, node, "alice-secret"),
            Some(0),
            "node {node} restarted"
        );
        assert_eq!(login(&cluster, node, "wrong"), Some(58), "node {node}");
    }
    for node in &mut cluster.nodes {
        node.stop();
    }
}
