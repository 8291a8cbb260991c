//! The trading terms in force: the newest stored version (or the configured defaults), kept in
//! memory on every node, changed only by an admin through [`Settings::update`], which stores a
//! new version with its audit entry, announces the change to every connected user and tells
//! the other nodes to reload. An open trade keeps the payout rate it was accepted at; selling
//! back and the feed's grace period follow the terms in force.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use fairtick_core::Money;
use fairtick_core::settings::{TradingSettings, VipLevel};
use fairtick_core::trade::grace_outlasts_two_ticks;
use parking_lot::RwLock;
use serde_json::Value;

use super::events::{Event, EventBus, Notice};
use super::market::catalog::MarketDefinition;
use super::trades::settlement::MAX_TICKS_PER_STEP;
use super::{Error, Result};
use crate::store::{Actor, SettingsSaved, SettingsVersion, Store};

/// A change to one market's switches.
#[derive(Clone, Copy, Debug, Default)]
pub struct MarketPatch {
    pub enabled: Option<bool>,
    pub halted: Option<bool>,
}

/// A partial change of the terms; every field is optional.
#[derive(Clone, Debug, Default)]
pub struct SettingsPatch {
    pub payout_rate_bp: Option<u32>,
    pub durations_secs: Option<Vec<u32>>,
    pub min_stake: Option<Money>,
    pub max_stake: Option<Money>,
    pub sell_spread_bp: Option<u32>,
    pub sell_cutoff_secs: Option<u32>,
    pub feed_grace_secs: Option<u32>,
    pub vip_levels: Option<Vec<VipLevel>>,
    pub markets: Option<BTreeMap<String, MarketPatch>>,
    pub starting_balance: Option<Money>,
    pub max_deposit: Option<Money>,
    pub max_deposit_per_day: Option<Money>,
    pub max_balance: Option<Money>,
    pub require_admin_totp: Option<bool>,
}

/// The tick intervals of the markets the terms apply to.
#[derive(Clone, Copy, Debug)]
pub struct TickIntervals {
    pub fastest_ms: u32,
    pub slowest_ms: u32,
}

impl TickIntervals {
    pub fn of<'a>(intervals: impl IntoIterator<Item = &'a u32>) -> TickIntervals {
        let all: Vec<u32> = intervals.into_iter().copied().collect();
        TickIntervals {
            fastest_ms: all.iter().copied().min().unwrap_or(1_000),
            slowest_ms: all.iter().copied().max().unwrap_or(1_000),
        }
    }
}

/// Checks the terms against the markets' tick rates.
/// - A trade whose deciding tick has not come `feed_grace_secs` after its expiry is void. That
///   tick comes up to one interval after expiry, so a grace period of two of the slowest
///   market's intervals or less would void trades of a feed that is working.
/// - A settlement step reads at most [`MAX_TICKS_PER_STEP`] ticks of a market, from its oldest
///   open trade on: the longest duration and the grace period must fit in half of them at the
///   fastest rate, or newer trades would be voided although their ticks exist.
pub fn check_against_markets(terms: &TradingSettings, markets: TickIntervals) -> Result<()> {
    let TickIntervals { fastest_ms, slowest_ms } = markets;
    if !grace_outlasts_two_ticks(i64::from(terms.feed_grace_secs) * 1_000, i64::from(slowest_ms)) {
        return Err(Error::invalid(
            "feedGraceSeconds",
            format!("must be longer than two ticks of the slowest market ({slowest_ms} ms each)"),
        ));
    }
    let longest = terms.durations_secs.iter().max().copied().unwrap_or(0) + terms.feed_grace_secs;
    let spanned = u64::from(longest) * 1_000 / u64::from(fastest_ms.max(1));
    if spanned > u64::from(MAX_TICKS_PER_STEP / 2) {
        let most = u64::from(MAX_TICKS_PER_STEP / 2) * u64::from(fastest_ms) / 1_000;
        return Err(Error::invalid(
            "durations",
            format!(
                "the longest plus feedGraceSeconds must be at most {most} s on a market ticking every \
                 {fastest_ms} ms"
            ),
        ));
    }
    Ok(())
}

