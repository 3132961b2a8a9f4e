//! Kafka listeners, as Kafka names them: `--kafka-listeners NAME://HOST:PORT,…` with each
//! name's security protocol (the name itself when it is one, or
//! `--listener-security-protocol-map NAME:PROTOCOL,…`) and the addresses clients are told
//! (`--advertised-kafka-listeners`). A client is told, for every broker, the address of the
//! listener it connected through. `--kafka-listen` with `--kafka-security` is the one-listener
//! form.

use super::security::SecurityProtocol;
use std::net::SocketAddr;

/// Listeners a broker may have.
pub const KAFKA_LISTENERS_MAX: usize = 8;

/// One Kafka listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaListener {
    /// Its name (`PLAINTEXT`, `SASL_SSL`, `INTERNAL`, …).
    pub name: String,
    /// Where it listens.
    pub listen: SocketAddr,
    /// The address clients are told.
    pub advertised: SocketAddr,
    /// Its security protocol.
    pub protocol: SecurityProtocol,
}

/// `NAME://HOST:PORT,…` as (name, address) pairs.
fn parse_list(flag: &str, value: &str) -> anyhow::Result<Vec<(String, SocketAddr)>> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|one| {
            let (name, address) = one
                .split_once("://")
                .ok_or_else(|| anyhow::anyhow!("{flag}: {one:?} is not NAME://HOST:PORT"))?;
            let valid = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            anyhow::ensure!(
                valid,
                "{flag}: {name:?} is not a listener name (letters, digits, _ and -)"
            );
            let address = address
                .parse()
                .map_err(|_| anyhow::anyhow!("{flag}: {address:?} is not HOST:PORT"))?;
            Ok((name.to_ascii_uppercase(), address))
        })
        .collect()
}

/// The listeners `--kafka-listeners` (`listeners`), `--advertised-kafka-listeners`
/// (`advertised`) and `--listener-security-protocol-map` (`map`) describe.
///
/// # Errors
/// A malformed list, a name given twice, a name without a protocol, an advertised
/// listener that is not a listener, more than [`KAFKA_LISTENERS_MAX`].
pub fn parse(
    listeners: &str,
    advertised: Option<&str>,
    map: Option<&str>,
) -> anyhow::Result<Vec<KafkaListener>> {
    let listed = parse_list("--kafka-listeners", listeners)?;
    anyhow::ensure!(
        !listed.is_empty(),
        "--kafka-listeners: at least one listener"
    );
    anyhow::ensure!(
        listed.len() <= KAFKA_LISTENERS_MAX,
        "--kafka-listeners: at most {KAFKA_LISTENERS_MAX} listeners"
    );
    let advertised = match advertised {
        Some(value) => parse_list("--advertised-kafka-listeners", value)?,
        None => Vec::new(),
    };
    let mut protocols = Vec::new();
    for pair in map
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let (name, protocol) = pair.split_once(':').ok_or_else(|| {
            anyhow::anyhow!("--listener-security-protocol-map: {pair:?} is not NAME:PROTOCOL")
        })?;
        let protocol = SecurityProtocol::parse(protocol)
            .map_err(|e| anyhow::anyhow!("--listener-security-protocol-map: {e}"))?;
        protocols.push((name.to_ascii_uppercase(), protocol));
    }
    let mut out: Vec<KafkaListener> = Vec::new();
    for (name, listen) in listed {
        anyhow::ensure!(
            out.iter().all(|l| l.name != name),
            "--kafka-listeners: {name} is named twice"
        );
        let protocol = match protocols.iter().find(|(n, _)| *n == name) {
            Some((_, protocol)) => *protocol,
            None => SecurityProtocol::parse(&name).map_err(|_| {
                anyhow::anyhow!("--kafka-listeners: {name} is not a security protocol; map it with --listener-security-protocol-map {name}:PROTOCOL")
            })?,
        };
        let told = advertised.iter().find(|(n, _)| *n == name).map(|(_, a)| *a);
        out.push(KafkaListener {
            advertised: told.unwrap_or(listen),
            name,
            listen,
            protocol,
        });
    }
    if let Some((name, _)) = advertised
        .iter()
        .find(|(name, _)| out.iter().all(|l| l.name != *name))
    {
        anyhow::bail!("--advertised-kafka-listeners: {name} is not one of --kafka-listeners");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_give_protocols_and_advertised_addresses_default_to_the_listener() {
        let listeners = parse(
            "PLAINTEXT://127.0.0.1:9092, sasl_ssl://0.0.0.0:9093,INTERNAL://127.0.0.1:9094",
            Some("SASL_SSL://10.0.0.5:9093"),
            Some("INTERNAL:SSL"),
        )
        .unwrap();
        let summary: Vec<(&str, SecurityProtocol, String)> = listeners
            .iter()
            .map(|l| (l.name.as_str(), l.protocol, l.advertised.to_string()))
            .collect();
        assert_eq!(
            summary[0],
            (
                "PLAINTEXT",
                SecurityProtocol::Plaintext,
                "127.0.0.1:9092".into()
            )
        );
        assert_eq!(summary[1].0, "SASL_SSL");
        assert_eq!(summary[1].1, SecurityProtocol::SaslSsl);
        assert_eq!(
            summary[2],
            ("INTERNAL", SecurityProtocol::Ssl, "127.0.0.1:9094".into())
        );
    }

    #[test]
    fn bad_lists_are_refused_naming_the_problem() {
        let refused = |listeners: &str, advertised: Option<&str>, map: Option<&str>| {
            format!("{:#}", parse(listeners, advertised, map).unwrap_err())
        };
        assert!(refused("127.0.0.1:9092", None, None).contains("NAME://HOST:PORT"));
        assert!(refused("INTERNAL://127.0.0.1:9092", None, None)
            .contains("--listener-security-protocol-map"));
        assert!(refused("SSL://127.0.0.1:1,SSL://127.0.0.1:2", None, None).contains("twice"));
        assert!(
            refused("SSL://127.0.0.1:1", Some("PLAINTEXT://127.0.0.1:1"), None)
                .contains("not one of")
        );
        assert!(refused("SSL://127.0.0.1:1", None, Some("SSL:KERBEROS"))
            .contains("unknown security protocol"));
        assert!(refused("SSL://nowhere", None, None).contains("HOST:PORT"));
        let many: Vec<String> = (0..9)
            .map(|i| format!("L{i}://127.0.0.1:{}", 9000 + i))
            .collect();
        let map: Vec<String> = (0..9).map(|i| format!("L{i}:PLAINTEXT")).collect();
        assert!(refused(&many.join(","), None, Some(&map.join(","))).contains("at most"));
    }
}
