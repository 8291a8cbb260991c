//! Provably fair markets over HTTP: the catalogue, gapless ticks, committed and revealed epochs
//! that verify, candles, restarts, replays, the verify command and a single producer per market.

use std::time::Duration;

use fairtick_core::fairness::{Commitment, MarketParams, Seed, verify_epoch};
use fairtick_core::price::Price;
use reqwest::StatusCode;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::helpers::{
    DATA_KEY_HEX, TICK_INTERVAL_MS, TestApp, body, error_of, eventually, ms, raw_connection,
    until_waiting_for_a_lock,
};

async fn json(app: &TestApp, path: &str) -> Value {
    let response = app.get(path, None).await;
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    body(response).await
}

/// Every stored tick of `symbol`, oldest first.
async fn all_ticks(app: &TestApp, symbol: &str) -> Vec<Value> {
    json(app, &format!("/api/market/ticks?symbol={symbol}&afterSeq=0&limit=5000")).await["ticks"]
        .as_array()
        .unwrap()
        .clone()
}

/// Waits until `symbol` has at least `count` ended epochs; returns the epochs, newest first.
async fn ended_epochs(app: &TestApp, symbol: &str, count: usize) -> Vec<Value> {
    eventually(Duration::from_secs(10), || async {
        let epochs =
            json(app, &format!("/api/market/epochs?symbol={symbol}&limit=100")).await["epochs"].clone();
        let epochs = epochs.as_array().unwrap().clone();
        (epochs.iter().filter(|e| !e["seed"].is_null()).count() >= count).then_some(epochs)
    })
    .await
}

fn price(value: &Value) -> Price {
    Price::parse(value.as_str().unwrap()).unwrap()
}

fn assert_gapless(ticks: &[Value]) {
    for pair in ticks.windows(2) {
        assert_eq!(pair[1]["seq"].as_i64().unwrap(), pair[0]["seq"].as_i64().unwrap() + 1, "{pair:?}");
        assert!(
            pair[1]["ts"].as_str().unwrap() > pair[0]["ts"].as_str().unwrap(),
            "time goes forward: {pair:?}"
        );
    }
}

/// Checks one ended epoch the way an outsider would, with the core's verifier.
async fn assert_epoch_verifies(app: &TestApp, epoch_id: i64) {
    let detail = json(app, &format!("/api/market/epochs/{epoch_id}")).await;
    let epoch = &detail["epoch"];
    let seed = Seed::from_hex(epoch["seed"].as_str().unwrap()).unwrap();
    let commitment: Commitment = epoch["commitment"].as_str().unwrap().parse().unwrap();
    assert_eq!(hex::encode(Sha256::digest(seed.as_bytes())), epoch["commitment"].as_str().unwrap());
    let params = MarketParams::new(
        epoch["symbol"].as_str().unwrap(),
        epoch["volatilityBp"].as_u64().unwrap() as u32,
        epoch["tickIntervalMs"].as_u64().unwrap() as u32,
    )
    .unwrap();
    let ticks = detail["ticks"].as_array().unwrap();
    let span = epoch["endTick"].as_i64().unwrap() - epoch["startTick"].as_i64().unwrap() + 1;
    assert_eq!(ticks.len() as i64, span, "every tick of the epoch is served");
    let prices: Vec<Price> = ticks.iter().map(|t| price(&t["price"])).collect();
    verify_epoch(&params, &seed, &commitment, epoch_id, price(&epoch["startPrice"]), &prices)
        .unwrap_or_else(|e| panic!("epoch {epoch_id} does not verify: {e}"));
}

#[tokio::test]
async fn the_default_markets_are_two_simulated_indices_named_as_simulated() {
    let app = TestApp::spawn().await;
    let symbols = json(&app, "/api/market/symbols").await["symbols"].as_array().unwrap().clone();
    assert!(symbols.len() >= 2);
    for market in &symbols {
        assert_eq!(market["kind"], "simulated");
        assert!(market["name"].as_str().unwrap().starts_with("Simulated"), "{market}");
        assert_eq!(market["decimals"], 8);
        assert_eq!(market["status"], "open");
        assert!(market["tickIntervalMs"].as_u64().unwrap() > 0);
    }
    assert_ne!(symbols[0]["volatility"], symbols[1]["volatility"]);
}

