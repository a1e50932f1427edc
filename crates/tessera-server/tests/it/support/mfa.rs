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
    let response = app
        .post("/api/v1/me/factors/totp", Some(token), json!({}))
        .await;
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
            .map(|codes| {
                codes
                    .iter()
                    .map(|c| c.as_str().unwrap().to_owned())
                    .collect()
            })
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

// ---------------------------------------------------------------------------------------------
// Helpers for `mfa.rs`: the second step, outcomes of concurrent requests, events, and direct
// access to the database the server runs on.

/// What a response came to: its status, the envelope's error code (if any) and the session
/// token (if one was issued).
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: StatusCode,
    pub code: Option<String>,
    pub message: Option<String>,
    pub token: Option<String>,
    pub retry_after: Option<String>,
    pub body: Value,
}

/// Reads a response into an [`Outcome`]; panics unless it is JSON.
pub async fn outcome(response: reqwest::Response) -> Outcome {
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = response.text().await.unwrap();
    let body: Value =
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text:?}"));
    Outcome {
        status,
        code: body["error"]["code"].as_str().map(str::to_owned),
        message: body["error"]["message"].as_str().map(str::to_owned),
        token: body["session_token"].as_str().map(str::to_owned),
        retry_after,
        body,
    }
}

/// `POST /api/v1/sessions/mfa` with `body` as given.
pub async fn second_step_raw(app: &TestApp, body: Value) -> reqwest::Response {
    app.post("/api/v1/sessions/mfa", None, body).await
}

/// The second step with a TOTP code (any factor).
pub async fn totp_step(app: &TestApp, challenge_token: &str, code: &str) -> reqwest::Response {
    second_step_raw(
        app,
        json!({"challenge_token": challenge_token, "method": "totp", "code": code}),
    )
    .await
}

/// The second step with a backup code.
pub async fn backup_step(app: &TestApp, challenge_token: &str, code: &str) -> reqwest::Response {
    second_step_raw(
        app,
        json!({"challenge_token": challenge_token, "method": "backup_code", "code": code}),
    )
    .await
}

/// The challenge token of a fresh password step.
pub async fn challenge_token(app: &TestApp, email: &str) -> String {
    password_step(app, email).await["challenge_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Signs in with the password and the current code of `secret`; returns the session token.
/// The caller makes sure the current step has not been used yet.
pub async fn sign_in_with_totp(app: &TestApp, email: &str, secret: &[u8]) -> String {
    let challenge = challenge_token(app, email).await;
    let response = totp_step(app, &challenge, &code_at(app, secret, 0)).await;
    let done = outcome(response).await;
    assert_eq!(done.status, StatusCode::CREATED, "{:?}", done.body);
    done.token.unwrap()
}

/// A 6-digit code that is none of `secret`'s codes for steps T−2..T+2.
pub fn wrong_code(app: &TestApp, secret: &[u8]) -> String {
    let near: Vec<String> = (-2..=2).map(|s| code_at(app, secret, s)).collect();
    (0u32..)
        .map(|n| format!("{:06}", (n * 7919 + 13) % 1_000_000))
        .find(|c| !near.contains(c))
        .unwrap()
}

/// The user id behind a session token.
pub async fn user_id(app: &TestApp, token: &str) -> String {
    app.get_json("/api/v1/me", Some(token)).await["user"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The user's security events (newest first), up to 200.
pub async fn events(app: &TestApp, token: &str) -> Vec<Value> {
    let events = app
        .get_json("/api/v1/me/events?limit=200", Some(token))
        .await;
    events["events"].as_array().unwrap().clone()
}

/// How many of the user's events are of `kind`.
pub async fn count_events(app: &TestApp, token: &str, kind: &str) -> usize {
    events(app, token)
        .await
        .iter()
        .filter(|e| e["kind"] == kind)
        .count()
}

/// Direct access to the database a test app runs on (SQLite file or PostgreSQL), through
/// sqlx's `Any` driver with the store's portable `$N` placeholders.
#[derive(Debug, Clone)]
pub struct Db {
    pub url: String,
}

/// A bound value for [`Db`] queries.
#[derive(Debug, Clone)]
pub enum Bind {
    Text(String),
    Bytes(Vec<u8>),
}

impl From<&str> for Bind {
    fn from(value: &str) -> Self {
        Bind::Text(value.to_owned())
    }
}

impl From<&String> for Bind {
    fn from(value: &String) -> Self {
        Bind::Text(value.clone())
    }
}

impl From<Vec<u8>> for Bind {
    fn from(value: Vec<u8>) -> Self {
        Bind::Bytes(value)
    }
}

impl Db {
    /// The SQLite database in the app's data directory.
    pub fn sqlite(app: &TestApp) -> Self {
        Self {
            url: format!("sqlite://{}", app.dir.path().join("tessera.db").display()),
        }
    }

    async fn connect(&self) -> sqlx::AnyConnection {
        use sqlx::Connection as _;
        sqlx::any::install_default_drivers();
        sqlx::AnyConnection::connect(&self.url).await.unwrap()
    }

    fn bind<'q>(
        mut query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
        binds: &'q [Bind],
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
        for bind in binds {
            query = match bind {
                Bind::Text(text) => query.bind(text.as_str()),
                Bind::Bytes(bytes) => query.bind(bytes.as_slice()),
            };
        }
        query
    }

    /// A single integer (e.g. a `COUNT(*)`).
    pub async fn count(&self, sql: &'static str, binds: &[Bind]) -> i64 {
        use sqlx::{Connection as _, Row as _};
        let mut conn = self.connect().await;
        let row = Self::bind(sqlx::query(sql), binds)
            .fetch_one(&mut conn)
            .await
            .unwrap();
        let value: i64 = row.try_get(0).unwrap();
        conn.close().await.unwrap();
        value
    }

    /// A single blob.
    pub async fn bytes(&self, sql: &'static str, binds: &[Bind]) -> Vec<u8> {
        use sqlx::{Connection as _, Row as _};
        let mut conn = self.connect().await;
        let row = Self::bind(sqlx::query(sql), binds)
            .fetch_one(&mut conn)
            .await
            .unwrap();
        let value: Vec<u8> = row.try_get(0).unwrap();
        conn.close().await.unwrap();
        value
    }

    /// Runs a statement; returns the rows it changed.
    pub async fn execute(&self, sql: &'static str, binds: &[Bind]) -> u64 {
        use sqlx::Connection as _;
        let mut conn = self.connect().await;
        let done = Self::bind(sqlx::query(sql), binds)
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        done.rows_affected()
    }
}

/// Copies `<from>/keys/` into `<to>/keys/` (files keep their mode), so a second instance
/// starts with the first one's keys.
pub fn copy_keys(from: &std::path::Path, to: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt as _;
    let target = to.join("keys");
    std::fs::create_dir_all(&target).unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o700)).unwrap();
    for entry in std::fs::read_dir(from.join("keys")).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), target.join(entry.file_name())).unwrap();
        }
    }
}
