//! The Kafka wire protocol listener (`--kafka-listen`): Kafka framing on the same
//! connection machinery as the native protocol (`conn.rs`), each request decoded by
//! `keel-kafka` and served by the native handlers, so both protocols share topics, offsets,
//! groups and `__consumer_offsets`. Responses are kafka-protocol's types, except Fetch,
//! which is written by hand around zero-copy file ranges.

mod acls;
mod admin;
mod classic_groups;
mod data;
mod delete_records;
mod epochs;
mod fetch;
mod groups;
mod offsets;
mod quotas;
mod sasl;
mod users;

use crate::conn::Wire;
use crate::handlers::Part;
use crate::security::{SecurityProtocol, Session};
use crate::shard::Shard;
use bytes::{BufMut, Bytes, BytesMut};
use glommio::net::TcpStream;
use keel_auth::quota::QuotaKind;
use keel_kafka::errors;
use keel_kafka::frame::{self, Header};
use keel_kafka::kafka_protocol::messages::ApiVersionsResponse;
use keel_kafka::kafka_protocol::protocol::Encodable;
use keel_kafka::requests::{self, KafkaRequest};
use keel_kafka::versions;
use keel_protocol::api::ErrorCode;
use std::cell::Cell;
use std::rc::Rc;
use std::time::Instant;

/// What a Kafka request gets back.
pub enum Answer {
    /// The response (header included), in order; file parts are sent with zero copy.
    Parts(Vec<Part>),
    /// Nothing can be answered (a malformed request): the connection closes, as Kafka's.
    Close,
    /// The response, then the connection closes after the pause (a failed
    /// authentication, as Kafka's `connection.failed.authentication.delay.ms`: clients
    /// read the answer before the close, and guessing passwords is slowed down).
    Last(Vec<Part>, std::time::Duration),
}

/// Serves a Kafka-protocol connection.
/// Serves a connection of Kafka listener number `listener`.
pub async fn serve(shard: Rc<Shard>, stream: TcpStream, stopping: Rc<Cell<bool>>, listener: usize) {
    crate::conn::serve_wire::<Kafka>(shard, stream, stopping, listener).await
}

struct Kafka;

impl Wire for Kafka {
    type Answer = Answer;

    fn check(buf: &[u8], max: u32) -> Result<Option<usize>, (ErrorCode, Option<Answer>)> {
        frame::check_frame(buf, max).map_err(|e| {
            tracing::debug!(error = %e, "unframeable Kafka request");
            let code = match e {
                frame::FrameError::TooLarge { .. } => ErrorCode::FrameTooLarge,
                frame::FrameError::TooShort(_) => ErrorCode::InvalidRequest,
            };
            (code, None)
        })
    }

    fn announced_len(buf: &[u8]) -> Option<usize> {
        frame::announced_len(buf)
    }

    fn security(config: &crate::config::Config, listener: usize) -> SecurityProtocol {
        config
            .kafka_listeners
            .get(listener)
            .map_or(config.security.kafka, |l| l.protocol)
    }

    async fn handle(
        shard: Rc<Shard>,
        _stopping: Rc<Cell<bool>>,
        session: Rc<Session>,
        frame: Bytes,
    ) -> Option<Answer> {
        handle(&shard, &session, frame.slice(4..)).await
    }

    async fn send(stream: &mut crate::conn::Writer, answer: Answer) -> std::io::Result<()> {
        let (parts, last) = match answer {
            Answer::Parts(parts) => (parts, None),
            Answer::Last(parts, pause) => (parts, Some(pause)),
            Answer::Close => (Vec::new(), Some(std::time::Duration::ZERO)),
        };
        if !parts.is_empty() {
            let len: usize = parts.iter().map(Part::len).sum();
            crate::conn::write_parts(stream, &(len as i32).to_be_bytes(), parts).await?;
        }
        if let Some(pause) = last {
            glommio::timer::sleep(pause).await;
            // Wakes the reader too, so the whole connection ends here.
            // SAFETY: shutdown(2) of the connection's own socket, open while it is served.
            unsafe { libc::shutdown(stream.socket(), libc::SHUT_RDWR) };
            return Err(std::io::Error::other(
                "Kafka connection closed by the broker",
            ));
        }
        Ok(())
    }
}

/// The response header then `response` encoded at the request's version; a response that
/// cannot be encoded (a bug) closes the connection, logged.
pub fn encode<R: Encodable>(header: &Header, response: &R) -> Answer {
    let mut out = BytesMut::new();
    header.response_header(&mut out);
    match response.encode(&mut out, header.api_version) {
        Ok(()) => Answer::Parts(vec![out.freeze()]),
        Err(e) => {
            tracing::warn!(api = header.api_key, version = header.api_version, error = %e, "Kafka response cannot be encoded; closing");
            Answer::Close
        }
    }
}

