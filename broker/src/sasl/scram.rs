//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677), server side, as Kafka speaks them:
//! no channel binding (the gs2 header is `n,,` or `n,a=USER,`), no SASLprep (passwords are
//! their UTF-8 bytes, as the Java client and librdkafka send them), and extensions after the
//! nonce accepted and ignored. A token-authenticated log-in (`tokenauth=true`, delegation
//! tokens) is refused: we have no tokens.
//!
//! Failures carry two texts: what the client is told (Kafka's generic message unless Kafka
//! itself names the cause) and what the broker logs.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

use super::{AuthFailure, Mechanism};

/// Kafka's bounds on a SCRAM credential's iteration count (`ScramMechanism`).
pub const ITERATIONS_MIN: u32 = 4096;
pub const ITERATIONS_MAX: u32 = 16384;

/// Bytes of salt per credential, as Kafka's `ScramFormatter` draws them.
const SALT_BYTES: usize = 16;

/// The hash a SCRAM mechanism is built on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    Sha256,
    Sha512,
}

fn mac<M: Mac + hmac::digest::KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    // HMAC accepts a key of any length, so this cannot fail.
    let mut mac =
        <M as hmac::digest::KeyInit>::new_from_slice(key).expect("HMAC takes keys of every length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

impl Hash {
    fn hmac(self, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        match self {
            Hash::Sha256 => mac::<Hmac<Sha256>>(key, parts),
            Hash::Sha512 => mac::<Hmac<Sha512>>(key, parts),
        }
    }

    fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha256 => Sha256::digest(data).to_vec(),
            Hash::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    fn len(self) -> usize {
        match self {
            Hash::Sha256 => 32,
            Hash::Sha512 => 64,
        }
    }

    /// RFC 5802's Hi(): PBKDF2 with HMAC of this hash.
    fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut out = vec![0u8; self.len()];
        match self {
            Hash::Sha256 => pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out),
            Hash::Sha512 => pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out),
        }
        out
    }
}

/// What the broker keeps of a SCRAM user: never the password, only what verifies a proof and
/// signs the answer (RFC 5802 §3).
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl Credential {
    /// The credential for `password`. The salt is derived from the mechanism and user name
    /// instead of drawn at random, so a broker's answers are a function of its config and its
    /// Entropy seam alone (the simulator replays runs byte for byte); a salt's job — making one
    /// precomputed table useless across many users — is kept, since every user's differs.
    pub fn new(hash: Hash, user: &str, password: &str, iterations: u32) -> Credential {
        let label = match hash {
            Hash::Sha256 => "SCRAM-SHA-256",
            Hash::Sha512 => "SCRAM-SHA-512",
        };
        let seed = Sha256::new()
            .chain_update(b"tidepool scram salt\0")
            .chain_update(label.as_bytes())
            .chain_update(b"\0")
            .chain_update(user.as_bytes())
            .finalize();
        let salt = seed[..SALT_BYTES].to_vec();
        let salted = hash.salted_password(password.as_bytes(), &salt, iterations);
        let client_key = hash.hmac(&salted, &[b"Client Key"]);
        Credential {
            stored_key: hash.digest(&client_key),
            server_key: hash.hmac(&salted, &[b"Server Key"]),
            salt,
            iterations,
        }
    }
}

/// One SCRAM exchange on one connection, between the client's first and final messages.
#[derive(Debug)]
pub struct Exchange {
    hash: Hash,
    mechanism: Mechanism,
    /// The gs2 header exactly as sent (`n,,`), which the final message's `c=` must repeat.
    gs2_header: String,
    client_first_bare: String,
    server_first: String,
    nonce: String,
    user: String,
    credential: Credential,
}

/// Kafka's answer whenever it does not name the cause (`SaslServerAuthenticator`): it must not
/// tell an unauthenticated client whether the user exists.
pub fn generic_failure(mechanism: Mechanism, log: impl Into<String>) -> AuthFailure {
    AuthFailure {
        message: format!(
            "Authentication failed during authentication due to invalid credentials with SASL mechanism {}",
            mechanism.name()
        ),
        log: log.into(),
    }
}

/// A client-first message's user name: `=2C` is a comma, `=3D` an equals sign; any other `=`
/// is malformed (RFC 5802 §5.1).
fn decode_sasl_name(name: &str) -> Option<String> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        let escape = rest.get(at..at + 3)?;
        match escape {
            "=2C" => out.push(','),
            "=3D" => out.push('='),
            _ => return None,
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Some(out)
}

