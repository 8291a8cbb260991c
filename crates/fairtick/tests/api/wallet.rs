//! The virtual wallet over HTTP: balances, deposits, withdrawals, reset, limits, idempotency,
//! concurrency, the statement and its CSV export.

use fairtick_core::Money;
use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, body, error_of};

fn amount(value: impl Into<Value>) -> Value {
    json!({ "amount": value.into() })
}

#[tokio::test]
async fn a_new_account_starts_with_a_signup_credit_from_the_faucet() {
    let app = TestApp::spawn().await;
    let token = app.signed_up("new@example.com").await;
    assert_eq!(
        app.balance(&token).await,
        json!({"balance": "10000.00", "available": "10000.00", "inPlay": "0.00", "currency": "VUSD"})
    );
    let statement = body(app.transactions(&token, "").await).await;
    let rows = statement["transactions"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["type"], "signup_credit");
    assert_eq!(rows[0]["amount"], "10000.00");
    assert_eq!(rows[0]["balanceAfter"], "10000.00");
    assert!(rows[0]["description"].as_str().is_some_and(|d| !d.is_empty()));
    assert_eq!(statement["nextCursor"], Value::Null);
    assert!(app.store.audit().await.unwrap().is_clean());
}

#[tokio::test]
async fn deposits_and_withdrawals_move_the_balance_exactly() {
    let app = TestApp::spawn().await;
    let token = app.signed_up("move@example.com").await;

    let deposit = app.wallet_post("deposit", &token, &amount("0.10"), None).await;
    assert_eq!(deposit.status(), StatusCode::OK);
    let deposit = body(deposit).await;
    assert_eq!(deposit["transaction"]["type"], "deposit");
    assert_eq!(deposit["transaction"]["amount"], "0.10");
    assert_eq!(deposit["balance"]["balance"], "10000.10");

    let number = body(app.wallet_post("deposit", &token, &json!({"amount": 0.2}), None).await).await;
    assert_eq!(number["balance"]["available"], "10000.30", "0.1 + 0.2 is exactly 0.30 here");

    let withdrawal = body(app.wallet_post("withdraw", &token, &amount("9000.30"), None).await).await;
    assert_eq!(withdrawal["transaction"]["amount"], "-9000.30");
    assert_eq!(withdrawal["transaction"]["balanceAfter"], "1000.00");
    assert_eq!(app.balance(&token).await["balance"], "1000.00");
    assert_eq!(body(app.me(&token).await).await["user"]["balance"], "1000.00");
}

#[tokio::test]
async fn bad_amounts_are_400_naming_the_field_and_write_nothing() {
    let app = TestApp::spawn().await;
    let token = app.signed_up("bad@example.com").await;
    for op in ["deposit", "withdraw"] {
        for (request, why) in [
            (amount("-5"), "negative"),
            (amount(-5), "negative number"),
            (amount("0"), "zero"),
            (amount(0), "zero number"),
            (amount("1.001"), "three decimals"),
            (json!({"amount": 1.001}), "three decimals as a number"),
            (amount("ten"), "not numeric"),
            (amount("1e3"), "exponent"),
            (amount("99999999999999999999999"), "huge"),
            (json!({"amount": 1e300}), "huge number"),
            (json!({"amount": null}), "null"),
            (json!({"amount": true}), "a boolean"),
            (json!({}), "missing"),
        ] {
            let (status, code, field) = error_of(app.wallet_post(op, &token, &request, None).await).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{op}: {why}");
            assert_eq!(code, "validation_error", "{op}: {why}");
            assert_eq!(field.as_deref(), Some("amount"), "{op}: {why}");
        }
    }
    assert_eq!(app.balance(&token).await["balance"], "10000.00");
    let rows = body(app.transactions(&token, "").await).await["transactions"].as_array().unwrap().len();
    assert_eq!(rows, 1, "only the signup credit");
}

