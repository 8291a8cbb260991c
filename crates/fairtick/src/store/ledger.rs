//! Money movements: applying a balanced [`Transfer`] atomically, the wallet operations, the
//! user's statement, and the idempotency records that make retries safe.
//!
//! A user account is changed only inside a write transaction that first read its balance under
//! lock and checked the change against it ([`super::bulk::LockedAccounts`]); the `CHECK` on
//! `accounts` is the second line of defence.

use chrono::{DateTime, Duration, Utc};
use fairtick_core::Money;
use fairtick_core::UserId;
use fairtick_core::ledger::{AccountKind, TransactionKind};
use fairtick_core::wallet::{WalletLimits, WalletOp, WalletRefusal, WalletState};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sqlx::AnyConnection;

use super::bulk::Locking;
use super::dual::{BatchTx, Prepared};
use super::group_commit::{WriteOutcome, WriteRequest};
use super::{Store, StoreError, StoreResult, time_from_ms};

/// What a user deposited since `$2`: the daily deposit limit's measure. The kind is written
/// out, not bound, so that both engines see the condition of the partial index
/// `ledger_deposits_by_user_time`; the cash account is found by its user, not by scanning
/// every account for the postings'.
const DEPOSITED_SINCE: &str = "SELECT CAST(COALESCE(SUM(p.amount), 0) AS BIGINT) \
     FROM ledger_transactions t \
     JOIN accounts a ON a.user_id = t.user_id AND a.kind = 'cash' \
     JOIN postings p ON p.account_id = a.id AND p.transaction_id = t.id \
     WHERE t.user_id = $1 AND t.kind = 'deposit' AND t.created_at > $2";

fn a_day_before(now: DateTime<Utc>) -> i64 {
    (now - Duration::hours(24)).timestamp_millis()
}

/// One line of a user's statement: a movement of their available (cash) balance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatementRow {
    /// The ledger transaction's id.
    pub id: i64,
    pub kind: TransactionKind,
    /// Signed change of the available balance.
    pub amount: Money,
    /// Available balance right after this movement.
    pub balance_after: Money,
    pub reference: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// Filters and cursor of a statement page, newest first.
#[derive(Clone, Debug, Default)]
pub struct StatementQuery {
    pub kind: Option<TransactionKind>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Only transactions older than this id (the previous page's last id).
    pub before: Option<i64>,
    pub limit: u32,
}

/// What a wallet operation did, kept so that a retry can be answered identically.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalletReceipt {
    /// The statement line written, or `None` when nothing needed to move.
    pub entry: Option<StatementRow>,
    /// Balances right after the operation.
    pub state: WalletState,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WalletOutcome {
    Done(WalletReceipt),
    /// The same request was made before with this idempotency key; here is its answer.
    Replayed(WalletReceipt),
    Refused(WalletRefusal),
    /// The idempotency key was used before for a different request.
    KeyReused,
}

/// A client's idempotency key and a digest of the request it came with.
#[derive(Clone, Debug)]
pub struct IdempotencyKey {
    pub key: String,
    pub request_hash: String,
}

/// A statement row as selected: id, kind, amount, balance after, reference, time.
type StatementTuple = (i64, String, i64, Option<i64>, Option<String>, i64);

pub(crate) enum Remembered<T> {
    Answer(T),
    OtherRequest,
}

/// What a stored idempotency record `(request_hash, response)` says to a request with `key`.
pub(crate) fn remembered_from<T: DeserializeOwned>(
    key: &IdempotencyKey,
    (hash, response): (String, String),
) -> StoreResult<Remembered<T>> {
    if hash != key.request_hash {
        return Ok(Remembered::OtherRequest);
    }
    let answer = serde_json::from_str(&response)
        .map_err(|e| StoreError::Corrupt(format!("idempotency record {:?}: {e}", key.key)))?;
    Ok(Remembered::Answer(answer))
}

impl Store {
    /// Reads a user's balances and their deposits of the last 24 hours, without locking.
    async fn read_wallet_state(
        &self,
        conn: &mut AnyConnection,
        user: UserId,
        now: DateTime<Utc>,
    ) -> StoreResult<WalletState> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT kind, balance FROM accounts WHERE user_id = $1 ORDER BY id")
                .bind(user.0)
                .fetch_all(&mut *conn)
                .await?;
        let mut state = WalletState::default();
        for (kind, balance) in rows {
            match kind.as_str() {
                "cash" => state.available = Money::from_cents(balance),
                "in_play" => state.in_play = Money::from_cents(balance),
                other => return Err(StoreError::Corrupt(format!("user {user} has a {other} account"))),
            }
        }
        let (deposited,): (i64,) = sqlx::query_as(DEPOSITED_SINCE)
            .bind(user.0)
            .bind(a_day_before(now))
            .fetch_one(&mut *conn)
            .await?;
        state.deposited_last_day = Money::from_cents(deposited);
        Ok(state)
    }

