//! Logging in to a broker that requires SASL (Kafka's SASL_PLAINTEXT listener): PLAIN and
//! SCRAM-SHA-256/512 (RFC 5802, 7677), over SaslHandshake v1 and SaslAuthenticate, right after
//! ApiVersions on every connection. The client nonce comes from the Entropy seam; the server's
//! signature is checked, so a broker that does not know the password cannot pass as one.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use kafka_protocol::messages::{
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
};
use kafka_protocol::protocol::StrBytes;
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;
use tidepool_io::Entropy;

use crate::conn::Connection;
use crate::error::{Error, KafkaCode, Result};

/// Kafka's bounds on SCRAM iterations; a server asking for more is refused rather than
/// obeyed (the count is a cost the server sets for the client to pay).
const SCRAM_ITERATIONS: std::ops::RangeInclusive<u32> = 4096..=16384;

/// A SASL mechanism the client can log in with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    Plain,
    ScramSha256,
    ScramSha512,
}

impl SaslMechanism {
    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// Who to log in as. The password never shows in `Debug` output.
#[derive(Clone)]
pub struct SaslCredentials {
    pub mechanism: SaslMechanism,
    pub username: String,
    pub password: String,
}

impl fmt::Debug for SaslCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaslCredentials")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

fn hmac(mechanism: SaslMechanism, key: &[u8], data: &[u8]) -> Vec<u8> {
    fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
        // HMAC takes keys of any length.
        let mut mac =
            <M as hmac::digest::KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
        mac.update(data);
        mac.finalize().into_bytes().to_vec()
    }
    match mechanism {
        SaslMechanism::ScramSha512 => run::<Hmac<Sha512>>(key, data),
        _ => run::<Hmac<Sha256>>(key, data),
    }
}

fn hash(mechanism: SaslMechanism, data: &[u8]) -> Vec<u8> {
    match mechanism {
        SaslMechanism::ScramSha512 => Sha512::digest(data).to_vec(),
        _ => Sha256::digest(data).to_vec(),
    }
}

fn salted_password(mechanism: SaslMechanism, password: &[u8], salt: &[u8], rounds: u32) -> Vec<u8> {
    match mechanism {
        SaslMechanism::ScramSha512 => {
            let mut out = vec![0u8; 64];
            pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, rounds, &mut out);
            out
        }
        _ => {
            let mut out = vec![0u8; 32];
            pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, rounds, &mut out);
            out
        }
    }
}

/// A SCRAM user name with `,` and `=` escaped (RFC 5802 §5.1).
fn sasl_name(user: &str) -> String {
    user.replace('=', "=3D").replace(',', "=2C")
}

