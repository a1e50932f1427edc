//! SMS and email factors over real HTTP: codes reach a real SMS webhook and a real SMTP server,
//! the code rules hold on a fixed clock, parallel steps with one code give one session, the
//! preferred factor and labels, number reset, and bad input.

use crate::support::app::{
    Backend, PASSWORD, TestApp, assert_error, drop_postgres, fresh_postgres,
};
use crate::support::mfa::{
    Outcome, count_events, enable_totp, events, outcome, password_step, second_step_raw,
};
use crate::support::sms::{SmsWebhook, six_digits};
use crate::support::smtp::{ReceivedMail, SmtpSink};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration as StdDuration;
use tessera_core::factor::{AllowedMethods, FactorKind};
use time::Duration;

/// An app whose texts go to `hook` (and emails to the dev outbox).
async fn app_with_sms(hook: &SmsWebhook) -> TestApp {
    TestApp::builder()
        .sms_webhook(hook.url.clone())
        .start()
        .await
}

async fn post(app: &TestApp, path: &str, token: Option<&str>, body: Value) -> Outcome {
    outcome(app.post(path, token, body).await).await
}

/// Starts adding the phone `+1 415 555 2671` (country code and national number apart).
async fn start_phone(app: &TestApp, token: &str) -> Outcome {
    post(
        app,
        "/api/v1/me/factors/sms",
        Some(token),
        json!({"country_code": "+1", "phone": "(415) 555-2671"}),
    )
    .await
}

async fn confirm(app: &TestApp, token: &str, kind: &str, enrollment: &str, body: Value) -> Outcome {
    post(
        app,
        &format!("/api/v1/me/factors/{kind}/{enrollment}/confirm"),
        Some(token),
        body,
    )
    .await
}

/// Adds the phone and confirms it with the code the webhook received (message `n`).
async fn add_phone(app: &TestApp, hook: &SmsWebhook, token: &str, n: usize) -> Value {
    let started = start_phone(app, token).await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{:?}", started.body);
    let code = hook.code(n).await;
    let enrollment = started.body["enrollment_id"].as_str().unwrap();
    let done = confirm(app, token, "sms", enrollment, json!({"code": code})).await;
    assert_eq!(done.status, StatusCode::CREATED, "{:?}", done.body);
    done.body
}

async fn send_signin_code(app: &TestApp, challenge: &str, factor_id: &str) -> Outcome {
    post(
        app,
        "/api/v1/sessions/mfa/send",
        None,
        json!({"challenge_token": challenge, "factor_id": factor_id}),
    )
    .await
}

async fn code_step(app: &TestApp, challenge: &str, method: &str, code: &str) -> Outcome {
    outcome(
        second_step_raw(
            app,
            json!({"challenge_token": challenge, "method": method, "code": code}),
        )
        .await,
    )
    .await
}

/// Waits (bounded) for a mail to `to` whose subject is `subject`, received after the first
/// `skip` messages.
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
        tokio::time::sleep(StdDuration::from_millis(25)).await;
    }
    panic!("no mail to {to} with subject {subject:?}");
}

fn other_code(code: &str) -> String {
    let n: u32 = code.parse().unwrap();
    format!("{:06}", (n + 1) % 1_000_000)
}

