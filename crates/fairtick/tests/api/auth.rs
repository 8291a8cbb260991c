//! Accounts: register, login, logout, me, tokens, suspension, rate limits, bad input.

use std::time::Duration;

use fairtick_core::{UserId, UserStatus};
use reqwest::StatusCode;
use reqwest::header::{RETRY_AFTER, SET_COOKIE};
use serde_json::json;

use crate::helpers::{PASSWORD, TestApp, body, error_of, eventually, raw_connection};

#[tokio::test]
async fn registering_answers_201_with_a_token_and_a_user_holding_10000_vusd() {
    let app = TestApp::spawn().await;
    let response = app.register("  Ann.Lee@Example.COM ").await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let cookie = response.headers().get(SET_COOKIE).expect("a session cookie").to_str().unwrap().to_owned();
    assert!(cookie.starts_with("fairtick_session=ey"), "{cookie}");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(!cookie.contains("Secure"), "plain HTTP by default, or a local browser would drop it: {cookie}");
    let body = body(response).await;
    let user = &body["user"];
    assert_eq!(user["email"], "ann.lee@example.com");
    assert_eq!(user["firstName"], "Test");
    assert_eq!(user["lastName"], "User");
    assert_eq!(user["role"], "user");
    assert_eq!(user["balance"], "10000.00");
    assert_eq!(user["vipLevel"], 1);
    assert!(user["id"].as_i64().is_some() && user["createdAt"].as_str().is_some());
    assert!(body["token"].as_str().is_some_and(|t| t.split('.').count() == 3));
}

#[tokio::test]
async fn the_token_carries_the_documented_claims() {
    use base64::Engine;
    let app = TestApp::spawn().await;
    let token = app.signed_up("claims@example.com").await;
    let mut parts = token.split('.');
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap();
    let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap();
    let header: serde_json::Value = serde_json::from_slice(&header).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(&claims).unwrap();
    assert_eq!(header["alg"], "HS256");
    assert_eq!(claims["email"], "claims@example.com");
    assert_eq!(claims["role"], "user");
    for claim in ["userId", "exp", "iat"] {
        assert!(claims[claim].as_i64().is_some(), "{claim} missing from {claims}");
    }
    assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 3600);
    assert!(claims["jti"].as_str().is_some_and(|j| j.len() >= 16));
}

#[tokio::test]
async fn a_duplicate_email_is_409_whatever_its_case() {
    let app = TestApp::spawn().await;
    app.signed_up("dup@example.com").await;
    let (status, code, _) = error_of(app.register(" DUP@Example.com").await).await;
    assert_eq!((status, code.as_str()), (StatusCode::CONFLICT, "email_taken"));
}

#[tokio::test]
async fn invalid_registrations_are_400_naming_the_field() {
    let app = TestApp::spawn().await;
    let valid = json!({"email": "x@example.com", "password": PASSWORD, "firstName": "A", "lastName": "B"});
    let with = |field: &str, value: serde_json::Value| {
        let mut body = valid.clone();
        body[field] = value;
        body
    };
    let without = |field: &str| {
        let mut body = valid.clone();
        body.as_object_mut().unwrap().remove(field);
        body
    };
    for (request, field, why) in [
        (with("email", json!("not-an-email")), "email", "no @"),
        (with("email", json!("")), "email", "empty"),
        (with("password", json!("short")), "password", "under 8 characters"),
        (with("password", json!("x".repeat(129))), "password", "over 128 characters"),
        (with("firstName", json!("  ")), "firstName", "blank"),
        (with("lastName", json!("x".repeat(101))), "lastName", "too long"),
        (with("email", json!(42)), "email", "not a string"),
        (without("password"), "password", "missing"),
        (with("role", json!("superadmin")), "role", "unknown field: nobody registers as admin"),
    ] {
        let (status, code, got_field) =
            error_of(app.post_json("/api/auth/register", None, &request).await).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{why}");
        assert_eq!(code, "validation_error", "{why}");
        assert_eq!(got_field.as_deref(), Some(field), "{why}");
    }
    let (status, _, _) = error_of(app.login("x@example.com", PASSWORD).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "none of the invalid registrations created the account");
}

