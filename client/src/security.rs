//! How the client reaches brokers: plain TCP, or TLS (a broker's `--native-security SSL`)
//! with the CA its certificate is checked against and, for mTLS, the client's own
//! certificate; and SASL credentials (`SASL_PLAINTEXT`, `SASL_SSL`). Read from a
//! Kafka-style client properties file (`security.protocol`, `ssl.ca.location`,
//! `ssl.certificate.location`, `ssl.key.location`, `sasl.mechanism`, `sasl.username`,
//! `sasl.password`), the `keel` tool's `--command-config`.

use crate::sasl::SaslCredentials;
use keel_auth::Mechanism;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::path::Path;
use std::sync::Arc;

/// Security settings of a client's connections. The default is plain TCP.
#[derive(Clone, Default)]
pub struct ClientSecurity {
    tls: Option<Arc<rustls::ClientConfig>>,
    sasl: Option<Arc<SaslCredentials>>,
}

impl std::fmt::Debug for ClientSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let protocol = match (self.tls.is_some(), self.sasl.is_some()) {
            (false, false) => "PLAINTEXT",
            (true, false) => "SSL",
            (false, true) => "SASL_PLAINTEXT",
            (true, true) => "SASL_SSL",
        };
        f.write_str(protocol)?;
        match &self.sasl {
            Some(sasl) => write!(f, " ({sasl:?})"),
            None => Ok(()),
        }
    }
}

/// A settings error: what is wrong, naming the property or file.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SecurityError(String);

impl ClientSecurity {
    /// TLS, checking brokers against the CA certificates in `ca` (PEM), showing the
    /// certificate and key in `identity` (PEM files) when given.
    ///
    /// # Errors
    /// A file that cannot be read or holds nothing usable.
    pub fn tls(
        ca: &Path,
        identity: Option<(&Path, &Path)>,
    ) -> Result<ClientSecurity, SecurityError> {
        let fail = |what: &str, path: &Path, e: &dyn std::fmt::Display| {
            SecurityError(format!("{what} {}: {e}", path.display()))
        };
        let mut roots = rustls::RootCertStore::empty();
        for cert in
            CertificateDer::pem_file_iter(ca).map_err(|e| fail("ssl.ca.location", ca, &e))?
        {
            let cert = cert.map_err(|e| fail("ssl.ca.location", ca, &e))?;
            roots
                .add(cert)
                .map_err(|e| fail("ssl.ca.location", ca, &e))?;
        }
        if roots.is_empty() {
            return Err(fail("ssl.ca.location", ca, &"no certificate in the file"));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| SecurityError(e.to_string()))?
            .with_root_certificates(roots);
        let config = match identity {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| fail("ssl.certificate.location", cert, &e))?;
                let private = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| fail("ssl.key.location", key, &e))?;
                builder
                    .with_client_auth_cert(chain, private)
                    .map_err(|e| fail("ssl.certificate.location", cert, &e))?
            }
        };
        Ok(ClientSecurity {
            tls: Some(Arc::new(config)),
            sasl: None,
        })
    }

    /// The settings in a Kafka client properties file (`key=value` lines, `#` comments).
    ///
    /// # Errors
    /// An unreadable file, an unknown protocol or mechanism, SSL without
    /// `ssl.ca.location`, SASL without its mechanism, user and password, or bad
    /// certificate files.
    pub fn from_properties_file(path: &Path) -> Result<ClientSecurity, SecurityError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| SecurityError(format!("{}: {e}", path.display())))?;
        let mut properties = std::collections::HashMap::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = line.split_once('=').ok_or_else(|| {
                SecurityError(format!("{}: {line:?} is not key=value", path.display()))
            })?;
            properties.insert(key.trim().to_owned(), value.trim().to_owned());
        }
        let get = |key: &str| properties.get(key).map(String::as_str);
        let protocol = get("security.protocol").unwrap_or("PLAINTEXT");
        let (tls, sasl) = match protocol {
            "PLAINTEXT" => (false, false),
            "SSL" => (true, false),
            "SASL_PLAINTEXT" => (false, true),
            "SASL_SSL" => (true, true),
            other => {
                return Err(SecurityError(format!(
                "unknown security.protocol {other:?} (PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL)"
            )))
            }
        };
        let mut security = ClientSecurity::default();
        if tls {
            let ca = get("ssl.ca.location").ok_or_else(|| {
                SecurityError(format!(
                    "security.protocol={protocol} needs ssl.ca.location"
                ))
            })?;
            let identity = match (get("ssl.certificate.location"), get("ssl.key.location")) {
                (Some(cert), Some(key)) => Some((Path::new(cert), Path::new(key))),
                (None, None) => None,
                _ => {
                    return Err(SecurityError(
                        "ssl.certificate.location and ssl.key.location go together".into(),
                    ))
                }
            };
            security = ClientSecurity::tls(Path::new(ca), identity)?;
        }
        if sasl {
            let need = |key: &str| {
                get(key).ok_or_else(|| {
                    SecurityError(format!("security.protocol={protocol} needs {key}"))
                })
            };
            security = security.sasl(
                need("sasl.mechanism")?,
                need("sasl.username")?,
                need("sasl.password")?,
            )?;
        }
        Ok(security)
    }

    /// These settings, authenticating every connection with SASL `mechanism`
    /// (`SCRAM-SHA-512`, `SCRAM-SHA-256` or `PLAIN`) as `user`.
    ///
    /// # Errors
    /// An unknown mechanism.
    pub fn sasl(
        mut self,
        mechanism: &str,
        user: &str,
        password: &str,
    ) -> Result<ClientSecurity, SecurityError> {
        let mechanism = Mechanism::parse(mechanism).ok_or_else(|| {
            SecurityError(format!(
                "unknown sasl.mechanism {mechanism:?} (SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN)"
            ))
        })?;
        self.sasl = Some(Arc::new(SaslCredentials {
            mechanism,
            user: user.to_owned(),
            password: password.to_owned(),
        }));
        Ok(self)
    }

    /// The SASL credentials connections authenticate with, if any.
    pub fn sasl_credentials(&self) -> Option<&SaslCredentials> {
        self.sasl.as_deref()
    }

    /// With TLS, what connects to the broker at `addr` (`host:port`) and the name its
    /// certificate is checked for; `Ok(None)` without TLS.
    pub(crate) fn tls_for(
        &self,
        addr: &str,
    ) -> Result<Option<(tokio_rustls::TlsConnector, ServerName<'static>)>, String> {
        let Some(config) = self.tls.clone() else {
            return Ok(None);
        };
        let host = addr
            .rsplit_once(':')
            .map_or(addr, |(host, _)| host)
            .trim_start_matches('[')
            .trim_end_matches(']');
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| format!("{host:?} cannot be checked against a certificate: {e}"))?;
        Ok(Some((tokio_rustls::TlsConnector::from(config), name)))
    }

    /// Whether connections use TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }
}
