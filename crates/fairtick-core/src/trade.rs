//! The flash-trade contract (DESIGN §2): when a trade enters, when it expires, which tick
//! decides it, who won, and the ledger transfers each outcome makes.
//!
//! Everything here is a pure function of the trade's terms and the recorded ticks. There is
//! no parameter through which anyone could choose a result.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::account::UnknownVariant;
pub use crate::fairness::Direction;
use crate::ledger::{AccountKind, LedgerError, Posting, TransactionKind, Transfer};
use crate::money::Money;
use crate::price::Price;

/// Basis points in one whole: a payout rate of 8500 is 85 %.
pub const BASIS_POINTS: i64 = 10_000;

/// Where a trade is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TradeStatus {
    Active,
    Settled,
    Sold,
    Void,
}

/// How a settled trade ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TradeResult {
    Win,
    Lose,
    Tie,
}

macro_rules! text_enum {
    ($type:ty { $($variant:path => $text:literal),+ $(,)? }) => {
        impl $type {
            pub const fn as_str(self) -> &'static str {
                match self { $($variant => $text),+ }
            }
        }
        impl FromStr for $type {
            type Err = UnknownVariant;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s { $($text => Ok($variant),)+ other => Err(UnknownVariant(other.to_owned())) }
            }
        }
        impl fmt::Display for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum!(TradeStatus { TradeStatus::Active => "active", TradeStatus::Settled => "settled", TradeStatus::Sold => "sold", TradeStatus::Void => "void" });
text_enum!(TradeResult { TradeResult::Win => "win", TradeResult::Lose => "lose", TradeResult::Tie => "tie" });
text_enum!(Direction { Direction::Up => "up", Direction::Down => "down" });

/// A tick as the contract sees it: its place in the sequence, its time (ms) and its price.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spot {
    pub seq: i64,
    pub ts: i64,
    pub price: Price,
}

/// The terms fixed when a trade is accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Terms {
    pub direction: Direction,
    pub stake: Money,
    pub duration_ms: i64,
    pub payout_rate_bp: u32,
    /// When the server accepted the trade (ms).
    pub accepted_at: i64,
}

/// What the recorded ticks say about a trade so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// No tick after acceptance yet.
    AwaitingEntry,
    /// Entered; no tick after expiry yet.
    Running { entry: Spot, expires_at: i64 },
    /// A tick after expiry exists (`deciding`, the first): the trade is decided.
    Decided { entry: Spot, expires_at: i64, exit: Spot, deciding: Spot, result: TradeResult },
}

/// Applies the rules to `ticks`, the market's ticks after acceptance in `seq` order (more
/// may follow; fewer only means "not yet"):
/// - entry: the first tick strictly after acceptance;
/// - expiry: the entry tick's time plus the duration;
/// - exit: the last tick at or before expiry; decided once a tick after expiry exists;
/// - `up` wins if exit > entry, `down` if exit < entry, equal is a tie.
pub fn progress(terms: &Terms, ticks: &[Spot]) -> Progress {
    let Some(entry_at) = ticks.iter().position(|t| t.ts > terms.accepted_at) else {
        return Progress::AwaitingEntry;
    };
    let entry = ticks[entry_at];
    let expires_at = entry.ts + terms.duration_ms;
    let after_entry = &ticks[entry_at..];
    let Some(deciding) = after_entry.iter().position(|t| t.ts > expires_at) else {
        return Progress::Running { entry, expires_at };
    };
    // The entry tick itself is at or before expiry, so the exit always exists.
    let (exit, deciding) = (after_entry[deciding - 1], after_entry[deciding]);
    let result = decide(terms.direction, entry.price, exit.price);
    Progress::Decided { entry, expires_at, exit, deciding, result }
}

/// Why a trade is void: its market's feed stalled past the grace period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stall {
    /// No tick came after acceptance within the duration plus the grace period.
    NoEntry,
    /// No tick came after expiry within the grace period.
    NoExit,
}

impl Stall {
    /// The reason recorded with the void trade.
    pub fn reason(self) -> &'static str {
        match self {
            Stall::NoEntry => "no tick arrived after the trade was accepted",
            Stall::NoExit => "no tick arrived within the grace period after expiry",
        }
    }
}

