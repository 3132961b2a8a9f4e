//! Security settings: each listener's protocol, the SASL mechanisms offered, and users
//! made at start-up.

use anyhow::Context;
use keel_auth::Mechanism;

/// A listener's security protocol, with Kafka's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SecurityProtocol {
    /// No authentication, no encryption.
    #[default]
    Plaintext,
    /// SASL authentication without encryption.
    SaslPlaintext,
}

impl SecurityProtocol {
    /// The protocol named `name` (Kafka's `security.protocol` values).
    ///
    /// # Errors
    /// An unknown name, or SSL and SASL_SSL, which need TLS (not built yet).
    pub fn parse(name: &str) -> Result<SecurityProtocol, String> {
        match name {
            "PLAINTEXT" => Ok(SecurityProtocol::Plaintext),
            "SASL_PLAINTEXT" => Ok(SecurityProtocol::SaslPlaintext),
            "SSL" | "SASL_SSL" => Err(format!(
                "{name} needs TLS, which this broker does not have yet (docs/security.md)"
            )),
            other => Err(format!(
                "unknown security protocol {other:?} (PLAINTEXT or SASL_PLAINTEXT)"
            )),
        }
    }

    /// Kafka's name.
    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
        }
    }

    /// Whether a connection must authenticate with SASL before anything else.
    pub fn sasl(self) -> bool {
        matches!(self, SecurityProtocol::SaslPlaintext)
    }
}

/// A `--add-scram MECHANISM:NAME:PASSWORD` value (the password may contain colons).
///
/// # Errors
/// A value without three parts, or a mechanism that is not SCRAM.
pub fn parse_add_scram(value: &str) -> anyhow::Result<(Mechanism, String, String)> {
    let mut parts = value.splitn(3, ':');
    let (Some(mechanism), Some(user), Some(password)) = (parts.next(), parts.next(), parts.next())
    else {
        anyhow::bail!("--add-scram takes MECHANISM:NAME:PASSWORD");
    };
    let mechanism = Mechanism::parse(mechanism)
        .filter(|m| m.scram().is_some())
        .with_context(|| {
            format!("--add-scram: {mechanism:?} is not SCRAM-SHA-256 or SCRAM-SHA-512")
        })?;
    anyhow::ensure!(
        !user.is_empty() && !password.is_empty(),
        "--add-scram: the user name and the password must not be empty"
    );
    Ok((mechanism, user.to_owned(), password.to_owned()))
}

/// Security flags of `keel-server`.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct SecurityArgs {
    /// The Kafka listener's security protocol: PLAINTEXT or SASL_PLAINTEXT.
    #[arg(long)]
    pub kafka_security: Option<String>,
    /// SASL mechanisms offered, comma-separated (default SCRAM-SHA-512,SCRAM-SHA-256).
    #[arg(long)]
    pub sasl_mechanisms: Option<String>,
    /// MECHANISM:NAME:PASSWORD: makes the user at start-up unless they exist (repeatable).
    #[arg(long)]
    pub add_scram: Vec<String>,
    /// Accept listening on a non-loopback address without authentication (a trusted
    /// network).
    #[arg(long)]
    pub allow_plaintext: bool,
    /// ACLs decide what each Kafka client may do: on or off (default off).
    #[arg(long)]
    pub authorizer: Option<String>,
    /// Principals allowed everything, comma-separated (`User:admin,User:ops`).
    #[arg(long)]
    pub super_users: Option<String>,
}

/// The same keys in the TOML file.
#[derive(Debug, Default)]
pub struct SecurityFile {
    /// `kafka_security`.
    pub kafka_security: Option<String>,
    /// `sasl_mechanisms`.
    pub sasl_mechanisms: Option<String>,
    /// `add_scram`.
    pub add_scram: Option<Vec<String>>,
    /// `connection_failed_authentication_delay_ms`.
    pub failed_authentication_delay_ms: Option<u64>,
    /// `allow_plaintext`.
    pub allow_plaintext: Option<bool>,
    /// `authorizer`.
    pub authorizer: Option<String>,
    /// `super_users`.
    pub super_users: Option<String>,
}

/// Validated security settings.
#[derive(Debug, Clone, Default)]
pub struct SecurityConfig {
    /// The Kafka listener's protocol.
    pub kafka: SecurityProtocol,
    /// Mechanisms SASL listeners offer.
    pub sasl_mechanisms: Vec<Mechanism>,
    /// Users made at start-up unless they exist: mechanism, name, password.
    pub add_scram: Vec<(Mechanism, String, String)>,
    /// Listening on a non-loopback address without authentication is accepted.
    pub allow_plaintext: bool,
    /// ACLs decide what Kafka clients may do.
    pub authorizer: bool,
    /// Principals allowed everything.
    pub super_users: Vec<String>,
    /// How long a connection whose authentication failed stays open after the answer
    /// (Kafka's `connection.failed.authentication.delay.ms`, default 100).
    pub failed_authentication_delay_ms: u64,
}

