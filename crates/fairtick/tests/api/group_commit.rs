//! Group commit: requests that share a transaction stay isolated from each other, and a crash
//! in the middle of batching loses no acknowledged trade and acknowledges none it lost. Also
//! settlement's bulk writes, which touch only trades still active.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use fairtick::store::{
    Ending, Endings, Finish, IdempotencyKey, NewTrade, OpenOutcome, StoreError, TradeSpot, WalletOutcome,
    WriteOutcome, WriteRequest, utc_day,
};
use fairtick_core::price::Price;
use fairtick_core::trade::{self, Direction, TradeResult, TradeStatus};
use fairtick_core::wallet::{WalletLimits, WalletOp};
use fairtick_core::{Money, UserId};
use reqwest::StatusCode;
use serde_json::json;
use sqlx::AnyConnection;
use tokio::task::JoinHandle;

use crate::helpers::{
    TestApp, body, break_the_ending_of, eventually, raw_connection, spawn_process, until_waiting_for_a_lock,
};
use crate::trades::assert_settled_by_the_rules;

fn trade(stake: &str, payout_rate_bp: u32) -> NewTrade {
    NewTrade {
        symbol: "SIMV25".into(),
        direction: Direction::Up,
        stake: Money::parse(stake).unwrap(),
        duration_ms: 5_000,
        payout_rate_bp,
        feed_grace_ms: 10_000,
    }
}

fn open(user: UserId, stake: &str, key: Option<&str>) -> WriteRequest {
    WriteRequest::OpenTrade {
        user,
        trade: trade(stake, 8_500),
        key: key.map(|k| IdempotencyKey { key: k.into(), request_hash: format!("hash-of-{stake}") }),
        now: Utc::now(),
    }
}

fn opened(result: &Result<WriteOutcome, StoreError>) -> i64 {
    match result {
        Ok(WriteOutcome::Trade(OpenOutcome::Opened(trade))) => trade.id,
        other => panic!("expected an opened trade, got {other:?}"),
    }
}

async fn users(app: &TestApp, names: &[&str]) -> Vec<(String, UserId)> {
    let mut out = Vec::new();
    for name in names {
        let token = app.signed_up(&format!("{name}@example.com")).await;
        let id = UserId(app.user_id(&token).await);
        out.push((token, id));
    }
    out
}

#[tokio::test]
async fn a_failing_request_rolls_back_alone_and_its_batch_mates_commit() {
    let app = TestApp::spawn().await;
    let people = users(&app, &["first", "failing", "third"]).await;
    let (first, failing, third) = (people[0].1, people[1].1, people[2].1);
    let batch = vec![
        open(first, "10.00", None),
        // A zero payout rate violates the trades table's CHECK after the balance was read:
        // a real database error in the middle of the batch.
        WriteRequest::OpenTrade { user: failing, trade: trade("10.00", 0), key: None, now: Utc::now() },
        WriteRequest::MoveFunds {
            user: third,
            op: WalletOp::Deposit(Money::parse("50.00").unwrap()),
            limits: WalletLimits::default(),
            key: None,
            now: Utc::now(),
        },
        open(first, "20.00", None),
    ];
    let results = app.store.write_batch(&batch).await.expect("the batch commits");
    assert_eq!(results.len(), 4);
    let ids = [opened(&results[0]), opened(&results[3])];
    assert!(matches!(&results[1], Err(StoreError::Database(_) | StoreError::Sqlite(_))), "{:?}", results[1]);
    assert!(matches!(&results[2], Ok(WriteOutcome::Wallet(WalletOutcome::Done(_)))), "{:?}", results[2]);

    for id in ids {
        assert_eq!(app.store.trade(id).await.unwrap().unwrap().user_id, first);
    }
    assert_eq!(app.store.trade_counts(first).await.unwrap().active, 2);
    assert_eq!(app.store.trade_counts(failing).await.unwrap().active, 0);
    let balance = |token: String| {
        let app = &app;
        async move { app.balance(&token).await }
    };
    let failing_balance = balance(people[1].0.clone()).await;
    assert_eq!(failing_balance["available"], "10000.00", "{failing_balance}");
    assert_eq!(failing_balance["inPlay"], "0.00");
    let first_balance = balance(people[0].0.clone()).await;
    assert_eq!(first_balance["available"], "9970.00", "{first_balance}");
    assert_eq!(first_balance["inPlay"], "30.00");
    assert_eq!(balance(people[2].0.clone()).await["available"], "10050.00");
    let report = app.store.audit().await.unwrap();
    assert!(report.is_clean(), "{:?}", report.violations);
}

