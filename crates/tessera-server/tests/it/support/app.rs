//! `TestApp`: the real server on 127.0.0.1:0 with its own data directory and database, a fixed
//! clock, and an HTTP client.

use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use tempfile::TempDir;
use tessera_core::clock::FixedClock;
use tessera_server::config::{Settings, SignupMode};
use tessera_server::server::{self, RunningServer, StartOptions};
use time::macros::datetime;

/// A password the policy accepts.
pub const PASSWORD: &str = "glacier-otter-lantern-97";
/// Another one.
pub const NEW_PASSWORD: &str = "maple-harbor-quartz-socket";

/// Which database a test app runs on.
#[derive(Debug, Clone)]
pub enum Backend {
    /// SQLite in the data directory.
    Sqlite,
    /// A fresh PostgreSQL database made for this app.
    Postgres(String),
}

/// Builds a [`TestApp`].
pub struct TestAppBuilder {
    settings: Settings,
    dir: Option<TempDir>,
    clock: Option<Arc<FixedClock>>,
    backend: Backend,
    options: StartOptions,
}

impl TestAppBuilder {
    pub fn signup(mut self, mode: SignupMode) -> Self {
        self.settings.signup = mode;
        self
    }
    pub fn client_rate_limit(mut self, per_minute: u32) -> Self {
        self.settings.client_rate_limit = per_minute;
        self
    }
    pub fn smtp(mut self, url: String) -> Self {
        self.settings.smtp_url = Some(url);
        self
    }
    /// `TESSERA_SMS_WEBHOOK_URL`.
    pub fn sms_webhook(mut self, url: String) -> Self {
        self.settings.sms_webhook_url = Some(url);
        self
    }
    pub fn trusted_proxies(mut self, proxies: &[&str]) -> Self {
        self.settings.trusted_proxies = proxies.iter().map(|p| p.parse().unwrap()).collect();
        self
    }
    /// `mfa.allow_disable`.
    pub fn mfa_allow_disable(mut self, allow: bool) -> Self {
        self.settings.mfa.allow_disable = allow;
        self
    }
    /// `mfa.allowed_methods`.
    pub fn mfa_allowed_methods(mut self, allowed: tessera_core::factor::AllowedMethods) -> Self {
        self.settings.mfa.allowed_methods = allowed;
        self
    }
    pub fn outbox_worker(mut self, on: bool) -> Self {
        self.options.outbox_worker = on;
        self
    }
    /// Reuses a data directory (and so the SQLite database and keys) of an earlier app.
    pub fn data_dir(mut self, dir: TempDir) -> Self {
        self.dir = Some(dir);
        self
    }
    pub fn clock(mut self, clock: Arc<FixedClock>) -> Self {
        self.clock = Some(clock);
        self
    }
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    pub async fn start(self) -> TestApp {
        let dir = self.dir.unwrap_or_else(|| tempfile::tempdir().unwrap());
        let clock = self
            .clock
            .unwrap_or_else(|| Arc::new(FixedClock::at(datetime!(2026-01-05 09:00 UTC))));
        let mut settings = self.settings;
        settings.data_dir = dir.path().to_path_buf();
        if let Backend::Postgres(url) = &self.backend {
            settings.database_url = Some(url.clone());
        }
        let running = server::start(settings, clock.clone(), self.options)
            .await
            .expect("server starts");
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("tessera-tests/1.0")
            .build()
            .unwrap();
        TestApp {
            base: format!("http://{}", running.addr),
            server: Some(running),
            client,
            clock,
            dir,
        }
    }
}

/// A running server for one test.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub clock: Arc<FixedClock>,
    pub dir: TempDir,
    server: Option<RunningServer>,
}

impl TestApp {
    pub fn builder() -> TestAppBuilder {
        let settings = Settings {
            listen: "127.0.0.1:0".into(),
            client_rate_limit: 0,
            ..Settings::default()
        };
        TestAppBuilder {
            settings,
            dir: None,
            clock: None,
            backend: Backend::Sqlite,
            options: StartOptions::default(),
        }
    }

