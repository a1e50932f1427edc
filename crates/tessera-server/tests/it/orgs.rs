//! Organizations and MFA policy over real HTTP: permissions of non-members, members, admins
//! and owners on every organization endpoint; forced enrollment (a restricted session on every
//! route until a factor is confirmed) on SQLite and PostgreSQL; grace periods on a fixed clock;
//! the roles filter; allowed methods; disabling under policy; compliance; bad policies.

use crate::mfa::concrete;
use crate::support::app::{Backend, PASSWORD, TestApp, drop_postgres, fresh_postgres};
use crate::support::mfa::{
    Outcome, code_at, enable_totp, outcome, sign_in_with_totp, start_totp, user_id,
};
use crate::support::smtp::{ReceivedMail, SmtpSink};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use time::Duration;

/// A request whose answer is JSON, or an empty 204 (read as `null`).
async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> Outcome {
    let response = app.request(method, path, Some(token), body).await;
    if response.status() == StatusCode::NO_CONTENT {
        assert!(response.text().await.unwrap().is_empty());
        return Outcome {
            status: StatusCode::NO_CONTENT,
            code: None,
            message: None,
            token: None,
            retry_after: None,
            body: Value::Null,
        };
    }
    outcome(response).await
}

async fn sign_in_outcome(app: &TestApp, email: &str) -> Outcome {
    outcome(
        app.post(
            "/api/v1/sessions",
            None,
            json!({"email": email, "password": PASSWORD}),
        )
        .await,
    )
    .await
}

/// An organization "Acme" owned by `owner_token`; returns its id.
async fn create_org(app: &TestApp, owner_token: &str, name: &str) -> String {
    let created = call(
        app,
        Method::POST,
        "/api/v1/orgs",
        owner_token,
        Some(json!({"name": name})),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    assert_eq!(created.body["org"]["role"], "owner");
    created.body["org"]["id"].as_str().unwrap().to_owned()
}

async fn add_member(app: &TestApp, org: &str, token: &str, email: &str, role: &str) -> Outcome {
    call(
        app,
        Method::POST,
        &format!("/api/v1/orgs/{org}/members"),
        token,
        Some(json!({"email": email, "role": role})),
    )
    .await
}

fn policy(required: bool, roles: &[&str], grace: i64, methods: &[&str]) -> Value {
    json!({
        "mfa_required": required,
        "roles": roles,
        "scope": "all",
        "grace_period_hours": grace,
        "allowed_methods": methods,
        "allow_disable": !required,
        "app_mfa_max_age_seconds": null,
    })
}

async fn put_policy(app: &TestApp, org: &str, token: &str, body: Value) -> Outcome {
    call(
        app,
        Method::PUT,
        &format!("/api/v1/orgs/{org}/policy"),
        token,
        Some(body),
    )
    .await
}

const ALL: [&str; 4] = ["totp", "sms", "email", "webauthn"];

/// Starts `builder` on SQLite, or on a fresh PostgreSQL database when `postgres` (`None` when
/// `TESSERA_TEST_DATABASE_URL` is unset: the variant is skipped, saying so).
async fn start(
    builder: crate::support::app::TestAppBuilder,
    postgres: bool,
) -> Option<(TestApp, Option<String>)> {
    if !postgres {
        return Some((builder.start().await, None));
    }
    let Some(url) = fresh_postgres().await else {
        eprintln!("skipping the PostgreSQL variant: TESSERA_TEST_DATABASE_URL is not set");
        return None;
    };
    let app = builder
        .backend(Backend::Postgres(url.clone()))
        .start()
        .await;
    Some((app, Some(url)))
}

async fn finish(app: TestApp, pg: Option<String>) {
    app.stop().await;
    if let Some(url) = pg {
        drop_postgres(&url).await;
    }
}

/// Runs `name(postgres: bool)` as `name::sqlite` and `name::postgres`.
macro_rules! on_both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$name(false).await;
            }

            #[tokio::test]
            async fn postgres() {
                super::$name(true).await;
            }
        }
    };
}

on_both_backends!(every_org_endpoint_checks_who_asks);
on_both_backends!(the_grace_period_counts_from_when_the_requirement_first_applied);
on_both_backends!(factors_the_policy_does_not_allow_count_as_none);
on_both_backends!(an_admin_reset_sends_a_single_use_link_and_completes_only_with_a_new_factor);