#[tokio::test]
async fn each_request_checks_the_balance_its_batch_mates_left() {
    let app = TestApp::spawn().await;
    let (token, user) = users(&app, &["sharing"]).await.remove(0);
    let batch = vec![open(user, "6000.00", None), open(user, "6000.00", None), open(user, "4000.00", None)];
    let results = app.store.write_batch(&batch).await.unwrap();
    opened(&results[0]);
    match &results[1] {
        Ok(WriteOutcome::Trade(OpenOutcome::InsufficientFunds { available })) => {
            assert_eq!(*available, Money::parse("4000.00").unwrap());
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    opened(&results[2]);
    let balance = app.balance(&token).await;
    assert_eq!(balance["available"], "0.00", "{balance}");
    assert_eq!(balance["inPlay"], "10000.00");
    assert!(app.store.audit().await.unwrap().is_clean());
}

#[tokio::test]
async fn a_key_used_twice_in_one_batch_opens_one_trade_and_replays_it() {
    let app = TestApp::spawn().await;
    let (_, user) = users(&app, &["twice"]).await.remove(0);
    let mut other = open(user, "11.00", Some("same-key"));
    if let WriteRequest::OpenTrade { key: Some(key), .. } = &mut other {
        key.request_hash = "a different request".into();
    }
    let batch = vec![open(user, "10.00", Some("same-key")), open(user, "10.00", Some("same-key")), other];
    let results = app.store.write_batch(&batch).await.unwrap();
    let id = opened(&results[0]);
    match &results[1] {
        Ok(WriteOutcome::Trade(OpenOutcome::Replayed(trade))) => assert_eq!(trade.id, id),
        other => panic!("expected a replay, got {other:?}"),
    }
    assert!(matches!(&results[2], Ok(WriteOutcome::Trade(OpenOutcome::KeyReused))), "{:?}", results[2]);
    assert_eq!(app.store.trade_counts(user).await.unwrap().active, 1);
}

/// 32 clients open trades as fast as the server takes them; the server is killed with
/// SIGKILL while batches are in flight. Every trade acknowledged with 201 must be in the
/// database with its stake posted; the ledger must balance; and after a restart the
/// acknowledged trades settle by the rules.
#[tokio::test]
async fn kill_9_in_the_middle_of_batches_loses_no_acknowledged_trade() {
    let mut app = TestApp::spawn().await;
    let mut tokens = Vec::new();
    for i in 0..8 {
        tokens.push(app.signed_up(&format!("batch-crash-{i}@example.com")).await);
    }
    app.stop().await;
    let (mut process, base) = spawn_process(&app).await;
    let client = reqwest::Client::new();

    let acknowledged = Arc::new(Mutex::new(Vec::<i64>::new()));
    let mut clients = Vec::new();
    for n in 0..32 {
        let (client, base, token, acknowledged) =
            (client.clone(), base.clone(), tokens[n % tokens.len()].clone(), acknowledged.clone());
        clients.push(tokio::spawn(async move {
            let request = json!({"symbol": "SIMV25", "direction": "up", "amount": "10.00", "duration": 10});
            loop {
                let sent =
                    client.post(format!("{base}/api/flash-trade/create")).bearer_auth(&token).json(&request);
                let Ok(response) = sent.send().await else { return };
                if response.status() != StatusCode::CREATED {
                    eprintln!(
                        "create answered {}: {}",
                        response.status(),
                        response.text().await.unwrap_or_default()
                    );
                    return;
                }
                let Ok(answer) = response.json::<serde_json::Value>().await else { return };
                acknowledged.lock().unwrap().push(answer["trade"]["id"].as_i64().unwrap());
            }
        }));
    }
    // Kill once a good number of batches have been acknowledged, while clients are mid-request.
    eventually(Duration::from_secs(30), || async {
        (acknowledged.lock().unwrap().len() >= 400).then_some(())
    })
    .await;
    process.start_kill().unwrap();
    process.wait().await.unwrap();
    for task in clients {
        task.await.unwrap();
    }
    let acknowledged: HashSet<i64> = acknowledged.lock().unwrap().iter().copied().collect();

    let mut conn = raw_connection(&app.database_url).await;
    let stored: Vec<(i64,)> = sqlx::query_as(
        "SELECT t.id FROM trades t JOIN ledger_transactions l ON l.reference = CAST(t.id AS TEXT) \
         WHERE l.kind = 'stake'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let stored: HashSet<i64> = stored.into_iter().map(|(id,)| id).collect();
    let lost: Vec<&i64> = acknowledged.difference(&stored).collect();
    assert!(lost.is_empty(), "acknowledged but not committed: {lost:?}");
    eprintln!(
        "kill -9: {} acknowledged, {} committed (the rest were in flight, never acknowledged)",
        acknowledged.len(),
        stored.len()
    );

    let restarted = app.spawn_sibling(|_| {}).await;
    let report = restarted.store.audit().await.unwrap();
    assert!(report.is_clean(), "{:?}", report.violations);
    // Every user's trades end, the newest of one user's by the rules, and the ledger still
    // balances after all those endings.
    eventually(Duration::from_secs(30), || async {
        let mut conn = raw_connection(&app.database_url).await;
        let (active,): (i64,) =
            sqlx::query_as("SELECT CAST(COUNT(*) AS BIGINT) FROM trades WHERE status = 'active'")
                .fetch_one(&mut conn)
                .await
                .unwrap();
        (active == 0).then_some(())
    })
    .await;
    let newest = body(restarted.get("/api/flash-trade/history?limit=5", Some(&tokens[0])).await).await;
    let newest = newest["trades"].as_array().unwrap();
    assert_eq!(newest.len(), 5);
    for trade in newest {
        assert_settled_by_the_rules(&restarted, trade).await;
    }
    let report = restarted.store.audit().await.unwrap();
    assert!(report.is_clean(), "{:?}", report.violations);
}

/// Every posting lands on its own transaction when a batch's ledger is written at once: many
/// users, different stakes, and endings with different numbers of postings (a win pays from
/// the house as well, a loss moves nothing to cash). The audit checks each trade's postings
/// against its user's accounts, its stake and its payout.
#[tokio::test]
async fn a_batch_of_many_users_and_stakes_books_every_posting_on_its_own_transaction() {
    let app = TestApp::spawn().await;
    let people = users(&app, &["ann", "bob", "cyd", "dan", "eve"]).await;
    let new = |cents: i64| NewTrade {
        symbol: "NOFEED".into(),
        duration_ms: 3_600_000,
        ..trade(&Money::from_cents(cents).to_string(), 8_500)
    };
    let requests: Vec<WriteRequest> = (0..12)
        .map(|i| WriteRequest::OpenTrade {
            user: people[i % people.len()].1,
            trade: new(100 * (i as i64 + 1)),
            key: None,
            now: Utc::now(),
        })
        .collect();
    let written = app.store.write_batch(&requests).await.unwrap();
    let ids: Vec<i64> = written.iter().map(opened).collect();
    let audit = app.store.audit().await.unwrap();
    assert!(audit.is_clean(), "after the openings: {:?}", audit.violations);

    let spot =
        |seq: i64| TradeSpot { seq, ts: seq * 1_000, price: Price::parse("100.00").unwrap(), epoch_id: 0 };
    let entries: Vec<_> = ids.iter().map(|&id| (id, spot(1), 3_601_000)).collect();
    assert_eq!(app.store.set_entries(&entries).await.unwrap().len(), ids.len());
    let finishes: Vec<Finish> = ids
        .iter()
        .zip(&requests)
        .enumerate()
        .map(|(i, (&id, request))| {
            let WriteRequest::OpenTrade { user, trade: new, .. } = request else { unreachable!() };
            let result = [TradeResult::Win, TradeResult::Lose, TradeResult::Tie][i % 3];
            Finish {
                trade_id: id,
                user_id: *user,
                ending: Ending::Settled { exit: spot(2), result, grace_ms: 10_000 },
                transfer: trade::settlement_transfer(result, new.stake, new.payout_rate_bp).unwrap(),
                payout: trade::returned(result, new.stake, new.payout_rate_bp),
            }
        })
        .collect();
    assert_eq!(app.store.finish_trades(&finishes, Utc::now()).await.into_result().unwrap().len(), ids.len());
    let audit = app.store.audit().await.unwrap();
    assert!(audit.is_clean(), "after the endings: {:?}", audit.violations);
    assert_eq!(
        (audit.trades, audit.transactions),
        (12, 5 + 12 + 12),
        "a signup credit each, then a stake and an ending per trade"
    );
}

/// Settlement's bulk writes name the trades they touch: each applies only to trades still
/// active, so that with several nodes an entry is recorded once and a trade ends (and moves
/// money) once. On a symbol with no feed and an hour long, settlement itself leaves them alone.
#[tokio::test]
async fn entries_and_endings_apply_once_and_only_to_trades_still_active() {
    use fairtick_core::ledger::TransactionKind;

    let app = TestApp::spawn().await;
    let user = users(&app, &["lister"]).await[0].1;
    let new = NewTrade { symbol: "NOFEED".into(), duration_ms: 3_600_000, ..trade("1.00", 8_500) };
    let request = WriteRequest::OpenTrade { user, trade: new.clone(), key: None, now: Utc::now() };
    let written = app.store.write_batch(&vec![request; 4]).await.unwrap();
    let ids: Vec<i64> = written.iter().map(opened).collect();
    let spot =
        |seq: i64| TradeSpot { seq, ts: seq * 1_000, price: Price::parse("100.00").unwrap(), epoch_id: 0 };

    let (ids, voided) = (ids[..3].to_vec(), ids[3]);
    let entries: Vec<_> = ids.iter().map(|&id| (id, spot(1), 1_000 + new.duration_ms)).collect();
    let mut entered = app.store.set_entries(&entries).await.unwrap();
    entered.sort_unstable();
    assert_eq!(entered, ids);
    assert!(app.store.set_entries(&entries).await.unwrap().is_empty(), "an entry is recorded once");

    let finish = |id: i64| Finish {
        trade_id: id,
        user_id: user,
        ending: Ending::Settled { exit: spot(2), result: TradeResult::Win, grace_ms: 10_000 },
        transfer: trade::settlement_transfer(TradeResult::Win, new.stake, new.payout_rate_bp).unwrap(),
        payout: trade::returned(TradeResult::Win, new.stake, new.payout_rate_bp),
    };
    let first =
        app.store.finish_trades(&[finish(ids[0]), finish(ids[1])], Utc::now()).await.into_result().unwrap();
    assert_eq!(first.iter().map(|t| t.id).collect::<Vec<_>>(), ids[..2]);
    let all: Vec<Finish> = ids.iter().map(|&id| finish(id)).collect();
    let second = app.store.finish_trades(&all, Utc::now()).await.into_result().unwrap();
    assert_eq!(
        second.iter().map(|t| t.id).collect::<Vec<_>>(),
        ids[2..],
        "the two already ended are skipped"
    );
    assert!(second.iter().all(|t| t.status == TradeStatus::Settled && t.entry == Some(spot(1))));
    assert!(second.iter().all(|t| t.feed_grace_ms == Some(10_000)), "settled in bulk, with its grace period");
    assert!(app.store.set_entries(&entries).await.unwrap().is_empty(), "an ended trade takes no entry");

    // A void ends alone (not in the bulk write of settled endings), and comes back as ended.
    let void = || Finish {
        trade_id: voided,
        user_id: user,
        ending: Ending::Void { reason: "no tick".into(), grace_ms: 10_000 },
        transfer: trade::release_transfer(TransactionKind::Refund, new.stake, new.stake).unwrap(),
        payout: new.stake,
    };
    let ended = app.store.finish_trades(&[void()], Utc::now()).await.into_result().unwrap();
    assert_eq!(ended.len(), 1);
    let (status, reason, payout) = (ended[0].status, ended[0].void_reason.as_deref(), ended[0].payout);
    assert_eq!((status, reason, payout), (TradeStatus::Void, Some("no tick"), Some(new.stake)));
    assert!(ended[0].settled_at.is_some());
    assert_eq!(ended[0].feed_grace_ms, Some(10_000), "the grace period it was voided under");
    assert!(
        app.store.finish_trades(&[void()], Utc::now()).await.into_result().unwrap().is_empty(),
        "voided once"
    );

    // Yesterday as well, in case the test ran over midnight.
    let from = utc_day(Utc::now().timestamp_millis()) - 1;
    assert_eq!(
        app.store.turnovers(&[user], from).await.unwrap(),
        [(user, Money::parse("3.00").unwrap(), 1)],
        "the three settled count once each, the void not at all"
    );

    let audit = app.store.audit().await.unwrap();
    assert!(audit.is_clean(), "{:?}", audit.violations);
}

/// Turnover counts on the day a trade was accepted, so a trade from before the window, ended
/// today, does not count in it; a trade sold back counts like one settled.
#[tokio::test]
async fn turnover_counts_on_the_day_a_trade_was_accepted() {
    use chrono::Duration as Days;
    use fairtick_core::ledger::TransactionKind;

    let app = TestApp::spawn().await;
    let user = users(&app, &["turner"]).await[0].1;
    let new = NewTrade { symbol: "NOFEED".into(), duration_ms: 3_600_000, ..trade("2.50", 8_500) };
    let accepted = |days_ago: i64| WriteRequest::OpenTrade {
        user,
        trade: new.clone(),
        key: None,
        now: Utc::now() - Days::days(days_ago),
    };
    let written = app.store.write_batch(&[accepted(40), accepted(0)]).await.unwrap();
    let ids: Vec<i64> = written.iter().map(opened).collect();
    let sold = |id: i64| Finish {
        trade_id: id,
        user_id: user,
        ending: Ending::Sold { value: new.stake },
        transfer: trade::release_transfer(TransactionKind::Sell, new.stake, new.stake).unwrap(),
        payout: new.stake,
    };
    let today = utc_day(Utc::now().timestamp_millis());
    let turnover = async |first_day: i64| app.store.turnovers(&[user], first_day).await.unwrap()[0].1;
    assert_eq!(turnover(today - 45).await, Money::ZERO, "nothing counts before it ends");

    app.store.finish_trades(&[sold(ids[0]), sold(ids[1])], Utc::now()).await.into_result().unwrap();
    assert_eq!(turnover(today - 29).await, new.stake, "only the trade accepted within the window");
    assert_eq!(turnover(today - 45).await, Money::parse("5.00").unwrap(), "both, over 46 days");
}

/// A VIP level is written only while the turnover it was earned by is still the stored one: a
/// level worked out from an older read cannot overwrite the one a newer step set.
#[tokio::test]
async fn a_vip_level_from_a_stale_turnover_is_not_written() {
    let app = TestApp::spawn().await;
    let user = users(&app, &["climber"]).await[0].1;
    let today = utc_day(Utc::now().timestamp_millis());
    let now = async || app.store.turnovers(&[user], today).await.unwrap()[0];
    assert_eq!(now().await, (user, Money::ZERO, 1), "a new user: no turnover, level 1");
    let stale = Money::parse("1.00").unwrap();
    app.store.set_vip_levels(&[(user, 2, stale)], today).await.unwrap();
    assert_eq!(now().await.2, 1, "not written: the turnover is 0.00, not the 1.00 it was earned by");
    app.store.set_vip_levels(&[(user, 2, Money::ZERO)], today).await.unwrap();
    assert_eq!(now().await.2, 2, "written when the turnover it was earned by is current");
}

/// On PostgreSQL, a server with two users; `None` on SQLite, whose one writer holds every
/// account, so that no transaction can hold one user's alone.
async fn two_users_on_postgres() -> Option<(TestApp, Vec<(String, UserId)>)> {
    if std::env::var("TEST_DATABASE_URL").is_err() {
        eprintln!("skipped: row locks held by another transaction need PostgreSQL (TEST_DATABASE_URL)");
        return None;
    }
    let app = TestApp::spawn().await;
    let people = users(&app, &["held", "free"]).await;
    Some((app, people))
}

/// A transaction of the test's own holding `user`'s accounts until it is committed.
async fn hold_accounts(app: &TestApp, user: UserId) -> sqlx::AnyConnection {
    let mut holder = raw_connection(&app.database_url).await;
    sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
    let locked = sqlx::query(&format!("SELECT id FROM accounts WHERE user_id = {} FOR UPDATE", user.0))
        .fetch_all(&mut holder)
        .await
        .unwrap();
    assert_eq!(locked.len(), 2, "a user has a cash and an in-play account");
    holder
}

/// On PostgreSQL a batch never waits for an account another transaction holds (settlement
/// ending that user's trades holds them until it commits): the requests of that user wait
/// alone, and the other users' trades are opened meanwhile.
#[tokio::test]
async fn a_trade_whose_accounts_are_held_elsewhere_waits_alone() {
    let Some((app, people)) = two_users_on_postgres().await else { return };
    let ((held_token, held), (free_token, _)) = (people[0].clone(), people[1].clone());
    let mut holder = hold_accounts(&app, held).await;

    let request = json!({"symbol": "SIMV25", "direction": "up", "amount": "10.00", "duration": 5});
    let waiting = app.client.post(app.url("/api/flash-trade/create")).bearer_auth(&held_token).json(&request);
    let waiting = tokio::spawn(waiting.send());
    // Until the held user's request waits on the lock: the free one then shows that it is not
    // held up behind it (sent before, it could have run alone and proven nothing).
    until_waiting_for_a_lock(&app, "").await;
    let free = tokio::time::timeout(
        Duration::from_secs(10),
        app.post_json("/api/flash-trade/create", Some(&free_token), &request),
    )
    .await
    .expect("a trade of a user whose accounts nobody holds is not held up");
    assert_eq!(free.status(), StatusCode::CREATED);
    assert!(!waiting.is_finished(), "the held user's trade waits for the lock");

    sqlx::query("COMMIT").execute(&mut holder).await.unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), waiting).await.expect("answered");
    assert_eq!(response.unwrap().unwrap().status(), StatusCode::CREATED);
    assert_eq!(app.store.trade_counts(held).await.unwrap().active, 1);
    assert!(app.store.audit().await.unwrap().is_clean());
}

/// On PostgreSQL, a server with two users (held, then free), each with one entered trade on a
/// market with no feed (which settlement leaves alone), and the endings that lose them.
async fn two_entered_trades_on_postgres() -> Option<(TestApp, UserId, [Finish; 2])> {
    let (app, people) = two_users_on_postgres().await?;
    let (held, free) = (people[0].1, people[1].1);
    let new = NewTrade { symbol: "NOFEED".into(), duration_ms: 3_600_000, ..trade("1.00", 8_500) };
    let open = |user| WriteRequest::OpenTrade { user, trade: new.clone(), key: None, now: Utc::now() };
    let written = app.store.write_batch(&[open(held), open(free)]).await.unwrap();
    let (held_trade, free_trade) = (opened(&written[0]), opened(&written[1]));
    let spot =
        |seq: i64| TradeSpot { seq, ts: seq * 1_000, price: Price::parse("100.00").unwrap(), epoch_id: 0 };
    let entries =
        [(held_trade, spot(1), 1_000 + new.duration_ms), (free_trade, spot(1), 1_000 + new.duration_ms)];
    assert_eq!(app.store.set_entries(&entries).await.unwrap().len(), 2);
    let finish = |trade_id, user_id| Finish {
        trade_id,
        user_id,
        ending: Ending::Settled { exit: spot(2), result: TradeResult::Lose, grace_ms: 10_000 },
        transfer: trade::settlement_transfer(TradeResult::Lose, new.stake, new.payout_rate_bp).unwrap(),
        payout: trade::returned(TradeResult::Lose, new.stake, new.payout_rate_bp),
    };
    Some((app, held, [finish(held_trade, held), finish(free_trade, free)]))
}

/// Ends both trades of [`two_entered_trades_on_postgres`] while a transaction of the test's
/// own holds the first one's accounts; returns once the free one has ended, with the ending
/// still waiting for the held one, and the holder to let go.
async fn ending_while_held(
    app: &TestApp,
    held: UserId,
    finishes: [Finish; 2],
) -> (JoinHandle<Endings>, AnyConnection) {
    let (held_trade, free_trade) = (finishes[0].trade_id, finishes[1].trade_id);
    let holder = hold_accounts(app, held).await;
    let store = app.store.clone();
    let settling = tokio::spawn(async move { store.finish_trades(&finishes, Utc::now()).await });
    let status = |id| {
        let store = app.store.clone();
        async move { store.trade(id).await.unwrap().unwrap().status }
    };
    eventually(Duration::from_secs(10), || async {
        (status(free_trade).await == TradeStatus::Settled).then_some(())
    })
    .await;
    assert_eq!(status(held_trade).await, TradeStatus::Active);
    assert!(!settling.is_finished());
    (settling, holder)
}

/// On PostgreSQL settlement does not wait for an account an opening holds either: it ends the
/// other users' trades first, then the held user's once the lock is let go.
#[tokio::test]
async fn settlement_ends_the_trades_of_free_accounts_before_those_held_elsewhere() {
    let Some((app, held, finishes)) = two_entered_trades_on_postgres().await else { return };
    let ids = finishes.each_ref().map(|f| f.trade_id);
    let (settling, mut holder) = ending_while_held(&app, held, finishes).await;

    sqlx::query("COMMIT").execute(&mut holder).await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(10), settling).await.expect("answered");
    let ended: Vec<i64> = ended.unwrap().into_result().unwrap().iter().map(|t| t.id).collect();
    assert_eq!(ended, ids, "both come back, in id order");
    assert!(app.store.audit().await.unwrap().is_clean());
}

/// When the ending of the held user's trades fails after the free users' have committed, the
/// trades that did end come back beside the error: settlement must announce them, and a plain
/// error would have lost them.
#[tokio::test]
async fn endings_committed_before_a_failure_come_back_with_the_error() {
    let Some((app, held, finishes)) = two_entered_trades_on_postgres().await else { return };
    let (held_trade, free_trade) = (finishes[0].trade_id, finishes[1].trade_id);
    break_the_ending_of(&app, held_trade).await;
    let (settling, mut holder) = ending_while_held(&app, held, finishes).await;

    sqlx::query("COMMIT").execute(&mut holder).await.unwrap();
    let endings = tokio::time::timeout(Duration::from_secs(10), settling).await.expect("answered").unwrap();
    assert_eq!(endings.ended.iter().map(|t| t.id).collect::<Vec<_>>(), [free_trade]);
    let failed = endings.failed.expect("the held trade's ending failed");
    assert!(failed.to_string().contains("injected fault"), "{failed}");
    assert_eq!(app.store.trade(held_trade).await.unwrap().unwrap().status, TradeStatus::Active);
    assert!(app.store.audit().await.unwrap().is_clean());
}
