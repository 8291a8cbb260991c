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

pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}
