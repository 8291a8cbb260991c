//! Group commit: concurrent money movements share one database transaction and one `fsync`.
//!
//! One commit per request caps the write path at the disk's flush rate; here requests queue,
//! and a writer takes everything queued (up to [`MAX_BATCH`]), runs it in one write
//! transaction, commits once, and only then answers them all. Each request is checked against
//! the balances its batch-mates left, under the batch's locks. The plain trade openings are
//! written together; every other request runs in its own savepoint, and one that fails rolls
//! back to it and fails alone. If the bulk write fails, the batch is rolled back and run again
//! with every request in its own savepoint. If the commit itself fails, every request of the
//! batch gets the error: none is acknowledged unless it is durable.
//!
//! On SQLite the writer is a thread of its own with its own connection, so that a batch runs
//! without a thread hand-off per statement (see [`super::dual`]); on PostgreSQL a few
//! tasks write through the pool.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use fairtick_core::UserId;
use fairtick_core::wallet::{WalletLimits, WalletOp};
use tokio::sync::{Mutex, mpsc, oneshot};

use super::bulk::{LockedAccounts, Locking};
use super::dual::{BatchTx, Prepared};
use super::ledger::{Remembered, WalletOutcome};
use super::trades::{Finish, NewTrade, OpenOutcome, SaleOutcome, TradeRecord, TradeSpot};
use super::{IdempotencyKey, Store, StoreError, StoreResult, sqlite};

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

/// The answer to a whole batch: one result per request, or the batch's failure.
type BatchResult = StoreResult<Vec<StoreResult<WriteOutcome>>>;

/// What a batch's transaction did: [`BatchResult`], where a request left out (another
/// transaction held its user's accounts, see [`Locking::SkipHeld`]) has `None` and wrote nothing.
type Written = StoreResult<Vec<Option<StoreResult<WriteOutcome>>>>;

/// A batch's answers, where none was to be left out.
fn answered(written: Written) -> BatchResult {
    let answers = written?.into_iter();
    Ok(answers.map(|a| a.unwrap_or_else(|| Err(StoreError::BatchFailed("no answer".into())))).collect())
}

/// Settlement's writes, each with where its answer goes once committed. On SQLite they go to
/// the writer thread too, so that they take their turn between batches instead of holding the
/// write lock through a pool connection's hand-offs (which showed as the tail of trade-create
/// latency).
pub(crate) enum Work {
    /// Entry ticks: (trade id, entry, expiry); answers the ids of the trades entered. See
    /// [`Store::set_entries`].
    Entries { entries: Vec<(i64, TradeSpot, i64)>, reply: oneshot::Sender<StoreResult<Vec<i64>>> },
    /// Endings; answers the trades ended, as the writes returned them, and the endings left
    /// out, by [`Store::finish_trades_in`] with `locking`. See [`Store::finish_trades`].
    Finish {
        finishes: Vec<Finish>,
        now: DateTime<Utc>,
        locking: Locking,
        reply: oneshot::Sender<StoreResult<(Vec<TradeRecord>, Vec<Finish>)>>,
    },
    /// A sale, with its idempotency key if the request had one. See [`Store::sell_trade`].
    Sell {
        finish: Finish,
        key: Option<IdempotencyKey>,
        now: DateTime<Utc>,
        reply: oneshot::Sender<StoreResult<SaleOutcome>>,
    },
}

/// What reaches a writer.
enum Job {
    /// One request, committed with whatever else is queued.
    One(Queued),
    /// A batch given whole (by [`Store::write_batch`]), committed as given.
    Whole { requests: Vec<WriteRequest>, reply: oneshot::Sender<BatchResult> },
    /// Settlement's work, in a transaction of its own.
    Work(Work),
}

/// A writer's next turn: a batch of requests, or settlement's work.
enum Turn {
    Batch(Batch),
    Work(Work),
}

/// Requests committed together, and where their answers go.
struct Batch {
    requests: Vec<WriteRequest>,
    replies: Replies,
}

enum Replies {
    Each(Vec<oneshot::Sender<StoreResult<WriteOutcome>>>),
    Whole(oneshot::Sender<BatchResult>),
}

