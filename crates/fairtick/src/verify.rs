//! Checking what a fairtick server published, as an outsider would: an epoch's ticks are
//! recomputed from its revealed seed with the core's independent verifier and compared with
//! the server's, and the seed with the commitment published before the epoch began; a trade
//! receipt's signature, ticks, entry, exit, result and payout are re-derived the same way.

use anyhow::{Context, bail, ensure};
use fairtick_core::Money;
use fairtick_core::fairness::verifier::recompute_ticks;
use fairtick_core::fairness::{Commitment, MarketParams, Seed, VerifyError, verify_epoch};
use fairtick_core::price::Price;
use fairtick_core::trade::{self, Progress, Spot, Terms, progress, returned};

use crate::http::market::EpochDetail;
use crate::services::trades::receipts::{Receipt, ReceiptEpoch, ReceiptTick};

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

/// The receipt-signing key a server publishes at `/api/fairness/key`.
pub async fn fetch_public_key(url: &str) -> anyhow::Result<String> {
    let endpoint = format!("{}/api/fairness/key", url.trim_end_matches('/'));
    let body: serde_json::Value = reqwest::get(&endpoint).await?.error_for_status()?.json().await?;
    body["publicKey"].as_str().map(str::to_owned).with_context(|| format!("{endpoint} names no publicKey"))
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

/// Why the receipt's ticks are not all accounted for by its epochs, if they are not: each
/// tick's epoch must be listed (else nothing checks its price), and an epoch that follows
/// another must start where it ended, at the next seq and from its last price (§4).
fn unchained(epochs: &[ReceiptEpoch], ticks: &[ReceiptTick]) -> Option<String> {
    let epoch_of = |tick: &ReceiptTick| epochs.iter().find(|e| e.id == tick.epoch_id);
    if let Some(tick) = ticks.iter().find(|t| epoch_of(t).is_none()) {
        return Some(format!("seq {}: its epoch {} is not in the receipt", tick.seq, tick.epoch_id));
    }
    for pair in ticks.windows(2) {
        let (last, first) = (&pair[0], &pair[1]);
        let next = epoch_of(first)?;
        let same_price = Price::parse(&next.start_price).ok() == Price::parse(&last.price).ok();
        if last.epoch_id != first.epoch_id && (next.start_tick != first.seq || !same_price) {
            return Some(format!(
                "epoch {} starts at seq {} from {}, not where epoch {} ended (seq {}, {})",
                next.id, next.start_tick, next.start_price, last.epoch_id, last.seq, last.price
            ));
        }
    }
    None
}

/// Whether every price from entry to exit (`deciding`) was fixed before acceptance: each tick
/// is in the epoch of `current` (the last tick at or before acceptance), or in the epoch that
/// epoch announced, which must then have its market parameters and begin where it said it
/// would (docs/fairness.md §6). `unchained` has already checked that every tick's epoch is
/// listed.
fn fixed_before_acceptance<'a>(
    epochs: &[ReceiptEpoch],
    current: Option<&ReceiptTick>,
    deciding: impl Iterator<Item = &'a ReceiptTick>,
) -> Result<String, String> {
    // A trade accepted before its market's first tick: nothing shows that the first epoch's
    // commitment was published before it (a server refuses such trades: there is no price).
    let Some(current) = current else {
        return Err(
            "no tick at or before acceptance shows that the first epoch's commitment came before the \
                    trade"
                .to_owned(),
        );
    };
    let epoch_of = |id: i64| epochs.iter().find(|e| e.id == id);
    let Some(first) = epoch_of(current.epoch_id) else {
        return Err(format!("epoch {} is not in the receipt", current.epoch_id));
    };
    let mut last_of_first = current.seq;
    let mut next = None;
    for tick in deciding {
        if tick.epoch_id == first.id {
            last_of_first = tick.seq;
            continue;
        }
        let Some(epoch) = epoch_of(tick.epoch_id) else {
            return Err(format!("epoch {} is not in the receipt", tick.epoch_id));
        };
        let announced = first.next_id == Some(epoch.id)
            && first.next_commitment.as_deref().is_some_and(|c| c.eq_ignore_ascii_case(&epoch.commitment));
        if !announced {
            return Err(format!(
                "epoch {} was not announced by epoch {}, the epoch current at acceptance: its seed could \
                 have been drawn after the trade was accepted",
                epoch.id, first.id
            ));
        }
        // The seed alone does not fix the prices: the volatility and the interval are inputs.
        if (&epoch.kind, epoch.volatility_bp, epoch.tick_interval_ms)
            != (&first.kind, first.volatility_bp, first.tick_interval_ms)
        {
            return Err(format!(
                "epoch {} does not have the market parameters of epoch {}, which announced it: its prices \
                 could have been set after the trade was accepted",
                epoch.id, first.id
            ));
        }
        if first.planned_end_tick != Some(last_of_first) {
            let planned = first
                .planned_end_tick
                .map_or(" with no announced end".to_owned(), |p| format!(", not at its announced end {p}"));
            return Err(format!(
                "epoch {} ended at seq {last_of_first}{planned}: the prices after it could have been chosen \
                 after the trade was accepted",
                first.id
            ));
        }
        next = Some(epoch.id);
    }
    Ok(match next {
        None => format!(
            "every price from entry to exit was fixed before acceptance: by epoch {}'s commitment",
            first.id
        ),
        Some(next) => format!(
            "every price from entry to exit was fixed before acceptance: by epoch {}'s commitment, and epoch \
             {next}'s, announced with it",
            first.id
        ),
    })
}

