//! Certificates made for the tests with rcgen: a CA, broker certificates for 127.0.0.1 and
//! localhost, client certificates (current, expired, or from another CA), written as PEM
//! files.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use std::path::{Path, PathBuf};

/// A certificate authority that signs the others.
pub struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
    /// Its certificate, PEM.
    pub pem: PathBuf,
}

/// A certificate and its key, as PEM files.
pub struct Issued {
    /// The certificate, PEM.
    pub cert: PathBuf,
    /// The private key, PEM.
    pub key: PathBuf,
}

impl Ca {
    /// A fresh CA named `name`, its certificate written to `dir/NAME-ca.pem`.
    pub fn new(dir: &Path, name: &str) -> Ca {
        let key = KeyPair::generate().expect("a key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        let cert = params.self_signed(&key).expect("a CA certificate");
        let pem = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&pem, cert.pem()).unwrap();
        Ca { cert, key, pem }
    }

    /// A certificate for 127.0.0.1 and localhost (a broker's), as `dir/NAME.pem` and
    /// `dir/NAME-key.pem`.
    pub fn broker(&self, dir: &Path, name: &str) -> Issued {
        let params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("params");
        self.sign(dir, name, params)
    }

    /// Node `id`'s certificate: for 127.0.0.1 and localhost, common name `keel-broker-ID`
    /// (what proves a broker to its peers), as `dir/keel-broker-ID.pem` and its key.
    pub fn node(&self, dir: &Path, id: u32) -> Issued {
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .expect("params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("keel-broker-{id}"));
        self.sign(dir, &format!("keel-broker-{id}"), params)
    }

    /// A client certificate whose subject is `CN=cn,O=Keel tests`; `expired` makes it valid
    /// in 2020 only.
    pub fn client(&self, dir: &Path, cn: &str, expired: bool) -> Issued {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Keel tests");
        params.distinguished_name.push(DnType::CommonName, cn);
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2020, 12, 31);
        }
        let name = format!("{cn}{}", if expired { "-expired" } else { "" });
        self.sign(dir, &name, params)
    }

    fn sign(&self, dir: &Path, name: &str, params: CertificateParams) -> Issued {
        let key = KeyPair::generate().expect("a key");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("a signed certificate");
        let issued = Issued {
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}-key.pem")),
        };
        std::fs::write(&issued.cert, cert.pem()).unwrap();
        std::fs::write(&issued.key, key.serialize_pem()).unwrap();
        issued
    }
}

/// A rustls client configuration trusting `ca`, showing `identity` when given (the tests'
/// own TLS clients).
pub fn client_config(ca: &Path, identity: Option<&Issued>) -> rustls::ClientConfig {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("the CA file") {
        roots
            .add(cert.expect("a CA certificate"))
            .expect("a usable CA");
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots);
    match identity {
        Some(issued) => builder
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(&issued.cert)
                    .expect("the certificate file")
                    .map(|c| c.expect("a certificate"))
                    .collect(),
                PrivateKeyDer::from_pem_file(&issued.key).expect("the key file"),
            )
            .expect("a usable certificate and key"),
        None => builder.with_no_client_auth(),
    }
}