impl Turn {
    /// Takes `first` and whatever single requests are queued behind it; anything else that
    /// turns up behind them is `held` for the writer's next turn. A whole batch and settlement's
    /// work are turns of their own.
    fn gather(first: Job, receiver: &mut mpsc::Receiver<Job>, held: &mut Option<Job>) -> Turn {
        let first = match first {
            Job::One(first) => first,
            Job::Whole { requests, reply } => {
                return Turn::Batch(Batch { requests, replies: Replies::Whole(reply) });
            }
            Job::Work(work) => return Turn::Work(work),
        };
        let mut requests = vec![first.request];
        let mut replies = vec![first.reply];
        while requests.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(Job::One(next)) => {
                    requests.push(next.request);
                    replies.push(next.reply);
                }
                Ok(whole) => {
                    *held = Some(whole);
                    break;
                }
                Err(_) => break,
            }
        }
        Turn::Batch(Batch { requests, replies: Replies::Each(replies) })
    }
}

impl Batch {
    /// Commits the batch with `commit` and answers every request, except those it left out:
    /// they are returned, still to be written.
    async fn write(self, commit: impl AsyncFnOnce(&[WriteRequest]) -> Written) -> Option<Batch> {
        let size = self.requests.len();
        metrics::histogram!("group_commit_batch_size").record(size as f64);
        let started = std::time::Instant::now();
        let written = commit(&self.requests).await;
        // From waiting for the writer lock to the end of the commit.
        metrics::histogram!("group_commit_seconds").record(started.elapsed().as_secs_f64());
        match (self.replies, written) {
            (Replies::Whole(reply), written) => {
                let _ = reply.send(answered(written));
            }
            (Replies::Each(replies), Ok(results)) => {
                let mut left = Batch { requests: Vec::new(), replies: Replies::Each(Vec::new()) };
                for ((request, reply), result) in self.requests.into_iter().zip(replies).zip(results) {
                    match result {
                        // A requester that went away still had its request committed; nothing to tell.
                        Some(result) => {
                            let _ = reply.send(result);
                        }
                        None => left.push(request, reply),
                    }
                }
                if !left.requests.is_empty() {
                    metrics::counter!("group_commit_left_total").increment(left.requests.len() as u64);
                    return Some(left);
                }
            }
            (Replies::Each(replies), Err(error)) => {
                tracing::error!(%error, batch = size, "a group commit failed; none of its requests is done");
                let message = error.to_string();
                for reply in replies {
                    let _ = reply.send(Err(StoreError::BatchFailed(message.clone())));
                }
            }
        }
        None
    }

    /// How the batch locks on the pool: a batch given whole is committed as given, nothing
    /// left out.
    fn locking(&self) -> Locking {
        match self.replies {
            Replies::Each(_) => Locking::SkipHeld,
            Replies::Whole(_) => Locking::Wait,
        }
    }

    fn push(&mut self, request: WriteRequest, reply: oneshot::Sender<StoreResult<WriteOutcome>>) {
        self.requests.push(request);
        if let Replies::Each(replies) = &mut self.replies {
            replies.push(reply);
        }
    }
}

/// The queue in front of the writers.
#[derive(Clone)]
pub(crate) struct GroupCommit {
    queue: mpsc::Sender<Job>,
    /// Whether the writer is the SQLite thread, which also takes settlement's work.
    on_thread: bool,
}

/// Writers on PostgreSQL: two committed more than four (2.6k against 2.1-2.5k trades/s at 64
/// clients), whose batches were smaller and waited on each other.
const POOL_WRITERS: usize = 2;

