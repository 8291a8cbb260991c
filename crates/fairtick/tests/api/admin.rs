//! Administration over HTTP: role rules, suspensions that act at once (HTTP and WebSocket),
//! per-user limits, versioned public settings with their notification, the audit log, TOTP,
//! halted markets, house statistics and metrics. No admin action touches a result.

use std::time::Duration;

use chrono::Utc;

use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, body, error_of, eventually, raw_connection, with_role};
use crate::realtime::{closing_of, connect, next_of};

async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut request = app.client.request(method, app.url(path)).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn admin_endpoints_refuse_users_and_admin_only_actions_refuse_admins() {
    let app = TestApp::spawn().await;
    let user = app.signed_up("plain@example.com").await;
    let admin = with_role(&app, "admin@example.com", "admin").await;
    let target = app.user_id(&user).await;
    for (method, path, body) in [
        (Method::GET, "/api/admin/users".to_owned(), None),
        (Method::GET, format!("/api/admin/users/{target}"), None),
        (Method::PATCH, format!("/api/admin/users/{target}"), Some(json!({"status": "suspended"}))),
        (Method::GET, "/api/admin/settings".to_owned(), None),
        (Method::POST, "/api/admin/settings".to_owned(), Some(json!({"payoutRate": "0.8"}))),
        (Method::GET, "/api/admin/trades".to_owned(), None),
        (Method::GET, "/api/admin/stats".to_owned(), None),
        (Method::GET, "/api/admin/audit".to_owned(), None),
    ] {
        let (status, code, _) = error_of(call(&app, method.clone(), &path, &user, body.clone()).await).await;
        assert_eq!((status, code.as_str()), (StatusCode::FORBIDDEN, "forbidden"), "{method} {path}");
        let (status, _, _) =
            error_of(app.client.request(method.clone(), app.url(&path)).send().await.unwrap()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path} without a token");
    }
    let promote = call(
        &app,
        Method::PATCH,
        &format!("/api/admin/users/{target}"),
        &admin,
        Some(json!({"role": "admin"})),
    )
    .await;
    let (status, code, _) = error_of(promote).await;
    assert_eq!((status, code.as_str()), (StatusCode::FORBIDDEN, "superadmin_required"));
    assert_eq!(body(app.me(&user).await).await["user"]["role"], "user");

    let root = with_role(&app, "root@example.com", "superadmin").await;
    let promoted = call(
        &app,
        Method::PATCH,
        &format!("/api/admin/users/{target}"),
        &root,
        Some(json!({"role": "admin"})),
    )
    .await;
    assert_eq!(promoted.status(), StatusCode::OK);
    assert_eq!(
        body(app.me(&user).await).await["user"]["role"],
        "admin",
        "a role change applies to live tokens at once"
    );
    let admin_id = app.user_id(&admin).await;
    let (status, code, _) = error_of(
        call(
            &app,
            Method::PATCH,
            &format!("/api/admin/users/{admin_id}"),
            &user,
            Some(json!({"status": "suspended"})),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::FORBIDDEN, "superadmin_required"),
        "admins cannot suspend admins"
    );
}

