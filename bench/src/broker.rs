//! `keel-bench broker`: produce and fetch throughput and latency against a running broker,
//! each beside raw loopback TCP measured in the same run. A stopgap until the client crate
//! and the full load generator exist: it uses a small blocking client on `keel-protocol`.

use anyhow::{bail, Context};
use bytes::{Bytes, BytesMut};
use hdrhistogram::Histogram;
use keel_protocol::api::{
    ApiKey, ErrorCode, FetchPartition, ListOffsetsPartition, NewTopic, ProducePartition, Request,
    Response, TopicEntries, LATEST_TIMESTAMP,
};
use keel_protocol::batch::{BatchBuilder, NewRecord};
use keel_protocol::frame::{check_response, write_request};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Options of `keel-bench broker`.
#[derive(clap::Args, Debug, Clone)]
pub struct BrokerArgs {
    /// Broker address.
    #[arg(long, default_value = "127.0.0.1:7070")]
    bootstrap: SocketAddr,
    /// Topic to create (or reuse).
    #[arg(long, default_value = "keel-bench")]
    topic: String,
    /// Partitions of the topic.
    #[arg(long, default_value_t = 8)]
    partitions: u32,
    /// Producer connections (each a thread).
    #[arg(long, default_value_t = 4)]
    producers: usize,
    /// Requests each producer keeps in flight.
    #[arg(long, default_value_t = 8)]
    in_flight: usize,
    /// Record value size.
    #[arg(long, default_value_t = 1024)]
    message_size: usize,
    /// Batch size.
    #[arg(long, default_value_t = 16 * 1024)]
    batch_bytes: usize,
    /// Seconds per produce run.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
}

struct Client {
    stream: TcpStream,
    buffer: BytesMut,
    next: u32,
}

impl Client {
    fn connect(addr: SocketAddr) -> anyhow::Result<Client> {
        let stream =
            TcpStream::connect(addr).with_context(|| format!("broker not reachable at {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(Client {
            stream,
            buffer: BytesMut::new(),
            next: 1,
        })
    }

    fn send(&mut self, request: &Request) -> anyhow::Result<()> {
        let mut body = BytesMut::new();
        request.encode(&mut body)?;
        let mut frame = BytesMut::new();
        write_request(&mut frame, request.api_key() as u16, 0, self.next, &body);
        self.next += 1;
        self.stream.write_all(&frame)?;
        Ok(())
    }

    fn receive(&mut self, api: ApiKey) -> anyhow::Result<Response> {
        loop {
            if let Some(frame) = check_response(&self.buffer, 1 << 30)? {
                let bytes = self.buffer.split_to(frame.frame_len).freeze();
                let code = ErrorCode::from_u16(frame.header.error_code.get());
                if code != ErrorCode::None {
                    bail!("broker answered {code:?}: {}", code.message());
                }
                return Ok(Response::decode(api, bytes.slice(frame.body()))?);
            }
            let mut chunk = vec![0u8; 256 * 1024];
            let read = self.stream.read(&mut chunk)?;
            if read == 0 {
                bail!("broker closed the connection");
            }
            self.buffer.extend_from_slice(&chunk[..read]);
        }
    }

    fn call(&mut self, request: Request) -> anyhow::Result<Response> {
        let api = request.api_key();
        self.send(&request)?;
        self.receive(api)
    }
}

fn sample_batch(args: &BrokerArgs, seed: u64) -> anyhow::Result<Bytes> {
    let mut builder = BatchBuilder::new();
    for index in 0..(args.batch_bytes / args.message_size).max(1) {
        builder.push(NewRecord::value(
            1_700_000_000_000,
            crate::engine::noise(args.message_size, seed * 1000 + index as u64),
        ));
    }
    Ok(Bytes::from(builder.build()?))
}

/// Raw loopback TCP: one connection streaming 1 MiB writes to a reader that discards.
pub(crate) fn loopback_mb_per_sec(seconds: f64) -> anyhow::Result<f64> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let reader = std::thread::spawn(move || -> std::io::Result<u64> {
        let (mut stream, _) = listener.accept()?;
        let mut buffer = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            let read = stream.read(&mut buffer)?;
            if read == 0 {
                return Ok(total);
            }
            total += read as u64;
        }
    });
    let mut stream = TcpStream::connect(addr)?;
    let chunk = crate::engine::noise(1 << 20, 5);
    let started = Instant::now();
    while started.elapsed().as_secs_f64() < seconds {
        stream.write_all(&chunk)?;
    }
    drop(stream);
    let total = reader
        .join()
        .map_err(|_| anyhow::anyhow!("reader thread"))??;
    Ok(total as f64 / 1e6 / started.elapsed().as_secs_f64())
}

