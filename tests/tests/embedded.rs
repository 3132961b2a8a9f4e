//! A broker embedded in another program (here, brokers in the test process): the
//! descriptors it opens are close-on-exec, so a process that program starts holds none of
//! them — a connection the broker closes is closed.

use keel_protocol::api::ApiKey;
use keel_protocol::frame::write_request;
use keel_tests::in_process::InProcess;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn a_child_process_does_not_keep_a_closed_connection_open() {
    // Goal: each connection's writer was a dup(2) of its socket without close-on-exec; a
    // process started by the embedding program while the connection was open kept it open
    // after the broker closed it (the fuzz seed recorder's proxy waited for EOF forever).
    let dir = tempfile::tempdir().unwrap();
    let broker = InProcess::start(dir.path(), &["--shards", "2"]);
    let mut stream = TcpStream::connect(broker.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut request = bytes::BytesMut::new();
    write_request(&mut request, ApiKey::ApiVersions as u16, 0, 1, &[]);
    stream.write_all(&request).unwrap();
    let mut answer = [0u8; 4];
    stream.read_exact(&mut answer).unwrap();
    let mut child = Command::new("sleep")
        .arg("30")
        .spawn()
        .expect("start sleep");
    let started = Instant::now();
    stream.shutdown(Shutdown::Write).unwrap();
    // The rest of the answer, then the end of the connection (not a read timeout).
    let mut rest = Vec::new();
    let read = stream.read_to_end(&mut rest);
    let _ = child.kill();
    let _ = child.wait();
    assert!(read.is_ok(), "the connection stayed open: {read:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
}
