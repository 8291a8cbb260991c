//! The web app: the trader (`/`), admin (`/admin`) and verifier (`/verify`) pages and their
//! static assets, embedded in the binary at compile time (in debug builds too), so the server
//! needs no files beside it and no front-end build step.
//!
//! Caching: every asset is served under `/assets/{version}/…`, where `version` is a hash of all
//! embedded files, so asset responses are immutable and a new build changes every URL at once.
//! The pages themselves are `no-cache` (revalidated with an `ETag`) and name that prefix.
//! ES modules import each other by relative URL, so they stay under the same version.
//!
//! Every response from here carries a strict Content-Security-Policy (only this origin, no
//! inline scripts or styles), `X-Content-Type-Options: nosniff`, a `Referrer-Policy` and a
//! frame ban. This module knows nothing of the API: the pages call it like any client.

use std::collections::HashMap;
use std::sync::LazyLock;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rust_embed::RustEmbed;
use sha2::{Digest, Sha256};

/// The files under `web/` that the pages use. The tests beside them (and the node_modules the
/// browser tests install there) are not shipped: a glob's `*` also matches `/`, so `*.html`
/// alone would reach into them, and exclusion takes precedence over inclusion.
#[derive(RustEmbed)]
#[folder = "../../web/"]
#[include = "*.html"]
#[include = "css/*"]
#[include = "js/*"]
#[include = "img/*"]
#[exclude = "tests/*"]
#[exclude = "*/node_modules/*"]
struct Assets;

/// The placeholder in the HTML files for the versioned asset prefix.
const ASSETS_PLACEHOLDER: &str = "{{assets}}";

/// Routes and the file each serves.
const PAGES: [(&str, &str); 3] = [("/", "index.html"), ("/verify", "verify.html"), ("/admin", "admin.html")];

/// A hash of every embedded file's path and content: the asset URLs' version.
static VERSION: LazyLock<String> = LazyLock::new(|| {
    let mut paths: Vec<_> = Assets::iter().collect();
    paths.sort();
    let mut hasher = Sha256::new();
    for path in paths {
        let file = Assets::get(&path).expect("an embedded file can be read");
        hasher.update(path.as_bytes());
        hasher.update([0]);
        hasher.update(file.metadata.sha256_hash());
    }
    hex::encode(&hasher.finalize()[..8])
});

/// A page after the asset prefix was filled in, with its `ETag`.
struct Page {
    html: String,
    etag: String,
}

static RENDERED: LazyLock<HashMap<&'static str, Page>> = LazyLock::new(|| {
    let prefix = format!("/assets/{}", *VERSION);
    PAGES
        .iter()
        .map(|&(_, file)| {
            let source = Assets::get(file).expect("every page is embedded");
            let html = String::from_utf8_lossy(&source.data).replace(ASSETS_PLACEHOLDER, &prefix);
            let etag = format!("\"{}\"", hex::encode(&Sha256::digest(html.as_bytes())[..12]));
            (file, Page { html, etag })
        })
        .collect()
});

/// The pages and assets, with the security headers on every response. Merged into the API
/// router before its fallback.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let mut router = Router::new();
    for (route, file) in PAGES {
        router = router.route(route, get(move |headers: HeaderMap| async move { page(file, &headers) }));
    }
    router.route("/assets/{version}/{*path}", get(asset)).layer(middleware::from_fn(security_headers))
}

/// The version the pages currently reference (for tests and logs).
pub fn asset_version() -> &'static str {
    &VERSION
}

fn page(file: &str, headers: &HeaderMap) -> Response {
    let page = &RENDERED[file];
    let cache = [(header::CACHE_CONTROL, "no-cache"), (header::ETAG, page.etag.as_str())];
    if matches_etag(headers, &page.etag) {
        return (StatusCode::NOT_MODIFIED, cache).into_response();
    }
    (cache, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], page.html.clone()).into_response()
}

async fn asset(Path((version, path)): Path<(String, String)>, headers: HeaderMap) -> Response {
    let Some(file) = Assets::get(&path).filter(|_| !path.ends_with(".html")) else {
        return (StatusCode::NOT_FOUND, [(header::CACHE_CONTROL, "no-store")], "not found").into_response();
    };
    let etag = format!("\"{}\"", hex::encode(&file.metadata.sha256_hash()[..12]));
    // An old page may still ask for an older version: it gets today's file, but uncached.
    let cache = if version == *VERSION { "public, max-age=31536000, immutable" } else { "no-cache" };
    let cache = [(header::CACHE_CONTROL, cache), (header::ETAG, etag.as_str())];
    if matches_etag(&headers, &etag) {
        return (StatusCode::NOT_MODIFIED, cache).into_response();
    }
    (cache, [(header::CONTENT_TYPE, content_type(&path))], Body::from(file.data.into_owned())).into_response()
}

fn matches_etag(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag || tag.trim() == "*"))
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// The Content-Security-Policy: this origin only. The WebSocket origin is named explicitly
/// (`ws:`/`wss:` of the requested host) because older browsers do not count it as `'self'`.
fn content_security_policy(host: Option<&str>) -> String {
    let sockets = host
        .filter(|h| h.len() <= 255 && h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b)))
        .map(|h| format!(" ws://{h} wss://{h}"))
        .unwrap_or_default();
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; font-src 'self'; \
         connect-src 'self'{sockets}; manifest-src 'self'; base-uri 'none'; form-action 'self'; \
         frame-ancestors 'none'"
    )
}

async fn security_headers(request: Request, next: Next) -> Response {
    let host = request.headers().get(header::HOST).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    if let Ok(csp) = HeaderValue::from_str(&content_security_policy(host.as_deref())) {
        headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    let fixed: [(HeaderName, &str); 4] = [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (HeaderName::from_static("cross-origin-opener-policy"), "same-origin"),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_is_embedded_and_names_the_versioned_assets() {
        for (_, file) in PAGES {
            let page = &RENDERED[file];
            assert!(!page.html.contains(ASSETS_PLACEHOLDER), "{file} still has the placeholder");
            assert!(page.html.contains(&format!("/assets/{}/", asset_version())), "{file} names no asset");
        }
    }

    #[test]
    fn the_tests_beside_the_pages_are_not_shipped() {
        assert!(Assets::iter().all(|path| !path.starts_with("tests/")));
        assert!(Assets::get("js/fairness.js").is_some());
    }

    #[test]
    fn the_policy_names_only_this_origin() {
        let csp = content_security_policy(Some("127.0.0.1:3000"));
        assert!(csp.contains("connect-src 'self' ws://127.0.0.1:3000 wss://127.0.0.1:3000;"));
        assert!(!csp.contains("unsafe"));
        // A host header that could smuggle a directive is left out rather than echoed.
        let csp = content_security_policy(Some("evil; script-src *"));
        assert!(csp.contains("connect-src 'self';"));
    }
}
