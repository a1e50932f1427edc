//! MFA helpers shared by the tests: enrolling an authenticator app over the API and computing
//! codes at the test clock's instant.
//!
//! Codes here come from `tessera-otp`; the test that proves interoperability
//! (`mfa_interop.rs`) computes them with independent implementations instead.

use super::app::{PASSWORD, TestApp};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tessera_otp::{OtpauthUri, TotpParams};

/// An enrolled authenticator app.
#[derive(Debug, Clone)]
pub struct EnrolledTotp {
    pub factor_id: String,
    pub secret: Vec<u8>,
    /// Backup codes returned at the first MFA (empty otherwise).
    pub backup_codes: Vec<String>,
    /// The TOTP step the confirming code was for.
    pub confirmed_at_unix: i64,
}

/// The 6-digit code of `secret` at the app's clock, shifted by `steps` time steps.
pub fn code_at(app: &TestApp, secret: &[u8], steps: i64) -> String {
    let t = app.clock.now_unix() + steps * 30;
    tessera_otp::totp_at(secret, t, TotpParams::STANDARD).expect("non-negative time")
}

/// Extension: the fixed clock as unix seconds.
pub trait UnixNow {
    fn now_unix(&self) -> i64;
}

impl UnixNow for tessera_core::clock::FixedClock {
    fn now_unix(&self) -> i64 {
        use tessera_core::clock::Clock as _;
        self.now().unix_timestamp()
    }
}

/// Starts a TOTP enrollment (the session's re-auth window must be open) and returns the
/// response body.
pub async fn start_totp(app: &TestApp, token: &str) -> Value {
    let response = app.post("/api/v1/me/factors/totp", Some(token), json!({})).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json().await.unwrap()
}

/// Enrolls and confirms an authenticator app with the current code.
pub async fn enable_totp(app: &TestApp, token: &str) -> EnrolledTotp {
    let started = start_totp(app, token).await;
    let uri = OtpauthUri::parse(started["otpauth_uri"].as_str().unwrap()).unwrap();
    let code = code_at(app, &uri.secret, 0);
    let response = app
        .post(
            &format!(
                "/api/v1/me/factors/totp/{}/confirm",
                started["enrollment_id"].as_str().unwrap()
            ),
            Some(token),
            json!({"code": code}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    EnrolledTotp {
        factor_id: body["factor"]["id"].as_str().unwrap().to_owned(),
        secret: uri.secret,
        backup_codes: body["backup_codes"]
            .as_array()
            .map(|codes| codes.iter().map(|c| c.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default(),
        confirmed_at_unix: app.clock.now_unix(),
    }
}

/// Password step for an account with MFA: returns the challenge body.
pub async fn password_step(app: &TestApp, email: &str) -> Value {
    let response = app
        .post(
            "/api/v1/sessions",
            None,
            json!({"email": email, "password": PASSWORD}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "mfa_required");
    body
}

/// A new account with MFA on: (email, session token with an open re-auth window, factor).
pub async fn user_with_totp(app: &TestApp, email: &str) -> (String, EnrolledTotp) {
    let (_, token) = app.signed_in_user(email).await;
    let totp = enable_totp(app, &token).await;
    (token, totp)
}
