//! What can go wrong, in one enum: errors the broker answered (Kafka error codes), errors on the
//! way there (connections, timeouts, malformed answers) and misuse.

use std::fmt;
use std::time::Duration;

use kafka_protocol::error::ResponseError;

/// A Kafka error code as a broker answered it, with its protocol name.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KafkaCode(pub i16);

impl KafkaCode {
    pub const NONE: KafkaCode = KafkaCode(0);
    pub const OFFSET_OUT_OF_RANGE: KafkaCode = KafkaCode(1);
    pub const UNKNOWN_TOPIC_OR_PARTITION: KafkaCode = KafkaCode(3);
    pub const LEADER_NOT_AVAILABLE: KafkaCode = KafkaCode(5);
    pub const NOT_LEADER_OR_FOLLOWER: KafkaCode = KafkaCode(6);
    pub const REQUEST_TIMED_OUT: KafkaCode = KafkaCode(7);
    pub const COORDINATOR_LOAD_IN_PROGRESS: KafkaCode = KafkaCode(14);
    pub const COORDINATOR_NOT_AVAILABLE: KafkaCode = KafkaCode(15);
    pub const NOT_COORDINATOR: KafkaCode = KafkaCode(16);
    pub const ILLEGAL_GENERATION: KafkaCode = KafkaCode(22);
    pub const UNKNOWN_MEMBER_ID: KafkaCode = KafkaCode(25);
    pub const REBALANCE_IN_PROGRESS: KafkaCode = KafkaCode(27);
    pub const TOPIC_ALREADY_EXISTS: KafkaCode = KafkaCode(36);
    pub const UNSUPPORTED_VERSION: KafkaCode = KafkaCode(35);
    pub const OUT_OF_ORDER_SEQUENCE_NUMBER: KafkaCode = KafkaCode(45);
    pub const DUPLICATE_SEQUENCE_NUMBER: KafkaCode = KafkaCode(46);
    pub const INVALID_PRODUCER_EPOCH: KafkaCode = KafkaCode(47);
    pub const MEMBER_ID_REQUIRED: KafkaCode = KafkaCode(79);
    pub const FENCED_LEADER_EPOCH: KafkaCode = KafkaCode(74);
    pub const UNKNOWN_LEADER_EPOCH: KafkaCode = KafkaCode(75);
    pub const UNKNOWN_PRODUCER_ID: KafkaCode = KafkaCode(59);
    pub const FENCED_INSTANCE_ID: KafkaCode = KafkaCode(82);
    pub const GROUP_ID_NOT_FOUND: KafkaCode = KafkaCode(69);
    pub const NON_EMPTY_GROUP: KafkaCode = KafkaCode(68);
    pub const GROUP_SUBSCRIBED_TO_TOPIC: KafkaCode = KafkaCode(86);

    /// `None` for 0, the code otherwise.
    pub fn from_code(code: i16) -> Option<KafkaCode> {
        (code != 0).then_some(KafkaCode(code))
    }

    /// The name Kafka gives the code (`NOT_LEADER_OR_FOLLOWER`), or `UNKNOWN(n)`.
    pub fn name(self) -> String {
        match ResponseError::try_from_code(self.0) {
            None => "NONE".to_string(),
            Some(ResponseError::Unknown(code)) => format!("UNKNOWN({code})"),
            Some(known) => screaming_snake(&format!("{known:?}")),
        }
    }

    /// Whether Kafka marks the error retriable (the request may succeed if sent again).
    pub fn is_retriable(self) -> bool {
        ResponseError::try_from_code(self.0).is_some_and(|error| error.is_retriable())
    }

    /// Errors that mean our metadata is stale: refresh it before retrying.
    pub fn invalidates_metadata(self) -> bool {
        matches!(
            self,
            KafkaCode::UNKNOWN_TOPIC_OR_PARTITION
                | KafkaCode::LEADER_NOT_AVAILABLE
                | KafkaCode::NOT_LEADER_OR_FOLLOWER
                | KafkaCode::FENCED_LEADER_EPOCH
                | KafkaCode::UNKNOWN_LEADER_EPOCH
        )
    }

    /// Errors that mean the group coordinator moved or is not ready.
    pub fn is_coordinator_error(self) -> bool {
        matches!(
            self,
            KafkaCode::COORDINATOR_LOAD_IN_PROGRESS
                | KafkaCode::COORDINATOR_NOT_AVAILABLE
                | KafkaCode::NOT_COORDINATOR
        )
    }
}

fn screaming_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (index, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && index > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

impl fmt::Debug for KafkaCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.name(), self.0)
    }
}

impl fmt::Display for KafkaCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.0)
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The broker answered with an error code.
    #[error("{context}: broker answered {code}{}", message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Kafka {
        code: KafkaCode,
        context: String,
        message: Option<String>,
    },
    /// No answer within the request timeout. For a produce this means the outcome is unknown:
    /// the records may or may not have been written.
    #[error("{context}: no answer within {after:?}")]
    Timeout { context: String, after: Duration },
    /// A write whose outcome cannot be known (a timed-out or cut-off produce): the records may
    /// have been written. Retrying may duplicate them unless the producer is idempotent.
    #[error("outcome unknown: {0}")]
    UnknownOutcome(String),
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("connection to {addr} lost: {reason}")]
    Disconnected { addr: String, reason: String },
    /// The broker sent something that is not valid Kafka protocol.
    #[error("protocol error from {addr}: {reason}")]
    Protocol { addr: String, reason: String },
    /// The broker speaks no version of an API this client needs, in the range it knows.
    #[error("{addr} supports no version of API {api_key} in {ours_min}..={ours_max}")]
    UnsupportedVersion {
        addr: String,
        api_key: i16,
        ours_min: i16,
        ours_max: i16,
    },
    /// The producer's buffer is full (and `try_send` does not wait).
    #[error("producer buffer full")]
    BufferFull,
    /// A caller asked for something impossible (an unknown partition, a bad config).
    #[error("invalid: {0}")]
    Invalid(String),
    /// A producer whose idempotent state is broken beyond repair, or a consumer fenced by a
    /// newer member with its `group.instance.id`.
    #[error("fatal: {0}")]
    Fatal(String),
    /// The client, producer or consumer was closed.
    #[error("closed")]
    Closed,
}

impl Error {
    pub fn kafka(code: KafkaCode, context: impl Into<String>, message: Option<String>) -> Error {
        Error::Kafka {
            code,
            context: context.into(),
            message: message.filter(|m| !m.is_empty()),
        }
    }

    /// The Kafka error code, when the broker answered one.
    pub fn code(&self) -> Option<KafkaCode> {
        match self {
            Error::Kafka { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether sending the same request again may succeed: retriable Kafka errors, lost or
    /// refused connections and timeouts.
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Kafka { code, .. } => code.is_retriable(),
            Error::Timeout { .. } | Error::Connect { .. } | Error::Disconnected { .. } => true,
            _ => false,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_named_as_kafka_names_them() {
        assert_eq!(KafkaCode(6).name(), "NOT_LEADER_OR_FOLLOWER");
        assert_eq!(KafkaCode(0).name(), "NONE");
        assert_eq!(KafkaCode(-7).name(), "UNKNOWN(-7)");
        assert!(KafkaCode::NOT_LEADER_OR_FOLLOWER.is_retriable());
        assert!(!KafkaCode::TOPIC_ALREADY_EXISTS.is_retriable());
    }
}
