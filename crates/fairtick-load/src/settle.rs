//! Settlement burst: open many trades of one duration as fast as the server accepts them, wait
//! for them to end, and measure how late each was settled after the tick that decided it
//! (`settledAt −` the `ts` of the first tick after the exit tick: until that tick exists, the
//! exit tick is not known to be the last one at or before expiry). Both are the server's own
//! timestamps, so the client's clock and its polling do not enter the figure. The wait is bounded: it gives up `--grace` seconds after
//! the last trade could have ended and reports what was still active.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use hdrhistogram::Histogram;
use serde::Deserialize;

use crate::api::{STAKE_CENTS, User, open_trade, register};
use crate::report::{Latency, Report, Settlement, histogram, rss_mb};

#[derive(clap::Args)]
pub struct Args {
    /// The server's base URL.
    #[arg(long, default_value = "http://127.0.0.1:3000")]
    url: String,
    /// How many trades to open.
    #[arg(long, default_value_t = 10_000)]
    trades: usize,
    /// Create requests in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Users registered first (trades are spread over them in turn).
    #[arg(long, default_value_t = 64)]
    users: usize,
    /// The market trades are placed on.
    #[arg(long, default_value = "SIMV25")]
    symbol: String,
    /// Trade duration in seconds (one of the server's allowed durations).
    #[arg(long, default_value_t = 5)]
    duration: u32,
    /// Seconds to keep waiting for settlement after the last trade could have ended.
    #[arg(long, default_value_t = 30)]
    grace: u64,
    /// The server's process id, to report its memory at the end.
    #[arg(long)]
    server_pid: Option<u32>,
}

/// What a new account starts with, in VUSD cents (the server's default, 10,000.00).
const STARTING_BALANCE_CENTS: u64 = 1_000_000;

/// Trades per history page (the server's maximum).
const PAGE: usize = 200;

/// How often users with active trades are asked again while waiting.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// No single request may hold the run up longer than this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn run(args: Args) -> anyhow::Result<Report> {
    anyhow::ensure!(args.concurrency > 0 && args.concurrency <= 4_096, "--concurrency must be 1 to 4096");
    anyhow::ensure!(args.users > 0 && args.users <= 10_000, "--users must be 1 to 10000");
    anyhow::ensure!(args.trades > 0 && args.trades <= 1_000_000, "--trades must be 1 to 1000000");
    anyhow::ensure!(args.duration > 0 && args.duration <= 3_600, "--duration must be 1 to 3600");
    anyhow::ensure!(args.grace > 0 && args.grace <= 600, "--grace must be 1 to 600");
    check_budget(args.users, args.trades)?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .timeout(REQUEST_TIMEOUT)
        .build()?;
    let users = Arc::new(register(&client, &args.url, args.users).await?);

    let started = Instant::now();
    let burst = burst(&client, &args, users.clone()).await;
    let burst_seconds = started.elapsed().as_secs_f64();
    let burst_ended = Instant::now();
    let accept_window_ms = match (burst.first_accept, burst.last_accept) {
        (Some(first), Some(last)) => (last - first).as_secs_f64() * 1_000.0,
        _ => 0.0,
    };
    if burst.accepted.is_empty() {
        let answers: Vec<String> = burst.statuses.iter().map(|(s, n)| format!("{s}: {n}")).collect();
        anyhow::bail!(
            "no trade was accepted ({}); check --symbol and --duration against the server",
            answers.join(", ")
        );
    }
    let owners: Vec<usize> =
        burst.accepted.iter().map(|(user, _)| *user).collect::<HashSet<_>>().into_iter().collect();
    let gave_up = match burst.last_accept {
        Some(last) => {
            // No trade can end before the last one accepted could have, so there is no point
            // asking before then.
            let ends = last + Duration::from_secs(args.duration.into());
            tokio::time::sleep_until(ends.into()).await;
            let deadline = ends + Duration::from_secs(args.grace);
            wait_until_ended(&client, &args.url, &users, owners.clone(), deadline, args.concurrency).await
        }
        None => false,
    };
    let wait_seconds = burst_ended.elapsed().as_secs_f64();

    let histories =
        futures::stream::iter(owners.iter().map(|&user| history(&client, &args.url, &users[user])))
            .buffer_unordered(args.concurrency)
            .collect::<Vec<_>>()
            .await;
    let mut trades = Vec::with_capacity(burst.accepted.len());
    for page in histories {
        trades.extend(page?);
    }
    let ours: HashSet<i64> = burst.accepted.iter().map(|(_, id)| *id).collect();
    let deciders = deciding_ticks(&client, &args.url, &args.symbol, &trades).await?;
    let tally = tally(&trades, &ours, &deciders);
    let rss_end = args.server_pid.and_then(rss_mb);

    let mut lags = histogram();
    for &lag_ms in &tally.lags_ms {
        lags.saturating_record(lag_ms.saturating_mul(1_000).max(1));
    }
    let ok = burst.accepted.len() as u64;
    let mut counts: BTreeMap<String, u64> =
        burst.statuses.into_iter().map(|(s, n)| (format!("status_{s}"), n)).collect();
    counts.insert("users".to_owned(), args.users as u64);
    counts.insert("ok".to_owned(), ok);
    counts.insert("settled".to_owned(), tally.settled);
    counts.insert("void".to_owned(), tally.void);
    counts.insert("sold".to_owned(), tally.sold);
    counts.insert("still_active".to_owned(), tally.active);
    counts.insert("missing".to_owned(), tally.missing);
    if tally.other > 0 {
        counts.insert("other_status".to_owned(), tally.other);
    }
    Ok(Report {
        scenario: format!(
            "settlement burst: {} trades of {} s on {}, {} concurrent over {} users",
            args.trades, args.duration, args.symbol, args.concurrency, args.users
        ),
        seconds: started.elapsed().as_secs_f64(),
        counts,
        per_second: ok as f64 / burst_seconds,
        latency: Latency::of(&burst.latencies),
        server_rss_mb: rss_end,
        cpu_us_per_request: BTreeMap::new(),
        settlement: Some(Settlement {
            accept_window_ms,
            wait_seconds,
            gave_up,
            lag: Latency::of(&lags),
            settle_span_ms: tally.settled_span_ms(),
        }),
    })
}