/// Checks a trade receipt: the signature (against `trusted_key` when given, else only pending:
/// valid for the key the receipt names), each tick against its epoch's revealed seed and commitment, the entry, exit
/// and result by the rules, and the payout.
pub fn check_receipt(receipt: &Receipt, trusted_key: Option<&str>) -> anyhow::Result<Vec<Step>> {
    let mut steps = Vec::new();
    let key = trusted_key.unwrap_or(&receipt.public_key);
    if trusted_key.is_some_and(|k| !k.eq_ignore_ascii_case(&receipt.public_key)) {
        steps.push(Step::fail("signature", "the receipt names a different key than the one trusted"));
        return Ok(steps);
    }
    let body = match receipt.open(key) {
        Ok(body) => body,
        Err(why) => {
            steps.push(Step::fail("signature", why));
            return Ok(steps);
        }
    };
    // A receipt re-signed with another key is valid for that key: only a key the verifier
    // trusts (the server's published one) makes the signature a proof.
    steps.push(match trusted_key {
        Some(_) => Step::ok("signature", format!("signed by {key}, the key trusted")),
        None => Step::pending(
            "signature",
            format!(
                "valid for the key the receipt names, {key}, which was not compared with the server's \
                 published key (give --url or --public-key)"
            ),
        ),
    });
    let trade = &body.trade;

    // Every tick's price follows from its epoch's revealed seed, which matches its commitment.
    let mut spots = Vec::with_capacity(body.ticks.len());
    for tick in &body.ticks {
        let price = Price::parse(&tick.price).map_err(|e| anyhow::anyhow!("tick {}: {e}", tick.seq))?;
        spots.push(Spot { seq: tick.seq, ts: tick.ts, price });
    }
    if spots.windows(2).any(|w| w[1].seq != w[0].seq + 1 || w[1].ts <= w[0].ts) {
        steps.push(Step::fail("ticks", "the ticks are not consecutive"));
        return Ok(steps);
    }
    if let Some(why) = unchained(&body.epochs, &body.ticks) {
        steps.push(Step::fail("ticks", why));
        return Ok(steps);
    }
    for epoch in &body.epochs {
        let mine: Vec<&ReceiptTick> = body.ticks.iter().filter(|t| t.epoch_id == epoch.id).collect();
        let Some(seed) = &epoch.seed else {
            steps.push(Step::pending(
                "ticks",
                format!("epoch {} has not ended: its seed is not revealed yet", epoch.id),
            ));
            return Ok(steps);
        };
        let seed = Seed::from_hex(seed).map_err(|e| anyhow::anyhow!("seed of epoch {}: {e}", epoch.id))?;
        if seed.commitment().to_string() != epoch.commitment.to_lowercase() {
            steps.push(Step::fail(
                "commitment",
                format!("epoch {}'s seed does not match its commitment", epoch.id),
            ));
            return Ok(steps);
        }
        let params = MarketParams::new(
            &trade.symbol,
            u32::try_from(epoch.volatility_bp).context("volatilityBp")?,
            u32::try_from(epoch.tick_interval_ms).context("tickIntervalMs")?,
        )
        .map_err(|e| anyhow::anyhow!("epoch {}: {e}", epoch.id))?;
        let start = Price::parse(&epoch.start_price).map_err(|e| anyhow::anyhow!("startPrice: {e}"))?;
        let Some(last) = mine.last() else { continue };
        let count = usize::try_from(last.seq - epoch.start_tick + 1).context("tick before its epoch")?;
        let recomputed = recompute_ticks(&params, &seed, epoch.id, start, count);
        for tick in &mine {
            let index = usize::try_from(tick.seq - epoch.start_tick).context("tick before its epoch")?;
            let expected = recomputed[index].to_string();
            if expected != tick.price {
                steps.push(Step::fail(
                    "ticks",
                    format!("seq {}: the seed gives {expected}, the receipt says {}", tick.seq, tick.price),
                ));
                return Ok(steps);
            }
        }
    }
    steps.push(Step::ok(
        "ticks",
        format!("{} ticks recomputed from {} revealed seed(s)", spots.len(), body.epochs.len()),
    ));

    let grace_ms = trade.feed_grace_ms;
    // The grace period is a term the server could otherwise pick per trade: it must be one the
    // terms allow (whole seconds, 1 s to an hour, longer than two of the market's ticks).
    if let Some(grace_ms) = grace_ms {
        let interval = body.epochs.iter().map(|e| e.tick_interval_ms).max().unwrap_or(0);
        if !trade::grace_allowed(grace_ms, interval) {
            steps.push(Step::fail(
                "grace",
                format!(
                    "a grace period of {grace_ms} ms is not one the terms allow: whole seconds, 1 s to an hour, \
                     longer than two ticks ({interval} ms each)"
                ),
            ));
            return Ok(steps);
        }
    }
    let checkable = trade.status == "settled" || (trade.status == "void" && grace_ms.is_some());
    if !checkable {
        let status = &trade.status;
        let detail = trade.void_reason.as_deref().map_or(String::new(), |r| format!(": {r}"));
        steps.push(Step::pending(
            "result",
            format!("the trade is {status}{detail}; only settled trades have a result to re-derive"),
        ));
        return Ok(steps);
    }
    let terms = Terms {
        direction: trade.direction.parse().map_err(|_| anyhow::anyhow!("direction {:?}", trade.direction))?,
        stake: Money::parse(&trade.stake).map_err(|e| anyhow::anyhow!("stake: {e}"))?,
        duration_ms: trade.duration_ms,
        payout_rate_bp: parse_rate(&trade.payout_rate)?,
        accepted_at: trade.accepted_at,
    };
    let after = spots.partition_point(|s| s.ts <= terms.accepted_at);
    // A tick at or before acceptance shows that the entry is the first tick after it, unless
    // the trade came before the market's first tick (seq 1), which nothing can precede.
    if after == 0 && spots.first().is_none_or(|first| first.seq != 1) {
        steps.push(Step::fail("entry", "the receipt lacks the tick at or before acceptance"));
        return Ok(steps);
    }
    if let (true, Some(grace_ms)) = (trade.status == "void", grace_ms) {
        let step = check_void(&terms, grace_ms, &spots[after..], trade.void_reason.as_deref());
        let proven = step.outcome == Outcome::Ok;
        steps.push(step);
        if proven {
            let refunded = trade.payout.as_deref().and_then(|p| Money::parse(p).ok()) == Some(terms.stake);
            steps.push(if refunded {
                Step::ok("payout", format!("the stake of {} was refunded", trade.stake))
            } else {
                Step::fail(
                    "payout",
                    format!(
                        "a void trade refunds its stake, {}; the receipt says {:?}",
                        trade.stake, trade.payout
                    ),
                )
            });
        }
        return Ok(steps);
    }
    let Progress::Decided { entry, expires_at, exit, deciding, result } = progress(&terms, &spots[after..])
    else {
        steps.push(Step::fail("result", "the ticks given do not decide the trade"));
        return Ok(steps);
    };
    if Some(entry.seq) != trade.entry_seq || Some(exit.seq) != trade.exit_seq {
        steps.push(Step::fail(
            "entry",
            format!(
                "the rules give entry seq {} and exit seq {}, the receipt says {:?} and {:?}",
                entry.seq, exit.seq, trade.entry_seq, trade.exit_seq
            ),
        ));
        return Ok(steps);
    }
    steps.push(Step::ok(
        "entry",
        format!("entry seq {} at {}, exit seq {} at {}", entry.seq, entry.price, exit.seq, exit.price),
    ));
    // In time, by the grace period it was accepted under (receipts from version 3 on). Without
    // it nothing shows the trade should not have been void: that step, and so the verdict, waits.
    match grace_ms.map(|grace_ms| (grace_ms, trade::verdict(&terms, grace_ms, &spots[after..]))) {
        None => steps.push(Step::pending(
            "grace",
            "the receipt does not record the grace period the trade was accepted under, so the void rule cannot \
             be checked",
        )),
        Some((grace_ms, trade::Verdict::Void { stall, deadline, late, .. })) => {
            steps.push(Step::fail(
                "grace",
                format!(
                    "the rules void this trade: {}: the tick came at {}, after the deadline {} (grace {grace_ms} ms)",
                    stall.reason(),
                    time(late.ts),
                    time(deadline)
                ),
            ));
            return Ok(steps);
        }
        Some((grace_ms, _)) => {
            let decided_after = deciding.ts - expires_at;
            steps.push(Step::ok(
                "grace",
                format!(
                    "the entry came {} ms after acceptance and the deciding tick {decided_after} ms after expiry, \
                     within the grace period of {grace_ms} ms",
                    entry.ts - terms.accepted_at
                ),
            ));
        }
    }
    let current = after.checked_sub(1).map(|i| &body.ticks[i]);
    let deciding = body.ticks.iter().filter(|t| (entry.seq..=exit.seq).contains(&t.seq));
    match fixed_before_acceptance(&body.epochs, current, deciding) {
        Ok(detail) => steps.push(Step::ok("seeds", detail)),
        Err(why) => {
            steps.push(Step::fail("seeds", why));
            return Ok(steps);
        }
    }
    if Some(result.as_str()) != trade.result.as_deref() {
        steps.push(Step::fail(
            "result",
            format!("the rules give {result}, the receipt says {:?}", trade.result),
        ));
        return Ok(steps);
    }
    let payout = returned(result, terms.stake, terms.payout_rate_bp).to_string();
    if Some(&payout) != trade.payout.as_ref() {
        steps.push(Step::fail(
            "payout",
            format!("the rules pay {payout}, the receipt says {:?}", trade.payout),
        ));
        return Ok(steps);
    }
    steps.push(Step::ok("result", format!("{} {}: {result}, paid {payout}", trade.direction, trade.symbol)));
    Ok(steps)
}

