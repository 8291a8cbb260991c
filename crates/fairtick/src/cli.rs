//! The `fairtick` command line: `serve`, `user create` and `audit`.

use std::io::BufRead;
use std::process::ExitCode;

use anyhow::Context;
use chrono::Utc;
use clap::{Parser, Subcommand};
use fairtick_core::Role;
use secrecy::SecretString;

use crate::config::{Config, ServeArgs, StorageArgs, WalletArgs};
use crate::services::accounts::Registration;
use crate::startup::{Application, Services, shutdown_signal};
use crate::store::Store;

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
            let config = Config {
                database_url: String::new(),
                db_max_connections: 2,
                // Creating a user signs no token; any secret will do.
                jwt_secret: SecretString::from("unused-for-user-creation-unused-for-user-creation"),
                token_ttl: std::time::Duration::from_secs(1),
                auth_per_ip_per_minute: 1,
                login_per_account_per_minute: 1,
                hashing_concurrency: 1,
                wallet: wallet.limits()?,
            };
            let services = Services::new(store.clone(), &config).await?;
            let registration = Registration { email, password, first_name, last_name, role };
            let user = services
                .accounts
                .register(registration, Utc::now())
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("created {} {} (id {})", user.role, user.email, user.id);
            store.close().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit { storage, json } => {
            let store = Store::connect(&storage.database_url()?, 2).await?;
            let report = store.audit().await?;
            store.close().await;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!(
                    "audited {} transactions, {} postings, {} accounts: {}",
                    report.transactions,
                    report.postings,
                    report.accounts,
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
