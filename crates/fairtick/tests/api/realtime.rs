//! The WebSocket feed end to end: authentication three ways, subscriptions and catch-up, every
//! event after its HTTP action, bad messages, slow consumers, and events across two nodes.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

use fairtick::http::ws::MAX_REPLAY;
use fairtick::services::market::catalog;

use crate::helpers::{PASSWORD, TestApp, body, error_of, eventually, raw_connection, with_role};

pub(crate) type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub(crate) async fn connect(
    app: &TestApp,
    query: &str,
    cookie: Option<&str>,
) -> Result<Socket, tungstenite::Error> {
    let mut request =
        format!("{}/ws{query}", app.base.replace("http://", "ws://")).into_client_request().unwrap();
    if let Some(token) = cookie {
        request.headers_mut().insert("cookie", format!("fairtick_session={token}").parse().unwrap());
    }
    tokio_tungstenite::connect_async(request).await.map(|(socket, _)| socket)
}

async fn send(socket: &mut Socket, message: Value) {
    socket.send(Message::text(message.to_string())).await.unwrap();
}

/// The next message of `kind` (others are skipped), within five seconds.
pub(crate) async fn next_of(socket: &mut Socket, kind: &str) -> Value {
    let wait = async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Text(text))) => {
                    let message: Value = serde_json::from_str(&text).unwrap();
                    if message["type"] == kind {
                        return message["data"].clone();
                    }
                }
                Some(Ok(_)) => {}
                other => panic!("the socket ended while waiting for {kind}: {other:?}"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), wait)
        .await
        .unwrap_or_else(|_| panic!("no {kind} within 5 s"))
}

/// The close code and reason `socket` ends with (skipping what comes before), within five
/// seconds; `None` if it ended without a close frame.
pub(crate) async fn closing_of(socket: &mut Socket) -> Option<(u16, String)> {
    let closed = async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Close(frame))) => {
                    return frame.map(|f| (u16::from(f.code), f.reason.to_string()));
                }
                None | Some(Err(_)) => return None,
                Some(Ok(_)) => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), closed).await.expect("the socket is closed within 5 s")
}