#[tokio::test]
async fn a_superadmin_cannot_demote_or_suspend_themselves() {
    let app = TestApp::spawn().await;
    let root = with_role(&app, "only@example.com", "superadmin").await;
    let me = app.user_id(&root).await;
    for change in [json!({"role": "admin"}), json!({"status": "suspended"})] {
        let (status, code, _) = error_of(
            call(&app, Method::PATCH, &format!("/api/admin/users/{me}"), &root, Some(change.clone())).await,
        )
        .await;
        assert_eq!((status, code.as_str()), (StatusCode::CONFLICT, "not_yourself"), "{change}");
    }
    assert_eq!(body(app.me(&root).await).await["user"]["role"], "superadmin");
    let (status, _, field) =
        error_of(call(&app, Method::PATCH, &format!("/api/admin/users/{me}"), &root, Some(json!({}))).await)
            .await;
    assert_eq!((status, field.as_deref()), (StatusCode::BAD_REQUEST, Some("body")));
    let (status, _, field) = error_of(
        call(&app, Method::PATCH, &format!("/api/admin/users/{me}"), &root, Some(json!({"role": "god"})))
            .await,
    )
    .await;
    assert_eq!((status, field.as_deref()), (StatusCode::BAD_REQUEST, Some("role")));
    let missing =
        call(&app, Method::PATCH, "/api/admin/users/999999", &root, Some(json!({"status": "active"}))).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    // The largest id there is (found by scripts/api-fuzz: it overflowed the lookup's bound).
    let largest = call(&app, Method::GET, &format!("/api/admin/users/{}", i64::MAX), &root, None).await;
    assert_eq!(largest.status(), StatusCode::NOT_FOUND);
}

/// Two superadmins demoting each other at once: one change is made, the other refused, and a
/// superadmin remains, on either backend.
#[tokio::test]
async fn two_superadmins_demoting_each_other_at_once_leave_one() {
    let app = TestApp::spawn().await;
    let (a, b) = (
        with_role(&app, "first@example.com", "superadmin").await,
        with_role(&app, "second@example.com", "superadmin").await,
    );
    let (a_id, b_id) = (app.user_id(&a).await, app.user_id(&b).await);
    let (to_a, to_b) = (format!("/api/admin/users/{a_id}"), format!("/api/admin/users/{b_id}"));
    let demote = json!({"role": "admin"});
    let (by_a, by_b) = tokio::join!(
        call(&app, Method::PATCH, &to_b, &a, Some(demote.clone())),
        call(&app, Method::PATCH, &to_a, &b, Some(demote.clone())),
    );
    let mut statuses = [by_a.status(), by_b.status()];
    statuses.sort();
    assert_eq!(statuses[0], StatusCode::OK, "{statuses:?}");
    assert!(statuses[1].is_client_error(), "{statuses:?}");
    let mut conn = raw_connection(&app.database_url).await;
    let roles: Vec<(String,)> = sqlx::query_as("SELECT role FROM users WHERE id IN ($1, $2)")
        .bind(a_id)
        .bind(b_id)
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(roles.iter().filter(|(role,)| role == "superadmin").count(), 1, "{roles:?}");
}

/// An admin change is checked against the actor's role as stored when it is made, not as their
/// session said: one whose role was taken away while the request ran is refused.
#[tokio::test]
async fn a_change_by_an_actor_who_is_no_longer_an_admin_is_refused() {
    use fairtick::store::Actor;
    use fairtick_core::admin::{Refusal, UserChange};
    use fairtick_core::{Role, UserId};

    let app = TestApp::spawn().await;
    let former = app.signed_up("former@example.com").await;
    let target = app.signed_up("target@example.com").await;
    let actor = Actor { id: UserId(app.user_id(&former).await), role: Role::Superadmin, ip: None };
    let change = UserChange { trading_suspended: Some(true), ..UserChange::default() };
    let target = UserId(app.user_id(&target).await);
    let outcome = app.store.change_user(&actor, target, &change, Utc::now()).await.unwrap();
    assert!(matches!(outcome, Some(Err(Refusal::NotAnAdmin))), "{outcome:?}");
    assert!(app.store.audit().await.unwrap().is_clean());
}

