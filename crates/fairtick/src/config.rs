//! Typed configuration. Every setting has a flag and an environment variable with a documented
//! default that is safe for a local run; secrets are kept out of `Debug` and logs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use fairtick_core::wallet::WalletLimits;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};

use crate::services::market::catalog::{self, MarketDefinition};
use crate::services::market::feed::FeedSettings;
use crate::services::sealing::DataKey;
use crate::services::trades::receipts::ReceiptSigner;
use fairtick_core::settings::TradingSettings;

/// Where the data lives; shared by every subcommand that opens the database.
#[derive(Args, Clone, Debug)]
pub struct StorageArgs {
    /// Directory for the SQLite database and generated secrets.
    #[arg(long, env = "FAIRTICK_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Database URL: `sqlite://PATH` or `postgres://USER@HOST/DB`. Default: a SQLite file in the
    /// data directory.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,

    /// Most database connections the process keeps open.
    #[arg(long, env = "FAIRTICK_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,
}

impl StorageArgs {
    /// The database URL to open, creating the data directory for the SQLite default.
    pub fn database_url(&self) -> anyhow::Result<String> {
        if let Some(url) = &self.database_url {
            return Ok(url.clone());
        }
        std::fs::create_dir_all(&self.data_dir)
            .with_context(|| format!("creating the data directory {}", self.data_dir.display()))?;
        Ok(format!("sqlite://{}", self.data_dir.join("fairtick.db").display()))
    }
}

/// Settings of `fairtick serve`.
#[derive(Args, Clone, Debug)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port (the log says which).
    #[arg(long, env = "FAIRTICK_ADDR", default_value = "127.0.0.1:3000")]
    pub addr: SocketAddr,

    #[command(flatten)]
    pub storage: StorageArgs,

    /// Lifetime of a login token, in seconds.
    #[arg(long, env = "FAIRTICK_TOKEN_TTL_SECS", default_value_t = 3600)]
    pub token_ttl_secs: u64,

    /// How long a checked session is trusted without reading it again, in milliseconds: the
    /// most a logout or suspension can lag on a node that missed the change's notification.
    /// 0 reads the session on every request.
    #[arg(long, env = "FAIRTICK_SESSION_CACHE_MS", default_value_t = crate::store::DEFAULT_SESSION_TTL_MS)]
    pub session_cache_ms: u64,

    /// Register and login attempts allowed per client IP per minute.
    #[arg(long, env = "FAIRTICK_AUTH_PER_IP_PER_MINUTE", default_value_t = 60)]
    pub auth_per_ip_per_minute: u32,

    /// Login attempts allowed per account (email) per minute.
    #[arg(long, env = "FAIRTICK_LOGIN_PER_ACCOUNT_PER_MINUTE", default_value_t = 10)]
    pub login_per_account_per_minute: u32,

    /// API requests allowed per client IP per minute.
    #[arg(long, env = "FAIRTICK_API_PER_IP_PER_MINUTE", default_value_t = 6_000)]
    pub api_per_ip_per_minute: u32,

    /// API requests allowed per signed-in user per minute.
    #[arg(long, env = "FAIRTICK_API_PER_USER_PER_MINUTE", default_value_t = 1_200)]
    pub api_per_user_per_minute: u32,

    /// Password hashes computed at once; more wait, so logins can never starve the API.
    #[arg(long, env = "FAIRTICK_HASHING_CONCURRENCY", default_value_t = 2)]
    pub hashing_concurrency: usize,

    /// Open WebSocket connections allowed per client IP (an IPv6 client by its /64).
    #[arg(long, env = "FAIRTICK_WS_PER_IP", default_value_t = 1_000)]
    pub ws_per_ip: usize,

    /// Marks the session cookie `Secure` (sent over HTTPS only), for a server reached through TLS.
    #[arg(long, env = "FAIRTICK_SECURE_COOKIE")]
    pub secure_cookie: bool,

    #[command(flatten)]
    pub wallet: WalletArgs,

    #[command(flatten)]
    pub market: MarketArgs,
}