/// The answer to a request for an API or version not served: ApiVersions answers at
/// version 0 with UNSUPPORTED_VERSION and the versions served (so the client can pick
/// one); anything else gets the response header and the error code.
fn unsupported(header: &Header) -> Answer {
    let mut out = BytesMut::new();
    out.put_i32(header.correlation_id);
    if header.api_key == versions::API_VERSIONS {
        let response = api_versions().with_error_code(errors::UNSUPPORTED_VERSION);
        if response.encode(&mut out, 0).is_err() {
            return Answer::Close;
        }
    } else {
        out.put_i16(errors::UNSUPPORTED_VERSION);
    }
    Answer::Parts(vec![out.freeze()])
}

fn api_versions() -> ApiVersionsResponse {
    use keel_kafka::kafka_protocol::messages::api_versions_response::ApiVersion;
    ApiVersionsResponse::default().with_api_keys(
        versions::SUPPORTED
            .iter()
            .map(|(api, min, max, _)| {
                ApiVersion::default()
                    .with_api_key(*api as i16)
                    .with_min_version(*min)
                    .with_max_version(*max)
            })
            .collect(),
    )
}

async fn handle(shard: &Rc<Shard>, session: &Rc<Session>, body: Bytes) -> Option<Answer> {
    let peer: &str = &session.peer;
    let started = Instant::now();
    let (header, mut reader) = match frame::parse_header(body) {
        Ok(parsed) => parsed,
        Err((_, e)) => {
            tracing::debug!(%peer, error = %e, "bad Kafka request header");
            shard.metrics.api("kafka_invalid").requests.inc();
            shard
                .metrics
                .request_error("kafka_invalid", ErrorCode::InvalidRequest);
            return Some(Answer::Close);
        }
    };
    let Some(api) = versions::served(header.api_key, header.api_version) else {
        tracing::debug!(%peer, api = header.api_key, version = header.api_version, "Kafka API or version not served");
        shard.metrics.api("kafka_invalid").requests.inc();
        shard
            .metrics
            .request_error("kafka_invalid", ErrorCode::UnsupportedVersion);
        return Some(unsupported(&header));
    };
    let request = match requests::decode(api, header.api_version, &mut reader) {
        Ok(request) => request,
        Err(e) => {
            tracing::debug!(%peer, ?api, version = header.api_version, error = %e, "malformed Kafka request");
            shard.metrics.api("kafka_invalid").requests.inc();
            shard
                .metrics
                .request_error("kafka_invalid", ErrorCode::InvalidRequest);
            return Some(Answer::Close);
        }
    };
    // A cluster broker still reading its users and ACLs holds requests that depend on
    // them (bounded; ApiVersions and the mechanism list do not).
    if !matches!(
        request,
        KafkaRequest::ApiVersions | KafkaRequest::SaslHandshake(_)
    ) {
        crate::security::settle::ready(shard).await;
    }
    // On a SASL listener nothing but the exchange is served before it succeeds; anything
    // else closes the connection, as Kafka's (a client that skips authentication is not
    // answered).
    // KIP-368: a session past its lifetime is closed at its next request unless that
    // request authenticates it again.
    if session.expired() && !sasl::before_authentication(&request) {
        tracing::info!(target: "keel::audit", %peer, "SASL session expired without re-authentication, closing");
        return Some(Answer::Close);
    }
    if !session.authenticated() && !sasl::before_authentication(&request) {
        tracing::debug!(%peer, ?api, "request before SASL authentication, closing");
        shard.metrics.api("kafka_invalid").requests.inc();
        shard
            .metrics
            .request_error("kafka_invalid", ErrorCode::InvalidRequest);
        return Some(Answer::Close);
    }
    // Past the limit on partition entries the connection is closed, before anything is
    // asked of a shard or an answer per entry is built (Kafka's answer types cost over
    // 100 bytes an entry).
    let entries = request.partition_entries();
    if entries > shard.config.request_partitions_max {
        tracing::debug!(%peer, ?api, entries, "too many partition entries, closing");
        shard.metrics.api("kafka_invalid").requests.inc();
        shard
            .metrics
            .request_error("kafka_invalid", ErrorCode::InvalidRequest);
        return Some(Answer::Close);
    }
    tracing::trace!(%peer, ?api, version = header.api_version, correlation = header.correlation_id, "Kafka request");
    let name = versions::metric_name(api);
    let (answer, busy) = crate::security::quotas::Timed::new(
        dispatch(shard, &header, session, request),
        &shard.security.quotas,
    )
    .await;
    let client_id = header.client_id.as_deref().unwrap_or_default();
    let micros = u64::try_from(busy.as_micros()).unwrap_or(u64::MAX);
    crate::security::quotas::charge(shard, session, client_id, QuotaKind::Request, micros);
    let metrics = shard.metrics.api(name);
    metrics.requests.inc();
    metrics.seconds.observe(started.elapsed().as_secs_f64());
    answer
}