struct Run {
    name: String,
    bytes: u64,
    elapsed: Duration,
    latency: Option<Histogram<u64>>,
}

fn produce_run(args: &BrokerArgs, acks: i8) -> anyhow::Result<Run> {
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(args.seconds);
    let mut threads = Vec::new();
    for producer in 0..args.producers {
        let args = args.clone();
        threads.push(std::thread::spawn(
            move || -> anyhow::Result<(u64, Histogram<u64>)> {
                let mut client = Client::connect(args.bootstrap)?;
                let batch = sample_batch(&args, producer as u64 + 1)?;
                let mut latency = Histogram::<u64>::new(3)?;
                let mut sent_at = std::collections::VecDeque::new();
                let mut bytes = 0u64;
                let mut round = 0u32;
                loop {
                    while sent_at.len() < args.in_flight && Instant::now() < deadline {
                        let partition =
                            (producer as u32 + round * args.producers as u32) % args.partitions;
                        round += 1;
                        client.send(&Request::Produce {
                            acks,
                            timeout_ms: 30_000,
                            topics: vec![TopicEntries {
                                topic: args.topic.clone(),
                                partitions: vec![ProducePartition {
                                    partition,
                                    records: batch.clone(),
                                }],
                            }],
                        })?;
                        sent_at.push_back(Instant::now());
                    }
                    let Some(sent) = sent_at.pop_front() else {
                        break;
                    };
                    let Response::Produce { topics } = client.receive(ApiKey::Produce)? else {
                        bail!("unexpected response")
                    };
                    let error = topics[0].partitions[0].error;
                    if error != ErrorCode::None {
                        bail!("produce failed: {error:?}");
                    }
                    latency.record(sent.elapsed().as_micros() as u64)?;
                    bytes += batch.len() as u64;
                }
                Ok((bytes, latency))
            },
        ));
    }
    let mut bytes = 0;
    let mut latency = Histogram::<u64>::new(3)?;
    for thread in threads {
        let (b, h) = thread
            .join()
            .map_err(|_| anyhow::anyhow!("producer thread panicked"))??;
        bytes += b;
        latency.add(&h)?;
    }
    let name = format!(
        "produce acks={}",
        if acks == -1 {
            "all".into()
        } else {
            acks.to_string()
        }
    );
    Ok(Run {
        name,
        bytes,
        elapsed: started.elapsed(),
        latency: Some(latency),
    })
}

fn latest_offsets(client: &mut Client, args: &BrokerArgs) -> anyhow::Result<Vec<i64>> {
    let Response::ListOffsets { topics } = client.call(Request::ListOffsets {
        topics: vec![TopicEntries {
            topic: args.topic.clone(),
            partitions: (0..args.partitions)
                .map(|partition| ListOffsetsPartition {
                    partition,
                    timestamp: LATEST_TIMESTAMP,
                })
                .collect(),
        }],
    })?
    else {
        bail!("unexpected response")
    };
    Ok(topics[0].partitions.iter().map(|p| p.offset).collect())
}

fn fetch(
    client: &mut Client,
    args: &BrokerArgs,
    offsets: &[i64],
    partition_max_bytes: u32,
) -> anyhow::Result<Vec<(u64, i64)>> {
    let Response::Fetch { topics } = client.call(Request::Fetch {
        max_wait_ms: 0,
        min_bytes: 1,
        max_bytes: 64 << 20,
        topics: vec![TopicEntries {
            topic: args.topic.clone(),
            partitions: (0..args.partitions)
                .map(|partition| FetchPartition {
                    partition,
                    fetch_offset: offsets[partition as usize],
                    partition_max_bytes,
                })
                .collect(),
        }],
    })?
    else {
        bail!("unexpected response")
    };
    let mut out = Vec::new();
    for result in &topics[0].partitions {
        if result.error != ErrorCode::None {
            bail!("fetch failed: {:?}", result.error);
        }
        let mut next = offsets[result.partition as usize];
        let mut rest = &result.records[..];
        while !rest.is_empty() {
            let view = keel_protocol::batch::BatchView::new(rest)?;
            next = view.next_offset();
            rest = &rest[view.len()..];
        }
        out.push((result.records.len() as u64, next));
    }
    Ok(out)
}

