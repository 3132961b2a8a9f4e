//! TLS on the client listeners: the broker's certificate and key and the CA client
//! certificates chain to, read from PEM files at start and again on SIGHUP (connections
//! already open keep the settings they started with), and the principal a client
//! certificate names (Kafka's `ssl.principal.mapping.rules`).

use super::{Certificate, Principal};
use crate::config::security::{ClientAuth, TlsConfig};
use anyhow::Context;
use keel_auth::PrincipalRules;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::{Arc, RwLock};

/// The broker's TLS settings, as loaded last.
pub struct Tls {
    settings: TlsConfig,
    rules: PrincipalRules,
    current: RwLock<Configs>,
}

/// What the files make: the server side, and the client side brokers connect to each
/// other with (when there is a CA to check peers against).
#[derive(Clone)]
struct Configs {
    server: Arc<rustls::ServerConfig>,
    client: Option<Arc<rustls::ClientConfig>>,
}

/// The common name a broker's certificate has: this prefix and its node id.
pub const BROKER_CN_PREFIX: &str = "keel-broker-";

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("settings", &self.settings)
            .finish()
    }
}

impl Tls {
    /// Reads the files `settings` name.
    ///
    /// # Errors
    /// A file that cannot be read or holds no certificate or key, a key that does not fit
    /// the certificate, malformed mapping rules: each naming the file or flag.
    pub fn load(settings: &TlsConfig) -> anyhow::Result<Tls> {
        let rules = PrincipalRules::parse(&settings.principal_mapping_rules)
            .map_err(|e| anyhow::anyhow!("ssl principal mapping rules: {e}"))?;
        Ok(Tls {
            current: RwLock::new(configs(settings)?),
            settings: settings.clone(),
            rules,
        })
    }

    /// Reads the files again; new connections use them, open ones keep theirs. On an
    /// error the settings in use stay.
    ///
    /// # Errors
    /// As [`Tls::load`].
    pub fn reload(&self) -> anyhow::Result<()> {
        let fresh = configs(&self.settings)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        Ok(())
    }

    /// What accepts a TLS connection with the current settings.
    pub fn acceptor(&self) -> futures_rustls::TlsAcceptor {
        futures_rustls::TlsAcceptor::from(self.configs().server)
    }

    /// What connects to another broker: its certificate checked against the CA, ours
    /// shown as our identity. `None` without a CA.
    pub fn connector(&self) -> Option<futures_rustls::TlsConnector> {
        self.configs()
            .client
            .map(futures_rustls::TlsConnector::from)
    }

    fn configs(&self) -> Configs {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The node id a verified certificate chain proves: its leaf's common name is
    /// `keel-broker-ID`.
    pub fn broker_id(chain: Option<&[CertificateDer<'_>]>) -> Option<u32> {
        let (_, cert) = x509_parser::parse_x509_certificate(chain?.first()?.as_ref()).ok()?;
        let cn = cert.subject().iter_common_name().next()?.as_str().ok()?;
        let id = cn.strip_prefix(BROKER_CN_PREFIX)?;
        // One spelling per id: no sign, no leading zeros.
        id.parse::<u32>().ok().filter(|n| n.to_string() == id)
    }

    /// What a verified client certificate chain says: the principal its first
    /// certificate's subject maps to, and the broker it proves; `None` without one.
    pub fn certificate(&self, chain: Option<&[CertificateDer<'_>]>) -> Option<Certificate> {
        let dn = subject_dn(chain?.first()?)?;
        Some(Certificate {
            principal: Principal::user(&self.rules.apply(&dn)),
            broker: Tls::broker_id(chain),
        })
    }
}

/// The rustls settings of `settings`' files.
fn configs(settings: &TlsConfig) -> anyhow::Result<Configs> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&settings.cert)
        .and_then(|certs| certs.collect())
        .map_err(|e| anyhow::anyhow!("--tls-cert {}: {e}", settings.cert.display()))?;
    anyhow::ensure!(
        !chain.is_empty(),
        "--tls-cert {}: no certificate in the file",
        settings.cert.display()
    );
    let key = PrivateKeyDer::from_pem_file(&settings.key)
        .map_err(|e| anyhow::anyhow!("--tls-key {}: {e}", settings.key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let roots = match &settings.ca {
        Some(ca) => Some(Arc::new(read_roots(ca, "--tls-ca")?)),
        None => None,
    };
    let client = match &roots {
        Some(roots) => Some(Arc::new(
            rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .context("TLS protocol versions")?
                .with_root_certificates(roots.clone())
                .with_client_auth_cert(chain.clone(), key.clone_key())
                .context("--tls-cert and --tls-key do not make a usable pair")?,
        )),
        None => None,
    };
    let builder = match (&roots, settings.client_auth) {
        (_, ClientAuth::None) | (None, _) => builder.with_no_client_auth(),
        (Some(roots), auth) => {
            let ca = settings.ca.as_deref().unwrap_or(std::path::Path::new(""));
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                roots.clone(),
                provider,
            );
            let verifier = if auth == ClientAuth::Requested {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .with_context(|| format!("--tls-ca {}", ca.display()))?,
            )
        }
    };
    let server = builder
        .with_single_cert(chain, key)
        .context("--tls-cert and --tls-key do not make a usable pair")?;
    Ok(Configs {
        server: Arc::new(server),
        client,
    })
}

/// The CA certificates in `ca` (named `what` in errors: the flag or setting it came from).
fn read_roots(ca: &std::path::Path, what: &str) -> anyhow::Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca)
        .map_err(|e| anyhow::anyhow!("{what} {}: {e}", ca.display()))?
    {
        let cert = cert.map_err(|e| anyhow::anyhow!("{what} {}: {e}", ca.display()))?;
        roots
            .add(cert)
            .with_context(|| format!("{what} {}", ca.display()))?;
    }
    anyhow::ensure!(
        !roots.is_empty(),
        "{what} {}: no certificate in the file",
        ca.display()
    );
    Ok(roots)
}

