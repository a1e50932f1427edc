//! Tessera's HTTP server: the JSON API (`/api/v1`), the HTML pages, the notification
//! transports and outbox worker, configuration, and start-up.

pub mod api;
pub mod app;
pub mod config;
pub mod keys;
pub mod metrics;
pub mod notify;
pub mod qr;
pub mod ratelimit;
pub mod server;
pub mod state;
pub mod ui;
