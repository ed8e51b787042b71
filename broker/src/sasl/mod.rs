//! SASL authentication, as Apache Kafka's SASL_PLAINTEXT listener does it: PLAIN,
//! SCRAM-SHA-256 and SCRAM-SHA-512.
//!
//! A connection starts unauthenticated when [`Config::sasl`](crate::Config::sasl) is set. Until
//! the exchange completes only ApiVersions (once, before the handshake), SaslHandshake and then
//! SaslAuthenticate are served; anything else closes the connection, as Kafka's
//! `SaslServerAuthenticator` does. A SaslHandshake v0 switches the exchange to raw tokens
//! (size-prefixed, no Kafka header), as clients before KIP-152 speak it; v1 carries the
//! tokens in SaslAuthenticate requests. After success the connection is an ordinary one, and
//! SaslHandshake or SaslAuthenticate there get ILLEGAL_SASL_STATE (handler/sasl_*.rs), as on
//! Kafka.
//!
//! The exchange runs before the test control plane sees requests (Kafka's authenticator runs
//! before its request handlers), except ApiVersions, which goes the usual way so a version
//! cap applies to it.

pub mod plain;
pub mod scram;

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use tidepool_io::Entropy;

/// The SASL APIs and the versions we answer, advertised by ApiVersions when SASL is on.
/// `kafka-protocol` 0.18 decodes exactly these.
pub const SASL_APIS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
];

/// A SASL mechanism this broker can offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mechanism {
    Plain,
    ScramSha256,
    ScramSha512,
}

impl Mechanism {
    pub const ALL: [Mechanism; 3] = [
        Mechanism::Plain,
        Mechanism::ScramSha256,
        Mechanism::ScramSha512,
    ];

    /// The name on the wire (SaslHandshake), case and all.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }

    /// The mechanism a handshake names; matched exactly, as Kafka does.
    pub fn from_wire(name: &str) -> Option<Mechanism> {
        Mechanism::ALL
            .into_iter()
            .find(|mechanism| mechanism.name() == name)
    }

    fn scram_hash(self) -> Option<scram::Hash> {
        match self {
            Mechanism::Plain => None,
            Mechanism::ScramSha256 => Some(scram::Hash::Sha256),
            Mechanism::ScramSha512 => Some(scram::Hash::Sha512),
        }
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Case-insensitive, for command lines and config files.
impl std::str::FromStr for Mechanism {
    type Err = SaslConfigError;

    fn from_str(name: &str) -> Result<Mechanism, SaslConfigError> {
        Mechanism::ALL
            .into_iter()
            .find(|mechanism| mechanism.name().eq_ignore_ascii_case(name.trim()))
            .ok_or_else(|| SaslConfigError::UnknownMechanism(name.to_owned()))
    }
}

/// A password, kept out of `Debug` output and logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub fn new(password: impl Into<String>) -> Password {
        Password(password.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// A configuration the broker refuses to start with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslConfigError {
    #[error("unknown SASL mechanism {0:?} (known: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)")]
    UnknownMechanism(String),
    #[error("no SASL mechanism enabled")]
    NoMechanism,
    #[error("SASL user name {0:?} is empty, too long (over 255 bytes) or holds a NUL")]
    BadUserName(String),
    #[error("SASL user {0:?} has an empty password, one over 255 bytes or one holding a NUL")]
    BadPassword(String),
    #[error("SASL user {0:?} is given twice")]
    DuplicateUser(String),
    #[error("more than {max} SASL users")]
    TooManyUsers { max: usize },
    #[error("SCRAM iterations {0} outside Kafka's {min}..={max}", min = scram::ITERATIONS_MIN, max = scram::ITERATIONS_MAX)]
    Iterations(u32),
    #[error("SASL user {line:?} is not NAME:PASSWORD")]
    BadUserLine { line: String },
}

#[derive(Clone)]
struct User {
    password: Password,
    /// SCRAM credentials of each enabled SCRAM mechanism, computed once when the user is added.
    scram: BTreeMap<Mechanism, scram::Credential>,
}

/// SASL on every listener: the mechanisms offered and the users who may log in. Built with
/// [`SaslConfig::new`] and [`SaslConfig::with_user`]; SCRAM credentials are derived when a
/// user is added (PBKDF2 with `scram_iterations`), never per connection.
#[derive(Clone)]
pub struct SaslConfig {
    mechanisms: Vec<Mechanism>,
    users: BTreeMap<String, User>,
    scram_iterations: u32,
    /// Largest frame accepted before authentication completes (ApiVersions, the handshake and
    /// each token); larger ones close the connection. Kafka's `sasl.server.max.receive.size`.
    pub auth_bytes_max: usize,
    /// How long a refused log-in waits before its answer and the close: Kafka's
    /// `connection.failed.authentication.delay.ms` (default 100), which slows password guessing.
    pub failed_authentication_delay_ms: u64,
}

impl fmt::Debug for SaslConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaslConfig")
            .field("mechanisms", &self.mechanisms)
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .field("scram_iterations", &self.scram_iterations)
            .field("auth_bytes_max", &self.auth_bytes_max)
            .field(
                "failed_authentication_delay_ms",
                &self.failed_authentication_delay_ms,
            )
            .finish()
    }
}