/// The longest duration offered, and the first market on which a trade that long can reach
/// past the epoch after the one it was accepted in: accepted just after an epoch's last tick,
/// it enters on the next epoch's first, and its exit (the last tick at or before expiry) is in
/// that epoch only if the duration is shorter than the epoch's span. Otherwise the prices it
/// ends on were not fixed when it was accepted, and its receipt does not prove it fair
/// (docs/fairness.md §4).
pub fn beyond_the_next_epoch<'a>(
    terms: &TradingSettings,
    epoch_length: Duration,
    markets: impl IntoIterator<Item = &'a MarketDefinition>,
) -> Option<(u32, &'a str)> {
    let longest = terms.durations_secs.iter().max().copied()?;
    let longest_ms = u128::from(longest) * 1_000;
    markets
        .into_iter()
        .find(|market| longest_ms >= market.epoch_span(epoch_length).as_millis())
        .map(|market| (longest, market.symbol.as_str()))
}

#[derive(Clone)]
pub struct Settings {
    store: Store,
    current: Arc<RwLock<Arc<TradingSettings>>>,
    defaults: Arc<TradingSettings>,
    events: EventBus,
}

impl Settings {
    /// The newest stored version, or `defaults` when no admin has changed anything yet.
    pub async fn load(store: Store, defaults: TradingSettings, events: EventBus) -> anyhow::Result<Settings> {
        let settings = Settings {
            store,
            current: Arc::new(RwLock::new(Arc::new(defaults.clone()))),
            defaults: Arc::new(defaults),
            events,
        };
        settings.reload().await?;
        Ok(settings)
    }

    pub fn current(&self) -> Arc<TradingSettings> {
        self.current.read().clone()
    }

    /// Re-reads the newest version (another node may have changed it).
    pub async fn reload(&self) -> Result<()> {
        let (_, stored) = self.latest().await?;
        *self.current.write() = stored;
        Ok(())
    }

    /// The newest stored version and its id, or the defaults.
    async fn latest(&self) -> Result<(Option<i64>, Arc<TradingSettings>)> {
        Ok(match self.store.latest_settings().await? {
            Some((id, value)) => {
                let stored = serde_json::from_value::<TradingSettings>(value)
                    .map_err(|e| Error::Internal(format!("stored settings: {e}")))?;
                (Some(id), Arc::new(stored))
            }
            None => (None, self.defaults.clone()),
        })
    }