/// Trades go to the users in turn, so no user may need more stake than it starts with.
fn check_budget(users: usize, trades: usize) -> anyhow::Result<()> {
    let needed = trades as u64 * STAKE_CENTS;
    let have = users as u64 * STARTING_BALANCE_CENTS;
    let fewest_users = needed.div_ceil(STARTING_BALANCE_CENTS);
    anyhow::ensure!(
        have >= needed,
        "{trades} trades × {} VUSD need {} VUSD, but {users} users start with {} VUSD: use --users {fewest_users} or more",
        vusd(STAKE_CENTS),
        vusd(needed),
        vusd(have),
    );
    Ok(())
}

fn vusd(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// What the create requests came to.
struct Burst {
    /// `(user index, trade id)` of every accepted trade.
    accepted: Vec<(usize, i64)>,
    /// Create request latencies in microseconds.
    latencies: Histogram<u64>,
    /// Answers by HTTP status (`error` when there was none).
    statuses: BTreeMap<String, u64>,
    first_accept: Option<Instant>,
    last_accept: Option<Instant>,
}

impl Burst {
    fn new() -> Burst {
        Burst {
            accepted: Vec::new(),
            latencies: histogram(),
            statuses: BTreeMap::new(),
            first_accept: None,
            last_accept: None,
        }
    }

    fn merge(&mut self, other: Burst) {
        self.accepted.extend(other.accepted);
        self.latencies.add(&other.latencies).expect("same bounds");
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
        self.first_accept = self.first_accept.into_iter().chain(other.first_accept).min();
        self.last_accept = self.last_accept.into_iter().chain(other.last_accept).max();
    }
}

/// Opens `--trades` trades with `--concurrency` workers taking the next number from one
/// counter; each worker keeps its own tallies, merged at the end, so nothing is locked per
/// request.
async fn burst(client: &reqwest::Client, args: &Args, users: Arc<Vec<User>>) -> Burst {
    let next = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..args.concurrency)
        .map(|_| {
            let (client, users, next) = (client.clone(), users.clone(), next.clone());
            let (url, symbol, duration, trades) =
                (args.url.clone(), args.symbol.clone(), args.duration, args.trades);
            tokio::spawn(async move {
                let mut mine = Burst::new();
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= trades {
                        break;
                    }
                    let user = n % users.len();
                    let sent = Instant::now();
                    let outcome =
                        open_trade(&client, &url, &users[user], &symbol, n.is_multiple_of(2), duration)
                            .send()
                            .await;
                    let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
                    mine.latencies.saturating_record(micros.max(1));
                    let status = match outcome {
                        Ok(response) => {
                            let status = response.status();
                            if status.is_success() {
                                let at = Instant::now();
                                mine.first_accept.get_or_insert(at);
                                mine.last_accept = Some(at);
                                match response.json::<Created>().await {
                                    Ok(created) => mine.accepted.push((user, created.trade.id)),
                                    Err(_) => {
                                        *mine.statuses.entry("unreadable_body".to_owned()).or_default() += 1
                                    }
                                }
                            }
                            status.as_u16().to_string()
                        }
                        Err(_) => "error".to_owned(),
                    };
                    *mine.statuses.entry(status).or_default() += 1;
                }
                mine
            })
        })
        .collect();
    let mut all = Burst::new();
    for worker in workers {
        if let Ok(mine) = worker.await {
            all.merge(mine);
        }
    }
    all
}