/// Logs `connection` in; any failure leaves it to be closed by the caller.
pub(crate) async fn authenticate(
    connection: &Connection,
    credentials: &SaslCredentials,
    entropy: &dyn Entropy,
) -> Result<()> {
    let mechanism = credentials.mechanism;
    let handshake_version = connection.version::<SaslHandshakeRequest>((1, 1))?;
    let handshake =
        SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mechanism.name()));
    let answer = connection.send(handshake_version, &handshake).await?;
    if let Some(code) = KafkaCode::from_code(answer.error_code) {
        let offered: Vec<String> = answer.mechanisms.iter().map(|m| m.to_string()).collect();
        return Err(Error::kafka(
            code,
            format!("SaslHandshake {}", mechanism.name()),
            Some(format!("the broker offers {offered:?}")),
        ));
    }
    let version = connection.version::<SaslAuthenticateRequest>((0, 2))?;
    let exchange = |token: Vec<u8>| async move {
        let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token));
        let answer: SaslAuthenticateResponse = connection.send(version, &request).await?;
        match KafkaCode::from_code(answer.error_code) {
            None => Ok(answer.auth_bytes),
            Some(code) => Err(Error::kafka(
                code,
                format!("SaslAuthenticate {}", mechanism.name()),
                answer.error_message.map(|message| message.to_string()),
            )),
        }
    };
    let protocol = |reason: &str| Error::Protocol {
        addr: connection.addr().to_string(),
        reason: format!("{}: {reason}", mechanism.name()),
    };
    if mechanism == SaslMechanism::Plain {
        let token = format!("\0{}\0{}", credentials.username, credentials.password);
        exchange(token.into_bytes()).await?;
        return Ok(());
    }
    let mut nonce_bytes = Vec::with_capacity(24);
    for _ in 0..3 {
        nonce_bytes.extend_from_slice(&entropy.next_u64().to_be_bytes());
    }
    let client_nonce = BASE64.encode(nonce_bytes);
    let client_first_bare = format!("n={},r={client_nonce}", sasl_name(&credentials.username));
    let server_first = exchange(format!("n,,{client_first_bare}").into_bytes()).await?;
    let server_first = std::str::from_utf8(&server_first)
        .map_err(|_| protocol("server-first message is not UTF-8"))?;
    let field = |name: &str| {
        server_first
            .split(',')
            .find_map(|part| part.strip_prefix(name))
            .ok_or_else(|| protocol(&format!("server-first message lacks {name}")))
    };
    let nonce = field("r=")?;
    if !nonce.starts_with(&client_nonce) || nonce.len() == client_nonce.len() {
        return Err(protocol("server nonce does not extend ours"));
    }
    let salt = BASE64
        .decode(field("s=")?)
        .map_err(|_| protocol("salt is not base64"))?;
    let iterations: u32 = field("i=")?
        .parse()
        .map_err(|_| protocol("iteration count is not a number"))?;
    if !SCRAM_ITERATIONS.contains(&iterations) {
        return Err(protocol(&format!(
            "iteration count {iterations} outside Kafka's 4096..=16384"
        )));
    }
    let salted = salted_password(
        mechanism,
        credentials.password.as_bytes(),
        &salt,
        iterations,
    );
    let client_key = hmac(mechanism, &salted, b"Client Key");
    let stored_key = hash(mechanism, &client_key);
    let without_proof = format!("c=biws,r={nonce}");
    let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
    let signature = hmac(mechanism, &stored_key, auth_message.as_bytes());
    let proof: Vec<u8> = client_key
        .iter()
        .zip(&signature)
        .map(|(key, sign)| key ^ sign)
        .collect();
    let server_final =
        exchange(format!("{without_proof},p={}", BASE64.encode(proof)).into_bytes()).await?;
    let server_key = hmac(mechanism, &salted, b"Server Key");
    let expected = hmac(mechanism, &server_key, auth_message.as_bytes());
    let verifier = std::str::from_utf8(&server_final)
        .ok()
        .and_then(|text| text.strip_prefix("v="))
        .and_then(|value| BASE64.decode(value).ok())
        .ok_or_else(|| protocol("server-final message has no verifier"))?;
    if !bool::from(verifier.ct_eq(&expected)) {
        return Err(protocol(
            "the server's signature is wrong: it does not know the password",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 §3: the client proof and server signature for its published exchange.
    #[test]
    fn scram_sha_256_matches_the_rfc_7677_example() {
        let mechanism = SaslMechanism::ScramSha256;
        let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let salted = salted_password(mechanism, b"pencil", &salt, 4096);
        let client_key = hmac(mechanism, &salted, b"Client Key");
        let stored_key = hash(mechanism, &client_key);
        let auth_message = "n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let signature = hmac(mechanism, &stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(k, s)| k ^ s)
            .collect();
        assert_eq!(
            BASE64.encode(proof),
            "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        let server_key = hmac(mechanism, &salted, b"Server Key");
        let server_signature = hmac(mechanism, &server_key, auth_message.as_bytes());
        assert_eq!(
            BASE64.encode(server_signature),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
        assert_eq!(sasl_name("a,b=c"), "a=2Cb=3Dc");
    }
}