#[tokio::test]
async fn a_suspension_cuts_the_live_session_and_the_live_websocket() {
    let app = TestApp::spawn().await;
    let admin = with_role(&app, "mod@example.com", "admin").await;
    let user = app.signed_up("cut@example.com").await;
    let id = app.user_id(&user).await;
    let mut socket = connect(&app, &format!("?token={user}"), None).await.unwrap();

    let suspended = call(
        &app,
        Method::PATCH,
        &format!("/api/admin/users/{id}"),
        &admin,
        Some(json!({"status": "suspended"})),
    )
    .await;
    assert_eq!(suspended.status(), StatusCode::OK);
    assert_eq!(body(suspended).await["user"]["status"], "suspended");
    let (status, code, _) = error_of(app.me(&user).await).await;
    assert_eq!((status, code.as_str()), (StatusCode::FORBIDDEN, "account_suspended"));
    assert_eq!(closing_of(&mut socket).await, Some((1008, "account suspended".into())));
}

#[tokio::test]
async fn a_new_role_closes_the_users_sockets_so_an_old_admin_stops_getting_everyones_trades() {
    let app = TestApp::spawn().await;
    let root = with_role(&app, "root-roles@example.com", "superadmin").await;
    let admin = with_role(&app, "demoted@example.com", "admin").await;
    let id = app.user_id(&admin).await;
    let mut socket = connect(&app, &format!("?token={admin}"), None).await.unwrap();
    let authenticated = next_of(&mut socket, "authenticated").await;
    assert_eq!(authenticated["role"], "admin");

    let demoted =
        call(&app, Method::PATCH, &format!("/api/admin/users/{id}"), &root, Some(json!({"role": "user"})))
            .await;
    assert_eq!(demoted.status(), StatusCode::OK);
    assert_eq!(closing_of(&mut socket).await, Some((1008, "role changed: sign in again".into())));
    let mut again = connect(&app, &format!("?token={admin}"), None).await.unwrap();
    assert_eq!(
        next_of(&mut again, "authenticated").await["role"],
        "user",
        "signed in again with the new role"
    );
}

#[tokio::test]
async fn per_user_limits_only_restrict_and_the_user_sees_them() {
    let app = TestApp::spawn().await;
    let admin = with_role(&app, "limits-admin@example.com", "admin").await;
    let user = app.signed_up("limited-user@example.com").await;
    let id = app.user_id(&user).await;
    let trade =
        |amount: &str| json!({"symbol": "SIMV25", "direction": "up", "amount": amount, "duration": 5});

    call(&app, Method::PATCH, &format!("/api/admin/users/{id}"), &admin, Some(json!({"maxStake": "50"})))
        .await;
    let me = body(app.me(&user).await).await;
    assert_eq!(me["user"]["maxStake"], "50.00");
    let (status, _, field) =
        error_of(app.post_json("/api/flash-trade/create", Some(&user), &trade("60")).await).await;
    assert_eq!((status, field.as_deref()), (StatusCode::BAD_REQUEST, Some("amount")));
    assert_eq!(
        app.post_json("/api/flash-trade/create", Some(&user), &trade("50")).await.status(),
        StatusCode::CREATED
    );

    call(
        &app,
        Method::PATCH,
        &format!("/api/admin/users/{id}"),
        &admin,
        Some(json!({"maxStake": null, "tradingSuspended": true})),
    )
    .await;
    let me = body(app.me(&user).await).await;
    assert_eq!(
        (me["user"]["maxStake"].clone(), me["user"]["tradingSuspended"].clone()),
        (Value::Null, json!(true))
    );
    let (status, code, _) =
        error_of(app.post_json("/api/flash-trade/create", Some(&user), &trade("60")).await).await;
    assert_eq!((status, code.as_str()), (StatusCode::FORBIDDEN, "trading_suspended"));
    let (status, _, field) = error_of(
        call(&app, Method::PATCH, &format!("/api/admin/users/{id}"), &admin, Some(json!({"maxStake": "0"})))
            .await,
    )
    .await;
    assert_eq!((status, field.as_deref()), (StatusCode::BAD_REQUEST, Some("maxStake")));
    assert_eq!(app.balance(&user).await["balance"], "10000.00", "a suspension of trading moves no money");
}