#[tokio::test]
async fn deposit_limits_are_enforced_and_named_in_the_error() {
    let app = TestApp::spawn().await;
    let token = app.signed_up("limits@example.com").await;
    let (status, code, _) =
        error_of(app.wallet_post("deposit", &token, &amount("10000.01"), None).await).await;
    assert_eq!((status, code.as_str()), (StatusCode::UNPROCESSABLE_ENTITY, "deposit_too_large"));

    for _ in 0..5 {
        assert_eq!(app.wallet_post("deposit", &token, &amount("10000"), None).await.status(), StatusCode::OK);
    }
    let response = app.wallet_post("deposit", &token, &amount("0.01"), None).await;
    let text = response.text().await.unwrap();
    assert!(text.contains("daily_deposit_limit") && text.contains("50000.00"), "{text}");
    assert_eq!(app.balance(&token).await["balance"], "60000.00");
}

#[tokio::test]
async fn a_deposit_may_not_lift_the_balance_over_the_cap() {
    let app = TestApp::spawn_with(|config| config.wallet.max_balance = Money::from_units(12_000)).await;
    let token = app.signed_up("cap@example.com").await;
    let response = app.wallet_post("deposit", &token, &amount("2000.01"), None).await;
    let text = response.text().await.unwrap();
    assert!(text.contains("balance_cap") && text.contains("12000.00") && text.contains("2000.00"), "{text}");
    assert_eq!(app.wallet_post("deposit", &token, &amount("2000"), None).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_withdrawal_never_exceeds_the_available_balance() {
    let app = TestApp::spawn().await;
    let token = app.signed_up("over@example.com").await;
    let (status, code, _) =
        error_of(app.wallet_post("withdraw", &token, &amount("10000.01"), None).await).await;
    assert_eq!((status, code.as_str()), (StatusCode::UNPROCESSABLE_ENTITY, "insufficient_funds"));
    assert_eq!(app.wallet_post("withdraw", &token, &amount("10000.00"), None).await.status(), StatusCode::OK);
    assert_eq!(app.balance(&token).await["balance"], "0.00");
}

#[tokio::test]
async fn a_reset_restores_10000_with_one_recorded_transaction_keeping_history() {
    let app = TestApp::spawn().await;
    let token = app.signed_up("reset@example.com").await;
    app.wallet_post("withdraw", &token, &amount("2500"), None).await;

    let reset = app.client.post(app.url("/api/wallet/reset")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(reset.status(), StatusCode::OK);
    let reset = body(reset).await;
    assert_eq!(reset["transaction"]["type"], "reset");
    assert_eq!(reset["transaction"]["amount"], "2500.00");
    assert_eq!(reset["balance"]["balance"], "10000.00");

    let again =
        body(app.client.post(app.url("/api/wallet/reset")).bearer_auth(&token).send().await.unwrap()).await;
    assert_eq!(again["transaction"], Value::Null, "nothing to move");

    let kinds: Vec<String> = body(app.transactions(&token, "").await).await["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, ["reset", "withdrawal", "signup_credit"]);
}

#[tokio::test]
async fn a_retry_with_the_same_idempotency_key_returns_the_first_answer_and_moves_nothing() {
    let app = TestApp::spawn().await;
    let token = app.signed_up("idem@example.com").await;
    let first = app.wallet_post("deposit", &token, &amount("25.00"), Some("key-1")).await;
    assert_eq!(first.status(), StatusCode::OK);
    let first = body(first).await;

    let retry = app.wallet_post("deposit", &token, &json!({"amount": 25}), Some("key-1")).await;
    assert_eq!(retry.status(), StatusCode::OK);
    assert_eq!(retry.headers().get("idempotent-replayed").unwrap(), "true");
    assert_eq!(body(retry).await, first, "the same answer, byte for byte");
    assert_eq!(app.balance(&token).await["balance"], "10025.00");

    let (status, code, _) =
        error_of(app.wallet_post("deposit", &token, &amount("26.00"), Some("key-1")).await).await;
    assert_eq!((status, code.as_str()), (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused"));
    let (status, _, _) =
        error_of(app.wallet_post("withdraw", &token, &amount("25.00"), Some("key-1")).await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "another operation with the same key");

    let other_user = app.signed_up("idem2@example.com").await;
    assert_eq!(
        app.wallet_post("deposit", &other_user, &amount("1.00"), Some("key-1")).await.status(),
        StatusCode::OK,
        "keys belong to one user"
    );
    let (status, _, field) =
        error_of(app.wallet_post("deposit", &token, &amount("1.00"), Some("")).await).await;
    assert_eq!((status, field.as_deref()), (StatusCode::BAD_REQUEST, Some("Idempotency-Key")));
    assert_eq!(app.balance(&token).await["balance"], "10025.00");
}

#[tokio::test]
async fn concurrent_retries_with_one_idempotency_key_move_money_once() {
    let app = TestApp::spawn().await;
    let token = app.signed_up("race@example.com").await;
    let ten = amount("10.00");
    let requests = (0..20).map(|_| app.wallet_post("withdraw", &token, &ten, Some("same")));
    let responses = join_all(requests).await;
    for response in responses {
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(app.balance(&token).await["balance"], "9990.00");
}

#[tokio::test]
async fn two_hundred_simultaneous_withdrawals_of_100_accept_exactly_100() {
    let app = TestApp::spawn().await;
    let token = app.signed_up("rush@example.com").await;
    let hundred = amount("100.00");
    let requests = (0..200).map(|_| app.wallet_post("withdraw", &token, &hundred, None));
    let mut accepted = 0;
    let mut refused = 0;
    for response in join_all(requests).await {
        match response.status() {
            StatusCode::OK => accepted += 1,
            StatusCode::UNPROCESSABLE_ENTITY => {
                assert_eq!(error_of(response).await.1, "insufficient_funds");
                refused += 1;
            }
            other => panic!("unexpected {other}: {}", response.text().await.unwrap()),
        }
    }
    assert_eq!((accepted, refused), (100, 100));
    assert_eq!(app.balance(&token).await["balance"], "0.00");
    let report = app.store.audit().await.unwrap();
    assert!(report.is_clean(), "{:?}", report.violations);
}

#[tokio::test]
async fn the_statement_pages_newest_first_with_a_cursor_and_filters() {
    let app = TestApp::spawn().await;
    let token = app.signed_up("pages@example.com").await;
    for cents in 1..=5 {
        app.wallet_post("deposit", &token, &amount(format!("0.0{cents}")), None).await;
    }
    app.wallet_post("withdraw", &token, &amount("1.00"), None).await;

    let mut seen = Vec::new();
    let mut query = "?limit=2".to_owned();
    loop {
        let page = body(app.transactions(&token, &query).await).await;
        let rows = page["transactions"].as_array().unwrap().clone();
        assert!(rows.len() <= 2);
        seen.extend(
            rows.iter().map(|r| (r["id"].as_i64().unwrap(), r["amount"].as_str().unwrap().to_owned())),
        );
        match page["nextCursor"].as_str() {
            Some(cursor) => query = format!("?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    let amounts: Vec<&str> = seen.iter().map(|(_, a)| a.as_str()).collect();
    assert_eq!(amounts, ["-1.00", "0.05", "0.04", "0.03", "0.02", "0.01", "10000.00"]);
    assert!(seen.windows(2).all(|w| w[0].0 > w[1].0), "strictly newest first, no repeats");

    let deposits = body(app.transactions(&token, "?type=deposit").await).await;
    assert_eq!(deposits["transactions"].as_array().unwrap().len(), 5);
    let future = body(app.transactions(&token, "?from=2999-01-01T00:00:00Z").await).await;
    assert_eq!(future["transactions"], json!([]));
    let past = body(app.transactions(&token, "?to=2000-01-01T00:00:00Z").await).await;
    assert_eq!(past["transactions"], json!([]));

    for (query, field) in [
        ("?limit=0", "limit"),
        ("?limit=201", "limit"),
        ("?limit=abc", "limit"),
        ("?cursor=xyz", "cursor"),
        ("?type=bonus", "type"),
        ("?from=yesterday", "from"),
        ("?from=2030-01-01T00:00:00Z&to=2020-01-01T00:00:00Z", "from"),
    ] {
        let (status, _, got) = error_of(app.transactions(&token, query).await).await;
        assert_eq!((status, got.as_deref()), (StatusCode::BAD_REQUEST, Some(field)), "{query}");
    }
}

#[tokio::test]
async fn the_csv_export_holds_the_same_rows_as_the_statement() {
    let app = TestApp::spawn().await;
    let token = app.signed_up("csv@example.com").await;
    app.wallet_post("deposit", &token, &amount("12.34"), None).await;
    app.wallet_post("withdraw", &token, &amount("2.34"), None).await;

    let response = app.get("/api/wallet/transactions.csv", Some(&token)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    let csv = response.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "id,type,amount,balanceAfter,reference,createdAt,description");
    let statement = body(app.transactions(&token, "").await).await;
    let rows = statement["transactions"].as_array().unwrap();
    assert_eq!(lines.len(), rows.len() + 1);
    for (line, row) in lines[1..].iter().zip(rows) {
        let fields: Vec<&str> = line.split(',').collect();
        assert_eq!(fields[0], row["id"].to_string());
        assert_eq!(fields[1], row["type"]);
        assert_eq!(fields[2], row["amount"]);
        assert_eq!(fields[3], row["balanceAfter"]);
        assert_eq!(fields[5], row["createdAt"]);
    }
    assert_eq!(app.get("/api/wallet/transactions.csv", None).await.status(), StatusCode::UNAUTHORIZED);
}

/// The export is read and sent a page at a time: past one page it holds every row once, in
/// order.
#[tokio::test]
async fn a_csv_export_longer_than_a_page_holds_every_row_once_newest_first() {
    let app = TestApp::spawn().await;
    let token = app.signed_up("longcsv@example.com").await;
    for _ in 0..230 {
        let deposit = app.wallet_post("deposit", &token, &amount("0.01"), None).await;
        assert_eq!(deposit.status(), StatusCode::OK);
    }
    let csv = app.get("/api/wallet/transactions.csv", Some(&token)).await.text().await.unwrap();
    let ids: Vec<i64> =
        csv.lines().skip(1).map(|line| line.split(',').next().unwrap().parse().unwrap()).collect();
    assert_eq!(ids.len(), 231, "the welcome credit and 230 deposits");
    assert!(ids.windows(2).all(|pair| pair[0] > pair[1]), "newest first, none twice");
}

#[tokio::test]
async fn the_ledger_is_append_only_and_the_audit_catches_a_tampered_balance() {
    use sqlx::Connection;
    let app = TestApp::spawn().await;
    let token = app.signed_up("tamper@example.com").await;
    app.wallet_post("deposit", &token, &amount("5"), None).await;
    assert!(app.store.audit().await.unwrap().is_clean());

    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&app.database_url).await.unwrap();
    for statement in
        ["UPDATE postings SET amount = amount + 1", "DELETE FROM postings", "DELETE FROM ledger_transactions"]
    {
        // Refused by the append-only rule itself, not by some other error (a foreign key).
        let refused = sqlx::query(statement).execute(&mut conn).await.expect_err(statement).to_string();
        assert!(refused.contains("append-only"), "{statement}: {refused}");
    }
    assert!(
        sqlx::query("UPDATE accounts SET balance = -1 WHERE kind = 'cash'").execute(&mut conn).await.is_err(),
        "a negative user balance violates a CHECK"
    );
    sqlx::query("UPDATE accounts SET balance = balance + 1 WHERE kind = 'cash'")
        .execute(&mut conn)
        .await
        .unwrap();
    let report = app.store.audit().await.unwrap();
    assert_eq!(report.violations.len(), 1, "{:?}", report.violations);
    assert!(report.violations[0].contains("cached balance"), "{:?}", report.violations);
}