    /// The user's balances as of now.
    #[tracing::instrument(skip_all)]
    pub async fn wallet_state(&self, user: UserId, now: DateTime<Utc>) -> StoreResult<WalletState> {
        let mut conn = self.pool.acquire().await?;
        self.read_wallet_state(&mut conn, user, now).await
    }

    /// Deposits, withdraws or resets, checking the limits against balances read under the same
    /// lock that the write holds. Committed with its batch-mates (see [`super::group_commit`]).
    pub async fn move_funds(
        &self,
        user: UserId,
        op: WalletOp,
        limits: &WalletLimits,
        idempotency: Option<&IdempotencyKey>,
        now: DateTime<Utc>,
    ) -> StoreResult<WalletOutcome> {
        let request = WriteRequest::MoveFunds { user, op, limits: *limits, key: idempotency.cloned(), now };
        match self.submit(request).await? {
            WriteOutcome::Wallet(outcome) => Ok(outcome),
            WriteOutcome::Trade(_) => Err(StoreError::Corrupt("a wallet request answered as a trade".into())),
        }
    }

    /// [`Store::move_funds`] inside `w`. A refusal writes nothing.
    pub(crate) async fn move_funds_in(
        &self,
        tx: &mut BatchTx<'_>,
        user: UserId,
        op: WalletOp,
        limits: &WalletLimits,
        idempotency: Option<&IdempotencyKey>,
        now: DateTime<Utc>,
    ) -> StoreResult<WalletOutcome> {
        if let Some(key) = idempotency {
            match self.remembered(tx, user, key).await? {
                Some(Remembered::Answer(receipt)) => return Ok(WalletOutcome::Replayed(receipt)),
                Some(Remembered::OtherRequest) => return Ok(WalletOutcome::KeyReused),
                None => {}
            }
        }
        let mut accounts = self.lock_accounts(tx, &[user], Locking::Wait).await?;
        let deposited = tx
            .fetch_optional::<(i64,)>(DEPOSITED_SINCE, &[user.0.into(), a_day_before(now).into()])
            .await?
            .map_or(0, |(cents,)| cents);
        let state = WalletState {
            available: accounts.cash(user),
            in_play: accounts.in_play(user),
            deposited_last_day: Money::from_cents(deposited),
        };
        let transfer = match op.plan(limits, &state) {
            Ok(transfer) => transfer,
            Err(refusal) => return Ok(WalletOutcome::Refused(refusal)),
        };
        let mut after = state;
        let entry = match &transfer {
            None => None,
            Some(transfer) => {
                let checked = accounts
                    .apply(self, user, transfer, None, now)?
                    .map_err(|e| StoreError::Corrupt(format!("a checked wallet transfer failed: {e}")))?;
                let ids = self.write_transfers(tx, std::slice::from_ref(&checked)).await?;
                let transaction_id =
                    *ids.first().ok_or_else(|| StoreError::Corrupt("a transfer without an id".into()))?;
                let amount = transfer.change_of(AccountKind::Cash);
                after.available = accounts.cash(user);
                if transfer.kind() == TransactionKind::Deposit {
                    after.deposited_last_day =
                        after.deposited_last_day.checked_add(amount).unwrap_or(Money::ZERO);
                }
                Some(StatementRow {
                    id: transaction_id,
                    kind: transfer.kind(),
                    amount,
                    balance_after: after.available,
                    reference: None,
                    created_at: time_from_ms(now.timestamp_millis()),
                })
            }
        };
        let receipt = WalletReceipt { entry, state: after };
        if let Some(key) = idempotency {
            self.remember(tx, user, key, &receipt, now).await?;
        }
        Ok(WalletOutcome::Done(receipt))
    }

