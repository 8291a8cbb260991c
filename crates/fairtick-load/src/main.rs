//! `fairtick-load`: measures a running fairtick server from the outside, the way its users
//! feel it. Every run is bounded in clients and time and stops by itself; it only ever targets
//! the URL it is given (use a server on this machine).

mod api;
mod http;
mod lean;
mod report;
mod settle;
mod ws;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "fairtick-load", about = "Load generator for a local fairtick server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Print the report as JSON.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum Command {
    /// N WebSocket clients subscribed to one market: delivery lag (receive time − tick ts),
    /// messages per second, failed connections and the server's memory.
    Ws(ws::Args),
    /// Trade creation at a fixed concurrency or arrival rate (users registered first).
    Trades(http::Args),
    /// `GET /api/wallet/balance` at a fixed concurrency or arrival rate.
    Balance(http::Args),
    /// Logins (password hashing) at a fixed concurrency or arrival rate.
    Logins(http::Args),
    /// A settlement burst: open N trades of one duration as fast as possible, wait for them to
    /// end, and report each one's settlement lag (settledAt − the deciding tick's ts).
    Settle(settle::Args),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let report = match cli.command {
        Command::Ws(args) => ws::run(args).await?,
        Command::Trades(args) => http::run(http::Scenario::TradeCreate, args).await?,
        Command::Balance(args) => http::run(http::Scenario::Balance, args).await?,
        Command::Logins(args) => http::run(http::Scenario::Login, args).await?,
        Command::Settle(args) => settle::run(args).await?,
    };
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
    }
    Ok(())
}