/// The next message of `kind` satisfying `test`.
async fn next_matching(socket: &mut Socket, kind: &str, test: impl Fn(&Value) -> bool) -> Value {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let data = next_of(socket, kind).await;
            if test(&data) {
                return data;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no matching {kind} within 10 s"))
}

#[tokio::test]
async fn anonymous_clients_watch_prices_of_the_markets_they_subscribe_to() {
    let app = TestApp::spawn().await;
    let mut socket = connect(&app, "", None).await.unwrap();
    send(&mut socket, json!({"type": "subscribe", "data": {"symbols": ["SIMV25"]}})).await;
    assert_eq!(next_of(&mut socket, "subscribed").await["symbols"], json!(["SIMV25"]));
    let first = next_of(&mut socket, "price_update").await;
    assert_eq!(first["symbol"], "SIMV25");
    assert!(
        first["price"].as_str().unwrap().contains('.')
            && first["ts"].is_string()
            && first["epochId"].is_i64()
    );
    let second = next_of(&mut socket, "price_update").await;
    assert!(second["seq"].as_i64().unwrap() > first["seq"].as_i64().unwrap());
    // SIMV100 ticks just as often: none of its ticks reach a SIMV25-only subscriber.
    for _ in 0..10 {
        assert_eq!(next_of(&mut socket, "price_update").await["symbol"], "SIMV25");
    }

    send(&mut socket, json!({"type": "ping"})).await;
    next_of(&mut socket, "pong").await;

    send(&mut socket, json!({"type": "unsubscribe", "data": {"symbols": ["SIMV25"]}})).await;
    next_of(&mut socket, "unsubscribed").await;
    let quiet = tokio::time::timeout(Duration::from_millis(300), next_of(&mut socket, "price_update")).await;
    assert!(quiet.is_err(), "no prices after unsubscribing");

    // Anonymous clients get no user events, and cannot pretend otherwise.
    send(&mut socket, json!({"type": "auth", "data": {"token": "forged.token.here"}})).await;
    assert_eq!(next_of(&mut socket, "error").await["code"], "unauthenticated");
}

#[tokio::test]
async fn a_user_authenticates_by_query_cookie_or_message_and_gets_their_state() {
    let app = TestApp::spawn().await;
    let token = app.signed_up("ws@example.com").await;
    let mut by_query = connect(&app, &format!("?token={token}"), None).await.unwrap();
    let mut by_cookie = connect(&app, "", Some(&token)).await.unwrap();
    let mut by_message = connect(&app, "", None).await.unwrap();
    send(&mut by_message, json!({"type": "auth", "data": {"token": token}})).await;
    for socket in [&mut by_query, &mut by_cookie, &mut by_message] {
        assert!(next_of(socket, "authenticated").await["userId"].is_i64());
        assert_eq!(next_of(socket, "balance_update").await["balance"], "10000.00");
    }
    // Each sign-in reads the user's state: one connection signs in at most every few seconds.
    send(&mut by_message, json!({"type": "auth", "data": {"token": token}})).await;
    assert_eq!(next_of(&mut by_message, "error").await["code"], "rate_limited");
    let refused = connect(&app, "?token=not-a-token", None).await;
    match refused {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
        other => panic!("an invalid token must be refused at upgrade: {other:?}"),
    }
}

#[tokio::test]
async fn every_event_arrives_after_its_http_action() {
    let app = TestApp::spawn().await;
    let token = app.signed_up("events@example.com").await;
    let mut socket = connect(&app, &format!("?token={token}"), None).await.unwrap();
    next_of(&mut socket, "balance_update").await;

    app.wallet_post("deposit", &token, &json!({"amount": "12.34"}), None).await;
    assert_eq!(next_of(&mut socket, "balance_update").await["balance"], "10012.34");

    let opened = app
        .post_json(
            "/api/flash-trade/create",
            Some(&token),
            &json!({"symbol": "SIMV25", "direction": "up", "amount": "10", "duration": 1}),
        )
        .await;
    assert_eq!(opened.status(), StatusCode::CREATED);
    let id = body(opened).await["trade"]["id"].as_i64().unwrap();
    let created = next_matching(&mut socket, "trade_update", |d| d["trade"]["id"] == id).await;
    assert_eq!(created["trade"]["status"], "active");
    let after_stake = next_of(&mut socket, "balance_update").await;
    assert_eq!(
        (after_stake["available"].as_str(), after_stake["inPlay"].as_str()),
        (Some("10002.34"), Some("10.00"))
    );
    let entered = next_matching(&mut socket, "trade_update", |d| {
        d["trade"]["id"] == id && d["trade"]["entry"].is_object()
    })
    .await;
    assert_eq!(entered["trade"]["status"], "active");
    let settled = next_matching(&mut socket, "trade_update", |d| {
        d["trade"]["id"] == id && d["trade"]["status"] != "active"
    })
    .await;
    assert_eq!(settled["trade"]["status"], "settled");
    let notice = next_of(&mut socket, "notification").await;
    assert!(notice["title"].as_str().unwrap().starts_with("Trade"), "{notice}");
    assert_eq!(notice["tradeId"], id, "{notice}");
    let settled_balance = next_of(&mut socket, "balance_update").await;
    assert_eq!(settled_balance["inPlay"], "0.00");
}

#[tokio::test]
async fn a_reconnecting_client_catches_up_from_the_seq_it_last_saw() {
    let app = TestApp::spawn().await;
    let newest = eventually(Duration::from_secs(5), || async {
        let ticks = body(app.get("/api/market/ticks?symbol=SIMV100&limit=1", None).await).await;
        ticks["ticks"][0]["seq"].as_i64().filter(|seq| *seq > 30)
    })
    .await;
    let mut socket = connect(&app, "", None).await.unwrap();
    let from = newest - 25;
    send(
        &mut socket,
        json!({"type": "subscribe", "data": {"symbols": ["SIMV100"], "fromSeq": {"SIMV100": from}}}),
    )
    .await;
    let mut expected = from + 1;
    while expected <= newest + 5 {
        let tick = next_of(&mut socket, "price_update").await;
        assert_eq!(
            tick["seq"].as_i64().unwrap(),
            expected,
            "missed ticks replayed in order, then live, no gap"
        );
        expected += 1;
    }
}

/// A catch-up is bounded: a client that missed more ticks than the bound gets the newest of
/// them, told first where they start (the rest are on the REST API), then live ticks, in order.
#[tokio::test]
async fn a_catch_up_past_its_bound_sends_the_newest_ticks_and_says_where_they_start() {
    let app = TestApp::spawn_with(|config| config.markets = catalog::default_markets(5).unwrap()).await;
    let bound = i64::from(MAX_REPLAY);
    let seen = eventually(Duration::from_secs(30), || async {
        let ticks = body(app.get("/api/market/ticks?symbol=SIMV100&limit=1", None).await).await;
        ticks["ticks"][0]["seq"].as_i64().filter(|seq| *seq > bound + 100)
    })
    .await;
    let mut socket = connect(&app, "", None).await.unwrap();
    send(
        &mut socket,
        json!({"type": "subscribe", "data": {"symbols": ["SIMV100"], "fromSeq": {"SIMV100": 5}}}),
    )
    .await;
    let truncated = next_of(&mut socket, "replay_truncated").await;
    assert_eq!((truncated["symbol"].as_str(), truncated["fromSeq"].as_i64()), (Some("SIMV100"), Some(5)));
    let first = truncated["firstSeq"].as_i64().unwrap();
    assert!(first > seen - bound, "the newest {bound} only, the latest being {seen} or more: {truncated}");
    for expected in first..first + bound + 20 {
        let tick = next_of(&mut socket, "price_update").await;
        assert_eq!(tick["seq"].as_i64().unwrap(), expected, "in order, then live, no gap");
    }
}

/// One address holds at most so many sockets open; one closed frees its slot.
#[tokio::test]
async fn an_address_opens_at_most_its_share_of_sockets() {
    let app = TestApp::spawn_with(|config| config.ws_per_ip = 2).await;
    let mut first = connect(&app, "", None).await.unwrap();
    let _second = connect(&app, "", None).await.unwrap();
    match connect(&app, "", None).await {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 429);
            let body = String::from_utf8_lossy(response.body().as_deref().unwrap_or_default()).into_owned();
            assert!(body.contains("too_many_connections"), "{body}");
        }
        other => panic!("a third socket from one address must be refused: {other:?}"),
    }
    first.close(None).await.unwrap();
    eventually(Duration::from_secs(5), || async { connect(&app, "", None).await.ok() }).await;
}