async fn every_org_endpoint_checks_who_asks(postgres: bool) {
    let Some((app, pg)) = start(TestApp::builder(), postgres).await else {
        return;
    };
    let (_, owner) = app.signed_in_user("owner@example.com").await;
    let (_, admin) = app.signed_in_user("admin@example.com").await;
    let (_, member) = app.signed_in_user("member@example.com").await;
    let (_, stranger) = app.signed_in_user("stranger@example.com").await;
    let acme = create_org(&app, &owner, "Acme").await;
    let other = create_org(&app, &stranger, "Other").await;
    assert_eq!(
        add_member(&app, &acme, &owner, "admin@example.com", "admin")
            .await
            .status,
        StatusCode::CREATED
    );
    assert_eq!(
        add_member(&app, &acme, &owner, "member@example.com", "member")
            .await
            .status,
        StatusCode::CREATED
    );
    let member_id = user_id(&app, &member).await;
    let owner_id = user_id(&app, &owner).await;
    let admin_id = user_id(&app, &admin).await;

    // Non-members (and members of another organization) learn nothing: 404 everywhere.
    for (method, path, body) in [
        (Method::GET, format!("/api/v1/orgs/{acme}"), None),
        (Method::GET, format!("/api/v1/orgs/{acme}/members"), None),
        (
            Method::POST,
            format!("/api/v1/orgs/{acme}/members"),
            Some(json!({"email": "stranger@example.com", "role": "member"})),
        ),
        (
            Method::PATCH,
            format!("/api/v1/orgs/{acme}/members/{member_id}"),
            Some(json!({"role": "admin"})),
        ),
        (
            Method::DELETE,
            format!("/api/v1/orgs/{acme}/members/{member_id}"),
            None,
        ),
        (
            Method::PUT,
            format!("/api/v1/orgs/{acme}/policy"),
            Some(policy(true, &["member"], 0, &ALL)),
        ),
        (Method::GET, format!("/api/v1/orgs/{acme}/events"), None),
    ] {
        let refused = call(&app, method.clone(), &path, &stranger, body).await;
        assert_eq!(
            refused.status,
            StatusCode::NOT_FOUND,
            "{method} {path}: {:?}",
            refused.body
        );
        assert_eq!(refused.code.as_deref(), Some("not_found"));
    }
    // Acme's owner can do nothing to Other either.
    let cross = put_policy(&app, &other, &owner, policy(true, &["member"], 0, &ALL)).await;
    assert_eq!(cross.status, StatusCode::NOT_FOUND);

    // Members read their organization but manage nothing.
    let read = call(
        &app,
        Method::GET,
        &format!("/api/v1/orgs/{acme}"),
        &member,
        None,
    )
    .await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.body["org"]["role"], "member");
    assert_eq!(read.body["policy"]["mfa_required"], false);
    for (method, path, body) in [
        (Method::GET, format!("/api/v1/orgs/{acme}/members"), None),
        (
            Method::POST,
            format!("/api/v1/orgs/{acme}/members"),
            Some(json!({"email": "stranger@example.com", "role": "member"})),
        ),
        (
            Method::PATCH,
            format!("/api/v1/orgs/{acme}/members/{admin_id}"),
            Some(json!({"role": "member"})),
        ),
        (
            Method::DELETE,
            format!("/api/v1/orgs/{acme}/members/{admin_id}"),
            None,
        ),
        (
            Method::PUT,
            format!("/api/v1/orgs/{acme}/policy"),
            Some(policy(false, &[], 0, &["sms"])),
        ),
        (Method::GET, format!("/api/v1/orgs/{acme}/events"), None),
    ] {
        let refused = call(&app, method.clone(), &path, &member, body).await;
        assert_eq!(
            refused.status,
            StatusCode::FORBIDDEN,
            "{method} {path}: {:?}",
            refused.body
        );
        assert_eq!(refused.code.as_deref(), Some("forbidden"));
    }

    // Admins manage members and the policy, but not owners.
    let list = call(
        &app,
        Method::GET,
        &format!("/api/v1/orgs/{acme}/members"),
        &admin,
        None,
    )
    .await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.body["members"].as_array().unwrap().len(), 3);
    let make_owner = call(
        &app,
        Method::PATCH,
        &format!("/api/v1/orgs/{acme}/members/{member_id}"),
        &admin,
        Some(json!({"role": "owner"})),
    )
    .await;
    assert_eq!(make_owner.status, StatusCode::FORBIDDEN);
    let demote_owner = call(
        &app,
        Method::PATCH,
        &format!("/api/v1/orgs/{acme}/members/{owner_id}"),
        &admin,
        Some(json!({"role": "member"})),
    )
    .await;
    assert_eq!(demote_owner.status, StatusCode::FORBIDDEN);
    let remove_owner = call(
        &app,
        Method::DELETE,
        &format!("/api/v1/orgs/{acme}/members/{owner_id}"),
        &admin,
        None,
    )
    .await;
    assert_eq!(remove_owner.status, StatusCode::FORBIDDEN);
    let add_owner = add_member(&app, &acme, &admin, "stranger@example.com", "owner").await;
    assert_eq!(add_owner.status, StatusCode::FORBIDDEN);
    let promoted = call(
        &app,
        Method::PATCH,
        &format!("/api/v1/orgs/{acme}/members/{member_id}"),
        &admin,
        Some(json!({"role": "admin"})),
    )
    .await;
    assert_eq!(promoted.status, StatusCode::OK, "{:?}", promoted.body);
    assert_eq!(promoted.body["role"], "admin");
    let set = put_policy(&app, &acme, &admin, policy(false, &["member"], 24, &ALL)).await;
    assert_eq!(set.status, StatusCode::OK, "{:?}", set.body);

    // The last owner can neither leave nor be demoted; unknown emails and members say why.
    let leave = call(
        &app,
        Method::DELETE,
        &format!("/api/v1/orgs/{acme}/members/{owner_id}"),
        &owner,
        None,
    )
    .await;
    assert_eq!(leave.status, StatusCode::CONFLICT);
    assert!(leave.message.unwrap().contains("last owner"));
    let demote_self = call(
        &app,
        Method::PATCH,
        &format!("/api/v1/orgs/{acme}/members/{owner_id}"),
        &owner,
        Some(json!({"role": "admin"})),
    )
    .await;
    assert_eq!(demote_self.status, StatusCode::CONFLICT);
    let unknown = add_member(&app, &acme, &owner, "nobody@example.com", "member").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert!(
        unknown.message.unwrap().contains("must sign up"),
        "a clear message"
    );
    let twice = add_member(&app, &acme, &owner, "admin@example.com", "member").await;
    assert_eq!(twice.status, StatusCode::CONFLICT);
    let bad_role = add_member(&app, &acme, &owner, "stranger@example.com", "superuser").await;
    assert_eq!(bad_role.status, StatusCode::BAD_REQUEST);
    assert!(bad_role.message.unwrap().contains("owner, admin or member"));
    let bad_id = call(&app, Method::GET, "/api/v1/orgs/not-an-id", &owner, None).await;
    assert_eq!(bad_id.status, StatusCode::NOT_FOUND);

    // A second owner may be made by an owner; then the first can leave. A member may leave.
    let second = call(
        &app,
        Method::PATCH,
        &format!("/api/v1/orgs/{acme}/members/{admin_id}"),
        &owner,
        Some(json!({"role": "owner"})),
    )
    .await;
    assert_eq!(second.status, StatusCode::OK);
    let left = call(
        &app,
        Method::DELETE,
        &format!("/api/v1/orgs/{acme}/members/{owner_id}"),
        &owner,
        None,
    )
    .await;
    assert_eq!(left.status, StatusCode::NO_CONTENT);
    let gone = call(
        &app,
        Method::GET,
        &format!("/api/v1/orgs/{acme}"),
        &owner,
        None,
    )
    .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);

    // Every change is an event of the organization, visible to its admins.
    let events = call(
        &app,
        Method::GET,
        &format!("/api/v1/orgs/{acme}/events"),
        &admin,
        None,
    )
    .await;
    let kinds: Vec<&str> = events.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    for kind in [
        "member_added",
        "member_role_changed",
        "member_removed",
        "org_policy_changed",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    finish(app, pg).await;
}

