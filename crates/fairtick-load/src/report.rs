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
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "scenario: {} ({:.1} s)", self.scenario, self.seconds)?;
        for (name, count) in &self.counts {
            writeln!(f, "  {name}: {count}")?;
        }
        writeln!(f, "  rate: {:.0}/s", self.per_second)?;
        let l = &self.latency;
        writeln!(
            f,
            "  latency ms: p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}  ({} samples)",
            l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms, l.samples
        )?;
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
