//! TLS on the client listeners with certificates the test makes (rcgen): confluent-kafka,
//! kafka-python, aiokafka, kafkajs and kcat over SASL_SSL with SCRAM-SHA-512 (admin,
//! produce, a group, refusals); confluent-kafka over mTLS, its certificate naming its
//! principal, and an expired, an untrusted and a missing certificate refused; the native
//! listener over SSL; new certificates on SIGHUP without dropping open connections.

use keel_tests::broker::{server_binary, Broker};
use keel_tests::certs::{Ca, Issued};
use keel_tests::in_process::InProcess;
use keel_tests::kafka_clients::{clients, kcat, security_kafkajs, security_python};
use keel_tests::kafka_wire::frame;
use keel_tests::tool::{keel, ok};
use rustls::pki_types::ServerName;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// TLS flags for a broker with `issued` as its certificate.
fn tls_flags(issued: &Issued) -> Vec<&str> {
    vec![
        "--tls-cert",
        path(&issued.cert),
        "--tls-key",
        path(&issued.key),
    ]
}

#[test]
fn kafka_clients_work_over_sasl_ssl_and_wrong_credentials_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "keel");
    let issued = ca.broker(dir.path(), "broker");
    let mut args = vec!["--shards", "2", "--kafka-security", "SASL_SSL"];
    args.extend(tls_flags(&issued));
    args.extend(["--add-scram", "SCRAM-SHA-512:alice:alice-secret"]);
    let broker = InProcess::start(&dir.path().join("data"), &args);
    let bootstrap = broker.kafka_addr.to_string();
    let env = |user: &'static str, password: &'static str| {
        vec![
            ("KEEL_SECURITY_PROTOCOL", "SASL_SSL".to_owned()),
            ("KEEL_SSL_CA", path(&ca.pem).to_owned()),
            ("KEEL_SASL_MECHANISM", "SCRAM-SHA-512".to_owned()),
            ("KEEL_SASL_USER", user.to_owned()),
            ("KEEL_SASL_PASSWORD", password.to_owned()),
        ]
    };
    let python = |client: &str, phase: &str, login: (&'static str, &'static str)| {
        let env = env(login.0, login.1);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        security_python(&bootstrap, client, phase, &format!("tls-{client}"), &env);
    };
    let alice = ("alice", "alice-secret");
    for client in ["confluent-kafka", "kafka-python", "aiokafka"] {
        python(client, "work", alice);
    }
    python("confluent-kafka", "refused", ("alice", "wrong"));
    // A client that does not trust the broker's certificate (another CA) refuses it.
    let other = Ca::new(dir.path(), "other");
    let mut untrusting = env("alice", "alice-secret");
    untrusting[1].1 = path(&other.pem).to_owned();
    let untrusting: Vec<(&str, &str)> = untrusting.iter().map(|(k, v)| (*k, v.as_str())).collect();
    security_python(
        &bootstrap,
        "confluent-kafka",
        "refused-tls",
        "tls-untrusted",
        &untrusting,
    );
    python("kafka-python", "refused", ("mallory", "x"));
    python("aiokafka", "refused", ("alice", "wrong"));
    let js = |phase: &str, login: (&'static str, &'static str)| {
        let mut env = env(login.0, login.1);
        env[2].1 = "scram-sha-512".to_owned();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        security_kafkajs(&bootstrap, phase, "tls-kafkajs", &env);
    };
    js("work", alice);
    js("refused", ("mallory", "x"));
    // kcat has no admin API: the topic is made with the keel tool (native listener).
    ok(&keel(
        Some(&broker),
        &["topic", "create", "kc-tls", "--partitions", "2"],
        None,
    ));
    kcat_over_sasl_ssl(&bootstrap, &ca.pem);
}

