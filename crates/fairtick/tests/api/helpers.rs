//! `TestApp`: a real fairtick server on port 0 with a fresh database, and one helper per endpoint.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use fairtick::config::Config;
use fairtick::services::market::catalog;
use fairtick::services::market::feed::FeedSettings;
use fairtick::services::sealing::DataKey;
use fairtick::services::trades::receipts::ReceiptSigner;
use fairtick::startup::Application;
use fairtick::store::Store;
use fairtick_core::settings::TradingSettings;
use fairtick_core::wallet::WalletLimits;
use reqwest::{Response, StatusCode};
use secrecy::SecretString;
use serde_json::{Value, json};
use sqlx::Connection;

pub const PASSWORD: &str = "correct horse battery";

/// The test markets tick fast and change epoch often, so that tests see many of both.
pub const TICK_INTERVAL_MS: u32 = 20;
pub const EPOCH_MS: u64 = 400;
/// The data key of every test server (hex), so a test can open sealed seeds.
pub const DATA_KEY_HEX: &str = "abababababababababababababababababababababababababababababababab";

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub store: Store,
    pub database_url: String,
    pub data_dir: Arc<tempfile::TempDir>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.shutdown.take() {
            let _ = stop.send(());
        }
    }
}

static NEXT_DB: AtomicU64 = AtomicU64::new(0);

/// A fresh database: a SQLite file in `dir`, or a new PostgreSQL database on the server
/// named by `TEST_DATABASE_URL`.
pub async fn fresh_database_url(dir: &std::path::Path) -> String {
    let Ok(server) = std::env::var("TEST_DATABASE_URL") else {
        return format!("sqlite://{}", dir.join("fairtick.db").display());
    };
    let name = format!(
        "fairtick_test_{}_{}_{}",
        std::process::id(),
        NEXT_DB.fetch_add(1, Ordering::Relaxed),
        rand::random::<u32>()
    );
    let mut admin = sqlx::PgConnection::connect(&server).await.expect("TEST_DATABASE_URL is reachable");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .expect("create a test database");
    admin.close().await.ok();
    let (base, _) = server.rsplit_once('/').expect("TEST_DATABASE_URL ends with /DATABASE");
    format!("{base}/{name}")
}