#[tokio::test]
async fn a_request_that_is_not_a_websocket_handshake_gets_a_clear_error() {
    let app = TestApp::spawn().await;
    let plain = app.get("/ws", None).await;
    assert_eq!(error_of(plain).await, (StatusCode::BAD_REQUEST, "not_a_websocket_request".into(), None));
    let old_version = reqwest::Client::new()
        .get(app.url("/ws"))
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "8")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_of(old_version).await;
    assert_eq!((status, code.as_str()), (StatusCode::BAD_REQUEST, "not_a_websocket_request"));
    // The same server still opens a real one.
    assert!(connect(&app, "", None).await.is_ok());
}

#[tokio::test]
async fn a_server_shutting_down_closes_its_sockets_with_a_reason() {
    let mut app = TestApp::spawn().await;
    let mut socket = connect(&app, "", None).await.unwrap();
    send(&mut socket, json!({"type": "subscribe", "data": {"symbols": ["SIMV25"]}})).await;
    next_of(&mut socket, "subscribed").await;
    app.stop().await;
    let reason = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Close(frame))) => {
                    return frame.map(|f| (u16::from(f.code), f.reason.to_string()));
                }
                Some(Ok(_)) => {}
                None | Some(Err(_)) => return None,
            }
        }
    })
    .await
    .expect("the socket was closed");
    assert_eq!(reason, Some((1001, "server shutting down".to_owned())), "1001: going away");
}