/// How the recorded ticks end a trade, given the feed's grace period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not decided by the ticks so far; if no tick comes by `deadline` (ms), it is void for
    /// `stall`. Only a clock can tell that none came: every other verdict follows from the
    /// recorded tick times alone.
    Waiting {
        progress: Progress,
        deadline: i64,
        stall: Stall,
    },
    Settled {
        entry: Spot,
        expires_at: i64,
        exit: Spot,
        deciding: Spot,
        result: TradeResult,
    },
    /// The tick it waited for, `late`, came after `deadline`; `progress` is what the ticks say
    /// of the trade otherwise.
    Void {
        stall: Stall,
        deadline: i64,
        late: Spot,
        progress: Progress,
    },
}

/// The grace periods the terms may set, in whole seconds.
pub const FEED_GRACE_SECS: std::ops::RangeInclusive<u32> = 1..=3_600;

/// Whether a market ticking every `interval_ms` keeps to a grace period of `grace_ms`: the
/// deciding tick comes up to one interval after expiry, so a grace period of two intervals or
/// less would void trades of a feed that is working.
pub fn grace_outlasts_two_ticks(grace_ms: i64, interval_ms: i64) -> bool {
    grace_ms > 2 * interval_ms
}

/// Whether `grace_ms` is a grace period the terms allow on a market ticking every
/// `interval_ms`: whole seconds within [`FEED_GRACE_SECS`], longer than two ticks. A verifier
/// checks a receipt's against it, since a server could otherwise pick one per trade.
pub fn grace_allowed(grace_ms: i64, interval_ms: i64) -> bool {
    let whole_secs = (grace_ms % 1_000 == 0).then(|| u32::try_from(grace_ms / 1_000).ok()).flatten();
    whole_secs.is_some_and(|secs| FEED_GRACE_SECS.contains(&secs))
        && grace_outlasts_two_ticks(grace_ms, interval_ms)
}

/// Applies the rules of [`progress`] and the feed's grace period to `ticks`:
/// - void if the entry tick comes later than the duration plus `grace_ms` after acceptance;
/// - void if the first tick after expiry comes later than `grace_ms` after expiry;
/// - otherwise settled as [`progress`] decides.
pub fn verdict(terms: &Terms, grace_ms: i64, ticks: &[Spot]) -> Verdict {
    let entry_deadline = terms.accepted_at + terms.duration_ms + grace_ms;
    let progress = progress(terms, ticks);
    match progress {
        Progress::AwaitingEntry => {
            Verdict::Waiting { progress, deadline: entry_deadline, stall: Stall::NoEntry }
        }
        Progress::Running { entry, .. } | Progress::Decided { entry, .. } if entry.ts > entry_deadline => {
            Verdict::Void { stall: Stall::NoEntry, deadline: entry_deadline, late: entry, progress }
        }
        Progress::Running { expires_at, .. } => {
            Verdict::Waiting { progress, deadline: expires_at + grace_ms, stall: Stall::NoExit }
        }
        Progress::Decided { expires_at, deciding, .. } if deciding.ts > expires_at + grace_ms => {
            Verdict::Void { stall: Stall::NoExit, deadline: expires_at + grace_ms, late: deciding, progress }
        }
        Progress::Decided { entry, expires_at, exit, deciding, result } => {
            Verdict::Settled { entry, expires_at, exit, deciding, result }
        }
    }
}

pub fn decide(direction: Direction, entry: Price, exit: Price) -> TradeResult {
    match (direction, exit.cmp(&entry)) {
        (_, std::cmp::Ordering::Equal) => TradeResult::Tie,
        (Direction::Up, std::cmp::Ordering::Greater) | (Direction::Down, std::cmp::Ordering::Less) => {
            TradeResult::Win
        }
        _ => TradeResult::Lose,
    }
}

/// What a win pays back, stake included: `⌊stake · (1 + rate)⌋` to the cent.
pub fn win_payout(stake: Money, payout_rate_bp: u32) -> Money {
    let cents = i128::from(stake.cents()) * i128::from(BASIS_POINTS + i64::from(payout_rate_bp))
        / i128::from(BASIS_POINTS);
    Money::from_cents(i64::try_from(cents).expect("stakes are bounded far below i64"))
}

/// What a settled trade pays back to the user's cash: the payout on a win, the stake on a
/// tie, nothing on a loss.
pub fn returned(result: TradeResult, stake: Money, payout_rate_bp: u32) -> Money {
    match result {
        TradeResult::Win => win_payout(stake, payout_rate_bp),
        TradeResult::Tie => stake,
        TradeResult::Lose => Money::ZERO,
    }
}

/// Moves the stake from cash to in play when a trade opens.
pub fn stake_transfer(stake: Money) -> Result<Transfer, LedgerError> {
    Transfer::between(TransactionKind::Stake, AccountKind::Cash, AccountKind::InPlay, stake)
}