impl SecurityConfig {
    /// Flags over the file's keys, validated.
    ///
    /// # Errors
    /// An unknown protocol or mechanism, or a malformed `--add-scram`, named.
    pub fn load(args: &SecurityArgs, file: SecurityFile) -> anyhow::Result<SecurityConfig> {
        let kafka = match args.kafka_security.clone().or(file.kafka_security) {
            Some(name) => SecurityProtocol::parse(&name)
                .map_err(|e| anyhow::anyhow!("--kafka-security: {e}"))?,
            None => SecurityProtocol::Plaintext,
        };
        let mechanisms = args
            .sasl_mechanisms
            .clone()
            .or(file.sasl_mechanisms)
            .unwrap_or_else(|| "SCRAM-SHA-512,SCRAM-SHA-256".into());
        let sasl_mechanisms = mechanisms
            .split(',')
            .map(|name| {
                Mechanism::parse(name.trim()).ok_or_else(|| {
                    anyhow::anyhow!(
                        "--sasl-mechanisms: unknown mechanism {name:?} (SCRAM-SHA-512, SCRAM-SHA-256, PLAIN)"
                    )
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        anyhow::ensure!(
            !sasl_mechanisms.is_empty(),
            "--sasl-mechanisms: at least one mechanism"
        );
        let add_scram = if args.add_scram.is_empty() {
            file.add_scram.unwrap_or_default()
        } else {
            args.add_scram.clone()
        };
        let failed_authentication_delay_ms = file.failed_authentication_delay_ms.unwrap_or(100);
        anyhow::ensure!(
            failed_authentication_delay_ms <= 10_000,
            "connection_failed_authentication_delay_ms must be at most 10000"
        );
        let authorizer = match args.authorizer.clone().or(file.authorizer).as_deref() {
            None | Some("off") => false,
            Some("on") => true,
            Some(other) => anyhow::bail!("--authorizer takes on or off, got {other:?}"),
        };
        let super_users: Vec<String> = args
            .super_users
            .clone()
            .or(file.super_users)
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if let Some(bad) = super_users
            .iter()
            .find(|p| !p.starts_with("User:") || p.len() == 5)
        {
            anyhow::bail!("--super-users: {bad:?} is not User:NAME");
        }
        Ok(SecurityConfig {
            authorizer,
            super_users,
            allow_plaintext: args.allow_plaintext || file.allow_plaintext.unwrap_or(false),
            failed_authentication_delay_ms,
            kafka,
            sasl_mechanisms,
            add_scram: add_scram
                .iter()
                .map(|v| parse_add_scram(v))
                .collect::<anyhow::Result<_>>()?,
        })
    }
}

/// Refuses a listener on a non-loopback address that authenticates no one, unless
/// plaintext is allowed: `listeners` are (address, what it serves, whether it
/// authenticates).
///
/// # Errors
/// The first such listener, in one line saying what to do.
pub fn check_exposure(
    listeners: &[(std::net::SocketAddr, &str, bool)],
    allow_plaintext: bool,
) -> anyhow::Result<()> {
    if allow_plaintext {
        return Ok(());
    }
    match listeners
        .iter()
        .find(|(addr, _, authenticates)| !authenticates && !addr.ip().is_loopback())
    {
        Some((addr, what, _)) => anyhow::bail!(
            "refusing to serve {what} on {addr} without authentication: listen on a loopback address, or give --allow-plaintext on a trusted network (docs/security.md)"
        ),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_listeners_go_without_authentication_unless_allowed() {
        let at = |s: &str| s.parse::<std::net::SocketAddr>().unwrap();
        let local = (at("127.0.0.1:7070"), "clients", false);
        let v6 = (at("[::1]:7070"), "clients", false);
        let open = (at("0.0.0.0:9092"), "the Kafka protocol", false);
        let sasl = (at("10.0.0.1:9092"), "the Kafka protocol", true);
        assert!(check_exposure(&[local, v6, sasl], false).is_ok());
        let error = check_exposure(&[local, open], false)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("0.0.0.0:9092") && error.contains("--allow-plaintext"),
            "{error}"
        );
        assert!(check_exposure(&[local, open], true).is_ok());
    }
}