async fn dispatch(
    shard: &Rc<Shard>,
    header: &Header,
    session: &Rc<Session>,
    request: KafkaRequest,
) -> Option<Answer> {
    let peer: &str = &session.peer;
    let gate = &crate::security::gate::Gate::new(shard, session);
    let answer = match request {
        KafkaRequest::ApiVersions => encode(header, &api_versions()),
        KafkaRequest::Metadata(request) => data::metadata(shard, header, gate, request).await,
        KafkaRequest::Produce(request) => return data::produce(shard, header, gate, request).await,
        KafkaRequest::Fetch(request) => fetch::fetch(shard, header, gate, request).await,
        KafkaRequest::ListOffsets(request) => {
            data::list_offsets(shard, header, gate, request).await
        }
        KafkaRequest::DeleteRecords(request) => {
            delete_records::delete_records(shard, header, gate, request).await
        }
        KafkaRequest::OffsetForLeaderEpoch(request) => {
            epochs::offset_for_leader_epoch(shard, header, gate, request).await
        }
        KafkaRequest::InitProducerId(request) => {
            data::init_producer_id(shard, header, gate, request).await
        }
        KafkaRequest::CreateTopics(request) => {
            admin::create_topics(shard, header, gate, request).await
        }
        KafkaRequest::DeleteTopics(request) => {
            admin::delete_topics(shard, header, gate, request).await
        }
        KafkaRequest::CreatePartitions(request) => {
            admin::create_partitions(shard, header, gate, request).await
        }
        KafkaRequest::DescribeConfigs(request) => {
            admin::describe_configs(shard, header, gate, request)
        }
        KafkaRequest::AlterConfigs(request) => {
            admin::alter_configs(shard, header, gate, request, false).await
        }
        KafkaRequest::IncrementalAlterConfigs(request) => {
            admin::alter_configs(shard, header, gate, request, true).await
        }
        KafkaRequest::DescribeCluster => admin::describe_cluster(shard, header, gate),
        KafkaRequest::FindCoordinator(find) => {
            offsets::find_coordinator(shard, header, gate, find).await
        }
        KafkaRequest::JoinGroup(join) => groups::join_group(shard, header, gate, peer, join).await,
        KafkaRequest::SyncGroup(sync) => groups::sync_group(shard, header, gate, sync).await,
        KafkaRequest::Heartbeat(beat) => groups::heartbeat(shard, header, gate, beat).await,
        KafkaRequest::LeaveGroup(leave) => groups::leave_group(shard, header, gate, leave).await,
        KafkaRequest::OffsetCommit(commit) => {
            offsets::offset_commit(shard, header, gate, commit).await
        }
        KafkaRequest::OffsetFetch(fetch) => offsets::offset_fetch(shard, header, gate, fetch).await,
        KafkaRequest::DescribeGroups(names) => {
            groups::describe_groups(shard, header, gate, names).await
        }
        KafkaRequest::ListGroups(states) => groups::list_groups(shard, header, gate, states).await,
        KafkaRequest::DeleteGroups(names) => {
            groups::delete_groups(shard, header, gate, names).await
        }
        KafkaRequest::SaslHandshake(mechanism) => sasl::handshake(header, session, &mechanism),
        KafkaRequest::SaslAuthenticate(bytes) => sasl::authenticate(shard, header, session, &bytes),
        KafkaRequest::CreateAcls(creations) => {
            acls::create_acls(shard, header, session, creations).await
        }
        KafkaRequest::DescribeAcls(filter) => acls::describe_acls(shard, header, session, filter),
        KafkaRequest::DeleteAcls(filters) => {
            acls::delete_acls(shard, header, session, filters).await
        }
        KafkaRequest::DescribeUserScramCredentials(names) => {
            users::describe(shard, header, gate, names)
        }
        KafkaRequest::AlterUserScramCredentials(changes) => {
            users::alter(shard, header, gate, session, changes).await
        }
        KafkaRequest::DescribeClientQuotas(filter) => quotas::describe(shard, header, gate, filter),
        KafkaRequest::AlterClientQuotas(changes) => {
            quotas::alter(shard, header, gate, session, changes).await
        }
    };
    Some(answer)
}

/// The address this broker tells clients of its Kafka listener number `listener`.
pub fn advertised(shard: &Shard, listener: usize) -> Option<std::net::SocketAddr> {
    shard
        .config
        .kafka_listeners
        .get(listener)
        .map(|l| l.advertised)
}

/// A Kafka string from a Rust one.
pub fn text(value: impl Into<String>) -> keel_kafka::kafka_protocol::protocol::StrBytes {
    keel_kafka::kafka_protocol::protocol::StrBytes::from_string(value.into())
}

/// The Kafka error code of a native error.
pub fn code(error: ErrorCode) -> i16 {
    errors::kafka_code(error)
}
