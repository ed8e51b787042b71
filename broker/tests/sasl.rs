//! SASL on the wire, as Kafka's SASL_PLAINTEXT listener behaves: PLAIN and SCRAM log-ins with a
//! SCRAM client written here from RFC 5802, the errors Kafka answers (UNSUPPORTED_SASL_MECHANISM,
//! SASL_AUTHENTICATION_FAILED, ILLEGAL_SASL_STATE) and the connections it closes.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::{BufMut, Bytes, BytesMut};
use common::*;
use hmac::{Hmac, Mac};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, MetadataRequest, SaslAuthenticateRequest, SaslHandshakeRequest,
};
use kafka_protocol::protocol::StrBytes;
use sha2::{Digest, Sha256, Sha512};
use tidepool_broker::{BrokerHandle, Config, Mechanism, SaslConfig};

const USER: &str = "alice";
const PASSWORD: &str = "alice-secret";

async fn start_sasl() -> BrokerHandle {
    let sasl = SaslConfig::all_mechanisms()
        .with_user(USER, PASSWORD)
        .unwrap()
        .with_user("bob,=odd", "bob-secret")
        .unwrap();
    start(Config {
        sasl: Some(sasl),
        ..Config::default()
    })
    .await
}

fn handshake(mechanism: &str) -> SaslHandshakeRequest {
    SaslHandshakeRequest::default().with_mechanism(StrBytes::from_string(mechanism.to_owned()))
}

fn token(bytes: impl Into<Bytes>) -> SaslAuthenticateRequest {
    SaslAuthenticateRequest::default().with_auth_bytes(bytes.into())
}

fn plain_token(user: &str, password: &str) -> Bytes {
    Bytes::from(format!("\0{user}\0{password}"))
}

fn mechanism_names(names: &[StrBytes]) -> Vec<String> {
    names.iter().map(|name| name.to_string()).collect()
}

/// Sends a request and expects the broker to close the connection without answering it.
async fn expect_closed_without_answer<R: kafka_protocol::protocol::Request>(
    client: &mut Client,
    version: i16,
    request: R,
) {
    let (_, bytes) = client.encode(version, &request);
    client.send_raw(&bytes).await;
    assert!(
        client.read_frame().await.is_none(),
        "the broker closes the connection instead of answering"
    );
}

async fn metadata_works(client: &mut Client) {
    let response = client.call(12, MetadataRequest::default()).await;
    assert_eq!(response.brokers.len(), 1);
}

async fn plain_login(client: &mut Client) {
    let response = client.call(1, handshake("PLAIN")).await;
    assert_eq!(response.error_code, 0);
    let response = client.call(2, token(plain_token(USER, PASSWORD))).await;
    assert_eq!(response.error_code, 0, "{:?}", response.error_message);
    assert_eq!(response.session_lifetime_ms, 0);
}

#[tokio::test]
async fn plain_login_then_produce_works() {
    let broker = start_sasl().await;
    let mut client = Client::connect(&broker).await;
    let versions = client.call(3, ApiVersionsRequest::default()).await;
    let advertised = |key: ApiKey| {
        versions
            .api_keys
            .iter()
            .find(|api| api.api_key == key as i16)
            .map(|api| (api.min_version, api.max_version))
    };
    assert_eq!(advertised(ApiKey::SaslHandshake), Some((0, 1)));
    assert_eq!(advertised(ApiKey::SaslAuthenticate), Some((0, 2)));

    let response = client.call(1, handshake("PLAIN")).await;
    assert_eq!(response.error_code, 0);
    assert_eq!(
        mechanism_names(&response.mechanisms),
        ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
    );
    let response = client.call(2, token(plain_token(USER, PASSWORD))).await;
    assert_eq!(response.error_code, 0, "{:?}", response.error_message);
    assert!(response.auth_bytes.is_empty());

    create_topic(&mut client, "secured", 1).await;
    let answer = produce(&mut client, "secured", 0, batch(3, 1_000)).await;
    assert_eq!(answer.error_code, 0);
    assert_eq!(answer.base_offset, 0);

    // After the log-in, SASL requests get Kafka's request-handler answers and the connection
    // stays open.
    let again = client.call(1, handshake("PLAIN")).await;
    assert_eq!(again.error_code, ResponseError::IllegalSaslState.code());
    let again = client.call(2, token(plain_token(USER, PASSWORD))).await;
    assert_eq!(again.error_code, ResponseError::IllegalSaslState.code());
    metadata_works(&mut client).await;
}