/// The step that checks a void trade against the rules (docs/fairness.md §6): the tick it
/// waited for came after its deadline, for the reason recorded.
fn check_void(terms: &Terms, grace_ms: i64, spots: &[Spot], recorded: Option<&str>) -> Step {
    let recorded = recorded.unwrap_or("no reason");
    match trade::verdict(terms, grace_ms, spots) {
        trade::Verdict::Void { stall, deadline, late, .. } if stall.reason() == recorded => Step::ok(
            "result",
            format!(
                "void by the rules: {recorded}: the tick came at {}, after the deadline {} (grace \
                     {grace_ms} ms); the stake was refunded",
                time(late.ts),
                time(deadline)
            ),
        ),
        trade::Verdict::Void { stall, .. } => Step::fail(
            "result",
            format!("the rules give \"{}\", the receipt says \"{recorded}\"", stall.reason()),
        ),
        trade::Verdict::Settled { expires_at, deciding, .. } => Step::fail(
            "result",
            format!(
                "the rules settle this trade: the tick after expiry came at {}, within the deadline {}; \
                     it should not be void",
                time(deciding.ts),
                time(expires_at + grace_ms)
            ),
        ),
        trade::Verdict::Waiting { deadline, .. } => Step::pending(
            "result",
            format!(
                "the trade is void: {recorded}; no tick after the deadline {} is in the receipt yet, so the \
                 record cannot show when the feed resumed",
                time(deadline)
            ),
        ),
    }
}

