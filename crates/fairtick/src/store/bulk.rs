//! Set-based writes for a batch: many transfers in a handful of statements.
//!
//! Writing a transfer one statement at a time costs a round trip (and, on SQLite through sqlx,
//! two thread hand-offs) per row. A batch instead locks and reads every account it touches
//! once, checks and applies each transfer in memory in order (so each request still sees its
//! batch-mates' effects, and a refusal touches nothing), and then writes all transactions, all
//! balance changes and all postings with one statement each, in chunks; on PostgreSQL, with one
//! statement for all three, which also inserts the trades when the transfers are their stakes.
//! Every statement runs through [`BatchTx`], on either engine, except those PostgreSQL-only
//! ones.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use fairtick_core::ledger::{AccountKind, LedgerError, Transfer};
use fairtick_core::{Money, UserId};

use super::binds::{Binds, SqlType};
use super::dual::{BatchTx, Param};
use super::{Backend, Store, StoreError, StoreResult};

/// Rows per multi-row statement: well under SQLite's limit on bound parameters (see
/// [`super::binds`] for how the lists are passed).
pub(crate) const CHUNK: usize = 500;

/// Whether taking an account's lock waits for a transaction that holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Locking {
    Wait,
    /// Passes over the accounts another transaction holds (PostgreSQL's `SKIP LOCKED`; SQLite
    /// has one writer, which holds them all): their users are left out.
    SkipHeld,
}

/// The accounts of a batch's users, locked and read once, with balances kept current as the
/// batch's transfers are applied in memory.
#[derive(Clone)]
pub(crate) struct LockedAccounts {
    /// (user, kind) → (account id, balance in cents).
    accounts: HashMap<(UserId, AccountKind), (i64, i64)>,
    /// How they were locked: with [`Locking::Wait`] every user's are held.
    locking: Locking,
}

/// Rows to insert: `head` (`INSERT INTO table (columns)`), the columns' SQL types, and each
/// row's values as `values` makes them from `rows`.
pub(crate) struct NewRows<'a, T, F, const COLUMNS: usize> {
    pub head: &'a str,
    pub types: [SqlType; COLUMNS],
    pub rows: &'a [T],
    pub values: F,
}

impl<T, F: Fn(&T) -> [Param; COLUMNS], const COLUMNS: usize> NewRows<'_, T, F, COLUMNS> {
    fn values_of(&self, rows: &[T]) -> Vec<[Param; COLUMNS]> {
        rows.iter().map(&self.values).collect()
    }
}

/// One posting as it will be written.
pub(crate) struct PostingRow {
    account_id: i64,
    amount: i64,
    /// The user account's balance after it; `None` for a system account.
    balance_after: Option<i64>,
    /// Whether it is a cash posting, one line of its user's statement.
    listed: bool,
}

impl PostingRow {
    /// The balance stored with it: only a statement line has one, so that only those are in
    /// the statement's index (`postings_listed_by_account`), whose entries land on pages spread
    /// by user.
    fn stored_balance(&self) -> Option<i64> {
        self.balance_after.filter(|_| self.listed)
    }
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
    /// Whether `user`'s accounts are held here, not left out by [`Locking::SkipHeld`].
    pub(crate) fn holds(&self, user: UserId) -> bool {
        self.locking == Locking::Wait
            || [AccountKind::Cash, AccountKind::InPlay]
                .iter()
                .all(|&kind| self.accounts.contains_key(&(user, kind)))
    }

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
            let listed = posting.account == AccountKind::Cash;
            rows.push(PostingRow { account_id, amount, balance_after, listed });
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

impl Store {
    /// Locks the accounts of `users` (in user, then account order, as every money-moving
    /// transaction does) and reads their balances.
    pub(crate) async fn lock_accounts(
        &self,
        tx: &mut BatchTx<'_>,
        users: &[UserId],
        locking: Locking,
    ) -> StoreResult<LockedAccounts> {
        let skip = match (locking, self.backend) {
            (Locking::SkipHeld, Backend::Postgres) => " SKIP LOCKED",
            _ => "",
        };
        let mut accounts = HashMap::new();
        for chunk in users.chunks(CHUNK) {
            let mut binds = self.binds();
            let ids: Vec<Param> = chunk.iter().map(|user| Param::from(user.0)).collect();
            let sql = format!(
                "SELECT id, user_id, kind, balance FROM accounts WHERE {} ORDER BY user_id, id{}{skip}",
                binds.any_of("user_id", SqlType::Int, &ids),
                self.for_update()
            );
            let rows: Vec<(i64, i64, String, i64)> = tx.fetch(&sql, binds.params(), binds.prepared()).await?;
            for (id, user, kind, balance) in rows {
                let kind = match kind.as_str() {
                    "cash" => AccountKind::Cash,
                    "in_play" => AccountKind::InPlay,
                    other => return Err(StoreError::Corrupt(format!("user {user} has a {other} account"))),
                };
                accounts.insert((UserId(user), kind), (id, balance));
            }
        }
        Ok(LockedAccounts { accounts, locking })
    }