#[tokio::test]
async fn bad_messages_get_an_error_with_a_code_not_a_dropped_connection() {
    let app = TestApp::spawn().await;
    let mut socket = connect(&app, "", None).await.unwrap();
    for (message, code) in [
        ("not json", "malformed_message"),
        ("{\"data\": {}}", "malformed_message"),
        ("{\"type\": \"dance\"}", "unknown_type"),
        ("{\"type\": \"subscribe\", \"data\": {\"symbols\": [\"NOPE\"]}}", "unknown_symbol"),
        ("{\"type\": \"subscribe\", \"data\": {}}", "invalid_data"),
        (
            "{\"type\": \"subscribe\", \"data\": {\"symbols\": [\"SIMV25\"], \"fromSeq\": {\"SIMV100\": 1}}}",
            "invalid_data",
        ),
        ("{\"type\": \"auth\", \"data\": {}}", "invalid_data"),
        (
            "{\"type\": \"subscribe\", \"data\": {\"symbols\": [\"SIMV25\"], \"fromSeq\": {\"SIMV25\": -1}}}",
            "invalid_data",
        ),
        (
            "{\"type\": \"subscribe\", \"data\": {\"symbols\": [\"SIMV25\"], \"fromSeq\": {\"SIMV25\": 999999999999}}}",
            "seq_ahead",
        ),
    ] {
        socket.send(Message::text(message)).await.unwrap();
        let error = next_of(&mut socket, "error").await;
        assert_eq!(error["code"], code, "{message}");
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    socket.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    assert_eq!(next_of(&mut socket, "error").await["code"], "unsupported");
    send(&mut socket, json!({"type": "ping"})).await;
    next_of(&mut socket, "pong").await;

    // A flood is refused beyond the per-second allowance, with a reason.
    for _ in 0..40 {
        socket.send(Message::text("{\"type\": \"ping\"}")).await.unwrap();
    }
    assert_eq!(next_of(&mut socket, "error").await["code"], "rate_limited");
    let huge = format!("{{\"type\": \"ping\", \"data\": \"{}\"}}", "x".repeat(64 * 1024));
    let _ = socket.send(Message::text(huge)).await;
    next_matching(&mut socket, "error", |e| e["code"] == "message_too_large").await;
    assert_eq!(closing_of(&mut socket).await, Some((1009, "message too large".into())));
}

/// A client refused over and over (fifty times within a minute) is cut off, with the reason.
#[tokio::test]
async fn a_client_refused_fifty_times_in_a_minute_is_closed_with_the_reason() {
    let app = TestApp::spawn().await;
    let mut socket = connect(&app, "", None).await.unwrap();
    for _ in 0..50 {
        socket.send(Message::text("not json")).await.unwrap();
    }
    assert_eq!(closing_of(&mut socket).await, Some((1008, "too many invalid messages".into())));
}

#[tokio::test]
async fn signing_out_closes_the_users_sockets_with_a_reason() {
    let app = TestApp::spawn().await;
    let token = app.signed_up("leaving@example.com").await;
    let mut socket = connect(&app, &format!("?token={token}"), None).await.unwrap();
    next_of(&mut socket, "balance_update").await;
    let mut anonymous = connect(&app, "", None).await.unwrap();

    let response = app.client.post(app.url("/api/auth/logout")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(closing_of(&mut socket).await, Some((1008, "signed out: sign in again".into())));
    let refused = connect(&app, &format!("?token={token}"), None).await;
    assert!(refused.is_err(), "the token is refused from now on");
    send(&mut anonymous, json!({"type": "ping"})).await;
    next_of(&mut anonymous, "pong").await;
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off_and_never_slows_the_others() {
    let app = TestApp::spawn_with_send_buffer(4096).await;
    let mut healthy = connect(&app, "", None).await.unwrap();
    send(&mut healthy, json!({"type": "subscribe", "data": {"symbols": ["SIMV25", "SIMV100"]}})).await;
    // The slow client has a tiny receive window, subscribes, and then never reads again.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(app.base.trim_start_matches("http://").parse().unwrap()).await.unwrap();
    let request = format!("{}/ws", app.base.replace("http://", "ws://")).into_client_request().unwrap();
    let (mut slow, _) =
        tokio_tungstenite::client_async(request, tokio_tungstenite::MaybeTlsStream::Plain(stream))
            .await
            .unwrap();
    send(&mut slow, json!({"type": "subscribe", "data": {"symbols": ["SIMV25", "SIMV100"]}})).await;
    let mut stale = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::time::Instant::now() < deadline {
        let tick = next_of(&mut healthy, "price_update").await;
        let ts = chrono::DateTime::parse_from_rfc3339(tick["ts"].as_str().unwrap()).unwrap();
        if (chrono::Utc::now() - ts.with_timezone(&chrono::Utc)).num_milliseconds() > 1_000 {
            stale += 1;
        }
    }
    assert_eq!(stale, 0, "the healthy client kept getting fresh prices");
    // The slow client's connection was closed: draining it ends with a close or an error.
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match slow.next().await {
                None | Some(Err(_)) => return None,
                Some(Ok(Message::Close(frame))) => return frame.map(|f| f.reason.to_string()),
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .expect("the slow client was disconnected");
    if let Some(reason) = ended {
        assert_eq!(reason, "slow consumer");
    }
}

#[tokio::test]
async fn with_two_nodes_a_trade_on_node_a_reaches_a_socket_on_node_b() {
    let Some((a, b)) = TestApp::two_nodes().await else { return };
    let token = a.signed_up("acrossnodes@example.com").await;
    let mut on_b = connect(&b, &format!("?token={token}"), None).await.unwrap();
    next_of(&mut on_b, "balance_update").await;
    send(&mut on_b, json!({"type": "subscribe", "data": {"symbols": ["SIMV25"]}})).await;
    next_of(&mut on_b, "price_update").await;

    let opened = a
        .post_json(
            "/api/flash-trade/create",
            Some(&token),
            &json!({"symbol": "SIMV25", "direction": "down", "amount": "10", "duration": 1}),
        )
        .await;
    let id = body(opened).await["trade"]["id"].as_i64().unwrap();
    let seen = next_matching(&mut on_b, "trade_update", |d| d["trade"]["id"] == id).await;
    assert_eq!(seen["trade"]["symbol"], "SIMV25");
    let balance = next_of(&mut on_b, "balance_update").await;
    assert_eq!(balance["inPlay"], "10.00");
    next_matching(&mut on_b, "trade_update", |d| d["trade"]["id"] == id && d["trade"]["status"] == "settled")
        .await;
}

/// The events a node hears from the others come over one `LISTEN` connection. When it drops,
/// what was sent meanwhile is lost: the node's clients are told so and sent their state again,
/// and events cross nodes again once it is back. A sign-off may have been among the lost
/// events: an admin's socket, which gets everyone's trades, is closed to sign in again, and a
/// user's socket is closed if the store no longer takes its token.
#[tokio::test]
async fn a_node_whose_listener_lost_its_connection_resynchronises_its_clients() {
    let Some((a, b)) = TestApp::two_nodes().await else { return };
    let token = a.signed_up("resync@example.com").await;
    let admin = with_role(&a, "resync-admin@example.com", "admin").await;
    let request = json!({"symbol": "SIMV25", "direction": "up", "amount": "10", "duration": 10});
    let open = body(a.post_json("/api/flash-trade/create", Some(&token), &request).await).await;
    let open_id = open["trade"]["id"].as_i64().unwrap();
    let mut on_b = connect(&b, &format!("?token={token}"), None).await.unwrap();
    next_of(&mut on_b, "balance_update").await;
    let mut admin_on_b = connect(&b, &format!("?token={admin}"), None).await.unwrap();
    next_of(&mut admin_on_b, "authenticated").await;
    let revoked = a.signed_up("resync-revoked@example.com").await;
    let mut revoked_on_b = connect(&b, &format!("?token={revoked}"), None).await.unwrap();
    next_of(&mut revoked_on_b, "balance_update").await;
    // The same user signed in elsewhere with another token, which stays good.
    let login = a.login("resync-revoked@example.com", PASSWORD).await;
    let still_good = body(login).await["token"].as_str().unwrap().to_owned();
    let mut still_good_on_b = connect(&b, &format!("?token={still_good}"), None).await.unwrap();
    next_of(&mut still_good_on_b, "balance_update").await;
    let suspended = a.signed_up("resync-suspended@example.com").await;
    let mut suspended_on_b = connect(&b, &format!("?token={suspended}"), None).await.unwrap();
    next_of(&mut suspended_on_b, "balance_update").await;

    let mut conn = raw_connection(&a.database_url).await;
    // Sign-offs whose notices were lost: written past the servers, which hear nothing of them.
    sqlx::query("INSERT INTO revoked_tokens (jti, expires_at) VALUES ($1, $2)")
        .bind(token_id(&revoked))
        .bind(i64::MAX)
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("UPDATE users SET status = 'suspended' WHERE email = 'resync-suspended@example.com'")
        .execute(&mut conn)
        .await
        .unwrap();
    let cut: Vec<(bool,)> = sqlx::query_as(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND query LIKE 'LISTEN%'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(cut, [(true,), (true,)], "one listener per node");
    next_of(&mut on_b, "resync").await;
    let missed = Some((1008, "events may have been missed: sign in again".to_owned()));
    assert_eq!(closing_of(&mut admin_on_b).await, missed);
    assert_eq!(closing_of(&mut revoked_on_b).await, Some((1008, "signed out: sign in again".to_owned())));
    assert_eq!(closing_of(&mut suspended_on_b).await, Some((1008, "account suspended".to_owned())));
    assert_eq!(next_of(&mut on_b, "balance_update").await["inPlay"], "10.00");
    next_matching(&mut on_b, "trade_update", |d| d["trade"]["id"] == open_id).await;

    let opened = body(a.post_json("/api/flash-trade/create", Some(&token), &request).await).await;
    let id = opened["trade"]["id"].as_i64().unwrap();
    next_matching(&mut on_b, "trade_update", |d| d["trade"]["id"] == id).await;
    let theirs = body(a.post_json("/api/flash-trade/create", Some(&still_good), &request).await).await;
    let id = theirs["trade"]["id"].as_i64().unwrap();
    next_matching(&mut still_good_on_b, "trade_update", |d| d["trade"]["id"] == id).await;
}

#[tokio::test]
async fn live_bids_of_open_trades_arrive_about_once_a_second() {
    let app = TestApp::spawn().await;
    let token = app.signed_up("bids@example.com").await;
    let opened = app
        .post_json(
            "/api/flash-trade/create",
            Some(&token),
            &json!({"symbol": "SIMV100", "direction": "up", "amount": "100", "duration": 10}),
        )
        .await;
    let id = body(opened).await["trade"]["id"].as_i64().unwrap();
    let mut socket = connect(&app, &format!("?token={token}"), None).await.unwrap();
    let with_bid = |d: &Value| d["trade"]["id"] == id && d["trade"]["bid"].is_string();
    // The state sent on authentication carries a bid too; the refreshes follow on their own clock.
    next_matching(&mut socket, "trade_update", with_bid).await;
    send(&mut socket, json!({"type": "subscribe", "data": {"symbols": ["SIMV100"]}})).await;
    next_of(&mut socket, "subscribed").await;
    let first = next_matching(&mut socket, "trade_update", with_bid).await;
    // Counted in the market's own ticks (20 ms apart), which arrive on the same socket in order,
    // rather than timed by a clock a busy machine may read late.
    let mut ticks_between = 0;
    let second = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let Some(Ok(Message::Text(text))) = socket.next().await else { panic!("the socket ended") };
            let message: Value = serde_json::from_str(&text).unwrap();
            match message["type"].as_str() {
                Some("price_update") if message["data"]["symbol"] == "SIMV100" => ticks_between += 1,
                Some("trade_update") if with_bid(&message["data"]) => return message["data"].clone(),
                _ => {}
            }
        }
    })
    .await
    .expect("a second bid within 10 s");
    assert!(ticks_between >= 10, "bids are pushed about once a second, not per tick ({ticks_between} ticks)");
    for update in [&first, &second] {
        let bid: f64 = update["trade"]["bid"].as_str().unwrap().parse().unwrap();
        assert!(bid > 0.0 && bid < 185.0, "{update}");
    }
}

#[tokio::test]
async fn admins_get_every_users_trades_and_users_only_their_own() {
    let app = TestApp::spawn().await;
    let trader = app.signed_up("trader@example.com").await;
    let bystander = app.signed_up("bystander@example.com").await;
    let admin = with_role(&app, "watcher@example.com", "admin").await;
    let mut watching = connect(&app, &format!("?token={admin}"), None).await.unwrap();
    assert_eq!(next_of(&mut watching, "authenticated").await["role"], "admin");
    let mut other = connect(&app, &format!("?token={bystander}"), None).await.unwrap();
    next_of(&mut other, "balance_update").await;

    let open = |token: String| {
        let app = &app;
        async move {
            let trade = json!({"symbol": "SIMV25", "direction": "down", "amount": "10", "duration": 5});
            let opened = app.post_json("/api/flash-trade/create", Some(&token), &trade).await;
            assert_eq!(opened.status(), StatusCode::CREATED);
            body(opened).await["trade"]["id"].as_i64().unwrap()
        }
    };
    let traders = open(trader.clone()).await;
    let own = open(bystander.clone()).await;

    let seen = next_matching(&mut watching, "admin_trade_update", |d| d["trade"]["id"] == traders).await;
    assert_eq!(seen["trade"]["status"], "active");
    next_matching(&mut watching, "admin_trade_update", |d| d["trade"]["id"] == own).await;
    // Events reach sockets in the order they happened: had the trader's trade been sent to
    // the bystander, it would have come before the bystander's own.
    let first = next_of(&mut other, "trade_update").await;
    assert_eq!(first["trade"]["id"], own);
}

/// Where the terms require two-factor sign-in of admins, an admin without it gets no more of
/// everyone's trades over the socket than over the admin API: only their own, from the moment
/// the requirement is turned on.
#[tokio::test]
async fn an_admin_without_two_factor_gets_only_their_own_trades_once_the_terms_require_it() {
    let app = TestApp::spawn().await;
    let trader = app.signed_up("trader2fa@example.com").await;
    let admin = with_role(&app, "no2fa@example.com", "admin").await;
    let mut watching = connect(&app, &format!("?token={admin}"), None).await.unwrap();
    assert_eq!(next_of(&mut watching, "authenticated").await["role"], "admin");
    let trade = json!({"symbol": "SIMV25", "direction": "down", "amount": "10", "duration": 5});
    let open = |token: String| {
        let (app, trade) = (&app, &trade);
        async move {
            let opened = app.post_json("/api/flash-trade/create", Some(&token), trade).await;
            assert_eq!(opened.status(), StatusCode::CREATED);
            let id = body(opened).await["trade"]["id"].clone();
            assert!(id.is_i64(), "{id}");
            id
        }
    };
    let before = open(trader.clone()).await;
    next_matching(&mut watching, "admin_trade_update", |d| d["trade"]["id"] == before).await;

    let required = app
        .client
        .post(app.url("/api/admin/settings"))
        .bearer_auth(&admin)
        .json(&json!({"requireAdminTotp": true}));
    assert_eq!(required.send().await.unwrap().status(), StatusCode::OK);
    let (status, code, _) = error_of(app.get("/api/admin/trades", Some(&admin)).await).await;
    assert_eq!((status, code.as_str()), (StatusCode::FORBIDDEN, "totp_required"));
    let after = open(trader.clone()).await;
    let own = open(admin.clone()).await;
    // Events reach a socket in the order they happened: the trader's would have come first.
    let mut seen = Vec::new();
    let own_seen = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(message)) = watching.next().await {
            let Message::Text(text) = message else { continue };
            let message: Value = serde_json::from_str(&text).unwrap();
            let (kind, id) = (message["type"].as_str().unwrap_or_default(), &message["data"]["trade"]["id"]);
            seen.push((kind.to_owned(), id.clone()));
            if kind == "trade_update" && *id == own {
                return;
            }
        }
    })
    .await;
    assert!(own_seen.is_ok(), "the admin's own trade arrives: {seen:?}");
    assert!(!seen.iter().any(|(kind, id)| kind == "admin_trade_update" && *id == after), "{seen:?}");
}

/// A socket signed in with a token ends when the token does.
#[tokio::test]
async fn a_socket_signed_in_with_a_token_is_closed_when_it_expires() {
    let app = TestApp::spawn_with(|config| config.token_ttl = Duration::from_secs(2)).await;
    let token = app.signed_up("brief@example.com").await;
    let mut socket = connect(&app, &format!("?token={token}"), None).await.unwrap();
    next_of(&mut socket, "balance_update").await;
    assert_eq!(closing_of(&mut socket).await, Some((1008, "session expired".into())));
}

/// The id (`jti`) of a login token, read from its claims.
fn token_id(token: &str) -> String {
    use base64::Engine;
    let claims = token.split('.').nth(1).unwrap();
    let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(claims).unwrap();
    serde_json::from_slice::<Value>(&claims).unwrap()["jti"].as_str().unwrap().to_owned()
}
