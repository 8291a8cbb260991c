//! WebSocket fan-out: many clients subscribed to one market, each measuring how late every
//! `price_update` arrives after the tick's own timestamp.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::report::{Latency, Report, histogram, rss_mb};

#[derive(clap::Args)]
pub struct Args {
    /// The server's WebSocket URL.
    #[arg(long, default_value = "ws://127.0.0.1:3000/ws")]
    url: String,
    /// How many clients.
    #[arg(long, default_value_t = 1_000)]
    clients: usize,
    /// The market to subscribe to.
    #[arg(long, default_value = "SIMV25")]
    symbol: String,
    /// How long to measure once every client is connected.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Connections opened at once while ramping up.
    #[arg(long, default_value_t = 200)]
    ramp: usize,
    /// The server's process id, to report its memory.
    #[arg(long)]
    server_pid: Option<u32>,
}

pub async fn run(args: Args) -> anyhow::Result<Report> {
    anyhow::ensure!(args.clients > 0 && args.clients <= 50_000, "--clients must be 1 to 50000");
    anyhow::ensure!(args.seconds > 0 && args.seconds <= 600, "--seconds must be 1 to 600");
    let ramp = args.ramp.max(1);
    let measuring = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicU64::new(0));
    let closed = Arc::new(AtomicU64::new(0));
    // A few shared histograms instead of one per client: ten thousand full histograms would
    // cost the load generator gigabytes and the cache misses would slow what it measures.
    let lags: Arc<Vec<std::sync::Mutex<Histogram<u64>>>> =
        Arc::new((0..SHARDS).map(|_| std::sync::Mutex::new(histogram())).collect());
    let gate = Arc::new(Semaphore::new(ramp));
    let ramp_started = Instant::now();
    let mut clients = Vec::with_capacity(args.clients);
    for index in 0..args.clients {
        let client = Client {
            url: args.url.clone(),
            symbol: args.symbol.clone(),
            measuring: measuring.clone(),
            failed: failed.clone(),
            closed: closed.clone(),
            lags: lags.clone(),
            shard: index % SHARDS,
            gate: gate.clone(),
        };
        clients.push(tokio::spawn(client.run()));
    }
    // Wait for the ramp to finish (every client connected or failed), then measure.
    while gate.available_permits() < ramp || ramp_started.elapsed() < Duration::from_millis(100) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let ramp_seconds = ramp_started.elapsed().as_secs_f64();
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.seconds / 2)).await;
    let rss_during = args.server_pid.and_then(rss_mb);
    tokio::time::sleep(Duration::from_secs(args.seconds - args.seconds / 2)).await;
    measuring.store(false, Ordering::Relaxed);
    let seconds = started.elapsed().as_secs_f64();
    // Stopped from outside: a signal every client also waited on cost each message a
    // registration, a tenth of this tool's time.
    for client in &clients {
        client.abort();
    }
    for client in clients {
        let _ = client.await;
    }
    let mut merged = histogram();
    for shard in lags.iter() {
        merged.add(&*shard.lock().expect("a histogram lock")).expect("same bounds");
    }
    let lags = merged;
    // Every price update measured is one sample: no shared counter is touched per message.
    let received = lags.len();
    let mut counts = std::collections::BTreeMap::new();
    counts.insert("clients".to_owned(), args.clients as u64);
    counts.insert("failed_connections".to_owned(), failed.load(Ordering::Relaxed));
    counts.insert("closed_by_server".to_owned(), closed.load(Ordering::Relaxed));
    counts.insert("messages".to_owned(), received);
    counts.insert("ramp_ms".to_owned(), (ramp_seconds * 1000.0) as u64);
    Ok(Report {
        scenario: format!("ws fan-out: {} clients on {}", args.clients, args.symbol),
        seconds,
        counts,
        per_second: received as f64 / seconds,
        latency: Latency::of(&lags),
        server_rss_mb: rss_during,
        settlement: None,
    })
}

/// Bytes each client reads at once: a price update is under 200.
const CLIENT_READ_BUFFER: usize = 4 * 1024;

/// Histograms shared by the clients (client `i` records into shard `i % SHARDS`).
const SHARDS: usize = 16;

/// One simulated client and the shared tallies it adds to.
struct Client {
    url: String,
    symbol: String,
    measuring: Arc<AtomicBool>,
    failed: Arc<AtomicU64>,
    closed: Arc<AtomicU64>,
    lags: Arc<Vec<std::sync::Mutex<Histogram<u64>>>>,
    shard: usize,
    gate: Arc<Semaphore>,
}

impl Client {
    async fn run(self) {
        let permit = self.gate.clone().acquire_owned().await.expect("the gate stays open");
        // A small read buffer, as a browser's: tungstenite's default zero-fills 128 KiB before
        // every read, which made memset half of this tool's CPU and its own lag part of the
        // figures.
        let config = WebSocketConfig::default().read_buffer_size(CLIENT_READ_BUFFER);
        let connect = tokio_tungstenite::connect_async_with_config(self.url.as_str(), Some(config), true);
        let Ok(Ok((mut socket, _))) = tokio::time::timeout(Duration::from_secs(30), connect).await else {
            self.failed.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let subscribe =
            serde_json::json!({"type": "subscribe", "data": {"symbols": [self.symbol]}}).to_string();
        if socket.send(Message::text(subscribe)).await.is_err() {
            self.failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        drop(permit);
        loop {
            match socket.next().await {
                Some(Ok(Message::Text(text))) => {
                    if !self.measuring.load(Ordering::Relaxed) {
                        continue;
                    }
                    if let Some(lag) = lag_micros(&text) {
                        let _ = self.lags[self.shard].lock().expect("a histogram lock").record(lag.max(1));
                    }
                }
                Some(Ok(_)) => {}
                _ => {
                    self.closed.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
        let _ = socket.close(None).await;
    }
}

/// Microseconds between the tick's `ts` and now, for a `price_update`. The timestamp is
/// found by its key rather than by parsing the whole message, so that ten thousand clients in
/// one process measure the server, not the JSON parser.
fn lag_micros(text: &str) -> Option<u64> {
    if !text.starts_with("{\"type\":\"price_update\"") {
        return None;
    }
    let start = text.find("\"ts\":\"")? + 6;
    let end = start + text[start..].find('"')?;
    let ts = chrono::DateTime::parse_from_rfc3339(&text[start..end]).ok()?;
    let micros = (chrono::Utc::now().timestamp_micros() - ts.timestamp_micros()).max(0);
    u64::try_from(micros).ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_the_lag_of_a_price_update_only() {
        let ts = (chrono::Utc::now() - chrono::Duration::milliseconds(250))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let update = format!(
            "{{\"type\":\"price_update\",\"data\":{{\"symbol\":\"S\",\"seq\":1,\"ts\":\"{ts}\",\"price\":\"1.0\"}}}}"
        );
        let lag = super::lag_micros(&update).unwrap();
        assert!((250_000..1_250_000).contains(&lag), "{lag}");
        assert_eq!(super::lag_micros("{\"type\":\"pong\",\"data\":{}}"), None);
    }
}