    /// Inserts rows of `columns` values each, in chunks, and returns the ids of the inserted
    /// rows in the order given. Both backends assign ids in VALUES order within a statement;
    /// the returned ids are sorted because RETURNING does not promise an order.
    pub(crate) async fn insert_returning_ids<T, F: Fn(&T) -> [Param; COLUMNS], const COLUMNS: usize>(
        &self,
        tx: &mut BatchTx<'_>,
        new: &NewRows<'_, T, F, COLUMNS>,
    ) -> StoreResult<Vec<i64>> {
        let mut ids = Vec::with_capacity(new.rows.len());
        for chunk in new.rows.chunks(CHUNK) {
            let mut binds = self.binds();
            let sql = format!("{} {} RETURNING id", new.head, binds.rows(new.types, &new.values_of(chunk)));
            let rows: Vec<(i64,)> = tx.fetch(&sql, binds.params(), binds.prepared()).await?;
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
        if transfers.is_empty() {
            return Ok(Vec::new());
        }
        match self.backend {
            Backend::Postgres => self.write_transfers_at_once(tx, transfers).await,
            Backend::Sqlite => self.write_transfers_in_turn(tx, transfers).await,
        }
    }

    /// PostgreSQL: the three writes as one statement of data-modifying `WITH` queries, one
    /// round trip instead of three (a batch waits on its round trips more than on the server's
    /// work).
    async fn write_transfers_at_once(
        &self,
        tx: &mut BatchTx<'_>,
        transfers: &[CheckedTransfer],
    ) -> StoreResult<Vec<i64>> {
        let mut binds = self.binds();
        let ledger = LedgerWrites::new(&mut binds, transfers, None);
        let sql = format!(
            "WITH {} SELECT id, {} FROM numbered ORDER BY position",
            ledger.queries,
            LedgerWrites::COUNTS
        );
        let rows: Vec<(i64, i64, i64, i64)> = tx.fetch(&sql, binds.params(), binds.prepared()).await?;
        ledger.check(&rows)?;
        Ok(rows.into_iter().map(|(id, ..)| id).collect())
    }

    /// Inserts `new`'s rows, one for each of `transfers` and in the same order, and writes the
    /// transfers with each row's id as its transfer's reference (a trade and the stake that
    /// pays for it). Returns the rows' ids, in order.
    pub(crate) async fn insert_with_transfers<T, F: Fn(&T) -> [Param; COLUMNS], const COLUMNS: usize>(
        &self,
        tx: &mut BatchTx<'_>,
        new: &NewRows<'_, T, F, COLUMNS>,
        transfers: &mut [CheckedTransfer],
    ) -> StoreResult<Vec<i64>> {
        if new.rows.len() != transfers.len() {
            let (rows, transfers) = (new.rows.len(), transfers.len());
            return Err(StoreError::Corrupt(format!("{rows} rows for {transfers} transfers")));
        }
        if transfers.is_empty() {
            return Ok(Vec::new());
        }
        match self.backend {
            Backend::Postgres => self.insert_with_transfers_at_once(tx, new, transfers).await,
            Backend::Sqlite => {
                let ids = self.insert_returning_ids(tx, new).await?;
                for (transfer, id) in transfers.iter_mut().zip(&ids) {
                    transfer.reference = Some(id.to_string());
                }
                self.write_transfers_in_turn(tx, transfers).await?;
                Ok(ids)
            }
        }
    }

    /// PostgreSQL: the rows and their transfers in one statement, one round trip.
    async fn insert_with_transfers_at_once<T, F: Fn(&T) -> [Param; COLUMNS], const COLUMNS: usize>(
        &self,
        tx: &mut BatchTx<'_>,
        new: &NewRows<'_, T, F, COLUMNS>,
        transfers: &[CheckedTransfer],
    ) -> StoreResult<Vec<i64>> {
        let mut binds = self.binds();
        let columns: Vec<String> = (1..=COLUMNS).map(|c| format!("column{c}")).collect();
        let source = binds.rows(new.types, &new.values_of(new.rows));
        let ledger = LedgerWrites::new(&mut binds, transfers, Some("inserted_by_position"));
        let sql = format!(
            "WITH inserted AS ({} SELECT {} FROM ({source}) AS r RETURNING id), \
             inserted_by_position AS ({}), \
             {} \
             SELECT i.id, {} FROM inserted_by_position AS i \
             JOIN numbered ON numbered.position = i.position ORDER BY i.position",
            new.head,
            columns.join(", "),
            by_position("inserted"),
            ledger.queries,
            LedgerWrites::COUNTS
        );
        let written: Vec<(i64, i64, i64, i64)> = tx.fetch(&sql, binds.params(), binds.prepared()).await?;
        ledger.check(&written)?;
        Ok(written.into_iter().map(|(id, ..)| id).collect())
    }

    /// SQLite: one multi-row statement for each of the three writes, in chunks.
    async fn write_transfers_in_turn(
        &self,
        tx: &mut BatchTx<'_>,
        transfers: &[CheckedTransfer],
    ) -> StoreResult<Vec<i64>> {
        let heads = NewRows {
            head: "INSERT INTO ledger_transactions (kind, user_id, reference, created_at)",
            types: [SqlType::Text, SqlType::Int, SqlType::Text, SqlType::Int],
            rows: transfers,
            values: |t: &CheckedTransfer| {
                [t.kind.into(), t.user.0.into(), t.reference.clone().into(), t.created_at.into()]
            },
        };
        let ids = self.insert_returning_ids(tx, &heads).await?;
        let deltas = net_changes(transfers);
        for chunk in deltas.chunks(CHUNK) {
            let mut binds = self.binds();
            let rows: Vec<[Param; 2]> = chunk.iter().map(|&(id, delta)| [id.into(), delta.into()]).collect();
            // The CHECK on balances still guards what the in-memory check already ensured.
            let sql = format!(
                "UPDATE accounts SET balance = accounts.balance + d.delta \
                 FROM (SELECT column1 AS id, column2 AS delta FROM ({}) AS v) AS d \
                 WHERE accounts.id = d.id",
                binds.rows([SqlType::Int, SqlType::Int], &rows)
            );
            tx.execute(&sql, binds.params(), binds.prepared()).await?;
        }
        let postings: Vec<(i64, &PostingRow)> =
            transfers.iter().zip(&ids).flat_map(|(t, id)| t.rows.iter().map(move |r| (*id, r))).collect();
        for chunk in postings.chunks(CHUNK) {
            let mut binds = self.binds();
            let rows: Vec<[Param; 4]> = chunk
                .iter()
                .map(|&(transaction_id, row)| {
                    [
                        transaction_id.into(),
                        row.account_id.into(),
                        row.amount.into(),
                        row.stored_balance().into(),
                    ]
                })
                .collect();
            let sql = format!(
                "INSERT INTO postings (transaction_id, account_id, amount, balance_after) {}",
                binds.rows([SqlType::Int; 4], &rows)
            );
            tx.execute(&sql, binds.params(), binds.prepared()).await?;
        }
        Ok(ids)
    }
}

/// The net change of every user account the transfers touch (system accounts keep no
/// balance), in account order: the order in which they are locked.
fn net_changes(transfers: &[CheckedTransfer]) -> Vec<(i64, i64)> {
    let mut deltas: BTreeMap<i64, i64> = BTreeMap::new();
    for row in transfers.iter().flat_map(|t| &t.rows).filter(|r| r.balance_after.is_some()) {
        *deltas.entry(row.account_id).or_default() += row.amount;
    }
    deltas.into_iter().filter(|(_, d)| *d != 0).collect()
}

/// The ids that the `WITH` query `inserted` returned, with their rows' positions from 1: rows
/// given in position order are assigned increasing ids, so numbering the ids in order finds
/// each row's position (the batch test fails if it does not hold).
fn by_position(inserted: &str) -> String {
    format!("SELECT id, row_number() OVER (ORDER BY id) AS position FROM {inserted}")
}

/// The `WITH` queries that write transfers' ledger on PostgreSQL, named `written`, `numbered`
/// (the transactions' ids by position, from 1), `moved` and `posted`. Each posting names its
/// transfer by position, found through [`by_position`].
struct LedgerWrites {
    queries: String,
    transfers: usize,
    moves: usize,
    posts: usize,
}

impl LedgerWrites {
    /// Three columns to select beside each row: the counts of transactions, balance changes
    /// and postings written, for [`LedgerWrites::check`].
    const COUNTS: &str =
        "(SELECT COUNT(*) FROM written), (SELECT COUNT(*) FROM moved), (SELECT COUNT(*) FROM posted)";

