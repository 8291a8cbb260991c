//! The public trading terms: payout rate, allowed durations, stake limits, the sell-back
//! spread and cut-off, the feed grace period and the VIP levels.
//!
//! Every term is published and applies to trades accepted after it took effect; an open trade
//! keeps the terms it was accepted under. No term can choose or alter a result.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::money::Money;
use crate::trade::FEED_GRACE_SECS;
use crate::wallet::WalletLimits;

/// Whether a market takes new trades. Open trades always settle by the rules either way.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MarketSwitch {
    pub enabled: bool,
    pub halted: bool,
}

impl Default for MarketSwitch {
    fn default() -> Self {
        MarketSwitch { enabled: true, halted: false }
    }
}

/// One VIP level: reached at a rolling 30-day turnover, adding a bonus to the payout rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VipLevel {
    pub level: u32,
    pub min_turnover: Money,
    pub payout_bonus_bp: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TradingSettings {
    /// Profit of a win per unit staked, in basis points (8500 = 85 %).
    pub payout_rate_bp: u32,
    /// The durations a trade may have, in seconds.
    pub durations_secs: Vec<u32>,
    pub min_stake: Money,
    pub max_stake: Money,
    /// Taken off the model's fair value when a trade is sold back early, in basis points.
    pub sell_spread_bp: u32,
    /// No sale in the last this-many seconds before expiry.
    pub sell_cutoff_secs: u32,
    /// A trade is void (stake refunded) if no tick arrives this long after its expiry.
    pub feed_grace_secs: u32,
    /// Ordered by level; level 1 starts at zero turnover.
    pub vip_levels: Vec<VipLevel>,
    /// Per market; a market not listed is enabled and not halted.
    #[serde(default)]
    pub markets: BTreeMap<String, MarketSwitch>,
    #[serde(default)]
    pub wallet: WalletLimits,
    /// Whether admin accounts must use two-factor authentication to administer.
    #[serde(default)]
    pub require_admin_totp: bool,
}

impl Default for TradingSettings {
    fn default() -> Self {
        let level = |level, units, payout_bonus_bp| VipLevel {
            level,
            min_turnover: Money::from_units(units),
            payout_bonus_bp,
        };
        TradingSettings {
            payout_rate_bp: 8_500,
            durations_secs: vec![5, 10, 15, 30, 60, 120, 300],
            min_stake: Money::from_units(10),
            max_stake: Money::from_units(1_000),
            sell_spread_bp: 500,
            sell_cutoff_secs: 2,
            feed_grace_secs: 30,
            vip_levels: vec![
                level(1, 0, 0),
                level(2, 10_000, 100),
                level(3, 50_000, 200),
                level(4, 250_000, 300),
                level(5, 1_000_000, 400),
            ],
            markets: BTreeMap::new(),
            wallet: WalletLimits::default(),
            require_admin_totp: false,
        }
    }
}

