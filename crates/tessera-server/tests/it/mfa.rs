//! Authenticator-app MFA and backup codes over real HTTP, on SQLite and PostgreSQL.

use crate::support::app::{TestApp, assert_error};
use crate::support::mfa::{code_at, password_step, user_with_totp};
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn enable_then_sign_in_with_a_totp_code() {
    let app = TestApp::spawn().await;
    let (token, totp) = user_with_totp(&app, "ann@example.com").await;
    assert_eq!(totp.backup_codes.len(), 10);
    let me = app.get_json("/api/v1/me", Some(&token)).await;
    assert_eq!(me["mfa"]["enabled"], true);
    assert_eq!(me["mfa"]["backup_codes"]["remaining"], 10);

    let challenge = password_step(&app, "ann@example.com").await;
    assert_eq!(challenge["preferred_factor_id"], totp.factor_id.as_str());
    assert_eq!(challenge["methods"], json!(["totp", "backup_code"]));
    let challenge_token = challenge["challenge_token"].as_str().unwrap();

    // The confirming code counts: it cannot be the first sign-in code.
    let reused = app
        .post(
            "/api/v1/sessions/mfa",
            None,
            json!({"challenge_token": challenge_token, "method": "totp", "code": code_at(&app, &totp.secret, 0)}),
        )
        .await;
    assert_error(reused, StatusCode::UNAUTHORIZED, "invalid_code").await;

    app.clock.advance(time::Duration::seconds(30));
    let response = app
        .post(
            "/api/v1/sessions/mfa",
            None,
            json!({"challenge_token": challenge_token, "method": "totp", "code": code_at(&app, &totp.secret, 0)}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["amr"], json!(["pwd", "otp", "mfa"]));
}
