//! Faults: a lost database fails closed; shutdown lets in-flight requests finish.

use crate::support::app::{
    Backend, PASSWORD, TestApp, assert_error, drop_postgres, fresh_postgres,
};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn losing_the_database_fails_closed() {
    let Some(url) = fresh_postgres().await else {
        return;
    };
    let app = TestApp::builder()
        .backend(Backend::Postgres(url.clone()))
        .start()
        .await;
    let (email, token) = app.signed_in_user("ann@example.com").await;
    assert_eq!(app.get("/readyz", None).await.status(), StatusCode::OK);

    drop_postgres(&url).await;

    assert_error(
        app.get("/readyz", None).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
    )
    .await;
    let response = app
        .post(
            "/api/v1/sessions",
            None,
            json!({"email": email, "password": PASSWORD}),
        )
        .await;
    assert_error(response, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
    assert_error(
        app.get("/api/v1/me", Some(&token)).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
    )
    .await;
    let page = app
        .client
        .get(app.url("/settings/security"))
        .header("cookie", format!("tessera_session={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(page.headers().get("set-cookie").is_none());
    app.stop().await;
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish() {
    let app = TestApp::spawn().await;
    app.sign_up("ann@example.com", PASSWORD).await;
    // Sign-ins queue for the hashing pool, so most are still in flight when the first answers.
    // (Fewer than ten: more parallel password checks of one account would trip its lock.)
    let mut pending = Vec::new();
    for _ in 0..8 {
        let request = app
            .client
            .post(app.url("/api/v1/sessions"))
            .json(&json!({"email": "ann@example.com", "password": PASSWORD}))
            .send();
        pending.push(tokio::spawn(request));
    }
    let mut pending = futures::future::select_all(pending).await;
    assert_eq!(pending.0.unwrap().unwrap().status(), StatusCode::CREATED);
    let stopping = tokio::spawn(app.stop());
    for request in pending.2.drain(..) {
        assert_eq!(
            request.await.unwrap().unwrap().status(),
            StatusCode::CREATED
        );
    }
    stopping.await.unwrap();
}

#[tokio::test]
async fn an_instance_with_other_keys_refuses_the_database() {
    let app = TestApp::spawn().await;
    app.sign_up("ann@example.com", PASSWORD).await;
    let dir = app.stop().await;
    // A data directory restored without its keys: new keys would be generated...
    std::fs::remove_dir_all(dir.path().join("keys")).unwrap();
    let settings = tessera_server::config::Settings {
        listen: "127.0.0.1:0".into(),
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    let clock = std::sync::Arc::new(tessera_core::clock::SystemClock);
    let error = tessera_server::server::start(settings, clock, Default::default())
        .await
        .unwrap_err();
    // ...but the database remembers the keys it was set up with, and nobody is let in.
    assert!(
        format!("{error:#}").contains("not the keys this database was set up with"),
        "{error:#}"
    );
}