/// Releases the stake from in play: `to_user` goes to the user's cash, the house takes or pays
/// the difference. Used for wins, losses, ties, voids and sales alike.
pub fn release_transfer(
    kind: TransactionKind,
    stake: Money,
    to_user: Money,
) -> Result<Transfer, LedgerError> {
    let house = stake.checked_sub(to_user).ok_or(LedgerError::Overflow)?;
    let mut postings = vec![Posting {
        account: AccountKind::InPlay,
        amount: stake.checked_neg().ok_or(LedgerError::Overflow)?,
    }];
    if to_user != Money::ZERO {
        postings.push(Posting { account: AccountKind::Cash, amount: to_user });
    }
    if house != Money::ZERO {
        postings.push(Posting { account: AccountKind::House, amount: house });
    }
    Transfer::new(kind, postings)
}

/// The transfer that settles a decided trade.
pub fn settlement_transfer(
    result: TradeResult,
    stake: Money,
    payout_rate_bp: u32,
) -> Result<Transfer, LedgerError> {
    let kind = match result {
        TradeResult::Win => TransactionKind::Payout,
        TradeResult::Tie => TransactionKind::Refund,
        TradeResult::Lose => TransactionKind::Loss,
    };
    release_transfer(kind, stake, returned(result, stake, payout_rate_bp))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Balances;
    use proptest::prelude::*;

    fn spot(seq: i64, ts: i64, units: i64) -> Spot {
        Spot { seq, ts, price: Price::from_units(units).unwrap() }
    }

    fn terms(direction: Direction) -> Terms {
        Terms {
            direction,
            stake: Money::from_units(100),
            duration_ms: 1_000,
            payout_rate_bp: 8_500,
            accepted_at: 1_000,
        }
    }

    #[test]
    fn a_tick_later_than_the_grace_period_voids_the_trade_whatever_the_clock() {
        // Accepted at 1_000 for 1 s; the grace period is 500 ms.
        let t = terms(Direction::Up);
        let verdict = |ticks: &[Spot]| super::verdict(&t, 500, ticks);
        let waiting = verdict(&[spot(1, 900, 5)]);
        assert_eq!(
            waiting,
            Verdict::Waiting { progress: Progress::AwaitingEntry, deadline: 2_500, stall: Stall::NoEntry }
        );
        // The entry came 1.5 s after acceptance plus 1 ms: too late.
        let late_entry = verdict(&[spot(2, 2_501, 5)]);
        assert!(
            matches!(late_entry, Verdict::Void { stall: Stall::NoEntry, deadline: 2_500, late, .. } if late.seq == 2),
            "{late_entry:?}"
        );
        let entered = verdict(&[spot(2, 1_100, 5), spot(3, 2_000, 6)]);
        assert!(
            matches!(entered, Verdict::Waiting { deadline: 2_600, stall: Stall::NoExit, .. }),
            "{entered:?}"
        );
        // Expiry 2_100: a deciding tick at 2_600 is in time, at 2_601 it is not.
        let in_time = verdict(&[spot(2, 1_100, 5), spot(3, 2_000, 6), spot(4, 2_600, 1)]);
        assert!(matches!(in_time, Verdict::Settled { result: TradeResult::Win, .. }), "{in_time:?}");
        let late = verdict(&[spot(2, 1_100, 5), spot(3, 2_000, 6), spot(4, 2_601, 1)]);
        assert!(
            matches!(late, Verdict::Void { stall: Stall::NoExit, deadline: 2_600, late, .. } if late.seq == 4),
            "{late:?}"
        );
    }

    #[test]
    fn a_grace_period_is_whole_seconds_up_to_an_hour_and_longer_than_two_ticks() {
        assert!(grace_allowed(1_000, 100));
        assert!(grace_allowed(3_600_000, 1_000));
        assert!(grace_allowed(3_000, 1_000));
        assert!(!grace_allowed(2_000, 1_000), "two ticks exactly");
        assert!(!grace_allowed(1_500, 100), "not whole seconds");
        assert!(!grace_allowed(0, 100));
        assert!(!grace_allowed(-1_000, 100));
        assert!(!grace_allowed(3_601_000, 100));
        assert!(!grace_allowed(i64::MAX - i64::MAX % 1_000, 100));
    }

    #[test]
    fn the_rule_table() {
        // Entry at ts 1_100 (price 100); expiry 2_100; the tick at exactly 2_100 is the exit.
        for (direction, exit, expected) in [
            (Direction::Up, 101, TradeResult::Win),
            (Direction::Up, 99, TradeResult::Lose),
            (Direction::Up, 100, TradeResult::Tie),
            (Direction::Down, 99, TradeResult::Win),
            (Direction::Down, 101, TradeResult::Lose),
            (Direction::Down, 100, TradeResult::Tie),
        ] {
            let ticks = [
                spot(1, 1_000, 50),
                spot(2, 1_100, 100),
                spot(3, 1_600, 7),
                spot(4, 2_100, exit),
                spot(5, 2_101, 1),
            ];
            // The tick at ts 1_000 is not after acceptance (1_000), so it is not the entry.
            let Progress::Decided { entry, expires_at, exit: got, result, .. } =
                progress(&terms(direction), &ticks[1..])
            else {
                panic!("decided");
            };
            assert_eq!((entry.seq, expires_at, got.seq), (2, 2_100, 4));
            assert_eq!(result, expected, "{direction:?} exit {exit}");
            assert_eq!(progress(&terms(direction), &ticks), progress(&terms(direction), &ticks[1..]));
        }
    }

    #[test]
    fn a_trade_is_undecided_until_a_tick_after_expiry_exists() {
        let t = terms(Direction::Up);
        assert_eq!(progress(&t, &[]), Progress::AwaitingEntry);
        assert_eq!(
            progress(&t, &[spot(1, 1_000, 5)]),
            Progress::AwaitingEntry,
            "a tick at acceptance is not after it"
        );
        let entered = [spot(2, 1_001, 5), spot(3, 2_001, 6)];
        assert_eq!(progress(&t, &entered), Progress::Running { entry: entered[0], expires_at: 2_001 });
        let decided = [spot(2, 1_001, 5), spot(3, 2_001, 6), spot(4, 2_002, 1)];
        assert!(
            matches!(progress(&t, &decided), Progress::Decided { exit, result: TradeResult::Win, .. } if exit.seq == 3)
        );
        // With no tick inside the window the entry tick is also the exit: a tie.
        let gap = [spot(2, 1_001, 5), spot(3, 9_000, 6)];
        assert!(
            matches!(progress(&t, &gap), Progress::Decided { exit, result: TradeResult::Tie, .. } if exit.seq == 2)
        );
    }

    #[test]
    fn payouts_round_down_to_the_cent() {
        assert_eq!(win_payout(Money::from_units(10), 8_500), Money::parse("18.50").unwrap());
        assert_eq!(win_payout(Money::parse("10.01").unwrap(), 8_500), Money::parse("18.51").unwrap());
        assert_eq!(win_payout(Money::parse("0.01").unwrap(), 8_500), Money::parse("0.01").unwrap());
    }

    proptest! {
        #[test]
        fn settling_any_trade_keeps_the_ledger_balanced_and_never_overdraws(
            stake_cents in 1i64..100_000_000,
            rate in 0u32..20_000,
            result in prop::sample::select(vec![TradeResult::Win, TradeResult::Lose, TradeResult::Tie]),
            cash_cents in 0i64..1_000_000_000,
        ) {
            let stake = Money::from_cents(stake_cents);
            let mut balances = Balances { cash: Money::from_cents(cash_cents), ..Balances::default() };
            let opened = balances.apply(&stake_transfer(stake).unwrap());
            if cash_cents < stake_cents {
                prop_assert!(opened.is_err());
                return Ok(());
            }
            let before = balances.cash;
            balances.apply(&settlement_transfer(result, stake, rate).unwrap()).unwrap();
            prop_assert_eq!(balances.in_play, Money::ZERO);
            prop_assert_eq!(balances.total(), Some(Money::from_cents(cash_cents)));
            let back = balances.cash.checked_sub(before).unwrap();
            prop_assert_eq!(back, returned(result, stake, rate));
            prop_assert!(back <= win_payout(stake, rate));
        }

        #[test]
        fn the_result_depends_only_on_direction_entry_and_exit(
            entry in 1i64..1_000_000, exit in 1i64..1_000_000,
        ) {
            let (e, x) = (Price::from_units(entry).unwrap(), Price::from_units(exit).unwrap());
            let up = decide(Direction::Up, e, x);
            let down = decide(Direction::Down, e, x);
            if entry == exit {
                prop_assert_eq!((up, down), (TradeResult::Tie, TradeResult::Tie));
            } else {
                prop_assert_ne!(up, down, "exactly one side wins");
            }
        }
    }
}