/// Asks every user with trades whether any is still active, again and again, until none is
/// or `deadline` passes. Returns whether it gave up.
async fn wait_until_ended(
    client: &reqwest::Client,
    url: &str,
    users: &[User],
    mut pending: Vec<usize>,
    deadline: Instant,
    concurrency: usize,
) -> bool {
    loop {
        let answers = futures::stream::iter(
            pending.iter().map(|&user| async move { (user, has_active(client, url, &users[user]).await) }),
        )
        .buffer_unordered(concurrency)
        .collect::<Vec<_>>()
        .await;
        pending = answers.into_iter().filter(|(_, active)| *active).map(|(user, _)| user).collect();
        if pending.is_empty() {
            return false;
        }
        if Instant::now() >= deadline {
            return true;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Whether the user has an active trade: one row of `?status=active`. A failed request counts
/// as yes, so the user is simply asked again.
async fn has_active(client: &reqwest::Client, url: &str, user: &User) -> bool {
    let request =
        client.get(format!("{url}/api/flash-trade/history?status=active&limit=1")).bearer_auth(&user.token);
    match request.send().await {
        Ok(response) if response.status().is_success() => {
            response.json::<Page>().await.map_or(true, |page| !page.trades.is_empty())
        }
        _ => true,
    }
}

/// Every trade of the user, newest first, a page at a time.
async fn history(client: &reqwest::Client, url: &str, user: &User) -> anyhow::Result<Vec<Trade>> {
    let mut trades = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut page_url = format!("{url}/api/flash-trade/history?limit={PAGE}");
        if let Some(cursor) = &cursor {
            page_url.push_str(&format!("&cursor={cursor}"));
        }
        let response = client.get(page_url).bearer_auth(&user.token).send().await?;
        let status = response.status();
        anyhow::ensure!(
            status.is_success(),
            "reading the trade history of {} answered {status} (raise FAIRTICK_API_PER_USER_PER_MINUTE for load runs)",
            user.email
        );
        let page: Page = response.json().await.context("a trade history page")?;
        trades.extend(page.trades);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(trades),
        }
    }
}

/// The fields of the server's trade JSON this scenario reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Trade {
    id: i64,
    status: String,
    settled_at: Option<String>,
    exit: Option<Spot>,
}

#[derive(Debug, Deserialize)]
struct Spot {
    seq: i64,
    ts: String,
}

#[derive(Deserialize)]
struct Ticks {
    ticks: Vec<Spot>,
}

/// For each exit tick of the settled `trades`: the time of the tick after it, which decided
/// them. A burst's trades share a few exit ticks, so this is a few requests.
async fn deciding_ticks(
    client: &reqwest::Client,
    url: &str,
    symbol: &str,
    trades: &[Trade],
) -> anyhow::Result<HashMap<i64, i64>> {
    let exits: HashSet<i64> = trades.iter().filter_map(|t| t.exit.as_ref().map(|e| e.seq)).collect();
    let mut deciders = HashMap::with_capacity(exits.len());
    for seq in exits {
        let page: Ticks = client
            .get(format!("{url}/api/market/ticks"))
            .query(&[("symbol", symbol), ("afterSeq", &seq.to_string()), ("limit", "1")])
            .send()
            .await?
            .error_for_status()?
            .json()
            .await
            .context("a page of ticks")?;
        if let Some(ts) = page.ticks.first().and_then(|t| epoch_ms(&t.ts)) {
            deciders.insert(seq, ts);
        }
    }
    Ok(deciders)
}