/// The markets and their feeds.
#[derive(Args, Clone, Debug)]
pub struct MarketArgs {
    /// A JSON file of market definitions (see the README); default: two simulated indices.
    #[arg(long, env = "FAIRTICK_MARKETS_FILE")]
    pub markets_file: Option<PathBuf>,

    /// Milliseconds between ticks of the default markets (and of file markets that give none).
    #[arg(long, env = "FAIRTICK_TICK_INTERVAL_MS", default_value_t = 1000)]
    pub tick_interval_ms: u32,

    /// Length of a simulated market's epoch (one committed seed), in milliseconds.
    #[arg(long, env = "FAIRTICK_EPOCH_MS", default_value_t = 600_000)]
    pub epoch_ms: u64,

    /// Hours of ticks kept; older ticks are deleted (revealed epochs can recompute prices).
    #[arg(long, env = "FAIRTICK_TICK_RETENTION_HOURS", default_value_t = 168)]
    pub tick_retention_hours: u64,
}

impl MarketArgs {
    pub fn markets(&self) -> anyhow::Result<Vec<MarketDefinition>> {
        match &self.markets_file {
            Some(path) => catalog::load_markets(path, self.tick_interval_ms),
            None => catalog::default_markets(self.tick_interval_ms),
        }
    }

    pub fn feed_settings(&self) -> anyhow::Result<FeedSettings> {
        anyhow::ensure!(self.epoch_ms > 0, "the epoch length must be positive");
        anyhow::ensure!(self.tick_retention_hours > 0, "tick retention must be at least one hour");
        Ok(FeedSettings {
            epoch_length: Duration::from_millis(self.epoch_ms),
            retention: Duration::from_secs(self.tick_retention_hours * 3600),
            takeover_poll: Duration::from_secs(1),
        })
    }
}

/// Limits of the virtual wallet, in VUSD.
#[derive(Args, Clone, Debug)]
pub struct WalletArgs {
    /// Balance credited at registration and restored by a reset.
    #[arg(long, env = "FAIRTICK_STARTING_BALANCE", default_value = "10000.00")]
    pub starting_balance: fairtick_core::Money,
    /// Most one deposit may add.
    #[arg(long, env = "FAIRTICK_MAX_DEPOSIT", default_value = "10000.00")]
    pub max_deposit: fairtick_core::Money,
    /// Most that may be deposited in any rolling 24 hours.
    #[arg(long, env = "FAIRTICK_MAX_DEPOSIT_PER_DAY", default_value = "50000.00")]
    pub max_deposit_per_day: fairtick_core::Money,
    /// Highest total balance a deposit may reach.
    #[arg(long, env = "FAIRTICK_MAX_BALANCE", default_value = "1000000.00")]
    pub max_balance: fairtick_core::Money,
}

impl WalletArgs {
    pub fn limits(&self) -> anyhow::Result<WalletLimits> {
        let limits = WalletLimits {
            starting_balance: self.starting_balance,
            max_deposit: self.max_deposit,
            max_deposit_per_day: self.max_deposit_per_day,
            max_balance: self.max_balance,
        };
        for (name, value) in [
            ("starting balance", limits.starting_balance),
            ("max deposit", limits.max_deposit),
            ("max deposit per day", limits.max_deposit_per_day),
            ("max balance", limits.max_balance),
        ] {
            anyhow::ensure!(value.is_positive(), "the {name} must be positive, not {value}");
        }
        Ok(limits)
    }
}

/// Everything the running service needs, resolved and validated.
#[derive(Clone, Debug)]
pub struct Config {
    pub database_url: String,
    pub db_max_connections: u32,
    pub jwt_secret: SecretString,
    pub token_ttl: Duration,
    pub session_cache: Duration,
    pub auth_per_ip_per_minute: u32,
    pub login_per_account_per_minute: u32,
    pub api_per_ip_per_minute: u32,
    pub api_per_user_per_minute: u32,
    pub hashing_concurrency: usize,
    pub ws_per_ip: usize,
    pub secure_cookie: bool,
    pub wallet: WalletLimits,
    pub markets: Vec<MarketDefinition>,
    pub feed: FeedSettings,
    /// Seals unrevealed seeds: `FAIRTICK_DATA_KEY` (64 hex characters) or a generated file.
    pub data_key: DataKey,
    /// Signs trade receipts: `FAIRTICK_SIGNING_KEY` (64 hex characters) or a generated file.
    pub signing_key: ReceiptSigner,
    pub trading: TradingSettings,
}

