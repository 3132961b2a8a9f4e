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
    /// TLS; the client's certificate, when it gives one, names it.
    Ssl,
    /// SASL authentication without encryption.
    SaslPlaintext,
    /// SASL authentication over TLS.
    SaslSsl,
}

impl SecurityProtocol {
    /// The protocol named `name` (Kafka's `security.protocol` values).
    ///
    /// # Errors
    /// An unknown name.
    pub fn parse(name: &str) -> Result<SecurityProtocol, String> {
        match name {
            "PLAINTEXT" => Ok(SecurityProtocol::Plaintext),
            "SSL" => Ok(SecurityProtocol::Ssl),
            "SASL_PLAINTEXT" => Ok(SecurityProtocol::SaslPlaintext),
            "SASL_SSL" => Ok(SecurityProtocol::SaslSsl),
            other => Err(format!(
                "unknown security protocol {other:?} (PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL)"
            )),
        }
    }

    /// Kafka's name.
    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    /// Whether a connection must authenticate with SASL before anything else.
    pub fn sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }

    /// Whether the connection is TLS.
    pub fn tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }
}

/// Whether a TLS listener asks for the client's certificate (Kafka's `ssl.client.auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// No client certificate is asked for.
    #[default]
    None,
    /// Asked for; a client without one is anonymous, one with an untrusted one refused.
    Requested,
    /// A certificate the CA signed is needed to connect.
    Required,
}

/// TLS settings: the broker's certificate chain and key, and the CA client certificates
/// must chain to (PEM files, read again on SIGHUP).
#[derive(Debug, Clone, Default)]
pub struct TlsConfig {
    /// The broker's certificate chain (PEM).
    pub cert: std::path::PathBuf,
    /// The broker's private key (PEM).
    pub key: std::path::PathBuf,
    /// The CA certificates client certificates are checked against (PEM).
    pub ca: Option<std::path::PathBuf>,
    /// Whether client certificates are asked for.
    pub client_auth: ClientAuth,
    /// Kafka's `ssl.principal.mapping.rules` (default `DEFAULT`: the subject's DN).
    pub principal_mapping_rules: String,
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

/// Whether `flag`'s value (PLAINTEXT, the default, or SSL) is SSL.
fn plaintext_or_ssl(flag: &str, value: Option<String>) -> anyhow::Result<bool> {
    match value.as_deref() {
        None | Some("PLAINTEXT") => Ok(false),
        Some("SSL") => Ok(true),
        Some(other) => anyhow::bail!("{flag} takes PLAINTEXT or SSL, got {other:?}"),
    }
}

/// Security flags of `keel-server`.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct SecurityArgs {
    /// The Kafka listener's security protocol: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.
    #[arg(long)]
    pub kafka_security: Option<String>,
    /// The native listener's security protocol: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.
    #[arg(long)]
    pub native_security: Option<String>,
    /// The metrics port: PLAINTEXT, or SSL (HTTPS with the broker's certificate; with
    /// --tls-client-auth required, scrapers show a certificate).
    #[arg(long)]
    pub metrics_security: Option<String>,
    /// How brokers and controllers reach each other: PLAINTEXT, or SSL (mTLS: each proves
    /// its node id with a certificate whose CN is keel-broker-ID).
    #[arg(long)]
    pub inter_broker_security: Option<String>,
    /// The broker's certificate chain, PEM (for SSL and SASL_SSL listeners).
    #[arg(long)]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The broker's private key, PEM.
    #[arg(long)]
    pub tls_key: Option<std::path::PathBuf>,
    /// CA certificates (PEM) that client certificates must chain to.
    #[arg(long)]
    pub tls_ca: Option<std::path::PathBuf>,
    /// Whether clients must show a certificate: none, requested or required.
    #[arg(long)]
    pub tls_client_auth: Option<String>,
    /// Kafka's ssl.principal.mapping.rules: how a certificate's subject names a principal.
    #[arg(long)]
    pub ssl_principal_mapping_rules: Option<String>,
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
    /// With the authorizer on, a resource no ACL binding selects is open to everyone
    /// (Kafka's allow.everyone.if.no.acl.found; off by default: closed to all but super
    /// users).
    #[arg(long)]
    pub allow_everyone_if_no_acl_found: bool,
    /// A SASL session's lifetime: clients authenticate again within it or are
    /// disconnected (Kafka's connections.max.reauth.ms; 0, the default: no limit).
    #[arg(long)]
    pub connections_max_reauth_ms: Option<u64>,
}