/// A term that is not acceptable: `(field, why)`.
pub type SettingsError = (&'static str, String);

impl TradingSettings {
    /// The VIP level for a rolling 30-day turnover.
    pub fn vip_level(&self, turnover: Money) -> VipLevel {
        self.vip_levels.iter().rev().find(|l| turnover >= l.min_turnover).copied().unwrap_or(VipLevel {
            level: 1,
            min_turnover: Money::ZERO,
            payout_bonus_bp: 0,
        })
    }

    pub fn market(&self, symbol: &str) -> MarketSwitch {
        self.markets.get(symbol).copied().unwrap_or_default()
    }

    /// The payout rate a user at `level` is offered now.
    pub fn payout_rate_for(&self, level: &VipLevel) -> u32 {
        self.payout_rate_bp + level.payout_bonus_bp
    }

    pub fn validate(&self) -> Result<(), SettingsError> {
        let fail = |field, why: &str| Err((field, why.to_owned()));
        if !(1..=50_000).contains(&self.payout_rate_bp) {
            return fail("payoutRate", "must be above 0 and at most 5 (500 %)");
        }
        if self.durations_secs.is_empty() || self.durations_secs.len() > 20 {
            return fail("durations", "must list 1 to 20 durations");
        }
        if self.durations_secs.iter().any(|d| !(1..=86_400).contains(d)) {
            return fail("durations", "each must be between 1 and 86400 seconds");
        }
        if self.durations_secs.windows(2).any(|w| w[0] >= w[1]) {
            return fail("durations", "must be in increasing order without repeats");
        }
        if !self.min_stake.is_positive() {
            return fail("minStake", "must be positive");
        }
        if self.max_stake < self.min_stake || self.max_stake > Money::from_units(1_000_000) {
            return fail("maxStake", "must be at least minStake and at most 1000000.00");
        }
        if self.sell_spread_bp > 10_000 {
            return fail("sellSpread", "must be between 0 and 1");
        }
        if self.sell_cutoff_secs > 86_400 {
            return fail("sellCutoffSeconds", "must be at most 86400");
        }
        if !FEED_GRACE_SECS.contains(&self.feed_grace_secs) {
            return fail("feedGraceSeconds", "must be between 1 and 3600");
        }
        let levels = &self.vip_levels;
        if levels.is_empty() || levels[0].level != 1 || levels[0].min_turnover != Money::ZERO {
            return fail("vipLevels", "must start with level 1 at a turnover of 0");
        }
        for pair in levels.windows(2) {
            if pair[1].level != pair[0].level + 1 || pair[1].min_turnover <= pair[0].min_turnover {
                return fail("vipLevels", "levels must count up by one with increasing turnover");
            }
            if pair[1].payout_bonus_bp < pair[0].payout_bonus_bp {
                return fail("vipLevels", "a higher level may not pay less");
            }
        }
        if levels.iter().any(|l| l.payout_bonus_bp > 5_000) {
            return fail("vipLevels", "a bonus may be at most 0.5");
        }
        let w = &self.wallet;
        for (field, value) in [
            ("startingBalance", w.starting_balance),
            ("maxDeposit", w.max_deposit),
            ("maxDepositPerDay", w.max_deposit_per_day),
            ("maxBalance", w.max_balance),
        ] {
            if !value.is_positive() || value > Money::from_units(1_000_000_000) {
                return fail(field, "must be positive and at most 1000000000.00");
            }
        }
        if w.max_deposit > w.max_deposit_per_day {
            return fail("maxDeposit", "must not exceed maxDepositPerDay");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_vip_levels_follow_turnover() {
        let settings = TradingSettings::default();
        settings.validate().unwrap();
        assert_eq!(settings.vip_level(Money::ZERO).level, 1);
        assert_eq!(settings.vip_level(Money::from_units(9_999)).level, 1);
        assert_eq!(settings.vip_level(Money::from_units(10_000)).level, 2);
        assert_eq!(settings.vip_level(Money::from_units(5_000_000)).level, 5);
        assert_eq!(settings.payout_rate_for(&settings.vip_level(Money::from_units(60_000))), 8_700);
    }

    #[test]
    fn invalid_terms_name_their_field() {
        for (change, field) in [
            ((|s: &mut TradingSettings| s.payout_rate_bp = 0) as fn(&mut TradingSettings), "payoutRate"),
            (|s| s.durations_secs = vec![], "durations"),
            (|s| s.durations_secs = vec![10, 5], "durations"),
            (|s| s.min_stake = Money::ZERO, "minStake"),
            (|s| s.max_stake = Money::from_units(5), "maxStake"),
            (|s| s.sell_spread_bp = 10_001, "sellSpread"),
            (|s| s.feed_grace_secs = 0, "feedGraceSeconds"),
            (|s| s.vip_levels[1].min_turnover = Money::ZERO, "vipLevels"),
        ] {
            let mut settings = TradingSettings::default();
            change(&mut settings);
            assert_eq!(settings.validate().map_err(|(f, _)| f), Err(field));
        }
    }
}