#[tokio::test]
async fn ticks_flow_from_the_start_with_gapless_seq_and_rising_time() {
    let app = TestApp::spawn().await;
    let ticks = eventually(Duration::from_secs(10), || async {
        let ticks = all_ticks(&app, "SIMV25").await;
        (ticks.len() >= 40).then_some(ticks)
    })
    .await;
    assert_eq!(ticks[0]["seq"], 1, "the first tick of a new market is seq 1");
    assert_gapless(&ticks);
    let epochs: std::collections::BTreeSet<i64> =
        ticks.iter().map(|t| t["epochId"].as_i64().unwrap()).collect();
    assert!(epochs.len() >= 2, "ticks span several epochs");

    let newest =
        json(&app, "/api/market/ticks?symbol=SIMV25&limit=3").await["ticks"].as_array().unwrap().clone();
    assert_eq!(newest.len(), 3);
    assert_gapless(&newest);
}

#[tokio::test]
async fn every_epoch_is_committed_before_its_ticks_revealed_after_and_verifies() {
    let app = TestApp::spawn().await;
    let epochs = ended_epochs(&app, "SIMV100", 3).await;
    for running in epochs.iter().filter(|e| e["endedAt"].is_null()) {
        assert!(
            running["seed"].is_null() && running["endTick"].is_null(),
            "a running epoch keeps its seed secret"
        );
    }
    let ended: Vec<&Value> = epochs.iter().filter(|e| !e["seed"].is_null()).collect();
    for epoch in &ended {
        assert_epoch_verifies(&app, epoch["id"].as_i64().unwrap()).await;
        let detail = json(&app, &format!("/api/market/epochs/{}", epoch["id"])).await;
        let first_tick_ts = detail["ticks"][0]["ts"].as_str().unwrap().to_owned();
        assert!(
            epoch["startedAt"].as_str().unwrap() <= first_tick_ts.as_str(),
            "committed before the first tick"
        );
        // Ticks fall due on whole multiples of the interval and are stamped with that time;
        // only a first tick announced while its epoch was stored is moved to the epoch's start.
        let started_at = ms(&epoch["startedAt"]);
        for (n, tick) in detail["ticks"].as_array().unwrap().iter().enumerate() {
            let ts = ms(&tick["ts"]);
            assert!(
                ts % i64::from(TICK_INTERVAL_MS) == 0 || (n == 0 && ts == started_at),
                "tick {} at {ts} is off the {TICK_INTERVAL_MS} ms schedule",
                tick["seq"]
            );
        }
    }
    // Each epoch starts from the last price of the one before it, which announced it: its id,
    // its commitment and where it starts were public before the one before began.
    for pair in ended.windows(2) {
        let (newer, older) = (pair[0], pair[1]);
        let older_detail = json(&app, &format!("/api/market/epochs/{}", older["id"])).await;
        let last = older_detail["ticks"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(newer["startPrice"], last["price"]);
        assert_eq!(newer["startTick"].as_i64().unwrap(), last["seq"].as_i64().unwrap() + 1);
        assert_eq!((&older["nextId"], &older["nextCommitment"]), (&newer["id"], &newer["commitment"]));
        assert_eq!(older["plannedEndTick"], older["endTick"], "it ran its course");
    }
    let running = &epochs[0];
    assert!(running["nextId"].as_i64().unwrap() > running["id"].as_i64().unwrap(), "{running}");
    assert_eq!(running["nextCommitment"].as_str().map(str::len), Some(64), "{running}");
}

/// What `epoch` announced about its successor: its id and commitment.
async fn announced(app: &TestApp, epoch: i64) -> (Value, Value) {
    let detail = json(app, &format!("/api/market/epochs/{epoch}")).await;
    (detail["epoch"]["nextId"].clone(), detail["epoch"]["nextCommitment"].clone())
}

/// The id and commitment of the epoch that holds tick `seq` of `symbol`.
async fn epoch_of_tick(app: &TestApp, symbol: &str, seq: i64) -> (Value, Value) {
    let ticks = all_ticks(app, symbol).await;
    let tick = ticks.iter().find(|t| t["seq"] == seq).unwrap_or_else(|| panic!("tick {seq}"));
    let detail = json(app, &format!("/api/market/epochs/{}", tick["epochId"])).await;
    (detail["epoch"]["id"].clone(), detail["epoch"]["commitment"].clone())
}

#[tokio::test]
async fn unrevealed_seeds_are_stored_only_sealed() {
    use sqlx::Connection;
    let app = TestApp::spawn().await;
    ended_epochs(&app, "SIMV25", 1).await;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&app.database_url).await.unwrap();
    // Between one epoch's end and the next one's start there is a moment with none running.
    let database_url = app.database_url.clone();
    let (sealed, commitment): (Option<String>, String) = eventually(Duration::from_secs(5), || {
        let database_url = database_url.clone();
        async move {
            let mut conn = raw_connection(&database_url).await;
            sqlx::query_as(
                "SELECT sealed_seed, commitment FROM epochs WHERE symbol = 'SIMV25' AND ended_at IS NULL ORDER BY id DESC LIMIT 1",
            )
            .fetch_optional(&mut conn)
            .await
            .unwrap()
        }
    })
    .await;
    let sealed = sealed.expect("the running epoch has a sealed seed");
    let key =
        fairtick::services::sealing::DataKey::from_hex(&secrecy::SecretString::from(DATA_KEY_HEX)).unwrap();
    let seed = key.open(&sealed).unwrap();
    assert_eq!(hex::encode(Sha256::digest(&seed)), commitment, "the sealed seed is the committed one");
    assert!(!sealed.contains(&hex::encode(&seed)), "stored encrypted, not in clear");
    let revealed_still_sealed: (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM epochs WHERE ended_at IS NOT NULL AND sealed_seed IS NOT NULL")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(revealed_still_sealed.0, 0);
}

#[tokio::test]
async fn candles_summarise_the_ticks_of_each_bucket() {
    let app = TestApp::spawn().await;
    eventually(Duration::from_secs(10), || async {
        (all_ticks(&app, "SIMV25").await.len() >= 120).then_some(())
    })
    .await;
    // Candles first: every tick of their buckets is then in the ticks read after.
    let candles = json(&app, "/api/market/candles?symbol=SIMV25&interval=1s&limit=1000").await["candles"]
        .as_array()
        .unwrap()
        .clone();
    let ticks = all_ticks(&app, "SIMV25").await;
    assert!(candles.len() >= 2);
    let bucket = |ts: &str| chrono::DateTime::parse_from_rfc3339(ts).unwrap().timestamp();
    // Compare the buckets whose ticks are all in hand (not the newest, still filling).
    for candle in &candles[..candles.len() - 1] {
        let second = bucket(candle["ts"].as_str().unwrap());
        let inside: Vec<Price> = ticks
            .iter()
            .filter(|t| bucket(t["ts"].as_str().unwrap()) == second)
            .map(|t| price(&t["price"]))
            .collect();
        assert_eq!(candle["ticks"].as_u64().unwrap() as usize, inside.len(), "{candle}");
        assert_eq!(price(&candle["open"]), inside[0]);
        assert_eq!(price(&candle["close"]), *inside.last().unwrap());
        assert_eq!(price(&candle["high"]), *inside.iter().max().unwrap());
        assert_eq!(price(&candle["low"]), *inside.iter().min().unwrap());
    }
    let minutes = json(&app, "/api/market/candles?symbol=SIMV25&interval=1m").await["candles"]
        .as_array()
        .unwrap()
        .len();
    assert!(minutes >= 1);
}

#[tokio::test]
async fn bad_market_queries_are_400_naming_the_field() {
    let app = TestApp::spawn().await;
    for (path, field) in [
        ("/api/market/ticks?symbol=NOPE", "symbol"),
        ("/api/market/ticks", "symbol"),
        ("/api/market/ticks?symbol=SIMV25&limit=0", "limit"),
        ("/api/market/ticks?symbol=SIMV25&limit=5001", "limit"),
        ("/api/market/ticks?symbol=SIMV25&from=soon", "from"),
        ("/api/market/ticks?symbol=SIMV25&from=2030-01-01T00:00:00Z&to=2020-01-01T00:00:00Z", "from"),
        ("/api/market/candles?symbol=SIMV25&interval=2m", "interval"),
        ("/api/market/candles?symbol=SIMV25", "interval"),
        ("/api/market/candles?symbol=SIMV25&interval=1m&limit=1001", "limit"),
        ("/api/market/epochs?symbol=SIMV25&cursor=abc", "cursor"),
        ("/api/market/epochs?symbol=SIMV25&colour=red", "colour"),
    ] {
        let (status, code, got) = error_of(app.get(path, None).await).await;
        assert_eq!(
            (status, code.as_str(), got.as_deref()),
            (StatusCode::BAD_REQUEST, "validation_error", Some(field)),
            "{path}"
        );
    }
    let (status, _, _) = error_of(app.get("/api/market/epochs/999999", None).await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// `(seq, epoch_id)` of every stored tick of `symbol`, read from the database.
async fn stored_ticks(conn: &mut sqlx::AnyConnection, symbol: &str) -> Vec<(i64, i64)> {
    sqlx::query_as("SELECT seq, epoch_id FROM ticks WHERE symbol = $1 ORDER BY seq")
        .bind(symbol)
        .fetch_all(conn)
        .await
        .unwrap()
}

async fn open_epochs(conn: &mut sqlx::AnyConnection, symbol: &str) -> Vec<i64> {
    sqlx::query_as::<_, (i64,)>("SELECT id FROM epochs WHERE symbol = $1 AND ended_at IS NULL")
        .bind(symbol)
        .fetch_all(conn)
        .await
        .unwrap()
        .into_iter()
        .map(|(id,)| id)
        .collect()
}

/// A tick goes only into an epoch still open: a producer that lost its lead cannot add ticks
/// to an epoch whose seed the next producer has revealed.
#[tokio::test]
async fn no_tick_is_added_to_an_epoch_that_has_ended() {
    use fairtick::store::{StoreError, TickRecord};

    let app = TestApp::spawn().await;
    let ended = ended_epochs(&app, "SIMV25", 1).await;
    let epoch = ended.iter().find(|e| !e["seed"].is_null()).unwrap()["id"].as_i64().unwrap();
    let tick = TickRecord {
        symbol: "SIMV25".into(),
        seq: 1_000_000_000,
        epoch_id: epoch,
        ts: chrono::Utc::now().timestamp_millis(),
        price: Price::parse("1000").unwrap(),
    };
    let refused = app.store.append_tick(&tick).await;
    assert!(matches!(refused, Err(StoreError::Superseded(_))), "{refused:?}");
    let mut conn = raw_connection(&app.database_url).await;
    let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM ticks WHERE seq = 1000000000")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(count, 0);
}

/// Once a market's record is closed through a time (as it is before a trade is voided for want
/// of a tick by then), the feed stores no tick stamped at or before it: the ticks it refuses
/// wait for their next due time, so seq stays gapless and every later tick is stamped after.
/// And the record is never closed past a second before the database's clock.
#[tokio::test]
async fn no_tick_is_stored_behind_a_void_horizon_and_the_feed_goes_on_after_it() {
    let app = TestApp::spawn().await;
    let now = || chrono::Utc::now().timestamp_millis();
    eventually(Duration::from_secs(10), || async { app.store.last_tick("SIMV25").await.unwrap() }).await;

    // As asked by a node whose clock is a minute ahead.
    let capped = app.store.raise_void_horizon("SIMV25", now() + 60_000, 1_000).await.unwrap();
    assert!(capped <= now() - 1_000, "closed through {capped}, past a second before now");

    // Closed a second ahead, as a tick insert stalled that long would find it.
    let horizon = now() + 1_000;
    assert_eq!(app.store.raise_void_horizon("SIMV25", horizon, -2_000).await.unwrap(), horizon);
    let before = app.store.last_tick("SIMV25").await.unwrap().unwrap();
    eventually(Duration::from_secs(10), || async {
        let last = app.store.last_tick("SIMV25").await.unwrap().unwrap();
        (last.seq > before.seq).then_some(())
    })
    .await;
    let ticks = all_ticks(&app, "SIMV25").await;
    let from = ticks.iter().position(|t| t["seq"] == before.seq).unwrap();
    let next = &ticks[from + 1];
    assert_eq!(next["seq"], before.seq + 1, "no seq is skipped");
    assert!(ms(&next["ts"]) > horizon, "the first tick after the raise comes after the horizon: {next}");
}

/// On PostgreSQL, raising a void horizon waits for a tick insert that holds the horizon's row
/// (as `append_tick` does until it commits), so the settlement that raised it reads that tick.
#[tokio::test]
async fn raising_a_void_horizon_waits_for_a_tick_insert_in_flight() {
    if std::env::var("TEST_DATABASE_URL").is_err() {
        eprintln!("skipped: row locks held by another transaction need PostgreSQL (TEST_DATABASE_URL)");
        return;
    }
    let app = TestApp::spawn().await;
    eventually(Duration::from_secs(10), || async { app.store.last_tick("SIMV25").await.unwrap() }).await;
    let mut holder = raw_connection(&app.database_url).await;
    sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
    sqlx::query("SELECT horizon FROM void_horizons WHERE symbol = 'SIMV25' FOR SHARE")
        .fetch_one(&mut holder)
        .await
        .unwrap();
    let store = app.store.clone();
    let through = chrono::Utc::now().timestamp_millis() - 5_000;
    let raise = tokio::spawn(async move { store.raise_void_horizon("SIMV25", through, 1_000).await });
    until_waiting_for_a_lock(&app, "INSERT INTO void_horizons").await;
    assert!(!raise.is_finished(), "the raise waits for the insert holding the row");
    sqlx::query("COMMIT").execute(&mut holder).await.unwrap();
    let raised = tokio::time::timeout(Duration::from_secs(10), raise).await.expect("raised once released");
    assert_eq!(raised.unwrap().unwrap(), through);
}

/// A server that produced ten ticks of SIMV25, then stopped gracefully.
async fn stopped_after_ten_ticks() -> TestApp {
    let mut app = TestApp::spawn().await;
    eventually(Duration::from_secs(10), || async {
        (all_ticks(&app, "SIMV25").await.len() >= 10).then_some(())
    })
    .await;
    app.stop().await;
    app
}

#[tokio::test]
async fn a_restart_continues_seq_without_gap_and_reveals_the_interrupted_epoch() {
    let first = stopped_after_ten_ticks().await;
    let mut conn = raw_connection(&first.database_url).await;
    let before = stored_ticks(&mut conn, "SIMV25").await;
    assert_eq!(
        open_epochs(&mut conn, "SIMV25").await,
        Vec::<i64>::new(),
        "a graceful stop reveals the running epoch"
    );

    let second = first.spawn_sibling(|_| {}).await;
    let last_before = before.last().unwrap().0;
    let after = eventually(Duration::from_secs(10), || async {
        let ticks = all_ticks(&second, "SIMV25").await;
        (ticks.last().unwrap()["seq"].as_i64().unwrap() >= last_before + 10).then_some(ticks)
    })
    .await;
    assert_eq!(after[0]["seq"], 1);
    assert_gapless(&after);
    let replayed: Vec<(i64, i64)> = after[..before.len()]
        .iter()
        .map(|t| (t["seq"].as_i64().unwrap(), t["epochId"].as_i64().unwrap()))
        .collect();
    assert_eq!(replayed, before, "history is untouched");
    assert!(
        after[before.len()]["epochId"].as_i64().unwrap() > before.last().unwrap().1,
        "a new epoch after the restart"
    );
    // The one the interrupted epoch announced: its seed was fixed before the restart.
    assert_eq!(
        epoch_of_tick(&second, "SIMV25", last_before + 1).await,
        announced(&second, before.last().unwrap().1).await
    );
}

/// An epoch stopped before its first tick fixed no price: the next start runs it again as its
/// predecessor announced it, rather than the epoch it announced itself, which nobody had
/// announced when the trades reaching past the boundary were accepted.
#[tokio::test]
async fn an_epoch_stopped_before_its_first_tick_starts_again_as_announced() {
    let first = stopped_after_ten_ticks().await;
    let mut conn = raw_connection(&first.database_url).await;
    let (last_seq, last_price, epoch): (i64, i64, i64) = sqlx::query_as(
        "SELECT seq, price, epoch_id FROM ticks WHERE symbol = 'SIMV25' ORDER BY seq DESC LIMIT 1",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    // As if a feed had stored the announced epoch and died before its first tick; this one
    // announces nothing itself.
    sqlx::query(
        "INSERT INTO epochs (id, symbol, kind, volatility_bp, tick_interval_ms, commitment, sealed_seed, \
                             start_price, start_seq, started_at) \
         SELECT next_id, symbol, kind, volatility_bp, tick_interval_ms, next_commitment, next_sealed_seed, \
                $2, $3, ended_at FROM epochs WHERE id = $1",
    )
    .bind(epoch)
    .bind(last_price)
    .bind(last_seq + 1)
    .execute(&mut conn)
    .await
    .unwrap();

    let second = first.spawn_sibling(|_| {}).await;
    eventually(Duration::from_secs(10), || async {
        (all_ticks(&second, "SIMV25").await.len() as i64 > last_seq).then_some(())
    })
    .await;
    assert_eq!(epoch_of_tick(&second, "SIMV25", last_seq + 1).await, announced(&second, epoch).await);
}

/// A server stopped while its new epoch waits for its first tick withdraws that epoch rather
/// than closing it empty: the next start can run it as announced.
#[tokio::test]
async fn an_epoch_still_waiting_for_its_first_tick_at_a_clean_stop_is_withdrawn() {
    let first = stopped_after_ten_ticks().await;
    // Minute ticks: a new epoch waits up to a minute for its first.
    let mut waiting = first
        .spawn_sibling(|config| {
            config.markets = fairtick::services::market::catalog::default_markets(60_000).unwrap();
        })
        .await;
    let new_epoch = eventually(Duration::from_secs(10), || async {
        let mut conn = raw_connection(&first.database_url).await;
        let open: Vec<(i64,)> = sqlx::query_as(
            "SELECT id FROM epochs WHERE symbol = 'SIMV25' AND ended_at IS NULL AND tick_interval_ms = 60000",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        open.first().map(|(id,)| *id)
    })
    .await;
    waiting.stop().await;
    let mut conn = raw_connection(&first.database_url).await;
    let (left,): (i64,) = sqlx::query_as("SELECT CAST(COUNT(*) AS BIGINT) FROM epochs WHERE id = $1")
        .bind(new_epoch)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(left, 0, "withdrawn, not closed empty");
}

fn serve_process(app: &TestApp) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_fairtick"))
        .args(["serve", "--addr", "127.0.0.1:0", "--tick-interval-ms", "20", "--epoch-ms", "60000"])
        .env("DATABASE_URL", &app.database_url)
        .env("FAIRTICK_DATA_DIR", app.data_dir.path())
        .env("FAIRTICK_DATA_KEY", DATA_KEY_HEX)
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("fairtick serve starts")
}

#[tokio::test]
async fn after_kill_9_the_next_start_reveals_the_epoch_that_was_cut_short() {
    let mut app = TestApp::spawn().await;
    app.stop().await;
    let mut conn = raw_connection(&app.database_url).await;
    let before = stored_ticks(&mut conn, "SIMV25").await.len();
    // A separate process produces ticks (in one long epoch) and is killed without warning.
    let mut process = serve_process(&app);
    eventually(Duration::from_secs(20), || async {
        let mut conn = raw_connection(&app.database_url).await;
        (stored_ticks(&mut conn, "SIMV25").await.len() >= before + 10).then_some(())
    })
    .await;
    process.start_kill().unwrap();
    process.wait().await.unwrap();
    let cut_short = open_epochs(&mut conn, "SIMV25").await;
    assert_eq!(cut_short.len(), 1, "killed mid-epoch");
    let id = cut_short[0];

    let restarted = app.spawn_sibling(|_| {}).await;
    let revealed = eventually(Duration::from_secs(10), || async {
        let detail = json(&restarted, &format!("/api/market/epochs/{id}")).await;
        (!detail["epoch"]["seed"].is_null()).then_some(detail)
    })
    .await;
    assert_eq!(revealed["epoch"]["endTick"], revealed["ticks"].as_array().unwrap().last().unwrap()["seq"]);
    assert_epoch_verifies(&restarted, id).await;
    let ticks = eventually(Duration::from_secs(10), || async {
        let ticks = all_ticks(&restarted, "SIMV25").await;
        (ticks.last().unwrap()["epochId"].as_i64().unwrap() > id).then_some(ticks)
    })
    .await;
    assert_gapless(&ticks);
    let cut_at = revealed["epoch"]["endTick"].as_i64().unwrap();
    assert!(cut_at < revealed["epoch"]["plannedEndTick"].as_i64().unwrap(), "it was cut short");
    assert_eq!(epoch_of_tick(&restarted, "SIMV25", cut_at + 1).await, announced(&restarted, id).await);
}

#[tokio::test]
async fn the_verify_command_accepts_a_true_epoch_and_catches_a_tampered_tick() {
    let app = TestApp::spawn().await;
    let epochs = ended_epochs(&app, "SIMV25", 1).await;
    let id = epochs.iter().find(|e| !e["seed"].is_null()).unwrap()["id"].as_i64().unwrap().to_string();
    // The server runs on this test's runtime, so the command must be awaited, not blocked on.
    let verify = |extra: Vec<String>| {
        let mut args: Vec<String> =
            ["verify", "epoch", "--symbol", "SIMV25", "--epoch", &id].map(String::from).to_vec();
        args.extend(extra);
        async move {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_fairtick")).args(&args).output().await.unwrap()
        }
    };
    let ok = verify(vec!["--url".into(), app.base.clone()]).await;
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stdout));
    assert!(String::from_utf8_lossy(&ok.stdout).starts_with("OK"));

    let mut detail = json(&app, &format!("/api/market/epochs/{id}")).await;
    let original = price(&detail["ticks"][3]["price"]);
    let tampered = original.checked_add_units(1).unwrap();
    detail["ticks"][3]["price"] = Value::from(tampered.to_string());
    let file = app.data_dir.path().join("tampered.json");
    std::fs::write(&file, detail.to_string()).unwrap();
    let with_file = || vec!["--file".to_owned(), file.display().to_string()];
    let caught = verify(with_file()).await;
    assert!(!caught.status.success());
    let report = String::from_utf8_lossy(&caught.stdout);
    let seq = detail["ticks"][3]["seq"].as_i64().unwrap();
    assert!(
        report.contains("MISMATCH")
            && report.contains(&format!("seq {seq}"))
            && report.contains(&tampered.to_string()),
        "{report}"
    );

    detail["ticks"][3]["price"] = Value::from(original.to_string());
    detail["epoch"]["seed"] = Value::from("00".repeat(32));
    std::fs::write(&file, detail.to_string()).unwrap();
    let wrong_seed = verify(with_file()).await;
    assert!(!wrong_seed.status.success());
    assert!(String::from_utf8_lossy(&wrong_seed.stdout).contains("commitment"));
}

#[tokio::test]
async fn a_replay_market_plays_recorded_prices_in_order_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let csv =
        "timestamp,price\n1700000000,101.5\n1700000001,101.25\n1700000002,101.75\n1700000003,100.00000001\n";
    std::fs::write(dir.path().join("recorded.csv"), csv).unwrap();
    let markets = serde_json::json!([
        {"symbol": "REPLAY1", "name": "Replay of recorded prices", "replayFile": "recorded.csv", "tickIntervalMs": 20},
        {"symbol": "SIMV5", "name": "Simulated Volatility 5 Index", "volatilityBp": 500, "tickIntervalMs": 20}
    ]);
    let file = dir.path().join("markets.json");
    std::fs::write(&file, markets.to_string()).unwrap();
    let markets = fairtick::services::market::catalog::load_markets(&file, 1000).unwrap();
    let app = TestApp::spawn_with(move |config| config.markets = markets).await;

    let symbols = json(&app, "/api/market/symbols").await["symbols"].clone();
    assert_eq!(symbols[0]["kind"], "replay");
    assert_eq!(symbols[0]["source"], "recorded.csv");
    assert_eq!(symbols[0]["volatility"], Value::Null);
    assert_eq!(symbols[1]["kind"], "simulated");

    let ticks = eventually(Duration::from_secs(10), || async {
        let ticks = all_ticks(&app, "REPLAY1").await;
        (ticks.len() >= 8).then_some(ticks)
    })
    .await;
    let prices: Vec<&str> = ticks.iter().take(8).map(|t| t["price"].as_str().unwrap()).collect();
    let recorded = ["101.50000000", "101.25000000", "101.75000000", "100.00000001"];
    assert_eq!(prices[..4], recorded, "played in order");
    assert_eq!(prices[4..8], recorded, "and again from the start");
    assert_gapless(&ticks);
    let epoch = json(&app, "/api/market/epochs?symbol=REPLAY1&limit=1").await["epochs"][0].clone();
    assert_eq!(epoch["kind"], "replay");
    assert_eq!(epoch["commitment"], hex::encode(Sha256::digest(csv.as_bytes())));
}

#[tokio::test]
async fn with_two_nodes_on_postgres_one_produces_and_the_other_takes_over() {
    if std::env::var("TEST_DATABASE_URL").is_err() {
        eprintln!("skipped: single-producer election needs PostgreSQL (TEST_DATABASE_URL)");
        return;
    }
    let mut a = TestApp::spawn().await;
    eventually(Duration::from_secs(10), || async {
        (all_ticks(&a, "SIMV25").await.len() >= 5).then_some(())
    })
    .await;
    let b = a.spawn_sibling(|_| {}).await;
    let running = all_ticks(&b, "SIMV25").await.len();
    let both_running = eventually(Duration::from_secs(5), || async {
        let ticks = all_ticks(&b, "SIMV25").await;
        (ticks.len() >= running + 20).then_some(ticks)
    })
    .await;
    assert_gapless(&both_running);
    // One producer: at most one epoch open (none between two), and each epoch the one its
    // predecessor announced.
    let mut conn = raw_connection(&a.database_url).await;
    assert!(open_epochs(&mut conn, "SIMV25").await.len() <= 1);
    let epochs = ended_epochs(&b, "SIMV25", 2).await;
    for pair in epochs.windows(2) {
        assert_eq!(pair[1]["nextId"], pair[0]["id"], "{pair:?}");
    }

    a.stop().await;
    let last_of_a = all_ticks(&b, "SIMV25").await.last().unwrap()["seq"].as_i64().unwrap();
    let taken_over = eventually(Duration::from_secs(5), || async {
        let ticks = all_ticks(&b, "SIMV25").await;
        (ticks.last().unwrap()["seq"].as_i64().unwrap() >= last_of_a + 10).then_some(ticks)
    })
    .await;
    assert_gapless(&taken_over);
    assert_eq!(taken_over[0]["seq"], 1);
}
