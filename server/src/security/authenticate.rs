//! A connection's SASL exchange as both listeners run it: the mechanism chosen, each
//! message checked against the users, the session's lifetime (KIP-368), the metric and the
//! audit line of every outcome. The Kafka and native adapters only put the outcome in their
//! messages and codes.

use super::sasl::{Failure, HandshakeError, Step};
use super::{random_bytes, Session};
use crate::shard::Shard;
use std::rc::Rc;

/// What one SaslAuthenticate gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The mechanism's next challenge.
    Challenge(Vec<u8>),
    /// Authenticated: the mechanism's last message, and the session's lifetime in
    /// milliseconds (0: no limit).
    Done {
        /// The last message.
        response: Vec<u8>,
        /// The session's lifetime.
        lifetime_ms: u64,
    },
    /// No exchange expected now (Kafka's ILLEGAL_SASL_STATE); the connection closes.
    IllegalState(&'static str),
    /// Refused (Kafka's SASL_AUTHENTICATION_FAILED): the same message whatever the reason,
    /// so a client cannot tell an unknown user from a wrong password; the connection
    /// closes after [`failure_pause`].
    Refused(String),
}

/// SaslHandshake: the mechanisms offered, and whether `mechanism` is one (a refusal is an
/// audit line). `None` on a listener without SASL.
pub fn handshake(
    session: &Session,
    mechanism: &str,
) -> Option<(Result<(), HandshakeError>, Vec<&'static str>)> {
    let sasl = session.sasl.as_ref()?;
    let mut sasl = sasl.borrow_mut();
    let chosen = sasl.handshake(mechanism).map(|_| ());
    if chosen == Err(HandshakeError::Unsupported) {
        tracing::info!(target: "keel::audit", peer = %session.peer, mechanism = %crate::config::clip(mechanism), "authentication refused: mechanism not enabled");
    }
    Some((chosen, sasl.enabled().collect()))
}

/// SaslAuthenticate: the next message of the exchange.
pub fn authenticate(shard: &Rc<Shard>, session: &Session, message: &[u8]) -> Outcome {
    let Some(sasl) = &session.sasl else {
        return Outcome::IllegalState("SASL is not enabled on this listener");
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
        Ok(Step::Challenge(challenge)) => Outcome::Challenge(challenge),
        Ok(Step::Done {
            mechanism,
            user,
            response,
        }) => {
            shard.metrics.authentication(mechanism, true);
            tracing::info!(target: "keel::audit", peer = %session.peer, user = %user, %mechanism, "authenticated");
            // KIP-368: the session's lifetime; the client authenticates again within it.
            let lifetime_ms = shard.config.security.connections_max_reauth_ms;
            if lifetime_ms > 0 {
                session.expire_in(std::time::Duration::from_millis(lifetime_ms));
            }
            Outcome::Done {
                response,
                lifetime_ms,
            }
        }
        Err(Failure::PrincipalChanged { was, now }) => {
            tracing::warn!(target: "keel::audit", peer = %session.peer, %was, %now, "re-authentication refused: another principal");
            Outcome::Refused(format!(
                "Cannot change principals during re-authentication from {was} to {now}"
            ))
        }
        Err(Failure::IllegalState) => Outcome::IllegalState("no SASL exchange in progress"),
        Err(Failure::Refused {
            mechanism,
            user,
            reason,
        }) => {
            shard.metrics.authentication(mechanism, false);
            tracing::warn!(target: "keel::audit", peer = %session.peer, user = user.as_deref().unwrap_or("-"), %mechanism, %reason, "authentication failed");
            Outcome::Refused(format!(
                "Authentication failed during authentication due to invalid credentials with SASL mechanism {mechanism}"
            ))
        }
    }
}

/// How long a refused exchange's answer waits (Kafka's
/// `connection.failed.authentication.delay.ms`): guessing passwords costs time.
pub fn failure_pause(shard: &Shard) -> std::time::Duration {
    std::time::Duration::from_millis(shard.config.security.failed_authentication_delay_ms)
}