#[derive(Deserialize)]
struct Created {
    trade: Trade,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Page {
    trades: Vec<Trade>,
    next_cursor: Option<String>,
}

/// How the burst's trades ended, read from the server's own records.
#[derive(Debug, Default, PartialEq)]
struct Tally {
    settled: u64,
    void: u64,
    sold: u64,
    active: u64,
    other: u64,
    /// Accepted trades the histories did not show.
    missing: u64,
    /// `settledAt −` the deciding tick's `ts`, of each settled trade, in milliseconds (0 when
    /// the same millisecond or, on a clock step, earlier).
    lags_ms: Vec<u64>,
    first_settled_ms: Option<i64>,
    last_settled_ms: Option<i64>,
}

impl Tally {
    fn settled_span_ms(&self) -> Option<f64> {
        Some((self.last_settled_ms? - self.first_settled_ms?) as f64)
    }
}

/// Counts `trades` that are in `ours` by status and measures the settled ones. Only settled
/// trades have a deciding tick; a void or sold trade's end is not a settlement.
fn tally(trades: &[Trade], ours: &HashSet<i64>, deciders: &HashMap<i64, i64>) -> Tally {
    let mut tally = Tally::default();
    let mut seen = 0;
    for trade in trades.iter().filter(|t| ours.contains(&t.id)) {
        seen += 1;
        match trade.status.as_str() {
            "settled" => tally.settled += 1,
            "void" => tally.void += 1,
            "sold" => tally.sold += 1,
            "active" => tally.active += 1,
            _ => tally.other += 1,
        }
        if trade.status != "settled" {
            continue;
        }
        let Some(settled) = trade.settled_at.as_deref().and_then(epoch_ms) else { continue };
        tally.first_settled_ms = tally.first_settled_ms.into_iter().chain([settled]).min();
        tally.last_settled_ms = tally.last_settled_ms.into_iter().chain([settled]).max();
        if let Some(decided) = trade.exit.as_ref().and_then(|spot| deciders.get(&spot.seq)) {
            tally.lags_ms.push(u64::try_from(settled - decided).unwrap_or(0));
        }
    }
    tally.missing = (ours.len() as u64).saturating_sub(seen);
    tally
}

fn epoch_ms(timestamp: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(timestamp).ok().map(|t| t.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use super::{Spot, Trade, check_budget, tally};

    fn trade(id: i64, status: &str, settled_at: Option<&str>, exit_seq: Option<i64>) -> Trade {
        Trade {
            id,
            status: status.to_owned(),
            settled_at: settled_at.map(str::to_owned),
            exit: exit_seq.map(|seq| Spot { seq, ts: "2025-01-01T00:00:00.000Z".to_owned() }),
        }
    }

    #[test]
    fn the_budget_allows_one_thousand_ten_vusd_trades_per_user() {
        assert!(check_budget(64, 10_000).is_ok());
        assert!(check_budget(10, 10_000).is_ok());
        let refused = check_budget(9, 10_000).unwrap_err().to_string();
        assert!(refused.contains("--users 10"), "{refused}");
    }

    #[test]
    fn settled_trades_are_measured_from_their_deciding_tick_and_the_rest_only_counted() {
        let trades = [
            trade(1, "settled", Some("2025-01-01T00:00:05.250Z"), Some(50)),
            trade(2, "settled", Some("2025-01-01T00:00:06.100Z"), Some(60)),
            trade(3, "void", Some("2025-01-01T00:00:09.000Z"), None),
            trade(4, "active", None, None),
            trade(99, "settled", Some("2025-01-01T00:01:00.000Z"), Some(1)),
        ];
        let ours: HashSet<i64> = [1, 2, 3, 4, 5].into();
        // The ticks after exit ticks 50 and 60.
        let deciders: HashMap<i64, i64> = [(50, 1_735_689_605_000), (60, 1_735_689_606_000)].into();
        let tally = tally(&trades, &ours, &deciders);
        assert_eq!((tally.settled, tally.void, tally.active, tally.missing), (2, 1, 1, 1));
        assert_eq!(tally.lags_ms, [250, 100]);
        assert_eq!(tally.settled_span_ms(), Some(850.0));
    }
}
