//! One connection's SASL exchange, as Kafka runs it: SaslHandshake picks a mechanism, then
//! SaslAuthenticate carries its messages until the user is authenticated or refused. With
//! re-authentication on (KIP-368) an authenticated connection may run the exchange again,
//! as the same principal, keeping its principal meanwhile. A plain state machine: the
//! listener feeds it requests and sends what it returns.

use super::Principal;
use keel_auth::scram::ScramServer;
use keel_auth::{AuthError, Mechanism, ScramCredential};

/// Where an exchange stands.
#[derive(Debug)]
enum State {
    /// Nothing asked yet.
    Start,
    /// A mechanism chosen, its first message awaited.
    Chosen(Mechanism),
    /// A SCRAM exchange after its first message.
    Scram(Box<ScramServer>),
    /// Done: the connection acts as this principal from now on.
    Authenticated(Principal),
    /// Refused: the connection closes.
    Failed,
}

/// A connection's SASL exchange.
#[derive(Debug)]
pub struct Sasl {
    enabled: Vec<Mechanism>,
    state: State,
    /// Whether an authenticated connection may authenticate again (KIP-368).
    reauthentication: bool,
    /// During a re-authentication, who the connection was and still is until it succeeds.
    previous: Option<Principal>,
}

/// Why a SaslHandshake is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeError {
    /// The mechanism is not enabled on this listener (Kafka's UNSUPPORTED_SASL_MECHANISM).
    Unsupported,
    /// A handshake after one already happened (Kafka's ILLEGAL_SASL_STATE).
    IllegalState,
}

/// What one SaslAuthenticate gets back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The mechanism's next challenge; the exchange goes on.
    Challenge(Vec<u8>),
    /// Authenticated as the user: the mechanism's last message (empty for PLAIN).
    Done {
        /// The mechanism used.
        mechanism: Mechanism,
        /// The user.
        user: String,
        /// The last message to send.
        response: Vec<u8>,
    },
}

/// Why a SaslAuthenticate fails: the connection closes after the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// No handshake first, or the exchange is over (Kafka's ILLEGAL_SASL_STATE).
    IllegalState,
    /// A re-authentication named another principal than the connection's (Kafka refuses
    /// it: a connection's identity is fixed).
    PrincipalChanged {
        /// The connection's principal.
        was: Principal,
        /// The one the exchange authenticated.
        now: Principal,
    },
    /// The credentials were refused (Kafka's SASL_AUTHENTICATION_FAILED); the reason is
    /// for the log only.
    Refused {
        /// The mechanism used.
        mechanism: Mechanism,
        /// The user named, when the message named one.
        user: Option<String>,
        /// Why, for the log.
        reason: AuthError,
    },
}

impl Sasl {
    /// An exchange offering `enabled`; `reauthentication`: an authenticated connection
    /// may authenticate again (KIP-368).
    pub fn new(enabled: Vec<Mechanism>, reauthentication: bool) -> Sasl {
        Sasl {
            enabled,
            state: State::Start,
            reauthentication,
            previous: None,
        }
    }

    /// The mechanisms offered, by name (SaslHandshake's answer).
    pub fn enabled(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.enabled.iter().map(|m| m.name())
    }

    /// The authenticated principal, once there is one (during a re-authentication, the
    /// one the connection had).
    pub fn principal(&self) -> Option<&Principal> {
        match &self.state {
            State::Authenticated(principal) => Some(principal),
            _ => self.previous.as_ref(),
        }
    }

    /// Whether the exchange has not succeeded yet and has not failed either.
    pub fn in_progress(&self) -> bool {
        !matches!(self.state, State::Authenticated(_) | State::Failed)
    }

    /// SaslHandshake: chooses `mechanism`.
    ///
    /// # Errors
    /// A mechanism not enabled, or a second handshake.
    pub fn handshake(&mut self, mechanism: &str) -> Result<Mechanism, HandshakeError> {
        if self.reauthentication {
            if let State::Authenticated(principal) = &self.state {
                self.previous = Some(principal.clone());
                self.state = State::Start;
            }
        }
        if !matches!(self.state, State::Start) {
            self.state = State::Failed;
            return Err(HandshakeError::IllegalState);
        }
        let chosen = Mechanism::parse(mechanism)
            .filter(|m| self.enabled.contains(m))
            .ok_or(HandshakeError::Unsupported)?;
        self.state = State::Chosen(chosen);
        Ok(chosen)
    }