    /// One page of the user's statement, newest first. The cursor is a seek on the partial
    /// index `postings_listed_by_account` (cash postings, the ones with a balance), so deep
    /// pages cost the same as the first.
    #[tracing::instrument(skip_all)]
    pub async fn statement(&self, user: UserId, query: &StatementQuery) -> StoreResult<Vec<StatementRow>> {
        let rows: Vec<StatementTuple> = sqlx::query_as(
            "SELECT t.id, t.kind, p.amount, p.balance_after, t.reference, t.created_at \
             FROM postings p JOIN ledger_transactions t ON t.id = p.transaction_id \
             WHERE p.account_id = (SELECT id FROM accounts WHERE user_id = $1 AND kind = 'cash') \
               AND p.balance_after IS NOT NULL AND p.transaction_id < $2 \
               AND (CAST($3 AS TEXT) IS NULL OR t.kind = $3) \
               AND (CAST($4 AS BIGINT) IS NULL OR t.created_at >= $4) \
               AND (CAST($5 AS BIGINT) IS NULL OR t.created_at < $5) \
             ORDER BY p.transaction_id DESC LIMIT $6",
        )
        .bind(user.0)
        .bind(query.before.unwrap_or(i64::MAX))
        .bind(query.kind.map(|k| k.as_str()))
        .bind(query.from.map(|t| t.timestamp_millis()))
        .bind(query.to.map(|t| t.timestamp_millis()))
        .bind(i64::from(query.limit))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(id, kind, amount, balance_after, reference, created_at)| {
                Ok(StatementRow {
                    id,
                    kind: kind.parse().map_err(|e| StoreError::Corrupt(format!("transaction {id}: {e}")))?,
                    amount: Money::from_cents(amount),
                    balance_after: Money::from_cents(balance_after.unwrap_or_default()),
                    reference,
                    created_at: time_from_ms(created_at),
                })
            })
            .collect()
    }

    pub(crate) async fn remembered<T: DeserializeOwned>(
        &self,
        tx: &mut BatchTx<'_>,
        user: UserId,
        key: &IdempotencyKey,
    ) -> StoreResult<Option<Remembered<T>>> {
        let row: Option<(String, String)> = tx
            .fetch_optional(
                "SELECT request_hash, response FROM idempotency_keys WHERE user_id = $1 AND key = $2",
                &[user.0.into(), key.key.as_str().into()],
            )
            .await?;
        row.map(|record| remembered_from(key, record)).transpose()
    }

    pub(crate) async fn remember<T: Serialize>(
        &self,
        tx: &mut BatchTx<'_>,
        user: UserId,
        key: &IdempotencyKey,
        answer: &T,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let response = serde_json::to_string(answer).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        tx.execute(
            "INSERT INTO idempotency_keys (user_id, key, request_hash, response, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
            &[
                user.0.into(),
                key.key.as_str().into(),
                key.request_hash.as_str().into(),
                response.into(),
                now.timestamp_millis().into(),
            ],
            Prepared::Keep,
        )
        .await?;
        Ok(())
    }
}