#[tokio::test]
async fn malformed_requests_get_4xx_in_the_error_shape_never_500() {
    let app = TestApp::spawn().await;
    let post_raw = |body: String, content_type: &'static str| {
        app.client.post(app.url("/api/auth/login")).header("content-type", content_type).body(body).send()
    };
    for (response, status, code, why) in [
        (
            post_raw("{\"email\": ".into(), "application/json").await.unwrap(),
            400,
            "malformed_json",
            "truncated JSON",
        ),
        (post_raw("[1, 2]".into(), "application/json").await.unwrap(), 400, "validation_error", "an array"),
        (
            post_raw("{}".into(), "text/plain").await.unwrap(),
            415,
            "unsupported_media_type",
            "wrong content type",
        ),
        (
            post_raw(format!("{{\"email\": \"{}\"}}", "a".repeat(100_000)), "application/json")
                .await
                .unwrap(),
            413,
            "payload_too_large",
            "a 100 KB body",
        ),
    ] {
        let (got_status, got_code, _) = error_of(response).await;
        assert_eq!((got_status.as_u16(), got_code.as_str()), (status, code), "{why}");
    }
}

#[tokio::test]
async fn behind_tls_the_session_cookie_is_marked_secure() {
    let app = TestApp::spawn_with(|config| config.secure_cookie = true).await;
    app.signed_up("secure@example.com").await;
    let login = app.login("secure@example.com", PASSWORD).await;
    let cookie = login.headers().get(SET_COOKIE).expect("a session cookie").to_str().unwrap().to_owned();
    assert!(cookie.ends_with("; Secure") && cookie.contains("HttpOnly"), "{cookie}");
}

#[tokio::test]
async fn login_succeeds_with_the_right_password_and_fails_alike_otherwise() {
    let app = TestApp::spawn().await;
    app.signed_up("login@example.com").await;

    let ok = app.login(" LOGIN@example.com", PASSWORD).await;
    assert_eq!(ok.status(), StatusCode::OK);
    assert!(ok.headers().get(SET_COOKIE).is_some());
    let ok = body(ok).await;
    assert_eq!(ok["user"]["email"], "login@example.com");
    assert_eq!(ok["user"]["balance"], "10000.00");

    let wrong_password = app.login("login@example.com", "wrong password").await;
    let unknown_email = app.login("nobody@example.com", PASSWORD).await;
    let (a_status, b_status) = (wrong_password.status(), unknown_email.status());
    let (a, b) = (body(wrong_password).await, body(unknown_email).await);
    assert_eq!(a_status, StatusCode::UNAUTHORIZED);
    assert_eq!((a_status, &a), (b_status, &b), "a failed login must not reveal whether the email exists");

    // Bounded before anything is keyed or hashed by them.
    let long_email = app.login(&format!("{}@example.com", "a".repeat(300)), PASSWORD).await;
    let (status, _, field) = error_of(long_email).await;
    assert_eq!((status, field.as_deref()), (StatusCode::BAD_REQUEST, Some("email")));
    let long_password = app.login("login@example.com", &"p".repeat(1_025)).await;
    let (status, _, field) = error_of(long_password).await;
    assert_eq!((status, field.as_deref()), (StatusCode::BAD_REQUEST, Some("password")));
}