    /// SaslAuthenticate: the mechanism's next message. `lookup` finds a user's credential
    /// for a mechanism; `nonce` is this exchange's server nonce (random, printable).
    ///
    /// # Errors
    /// No handshake before, or credentials refused: the exchange is over.
    pub fn authenticate(
        &mut self,
        message: &[u8],
        lookup: impl Fn(&str, Mechanism) -> Option<ScramCredential>,
        nonce: &str,
    ) -> Result<Step, Failure> {
        let state = std::mem::replace(&mut self.state, State::Failed);
        // The mechanism, the user named so far (for the log), and the outcome.
        let (mechanism, named, result) = match state {
            State::Chosen(Mechanism::Plain) => {
                let result = keel_auth::plain::authenticate(message, |user| {
                    lookup(user, Mechanism::ScramSha512)
                        .or_else(|| lookup(user, Mechanism::ScramSha256))
                });
                let done = result.map(|user| Step::Done {
                    mechanism: Mechanism::Plain,
                    user,
                    response: Vec::new(),
                });
                (
                    Mechanism::Plain,
                    user_named(Mechanism::Plain, message),
                    done,
                )
            }
            State::Chosen(mechanism) => {
                let hash = mechanism.scram().expect("PLAIN is matched above");
                let mut server = Box::new(ScramServer::new(hash));
                let first = server.client_first(message, nonce, |user| lookup(user, mechanism));
                if first.is_ok() {
                    self.state = State::Scram(server);
                }
                let named = user_named(mechanism, message);
                (mechanism, named, first.map(Step::Challenge))
            }
            State::Scram(mut server) => {
                let mechanism = match server.hash() {
                    keel_auth::scram::Hash::Sha256 => Mechanism::ScramSha256,
                    keel_auth::scram::Hash::Sha512 => Mechanism::ScramSha512,
                };
                let named = server.user().map(str::to_owned);
                let done = server
                    .client_final(message)
                    .map(|(user, response)| Step::Done {
                        mechanism,
                        user,
                        response,
                    });
                (mechanism, named, done)
            }
            State::Start | State::Authenticated(_) | State::Failed => {
                return Err(Failure::IllegalState)
            }
        };
        match result {
            Ok(Step::Done {
                mechanism,
                user,
                response,
            }) => {
                let now = Principal::user(&user);
                if let Some(was) = self.previous.take().filter(|was| *was != now) {
                    return Err(Failure::PrincipalChanged { was, now });
                }
                self.state = State::Authenticated(now);
                Ok(Step::Done {
                    mechanism,
                    user,
                    response,
                })
            }
            Ok(challenge) => Ok(challenge),
            Err(reason) => Err(Failure::Refused {
                mechanism,
                user: named,
                reason,
            }),
        }
    }
}