#[tokio::test]
async fn bad_policies_are_refused_with_what_to_fix() {
    let app = TestApp::builder()
        .mfa_allowed_methods(
            tessera_core::factor::AllowedMethods::of(&[tessera_core::factor::FactorKind::Totp])
                .unwrap(),
        )
        .start()
        .await;
    let (_, owner) = app.signed_in_user("owner@example.com").await;
    let acme = create_org(&app, &owner, "Acme").await;
    for (body, needle) in [
        (policy(true, &["member", "boss"], 0, &ALL), "unknown role"),
        (policy(true, &["member"], -1, &ALL), "grace_period_hours"),
        (policy(true, &["member"], 2161, &ALL), "90 days"),
        (policy(true, &["member"], 0, &[]), "at least one method"),
        (
            policy(true, &["member"], 0, &["sms"]),
            "nobody could satisfy",
        ),
        (policy(true, &[], 0, &ALL), "at least one role"),
        (
            json!({"mfa_required": true, "roles": ["member"], "scope": "everywhere", "grace_period_hours": 0, "allowed_methods": ["totp"], "allow_disable": false}),
            "scope",
        ),
        (json!({"mfa_required": true}), "missing field"),
        (
            json!({"mfa_required": false, "roles": [], "scope": "all", "grace_period_hours": 0, "allowed_methods": ["totp"], "allow_disable": true, "app_mfa_max_age_seconds": -5}),
            "30 days",
        ),
        (
            json!({"mfa_required": false, "roles": [], "scope": "all", "grace_period_hours": 0, "allowed_methods": ["totp"], "allow_disable": true, "app_mfa_max_age_seconds": 2_600_000}),
            "30 days",
        ),
    ] {
        let refused = put_policy(&app, &acme, &owner, body.clone()).await;
        assert_eq!(
            refused.status,
            StatusCode::BAD_REQUEST,
            "{body}: {:?}",
            refused.body
        );
        let message = refused.message.unwrap();
        assert!(message.contains(needle), "{body}: {message}");
    }
    let name = call(
        &app,
        Method::POST,
        "/api/v1/orgs",
        &owner,
        Some(json!({"name": "  "})),
    )
    .await;
    assert_eq!(name.status, StatusCode::BAD_REQUEST);
    // A policy change needs a recent password.
    app.clock.advance(Duration::minutes(11));
    let stale = put_policy(&app, &acme, &owner, policy(true, &["member"], 0, &["totp"])).await;
    assert_eq!(stale.code.as_deref(), Some("reauth_required"));
}

