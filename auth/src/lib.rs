//! Authentication mechanisms as plain state machines, no I/O: the broker and the client
//! feed them the bytes a SASL exchange carries and send what they return. Randomness
//! (nonces, salts) is an input, so every exchange can be replayed in a test.
//!
//! - [`scram`]: SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677), server and client,
//!   without channel binding (as Kafka).
//! - [`plain`]: PLAIN (RFC 4616), checked against the same stored SCRAM credentials, so a
//!   broker never keeps a password.
//! - [`PrincipalRules`]: Kafka's rules naming a principal after a TLS certificate's subject.
//! - [`ScramCredential`]: what a broker stores for a user: salt, iteration count, and the
//!   stored and server keys derived from the password.

pub mod acl;
mod mapping;
pub mod plain;
pub mod quota;
pub mod scram;

mod credential;

pub use credential::{ScramCredential, ITERATIONS_MAX, ITERATIONS_MIN};
pub use mapping::PrincipalRules;

/// A SASL mechanism, by its IANA name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mechanism {
    /// PLAIN: the password in the clear (use it under TLS only).
    Plain,
    /// SCRAM-SHA-256.
    ScramSha256,
    /// SCRAM-SHA-512.
    ScramSha512,
}

impl Mechanism {
    /// Every mechanism, in the order brokers offer them.
    pub const ALL: [Mechanism; 3] = [
        Mechanism::ScramSha512,
        Mechanism::ScramSha256,
        Mechanism::Plain,
    ];

    /// The mechanism's name on the wire (`SCRAM-SHA-512`, …).
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }

    /// The mechanism named `name` (case as on the wire), if known.
    pub fn parse(name: &str) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The SCRAM hash of a SCRAM mechanism.
    pub fn scram(self) -> Option<scram::Hash> {
        match self {
            Mechanism::Plain => None,
            Mechanism::ScramSha256 => Some(scram::Hash::Sha256),
            Mechanism::ScramSha512 => Some(scram::Hash::Sha512),
        }
    }
}

impl std::fmt::Display for Mechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why an exchange failed. Servers answer every variant with the same message to the
/// peer (so a client cannot tell an unknown user from a wrong password) and log the
/// variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// A message that does not follow the mechanism's grammar.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// No credential for this user and mechanism.
    #[error("unknown user")]
    UnknownUser,
    /// The proof (or password) does not match the stored credential.
    #[error("invalid credentials")]
    BadCredentials,
    /// The peer asked for something this implementation refuses (channel binding, an
    /// authorization id other than the user, an iteration count out of range).
    #[error("refused: {0}")]
    Refused(&'static str),
    /// A message arrived when the exchange expected none, or another one.
    #[error("message out of order")]
    OutOfOrder,
    /// The server's signature does not match (client side: the server does not know the
    /// password either).
    #[error("the server's signature does not match")]
    BadServerSignature,
}
