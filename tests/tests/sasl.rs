//! SASL on the Kafka listener (`--kafka-security SASL_PLAINTEXT`): confluent-kafka,
//! kafka-python, aiokafka, kafkajs and kcat authenticate with SCRAM-SHA-512, SCRAM-SHA-256 and
//! PLAIN and then work (admin, acks=all produce, a group with commits); a wrong password
//! and an unknown user get each client's usual authentication error; nothing but the
//! exchange is served before it succeeds; users made with `--add-scram` survive a restart
//! and their file holds no password.

use bytes::{BufMut, BytesMut};
use keel_tests::broker::metric;
use keel_tests::in_process::InProcess;
use keel_tests::kafka_clients::{clients, kcat, security_kafkajs, security_python};
use keel_tests::kafka_wire::{frame, request, sasl_handshake, scram_login};
use keel_tests::tool::{keel, ok};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

const USERS: [&str; 4] = [
    "--add-scram",
    "SCRAM-SHA-512:alice:alice-secret",
    "--add-scram",
    "SCRAM-SHA-256:bob:bob:secret",
];

fn sasl_broker(dir: &Path, users: &[&str]) -> InProcess {
    let mut args = vec![
        "--shards",
        "2",
        "--kafka-security",
        "SASL_PLAINTEXT",
        "--sasl-mechanisms",
        "SCRAM-SHA-512,SCRAM-SHA-256,PLAIN",
    ];
    args.extend_from_slice(users);
    InProcess::start(dir, &args)
}

fn login_env(login: (&str, &str, &str)) -> [(&'static str, String); 3] {
    [
        ("KEEL_SASL_MECHANISM", login.0.to_owned()),
        ("KEEL_SASL_USER", login.1.to_owned()),
        ("KEEL_SASL_PASSWORD", login.2.to_owned()),
    ]
}

fn python(broker: &InProcess, client: &str, phase: &str, login: (&str, &str, &str)) {
    let env = login_env(login);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let bootstrap = broker.kafka_addr.to_string();
    security_python(&bootstrap, client, phase, &format!("sasl-{client}"), &env);
}

fn kafkajs(broker: &InProcess, phase: &str, login: (&str, &str, &str)) {
    let env = login_env(login);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    security_kafkajs(&broker.kafka_addr.to_string(), phase, "sasl-kafkajs", &env);
}

#[test]
fn kafka_clients_authenticate_with_scram_and_plain_and_are_refused_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let broker = sasl_broker(dir.path(), &USERS);
    let alice = ("SCRAM-SHA-512", "alice", "alice-secret");
    let bob = ("SCRAM-SHA-256", "bob", "bob:secret");
    python(&broker, "confluent-kafka", "work", alice);
    python(&broker, "kafka-python", "work", bob);
    python(
        &broker,
        "aiokafka",
        "work",
        ("PLAIN", "alice", "alice-secret"),
    );
    python(
        &broker,
        "confluent-kafka",
        "refused",
        ("SCRAM-SHA-512", "alice", "wrong"),
    );
    python(
        &broker,
        "kafka-python",
        "refused",
        ("SCRAM-SHA-512", "mallory", "x"),
    );
    // Bob has a SCRAM-SHA-256 credential only.
    python(
        &broker,
        "aiokafka",
        "refused",
        ("SCRAM-SHA-512", "bob", "bob:secret"),
    );
    kafkajs(&broker, "work", ("scram-sha-512", "alice", "alice-secret"));
    kafkajs(&broker, "refused", ("scram-sha-512", "alice", "wrong"));
    let page = broker.metrics();
    let count = |mechanism: &str, outcome: &str| {
        let labels = format!("mechanism=\"{mechanism}\",outcome=\"{outcome}\"");
        metric(&page, "keel_authentications_total", &labels)
    };
    assert!(count("SCRAM-SHA-512", "succeeded") >= 6.0, "{page}");
    assert!(count("SCRAM-SHA-256", "succeeded") >= 3.0);
    assert!(count("PLAIN", "succeeded") >= 3.0);
    assert!(count("SCRAM-SHA-512", "failed") >= 4.0);
}