#[tokio::test]
async fn me_answers_with_a_bearer_token_or_the_session_cookie_and_401_without() {
    let app = TestApp::spawn().await;
    let token = app.signed_up("me@example.com").await;

    let by_bearer = app.me(&token).await;
    assert_eq!(by_bearer.status(), StatusCode::OK);
    assert_eq!(body(by_bearer).await["user"]["email"], "me@example.com");

    let by_cookie = app
        .client
        .get(app.url("/api/auth/me"))
        .header("cookie", format!("theme=dark; fairtick_session={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(by_cookie.status(), StatusCode::OK);

    for (request, why) in [
        (app.client.get(app.url("/api/auth/me")), "no token"),
        (app.client.get(app.url("/api/auth/me")).bearer_auth("not.a.jwt"), "garbage"),
        (app.client.get(app.url("/api/auth/me")).bearer_auth(format!("{token}x")), "a bad signature"),
    ] {
        let (status, code, _) = error_of(request.send().await.unwrap()).await;
        assert_eq!((status, code.as_str()), (StatusCode::UNAUTHORIZED, "unauthenticated"), "{why}");
    }
}

#[tokio::test]
async fn after_logout_the_token_is_refused() {
    let app = TestApp::spawn().await;
    let token = app.signed_up("bye@example.com").await;
    let other_session =
        body(app.login("bye@example.com", PASSWORD).await).await["token"].as_str().unwrap().to_owned();

    // Used once, so that the server remembers the session the logout must then forget.
    assert_eq!(app.me(&token).await.status(), StatusCode::OK);
    let response = app.client.post(app.url("/api/auth/logout")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let cleared = response.headers().get(SET_COOKIE).unwrap().to_str().unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");

    let (status, code, _) = error_of(app.me(&token).await).await;
    assert_eq!((status, code.as_str()), (StatusCode::UNAUTHORIZED, "unauthenticated"));
    assert_eq!(app.me(&other_session).await.status(), StatusCode::OK, "only the logged-out token is revoked");
}

#[tokio::test]
async fn with_two_nodes_a_logout_or_a_suspension_on_one_is_refused_by_the_other() {
    // Sessions are trusted for an hour in tests: only node A's notification can make node B
    // read them again.
    let Some((a, b)) = TestApp::two_nodes().await else { return };
    let leaving = a.signed_up("leaving@example.com").await;
    let suspended = a.signed_up("suspended@example.com").await;
    let other = a.signed_up("bystander@example.com").await;
    for token in [&leaving, &suspended, &other] {
        assert_eq!(b.me(token).await.status(), StatusCode::OK, "node B now remembers the session");
    }

    let response = a.client.post(a.url("/api/auth/logout")).bearer_auth(&leaving).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let id = a.user_id(&suspended).await;
    assert!(a.store.set_user_status(UserId(id), UserStatus::Suspended).await.unwrap());

    let refused = |token: String, expected: StatusCode| {
        let b = &b;
        async move { (b.me(&token).await.status() == expected).then_some(()) }
    };
    eventually(Duration::from_secs(10), || refused(leaving.clone(), StatusCode::UNAUTHORIZED)).await;
    eventually(Duration::from_secs(10), || refused(suspended.clone(), StatusCode::FORBIDDEN)).await;
    assert_eq!(b.me(&other).await.status(), StatusCode::OK, "only the changed accounts are affected");
}

#[tokio::test]
async fn a_suspended_accounts_tokens_stop_working_at_once_and_it_cannot_log_in() {
    let app = TestApp::spawn().await;
    let token = app.signed_up("suspend@example.com").await;
    let id = app.user_id(&token).await;
    assert!(app.store.set_user_status(UserId(id), UserStatus::Suspended).await.unwrap());

    let (status, code, _) = error_of(app.me(&token).await).await;
    assert_eq!((status, code.as_str()), (StatusCode::FORBIDDEN, "account_suspended"));
    let (status, code, _) = error_of(app.get("/api/wallet/balance", Some(&token)).await).await;
    assert_eq!((status, code.as_str()), (StatusCode::FORBIDDEN, "account_suspended"));
    let (status, code, _) = error_of(app.login("suspend@example.com", PASSWORD).await).await;
    assert_eq!((status, code.as_str()), (StatusCode::FORBIDDEN, "account_suspended"));

    app.store.set_user_status(UserId(id), UserStatus::Active).await.unwrap();
    assert_eq!(app.me(&token).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn logins_are_limited_per_account_with_retry_after() {
    // Three a minute: one comes back every 20 s, far longer than three password checks take on
    // a busy machine, so the fourth is always refused.
    let app = TestApp::spawn_with(|config| config.login_per_account_per_minute = 3).await;
    app.signed_up("limited@example.com").await;
    for attempt in 1..=3 {
        let status = app.login("limited@example.com", "wrong password").await.status();
        assert_eq!(status, StatusCode::UNAUTHORIZED, "attempt {attempt}");
    }
    let fourth = app.login("Limited@example.com", PASSWORD).await;
    let retry_after: u64 =
        fourth.headers().get(RETRY_AFTER).expect("Retry-After").to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let (status, code, _) = error_of(fourth).await;
    assert_eq!((status, code.as_str()), (StatusCode::TOO_MANY_REQUESTS, "rate_limited"));
    assert_eq!(
        app.login("other@example.com", PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED,
        "other accounts are unaffected"
    );
}

#[tokio::test]
async fn auth_requests_are_limited_per_client_ip() {
    let app = TestApp::spawn_with(|config| config.auth_per_ip_per_minute = 3).await;
    for i in 0..3 {
        assert_eq!(app.register(&format!("ip{i}@example.com")).await.status(), StatusCode::CREATED);
    }
    let response = app.login("ip0@example.com", PASSWORD).await;
    assert!(response.headers().get(RETRY_AFTER).is_some());
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn an_imported_bcrypt_hash_verifies_and_is_upgraded_to_argon2id_at_login() {
    let app = TestApp::spawn().await;
    app.signed_up("legacy@example.com").await;
    let email = fairtick_core::Email::parse("legacy@example.com").unwrap();
    let user = app.store.user_by_email(&email).await.unwrap().unwrap();
    let legacy = bcrypt::hash("legacy password", 4).unwrap();
    app.store.set_password_hash(user.id, &legacy).await.unwrap();

    assert_eq!(app.login("legacy@example.com", "wrong password").await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.store.user_by_email(&email).await.unwrap().unwrap().password_hash, legacy);
    assert_eq!(app.login("legacy@example.com", "legacy password").await.status(), StatusCode::OK);
    let upgraded = app.store.user_by_email(&email).await.unwrap().unwrap().password_hash;
    assert!(upgraded.starts_with("$argon2id$"), "{upgraded}");
    assert_eq!(app.login("legacy@example.com", "legacy password").await.status(), StatusCode::OK);
}

/// A revoked token's record outlives the token by a minute: jsonwebtoken takes a token until
/// the second after its `exp`, and nodes' clocks differ a little.
#[tokio::test]
async fn a_revoked_token_is_remembered_a_while_past_its_expiry() {
    use chrono::{Duration as Span, Utc};
    let app = TestApp::spawn().await;
    let user = UserId(app.user_id(&app.signed_up("sweep@example.com").await).await);
    let now = Utc::now();
    app.store.revoke_token(user, "just-expired", now - Span::seconds(30), now).await.unwrap();
    app.store.revoke_token(user, "long-expired", now - Span::seconds(90), now).await.unwrap();
    // The next revocation sweeps the records of tokens that expired over a minute before.
    app.store.revoke_token(user, "current", now + Span::hours(1), now).await.unwrap();
    let mut conn = raw_connection(&app.database_url).await;
    let kept: Vec<(String,)> =
        sqlx::query_as("SELECT jti FROM revoked_tokens ORDER BY jti").fetch_all(&mut conn).await.unwrap();
    let kept: Vec<&str> = kept.iter().map(|(jti,)| jti.as_str()).collect();
    assert_eq!(kept, ["current", "just-expired"]);
}
