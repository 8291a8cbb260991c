//! Set-based writes for a batch: many transfers in a handful of statements.
//!
//! Writing a transfer one statement at a time costs a round trip (and, on SQLite through sqlx,
//! two thread hand-offs) per row. Every statement here runs on either engine ([`BatchTx`]). A batch instead locks and reads every account it touches
//! once, checks and applies each transfer in memory in order (so each request still sees its
//! batch-mates' effects, and a refusal touches nothing), and then writes all transactions, all
//! balance changes and all postings with one statement each, in chunks.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use fairtick_core::ledger::{AccountKind, LedgerError, Transfer};
use fairtick_core::{Money, UserId};

use super::dual::{BatchTx, Param, Prepared};
use super::{Backend, Store, StoreError, StoreResult};

/// Rows per multi-row statement: well under both backends' limits on bound parameters. These
/// statements change shape with the batch, so they are prepared once, not kept.
pub(crate) const CHUNK: usize = 500;

/// The accounts of a batch's users, locked and read once, with balances kept current as the
/// batch's transfers are applied in memory.
#[derive(Clone)]
pub(crate) struct LockedAccounts {
    /// (user, kind) → (account id, balance in cents).
    accounts: HashMap<(UserId, AccountKind), (i64, i64)>,
}

/// One posting as it will be written.
pub(crate) struct PostingRow {
    account_id: i64,
    amount: i64,
    balance_after: Option<i64>,
}

/// A transfer checked against [`LockedAccounts`], ready to write.
pub(crate) struct CheckedTransfer {
    pub user: UserId,
    pub kind: &'static str,
    pub reference: Option<String>,
    pub created_at: i64,
    rows: Vec<PostingRow>,
}

impl LockedAccounts {
    pub(crate) fn cash(&self, user: UserId) -> Money {
        self.balance(user, AccountKind::Cash)
    }

    pub(crate) fn in_play(&self, user: UserId) -> Money {
        self.balance(user, AccountKind::InPlay)
    }

    fn balance(&self, user: UserId, kind: AccountKind) -> Money {
        self.accounts.get(&(user, kind)).map_or(Money::ZERO, |(_, b)| Money::from_cents(*b))
    }

    /// Applies `transfer` to the balances in memory, or refuses it and changes nothing.
    pub(crate) fn apply(
        &mut self,
        store: &Store,
        user: UserId,
        transfer: &Transfer,
        reference: Option<String>,
        now: DateTime<Utc>,
    ) -> StoreResult<Result<CheckedTransfer, LedgerError>> {
        let mut rows = Vec::with_capacity(transfer.postings().len());
        let mut next: Vec<((UserId, AccountKind), i64)> = Vec::new();
        for posting in transfer.postings() {
            let amount = posting.amount.cents();
            let (account_id, balance_after) = match posting.account {
                AccountKind::House => (store.system_accounts.house, None),
                AccountKind::Faucet => (store.system_accounts.faucet, None),
                kind @ (AccountKind::Cash | AccountKind::InPlay) => {
                    let Some(&(id, balance)) = self.accounts.get(&(user, kind)) else {
                        return Err(StoreError::Corrupt(format!(
                            "user {user} has no {} account",
                            kind.as_str()
                        )));
                    };
                    let after = balance + amount;
                    if after < 0 {
                        return Ok(Err(LedgerError::Overdrawn(kind)));
                    }
                    next.push(((user, kind), after));
                    (id, Some(after))
                }
            };
            rows.push(PostingRow { account_id, amount, balance_after });
        }
        for (key, after) in next {
            if let Some(entry) = self.accounts.get_mut(&key) {
                entry.1 = after;
            }
        }
        Ok(Ok(CheckedTransfer {
            user,
            kind: transfer.kind().as_str(),
            reference,
            created_at: now.timestamp_millis(),
            rows,
        }))
    }
}

impl CheckedTransfer {
    pub(crate) fn set_reference(&mut self, reference: String) {
        self.reference = Some(reference);
    }
}

impl Store {
    /// The `n`th parameter of a statement. Statements with many parameters use SQLite's
    /// anonymous `?`: a numbered one is a name that SQLite and sqlx look up by scanning the
    /// statement's list of names, which made binding a 2,000-parameter batch quadratic (a fifth
    /// of the server's time under load went to `strncmp`). Both forms bind in text order here.
    pub(crate) fn param(&self, n: usize) -> String {
        match self.backend {
            Backend::Sqlite => "?".to_owned(),
            Backend::Postgres => format!("${n}"),
        }
    }