fn kcat_login(bootstrap: &str, user: &str, password: &str) -> Vec<String> {
    [
        "-b",
        bootstrap,
        "-X",
        "security.protocol=SASL_PLAINTEXT",
        "-X",
        "sasl.mechanism=SCRAM-SHA-512",
        "-X",
        &format!("sasl.username={user}"),
        "-X",
        &format!("sasl.password={password}"),
    ]
    .map(str::to_owned)
    .to_vec()
}

/// kcat with `args`: its exit status and what it wrote.
fn kcat_status(args: &[String]) -> (bool, String) {
    let output = std::process::Command::new("kcat")
        .args(args)
        .output()
        .expect("kcat (tests/kafka/install.sh installs it)");
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

#[test]
fn kcat_authenticates_and_users_survive_a_restart_without_their_passwords_on_disk() {
    clients();
    let dir = tempfile::tempdir().unwrap();
    let mut broker = sasl_broker(dir.path(), &USERS);
    let bootstrap = broker.kafka_addr.to_string();
    let login = kcat_login(&bootstrap, "alice", "alice-secret");
    let with = |extra: &[&str]| {
        let mut args = login.clone();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    // kcat has no admin API: the topic is made with the keel tool (native listener).
    ok(&keel(
        Some(&broker),
        &["topic", "create", "kc-sasl", "--partitions", "2"],
        None,
    ));
    let args = with(&["-P", "-t", "kc-sasl", "-K", ":"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    kcat(&args, Some("k1:v1\nk2:v2\n"));
    let args = with(&[
        "-C",
        "-t",
        "kc-sasl",
        "-o",
        "beginning",
        "-e",
        "-f",
        "%k=%s\n",
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut read: Vec<String> = kcat(&args, None).lines().map(str::to_owned).collect();
    read.sort();
    assert_eq!(read, ["k1=v1", "k2=v2"]);

    let (listed, said) = kcat_status(&{
        let mut args = kcat_login(&bootstrap, "alice", "wrong");
        args.extend(["-L", "-m", "5"].map(str::to_owned));
        args
    });
    assert!(!listed, "a wrong password lists nothing: {said}");
    assert!(said.contains("Authentication failed"), "{said}");

    let users = std::fs::read_to_string(dir.path().join("users.toml")).unwrap();
    assert!(users.contains("[users.alice.SCRAM-SHA-512]"), "{users}");
    assert!(!users.contains("alice-secret") && !users.contains("bob:secret"));
    broker.stop();
    // Started again without --add-scram: the users are those on disk.
    let mut broker = sasl_broker(dir.path(), &[]);
    let bootstrap = broker.kafka_addr.to_string();
    let mut args = kcat_login(&bootstrap, "alice", "alice-secret");
    args.extend(["-L", "-J", "-m", "10"].map(str::to_owned));
    let (listed, said) = kcat_status(&args);
    assert!(listed && said.contains("kc-sasl"), "{said}");
    broker.stop();
}

fn metadata_all() -> Vec<u8> {
    let mut body = BytesMut::new();
    body.put_i32(-1);
    frame(3, 1, &body)
}

#[test]
fn nothing_but_the_exchange_is_served_before_it_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = sasl_broker(dir.path(), &USERS);
    let connect = || {
        let stream = TcpStream::connect(broker.kafka_addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
    };
    // Metadata first: the connection is closed, nothing answered.
    assert_eq!(request(&mut connect(), &metadata_all()), None);
    // A mechanism not offered: UNSUPPORTED_SASL_MECHANISM (33) and the offered ones.
    let mut stream = connect();
    let answer = request(&mut stream, &sasl_handshake("GSSAPI")).unwrap();
    assert_eq!(&answer[..2], &33i16.to_be_bytes());
    let offered = String::from_utf8_lossy(&answer);
    for name in ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] {
        assert!(offered.contains(name), "{offered}");
    }
    // A handshake, then Metadata before SaslAuthenticate: closed.
    let mut stream = connect();
    let answer = request(&mut stream, &sasl_handshake("SCRAM-SHA-512")).unwrap();
    assert_eq!(&answer[..2], &0i16.to_be_bytes());
    assert_eq!(request(&mut stream, &metadata_all()), None);
    broker.stop();

    // On a PLAINTEXT listener: ILLEGAL_SASL_STATE (34), and Metadata is served.
    let plain = InProcess::start(&dir.path().join("plain"), &["--shards", "1"]);
    let mut stream = TcpStream::connect(plain.kafka_addr).unwrap();
    let answer = request(&mut stream, &sasl_handshake("PLAIN")).unwrap();
    assert_eq!(&answer[..2], &34i16.to_be_bytes());
    assert!(request(&mut stream, &metadata_all()).is_some());
}

#[test]
fn security_flags_that_cannot_work_are_refused_at_start() {
    use clap::Parser;
    use keel_server::config::{Args, Config};
    let load = |extra: &[&str]| {
        let mut args = vec!["keel-server"];
        args.extend_from_slice(extra);
        Config::load(&Args::parse_from(args))
            .map(|_| ())
            .map_err(|e| format!("{e:#}"))
    };
    assert!(load(&["--kafka-security", "SASL_PLAINTEXT"]).is_ok());
    let refused = [
        (
            &["--kafka-security", "SASL_SSL"][..],
            "needs --tls-cert and --tls-key",
        ),
        (
            &[
                "--kafka-security",
                "SSL",
                "--tls-cert",
                "c",
                "--tls-key",
                "k",
                "--tls-client-auth",
                "required",
            ],
            "needs --tls-ca",
        ),
        (
            &[
                "--native-security",
                "SASL_PLAINTEXT",
                "--node-id",
                "1",
                "--controller-voters",
                "1@127.0.0.1:19093",
            ],
            "needs --inter-broker-security SSL",
        ),
        (
            &["--ssl-principal-mapping-rules", "RULE:x"],
            "RULE:pattern/replacement",
        ),
        (
            &["--kafka-security", "KERBEROS"],
            "unknown security protocol",
        ),
        (&["--sasl-mechanisms", "SCRAM-SHA-512,GSSAPI"], "GSSAPI"),
        (&["--add-scram", "PLAIN:alice:x"], "SCRAM"),
        (
            &["--add-scram", "SCRAM-SHA-512:alice"],
            "MECHANISM:NAME:PASSWORD",
        ),
    ];
    for (flags, says) in refused {
        let error = load(flags).unwrap_err();
        assert!(error.contains(says), "{flags:?}: {error}");
    }
}

#[test]
fn sessions_end_unless_the_client_authenticates_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut users = USERS.to_vec();
    users.extend([
        "--connections-max-reauth-ms",
        "2000",
        "--add-scram",
        "SCRAM-SHA-512:carol:carol-secret",
    ]);
    let broker = sasl_broker(dir.path(), &users);
    // A raw client: told the session's lifetime, served within it, closed after it.
    let mut stream = TcpStream::connect(broker.kafka_addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let login = scram_login;
    assert_eq!(login(&mut stream, "alice", "alice-secret"), Some((0, 2000)));
    assert!(
        request(&mut stream, &metadata_all()).is_some(),
        "served within its lifetime"
    );
    // Authenticating again on the same connection renews the session.
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(login(&mut stream, "alice", "alice-secret"), Some((0, 2000)));
    std::thread::sleep(Duration::from_millis(1200));
    assert!(request(&mut stream, &metadata_all()).is_some(), "renewed");
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(
        request(&mut stream, &metadata_all()),
        None,
        "closed after its lifetime"
    );
    // Authenticating again as someone else is refused (SASL_AUTHENTICATION_FAILED, 58).
    let mut other = TcpStream::connect(broker.kafka_addr).unwrap();
    other
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(login(&mut other, "alice", "alice-secret"), Some((0, 2000)));
    assert_eq!(
        login(&mut other, "carol", "carol-secret").map(|(c, _)| c),
        Some(58)
    );
    // librdkafka authenticates again in time (KIP-368): six seconds of records, all
    // delivered, and more authentications than connections.
    let count = || {
        let page = broker.metrics();
        let labels = "mechanism=\"SCRAM-SHA-512\",outcome=\"succeeded\"";
        metric(&page, "keel_authentications_total", labels)
    };
    let before = count();
    python(
        &broker,
        "confluent-kafka",
        "reauth",
        ("SCRAM-SHA-512", "alice", "alice-secret"),
    );
    let made = count() - before;
    assert!(
        made >= 6.0,
        "re-authentications happened ({made} authentications)"
    );
}
