//! Flash trades over HTTP: quotes, opening, settlement by the rules from the recorded ticks,
//! selling back, receipts, history, the record, VIP levels, crashes and concurrency.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use fairtick::services::trades::settlement::WRITE_CHUNK;
use fairtick_core::price::Price;
use fairtick_core::trade::{Direction, Progress, Spot, Terms, progress};
use fairtick_core::{Money, UserId};
use futures::StreamExt;
use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{
    TestApp, body, break_the_ending_of, error_of, eventually, heal_the_ending, ms, raw_connection,
    spawn_process, until_waiting_for_a_lock, with_role,
};
use crate::realtime::{Socket, connect};

fn open_body(symbol: &str, direction: &str, amount: &str, duration: u32) -> Value {
    json!({"symbol": symbol, "direction": direction, "amount": amount, "duration": duration})
}

async fn open(app: &TestApp, token: &str, request: &Value) -> Value {
    let response = app.post_json("/api/flash-trade/create", Some(token), request).await;
    let status = response.status();
    let body = body(response).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["trade"].clone()
}

async fn trade(app: &TestApp, token: &str, id: i64) -> Value {
    let response = app.get(&format!("/api/flash-trade/{id}"), Some(token)).await;
    assert_eq!(response.status(), StatusCode::OK);
    body(response).await["trade"].clone()
}

/// The trade once its entry tick is fixed (within 5 s).
async fn entered(app: &TestApp, token: &str, id: i64) -> Value {
    eventually(Duration::from_secs(5), || async {
        let trade = trade(app, token, id).await;
        trade["entry"].is_object().then_some(trade)
    })
    .await
}

async fn ended(app: &TestApp, token: &str, id: i64, within: Duration) -> Value {
    eventually(within, || async {
        let trade = trade(app, token, id).await;
        (trade["status"] != "active").then_some(trade)
    })
    .await
}

/// Re-derives a settled trade's entry, exit and result from the market's stored ticks.
pub(crate) async fn assert_settled_by_the_rules(app: &TestApp, trade: &Value) {
    assert_eq!(trade["status"], "settled", "{trade}");
    let symbol = trade["symbol"].as_str().unwrap();
    let ticks =
        body(app.get(&format!("/api/market/ticks?symbol={symbol}&afterSeq=0&limit=5000"), None).await).await;
    let spots: Vec<Spot> = ticks["ticks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| Spot {
            seq: t["seq"].as_i64().unwrap(),
            ts: ms(&t["ts"]),
            price: Price::parse(t["price"].as_str().unwrap()).unwrap(),
        })
        .collect();
    let accepted_at = ms(&trade["acceptedAt"]);
    let terms = Terms {
        direction: trade["direction"].as_str().unwrap().parse::<Direction>().unwrap(),
        stake: Money::parse(trade["amount"].as_str().unwrap()).unwrap(),
        duration_ms: trade["duration"].as_i64().unwrap() * 1000,
        payout_rate_bp: 8_500,
        accepted_at,
    };
    let after = spots.partition_point(|s| s.ts <= accepted_at);
    let Progress::Decided { entry, exit, result, expires_at, .. } = progress(&terms, &spots[after..]) else {
        panic!("the stored ticks do not decide trade {trade}");
    };
    assert_eq!(trade["entry"]["seq"].as_i64().unwrap(), entry.seq, "entry: the first tick after acceptance");
    assert_eq!(ms(&trade["expiresAt"]), expires_at);
    assert_eq!(trade["exit"]["seq"].as_i64().unwrap(), exit.seq, "exit: the last tick at or before expiry");
    assert_eq!(trade["result"], result.as_str());
    let expected_payout = fairtick_core::trade::returned(result, terms.stake, 8_500);
    assert_eq!(trade["payout"], expected_payout.to_string());
}

#[tokio::test]
async fn a_quote_shows_the_honest_terms_before_buying() {
    let app = TestApp::spawn().await;
    let token = app.signed_up("quote@example.com").await;
    eventually(Duration::from_secs(5), || async {
        let t = body(app.get("/api/market/ticks?symbol=SIMV25&limit=1", None).await).await;
        (!t["ticks"].as_array().unwrap().is_empty()).then_some(())
    })
    .await;
    let response = app
        .get("/api/flash-trade/quote?symbol=SIMV25&direction=up&amount=100&duration=5", Some(&token))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let quote = body(response).await;
    assert_eq!(quote["payoutRate"], "0.8500");
    assert_eq!(quote["payout"], "185.00");
    assert_eq!(quote["profitIfWin"], "85.00");
    assert_eq!(quote["breakEvenWinRate"], "0.540540541");
    let win: f64 = quote["fairWinProbability"].as_str().unwrap().parse().unwrap();
    let edge: f64 = quote["houseEdge"].as_str().unwrap().parse().unwrap();
    assert!((0.49..0.51).contains(&win), "{quote}");
    assert!((0.07..0.08).contains(&edge), "an 85 % payout on a fair coin keeps about 7.5 %: {quote}");
    assert!(quote["quoteId"].as_str().is_some_and(|q| !q.is_empty()) && quote["validUntil"].is_string());

    for (query, field) in [
        ("symbol=NOPE&direction=up&amount=100&duration=5", "symbol"),
        ("symbol=SIMV25&direction=sideways&amount=100&duration=5", "direction"),
        ("symbol=SIMV25&direction=up&amount=9.99&duration=5", "amount"),
        ("symbol=SIMV25&direction=up&amount=1000.01&duration=5", "amount"),
        ("symbol=SIMV25&direction=up&amount=10.001&duration=5", "amount"),
        ("symbol=SIMV25&direction=up&amount=100&duration=7", "duration"),
    ] {
        let (status, _, got) =
            error_of(app.get(&format!("/api/flash-trade/quote?{query}"), Some(&token)).await).await;
        assert_eq!((status, got.as_deref()), (StatusCode::BAD_REQUEST, Some(field)), "{query}");
    }
}