#[tokio::test]
async fn a_wrong_password_fails_with_kafkas_message_and_closes() {
    let broker = start_sasl().await;
    let mut client = Client::connect(&broker).await;
    assert_eq!(client.call(1, handshake("PLAIN")).await.error_code, 0);
    let response = client.call(2, token(plain_token(USER, "guess"))).await;
    assert_eq!(
        response.error_code,
        ResponseError::SaslAuthenticationFailed.code()
    );
    assert_eq!(
        response.error_message.as_deref(),
        Some("Authentication failed: Invalid username or password")
    );
    assert!(client.is_closed_by_broker().await);

    let mut unknown = Client::connect(&broker).await;
    assert_eq!(unknown.call(0, handshake("PLAIN")).await.error_code, 0);
    // The v0 handshake's bare tokens: a failure closes without an answer.
    let mut wire = BytesMut::new();
    let bad = plain_token("mallory", "guess");
    wire.put_i32(bad.len() as i32);
    wire.extend_from_slice(&bad);
    unknown.send_raw(&wire).await;
    assert!(unknown.read_frame().await.is_none());
}

#[tokio::test]
async fn requests_before_authentication_close_the_connection() {
    let broker = start_sasl().await;

    let mut client = Client::connect(&broker).await;
    expect_closed_without_answer(&mut client, 12, MetadataRequest::default()).await;

    // ApiVersions first is fine; Metadata after it still is not.
    let mut client = Client::connect(&broker).await;
    assert_eq!(
        client
            .call(3, ApiVersionsRequest::default())
            .await
            .error_code,
        0
    );
    expect_closed_without_answer(&mut client, 12, MetadataRequest::default()).await;

    // Metadata between handshake and log-in.
    let mut client = Client::connect(&broker).await;
    assert_eq!(client.call(1, handshake("PLAIN")).await.error_code, 0);
    expect_closed_without_answer(&mut client, 12, MetadataRequest::default()).await;

    // SaslAuthenticate with no handshake before it.
    let mut client = Client::connect(&broker).await;
    expect_closed_without_answer(&mut client, 2, token(plain_token(USER, PASSWORD))).await;

    // A second ApiVersions before the handshake.
    let mut client = Client::connect(&broker).await;
    client.call(3, ApiVersionsRequest::default()).await;
    expect_closed_without_answer(&mut client, 3, ApiVersionsRequest::default()).await;

    // A frame over the authentication bound, before any allocation for it.
    let mut client = Client::connect(&broker).await;
    client
        .send_raw(&((SaslConfig::AUTH_BYTES_MAX + 1) as i32).to_be_bytes())
        .await;
    assert!(client.is_closed_by_broker().await);

    // Other connections were never affected.
    let mut client = Client::connect(&broker).await;
    plain_login(&mut client).await;
    metadata_works(&mut client).await;
}

#[tokio::test]
async fn an_unknown_mechanism_gets_the_enabled_list_and_closes() {
    let sasl = SaslConfig::new([Mechanism::ScramSha512, Mechanism::Plain])
        .unwrap()
        .with_user(USER, PASSWORD)
        .unwrap();
    let broker = start(Config {
        sasl: Some(sasl),
        ..Config::default()
    })
    .await;
    for mechanism in ["GSSAPI", "SCRAM-SHA-256", "plain"] {
        let mut client = Client::connect(&broker).await;
        let response = client.call(1, handshake(mechanism)).await;
        assert_eq!(
            response.error_code,
            ResponseError::UnsupportedSaslMechanism.code(),
            "{mechanism}"
        );
        assert_eq!(
            mechanism_names(&response.mechanisms),
            ["SCRAM-SHA-512", "PLAIN"]
        );
        assert!(client.is_closed_by_broker().await);
    }
}

