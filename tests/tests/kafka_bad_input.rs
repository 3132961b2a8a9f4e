//! The bad-input suite's cases in Kafka framing, on the Kafka port of a real broker:
//! garbage, huge and negative lengths, unknown API keys and versions, truncated bodies,
//! lying counts, wrong CRCs and empty bodies for every API. Each gets an error answer or a
//! closed connection, and the broker keeps serving everyone else, on every shard.

use bytes::{BufMut, BytesMut};
use keel_tests::in_process::InProcess;
use keel_tests::kafka_wire;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

/// The next response body after its correlation id; `None` once the broker closed.
fn receive(stream: &mut TcpStream) -> Option<(i32, Vec<u8>)> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).ok()?;
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    stream.read_exact(&mut body).ok()?;
    let correlation = i32::from_be_bytes(body[..4].try_into().unwrap());
    Some((correlation, body[4..].to_vec()))
}

/// Sends `bytes` on a fresh connection: the answer, or `None` when the broker closed it.
fn answer(addr: SocketAddr, bytes: &[u8]) -> Option<(i32, Vec<u8>)> {
    let mut stream = connect(addr);
    stream.write_all(bytes).unwrap();
    receive(&mut stream)
}

/// ApiVersions v0 on new connections, several so every shard's listener is asked.
fn healthy(addr: SocketAddr) {
    for _ in 0..4 {
        let (correlation, body) =
            answer(addr, &kafka_wire::frame(18, 0, b"")).expect("ApiVersions answered");
        assert_eq!(correlation, 7);
        assert_eq!(&body[..2], &[0, 0], "ApiVersions without error");
    }
}

/// A Produce v3 body for one partition with `records`.
fn produce_body(topic: &str, records: &[u8]) -> Vec<u8> {
    let mut body = BytesMut::new();
    body.put_i16(-1); // transactional id: null
    body.put_i16(-1); // acks=all
    body.put_i32(5_000);
    body.put_i32(1);
    kafka_wire::string(&mut body, topic);
    body.put_i32(1);
    body.put_i32(0);
    body.put_i32(records.len() as i32);
    body.put_slice(records);
    body.to_vec()
}

/// The error code of a Produce v3 answer's only partition.
fn produce_error(body: &[u8], topic: &str) -> i16 {
    // responses: count, name, partitions: count, index, error code...
    let at = 4 + 2 + topic.len() + 4 + 4;
    i16::from_be_bytes(body[at..at + 2].try_into().unwrap())
}

#[test]
fn bad_input_on_the_kafka_port_gets_errors_and_the_broker_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let broker = InProcess::start(dir.path(), &["--shards", "2"]);
    let addr = broker.kafka_addr;
    broker.client().create_topic("bad", 1);
    healthy(addr);

    // Garbage: not a frame the broker will read (a huge size): closed.
    assert_eq!(
        answer(addr, b"\xde\xad\xbe\xef garbage garbage garbage"),
        None
    );
    healthy(addr);
    // Sizes: 2 GiB, negative, and shorter than a header: closed before allocating.
    for size in [i32::MAX, -1, -2_000_000_000, 3] {
        let mut bytes = size.to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0; 16]);
        assert_eq!(answer(addr, &bytes), None, "size {size}");
    }
    healthy(addr);

    // Unknown API keys and versions: answered (UNSUPPORTED_VERSION, 35), connection kept.
    let mut stream = connect(addr);
    stream.write_all(&kafka_wire::frame(999, 0, b"")).unwrap();
    let (_, body) = receive(&mut stream).expect("unknown API answered");
    assert_eq!(&body[..2], &35i16.to_be_bytes());
    stream.write_all(&kafka_wire::frame(3, 99, b"")).unwrap();
    let (_, body) = receive(&mut stream).expect("unknown version answered");
    assert_eq!(&body[..2], &35i16.to_be_bytes());
    // Transactions are not served: answered the same way.
    stream.write_all(&kafka_wire::frame(26, 0, b"")).unwrap();
    let (_, body) = receive(&mut stream).expect("EndTxn answered");
    assert_eq!(&body[..2], &35i16.to_be_bytes());
    // ApiVersions at a version not known: the version-0 answer with the error and the list,
    // so the client can pick a version.
    stream.write_all(&kafka_wire::frame(18, 77, b"")).unwrap();
    let (_, body) = receive(&mut stream).expect("ApiVersions v77 answered");
    assert_eq!(&body[..2], &35i16.to_be_bytes());
    let count = i32::from_be_bytes(body[2..6].try_into().unwrap());
    assert!(count >= 20, "{count} APIs listed");
    stream.write_all(&kafka_wire::frame(18, 0, b"")).unwrap();
    assert!(
        receive(&mut stream).is_some(),
        "the connection still serves"
    );

    // A lying count: Metadata v1 announcing 2^31 topics in a 4-byte body. Refused without
    // allocating for them: closed.
    assert_eq!(
        answer(addr, &kafka_wire::frame(3, 1, &i32::MAX.to_be_bytes())),
        None
    );
    // Truncated bodies: a Produce cut in the middle of its topic.
    let produce = produce_body("bad", b"");
    assert_eq!(answer(addr, &kafka_wire::frame(0, 3, &produce[..9])), None);
    healthy(addr);

    // A record batch with a wrong CRC: CORRUPT_MESSAGE (2) for the partition, nothing stored.
    let mut batch = vec![0u8; 61 + 10];
    batch[..8].copy_from_slice(&0i64.to_be_bytes());
    let batch_len = batch.len() as i32 - 12;
    batch[8..12].copy_from_slice(&batch_len.to_be_bytes());
    batch[16] = 2; // magic
    batch[17..21].copy_from_slice(&0xdead_beefu32.to_be_bytes());
    let (_, body) =
        answer(addr, &kafka_wire::frame(0, 3, &produce_body("bad", &batch))).expect("answered");
    assert_eq!(
        produce_error(&body, "bad"),
        2,
        "wrong CRC is CORRUPT_MESSAGE"
    );
    assert!(
        broker.client().read_partition("bad", 0).is_empty(),
        "nothing stored"
    );
    // Garbage where the records go: refused the same way.
    let (_, body) = answer(
        addr,
        &kafka_wire::frame(0, 3, &produce_body("bad", b"not a batch")),
    )
    .unwrap();
    assert_ne!(produce_error(&body, "bad"), 0);

    // Every served API (every version) with an empty body: an answer or a close, never a
    // dead broker.
    for (api, min, max, _) in keel_kafka::versions::SUPPORTED {
        for version in min..=max {
            let _ = answer(addr, &kafka_wire::frame(api as i16, version, b""));
        }
    }
    // And with random bytes, from many connections at once.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut streams = Vec::new();
    for i in 0..200 {
        let (api, min, max, _) = keel_kafka::versions::SUPPORTED[i % 24];
        let body: Vec<u8> = (0..(i * 7) % 300)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        let mut stream = connect(addr);
        let _ = stream.write_all(&kafka_wire::frame(
            api as i16,
            min + (i as i16 % (max - min + 1)),
            &body,
        ));
        streams.push(stream);
    }
    for mut stream in streams {
        let _ = receive(&mut stream);
    }
    healthy(addr);
    // The native listener serves on, too.
    assert!(broker.client().read_partition("bad", 0).is_empty());
}