#[tokio::test]
async fn settings_are_validated_field_by_field_and_unknown_fields_are_refused() {
    let app = TestApp::spawn().await;
    let admin = with_role(&app, "terms@example.com", "admin").await;
    for (change, field) in [
        (json!({"forceResult": "win"}), "forceResult"),
        (json!({"winRate": "0.1"}), "winRate"),
        (json!({"userOutcome": {"1": "lose"}}), "userOutcome"),
        (json!({"payoutRate": "0"}), "payoutRate"),
        (json!({"payoutRate": "0.12345"}), "payoutRate"),
        (json!({"payoutRate": "-1"}), "payoutRate"),
        (json!({"durations": []}), "durations"),
        (json!({"durations": [30, 10]}), "durations"),
        (json!({"minStake": "0"}), "minStake"),
        (json!({"maxStake": "1"}), "maxStake"),
        (json!({"sellSpread": "1.5"}), "sellSpread"),
        (json!({"feedGraceSeconds": 0}), "feedGraceSeconds"),
        (json!({"markets": {"NOPE": {"halted": true}}}), "markets"),
        (json!({"markets": {"SIMV25": {"price": "1"}}}), "markets.SIMV25"),
        (json!({"vipLevels": [{"level": 2, "minTurnover": "0", "payoutBonus": "0"}]}), "vipLevels"),
        (json!({"maxDeposit": "0"}), "maxDeposit"),
        (json!({}), "settings"),
    ] {
        let response = call(&app, Method::POST, "/api/admin/settings", &admin, Some(change.clone())).await;
        let (status, _, got) = error_of(response).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{change}");
        assert!(got.as_deref().is_some_and(|g| g.starts_with(field)), "{change}: field {got:?}");
    }
    let history = body(app.get("/api/settings/history", None).await).await;
    assert_eq!(history["versions"], json!([]), "no refused change was stored");
}

/// A change of the terms is built on the newest stored version: one made on an older version
/// (another admin, or another node, changed them meanwhile) is refused, not saved over it.
#[tokio::test]
async fn a_settings_change_built_on_an_older_version_is_refused() {
    use fairtick::store::{Actor, SettingsSaved};
    use fairtick_core::Role;

    let app = TestApp::spawn().await;
    let admin = with_role(&app, "versions@example.com", "admin").await;
    let id = fairtick_core::UserId(app.user_id(&admin).await);
    let change = |body| call(&app, Method::POST, "/api/admin/settings", &admin, Some(body));
    assert_eq!(change(json!({"payoutRate": 0.8})).await.status(), StatusCode::OK);
    assert_eq!(change(json!({"minStake": "5"})).await.status(), StatusCode::OK);
    let (newest, terms) = app.store.latest_settings().await.unwrap().expect("two versions");
    let stored: fairtick_core::settings::TradingSettings = serde_json::from_value(terms.clone()).unwrap();
    assert_eq!(
        (stored.payout_rate_bp, stored.min_stake.to_string()),
        (8_000, "5.00".into()),
        "both changes kept"
    );

    let actor = Actor { id, role: Role::Admin, ip: None };
    let changed = ["minStake".to_owned()];
    let save =
        |based_on| app.store.save_settings(&actor, Some(based_on), &terms, &terms, &changed, Utc::now());
    assert_eq!(
        save(newest - 1).await.unwrap(),
        SettingsSaved::Superseded,
        "built on the version before the newest"
    );
    assert_eq!(save(newest).await.unwrap(), SettingsSaved::Saved(newest + 1));
    // Demoted while a change was on its way: the row locked with the change says so.
    let mut conn = raw_connection(&app.database_url).await;
    sqlx::query("UPDATE users SET role = 'user' WHERE id = $1").bind(id.0).execute(&mut conn).await.unwrap();
    assert_eq!(save(newest + 1).await.unwrap(), SettingsSaved::NotAnAdmin);
}