pub fn test_config(database_url: String) -> Config {
    Config {
        database_url,
        db_max_connections: 8,
        jwt_secret: SecretString::from("test-secret-test-secret-test-secret-0123"),
        token_ttl: Duration::from_secs(3600),
        // Trusted for an hour: a change made through the server must reach every session at
        // once by being forgotten, never by a session running out in the middle of a test.
        session_cache: Duration::from_secs(3600),
        auth_per_ip_per_minute: 10_000,
        login_per_account_per_minute: 10,
        api_per_ip_per_minute: 1_000_000,
        api_per_user_per_minute: 1_000_000,
        hashing_concurrency: 2,
        ws_per_ip: 1_000,
        secure_cookie: false,
        wallet: WalletLimits::default(),
        markets: catalog::default_markets(TICK_INTERVAL_MS).expect("the default markets"),
        feed: FeedSettings {
            epoch_length: Duration::from_millis(EPOCH_MS),
            retention: Duration::from_secs(3600),
            takeover_poll: Duration::from_millis(200),
        },
        data_key: DataKey::from_hex(&SecretString::from(DATA_KEY_HEX)).expect("a data key"),
        signing_key: ReceiptSigner::from_hex(&SecretString::from("cd".repeat(32))).expect("a signing key"),
        trading: TradingSettings { durations_secs: vec![1, 2, 5, 10], ..TradingSettings::default() },
    }
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        TestApp::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
        let data_dir = Arc::new(tempfile::tempdir().expect("a temporary directory"));
        let database_url = fresh_database_url(data_dir.path()).await;
        TestApp::spawn_on(database_url, data_dir, adjust).await
    }

    /// Two servers on one new PostgreSQL database, or `None` (the test is skipped, and says
    /// so) when no PostgreSQL is given: several nodes need one.
    pub async fn two_nodes() -> Option<(TestApp, TestApp)> {
        if std::env::var("TEST_DATABASE_URL").is_err() {
            eprintln!("skipped: two nodes need PostgreSQL (TEST_DATABASE_URL)");
            return None;
        }
        let a = TestApp::spawn().await;
        let b = a.spawn_sibling(|_| {}).await;
        Some((a, b))
    }

    /// Another server on the same database (a restart, or a second node).
    pub async fn spawn_sibling(&self, adjust: impl FnOnce(&mut Config)) -> TestApp {
        TestApp::spawn_on(self.database_url.clone(), self.data_dir.clone(), adjust).await
    }

    /// Shuts the server down gracefully and waits until it has finished.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.shutdown.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("the server task").expect("the server stopped cleanly");
        }
    }

    /// A server whose sockets have a tiny send buffer, for slow-consumer tests.
    pub async fn spawn_with_send_buffer(bytes: u32) -> TestApp {
        let data_dir = Arc::new(tempfile::tempdir().expect("a temporary directory"));
        let database_url = fresh_database_url(data_dir.path()).await;
        TestApp::spawn_on_listener(database_url, data_dir, |_| {}, Some(bytes)).await
    }

    async fn spawn_on(
        database_url: String,
        data_dir: Arc<tempfile::TempDir>,
        adjust: impl FnOnce(&mut Config),
    ) -> TestApp {
        TestApp::spawn_on_listener(database_url, data_dir, adjust, None).await
    }

    async fn spawn_on_listener(
        database_url: String,
        data_dir: Arc<tempfile::TempDir>,
        adjust: impl FnOnce(&mut Config),
        send_buffer: Option<u32>,
    ) -> TestApp {
        let mut config = test_config(database_url.clone());
        adjust(&mut config);
        let app = Application::build(&config).await.expect("the application builds");
        let store = app.state().store.clone();
        let markets = app.state().markets.clone();
        let listener = match send_buffer {
            None => tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind port 0"),
            Some(bytes) => {
                // Accepted sockets inherit the listener's buffer size: a tiny one makes a
                // client that stops reading block the server's writes quickly.
                let socket = tokio::net::TcpSocket::new_v4().unwrap();
                socket.set_send_buffer_size(bytes).unwrap();
                socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
                socket.listen(1024).unwrap()
            }
        };
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(app.serve(listener, async move {
            let _ = stopped.await;
        }));
        // Trades are refused until their market's first tick; markets that tick within a
        // second have one before the test goes on.
        for market in markets.catalog().iter().filter(|m| m.tick_interval_ms <= 1_000) {
            eventually(Duration::from_secs(10), || async {
                markets.accepted_at(&market.symbol, chrono::Utc::now()).map(|_| ())
            })
            .await;
        }
        TestApp {
            base,
            client: reqwest::Client::new(),
            store,
            database_url,
            data_dir,
            shutdown: Some(stop),
            server: Some(server),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn post_json(&self, path: &str, token: Option<&str>, body: &Value) -> Response {
        let mut request = self.client.post(self.url(path)).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("request sent")
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        let mut request = self.client.get(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("request sent")
    }

    pub async fn register(&self, email: &str) -> Response {
        self.post_json(
            "/api/auth/register",
            None,
            &json!({"email": email, "password": PASSWORD, "firstName": "Test", "lastName": "User"}),
        )
        .await
    }

    /// Registers `email` and returns its token.
    pub async fn signed_up(&self, email: &str) -> String {
        let response = self.register(email).await;
        assert_eq!(response.status(), StatusCode::CREATED, "registering {email}");
        body(response).await["token"].as_str().expect("a token").to_owned()
    }

    pub async fn signed_up_owned(&self, email: String) -> String {
        self.signed_up(&email).await
    }

    pub async fn login(&self, email: &str, password: &str) -> Response {
        self.post_json("/api/auth/login", None, &json!({"email": email, "password": password})).await
    }

    pub async fn me(&self, token: &str) -> Response {
        self.get("/api/auth/me", Some(token)).await
    }

    pub async fn balance(&self, token: &str) -> Value {
        let response = self.get("/api/wallet/balance", Some(token)).await;
        assert_eq!(response.status(), StatusCode::OK);
        body(response).await
    }

    pub async fn wallet_post(&self, op: &str, token: &str, body: &Value, key: Option<&str>) -> Response {
        let mut request =
            self.client.post(self.url(&format!("/api/wallet/{op}"))).bearer_auth(token).json(body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        request.send().await.expect("request sent")
    }

    pub async fn transactions(&self, token: &str, query: &str) -> Response {
        self.get(&format!("/api/wallet/transactions{query}"), Some(token)).await
    }

    pub async fn user_id(&self, token: &str) -> i64 {
        body(self.me(token).await).await["user"]["id"].as_i64().expect("a user id")
    }
}

pub async fn body(response: Response) -> Value {
    let text = response.text().await.expect("a body");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Asserts the documented error shape and returns `(code, field)`.
pub async fn error_of(response: Response) -> (StatusCode, String, Option<String>) {
    let status = response.status();
    let body = body(response).await;
    let error = &body["error"];
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "error without a message: {body}");
    let code = error["code"].as_str().unwrap_or_else(|| panic!("error without a code: {body}")).to_owned();
    (status, code, error["field"].as_str().map(str::to_owned))
}

/// Polls `probe` every 20 ms until it returns `Some`, for at most `within`.
pub async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    within: Duration,
    mut probe: impl FnMut() -> F,
) -> T {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "condition not met within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A time as the API writes it (RFC 3339), in ms since the Unix epoch.
pub fn ms(text: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(text.as_str().unwrap()).unwrap().timestamp_millis()
}

/// A direct connection to a test database, for looking where the API does not (or cannot,
/// because its server is stopped).
pub async fn raw_connection(database_url: &str) -> sqlx::AnyConnection {
    sqlx::any::install_default_drivers();
    <sqlx::AnyConnection as Connection>::connect(database_url).await.expect("the test database")
}

/// Waits until a statement of `app`'s database starting with `statement` waits for a lock
/// another transaction holds (PostgreSQL only).
pub async fn until_waiting_for_a_lock(app: &TestApp, statement: &str) {
    eventually(Duration::from_secs(10), || async {
        let mut watcher = raw_connection(&app.database_url).await;
        let (waiting,): (i64,) = sqlx::query_as(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM pg_stat_activity WHERE datname = current_database() \
             AND wait_event_type = 'Lock' AND query LIKE $1",
        )
        .bind(format!("{statement}%"))
        .fetch_one(&mut watcher)
        .await
        .unwrap();
        (waiting >= 1).then_some(())
    })
    .await;
}

/// The real `fairtick` binary on `app`'s database and data directory, on a free port, for the
/// tests that kill it with SIGKILL (so `app` should be stopped first). Returns the process and
/// its base URL once it answers `/readyz`.
pub async fn spawn_process(app: &TestApp) -> (tokio::process::Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}");
    let process = tokio::process::Command::new(env!("CARGO_BIN_EXE_fairtick"))
        .args([
            "serve",
            "--addr",
            &format!("127.0.0.1:{port}"),
            "--tick-interval-ms",
            &TICK_INTERVAL_MS.to_string(),
            "--epoch-ms",
            &EPOCH_MS.to_string(),
        ])
        .env("DATABASE_URL", &app.database_url)
        .env("FAIRTICK_DATA_DIR", app.data_dir.path())
        .env("FAIRTICK_DATA_KEY", DATA_KEY_HEX)
        .env("JWT_SECRET", "test-secret-test-secret-test-secret-0123")
        .env("FAIRTICK_API_PER_IP_PER_MINUTE", "100000000")
        .env("FAIRTICK_API_PER_USER_PER_MINUTE", "100000000")
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    eventually(Duration::from_secs(20), || async {
        client.get(format!("{base}/readyz")).send().await.ok().filter(|r| r.status().is_success()).map(|_| ())
    })
    .await;
    (process, base)
}

/// A fault put into `app`'s database: from now on the update that ends trade `id` fails, as a
/// lost connection or a full disk would make it, until [`heal_the_ending`].
pub async fn break_the_ending_of(app: &TestApp, id: i64) {
    let statements = if app.database_url.starts_with("postgres") {
        vec![
            "CREATE FUNCTION injected_fault() RETURNS trigger LANGUAGE plpgsql \
             AS $$ BEGIN RAISE EXCEPTION 'injected fault'; END $$"
                .to_owned(),
            format!(
                "CREATE TRIGGER injected_fault BEFORE UPDATE ON trades FOR EACH ROW \
                 WHEN (OLD.id = {id} AND NEW.status <> 'active') EXECUTE FUNCTION injected_fault()"
            ),
        ]
    } else {
        vec![format!(
            "CREATE TRIGGER injected_fault BEFORE UPDATE ON trades FOR EACH ROW \
             WHEN OLD.id = {id} AND NEW.status <> 'active' BEGIN SELECT RAISE(ABORT, 'injected fault'); END"
        )]
    };
    let mut conn = raw_connection(&app.database_url).await;
    for statement in statements {
        sqlx::query(&statement).execute(&mut conn).await.expect("the fault is put in");
    }
}

/// Takes out the fault of [`break_the_ending_of`].
pub async fn heal_the_ending(app: &TestApp) {
    let statement = if app.database_url.starts_with("postgres") {
        "DROP TRIGGER injected_fault ON trades"
    } else {
        "DROP TRIGGER injected_fault"
    };
    let mut conn = raw_connection(&app.database_url).await;
    sqlx::query(statement).execute(&mut conn).await.expect("the fault is taken out");
}

/// Registers `email` and gives it `role` directly in the database (how the first superadmin
/// is made with `fairtick user create`).
pub async fn with_role(app: &TestApp, email: &str, role: &str) -> String {
    let token = app.signed_up(email).await;
    let mut conn = raw_connection(&app.database_url).await;
    sqlx::query("UPDATE users SET role = $1 WHERE email = $2")
        .bind(role)
        .bind(email)
        .execute(&mut conn)
        .await
        .unwrap();
    token
}
