//! Migrations run on a database that already holds data, as an upgrade runs them: what was
//! written before is all there after, and the ledger's rules still hold.

use std::path::Path;

use sqlx::migrate::Migrator;

use crate::helpers::{fresh_database_url, raw_connection};

/// The migration that made postings unique by transaction instead of by account.
const POSTINGS_BY_TRANSACTION: &str = "20261127000007";

/// Applies the backend's migrations older than `version`, as a server built before it did.
async fn migrate_before(database_url: &str, version: &str, scratch: &Path) {
    let backend = if database_url.starts_with("postgres") { "postgres" } else { "sqlite" };
    let all = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join(backend);
    let older = scratch.join("older-migrations");
    std::fs::create_dir_all(&older).unwrap();
    for entry in std::fs::read_dir(all).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if name.as_str() < version {
            std::fs::copy(&path, older.join(&name)).unwrap();
        }
    }
    let mut conn = raw_connection(database_url).await;
    Migrator::new(older.as_path()).await.unwrap().run(&mut conn).await.unwrap();
}

/// A new database (and its data directory) migrated as a server built before `version` left it.
async fn database_before(version: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut database_url = fresh_database_url(dir.path()).await;
    if database_url.starts_with("sqlite") {
        database_url.push_str("?mode=rwc");
    }
    migrate_before(&database_url, version, dir.path()).await;
    (dir, database_url)
}

async fn execute(conn: &mut sqlx::AnyConnection, sql: &str) -> Result<u64, sqlx::Error> {
    sqlx::query(sql).execute(conn).await.map(|done| done.rows_affected())
}