/// The feed's grace period must outlast the wait for a deciding tick, or a working feed's
/// trades would be voided.
#[tokio::test]
async fn the_feed_grace_period_must_be_longer_than_two_ticks_of_the_slowest_market() {
    let app = TestApp::spawn_with(|config| {
        config.markets = fairtick::services::market::catalog::default_markets(1_000).unwrap();
    })
    .await;
    let admin = with_role(&app, "grace@example.com", "admin").await;
    let change = |seconds: u32| {
        call(&app, Method::POST, "/api/admin/settings", &admin, Some(json!({"feedGraceSeconds": seconds})))
    };
    let (status, _, field) = error_of(change(2).await).await;
    assert_eq!((status, field.as_deref()), (StatusCode::BAD_REQUEST, Some("feedGraceSeconds")));
    assert_eq!(change(3).await.status(), StatusCode::OK);
}

/// Settlement reads a bounded number of ticks per step: the longest duration must fit in it at
/// the fastest market's rate (the test markets tick every 20 ms: 2,000 s in all).
#[tokio::test]
async fn durations_longer_than_settlement_can_follow_are_refused() {
    let app = TestApp::spawn().await;
    let admin = with_role(&app, "longest@example.com", "admin").await;
    let change = |durations: Value| {
        call(&app, Method::POST, "/api/admin/settings", &admin, Some(json!({"durations": durations})))
    };
    let (status, _, field) = error_of(change(json!([1, 2_000])).await).await;
    assert_eq!((status, field.as_deref()), (StatusCode::BAD_REQUEST, Some("durations")));
    assert_eq!(change(json!([1, 1_900])).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_settings_change_is_public_versioned_announced_and_applies_to_new_trades_only() {
    let app = TestApp::spawn().await;
    let admin = with_role(&app, "announcer@example.com", "admin").await;
    let user = app.signed_up("listener@example.com").await;
    let open_before = body(
        app.post_json(
            "/api/flash-trade/create",
            Some(&user),
            &json!({"symbol": "SIMV25", "direction": "up", "amount": "10", "duration": 5}),
        )
        .await,
    )
    .await["trade"]
        .clone();
    let url = format!("{}/ws?token={user}", app.base.replace("http://", "ws://"));
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();

    let response = call(
        &app,
        Method::POST,
        "/api/admin/settings",
        &admin,
        Some(json!({"payoutRate": 0.8, "durations": [1, 2, 5, 30]})),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body(response).await["settings"]["payoutRate"], "0.8000");

    let public = body(app.get("/api/settings", None).await).await;
    assert_eq!(public["settings"]["payoutRate"], "0.8000");
    assert_eq!(public["settings"]["durations"], json!([1, 2, 5, 30]));
    let history = body(app.get("/api/settings/history", None).await).await;
    let version = &history["versions"][0];
    assert_eq!(version["changed"], json!(["payoutRate", "durations"]));
    assert_eq!(version["changedByRole"], "admin");
    assert_eq!(version["settings"]["payoutRate"], "0.8000");

    let notice = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text))) = socket.next().await {
                let message: Value = serde_json::from_str(&text).unwrap();
                if message["type"] == "notification" {
                    return message["data"].clone();
                }
            }
        }
    })
    .await
    .expect("a notification");
    assert_eq!(notice["title"], "Trading terms changed");

    let quote = body(
        app.get("/api/flash-trade/quote?symbol=SIMV25&direction=up&amount=10&duration=30", Some(&user)).await,
    )
    .await;
    assert_eq!(quote["payoutRate"], "0.8000", "new trades get the new rate");
    let id = open_before["id"].as_i64().unwrap();
    let still = body(app.get(&format!("/api/flash-trade/{id}"), Some(&user)).await).await;
    assert_eq!(still["trade"]["payoutRate"], "0.8500", "an open trade keeps its terms");
}

