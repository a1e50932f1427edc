//! Prometheus metrics: requests and latency by route, sign-in outcomes, the outbox.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicI64;
use tessera_core::Error;

/// Labels of request metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// HTTP method.
    pub method: String,
    /// The matched route pattern (never the raw path, which may hold ids).
    pub route: String,
    /// Status code.
    pub status: u16,
}

/// Labels of latency metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LatencyLabels {
    /// HTTP method.
    pub method: String,
    /// The matched route pattern.
    pub route: String,
}

/// Labels of sign-in outcomes.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `authenticated`, `invalid_credentials`, `rate_limited`, `invalid_request`, `error`.
    pub outcome: String,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms to about 16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Every metric the server exports.
pub struct Metrics {
    registry: Registry,
    /// Requests by route and status.
    pub requests: Family<RouteLabels, Counter>,
    /// Latency by route.
    pub latency: Family<LatencyLabels, Histogram, fn() -> Histogram>,
    /// Sign-in outcomes.
    pub signins: Family<OutcomeLabels, Counter>,
    /// Messages waiting in the outbox (set at scrape time).
    pub outbox_backlog: Gauge<i64, AtomicI64>,
    /// Messages delivered.
    pub outbox_delivered: Counter,
    /// Messages given up on.
    pub outbox_failed: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("tessera");
        let requests = Family::<RouteLabels, Counter>::default();
        let latency = Family::<LatencyLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        let signins = Family::<OutcomeLabels, Counter>::default();
        let outbox_backlog = Gauge::<i64, AtomicI64>::default();
        let outbox_delivered = Counter::default();
        let outbox_failed = Counter::default();
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            latency.clone(),
        );
        registry.register(
            "signins",
            "Password sign-in attempts by outcome",
            signins.clone(),
        );
        registry.register(
            "outbox_backlog",
            "Notifications waiting for delivery",
            outbox_backlog.clone(),
        );
        registry.register(
            "outbox_delivered",
            "Notifications delivered",
            outbox_delivered.clone(),
        );
        registry.register(
            "outbox_failed",
            "Notifications given up on after retrying for a day",
            outbox_failed.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            signins,
            outbox_backlog,
            outbox_delivered,
            outbox_failed,
        }
    }
}

impl Metrics {
    /// Counts the outcome of one password sign-in.
    pub fn record_signin<T>(&self, result: &Result<T, Error>) {
        let outcome = match result {
            Ok(_) => "authenticated",
            Err(
                error @ (Error::InvalidCredentials
                | Error::RateLimited { .. }
                | Error::InvalidRequest(_)),
            ) => error.code(),
            Err(_) => "error",
        };
        self.signins
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
