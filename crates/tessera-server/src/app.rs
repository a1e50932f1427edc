//! Assembles the router: API, pages, fallbacks, and the layers every response passes through
//! (security headers, metrics, body limit, panic guard).

use crate::api;
use crate::api::error::ApiError;
use crate::api::extract::MAX_BODY_BYTES;
use crate::metrics::{LatencyLabels, RouteLabels};
use crate::state::AppState;
use crate::ui;
use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{Next, from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use std::any::Any;
use std::time::{Duration, Instant};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::RequestBodyTimeoutLayer;
use utoipa_swagger_ui::{Config as SwaggerConfig, SwaggerUi};

/// The Content-Security-Policy of every response: nothing from anywhere but this origin, no
/// inline script, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Swagger UI (vendored in the binary, nothing fetched) sets inline styles; its pages alone allow
/// them.
pub const API_DOCS_CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// A client must send its whole body within this time.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(15);
/// No request runs longer than this; a stuck dependency becomes a 503, not a hung connection.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// `Strict-Transport-Security` when the public URL is https.
pub const HSTS: &str = "max-age=31536000; includeSubDomains";

/// Where the interactive API documentation is served.
pub const API_DOCS_PATH: &str = "/api/docs";

/// The router: the API and the OpenAPI document come from one route list.
pub fn router(state: AppState) -> Router {
    let (api_router, _) = api::router(&state).split_for_parts();
    let api_docs =
        SwaggerUi::new(API_DOCS_PATH).config(SwaggerConfig::from("/api/v1/openapi.json"));
    Router::new()
        .merge(api_router)
        .merge(api_docs)
        .merge(ui::router(&state))
        .fallback(fallback)
        .method_not_allowed_fallback(method_not_allowed)
        // Innermost first: every answer, even a timeout or a caught panic, is counted and gets
        // the security headers.
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(RequestBodyTimeoutLayer::new(BODY_TIMEOUT))
        .layer(from_fn(request_timeout))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(from_fn_with_state(state.clone(), record_metrics))
        .layer(from_fn_with_state(state.clone(), security_headers))
        .with_state(state)
}

/// The OpenAPI document as JSON.
pub fn openapi_json(state: &AppState) -> String {
    let (_, openapi) = api::router(state).split_for_parts();
    openapi.to_pretty_json().unwrap_or_else(|_| "{}".into())
}

async fn fallback(request: Request) -> Response {
    if wants_json(&request) {
        ApiError::no_route().into_response()
    } else {
        ui::not_found_page().await
    }
}

async fn method_not_allowed(request: Request) -> Response {
    let message = format!(
        "{} is not allowed on {}",
        request.method(),
        request.uri().path()
    );
    if wants_json(&request) {
        ApiError::with_status(StatusCode::METHOD_NOT_ALLOWED, message).into_response()
    } else {
        (StatusCode::METHOD_NOT_ALLOWED, message).into_response()
    }
}

fn wants_json(request: &Request) -> bool {
    let path = request.uri().path();
    path.starts_with("/api/")
        || path == "/api"
        || matches!(path, "/healthz" | "/readyz" | "/metrics")
}

fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    ApiError::from(tessera_core::Error::Internal(format!(
        "handler panicked: {detail}"
    )))
    .into_response()
}

async fn request_timeout(request: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::from(tessera_core::Error::Unavailable("request timed out".into()))
            .into_response(),
    }
}

async fn security_headers(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let is_static = path.starts_with("/static/");
    let policy = if path.starts_with(API_DOCS_PATH) {
        API_DOCS_CONTENT_SECURITY_POLICY
    } else {
        CONTENT_SECURITY_POLICY
    };
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(policy),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if state.settings.is_https() {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(HSTS),
        );
    }
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    if !is_static {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

async fn record_metrics(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let response = next.run(request).await;
    if method != Method::OPTIONS {
        // Only known methods become label values, so made-up ones cannot grow the registry.
        let method = match method {
            Method::GET
            | Method::HEAD
            | Method::POST
            | Method::PUT
            | Method::PATCH
            | Method::DELETE => method.as_str(),
            _ => "other",
        }
        .to_owned();
        state
            .metrics
            .requests
            .get_or_create(&RouteLabels {
                method: method.clone(),
                route: route.clone(),
                status: response.status().as_u16(),
            })
            .inc();
        state
            .metrics
            .latency
            .get_or_create(&LatencyLabels { method, route })
            .observe(started.elapsed().as_secs_f64());
    }
    response
}