/// A time in ms as an RFC 3339 UTC text, as the web verifier writes it.
fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(|| ms.to_string(), crate::http::dto::timestamp)
}

/// `"0.8500"` → 8500 basis points.
fn parse_rate(text: &str) -> anyhow::Result<u32> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    ensure!(fraction.len() <= 4 && !whole.is_empty(), "payout rate {text:?}");
    let padded = format!("{fraction:0<4}");
    Ok(whole.parse::<u32>()? * 10_000 + padded.parse::<u32>()?)
}

/// One line of a receipt's verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub check: &'static str,
    pub outcome: Outcome,
    pub detail: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Pending,
    Failed,
}

impl Step {
    fn ok(check: &'static str, detail: impl Into<String>) -> Step {
        Step { check, outcome: Outcome::Ok, detail: detail.into() }
    }
    fn pending(check: &'static str, detail: impl Into<String>) -> Step {
        Step { check, outcome: Outcome::Pending, detail: detail.into() }
    }
    fn fail(check: &'static str, detail: impl Into<String>) -> Step {
        Step { check, outcome: Outcome::Failed, detail: detail.into() }
    }
}

#[cfg(test)]
mod tests {
    use fairtick_core::trade::Direction;
    use secrecy::SecretString;

    use super::*;
    use crate::services::trades::receipts::{
        RECEIPT_VERSION, ReceiptBody, ReceiptEpoch, ReceiptSigner, ReceiptTrade,
    };

