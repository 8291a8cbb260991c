//! The few fairtick endpoints the scenarios share: registering load users and opening a
//! trade. Each scenario decides how to call them and what to measure; nothing here times or
//! counts anything.

use anyhow::Context;
use serde_json::{Value, json};

/// The password of every load user.
pub const PASSWORD: &str = "load-test-password";

/// The stake of every trade a scenario opens, in VUSD cents (10.00).
pub const STAKE_CENTS: u64 = 1_000;

/// A registered load user and the bearer token it was given.
pub struct User {
    pub email: String,
    pub token: String,
}

/// Registers `users` fresh accounts, one after another, with addresses unique to this run.
pub async fn register(client: &reqwest::Client, url: &str, users: usize) -> anyhow::Result<Vec<User>> {
    let run = rand_suffix();
    let mut out = Vec::with_capacity(users);
    for i in 0..users {
        let email = format!("load-{run}-{i}@example.com");
        let response = client
            .post(format!("{url}/api/auth/register"))
            .json(&json!({"email": email, "password": PASSWORD, "firstName": "Load", "lastName": "Test"}))
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        anyhow::ensure!(
            status.is_success(),
            "registering {email} answered {status}: {body} (raise FAIRTICK_AUTH_PER_IP_PER_MINUTE for load runs)"
        );
        let token = body["token"].as_str().context("a token")?.to_owned();
        out.push(User { email, token });
    }
    Ok(out)
}

/// `POST /api/flash-trade/create` for a trade of [`STAKE_CENTS`], up or down, ready to send.
pub fn open_trade(
    client: &reqwest::Client,
    url: &str,
    user: &User,
    symbol: &str,
    up: bool,
    duration: u32,
) -> reqwest::RequestBuilder {
    client
        .post(format!("{url}/api/flash-trade/create"))
        .bearer_auth(&user.token)
        .json(&trade_body(symbol, up, duration))
}

/// The body of a create request for a trade of [`STAKE_CENTS`], up or down.
pub fn trade_body(symbol: &str, up: bool, duration: u32) -> Value {
    json!({
        "symbol": symbol,
        "direction": if up { "up" } else { "down" },
        "amount": format!("{}.{:02}", STAKE_CENTS / 100, STAKE_CENTS % 100),
        "duration": duration,
    })
}

fn rand_suffix() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
    )
}
