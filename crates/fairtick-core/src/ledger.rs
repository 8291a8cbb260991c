//! Double-entry bookkeeping: every movement of money is a [`Transfer`] whose postings sum to
//! zero across accounts.
//!
//! A transfer is built here, checked here, and only then handed to the store, which applies
//! it atomically. The store never invents postings of its own.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::account::UnknownVariant;
use crate::money::Money;

/// The kinds of ledger account. Each user has a cash and an in-play account; the house and the
/// virtual faucet are single system accounts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountKind {
    /// What the user can stake or withdraw ("available").
    Cash,
    /// Stakes of the user's open trades.
    InPlay,
    /// The counterparty of every trade.
    House,
    /// Where virtual deposits come from and withdrawals go.
    Faucet,
}

impl AccountKind {
    pub const ALL: [AccountKind; 4] =
        [AccountKind::Cash, AccountKind::InPlay, AccountKind::House, AccountKind::Faucet];

    pub const fn as_str(self) -> &'static str {
        match self {
            AccountKind::Cash => "cash",
            AccountKind::InPlay => "in_play",
            AccountKind::House => "house",
            AccountKind::Faucet => "faucet",
        }
    }

    /// A user's accounts can never be overdrawn; the system accounts are the other side of
    /// every user's gain and may go below zero.
    pub const fn may_go_negative(self) -> bool {
        matches!(self, AccountKind::House | AccountKind::Faucet)
    }

    pub const fn belongs_to_user(self) -> bool {
        matches!(self, AccountKind::Cash | AccountKind::InPlay)
    }
}

impl FromStr for AccountKind {
    type Err = UnknownVariant;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AccountKind::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| UnknownVariant(s.to_owned()))
    }
}

/// Why money moved. Shown to users on their statement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransactionKind {
    SignupCredit,
    Deposit,
    Withdrawal,
    Reset,
    Stake,
    Payout,
    Refund,
    Sell,
    /// A lost trade's stake going to the house. It moves nothing on the user's cash account.
    Loss,
}

impl TransactionKind {
    pub const ALL: [TransactionKind; 9] = [
        TransactionKind::SignupCredit,
        TransactionKind::Deposit,
        TransactionKind::Withdrawal,
        TransactionKind::Reset,
        TransactionKind::Stake,
        TransactionKind::Payout,
        TransactionKind::Refund,
        TransactionKind::Sell,
        TransactionKind::Loss,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            TransactionKind::SignupCredit => "signup_credit",
            TransactionKind::Deposit => "deposit",
            TransactionKind::Withdrawal => "withdrawal",
            TransactionKind::Reset => "reset",
            TransactionKind::Stake => "stake",
            TransactionKind::Payout => "payout",
            TransactionKind::Refund => "refund",
            TransactionKind::Sell => "sell",
            TransactionKind::Loss => "loss",
        }
    }

    /// The line a user reads on the statement.
    pub const fn description(self) -> &'static str {
        match self {
            TransactionKind::SignupCredit => "Welcome credit of virtual funds",
            TransactionKind::Deposit => "Virtual deposit",
            TransactionKind::Withdrawal => "Virtual withdrawal",
            TransactionKind::Reset => "Practice account reset",
            TransactionKind::Stake => "Stake placed on a trade",
            TransactionKind::Payout => "Trade won: payout",
            TransactionKind::Refund => "Trade refunded",
            TransactionKind::Sell => "Trade sold back",
            TransactionKind::Loss => "Trade lost",
        }
    }
}

impl fmt::Display for TransactionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TransactionKind {
    type Err = UnknownVariant;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TransactionKind::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| UnknownVariant(s.to_owned()))
    }
}

/// One line of a transfer: a signed amount on one account (of the transfer's user, for
/// [`AccountKind::Cash`] and [`AccountKind::InPlay`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Posting {
    pub account: AccountKind,
    pub amount: Money,
}

/// Why a set of postings is not a transfer, or cannot be applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    #[error("postings must sum to zero")]
    Unbalanced,
    #[error("a posting of zero moves nothing")]
    ZeroPosting,
    #[error("an account appears twice in one transfer")]
    DuplicateAccount,
    #[error("a transfer needs at least two postings")]
    TooFewPostings,
    #[error("amount out of range")]
    Overflow,
    #[error("the {0:?} account would go below zero")]
    Overdrawn(AccountKind),
}

/// A balanced set of postings with its reason. The only way to build one checks the
/// invariants, so a `Transfer` in hand always sums to zero.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transfer {
    kind: TransactionKind,
    postings: Vec<Posting>,
}

impl Transfer {
    /// Builds a transfer from postings, dropping none: zero postings are an error so that a
    /// caller's arithmetic slip is not silently hidden.
    pub fn new(kind: TransactionKind, postings: Vec<Posting>) -> Result<Transfer, LedgerError> {
        if postings.len() < 2 {
            return Err(LedgerError::TooFewPostings);
        }
        let mut sum = Money::ZERO;
        for (i, posting) in postings.iter().enumerate() {
            if posting.amount == Money::ZERO {
                return Err(LedgerError::ZeroPosting);
            }
            if postings[..i].iter().any(|p| p.account == posting.account) {
                return Err(LedgerError::DuplicateAccount);
            }
            sum = sum.checked_add(posting.amount).ok_or(LedgerError::Overflow)?;
        }
        if sum != Money::ZERO {
            return Err(LedgerError::Unbalanced);
        }
        Ok(Transfer { kind, postings })
    }