/// kcat produces and reads back over SASL_SSL, and is refused with a wrong password.
fn kcat_over_sasl_ssl(bootstrap: &str, ca: &Path) {
    clients();
    let login = |password: &str| {
        [
            "-b",
            bootstrap,
            "-X",
            "security.protocol=SASL_SSL",
            "-X",
            &format!("ssl.ca.location={}", path(ca)),
            "-X",
            "sasl.mechanism=SCRAM-SHA-512",
            "-X",
            "sasl.username=alice",
            "-X",
            &format!("sasl.password={password}"),
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let with = |password: &str, extra: &[&str]| {
        let mut args = login(password);
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let produce = with("alice-secret", &["-P", "-t", "kc-tls", "-K", ":"]);
    let produce: Vec<&str> = produce.iter().map(String::as_str).collect();
    kcat(&produce, Some("k1:v1\nk2:v2\n"));
    let consume = with(
        "alice-secret",
        &[
            "-C",
            "-t",
            "kc-tls",
            "-o",
            "beginning",
            "-e",
            "-f",
            "%k=%s\n",
        ],
    );
    let consume: Vec<&str> = consume.iter().map(String::as_str).collect();
    let mut read: Vec<String> = kcat(&consume, None).lines().map(str::to_owned).collect();
    read.sort();
    assert_eq!(read, ["k1=v1", "k2=v2"]);
    // In a consumer group: it reads both and commits; run again, it reads nothing more.
    let group = with(
        "alice-secret",
        &[
            "-G",
            "kc-tls-group",
            "-X",
            "auto.offset.reset=earliest",
            "-e",
            "-q",
            "-f",
            "%k=%s\n",
            "kc-tls",
        ],
    );
    let group: Vec<&str> = group.iter().map(String::as_str).collect();
    let mut read: Vec<String> = kcat(&group, None).lines().map(str::to_owned).collect();
    read.sort();
    assert_eq!(read, ["k1=v1", "k2=v2"], "the group reads everything");
    assert_eq!(kcat(&group, None), "", "the group committed what it read");
    let output = std::process::Command::new("kcat")
        .args(with("wrong", &["-L", "-m", "5"]))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "a wrong password lists nothing");
    assert!(said.contains("Authentication failed"), "{said}");
}

#[test]
fn mtls_names_the_principal_and_refuses_expired_untrusted_and_missing_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "keel");
    let other = Ca::new(dir.path(), "other");
    let issued = ca.broker(dir.path(), "broker");
    let mut args = vec!["--shards", "2", "--kafka-security", "SSL"];
    args.extend(tls_flags(&issued));
    args.extend([
        "--tls-ca",
        path(&ca.pem),
        "--tls-client-auth",
        "required",
        "--ssl-principal-mapping-rules",
        "RULE:^CN=([^,]+),O=Keel tests$/$1/L,DEFAULT",
        "--authorizer",
        "on",
        "--super-users",
        "User:alice",
    ]);
    let broker = InProcess::start(&dir.path().join("data"), &args);
    let bootstrap = broker.kafka_addr.to_string();
    let ck = |phase: &str, cert: Option<&Issued>| {
        let mut env = vec![
            ("KEEL_SECURITY_PROTOCOL", "SSL"),
            ("KEEL_SSL_CA", path(&ca.pem)),
        ];
        if let Some(cert) = cert {
            env.push(("KEEL_SSL_CERT", path(&cert.cert)));
            env.push(("KEEL_SSL_KEY", path(&cert.key)));
        }
        security_python(&bootstrap, "confluent-kafka", phase, "mtls", &env);
    };
    // CN=Alice maps to User:alice, a super user: everything works.
    ck("work", Some(&ca.client(dir.path(), "Alice", false)));
    // CN=bob is User:bob, allowed nothing.
    ck("unauthorized", Some(&ca.client(dir.path(), "bob", false)));
    ck("refused-tls", Some(&ca.client(dir.path(), "alice", true)));
    ck(
        "refused-tls",
        Some(&other.client(dir.path(), "alice", false)),
    );
    ck("refused-tls", None);
}

/// A TLS client trusting `ca`, optionally showing `cert`.
fn tls_client(addr: SocketAddr, ca: &Path, cert: Option<&Issued>) -> std::io::Result<TlsClient> {
    let config = keel_tests::certs::client_config(ca, cert);
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let socket = TcpStream::connect(addr)?;
    socket.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut stream = rustls::StreamOwned::new(connection, socket);
    // The handshake completes (or fails) on the first I/O.
    stream.flush()?;
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(stream)
}