impl GroupCommit {
    /// Starts the writers of `store`: on SQLite one thread writing to `sqlite_file` (SQLite has
    /// one writer anyway), on PostgreSQL a few tasks, whose row locks let batches of different
    /// users commit side by side. They stop when the last handle to the queue is dropped.
    pub(crate) fn start(store: Store, sqlite_file: Option<&Path>) -> StoreResult<GroupCommit> {
        let (queue, receiver) = mpsc::channel(QUEUE);
        let on_thread = sqlite_file.is_some();
        match sqlite_file {
            Some(path) => {
                let conn = sqlite::writer_connection(path)?;
                let (alive, writer) = std::sync::mpsc::channel::<()>();
                sqlite::checkpoint_while(path, writer)?;
                std::thread::Builder::new()
                    .name("fairtick-writer".into())
                    .spawn(move || {
                        let _alive = alive;
                        write_on_thread(&store, conn, receiver)
                    })
                    .map_err(|e| StoreError::BatchFailed(format!("cannot start the writer thread: {e}")))?;
            }
            None => {
                let receiver = Arc::new(Mutex::new(receiver));
                for _ in 0..POOL_WRITERS {
                    tokio::spawn(write_batches(store.clone(), receiver.clone()));
                }
            }
        }
        Ok(GroupCommit { queue, on_thread })
    }
}

/// A writer task on the pool. The receiver is shared, and a writer keeps it from gathering
/// until its batch's statements have run, letting go only for the commit: so the next batch
/// gathers what queued meanwhile, and runs its statements while this one waits for its flush.
/// Letting go right after gathering made every other batch one or two requests, taken by the
/// idle writer as soon as they came, at the full cost of a transaction each.
///
/// While it keeps the queue a batch never waits for a lock: the requests of users whose
/// accounts another transaction holds (settlement ending their trades) are left out, and this
/// writer commits them next, waiting for those locks, while the other one goes on. Waiting
/// with the queue held stopped every opening behind one user's.
async fn write_batches(store: Store, receiver: Arc<Mutex<mpsc::Receiver<Job>>>) {
    let mut held = None;
    loop {
        let mut turn = receiver.lock().await;
        let first = match held.take() {
            Some(job) => job,
            None => match turn.recv().await {
                Some(job) => job,
                None => return,
            },
        };
        match Turn::gather(first, &mut turn, &mut held) {
            Turn::Batch(batch) => {
                let locking = batch.locking();
                let left = batch
                    .write(async |requests| store.write_batch_pooled(requests, locking, turn).await)
                    .await;
                if let Some(left) = left {
                    left.write(async |requests| store.write_batch_pooled(requests, Locking::Wait, ()).await)
                        .await;
                }
            }
            Turn::Work(work) => {
                drop(turn);
                store.do_work(None, work).await
            }
        }
    }
}

/// The SQLite writer thread. Nothing it awaits needs a runtime (only the store's writer lock),
/// so a plain executor drives it.
fn write_on_thread(store: &Store, mut conn: rusqlite::Connection, mut receiver: mpsc::Receiver<Job>) {
    let mut held = None;
    let mut next_checkpoint = Instant::now() + sqlite::WAL_RESTART_EVERY;
    loop {
        if Instant::now() >= next_checkpoint {
            let wait = if sqlite::finish_checkpoint(&conn) {
                sqlite::WAL_RESTART_EVERY
            } else {
                sqlite::CHECKPOINT_RETRY
            };
            next_checkpoint = Instant::now() + wait;
        }
        let first = match held.take() {
            Some(job) => job,
            None => match receiver.blocking_recv() {
                Some(job) => job,
                None => return,
            },
        };
        let turn = Turn::gather(first, &mut receiver, &mut held);
        // A bug that panics in one turn fails that turn's requests (their replies are dropped,
        // so they hear that the writer stopped), not every write after it.
        let run =
            std::panic::AssertUnwindSafe(|| futures::executor::block_on(store.take_turn(&mut conn, turn)));
        if std::panic::catch_unwind(run).is_err() {
            tracing::error!("the SQLite writer panicked in a turn; its requesters were told it failed");
            if !conn.is_autocommit() && conn.execute_batch("ROLLBACK").is_err() {
                return;
            }
        }
    }
}

impl Store {
    /// One turn of the SQLite writer thread.
    async fn take_turn(&self, conn: &mut rusqlite::Connection, turn: Turn) {
        match turn {
            Turn::Batch(batch) => {
                // SQLite's one writer holds every account: nothing is left out.
                batch
                    .write(async |requests| {
                        // A batch's bulk statements recur for each batch size, so they stay
                        // prepared; the rare retry one request at a time does not.
                        let written = self
                            .on_thread(conn, true, async |tx| {
                                self.write_batch_in(tx, requests, true, Locking::Wait).await
                            })
                            .await;
                        if !bulk_failed(&written) {
                            return written;
                        }
                        self.on_thread(conn, false, async |tx| {
                            self.write_batch_in(tx, requests, false, Locking::Wait).await
                        })
                        .await
                    })
                    .await;
            }
            Turn::Work(work) => self.do_work(Some(conn), work).await,
        }
    }

