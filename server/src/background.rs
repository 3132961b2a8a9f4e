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

pub async fn serve_metrics(listener: TcpListener, metrics: Arc<Metrics>, stopping: Rc<Cell<bool>>) {
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
        let (metrics, open) = (metrics.clone(), open.clone());
        glommio::spawn_local(async move {
            futures_lite::future::or(metrics_exchange(stream, metrics), async {
                glommio::timer::sleep(METRICS_EXCHANGE_TIMEOUT).await;
            })
            .await;
            open.set(open.get() - 1);
        })
        .detach();
    }
}

/// Reads one HTTP request and answers it.
async fn metrics_exchange(mut stream: glommio::net::TcpStream, metrics: Arc<Metrics>) {
    let mut request = Vec::new();
    let mut chunk = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 8192 {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(read) => request.extend_from_slice(&chunk[..read]),
        }
        // Not HTTP (a Keel client pointed at the metrics port): close at once, so it
        // fails fast instead of waiting for an answer that never comes.
        if !request[0].is_ascii_uppercase() {
            return;
        }
    }
    let (status, body) = if request.starts_with(b"GET /metrics ") {
        ("200 OK", metrics.render())
    } else {
        ("404 Not Found", "try GET /metrics\n".to_owned())
    };
    let head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body.as_bytes()).await;
    let _ = stream.flush().await;
}
