//! HTTP scenarios: trade creation, balance reads and logins, at a fixed concurrency (closed
//! loop) or at a fixed arrival rate (open loop, latency counted from each request's scheduled
//! time, so queueing is not hidden).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::json;

use crate::api::{PASSWORD, register, trade_body};
use crate::lean::{Client, Prepared};
use crate::report::{CpuClock, Latency, Report, histogram, rss_mb};

#[derive(clap::Args, Clone)]
pub struct Args {
    /// The server's base URL.
    #[arg(long, default_value = "http://127.0.0.1:3000")]
    url: String,
    /// Concurrent clients (closed loop), or the cap on requests in flight with --rate.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// How long to measure.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Requests per second at a fixed arrival rate instead of a closed loop.
    #[arg(long)]
    rate: Option<u64>,
    /// Users registered first (requests are spread over them).
    #[arg(long, default_value_t = 64)]
    users: usize,
    /// The market trades are placed on.
    #[arg(long, default_value = "SIMV25")]
    symbol: String,
    /// Trade duration in seconds (one of the server's allowed durations).
    #[arg(long, default_value_t = 5)]
    duration: u32,
    /// The server's process id, to report its memory and its CPU time per request.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Also report the CPU time per request of the processes of this name (e.g. `postgres`,
    /// whose backends do the database's share of the work). Repeatable.
    #[arg(long)]
    cpu_of: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    TradeCreate,
    Balance,
    Login,
}

pub async fn run(scenario: Scenario, args: Args) -> anyhow::Result<Report> {
    anyhow::ensure!(args.concurrency > 0 && args.concurrency <= 4_096, "--concurrency must be 1 to 4096");
    anyhow::ensure!(args.seconds > 0 && args.seconds <= 600, "--seconds must be 1 to 600");
    anyhow::ensure!(args.users > 0 && args.users <= 10_000, "--users must be 1 to 10000");
    let client = reqwest::Client::builder().pool_max_idle_per_host(args.concurrency).build()?;
    let users = register(&client, &args.url, args.users).await?;
    // Each user's requests, built once: a trade up and one down (taken on even and odd
    // turns), or the one balance read or login.
    let requests: Vec<Vec<Prepared>> = users
        .iter()
        .map(|user| -> anyhow::Result<Vec<Prepared>> {
            let token = Some(user.token.as_str());
            let trade = |up: bool| {
                Prepared::post_json(
                    "/api/flash-trade/create",
                    token,
                    &trade_body(&args.symbol, up, args.duration),
                )
            };
            Ok(match scenario {
                Scenario::TradeCreate => vec![trade(true)?, trade(false)?],
                Scenario::Balance => vec![Prepared::get("/api/wallet/balance", token)?],
                Scenario::Login => vec![Prepared::post_json(
                    "/api/auth/login",
                    None,
                    &json!({"email": user.email, "password": PASSWORD}),
                )?],
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let requests = Arc::new(requests);
    let lean = Arc::new(Client::new(&args.url)?);
    let latencies = Arc::new(Mutex::new(histogram()));
    let statuses = Arc::new(Mutex::new(BTreeMap::<String, u64>::new()));
    let cpu = CpuClock::new(args.server_pid, &args.cpu_of);
    let cpu_before = cpu.read();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.seconds);
    let send = {
        let (lean, requests) = (lean.clone(), requests.clone());
        move |n: usize| {
            let (lean, requests) = (lean.clone(), requests.clone());
            async move {
                let user = &requests[n % requests.len()];
                lean.send(&user[n % user.len()]).await
            }
        }
    };
    let record = |latencies: Arc<Mutex<Histogram<u64>>>, statuses: Arc<Mutex<BTreeMap<String, u64>>>| {
        move |since: Instant, outcome: anyhow::Result<http::StatusCode>| {
            let micros = u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX);
            let status = match outcome {
                Ok(status) => status.as_u16().to_string(),
                Err(_) => "error".to_owned(),
            };
            let _ = latencies.lock().expect("never poisoned").record(micros.max(1));
            *statuses.lock().expect("never poisoned").entry(status).or_default() += 1;
        }
    };
    let mut tasks = Vec::new();
    match args.rate {
        None => {
            for worker in 0..args.concurrency {
                let (send, record) = (send.clone(), record(latencies.clone(), statuses.clone()));
                tasks.push(tokio::spawn(async move {
                    let mut n = worker;
                    while Instant::now() < deadline {
                        let at = Instant::now();
                        let outcome = send(n).await;
                        record(at, outcome);
                        // The next user of this worker's share: every user is used, not one
                        // per worker, so that no stake budget runs dry at high rates.
                        n += args.concurrency;
                    }
                }));
            }
        }
        Some(rate) => {
            anyhow::ensure!(rate > 0 && rate <= 100_000, "--rate must be 1 to 100000");
            let gate = Arc::new(tokio::sync::Semaphore::new(args.concurrency));
            let interval = Duration::from_secs_f64(1.0 / rate as f64);
            let mut n = 0usize;
            let mut due = started;
            while due < deadline {
                tokio::time::sleep_until(due.into()).await;
                let Ok(permit) = gate.clone().try_acquire_owned() else {
                    // Too many in flight: count the arrival as refused rather than delay the schedule.
                    *statuses
                        .lock()
                        .expect("never poisoned")
                        .entry("not_sent_saturated".to_owned())
                        .or_default() += 1;
                    due += interval;
                    continue;
                };
                let (send, record) = (send.clone(), record(latencies.clone(), statuses.clone()));
                let scheduled = due;
                tasks.push(tokio::spawn(async move {
                    let outcome = send(n).await;
                    record(scheduled, outcome);
                    drop(permit);
                }));
                n += 1;
                due += interval;
            }
        }
    }
    let rss_during = args.server_pid.and_then(rss_mb);
    for task in tasks {
        let _ = task.await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let statuses = statuses.lock().expect("never poisoned").clone();
    let ok: u64 = statuses.iter().filter(|(s, _)| s.starts_with('2')).map(|(_, n)| n).sum();
    let cpu_us_per_request = cpu.per_request(&cpu_before, ok);
    let name = match scenario {
        Scenario::TradeCreate => "trade create",
        Scenario::Balance => "balance reads",
        Scenario::Login => "logins",
    };
    let mode = args.rate.map_or(format!("{} concurrent", args.concurrency), |r| format!("{r}/s fixed rate"));
    let mut counts: BTreeMap<String, u64> =
        statuses.into_iter().map(|(s, n)| (format!("status_{s}"), n)).collect();
    counts.insert("ok".to_owned(), ok);
    let latency = Latency::of(&latencies.lock().expect("never poisoned"));
    Ok(Report {
        scenario: format!("{name}, {mode}"),
        seconds,
        counts,
        per_second: ok as f64 / seconds,
        latency,
        server_rss_mb: rss_during,
        cpu_us_per_request,
        settlement: None,
    })
}
