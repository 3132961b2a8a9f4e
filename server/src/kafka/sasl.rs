//! SaslHandshake and SaslAuthenticate on the Kafka listener: the adapter between Kafka's
//! messages and the connection's SASL exchange (`security::sasl`), with Kafka's error
//! codes, and the audit line of every authentication.

use super::{encode, text, Answer};
use crate::security::authenticate::{self, Outcome};
use crate::security::sasl::HandshakeError;
use crate::security::Session;
use crate::shard::Shard;
use keel_kafka::errors;
use keel_kafka::frame::Header;
use keel_kafka::kafka_protocol::messages::{SaslAuthenticateResponse, SaslHandshakeResponse};
use keel_kafka::requests::KafkaRequest;
use std::rc::Rc;

/// Whether `request` is served before a SASL exchange succeeds (Kafka's rule: the
/// version probe and the exchange itself).
pub fn before_authentication(request: &KafkaRequest) -> bool {
    matches!(
        request,
        KafkaRequest::ApiVersions
            | KafkaRequest::SaslHandshake(_)
            | KafkaRequest::SaslAuthenticate(_)
    )
}

/// SaslHandshake: the mechanisms offered, and UNSUPPORTED_SASL_MECHANISM for another;
/// ILLEGAL_SASL_STATE on a listener without SASL or after a handshake.
pub fn handshake(header: &Header, session: &Session, mechanism: &str) -> Answer {
    let Some((chosen, offered)) = authenticate::handshake(session, mechanism) else {
        return encode(
            header,
            &SaslHandshakeResponse::default().with_error_code(errors::ILLEGAL_SASL_STATE),
        );
    };
    let code = match chosen {
        Ok(()) => errors::NONE,
        Err(HandshakeError::Unsupported) => errors::UNSUPPORTED_SASL_MECHANISM,
        Err(HandshakeError::IllegalState) => errors::ILLEGAL_SASL_STATE,
    };
    let response = SaslHandshakeResponse::default()
        .with_error_code(code)
        .with_mechanisms(offered.into_iter().map(text).collect());
    encode(header, &response)
}

/// SaslAuthenticate: the next message of the exchange. A failure is answered with
/// SASL_AUTHENTICATION_FAILED and the connection closes.
pub fn authenticate(
    shard: &Rc<Shard>,
    header: &Header,
    session: &Session,
    message: &[u8],
) -> Answer {
    match authenticate::authenticate(shard, session, message) {
        Outcome::Challenge(challenge) => encode(header, &response(errors::NONE, None, challenge)),
        Outcome::Done {
            response: last_message,
            lifetime_ms,
        } => {
            let answer = response(errors::NONE, None, last_message)
                .with_session_lifetime_ms(i64::try_from(lifetime_ms).unwrap_or(i64::MAX));
            encode(header, &answer)
        }
        Outcome::IllegalState(why) => last(shard, header, errors::ILLEGAL_SASL_STATE, why),
        Outcome::Refused(why) => last(shard, header, errors::SASL_AUTHENTICATION_FAILED, &why),
    }
}

fn response(code: i16, message: Option<&str>, auth_bytes: Vec<u8>) -> SaslAuthenticateResponse {
    SaslAuthenticateResponse::default()
        .with_error_code(code)
        .with_error_message(message.map(text))
        .with_auth_bytes(auth_bytes.into())
}

/// An error answer after which the connection closes (after Kafka's pause).
fn last(shard: &Shard, header: &Header, code: i16, message: &str) -> Answer {
    let pause = authenticate::failure_pause(shard);
    match encode(header, &response(code, Some(message), Vec::new())) {
        Answer::Parts(parts) => Answer::Last(parts, pause),
        other => other,
    }
}
