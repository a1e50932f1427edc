//! The page forms without a browser: CSRF tokens and cross-site posts.

use crate::support::app::{PASSWORD, TestApp};
use reqwest::StatusCode;
use serde_json::Value;

#[tokio::test]
async fn signed_in_forms_need_the_session_csrf_token() {
    let app = TestApp::spawn().await;
    let (_, token) = app.signed_in_user("ann@example.com").await;
    let me: Value = app.get_json("/api/v1/me", Some(&token)).await;
    let csrf = me["csrf_token"].as_str().unwrap().to_owned();
    let cookie = format!("tessera_session={token}");
    let post = |path: &'static str, form: Vec<(&'static str, String)>| {
        app.client
            .post(app.url(path))
            .header("cookie", cookie.clone())
            .form(&form)
            .send()
    };
    let change = |csrf: String| {
        vec![
            ("csrf_token", csrf),
            ("current_password", PASSWORD.to_owned()),
            ("new_password", "maple-harbor-quartz-socket".to_owned()),
        ]
    };
    for forged in [
        String::new(),
        "forged".to_owned(),
        csrf[..csrf.len() - 1].to_owned(),
    ] {
        let response = post("/settings/security/password", change(forged))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let response = post("/logout", vec![("csrf_token", "nope".to_owned())])
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
    }
    assert_eq!(
        app.get("/api/v1/me", Some(&token)).await.status(),
        StatusCode::OK,
        "still signed in"
    );
    let response = post("/settings/security/password", change(csrf.clone()))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        response.headers()["location"],
        "/settings/security?done=password"
    );
    let response = post("/logout", vec![("csrf_token", csrf)]).await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        app.get("/api/v1/me", Some(&token)).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn sign_in_and_sign_up_forms_refuse_cross_site_posts() {
    let app = TestApp::spawn().await;
    app.sign_up("ann@example.com", PASSWORD).await;
    let form = [("email", "ann@example.com"), ("password", PASSWORD)];
    for (header, value) in [
        ("sec-fetch-site", "cross-site"),
        ("origin", "https://evil.example"),
    ] {
        let response = app
            .client
            .post(app.url("/login"))
            .header(header, value)
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{header}");
        assert!(response.headers().get("set-cookie").is_none());
        let response = app
            .client
            .post(app.url("/signup"))
            .header(header, value)
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{header}");
    }
    let response = app
        .client
        .post(app.url("/login"))
        .header("sec-fetch-site", "same-origin")
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        cookie.starts_with("tessera_session=")
            && cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
}

#[tokio::test]
async fn signing_in_again_in_the_browser_replaces_its_session() {
    let app = TestApp::spawn().await;
    let (_, first) = app.signed_in_user("ann@example.com").await;
    let form = [("email", "ann@example.com"), ("password", PASSWORD)];
    let response = app
        .client
        .post(app.url("/login"))
        .header("cookie", format!("tessera_session={first}"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        app.get("/api/v1/me", Some(&first)).await.status(),
        StatusCode::UNAUTHORIZED,
        "the old session ended"
    );
}

#[tokio::test]
async fn malformed_forms_get_a_400_page() {
    let app = TestApp::spawn().await;
    for path in ["/login", "/signup"] {
        let response = app
            .client
            .post(app.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(vec![0xff, 0xfe, b'=', 0x80])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{path}");
    }
}