    pub async fn spawn() -> Self {
        Self::builder().start().await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// The services of the running server (to run periodic work at a chosen instant).
    pub fn services(&self) -> &tessera_core::service::Services {
        &self
            .server
            .as_ref()
            .expect("server is running")
            .state
            .services
    }

    pub fn outbox_dir(&self) -> PathBuf {
        self.dir.path().join("outbox")
    }

    /// Stops the server and hands back its data directory.
    pub async fn stop(mut self) -> TempDir {
        if let Some(server) = self.server.take() {
            server.shutdown().await.unwrap();
        }
        self.dir
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Response {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        self.request(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Response {
        self.request(Method::POST, path, token, Some(body)).await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> Response {
        self.request(Method::DELETE, path, token, None).await
    }

    /// GETs `path` and decodes the JSON body.
    pub async fn get_json(&self, path: &str, token: Option<&str>) -> Value {
        self.get(path, token).await.json().await.unwrap()
    }

    /// The kinds of the user's security events, newest first.
    pub async fn event_kinds(&self, token: &str) -> Vec<String> {
        let events = self.get_json("/api/v1/me/events", Some(token)).await;
        events["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Creates an account and returns its JSON.
    pub async fn sign_up(&self, email: &str, password: &str) -> Value {
        let response = self
            .post(
                "/api/v1/accounts",
                None,
                json!({"email": email, "password": password}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED, "sign-up of {email}");
        response.json().await.unwrap()
    }

    /// Signs in and returns the session token.
    pub async fn sign_in(&self, email: &str, password: &str) -> String {
        let response = self
            .post(
                "/api/v1/sessions",
                None,
                json!({"email": email, "password": password}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED, "sign-in of {email}");
        let body: Value = response.json().await.unwrap();
        body["session_token"].as_str().unwrap().to_owned()
    }

    /// A new account with a session: (email, token).
    pub async fn signed_in_user(&self, email: &str) -> (String, String) {
        self.sign_up(email, PASSWORD).await;
        let token = self.sign_in(email, PASSWORD).await;
        (email.to_owned(), token)
    }
}

/// Asserts a response is the API error envelope with `status` and `code`; returns the message.
pub async fn assert_error(response: Response, status: StatusCode, code: &str) -> String {
    let actual = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = response.text().await.unwrap();
    assert_eq!(actual, status, "body: {text}");
    assert_eq!(
        content_type.as_deref(),
        Some("application/json"),
        "body: {text}"
    );
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    assert_eq!(body["error"]["code"], code, "body: {text}");
    let message = body["error"]["message"]
        .as_str()
        .expect("message")
        .to_owned();
    assert!(!message.is_empty());
    message
}

/// A fresh PostgreSQL database for one test, when `TESSERA_TEST_DATABASE_URL` is set. If the
/// variable is set and the server is unreachable, the test fails; it never skips silently.
pub async fn fresh_postgres() -> Option<String> {
    let Ok(base) = std::env::var("TESSERA_TEST_DATABASE_URL") else {
        eprintln!(
            "TESSERA_TEST_DATABASE_URL is not set: skipping the PostgreSQL variant of this test"
        );
        return None;
    };
    use sqlx::Connection as _;
    let mut admin = sqlx::PgConnection::connect(&base)
        .await
        .expect("TESSERA_TEST_DATABASE_URL must be reachable");
    let name = format!("tessera_it_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap();
    let mut url = url::Url::parse(&base).unwrap();
    url.set_path(&name);
    Some(url.to_string())
}

/// Drops a database made by [`fresh_postgres`], disconnecting its clients.
pub async fn drop_postgres(url: &str) {
    use sqlx::Connection as _;
    let base = std::env::var("TESSERA_TEST_DATABASE_URL").unwrap();
    let name = url::Url::parse(url)
        .unwrap()
        .path()
        .trim_start_matches('/')
        .to_owned();
    let mut admin = sqlx::PgConnection::connect(&base).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
}