    const INTERVAL: i64 = 1_000;
    const START_TS: i64 = 1_800_000_000_000;

    /// A settled 2 s trade on ticks `first..=first + 4` of one epoch, accepted 1 ms after tick
    /// `first`, with its result and payout worked out by the rules.
    fn receipt(first: i64) -> (Receipt, String) {
        signed(&body(first, None))
    }

    fn epoch(id: i64, seed: &Seed, start_tick: i64, start_price: Price) -> ReceiptEpoch {
        ReceiptEpoch {
            id,
            kind: "simulated".into(),
            volatility_bp: 25,
            tick_interval_ms: INTERVAL,
            start_tick,
            start_price: start_price.to_string(),
            commitment: seed.commitment().to_string(),
            seed: Some(seed.to_hex()),
            planned_end_tick: None,
            next_id: None,
            next_commitment: None,
        }
    }

    /// The body of [`receipt`]; from seq `split` on, the ticks are those of a second epoch that
    /// starts there, from the last price of the first, which announced it.
    fn body(first: i64, split: Option<i64>) -> ReceiptBody {
        let params = MarketParams::new("SIMV25", 25, 1_000).unwrap();
        let seeds = [Seed::from_bytes([7; 32]), Seed::from_bytes([8; 32])];
        let start = Price::parse("1000").unwrap();
        let last = first + 4;
        let ends = split.map_or(last, |s| s - 1);
        let mut prices = recompute_ticks(&params, &seeds[0], 1, start, usize::try_from(ends).unwrap());
        let mut epochs = vec![epoch(1, &seeds[0], 1, start)];
        if let Some(split) = split {
            let from = *prices.last().unwrap();
            prices.extend(recompute_ticks(
                &params,
                &seeds[1],
                2,
                from,
                usize::try_from(last - ends).unwrap(),
            ));
            epochs.push(epoch(2, &seeds[1], split, from));
            epochs[0].planned_end_tick = Some(split - 1);
            epochs[0].next_id = Some(2);
            epochs[0].next_commitment = Some(seeds[1].commitment().to_string());
        }
        let ticks: Vec<ReceiptTick> = (first..=last)
            .map(|seq| ReceiptTick {
                seq,
                ts: START_TS + seq * INTERVAL,
                price: prices[usize::try_from(seq - 1).unwrap()].to_string(),
                epoch_id: if split.is_some_and(|s| seq >= s) { 2 } else { 1 },
            })
            .collect();
        let accepted_at = ticks[0].ts + 1;
        let body = ReceiptBody {
            version: RECEIPT_VERSION,
            issued_at: START_TS + 10 * INTERVAL,
            trade: ReceiptTrade {
                id: 1,
                user_id: 1,
                symbol: "SIMV25".into(),
                direction: "up".into(),
                stake: "10.00".into(),
                duration_ms: 2 * INTERVAL,
                payout_rate: "0.8500".into(),
                accepted_at,
                status: "settled".into(),
                result: None,
                entry_seq: None,
                expires_at: None,
                exit_seq: None,
                payout: None,
                void_reason: None,
                feed_grace_ms: Some(3_000),
            },
            epochs,
            ticks,
        };
        settled(body, accepted_at, 2 * INTERVAL)
    }

