//! WebSocket fan-out: many clients subscribed to one market, each measuring how late every
//! `price_update` arrives after the tick's own timestamp. Clients connect with tungstenite and
//! are then read by a few threads of [`readers`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::SinkExt;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

use crate::report::{Latency, Report, histogram, rss_mb};

mod frames;
mod readers;

use readers::Reader;

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
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicU64::new(0));
    // One reader per core: a single one was slower (p99 67-70 ms against 62-65 ms at 10,000).
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let readers: Vec<Reader> =
        (0..threads).map(|_| Reader::start(measuring.clone(), stop.clone())).collect::<Result<_, _>>()?;
    let readers = Arc::new(readers);
    let gate = Arc::new(Semaphore::new(ramp));
    let ramp_started = Instant::now();
    let mut clients = Vec::with_capacity(args.clients);
    for index in 0..args.clients {
        let client = Client {
            url: args.url.clone(),
            symbol: args.symbol.clone(),
            failed: failed.clone(),
            readers: readers.clone(),
            index,
            gate: gate.clone(),
        };
        clients.push(tokio::spawn(client.connect()));
    }
    // Every client connected (and handed to a reader) or failed, then measure.
    for client in clients {
        client.await?;
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
    stop.store(true, Ordering::Relaxed);
    let readers = Arc::into_inner(readers).expect("the clients are done with the readers");
    let mut lags = histogram();
    let mut closed = 0;
    for reader in readers {
        let tally = reader.finish()?;
        lags.add(&tally.lags).expect("same bounds");
        closed += tally.closed;
    }
    // Every price update measured is one sample: no shared counter is touched per message.
    let received = lags.len();
    let mut counts = BTreeMap::new();
    counts.insert("clients".to_owned(), args.clients as u64);
    counts.insert("failed_connections".to_owned(), failed.load(Ordering::Relaxed));
    counts.insert("closed_by_server".to_owned(), closed);
    counts.insert("messages".to_owned(), received);
    counts.insert("ramp_ms".to_owned(), (ramp_seconds * 1000.0) as u64);
    Ok(Report {
        scenario: format!("ws fan-out: {} clients on {}", args.clients, args.symbol),
        seconds,
        counts,
        per_second: received as f64 / seconds,
        latency: Latency::of(&lags),
        server_rss_mb: rss_during,
        cpu_us_per_request: BTreeMap::new(),
        settlement: None,
    })
}

/// One simulated client until it is connected and subscribed; its socket is then read by a
/// [`Reader`] thread.
struct Client {
    url: String,
    symbol: String,
    failed: Arc<AtomicU64>,
    readers: Arc<Vec<Reader>>,
    index: usize,
    gate: Arc<Semaphore>,
}

impl Client {
    async fn connect(self) {
        let _permit = self.gate.clone().acquire_owned().await.expect("the gate stays open");
        let connect = tokio::time::timeout(Duration::from_secs(30), self.handshake());
        match connect.await {
            Ok(Ok(socket)) => self.readers[self.index % self.readers.len()].add(socket),
            _ => {
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Connects, upgrades and subscribes with tungstenite, then takes the socket back (a second
    /// handle to it, kept from before the handshake) for the reader thread.
    async fn handshake(&self) -> anyhow::Result<std::net::TcpStream> {
        let uri: tokio_tungstenite::tungstenite::http::Uri = self.url.parse()?;
        let host = uri.host().ok_or_else(|| anyhow::anyhow!("{} names no host", self.url))?;
        let socket = tokio::net::TcpStream::connect((host, uri.port_u16().unwrap_or(80))).await?;
        socket.set_nodelay(true)?;
        let socket = socket.into_std()?;
        let kept = socket.try_clone()?;
        let socket = tokio::net::TcpStream::from_std(socket)?;
        let (mut websocket, _) = tokio_tungstenite::client_async(self.url.as_str(), socket).await?;
        let subscribe =
            serde_json::json!({"type": "subscribe", "data": {"symbols": [self.symbol]}}).to_string();
        websocket.send(Message::text(subscribe)).await?;
        // The server sends nothing before the subscription, so tungstenite holds no bytes of
        // what follows; dropping it closes only its own handle, not the connection.
        drop(websocket);
        Ok(kept)
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