/// The user a first message names, for the log (SCRAM's `n=`, PLAIN's authcid), cut to
/// 64 characters.
fn user_named(mechanism: Mechanism, message: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(message).ok()?;
    let name = match mechanism {
        Mechanism::Plain => text.split('\0').nth(1)?,
        _ => text.split(',').find_map(|f| f.strip_prefix("n="))?,
    };
    Some(name.chars().take(64).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_auth::scram::ScramClient;

    fn lookup(user: &str, mechanism: Mechanism) -> Option<ScramCredential> {
        let hash = mechanism.scram()?;
        (user == "alice").then(|| ScramCredential::new(hash, "secret", b"salt", 4096).unwrap())
    }

    fn scram(mechanism: Mechanism, password: &str) -> (Sasl, Result<Step, Failure>) {
        let mut sasl = Sasl::new(vec![Mechanism::ScramSha512, Mechanism::Plain], false);
        let hash = mechanism.scram().unwrap();
        sasl.handshake(mechanism.name()).unwrap();
        let mut client = ScramClient::new(hash, "alice", password, "cnonce");
        let Ok(Step::Challenge(first)) = sasl.authenticate(&client.first(), lookup, "snonce")
        else {
            panic!("a challenge")
        };
        let last = sasl.authenticate(&client.reply(&first).unwrap(), lookup, "unused");
        if let Ok(Step::Done { response, .. }) = &last {
            client.verify(response).unwrap();
        }
        (sasl, last)
    }

    #[test]
    fn a_scram_exchange_fixes_the_principal() {
        let (sasl, step) = scram(Mechanism::ScramSha512, "secret");
        assert!(matches!(step, Ok(Step::Done { user, .. }) if user == "alice"));
        assert_eq!(sasl.principal(), Some(&Principal::user("alice")));
        assert!(!sasl.in_progress());
    }

    #[test]
    fn a_wrong_password_fails_the_exchange_for_good() {
        let (mut sasl, step) = scram(Mechanism::ScramSha512, "guess");
        assert!(matches!(
            step,
            Err(Failure::Refused {
                reason: AuthError::BadCredentials,
                ..
            })
        ));
        assert_eq!(sasl.principal(), None);
        assert!(!sasl.in_progress());
        assert_eq!(
            sasl.authenticate(b"anything", lookup, "n"),
            Err(Failure::IllegalState)
        );
        assert_eq!(sasl.handshake("PLAIN"), Err(HandshakeError::IllegalState));
    }

    #[test]
    fn only_enabled_mechanisms_and_one_handshake() {
        let mut sasl = Sasl::new(vec![Mechanism::ScramSha512], false);
        assert_eq!(
            sasl.handshake("SCRAM-SHA-256"),
            Err(HandshakeError::Unsupported)
        );
        assert_eq!(sasl.handshake("GSSAPI"), Err(HandshakeError::Unsupported));
        assert_eq!(sasl.enabled().collect::<Vec<_>>(), ["SCRAM-SHA-512"]);
        assert_eq!(
            sasl.authenticate(b"x", lookup, "n"),
            Err(Failure::IllegalState)
        );
        let mut sasl = Sasl::new(vec![Mechanism::ScramSha512], false);
        assert_eq!(sasl.handshake("SCRAM-SHA-512"), Ok(Mechanism::ScramSha512));
        assert_eq!(
            sasl.handshake("SCRAM-SHA-512"),
            Err(HandshakeError::IllegalState)
        );
    }

    #[test]
    fn plain_checks_the_scram_credential_and_names_the_user_refused() {
        let mut sasl = Sasl::new(vec![Mechanism::Plain], false);
        sasl.handshake("PLAIN").unwrap();
        let done = sasl.authenticate(b"\0alice\0secret", lookup, "n").unwrap();
        assert_eq!(
            done,
            Step::Done {
                mechanism: Mechanism::Plain,
                user: "alice".into(),
                response: Vec::new()
            }
        );
        let mut sasl = Sasl::new(vec![Mechanism::Plain], false);
        sasl.handshake("PLAIN").unwrap();
        let Err(Failure::Refused { user, reason, .. }) =
            sasl.authenticate(b"\0mallory\0secret", lookup, "n")
        else {
            panic!("refused")
        };
        assert_eq!(
            (user.as_deref(), reason),
            (Some("mallory"), AuthError::UnknownUser)
        );
    }

    // KIP-368: an authenticated connection authenticates again as the same principal,
    // keeping its principal meanwhile; another principal is refused; without
    // re-authentication a second handshake is illegal.
    #[test]
    fn reauthentication_keeps_the_principal() {
        let both = |user: &str, m: Mechanism| {
            let hash = m.scram()?;
            matches!(user, "alice" | "bob")
                .then(|| ScramCredential::new(hash, "secret", b"salt", 4096).unwrap())
        };
        let mut sasl = Sasl::new(vec![Mechanism::Plain], true);
        sasl.handshake("PLAIN").unwrap();
        sasl.authenticate(b"\0alice\0secret", both, "n").unwrap();
        sasl.handshake("PLAIN").unwrap();
        assert_eq!(
            sasl.principal(),
            Some(&Principal::user("alice")),
            "kept meanwhile"
        );
        sasl.authenticate(b"\0alice\0secret", both, "n").unwrap();
        assert_eq!(sasl.principal(), Some(&Principal::user("alice")));
        sasl.handshake("PLAIN").unwrap();
        assert_eq!(
            sasl.authenticate(b"\0bob\0secret", both, "n"),
            Err(Failure::PrincipalChanged {
                was: Principal::user("alice"),
                now: Principal::user("bob")
            })
        );
        let mut once = Sasl::new(vec![Mechanism::Plain], false);
        once.handshake("PLAIN").unwrap();
        once.authenticate(b"\0alice\0secret", both, "n").unwrap();
        assert_eq!(once.handshake("PLAIN"), Err(HandshakeError::IllegalState));
    }
}