/// The same keys in the TOML file.
#[derive(Debug, Default)]
pub struct SecurityFile {
    /// `kafka_security`.
    pub kafka_security: Option<String>,
    /// `native_security`.
    pub native_security: Option<String>,
    /// `inter_broker_security`.
    pub inter_broker_security: Option<String>,
    /// `metrics_security`.
    pub metrics_security: Option<String>,
    /// `tls_cert`, `tls_key`, `tls_ca`, `tls_client_auth`, `ssl_principal_mapping_rules`.
    pub tls: [Option<String>; 5],
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
    /// `allow_everyone_if_no_acl_found`.
    pub allow_everyone_if_no_acl_found: Option<bool>,
    /// `connections_max_reauth_ms`.
    pub connections_max_reauth_ms: Option<u64>,
}

/// Validated security settings.
#[derive(Debug, Clone, Default)]
pub struct SecurityConfig {
    /// The Kafka listener's protocol.
    pub kafka: SecurityProtocol,
    /// The native listener's protocol.
    pub native: SecurityProtocol,
    /// Brokers and controllers authenticate each other with certificates (mTLS).
    pub inter_broker_tls: bool,
    /// The metrics port serves HTTPS.
    pub metrics_tls: bool,
    /// TLS settings, when a listener is SSL or SASL_SSL.
    pub tls: Option<TlsConfig>,
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
    /// A resource no ACL binding selects is open to everyone.
    pub allow_everyone_if_no_acl_found: bool,
    /// A SASL session's lifetime in ms (KIP-368); 0: sessions do not end.
    pub connections_max_reauth_ms: u64,
    /// How long a connection whose authentication failed stays open after the answer
    /// (Kafka's `connection.failed.authentication.delay.ms`, default 100).
    pub failed_authentication_delay_ms: u64,
}

impl SecurityConfig {
    /// What a SASL listener offers: its mechanisms, and whether clients may authenticate
    /// again (sessions have a lifetime).
    pub fn sasl_offer(&self) -> (&[Mechanism], bool) {
        (&self.sasl_mechanisms, self.connections_max_reauth_ms > 0)
    }

    /// Whether a listener with `protocol` authenticates every connection: SASL, or TLS
    /// that requires a client certificate.
    pub fn authenticates(&self, protocol: SecurityProtocol) -> bool {
        protocol.sasl()
            || (protocol.tls()
                && self
                    .tls
                    .as_ref()
                    .is_some_and(|t| t.client_auth == ClientAuth::Required))
    }

