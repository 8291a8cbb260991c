//! Checking what a fairtick server published, as an outsider would: an epoch's ticks are
//! recomputed from its revealed seed with the core's independent verifier and compared with
//! the server's, and the seed with the commitment published before the epoch began.

use anyhow::{Context, bail, ensure};
use fairtick_core::fairness::{Commitment, MarketParams, Seed, VerifyError, verify_epoch};
use fairtick_core::price::Price;

use crate::http::market::EpochDetail;

/// The verdict on one epoch.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Ok { ticks: usize },
    Mismatch(String),
}

/// Reads an epoch as served at `GET /api/market/epochs/{id}`, from a server or a saved file.
pub async fn fetch_epoch(
    url: Option<&str>,
    file: Option<&std::path::Path>,
    epoch: i64,
) -> anyhow::Result<EpochDetail> {
    let text = match (url, file) {
        (_, Some(file)) => {
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
        }
        (Some(url), None) => {
            let endpoint = format!("{}/api/market/epochs/{epoch}", url.trim_end_matches('/'));
            let response = reqwest::get(&endpoint).await.with_context(|| format!("fetching {endpoint}"))?;
            let status = response.status();
            let text = response.text().await?;
            ensure!(status.is_success(), "{endpoint} answered {status}: {text}");
            text
        }
        (None, None) => bail!("give --url or --file"),
    };
    serde_json::from_str(&text).context("the epoch document is not in the expected shape")
}

/// Checks an epoch document; errors are for documents that cannot be checked at all.
pub fn check_epoch(detail: &EpochDetail, symbol: &str, epoch_id: i64) -> anyhow::Result<Verdict> {
    let epoch = &detail.epoch;
    ensure!(epoch.id == epoch_id, "the document is epoch {}, not {epoch_id}", epoch.id);
    ensure!(epoch.symbol == symbol, "epoch {epoch_id} belongs to {}, not {symbol}", epoch.symbol);
    ensure!(
        epoch.kind == "simulated",
        "epoch {epoch_id} is a {}: only simulated epochs have a seed",
        epoch.kind
    );
    let Some(seed) = &epoch.seed else {
        bail!("epoch {epoch_id} has not ended yet: its seed is not revealed")
    };
    let Some(end_tick) = epoch.end_tick else { bail!("epoch {epoch_id} has no recorded end") };
    let seed = Seed::from_hex(seed).map_err(|e| anyhow::anyhow!("seed: {e}"))?;
    let commitment =
        Commitment::from_hex(&epoch.commitment).map_err(|e| anyhow::anyhow!("commitment: {e}"))?;
    let params = MarketParams::new(
        symbol,
        u32::try_from(epoch.volatility_bp).context("volatilityBp")?,
        u32::try_from(epoch.tick_interval_ms).context("tickIntervalMs")?,
    )
    .map_err(|e| anyhow::anyhow!("market parameters: {e}"))?;
    let start_price = Price::parse(&epoch.start_price).map_err(|e| anyhow::anyhow!("startPrice: {e}"))?;

    let expected_count = usize::try_from(end_tick - epoch.start_tick + 1).unwrap_or(0);
    if detail.ticks.len() != expected_count {
        return Ok(Verdict::Mismatch(format!(
            "the epoch spans seq {}..={end_tick} ({expected_count} ticks) but {} ticks were given",
            epoch.start_tick,
            detail.ticks.len()
        )));
    }
    let mut prices = Vec::with_capacity(detail.ticks.len());
    for (offset, tick) in detail.ticks.iter().enumerate() {
        let seq = epoch.start_tick + offset as i64;
        if tick.seq != seq || tick.epoch_id != epoch_id || tick.symbol != symbol {
            return Ok(Verdict::Mismatch(format!(
                "tick #{offset} is seq {} of epoch {} ({}); expected seq {seq} of epoch {epoch_id} ({symbol})",
                tick.seq, tick.epoch_id, tick.symbol
            )));
        }
        prices.push(Price::parse(&tick.price).map_err(|e| anyhow::anyhow!("price of seq {seq}: {e}"))?);
    }
    Ok(match verify_epoch(&params, &seed, &commitment, epoch_id, start_price, &prices) {
        Ok(()) => Verdict::Ok { ticks: prices.len() },
        Err(VerifyError::CommitmentMismatch { published, computed }) => Verdict::Mismatch(format!(
            "the revealed seed hashes to {computed}, but the commitment published was {published}"
        )),
        Err(VerifyError::TickMismatch { index, expected, got }) => Verdict::Mismatch(format!(
            "seq {} (tick {index} of the epoch): the seed gives {expected}, the server says {got}",
            epoch.start_tick + index as i64
        )),
    })
}
