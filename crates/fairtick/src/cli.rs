//! The `fairtick` command line: `serve`, `user create` and `audit`.

use std::io::BufRead;
use std::process::ExitCode;

use anyhow::Context;
use chrono::Utc;
use clap::{Parser, Subcommand};
use fairtick_core::Role;
use std::time::Duration;

use secrecy::SecretString;

use crate::config::{Config, ServeArgs, StorageArgs, WalletArgs};
use fairtick_core::settings::TradingSettings;

use crate::services::accounts::{Accounts, Registration};
use crate::services::events::EventBus;
use crate::services::passwords::Passwords;
use crate::services::settings::Settings;
use crate::services::tokens::Tokens;
use crate::startup::{Application, shutdown_signal};
use crate::store::Store;
use crate::verify;

/// fairtick: practise flash trades on provably fair simulated prices with virtual funds.
#[derive(Parser, Debug)]
#[command(name = "fairtick", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server (API, WebSocket and web app). Prints the URL to open.
    Serve(Box<ServeArgs>),
    /// Manage accounts directly in the configured database.
    #[command(subcommand)]
    User(UserCommand),
    /// Check every ledger invariant over the whole database; exits non-zero on any violation.
    Audit {
        #[command(flatten)]
        storage: StorageArgs,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check published market data independently: recompute it from revealed seeds.
    #[command(subcommand)]
    Verify(VerifyCommand),
}

#[derive(Subcommand, Debug)]
pub enum VerifyCommand {
    /// Recompute every tick of a revealed epoch from its seed and compare it with the server's
    /// ticks and the commitment published before the epoch. Prints OK or the first mismatch;
    /// exits non-zero on a mismatch.
    Epoch {
        /// The market, e.g. SIMV25.
        #[arg(long)]
        symbol: String,
        /// The epoch id.
        #[arg(long)]
        epoch: i64,
        /// The server to ask.
        #[arg(long, default_value = "http://127.0.0.1:3000", conflicts_with = "file")]
        url: String,
        /// A saved copy of `GET /api/market/epochs/{id}` instead of a server.
        #[arg(long)]
        file: Option<std::path::PathBuf>,
    },
    /// Check a trade receipt (`GET /api/flash-trade/{id}/receipt`): its signature, every tick
    /// against the revealed seeds and commitments, the entry, exit and result by the rules, and
    /// the payout. Exits non-zero if any check fails.
    Trade {
        /// The saved receipt (JSON).
        #[arg(long)]
        receipt: std::path::PathBuf,
        /// The server's public key (hex) to trust; default: ask `--url`, else the receipt's own.
        #[arg(long)]
        public_key: Option<String>,
        /// A server to ask for its public key (`/api/fairness/key`).
        #[arg(long)]
        url: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Create an account (this is how the first superadmin exists). The password is read from
    /// the first line of standard input.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long, value_parser = ["user", "admin", "superadmin"], default_value = "user")]
        role: String,
        /// Read the password from standard input (required: passwords never go on the command line).
        #[arg(long, required = true)]
        password_stdin: bool,
        #[arg(long, default_value = "Admin")]
        first_name: String,
        #[arg(long, default_value = "User")]
        last_name: String,
        #[command(flatten)]
        storage: StorageArgs,
        #[command(flatten)]
        wallet: WalletArgs,
    },
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => serve(&args).await,
        Command::User(UserCommand::Create {
            email,
            role,
            password_stdin: _,
            first_name,
            last_name,
            storage,
            wallet,
        }) => {
            let mut password = String::new();
            std::io::stdin().lock().read_line(&mut password).context("reading the password from stdin")?;
            let password = password.trim_end_matches(['\r', '\n']).to_owned();
            let role: Role = role.parse().map_err(|e| anyhow::anyhow!("--role: {e}"))?;
            let store = Store::connect(&storage.database_url()?, 2).await?;
            // Creating a user signs no token, so the token key is a throwaway.
            let throwaway = SecretString::from(hex::encode(rand::random::<[u8; 32]>()));
            let tokens = Tokens::new(&throwaway, Duration::from_secs(60));
            let defaults = TradingSettings { wallet: wallet.limits()?, ..TradingSettings::default() };
            let events = EventBus::new(store.clone());
            let settings = Settings::load(store.clone(), defaults, events.clone()).await?;
            let data_key = crate::config::data_key(&storage.data_dir)?;
            let passwords = Passwords::new(1).await?;
            let accounts = Accounts::new(store.clone(), passwords, tokens, settings, data_key, events);
            let registration = Registration { email, password, first_name, last_name, role };
            let user =
                accounts.register(registration, Utc::now()).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("created {} {} (id {})", user.role, user.email, user.id);
            store.close().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify(VerifyCommand::Epoch { symbol, epoch, url, file }) => {
            let detail = verify::fetch_epoch(Some(&url), file.as_deref(), epoch).await?;
            match verify::check_epoch(&detail, &symbol, epoch)? {
                verify::Verdict::Ok { ticks } => {
                    println!(
                        "OK: epoch {epoch} of {symbol}: all {ticks} ticks follow from the revealed seed, \
                         which matches the commitment {}",
                        detail.epoch.commitment
                    );
                    Ok(ExitCode::SUCCESS)
                }
                verify::Verdict::Mismatch(why) => {
                    println!("MISMATCH: epoch {epoch} of {symbol}: {why}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Verify(VerifyCommand::Trade { receipt, public_key, url }) => {
            let text = std::fs::read_to_string(&receipt)
                .with_context(|| format!("reading {}", receipt.display()))?;
            let receipt: crate::services::trades::receipts::Receipt =
                serde_json::from_str(&text).context("the file is not a fairtick receipt")?;
            let trusted = match (public_key, url) {
                (Some(key), _) => Some(key),
                (None, Some(url)) => Some(verify::fetch_public_key(&url).await?),
                (None, None) => None,
            };
            let steps = verify::check_receipt(&receipt, trusted.as_deref())?;
            for step in &steps {
                let mark = match step.outcome {
                    verify::Outcome::Ok => "ok     ",
                    verify::Outcome::Pending => "pending",
                    verify::Outcome::Failed => "FAILED ",
                };
                println!("{mark} {}: {}", step.check, step.detail);
            }
            let failed = steps.iter().any(|s| s.outcome == verify::Outcome::Failed);
            let pending = steps.iter().any(|s| s.outcome == verify::Outcome::Pending);
            println!(
                "VERDICT: {}",
                if failed {
                    "FAILED"
                } else if pending {
                    "PENDING"
                } else {
                    "OK"
                }
            );
            Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
        }
        Command::Audit { storage, json } => {
            let store = Store::connect(&storage.database_url()?, 2).await?;
            let report = store.audit().await?;
            store.close().await;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!(
                    "audited {} transactions, {} postings, {} accounts, {} trades: {}",
                    report.transactions,
                    report.postings,
                    report.accounts,
                    report.trades,
                    if report.is_clean() {
                        "OK".to_owned()
                    } else {
                        format!("{} violations", report.violations.len())
                    }
                );
                for violation in &report.violations {
                    println!("  violation: {violation}");
                }
            }
            Ok(if report.is_clean() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
    }
}

async fn serve(args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let config = Config::from_serve_args(args)?;
    let app = Application::build(&config).await?;
    let listener =
        tokio::net::TcpListener::bind(args.addr).await.with_context(|| format!("binding {}", args.addr))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, backend = ?app.state().store.backend(), "fairtick is listening");
    println!("fairtick is running at http://{addr}/ (practice platform, virtual funds only)");
    app.serve(listener, shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}
