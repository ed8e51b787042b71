//! PLAIN (RFC 4616): one token, `[authzid] NUL user NUL password`, checked with the wording
//! Kafka's `PlainSaslServer` gives the client.

use subtle::ConstantTimeEq;

use super::{AuthFailure, Mechanism, SaslConfig, scram};

/// The user a PLAIN token authenticates, or why not.
pub fn verify(config: &SaslConfig, token: &[u8]) -> Result<String, AuthFailure> {
    // Malformed tokens get Kafka's generic message (its `SaslException` cases).
    let generic = |log: String| scram::generic_failure(Mechanism::Plain, log);
    let text =
        std::str::from_utf8(token).map_err(|_| generic("PLAIN token is not UTF-8".to_owned()))?;
    let fields: Vec<&str> = text.splitn(3, '\0').collect();
    let [authzid, user, password] = fields[..] else {
        return Err(generic(format!(
            "Invalid SASL/PLAIN response: expected 3 tokens, got {}",
            fields.len()
        )));
    };
    if user.is_empty() {
        return Err(generic("username not specified".to_owned()));
    }
    if password.is_empty() {
        return Err(generic("password not specified".to_owned()));
    }
    let matches = config.users.get(user).is_some_and(|known| {
        bool::from(
            known
                .password
                .expose()
                .as_bytes()
                .ct_eq(password.as_bytes()),
        )
    });
    if !matches {
        return Err(AuthFailure {
            message: "Authentication failed: Invalid username or password".to_owned(),
            log: format!("wrong PLAIN password or unknown user {user:?}"),
        });
    }
    if !authzid.is_empty() && authzid != user {
        return Err(AuthFailure {
            message: "Authentication failed: Client requested an authorization id that is different from username".to_owned(),
            log: format!("authorization id {authzid:?} differs from user {user:?}"),
        });
    }
    Ok(user.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> SaslConfig {
        SaslConfig::new([Mechanism::Plain])
            .unwrap()
            .with_user("alice", "secret")
            .unwrap()
    }

    #[test]
    fn a_right_password_authenticates_and_a_wrong_one_gets_kafkas_message() {
        assert_eq!(verify(&config(), b"\0alice\0secret").unwrap(), "alice");
        assert_eq!(verify(&config(), b"alice\0alice\0secret").unwrap(), "alice");
        let wrong = verify(&config(), b"\0alice\0guess").unwrap_err();
        assert_eq!(
            wrong.message,
            "Authentication failed: Invalid username or password"
        );
        assert!(verify(&config(), b"\0mallory\0secret").is_err());
        assert!(verify(&config(), b"bob\0alice\0secret").is_err());
        assert!(verify(&config(), b"alice\0secret").is_err());
        assert!(verify(&config(), b"\0alice\0").is_err());
        assert!(verify(&config(), &[0xff, 0, 0]).is_err());
    }
}