#[tokio::test]
async fn an_opened_trade_holds_its_stake_in_play_then_settles_by_the_rules() {
    let app = TestApp::spawn().await;
    let token = app.signed_up("settle@example.com").await;
    let opened = open(&app, &token, &json!({"symbol": "SIMV100", "direction": "up", "amount": 100, "duration": 1, "expectedPayoutRate": "0.85"})).await;
    assert_eq!(opened["status"], "active");
    assert_eq!(opened["amount"], "100.00");
    assert_eq!(opened["payoutRate"], "0.8500");
    assert_eq!(opened["entry"], Value::Null, "the entry is the first tick after acceptance, not before");
    let balance = app.balance(&token).await;
    assert_eq!(
        (balance["available"].as_str(), balance["inPlay"].as_str()),
        (Some("9900.00"), Some("100.00"))
    );
    assert_eq!(balance["balance"], "10000.00");

    let down = open(&app, &token, &open_body("SIMV100", "down", "100", 1)).await;
    let settled = ended(&app, &token, opened["id"].as_i64().unwrap(), Duration::from_secs(10)).await;
    let settled_down = ended(&app, &token, down["id"].as_i64().unwrap(), Duration::from_secs(10)).await;
    assert_settled_by_the_rules(&app, &settled).await;
    assert_settled_by_the_rules(&app, &settled_down).await;

    let returned = |t: &Value| Money::parse(t["payout"].as_str().unwrap()).unwrap();
    let expected = Money::from_units(9_800)
        .checked_add(returned(&settled))
        .unwrap()
        .checked_add(returned(&settled_down))
        .unwrap();
    let balance = app.balance(&token).await;
    assert_eq!(balance["inPlay"], "0.00");
    assert_eq!(balance["available"], expected.to_string());
    // The statement lists movements of the available (cash) balance, each with the balance after it.
    let statement =
        body(app.transactions(&token, "").await).await["transactions"].as_array().unwrap().clone();
    let kinds: Vec<&str> = statement.iter().map(|r| r["type"].as_str().unwrap()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "stake").count(), 2);
    assert_eq!(statement[0]["balanceAfter"], balance["available"], "{statement:?}");
    let report = app.store.audit().await.unwrap();
    assert!(report.is_clean(), "{:?}", report.violations);
    assert_eq!(report.trades, 2);
}