/// Reads every partition from offset 0 to its end: mostly from segment files.
fn cold_fetch_run(args: &BrokerArgs) -> anyhow::Result<Run> {
    let mut client = Client::connect(args.bootstrap)?;
    let ends = latest_offsets(&mut client, args)?;
    let mut offsets = vec![0i64; args.partitions as usize];
    let started = Instant::now();
    let mut bytes = 0;
    while offsets.iter().zip(&ends).any(|(o, e)| o < e) {
        for (partition, (got, next)) in fetch(&mut client, args, &offsets, 1 << 20)?
            .into_iter()
            .enumerate()
        {
            bytes += got;
            offsets[partition] = next;
        }
    }
    Ok(Run {
        name: "fetch from cold segments (direct I/O, read-ahead)".into(),
        bytes,
        elapsed: started.elapsed(),
        latency: None,
    })
}

/// Re-reads the newest ~128 KiB of every partition: served from the tail cache.
fn tail_fetch_run(args: &BrokerArgs) -> anyhow::Result<Run> {
    let mut client = Client::connect(args.bootstrap)?;
    let ends = latest_offsets(&mut client, args)?;
    let records_back = (128 * 1024 / args.message_size) as i64;
    let offsets: Vec<i64> = ends.iter().map(|e| (e - records_back).max(0)).collect();
    let started = Instant::now();
    let mut bytes = 0;
    while started.elapsed().as_secs_f64() < args.seconds {
        bytes += fetch(&mut client, args, &offsets, 256 * 1024)?
            .iter()
            .map(|(b, _)| b)
            .sum::<u64>();
    }
    Ok(Run {
        name: "fetch from the tail (memory)".into(),
        bytes,
        elapsed: started.elapsed(),
        latency: None,
    })
}

/// Runs every measurement and prints the table.
pub fn run(args: BrokerArgs) -> anyhow::Result<()> {
    let mut admin = Client::connect(args.bootstrap)?;
    let Response::CreateTopics { topics } = admin.call(Request::CreateTopics {
        topics: vec![NewTopic {
            name: args.topic.clone(),
            partitions: args.partitions,
            replication_factor: 1,
            configs: vec![],
        }],
    })?
    else {
        bail!("unexpected response")
    };
    if !matches!(
        topics[0].error,
        ErrorCode::None | ErrorCode::TopicAlreadyExists
    ) {
        bail!("cannot create topic {}: {}", args.topic, topics[0].message);
    }
    let loopback = loopback_mb_per_sec(args.seconds.min(2.0))?;
    let runs = vec![
        produce_run(&args, 1)?,
        produce_run(&args, -1)?,
        tail_fetch_run(&args)?,
        cold_fetch_run(&args)?,
    ];
    let loopback_after = loopback_mb_per_sec(args.seconds.min(2.0))?;
    let limit = (loopback + loopback_after) / 2.0;
    println!(
        "{} producers x {} in flight, {} partitions, {} B messages in {} B batches",
        args.producers, args.in_flight, args.partitions, args.message_size, args.batch_bytes
    );
    println!(
        "raw loopback TCP: {loopback:.0} MB/s before, {loopback_after:.0} MB/s after the runs"
    );
    println!(
        "{:<40} {:>10} {:>10} {:>9} {:>9} {:>9}",
        "run", "MB/s", "of loopb.", "p50 us", "p99 us", "p999 us"
    );
    for run in &runs {
        let mb = run.bytes as f64 / 1e6 / run.elapsed.as_secs_f64();
        let (p50, p99, p999) = match &run.latency {
            Some(h) => (
                h.value_at_quantile(0.5).to_string(),
                h.value_at_quantile(0.99).to_string(),
                h.value_at_quantile(0.999).to_string(),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        println!(
            "{:<40} {:>10.1} {:>9.1}% {:>9} {:>9} {:>9}",
            run.name,
            mb,
            100.0 * mb / limit,
            p50,
            p99,
            p999
        );
    }
    Ok(())
}
