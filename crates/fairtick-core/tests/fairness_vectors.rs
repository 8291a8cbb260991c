//! The test vectors of `docs/fairness.md`, read from the document itself, must be reproduced by
//! the engine, the verifier and the model, so the published specification and the code can
//! never disagree. A second test checks the model's odds against the engine's actual outcomes.

use fairtick_core::fairness::engine::EpochSpec;
use fairtick_core::fairness::model::{self, Direction, OutcomeOdds, Probability};
use fairtick_core::fairness::verifier::{recompute_ticks, verify_epoch};
use fairtick_core::fairness::{Commitment, MarketParams, Seed, TickSigma};
use fairtick_core::{Money, Price};

const SPEC: &str = include_str!("../../../docs/fairness.md");

/// The lines of the fenced block whose info string is `text <name>`.
fn fenced_block(name: &str) -> Vec<&'static str> {
    let opening = format!("```text {name}\n");
    let start =
        SPEC.find(&opening).unwrap_or_else(|| panic!("no {name} block in docs/fairness.md")) + opening.len();
    let length = SPEC[start..].find("```").expect("the block is closed");
    SPEC[start..start + length].lines().collect()
}

/// `key=value` pairs of one model-vector line, inputs and outputs separately.
fn pairs(line: &str) -> (Vec<(&str, &str)>, &str) {
    let (inputs, outputs) = line.split_once(" -> ").expect("inputs -> outputs");
    let inputs =
        inputs.split_whitespace().skip(1).map(|pair| pair.split_once('=').expect("key=value")).collect();
    (inputs, outputs)
}

fn get<'a>(pairs: &[(&str, &'a str)], key: &str) -> &'a str {
    pairs.iter().find(|(k, _)| *k == key).unwrap_or_else(|| panic!("missing {key}")).1
}

fn probability(text: &str) -> Probability {
    let (whole, fraction) = text.split_once('.').expect("a decimal probability");
    assert_eq!(fraction.len(), 9, "{text}");
    let ppb = whole.parse::<u64>().unwrap() * 1_000_000_000 + fraction.parse::<u64>().unwrap();
    Probability::from_ppb(ppb).expect("at most one")
}

struct TickVector {
    name: String,
    params: MarketParams,
    seed: Seed,
    epoch_id: i64,
    start_price: Price,
    commitment: String,
    sigma: u64,
    ticks: Vec<(usize, Price)>,
}

fn tick_vectors() -> Vec<TickVector> {
    let block = fenced_block("tick-vectors");
    let mut vectors = Vec::new();
    for chunk in block.split(|line| line.trim().is_empty()).filter(|chunk| !chunk.is_empty()) {
        let fields: Vec<(&str, &str)> =
            chunk.iter().map(|line| line.split_once(": ").expect("key: value")).collect();
        let field = |key: &str| get(&fields, key);
        let ticks = fields
            .iter()
            .filter_map(|(key, value)| {
                let index = key.strip_prefix("tick ")?.parse().unwrap();
                Some((index, Price::parse(value).unwrap()))
            })
            .collect();
        vectors.push(TickVector {
            name: field("vector").to_owned(),
            params: MarketParams::new(
                field("symbol"),
                field("volatility_bp").parse().unwrap(),
                field("tick_interval_ms").parse().unwrap(),
            )
            .unwrap(),
            seed: Seed::from_hex(field("seed")).unwrap(),
            epoch_id: field("epoch_id").parse().unwrap(),
            start_price: Price::parse(field("start_price")).unwrap(),
            commitment: field("commitment").to_owned(),
            sigma: field("sigma").parse().unwrap(),
            ticks,
        });
    }
    vectors
}

#[test]
fn the_document_has_the_promised_vectors() {
    let vectors = tick_vectors();
    assert!(vectors.len() >= 3);
    for vector in &vectors {
        let indices: Vec<usize> = vector.ticks.iter().map(|(i, _)| *i).collect();
        assert_eq!(indices, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 999], "vector {}", vector.name);
    }
    assert!(fenced_block("model-vectors").len() >= 10);
}

#[test]
fn the_engine_reproduces_the_tick_vectors() {
    for vector in tick_vectors() {
        let name = &vector.name;
        assert_eq!(vector.seed.commitment().to_string(), vector.commitment, "vector {name}");
        assert_eq!(vector.params.tick_sigma().raw(), vector.sigma, "vector {name}");
        let spec = EpochSpec {
            market: vector.params.clone(),
            epoch_id: vector.epoch_id,
            seed: vector.seed.clone(),
            start_price: vector.start_price,
        };
        let ticks: Vec<Price> = spec.ticks().take(1000).collect();
        for &(index, expected) in &vector.ticks {
            assert_eq!(ticks[index], expected, "vector {name}, tick {index}");
        }
    }
}