impl SaslConfig {
    /// Users a broker accepts: each SCRAM user costs two PBKDF2 runs at start.
    pub const USERS_MAX: usize = 1000;
    /// Kafka's `sasl.server.max.receive.size` default.
    pub const AUTH_BYTES_MAX: usize = 512 * 1024;
    /// Kafka's `connection.failed.authentication.delay.ms` default.
    pub const FAILED_AUTHENTICATION_DELAY_MS: u64 = 100;
    /// Kafka's default (and minimum) iteration count for SCRAM credentials.
    pub const SCRAM_ITERATIONS: u32 = scram::ITERATIONS_MIN;
    /// Longest user name and password (RFC 4616 requires servers to accept 255 octets).
    const FIELD_BYTES_MAX: usize = 255;

    /// The mechanisms to offer, in the order SaslHandshake lists them; repeats are dropped.
    pub fn new(
        mechanisms: impl IntoIterator<Item = Mechanism>,
    ) -> Result<SaslConfig, SaslConfigError> {
        let mut unique = Vec::new();
        for mechanism in mechanisms {
            if !unique.contains(&mechanism) {
                unique.push(mechanism);
            }
        }
        if unique.is_empty() {
            return Err(SaslConfigError::NoMechanism);
        }
        Ok(SaslConfig {
            mechanisms: unique,
            users: BTreeMap::new(),
            scram_iterations: SaslConfig::SCRAM_ITERATIONS,
            auth_bytes_max: SaslConfig::AUTH_BYTES_MAX,
            failed_authentication_delay_ms: SaslConfig::FAILED_AUTHENTICATION_DELAY_MS,
        })
    }

    /// Every mechanism we implement.
    pub fn all_mechanisms() -> SaslConfig {
        SaslConfig::new(Mechanism::ALL).unwrap_or_else(|_| unreachable!("ALL is not empty"))
    }

    /// Adds a user who may log in with every enabled mechanism.
    pub fn with_user(
        mut self,
        name: impl Into<String>,
        password: impl Into<String>,
    ) -> Result<SaslConfig, SaslConfigError> {
        let name = name.into();
        let password = Password::new(password);
        let bad = |value: &str| {
            value.is_empty() || value.len() > SaslConfig::FIELD_BYTES_MAX || value.contains('\0')
        };
        if bad(&name) {
            return Err(SaslConfigError::BadUserName(name));
        }
        if bad(password.expose()) {
            return Err(SaslConfigError::BadPassword(name));
        }
        if self.users.contains_key(&name) {
            return Err(SaslConfigError::DuplicateUser(name));
        }
        if self.users.len() >= SaslConfig::USERS_MAX {
            return Err(SaslConfigError::TooManyUsers {
                max: SaslConfig::USERS_MAX,
            });
        }
        let user = self.credentials_for(&name, password);
        self.users.insert(name, user);
        Ok(self)
    }