#[tokio::test]
async fn a_second_handshake_or_api_versions_mid_exchange_is_an_illegal_state() {
    let broker = start_sasl().await;
    let mut client = Client::connect(&broker).await;
    assert_eq!(client.call(1, handshake("PLAIN")).await.error_code, 0);
    let response = client.call(1, handshake("PLAIN")).await;
    assert_eq!(response.error_code, ResponseError::IllegalSaslState.code());
    assert!(client.is_closed_by_broker().await);

    let mut client = Client::connect(&broker).await;
    assert_eq!(
        client.call(1, handshake("SCRAM-SHA-256")).await.error_code,
        0
    );
    let response = client.call(3, ApiVersionsRequest::default()).await;
    assert_eq!(response.error_code, ResponseError::IllegalSaslState.code());
    assert!(client.is_closed_by_broker().await);
}

/// The client side of SCRAM (RFC 5802 §3), enough to log in and to check the server.
struct ScramClient {
    mechanism: Mechanism,
    user: String,
    password: String,
    nonce: String,
    client_first_bare: String,
}

impl ScramClient {
    fn new(mechanism: Mechanism, user: &str, password: &str) -> ScramClient {
        let escaped = user.replace('=', "=3D").replace(',', "=2C");
        let nonce = "fyko+d2lbbFgONRv9qkxdawL".to_owned();
        ScramClient {
            mechanism,
            user: user.to_owned(),
            password: password.to_owned(),
            client_first_bare: format!("n={escaped},r={nonce}"),
            nonce,
        }
    }

    fn first(&self) -> String {
        format!("n,,{}", self.client_first_bare)
    }

    fn hmac(&self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self.mechanism {
            Mechanism::ScramSha256 => {
                let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap();
                mac.update(data);
                mac.finalize().into_bytes().to_vec()
            }
            _ => {
                let mut mac = <Hmac<Sha512> as Mac>::new_from_slice(key).unwrap();
                mac.update(data);
                mac.finalize().into_bytes().to_vec()
            }
        }
    }

    fn hash(&self, data: &[u8]) -> Vec<u8> {
        match self.mechanism {
            Mechanism::ScramSha256 => Sha256::digest(data).to_vec(),
            _ => Sha512::digest(data).to_vec(),
        }
    }

    /// The client-final message for `server_first` and the server signature to expect.
    fn last(&self, server_first: &str, corrupt_proof: bool) -> (String, String) {
        let field = |name: &str| {
            server_first
                .split(',')
                .find_map(|part| part.strip_prefix(name))
                .unwrap_or_else(|| panic!("server-first {server_first:?} lacks {name}"))
                .to_owned()
        };
        let nonce = field("r=");
        assert!(
            nonce.starts_with(&self.nonce) && nonce.len() > self.nonce.len(),
            "the server extends our nonce: {nonce}"
        );
        let salt = BASE64.decode(field("s=")).unwrap();
        let iterations: u32 = field("i=").parse().unwrap();
        assert_eq!(iterations, 4096);
        let mut salted = vec![
            0u8;
            if self.mechanism == Mechanism::ScramSha256 {
                32
            } else {
                64
            }
        ];
        match self.mechanism {
            Mechanism::ScramSha256 => pbkdf2::pbkdf2_hmac::<Sha256>(
                self.password.as_bytes(),
                &salt,
                iterations,
                &mut salted,
            ),
            _ => pbkdf2::pbkdf2_hmac::<Sha512>(
                self.password.as_bytes(),
                &salt,
                iterations,
                &mut salted,
            ),
        }
        let client_key = self.hmac(&salted, b"Client Key");
        let stored_key = self.hash(&client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let signature = self.hmac(&stored_key, auth_message.as_bytes());
        let mut proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(k, s)| k ^ s)
            .collect();
        if corrupt_proof {
            proof[0] ^= 1;
        }
        let server_key = self.hmac(&salted, b"Server Key");
        let server_signature = self.hmac(&server_key, auth_message.as_bytes());
        (
            format!("{without_proof},p={}", BASE64.encode(proof)),
            format!("v={}", BASE64.encode(server_signature)),
        )
    }
}