    /// Commits `request` with whatever else is queued, and answers once it is durable.
    pub(crate) async fn submit(&self, request: WriteRequest) -> StoreResult<WriteOutcome> {
        let Some(group) = &self.group_commit else {
            let written = self.write_batch_pooled(std::slice::from_ref(&request), Locking::Wait, ()).await;
            let mut results = answered(written)?;
            return results.pop().unwrap_or_else(|| Err(StoreError::BatchFailed("no answer".into())));
        };
        let (reply, answer) = oneshot::channel();
        group.queue.send(Job::One(Queued { request, reply })).await.map_err(|_| writer_stopped())?;
        answer.await.map_err(|_| writer_stopped())?
    }

    /// Commits `requests` as one batch, as given (as the writer commits what queued), and
    /// answers once it is durable. Returns one result per request, in order; `Err` when the
    /// transaction itself failed, in which case nothing of the batch was committed.
    pub async fn write_batch(&self, requests: &[WriteRequest]) -> BatchResult {
        let Some(group) = &self.group_commit else {
            return answered(self.write_batch_pooled(requests, Locking::Wait, ()).await);
        };
        let (reply, answer) = oneshot::channel();
        let job = Job::Whole { requests: requests.to_vec(), reply };
        group.queue.send(job).await.map_err(|_| writer_stopped())?;
        answer.await.map_err(|_| writer_stopped())?
    }

    /// A batch in a transaction of the pool; `turn` is dropped once its statements have run,
    /// before the commit.
    async fn write_batch_pooled<T>(&self, requests: &[WriteRequest], locking: Locking, turn: T) -> Written {
        let written = self
            .in_pool_transaction(async |tx| self.write_batch_in(tx, requests, true, locking).await, turn)
            .await;
        if !bulk_failed(&written) {
            return written;
        }
        self.in_pool_transaction(async |tx| self.write_batch_in(tx, requests, false, locking).await, ()).await
    }

    /// Settlement's work, made by `work` with the channel its answer goes to: on the SQLite
    /// writer thread if there is one, else here in a transaction of the pool.
    pub(crate) async fn write_on_writer<T>(
        &self,
        work: impl FnOnce(oneshot::Sender<StoreResult<T>>) -> Work,
    ) -> StoreResult<T> {
        let (reply, answer) = oneshot::channel();
        let work = work(reply);
        match self.group_commit.as_ref().filter(|g| g.on_thread) {
            Some(group) => group.queue.send(Job::Work(work)).await.map_err(|_| writer_stopped())?,
            None => self.do_work(None, work).await,
        }
        answer.await.map_err(|_| writer_stopped())?
    }

    /// Runs settlement's `work` in a transaction of its own (on the writer thread's `conn`, or
    /// on the pool without one) and answers it once committed.
    async fn do_work(&self, conn: Option<&mut rusqlite::Connection>, work: Work) {
        match work {
            Work::Entries { entries, reply } => {
                let _ = reply.send(
                    self.in_transaction(conn, async |tx| self.set_entries_in(tx, &entries).await).await,
                );
            }
            Work::Finish { finishes, now, locking, reply } => {
                let _ = reply.send(
                    self.in_transaction(conn, async |tx| {
                        self.finish_trades_in(tx, &finishes, now, locking).await
                    })
                    .await,
                );
            }
            Work::Sell { finish, key, now, reply } => {
                let _ = reply.send(
                    self.in_transaction(conn, async |tx| {
                        self.sell_trade_in(tx, &finish, key.as_ref(), now).await
                    })
                    .await,
                );
            }
        }
    }

