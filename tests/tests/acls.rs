//! ACLs on the Kafka listener (`--authorizer on`), driven by confluent-kafka
//! (`tests/kafka/acl_test.py`): a super user sets ACLs; a user allowed to read topics by
//! prefix and one group reads them and gets Kafka's authorization errors for everything
//! else; DENY beats ALLOW until it is removed; users are made and deleted with Kafka's
//! AlterUserScramCredentials; the ACLs survive a restart.

use keel_tests::in_process::InProcess;
use keel_tests::kafka_clients::{clients, run};
use std::time::Duration;

#[test]
fn a_user_reads_what_acls_allow_and_gets_kafkas_errors_for_the_rest() {
    let clients = clients();
    let dir = tempfile::tempdir().unwrap();
    let flags = [
        "--shards",
        "2",
        "--kafka-security",
        "SASL_PLAINTEXT",
        "--authorizer",
        "on",
        "--super-users",
        "User:admin",
        "--add-scram",
        "SCRAM-SHA-512:admin:admin-secret",
        "--add-scram",
        "SCRAM-SHA-512:alice:alice-secret",
    ];
    let mut broker = InProcess::start(dir.path(), &flags);
    let script = clients.scripts.join("acl_test.py");
    let phase = |broker: &InProcess, phase: &str| {
        let bootstrap = broker.kafka_addr.to_string();
        run(
            &clients.python,
            &[script.to_str().unwrap(), &bootstrap, phase],
            &[],
            Duration::from_secs(240),
        )
    };
    phase(&broker, "setup");
    phase(&broker, "alice");
    phase(&broker, "lift");
    phase(&broker, "users");
    broker.stop();
    broker.restart();
    phase(&broker, "kept");
    let acls = std::fs::read_to_string(dir.path().join("acls.toml")).unwrap();
    assert!(acls.contains("orders.") && !acls.contains("DENY"), "{acls}");
}
