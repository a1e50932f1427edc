//! The state every handler shares.

use crate::config::Settings;
use crate::metrics::Metrics;
use crate::ratelimit::ClientRateLimiter;
use std::sync::Arc;
use tessera_core::service::Services;
use tokio::sync::Notify;

/// Cookie name of the session over plain http (development, tests).
pub const SESSION_COOKIE: &str = "tessera_session";
/// Cookie name over https: the `__Host-` prefix pins it to this host, path `/`, `Secure`.
pub const SESSION_COOKIE_HTTPS: &str = "__Host-tessera_session";

/// Shared by every request. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The use cases.
    pub services: Services,
    /// The configuration.
    pub settings: Arc<Settings>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// The per-address limit on unauthenticated endpoints, when on.
    pub client_limiter: Option<Arc<ClientRateLimiter>>,
    /// Poked after a change enqueued a notification, so the outbox worker delivers at once.
    pub outbox_wake: Arc<Notify>,
    /// The OpenAPI document, rendered once at start-up.
    pub openapi_json: Arc<String>,
}

impl AppState {
    /// The session cookie's name.
    pub fn cookie_name(&self) -> &'static str {
        if self.settings.is_https() {
            SESSION_COOKIE_HTTPS
        } else {
            SESSION_COOKIE
        }
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}