    /// `references`: the name of an earlier `WITH` query of `(id, position)` whose id at a
    /// transfer's position is its reference, instead of the transfer's own.
    fn new(binds: &mut Binds, transfers: &[CheckedTransfer], references: Option<&str>) -> LedgerWrites {
        let heads: Vec<[Param; 5]> = transfers
            .iter()
            .zip(1_i64..)
            .map(|(t, position)| {
                [
                    position.into(),
                    t.kind.into(),
                    t.user.0.into(),
                    t.reference.clone().into(),
                    t.created_at.into(),
                ]
            })
            .collect();
        let heads =
            binds.rows([SqlType::Int, SqlType::Text, SqlType::Int, SqlType::Text, SqlType::Int], &heads);
        let (reference, join) = match references {
            Some(from) => ("CAST(ref.id AS TEXT)", format!("JOIN {from} AS ref ON ref.position = h.column1")),
            None => ("h.column4", String::new()),
        };
        let deltas: Vec<[Param; 2]> =
            net_changes(transfers).into_iter().map(|(id, delta)| [id.into(), delta.into()]).collect();
        let moves = deltas.len();
        let deltas = binds.rows([SqlType::Int, SqlType::Int], &deltas);
        let postings: Vec<[Param; 4]> = transfers
            .iter()
            .zip(1_i64..)
            .flat_map(|(t, position)| {
                t.rows.iter().map(move |row| {
                    [position.into(), row.account_id.into(), row.amount.into(), row.stored_balance().into()]
                })
            })
            .collect();
        let posts = postings.len();
        let postings = binds.rows([SqlType::Int; 4], &postings);
        let numbered = by_position("written");
        let queries = format!(
            "written AS (\
                 INSERT INTO ledger_transactions (kind, user_id, reference, created_at) \
                 SELECT h.column2, h.column3, {reference}, h.column5 FROM ({heads}) AS h {join} \
                 ORDER BY h.column1 RETURNING id), \
             numbered AS ({numbered}), \
             moved AS (\
                 UPDATE accounts SET balance = accounts.balance + d.column2 FROM ({deltas}) AS d \
                 WHERE accounts.id = d.column1 RETURNING accounts.id), \
             posted AS (\
                 INSERT INTO postings (transaction_id, account_id, amount, balance_after) \
                 SELECT numbered.id, p.column2, p.column3, p.column4 FROM ({postings}) AS p \
                 JOIN numbered ON numbered.position = p.column1 RETURNING id)"
        );
        LedgerWrites { queries, transfers: transfers.len(), moves, posts }
    }

    /// Fails unless one row came back per transfer and every write wrote what it was given.
    fn check(&self, rows: &[(i64, i64, i64, i64)]) -> StoreResult<()> {
        let given = (self.transfers as i64, self.moves as i64, self.posts as i64);
        let written = rows.first().map_or((0, 0, 0), |&(_, t, m, p)| (t, m, p));
        if rows.len() == self.transfers && written == given {
            return Ok(());
        }
        Err(StoreError::Corrupt(format!(
            "ledger writes of (transactions, balance changes, postings) {given:?} came back as \
             {written:?} in {} rows",
            rows.len()
        )))
    }
}