async fn scram_login(client: &mut Client, scram: &ScramClient) {
    let response = client.call(1, handshake(scram.mechanism.name())).await;
    assert_eq!(response.error_code, 0);
    let first = client.call(2, token(scram.first())).await;
    assert_eq!(first.error_code, 0, "{:?}", first.error_message);
    assert_eq!(first.session_lifetime_ms, 0);
    let server_first = String::from_utf8(first.auth_bytes.to_vec()).unwrap();
    let (last, expected_signature) = scram.last(&server_first, false);
    let last = client.call(2, token(last)).await;
    assert_eq!(last.error_code, 0, "{:?}", last.error_message);
    assert_eq!(
        String::from_utf8(last.auth_bytes.to_vec()).unwrap(),
        expected_signature,
        "the server proves it knows {}'s credentials",
        scram.user
    );
}

#[tokio::test]
async fn scram_sha_256_and_512_log_in_and_prove_the_server() {
    let broker = start_sasl().await;
    for mechanism in [Mechanism::ScramSha256, Mechanism::ScramSha512] {
        for (user, password) in [(USER, PASSWORD), ("bob,=odd", "bob-secret")] {
            let mut client = Client::connect(&broker).await;
            scram_login(&mut client, &ScramClient::new(mechanism, user, password)).await;
            metadata_works(&mut client).await;
        }
    }
}

#[tokio::test]
async fn a_bad_scram_proof_nonce_or_binding_fails_and_closes() {
    let broker = start_sasl().await;
    let generic = |mechanism: Mechanism| {
        format!(
            "Authentication failed during authentication due to invalid credentials with SASL mechanism {}",
            mechanism.name()
        )
    };
    for mechanism in [Mechanism::ScramSha256, Mechanism::ScramSha512] {
        for mangle in ["proof", "nonce", "binding", "password"] {
            let password = if mangle == "password" {
                "guess"
            } else {
                PASSWORD
            };
            let scram = ScramClient::new(mechanism, USER, password);
            let mut client = Client::connect(&broker).await;
            assert_eq!(
                client.call(1, handshake(mechanism.name())).await.error_code,
                0
            );
            let first = client.call(2, token(scram.first())).await;
            assert_eq!(first.error_code, 0);
            let server_first = String::from_utf8(first.auth_bytes.to_vec()).unwrap();
            let (mut last, _) = scram.last(&server_first, mangle == "proof");
            if mangle == "nonce" {
                last = last.replacen(",r=", ",r=x", 1);
            }
            if mangle == "binding" {
                last = last.replacen("c=biws", "c=eSws", 1);
            }
            let response = client.call(2, token(last)).await;
            assert_eq!(
                response.error_code,
                ResponseError::SaslAuthenticationFailed.code(),
                "{mechanism} {mangle}"
            );
            assert_eq!(
                response.error_message,
                Some(StrBytes::from_string(generic(mechanism)))
            );
            assert!(client.is_closed_by_broker().await, "{mechanism} {mangle}");
        }
    }

    // An unknown user, or channel binding asked for, fails at the first message.
    for first in ["n,,n=mallory,r=abc", "y,,n=alice,r=abc"] {
        let mut client = Client::connect(&broker).await;
        assert_eq!(
            client.call(1, handshake("SCRAM-SHA-256")).await.error_code,
            0
        );
        let response = client.call(2, token(first)).await;
        assert_eq!(
            response.error_code,
            ResponseError::SaslAuthenticationFailed.code(),
            "{first}"
        );
        assert!(client.is_closed_by_broker().await, "{first}");
    }
}

