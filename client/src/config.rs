//! Settings shared by every part of the client. Each queue and buffer the client keeps has its
//! bound here or in the producer's and consumer's own configs.

use std::time::Duration;

/// How to reach the cluster and how patiently to talk to it.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `host:port` addresses to ask for the cluster's metadata first.
    pub bootstrap: Vec<String>,
    /// Sent in every request header; brokers log it.
    pub client_id: String,
    /// How long a request may wait for its answer. A connection whose request timed out is
    /// closed (as the Java client does), so a late answer can never be taken for another.
    pub request_timeout: Duration,
    /// How long opening a connection (TCP and the ApiVersions exchange) may take.
    pub connect_timeout: Duration,
    /// Metadata is refreshed at least this often for the topics in use (Java's
    /// `metadata.max.age.ms`), and at once after errors that say it is stale.
    pub metadata_max_age: Duration,
    /// First pause before a retry; doubles per attempt up to `retry_backoff_max`, with ±20 %
    /// jitter drawn from the Entropy seam.
    pub retry_backoff: Duration,
    pub retry_backoff_max: Duration,
    /// Requests written to one connection and not yet answered.
    pub max_in_flight_per_connection: usize,
    /// The largest response frame accepted; a larger size prefix closes the connection.
    pub max_response_bytes: usize,
    /// Log in with SASL on every connection (a broker's SASL_PLAINTEXT listener); `None` for
    /// PLAINTEXT.
    pub sasl: Option<crate::sasl::SaslCredentials>,
}

impl ClientConfig {
    pub fn new(bootstrap: impl AsRef<str>) -> ClientConfig {
        ClientConfig {
            bootstrap: bootstrap
                .as_ref()
                .split(',')
                .map(str::trim)
                .filter(|address| !address.is_empty())
                .map(str::to_string)
                .collect(),
            ..ClientConfig::default()
        }
    }

    pub fn client_id(mut self, client_id: impl Into<String>) -> ClientConfig {
        self.client_id = client_id.into();
        self
    }

    pub fn request_timeout(mut self, timeout: Duration) -> ClientConfig {
        self.request_timeout = timeout;
        self
    }

    pub fn metadata_max_age(mut self, age: Duration) -> ClientConfig {
        self.metadata_max_age = age;
        self
    }

    /// Logs in as `username` with `mechanism` on every connection.
    pub fn sasl(
        mut self,
        mechanism: crate::sasl::SaslMechanism,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> ClientConfig {
        self.sasl = Some(crate::sasl::SaslCredentials {
            mechanism,
            username: username.into(),
            password: password.into(),
        });
        self
    }

    pub fn retry_backoff(mut self, first: Duration, max: Duration) -> ClientConfig {
        self.retry_backoff = first;
        self.retry_backoff_max = max;
        self
    }
}

impl Default for ClientConfig {
    fn default() -> ClientConfig {
        ClientConfig {
            bootstrap: vec!["127.0.0.1:9092".to_string()],
            client_id: "tidepool-client".to_string(),
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            metadata_max_age: Duration::from_secs(300),
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_secs(1),
            max_in_flight_per_connection: 64,
            max_response_bytes: 256 << 20,
            sasl: None,
        }
    }
}
