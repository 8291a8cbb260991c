//! Benchmarks of the core's hot paths: generating and verifying ticks, quoting a trade and
//! its early-close bid, and settling one trade in memory.
//!
//! Every input is a typical one: the default `SIMV25` market (25 % a year) on 100 ms ticks,
//! the default trading terms, a price near 1000. The benchmarks only measure; correctness is
//! the tests' job, so each input is checked once up front to make sure the measured path is
//! the successful one and not an early error.
//!
//! Run with `cargo bench -p fairtick-core`. Measurement windows are kept short so the whole
//! run takes well under two minutes on a two-core machine.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fairtick_core::fairness::engine::EpochSpec;
use fairtick_core::fairness::model::{self, Direction};
use fairtick_core::fairness::verifier::verify_epoch;
use fairtick_core::fairness::{MarketParams, Seed};
use fairtick_core::settings::TradingSettings;
use fairtick_core::trade::{self, Progress, Spot, Terms};
use fairtick_core::{Money, Price};

/// Ticks per generation or verification run: 100 s of a 10-ticks-per-second market.
const TICKS: usize = 1_000;

/// Ten ticks a second.
const TICK_INTERVAL_MS: u32 = 100;

fn epoch() -> EpochSpec {
    EpochSpec {
        market: MarketParams::new("SIMV25", 2_500, TICK_INTERVAL_MS).expect("valid market"),
        epoch_id: 42,
        seed: Seed::from_bytes(*b"fairtick benchmark seed, fixed!!"),
        start_price: Price::parse("1000").expect("a price"),
    }
}

fn ticks(c: &mut Criterion) {
    let spec = epoch();
    let recorded: Vec<Price> = spec.ticks().take(TICKS).collect();
    let commitment = spec.seed.commitment();
    let verify = |ticks: &[Price]| {
        verify_epoch(&spec.market, &spec.seed, &commitment, spec.epoch_id, spec.start_price, ticks)
    };
    assert_eq!(verify(&recorded), Ok(()), "the benchmark must verify an honest epoch");

    let mut group = c.benchmark_group("ticks");
    group.throughput(Throughput::Elements(TICKS as u64));
    group.bench_function("generate_1000", |b| {
        b.iter(|| {
            for price in black_box(&spec).ticks().take(TICKS) {
                black_box(price);
            }
        })
    });
    group.bench_function("verify_1000", |b| b.iter(|| verify(black_box(&recorded))));
    group.finish();
}

fn model(c: &mut Criterion) {
    let settings = TradingSettings::default();
    let market = epoch().market;
    let sigma = market.tick_sigma();
    let price = Price::parse("1000").expect("a price");
    // A 60 s trade: 600 ticks.
    let ticks = market.ticks_within(60_000);
    // An open trade entered at 1000, now at 1000.37 with 30 s (300 ticks) to go.
    let (entry, current, remaining) = (price, Price::parse("1000.37").expect("a price"), 300);
    let stake = Money::from_units(100);
    let bid = |current: Price| {
        let odds = model::outcome_odds(sigma, remaining, current, entry)?;
        let direction = Direction::Up;
        model::early_close_bid(
            stake,
            settings.payout_rate_bp,
            odds.win(direction),
            odds.tie,
            settings.sell_spread_bp,
        )
    };
    assert!(model::quote(Direction::Up, sigma, ticks, price, settings.payout_rate_bp).is_ok());
    assert!(bid(current).is_ok());

    let mut group = c.benchmark_group("model");
    group.throughput(Throughput::Elements(1));
    group.bench_function("quote_60s", |b| {
        b.iter(|| {
            model::quote(
                Direction::Up,
                black_box(sigma),
                black_box(ticks),
                black_box(price),
                settings.payout_rate_bp,
            )
        })
    });
    group.bench_function("early_close_bid_30s_left", |b| b.iter(|| bid(black_box(current))));
    group.finish();
}

fn settlement(c: &mut Criterion) {
    let settings = TradingSettings::default();
    let spec = epoch();
    let interval = i64::from(TICK_INTERVAL_MS);
    let accepted_at = 1_700_000_000_050;
    let first_ts = accepted_at + 50;
    let terms = Terms {
        direction: Direction::Up,
        stake: Money::from_units(100),
        duration_ms: 5_000,
        payout_rate_bp: settings.payout_rate_bp,
        accepted_at,
    };
    // The entry tick, the 50 ticks of a 5 s trade at 10 ticks a second, and the first tick
    // after expiry that decides it: what the scheduler holds when the trade falls due.
    let window: Vec<Spot> = spec
        .ticks()
        .take(52)
        .zip(0..)
        .map(|(price, i)| Spot { seq: 10_000 + i, ts: first_ts + i * interval, price })
        .collect();
    let settle = |ticks: &[Spot]| {
        let Progress::Decided { result, .. } = trade::progress(&terms, ticks) else {
            return None;
        };
        let back = trade::returned(result, terms.stake, terms.payout_rate_bp);
        let transfer = trade::settlement_transfer(result, terms.stake, terms.payout_rate_bp).ok()?;
        Some((back, transfer))
    };
    assert!(settle(&window).is_some(), "the window must decide the trade");

    let mut group = c.benchmark_group("settlement");
    group.throughput(Throughput::Elements(1));
    group.bench_function("settle_5s_trade", |b| b.iter(|| settle(black_box(&window))));
    group.finish();
}

/// Short windows and modest samples: enough for stable medians of these microsecond-scale
/// functions without hogging a shared two-core machine.
fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
}

criterion_group! {
    name = benches;
    config = config();
    targets = ticks, model, settlement
}
criterion_main!(benches);