    /// `body` with its trade accepted at `accepted_at`, lasting `duration_ms`, and its entry,
    /// exit, result and payout worked out from its ticks by the rules.
    fn settled(mut body: ReceiptBody, accepted_at: i64, duration_ms: i64) -> ReceiptBody {
        let terms = Terms {
            direction: Direction::Up,
            stake: Money::parse("10").unwrap(),
            duration_ms,
            payout_rate_bp: 8_500,
            accepted_at,
        };
        let spots: Vec<Spot> = body
            .ticks
            .iter()
            .map(|t| Spot { seq: t.seq, ts: t.ts, price: Price::parse(&t.price).unwrap() })
            .collect();
        let Progress::Decided { entry, expires_at, exit, result, .. } = progress(&terms, &spots) else {
            panic!("the ticks decide the trade");
        };
        let trade = &mut body.trade;
        trade.accepted_at = accepted_at;
        trade.duration_ms = duration_ms;
        trade.entry_seq = Some(entry.seq);
        trade.expires_at = Some(expires_at);
        trade.exit_seq = Some(exit.seq);
        trade.result = Some(result.as_str().into());
        trade.payout = Some(returned(result, terms.stake, terms.payout_rate_bp).to_string());
        body
    }

    fn signed(body: &ReceiptBody) -> (Receipt, String) {
        let signer = ReceiptSigner::from_hex(&SecretString::from("ab".repeat(32))).unwrap();
        (signer.sign(body).unwrap(), signer.public_key_hex())
    }

    fn failed(steps: &[Step]) -> Vec<(&'static str, &str)> {
        steps.iter().filter(|s| s.outcome != Outcome::Ok).map(|s| (s.check, s.detail.as_str())).collect()
    }

    #[test]
    fn a_trade_accepted_before_the_markets_first_tick_is_derived_from_it_but_not_proven() {
        let before_any = body(1, None);
        let accepted_at = before_any.ticks[0].ts - 1;
        let (receipt, key) = signed(&settled(before_any, accepted_at, 2 * INTERVAL));
        let steps = check_receipt(&receipt, Some(&key)).unwrap();
        // Nothing shows the first epoch was committed before the trade.
        assert_eq!(
            failed(&steps),
            vec![(
                "seeds",
                "no tick at or before acceptance shows that the first epoch's commitment came before the \
                 trade"
            )]
        );
        assert!(steps.iter().any(|s| s.check == "entry" && s.outcome == Outcome::Ok), "{steps:?}");
    }

    #[test]
    fn a_receipt_without_the_tick_before_acceptance_fails_when_earlier_ticks_exist() {
        // Tick 3 is not the market's first: the tick before acceptance must show that no
        // earlier tick came after it.
        let from_three = body(3, None);
        let accepted_at = from_three.ticks[0].ts - 1;
        let (receipt, key) = signed(&settled(from_three, accepted_at, 2 * INTERVAL));
        let steps = check_receipt(&receipt, Some(&key)).unwrap();
        assert_eq!(failed(&steps), vec![("entry", "the receipt lacks the tick at or before acceptance")]);
    }

    /// [`body`] as a void trade, its feed stalled for `stall_ms` from the tick at index
    /// `from` on (the ticks before are on time).
    fn voided(reason: &str, from: usize, stall_ms: i64) -> ReceiptBody {
        let mut body = body(1, None);
        for tick in &mut body.ticks[from..] {
            tick.ts += stall_ms;
        }
        let trade = &mut body.trade;
        (trade.status, trade.void_reason) = ("void".into(), Some(reason.into()));
        (trade.result, trade.exit_seq, trade.payout) = (None, None, Some(trade.stake.clone()));
        body
    }

    fn outcome_of(body: &ReceiptBody, check: &str) -> (Outcome, String) {
        let (receipt, key) = signed(body);
        let steps = check_receipt(&receipt, Some(&key)).unwrap();
        let step = steps.iter().find(|s| s.check == check).unwrap_or_else(|| panic!("no {check}: {steps:?}"));
        (step.outcome, step.detail.clone())
    }

    #[test]
    fn a_settled_trade_whose_deciding_tick_came_after_the_grace_period_should_have_been_void() {
        // Entry seq 2, expiry at seq 4's time; seq 5 decides it, 1 s after expiry.
        let (outcome, detail) = outcome_of(&body(1, None), "grace");
        assert_eq!(outcome, Outcome::Ok, "{detail}");
        // Seq 5 came 6 s after expiry, past the 3 s grace period.
        let mut stalled = body(1, None);
        stalled.ticks[4].ts += 5_000;
        let (outcome, detail) = outcome_of(&stalled, "grace");
        assert_eq!(outcome, Outcome::Failed);
        assert!(
            detail.starts_with("the rules void this trade: no tick arrived within the grace period"),
            "{detail}"
        );
    }

