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
use std::time::Instant;
use tower_http::catch_panic::CatchPanicLayer;

/// The Content-Security-Policy of every response: nothing from anywhere but this origin, no
/// inline script, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The OpenAPI document and the router, built from one route list.
pub fn router(state: AppState) -> Router {
    let (api_router, _) = api::router(&state).split_for_parts();
    Router::new()
        .merge(api_router)
        .merge(ui::router(&state))
        .fallback(fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(from_fn_with_state(state.clone(), record_metrics))
        .layer(from_fn(security_headers))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(CatchPanicLayer::custom(panic_response))
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

async fn security_headers(request: Request, next: Next) -> Response {
    let is_static = request.uri().path().starts_with("/static/");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
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
        let method = method.as_str().to_owned();
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
