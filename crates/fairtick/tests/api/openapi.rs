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

/// The schema an operation's `200` answer is documented with, resolved in `spec`.
fn answer_schema<'a>(spec: &'a serde_json::Value, path: &str) -> &'a serde_json::Value {
    let reference =
        spec["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
            .as_str()
            .unwrap_or_else(|| panic!("GET {path} documents no schema for its answer"));
    &spec["components"]["schemas"][reference.trim_start_matches("#/components/schemas/")]
}

#[tokio::test]
async fn two_answers_of_the_same_name_do_not_share_one_schema() {
    // utoipa names a schema after its type; two types of one name left one of them documented
    // with the other's fields (a trader's record with the house's figures).
    let spec = serde_json::to_value(fairtick::http::openapi()).unwrap();
    let record = answer_schema(&spec, "/api/flash-trade/stats");
    assert!(record["properties"]["wins"].is_object(), "{record}");
    let house = answer_schema(&spec, "/api/admin/stats");
    assert!(house["properties"]["turnover"].is_object(), "{house}");
}

#[tokio::test]
async fn the_refusals_made_before_a_handler_runs_are_documented() {
    let spec = serde_json::to_value(fairtick::http::openapi()).unwrap();
    let mut bodies = 0;
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let documented =
                |status: &str| operation["responses"][status]["content"].to_string().contains("ErrorBody");
            if operation["requestBody"].is_object() {
                bodies += 1;
                assert!(documented("400") && documented("415"), "{method} {path}: a JSON body's 400 and 415");
            }
            let params = operation["parameters"].as_array().into_iter().flatten();
            if params.clone().any(|p| p["in"] == "path" || p["name"] == "Idempotency-Key") {
                assert!(documented("400"), "{method} {path}: a bad path parameter's or key's 400");
            }
            if operation["security"].is_array() {
                assert!(documented("401"), "{method} {path}: a missing token's 401");
            }
        }
    }
    assert!(bodies >= 8, "only {bodies} operations take a body");
}
