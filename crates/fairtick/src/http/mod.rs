//! The HTTP API: routes, shared state and the middleware stack. Handlers are thin: they extract,
//! call one service, and map the answer; no SQL and no business rule lives here.

pub mod admin;
pub mod auth;
pub mod dto;
pub mod error;
pub mod extract;
pub mod health;
pub mod market;
pub mod metrics;
pub mod rate_limit;
pub mod trades;
pub mod wallet;
pub mod web;
pub mod ws;

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::services::accounts::Accounts;
use crate::services::admin::Admin;
use crate::services::events::EventBus;
use crate::services::market::Markets;
use crate::services::realtime::Hub;
use crate::services::settings::Settings;
use crate::services::trades::Trades;
use crate::services::wallet::Wallet;
use crate::store::Store;
use error::ApiError;
use rate_limit::{ApiRateLimits, AuthRateLimits, SocketsPerIp};

/// Largest request body accepted; every request fits in far less.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What every handler can reach: one shared copy, so a clone (per request, per WebSocket
/// connection) is a pointer, not the whole set of services and keys.
#[derive(Clone)]
pub struct AppState(std::sync::Arc<Services>);

impl AppState {
    pub fn new(services: Services) -> AppState {
        AppState(std::sync::Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;
    fn deref(&self) -> &Services {
        &self.0
    }
}

/// The services behind [`AppState`].
pub struct Services {
    pub store: Store,
    pub accounts: Accounts,
    pub wallet: Wallet,
    pub markets: Markets,
    pub trades: Trades,
    pub events: EventBus,
    pub hub: Hub,
    pub settings: Settings,
    pub admin: Admin,
    pub auth_limits: AuthRateLimits,
    pub api_limits: ApiRateLimits,
    pub sockets_per_ip: SocketsPerIp,
    /// Whether the session cookie is marked `Secure`.
    pub secure_cookie: bool,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "fairtick",
        description = "Practice flash trades on provably fair simulated prices, with virtual funds (VUSD). \
                       Nobody can choose a trade's result. Errors: `{\"error\": {\"code\", \"message\", \"field\"?}}`."
    ),
    modifiers(&BearerAuth),
    components(schemas(error::ErrorBody))
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build(),
            ),
        );
    }
}

/// Every documented route, with its OpenAPI description gathered from the same registration,
/// so the spec cannot list a route that does not exist or miss one that does.
fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(auth::register))
        .routes(routes!(auth::login))
        .routes(routes!(auth::logout))
        .routes(routes!(auth::me))
        .routes(routes!(wallet::balance))
        .routes(routes!(wallet::deposit))
        .routes(routes!(wallet::withdraw))
        .routes(routes!(wallet::reset))
        .routes(routes!(wallet::transactions))
        .routes(routes!(wallet::transactions_csv))
        .routes(routes!(market::symbols))
        .routes(routes!(market::ticks))
        .routes(routes!(market::candles))
        .routes(routes!(market::epochs))
        .routes(routes!(market::epoch))
        .routes(routes!(trades::quote))
        .routes(routes!(trades::create))
        .routes(routes!(trades::close))
        .routes(routes!(trades::active))
        .routes(routes!(trades::history))
        .routes(routes!(trades::stats))
        .routes(routes!(trades::one))
        .routes(routes!(trades::receipt))
        .routes(routes!(trades::key))
        .routes(routes!(ws::upgrade))
        .routes(routes!(auth::totp_enrol))
        .routes(routes!(auth::totp_confirm))
        .routes(routes!(admin::users))
        .routes(routes!(admin::user, admin::update_user))
        .routes(routes!(admin::get_settings, admin::update_settings))
        .routes(routes!(admin::trades))
        .routes(routes!(admin::stats))
        .routes(routes!(admin::audit))
        .routes(routes!(admin::public_settings))
        .routes(routes!(admin::settings_history))
        .routes(routes!(metrics::metrics))
}

/// The OpenAPI document of the whole API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut spec = api_routes().into_openapi();
    document_extractor_refusals(&mut spec);
    spec
}

/// The refusals made before any handler runs, documented on every operation they can come
/// from: a body that is not JSON, or not sent as JSON (400, 415), a path parameter or an
/// `Idempotency-Key` that does not parse (400), a key used with another request (422), and a
/// missing or bad token (401).
fn document_extractor_refusals(spec: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::path::{Operation, ParameterIn};
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let refusal = |description: &str| {
        let body = ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build();
        ResponseBuilder::new().description(description).content("application/json", body).build()
    };
    let add = |operation: &mut Operation, status: &str, description: &str| {
        operation.responses.responses.entry(status.to_owned()).or_insert_with(|| refusal(description).into());
    };
    for item in spec.paths.paths.values_mut() {
        let operations = [&mut item.get, &mut item.post, &mut item.put, &mut item.patch, &mut item.delete];
        for operation in operations.into_iter().flatten() {
            if operation.request_body.is_some() {
                add(operation, "400", "The body is not valid JSON, or not the expected fields");
                add(operation, "415", "The body is not sent as `application/json`");
            }
            let params: Vec<_> = operation
                .parameters
                .iter()
                .flatten()
                .map(|p| (p.parameter_in.clone(), p.name.clone()))
                .collect();
            if params.iter().any(|(place, _)| *place == ParameterIn::Path) {
                add(operation, "400", "A path parameter is not valid");
            }
            if params.iter().any(|(place, name)| *place == ParameterIn::Header && name == "Idempotency-Key") {
                add(operation, "400", "The Idempotency-Key header is not 1 to 255 visible ASCII characters");
                add(operation, "422", "The Idempotency-Key was used before with another request");
            }
            if operation.security.is_some() {
                add(operation, "401", "No valid token was presented");
            }
        }
    }
}

pub fn router(state: AppState) -> Router {
    let (router, mut spec) = api_routes().split_for_parts();
    document_extractor_refusals(&mut spec);
    let spec_json = std::sync::Arc::new(spec.to_pretty_json().expect("the OpenAPI document serialises"));
    router
        .route(
            "/api/openapi.json",
            get(move || {
                let spec_json = spec_json.clone();
                async move { ([(axum::http::header::CONTENT_TYPE, "application/json")], spec_json.as_str().to_owned()) }
            }),
        )
        .merge(web::routes())
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this method is not allowed here")
        })
        .layer(axum::middleware::from_fn_with_state(state.clone(), rate_limit::limit_api))
        .route_layer(axum::middleware::from_fn(metrics::track))
        .with_state(state)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
            let request_id = request.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
            tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), request_id)
        }))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}

/// How often rate-limiter memory is swept.
pub const RATE_LIMIT_SWEEP: Duration = Duration::from_secs(60);