/// The client side of a connection this broker makes to a server outside its cluster (a
/// cluster link's source, with Kafka's client setting names): the server's certificate
/// checked against the CAs in `ca` and its name against the address connected to, and
/// `identity` (certificate and key files) shown when the server asks for one (mTLS).
///
/// # Errors
/// A file that cannot be read or holds no certificate or key, a key that does not fit its
/// certificate: each naming the setting and file.
pub fn client_config(
    ca: &std::path::Path,
    identity: Option<(&std::path::Path, &std::path::Path)>,
) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let roots = read_roots(ca, "ssl.ca.location")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .and_then(|certs| certs.collect())
                .map_err(|e| anyhow::anyhow!("ssl.certificate.location {}: {e}", cert.display()))?;
            anyhow::ensure!(
                !chain.is_empty(),
                "ssl.certificate.location {}: no certificate in the file",
                cert.display()
            );
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| anyhow::anyhow!("ssl.key.location {}: {e}", key.display()))?;
            builder.with_client_auth_cert(chain, key).context(
                "ssl.certificate.location and ssl.key.location do not make a usable pair",
            )?
        }
    };
    Ok(Arc::new(config))
}

/// A certificate's subject as an RFC 2253 string, the form Kafka's rules match
/// (`CN=alice,OU=eng,O=Keel`: the last name component first).
fn subject_dn(der: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let rdns: Vec<String> = cert
        .subject()
        .iter()
        .map(|rdn| {
            rdn.iter()
                .map(|attr| {
                    let key = match attr.attr_type().to_id_string().as_str() {
                        "2.5.4.3" => "CN".to_owned(),
                        "2.5.4.11" => "OU".to_owned(),
                        "2.5.4.10" => "O".to_owned(),
                        "2.5.4.7" => "L".to_owned(),
                        "2.5.4.8" => "ST".to_owned(),
                        "2.5.4.6" => "C".to_owned(),
                        "2.5.4.9" => "STREET".to_owned(),
                        "0.9.2342.19200300.100.1.25" => "DC".to_owned(),
                        "0.9.2342.19200300.100.1.1" => "UID".to_owned(),
                        other => other.to_owned(),
                    };
                    let value = attr
                        .as_str()
                        .map(escape_dn_value)
                        .unwrap_or_else(|_| "#".to_owned() + &hex(attr.as_slice()));
                    format!("{key}={value}")
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    Some(rdns.into_iter().rev().collect::<Vec<_>>().join(","))
}

/// RFC 2253 escaping of a value.
fn escape_dn_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && matches!(c, ' ' | '#'))
            || (i + 1 == value.chars().count() && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_subject_reads_last_component_first() {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Keel, Inc");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "alice");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let dn = subject_dn(&cert.der().clone()).unwrap();
        assert_eq!(dn, "CN=alice,O=Keel\\, Inc");
    }
}