type TlsClient = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// Kafka ApiVersions v0 over `stream`: the answer's error code.
fn api_versions(stream: &mut impl ReadWrite) -> std::io::Result<i16> {
    stream.write_all(&frame(18, 0, &[]))?;
    let mut size = [0u8; 4];
    stream.read_exact(&mut size)?;
    let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
    stream.read_exact(&mut body)?;
    Ok(i16::from_be_bytes([body[4], body[5]]))
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

#[test]
fn sighup_serves_new_certificates_and_keeps_open_connections() {
    let dir = tempfile::tempdir().unwrap();
    let first = Ca::new(dir.path(), "first");
    let second = Ca::new(dir.path(), "second");
    let issued = first.broker(dir.path(), "broker");
    let mut args = vec!["--kafka-security", "SSL", "--native-security", "SSL"];
    args.extend(tls_flags(&issued));
    let mut broker = Broker::start(&server_binary(), &dir.path().join("data"), &args);
    let mut open = tls_client(broker.kafka_addr, &first.pem, None).unwrap();
    assert_eq!(api_versions(&mut open).unwrap(), 0);
    // Plain bytes to a TLS listener: no Kafka answer.
    let mut plain = TcpStream::connect(broker.kafka_addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert!(api_versions(&mut plain).is_err());

    // New files in place, then SIGHUP: new connections get the new certificate.
    let renewed = second.broker(dir.path(), "renewed");
    std::fs::copy(&renewed.cert, &issued.cert).unwrap();
    std::fs::copy(&renewed.key, &issued.key).unwrap();
    // SAFETY: kill(2) on the test's own child.
    unsafe { libc::kill(broker.pid() as i32, libc::SIGHUP) };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while tls_client(broker.kafka_addr, &second.pem, None).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the new certificate is served"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(tls_client(broker.kafka_addr, &first.pem, None).is_err());
    // The connection opened before still works.
    assert_eq!(api_versions(&mut open).unwrap(), 0);
    // A broken file on SIGHUP: the certificate in use stays.
    std::fs::write(&issued.key, "not a key").unwrap();
    unsafe { libc::kill(broker.pid() as i32, libc::SIGHUP) };
    std::thread::sleep(Duration::from_millis(300));
    let mut again = tls_client(broker.kafka_addr, &second.pem, None).unwrap();
    assert_eq!(api_versions(&mut again).unwrap(), 0);

    // The native listener speaks TLS too: a topic made and listed through it.
    let native = tls_client(broker.addr, &second.pem, None).unwrap();
    native_create_and_list(native);
    assert!(broker.stop().success());
}

/// Creates a topic over a native TLS connection and finds it listed.
fn native_create_and_list(mut stream: TlsClient) {
    use keel_protocol::api::{NewTopic, Request};
    let mut call = |request: Request| -> bytes::Bytes {
        let mut body = bytes::BytesMut::new();
        request.encode(&mut body).unwrap();
        let mut frame = bytes::BytesMut::new();
        keel_protocol::frame::write_request(&mut frame, request.api_key() as u16, 0, 1, &body);
        stream.write_all(&frame).unwrap();
        let mut buffer = bytes::BytesMut::new();
        loop {
            if let Some(f) = keel_protocol::frame::check_response(&buffer, 1 << 20).unwrap() {
                assert_eq!(f.header.error_code.get(), 0);
                return buffer.split_to(f.frame_len).freeze().slice(f.body());
            }
            let mut chunk = [0u8; 4096];
            let read = stream.read(&mut chunk).unwrap();
            assert!(read > 0, "the broker answers");
            buffer.extend_from_slice(&chunk[..read]);
        }
    };
    call(Request::CreateTopics {
        topics: vec![NewTopic {
            name: "over-tls".into(),
            partitions: 1,
            replication_factor: 1,
            configs: vec![],
        }],
    });
    let listed = call(Request::Metadata { topics: vec![] });
    assert!(
        listed.windows(8).any(|w| w == b"over-tls"),
        "the topic is listed: {listed:?}"
    );
}

#[test]
fn native_requests_are_authorized_as_the_certificates_principal() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "keel");
    let issued = ca.broker(dir.path(), "broker");
    let mut args = vec!["--native-security", "SSL"];
    args.extend(tls_flags(&issued));
    args.extend([
        "--tls-ca",
        path(&ca.pem),
        "--tls-client-auth",
        "required",
        "--ssl-principal-mapping-rules",
        "RULE:^CN=([^,]+),O=Keel tests$/$1/,DEFAULT",
        "--authorizer",
        "on",
        "--super-users",
        "User:admin",
    ]);
    let broker = InProcess::start(&dir.path().join("data"), &args);
    let properties = |name: &str| {
        let cert = ca.client(dir.path(), name, false);
        let file = dir.path().join(format!("{name}.properties"));
        let text = format!(
            "security.protocol=SSL\nssl.ca.location={}\nssl.certificate.location={}\nssl.key.location={}\n",
            path(&ca.pem),
            path(&cert.cert),
            path(&cert.key)
        );
        std::fs::write(&file, text).unwrap();
        file
    };
    let (admin, bob) = (properties("admin"), properties("bob"));
    let as_user = |config: &Path, args: &[&str], stdin: Option<&str>| {
        let mut all = vec!["--command-config", path(config)];
        all.extend_from_slice(args);
        keel(Some(&broker), &all, stdin)
    };
    // The admin's certificate maps to User:admin, a super user.
    ok(&as_user(
        &admin,
        &["topic", "create", "guarded", "--partitions", "1"],
        None,
    ));
    ok(&as_user(&admin, &["produce", "guarded"], Some("one\n")));
    // Bob is allowed nothing: each request is refused with Kafka's authorization error.
    for (args, stdin) in [
        (&["topic", "create", "bobs", "--partitions", "1"][..], None),
        (&["produce", "guarded"], Some("two\n")),
        (&["topic", "delete", "guarded"], None),
    ] {
        let output = as_user(&bob, args, stdin);
        let said = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(!output.status.success(), "{args:?} as bob: {said}");
        assert!(
            said.contains("AuthorizationFailed"),
            "{args:?} as bob: {said}"
        );
    }
    let listed = ok(&as_user(&admin, &["topic", "list"], None));
    assert!(
        listed.lines().any(|t| t == "guarded") && !listed.contains("bobs"),
        "{listed}"
    );
    // Kafka's rule for Metadata: listing every topic leaves out those bob may not
    // describe; naming one answers TOPIC_AUTHORIZATION_FAILED for it.
    let listed = ok(&as_user(&bob, &["topic", "list"], None));
    assert!(!listed.contains("guarded"), "bob lists {listed}");
    let output = as_user(&bob, &["topic", "describe", "guarded"], None);
    let said = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        !output.status.success() && said.contains("AuthorizationFailed"),
        "describe as bob: {said}"
    );
}