#[test]
fn the_verifier_reproduces_the_tick_vectors() {
    for vector in tick_vectors() {
        let name = &vector.name;
        let ticks = recompute_ticks(&vector.params, &vector.seed, vector.epoch_id, vector.start_price, 1000);
        for &(index, expected) in &vector.ticks {
            assert_eq!(ticks[index], expected, "vector {name}, tick {index}");
        }
        let commitment: Commitment = vector.commitment.parse().unwrap();
        assert_eq!(
            verify_epoch(
                &vector.params,
                &vector.seed,
                &commitment,
                vector.epoch_id,
                vector.start_price,
                &ticks
            ),
            Ok(()),
            "vector {name}"
        );
    }
}

#[test]
fn the_model_reproduces_the_model_vectors() {
    for line in fenced_block("model-vectors") {
        let (inputs, outputs_text) = pairs(line);
        let outputs: Vec<(&str, &str)> =
            outputs_text.split_whitespace().filter_map(|pair| pair.split_once('=')).collect();
        let input = |key: &str| get(&inputs, key);
        let output = |key: &str| get(&outputs, key);
        let sigma = || TickSigma::from_raw(input("sigma").parse().unwrap());
        let ticks = || input("ticks").parse::<u64>().unwrap();
        let direction = || match input("direction") {
            "up" => Direction::Up,
            "down" => Direction::Down,
            other => panic!("direction {other}"),
        };
        match line.split_whitespace().next() {
            Some("odds:") => {
                let current = Price::parse(input("current")).unwrap();
                let reference = Price::parse(input("reference")).unwrap();
                let expected = OutcomeOdds {
                    up: probability(output("up")),
                    down: probability(output("down")),
                    tie: probability(output("tie")),
                };
                assert_eq!(model::outcome_odds(sigma(), ticks(), current, reference), Ok(expected), "{line}");
            }
            Some("quote:") => {
                let price = Price::parse(input("price")).unwrap();
                let rate = input("payout_rate_bp").parse().unwrap();
                let quote = model::quote(direction(), sigma(), ticks(), price, rate).unwrap();
                assert_eq!(quote.win_probability, probability(output("win")), "{line}");
                assert_eq!(quote.tie_probability, probability(output("tie")), "{line}");
                assert_eq!(quote.loss_probability, probability(output("loss")), "{line}");
                assert_eq!(quote.break_even_win_rate, probability(output("break_even")), "{line}");
                assert_eq!(quote.house_edge.to_string(), output("edge"), "{line}");
            }
            Some("bid:") => {
                let bid = model::early_close_bid(
                    Money::parse(input("stake")).unwrap(),
                    input("payout_rate_bp").parse().unwrap(),
                    probability(input("win")),
                    probability(input("tie")),
                    input("spread_bp").parse().unwrap(),
                );
                let expected = Money::parse(outputs_text).unwrap();
                assert_eq!(bid, Ok(expected), "{line}");
            }
            other => panic!("unknown model vector {other:?}"),
        }
    }
}

/// Simulates many short trades where ties are common and compares the engine's outcome
/// frequencies with the model's odds, within four standard errors.
#[test]
fn the_model_odds_match_the_engine_where_ties_are_common() {
    const TRIALS: u32 = 40_000;
    for (volatility_bp, tick_interval_ms, start, ticks) in
        [(2500, 1000, "0.01", 10_u64), (10_000, 250, "0.0012", 20)]
    {
        let market = MarketParams::new("SIM-TIE", volatility_bp, tick_interval_ms).unwrap();
        let entry = Price::parse(start).unwrap();
        let odds = model::outcome_odds(market.tick_sigma(), ticks, entry, entry).unwrap();
        let (mut up, mut down, mut tie) = (0_u32, 0_u32, 0_u32);
        for epoch_id in 0..i64::from(TRIALS) {
            let spec = EpochSpec {
                market: market.clone(),
                epoch_id,
                seed: Seed::from_bytes([7; 32]),
                start_price: entry,
            };
            let exit = spec.ticks().nth(ticks as usize - 1).unwrap();
            match exit.cmp(&entry) {
                std::cmp::Ordering::Greater => up += 1,
                std::cmp::Ordering::Less => down += 1,
                std::cmp::Ordering::Equal => tie += 1,
            }
        }
        // Test-only statistics in f64.
        for (name, count, p) in [("up", up, odds.up), ("down", down, odds.down), ("tie", tie, odds.tie)] {
            let p = p.ppb() as f64 / 1e9;
            let observed = f64::from(count) / f64::from(TRIALS);
            let standard_error = (p * (1.0 - p) / f64::from(TRIALS)).sqrt();
            assert!(
                (observed - p).abs() < 4.0 * standard_error,
                "{start}: {name} observed {observed}, model {p} (±{standard_error})"
            );
        }
    }
}
