//! The rules of the virtual wallet: how much may be deposited, withdrawn or reset, and the
//! transfer each of those becomes.
//!
//! The store calls these inside its database transaction, with figures it read under the
//! same lock, so a check and the write it guards can never drift apart.

use serde::{Deserialize, Serialize};

use crate::ledger::{AccountKind, TransactionKind, Transfer};
use crate::money::Money;

/// The configurable limits on virtual funds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WalletLimits {
    /// Credited at registration and restored by a reset.
    pub starting_balance: Money,
    /// The most one deposit may add.
    pub max_deposit: Money,
    /// The most that may be deposited in any rolling 24 hours.
    pub max_deposit_per_day: Money,
    /// A deposit may not lift the total balance (available + in play) above this.
    pub max_balance: Money,
}

impl Default for WalletLimits {
    fn default() -> Self {
        WalletLimits {
            starting_balance: Money::from_units(10_000),
            max_deposit: Money::from_units(10_000),
            max_deposit_per_day: Money::from_units(50_000),
            max_balance: Money::from_units(1_000_000),
        }
    }
}

/// Why the wallet refused a movement. Each carries the figure the user needs to fix it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WalletRefusal {
    #[error("amount must be greater than zero")]
    NotPositive,
    #[error("a single deposit may be at most {max}")]
    DepositTooLarge { max: Money },
    #[error("deposits are limited to {limit} per 24 hours; {remaining} remains")]
    DailyDepositLimit { limit: Money, remaining: Money },
    #[error("the balance may not exceed {cap} through deposits; at most {room} can be added")]
    BalanceCap { cap: Money, room: Money },
    #[error("the amount exceeds the available balance of {available}")]
    InsufficientFunds { available: Money },
    #[error("a reset is not possible while {in_play} is in play; wait for open trades to end")]
    TradesInPlay { in_play: Money },
}

/// A user's balances as the wallet sees them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalletState {
    pub available: Money,
    pub in_play: Money,
    /// Sum of this user's deposits in the last 24 hours.
    pub deposited_last_day: Money,
}

impl WalletState {
    pub fn balance(&self) -> Money {
        self.available.checked_add(self.in_play).unwrap_or(Money::ZERO)
    }
}

/// A movement a user asks of their wallet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalletOp {
    Deposit(Money),
    Withdraw(Money),
    Reset,
}

impl WalletOp {
    /// The transfer this operation makes from `state`, `None` when there is nothing to move
    /// (a reset of a balance already at the start), or why it is refused.
    pub fn plan(self, limits: &WalletLimits, state: &WalletState) -> Result<Option<Transfer>, WalletRefusal> {
        match self {
            WalletOp::Deposit(amount) => plan_deposit(limits, state, amount).map(Some),
            WalletOp::Withdraw(amount) => plan_withdrawal(state, amount).map(Some),
            WalletOp::Reset => plan_reset(limits, state),
        }
    }
}

/// The transfer crediting a new account.
pub fn signup_credit(limits: &WalletLimits) -> Transfer {
    Transfer::between(
        TransactionKind::SignupCredit,
        AccountKind::Faucet,
        AccountKind::Cash,
        limits.starting_balance,
    )
    .expect("the starting balance is a positive configured amount")
}

pub fn plan_deposit(
    limits: &WalletLimits,
    state: &WalletState,
    amount: Money,
) -> Result<Transfer, WalletRefusal> {
    if !amount.is_positive() {
        return Err(WalletRefusal::NotPositive);
    }
    if amount > limits.max_deposit {
        return Err(WalletRefusal::DepositTooLarge { max: limits.max_deposit });
    }
    let remaining = limits.max_deposit_per_day.checked_sub(state.deposited_last_day).unwrap_or(Money::ZERO);
    if amount > remaining {
        return Err(WalletRefusal::DailyDepositLimit {
            limit: limits.max_deposit_per_day,
            remaining: remaining.max(Money::ZERO),
        });
    }
    let room = limits.max_balance.checked_sub(state.balance()).unwrap_or(Money::ZERO).max(Money::ZERO);
    if amount > room {
        return Err(WalletRefusal::BalanceCap { cap: limits.max_balance, room });
    }
    Ok(Transfer::between(TransactionKind::Deposit, AccountKind::Faucet, AccountKind::Cash, amount)
        .expect("a positive amount within limits"))
}

