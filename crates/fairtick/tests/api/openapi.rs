//! `/api/openapi.json` stays true: every documented operation is served, and every route the
//! server answers is documented.

use reqwest::{Method, StatusCode};

use crate::helpers::{TestApp, body};

#[tokio::test]
async fn every_documented_operation_exists_and_documents_the_error_shape() {
    let app = TestApp::spawn().await;
    let response = app.get("/api/openapi.json", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let spec = body(response).await;
    assert!(spec["components"]["schemas"]["ErrorBody"].is_object(), "the error shape is documented");
    let paths = spec["paths"].as_object().expect("paths");
    assert!(paths.len() >= 12, "only {} paths documented", paths.len());
    for (path, item) in paths {
        for (method, operation) in item.as_object().unwrap() {
            let method: Method = method.to_uppercase().parse().unwrap();
            let response = app.client.request(method.clone(), app.url(path)).send().await.unwrap();
            let status = response.status();
            let text = response.text().await.unwrap();
            assert!(
                !(status == StatusCode::NOT_FOUND && text.contains("\"not_found\""))
                    && status != StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path} is documented but not served ({status})"
            );
            let responses = operation["responses"].as_object().unwrap();
            let documents_errors = ["/healthz", "/metrics"].contains(&path.as_str())
                || responses.iter().any(|(code, r)| {
                    (code.starts_with('4') || code.starts_with('5'))
                        && r.to_string().contains("#/components/schemas/ErrorBody")
                });
            assert!(documents_errors, "{method} {path} does not document its error body");
        }
    }
}

#[tokio::test]
async fn the_served_routes_are_all_documented() {
    let spec = fairtick::http::openapi();
    let documented: Vec<&String> = spec.paths.paths.keys().collect();
    for path in [
        "/api/auth/register",
        "/api/auth/login",
        "/api/auth/logout",
        "/api/auth/me",
        "/api/wallet/balance",
        "/api/wallet/deposit",
        "/api/wallet/withdraw",
        "/api/wallet/reset",
        "/api/wallet/transactions",
        "/api/wallet/transactions.csv",
        "/healthz",
        "/readyz",
    ] {
        assert!(documented.iter().any(|p| *p == path), "{path} is missing from the OpenAPI document");
    }
}
