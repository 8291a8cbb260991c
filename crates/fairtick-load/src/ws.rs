//! WebSocket fan-out: many clients subscribed to one market, each measuring how late every
//! `price_update` arrives after the tick's own timestamp.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio::sync::{Mutex, Semaphore};
use tokio_tungstenite::tungstenite::Message;

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
    let measuring = Arc::new(AtomicU64::new(0));
    let received = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let closed = Arc::new(AtomicU64::new(0));
    let lags = Arc::new(Mutex::new(histogram()));
    let gate = Arc::new(Semaphore::new(args.ramp.max(1)));
    let stop_at = Arc::new(Mutex::new(None::<Instant>));
    let mut clients = Vec::with_capacity(args.clients);
    let ramp_started = Instant::now();
    for _ in 0..args.clients {
        let (url, symbol) = (args.url.clone(), args.symbol.clone());
        let (measuring, received, failed, closed, lags, gate, stop_at) = (
            measuring.clone(),
            received.clone(),
            failed.clone(),
            closed.clone(),
            lags.clone(),
            gate.clone(),
            stop_at.clone(),
        );
        clients.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await.expect("the gate stays open");
            let Ok(Ok((mut socket, _))) =
                tokio::time::timeout(Duration::from_secs(30), tokio_tungstenite::connect_async(url.as_str()))
                    .await
            else {
                failed.fetch_add(1, Ordering::Relaxed);
                return;
            };
            let subscribe =
                serde_json::json!({"type": "subscribe", "data": {"symbols": [symbol]}}).to_string();
            if socket.send(Message::text(subscribe)).await.is_err() {
                failed.fetch_add(1, Ordering::Relaxed);
                return;
            }
            drop(permit);
            let mut local = histogram();
            loop {
                let deadline = *stop_at.lock().await;
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                let next = tokio::time::timeout(Duration::from_millis(500), socket.next()).await;
                let Ok(next) = next else { continue };
                match next {
                    Some(Ok(Message::Text(text))) => {
                        if measuring.load(Ordering::Relaxed) == 0 {
                            continue;
                        }
                        if let Some(lag) = lag_micros(&text) {
                            received.fetch_add(1, Ordering::Relaxed);
                            let _ = local.record(lag.max(1));
                        }
                    }
                    Some(Ok(_)) => {}
                    _ => {
                        closed.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
            }
            let _ = socket.close(None).await;
            lags.lock().await.add(&local).expect("same bounds");
        }));
        // Keep the ramp steady rather than all at once.
        if clients.len() % args.ramp.max(1) == 0 {
            tokio::task::yield_now().await;
        }
    }
    // Wait for the ramp to finish (every client connected or failed), then measure.
    while gate.available_permits() < args.ramp.max(1) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let ramp_seconds = ramp_started.elapsed().as_secs_f64();
    measuring.store(1, Ordering::Relaxed);
    let started = Instant::now();
    *stop_at.lock().await = Some(started + Duration::from_secs(args.seconds));
    let rss_during = {
        tokio::time::sleep(Duration::from_secs(args.seconds / 2)).await;
        args.server_pid.and_then(rss_mb)
    };
    for client in clients {
        let _ = client.await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let lags: Histogram<u64> = lags.lock().await.clone();
    let received = received.load(Ordering::Relaxed);
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
    })
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