#[tokio::test]
async fn a_phone_verified_by_the_texted_code_signs_in_by_sms() {
    let hook = SmsWebhook::start(200).await;
    let app = app_with_sms(&hook).await;
    let (email, token) = app.signed_in_user("ann@example.com").await;

    let started = start_phone(&app, &token).await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{:?}", started.body);
    assert_eq!(started.body["destination"], "+1 ••• ••• 2671");
    assert_eq!(started.body["delivery"], "queued");
    let texts = hook.wait_for(1).await;
    assert_eq!(texts[0]["to"], "+14155552671");
    let text = texts[0]["body"].as_str().unwrap();
    let code = six_digits(text);
    assert_eq!(
        text,
        format!("Your Tessera verification code is {code}. It expires in 10 minutes.")
    );
    // Not active until confirmed.
    let me = app.get_json("/api/v1/me", Some(&token)).await;
    assert_eq!(me["mfa"]["enabled"], false, "{me}");

    let enrollment = started.body["enrollment_id"].as_str().unwrap();
    let done = confirm(&app, &token, "sms", enrollment, json!({"code": code})).await;
    assert_eq!(done.status, StatusCode::CREATED, "{:?}", done.body);
    let factor = &done.body["factor"];
    assert_eq!(factor["kind"], "sms");
    assert_eq!(factor["label"], "+1 ••• ••• 2671");
    assert_eq!(factor["destination"], "+1 ••• ••• 2671");
    assert_eq!(factor["preferred"], true);
    assert_eq!(done.body["backup_codes"].as_array().unwrap().len(), 10);
    assert!(!done.body.to_string().contains("4155552671"));
    // The code was used: confirming again fails.
    let again = confirm(&app, &token, "sms", enrollment, json!({"code": code})).await;
    assert_eq!(again.code.as_deref(), Some("invalid_code"));

    // Sign-in: the SMS factor is offered; "Send me a code" texts a sign-in code.
    let challenge = password_step(&app, &email).await;
    let factor_id = factor["id"].as_str().unwrap();
    assert_eq!(challenge["preferred_factor_id"], factor_id);
    assert!(
        challenge["methods"]
            .as_array()
            .unwrap()
            .contains(&json!("sms"))
    );
    let challenge = challenge["challenge_token"].as_str().unwrap();
    let sent = send_signin_code(&app, challenge, factor_id).await;
    assert_eq!(sent.status, StatusCode::ACCEPTED, "{:?}", sent.body);
    assert_eq!(sent.body["destination"], "+1 ••• ••• 2671");
    let text = hook.wait_for(2).await[1]["body"]
        .as_str()
        .unwrap()
        .to_owned();
    let code = six_digits(&text);
    assert!(text.starts_with("Your Tessera sign-in code is"), "{text}");
    let signed_in = code_step(&app, challenge, "sms", &code).await;
    assert_eq!(
        signed_in.status,
        StatusCode::CREATED,
        "{:?}",
        signed_in.body
    );
    assert_eq!(signed_in.body["amr"], json!(["pwd", "sms", "mfa"]));
    let new_token = signed_in.token.unwrap();
    let factors = app.get_json("/api/v1/me", Some(&new_token)).await;
    assert!(
        factors["mfa"]["factors"][0]["last_used_at"].is_string(),
        "{factors}"
    );
    // Single use.
    let challenge = password_step(&app, &email).await["challenge_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let replay = code_step(&app, &challenge, "sms", &code).await;
    assert_eq!(replay.code.as_deref(), Some("invalid_code"));
    assert!(count_events(&app, &new_token, "code_sent").await >= 2);
}

#[tokio::test]
async fn email_codes_reach_a_real_smtp_server_and_sign_in_as_otp() {
    let smtp = SmtpSink::start().await;
    let app = TestApp::builder().smtp(smtp.url()).start().await;
    let (email, token) = app.signed_in_user("Bea@Example.com").await;

    // Another address, verified the same way.
    let started = post(
        &app,
        "/api/v1/me/factors/email",
        Some(&token),
        json!({"email": "bea.backup@example.org"}),
    )
    .await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{:?}", started.body);
    assert_eq!(started.body["destination"], "b•••@example.org");
    let mail = mail_to(
        &smtp,
        0,
        "bea.backup@example.org",
        "Your Tessera verification code",
    )
    .await;
    let text = mail.part("text/plain").unwrap();
    let html = mail.part("text/html").unwrap();
    let code = six_digits(&text);
    assert!(html.contains(&code));
    let enrollment = started.body["enrollment_id"].as_str().unwrap();
    let done = confirm(
        &app,
        &token,
        "email",
        enrollment,
        json!({"code": format!("{} {}", &code[..3], &code[3..]), "label": "Backup inbox"}),
    )
    .await;
    assert_eq!(done.status, StatusCode::CREATED, "{:?}", done.body);
    assert_eq!(done.body["factor"]["label"], "Backup inbox");
    assert_eq!(done.body["factor"]["destination"], "b•••@example.org");

    // The account address, by default, as a second email factor.
    let default = post(&app, "/api/v1/me/factors/email", Some(&token), json!({})).await;
    assert_eq!(default.status, StatusCode::ACCEPTED, "{:?}", default.body);
    assert_eq!(default.body["destination"], "b•••@example.com");

    // Sign in with the email code: amr says otp.
    let challenge = password_step(&app, &email).await;
    let factor_id = done.body["factor"]["id"].as_str().unwrap();
    let challenge = challenge["challenge_token"].as_str().unwrap();
    let before = smtp.messages().len();
    let sent = send_signin_code(&app, challenge, factor_id).await;
    assert_eq!(sent.status, StatusCode::ACCEPTED, "{:?}", sent.body);
    let mail = mail_to(
        &smtp,
        before,
        "bea.backup@example.org",
        "Your Tessera sign-in code",
    )
    .await;
    let code = six_digits(&mail.part("text/plain").unwrap());
    let signed_in = code_step(&app, challenge, "email", &code).await;
    assert_eq!(
        signed_in.status,
        StatusCode::CREATED,
        "{:?}",
        signed_in.body
    );
    assert_eq!(signed_in.body["amr"], json!(["pwd", "otp", "mfa"]));
}

#[tokio::test]
async fn codes_expire_are_voided_by_a_resend_and_by_three_wrong_tries() {
    let hook = SmsWebhook::start(200).await;
    let app = app_with_sms(&hook).await;
    let (_, token) = app.signed_in_user("cal@example.com").await;

    // Expired at 10 minutes + 1 s (the enrollment itself lasts 15).
    let started = start_phone(&app, &token).await;
    let enrollment = started.body["enrollment_id"].as_str().unwrap().to_owned();
    let code = hook.code(1).await;
    app.clock
        .advance(Duration::minutes(10) + Duration::seconds(1));
    // A fresh password re-entry keeps the re-auth window open for the rest of the test.
    reauth(&app, &token).await;
    let late = confirm(&app, &token, "sms", &enrollment, json!({"code": code})).await;
    assert_eq!(
        late.code.as_deref(),
        Some("invalid_code"),
        "{:?}",
        late.body
    );

    // A resend voids the earlier code.
    let resent = post(
        &app,
        &format!("/api/v1/me/factors/sms/{enrollment}/resend"),
        Some(&token),
        json!({}),
    )
    .await;
    assert_eq!(resent.status, StatusCode::ACCEPTED, "{:?}", resent.body);
    let first = hook.code(2).await;
    app.clock.advance(Duration::seconds(31));
    let resent = post(
        &app,
        &format!("/api/v1/me/factors/sms/{enrollment}/resend"),
        Some(&token),
        json!({}),
    )
    .await;
    assert_eq!(resent.status, StatusCode::ACCEPTED, "{:?}", resent.body);
    let second = hook.code(3).await;
    if first != second {
        let old = confirm(&app, &token, "sms", &enrollment, json!({"code": first})).await;
        assert_eq!(old.code.as_deref(), Some("invalid_code"));
    }

    // Three wrong tries void the code: the right one is refused after them.
    app.clock.advance(Duration::seconds(31));
    let resent = post(
        &app,
        &format!("/api/v1/me/factors/sms/{enrollment}/resend"),
        Some(&token),
        json!({}),
    )
    .await;
    assert_eq!(resent.status, StatusCode::ACCEPTED);
    let right = hook.code(4).await;
    for _ in 0..3 {
        let wrong = confirm(
            &app,
            &token,
            "sms",
            &enrollment,
            json!({"code": other_code(&right)}),
        )
        .await;
        assert_eq!(wrong.code.as_deref(), Some("invalid_code"));
    }
    let refused = confirm(&app, &token, "sms", &enrollment, json!({"code": right})).await;
    assert_eq!(refused.code.as_deref(), Some("invalid_code"));

    // A new code works.
    app.clock.advance(Duration::seconds(31));
    post(
        &app,
        &format!("/api/v1/me/factors/sms/{enrollment}/resend"),
        Some(&token),
        json!({}),
    )
    .await;
    let fresh = hook.code(5).await;
    let done = confirm(&app, &token, "sms", &enrollment, json!({"code": fresh})).await;
    assert_eq!(done.status, StatusCode::CREATED, "{:?}", done.body);
}

async fn reauth(app: &TestApp, token: &str) {
    let response = app
        .post("/api/v1/reauth", Some(token), json!({"password": PASSWORD}))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn every_send_limit_answers_429_with_retry_after_and_sends_nothing() {
    let hook = SmsWebhook::start(200).await;
    let app = app_with_sms(&hook).await;
    let (_, ann) = app.signed_in_user("ann@example.com").await;

    // One code per enrollment (or factor) every 30 seconds.
    let started = start_phone(&app, &ann).await;
    let enrollment = started.body["enrollment_id"].as_str().unwrap().to_owned();
    hook.wait_for(1).await;
    let resend = format!("/api/v1/me/factors/sms/{enrollment}/resend");
    let early = post(&app, &resend, Some(&ann), json!({})).await;
    assert_eq!(
        early.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{:?}",
        early.body
    );
    assert_eq!(early.code.as_deref(), Some("rate_limited"));
    assert_eq!(early.retry_after.as_deref(), Some("30"));

    // Ten per account per hour.
    for _ in 1..10 {
        app.clock.advance(Duration::seconds(31));
        let sent = post(&app, &resend, Some(&ann), json!({})).await;
        assert_eq!(sent.status, StatusCode::ACCEPTED, "{:?}", sent.body);
    }
    app.clock.advance(Duration::seconds(31));
    let eleventh = start_phone(&app, &ann).await;
    assert_eq!(eleventh.status, StatusCode::TOO_MANY_REQUESTS);
    let retry: i64 = eleventh.retry_after.unwrap().parse().unwrap();
    assert!((1..=3600).contains(&retry), "{retry}");
    hook.wait_for(10).await;

    // Twenty per destination per day, whoever asks: a second account uses its ten, a third
    // is refused for the same number while another number still works for it.
    let (_, bob) = app.signed_in_user("bob@example.com").await;
    for _ in 0..10 {
        app.clock.advance(Duration::seconds(31));
        reauth(&app, &bob).await;
        let sent = start_phone(&app, &bob).await;
        assert_eq!(sent.status, StatusCode::ACCEPTED, "{:?}", sent.body);
    }
    hook.wait_for(20).await;
    let (_, cat) = app.signed_in_user("cat@example.com").await;
    let refused = start_phone(&app, &cat).await;
    assert_eq!(
        refused.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{:?}",
        refused.body
    );
    assert!(refused.retry_after.is_some());
    let other = post(
        &app,
        "/api/v1/me/factors/sms",
        Some(&cat),
        json!({"phone": "+44 7400 123456"}),
    )
    .await;
    assert_eq!(other.status, StatusCode::ACCEPTED, "{:?}", other.body);
    hook.wait_for(21).await;
    tokio::time::sleep(StdDuration::from_millis(200)).await;
    assert_eq!(hook.bodies().len(), 21, "refused sends sent nothing");
}

/// A user with a confirmed phone (the webhook's message 1 and 2): (email, token, factor id).
async fn user_with_phone(
    app: &TestApp,
    hook: &SmsWebhook,
    email: &str,
) -> (String, String, String) {
    let (email, token) = app.signed_in_user(email).await;
    let confirmed = add_phone(app, hook, &token, hook.bodies().len() + 1).await;
    let factor_id = confirmed["factor"]["id"].as_str().unwrap().to_owned();
    (email, token, factor_id)
}

/// An app with SMS to `hook`, on PostgreSQL when `postgres` (`None` when
/// `TESSERA_TEST_DATABASE_URL` is unset), and the database to drop after.
async fn app_on(hook: &SmsWebhook, postgres: bool) -> Option<(TestApp, Option<String>)> {
    let builder = TestApp::builder().sms_webhook(hook.url.clone());
    if !postgres {
        return Some((builder.start().await, None));
    }
    let url = fresh_postgres().await?;
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

#[tokio::test]
async fn thirty_parallel_second_steps_with_one_sms_code_give_one_session_sqlite() {
    thirty_parallel_second_steps_with_one_sms_code(false).await;
}

#[tokio::test]
async fn thirty_parallel_second_steps_with_one_sms_code_give_one_session_postgres() {
    thirty_parallel_second_steps_with_one_sms_code(true).await;
}

async fn thirty_parallel_second_steps_with_one_sms_code(postgres: bool) {
    let hook = SmsWebhook::start(200).await;
    let Some((app, pg)) = app_on(&hook, postgres).await else {
        eprintln!("skipping the PostgreSQL variant: TESSERA_TEST_DATABASE_URL is not set");
        return;
    };
    let (email, _, factor_id) = user_with_phone(&app, &hook, "dan@example.com").await;
    let challenge = password_step(&app, &email).await["challenge_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let sent = send_signin_code(&app, &challenge, &factor_id).await;
    assert_eq!(sent.status, StatusCode::ACCEPTED);
    let code = hook.code(2).await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..30 {
        let (client, url) = (app.client.clone(), app.url("/api/v1/sessions/mfa"));
        let body = json!({"challenge_token": challenge, "method": "sms", "code": code});
        tasks.spawn(
            async move { outcome(client.post(url).json(&body).send().await.unwrap()).await },
        );
    }
    let outcomes = tasks.join_all().await;
    let sessions = outcomes.iter().filter(|o| o.token.is_some()).count();
    assert_eq!(
        sessions,
        1,
        "{:?}",
        outcomes.iter().map(|o| o.status).collect::<Vec<_>>()
    );
    assert!(
        outcomes
            .iter()
            .filter(|o| o.token.is_none())
            .all(|o| o.code.as_deref() == Some("invalid_code")),
        "the others are refused, none with a 5xx"
    );
    finish(app, pg).await;
}

#[tokio::test]
async fn wrong_sms_codes_count_toward_the_account_lock() {
    let hook = SmsWebhook::start(200).await;
    let app = app_with_sms(&hook).await;
    let (email, _, factor_id) = user_with_phone(&app, &hook, "eve@example.com").await;
    let challenge = password_step(&app, &email).await["challenge_token"]
        .as_str()
        .unwrap()
        .to_owned();
    // A guess with no code out counts nothing (nothing could match).
    let blind = code_step(&app, &challenge, "sms", "123456").await;
    assert_eq!(blind.code.as_deref(), Some("invalid_code"));
    send_signin_code(&app, &challenge, &factor_id).await;
    let first = hook.code(2).await;
    for _ in 0..3 {
        let wrong = code_step(&app, &challenge, "sms", &other_code(&first)).await;
        assert_eq!(wrong.code.as_deref(), Some("invalid_code"));
    }
    app.clock.advance(Duration::seconds(31));
    send_signin_code(&app, &challenge, &factor_id).await;
    let second = hook.code(3).await;
    for _ in 0..2 {
        code_step(&app, &challenge, "sms", &other_code(&second)).await;
    }
    // Five wrong codes in a row: even the right one is refused now.
    let locked = code_step(&app, &challenge, "sms", &second).await;
    assert_eq!(
        locked.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{:?}",
        locked.body
    );
    // And no code is sent while the second step is locked.
    let send = send_signin_code(&app, &challenge, &factor_id).await;
    assert_eq!(send.status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn exactly_one_factor_is_preferred_and_each_has_its_own_label() {
    let hook = SmsWebhook::start(200).await;
    let app = app_with_sms(&hook).await;
    let (email, token) = app.signed_in_user("fay@example.com").await;
    let totp = enable_totp(&app, &token).await;
    let phone = add_phone(&app, &hook, &token, 1).await;
    let phone_id = phone["factor"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        phone["factor"]["preferred"], false,
        "the first one added stays preferred"
    );
    assert!(
        phone["backup_codes"].is_null(),
        "backup codes only at the first MFA"
    );

    let patch = |id: &str, body: Value| {
        let (app, token, id) = (&app, token.clone(), id.to_owned());
        async move {
            outcome(
                app.request(
                    Method::PATCH,
                    &format!("/api/v1/me/factors/{id}"),
                    Some(&token),
                    Some(body),
                )
                .await,
            )
            .await
        }
    };
    let made = patch(&phone_id, json!({"preferred": true, "label": "Work phone"})).await;
    assert_eq!(made.status, StatusCode::OK, "{:?}", made.body);
    assert_eq!(made.body["factor"]["preferred"], true);
    assert_eq!(made.body["factor"]["label"], "Work phone");
    let me = app.get_json("/api/v1/me", Some(&token)).await;
    let preferred: Vec<&Value> = me["mfa"]["factors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["preferred"] == true)
        .collect();
    assert_eq!(preferred.len(), 1, "{me}");
    assert_eq!(preferred[0]["id"], phone_id.as_str());
    let challenge = password_step(&app, &email).await;
    assert_eq!(challenge["preferred_factor_id"], phone_id.as_str());
    assert_eq!(challenge["factors"][0]["id"], phone_id.as_str());
    assert_eq!(challenge["factors"][0]["label"], "Work phone");

    // Bad patches.
    let nothing = patch(&phone_id, json!({})).await;
    assert_eq!(nothing.code.as_deref(), Some("invalid_request"));
    let unprefer = patch(&phone_id, json!({"preferred": false})).await;
    assert_eq!(unprefer.code.as_deref(), Some("invalid_request"));
    let long = patch(&phone_id, json!({"label": "x".repeat(65)})).await;
    assert_eq!(long.code.as_deref(), Some("invalid_request"));
    let (_, other) = app.signed_in_user("gus@example.com").await;
    let theirs = outcome(
        app.request(
            Method::PATCH,
            &format!("/api/v1/me/factors/{phone_id}"),
            Some(&other),
            Some(json!({"label": "Mine"})),
        )
        .await,
    )
    .await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND);

    // Removing the preferred one promotes the oldest remaining.
    let removed = app
        .delete(&format!("/api/v1/me/factors/{phone_id}"), Some(&token))
        .await;
    assert_eq!(removed.status(), StatusCode::NO_CONTENT);
    let me = app.get_json("/api/v1/me", Some(&token)).await;
    assert_eq!(me["mfa"]["factors"][0]["id"], totp.factor_id.as_str());
    assert_eq!(me["mfa"]["factors"][0]["preferred"], true);
    assert!(count_events(&app, &token, "factor_updated").await >= 1);
    // Like every factor change, renaming needs the re-auth window.
    app.clock.advance(Duration::minutes(11));
    let closed = patch(&totp.factor_id, json!({"label": "Old phone"})).await;
    assert_eq!(closed.code.as_deref(), Some("reauth_required"));
}

#[tokio::test]
async fn a_new_number_replaces_the_old_one_only_once_verified() {
    let smtp = SmtpSink::start().await;
    let hook = SmsWebhook::start(200).await;
    let app = TestApp::builder()
        .smtp(smtp.url())
        .sms_webhook(hook.url.clone())
        .start()
        .await;
    let (email, token, old_id) = user_with_phone(&app, &hook, "hal@example.com").await;
    // A second session, signed in by SMS (message 2).
    let challenge = password_step(&app, &email).await["challenge_token"]
        .as_str()
        .unwrap()
        .to_owned();
    send_signin_code(&app, &challenge, &old_id).await;
    let other_session = code_step(&app, &challenge, "sms", &hook.code(2).await)
        .await
        .token
        .unwrap();

    let started = post(
        &app,
        "/api/v1/me/factors/sms",
        Some(&token),
        json!({"phone": "+44 7400 123456"}),
    )
    .await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{:?}", started.body);
    let enrollment = started.body["enrollment_id"].as_str().unwrap().to_owned();
    let code = hook.code(3).await;
    // Until the new number is verified, the old one stays.
    let wrong = confirm(
        &app,
        &token,
        "sms",
        &enrollment,
        json!({"code": other_code(&code), "replace_factor_id": old_id}),
    )
    .await;
    assert_eq!(wrong.code.as_deref(), Some("invalid_code"));
    let me = app.get_json("/api/v1/me", Some(&token)).await;
    assert_eq!(me["mfa"]["factors"][0]["id"], old_id.as_str());
    let done = confirm(
        &app,
        &token,
        "sms",
        &enrollment,
        json!({"code": code, "replace_factor_id": old_id}),
    )
    .await;
    assert_eq!(done.status, StatusCode::CREATED, "{:?}", done.body);
    assert_eq!(done.body["factor"]["destination"], "+44 •••• ••3456");
    assert_eq!(
        done.body["factor"]["preferred"], true,
        "takes over the preferred flag"
    );
    let me = app.get_json("/api/v1/me", Some(&token)).await;
    let factors = me["mfa"]["factors"].as_array().unwrap();
    assert_eq!(factors.len(), 1, "{me}");
    assert_ne!(factors[0]["id"], old_id.as_str());
    let kinds: Vec<String> = events(&app, &token)
        .await
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect();
    assert!(kinds.contains(&"factor_replaced".to_owned()), "{kinds:?}");
    let signed_out = app.get("/api/v1/me", Some(&other_session)).await;
    assert_eq!(
        signed_out.status(),
        StatusCode::UNAUTHORIZED,
        "other sessions end"
    );
    let mail = mail_to(
        &smtp,
        0,
        "hal@example.com",
        "A sign-in method on your Tessera account was replaced",
    )
    .await;
    let text = mail.part("text/plain").unwrap();
    assert!(text.contains("+44 •••• ••3456"), "{text}");
    assert!(!text.contains("7400123456"));
}

#[tokio::test]
async fn bad_input_gets_a_4xx_envelope() {
    let hook = SmsWebhook::start(200).await;
    let app = app_with_sms(&hook).await;
    let (email, token, phone_id) = user_with_phone(&app, &hook, "ida@example.com").await;
    for (body, needle) in [
        (json!({"phone": "415 555 2671"}), "country code"),
        (json!({"phone": "+1 415 CALL NOW"}), "only digits"),
        (json!({"phone": format!("+{}", "9".repeat(100))}), "at most"),
        (json!({"phone": "+1 555"}), "not a"),
        (json!({"phone": "+1 555 555 5555 5"}), "not a"),
        (
            json!({"phone": "555 2671", "country_code": "1234"}),
            "country code",
        ),
        (json!({"phone": ""}), "empty"),
    ] {
        let response = app
            .post("/api/v1/me/factors/sms", Some(&token), body.clone())
            .await;
        let message = assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
        assert!(message.contains(needle), "{body}: {message}");
    }
    for address in ["ida@", "ida@localhost", "no-at-sign"] {
        let response = app
            .post(
                "/api/v1/me/factors/email",
                Some(&token),
                json!({"email": address}),
            )
            .await;
        assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
    let unknown_field = app
        .post(
            "/api/v1/me/factors/sms",
            Some(&token),
            json!({"number": "+1"}),
        )
        .await;
    assert_error(unknown_field, StatusCode::BAD_REQUEST, "invalid_request").await;
    // The same number twice.
    let twice = app
        .post(
            "/api/v1/me/factors/sms",
            Some(&token),
            json!({"phone": "+14155552671"}),
        )
        .await;
    assert_error(twice, StatusCode::CONFLICT, "conflict").await;

    // Codes of the wrong length or kind; a TOTP factor; another user's factor id.
    let challenge = password_step(&app, &email).await["challenge_token"]
        .as_str()
        .unwrap()
        .to_owned();
    for code in ["12345", "1234567", "abcdef", "１２３４５６", ""] {
        let refused = code_step(&app, &challenge, "sms", code).await;
        assert_eq!(refused.code.as_deref(), Some("invalid_code"), "{code:?}");
    }
    let numeric = second_step_raw(
        &app,
        json!({"challenge_token": challenge, "method": "sms", "code": 123456}),
    )
    .await;
    assert!(numeric.status().is_client_error());
    let (_, other) = app.signed_in_user("jo@example.com").await;
    let totp = enable_totp(&app, &other).await;
    let not_hers = send_signin_code(&app, &challenge, &totp.factor_id).await;
    assert_eq!(
        not_hers.status,
        StatusCode::NOT_FOUND,
        "{:?}",
        not_hers.body
    );
    let garbage = send_signin_code(&app, &challenge, "../../etc").await;
    assert_eq!(garbage.status, StatusCode::NOT_FOUND);
    let jo_challenge = password_step(&app, "jo@example.com").await["challenge_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let totp_send = send_signin_code(&app, &jo_challenge, &totp.factor_id).await;
    assert_eq!(
        totp_send.status,
        StatusCode::BAD_REQUEST,
        "{:?}",
        totp_send.body
    );
    assert!(totp_send.message.unwrap().contains("authenticator app"));
    let bad_challenge = send_signin_code(&app, "not-a-challenge", &phone_id).await;
    assert_eq!(bad_challenge.code.as_deref(), Some("invalid_code"));
    // Another user's enrollment id.
    let started = start_phone(&app, &other).await;
    let theirs = started.body["enrollment_id"].as_str().unwrap();
    let steal = confirm(&app, &token, "sms", theirs, json!({"code": "000000"})).await;
    assert_eq!(steal.code.as_deref(), Some("invalid_code"));
}

#[tokio::test]
async fn a_failing_transport_keeps_the_code_queued_and_says_so() {
    let hook = SmsWebhook::start(503).await;
    let app = app_with_sms(&hook).await;
    let (_, token) = app.signed_in_user("kim@example.com").await;
    let started = start_phone(&app, &token).await;
    assert_eq!(started.status, StatusCode::ACCEPTED);
    assert_eq!(started.body["delivery"], "queued");
    hook.wait_for(1).await;
    // Once the worker has seen the failure, the next send tells the user.
    let mut failing = None;
    for _ in 0..100 {
        app.clock.advance(Duration::seconds(31));
        let enrollment = started.body["enrollment_id"].as_str().unwrap();
        let resent = post(
            &app,
            &format!("/api/v1/me/factors/sms/{enrollment}/resend"),
            Some(&token),
            json!({}),
        )
        .await;
        if resent.body["delivery"] == "failing" {
            failing = Some(resent);
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(50)).await;
        reauth(&app, &token).await;
    }
    let failing = failing.expect("delivery reported as failing");
    assert_eq!(failing.status, StatusCode::ACCEPTED);
    let message = failing.body["message"].as_str().unwrap();
    assert!(
        message.starts_with("We could not send the code, try again shortly"),
        "{message}"
    );
}

#[tokio::test]
async fn the_instance_setting_limits_which_kinds_can_be_enrolled() {
    let hook = SmsWebhook::start(200).await;
    let app = TestApp::builder()
        .sms_webhook(hook.url.clone())
        .mfa_allowed_methods(AllowedMethods::of(&[FactorKind::Totp, FactorKind::Email]).unwrap())
        .start()
        .await;
    let (_, token) = app.signed_in_user("lee@example.com").await;
    let refused = app
        .post(
            "/api/v1/me/factors/sms",
            Some(&token),
            json!({"phone": "+14155552671"}),
        )
        .await;
    let message = assert_error(refused, StatusCode::FORBIDDEN, "policy_forbids").await;
    assert!(message.contains("totp, email"), "{message}");
    assert!(hook.bodies().is_empty());
    let email = post(&app, "/api/v1/me/factors/email", Some(&token), json!({})).await;
    assert_eq!(email.status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn a_sign_in_code_does_not_reauthenticate_and_a_reauth_code_does_not_sign_in() {
    let hook = SmsWebhook::start(200).await;
    let app = app_with_sms(&hook).await;
    let (email, token, factor_id) = user_with_phone(&app, &hook, "max@example.com").await;
    let challenge = password_step(&app, &email).await["challenge_token"]
        .as_str()
        .unwrap()
        .to_owned();
    send_signin_code(&app, &challenge, &factor_id).await;
    let signin_code = hook.code(2).await;

    // The re-auth purpose shares the factor's 30-second send interval with sign-in codes.
    app.clock.advance(Duration::seconds(31));
    let reauth_with = |code: String| {
        let (app, token) = (&app, token.clone());
        async move {
            post(
                app,
                "/api/v1/reauth",
                Some(&token),
                json!({"method": "sms", "code": code}),
            )
            .await
        }
    };
    let refused = reauth_with(signin_code.clone()).await;
    assert_eq!(
        refused.code.as_deref(),
        Some("invalid_code"),
        "{:?}",
        refused.body
    );

    let sent = post(
        &app,
        "/api/v1/reauth/send",
        Some(&token),
        json!({"factor_id": factor_id}),
    )
    .await;
    assert_eq!(sent.status, StatusCode::ACCEPTED, "{:?}", sent.body);
    let text = hook.wait_for(3).await[2]["body"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(text.contains("confirmation code"), "{text}");
    let reauth_code = six_digits(&text);
    let not_signin = code_step(&app, &challenge, "sms", &reauth_code).await;
    if reauth_code != signin_code {
        assert_eq!(not_signin.code.as_deref(), Some("invalid_code"));
    }
    let opened = reauth_with(reauth_code.clone()).await;
    assert_eq!(opened.status, StatusCode::OK, "{:?}", opened.body);
    assert!(opened.body["reauth_until"].is_string());
    // Each code still serves its own purpose, once.
    let again = reauth_with(reauth_code).await;
    assert_eq!(again.code.as_deref(), Some("invalid_code"));
    let signed_in = code_step(&app, &challenge, "sms", &signin_code).await;
    assert_eq!(
        signed_in.status,
        StatusCode::CREATED,
        "{:?}",
        signed_in.body
    );

    // Neither a password nor a code method; a TOTP factor cannot receive codes.
    let neither = post(&app, "/api/v1/reauth", Some(&token), json!({})).await;
    assert_eq!(neither.code.as_deref(), Some("invalid_request"));
    let totp = enable_totp(&app, &token).await;
    let no_codes = post(
        &app,
        "/api/v1/reauth/send",
        Some(&token),
        json!({"factor_id": totp.factor_id}),
    )
    .await;
    assert_eq!(no_codes.status, StatusCode::BAD_REQUEST);
}
