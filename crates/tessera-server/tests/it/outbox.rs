//! The transactional outbox end to end: a notification committed while no worker runs (the
//! process "killed" before delivery) is delivered exactly once by the next start, to a real
//! SMTP server.

use crate::support::app::{NEW_PASSWORD, PASSWORD, TestApp};
use crate::support::smtp::SmtpSink;
use reqwest::StatusCode;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn a_message_committed_before_a_crash_is_delivered_once_after_restart() {
    let smtp = SmtpSink::start().await;
    let first = TestApp::builder()
        .smtp(smtp.url())
        .outbox_worker(false)
        .start()
        .await;
    let (_, token) = first.signed_in_user("ann@example.com").await;
    let response = first
        .post(
            "/api/v1/me/password",
            Some(&token),
            json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let clock = first.clock.clone();
    let dir = first.stop().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        smtp.messages().len(),
        0,
        "nothing is delivered without a worker"
    );

    let second = TestApp::builder()
        .smtp(smtp.url())
        .data_dir(dir)
        .clock(clock)
        .start()
        .await;
    let messages = smtp.wait_for(2, Duration::from_secs(10)).await;
    let subjects: Vec<String> = messages
        .iter()
        .map(|m| m.header("Subject").unwrap_or_default())
        .collect();
    assert!(
        subjects
            .iter()
            .any(|s| s.to_lowercase().contains("password")),
        "{subjects:?}"
    );
    assert!(
        messages
            .iter()
            .all(|m| m.to.iter().any(|to| to.contains("ann@example.com")))
    );
    // Exactly once: nothing more arrives.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        smtp.messages().len(),
        2,
        "welcome + password changed, once each"
    );
    second.stop().await;
}