/// `GET /metrics` over `stream`: the answer's text.
fn get_metrics(mut stream: TlsClient) -> std::io::Result<String> {
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: keel\r\n\r\n")?;
    let mut page = String::new();
    match stream.read_to_string(&mut page) {
        Ok(_) => Ok(page),
        // The broker closes after the page without a TLS close_notify on some paths.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !page.is_empty() => Ok(page),
        Err(e) => Err(e),
    }
}

// Goal: `--metrics-security SSL` serves the metrics page over HTTPS with the broker's
// certificate; with `--tls-client-auth required` a scraper without a certificate the CA
// signed gets nothing, and plain HTTP gets nothing either.
#[test]
fn the_metrics_port_serves_https_to_scrapers_with_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "keel");
    let other = Ca::new(dir.path(), "other");
    let issued = ca.broker(dir.path(), "broker");
    let mut args = vec!["--metrics-security", "SSL"];
    args.extend(tls_flags(&issued));
    args.extend(["--tls-ca", path(&ca.pem), "--tls-client-auth", "required"]);
    let broker = InProcess::start(&dir.path().join("data"), &args);
    let scraper = ca.client(dir.path(), "prometheus", false);
    let stream = tls_client(broker.metrics_addr, &ca.pem, Some(&scraper)).unwrap();
    let page = get_metrics(stream).unwrap();
    assert!(page.starts_with("HTTP/1.1 200 OK"), "{page}");
    assert!(page.contains("keel_requests_total"), "{page}");
    let refused = |cert: Option<&Issued>| {
        tls_client(broker.metrics_addr, &ca.pem, cert)
            .and_then(get_metrics)
            .map_or(true, |page| page.is_empty())
    };
    assert!(refused(None), "no certificate");
    assert!(refused(Some(&other.client(
        dir.path(),
        "prometheus",
        false
    ))));
    assert!(
        refused(Some(&ca.client(dir.path(), "prometheus", true))),
        "expired"
    );
    let mut plain = TcpStream::connect(broker.metrics_addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    plain.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(
        !answer.starts_with(b"HTTP/1.1 200"),
        "plain HTTP is not served"
    );
}

