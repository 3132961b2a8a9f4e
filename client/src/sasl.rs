//! Authenticating a new connection with SASL (a broker's `--native-security
//! SASL_PLAINTEXT|SASL_SSL`): SaslHandshake, then SaslAuthenticate carrying keel-auth's
//! SCRAM-SHA-512/256 or PLAIN messages; the server's SCRAM signature is checked, so a
//! broker that does not know the password is not trusted either.

use crate::connection::{Connection, CONNECT_TIMEOUT};
use crate::error::{Error, Result};
use keel_auth::scram::ScramClient;
use keel_auth::Mechanism;
use keel_protocol::api::{ErrorCode, Request, Response, SecurityRequest, SecurityResponse};
use std::time::Duration;

/// A user's SASL credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct SaslCredentials {
    /// The mechanism.
    pub mechanism: Mechanism,
    /// The user.
    pub user: String,
    /// The password.
    pub password: String,
}

impl std::fmt::Debug for SaslCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} user {}", self.mechanism, self.user)
    }
}

/// Runs the exchange on `connection`: the session's lifetime when the broker gives one
/// (re-authentication, KIP-368: the client connects again before it ends).
///
/// # Errors
/// [`Error::Broker`] with `SaslAuthenticationFailed` for refused credentials (the broker
/// does not say whether the user or the password was wrong), or the mechanism not offered.
pub(crate) async fn authenticate(
    connection: &Connection,
    credentials: &SaslCredentials,
) -> Result<Option<Duration>> {
    let mechanism = credentials.mechanism;
    let handshake = SecurityRequest::SaslHandshake {
        mechanism: mechanism.name().to_owned(),
    };
    match call(connection, handshake).await? {
        SecurityResponse::SaslHandshake {
            error: ErrorCode::None,
            ..
        } => {}
        SecurityResponse::SaslHandshake { error, mechanisms } => {
            return Err(Error::Broker {
                code: error,
                message: format!("{mechanism} refused; the listener offers {mechanisms:?}"),
            })
        }
        other => return Err(unexpected(&other)),
    }
    let (user, password) = (&credentials.user, &credentials.password);
    let lifetime = match mechanism.scram() {
        None => {
            step(connection, keel_auth::plain::message(user, password))
                .await?
                .1
        }
        Some(hash) => {
            let nonce = random_hex()?;
            let mut client = ScramClient::new(hash, user, password, &nonce);
            let (server_first, _) = step(connection, client.first()).await?;
            let reply = client.reply(&server_first).map_err(refused)?;
            let (server_final, lifetime) = step(connection, reply).await?;
            client.verify(&server_final).map_err(refused)?;
            lifetime
        }
    };
    Ok((lifetime > 0).then(|| Duration::from_millis(lifetime)))
}

/// One SaslAuthenticate: the broker's message and the session lifetime it gives.
async fn step(connection: &Connection, message: Vec<u8>) -> Result<(Vec<u8>, u64)> {
    let request = SecurityRequest::SaslAuthenticate {
        auth_bytes: message.into(),
    };
    match call(connection, request).await? {
        SecurityResponse::SaslAuthenticate {
            error: ErrorCode::None,
            auth_bytes,
            session_lifetime_ms,
            ..
        } => Ok((auth_bytes.to_vec(), session_lifetime_ms)),
        SecurityResponse::SaslAuthenticate { error, message, .. } => Err(Error::Broker {
            code: error,
            message,
        }),
        other => Err(unexpected(&other)),
    }
}

async fn call(connection: &Connection, request: SecurityRequest) -> Result<SecurityResponse> {
    match connection
        .call_timeout(&Request::Security(request), CONNECT_TIMEOUT)
        .await?
    {
        Response::Security(response) => Ok(response),
        _ => Err(Error::Protocol("an answer to another request".into())),
    }
}

fn unexpected(response: &SecurityResponse) -> Error {
    Error::Protocol(format!("unexpected answer {response:?}"))
}

fn refused(e: keel_auth::AuthError) -> Error {
    Error::Broker {
        code: ErrorCode::SaslAuthenticationFailed,
        message: e.to_string(),
    }
}

/// A client nonce: 24 random bytes as hex (printable, as SCRAM asks).
fn random_hex() -> Result<String> {
    let mut bytes = [0u8; 24];
    getrandom::getrandom(&mut bytes)
        .map_err(|e| Error::Protocol(format!("no randomness for a SASL nonce: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