    /// `(p1, p2, …), (pk+1, …)`: the VALUES list of `rows` rows of `columns` parameters, numbered
    /// from `first` (after the statement's own parameters).
    pub(crate) fn values_list(&self, first: usize, rows: usize, columns: usize) -> String {
        (0..rows)
            .map(|r| {
                let row: Vec<String> = (0..columns).map(|c| self.param(first + r * columns + c)).collect();
                format!("({})", row.join(", "))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `p1, p2, …`: a list of `n` parameters numbered from `first`, for `IN (…)`.
    pub(crate) fn param_list(&self, first: usize, n: usize) -> String {
        (first..first + n).map(|i| self.param(i)).collect::<Vec<_>>().join(", ")
    }

    /// Locks the accounts of `users` (in user, then account order, as every money-moving
    /// transaction does) and reads their balances.
    pub(crate) async fn lock_accounts(
        &self,
        tx: &mut BatchTx<'_>,
        users: &[UserId],
    ) -> StoreResult<LockedAccounts> {
        let mut accounts = HashMap::new();
        for chunk in users.chunks(CHUNK) {
            let sql = format!(
                "SELECT id, user_id, kind, balance FROM accounts WHERE user_id IN ({}) ORDER BY user_id, id{}",
                self.param_list(1, chunk.len()),
                self.for_update()
            );
            let params: Vec<Param> = chunk.iter().map(|user| Param::from(user.0)).collect();
            let rows: Vec<(i64, i64, String, i64)> = tx.fetch(&sql, &params, Prepared::Once).await?;
            for (id, user, kind, balance) in rows {
                let kind = match kind.as_str() {
                    "cash" => AccountKind::Cash,
                    "in_play" => AccountKind::InPlay,
                    other => return Err(StoreError::Corrupt(format!("user {user} has a {other} account"))),
                };
                accounts.insert((UserId(user), kind), (id, balance));
            }
        }
        Ok(LockedAccounts { accounts })
    }

    /// Inserts rows of `columns` values each, in chunks, and returns the ids of the inserted
    /// rows in the order given. Both backends assign ids in VALUES order within a statement;
    /// the returned ids are sorted because RETURNING does not promise an order.
    pub(crate) async fn insert_returning_ids<T, const COLUMNS: usize>(
        &self,
        tx: &mut BatchTx<'_>,
        head: &str,
        rows: &[T],
        values: impl Fn(&T) -> [Param; COLUMNS],
    ) -> StoreResult<Vec<i64>> {
        let mut ids = Vec::with_capacity(rows.len());
        for chunk in rows.chunks(CHUNK) {
            let sql = format!("{head} VALUES {} RETURNING id", self.values_list(1, chunk.len(), COLUMNS));
            let params: Vec<Param> = chunk.iter().flat_map(&values).collect();
            let rows: Vec<(i64,)> = tx.fetch(&sql, &params, Prepared::Once).await?;
            let mut chunk_ids: Vec<i64> = rows.into_iter().map(|(id,)| id).collect();
            if chunk_ids.len() != chunk.len() {
                return Err(StoreError::Corrupt(format!(
                    "{} rows inserted, {} ids returned",
                    chunk.len(),
                    chunk_ids.len()
                )));
            }
            chunk_ids.sort_unstable();
            ids.extend(chunk_ids);
        }
        Ok(ids)
    }

    /// Writes checked transfers: their ledger transactions, the net change of every account
    /// they touch, and their postings. Returns the transactions' ids, in order.
    pub(crate) async fn write_transfers(
        &self,
        tx: &mut BatchTx<'_>,
        transfers: &[CheckedTransfer],
    ) -> StoreResult<Vec<i64>> {
        let ids = self
            .insert_returning_ids(
                tx,
                "INSERT INTO ledger_transactions (kind, user_id, reference, created_at)",
                transfers,
                |t| [t.kind.into(), t.user.0.into(), t.reference.clone().into(), t.created_at.into()],
            )
            .await?;
        let mut deltas: BTreeMap<i64, i64> = BTreeMap::new();
        for row in transfers.iter().flat_map(|t| &t.rows).filter(|r| r.balance_after.is_some()) {
            *deltas.entry(row.account_id).or_default() += row.amount;
        }
        let deltas: Vec<(i64, i64)> = deltas.into_iter().filter(|(_, d)| *d != 0).collect();
        for chunk in deltas.chunks(CHUNK) {
            // The CHECK on balances still guards what the in-memory check already ensured.
            let sql = format!(
                "UPDATE accounts SET balance = accounts.balance + d.delta \
                 FROM (SELECT column1 AS id, column2 AS delta FROM (VALUES {}) AS v) AS d \
                 WHERE accounts.id = d.id",
                self.values_list(1, chunk.len(), 2)
            );
            let params: Vec<Param> =
                chunk.iter().flat_map(|&(id, delta)| [id.into(), delta.into()]).collect();
            tx.execute(&sql, &params, Prepared::Once).await?;
        }
        let postings: Vec<(i64, &PostingRow)> =
            transfers.iter().zip(&ids).flat_map(|(t, id)| t.rows.iter().map(move |r| (*id, r))).collect();
        for chunk in postings.chunks(CHUNK) {
            let sql = format!(
                "INSERT INTO postings (transaction_id, account_id, amount, balance_after) VALUES {}",
                self.values_list(1, chunk.len(), 4)
            );
            let params: Vec<Param> = chunk
                .iter()
                .flat_map(|&(transaction_id, row)| {
                    [
                        transaction_id.into(),
                        row.account_id.into(),
                        row.amount.into(),
                        row.balance_after.into(),
                    ]
                })
                .collect();
            tx.execute(&sql, &params, Prepared::Once).await?;
        }
        Ok(ids)
    }
}