    /// Flags over the file's keys, validated.
    ///
    /// # Errors
    /// An unknown protocol or mechanism, or a malformed `--add-scram`, named.
    /// `more_tls`: another listener (one of `--kafka-listeners`) is SSL or SASL_SSL.
    pub fn load(
        args: &SecurityArgs,
        file: SecurityFile,
        more_tls: bool,
    ) -> anyhow::Result<SecurityConfig> {
        let kafka = match args.kafka_security.clone().or(file.kafka_security.clone()) {
            Some(name) => SecurityProtocol::parse(&name)
                .map_err(|e| anyhow::anyhow!("--kafka-security: {e}"))?,
            None => SecurityProtocol::Plaintext,
        };
        let native = match args
            .native_security
            .clone()
            .or(file.native_security.clone())
        {
            Some(name) => SecurityProtocol::parse(&name)
                .map_err(|e| anyhow::anyhow!("--native-security: {e}"))?,
            None => SecurityProtocol::Plaintext,
        };
        let inter_broker_tls = plaintext_or_ssl(
            "--inter-broker-security",
            args.inter_broker_security
                .clone()
                .or(file.inter_broker_security.clone()),
        )?;
        let metrics_tls = plaintext_or_ssl(
            "--metrics-security",
            args.metrics_security
                .clone()
                .or(file.metrics_security.clone()),
        )?;
        let tls = tls_config(
            args,
            &file,
            kafka.tls() || native.tls() || inter_broker_tls || metrics_tls || more_tls,
        )?;
        if inter_broker_tls {
            // Followers fetch from the native listener: it must ask for their certificates.
            anyhow::ensure!(
                native.tls()
                    && tls.as_ref().is_some_and(|t| t.client_auth != ClientAuth::None && t.ca.is_some()),
                "--inter-broker-security SSL needs --native-security SSL, --tls-ca and --tls-client-auth requested or required (followers prove who they are with their certificates)"
            );
        }
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
        let connections_max_reauth_ms = args
            .connections_max_reauth_ms
            .or(file.connections_max_reauth_ms)
            .unwrap_or(0);
        anyhow::ensure!(
            connections_max_reauth_ms == 0 || connections_max_reauth_ms >= 1_000,
            "--connections-max-reauth-ms is 0 (no limit) or at least 1000"
        );
        Ok(SecurityConfig {
            connections_max_reauth_ms,
            authorizer,
            super_users,
            allow_plaintext: args.allow_plaintext || file.allow_plaintext.unwrap_or(false),
            allow_everyone_if_no_acl_found: args.allow_everyone_if_no_acl_found
                || file.allow_everyone_if_no_acl_found.unwrap_or(false),
            failed_authentication_delay_ms,
            kafka,
            native,
            inter_broker_tls,
            metrics_tls,
            tls,
            sasl_mechanisms,
            add_scram: add_scram
                .iter()
                .map(|v| parse_add_scram(v))
                .collect::<anyhow::Result<_>>()?,
        })
    }
}

/// The TLS settings of the flags over the file's keys: `None` when no listener needs TLS.
///
/// # Errors
/// A TLS listener without a certificate and key, `required` or `requested` client
/// authentication without a CA, an unknown `--tls-client-auth` or malformed mapping rules.
fn tls_config(
    args: &SecurityArgs,
    file: &SecurityFile,
    needed: bool,
) -> anyhow::Result<Option<TlsConfig>> {
    let [cert, key, ca, client_auth, rules] = file.tls.clone();
    let cert = args.tls_cert.clone().or(cert.map(Into::into));
    let key = args.tls_key.clone().or(key.map(Into::into));
    let ca = args.tls_ca.clone().or(ca.map(Into::into));
    let client_auth = match args.tls_client_auth.clone().or(client_auth).as_deref() {
        None | Some("none") => ClientAuth::None,
        Some("requested") => ClientAuth::Requested,
        Some("required") => ClientAuth::Required,
        Some(other) => {
            anyhow::bail!("--tls-client-auth takes none, requested or required, got {other:?}")
        }
    };
    let principal_mapping_rules = args
        .ssl_principal_mapping_rules
        .clone()
        .or(rules)
        .unwrap_or_else(|| "DEFAULT".into());
    keel_auth::PrincipalRules::parse(&principal_mapping_rules)
        .map_err(|e| anyhow::anyhow!("--ssl-principal-mapping-rules: {e}"))?;
    if !needed {
        return Ok(None);
    }
    let (Some(cert), Some(key)) = (cert, key) else {
        anyhow::bail!("an SSL or SASL_SSL listener needs --tls-cert and --tls-key (PEM files)");
    };
    anyhow::ensure!(
        client_auth == ClientAuth::None || ca.is_some(),
        "--tls-client-auth {} needs --tls-ca, the CA client certificates are checked against",
        if client_auth == ClientAuth::Required {
            "required"
        } else {
            "requested"
        }
    );
    Ok(Some(TlsConfig {
        cert,
        key,
        ca,
        client_auth,
        principal_mapping_rules,
    }))
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
