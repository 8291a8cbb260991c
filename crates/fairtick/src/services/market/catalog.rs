//! Which markets exist: the built-in simulated indices or a JSON file of definitions, each a
//! simulated index (ticks from committed seeds) or a replay of recorded prices from a CSV file.
//!
//! Names must say what a market is: a simulated index is never named as a real asset, and a
//! replay says it is one.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use fairtick_core::fairness::MarketParams;
use fairtick_core::price::Price;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// A market and where its prices come from.
#[derive(Clone, Debug)]
pub struct MarketDefinition {
    pub symbol: String,
    pub name: String,
    pub tick_interval_ms: u32,
    pub source: MarketSource,
}

#[derive(Clone, Debug)]
pub enum MarketSource {
    Simulated { params: MarketParams, initial_price: Price },
    Replay(Arc<Replay>),
}

/// Recorded prices played back in order, one per tick, from the start again when they run out.
#[derive(Clone, Debug)]
pub struct Replay {
    /// The file's name, shown to users as the source.
    pub source: String,
    /// hex(SHA-256 of the file): what each replay epoch commits to.
    pub digest: String,
    pub prices: Vec<Price>,
}

impl MarketDefinition {
    pub fn kind(&self) -> &'static str {
        match self.source {
            MarketSource::Simulated { .. } => "simulated",
            MarketSource::Replay(_) => "replay",
        }
    }

    pub fn volatility_bp(&self) -> Option<u32> {
        match &self.source {
            MarketSource::Simulated { params, .. } => Some(params.volatility_bp()),
            MarketSource::Replay(_) => None,
        }
    }

    /// How many ticks each of its epochs holds: a simulated market's fill `epoch_length` (one
    /// at least); a replay's epoch is its whole file, whatever `epoch_length` says.
    pub fn ticks_per_epoch(&self, epoch_length: Duration) -> u64 {
        let ticks = match &self.source {
            MarketSource::Simulated { .. } => {
                (epoch_length.as_millis() / u128::from(self.tick_interval_ms.max(1))).max(1)
            }
            MarketSource::Replay(replay) => replay.prices.len() as u128,
        };
        u64::try_from(ticks).unwrap_or(u64::MAX)
    }

    /// How long each of its epochs lasts while no tick is missed.
    pub fn epoch_span(&self, epoch_length: Duration) -> Duration {
        Duration::from_millis(u64::from(self.tick_interval_ms))
            .saturating_mul(u32::try_from(self.ticks_per_epoch(epoch_length)).unwrap_or(u32::MAX))
    }
}

/// One entry of a markets file.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct MarketEntry {
    symbol: String,
    name: String,
    tick_interval_ms: Option<u32>,
    volatility_bp: Option<u32>,
    initial_price: Option<String>,
    replay_file: Option<PathBuf>,
}

/// The default markets: two simulated indices of different volatility.
pub fn default_markets(tick_interval_ms: u32) -> anyhow::Result<Vec<MarketDefinition>> {
    [
        ("SIMV25", "Simulated Volatility 25 Index", 2_500),
        ("SIMV100", "Simulated Volatility 100 Index", 10_000),
    ]
    .into_iter()
    .map(|(symbol, name, volatility_bp)| {
        simulated(symbol, name, volatility_bp, tick_interval_ms, Price::parse("1000").expect("a price"))
    })
    .collect()
}

fn simulated(
    symbol: &str,
    name: &str,
    volatility_bp: u32,
    tick_interval_ms: u32,
    initial_price: Price,
) -> anyhow::Result<MarketDefinition> {
    ensure!(name.contains("Simulated"), "market {symbol}: a simulated market's name must say \"Simulated\"");
    let params = MarketParams::new(symbol, volatility_bp, tick_interval_ms)
        .map_err(|e| anyhow::anyhow!("market {symbol}: {e}"))?;
    Ok(MarketDefinition {
        symbol: symbol.to_owned(),
        name: name.to_owned(),
        tick_interval_ms,
        source: MarketSource::Simulated { params, initial_price },
    })
}

