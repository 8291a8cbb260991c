//! What a run reports: counts, rates and latency percentiles from an HdrHistogram.

use std::collections::BTreeMap;
use std::fmt;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Percentiles of a latency histogram recorded in microseconds, shown in milliseconds.
#[derive(Clone, Debug, Serialize)]
pub struct Latency {
    pub samples: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl fmt::Display for Latency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}  ({} samples)",
            self.p50_ms, self.p90_ms, self.p99_ms, self.max_ms, self.samples
        )
    }
}

impl Latency {
    pub fn of(histogram: &Histogram<u64>) -> Latency {
        let ms = |micros: u64| micros as f64 / 1_000.0;
        Latency {
            samples: histogram.len(),
            p50_ms: ms(histogram.value_at_quantile(0.50)),
            p90_ms: ms(histogram.value_at_quantile(0.90)),
            p99_ms: ms(histogram.value_at_quantile(0.99)),
            max_ms: ms(histogram.max()),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub scenario: String,
    pub seconds: f64,
    /// Named counts (connections, failures, statuses, messages).
    pub counts: BTreeMap<String, u64>,
    pub per_second: f64,
    pub latency: Latency,
    pub server_rss_mb: Option<f64>,
    /// CPU time (user and system) per accepted request during the run, in microseconds: of
    /// the server (`server`) and of the processes named with `--cpu-of` (e.g. `postgres`):
    /// where a change saves work, beside whether the rate moved.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub cpu_us_per_request: BTreeMap<String, f64>,
    /// Only for a settlement burst: how the trades it opened came to an end. `latency` and
    /// `per_second` are then those of the create requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settlement: Option<Settlement>,
}

/// How a burst of trades was settled, from the trades' own server timestamps.
#[derive(Clone, Debug, Serialize)]
pub struct Settlement {
    /// From the first to the last accepted (2xx) create response, as the client saw them.
    pub accept_window_ms: f64,
    /// From the end of the burst until no trade was active, or until the wait gave up.
    pub wait_seconds: f64,
    /// Whether the wait gave up with trades still active.
    pub gave_up: bool,
    /// `settledAt −` the deciding tick's `ts` (the first tick after the exit tick) of each settled trade. Both are server timestamps with
    /// millisecond resolution, recorded in microseconds like every other histogram here.
    pub lag: Latency,
    /// From the first to the last `settledAt` of the settled trades.
    pub settle_span_ms: Option<f64>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "scenario: {} ({:.1} s)", self.scenario, self.seconds)?;
        for (name, count) in &self.counts {
            writeln!(f, "  {name}: {count}")?;
        }
        // A settlement burst's rate and latency are those of its create requests.
        let create = if self.settlement.is_some() { "create " } else { "" };
        writeln!(f, "  {create}rate: {:.0}/s", self.per_second)?;
        writeln!(f, "  {create}latency ms: {}", self.latency)?;
        if let Some(s) = &self.settlement {
            writeln!(f, "  accept window: {:.0} ms", s.accept_window_ms)?;
            let outcome = if s.gave_up { "gave up with trades still active" } else { "all ended" };
            writeln!(f, "  waited after the burst: {:.1} s ({outcome})", s.wait_seconds)?;
            writeln!(f, "  settlement lag ms (settledAt − deciding tick ts): {}", s.lag)?;
            if let Some(span) = s.settle_span_ms {
                writeln!(f, "  first to last settlement: {span:.0} ms")?;
            }
        }
        if let Some(rss) = self.server_rss_mb {
            writeln!(f, "  server RSS: {rss:.1} MB")?;
        }
        for (process, micros) in &self.cpu_us_per_request {
            writeln!(f, "  {process} CPU per request: {micros:.0} µs")?;
        }
        Ok(())
    }
}

/// VmRSS of a process, from `/proc/PID/status`, in MB.
pub fn rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// The CPU time used so far by the server and by every process of each name watched: read at
/// the start and the end of a run, the difference is what the run cost them.
pub struct CpuClock {
    server: Option<u32>,
    names: Vec<String>,
}

/// Clock ticks a second in `/proc/PID/stat` (`USER_HZ`, fixed at 100 for user space on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

impl CpuClock {
    pub fn new(server: Option<u32>, names: &[String]) -> CpuClock {
        CpuClock { server, names: names.to_vec() }
    }

    /// Ticks used so far, by `server` and by each name (summed over its processes now alive).
    pub fn read(&self) -> BTreeMap<String, u64> {
        let mut used = BTreeMap::new();
        if let Some(ticks) = self.server.and_then(|pid| stat(pid).map(|(_, ticks)| ticks)) {
            used.insert("server".to_owned(), ticks);
        }
        if self.names.is_empty() {
            return used;
        }
        let pids = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok());
        for (name, ticks) in pids.filter_map(stat) {
            if self.names.contains(&name) {
                *used.entry(name).or_default() += ticks;
            }
        }
        used
    }

    /// Microseconds per request of each process (or name) seen both at `before` and now.
    pub fn per_request(&self, before: &BTreeMap<String, u64>, requests: u64) -> BTreeMap<String, f64> {
        if requests == 0 {
            return BTreeMap::new();
        }
        let after = self.read();
        before
            .iter()
            .filter_map(|(name, &start)| {
                let used = after.get(name)?.saturating_sub(start) as f64 / TICKS_PER_SECOND;
                Some((name.clone(), used * 1e6 / requests as f64))
            })
            .collect()
    }
}

/// A process's name and the CPU ticks it has used (user and system), from `/proc/PID/stat`.
fn stat(pid: u32) -> Option<(String, u64)> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The name is between the first `(` and the last `)`, since it may hold either; `utime` and
/// `stime` are the 12th and 13th fields after it.
fn parse_stat(line: &str) -> Option<(String, u64)> {
    let (head, rest) = line.rsplit_once(')')?;
    let name = head.split_once('(')?.1.to_owned();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |index: usize| fields.get(index)?.parse::<u64>().ok();
    Some((name, ticks(11)? + ticks(12)?))
}

pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

#[cfg(test)]
mod tests {
    use super::{CpuClock, parse_stat};

    #[test]
    fn a_stat_line_gives_its_name_and_user_plus_system_ticks_even_with_parentheses_in_the_name() {
        let line = "4242 (a) b (c) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3 0 99 0 0";
        assert_eq!(parse_stat(line), Some(("a) b (c".to_owned(), 325)));
        assert_eq!(parse_stat("4242 (cut"), None);
    }

    #[test]
    fn the_clock_counts_the_cpu_this_process_spends_in_microseconds() {
        let clock = CpuClock::new(Some(std::process::id()), &[]);
        let before = clock.read();
        // Spin until the kernel has counted 20 ticks (200 ms) more, however busy the machine.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let mut spin = 0u64;
        while clock.read()["server"] < before["server"] + 20 {
            assert!(std::time::Instant::now() < deadline, "the process's CPU time never grew");
            for _ in 0..100_000 {
                spin = std::hint::black_box(spin.wrapping_add(1));
            }
        }
        let per_request = clock.per_request(&before, 2);
        assert!((100_000.0..1_000_000.0).contains(&per_request["server"]), "{per_request:?}");
    }
}
