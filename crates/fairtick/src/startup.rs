//! Wiring: build the store, the services and the router from a [`Config`], then serve on an
//! already-bound listener until a shutdown future resolves. Tests bind port 0 and call the same
//! code as `fairtick serve`.

use std::future::Future;
use std::net::SocketAddr;

use tokio::net::TcpListener;

use crate::config::Config;
use crate::http::rate_limit::AuthRateLimits;
use crate::http::{self, AppState};
use tokio_util::sync::CancellationToken;

use crate::services::accounts::Accounts;
use crate::services::market::Markets;
use crate::services::market::feed::FeedSettings;
use crate::services::passwords::Passwords;
use crate::services::sealing::DataKey;
use crate::services::tokens::Tokens;
use crate::services::trades::Trades;
use crate::services::wallet::Wallet;
use crate::store::Store;

/// A built application, ready to serve.
pub struct Application {
    state: AppState,
    data_key: DataKey,
    feed: FeedSettings,
}

impl Application {
    pub async fn build(config: &Config) -> anyhow::Result<Application> {
        let store = Store::connect(&config.database_url, config.db_max_connections).await?;
        let services = Services::new(store.clone(), config).await?;
        let markets = Markets::new(store.clone(), config.markets.clone());
        let trades =
            Trades::new(store.clone(), markets.clone(), config.signing_key.clone(), config.trading.clone());
        let state = AppState {
            store,
            accounts: services.accounts,
            wallet: services.wallet,
            markets,
            trades,
            auth_limits: AuthRateLimits::new(
                config.auth_per_ip_per_minute,
                config.login_per_account_per_minute,
            ),
        };
        Ok(Application { state, data_key: config.data_key.clone(), feed: config.feed.clone() })
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then finishes the requests in flight and closes the
    /// open epochs (revealing their seeds).
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let limits = self.state.auth_limits.clone();
        let sweeper = tokio::spawn(async move {
            let mut every = tokio::time::interval(http::RATE_LIMIT_SWEEP);
            loop {
                every.tick().await;
                limits.sweep();
            }
        });
        let background = CancellationToken::new();
        let mut background_tasks =
            self.state.markets.spawn_feeds(self.data_key, self.feed, background.clone());
        background_tasks.push(tokio::spawn(self.state.trades.settlement().run(background.clone())));
        let store = self.state.store.clone();
        let app = http::router(self.state).into_make_service_with_connect_info::<SocketAddr>();
        let served = axum::serve(listener, app).with_graceful_shutdown(shutdown).await;
        background.cancel();
        for task in background_tasks {
            let _ = task.await;
        }
        sweeper.abort();
        store.close().await;
        Ok(served?)
    }
}

/// The services, built once and shared by the HTTP layer and the command line.
pub struct Services {
    pub accounts: Accounts,
    pub wallet: Wallet,
}

impl Services {
    pub async fn new(store: Store, config: &Config) -> anyhow::Result<Services> {
        let passwords = Passwords::new(config.hashing_concurrency).await?;
        let tokens = Tokens::new(&config.jwt_secret, config.token_ttl);
        Ok(Services {
            accounts: Accounts::new(store.clone(), passwords, tokens, config.wallet),
            wallet: Wallet::new(store, config.wallet),
        })
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}
