//! Secrets never reach the logs: everything logged at TRACE during sign-up, sign-in, failed
//! sign-ins and a password change is captured and searched.

use crate::support::app::{NEW_PASSWORD, PASSWORD, TestApp};
use serde_json::json;
use std::io::Write;
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_secret_is_logged() {
    // nextest runs each test in its own process, so the global subscriber is this test's alone;
    // it sees the server's tasks on every runtime thread.
    let capture = Capture::default();
    let writer = capture.clone();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish(),
    )
    .expect("no other subscriber in this process");

    let app = TestApp::spawn().await;
    let (email, token) = app.signed_in_user("ann@example.com").await;
    app.post(
        "/api/v1/sessions",
        None,
        json!({"email": email, "password": "wrong-secret-password"}),
    )
    .await;
    app.post(
        "/api/v1/reauth",
        Some(&token),
        json!({"password": PASSWORD}),
    )
    .await;
    app.post(
        "/api/v1/me/password",
        Some(&token),
        json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD}),
    )
    .await;
    crate::support::wait_for_outbox_email(&app.outbox_dir(), "password").await;
    app.stop().await;

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("signed in"),
        "sanity: the logs were captured:\n{logs}"
    );
    for secret in [
        PASSWORD,
        NEW_PASSWORD,
        "wrong-secret-password",
        token.as_str(),
    ] {
        assert!(!logs.contains(secret), "a secret was logged:\n{logs}");
    }
}
