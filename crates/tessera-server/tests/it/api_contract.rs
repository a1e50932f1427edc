//! The contract every endpoint keeps: the error envelope for bad input, 401 without a session on
//! every non-public route (walking the published routes), 404/405 envelopes, security headers.

use crate::support::app::{PASSWORD, TestApp, assert_error};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tessera_server::api::PUBLIC_PATHS;

/// Sends a raw body with a content type.
async fn raw(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    content_type: &str,
    body: Vec<u8>,
) -> reqwest::Response {
    let mut request = app
        .client
        .request(method, app.url(path))
        .header("content-type", content_type)
        .body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn bad_bodies_get_a_400_envelope_on_every_json_endpoint() {
    let app = TestApp::spawn().await;
    let (_, token) = app.signed_in_user("ann@example.com").await;
    let long = "a".repeat(5000);
    // (path, needs session, a table of bad bodies)
    let endpoints: Vec<(&str, bool, Vec<Value>)> = vec![
        (
            "/api/v1/accounts",
            false,
            vec![
                json!({}),
                json!({"email": "ann2@example.com"}),
                json!({"password": PASSWORD}),
                json!({"email": 42, "password": PASSWORD}),
                json!({"email": "ann2@example.com", "password": ["x"]}),
                json!({"email": "ann2@example.com", "password": PASSWORD, "admin": true}),
                json!({"email": "not-an-email", "password": PASSWORD}),
                json!({"email": format!("{long}@example.com"), "password": PASSWORD}),
                json!({"email": "ann2@example.com", "password": PASSWORD, "display_name": long}),
                json!({"email": "ann2@example.com", "password": PASSWORD, "display_name": "bell\u{7}"}),
                json!([1, 2, 3]),
                json!("string"),
                json!(null),
            ],
        ),
        (
            "/api/v1/sessions",
            false,
            vec![
                json!({}),
                json!({"email": "ann@example.com"}),
                json!({"email": null, "password": PASSWORD}),
                json!({"email": "ann@example.com", "password": PASSWORD, "remember": true}),
                json!({"email": "ann@example.com", "password": "x".repeat(2000)}),
                json!({"email": "@@", "password": PASSWORD}),
            ],
        ),
        (
            "/api/v1/reauth",
            true,
            vec![
                json!({}),
                json!({"password": 12345678}),
                json!({"password": PASSWORD, "extra": 1}),
                json!({"password": "x".repeat(2000)}),
            ],
        ),
        (
            "/api/v1/me/password",
            true,
            vec![
                json!({}),
                json!({"current_password": PASSWORD}),
                json!({"new_password": "maple-harbor-quartz-socket"}),
                json!({"current_password": PASSWORD, "new_password": false}),
                json!({"current_password": PASSWORD, "new_password": "maple-harbor-quartz-socket", "x": 1}),
                json!({"current_password": PASSWORD, "new_password": "y".repeat(1025)}),
            ],
        ),
    ];
    for (path, needs_session, bodies) in endpoints {
        let token = needs_session.then_some(token.as_str());
        for body in bodies {
            let response = app.post(path, token, body.clone()).await;
            let status = response.status();
            let text = response.text().await.unwrap();
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {body}: {text}");
            let envelope: Value = serde_json::from_str(&text).unwrap();
            let code = envelope["error"]["code"].as_str().unwrap();
            assert!(
                code == "invalid_request" || code == "weak_password",
                "{path} {body}: {text}"
            );
        }
        for (content_type, bytes, status) in [
            (
                "application/json",
                b"{\"email\": ".to_vec(),
                StatusCode::BAD_REQUEST,
            ),
            (
                "application/json",
                b"{\"email\": \"a\xff\xfe@example.com\", \"password\": \"x\"}".to_vec(),
                StatusCode::BAD_REQUEST,
            ),
            (
                "application/json",
                vec![0xff, 0xfe, 0xfd],
                StatusCode::BAD_REQUEST,
            ),
            (
                "text/plain",
                b"{}".to_vec(),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ),
            (
                "application/json",
                vec![b' '; 70 * 1024],
                StatusCode::PAYLOAD_TOO_LARGE,
            ),
        ] {
            let response = raw(&app, Method::POST, path, token, content_type, bytes).await;
            assert_error(response, status, "invalid_request").await;
        }
    }
}

#[tokio::test]
async fn bad_query_and_path_values_get_envelopes() {
    let app = TestApp::spawn().await;
    let (_, token) = app.signed_in_user("ann@example.com").await;
    for query in [
        "limit=0",
        "limit=201",
        "limit=abc",
        "before=-1",
        "before=x",
        "limit=99999999999999999999",
        "sort=asc",
    ] {
        let response = app
            .get(&format!("/api/v1/me/events?{query}"), Some(&token))
            .await;
        assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
    for id in [
        "not-a-uuid",
        "00000000-0000-0000-0000-000000000000",
        &"9".repeat(300),
    ] {
        let response = app
            .delete(&format!("/api/v1/sessions/{id}"), Some(&token))
            .await;
        assert_error(response, StatusCode::NOT_FOUND, "not_found").await;
    }
}

#[tokio::test]
async fn malformed_credentials_are_unauthenticated() {
    let app = TestApp::spawn().await;
    for header in [
        "Bearer ",
        "Bearer nope",
        "Basic dXNlcjpwYXNz",
        "Bearer \u{00e9}",
        &format!("Bearer {}", "x".repeat(5000)),
    ] {
        let response = app
            .client
            .get(app.url("/api/v1/me"))
            .header("authorization", header.as_bytes())
            .send()
            .await
            .unwrap();
        assert_error(response, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    }
}

/// Every published route that is not public must refuse a request without a session. Routes
/// come from the OpenAPI document, which is built from the router's own registration, so a new
/// route cannot escape this walk.
#[tokio::test]
async fn every_non_public_route_needs_a_session() {
    let app = TestApp::spawn().await;
    let spec: Value = app.get_json("/api/v1/openapi.json", None).await;
    let paths = spec["paths"].as_object().unwrap();
    let mut checked = 0;
    for (path, operations) in paths {
        for method in operations.as_object().unwrap().keys() {
            if !["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                continue;
            }
            if PUBLIC_PATHS.contains(&(method.as_str(), path.as_str())) {
                continue;
            }
            let concrete = path.replace("{id}", "5f0c7a5e-0000-4000-8000-000000000000");
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let response = app
                .request(method.clone(), &concrete, None, Some(json!({})))
                .await;
            assert_error(response, StatusCode::UNAUTHORIZED, "unauthenticated").await;
            checked += 1;
        }
    }
    assert!(checked >= 7, "only {checked} protected routes found");
    // And the public ones really are public.
    for (method, path) in PUBLIC_PATHS {
        assert!(
            paths.contains_key(*path),
            "{path} is listed as public but not routed"
        );
        if *method == "get" {
            assert_eq!(app.get(path, None).await.status(), StatusCode::OK, "{path}");
        }
    }
}

#[tokio::test]
async fn unknown_routes_and_methods_get_envelopes() {
    let app = TestApp::spawn().await;
    assert_error(
        app.get("/api/v1/nope", None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let response = app
        .request(Method::PUT, "/api/v1/accounts", None, Some(json!({})))
        .await;
    assert_error(response, StatusCode::METHOD_NOT_ALLOWED, "invalid_request").await;
    let page = app.get("/no/such/page", None).await;
    assert_eq!(page.status(), StatusCode::NOT_FOUND);
    assert!(page.text().await.unwrap().contains("Not found"));
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let app = TestApp::spawn().await;
    for path in ["/login", "/signup", "/api/v1/me", "/healthz", "/nope"] {
        let response = app.get(path, None).await;
        let headers = response.headers();
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
            "{path}: {csp}"
        );
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        assert_eq!(headers["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
    }
}

#[tokio::test]
async fn operations_endpoints() {
    let app = TestApp::spawn().await;
    let health: Value = app.get_json("/healthz", None).await;
    assert_eq!(health["status"], "ok");
    assert_eq!(app.get("/readyz", None).await.status(), StatusCode::OK);
    app.sign_up("ann@example.com", PASSWORD).await;
    app.sign_in("ann@example.com", PASSWORD).await;
    app.post(
        "/api/v1/sessions",
        None,
        json!({"email": "ann@example.com", "password": "wrong-password-x"}),
    )
    .await;
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    assert!(
        metrics.contains("tessera_signins_total{outcome=\"authenticated\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tessera_signins_total{outcome=\"invalid_credentials\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("tessera_http_requests_total{method=\"POST\",route=\"/api/v1/sessions\",status=\"201\"} 1"), "{metrics}");
    assert!(
        metrics.contains("tessera_http_request_duration_seconds_bucket"),
        "{metrics}"
    );
    assert!(metrics.contains("tessera_outbox_backlog"), "{metrics}");
    let spec: Value = app.get_json("/api/v1/openapi.json", None).await;
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    assert!(spec["paths"]["/api/v1/sessions"]["post"].is_object());
}

#[tokio::test]
async fn the_per_address_limit_protects_unauthenticated_endpoints() {
    let app = TestApp::builder().client_rate_limit(5).start().await;
    let body = json!({"email": "nobody@example.com", "password": "whatever-password"});
    for _ in 0..5 {
        assert_eq!(
            app.post("/api/v1/sessions", None, body.clone())
                .await
                .status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let response = app.post("/api/v1/sessions", None, body.clone()).await;
    assert!(
        response.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    assert_error(response, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // A forged X-Forwarded-For does not buy a new allowance.
    let response = app
        .client
        .post(app.url("/api/v1/sessions"))
        .header("x-forwarded-for", "198.51.100.77")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    // Authenticated endpoints are not behind this limit.
    assert_eq!(app.get("/healthz", None).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn forwarded_for_is_believed_only_from_trusted_proxies() {
    let app = TestApp::builder()
        .client_rate_limit(2)
        .trusted_proxies(&["127.0.0.1/32"])
        .start()
        .await;
    let body = json!({"email": "nobody@example.com", "password": "whatever-password"});
    let from = |ip: &'static str| {
        app.client
            .post(app.url("/api/v1/sessions"))
            .header("x-forwarded-for", ip)
            .json(&body)
            .send()
    };
    for _ in 0..2 {
        assert_eq!(
            from("203.0.113.1").await.unwrap().status(),
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        from("203.0.113.1").await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        from("203.0.113.2").await.unwrap().status(),
        StatusCode::UNAUTHORIZED,
        "another client behind the proxy"
    );
}