// Goal: a broker with several Kafka listeners (Kafka's `listeners` with names and protocols)
// serves each with its own protocol, and tells a client the address of the listener it came
// through: a plaintext client is told the plaintext port, a SASL_SSL client the advertised
// SASL_SSL address; both read the same records.
#[test]
fn several_kafka_listeners_each_tell_clients_their_own_address() {
    clients();
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "keel");
    let issued = ca.broker(dir.path(), "broker");
    let external = keel_tests::broker::free_port();
    let internal = keel_tests::broker::free_port();
    let listeners = format!("SASL_SSL://127.0.0.1:{external},INTERNAL://127.0.0.1:{internal}");
    let advertised = format!("SASL_SSL://127.0.0.1:{external}");
    let mut args = vec![
        "--kafka-listeners",
        &listeners,
        "--advertised-kafka-listeners",
        &advertised,
        "--listener-security-protocol-map",
        "INTERNAL:SSL",
        "--add-scram",
        "SCRAM-SHA-512:alice:alice-secret",
    ];
    args.extend(tls_flags(&issued));
    let broker = InProcess::start(&dir.path().join("data"), &args);
    ok(&keel(
        Some(&broker),
        &["topic", "create", "listeners"],
        None,
    ));
    let plain = broker.kafka_addr.to_string();
    kcat(
        &["-b", &plain, "-P", "-t", "listeners", "-K", ":"],
        Some("k1:v1\n"),
    );
    let ca_location = format!("ssl.ca.location={}", path(&ca.pem));
    let sasl_ssl = [
        "-X",
        "security.protocol=SASL_SSL",
        "-X",
        &ca_location,
        "-X",
        "sasl.mechanism=SCRAM-SHA-512",
        "-X",
        "sasl.username=alice",
        "-X",
        "sasl.password=alice-secret",
    ];
    let ssl = ["-X", "security.protocol=SSL", "-X", &ca_location];
    for (port, security, told) in [
        (broker.kafka_addr.port(), &[][..], broker.kafka_addr.port()),
        (external, &sasl_ssl[..], external),
        (internal, &ssl[..], internal),
    ] {
        let bootstrap = format!("127.0.0.1:{port}");
        let mut list = vec!["-b", bootstrap.as_str(), "-L", "-t", "listeners"];
        list.extend_from_slice(security);
        let metadata = kcat(&list, None);
        assert!(
            metadata.contains(&format!("broker 1 at 127.0.0.1:{told}")),
            "through {port}: {metadata}"
        );
        let mut read = vec![
            "-b",
            bootstrap.as_str(),
            "-C",
            "-t",
            "listeners",
            "-o",
            "beginning",
            "-e",
            "-q",
            "-f",
            "%k=%s\\n",
        ];
        read.extend_from_slice(security);
        assert_eq!(kcat(&read, None), "k1=v1\n", "through {port}");
    }
    // Plaintext on the SASL_SSL port is not served.
    let wrong = format!("127.0.0.1:{external}");
    let output = std::process::Command::new("kcat")
        .args(["-b", &wrong, "-L", "-m", "3"])
        .output()
        .unwrap();
    assert!(
        !output.status.success(),
        "plaintext on the SASL_SSL listener"
    );
}