#[tokio::test]
async fn forced_enrollment_restricts_every_route_until_a_factor_is_confirmed_sqlite() {
    forced_enrollment(false).await;
}

#[tokio::test]
async fn forced_enrollment_restricts_every_route_until_a_factor_is_confirmed_postgres() {
    forced_enrollment(true).await;
}

async fn forced_enrollment(postgres: bool) {
    let Some((app, pg)) = start(TestApp::builder(), postgres).await else {
        return;
    };
    let (_, owner) = app.signed_in_user("owner@example.com").await;
    app.sign_up("mia@example.com", PASSWORD).await;
    app.sign_up("zed@example.com", PASSWORD).await;
    let acme = create_org(&app, &owner, "Acme").await;
    add_member(&app, &acme, &owner, "mia@example.com", "member").await;
    add_member(&app, &acme, &owner, "zed@example.com", "member").await;
    let set = put_policy(
        &app,
        &acme,
        &owner,
        policy(true, &["member"], 0, &["totp", "webauthn"]),
    )
    .await;
    assert_eq!(set.status, StatusCode::OK, "{:?}", set.body);

    let signed_in = sign_in_outcome(&app, "mia@example.com").await;
    assert_eq!(
        signed_in.status,
        StatusCode::CREATED,
        "{:?}",
        signed_in.body
    );
    assert_eq!(signed_in.body["status"], "mfa_enrollment_required");
    let restricted = signed_in.token.unwrap();
    let me = app.get_json("/api/v1/me", Some(&restricted)).await;
    assert_eq!(me["policy"]["mfa_required"], true, "{me}");
    assert_eq!(me["policy"]["allowed_methods"], json!(["totp", "webauthn"]));
    assert_eq!(me["policy"]["required_by"], json!(["Acme"]));

    // Walk every published route: only /me, enrolling and signing out are open.
    let open: [(&str, &str); 10] = [
        ("get", "/api/v1/me"),
        ("delete", "/api/v1/sessions/current"),
        ("post", "/api/v1/me/factors/totp"),
        ("post", "/api/v1/me/factors/totp/{enrollment_id}/confirm"),
        ("post", "/api/v1/me/factors/sms"),
        ("post", "/api/v1/me/factors/email"),
        ("post", "/api/v1/me/factors/sms/{enrollment_id}/confirm"),
        ("post", "/api/v1/me/factors/email/{enrollment_id}/confirm"),
        ("post", "/api/v1/me/factors/sms/{enrollment_id}/resend"),
        ("post", "/api/v1/me/factors/email/{enrollment_id}/resend"),
    ];
    let spec: Value = app.get_json("/api/v1/openapi.json", None).await;
    let mut walked = 0;
    for (path, operations) in spec["paths"].as_object().unwrap() {
        for method in operations.as_object().unwrap().keys() {
            let key = (method.as_str(), path.as_str());
            if tessera_server::api::PUBLIC_PATHS.contains(&key) || open.contains(&key) {
                continue;
            }
            let http = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let answer = call(&app, http, &concrete(path), &restricted, Some(json!({}))).await;
            assert_eq!(
                (answer.status, answer.code.as_deref()),
                (StatusCode::FORBIDDEN, Some("mfa_enrollment_required")),
                "{method} {path}: {:?}",
                answer.body
            );
            walked += 1;
        }
    }
    assert!(walked >= 15, "walked only {walked} routes");

    // SMS is not among Acme's methods.
    let sms = call(
        &app,
        Method::POST,
        "/api/v1/me/factors/sms",
        &restricted,
        Some(json!({"phone": "+14155552671"})),
    )
    .await;
    assert_eq!(
        sms.code.as_deref(),
        Some("policy_forbids"),
        "{:?}",
        sms.body
    );

    // Confirming an authenticator app turns the same token into a full session.
    let started = start_totp(&app, &restricted).await;
    let uri = tessera_otp::OtpauthUri::parse(started["otpauth_uri"].as_str().unwrap()).unwrap();
    let confirmed = call(
        &app,
        Method::POST,
        &format!(
            "/api/v1/me/factors/totp/{}/confirm",
            started["enrollment_id"].as_str().unwrap()
        ),
        &restricted,
        Some(json!({"code": code_at(&app, &uri.secret, 0)})),
    )
    .await;
    assert_eq!(
        confirmed.status,
        StatusCode::CREATED,
        "{:?}",
        confirmed.body
    );
    let sessions = call(&app, Method::GET, "/api/v1/sessions", &restricted, None).await;
    assert_eq!(
        sessions.status,
        StatusCode::OK,
        "the same token is a full session now"
    );
    assert_eq!(
        sessions.body["sessions"][0]["amr"],
        json!(["pwd", "otp", "mfa"])
    );

    // Compliance as the owner sees it.
    let members = call(
        &app,
        Method::GET,
        &format!("/api/v1/orgs/{acme}/members"),
        &owner,
        None,
    )
    .await;
    let mia = members.body["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["email"] == "mia@example.com")
        .unwrap()
        .clone();
    assert_eq!(mia["compliant"], true, "{mia}");
    assert_eq!(mia["factor_kinds"], json!(["totp"]));
    let noncompliant = call(
        &app,
        Method::GET,
        &format!("/api/v1/orgs/{acme}/members?filter=noncompliant"),
        &owner,
        None,
    )
    .await;
    let emails: Vec<&str> = noncompliant.body["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["email"].as_str().unwrap())
        .collect();
    assert_eq!(
        emails,
        vec!["zed@example.com"],
        "the owner is not bound (members only) and Mia complies"
    );

    // Disabling is forbidden while Acme requires MFA; the message names it.
    let disable = call(&app, Method::DELETE, "/api/v1/me/mfa", &restricted, None).await;
    assert_eq!(disable.code.as_deref(), Some("policy_forbids"));
    assert!(
        disable
            .message
            .unwrap()
            .contains("Your organization Acme requires MFA")
    );

    finish(app, pg).await;
}

async fn the_grace_period_counts_from_when_the_requirement_first_applied(postgres: bool) {
    let Some((app, pg)) = start(TestApp::builder(), postgres).await else {
        return;
    };
    let (_, owner) = app.signed_in_user("owner@example.com").await;
    app.sign_up("noa@example.com", PASSWORD).await;
    let acme = create_org(&app, &owner, "Acme").await;
    add_member(&app, &acme, &owner, "noa@example.com", "member").await;
    put_policy(&app, &acme, &owner, policy(true, &["member"], 24, &ALL)).await;

    // Before the deadline: a normal sign-in, and the deadline is shown.
    let first = sign_in_outcome(&app, "noa@example.com").await;
    assert_eq!(first.body["status"], "authenticated");
    let token = first.token.unwrap();
    let me = app.get_json("/api/v1/me", Some(&token)).await;
    let deadline = me["policy"]["deadline"].as_str().unwrap().to_owned();
    assert_eq!(
        deadline, "2026-01-06T09:00:00Z",
        "24 h after it first applied"
    );
    app.clock
        .advance(Duration::hours(24) - Duration::seconds(1));
    assert_eq!(
        sign_in_outcome(&app, "noa@example.com").await.body["status"],
        "authenticated"
    );
    // At the deadline and after: restricted.
    app.clock.advance(Duration::seconds(1));
    assert_eq!(
        sign_in_outcome(&app, "noa@example.com").await.body["status"],
        "mfa_enrollment_required"
    );
    app.clock.advance(Duration::hours(1));
    let held = sign_in_outcome(&app, "noa@example.com").await;
    assert_eq!(held.body["status"], "mfa_enrollment_required");
    let held = held.token.unwrap();
    let refused = call(&app, Method::GET, "/api/v1/sessions", &held, None).await;
    assert_eq!(refused.code.as_deref(), Some("mfa_enrollment_required"));

    // Lowering the requirement takes effect at the next request.
    let owner = app.sign_in("owner@example.com", PASSWORD).await;
    put_policy(&app, &acme, &owner, policy(true, &["admin"], 24, &ALL)).await;
    // The restricted session held a moment ago is a full one at its next request.
    let lifted = call(&app, Method::GET, "/api/v1/sessions", &held, None).await;
    assert_eq!(
        lifted.status,
        StatusCode::OK,
        "no stale flag: {:?}",
        lifted.body
    );
    let after = sign_in_outcome(&app, "noa@example.com").await;
    assert_eq!(
        after.body["status"], "authenticated",
        "roles filter: members are no longer bound"
    );
    let me = app
        .get_json("/api/v1/me", Some(&after.token.unwrap()))
        .await;
    assert_eq!(me["policy"]["mfa_required"], false);
    // Restoring it starts a new grace period.
    put_policy(&app, &acme, &owner, policy(true, &["member"], 24, &ALL)).await;
    assert_eq!(
        sign_in_outcome(&app, "noa@example.com").await.body["status"],
        "authenticated"
    );
    finish(app, pg).await;
}

async fn factors_the_policy_does_not_allow_count_as_none(postgres: bool) {
    let Some((app, pg)) = start(TestApp::builder(), postgres).await else {
        return;
    };
    let (_, owner) = app.signed_in_user("owner@example.com").await;
    let (_, ola) = app.signed_in_user("ola@example.com").await;
    enable_totp(&app, &ola).await;
    let acme = create_org(&app, &owner, "Acme").await;
    add_member(&app, &acme, &owner, "ola@example.com", "member").await;
    // During a grace period Ola keeps signing in with the app: a policy change never turns a
    // second step off.
    let grace = put_policy(
        &app,
        &acme,
        &owner,
        policy(true, &["member"], 24, &["webauthn", "sms"]),
    )
    .await;
    assert_eq!(grace.status, StatusCode::OK, "{:?}", grace.body);
    let during = sign_in_outcome(&app, "ola@example.com").await;
    assert_eq!(during.body["status"], "mfa_required", "{:?}", during.body);
    // Acme allows security keys only: Ola's authenticator app does not satisfy it.
    let set = put_policy(
        &app,
        &acme,
        &owner,
        policy(true, &["member"], 0, &["webauthn", "sms"]),
    )
    .await;
    assert_eq!(set.status, StatusCode::OK, "{:?}", set.body);
    let signed_in = sign_in_outcome(&app, "ola@example.com").await;
    assert_eq!(
        signed_in.body["status"], "mfa_enrollment_required",
        "{:?}",
        signed_in.body
    );
    let members = call(
        &app,
        Method::GET,
        &format!("/api/v1/orgs/{acme}/members?filter=noncompliant"),
        &owner,
        None,
    )
    .await;
    let ola_row = members.body["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["email"] == "ola@example.com")
        .unwrap()
        .clone();
    assert_eq!(ola_row["compliant"], false);
    assert_eq!(ola_row["mfa_enabled"], true);
    assert!(ola_row["deadline"].is_string());
    let totp = call(
        &app,
        Method::POST,
        "/api/v1/me/factors/totp",
        &signed_in.token.unwrap(),
        Some(json!({})),
    )
    .await;
    assert_eq!(totp.code.as_deref(), Some("policy_forbids"));
    finish(app, pg).await;
}

/// Waits (bounded) for a mail to `to` with `subject` after the first `skip` messages.
async fn mail_to(smtp: &SmtpSink, skip: usize, to: &str, subject: &str) -> ReceivedMail {
    for _ in 0..200 {
        if let Some(mail) = smtp
            .messages()
            .into_iter()
            .skip(skip)
            .find(|m| m.to == [to] && m.header("Subject").as_deref() == Some(subject))
        {
            return mail;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("no mail to {to} with subject {subject:?}");
}

/// The token of the `/mfa-reset/{token}` link in a mail's text.
fn reset_token(mail: &ReceivedMail) -> String {
    let text = mail.part("text/plain").unwrap();
    let start = text.find("/mfa-reset/").expect("a reset link") + "/mfa-reset/".len();
    text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || "-_".contains(*c))
        .collect()
}

const RESET_SUBJECT: &str = "Reset two-step verification on your Tessera account";

async fn an_admin_reset_sends_a_single_use_link_and_completes_only_with_a_new_factor(
    postgres: bool,
) {
    let smtp = SmtpSink::start().await;
    let Some((app, pg)) = start(TestApp::builder().smtp(smtp.url()), postgres).await else {
        return;
    };
    let (_, owner) = app.signed_in_user("owner@example.com").await;
    let (_, admin) = app.signed_in_user("admin@example.com").await;
    let (member_email, member_totp) = {
        let (_, token) = app.signed_in_user("pat@example.com").await;
        (
            String::from("pat@example.com"),
            enable_totp(&app, &token).await,
        )
    };
    let acme = create_org(&app, &owner, "Acme").await;
    add_member(&app, &acme, &owner, "admin@example.com", "admin").await;
    add_member(&app, &acme, &owner, &member_email, "member").await;
    let owner_id = user_id(&app, &owner).await;
    let admin_id = user_id(&app, &admin).await;
    // (The enrollment used the current time step.)
    app.clock.advance(Duration::seconds(30));
    let pat_session = sign_in_with_totp(&app, &member_email, &member_totp.secret).await;
    let pat_id = user_id(&app, &pat_session).await;
    let reset = |target: String, token: String| {
        let (app, acme) = (&app, acme.clone());
        async move {
            call(
                app,
                Method::POST,
                &format!("/api/v1/orgs/{acme}/members/{target}/mfa-reset"),
                &token,
                None,
            )
            .await
        }
    };

    // Admins cannot reset owners; nobody resets themselves this way; members cannot at all.
    let owner_reset = reset(owner_id.clone(), admin.clone()).await;
    assert_eq!(
        owner_reset.code.as_deref(),
        Some("policy_forbids"),
        "{:?}",
        owner_reset.body
    );
    let own = reset(admin_id.clone(), admin.clone()).await;
    assert_eq!(own.status, StatusCode::BAD_REQUEST);
    let by_member = reset(admin_id.clone(), pat_session.clone()).await;
    assert_eq!(by_member.status, StatusCode::FORBIDDEN);

    // Two requests: the newer link voids the older one.
    let before = smtp.messages().len();
    assert_eq!(
        reset(pat_id.clone(), admin.clone()).await.status,
        StatusCode::ACCEPTED
    );
    let first = reset_token(&mail_to(&smtp, before, &member_email, RESET_SUBJECT).await);
    app.clock.advance(Duration::minutes(1));
    let count = smtp.messages().len();
    let sent = reset(pat_id.clone(), admin.clone()).await;
    assert_eq!(sent.status, StatusCode::ACCEPTED, "{:?}", sent.body);
    assert!(sent.body["expires_at"].is_string());
    let second_mail = mail_to(&smtp, count, &member_email, RESET_SUBJECT).await;
    assert!(
        second_mail
            .part("text/plain")
            .unwrap()
            .contains("An administrator of Acme")
    );
    let second = reset_token(&second_mail);
    assert_ne!(first, second);

    // Nothing changed yet: the old factor still signs in.
    app.clock.advance(Duration::seconds(30));
    sign_in_with_totp(&app, &member_email, &member_totp.secret).await;

    let open = |token: String, password: &'static str| {
        let app = &app;
        async move {
            outcome(
                app.post(
                    &format!("/api/v1/mfa-resets/{token}"),
                    None,
                    json!({"password": password}),
                )
                .await,
            )
            .await
        }
    };
    let voided = open(first, PASSWORD).await;
    assert_eq!(voided.status, StatusCode::NOT_FOUND, "{:?}", voided.body);
    assert!(
        voided
            .message
            .unwrap()
            .contains("ask your administrator for a new one")
    );
    let wrong = open(second.clone(), "not-the-password-123").await;
    assert_eq!(wrong.code.as_deref(), Some("invalid_credentials"));
    let opened = open(second.clone(), PASSWORD).await;
    assert_eq!(opened.status, StatusCode::CREATED, "{:?}", opened.body);
    assert_eq!(opened.body["status"], "mfa_enrollment_required");
    let restricted = opened.token.unwrap();
    let again = open(second.clone(), PASSWORD).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND, "single use");
    let never = open("A".repeat(43), PASSWORD).await;
    assert_eq!(never.status, StatusCode::NOT_FOUND);
    let elsewhere = call(&app, Method::GET, "/api/v1/sessions", &restricted, None).await;
    assert_eq!(elsewhere.code.as_deref(), Some("mfa_enrollment_required"));
    // Still nothing changed: the old factor works until the new one is confirmed.
    app.clock.advance(Duration::seconds(30));
    sign_in_with_totp(&app, &member_email, &member_totp.secret).await;

    // Confirming a new authenticator app completes the reset.
    let started = start_totp(&app, &restricted).await;
    let uri = tessera_otp::OtpauthUri::parse(started["otpauth_uri"].as_str().unwrap()).unwrap();
    let before = smtp.messages().len();
    let confirmed = call(
        &app,
        Method::POST,
        &format!(
            "/api/v1/me/factors/totp/{}/confirm",
            started["enrollment_id"].as_str().unwrap()
        ),
        &restricted,
        Some(json!({"code": code_at(&app, &uri.secret, 0)})),
    )
    .await;
    assert_eq!(
        confirmed.status,
        StatusCode::CREATED,
        "{:?}",
        confirmed.body
    );
    assert_eq!(
        confirmed.body["backup_codes"].as_array().unwrap().len(),
        10,
        "a fresh set"
    );
    let me = app.get_json("/api/v1/me", Some(&restricted)).await;
    let factors = me["mfa"]["factors"].as_array().unwrap();
    assert_eq!(factors.len(), 1, "{me}");
    assert_ne!(
        factors[0]["id"],
        member_totp.factor_id.as_str(),
        "the old app is gone"
    );
    let old_session = app.get("/api/v1/me", Some(&pat_session)).await;
    assert_eq!(
        old_session.status(),
        StatusCode::UNAUTHORIZED,
        "other sessions signed out"
    );
    let done = mail_to(
        &smtp,
        before,
        &member_email,
        "Two-step verification was reset on your Tessera account",
    )
    .await;
    assert!(
        done.part("text/plain")
            .unwrap()
            .contains("Every earlier sign-in method")
    );
    mail_to(
        &smtp,
        before,
        "admin@example.com",
        "pat@example.com finished resetting two-step verification",
    )
    .await;
    let events = call(
        &app,
        Method::GET,
        &format!("/api/v1/orgs/{acme}/events"),
        &owner,
        None,
    )
    .await;
    let kinds: Vec<&str> = events.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"mfa_reset_requested") && kinds.contains(&"mfa_reset_completed"),
        "{kinds:?}"
    );
    // A link left unused for 72 hours no longer opens.
    let admin = app.sign_in("admin@example.com", PASSWORD).await;
    let count = smtp.messages().len();
    assert_eq!(
        reset(pat_id.clone(), admin.clone()).await.status,
        StatusCode::ACCEPTED
    );
    let late = reset_token(&mail_to(&smtp, count, &member_email, RESET_SUBJECT).await);
    app.clock.advance(Duration::hours(72));
    let expired = open(late, PASSWORD).await;
    assert_eq!(expired.status, StatusCode::NOT_FOUND, "{:?}", expired.body);
    finish(app, pg).await;
}
