//! The broker's listening addresses are its own. Shards bind with SO_REUSEPORT, which would
//! let a second process share a port with the first (clients then land on either at
//! random), so start-up checks twice: before binding, that nobody listens there yet
//! ([`resolve_listen`]), and once every listener is bound, that every listening socket on
//! each address is one of this process's ([`check_own`]) — which catches a process that
//! bound in the same instant, after the first check.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How long start-up waits for a listener on its port to go away before refusing.
const LISTENER_GONE_WAIT: Duration = Duration::from_secs(3);

/// A socket in LISTEN state, from `/proc/net/tcp*`.
struct Listening {
    /// Its local address as the kernel prints it: hex IP (network order words) and port.
    ip_hex: String,
    port: u16,
    inode: u64,
}

/// Checks nobody listens on `addr` yet, and picks the port for port 0. Connections of an
/// earlier run still closing do not count.
///
/// # Errors
/// The address is in use (one line naming it and `what` it was for).
pub fn resolve_listen(addr: SocketAddr, what: &str) -> anyhow::Result<SocketAddr> {
    if addr.port() == 0 {
        let probe = std::net::TcpListener::bind(addr)
            .map_err(|e| anyhow::anyhow!("cannot listen on {addr} for {what}: {e}"))?;
        return Ok(probe.local_addr()?);
    }
    // A broker killed a moment ago can leave its listener behind for a while: io_uring
    // tears down the dead process's pending accepts asynchronously. Give it time to go.
    let deadline = Instant::now() + LISTENER_GONE_WAIT;
    while !listeners_on(addr).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if !listeners_on(addr).is_empty() {
        anyhow::bail!(
            "cannot listen on {addr} for {what}: the address is in use (another keel-server or program listens there)"
        );
    }
    Ok(addr)
}

/// Once every listener is bound: every socket listening on each of `addrs` belongs to this
/// process. Another process that bound one of them in the same instant (both passed
/// [`resolve_listen`]) makes both refuse, rather than share it.
///
/// # Errors
/// One line naming the first address another process listens on too.
pub fn check_own(addrs: &[(SocketAddr, &str)]) -> anyhow::Result<()> {
    let own = own_socket_inodes();
    for (addr, what) in addrs {
        let found = listeners_on(*addr);
        anyhow::ensure!(
            !found.is_empty(),
            "cannot listen on {addr} for {what}: no listening socket found after binding"
        );
        if found.iter().any(|inode| !own.contains(inode)) {
            anyhow::bail!(
                "cannot listen on {addr} for {what}: the address is in use (another process started listening there at the same time)"
            );
        }
    }
    Ok(())
}

/// The inodes of the sockets this process has open.
fn own_socket_inodes() -> HashSet<u64> {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return HashSet::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let target = std::fs::read_link(entry.path()).ok()?;
            let text = target.to_str()?;
            text.strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
}

/// The inodes of the sockets listening on `addr`'s port on its address or a wildcard.
fn listeners_on(addr: SocketAddr) -> Vec<u64> {
    listening_sockets()
        .into_iter()
        .filter(|s| s.port == addr.port() && covers(&s.ip_hex, addr))
        .map(|s| s.inode)
        .collect()
}

/// Whether a listener on `ip_hex` takes connections meant for `addr` (or the reverse).
fn covers(ip_hex: &str, addr: SocketAddr) -> bool {
    let ip_wildcard = ip_hex.chars().all(|c| c == '0');
    let same_ip = match addr.ip() {
        std::net::IpAddr::V4(v4) => {
            u32::from_str_radix(ip_hex, 16).ok() == Some(u32::from_ne_bytes(v4.octets()))
                // An IPv4-mapped IPv6 listener: ::ffff:a.b.c.d.
                || ip_hex.len() == 32 && ip_hex[16..24] == *"FFFF0000"
                    && u32::from_str_radix(&ip_hex[24..], 16).ok()
                        == Some(u32::from_ne_bytes(v4.octets()))
        }
        std::net::IpAddr::V6(_) => ip_hex.len() == 32,
    };
    ip_wildcard || same_ip || addr.ip().is_unspecified()
}

/// Every TCP socket in LISTEN state, IPv4 and IPv6.
fn listening_sockets() -> Vec<Listening> {
    const LISTEN: &str = "0A";
    let mut out = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) =
                (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue;
            };
            let Some((ip_hex, port_hex)) = local.split_once(':') else {
                continue;
            };
            let (Ok(port), Ok(inode)) = (u16::from_str_radix(port_hex, 16), inode.parse()) else {
                continue;
            };
            if *state == LISTEN {
                out.push(Listening {
                    ip_hex: ip_hex.to_owned(),
                    port,
                    inode,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: a listener of this process passes; one of another process (a child holding a
    // socket this process does not) is found and refused.
    #[test]
    fn own_listeners_pass_and_strangers_are_found() {
        let mine = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = mine.local_addr().unwrap();
        check_own(&[(addr, "a test")]).unwrap();
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let other_addr = other.local_addr().unwrap();
        drop(other);
        let error = check_own(&[(other_addr, "nothing")]).unwrap_err();
        assert!(error.to_string().contains("no listening socket"), "{error}");
    }
}