    /// `write` in a transaction of its own, committed: on the SQLite writer thread's `conn` if
    /// given (settlement's work, whose statements recur and so stay prepared), else on the pool.
    async fn in_transaction<T>(
        &self,
        conn: Option<&mut rusqlite::Connection>,
        write: impl AsyncFnOnce(&mut BatchTx<'_>) -> StoreResult<T>,
    ) -> StoreResult<T> {
        if let Some(conn) = conn {
            return self.on_thread(conn, true, write).await;
        }
        self.in_pool_transaction(write, ()).await
    }

    /// `write` in a transaction of the pool, committed; `turn` is dropped once `write` is done,
    /// before the commit waits for its flush.
    async fn in_pool_transaction<T, G>(
        &self,
        write: impl AsyncFnOnce(&mut BatchTx<'_>) -> StoreResult<T>,
        turn: G,
    ) -> StoreResult<T> {
        let mut w = self.begin_write().await?;
        let written = write(&mut (&mut w).into()).await?;
        drop(turn);
        w.tx.commit().await?;
        Ok(written)
    }

    /// One transaction on the SQLite writer thread's own connection, under the store's writer
    /// lock so that the pool's writers wait in the same queue. `recurring`: the turn's
    /// statements come back with the same shape, so all of them are kept prepared.
    async fn on_thread<T>(
        &self,
        conn: &mut rusqlite::Connection,
        recurring: bool,
        write: impl AsyncFnOnce(&mut BatchTx<'_>) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let _writer = match &self.write_lock {
            Some(lock) => Some(lock.lock().await),
            None => None,
        };
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let written = write(&mut BatchTx::Sqlite { conn: &mut *conn, recurring }).await;
        let committed = match written {
            Ok(results) => conn.execute_batch("COMMIT").map(|()| results).map_err(StoreError::from),
            Err(error) => Err(error),
        };
        if committed.is_err() && !conn.is_autocommit() {
            // Nothing of a failed batch stays; the connection is ready for the next one.
            conn.execute_batch("ROLLBACK")?;
        }
        committed
    }

    /// Runs `requests` inside `tx`, each in its own savepoint.
    ///
    /// Requests run in user order, so that a batch takes account locks in the same global order
    /// as every other money-moving transaction and two batches can never deadlock.
    /// With `together`, the plain trade openings are written in bulk, and a failure of that
    /// write is [`StoreError::BulkFailed`]: the transaction is to be rolled back and the batch
    /// run again without it. With [`Locking::SkipHeld`], the requests of users whose accounts
    /// it could not lock at once are left out.
    async fn write_batch_in(
        &self,
        tx: &mut BatchTx<'_>,
        requests: &[WriteRequest],
        together: bool,
        locking: Locking,
    ) -> Written {
        let mut order: Vec<usize> = (0..requests.len()).collect();
        order.sort_by_key(|&i| requests[i].user());
        let mut results: Vec<Option<StoreResult<WriteOutcome>>> = requests.iter().map(|_| None).collect();
        // Every account of the batch, locked up front in user order and read once.
        let mut users: Vec<UserId> = order.iter().map(|&i| requests[i].user()).collect();
        users.dedup();
        let mut accounts = self.lock_accounts(tx, &users, locking).await?;
        order.retain(|&i| accounts.holds(requests[i].user()));
        let (bulk, one_by_one): (Vec<usize>, Vec<usize>) = order
            .into_iter()
            .partition(|&i| together && matches!(&requests[i], WriteRequest::OpenTrade { key: None, .. }));
        let outcomes = self
            .open_in_bulk(tx, &mut accounts, requests, &bulk)
            .await
            .map_err(|e| StoreError::BulkFailed(e.to_string()))?;
        for (i, outcome) in bulk.into_iter().zip(outcomes) {
            results[i] = Some(Ok(WriteOutcome::Trade(outcome)));
        }
        for i in one_by_one {
            results[i] = Some(self.write_one(tx, &requests[i]).await?);
        }
        Ok(results)
    }

    /// The plain trade openings of a batch, in bulk.
    async fn open_in_bulk(
        &self,
        tx: &mut BatchTx<'_>,
        accounts: &mut LockedAccounts,
        requests: &[WriteRequest],
        bulk: &[usize],
    ) -> StoreResult<Vec<OpenOutcome>> {
        let opens: Vec<(UserId, &NewTrade, DateTime<Utc>)> = bulk
            .iter()
            .filter_map(|&i| match &requests[i] {
                WriteRequest::OpenTrade { user, trade, now, .. } => Some((*user, trade, *now)),
                WriteRequest::MoveFunds { .. } => None,
            })
            .collect();
        if opens.is_empty() {
            return Ok(Vec::new());
        }
        self.open_trades_in(tx, accounts, &opens).await
    }

    /// One request in its own savepoint: its failure undoes only its own writes.
    async fn write_one(
        &self,
        tx: &mut BatchTx<'_>,
        request: &WriteRequest,
    ) -> StoreResult<StoreResult<WriteOutcome>> {
        execute(tx, "SAVEPOINT request").await?;
        Ok(match self.apply(tx, request).await {
            Ok(outcome) if outcome.keeps_writes() => {
                execute(tx, "RELEASE SAVEPOINT request").await?;
                Ok(outcome)
            }
            Ok(outcome) => {
                roll_back_request(tx).await?;
                Ok(outcome)
            }
            Err(e) if e.is_unique_violation() && request.key().is_some() => {
                // Another transaction stored this idempotency key first: answer as it did.
                roll_back_request(tx).await?;
                self.replay(tx, request).await
            }
            Err(e) => {
                roll_back_request(tx).await?;
                Err(e)
            }
        })
    }

    async fn apply(&self, tx: &mut BatchTx<'_>, request: &WriteRequest) -> StoreResult<WriteOutcome> {
        Ok(match request {
            WriteRequest::OpenTrade { user, trade, key, now } => {
                WriteOutcome::Trade(self.open_trade_in(tx, *user, trade, key.as_ref(), *now).await?)
            }
            WriteRequest::MoveFunds { user, op, limits, key, now } => {
                WriteOutcome::Wallet(self.move_funds_in(tx, *user, *op, limits, key.as_ref(), *now).await?)
            }
        })
    }

    /// The stored answer of a request whose idempotency key another transaction committed.
    async fn replay(&self, tx: &mut BatchTx<'_>, request: &WriteRequest) -> StoreResult<WriteOutcome> {
        let (user, key) = match request.key() {
            Some(key) => (request.user(), key),
            None => return Err(StoreError::Corrupt("a replay without an idempotency key".into())),
        };
        Ok(match request {
            WriteRequest::OpenTrade { .. } => {
                WriteOutcome::Trade(match self.remembered(tx, user, key).await? {
                    Some(Remembered::Answer(trade)) => OpenOutcome::Replayed(trade),
                    _ => OpenOutcome::KeyReused,
                })
            }
            WriteRequest::MoveFunds { .. } => {
                WriteOutcome::Wallet(match self.remembered(tx, user, key).await? {
                    Some(Remembered::Answer(receipt)) => WalletOutcome::Replayed(receipt),
                    _ => WalletOutcome::KeyReused,
                })
            }
        })
    }
}

async fn execute(tx: &mut BatchTx<'_>, statement: &str) -> StoreResult<()> {
    tx.execute(statement, &[], Prepared::Keep).await?;
    Ok(())
}

/// Whether a batch is to run again one request at a time, so that only the culprit fails: its
/// bulk write failed, and with it the whole transaction, which was rolled back. (A rollback and
/// a retry when a write fails cost less than a savepoint around every bulk write: two round
/// trips in every batch.)
fn bulk_failed(written: &Written) -> bool {
    match written {
        Err(StoreError::BulkFailed(error)) => {
            tracing::warn!(%error, "a bulk write failed; retrying its batch one request at a time");
            true
        }
        _ => false,
    }
}

fn writer_stopped() -> StoreError {
    StoreError::BatchFailed("the writer has stopped".into())
}

/// Undoes one request's writes and leaves the batch's transaction usable (on PostgreSQL a
/// failed statement poisons the transaction until the rollback to the savepoint).
async fn roll_back_request(tx: &mut BatchTx<'_>) -> StoreResult<()> {
    execute(tx, "ROLLBACK TO SAVEPOINT request").await?;
    execute(tx, "RELEASE SAVEPOINT request").await
}