    #[test]
    fn a_settled_receipt_without_its_grace_period_waits_at_that_step_and_checks_the_rest() {
        let mut silent = body(1, None);
        silent.trade.feed_grace_ms = None;
        let (receipt, key) = signed(&silent);
        let steps = check_receipt(&receipt, Some(&key)).unwrap();
        let open: Vec<_> = failed(&steps).into_iter().map(|(check, _)| check).collect();
        assert_eq!(open, ["grace"], "{steps:?}");
        assert_eq!(steps.iter().find(|s| s.check == "grace").unwrap().outcome, Outcome::Pending);
        assert!(steps.iter().any(|s| s.check == "result" && s.outcome == Outcome::Ok), "{steps:?}");
    }

    #[test]
    fn a_grace_period_the_terms_do_not_allow_is_refused() {
        // Two ticks of 1 s, not longer; not whole seconds; more than an hour.
        for grace_ms in [2_000, 2_500, 3_601_000] {
            let mut picked = body(1, None);
            picked.trade.feed_grace_ms = Some(grace_ms);
            let (outcome, detail) = outcome_of(&picked, "grace");
            assert_eq!(outcome, Outcome::Failed, "{grace_ms}");
            assert!(detail.starts_with(&format!("a grace period of {grace_ms} ms is not one")), "{detail}");
        }
    }

    #[test]
    fn a_void_trade_is_checked_against_the_tick_times() {
        const NO_EXIT: &str = "no tick arrived within the grace period after expiry";
        // Seq 5, the first after expiry, came 1 s + 5 s after it: past the 3 s grace.
        let (outcome, detail) = outcome_of(&voided(NO_EXIT, 4, 5_000), "result");
        assert_eq!(outcome, Outcome::Ok, "{detail}");
        assert!(detail.starts_with("void by the rules: no tick arrived within"), "{detail}");
        assert_eq!(outcome_of(&voided(NO_EXIT, 4, 5_000), "payout").0, Outcome::Ok);
        let mut unpaid = voided(NO_EXIT, 4, 5_000);
        unpaid.trade.payout = Some("0.00".into());
        assert_eq!(outcome_of(&unpaid, "payout").0, Outcome::Failed, "a void refunds the stake");
        // The feed did not stall: the rules settle it.
        let (outcome, detail) = outcome_of(&voided(NO_EXIT, 4, 0), "result");
        assert_eq!(outcome, Outcome::Failed);
        assert!(detail.starts_with("the rules settle this trade"), "{detail}");
        // Stalled from the entry on: the reason is the entry's.
        let (outcome, detail) = outcome_of(&voided(NO_EXIT, 1, 5_000), "result");
        assert_eq!(outcome, Outcome::Failed);
        assert!(
            detail.starts_with("the rules give \"no tick arrived after the trade was accepted\""),
            "{detail}"
        );
        // No tick after expiry in the receipt yet: nothing shows when the feed resumed.
        let mut waiting = voided(NO_EXIT, 4, 0);
        waiting.ticks.truncate(4);
        let (outcome, _) = outcome_of(&waiting, "result");
        assert_eq!(outcome, Outcome::Pending);
        // Without the grace period (receipts before version 3), a void cannot be checked.
        let mut older = voided(NO_EXIT, 4, 5_000);
        older.trade.feed_grace_ms = None;
        assert_eq!(outcome_of(&older, "result").0, Outcome::Pending);
    }

    #[test]
    fn a_trade_within_one_epoch_verifies_without_announcements() {
        let (receipt, key) = receipt(1);
        let steps = check_receipt(&receipt, Some(&key)).unwrap();
        assert_eq!(failed(&steps), vec![]);
        assert!(steps.iter().any(|s| s.check == "seeds"), "{steps:?}");
    }

    #[test]
    fn without_a_trusted_key_the_signature_proves_nothing_and_the_verdict_waits() {
        let (receipt, _) = receipt(1);
        let steps = check_receipt(&receipt, None).unwrap();
        let open: Vec<_> = failed(&steps).into_iter().map(|(check, _)| check).collect();
        assert_eq!(open, ["signature"], "the other checks still run and pass: {steps:?}");
        assert_eq!(steps[0].outcome, Outcome::Pending);
    }

