//! Group commit: concurrent money movements share one database transaction and one `fsync`.
//!
//! One commit per request caps the write path at the disk's flush rate; here requests queue,
//! and a writer task takes everything queued (up to [`MAX_BATCH`]), runs each request in its
//! own savepoint of one write transaction, commits once, and only then answers them all. Each
//! request's checks still read balances under its own lock, in the same transaction, after its
//! batch-mates' writes; a request that fails rolls back to its savepoint and fails alone. If
//! the commit itself fails, every request of the batch gets the error: none is acknowledged
//! unless it is durable.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use fairtick_core::UserId;
use fairtick_core::wallet::{WalletLimits, WalletOp};
use tokio::sync::{Mutex, mpsc, oneshot};

use super::bulk::LockedAccounts;
use super::ledger::{Remembered, WalletOutcome};
use super::trades::{NewTrade, OpenOutcome};
use super::{Backend, IdempotencyKey, Store, StoreError, StoreResult, WriteTx, is_unique_violation};

/// Most requests in one transaction: enough to amortise the commit, few enough that a batch's
/// last request does not wait long for its first.
pub const MAX_BATCH: usize = 256;
/// Requests waiting for a writer before `submit` itself waits: backpressure, not a limit.
const QUEUE: usize = 4 * MAX_BATCH;

/// A money movement to commit.
#[derive(Clone, Debug)]
pub enum WriteRequest {
    OpenTrade {
        user: UserId,
        trade: NewTrade,
        key: Option<IdempotencyKey>,
        now: DateTime<Utc>,
    },
    MoveFunds {
        user: UserId,
        op: WalletOp,
        limits: WalletLimits,
        key: Option<IdempotencyKey>,
        now: DateTime<Utc>,
    },
}

/// What a committed request did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    Trade(OpenOutcome),
    Wallet(WalletOutcome),
}

impl WriteRequest {
    fn user(&self) -> UserId {
        match self {
            WriteRequest::OpenTrade { user, .. } | WriteRequest::MoveFunds { user, .. } => *user,
        }
    }

    fn key(&self) -> Option<&IdempotencyKey> {
        match self {
            WriteRequest::OpenTrade { key, .. } | WriteRequest::MoveFunds { key, .. } => key.as_ref(),
        }
    }
}

impl WriteOutcome {
    /// Whether the request's writes are to be kept; refusals and replays keep nothing.
    fn keeps_writes(&self) -> bool {
        matches!(
            self,
            WriteOutcome::Trade(OpenOutcome::Opened(_)) | WriteOutcome::Wallet(WalletOutcome::Done(_))
        )
    }
}

struct Queued {
    request: WriteRequest,
    reply: oneshot::Sender<StoreResult<WriteOutcome>>,
}

/// The queue in front of the writer tasks.
#[derive(Clone)]
pub(crate) struct GroupCommit {
    queue: mpsc::Sender<Queued>,
}

impl GroupCommit {
    /// Starts the writers of `store`: one on SQLite (it has one writer anyway), a few on
    /// PostgreSQL, whose row locks let batches of different users commit side by side. They
    /// stop when the last handle to the queue is dropped.
    pub(crate) fn start(store: Store) -> GroupCommit {
        let (queue, receiver) = mpsc::channel(QUEUE);
        let writers = match store.backend {
            Backend::Sqlite => 1,
            Backend::Postgres => 4,
        };
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..writers {
            tokio::spawn(write_batches(store.clone(), receiver.clone()));
        }
        GroupCommit { queue }
    }
}