/// Reads a JSON array of market entries; relative replay paths are relative to the file.
pub fn load_markets(path: &Path, default_tick_interval_ms: u32) -> anyhow::Result<Vec<MarketDefinition>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let entries: Vec<MarketEntry> = serde_json::from_str(&text)
        .with_context(|| format!("parsing the markets file {}", path.display()))?;
    ensure!(!entries.is_empty(), "the markets file {} defines no market", path.display());
    let base = path.parent().unwrap_or(Path::new("."));
    let mut markets = Vec::new();
    for entry in entries {
        let interval = entry.tick_interval_ms.unwrap_or(default_tick_interval_ms);
        let market = match (&entry.replay_file, entry.volatility_bp) {
            (Some(file), None) => replay(&entry.symbol, &entry.name, interval, &base.join(file))?,
            (None, Some(volatility_bp)) => {
                let initial = entry.initial_price.as_deref().unwrap_or("1000");
                let initial = Price::parse(initial)
                    .map_err(|e| anyhow::anyhow!("market {}: initialPrice {e}", entry.symbol))?;
                simulated(&entry.symbol, &entry.name, volatility_bp, interval, initial)?
            }
            _ => {
                bail!("market {}: give either volatilityBp (simulated) or replayFile (replay)", entry.symbol)
            }
        };
        ensure!(
            markets.iter().all(|m: &MarketDefinition| m.symbol != market.symbol),
            "market {} is defined twice",
            market.symbol
        );
        markets.push(market);
    }
    Ok(markets)
}

fn replay(symbol: &str, name: &str, tick_interval_ms: u32, file: &Path) -> anyhow::Result<MarketDefinition> {
    ensure!(name.contains("Replay"), "market {symbol}: a replay market's name must say \"Replay\"");
    // Validates the symbol and interval the same way as a simulated market's.
    MarketParams::new(symbol, 1, tick_interval_ms).map_err(|e| anyhow::anyhow!("market {symbol}: {e}"))?;
    let bytes = std::fs::read(file).with_context(|| format!("reading the replay file {}", file.display()))?;
    let text = std::str::from_utf8(&bytes).with_context(|| format!("{} is not UTF-8", file.display()))?;
    let prices = parse_replay_csv(text).with_context(|| format!("in {}", file.display()))?;
    Ok(MarketDefinition {
        symbol: symbol.to_owned(),
        name: name.to_owned(),
        tick_interval_ms,
        source: MarketSource::Replay(Arc::new(Replay {
            source: file
                .file_name()
                .map_or_else(|| file.display().to_string(), |n| n.to_string_lossy().into_owned()),
            digest: hex::encode(Sha256::digest(&bytes)),
            prices,
        })),
    })
}

/// `timestamp,price` lines, an optional header, timestamps strictly increasing. Only the order
/// of the prices is replayed; the pace is the market's tick interval.
pub fn parse_replay_csv(text: &str) -> anyhow::Result<Vec<Price>> {
    let mut prices = Vec::new();
    let mut last_timestamp: Option<String> = None;
    for (number, line) in text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())) {
        if line.is_empty() || (number == 1 && line.to_ascii_lowercase().starts_with("timestamp")) {
            continue;
        }
        let (timestamp, price) =
            line.split_once(',').with_context(|| format!("line {number}: expected `timestamp,price`"))?;
        let (timestamp, price) = (timestamp.trim(), price.trim());
        ensure!(!timestamp.is_empty(), "line {number}: empty timestamp");
        if let Some(previous) = &last_timestamp {
            let ordered = match (previous.parse::<i64>(), timestamp.parse::<i64>()) {
                (Ok(a), Ok(b)) => a < b,
                _ => previous.as_str() < timestamp,
            };
            ensure!(ordered, "line {number}: timestamps must increase");
        }
        last_timestamp = Some(timestamp.to_owned());
        prices.push(Price::parse(price).map_err(|e| anyhow::anyhow!("line {number}: price {e}"))?);
    }
    ensure!(prices.len() >= 2, "a replay needs at least two prices");
    Ok(prices)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_csv_accepts_a_header_and_exact_prices() {
        let prices = parse_replay_csv("timestamp,price\n1,100.5\n2,100.12345678\n\n3,99\n").unwrap();
        let units: Vec<i64> = prices.iter().map(|p| p.units()).collect();
        assert_eq!(units, [10_050_000_000, 10_012_345_678, 9_900_000_000]);
    }

    #[test]
    fn replay_csv_refuses_what_it_cannot_replay_faithfully() {
        for (csv, why) in [
            ("1,100\n1,101\n", "repeated timestamp"),
            ("2,100\n1,101\n", "decreasing timestamps"),
            ("1,100\n2,abc\n", "bad price"),
            ("1,100\n2,-5\n", "negative price"),
            ("1,100.123456789\n2,1\n", "nine decimals"),
            ("1,100\n", "a single price"),
            ("1;100\n2;101\n", "wrong separator"),
        ] {
            assert!(parse_replay_csv(csv).is_err(), "accepted {why}");
        }
    }

    #[test]
    fn simulated_markets_must_be_named_as_simulated() {
        assert!(simulated("X", "Volatility 25 Index", 2500, 1000, Price::ONE).is_err());
        assert!(simulated("X", "Simulated Volatility 25 Index", 2500, 1000, Price::ONE).is_ok());
        assert_eq!(default_markets(1000).unwrap().len(), 2);
    }
}