pub fn plan_withdrawal(state: &WalletState, amount: Money) -> Result<Transfer, WalletRefusal> {
    if !amount.is_positive() {
        return Err(WalletRefusal::NotPositive);
    }
    if amount > state.available {
        return Err(WalletRefusal::InsufficientFunds { available: state.available });
    }
    Ok(Transfer::between(TransactionKind::Withdrawal, AccountKind::Cash, AccountKind::Faucet, amount)
        .expect("a positive amount"))
}

/// The transfer that brings the available balance back to the starting balance, or `None`
/// when it is already there.
pub fn plan_reset(limits: &WalletLimits, state: &WalletState) -> Result<Option<Transfer>, WalletRefusal> {
    if state.in_play.is_positive() {
        return Err(WalletRefusal::TradesInPlay { in_play: state.in_play });
    }
    let delta =
        limits.starting_balance.checked_sub(state.available).expect("balances are far below i64 range");
    let transfer = match delta.cents() {
        0 => return Ok(None),
        d if d > 0 => {
            Transfer::between(TransactionKind::Reset, AccountKind::Faucet, AccountKind::Cash, delta)
        }
        _ => Transfer::between(
            TransactionKind::Reset,
            AccountKind::Cash,
            AccountKind::Faucet,
            delta.checked_neg().expect("negation of a small amount"),
        ),
    };
    Ok(Some(transfer.expect("a non-zero amount")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn units(n: i64) -> Money {
        Money::from_units(n)
    }

    fn state(available: i64, in_play: i64, deposited: i64) -> WalletState {
        WalletState {
            available: units(available),
            in_play: units(in_play),
            deposited_last_day: units(deposited),
        }
    }

    #[test]
    fn deposits_respect_every_limit() {
        let limits = WalletLimits::default();
        for (state, amount, expected) in [
            (state(0, 0, 0), 0, Err(WalletRefusal::NotPositive)),
            (state(0, 0, 0), 10_001, Err(WalletRefusal::DepositTooLarge { max: units(10_000) })),
            (
                state(0, 0, 45_000),
                5_001,
                Err(WalletRefusal::DailyDepositLimit { limit: units(50_000), remaining: units(5_000) }),
            ),
            (
                state(995_000, 1_000, 0),
                4_001,
                Err(WalletRefusal::BalanceCap { cap: units(1_000_000), room: units(4_000) }),
            ),
        ] {
            assert_eq!(plan_deposit(&limits, &state, units(amount)).map(|t| t.kind()), expected);
        }
        let ok = plan_deposit(&limits, &state(995_000, 1_000, 45_000), units(4_000)).unwrap();
        assert_eq!(ok.change_of(AccountKind::Cash), units(4_000));
    }

    #[test]
    fn withdrawals_never_exceed_the_available_balance() {
        let s = state(100, 50, 0);
        assert_eq!(
            plan_withdrawal(&s, units(101)),
            Err(WalletRefusal::InsufficientFunds { available: units(100) })
        );
        assert_eq!(plan_withdrawal(&s, units(100)).unwrap().change_of(AccountKind::Cash), units(-100));
        assert_eq!(plan_withdrawal(&s, Money::from_cents(-1)), Err(WalletRefusal::NotPositive));
    }

    #[test]
    fn a_reset_restores_the_starting_balance_in_either_direction() {
        let limits = WalletLimits::default();
        let up = plan_reset(&limits, &state(2_500, 0, 0)).unwrap().unwrap();
        assert_eq!(up.change_of(AccountKind::Cash), units(7_500));
        let down = plan_reset(&limits, &state(12_000, 0, 0)).unwrap().unwrap();
        assert_eq!(down.change_of(AccountKind::Cash), units(-2_000));
        assert_eq!(plan_reset(&limits, &state(10_000, 0, 0)), Ok(None));
        assert_eq!(
            plan_reset(&limits, &state(10, 5, 0)),
            Err(WalletRefusal::TradesInPlay { in_play: units(5) })
        );
    }
}