    /// Adds users from `NAME:PASSWORD` lines (the password is everything after the first
    /// colon); blank lines and lines starting with `#` are skipped.
    pub fn with_users_text(mut self, text: &str) -> Result<SaslConfig, SaslConfigError> {
        for line in text.lines() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let (name, password) = parse_user(line)?;
            self = self.with_user(name, password)?;
        }
        Ok(self)
    }

    /// SCRAM iteration count (Kafka: 4096..=16384); recomputes every user's credentials.
    pub fn with_scram_iterations(mut self, iterations: u32) -> Result<SaslConfig, SaslConfigError> {
        if !(scram::ITERATIONS_MIN..=scram::ITERATIONS_MAX).contains(&iterations) {
            return Err(SaslConfigError::Iterations(iterations));
        }
        self.scram_iterations = iterations;
        let users = std::mem::take(&mut self.users);
        for (name, user) in users {
            let user = self.credentials_for(&name, user.password);
            self.users.insert(name, user);
        }
        Ok(self)
    }

    pub fn with_auth_bytes_max(mut self, bytes: usize) -> SaslConfig {
        self.auth_bytes_max = bytes;
        self
    }

    pub fn mechanisms(&self) -> &[Mechanism] {
        &self.mechanisms
    }

    pub fn users(&self) -> impl Iterator<Item = &str> {
        self.users.keys().map(String::as_str)
    }

    pub fn scram_iterations(&self) -> u32 {
        self.scram_iterations
    }

    fn credentials_for(&self, name: &str, password: Password) -> User {
        let scram = self
            .mechanisms
            .iter()
            .filter_map(|&mechanism| {
                let hash = mechanism.scram_hash()?;
                let credential =
                    scram::Credential::new(hash, name, password.expose(), self.scram_iterations);
                Some((mechanism, credential))
            })
            .collect();
        User { password, scram }
    }

    fn enabled(&self, mechanism: Mechanism) -> bool {
        self.mechanisms.contains(&mechanism)
    }

    fn mechanism_names(&self) -> Vec<StrBytes> {
        self.mechanisms
            .iter()
            .map(|mechanism| StrBytes::from_static_str(mechanism.name()))
            .collect()
    }
}

/// Splits `NAME:PASSWORD` at the first colon.
pub fn parse_user(text: &str) -> Result<(&str, &str), SaslConfigError> {
    text.split_once(':')
        .ok_or_else(|| SaslConfigError::BadUserLine {
            // Only the part that cannot be a password goes into the error.
            line: text.chars().take_while(|c| *c != ':').take(64).collect(),
        })
}

/// Why an authentication failed: the client's message (Kafka's wording) and the log's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthFailure {
    pub message: String,
    pub log: String,
}

/// How a connection's SASL tokens travel after the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// SaslHandshake v1: in SaslAuthenticate requests and responses.
    Kafka,
    /// SaslHandshake v0: each token a size-prefixed frame with no Kafka header.
    Raw,
}

#[derive(Debug)]
enum Exchange {
    /// The next token is the first one of `mechanism`.
    Start(Mechanism),
    /// A SCRAM exchange waiting for the client's final message.
    ScramFinal(Box<scram::Exchange>),
}

#[derive(Debug)]
enum Phase {
    /// Before the handshake; ApiVersions is allowed once.
    Handshake { api_versions_answered: bool },
    Authenticate {
        framing: Framing,
        exchange: Exchange,
    },
}

/// What a connection does with a frame while unauthenticated.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// ApiVersions, served the usual way.
    ApiVersions,
    /// SaslHandshake or SaslAuthenticate: decode it and hand it to the session.
    Sasl,
    /// ApiVersions after the handshake: answer ILLEGAL_SASL_STATE, then close (Kafka's way).
    RefuseApiVersions,
}

/// The result of one step: the answer to send and whether the connection then closes (with
/// the reason for the log) or is authenticated (as which user).
#[derive(Debug)]
pub struct Step<R> {
    pub response: R,
    pub close: Option<String>,
    pub authenticated: Option<String>,
}

/// One connection's authentication, from its first frame until it succeeds.
#[derive(Debug)]
pub struct Session {
    phase: Phase,
}

impl Default for Session {
    fn default() -> Session {
        Session::new()
    }
}

impl Session {
    pub fn new() -> Session {
        Session {
            phase: Phase::Handshake {
                api_versions_answered: false,
            },
        }
    }

    /// After a SaslHandshake v0 the next frames are bare tokens.
    pub fn expects_raw_tokens(&self) -> bool {
        matches!(
            self.phase,
            Phase::Authenticate {
                framing: Framing::Raw,
                ..
            }
        )
    }