async fn write_batches(store: Store, receiver: Arc<Mutex<mpsc::Receiver<Queued>>>) {
    loop {
        let mut batch = Vec::new();
        {
            let mut receiver = receiver.lock().await;
            match receiver.recv().await {
                Some(first) => batch.push(first),
                None => return,
            }
            while batch.len() < MAX_BATCH {
                match receiver.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
        }
        let (requests, replies): (Vec<_>, Vec<_>) = batch.into_iter().map(|q| (q.request, q.reply)).unzip();
        metrics::histogram!("group_commit_batch_size").record(requests.len() as f64);
        let started = std::time::Instant::now();
        let written = store.write_batch(&requests).await;
        // From waiting for the writer lock to the end of the commit.
        metrics::histogram!("group_commit_seconds").record(started.elapsed().as_secs_f64());
        match written {
            Ok(results) => {
                for (reply, result) in replies.into_iter().zip(results) {
                    // A requester that went away still had its request committed; nothing to tell.
                    let _ = reply.send(result);
                }
            }
            Err(error) => {
                tracing::error!(%error, batch = requests.len(), "a group commit failed; none of its requests is done");
                let message = error.to_string();
                for reply in replies {
                    let _ = reply.send(Err(StoreError::BatchFailed(message.clone())));
                }
            }
        }
    }
}

impl Store {
    /// Commits `request` with whatever else is queued, and answers once it is durable.
    pub(crate) async fn submit(&self, request: WriteRequest) -> StoreResult<WriteOutcome> {
        let Some(group) = &self.group_commit else {
            let mut results = self.write_batch(std::slice::from_ref(&request)).await?;
            return results.pop().unwrap_or_else(|| Err(StoreError::BatchFailed("no answer".into())));
        };
        let (reply, answer) = oneshot::channel();
        let closed = || StoreError::BatchFailed("the writer has stopped".into());
        group.queue.send(Queued { request, reply }).await.map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }

    /// Runs `requests` in one write transaction, each in its own savepoint, and commits once.
    /// Returns one result per request, in order; `Err` when the transaction itself failed, in
    /// which case nothing of the batch was committed.
    ///
    /// Requests run in user order, so that a batch takes account locks in the same global order
    /// as every other money-moving transaction and two batches can never deadlock.
    pub async fn write_batch(
        &self,
        requests: &[WriteRequest],
    ) -> StoreResult<Vec<StoreResult<WriteOutcome>>> {
        let mut order: Vec<usize> = (0..requests.len()).collect();
        order.sort_by_key(|&i| requests[i].user());
        let mut results: Vec<Option<StoreResult<WriteOutcome>>> = requests.iter().map(|_| None).collect();
        let mut w = self.begin_write().await?;
        // Every account of the batch, locked up front in user order and read once.
        let mut users: Vec<UserId> = order.iter().map(|&i| requests[i].user()).collect();
        users.dedup();
        let mut accounts = self.lock_accounts(&mut w, &users).await?;
        let (bulk, one_by_one): (Vec<usize>, Vec<usize>) = order
            .into_iter()
            .partition(|&i| matches!(&requests[i], WriteRequest::OpenTrade { key: None, .. }));
        let one_by_one = match self.open_in_bulk(&mut w, &mut accounts, requests, &bulk).await? {
            Some(outcomes) => {
                for (i, outcome) in bulk.into_iter().zip(outcomes) {
                    results[i] = Some(Ok(WriteOutcome::Trade(outcome)));
                }
                one_by_one
            }
            None => {
                let mut all = [bulk, one_by_one].concat();
                all.sort_by_key(|&i| requests[i].user());
                all
            }
        };
        for i in one_by_one {
            results[i] = Some(self.write_one(&mut w, &requests[i]).await?);
        }
        w.tx.commit().await?;
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(StoreError::BatchFailed("no answer".into()))))
            .collect())
    }

    /// The plain trade openings of a batch, in bulk; `None` (with nothing written) when the
    /// bulk write failed, so that they are retried one by one and only the culprit fails.
    async fn open_in_bulk(
        &self,
        w: &mut WriteTx,
        accounts: &mut LockedAccounts,
        requests: &[WriteRequest],
        bulk: &[usize],
    ) -> StoreResult<Option<Vec<OpenOutcome>>> {
        let opens: Vec<(UserId, &NewTrade, DateTime<Utc>)> = bulk
            .iter()
            .filter_map(|&i| match &requests[i] {
                WriteRequest::OpenTrade { user, trade, now, .. } => Some((*user, trade, *now)),
                WriteRequest::MoveFunds { .. } => None,
            })
            .collect();
        if opens.is_empty() {
            return Ok(Some(Vec::new()));
        }
        let before = accounts.clone();
        execute(w, "SAVEPOINT bulk").await?;
        match self.open_trades_in(w, accounts, &opens).await {
            Ok(outcomes) => {
                execute(w, "RELEASE SAVEPOINT bulk").await?;
                Ok(Some(outcomes))
            }
            Err(error) => {
                tracing::warn!(%error, batch = opens.len(), "a bulk write failed; retrying its requests one by one");
                *accounts = before;
                execute(w, "ROLLBACK TO SAVEPOINT bulk").await?;
                execute(w, "RELEASE SAVEPOINT bulk").await?;
                Ok(None)
            }
        }
    }

    /// One request in its own savepoint: its failure undoes only its own writes.
    async fn write_one(
        &self,
        w: &mut WriteTx,
        request: &WriteRequest,
    ) -> StoreResult<StoreResult<WriteOutcome>> {
        execute(w, "SAVEPOINT request").await?;
        Ok(match self.apply(w, request).await {
            Ok(outcome) if outcome.keeps_writes() => {
                execute(w, "RELEASE SAVEPOINT request").await?;
                Ok(outcome)
            }
            Ok(outcome) => {
                roll_back_request(w).await?;
                Ok(outcome)
            }
            Err(StoreError::Database(e)) if is_unique_violation(&e) && request.key().is_some() => {
                // Another transaction stored this idempotency key first: answer as it did.
                roll_back_request(w).await?;
                self.replay(w, request).await
            }
            Err(e) => {
                roll_back_request(w).await?;
                Err(e)
            }
        })
    }

    async fn apply(&self, w: &mut WriteTx, request: &WriteRequest) -> StoreResult<WriteOutcome> {
        Ok(match request {
            WriteRequest::OpenTrade { user, trade, key, now } => {
                WriteOutcome::Trade(self.open_trade_in(w, *user, trade, key.as_ref(), *now).await?)
            }
            WriteRequest::MoveFunds { user, op, limits, key, now } => {
                WriteOutcome::Wallet(self.move_funds_in(w, *user, *op, limits, key.as_ref(), *now).await?)
            }
        })
    }

    /// The stored answer of a request whose idempotency key another transaction committed.
    async fn replay(&self, w: &mut WriteTx, request: &WriteRequest) -> StoreResult<WriteOutcome> {
        let (user, key) = match request.key() {
            Some(key) => (request.user(), key),
            None => return Err(StoreError::Corrupt("a replay without an idempotency key".into())),
        };
        Ok(match request {
            WriteRequest::OpenTrade { .. } => {
                WriteOutcome::Trade(match self.remembered(&mut w.tx, user, key).await? {
                    Some(Remembered::Answer(trade)) => OpenOutcome::Replayed(trade),
                    _ => OpenOutcome::KeyReused,
                })
            }
            WriteRequest::MoveFunds { .. } => {
                WriteOutcome::Wallet(match self.remembered(&mut w.tx, user, key).await? {
                    Some(Remembered::Answer(receipt)) => WalletOutcome::Replayed(receipt),
                    _ => WalletOutcome::KeyReused,
                })
            }
        })
    }
}

async fn execute(w: &mut WriteTx, statement: &str) -> StoreResult<()> {
    sqlx::query(statement).execute(&mut *w.tx).await?;
    Ok(())
}

/// Undoes one request's writes and leaves the batch's transaction usable (on PostgreSQL a
/// failed statement poisons the transaction until the rollback to the savepoint).
async fn roll_back_request(w: &mut WriteTx) -> StoreResult<()> {
    execute(w, "ROLLBACK TO SAVEPOINT request").await?;
    execute(w, "RELEASE SAVEPOINT request").await
}
