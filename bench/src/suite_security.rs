//! The suite's security workloads: the certificates its TLS brokers and clients use, and
//! SCRAM authentications per second against a SASL Kafka listener.

use std::path::{Path, PathBuf};

/// A CA and a certificate for 127.0.0.1 in `dir/tls` (made once per run): the broker's
/// TLS flags and the clients' properties file.
pub(crate) fn tls_files(dir: &Path) -> anyhow::Result<(Vec<String>, Option<PathBuf>)> {
    let tls = dir.join("tls");
    let (cert, key, config) = (
        tls.join("broker.pem"),
        tls.join("broker-key.pem"),
        tls.join("client.properties"),
    );
    if !config.exists() {
        std::fs::create_dir_all(&tls)?;
        let ca_key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = params.self_signed(&ca_key)?;
        let broker_key = rcgen::KeyPair::generate()?;
        let broker = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])?.signed_by(
            &broker_key,
            &ca,
            &ca_key,
        )?;
        std::fs::write(tls.join("ca.pem"), ca.pem())?;
        std::fs::write(&cert, broker.pem())?;
        std::fs::write(&key, broker_key.serialize_pem())?;
        let ca_path = tls.join("ca.pem").canonicalize()?;
        std::fs::write(
            &config,
            format!(
                "security.protocol=SSL\nssl.ca.location={}\n",
                ca_path.display()
            ),
        )?;
    }
    let flags = ["--native-security", "SSL", "--tls-cert"]
        .iter()
        .map(|s| s.to_string())
        .chain([
            cert.canonicalize()?.display().to_string(),
            "--tls-key".into(),
        ])
        .chain([key.canonicalize()?.display().to_string()])
        .collect();
    Ok((flags, Some(config)))
}

/// SCRAM-SHA-512 authentications per second against a broker's SASL Kafka listener.
pub(crate) fn scram_handshakes(
    args: &super::suite::SuiteArgs,
    server: &Path,
    port: &mut u16,
) -> anyhow::Result<f64> {
    let data = args.dir.join("keel-scram");
    std::fs::remove_dir_all(&data).ok();
    let flags: Vec<String> = [
        "--kafka-security",
        "SASL_PLAINTEXT",
        "--add-scram",
        "SCRAM-SHA-512:bench:bench-secret",
    ]
    .map(str::to_owned)
    .to_vec();
    let base = super::suite::next_port(port);
    let broker = super::suite::KeelServer::start(server, &data, base, "always", &flags)?;
    let kafka = format!("127.0.0.1:{}", base + 2);
    let rate = crate::scram::handshakes_per_second(&kafka, "bench", "bench-secret", 2, 3.0)?;
    broker.stop()?;
    std::fs::remove_dir_all(&data).ok();
    Ok(rate)
}
