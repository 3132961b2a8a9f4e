//! Errors of the client.

use keel_protocol::api::ErrorCode;

/// Result of the client.
pub type Result<T> = std::result::Result<T, Error>;

/// What can go wrong talking to a broker.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The broker could not be reached or the connection broke.
    #[error("broker not reachable at {addr}: {message}")]
    Connect {
        /// Address tried.
        addr: String,
        /// What the operating system said.
        message: String,
    },
    /// The connection failed while a request was outstanding.
    #[error("connection to {addr} lost: {message}")]
    Io {
        /// Broker address.
        addr: String,
        /// What happened.
        message: String,
    },
    /// The broker answered with an error.
    #[error("broker error {code:?}: {message}")]
    Broker {
        /// The error code.
        code: ErrorCode,
        /// Detail (the code's meaning when the broker sent none).
        message: String,
    },
    /// A request could not be encoded: a value is longer than the wire allows.
    #[error("request cannot be sent: {0}")]
    Encode(#[from] keel_protocol::wire::EncodeError),
    /// The broker's answer could not be decoded.
    #[error("malformed response: {0}")]
    Protocol(String),
    /// No answer within the request timeout.
    #[error("request timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// The producer's buffer is full and it is configured not to wait.
    #[error("producer buffer full ({0} bytes)")]
    BufferFull(usize),
    /// A record cannot be sent as given.
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    /// The topic does not exist.
    #[error("topic {0} does not exist")]
    UnknownTopic(String),
    /// The producer or client was closed.
    #[error("closed")]
    Closed,
}

impl Error {
    pub(crate) fn broker(code: ErrorCode, message: impl Into<String>) -> Error {
        let message = message.into();
        let message = if message.is_empty() {
            code.message().to_owned()
        } else {
            message
        };
        Error::Broker { code, message }
    }

    /// Why a topic's Metadata entry (answered `code`) cannot be used: a topic this client
    /// may not describe is the broker's authorization error; anything else, an unknown
    /// topic.
    pub(crate) fn topic_unusable(name: &str, code: ErrorCode) -> Error {
        if code == ErrorCode::TopicAuthorizationFailed {
            Error::broker(code, "")
        } else {
            Error::UnknownTopic(name.to_owned())
        }
    }

    /// Whether the group moved on (a rebalance): the commit is refused, the consumer rejoins.
    pub fn is_rebalance(&self) -> bool {
        matches!(
            self,
            Error::Broker {
                code: ErrorCode::RebalanceInProgress
                    | ErrorCode::IllegalGeneration
                    | ErrorCode::UnknownMemberId,
                ..
            }
        )
    }

    /// Whether retrying the same request may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Io { .. } | Error::Connect { .. } | Error::Timeout(_) => true,
            Error::Broker { code, .. } => matches!(
                code,
                ErrorCode::RequestTimedOut
                    | ErrorCode::ShuttingDown
                    | ErrorCode::StorageError
                    | ErrorCode::NotLeaderOrFollower
                    | ErrorCode::LeaderNotAvailable
                    | ErrorCode::NotController
                    | ErrorCode::NotEnoughReplicas
                    | ErrorCode::FencedLeaderEpoch
                    | ErrorCode::UnknownLeaderEpoch
                    | ErrorCode::NotCoordinator
                    | ErrorCode::CoordinatorLoadInProgress
                    | ErrorCode::CoordinatorNotAvailable
            ),
            _ => false,
        }
    }
}