#[tokio::test]
async fn bad_trade_requests_are_refused_with_the_field_and_move_nothing() {
    let app = TestApp::spawn().await;
    let token = app.signed_up("badtrade@example.com").await;
    for (request, field) in [
        (open_body("NOPE", "up", "100", 1), "symbol"),
        (open_body("SIMV25", "sideways", "100", 1), "direction"),
        (open_body("SIMV25", "up", "9.99", 1), "amount"),
        (open_body("SIMV25", "up", "1000.01", 1), "amount"),
        (open_body("SIMV25", "up", "-10", 1), "amount"),
        (open_body("SIMV25", "up", "10.005", 1), "amount"),
        (open_body("SIMV25", "up", "100", 3), "duration"),
        (json!({"symbol": "SIMV25", "direction": "up", "amount": "100"}), "duration"),
        (
            json!({"symbol": "SIMV25", "direction": "up", "amount": "100", "duration": 1, "forceResult": "win"}),
            "forceResult",
        ),
        (
            json!({"symbol": "SIMV25", "direction": "up", "amount": "100", "duration": 1, "expectedPayoutRate": "lots"}),
            "expectedPayoutRate",
        ),
    ] {
        let (status, _, got) =
            error_of(app.post_json("/api/flash-trade/create", Some(&token), &request).await).await;
        assert_eq!((status, got.as_deref()), (StatusCode::BAD_REQUEST, Some(field)), "{request}");
    }
    for path in ["/api/flash-trade/abc", "/api/flash-trade/abc/receipt", "/api/market/epochs/1.5"] {
        let (status, code, _) = error_of(app.get(path, Some(&token)).await).await;
        assert_eq!((status, code.as_str()), (StatusCode::BAD_REQUEST, "validation_error"), "{path}");
    }
    // Blank filters, as a form sends them, are absent ones.
    for path in [
        "/api/flash-trade/history?symbol=&status=&cursor=&limit=",
        "/api/wallet/transactions?type=&from=&to=&limit=",
    ] {
        let response = app.get(path, Some(&token)).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    let changed = json!({"symbol": "SIMV25", "direction": "up", "amount": "100", "duration": 1, "expectedPayoutRate": 0.9});
    let (status, code, _) =
        error_of(app.post_json("/api/flash-trade/create", Some(&token), &changed).await).await;
    assert_eq!((status, code.as_str()), (StatusCode::CONFLICT, "payout_rate_changed"));
    assert_eq!(app.balance(&token).await["balance"], "10000.00");
    let history = body(app.get("/api/flash-trade/history", Some(&token)).await).await;
    assert_eq!(history["trades"], json!([]));
}

#[tokio::test]
async fn two_hundred_simultaneous_trades_from_a_balance_covering_fifty_accept_exactly_fifty() {
    let app = TestApp::spawn().await;
    let token = app.signed_up("burst@example.com").await;
    let request = open_body("SIMV25", "up", "200", 5);
    let responses =
        join_all((0..200).map(|_| app.post_json("/api/flash-trade/create", Some(&token), &request))).await;
    let mut accepted = 0;
    for response in responses {
        match response.status() {
            StatusCode::CREATED => accepted += 1,
            StatusCode::UNPROCESSABLE_ENTITY => assert_eq!(error_of(response).await.1, "insufficient_funds"),
            other => panic!("{other}: {}", response.text().await.unwrap()),
        }
    }
    assert_eq!(accepted, 50);
    let balance = app.balance(&token).await;
    assert_eq!((balance["available"].as_str(), balance["inPlay"].as_str()), (Some("0.00"), Some("10000.00")));
    assert!(app.store.audit().await.unwrap().is_clean());
}

#[tokio::test]
async fn an_idempotent_retry_opens_one_trade() {
    let app = TestApp::spawn().await;
    let token = app.signed_up("idemtrade@example.com").await;
    let request = open_body("SIMV25", "down", "50", 5);
    let send = || {
        app.client
            .post(app.url("/api/flash-trade/create"))
            .bearer_auth(&token)
            .header("Idempotency-Key", "t-1")
            .json(&request)
            .send()
    };
    let first = send().await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    let first = body(first).await;
    let again = send().await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(body(again).await["trade"]["id"], first["trade"]["id"]);
    assert_eq!(app.balance(&token).await["inPlay"], "50.00");

    // The market halted since: the same request is refused now, but a retry of the one that
    // opened the trade still answers with it (its first answer may have been lost).
    let admin = with_role(&app, "idemtrade-admin@example.com", "admin").await;
    let halt = json!({"markets": {"SIMV25": {"halted": true}}});
    let halted = app.post_json("/api/admin/settings", Some(&admin), &halt).await;
    assert_eq!(halted.status(), StatusCode::OK, "{}", halted.text().await.unwrap());
    let retried = send().await.unwrap();
    assert_eq!(retried.status(), StatusCode::OK);
    assert_eq!(retried.headers()["idempotent-replayed"], "true");
    assert_eq!(body(retried).await["trade"]["id"], first["trade"]["id"]);
    let fresh = app
        .client
        .post(app.url("/api/flash-trade/create"))
        .bearer_auth(&token)
        .header("Idempotency-Key", "t-2")
        .json(&request)
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_of(fresh).await;
    assert_eq!((status, code.as_str()), (StatusCode::CONFLICT, "market_halted"));
    let history = body(app.get("/api/flash-trade/history", Some(&token)).await).await;
    assert_eq!(history["trades"].as_array().unwrap().len(), 1, "one trade in all: {history}");
}

#[tokio::test]
async fn selling_back_pays_the_bid_and_refusals_say_why() {
    let app = TestApp::spawn().await;
    let token = app.signed_up("seller@example.com").await;
    let other = app.signed_up("other@example.com").await;
    let long = open(&app, &token, &open_body("SIMV100", "up", "100", 5)).await;
    let id = long["id"].as_i64().unwrap();
    let with_bid = eventually(Duration::from_secs(5), || async {
        let t = trade(&app, &token, id).await;
        t["bid"].is_string().then_some(t)
    })
    .await;
    let bid = Money::parse(with_bid["bid"].as_str().unwrap()).unwrap();
    assert!(bid > Money::ZERO && bid < Money::from_units(185), "{with_bid}");

    let close = |token: &str, body: Value| {
        let request = app.client.post(app.url("/api/flash-trade/close")).bearer_auth(token).json(&body);
        async move { request.send().await.unwrap() }
    };
    let (status, _, _) = error_of(close(&other, json!({"tradeId": id})).await).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another user's trade does not exist for them");
    let (status, code, _) = error_of(close(&token, json!({"tradeId": id, "minPrice": "185.00"})).await).await;
    assert_eq!((status, code.as_str()), (StatusCode::CONFLICT, "bid_below_minimum"));

    let sold = close(&token, json!({"tradeId": id})).await;
    assert_eq!(sold.status(), StatusCode::OK);
    let sold = body(sold).await["trade"].clone();
    assert_eq!(sold["status"], "sold");
    assert_eq!(sold["result"], Value::Null);
    let value = Money::parse(sold["payout"].as_str().unwrap()).unwrap();
    assert!(value > Money::ZERO && value < Money::from_units(185));
    assert_eq!(
        app.balance(&token).await["available"],
        Money::from_units(9_900).checked_add(value).unwrap().to_string()
    );

    let (status, code, _) = error_of(close(&token, json!({"tradeId": id})).await).await;
    assert_eq!((status, code.as_str()), (StatusCode::CONFLICT, "trade_not_active"));

    // A two-second trade, once entered, is always inside the two-second cut-off.
    let short = open(&app, &token, &open_body("SIMV100", "up", "10", 2)).await;
    let short_id = short["id"].as_i64().unwrap();
    entered(&app, &token, short_id).await;
    let (status, code, _) = error_of(close(&token, json!({"tradeId": short["id"]})).await).await;
    assert_eq!((status, code.as_str()), (StatusCode::CONFLICT, "sell_cutoff"));
    assert!(app.store.audit().await.unwrap().is_clean());
}

/// A sale retried with the same `Idempotency-Key` (its answer was lost, say) gets the same
/// sale, marked as replayed, and moves money once; the key for another request is refused.
#[tokio::test]
async fn a_sale_retried_with_its_idempotency_key_answers_the_same_sale_once() {
    let app = TestApp::spawn().await;
    let token = app.signed_up("resell@example.com").await;
    let id = open(&app, &token, &open_body("SIMV100", "up", "100", 5)).await["id"].as_i64().unwrap();
    eventually(Duration::from_secs(5), || async {
        trade(&app, &token, id).await["bid"].is_string().then_some(())
    })
    .await;
    let close = |key: &str, trade_id: i64| {
        let request = app.client.post(app.url("/api/flash-trade/close")).bearer_auth(&token);
        let request = request.header("Idempotency-Key", key).json(&json!({"tradeId": trade_id}));
        async move { request.send().await.unwrap() }
    };
    let first = close("sale-1", id).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first = body(first).await["trade"].clone();
    let again = close("sale-1", id).await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(body(again).await["trade"], first, "the same sale");
    let paid = Money::parse(first["payout"].as_str().unwrap()).unwrap();
    let available = Money::from_units(9_900).checked_add(paid).unwrap().to_string();
    assert_eq!(app.balance(&token).await["available"], available, "paid once");

    let other = open(&app, &token, &open_body("SIMV100", "up", "100", 5)).await["id"].as_i64().unwrap();
    let (status, code, _) = error_of(close("sale-1", other).await).await;
    assert_eq!((status, code.as_str()), (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused"));

    // A retry racing the first request: both answer the one sale.
    eventually(Duration::from_secs(5), || async {
        trade(&app, &token, other).await["bid"].is_string().then_some(())
    })
    .await;
    let (a, b) = tokio::join!(close("sale-2", other), close("sale-2", other));
    assert_eq!((a.status(), b.status()), (StatusCode::OK, StatusCode::OK));
    let (a, b) = (body(a).await["trade"].clone(), body(b).await["trade"].clone());
    assert_eq!(a, b, "the same sale");
    let paid_too = Money::parse(a["payout"].as_str().unwrap()).unwrap();
    let available = Money::from_units(9_800).checked_add(paid).unwrap().checked_add(paid_too).unwrap();
    assert_eq!(app.balance(&token).await["available"], available.to_string(), "each sale paid once");
    let report = app.store.audit().await.unwrap();
    assert!(report.is_clean(), "{:?}", report.violations);
}

#[tokio::test]
async fn a_trade_is_refused_before_its_markets_first_tick() {
    // Hourly ticks on a new database: the first is not due yet.
    let app = TestApp::spawn_with(|config| {
        config.markets = fairtick::services::market::catalog::default_markets(3_600_000).unwrap();
    })
    .await;
    assert_eq!(refused_opening(&app, "early-bird@example.com").await, "no_price");
}

/// The code of the 409 a new user's opening gets, once it is checked that nothing was staked.
async fn refused_opening(app: &TestApp, email: &str) -> String {
    let token = app.signed_up(email).await;
    let (status, code, _) = error_of(
        app.post_json("/api/flash-trade/create", Some(&token), &open_body("SIMV25", "up", "10", 5)).await,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{code}");
    assert_eq!(app.balance(&token).await["available"], "10000.00", "nothing was staked");
    code
}

/// A server whose markets have ticked, restarted with a tick a minute and `grace_secs`.
async fn minute_markets(grace_secs: u32) -> TestApp {
    let mut ticked = TestApp::spawn().await;
    ticked.stop().await;
    ticked
        .spawn_sibling(|config| {
            config.markets = fairtick::services::market::catalog::default_markets(60_000).unwrap();
            config.trading.feed_grace_secs = grace_secs;
        })
        .await
}

/// A market whose ticks come further apart than half the feed's grace period (its interval
/// changed at a restart) takes no trade: a working feed would void it.
#[tokio::test]
async fn a_trade_is_refused_while_the_grace_period_is_too_short_for_its_market() {
    let app = minute_markets(120).await;
    assert_eq!(refused_opening(&app, "too-short@example.com").await, "grace_too_short");
}

#[tokio::test]
async fn a_sale_is_refused_before_the_entry_tick() {
    // The markets tick once a minute, so the entry is far off.
    let app = minute_markets(121).await;
    let token = app.signed_up("early@example.com").await;
    let opened = open(&app, &token, &open_body("SIMV25", "up", "10", 5)).await;
    let (status, code, _) = error_of(
        app.post_json("/api/flash-trade/close", Some(&token), &json!({"tradeId": opened["id"]})).await,
    )
    .await;
    assert_eq!((status, code.as_str()), (StatusCode::CONFLICT, "not_entered"));
}

#[tokio::test]
async fn a_receipt_verifies_and_a_tampered_one_does_not() {
    // Epochs longer than the trade plus a tick, so that it ends at the latest in the epoch
    // announced by the one it was accepted in: its receipt can prove it fair.
    let app = TestApp::spawn_with(|config| config.feed.epoch_length = Duration::from_millis(1_500)).await;
    let token = app.signed_up("receipt@example.com").await;
    let opened = open(&app, &token, &open_body("SIMV25", "down", "25", 1)).await;
    let id = opened["id"].as_i64().unwrap();
    ended(&app, &token, id, Duration::from_secs(10)).await;
    // The seeds of the trade's epochs are revealed when those epochs end.
    let receipt = eventually(Duration::from_secs(10), || async {
        let receipt = body(app.get(&format!("/api/flash-trade/{id}/receipt"), Some(&token)).await).await;
        let payload: Value = serde_json::from_str(receipt["payload"].as_str().unwrap()).unwrap();
        payload["epochs"].as_array().unwrap().iter().all(|e| !e["seed"].is_null()).then_some(receipt)
    })
    .await;
    let key = body(app.get("/api/fairness/key", None).await).await;
    assert_eq!(key["publicKey"], receipt["publicKey"]);

    let dir = app.data_dir.path();
    let verify = |file: std::path::PathBuf| {
        let url = app.base.clone();
        async move {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_fairtick"))
                .args(["verify", "trade", "--receipt", file.to_str().unwrap(), "--url", &url])
                .output()
                .await
                .unwrap()
        }
    };
    std::fs::write(dir.join("receipt.json"), receipt.to_string()).unwrap();
    let ok = verify(dir.join("receipt.json")).await;
    let report = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success() && report.contains("VERDICT: OK"), "{report}");

    let mut payload: Value = serde_json::from_str(receipt["payload"].as_str().unwrap()).unwrap();
    let flipped = if payload["trade"]["result"] == "win" { "lose" } else { "win" };
    payload["trade"]["result"] = Value::from(flipped);
    let mut tampered = receipt.clone();
    tampered["payload"] = Value::from(payload.to_string());
    std::fs::write(dir.join("tampered.json"), tampered.to_string()).unwrap();
    let caught = verify(dir.join("tampered.json")).await;
    let report = String::from_utf8_lossy(&caught.stdout);
    assert!(
        !caught.status.success() && report.contains("signature: the signature does not match"),
        "{report}"
    );

    let other = app.signed_up("nosy@example.com").await;
    assert_eq!(
        app.get(&format!("/api/flash-trade/{id}/receipt"), Some(&other)).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get(&format!("/api/flash-trade/{id}"), Some(&other)).await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_receipt_whose_ticks_were_deleted_is_refused_with_the_reason() {
    // Ticks kept for 300 ms: an epoch's end (every 400 ms) deletes those a receipt needs.
    let app = TestApp::spawn_with(|config| config.feed.retention = Duration::from_millis(300)).await;
    let token = app.signed_up("pruned@example.com").await;
    let id = open(&app, &token, &open_body("SIMV25", "up", "25", 1)).await["id"].as_i64().unwrap();
    // Whatever became of the trade (settlement too needs its ticks), the ticks around its
    // acceptance are soon gone.
    let (status, code, _) = eventually(Duration::from_secs(10), || async {
        let response = app.get(&format!("/api/flash-trade/{id}/receipt"), Some(&token)).await;
        if response.status() == StatusCode::OK {
            return None;
        }
        Some(error_of(response).await)
    })
    .await;
    assert_eq!((status, code.as_str()), (StatusCode::CONFLICT, "receipt_unavailable"));
}

#[tokio::test]
async fn history_pages_and_filters_and_the_record_counts_results() {
    let app = TestApp::spawn().await;
    let token = app.signed_up("history@example.com").await;
    let mut ids = Vec::new();
    for direction in ["up", "down", "up", "down", "up"] {
        ids.push(open(&app, &token, &open_body("SIMV25", direction, "10", 1)).await["id"].as_i64().unwrap());
    }
    for id in &ids {
        ended(&app, &token, *id, Duration::from_secs(10)).await;
    }
    let mut seen = Vec::new();
    let mut query = "?limit=2".to_owned();
    loop {
        let page = body(app.get(&format!("/api/flash-trade/history{query}"), Some(&token)).await).await;
        seen.extend(page["trades"].as_array().unwrap().iter().map(|t| t["id"].as_i64().unwrap()));
        match page["nextCursor"].as_str() {
            Some(cursor) => query = format!("?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    ids.reverse();
    assert_eq!(seen, ids, "newest first, each once");

    let stats = body(app.get("/api/flash-trade/stats", Some(&token)).await).await;
    let count = |k: &str| stats[k].as_i64().unwrap();
    assert_eq!(count("wins") + count("losses") + count("ties"), 5);
    let wins = body(app.get("/api/flash-trade/history?result=win", Some(&token)).await).await;
    assert_eq!(wins["trades"].as_array().unwrap().len() as i64, count("wins"));
    assert_eq!(stats["breakEvenWinRate"], "0.540540541");
    assert_eq!(stats["distinguishableFromBreakEven"], false, "five trades prove nothing");
    for (query, field) in [
        ("?result=maybe", "result"),
        ("?limit=0", "limit"),
        ("?cursor=x", "cursor"),
        ("?symbol=NOPE", "symbol"),
    ] {
        let (status, _, got) =
            error_of(app.get(&format!("/api/flash-trade/history{query}"), Some(&token)).await).await;
        assert_eq!((status, got.as_deref()), (StatusCode::BAD_REQUEST, Some(field)), "{query}");
    }
    let active = body(app.get("/api/flash-trade/active", Some(&token)).await).await;
    assert_eq!(active["trades"], json!([]));
}

#[tokio::test]
async fn the_vip_level_follows_the_rolling_turnover_when_trades_settle() {
    let app = TestApp::spawn().await;
    let token = app.signed_up("vip@example.com").await;
    let level = async || body(app.me(&token).await).await["user"]["vipLevel"].clone();
    assert_eq!(level().await, 1);
    // Level 2 starts at 10,000.00 of turnover: trades that ended settled or sold. A void one
    // (should the feed stall on a busy machine) does not count, so another is opened instead.
    let mut counted = 0;
    for _ in 0..15 {
        let id = open(&app, &token, &open_body("SIMV25", "up", "1000", 1)).await["id"].as_i64().unwrap();
        // Each settles before the next, so the balance always covers the next stake.
        if ended(&app, &token, id, Duration::from_secs(10)).await["status"] != "void" {
            counted += 1000;
        }
        if counted == 10_000 {
            break;
        }
        assert_eq!(level().await, 1, "below 10,000.00 the level stays 1");
        if Money::parse(app.balance(&token).await["available"].as_str().unwrap()).unwrap()
            < Money::from_units(1000)
        {
            app.wallet_post("deposit", &token, &json!({"amount": "5000"}), None).await;
        }
    }
    assert_eq!(counted, 10_000, "ten trades of 1,000.00 ended other than void");
    // The level moves at the end of the settlement step that ended the last trade, just after
    // the trade shows as ended.
    eventually(Duration::from_secs(5), || async { (level().await == 2).then_some(()) }).await;
    let quote = body(
        app.get("/api/flash-trade/quote?symbol=SIMV25&direction=up&amount=100&duration=5", Some(&token))
            .await,
    )
    .await;
    assert_eq!(quote["payoutRate"], "0.8600", "level 2 adds its bonus to new trades");
}

#[tokio::test]
async fn a_thousand_trades_expiring_together_are_all_settled_by_the_rules() {
    let app = TestApp::spawn().await;
    let tokens = join_all((0..10).map(|i| app.signed_up_owned(format!("crowd{i}@example.com")))).await;
    let request = open_body("SIMV100", "up", "10", 2);
    let mut created = Vec::new();
    for round in 0..4 {
        let batch =
            join_all(tokens.iter().flat_map(|t| (0..25).map(move |_| (t, round))).map(|(t, _)| async {
                let trade = open(&app, t, &request).await;
                (t.clone(), trade["id"].as_i64().unwrap())
            }))
            .await;
        created.extend(batch);
    }
    assert_eq!(created.len(), 1000);
    let mut latest_lag = 0;
    for (token, id) in &created {
        let trade = ended(&app, token, *id, Duration::from_secs(30)).await;
        assert_eq!(trade["status"], "settled");
        latest_lag = latest_lag.max(ms(&trade["settledAt"]) - ms(&trade["expiresAt"]));
    }
    // Spot-check the rules on a sample; every trade's postings are checked by the audit.
    for (token, id) in created.iter().step_by(97) {
        assert_settled_by_the_rules(&app, &trade(&app, token, *id).await).await;
    }
    let report = app.store.audit().await.unwrap();
    assert!(report.is_clean(), "{:?}", report.violations);
    assert_eq!(report.trades, 1000);
    eprintln!("1000 trades: the last settled {latest_lag} ms after its expiry (measured, not asserted)");
}

/// Passes on the id of every trade `socket` hears has ended.
async fn endings_heard(mut socket: Socket, heard: mpsc::UnboundedSender<i64>) {
    while let Some(Ok(message)) = socket.next().await {
        let Message::Text(text) = message else { continue };
        let message: Value = serde_json::from_str(&text).unwrap();
        let trade = &message["data"]["trade"];
        if message["type"] == "trade_update" && trade["status"] != "active" {
            let _ = heard.send(trade["id"].as_i64().unwrap());
        }
    }
}

/// Reads `heard` into `counts` until every trade of `ids` has been heard of, for at most 10 s.
async fn hear_all(
    heard: &mut mpsc::UnboundedReceiver<i64>,
    counts: &mut HashMap<i64, usize>,
    ids: &HashSet<i64>,
) {
    let all = async {
        while !ids.iter().all(|id| counts.contains_key(id)) {
            *counts.entry(heard.recv().await.unwrap()).or_default() += 1;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), all).await.expect("every ended trade is announced");
}

/// A trade whose ending fails in the database (a fault put in for it alone) holds back only
/// the trades written in its transaction: the others end and are announced meanwhile, and once
/// the fault is gone the held-back ones end too, each announced once. The failing trade is the
/// oldest, so it leads the first chunk of every step.
#[tokio::test]
async fn a_trade_whose_ending_fails_holds_back_only_the_trades_written_with_it() {
    let app = TestApp::spawn().await;
    let token = app.signed_up("fault@example.com").await;
    let request = open_body("SIMV25", "up", "10", 1);
    let failing = open(&app, &token, &request).await["id"].as_i64().unwrap();
    break_the_ending_of(&app, failing).await;
    let socket = connect(&app, &format!("?token={token}"), None).await.unwrap();
    let (hear, mut heard) = mpsc::unbounded_channel();
    tokio::spawn(endings_heard(socket, hear));
    let opened = join_all((0..3 * WRITE_CHUNK).map(|_| open(&app, &token, &request))).await;
    let others: Vec<i64> = opened.iter().map(|t| t["id"].as_i64().unwrap()).collect();

    let ended_meanwhile = eventually(Duration::from_secs(30), || async {
        let page = body(app.get("/api/flash-trade/history?limit=200", Some(&token)).await).await;
        let ended: HashSet<i64> = page["trades"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["status"] != "active")
            .map(|t| t["id"].as_i64().unwrap())
            .collect();
        (ended.len() >= others.len() - (WRITE_CHUNK - 1)).then_some(ended)
    })
    .await;
    assert!(!ended_meanwhile.contains(&failing), "its ending fails");
    let mut counts = HashMap::new();
    hear_all(&mut heard, &mut counts, &ended_meanwhile).await;
    assert_eq!(trade(&app, &token, failing).await["status"], "active");

    heal_the_ending(&app).await;
    let failed_once = ended(&app, &token, failing, Duration::from_secs(30)).await;
    assert_settled_by_the_rules(&app, &failed_once).await;
    for id in &others {
        assert_eq!(ended(&app, &token, *id, Duration::from_secs(30)).await["status"], "settled");
    }
    let all: HashSet<i64> = others.iter().copied().chain([failing]).collect();
    hear_all(&mut heard, &mut counts, &all).await;
    assert!(counts.values().all(|&n| n == 1), "each announced once: {counts:?}");
    let report = app.store.audit().await.unwrap();
    assert!(report.is_clean(), "{:?}", report.violations);
    assert_eq!(report.trades, all.len() as i64);
}

/// Ticks older than the retention are deleted, but never those an open trade still needs:
/// a trade that runs longer than ticks are kept settles from its own entry.
#[tokio::test]
async fn a_trade_longer_than_the_tick_retention_settles_from_its_recorded_entry() {
    let app = TestApp::spawn_with(|config| config.feed.retention = Duration::from_millis(1)).await;
    let token = app.signed_up("longer@example.com").await;
    let id = open(&app, &token, &open_body("SIMV25", "up", "10", 2)).await["id"].as_i64().unwrap();
    let entered = entered(&app, &token, id).await;
    let settled = ended(&app, &token, id, Duration::from_secs(15)).await;
    assert_eq!(settled["status"], "settled", "{settled}");
    assert_eq!(settled["entry"], entered["entry"], "the entry it was given");
    // The retention does prune, once no open trade needs the ticks.
    eventually(Duration::from_secs(5), || async {
        let mut conn = raw_connection(&app.database_url).await;
        let (oldest,): (Option<i64>,) = sqlx::query_as("SELECT MIN(seq) FROM ticks WHERE symbol = 'SIMV25'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        (oldest > entered["entry"]["seq"].as_i64()).then_some(())
    })
    .await;
    assert_eq!(ms(&settled["expiresAt"]) - ms(&settled["entry"]["ts"]), 2_000);
    assert!(
        ms(&settled["exit"]["ts"]) <= ms(&settled["expiresAt"]),
        "the exit is at or before expiry: {settled}"
    );
    let report = app.store.audit().await.unwrap();
    assert!(report.is_clean(), "{:?}", report.violations);
}

#[tokio::test]
async fn after_kill_9_with_a_hundred_open_trades_a_restart_settles_them_all_by_the_rules() {
    let mut app = TestApp::spawn().await;
    let token = app.signed_up("crash@example.com").await;
    app.stop().await;
    let (mut process, base) = spawn_process(&app).await;
    let client = reqwest::Client::new();
    // Ten seconds: long enough that all hundred are still open when the process is killed.
    let request = open_body("SIMV25", "down", "10", 10);
    for _ in 0..100 {
        let response = client
            .post(format!("{base}/api/flash-trade/create"))
            .bearer_auth(&token)
            .json(&request)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    process.start_kill().unwrap();
    process.wait().await.unwrap();
    let mut conn = raw_connection(&app.database_url).await;
    let (open_count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM trades WHERE status = 'active'")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(open_count, 100, "all still open at the crash");

    let restarted = app.spawn_sibling(|_| {}).await;
    let history = eventually(Duration::from_secs(30), || async {
        let page = body(restarted.get("/api/flash-trade/history?limit=200", Some(&token)).await).await;
        let trades = page["trades"].as_array().unwrap().clone();
        trades.iter().all(|t| t["status"] != "active").then_some(trades)
    })
    .await;
    assert_eq!(history.len(), 100);
    for trade in &history {
        assert_settled_by_the_rules(&restarted, trade).await;
    }
    let report = restarted.store.audit().await.unwrap();
    assert!(report.is_clean(), "{:?}", report.violations);
    let user = UserId(restarted.user_id(&token).await);
    assert_eq!(restarted.store.trade_counts(user).await.unwrap().active, 0);
}

#[tokio::test]
async fn with_two_nodes_on_postgres_every_trade_is_settled_exactly_once() {
    let Some((a, b)) = TestApp::two_nodes().await else { return };
    let token = a.signed_up("twonodes@example.com").await;
    let request = open_body("SIMV25", "up", "10", 1);
    let mut ids = Vec::new();
    for i in 0..40 {
        let node = if i % 2 == 0 { &a } else { &b };
        ids.push(open(node, &token, &request).await["id"].as_i64().unwrap());
    }
    for id in &ids {
        let settled = ended(&b, &token, *id, Duration::from_secs(15)).await;
        assert_settled_by_the_rules(&a, &settled).await;
    }
    let mut conn = raw_connection(&a.database_url).await;
    let releases: Vec<(String, i64)> = sqlx::query_as(
        "SELECT reference, COUNT(*) FROM ledger_transactions WHERE kind IN ('payout', 'loss', 'refund') GROUP BY reference",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(releases.len(), 40);
    assert!(releases.iter().all(|(_, n)| *n == 1), "one release per trade: {releases:?}");
    assert!(a.store.audit().await.unwrap().is_clean());
}

/// A tick whose insert stalls until after the clock has voided the trade it would have decided
/// is not stored behind the void: it is refused, and stored at a due time after the deadline,
/// so the record agrees with the void. On PostgreSQL, where another transaction can hold the
/// ticks table while the server reads it and settles.
#[tokio::test]
async fn a_tick_stalled_past_a_void_is_stored_after_the_deadline_not_before() {
    if std::env::var("TEST_DATABASE_URL").is_err() {
        eprintln!("skipped: a stalled tick insert needs PostgreSQL (TEST_DATABASE_URL)");
        return;
    }
    let app = TestApp::spawn_with(|config| {
        config.markets = fairtick::services::market::catalog::default_markets(1_000).unwrap();
        config.feed.epoch_length = Duration::from_secs(60);
        config.trading.feed_grace_secs = 3;
    })
    .await;
    let token = app.signed_up("stalled-insert@example.com").await;
    let id = open(&app, &token, &open_body("SIMV25", "up", "10", 1)).await["id"].as_i64().unwrap();
    let entered = entered(&app, &token, id).await;
    let expires_at = ms(&entered["expiresAt"]);
    let deadline = expires_at + 3_000;

    // The tick at expiry decides nothing; the one after it, due a second later, would.
    let at_expiry = eventually(Duration::from_secs(5), || async {
        let last = app.store.last_tick("SIMV25").await.unwrap().unwrap();
        (last.ts >= expires_at).then_some(last)
    })
    .await;
    assert_eq!(at_expiry.ts, expires_at, "the table is held before the deciding tick is stored");
    let mut holder = raw_connection(&app.database_url).await;
    sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
    sqlx::query("LOCK TABLE ticks IN EXCLUSIVE MODE").execute(&mut holder).await.unwrap();
    let (newest,): (i64,) = sqlx::query_as("SELECT MAX(seq) FROM ticks WHERE symbol = 'SIMV25'")
        .fetch_one(&mut holder)
        .await
        .unwrap();
    assert_eq!(newest, at_expiry.seq);
    until_waiting_for_a_lock(&app, "INSERT INTO ticks").await;

    let voided = ended(&app, &token, id, Duration::from_secs(15)).await;
    assert_eq!(voided["status"], "void", "{voided}");
    assert_eq!(voided["voidReason"], "no tick arrived within the grace period after expiry");
    sqlx::query("COMMIT").execute(&mut holder).await.unwrap();

    let deciding = eventually(Duration::from_secs(10), || async {
        let last = app.store.last_tick("SIMV25").await.unwrap().unwrap();
        (last.seq > at_expiry.seq).then_some(())?;
        let (ts,): (i64,) = sqlx::query_as("SELECT ts FROM ticks WHERE symbol = 'SIMV25' AND seq = $1")
            .bind(at_expiry.seq + 1)
            .fetch_one(&mut raw_connection(&app.database_url).await)
            .await
            .unwrap();
        Some(ts)
    })
    .await;
    assert!(deciding > deadline, "the stalled tick is stamped after the deadline ({deciding} <= {deadline})");
    assert_eq!(app.balance(&token).await["available"], "10000.00", "the stake is refunded");
}

/// A trade whose market stops past its expiry and the grace period is void, decided by the
/// recorded tick times (the first tick after the restart is timed after the deadline), and its
/// receipt shows it: the verify command re-derives the void.
#[tokio::test]
async fn a_feed_that_stops_past_the_grace_period_voids_the_trade_and_the_receipt_proves_it() {
    let one_second = |config: &mut fairtick::config::Config| config.trading.feed_grace_secs = 1;
    let mut first = TestApp::spawn_with(one_second).await;
    let token = first.signed_up("stalled@example.com").await;
    let id = open(&first, &token, &open_body("SIMV25", "up", "10", 1)).await["id"].as_i64().unwrap();
    entered(&first, &token, id).await;
    first.stop().await;
    // Down for longer than the 1 s trade and the 1 s grace period.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let second = first.spawn_sibling(one_second).await;
    let voided = ended(&second, &token, id, Duration::from_secs(10)).await;
    assert_eq!(voided["status"], "void", "{voided}");
    assert_eq!(voided["voidReason"], "no tick arrived within the grace period after expiry");
    assert_eq!(second.balance(&token).await["available"], "10000.00", "the stake is refunded");

    // Once the epochs of its ticks have revealed their seeds.
    let (receipt, payload) = eventually(Duration::from_secs(10), || async {
        let receipt = body(second.get(&format!("/api/flash-trade/{id}/receipt"), Some(&token)).await).await;
        let payload: Value = serde_json::from_str(receipt["payload"].as_str().unwrap()).unwrap();
        payload["epochs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| !e["seed"].is_null())
            .then_some((receipt, payload))
    })
    .await;
    assert_eq!(payload["trade"]["feedGraceMs"], 1_000);
    let file = second.data_dir.path().join("void-receipt.json");
    std::fs::write(&file, receipt.to_string()).unwrap();
    let checked = tokio::process::Command::new(env!("CARGO_BIN_EXE_fairtick"))
        .args(["verify", "trade", "--receipt", file.to_str().unwrap(), "--public-key"])
        .arg(receipt["publicKey"].as_str().unwrap())
        .output()
        .await
        .unwrap();
    let report = String::from_utf8_lossy(&checked.stdout);
    assert!(checked.status.success() && report.contains("VERDICT: OK"), "{report}");
    assert!(report.contains("void by the rules: no tick arrived within the grace period"), "{report}");
}
