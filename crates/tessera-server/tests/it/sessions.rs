//! Password sign-in, sessions, the throttle, re-auth, password change and events.

use crate::support::app::{
    Backend, NEW_PASSWORD, PASSWORD, TestApp, assert_error, drop_postgres, fresh_postgres,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use time::Duration;
use time::format_description::well_known::Rfc3339;

async fn sign_in_flow(app: &TestApp) {
    app.sign_up("ann@example.com", PASSWORD).await;
    let response = app
        .post(
            "/api/v1/sessions",
            None,
            json!({"email": "ANN@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "authenticated");
    assert_eq!(body["amr"], json!(["pwd"]));
    assert_eq!(body["expires_at"], "2026-01-05T21:00:00Z");
    let token = body["session_token"].as_str().unwrap();
    assert_eq!(token.len(), 43);

    let me: Value = app.get_json("/api/v1/me", Some(token)).await;
    assert_eq!(me["user"]["email"], "ann@example.com");
    assert!(me["csrf_token"].as_str().unwrap().len() >= 40);
    assert_eq!(me["mfa"]["enabled"], false);
    assert_eq!(
        me["reauth_until"], "2026-01-05T09:10:00Z",
        "a password sign-in opens the re-auth window"
    );

    // Two sign-ins, two different tokens.
    let second = app.sign_in("ann@example.com", PASSWORD).await;
    assert_ne!(second, token);

    let sessions: Value = app.get_json("/api/v1/sessions", Some(token)).await;
    let sessions = sessions["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions.iter().filter(|s| s["current"] == true).count(), 1);
    assert_eq!(sessions[0]["user_agent"], "tessera-tests/1.0");
    assert_eq!(sessions[0]["ip"], "127.0.0.1");
    assert_eq!(sessions[0]["amr"], json!(["pwd"]));
}

#[tokio::test]
async fn password_sign_in_on_sqlite() {
    let app = TestApp::spawn().await;
    sign_in_flow(&app).await;
}

#[tokio::test]
async fn password_sign_in_on_postgres() {
    let Some(url) = fresh_postgres().await else {
        return;
    };
    let app = TestApp::builder()
        .backend(Backend::Postgres(url.clone()))
        .start()
        .await;
    sign_in_flow(&app).await;
    app.stop().await;
    drop_postgres(&url).await;
}

#[tokio::test]
async fn unknown_emails_and_wrong_passwords_get_the_same_answer() {
    let app = TestApp::spawn().await;
    app.sign_up("ann@example.com", PASSWORD).await;
    let wrong = app
        .post(
            "/api/v1/sessions",
            None,
            json!({"email": "ann@example.com", "password": "not-the-password"}),
        )
        .await;
    let unknown = app
        .post(
            "/api/v1/sessions",
            None,
            json!({"email": "nobody@example.com", "password": PASSWORD}),
        )
        .await;
    let a = assert_error(wrong, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    let b = assert_error(unknown, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    assert_eq!(a, b);
}

#[tokio::test]
async fn ten_wrong_passwords_lock_the_account_with_backoff() {
    let app = TestApp::spawn().await;
    app.sign_up("ann@example.com", PASSWORD).await;
    let wrong = json!({"email": "ann@example.com", "password": "wrong-password-here"});
    let right = json!({"email": "ann@example.com", "password": PASSWORD});
    for _ in 0..10 {
        let response = app.post("/api/v1/sessions", None, wrong.clone()).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    // Locked: even the right password is refused, with Retry-After.
    let response = app.post("/api/v1/sessions", None, right.clone()).await;
    assert_eq!(response.headers()["retry-after"], "30");
    assert_error(response, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;

    // After the lock, another wrong password doubles it.
    app.clock.advance(Duration::seconds(30));
    assert_eq!(
        app.post("/api/v1/sessions", None, wrong.clone())
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let response = app.post("/api/v1/sessions", None, right.clone()).await;
    assert_eq!(response.headers()["retry-after"], "60");
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);

    // Backoff is capped at 15 minutes.
    for _ in 0..10 {
        app.clock.advance(Duration::minutes(16));
        assert_eq!(
            app.post("/api/v1/sessions", None, wrong.clone())
                .await
                .status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let response = app.post("/api/v1/sessions", None, right.clone()).await;
    assert_eq!(response.headers()["retry-after"], "900");

    // A correct password after the lock resets the count: one wrong one no longer locks.
    app.clock.advance(Duration::minutes(15));
    assert_eq!(
        app.post("/api/v1/sessions", None, right.clone())
            .await
            .status(),
        StatusCode::CREATED
    );
    assert_eq!(
        app.post("/api/v1/sessions", None, wrong.clone())
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.post("/api/v1/sessions", None, right).await.status(),
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn sessions_end_when_idle_and_at_their_absolute_lifetime() {
    let app = TestApp::spawn().await;
    let (_, token) = app.signed_in_user("ann@example.com").await;
    app.clock.advance(Duration::minutes(29));
    assert_eq!(
        app.get("/api/v1/me", Some(&token)).await.status(),
        StatusCode::OK
    );
    app.clock.advance(Duration::minutes(29));
    assert_eq!(
        app.get("/api/v1/me", Some(&token)).await.status(),
        StatusCode::OK,
        "use resets the idle timer"
    );
    app.clock.advance(Duration::minutes(30));
    assert_error(
        app.get("/api/v1/me", Some(&token)).await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    )
    .await;

    let token = app.sign_in("ann@example.com", PASSWORD).await;
    for _ in 0..(12 * 60 / 20 - 1) {
        app.clock.advance(Duration::minutes(20));
        assert_eq!(
            app.get("/api/v1/me", Some(&token)).await.status(),
            StatusCode::OK
        );
    }
    app.clock.advance(Duration::minutes(20));
    assert_error(
        app.get("/api/v1/me", Some(&token)).await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    )
    .await;
}

#[tokio::test]
async fn last_seen_is_written_at_most_once_a_minute() {
    let app = TestApp::spawn().await;
    let (_, token) = app.signed_in_user("ann@example.com").await;
    let last_seen = |body: Value| {
        body["sessions"][0]["last_seen_at"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    app.clock.advance(Duration::seconds(30));
    let seen = last_seen(app.get_json("/api/v1/sessions", Some(&token)).await);
    assert_eq!(seen, "2026-01-05T09:00:00Z");
    app.clock.advance(Duration::seconds(31));
    app.get("/api/v1/me", Some(&token)).await;
    let seen = last_seen(app.get_json("/api/v1/sessions", Some(&token)).await);
    assert_eq!(seen, "2026-01-05T09:01:01Z");
}

#[tokio::test]
async fn revoking_and_signing_out_end_sessions() {
    let app = TestApp::spawn().await;
    let (email, laptop) = app.signed_in_user("ann@example.com").await;
    let phone = app.sign_in(&email, PASSWORD).await;
    let sessions: Value = app.get_json("/api/v1/sessions", Some(&laptop)).await;
    let phone_id = sessions["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["current"] == false)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Someone else cannot revoke it.
    let (_, mallory) = app.signed_in_user("mallory@example.com").await;
    let response = app
        .delete(&format!("/api/v1/sessions/{phone_id}"), Some(&mallory))
        .await;
    assert_error(response, StatusCode::NOT_FOUND, "not_found").await;
    assert_eq!(
        app.get("/api/v1/me", Some(&phone)).await.status(),
        StatusCode::OK
    );

    let response = app
        .delete(&format!("/api/v1/sessions/{phone_id}"), Some(&laptop))
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_error(
        app.get("/api/v1/me", Some(&phone)).await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    )
    .await;

    let response = app.delete("/api/v1/sessions/current", Some(&laptop)).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_error(
        app.get("/api/v1/me", Some(&laptop)).await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    )
    .await;

    let token = app.sign_in(&email, PASSWORD).await;
    let kinds = app.event_kinds(&token).await;
    assert_eq!(
        &kinds[..3],
        ["signin_succeeded", "signout", "session_revoked"]
    );
}

#[tokio::test]
async fn reauth_opens_a_ten_minute_window_and_wrong_passwords_count() {
    let app = TestApp::spawn().await;
    let (email, token) = app.signed_in_user("ann@example.com").await;
    app.clock.advance(Duration::minutes(20));
    let me: Value = app.get_json("/api/v1/me", Some(&token)).await;
    assert!(
        me.get("reauth_until").is_none(),
        "the sign-in window has closed"
    );

    let response = app
        .post(
            "/api/v1/reauth",
            Some(&token),
            json!({"password": "wrong-password-here"}),
        )
        .await;
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    let response = app
        .post(
            "/api/v1/reauth",
            Some(&token),
            json!({"password": PASSWORD}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["reauth_until"], "2026-01-05T09:30:00Z");

    // Wrong re-auth passwords lock password sign-in like wrong sign-ins do.
    for _ in 0..10 {
        app.post(
            "/api/v1/reauth",
            Some(&token),
            json!({"password": "wrong-password-here"}),
        )
        .await;
    }
    let response = app
        .post(
            "/api/v1/sessions",
            None,
            json!({"email": email, "password": PASSWORD}),
        )
        .await;
    assert_error(response, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
}

#[tokio::test]
async fn changing_the_password_signs_out_other_sessions_and_emails_the_user() {
    let app = TestApp::spawn().await;
    let (email, token) = app.signed_in_user("ann@example.com").await;
    let other = app.sign_in(&email, PASSWORD).await;

    let response = app
        .post(
            "/api/v1/me/password",
            Some(&token),
            json!({"current_password": "wrong-password-here", "new_password": NEW_PASSWORD}),
        )
        .await;
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    let response = app
        .post(
            "/api/v1/me/password",
            Some(&token),
            json!({"current_password": PASSWORD, "new_password": "password1"}),
        )
        .await;
    assert_error(response, StatusCode::BAD_REQUEST, "weak_password").await;

    let response = app
        .post(
            "/api/v1/me/password",
            Some(&token),
            json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.get("/api/v1/me", Some(&token)).await.status(),
        StatusCode::OK,
        "this session stays"
    );
    assert_error(
        app.get("/api/v1/me", Some(&other)).await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    )
    .await;
    let response = app
        .post(
            "/api/v1/sessions",
            None,
            json!({"email": email, "password": PASSWORD}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    app.sign_in(&email, NEW_PASSWORD).await;

    let events: Value = app.get_json("/api/v1/me/events", Some(&token)).await;
    let changed = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "password_changed")
        .unwrap();
    assert_eq!(changed["details"]["sessions_revoked"], 1);

    // The notification reaches the dev outbox (no SMTP configured).
    let mail = crate::support::wait_for_outbox_email(&app.outbox_dir(), "password").await;
    assert!(mail.contains("To: ann@example.com"), "{mail}");
}

#[tokio::test]
async fn events_page_newest_first() {
    let app = TestApp::spawn().await;
    let (email, token) = app.signed_in_user("ann@example.com").await;
    for _ in 0..4 {
        app.sign_in(&email, PASSWORD).await;
    }
    let page: Value = app
        .get_json("/api/v1/me/events?limit=2", Some(&token))
        .await;
    let page = page["events"].as_array().unwrap();
    assert_eq!(page.len(), 2);
    let last_id = page[1]["id"].as_str().unwrap();
    assert!(
        page[0]["id"].as_str().unwrap().parse::<i64>().unwrap() > last_id.parse::<i64>().unwrap()
    );
    let rest: Value = app
        .get_json(&format!("/api/v1/me/events?before={last_id}"), Some(&token))
        .await;
    let rest = rest["events"].as_array().unwrap();
    assert_eq!(rest.len(), 4, "3 more sign-ins and account_created");
    assert_eq!(rest.last().unwrap()["kind"], "account_created");
    let at = rest[0]["at"].as_str().unwrap();
    assert!(time::OffsetDateTime::parse(at, &Rfc3339).is_ok());
}

#[tokio::test]
async fn cookie_authenticated_changes_need_the_csrf_token() {
    let app = TestApp::spawn().await;
    let (_, token) = app.signed_in_user("ann@example.com").await;
    let me: Value = app.get_json("/api/v1/me", Some(&token)).await;
    let csrf = me["csrf_token"].as_str().unwrap();
    let cookie = format!("tessera_session={token}");
    let without = app
        .client
        .request(Method::POST, app.url("/api/v1/reauth"))
        .header("cookie", &cookie)
        .json(&json!({"password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_error(without, StatusCode::FORBIDDEN, "forbidden").await;
    let with = app
        .client
        .request(Method::POST, app.url("/api/v1/reauth"))
        .header("cookie", &cookie)
        .header("x-csrf-token", csrf)
        .json(&json!({"password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(with.status(), StatusCode::OK);
    // Reading needs no token.
    let read = app
        .client
        .get(app.url("/api/v1/me"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), StatusCode::OK);
}

/// Parallel guesses cannot get more than the limit evaluated: the attempt is counted before the
/// password is hashed, and the tenth sets the lock at once.
#[tokio::test]
async fn parallel_wrong_passwords_cannot_exceed_the_limit() {
    let app = TestApp::spawn().await;
    app.sign_up("ann@example.com", PASSWORD).await;
    let mut guesses = Vec::new();
    for i in 0..50 {
        let request = app
            .client
            .post(app.url("/api/v1/sessions"))
            .json(
                &json!({"email": "ann@example.com", "password": format!("wrong-guess-number-{i}")}),
            )
            .send();
        guesses.push(tokio::spawn(request));
    }
    let (mut evaluated, mut refused) = (0, 0);
    for guess in guesses {
        match guess.await.unwrap().unwrap().status() {
            StatusCode::UNAUTHORIZED => evaluated += 1,
            StatusCode::TOO_MANY_REQUESTS => refused += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!((evaluated, refused), (10, 40));
    let response = app
        .post(
            "/api/v1/sessions",
            None,
            json!({"email": "ann@example.com", "password": PASSWORD}),
        )
        .await;
    assert_error(response, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
}

/// An unknown email is counted and locked like an account, so 429s do not reveal which
/// addresses have accounts.
#[tokio::test]
async fn unknown_emails_are_throttled_like_accounts() {
    let app = TestApp::spawn().await;
    app.sign_up("ann@example.com", PASSWORD).await;
    for email in ["ann@example.com", "nobody@example.com"] {
        for _ in 0..10 {
            let response = app
                .post(
                    "/api/v1/sessions",
                    None,
                    json!({"email": email, "password": "wrong-password-x"}),
                )
                .await;
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        }
        let response = app
            .post(
                "/api/v1/sessions",
                None,
                json!({"email": email, "password": "wrong-password-x"}),
            )
            .await;
        assert_eq!(response.headers()["retry-after"], "30", "{email}");
        assert_error(response, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    }
}
