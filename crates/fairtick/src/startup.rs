//! Wiring: build the store, the services and the router from a [`Config`], then serve on an
//! already-bound listener until a shutdown future resolves. Tests bind port 0 and call the same
//! code as `fairtick serve`.

use std::future::Future;
use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::http::rate_limit::{ApiRateLimits, AuthRateLimits, SocketsPerIp};
use crate::http::{self, AppState, Services};
use crate::services::accounts::Accounts;
use crate::services::admin::Admin;
use fairtick_core::settings::TradingSettings;

use crate::services::events::{Event, EventBus};
use crate::services::market::Markets;
use crate::services::market::feed::FeedSettings;
use crate::services::passwords::Passwords;
use crate::services::realtime::Hub;
use crate::services::sealing::DataKey;
use crate::services::settings::{Settings, TickIntervals, beyond_the_next_epoch, check_against_markets};
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
        store.set_session_ttl(config.session_cache);
        crate::http::metrics::handle();
        let events = EventBus::new(store.clone());
        let passwords = Passwords::new(config.hashing_concurrency).await?;
        let tokens = Tokens::new(&config.jwt_secret, config.token_ttl);
        let defaults = TradingSettings { wallet: config.wallet, ..config.trading.clone() };
        let settings = Settings::load(store.clone(), defaults, events.clone()).await?;
        let intervals = TickIntervals::of(config.markets.iter().map(|m| &m.tick_interval_ms));
        // A warning, not a refusal to start: the terms are changed through the running server.
        if let Err(error) = check_against_markets(&settings.current(), intervals) {
            tracing::warn!(%error, "the trading terms in force do not suit the markets; change them at /admin");
        }
        if let Some((longest, symbol)) =
            beyond_the_next_epoch(&settings.current(), config.feed.epoch_length, &config.markets)
        {
            tracing::warn!(
                longest_secs = longest,
                symbol,
                epoch_ms = config.feed.epoch_length.as_millis(),
                "trades of the longest duration can outlast the next epoch: their receipts will not prove them \
                 fair; offer shorter durations, or make that market's epochs longer (--epoch-ms, or a replay's file)"
            );
        }
        let markets = Markets::new(store.clone(), config.markets.clone(), config.feed.epoch_length);
        markets.recall_shown_ticks().await?;
        let trades = Trades::new(
            store.clone(),
            markets.clone(),
            events.clone(),
            config.signing_key.clone(),
            settings.clone(),
        );
        let state = AppState::new(Services {
            accounts: Accounts::new(
                store.clone(),
                passwords,
                tokens,
                settings.clone(),
                config.data_key.clone(),
                events.clone(),
            ),
            wallet: Wallet::new(store.clone(), settings.clone(), events.clone()),
            settings,
            auth_limits: AuthRateLimits::new(
                config.auth_per_ip_per_minute,
                config.login_per_account_per_minute,
            ),
            api_limits: ApiRateLimits::new(config.api_per_ip_per_minute, config.api_per_user_per_minute),
            sockets_per_ip: SocketsPerIp::new(config.ws_per_ip),
            secure_cookie: config.secure_cookie,
            hub: Hub::new(),
            admin: Admin::new(store.clone(), events.clone()),
            store,
            events,
            markets,
            trades,
        });
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
        let state = self.state;
        let background = CancellationToken::new();
        let mut tasks =
            state.markets.spawn_feeds(self.data_key, state.events.clone(), self.feed, background.clone());
        tasks.push(tokio::spawn(state.trades.settlement().run(background.clone())));
        tasks.extend(state.hub.spawn(
            state.store.clone(),
            &state.markets,
            state.trades.clone(),
            &state.events,
            background.clone(),
        ));
        tasks
            .push(tokio::spawn(state.events.clone().run_listener(state.markets.clone(), background.clone())));
        tasks.push(tokio::spawn(reload_settings_on_change(
            state.settings.clone(),
            state.events.subscribe(),
            background.clone(),
        )));
        let (limits, api_limits) = (state.auth_limits.clone(), state.api_limits.clone());
        let sweeper_stop = background.clone();
        tasks.push(tokio::spawn(async move {
            let mut every = tokio::time::interval(http::RATE_LIMIT_SWEEP);
            let mut upkeep = tokio::time::interval(std::time::Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = every.tick() => {
                        limits.sweep();
                        api_limits.sweep();
                    }
                    // Histogram samples wait in memory until drained: without this, an unscraped
                    // /metrics grows by every request's timing.
                    _ = upkeep.tick() => crate::http::metrics::handle().run_upkeep(),
                    () = sweeper_stop.cancelled() => return,
                }
            }
        }));

        let store = state.store.clone();
        let app = http::router(state).into_make_service_with_connect_info::<SocketAddr>();
        // WebSocket connections are long-lived: cancelling the background work on shutdown
        // closes them (the hub tells each "server shutting down"), so graceful shutdown does
        // not wait for clients.
        let stop = background.clone();
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                shutdown.await;
                stop.cancel();
            })
            .await;
        background.cancel();
        for task in tasks {
            let _ = task.await;
        }
        store.close().await;
        Ok(served?)
    }
}

/// Keeps this node's copy of the trading terms current when another node changes them.
async fn reload_settings_on_change(
    settings: Settings,
    mut events: tokio::sync::broadcast::Receiver<Event>,
    cancel: CancellationToken,
) {
    loop {
        let event = tokio::select! {
            event = events.recv() => event,
            () = cancel.cancelled() => return,
        };
        match event {
            Ok(Event::SettingsChanged) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                if let Err(error) = settings.reload().await {
                    tracing::warn!(%error, "reloading the trading terms");
                }
            }
            Ok(_) => {}
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
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