#[tokio::test]
async fn a_halted_market_takes_no_new_trades_but_open_ones_settle() {
    let app = TestApp::spawn().await;
    let admin = with_role(&app, "halt@example.com", "admin").await;
    let user = app.signed_up("halted@example.com").await;
    let request = json!({"symbol": "SIMV25", "direction": "down", "amount": "10", "duration": 1});
    let open =
        body(app.post_json("/api/flash-trade/create", Some(&user), &request).await).await["trade"]["id"]
            .as_i64()
            .unwrap();
    let halted = call(
        &app,
        Method::POST,
        "/api/admin/settings",
        &admin,
        Some(json!({"markets": {"SIMV25": {"halted": true}}})),
    )
    .await;
    assert_eq!(halted.status(), StatusCode::OK, "{}", halted.text().await.unwrap());
    let symbols = body(app.get("/api/market/symbols", None).await).await;
    let simv25 =
        symbols["symbols"].as_array().unwrap().iter().find(|m| m["symbol"] == "SIMV25").unwrap().clone();
    assert_eq!(simv25["status"], "halted");
    let (status, code, _) =
        error_of(app.post_json("/api/flash-trade/create", Some(&user), &request).await).await;
    assert_eq!((status, code.as_str()), (StatusCode::CONFLICT, "market_halted"));
    let settled = eventually(Duration::from_secs(10), || async {
        let trade =
            body(app.get(&format!("/api/flash-trade/{open}"), Some(&user)).await).await["trade"].clone();
        (trade["status"] == "settled").then_some(trade)
    })
    .await;
    assert!(settled["result"].is_string());
}