    /// Moves a positive `amount` from one account to another.
    pub fn between(
        kind: TransactionKind,
        from: AccountKind,
        to: AccountKind,
        amount: Money,
    ) -> Result<Transfer, LedgerError> {
        let negated = amount.checked_neg().ok_or(LedgerError::Overflow)?;
        Transfer::new(kind, vec![Posting { account: from, amount: negated }, Posting { account: to, amount }])
    }

    pub fn kind(&self) -> TransactionKind {
        self.kind
    }

    pub fn postings(&self) -> &[Posting] {
        &self.postings
    }

    /// The signed change this transfer makes to one account (zero if it does not touch it).
    pub fn change_of(&self, account: AccountKind) -> Money {
        self.postings.iter().find(|p| p.account == account).map_or(Money::ZERO, |p| p.amount)
    }
}

/// The four balances one user's transfers can touch, for checking transfers in memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Balances {
    pub cash: Money,
    pub in_play: Money,
    pub house: Money,
    pub faucet: Money,
}

impl Balances {
    pub fn get(&self, account: AccountKind) -> Money {
        match account {
            AccountKind::Cash => self.cash,
            AccountKind::InPlay => self.in_play,
            AccountKind::House => self.house,
            AccountKind::Faucet => self.faucet,
        }
    }

    fn slot(&mut self, account: AccountKind) -> &mut Money {
        match account {
            AccountKind::Cash => &mut self.cash,
            AccountKind::InPlay => &mut self.in_play,
            AccountKind::House => &mut self.house,
            AccountKind::Faucet => &mut self.faucet,
        }
    }

    /// Applies a transfer all or nothing, refusing any that would overdraw a user account.
    /// This is the rule the store enforces with a conditional update and a `CHECK`.
    pub fn apply(&mut self, transfer: &Transfer) -> Result<(), LedgerError> {
        let mut next = *self;
        for posting in transfer.postings() {
            let slot = next.slot(posting.account);
            *slot = slot.checked_add(posting.amount).ok_or(LedgerError::Overflow)?;
            if slot.is_negative() && !posting.account.may_go_negative() {
                return Err(LedgerError::Overdrawn(posting.account));
            }
        }
        *self = next;
        Ok(())
    }

    /// Sum of every account: zero whenever all money came through transfers.
    pub fn total(&self) -> Option<Money> {
        self.cash.checked_add(self.in_play)?.checked_add(self.house)?.checked_add(self.faucet)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AccountKind::*;
    use proptest::prelude::*;

    fn m(cents: i64) -> Money {
        Money::from_cents(cents)
    }

    #[test]
    fn unbalanced_and_degenerate_transfers_are_refused() {
        let p = |account, cents| Posting { account, amount: m(cents) };
        for (postings, why) in [
            (vec![p(Cash, 5), p(Faucet, -4)], LedgerError::Unbalanced),
            (vec![p(Cash, 0), p(Faucet, 0)], LedgerError::ZeroPosting),
            (vec![p(Cash, 5), p(Cash, -5)], LedgerError::DuplicateAccount),
            (vec![p(Cash, 5)], LedgerError::TooFewPostings),
        ] {
            assert_eq!(Transfer::new(TransactionKind::Deposit, postings), Err(why));
        }
    }

    #[test]
    fn an_overdraft_changes_nothing() {
        let mut balances = Balances { cash: m(100), ..Balances::default() };
        let stake = Transfer::between(TransactionKind::Stake, Cash, InPlay, m(101)).unwrap();
        assert_eq!(balances.apply(&stake), Err(LedgerError::Overdrawn(Cash)));
        assert_eq!(balances, Balances { cash: m(100), ..Balances::default() });
    }

    /// The kinds of movement the platform makes, as (kind, from, to).
    const MOVES: [(TransactionKind, AccountKind, AccountKind); 7] = [
        (TransactionKind::Deposit, Faucet, Cash),
        (TransactionKind::Withdrawal, Cash, Faucet),
        (TransactionKind::Stake, Cash, InPlay),
        (TransactionKind::Refund, InPlay, Cash),
        (TransactionKind::Loss, InPlay, House),
        (TransactionKind::Payout, House, Cash),
        (TransactionKind::Sell, InPlay, Cash),
    ];

    proptest! {
        #[test]
        fn no_sequence_of_transfers_breaks_an_invariant(
            ops in prop::collection::vec((0..MOVES.len(), 1i64..5_000_000), 1..200)
        ) {
            let mut balances = Balances::default();
            for (which, cents) in ops {
                let (kind, from, to) = MOVES[which];
                let transfer = Transfer::between(kind, from, to, m(cents)).unwrap();
                let before = balances;
                if balances.apply(&transfer).is_err() {
                    prop_assert_eq!(balances, before);
                }
                prop_assert_eq!(balances.total(), Some(Money::ZERO));
                prop_assert!(!balances.cash.is_negative());
                prop_assert!(!balances.in_play.is_negative());
            }
        }
    }
}
