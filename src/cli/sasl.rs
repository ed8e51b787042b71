//! `tidepool serve`'s SASL flags: who may log in, and with which mechanisms.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use tidepool_broker::{Mechanism, SaslConfig};

#[derive(Args, Debug, Clone, Default)]
pub struct SaslArgs {
    /// Require SASL log-in, as Kafka's SASL_PLAINTEXT listener does, and let NAME log in with
    /// PASSWORD (everything after the first colon); repeatable. Clients then set
    /// security.protocol=SASL_PLAINTEXT, sasl.mechanism and the user's name and password.
    #[arg(long = "sasl-user", value_name = "NAME:PASSWORD")]
    pub users: Vec<String>,
    /// Like --sasl-user, one NAME:PASSWORD a line (blank lines and `#` comments skipped),
    /// so passwords stay out of the process list.
    #[arg(long = "sasl-users-file", value_name = "FILE")]
    pub users_file: Option<PathBuf>,
    /// SASL mechanisms to offer, comma-separated: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
    /// (default: all three once a user is given).
    #[arg(long = "sasl-mechanisms", value_name = "LIST", value_delimiter = ',')]
    pub mechanisms: Vec<Mechanism>,
}

impl SaslArgs {
    /// The SASL config these flags ask for; `None` when no user is given (a PLAINTEXT
    /// listener). Mechanisms without users are refused rather than silently ignored.
    pub fn config(&self) -> anyhow::Result<Option<SaslConfig>> {
        if self.users.is_empty() && self.users_file.is_none() {
            if !self.mechanisms.is_empty() {
                anyhow::bail!(
                    "--sasl-mechanisms needs at least one --sasl-user or --sasl-users-file"
                );
            }
            return Ok(None);
        }
        let mut config = if self.mechanisms.is_empty() {
            SaslConfig::all_mechanisms()
        } else {
            SaslConfig::new(self.mechanisms.iter().copied())?
        };
        for user in &self.users {
            let (name, password) = tidepool_broker::sasl::parse_user(user)?;
            config = config.with_user(name, password)?;
        }
        if let Some(path) = &self.users_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read --sasl-users-file {}", path.display()))?;
            config = config
                .with_users_text(&text)
                .with_context(|| format!("in --sasl-users-file {}", path.display()))?;
        }
        Ok(Some(config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_turn_sasl_on_with_every_mechanism_by_default() {
        assert!(SaslArgs::default().config().unwrap().is_none());
        let args = SaslArgs {
            users: vec!["alice:pa:ss".into()],
            ..SaslArgs::default()
        };
        let config = args.config().unwrap().unwrap();
        assert_eq!(config.mechanisms(), Mechanism::ALL);
        assert_eq!(config.users().collect::<Vec<_>>(), ["alice"]);
        let only_mechanisms = SaslArgs {
            mechanisms: vec![Mechanism::Plain],
            ..SaslArgs::default()
        };
        assert!(only_mechanisms.config().is_err());
        let no_colon = SaslArgs {
            users: vec!["alice".into()],
            ..SaslArgs::default()
        };
        assert!(no_colon.config().is_err());
    }
}
