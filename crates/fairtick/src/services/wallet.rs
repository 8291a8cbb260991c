//! The virtual wallet: balances, deposits, withdrawals, resets and the statement.

use chrono::{DateTime, Utc};
use fairtick_core::UserId;
use fairtick_core::ledger::TransactionKind;
use fairtick_core::wallet::{WalletLimits, WalletOp, WalletRefusal, WalletState};
use futures::Stream;
use sha2::{Digest, Sha256};

use super::events::{Event, EventBus};
use super::paging;
use super::settings::Settings;
use super::{Error, Result};
use crate::store::{IdempotencyKey, StatementQuery, StatementRow, Store, WalletOutcome, WalletReceipt};

/// Most statement rows in one page, and the default.
pub const MAX_PAGE: u32 = 200;
pub const DEFAULT_PAGE: u32 = 50;

/// Most rows one CSV export holds; the filters narrow a larger statement.
pub const MAX_EXPORT_ROWS: usize = 100_000;

/// Whether an answer is new or repeats one already given for the same idempotency key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub receipt: WalletReceipt,
    pub replayed: bool,
}

/// One statement page and the cursor of the next, if any.
#[derive(Clone, Debug)]
pub struct Page {
    pub rows: Vec<StatementRow>,
    pub next_cursor: Option<String>,
}

#[derive(Clone)]
pub struct Wallet {
    store: Store,
    settings: Settings,
    events: EventBus,
}

impl Wallet {
    pub fn new(store: Store, settings: Settings, events: EventBus) -> Wallet {
        Wallet { store, settings, events }
    }

    /// The wallet limits in force now.
    pub fn limits(&self) -> WalletLimits {
        self.settings.current().wallet
    }

    pub async fn balances(&self, user: UserId, now: DateTime<Utc>) -> Result<WalletState> {
        Ok(self.store.wallet_state(user, now).await?)
    }

    /// Applies a deposit, withdrawal or reset once per idempotency key.
    pub async fn apply(
        &self,
        user: UserId,
        op: WalletOp,
        idempotency_key: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<Answer> {
        if let WalletOp::Deposit(amount) | WalletOp::Withdraw(amount) = op
            && !amount.is_positive()
        {
            return Err(Error::invalid("amount", "must be greater than zero"));
        }
        let key = idempotency_key.map(|key| IdempotencyKey { request_hash: request_hash(&op), key });
        match self.store.move_funds(user, op, &self.limits(), key.as_ref(), now).await? {
            WalletOutcome::Done(receipt) => {
                self.events.publish(Event::Balance(user));
                Ok(Answer { receipt, replayed: false })
            }
            WalletOutcome::Replayed(receipt) => Ok(Answer { receipt, replayed: true }),
            WalletOutcome::KeyReused => Err(Error::IdempotencyKeyReused),
            WalletOutcome::Refused(refusal) => Err(refused(refusal)),
        }
    }

    pub async fn statement(&self, user: UserId, filter: StatementFilter) -> Result<Page> {
        let limit = paging::limit(filter.limit, DEFAULT_PAGE, MAX_PAGE)?;
        let before = paging::cursor(filter.cursor.as_deref())?;
        let query =
            StatementQuery { kind: filter.kind, from: filter.from, to: filter.to, before, limit: limit + 1 };
        let (rows, next_cursor) =
            paging::split(self.store.statement(user, &query).await?, limit, |row| row.id);
        Ok(Page { rows, next_cursor })
    }

    /// Every row matching the filter (newest first), up to [`MAX_EXPORT_ROWS`], a page at a
    /// time, each read when the one before has been taken: an export never holds more than a
    /// page. The first page is read before this answers, so that a bad filter is an error, not
    /// a broken stream.
    pub async fn export(
        &self,
        user: UserId,
        mut filter: StatementFilter,
    ) -> Result<impl Stream<Item = Result<Vec<StatementRow>>> + Send + 'static> {
        filter.limit = Some(MAX_PAGE);
        let first = self.statement(user, filter.clone()).await?;
        let wallet = self.clone();
        let pages = futures::stream::try_unfold(Some((first, filter, 0)), move |next| {
            let wallet = wallet.clone();
            async move {
                let Some((page, mut filter, sent)) = next else { return Ok(None) };
                let mut rows = page.rows;
                rows.truncate(MAX_EXPORT_ROWS - sent);
                let sent = sent + rows.len();
                let following = match page.next_cursor {
                    Some(cursor) if sent < MAX_EXPORT_ROWS => {
                        filter.cursor = Some(cursor);
                        Some((wallet.statement(user, filter.clone()).await?, filter, sent))
                    }
                    _ => None,
                };
                Ok(Some((rows, following)))
            }
        });
        Ok(pages)
    }
}

/// Statement filters as received.
#[derive(Clone, Debug, Default)]
pub struct StatementFilter {
    pub kind: Option<TransactionKind>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

/// Identifies the request an idempotency key was first used with: the operation and amount
/// as parsed, so `"10"` and `10.00` count as the same request.
fn request_hash(op: &WalletOp) -> String {
    let canonical = match op {
        WalletOp::Deposit(amount) => format!("wallet.deposit:{}", amount.cents()),
        WalletOp::Withdraw(amount) => format!("wallet.withdraw:{}", amount.cents()),
        WalletOp::Reset => "wallet.reset".to_owned(),
    };
    hex::encode(Sha256::digest(canonical.as_bytes()))
}

fn refused(refusal: WalletRefusal) -> Error {
    let code = match refusal {
        WalletRefusal::NotPositive => return Error::invalid("amount", refusal),
        WalletRefusal::DepositTooLarge { .. } => "deposit_too_large",
        WalletRefusal::DailyDepositLimit { .. } => "daily_deposit_limit",
        WalletRefusal::BalanceCap { .. } => "balance_cap",
        WalletRefusal::InsufficientFunds { .. } => "insufficient_funds",
        WalletRefusal::TradesInPlay { .. } => {
            return Error::Conflict { code: "trades_in_play", message: refusal.to_string() };
        }
    };
    Error::Refused { code, message: refusal.to_string() }
}