    /// Applies a partial change: validated as a whole, stored as a new version with its audit
    /// entry, then announced.
    pub async fn update(
        &self,
        actor: &Actor,
        patch: SettingsPatch,
        known_markets: &[String],
        intervals: TickIntervals,
        now: DateTime<Utc>,
    ) -> Result<Arc<TradingSettings>> {
        // Built on the newest stored version, not this node's copy, which another node's
        // change may not have reached yet.
        let (based_on, before) = self.latest().await?;
        let mut next = (*before).clone();
        let mut changed = Vec::new();
        macro_rules! apply {
            ($field:ident, $name:literal) => {
                if let Some(value) = patch.$field {
                    next.$field = value;
                    changed.push($name.to_owned());
                }
            };
        }
        apply!(payout_rate_bp, "payoutRate");
        apply!(durations_secs, "durations");
        apply!(min_stake, "minStake");
        apply!(max_stake, "maxStake");
        apply!(sell_spread_bp, "sellSpread");
        apply!(sell_cutoff_secs, "sellCutoffSeconds");
        apply!(feed_grace_secs, "feedGraceSeconds");
        apply!(vip_levels, "vipLevels");
        apply!(require_admin_totp, "requireAdminTotp");
        for (value, field, name) in [
            (patch.starting_balance, &mut next.wallet.starting_balance, "startingBalance"),
            (patch.max_deposit, &mut next.wallet.max_deposit, "maxDeposit"),
            (patch.max_deposit_per_day, &mut next.wallet.max_deposit_per_day, "maxDepositPerDay"),
            (patch.max_balance, &mut next.wallet.max_balance, "maxBalance"),
        ] {
            if let Some(value) = value {
                *field = value;
                changed.push(name.to_owned());
            }
        }
        if let Some(markets) = patch.markets {
            for (symbol, MarketPatch { enabled, halted }) in markets {
                if !known_markets.contains(&symbol) {
                    return Err(Error::invalid("markets", format!("{symbol:?} is not a market")));
                }
                let switch = next.markets.entry(symbol).or_default();
                switch.enabled = enabled.unwrap_or(switch.enabled);
                switch.halted = halted.unwrap_or(switch.halted);
            }
            changed.push("markets".to_owned());
        }
        if changed.is_empty() {
            return Err(Error::invalid("settings", "must name at least one setting to change"));
        }
        next.validate().map_err(|(field, why)| Error::Invalid { field, message: why })?;
        check_against_markets(&next, intervals)?;
        let to_json = |s: &TradingSettings| serde_json::to_value(s).expect("settings serialise");
        let saved = self
            .store
            .save_settings(actor, based_on, &to_json(&before), &to_json(&next), &changed, now)
            .await?;
        match saved {
            SettingsSaved::Saved(_) => {}
            SettingsSaved::Superseded => {
                return Err(Error::Conflict {
                    code: "settings_changed",
                    message: "the terms changed while this change was being made: read them again and retry"
                        .into(),
                });
            }
            SettingsSaved::NotAnAdmin => {
                let message = "only an active admin may change the terms".into();
                return Err(Error::Forbidden { code: "forbidden", message });
            }
        }
        let next = Arc::new(next);
        *self.current.write() = next.clone();
        self.events.publish(Event::SettingsChanged);
        self.events.publish(Event::Notice(Notice {
            level: "info".to_owned(),
            title: "Trading terms changed".to_owned(),
            trade_id: None,
            message: format!(
                "Changed: {}. Open trades keep the payout rate they were accepted at; selling back follows the current terms.",
                changed.join(", ")
            ),
        }));
        Ok(next)
    }

    pub async fn history(&self, before: Option<i64>, limit: u32) -> Result<Vec<SettingsVersion>> {
        Ok(self.store.settings_history(before, limit).await?)
    }

    /// The JSON form of the current terms.
    pub fn current_json(&self) -> Value {
        serde_json::to_value(&*self.current()).expect("settings serialise")
    }
}

#[cfg(test)]
mod tests {
    use fairtick_core::price::Price;

    use super::*;
    use crate::services::market::catalog::{self, MarketSource, Replay};

    #[test]
    fn a_duration_is_provable_when_it_ends_within_the_epoch_after_its_acceptance() {
        let terms = TradingSettings { durations_secs: vec![5, 300], ..TradingSettings::default() };
        let markets = catalog::default_markets(1_000).unwrap();
        let beyond = |epoch_ms| beyond_the_next_epoch(&terms, Duration::from_millis(epoch_ms), &markets);
        assert_eq!(beyond(600_000), None);
        assert_eq!(beyond(301_000), None);
        // 300 ticks of a second.
        assert_eq!(beyond(300_999), Some((300, "SIMV25")));
    }

    #[test]
    fn a_replay_market_is_checked_against_its_file_not_the_epoch_length() {
        let terms = TradingSettings { durations_secs: vec![5, 10], ..TradingSettings::default() };
        let replay = |prices: usize| MarketDefinition {
            symbol: "REPLAY-X".into(),
            name: "Replay of X".into(),
            tick_interval_ms: 1_000,
            source: MarketSource::Replay(Arc::new(Replay {
                source: "x.csv".into(),
                digest: String::new(),
                prices: vec![Price::parse("1").unwrap(); prices],
            })),
        };
        let hour = Duration::from_secs(3_600);
        assert_eq!(beyond_the_next_epoch(&terms, hour, &[replay(11)]), None);
        assert_eq!(beyond_the_next_epoch(&terms, hour, &[replay(10)]), Some((10, "REPLAY-X")));
    }
}