/// SaslHandshake v0: the tokens travel as bare size-prefixed frames (pre-KIP-152 clients).
#[tokio::test]
async fn a_v0_handshake_exchanges_bare_tokens() {
    let broker = start_sasl().await;
    async fn raw_round_trip(client: &mut Client, token: &[u8]) -> Bytes {
        let mut wire = BytesMut::new();
        wire.put_i32(token.len() as i32);
        wire.extend_from_slice(token);
        client.send_raw(&wire).await;
        client.read_frame().await.expect("a bare token answer")
    }

    let mut client = Client::connect(&broker).await;
    assert_eq!(client.call(0, handshake("PLAIN")).await.error_code, 0);
    let answer = raw_round_trip(&mut client, &plain_token(USER, PASSWORD)).await;
    assert!(answer.is_empty(), "PLAIN answers an empty token");
    metadata_works(&mut client).await;

    let scram = ScramClient::new(Mechanism::ScramSha512, USER, PASSWORD);
    let mut client = Client::connect(&broker).await;
    assert_eq!(
        client.call(0, handshake("SCRAM-SHA-512")).await.error_code,
        0
    );
    let server_first = raw_round_trip(&mut client, scram.first().as_bytes()).await;
    let (last, expected) = scram.last(std::str::from_utf8(&server_first).unwrap(), false);
    let server_final = raw_round_trip(&mut client, last.as_bytes()).await;
    assert_eq!(server_final, Bytes::from(expected));
    metadata_works(&mut client).await;
}

#[tokio::test]
async fn without_sasl_nothing_changes_and_sasl_requests_get_illegal_state() {
    let broker = start_default().await;
    let mut client = Client::connect(&broker).await;
    let versions = client.call(3, ApiVersionsRequest::default()).await;
    assert!(
        versions
            .api_keys
            .iter()
            .all(|api| api.api_key != ApiKey::SaslHandshake as i16
                && api.api_key != ApiKey::SaslAuthenticate as i16),
        "a PLAINTEXT listener does not advertise SASL"
    );
    metadata_works(&mut client).await;
    // Kafka's PLAINTEXT listener answers these from its request handler.
    let response = client.call(1, handshake("PLAIN")).await;
    assert_eq!(response.error_code, ResponseError::IllegalSaslState.code());
    assert!(response.mechanisms.is_empty());
    let response = client.call(2, token(plain_token(USER, PASSWORD))).await;
    assert_eq!(response.error_code, ResponseError::IllegalSaslState.code());
    assert_eq!(
        response.error_message.as_deref(),
        Some("SaslAuthenticate request received after successful authentication")
    );
    metadata_works(&mut client).await;
}

#[tokio::test]
async fn the_builder_turns_sasl_on_and_a_version_cap_keeps_the_sasl_apis() {
    let broker = tidepool_broker::Broker::builder()
        .memory()
        .sasl(
            SaslConfig::new([Mechanism::Plain])
                .unwrap()
                .with_user(USER, PASSWORD)
                .unwrap(),
        )
        .start()
        .await
        .unwrap();
    broker.control().cap_versions(Some("2.8")).unwrap();
    let mut client = Client::connect(&broker).await;
    let versions = client.call(3, ApiVersionsRequest::default()).await;
    assert!(
        versions
            .api_keys
            .iter()
            .any(|api| api.api_key == ApiKey::SaslAuthenticate as i16 && api.max_version == 2)
    );
    plain_login(&mut client).await;
    // Kafka 2.8 answers Metadata up to v11.
    let response = client.call(11, MetadataRequest::default()).await;
    assert_eq!(response.brokers.len(), 1);
}
