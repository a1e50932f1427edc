//! Tessera's integration tests: one binary, the real server on 127.0.0.1:0, real peers.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

mod accounts;
mod api_contract;
mod contact;
mod contact_browser;
mod faults;
mod hygiene;
mod mfa;
mod mfa_browser;
mod mfa_interop;
mod notify;
mod orgs;
mod orgs_browser;
mod outbox;
mod pages;
mod redaction;
mod sessions;
mod support;
mod ui_forms;