#[tokio::test]
async fn postings_written_before_they_were_unique_by_transaction_are_kept_and_still_append_only() {
    let (dir, database_url) = database_before(POSTINGS_BY_TRANSACTION).await;

    // A user's deposit and a stake, as the server wrote them then: the in-play posting with a
    // balance too.
    let mut conn = raw_connection(&database_url).await;
    for sql in [
        "INSERT INTO users (id, email, password_hash, first_name, last_name, role, created_at) \
         VALUES (1, 'old@example.com', 'x', 'Old', 'Ledger', 'user', 0)",
        "INSERT INTO accounts (id, user_id, kind, balance) VALUES (10, 1, 'cash', 6000), (11, 1, 'in_play', 4000)",
        "INSERT INTO ledger_transactions (id, kind, user_id, reference, created_at) \
         VALUES (100, 'deposit', 1, NULL, 1), (101, 'stake', 1, '7', 2)",
        "INSERT INTO postings (transaction_id, account_id, amount, balance_after) VALUES \
         (100, (SELECT id FROM accounts WHERE kind = 'faucet'), -10000, NULL), (100, 10, 10000, 10000), \
         (101, 10, -4000, 6000), (101, 11, 4000, 4000)",
    ] {
        execute(&mut conn, sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    drop(conn);

    // The real binary, as an upgrade: it applies the new migration, then audits the ledger.
    let audit = tokio::process::Command::new(env!("CARGO_BIN_EXE_fairtick"))
        .arg("audit")
        .env("DATABASE_URL", &database_url)
        .env("FAIRTICK_DATA_DIR", dir.path())
        .env("RUST_LOG", "error")
        .output()
        .await
        .unwrap();
    let report = String::from_utf8_lossy(&audit.stdout);
    assert!(audit.status.success(), "{report}{}", String::from_utf8_lossy(&audit.stderr));
    assert!(report.contains("2 transactions, 4 postings") && report.contains("OK"), "{report}");

    let mut conn = raw_connection(&database_url).await;
    let kept: Vec<(i64, i64, i64, Option<i64>)> = sqlx::query_as(
        "SELECT transaction_id, account_id, amount, balance_after FROM postings ORDER BY transaction_id, amount",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let faucet = kept[0].1;
    assert_eq!(
        kept,
        [
            (100, faucet, -10000, None),
            (100, 10, 10000, Some(10000)),
            (101, 10, -4000, Some(6000)),
            (101, 11, 4000, Some(4000))
        ]
    );
    for change in [
        "UPDATE postings SET amount = 1 WHERE transaction_id = 101",
        "DELETE FROM postings WHERE transaction_id = 101",
    ] {
        let refused = execute(&mut conn, change).await.expect_err(change).to_string();
        assert!(refused.contains("append-only"), "{change}: {refused}");
    }
    let twice = "INSERT INTO postings (transaction_id, account_id, amount) VALUES (101, 10, 1)";
    let refused =
        execute(&mut conn, twice).await.expect_err("a second posting of one transaction to one account");
    assert!(refused.to_string().to_lowercase().contains("unique"), "{refused}");
}

/// The migration that made each epoch announce the next, with ids reserved ahead.
const EPOCH_ANNOUNCEMENTS: &str = "20261128000008";

#[tokio::test]
async fn epochs_stored_before_announcements_keep_their_ids_and_new_ones_come_after() {
    use fairtick::store::{NewEpoch, Store};
    use fairtick_core::price::Price;

    let (_dir, database_url) = database_before(EPOCH_ANNOUNCEMENTS).await;
    // Three epochs as the server stored them then, their ids given by the database.
    let mut conn = raw_connection(&database_url).await;
    for _ in 0..3 {
        execute(
            &mut conn,
            "INSERT INTO epochs (symbol, kind, volatility_bp, tick_interval_ms, commitment, start_price, \
             start_seq, started_at) VALUES ('OLD', 'simulated', 2500, 1000, 'c', 100000000000, 1, 0)",
        )
        .await
        .unwrap();
    }
    let (newest,): (i64,) = sqlx::query_as("SELECT MAX(id) FROM epochs").fetch_one(&mut conn).await.unwrap();
    drop(conn);

    let store = Store::connect(&database_url, 2).await.unwrap();
    let old = store.latest_epoch("OLD").await.unwrap().unwrap();
    assert_eq!((old.id, old.announced), (newest, None), "an old epoch announced nothing");
    let epoch = |id| NewEpoch {
        id,
        symbol: "OLD",
        kind: "simulated",
        volatility_bp: 2500,
        tick_interval_ms: 1000,
        commitment: "c",
        sealed_seed: None,
        start_price: Price::from_units(100_000_000_000).unwrap(),
        start_seq: 2,
        started_at: 1,
        planned_end_seq: 601,
        next_commitment: "n",
        next_sealed_seed: None,
    };
    let first = store.create_epoch(&epoch(None)).await.unwrap();
    assert!(newest < first.id && first.id < first.next_id, "{first:?} after {newest}");
    // The announced id is taken by nothing else: the next epoch stored gets a newer one.
    let other = store.create_epoch(&NewEpoch { symbol: "OTHER", ..epoch(None) }).await.unwrap();
    assert!(other.id > first.next_id, "{other:?} after {first:?}");
    let announced = store.create_epoch(&epoch(Some(first.next_id))).await.unwrap();
    assert_eq!(announced.id, first.next_id);
    let stored = store.latest_epoch("OLD").await.unwrap().unwrap();
    let planned = stored.announced.map(|a| (a.planned_end_seq, a.next_id, a.next_commitment));
    assert_eq!(planned, Some((601, announced.next_id, "n".to_owned())));
}

/// The migration that keeps what the admin user search matches.
const USER_SEARCH_TEXT: &str = "20261128000011";

#[tokio::test]
async fn users_created_before_the_search_text_was_kept_are_found_after_the_upgrade() {
    let (_dir, database_url) = database_before(USER_SEARCH_TEXT).await;
    let mut conn = raw_connection(&database_url).await;
    execute(
        &mut conn,
        "INSERT INTO users (id, email, password_hash, first_name, last_name, role, created_at) \
         VALUES (1, 'elodie@example.com', 'x', 'Élodie', 'Dubois', 'user', 0)",
    )
    .await
    .unwrap();
    drop(conn);

    fairtick::store::Store::connect(&database_url, 2).await.unwrap().close().await;
    let mut conn = raw_connection(&database_url).await;
    let (kept,): (String,) =
        sqlx::query_as("SELECT search_text FROM users WHERE id = 1").fetch_one(&mut conn).await.unwrap();
    assert_eq!(kept, "elodie@example.com\nélodie dubois");
}
