//! Sign-up.

use crate::support::app::{PASSWORD, TestApp, assert_error};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tessera_server::config::SignupMode;

#[tokio::test]
async fn sign_up_creates_an_account_and_records_it() {
    let app = TestApp::spawn().await;
    let response = app
        .post(
            "/api/v1/accounts",
            None,
            json!({"email": "Ann@Example.com", "password": PASSWORD, "display_name": "Ann"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["user"]["email"], "Ann@Example.com");
    assert_eq!(body["user"]["display_name"], "Ann");
    assert_eq!(body["user"]["created_at"], "2026-01-05T09:00:00Z");
    assert!(body["user"]["id"].as_str().unwrap().len() >= 32);

    let token = app.sign_in("ann@example.com", PASSWORD).await;
    let kinds = app.event_kinds(&token).await;
    assert_eq!(kinds, ["signin_succeeded", "account_created"]);
}

#[tokio::test]
async fn emails_are_unique_case_insensitively() {
    let app = TestApp::spawn().await;
    app.sign_up("bob@example.com", PASSWORD).await;
    let response = app
        .post(
            "/api/v1/accounts",
            None,
            json!({"email": "BOB@EXAMPLE.COM", "password": PASSWORD}),
        )
        .await;
    let message = assert_error(response, StatusCode::CONFLICT, "conflict").await;
    assert!(message.contains("already exists"), "{message}");
}

#[tokio::test]
async fn weak_passwords_are_refused_with_a_reason() {
    let app = TestApp::spawn().await;
    for (password, expect) in [
        ("short", "at least 8 characters"),
        ("password123", "commonly used"),
        ("aaaaaaaaaaaa", "too easy to guess"),
        ("carol.smith", "based on your email address"),
    ] {
        let response = app
            .post(
                "/api/v1/accounts",
                None,
                json!({"email": "carol.smith@example.com", "password": password}),
            )
            .await;
        let message = assert_error(response, StatusCode::BAD_REQUEST, "weak_password").await;
        assert!(message.contains(expect), "{password}: {message}");
    }
    let response = app
        .post(
            "/api/v1/accounts",
            None,
            json!({"email": "carol@example.com", "password": "x".repeat(1025)}),
        )
        .await;
    assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
}

#[tokio::test]
async fn equivalent_unicode_passwords_match() {
    let app = TestApp::spawn().await;
    // "ﬁ" (U+FB01) is NFKC-equivalent to "fi".
    app.sign_up("dana@example.com", "\u{FB01}ddle-otter-lantern-97")
        .await;
    app.sign_in("dana@example.com", "fiddle-otter-lantern-97")
        .await;
}

#[tokio::test]
async fn closed_sign_up_is_refused() {
    let app = TestApp::builder().signup(SignupMode::Closed).start().await;
    let response = app
        .post(
            "/api/v1/accounts",
            None,
            json!({"email": "eve@example.com", "password": PASSWORD}),
        )
        .await;
    assert_error(response, StatusCode::FORBIDDEN, "signup_disabled").await;
}
