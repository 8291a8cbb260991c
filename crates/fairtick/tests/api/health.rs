//! Operations endpoints and the cross-cutting HTTP behaviour: request ids, 404 and 405 shapes.

use reqwest::StatusCode;

use crate::helpers::{TestApp, error_of};

#[tokio::test]
async fn healthz_and_readyz_answer_ok() {
    let app = TestApp::spawn().await;
    let health = app.get("/healthz", None).await;
    assert_eq!(health.status(), StatusCode::OK);
    let ready = app.get("/readyz", None).await;
    assert_eq!(ready.status(), StatusCode::OK);
    assert_eq!(ready.text().await.unwrap(), "ready");
}

#[tokio::test]
async fn readyz_is_503_when_the_database_is_gone() {
    let app = TestApp::spawn().await;
    app.store.close().await;
    let (status, code, _) = error_of(app.get("/readyz", None).await).await;
    assert_eq!((status, code.as_str()), (StatusCode::SERVICE_UNAVAILABLE, "not_ready"));
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let app = TestApp::spawn().await;
    let response = app.get("/healthz", None).await;
    let id = response.headers().get("x-request-id").expect("x-request-id").to_str().unwrap().to_owned();
    assert_eq!(id.len(), 36, "{id}");
    let echoed =
        app.client.get(app.url("/healthz")).header("x-request-id", "trace-me-42").send().await.unwrap();
    assert_eq!(echoed.headers().get("x-request-id").unwrap(), "trace-me-42");
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_the_error_shape() {
    let app = TestApp::spawn().await;
    let (status, code, _) = error_of(app.get("/api/nothing-here", None).await).await;
    assert_eq!((status, code.as_str()), (StatusCode::NOT_FOUND, "not_found"));
    let (status, code, _) = error_of(app.client.delete(app.url("/api/auth/me")).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"));
}

#[tokio::test]
async fn metrics_are_present_after_traffic() {
    let app = TestApp::spawn().await;
    let token = app.signed_up("metrics@example.com").await;
    app.post_json(
        "/api/flash-trade/create",
        Some(&token),
        &serde_json::json!({"symbol": "SIMV25", "direction": "up", "amount": "10", "duration": 1}),
    )
    .await;
    app.get("/api/auth/me", Some(&token)).await;
    let text = crate::helpers::eventually(std::time::Duration::from_secs(10), || async {
        let text = app.get("/metrics", None).await.text().await.unwrap();
        text.contains("trades_ended_total").then_some(text)
    })
    .await;
    for expected in [
        "http_requests_total{method=\"GET\",route=\"/api/auth/me\",status=\"200\"}",
        "http_request_duration_seconds_bucket",
        "trades_opened_total",
        "settlement_lag_seconds",
        "ticks_produced_total{symbol=\"SIMV25\"}",
        "websocket_connections",
        "db_pool_connections",
    ] {
        assert!(text.contains(expected), "{expected} missing from /metrics");
    }
}

#[tokio::test]
async fn api_requests_are_limited_per_client_ip_with_retry_after() {
    let app = TestApp::spawn_with(|config| config.api_per_ip_per_minute = 5).await;
    for _ in 0..5 {
        assert_eq!(app.get("/api/market/symbols", None).await.status(), StatusCode::OK);
    }
    let limited = app.get("/api/market/symbols", None).await;
    assert!(limited.headers().get("retry-after").is_some());
    let (status, code, _) = error_of(limited).await;
    assert_eq!((status, code.as_str()), (StatusCode::TOO_MANY_REQUESTS, "rate_limited"));
    assert_eq!(
        app.get("/healthz", None).await.status(),
        StatusCode::OK,
        "operations endpoints are not API-limited"
    );
}
