//! Background tasks of every shard: retention and gauges, and the metrics listener.

use crate::metrics::Metrics;
use crate::shard::Shard;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpListener;
use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often each shard enforces retention.
const RETENTION_CHECK_INTERVAL: Duration = Duration::from_secs(30);

pub async fn housekeeping(shard: Rc<Shard>, stopping: Rc<Cell<bool>>) {
    let mut last_retention = Instant::now();
    let (mut fsyncs_seen, mut fsync_us_seen) = (0u64, 0u64);
    while !stopping.get() {
        glommio::timer::sleep(Duration::from_secs(1)).await;
        if last_retention.elapsed() >= RETENTION_CHECK_INTERVAL {
            last_retention = Instant::now();
            shard.housekeeping().await;
        } else {
            // Gauges only: retention runs on its own interval.
            shard.housekeeping_gauges();
        }
        shard.resume_offline_logs().await;
        if shard.cluster.is_some() {
            crate::replication::checkpoint::maybe_write(&shard).await;
        }
        let (fsyncs, fsync_us) = shard.fsync_totals();
        shard
            .metrics
            .fsyncs
            .inc_by(fsyncs.saturating_sub(fsyncs_seen));
        shard
            .metrics
            .fsync_seconds
            .inc_by(fsync_us.saturating_sub(fsync_us_seen) as f64 / 1e6);
        (fsyncs_seen, fsync_us_seen) = (fsyncs, fsync_us);
    }
}

/// Metrics connections served at once; more are closed at once.
const METRICS_CONNECTIONS_MAX: usize = 64;
/// Longest one metrics exchange (request read, page written) may take; a slower peer is
/// closed.
const METRICS_EXCHANGE_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `GET /metrics` on `listener`: plain HTTP, or HTTPS with `--metrics-security SSL`
/// (the broker's certificate, reloaded on SIGHUP; `--tls-client-auth required` makes
/// scrapers show a certificate the CA signed).
pub async fn serve_metrics(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    shard: Rc<Shard>,
    stopping: Rc<Cell<bool>>,
) {
    let open = Rc::new(Cell::new(0usize));
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            while !stopping.get() {
                glommio::timer::sleep(Duration::from_millis(25)).await;
            }
            None
        })
        .await;
        // Stopping: the listener closes here, before the broker's stop returns.
        let Some(accepted) = accepted else { break };
        let Ok(stream) = accepted else {
            continue;
        };
        if open.get() >= METRICS_CONNECTIONS_MAX {
            continue;
        }
        open.set(open.get() + 1);
        let (metrics, open, shard) = (metrics.clone(), open.clone(), shard.clone());
        glommio::spawn_local(async move {
            futures_lite::future::or(metrics_connection(stream, metrics, &shard), async {
                glommio::timer::sleep(METRICS_EXCHANGE_TIMEOUT).await;
            })
            .await;
            open.set(open.get() - 1);
        })
        .detach();
    }
}

/// One metrics connection: its TLS handshake first when the port is HTTPS.
async fn metrics_connection(
    mut stream: glommio::net::TcpStream,
    metrics: Arc<Metrics>,
    shard: &Shard,
) {
    let tls = shard.security.tls.as_ref();
    match tls.filter(|_| shard.config.security.metrics_tls) {
        None => {
            if let Some(request) = read_request(&mut stream).await {
                let _ = stream.write_all(&answer(&request, &metrics)).await;
                let _ = stream.flush().await;
            }
        }
        Some(tls) => {
            let peer = stream
                .peer_addr()
                .map(|a| a.to_string())
                .unwrap_or_default();
            let Some((mut reader, mut writer, _)) =
                crate::stream::tls(stream, tls, METRICS_EXCHANGE_TIMEOUT, &peer).await
            else {
                return;
            };
            if let Some(request) = read_request(&mut reader).await {
                let _ = writer.write_all(&answer(&request, &metrics)).await;
                let _ = writer.close().await;
            }
        }
    }
}

/// Reads one HTTP request's head (at most 8 KiB); `None` for a closed connection or one
/// that does not speak HTTP (a Keel client pointed at the metrics port is closed at once,
/// so it fails fast instead of waiting for an answer that never comes).
async fn read_request(stream: &mut (impl futures_lite::AsyncRead + Unpin)) -> Option<Vec<u8>> {
    let mut request = Vec::new();
    let mut chunk = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 8192 {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(read) => request.extend_from_slice(&chunk[..read]),
        }
        if !request[0].is_ascii_uppercase() {
            return None;
        }
    }
    Some(request)
}

/// The HTTP answer to `request`: the metrics page for `GET /metrics`.
fn answer(request: &[u8], metrics: &Metrics) -> Vec<u8> {
    let (status, body) = if request.starts_with(b"GET /metrics ") {
        ("200 OK", metrics.render())
    } else {
        ("404 Not Found", "try GET /metrics\n".to_owned())
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    [head.into_bytes(), body.into_bytes()].concat()
}