impl Config {
    /// Resolves `serve` arguments: the JWT secret comes from `JWT_SECRET`, or from a file in the
    /// data directory that is generated (0600) on first start.
    pub fn from_serve_args(args: &ServeArgs) -> anyhow::Result<Config> {
        anyhow::ensure!(args.token_ttl_secs > 0, "the token lifetime must be positive");
        anyhow::ensure!(args.hashing_concurrency > 0, "hashing concurrency must be at least 1");
        let jwt_secret = match std::env::var("JWT_SECRET") {
            Ok(secret) if !secret.is_empty() => SecretString::from(secret),
            _ => load_or_create_secret(&args.storage.data_dir, "jwt_secret")?,
        };
        anyhow::ensure!(
            jwt_secret.expose_secret().len() >= 32,
            "JWT_SECRET must be at least 32 characters long"
        );
        Ok(Config {
            database_url: args.storage.database_url()?,
            db_max_connections: args.storage.db_max_connections,
            jwt_secret,
            token_ttl: Duration::from_secs(args.token_ttl_secs),
            session_cache: Duration::from_millis(args.session_cache_ms),
            auth_per_ip_per_minute: args.auth_per_ip_per_minute,
            login_per_account_per_minute: args.login_per_account_per_minute,
            api_per_ip_per_minute: args.api_per_ip_per_minute,
            api_per_user_per_minute: args.api_per_user_per_minute,
            hashing_concurrency: args.hashing_concurrency,
            ws_per_ip: args.ws_per_ip,
            secure_cookie: args.secure_cookie,
            wallet: args.wallet.limits()?,
            markets: args.market.markets()?,
            feed: args.market.feed_settings()?,
            data_key: data_key(&args.storage.data_dir)?,
            signing_key: signing_key(&args.storage.data_dir)?,
            trading: TradingSettings::default(),
        })
    }
}

/// The receipt-signing key from `FAIRTICK_SIGNING_KEY`, or from a file in the data directory
/// generated on first start. Several nodes must share one key.
pub fn signing_key(data_dir: &Path) -> anyhow::Result<ReceiptSigner> {
    let hex = match std::env::var("FAIRTICK_SIGNING_KEY") {
        Ok(key) if !key.is_empty() => SecretString::from(key),
        _ => load_or_create_secret(data_dir, "signing_key")?,
    };
    ReceiptSigner::from_hex(&hex).context("FAIRTICK_SIGNING_KEY")
}

/// The data key from `FAIRTICK_DATA_KEY`, or from a file in the data directory generated on
/// first start. Several nodes must share one key (set the variable on each).
pub fn data_key(data_dir: &Path) -> anyhow::Result<DataKey> {
    let hex = match std::env::var("FAIRTICK_DATA_KEY") {
        Ok(key) if !key.is_empty() => SecretString::from(key),
        _ => load_or_create_secret(data_dir, "data_key")?,
    };
    DataKey::from_hex(&hex).context("FAIRTICK_DATA_KEY")
}

/// Reads a secret kept in the data directory, or generates 32 random bytes (hex) and stores
/// them readable by the owner only.
pub fn load_or_create_secret(data_dir: &Path, name: &str) -> anyhow::Result<SecretString> {
    let path = data_dir.join(name);
    if let Ok(existing) = std::fs::read_to_string(&path) {
        return Ok(SecretString::from(existing.trim().to_owned()));
    }
    std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret = hex::encode(bytes);
    write_private(&path, &secret).with_context(|| format!("writing {}", path.display()))?;
    tracing::warn!(path = %path.display(), "no {} in the environment: generated one and stored it", name.to_uppercase());
    Ok(SecretString::from(secret))
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(contents.as_bytes())
}