    /// Decides what to do with a Kafka request by its API key and version, before decoding
    /// anything, as Kafka does; `Err` closes the connection with the reason.
    pub fn admit(&mut self, raw_api_key: i16, version: i16) -> Result<Admission, String> {
        let api_key = ApiKey::try_from(raw_api_key).ok();
        let during = match self.phase {
            Phase::Handshake { .. } => "SASL handshake",
            Phase::Authenticate { .. } => "SASL authentication",
        };
        let unexpected = || {
            let name = api_key.map_or_else(|| raw_api_key.to_string(), |key| format!("{key:?}"));
            format!("unexpected {name} request during {during}")
        };
        match (&mut self.phase, api_key) {
            (
                Phase::Handshake {
                    api_versions_answered,
                },
                Some(ApiKey::ApiVersions),
            ) => {
                if *api_versions_answered {
                    return Err("a second ApiVersions request before the SASL handshake".into());
                }
                // A version we do not know is answered KIP-511's way and may be retried.
                let newest = crate::handler::supported_versions(ApiKey::ApiVersions)
                    .map_or(0, |(_, max)| max);
                *api_versions_answered = version <= newest;
                Ok(Admission::ApiVersions)
            }
            (Phase::Handshake { .. }, Some(ApiKey::SaslHandshake)) => Ok(Admission::Sasl),
            (
                Phase::Authenticate { .. },
                Some(ApiKey::SaslAuthenticate | ApiKey::SaslHandshake),
            ) => Ok(Admission::Sasl),
            (Phase::Authenticate { .. }, Some(ApiKey::ApiVersions)) => {
                Ok(Admission::RefuseApiVersions)
            }
            _ => Err(unexpected()),
        }
    }

    /// A SaslHandshake while unauthenticated.
    pub fn handshake(
        &mut self,
        config: &SaslConfig,
        version: i16,
        request: &SaslHandshakeRequest,
    ) -> Step<SaslHandshakeResponse> {
        let answer = |code: i16| {
            SaslHandshakeResponse::default()
                .with_error_code(code)
                .with_mechanisms(config.mechanism_names())
        };
        if !matches!(self.phase, Phase::Handshake { .. }) {
            return Step {
                response: answer(ResponseError::IllegalSaslState.code()),
                close: Some("a second SaslHandshake during SASL authentication".into()),
                authenticated: None,
            };
        }
        let requested = request.mechanism.as_str();
        match Mechanism::from_wire(requested).filter(|&mechanism| config.enabled(mechanism)) {
            Some(mechanism) => {
                self.phase = Phase::Authenticate {
                    framing: if version == 0 {
                        Framing::Raw
                    } else {
                        Framing::Kafka
                    },
                    exchange: Exchange::Start(mechanism),
                };
                Step {
                    response: answer(0),
                    close: None,
                    authenticated: None,
                }
            }
            None => Step {
                response: answer(ResponseError::UnsupportedSaslMechanism.code()),
                close: Some(format!("unsupported SASL mechanism {requested:?}")),
                authenticated: None,
            },
        }
    }

    /// A SaslAuthenticate after a v1 handshake.
    pub fn authenticate(
        &mut self,
        config: &SaslConfig,
        entropy: &dyn Entropy,
        request: &SaslAuthenticateRequest,
    ) -> Step<SaslAuthenticateResponse> {
        let step = self.token(config, entropy, &request.auth_bytes);
        match step.response {
            Ok(token) => Step {
                // Session lifetime 0: no re-authentication is asked for (Kafka's default,
                // connections.max.reauth.ms = 0).
                response: SaslAuthenticateResponse::default()
                    .with_auth_bytes(token.into())
                    .with_session_lifetime_ms(0),
                close: step.close,
                authenticated: step.authenticated,
            },
            Err(message) => Step {
                response: SaslAuthenticateResponse::default()
                    .with_error_code(ResponseError::SaslAuthenticationFailed.code())
                    .with_error_message(Some(StrBytes::from_string(message))),
                close: step.close,
                authenticated: None,
            },
        }
    }

    /// A bare token after a v0 handshake: the answer token to send size-prefixed, or `Err`
    /// to close the connection without an answer (Kafka has no way to say why in this framing).
    pub fn raw_token(
        &mut self,
        config: &SaslConfig,
        entropy: &dyn Entropy,
        token: &[u8],
    ) -> Result<Step<Vec<u8>>, String> {
        let step = self.token(config, entropy, token);
        match step.response {
            Ok(response) => Ok(Step {
                response,
                close: step.close,
                authenticated: step.authenticated,
            }),
            Err(_) => Err(step
                .close
                .unwrap_or_else(|| "SASL authentication failed".into())),
        }
    }

