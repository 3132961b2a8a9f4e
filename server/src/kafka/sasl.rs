//! SaslHandshake and SaslAuthenticate on the Kafka listener: the adapter between Kafka's
//! messages and the connection's SASL exchange (`security::sasl`), with Kafka's error
//! codes, and the audit line of every authentication.

use super::{encode, text, Answer};
use crate::security::sasl::{Failure, HandshakeError, Step};
use crate::security::{random_bytes, Session};
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
    let Some(sasl) = &session.sasl else {
        return encode(
            header,
            &SaslHandshakeResponse::default().with_error_code(errors::ILLEGAL_SASL_STATE),
        );
    };
    let mut sasl = sasl.borrow_mut();
    let code = match sasl.handshake(mechanism) {
        Ok(_) => errors::NONE,
        Err(HandshakeError::Unsupported) => {
            tracing::info!(target: "keel::audit", peer = %session.peer, mechanism = %crate::config::clip(mechanism), "authentication refused: mechanism not enabled");
            errors::UNSUPPORTED_SASL_MECHANISM
        }
        Err(HandshakeError::IllegalState) => errors::ILLEGAL_SASL_STATE,
    };
    let response = SaslHandshakeResponse::default()
        .with_error_code(code)
        .with_mechanisms(sasl.enabled().map(text).collect());
    encode(header, &response)
}

/// SaslAuthenticate: the next message of the exchange. A failure is answered with
/// SASL_AUTHENTICATION_FAILED (the same message whatever the reason, so a client cannot
/// tell an unknown user from a wrong password) and the connection closes.
pub fn authenticate(
    shard: &Rc<Shard>,
    header: &Header,
    session: &Session,
    message: &[u8],
) -> Answer {
    let Some(sasl) = &session.sasl else {
        return last(
            shard,
            header,
            errors::ILLEGAL_SASL_STATE,
            "SASL is not enabled on this listener",
        );
    };
    // Letters and digits only, as Kafka's own nonces (clients parse them by hand).
    let nonce: String = random_bytes::<24>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let users = &shard.security.users;
    let step = sasl
        .borrow_mut()
        .authenticate(message, |user, m| users.lookup(user, m), &nonce);
    match step {
        Ok(Step::Challenge(challenge)) => encode(header, &response(errors::NONE, None, challenge)),
        Ok(Step::Done {
            mechanism,
            user,
            response: last_message,
        }) => {
            shard.metrics.authentication(mechanism, true);
            tracing::info!(target: "keel::audit", peer = %session.peer, user = %user, %mechanism, "authenticated");
            // KIP-368: the session's lifetime; the client authenticates again within it.
            let lifetime = shard.config.security.connections_max_reauth_ms;
            if lifetime > 0 {
                session.expire_in(std::time::Duration::from_millis(lifetime));
            }
            let answer = response(errors::NONE, None, last_message)
                .with_session_lifetime_ms(i64::try_from(lifetime).unwrap_or(i64::MAX));
            encode(header, &answer)
        }
        Err(Failure::PrincipalChanged { was, now }) => {
            tracing::warn!(target: "keel::audit", peer = %session.peer, %was, %now, "re-authentication refused: another principal");
            let message =
                format!("Cannot change principals during re-authentication from {was} to {now}");
            last(shard, header, errors::SASL_AUTHENTICATION_FAILED, &message)
        }
        Err(Failure::IllegalState) => last(
            shard,
            header,
            errors::ILLEGAL_SASL_STATE,
            "no SASL exchange in progress",
        ),
        Err(Failure::Refused {
            mechanism,
            user,
            reason,
        }) => {
            shard.metrics.authentication(mechanism, false);
            tracing::warn!(target: "keel::audit", peer = %session.peer, user = user.as_deref().unwrap_or("-"), %mechanism, %reason, "authentication failed");
            let message = format!(
                "Authentication failed during authentication due to invalid credentials with SASL mechanism {mechanism}"
            );
            last(shard, header, errors::SASL_AUTHENTICATION_FAILED, &message)
        }
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
    let pause =
        std::time::Duration::from_millis(shard.config.security.failed_authentication_delay_ms);
    match encode(header, &response(code, Some(message), Vec::new())) {
        Answer::Parts(parts) => Answer::Last(parts, pause),
        other => other,
    }
}