#[tokio::test]
async fn every_admin_action_is_in_the_append_only_audit_log() {
    let app = TestApp::spawn().await;
    let admin = with_role(&app, "auditor@example.com", "admin").await;
    let user = app.signed_up("audited@example.com").await;
    let id = app.user_id(&user).await;
    call(
        &app,
        Method::PATCH,
        &format!("/api/admin/users/{id}"),
        &admin,
        Some(json!({"tradingSuspended": true})),
    )
    .await;
    call(&app, Method::POST, "/api/admin/settings", &admin, Some(json!({"sellSpread": "0.04"}))).await;
    let audit = body(call(&app, Method::GET, "/api/admin/audit", &admin, None).await).await;
    let entries = audit["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["action"], "settings.update");
    assert_eq!(entries[0]["before"]["sellSpreadBp"], 500);
    assert_eq!(entries[0]["after"]["sellSpreadBp"], 400);
    assert_eq!(entries[1]["action"], "user.update");
    assert_eq!(entries[1]["target"], format!("user:{id}"));
    assert_eq!(
        (entries[1]["before"]["tradingSuspended"].clone(), entries[1]["after"]["tradingSuspended"].clone()),
        (json!(false), json!(true))
    );
    assert_eq!(entries[1]["actorRole"], "admin");
    assert_eq!(entries[1]["ip"], "127.0.0.1");
    let mut conn = raw_connection(&app.database_url).await;
    for change in ["DELETE FROM audit_log", "UPDATE settings_versions SET changed = ''"] {
        let refused = sqlx::query(change).execute(&mut conn).await.expect_err(change).to_string();
        assert!(refused.contains("append-only"), "{change}: {refused}");
    }
}

/// What an admin types is matched as text, whatever its case: a name with accents is found on
/// both backends (SQLite's own LOWER folds only ASCII), and LIKE's wildcards match only
/// themselves.
#[tokio::test]
async fn the_user_search_matches_what_was_typed_accents_and_wildcards_included() {
    let app = TestApp::spawn().await;
    let admin = with_role(&app, "searcher@example.com", "admin").await;
    let registered = app
        .post_json(
            "/api/auth/register",
            None,
            &json!({"email": "elodie@example.com", "password": PASSWORD, "firstName": "Élodie", "lastName": "Dubois"}),
        )
        .await;
    assert_eq!(registered.status(), StatusCode::CREATED);
    app.signed_up("under_score@example.com").await;
    let found = |query: &'static str| {
        let (app, admin) = (&app, &admin);
        async move {
            let path = format!("/api/admin/users?query={query}");
            let found = body(call(app, Method::GET, &path, admin, None).await).await;
            found["users"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u["email"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(found("%C3%89lodie%20Dub").await, ["elodie@example.com"], "Élodie Dub");
    assert_eq!(found("%C3%A9lodie").await, ["elodie@example.com"], "élodie");
    assert_eq!(found("%C3%89LODIE").await, ["elodie@example.com"], "ÉLODIE");
    assert_eq!(found("DUBOIS").await, ["elodie@example.com"]);
    assert_eq!(found("com%20%C3%A9lo").await, Vec::<String>::new(), "not across the email and the name");
    assert_eq!(found("%25").await, Vec::<String>::new(), "% is not a wildcard");
    assert_eq!(found("unde_").await, Vec::<String>::new(), "_ is not a wildcard");
    assert_eq!(found("er_sc").await, ["under_score@example.com"]);
}

#[tokio::test]
async fn admins_list_users_and_trades_with_filters_and_see_house_figures() {
    let app = TestApp::spawn().await;
    let admin = with_role(&app, "viewer@example.com", "admin").await;
    let alice = app.signed_up("alice.smith@example.com").await;
    app.signed_up("bob@example.com").await;
    app.post_json(
        "/api/flash-trade/create",
        Some(&alice),
        &json!({"symbol": "SIMV25", "direction": "up", "amount": "10", "duration": 5}),
    )
    .await;

    let found = body(call(&app, Method::GET, "/api/admin/users?query=ALICE", &admin, None).await).await;
    let users = found["users"].as_array().unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0]["email"], "alice.smith@example.com");
    assert_eq!(users[0]["trades"], 1);
    assert_eq!(users[0]["balance"], "10000.00");
    assert!(users[0]["lastActiveAt"].is_string());
    let page = body(call(&app, Method::GET, "/api/admin/users?limit=2", &admin, None).await).await;
    assert_eq!(page["users"].as_array().unwrap().len(), 2);
    let next = page["nextCursor"].as_str().expect("a next page");
    let rest =
        body(call(&app, Method::GET, &format!("/api/admin/users?limit=2&cursor={next}"), &admin, None).await)
            .await;
    assert_eq!(rest["users"].as_array().unwrap().len(), 1);
    let admins = body(call(&app, Method::GET, "/api/admin/users?role=admin", &admin, None).await).await;
    assert_eq!(admins["users"].as_array().unwrap().len(), 1);

    let alice_id = app.user_id(&alice).await;
    let detail =
        body(call(&app, Method::GET, &format!("/api/admin/users/{alice_id}"), &admin, None).await).await;
    assert_eq!(detail["trades"].as_array().unwrap().len(), 1);
    assert!(detail["transactions"].as_array().unwrap().len() >= 2);

    let trades = body(
        call(&app, Method::GET, &format!("/api/admin/trades?userId={alice_id}&status=active"), &admin, None)
            .await,
    )
    .await;
    assert_eq!(trades["trades"].as_array().unwrap().len(), 1);
    let none = body(call(&app, Method::GET, "/api/admin/trades?symbol=SIMV100", &admin, None).await).await;
    assert_eq!(none["trades"], json!([]));
    let stats = body(call(&app, Method::GET, "/api/admin/stats", &admin, None).await).await;
    assert_eq!(stats["turnover"], "10.00");
    assert_eq!(stats["trades"], 1);
    assert_eq!(stats["activeUsers"], 1);
    assert_eq!(stats["openTrades"], 1);
    assert_eq!(stats["openExposure"], "8.50");
    let (status, _, field) = error_of(
        call(
            &app,
            Method::GET,
            "/api/admin/stats?from=2030-01-01T00:00:00Z&to=2020-01-01T00:00:00Z",
            &admin,
            None,
        )
        .await,
    )
    .await;
    assert_eq!((status, field.as_deref()), (StatusCode::BAD_REQUEST, Some("from")));
    // The earliest date there is has no day before it to default `from` to (it overflowed).
    let earliest = call(&app, Method::GET, "/api/admin/stats?to=-262143-01-01T00:00:00Z", &admin, None).await;
    assert_eq!(error_of(earliest).await.0, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn totp_enrolment_then_login_needs_the_right_code() {
    let app = TestApp::spawn().await;
    let admin = with_role(&app, "twofactor@example.com", "admin").await;
    let enrolment = body(call(&app, Method::POST, "/api/auth/totp/enroll", &admin, None).await).await;
    let secret = enrolment["secret"].as_str().unwrap().to_owned();
    assert!(enrolment["otpauthUri"].as_str().unwrap().starts_with("otpauth://totp/fairtick:"));
    let bytes = totp_rs::Secret::Encoded(secret).to_bytes().unwrap();
    let now = || chrono::Utc::now().timestamp() as u64;
    let code = |at: u64| fairtick::services::totp::code_at(&bytes, "twofactor@example.com", at).unwrap();

    let (status, _, field) = error_of(
        call(&app, Method::POST, "/api/auth/totp/confirm", &admin, Some(json!({"code": "000000"}))).await,
    )
    .await;
    assert_eq!((status, field.as_deref()), (StatusCode::BAD_REQUEST, Some("code")));
    let confirmed =
        call(&app, Method::POST, "/api/auth/totp/confirm", &admin, Some(json!({"code": code(now())}))).await;
    assert_eq!(confirmed.status(), StatusCode::NO_CONTENT);
    assert_eq!(body(app.me(&admin).await).await["user"]["totpEnabled"], true);

    let login = |totp: Option<String>| {
        let mut request = json!({"email": "twofactor@example.com", "password": PASSWORD});
        if let Some(code) = totp {
            request["totpCode"] = Value::from(code);
        }
        let sent = app.client.post(app.url("/api/auth/login")).json(&request);
        async move { sent.send().await.unwrap() }
    };
    let (status, code_name, _) = error_of(login(None).await).await;
    assert_eq!((status, code_name.as_str()), (StatusCode::UNPROCESSABLE_ENTITY, "totp_required"));
    let (status, _, _) = error_of(login(Some(code(now() - 3600))).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "an old code is refused");
    assert_eq!(login(Some(code(now()))).await.status(), StatusCode::OK);

    // With TOTP required for admins, an admin without it is refused.
    let other = with_role(&app, "nototp@example.com", "admin").await;
    call(&app, Method::POST, "/api/admin/settings", &admin, Some(json!({"requireAdminTotp": true}))).await;
    let (status, code_name, _) =
        error_of(call(&app, Method::GET, "/api/admin/users", &other, None).await).await;
    assert_eq!((status, code_name.as_str()), (StatusCode::FORBIDDEN, "totp_required"));
    assert_eq!(call(&app, Method::GET, "/api/admin/users", &admin, None).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_totp_secret_is_stored_only_sealed() {
    let app = TestApp::spawn().await;
    let admin = with_role(&app, "sealed@example.com", "admin").await;
    let enrolment = body(call(&app, Method::POST, "/api/auth/totp/enroll", &admin, None).await).await;
    let secret = enrolment["secret"].as_str().unwrap().to_owned();
    let raw = hex::encode(totp_rs::Secret::Encoded(secret.clone()).to_bytes().unwrap());
    let mut conn = raw_connection(&app.database_url).await;
    let (stored,): (Option<String>,) =
        sqlx::query_as("SELECT totp_sealed FROM users WHERE email = 'sealed@example.com'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    let stored = stored.unwrap();
    assert!(!stored.contains(&raw) && !stored.contains(&secret));
}