    /// Runs one token through the mechanism: `Ok` the answer token, `Err` the client's
    /// failure message (then `close` says why, for the log).
    fn token(
        &mut self,
        config: &SaslConfig,
        entropy: &dyn Entropy,
        token: &[u8],
    ) -> Step<Result<Vec<u8>, String>> {
        let placeholder = Phase::Handshake {
            api_versions_answered: true,
        };
        let Phase::Authenticate { framing, exchange } =
            std::mem::replace(&mut self.phase, placeholder)
        else {
            return Step {
                response: Err("SaslAuthenticate before SaslHandshake".into()),
                close: Some("SaslAuthenticate before SaslHandshake".into()),
                authenticated: None,
            };
        };
        let failed = |failure: AuthFailure| Step {
            response: Err(failure.message),
            close: Some(format!("SASL authentication failed: {}", failure.log)),
            authenticated: None,
        };
        match exchange {
            Exchange::Start(Mechanism::Plain) => match plain::verify(config, token) {
                Ok(user) => Step {
                    response: Ok(Vec::new()),
                    close: None,
                    authenticated: Some(user),
                },
                Err(failure) => failed(failure),
            },
            Exchange::Start(mechanism) => {
                let Some(hash) = mechanism.scram_hash() else {
                    return failed(scram::generic_failure(mechanism, "no SCRAM hash"));
                };
                let nonce = server_nonce(entropy);
                let started = scram::Exchange::start(mechanism, hash, token, &nonce, |user| {
                    config.users.get(user)?.scram.get(&mechanism)
                });
                match started {
                    Ok((exchange, server_first)) => {
                        self.phase = Phase::Authenticate {
                            framing,
                            exchange: Exchange::ScramFinal(Box::new(exchange)),
                        };
                        Step {
                            response: Ok(server_first),
                            close: None,
                            authenticated: None,
                        }
                    }
                    Err(failure) => failed(failure),
                }
            }
            Exchange::ScramFinal(exchange) => match exchange.finish(token) {
                Ok((user, server_final)) => Step {
                    response: Ok(server_final),
                    close: None,
                    authenticated: Some(user),
                },
                Err(failure) => failed(failure),
            },
        }
    }
}

/// 24 random bytes from the Entropy seam, base64: printable and comma-free, as RFC 5802 asks.
fn server_nonce(entropy: &dyn Entropy) -> String {
    let mut bytes = Vec::with_capacity(24);
    for _ in 0..3 {
        bytes.extend_from_slice(&entropy.next_u64().to_be_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_refuses_what_kafka_would_not_start_with() {
        assert_eq!(
            SaslConfig::new([]).unwrap_err(),
            SaslConfigError::NoMechanism
        );
        let config = SaslConfig::new([Mechanism::Plain]).unwrap();
        assert!(matches!(
            config.clone().with_user("", "x"),
            Err(SaslConfigError::BadUserName(_))
        ));
        assert!(matches!(
            config.clone().with_user("a", ""),
            Err(SaslConfigError::BadPassword(_))
        ));
        assert!(matches!(
            config
                .clone()
                .with_user("a", "x")
                .unwrap()
                .with_user("a", "y"),
            Err(SaslConfigError::DuplicateUser(_))
        ));
        assert!(matches!(
            config.with_scram_iterations(100),
            Err(SaslConfigError::Iterations(100))
        ));
        assert!("scram-sha-512".parse::<Mechanism>().is_ok());
        assert!("GSSAPI".parse::<Mechanism>().is_err());
    }

    #[test]
    fn users_text_takes_the_password_after_the_first_colon() {
        let config = SaslConfig::new([Mechanism::Plain])
            .unwrap()
            .with_users_text("# comment\nalice:pa:ss\n\nbob:x\r\n")
            .unwrap();
        assert_eq!(config.users().collect::<Vec<_>>(), ["alice", "bob"]);
        assert_eq!(config.users["alice"].password.expose(), "pa:ss");
        let error = SaslConfig::new([Mechanism::Plain])
            .unwrap()
            .with_users_text("no-colon-here")
            .unwrap_err();
        assert!(matches!(error, SaslConfigError::BadUserLine { .. }));
    }

    #[test]
    fn debug_output_never_shows_a_password() {
        let config = SaslConfig::all_mechanisms()
            .with_user("alice", "hunter2")
            .unwrap();
        let shown = format!("{config:?}");
        assert!(
            shown.contains("alice") && !shown.contains("hunter2"),
            "{shown}"
        );
    }
}