    #[test]
    fn a_trade_across_two_epochs_verifies_when_the_second_starts_where_the_first_ended() {
        let (receipt, key) = signed(&body(1, Some(3)));
        let steps = check_receipt(&receipt, Some(&key)).unwrap();
        assert_eq!(failed(&steps), vec![]);
    }

    #[test]
    fn a_trade_reaching_into_an_epoch_not_announced_before_it_is_not_proven() {
        let refused = |body: &ReceiptBody| {
            let (receipt, key) = signed(body);
            let steps = check_receipt(&receipt, Some(&key)).unwrap();
            let failures = failed(&steps);
            assert_eq!(failures.len(), 1, "{steps:?}");
            assert_eq!(failures[0].0, "seeds");
            failures[0].1.to_owned()
        };
        // Epochs from before announcements, or an announcement of another epoch.
        let mut silent = body(1, Some(3));
        silent.epochs[0].next_id = None;
        assert!(refused(&silent).starts_with("epoch 2 was not announced by epoch 1"));
        let mut other = body(1, Some(3));
        other.epochs[0].next_commitment = Some(Seed::from_bytes([9; 32]).commitment().to_string());
        assert!(refused(&other).starts_with("epoch 2 was not announced by epoch 1"));
        // Announced, but run with another volatility, so with other prices from the same seed.
        let mut faster = body(1, Some(3));
        faster.epochs[1].volatility_bp = 30;
        let params = MarketParams::new("SIMV25", 30, 1_000).unwrap();
        let from = Price::parse(&faster.epochs[1].start_price).unwrap();
        let prices = recompute_ticks(&params, &Seed::from_bytes([8; 32]), 2, from, 3);
        for (tick, price) in faster.ticks[2..].iter_mut().zip(prices) {
            tick.price = price.to_string();
        }
        let accepted_at = faster.trade.accepted_at;
        let faster = settled(faster, accepted_at, 2 * INTERVAL);
        assert!(refused(&faster).starts_with("epoch 2 does not have the market parameters of epoch 1"));
        // Announced, but the boundary moved: epoch 1 was cut short.
        let mut cut = body(1, Some(3));
        cut.epochs[0].planned_end_tick = Some(4);
        assert!(
            refused(&cut).starts_with("epoch 1 ended at seq 2, not at its announced end 4"),
            "{}",
            refused(&cut)
        );
    }

    #[test]
    fn an_entry_on_the_next_epochs_first_tick_needs_the_announcement_of_the_epoch_at_acceptance() {
        // Accepted after seq 2, the last of epoch 1: the entry is seq 3, epoch 2's first tick.
        let crossing = body(1, Some(3));
        let accepted_at = crossing.ticks[1].ts;
        let mut at_boundary = settled(crossing, accepted_at, INTERVAL);
        assert_eq!(at_boundary.trade.entry_seq, Some(3));
        let (receipt, key) = signed(&at_boundary);
        assert_eq!(failed(&check_receipt(&receipt, Some(&key)).unwrap()), vec![]);

        at_boundary.epochs[0].next_id = None;
        let (receipt, key) = signed(&at_boundary);
        let failures = failed(&check_receipt(&receipt, Some(&key)).unwrap())
            .into_iter()
            .map(|(check, _)| check)
            .collect::<Vec<_>>();
        assert_eq!(failures, ["seeds"]);
    }

    #[test]
    fn ticks_outside_the_listed_epochs_or_an_epoch_that_does_not_continue_the_last_fail() {
        let mut unlisted = body(1, Some(3));
        unlisted.epochs.pop();
        let (receipt, key) = signed(&unlisted);
        let steps = check_receipt(&receipt, Some(&key)).unwrap();
        assert_eq!(failed(&steps), vec![("ticks", "seq 3: its epoch 2 is not in the receipt")]);

        let mut moved = body(1, Some(3));
        moved.epochs[1].start_price = "999.00000000".into();
        let (receipt, key) = signed(&moved);
        let steps = check_receipt(&receipt, Some(&key)).unwrap();
        let failures = failed(&steps);
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert_eq!(failures[0].0, "ticks");
        assert!(
            failures[0].1.starts_with("epoch 2 starts at seq 3 from 999.00000000, not where epoch 1 ended"),
            "{failures:?}"
        );
    }
}