/// RFC 5802's `printable` for nonces: visible ASCII except the comma.
fn is_nonce(value: &str) -> bool {
    !value.is_empty()
        && value
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

impl Exchange {
    /// Reads the client-first message and answers the server-first one. `server_nonce` is
    /// printable, comma-free randomness from the Entropy seam; `credential` looks a user up.
    pub fn start<'a>(
        mechanism: Mechanism,
        hash: Hash,
        message: &[u8],
        server_nonce: &str,
        credential: impl FnOnce(&str) -> Option<&'a Credential>,
    ) -> Result<(Exchange, Vec<u8>), AuthFailure> {
        let fail = |log: &str| generic_failure(mechanism, log);
        let message =
            std::str::from_utf8(message).map_err(|_| fail("client-first message is not UTF-8"))?;
        let (gs2_header, bare) = split_gs2_header(message).map_err(|reason| fail(&reason))?;
        let mut attributes = bare.split(',');
        let user = match attributes.next() {
            Some(field) if field.starts_with("m=") => {
                return Err(fail("client-first message asks for a mandatory extension"));
            }
            Some(field) => field
                .strip_prefix("n=")
                .and_then(decode_sasl_name)
                .filter(|user| !user.is_empty())
                .ok_or_else(|| fail("client-first message has no valid user name"))?,
            None => return Err(fail("empty client-first message")),
        };
        let client_nonce = attributes
            .next()
            .and_then(|field| field.strip_prefix("r="))
            .filter(|nonce| is_nonce(nonce))
            .ok_or_else(|| fail("client-first message has no valid nonce"))?;
        for extension in attributes {
            let Some((name, value)) = extension.split_once('=') else {
                return Err(fail("client-first message has a malformed extension"));
            };
            if name == "tokenauth" && value.eq_ignore_ascii_case("true") {
                return Err(fail(
                    "delegation-token log-in asked for; this broker has no tokens",
                ));
            }
        }
        let authzid = gs2_header
            .strip_prefix("n,")
            .and_then(|rest| rest.strip_suffix(','))
            .unwrap_or_default();
        if let Some(authzid) = authzid.strip_prefix("a=")
            && decode_sasl_name(authzid).as_deref() != Some(user.as_str())
        {
            // Kafka names this cause to the client.
            return Err(AuthFailure {
                message: "Authentication failed: Client requested an authorization id that is different from username".to_owned(),
                log: format!("authorization id {authzid:?} differs from user {user:?}"),
            });
        }
        let credential = credential(&user)
            .cloned()
            .ok_or_else(|| fail(&format!("unknown user {user:?}")))?;
        let nonce = format!("{client_nonce}{server_nonce}");
        let server_first = format!(
            "r={nonce},s={},i={}",
            BASE64.encode(&credential.salt),
            credential.iterations
        );
        let answer = server_first.clone().into_bytes();
        Ok((
            Exchange {
                hash,
                mechanism,
                gs2_header: gs2_header.to_owned(),
                client_first_bare: bare.to_owned(),
                server_first,
                nonce,
                user,
                credential,
            },
            answer,
        ))
    }

    /// Checks the client-final message's channel binding, nonce and proof; answers the
    /// server-final message (`v=` the server signature) and the authenticated user.
    pub fn finish(self, message: &[u8]) -> Result<(String, Vec<u8>), AuthFailure> {
        let fail = |log: &str| generic_failure(self.mechanism, log);
        let message =
            std::str::from_utf8(message).map_err(|_| fail("client-final message is not UTF-8"))?;
        let (without_proof, proof) = message
            .rsplit_once(",p=")
            .ok_or_else(|| fail("client-final message has no proof"))?;
        let mut attributes = without_proof.split(',');
        let binding = attributes
            .next()
            .and_then(|field| field.strip_prefix("c="))
            .and_then(|value| BASE64.decode(value).ok())
            .ok_or_else(|| fail("client-final message has no valid channel binding"))?;
        if binding != self.gs2_header.as_bytes() {
            return Err(fail(
                "client-final channel binding differs from the client-first gs2 header",
            ));
        }
        let nonce = attributes
            .next()
            .and_then(|field| field.strip_prefix("r="))
            .ok_or_else(|| fail("client-final message has no nonce"))?;
        if nonce != self.nonce {
            // librdkafka before 2.6.1 sends the client nonce twice; Kafka 4 refuses it too
            // (3.8.1 to 3.9 accepted any nonce ending in the server's).
            let why = if nonce.ends_with(&self.nonce) {
                "client-final nonce repeats the client nonce (librdkafka before 2.6.1; Kafka 4 refuses it too)"
            } else {
                "client-final nonce is not the one the server sent"
            };
            return Err(fail(why));
        }
        let proof = BASE64
            .decode(proof)
            .ok()
            .filter(|proof| proof.len() == self.hash.len())
            .ok_or_else(|| fail("client-final proof is not a base64 digest"))?;
        let auth_message = format!(
            "{},{},{}",
            self.client_first_bare, self.server_first, without_proof
        );
        let client_signature = self
            .hash
            .hmac(&self.credential.stored_key, &[auth_message.as_bytes()]);
        let client_key: Vec<u8> = proof
            .iter()
            .zip(&client_signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let stored_key = self.hash.digest(&client_key);
        if !bool::from(stored_key.ct_eq(&self.credential.stored_key)) {
            return Err(fail(&format!("wrong proof for user {:?}", self.user)));
        }
        let server_signature = self
            .hash
            .hmac(&self.credential.server_key, &[auth_message.as_bytes()]);
        Ok((
            self.user,
            format!("v={}", BASE64.encode(server_signature)).into_bytes(),
        ))
    }
}

/// Splits `n,[a=AUTHZID],` off a client-first message. `y` and `p=` (channel binding) are
/// refused: a plaintext listener has no channel to bind to, and Kafka accepts only `n`.
fn split_gs2_header(message: &str) -> Result<(&str, &str), String> {
    match message.as_bytes().first() {
        Some(b'n') => {}
        Some(b'y' | b'p') => {
            return Err(
                "client asks for channel binding, which a plaintext listener has not".into(),
            );
        }
        _ => return Err("client-first message has no gs2 header".into()),
    }
    let first = message
        .find(',')
        .ok_or("client-first message has no gs2 header")?;
    if first != 1 {
        return Err("client-first message has a malformed channel binding flag".into());
    }
    let second = message[2..]
        .find(',')
        .map(|at| at + 2)
        .ok_or("client-first message has no gs2 header")?;
    let authzid = &message[2..second];
    if !authzid.is_empty() && !authzid.starts_with("a=") {
        return Err("client-first message has a malformed authorization id".into());
    }
    Ok((&message[..=second], &message[second + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 §3's SCRAM-SHA-256 example, with its salt and nonces, checked end to end.
    #[test]
    fn the_rfc_7677_exchange_verifies_and_signs_as_published() {
        let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let hash = Hash::Sha256;
        let salted = hash.salted_password(b"pencil", &salt, 4096);
        let client_key = hash.hmac(&salted, &[b"Client Key"]);
        let credential = Credential {
            salt,
            iterations: 4096,
            stored_key: hash.digest(&client_key),
            server_key: hash.hmac(&salted, &[b"Server Key"]),
        };
        let (exchange, server_first) = Exchange::start(
            Mechanism::ScramSha256,
            hash,
            b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
            "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
            |user| (user == "user").then_some(&credential),
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(server_first).unwrap(),
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        let (user, server_final) = exchange
            .finish(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
            .unwrap();
        assert_eq!(user, "user");
        assert_eq!(
            String::from_utf8(server_final).unwrap(),
            "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
    }

    #[test]
    fn user_names_unescape_and_bad_escapes_are_refused() {
        assert_eq!(decode_sasl_name("a=2Cb=3Dc").as_deref(), Some("a,b=c"));
        assert_eq!(decode_sasl_name("a=2"), None);
        assert_eq!(decode_sasl_name("a=41"), None);
    }

    #[test]
    fn channel_binding_other_than_none_is_refused() {
        assert!(split_gs2_header("y,,n=u,r=x").is_err());
        assert!(split_gs2_header("p=tls-unique,,n=u,r=x").is_err());
        assert!(split_gs2_header("n,x=1,n=u,r=x").is_err());
        assert_eq!(split_gs2_header("n,,n=u,r=x").unwrap(), ("n,,", "n=u,r=x"));
        assert_eq!(
            split_gs2_header("n,a=u,n=u,r=x").unwrap(),
            ("n,a=u,", "n=u,r=x")
        );
    }
}
