//! Authenticator-app MFA and backup codes over real HTTP, on SQLite and PostgreSQL.
//!
//! Every shared body runs on both backends (`<name>::sqlite` and `<name>::postgres`); the
//! PostgreSQL variant needs `TESSERA_TEST_DATABASE_URL`. The clock is the app's fixed clock:
//! nothing sleeps except bounded polling for emails.

use crate::support::app::{
    Backend, PASSWORD, TestApp, TestAppBuilder, assert_error, drop_postgres, fresh_postgres,
};
use crate::support::mfa::{
    Db, Outcome, UnixNow as _, backup_step, challenge_token, code_at, copy_keys, count_events,
    enable_totp, events, outcome, password_step, second_step_raw, sign_in_with_totp, start_totp,
    totp_step, user_id, user_with_totp, wrong_code,
};
use crate::support::smtp::{ReceivedMail, SmtpSink};
use futures::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration as StdDuration;
use tessera_otp::OtpauthUri;
use time::Duration;

const ANN: &str = "ann@example.com";
const BOB: &str = "bob@example.com";
/// Concurrent second steps fired at once.
const RACERS: usize = 50;

#[derive(Debug, Clone, Copy)]
enum Kind {
    Sqlite,
    Postgres,
}

/// A running app, direct access to its database, and the PostgreSQL database to drop.
struct Env {
    app: TestApp,
    db: Db,
    pg: Option<String>,
}

impl Env {
    /// `None` when PostgreSQL is asked for but `TESSERA_TEST_DATABASE_URL` is not set.
    async fn start(kind: Kind, builder: TestAppBuilder) -> Option<Self> {
        match kind {
            Kind::Sqlite => {
                let app = builder.start().await;
                let db = Db::sqlite(&app);
                Some(Self { app, db, pg: None })
            }
            Kind::Postgres => {
                let url = fresh_postgres().await?;
                let app = builder
                    .backend(Backend::Postgres(url.clone()))
                    .start()
                    .await;
                Some(Self {
                    app,
                    db: Db { url: url.clone() },
                    pg: Some(url),
                })
            }
        }
    }

    async fn finish(self) {
        self.app.stop().await;
        if let Some(url) = self.pg {
            drop_postgres(&url).await;
        }
    }
}

/// Runs the async body `name(Kind)` as `name::sqlite` and `name::postgres`; attributes
/// given before the name (e.g. `#[ignore = "BUG: …"]`) go on both.
macro_rules! on_both_backends {
    ($(#[$attr:meta])* $name:ident) => {
        mod $name {
            $(#[$attr])*
            #[tokio::test]
            async fn sqlite() {
                super::$name(super::Kind::Sqlite).await;
            }

            $(#[$attr])*
            #[tokio::test]
            async fn postgres() {
                super::$name(super::Kind::Postgres).await;
            }
        }
    };
}

fn step(app: &TestApp) {
    app.clock.advance(Duration::seconds(30));
}

/// Asserts an outcome is the error envelope `status`/`code`.
fn expect_error(outcome: &Outcome, status: StatusCode, code: &str) {
    assert_eq!(outcome.status, status, "{:?}", outcome.body);
    assert_eq!(outcome.code.as_deref(), Some(code), "{:?}", outcome.body);
    assert!(
        outcome.message.as_deref().is_some_and(|m| !m.is_empty()),
        "{:?}",
        outcome.body
    );
}

/// Asserts every outcome of a race but the winners is a refusal (`invalid_code` or, once the
/// wrong attempts have locked the second step, `rate_limited`); returns the winners.
fn one_winner(outcomes: &[Outcome]) -> &Outcome {
    let winners: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| o.status == StatusCode::CREATED)
        .collect();
    assert_eq!(winners.len(), 1, "exactly one success: {outcomes:#?}");
    for loser in outcomes.iter().filter(|o| o.status != StatusCode::CREATED) {
        match loser.status {
            StatusCode::UNAUTHORIZED => expect_error(loser, loser.status, "invalid_code"),
            StatusCode::TOO_MANY_REQUESTS => expect_error(loser, loser.status, "rate_limited"),
            _ => panic!("unexpected answer in a race: {loser:?}"),
        }
    }
    winners[0]
}

/// `n` fresh sign-in challenges of `email`, made one after the other (concurrent password
/// steps would trip the password throttle, which reserves every attempt before hashing).
async fn challenges(app: &TestApp, email: &str, n: usize) -> Vec<String> {
    let mut tokens = Vec::with_capacity(n);
    for _ in 0..n {
        tokens.push(challenge_token(app, email).await);
    }
    tokens
}

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

// 1. Replay ---------------------------------------------------------------------------------

/// A TOTP code signs in once: the same code again is refused, so is an older code of the
/// window once a newer one was accepted, and 50 simultaneous second steps with one code (50
/// challenges of the same user) give exactly one session.
async fn totp_codes_are_accepted_once(kind: Kind) {
    let Some(env) = Env::start(kind, TestApp::builder()).await else {
        return;
    };
    let app = &env.app;
    let (setup, totp) = user_with_totp(app, ANN).await;
    let uid = user_id(app, &setup).await;
    // The confirming code's step is recorded on the factor.
    let step_sql = "SELECT last_step FROM factors WHERE id = $1";
    let confirmed = env.db.count(step_sql, &[(&totp.factor_id).into()]).await;
    assert_eq!(confirmed, totp.confirmed_at_unix / 30);

    // Two steps after the confirming one: T−1 was never used.
    app.clock.advance(Duration::seconds(60));
    let current = code_at(app, &totp.secret, 0);
    let previous = code_at(app, &totp.secret, -1);
    let first = outcome(totp_step(app, &challenge_token(app, ANN).await, &current).await).await;
    assert_eq!(first.status, StatusCode::CREATED, "{:?}", first.body);

    // The same code again, on a new challenge.
    let again = totp_step(app, &challenge_token(app, ANN).await, &current).await;
    assert_error(again, StatusCode::UNAUTHORIZED, "invalid_code").await;
    // T−1 is inside the window but behind the accepted step.
    let challenge = challenge_token(app, ANN).await;
    let older = totp_step(app, &challenge, &previous).await;
    assert_error(older, StatusCode::UNAUTHORIZED, "invalid_code").await;
    // The factor's step only moved forward, to T.
    let last_step = env
        .db
        .count(
            "SELECT last_step FROM factors WHERE id = $1",
            &[(&totp.factor_id).into()],
        )
        .await;
    assert_eq!(last_step, app.clock.now_unix() / 30);
    // The refused challenge is still open and takes the next step's code.
    step(app);
    let next = totp_step(app, &challenge, &code_at(app, &totp.secret, 0)).await;
    assert_eq!(next.status(), StatusCode::CREATED);

    // 50 challenges, one code, fired at once.
    step(app);
    let tokens = challenges(app, ANN, RACERS).await;
    let code = code_at(app, &totp.secret, 0);
    let sql = "SELECT COUNT(*) FROM sessions WHERE user_id = $1";
    let before = env.db.count(sql, &[(&uid).into()]).await;
    let outcomes = join_all(
        tokens
            .iter()
            .map(|t| async { outcome(totp_step(app, t, &code).await).await }),
    )
    .await;
    let winner = one_winner(&outcomes);
    assert_eq!(winner.body["amr"], json!(["pwd", "otp", "mfa"]));
    let after = env.db.count(sql, &[(&uid).into()]).await;
    assert_eq!(after, before + 1, "exactly one new session in the database");
    let listed = app
        .get_json("/api/v1/sessions", winner.token.as_deref())
        .await;
    assert_eq!(
        listed["sessions"].as_array().unwrap().len(),
        usize::try_from(after).unwrap(),
        "{listed}"
    );
    env.finish().await;
}

on_both_backends!(totp_codes_are_accepted_once);

// 2. Window edges ---------------------------------------------------------------------------

/// Codes for T−1..T+1 are accepted; T−2 and T+2 are not (and the T+2 code was refused for
/// its time only: one step later it signs in).
async fn the_code_window_is_one_step_either_side(kind: Kind) {
    let Some(env) = Env::start(kind, TestApp::builder()).await else {
        return;
    };
    let app = &env.app;
    let (_setup, totp) = user_with_totp(app, ANN).await;
    // Three steps after the confirming one, so T−2 was never used.
    app.clock.advance(Duration::seconds(90));
    let challenge = challenge_token(app, ANN).await;
    let mut messages = Vec::new();
    for steps in [-2, 2] {
        let response = totp_step(app, &challenge, &code_at(app, &totp.secret, steps)).await;
        messages.push(assert_error(response, StatusCode::UNAUTHORIZED, "invalid_code").await);
    }
    assert_eq!(messages[0], messages[1]);
    let plus_two = code_at(app, &totp.secret, 2);
    let plus_one = totp_step(app, &challenge, &code_at(app, &totp.secret, 1)).await;
    assert_eq!(plus_one.status(), StatusCode::CREATED);
    step(app);
    let later = totp_step(app, &challenge_token(app, ANN).await, &plus_two).await;
    assert_eq!(later.status(), StatusCode::CREATED, "T+2 became T+1");

    // T−1 at the last second of step T: a code 59 seconds old, never used, still accepted.
    app.clock.advance(Duration::seconds(60 + 59));
    assert_eq!(app.clock.now_unix() % 30, 29);
    let minus_one = totp_step(
        app,
        &challenge_token(app, ANN).await,
        &code_at(app, &totp.secret, -1),
    )
    .await;
    assert_eq!(minus_one.status(), StatusCode::CREATED);
    env.finish().await;
}

on_both_backends!(the_code_window_is_one_step_either_side);

// 3. Backup codes ---------------------------------------------------------------------------

fn is_display_form(code: &str) -> bool {
    code.len() == 19
        && code.split('-').count() == 4
        && code.split('-').all(|g| {
            g.len() == 4
                && g.bytes()
                    .all(|b| b"0123456789ABCDEFGHJKMNPQRSTVWXYZ".contains(&b))
        })
}

/// Backup codes sign in once each, in any case, with or without dashes, with O for 0 and
/// I/L for 1; a backup-code session may turn MFA off but not regenerate codes until it sets
/// up an authenticator app; 50 simultaneous uses of one code give one session.
async fn backup_codes_sign_in_once(kind: Kind) {
    let Some(env) = Env::start(kind, TestApp::builder()).await else {
        return;
    };
    let app = &env.app;
    let (setup, totp) = user_with_totp(app, ANN).await;
    let mut codes = totp.backup_codes.clone();
    assert_eq!(codes.len(), 10);
    assert!(codes.iter().all(|c| is_display_form(c)), "{codes:?}");
    // A code with a 0 or a 1 for the look-alike spelling (a fresh set when none has one,
    // which happens about once in 30 000 sets).
    let has_look_alike = |codes: &[String]| codes[2..].iter().any(|c| c.contains(['0', '1']));
    for _ in 0..5 {
        if has_look_alike(&codes) {
            break;
        }
        let regenerated = app
            .post("/api/v1/me/backup-codes", Some(&setup), json!({}))
            .await;
        let body: Value = regenerated.json().await.unwrap();
        codes = body["codes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect();
    }

    // Lower case, no dashes.
    let typed = codes[0].to_lowercase().replace('-', "");
    let signed_in = outcome(backup_step(app, &challenge_token(app, ANN).await, &typed).await).await;
    assert_eq!(
        signed_in.status,
        StatusCode::CREATED,
        "{:?}",
        signed_in.body
    );
    assert_eq!(signed_in.body["amr"], json!(["pwd", "otp", "mfa"]));
    let backup_session = signed_in.token.unwrap();
    let me = app.get_json("/api/v1/me", Some(&backup_session)).await;
    assert_eq!(me["mfa"]["enabled"], true);
    assert_eq!(me["mfa"]["backup_codes"]["remaining"], 9);
    let used: Vec<Value> = events(app, &setup)
        .await
        .into_iter()
        .filter(|e| e["kind"] == "backup_code_used")
        .collect();
    assert_eq!(used.len(), 1, "{used:?}");
    assert_eq!(used[0]["details"]["remaining"], 9);

    // The same code again, in any spelling.
    for spelling in [codes[0].clone(), typed.clone()] {
        let again = backup_step(app, &challenge_token(app, ANN).await, &spelling).await;
        assert_error(again, StatusCode::UNAUTHORIZED, "invalid_code").await;
    }
    // Look-alikes: O for 0, l and I for 1, spaces for dashes.
    let source = codes[2..]
        .iter()
        .find(|c| c.contains(['0', '1']))
        .expect("a code with 0 or 1");
    let look_alike = source
        .replacen('0', "O", 1)
        .replace('0', "o")
        .replacen('1', "l", 1)
        .replace('1', "I")
        .replace('-', " ");
    let variant = backup_step(app, &challenge_token(app, ANN).await, &look_alike).await;
    assert_eq!(variant.status(), StatusCode::CREATED, "{look_alike}");
    let me = app.get_json("/api/v1/me", Some(&setup)).await;
    assert_eq!(me["mfa"]["backup_codes"]["remaining"], 8);

    // The backup-code session cannot make new codes...
    let locked = app
        .post("/api/v1/me/backup-codes", Some(&backup_session), json!({}))
        .await;
    assert_error(locked, StatusCode::FORBIDDEN, "backup_codes_locked").await;
    // ...but its re-auth window is open and it may turn MFA off.
    let reauth = app
        .post(
            "/api/v1/reauth",
            Some(&backup_session),
            json!({"password": PASSWORD}),
        )
        .await;
    assert_eq!(reauth.status(), StatusCode::OK);
    let off = app.delete("/api/v1/me/mfa", Some(&backup_session)).await;
    assert_eq!(off.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.get_json("/api/v1/me", Some(&backup_session)).await["mfa"]["enabled"],
        false
    );
    // Once it has set up an authenticator app, it may regenerate.
    let fresh = enable_totp(app, &backup_session).await;
    assert_eq!(fresh.backup_codes.len(), 10, "MFA is new again: new codes");
    let regenerated = app
        .post("/api/v1/me/backup-codes", Some(&backup_session), json!({}))
        .await;
    assert_eq!(regenerated.status(), StatusCode::CREATED);
    let body: Value = regenerated.json().await.unwrap();
    let newest: Vec<String> = body["codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();

    // The same lift without turning MFA off: a backup-code session that adds a second app.
    let second =
        outcome(backup_step(app, &challenge_token(app, ANN).await, &newest[0]).await).await;
    assert_eq!(second.status, StatusCode::CREATED);
    let second = second.token.unwrap();
    let locked = app
        .post("/api/v1/me/backup-codes", Some(&second), json!({}))
        .await;
    assert_error(locked, StatusCode::FORBIDDEN, "backup_codes_locked").await;
    let added = enable_totp(app, &second).await;
    assert!(added.backup_codes.is_empty(), "not the first MFA: no codes");
    let regenerated = app
        .post("/api/v1/me/backup-codes", Some(&second), json!({}))
        .await;
    assert_eq!(regenerated.status(), StatusCode::CREATED);

    // 50 simultaneous uses of one code (50 challenges of one user): one session.
    let (bob_setup, bob) = user_with_totp(app, BOB).await;
    let bob_id = user_id(app, &bob_setup).await;
    let tokens = challenges(app, BOB, RACERS).await;
    let code = bob.backup_codes[0].clone();
    let outcomes = join_all(
        tokens
            .iter()
            .map(|t| async { outcome(backup_step(app, t, &code).await).await }),
    )
    .await;
    one_winner(&outcomes);
    let used = env
        .db
        .count(
            "SELECT COUNT(*) FROM backup_codes WHERE user_id = $1 AND used_at IS NOT NULL",
            &[(&bob_id).into()],
        )
        .await;
    assert_eq!(used, 1);
    let me = app.get_json("/api/v1/me", Some(&bob_setup)).await;
    assert_eq!(me["mfa"]["backup_codes"]["remaining"], 9);
    assert_eq!(count_events(app, &bob_setup, "backup_code_used").await, 1);
    env.finish().await;
}

on_both_backends!(backup_codes_sign_in_once);

// 4. Lockout --------------------------------------------------------------------------------

/// Five wrong codes in a row lock the account's second step for five minutes: the right code
/// is refused with 429 and Retry-After, a new password sign-in does not reset it (the password
/// step itself still answers), and after five minutes the right code works and resets the
/// count. 200 parallel guesses get at most five evaluated.
async fn wrong_codes_lock_the_second_step(kind: Kind) {
    let Some(env) = Env::start(kind, TestApp::builder()).await else {
        return;
    };
    let app = &env.app;
    let (setup, totp) = user_with_totp(app, ANN).await;

    // Four wrong codes, then the right one: the count starts over.
    step(app);
    let challenge = challenge_token(app, ANN).await;
    for _ in 0..4 {
        let wrong = totp_step(app, &challenge, &wrong_code(app, &totp.secret)).await;
        assert_error(wrong, StatusCode::UNAUTHORIZED, "invalid_code").await;
    }
    let right = totp_step(app, &challenge, &code_at(app, &totp.secret, 0)).await;
    assert_eq!(right.status(), StatusCode::CREATED);

    // Five in a row (nine since the last lock-free success would have locked long ago).
    step(app);
    let challenge = challenge_token(app, ANN).await;
    for _ in 0..5 {
        let wrong = totp_step(app, &challenge, &wrong_code(app, &totp.secret)).await;
        assert_error(wrong, StatusCode::UNAUTHORIZED, "invalid_code").await;
    }
    let refused = totp_step(app, &challenge, &code_at(app, &totp.secret, 0)).await;
    assert_eq!(refused.headers()["retry-after"], "300");
    assert_error(refused, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // Backup codes are behind the same lock.
    let backup = backup_step(app, &challenge, &totp.backup_codes[0]).await;
    assert_error(backup, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;

    // A new sign-in: the password step answers, the second step stays locked.
    let challenge = challenge_token(app, ANN).await;
    let refused = totp_step(app, &challenge, &code_at(app, &totp.secret, 0)).await;
    assert_error(refused, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    assert_eq!(count_events(app, &setup, "second_factor_locked").await, 1);
    assert_eq!(count_events(app, &setup, "second_factor_failed").await, 9);

    // One second before the end of the lock.
    app.clock.advance(Duration::seconds(299));
    let refused = totp_step(app, &challenge, &code_at(app, &totp.secret, 0)).await;
    assert_eq!(refused.headers()["retry-after"], "1");
    assert_error(refused, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // Five minutes after the lock: the right code works...
    app.clock.advance(Duration::seconds(1));
    let done = totp_step(
        app,
        &challenge_token(app, ANN).await,
        &code_at(app, &totp.secret, 0),
    )
    .await;
    assert_eq!(done.status(), StatusCode::CREATED);
    // ...and the count is back to zero: four wrong codes do not lock.
    step(app);
    let challenge = challenge_token(app, ANN).await;
    for _ in 0..4 {
        let wrong = totp_step(app, &challenge, &wrong_code(app, &totp.secret)).await;
        assert_error(wrong, StatusCode::UNAUTHORIZED, "invalid_code").await;
    }
    let right = totp_step(app, &challenge, &code_at(app, &totp.secret, 0)).await;
    assert_eq!(right.status(), StatusCode::CREATED);

    // 200 parallel wrong guesses over 10 challenges: at most five are evaluated.
    let (bob_setup, bob) = user_with_totp(app, BOB).await;
    step(app);
    let tokens = challenges(app, BOB, 10).await;
    let near: Vec<String> = (-1..=1).map(|s| code_at(app, &bob.secret, s)).collect();
    let guesses: Vec<String> = (0u32..)
        .map(|n| format!("{:06}", (n * 4999 + 1) % 1_000_000))
        .filter(|c| !near.contains(c))
        .take(200)
        .collect();
    let outcomes = join_all(guesses.iter().enumerate().map(|(i, guess)| {
        let token = &tokens[i % tokens.len()];
        async move { outcome(totp_step(app, token, guess).await).await }
    }))
    .await;
    let mut evaluated = 0;
    for answer in &outcomes {
        match answer.status {
            StatusCode::UNAUTHORIZED => {
                expect_error(answer, answer.status, "invalid_code");
                evaluated += 1;
            }
            StatusCode::TOO_MANY_REQUESTS => {
                expect_error(answer, answer.status, "rate_limited");
                assert!(answer.retry_after.is_some());
            }
            _ => panic!("unexpected answer to a guess: {answer:?}"),
        }
    }
    assert!(
        (1..=5).contains(&evaluated),
        "{evaluated} guesses evaluated"
    );
    let failed = count_events(app, &bob_setup, "second_factor_failed").await;
    assert!(failed <= 5, "{failed} second_factor_failed events");
    assert_eq!(failed, evaluated);
    let refused = totp_step(app, &tokens[0], &code_at(app, &bob.secret, 0)).await;
    assert_error(refused, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    env.finish().await;
}

on_both_backends!(wrong_codes_lock_the_second_step);

// 5. The challenge token opens nothing else ---------------------------------------------------

/// Replaces every `{param}` of an OpenAPI path with an id.
pub(crate) fn concrete(path: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(start) = rest.find('{') {
        let end = rest[start..].find('}').unwrap() + start;
        out.push_str(&rest[..start]);
        out.push_str("5f0c7a5e-0000-4000-8000-000000000000");
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// A challenge token presented as a session on every published non-public route is refused
/// (403 mfa_required, never 2xx); it still opens the second step afterwards; an expired one
/// opens nothing.
async fn a_challenge_token_opens_only_the_second_step(kind: Kind) {
    let Some(env) = Env::start(kind, TestApp::builder()).await else {
        return;
    };
    let app = &env.app;
    let (setup, totp) = user_with_totp(app, ANN).await;
    let challenge = challenge_token(app, ANN).await;

    let spec: Value = app.get_json("/api/v1/openapi.json", None).await;
    let mut checked = Vec::new();
    for (path, operations) in spec["paths"].as_object().unwrap() {
        for method in operations.as_object().unwrap().keys() {
            if !["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                continue;
            }
            if tessera_server::api::PUBLIC_PATHS.contains(&(method.as_str(), path.as_str())) {
                continue;
            }
            let http = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let response = app
                .request(http, &concrete(path), Some(&challenge), Some(json!({})))
                .await;
            let answer = outcome(response).await;
            assert!(
                !answer.status.is_success(),
                "{method} {path} let a challenge token in: {:?}",
                answer.body
            );
            assert_eq!(
                (answer.status, answer.code.as_deref()),
                (StatusCode::FORBIDDEN, Some("mfa_required")),
                "{method} {path}: {:?}",
                answer.body
            );
            checked.push(format!("{method} {path}"));
        }
    }
    assert!(checked.len() >= 12, "only {checked:?}");
    // The walk left the challenge open: it still takes the second step.
    step(app);
    let done = outcome(totp_step(app, &challenge, &code_at(app, &totp.secret, 0)).await).await;
    assert_eq!(done.status, StatusCode::CREATED);
    // A completed challenge is nothing at all.
    let spent = app.get("/api/v1/me", Some(&challenge)).await;
    assert_error(spent, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    let again = totp_step(app, &challenge, &code_at(app, &totp.secret, 1)).await;
    assert_error(again, StatusCode::UNAUTHORIZED, "invalid_code").await;
    // A session token is not a challenge.
    let session_as_challenge = totp_step(app, &setup, &code_at(app, &totp.secret, 1)).await;
    assert_error(
        session_as_challenge,
        StatusCode::UNAUTHORIZED,
        "invalid_code",
    )
    .await;

    // 4 min 59 s after the password: still open.
    let challenge = challenge_token(app, ANN).await;
    app.clock.advance(Duration::seconds(299));
    let late = totp_step(app, &challenge, &code_at(app, &totp.secret, 0)).await;
    assert_eq!(late.status(), StatusCode::CREATED);
    // 5 min 1 s after the password: expired, even with a fresh right code.
    step(app);
    let expiring = challenge_token(app, ANN).await;
    app.clock.advance(Duration::seconds(301));
    let code = code_at(app, &totp.secret, 0);
    let expired = totp_step(app, &expiring, &code).await;
    assert_error(expired, StatusCode::UNAUTHORIZED, "invalid_code").await;
    let as_bearer = app.get("/api/v1/me", Some(&expiring)).await;
    assert_error(as_bearer, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    // The code itself was not spent by the expired attempt.
    let fresh = totp_step(app, &challenge_token(app, ANN).await, &code).await;
    assert_eq!(fresh.status(), StatusCode::CREATED);
    env.finish().await;
}

on_both_backends!(a_challenge_token_opens_only_the_second_step);

// 6. Reset to a new device ------------------------------------------------------------------

async fn confirm(
    app: &TestApp,
    token: &str,
    enrollment_id: &str,
    body: Value,
) -> reqwest::Response {
    app.post(
        &format!("/api/v1/me/factors/totp/{enrollment_id}/confirm"),
        Some(token),
        body,
    )
    .await
}

fn factor_ids(me: &Value) -> Vec<String> {
    me["mfa"]["factors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Resetting the authenticator to a new device: until the new app is confirmed the old one
/// signs in; confirming with `replace_factor_id` removes the old one in the same step, signs
/// out the other sessions and keeps the backup codes. Another user's or an unknown factor is
/// 404 and changes nothing.
async fn resetting_to_a_new_device(kind: Kind) {
    let Some(env) = Env::start(kind, TestApp::builder()).await else {
        return;
    };
    let app = &env.app;
    let (setup, old) = user_with_totp(app, ANN).await;
    let (bob_setup, bob) = user_with_totp(app, BOB).await;
    step(app);
    let other_device = sign_in_with_totp(app, ANN, &old.secret).await;

    let started = start_totp(app, &setup).await;
    let enrollment = started["enrollment_id"].as_str().unwrap().to_owned();
    let new_secret = OtpauthUri::parse(started["otpauth_uri"].as_str().unwrap())
        .unwrap()
        .secret;
    step(app);
    let third_device = sign_in_with_totp(app, ANN, &old.secret).await;

    let new_code = code_at(app, &new_secret, 0);
    for replace in [
        bob.factor_id.as_str(),
        "5f0c7a5e-0000-4000-8000-000000000000",
        "not-a-factor",
    ] {
        let response = confirm(
            app,
            &setup,
            &enrollment,
            json!({"code": new_code, "replace_factor_id": replace}),
        )
        .await;
        assert_error(response, StatusCode::NOT_FOUND, "not_found").await;
    }
    // Nothing changed, for either user.
    let me = app.get_json("/api/v1/me", Some(&setup)).await;
    assert_eq!(factor_ids(&me), vec![old.factor_id.clone()]);
    let bob_me = app.get_json("/api/v1/me", Some(&bob_setup)).await;
    assert_eq!(factor_ids(&bob_me), vec![bob.factor_id.clone()]);
    for token in [&other_device, &third_device] {
        assert_eq!(
            app.get("/api/v1/me", Some(token)).await.status(),
            StatusCode::OK
        );
    }
    assert_eq!(count_events(app, &setup, "factor_replaced").await, 0);

    let replaced = confirm(
        app,
        &setup,
        &enrollment,
        json!({"code": new_code, "label": "New phone", "replace_factor_id": old.factor_id}),
    )
    .await;
    assert_eq!(replaced.status(), StatusCode::CREATED);
    let body: Value = replaced.json().await.unwrap();
    assert_eq!(body["sessions_revoked"], 2, "{body}");
    assert_eq!(body["backup_codes"], Value::Null);
    assert_eq!(body["factor"]["label"], "New phone");
    assert_eq!(body["factor"]["preferred"], true);
    let new_id = body["factor"]["id"].as_str().unwrap().to_owned();
    for token in [&other_device, &third_device] {
        let revoked = app.get("/api/v1/me", Some(token)).await;
        assert_error(revoked, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    }
    let me = app.get_json("/api/v1/me", Some(&setup)).await;
    assert_eq!(factor_ids(&me), vec![new_id.clone()]);
    assert_eq!(me["mfa"]["backup_codes"]["remaining"], 10);
    let replaced_events: Vec<Value> = events(app, &setup)
        .await
        .into_iter()
        .filter(|e| e["kind"] == "factor_replaced")
        .collect();
    assert_eq!(replaced_events.len(), 1);
    assert_eq!(
        replaced_events[0]["details"]["replaced_factor_id"],
        old.factor_id.as_str()
    );

    // The old app's codes stop working; the new app's and the backup codes work.
    step(app);
    let challenge = challenge_token(app, ANN).await;
    assert_eq!(
        password_step(app, ANN).await["preferred_factor_id"],
        new_id.as_str()
    );
    let old_code = totp_step(app, &challenge, &code_at(app, &old.secret, 0)).await;
    assert_error(old_code, StatusCode::UNAUTHORIZED, "invalid_code").await;
    let named_old = second_step_raw(
        app,
        json!({"challenge_token": challenge, "method": "totp", "factor_id": old.factor_id, "code": code_at(app, &old.secret, 0)}),
    )
    .await;
    assert_error(named_old, StatusCode::UNAUTHORIZED, "invalid_code").await;
    let new = totp_step(app, &challenge, &code_at(app, &new_secret, 0)).await;
    assert_eq!(new.status(), StatusCode::CREATED);
    let backup = backup_step(app, &challenge_token(app, ANN).await, &old.backup_codes[0]).await;
    assert_eq!(backup.status(), StatusCode::CREATED);
    // Bob was not touched.
    sign_in_with_totp(app, BOB, &bob.secret).await;
    env.finish().await;
}

on_both_backends!(resetting_to_a_new_device);

// 7. Regenerating backup codes --------------------------------------------------------------

/// New backup codes replace the old ones (the old stop working at once), and every factor
/// endpoint needs an open re-auth window.
async fn regenerated_backup_codes_replace_the_old_ones(kind: Kind) {
    let Some(env) = Env::start(kind, TestApp::builder()).await else {
        return;
    };
    let app = &env.app;
    let (setup, totp) = user_with_totp(app, ANN).await;
    let regenerated = app
        .post("/api/v1/me/backup-codes", Some(&setup), json!({}))
        .await;
    assert_eq!(regenerated.status(), StatusCode::CREATED);
    let body: Value = regenerated.json().await.unwrap();
    let fresh: Vec<String> = body["codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(fresh.len(), 10);
    assert!(fresh.iter().all(|c| !totp.backup_codes.contains(c)));
    let mut distinct = fresh.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 10);
    assert_eq!(count_events(app, &setup, "backup_codes_generated").await, 2);

    let challenge = challenge_token(app, ANN).await;
    for old in &totp.backup_codes[..3] {
        let refused = backup_step(app, &challenge, old).await;
        assert_error(refused, StatusCode::UNAUTHORIZED, "invalid_code").await;
    }
    let works = backup_step(app, &challenge, &fresh[0]).await;
    assert_eq!(works.status(), StatusCode::CREATED);

    // Eleven minutes later the window is closed: every factor endpoint asks for the password.
    let pending = start_totp(app, &setup).await;
    let pending_id = pending["enrollment_id"].as_str().unwrap().to_owned();
    let pending_secret = OtpauthUri::parse(pending["otpauth_uri"].as_str().unwrap())
        .unwrap()
        .secret;
    app.clock.advance(Duration::minutes(11));
    let closed = [
        app.post("/api/v1/me/backup-codes", Some(&setup), json!({}))
            .await,
        app.post("/api/v1/me/factors/totp", Some(&setup), json!({}))
            .await,
        confirm(
            app,
            &setup,
            &pending_id,
            json!({"code": code_at(app, &pending_secret, 0)}),
        )
        .await,
        app.delete(
            &format!("/api/v1/me/factors/{}", totp.factor_id),
            Some(&setup),
        )
        .await,
        app.delete("/api/v1/me/mfa", Some(&setup)).await,
    ];
    for response in closed {
        assert_error(response, StatusCode::FORBIDDEN, "reauth_required").await;
    }
    let wrong = app
        .post(
            "/api/v1/reauth",
            Some(&setup),
            json!({"password": "not-the-password-at-all"}),
        )
        .await;
    assert_error(wrong, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    let reauth = app
        .post(
            "/api/v1/reauth",
            Some(&setup),
            json!({"password": PASSWORD}),
        )
        .await;
    assert_eq!(reauth.status(), StatusCode::OK);
    let again = app
        .post("/api/v1/me/backup-codes", Some(&setup), json!({}))
        .await;
    assert_eq!(again.status(), StatusCode::CREATED);
    // Those codes replaced the second set too.
    let refused = backup_step(app, &challenge_token(app, ANN).await, &fresh[1]).await;
    assert_error(refused, StatusCode::UNAUTHORIZED, "invalid_code").await;
    env.finish().await;
}

on_both_backends!(regenerated_backup_codes_replace_the_old_ones);

/// `mfa.allowed_methods` without `totp`: an authenticator app cannot be enrolled, the refusal
/// says what is allowed, and nothing is stored.
async fn authenticator_apps_can_be_disallowed(kind: Kind) {
    let allowed = tessera_core::factor::AllowedMethods::of(&[
        tessera_core::factor::FactorKind::Webauthn,
        tessera_core::factor::FactorKind::Sms,
    ])
    .unwrap();
    let Some(env) = Env::start(kind, TestApp::builder().mfa_allowed_methods(allowed)).await else {
        return;
    };
    let app = &env.app;
    let (_, token) = app.signed_in_user(ANN).await;
    let refused = app
        .post("/api/v1/me/factors/totp", Some(&token), json!({}))
        .await;
    let message = assert_error(refused, StatusCode::FORBIDDEN, "policy_forbids").await;
    assert!(message.contains("allowed: sms, webauthn"), "{message}");
    let me = app.get_json("/api/v1/me", Some(&token)).await;
    assert_eq!(me["mfa"]["enabled"], false);
    env.finish().await;
}

on_both_backends!(authenticator_apps_can_be_disallowed);

// 8. Disabling ------------------------------------------------------------------------------

/// Turning MFA off removes every factor and code, and the password alone signs in again;
/// with `mfa.allow_disable = false` neither turning it off nor removing the only factor is
/// allowed, while removing one of two factors is.
async fn disabling_mfa(kind: Kind) {
    let Some(env) = Env::start(kind, TestApp::builder()).await else {
        return;
    };
    let app = &env.app;
    let (setup, _totp) = user_with_totp(app, ANN).await;
    let me = app.get_json("/api/v1/me", Some(&setup)).await;
    assert_eq!(me["policy"]["allow_disable"], true);
    let off = app.delete("/api/v1/me/mfa", Some(&setup)).await;
    assert_eq!(off.status(), StatusCode::NO_CONTENT);
    let me = app.get_json("/api/v1/me", Some(&setup)).await;
    assert_eq!(me["mfa"]["enabled"], false);
    assert_eq!(me["mfa"]["factors"], json!([]));
    assert_eq!(me["mfa"]["backup_codes"]["remaining"], 0);
    let signed_in = app
        .post(
            "/api/v1/sessions",
            None,
            json!({"email": ANN, "password": PASSWORD}),
        )
        .await;
    assert_eq!(signed_in.status(), StatusCode::CREATED);
    let body: Value = signed_in.json().await.unwrap();
    assert_eq!(body["amr"], json!(["pwd"]));
    assert_eq!(count_events(app, &setup, "mfa_disabled").await, 1);
    let twice = app.delete("/api/v1/me/mfa", Some(&setup)).await;
    assert_error(twice, StatusCode::BAD_REQUEST, "invalid_request").await;
    env.finish().await;

    let Some(env) = Env::start(kind, TestApp::builder().mfa_allow_disable(false)).await else {
        return;
    };
    let app = &env.app;
    let (setup, first) = user_with_totp(app, ANN).await;
    let me = app.get_json("/api/v1/me", Some(&setup)).await;
    assert_eq!(me["policy"]["allow_disable"], false);
    let off = app.delete("/api/v1/me/mfa", Some(&setup)).await;
    assert_error(off, StatusCode::FORBIDDEN, "policy_forbids").await;
    let only = app
        .delete(
            &format!("/api/v1/me/factors/{}", first.factor_id),
            Some(&setup),
        )
        .await;
    assert_error(only, StatusCode::FORBIDDEN, "policy_forbids").await;
    let me = app.get_json("/api/v1/me", Some(&setup)).await;
    assert_eq!(me["mfa"]["enabled"], true);
    assert_eq!(factor_ids(&me), vec![first.factor_id.clone()]);
    assert_eq!(me["mfa"]["backup_codes"]["remaining"], 10);
    password_step(app, ANN).await;
    assert_eq!(count_events(app, &setup, "mfa_disabled").await, 0);

    // With two factors, one may go; the survivor becomes the preferred one.
    let second = enable_totp(app, &setup).await;
    assert!(second.backup_codes.is_empty());
    let removed = app
        .delete(
            &format!("/api/v1/me/factors/{}", first.factor_id),
            Some(&setup),
        )
        .await;
    assert_eq!(removed.status(), StatusCode::NO_CONTENT);
    let me = app.get_json("/api/v1/me", Some(&setup)).await;
    assert_eq!(factor_ids(&me), vec![second.factor_id.clone()]);
    assert_eq!(me["mfa"]["factors"][0]["preferred"], true);
    let last = app
        .delete(
            &format!("/api/v1/me/factors/{}", second.factor_id),
            Some(&setup),
        )
        .await;
    assert_error(last, StatusCode::FORBIDDEN, "policy_forbids").await;
    assert_eq!(count_events(app, &setup, "factor_removed").await, 1);
    step(app);
    let challenge = challenge_token(app, ANN).await;
    let removed_code = totp_step(app, &challenge, &code_at(app, &first.secret, 0)).await;
    assert_error(removed_code, StatusCode::UNAUTHORIZED, "invalid_code").await;
    let works = totp_step(app, &challenge, &code_at(app, &second.secret, 0)).await;
    assert_eq!(works.status(), StatusCode::CREATED);
    env.finish().await;
}

on_both_backends!(disabling_mfa);

// 9. Security emails ------------------------------------------------------------------------

/// Waits (bounded) for a message whose subject contains `subject`, and returns it.
async fn mail_with_subject(sink: &SmtpSink, subject: &str) -> ReceivedMail {
    let deadline = tokio::time::Instant::now() + StdDuration::from_secs(15);
    loop {
        if let Some(mail) = sink
            .messages()
            .into_iter()
            .find(|m| m.header("Subject").is_some_and(|s| s.contains(subject)))
        {
            return mail;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no email with subject {subject:?}: {:#?}",
            sink.messages()
                .iter()
                .map(|m| m.header("Subject"))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
}

fn text_of(mail: &ReceivedMail) -> String {
    mail.part("text/plain").expect("a text/plain part")
}

/// Turning MFA on, signing in with a backup code, regenerating codes and turning MFA off each
/// email the user, through a real SMTP server, saying what happened.
async fn mfa_changes_are_emailed(kind: Kind) {
    let sink = SmtpSink::start().await;
    let Some(env) = Env::start(kind, TestApp::builder().smtp(sink.url())).await else {
        return;
    };
    let app = &env.app;
    let (setup, totp) = user_with_totp(app, ANN).await;
    let mut secrets: Vec<String> = totp.backup_codes.clone();
    secrets.push(tessera_otp::encode_secret(&totp.secret));

    let enabled = mail_with_subject(&sink, "Two-step verification is on").await;
    assert_eq!(enabled.to, vec![ANN.to_owned()]);
    assert!(text_of(&enabled).contains("Two-step verification was turned on"));

    let used = backup_step(app, &challenge_token(app, ANN).await, &totp.backup_codes[0]).await;
    assert_eq!(used.status(), StatusCode::CREATED);
    let used = mail_with_subject(&sink, "A backup code was used to sign in").await;
    assert_eq!(used.to, vec![ANN.to_owned()]);
    assert!(
        text_of(&used).contains("You have 9 backup codes left."),
        "{}",
        text_of(&used)
    );

    let regenerated = app
        .post("/api/v1/me/backup-codes", Some(&setup), json!({}))
        .await;
    assert_eq!(regenerated.status(), StatusCode::CREATED);
    let body: Value = regenerated.json().await.unwrap();
    secrets.extend(
        body["codes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_owned()),
    );
    let regenerated = mail_with_subject(&sink, "backup codes were generated").await;
    assert_eq!(regenerated.to, vec![ANN.to_owned()]);
    assert!(text_of(&regenerated).contains("Every earlier backup code stopped working"));

    let off = app.delete("/api/v1/me/mfa", Some(&setup)).await;
    assert_eq!(off.status(), StatusCode::NO_CONTENT);
    let disabled = mail_with_subject(&sink, "Two-step verification is off").await;
    assert_eq!(disabled.to, vec![ANN.to_owned()]);
    assert!(text_of(&disabled).contains("Two-step verification was turned off"));

    // No email carries a code or the secret.
    for mail in sink.messages() {
        for secret in &secrets {
            assert!(
                !mail.data.contains(secret.as_str()),
                "an email carries a secret"
            );
            assert!(!mail.data.contains(&secret.replace('-', "")));
        }
    }
    env.finish().await;
}

on_both_backends!(mfa_changes_are_emailed);

// 10. Unfinished sign-ins -------------------------------------------------------------------

fn unfinished_mails(sink: &SmtpSink) -> usize {
    sink.messages()
        .iter()
        .filter(|m| {
            m.header("Subject")
                .is_some_and(|s| s.contains("with your password"))
        })
        .count()
}

/// A password step without a second step is reported to the user by email after ten
/// minutes, at most once an hour; completed sign-ins are not reported.
async fn unfinished_sign_ins_are_reported(kind: Kind) {
    let sink = SmtpSink::start().await;
    let Some(env) = Env::start(kind, TestApp::builder().smtp(sink.url())).await else {
        return;
    };
    let app = &env.app;
    let (setup, totp) = user_with_totp(app, ANN).await;
    let uid = user_id(app, &setup).await;
    let services = app.services();

    password_step(app, ANN).await;
    assert_eq!(
        services.report_unfinished_signins().await.unwrap(),
        0,
        "too early"
    );
    app.clock.advance(Duration::minutes(11));
    assert_eq!(services.report_unfinished_signins().await.unwrap(), 1);
    let mail = mail_with_subject(&sink, "signed in to Tessera with your password").await;
    assert_eq!(mail.to, vec![ANN.to_owned()]);
    let text = text_of(&mail);
    assert!(text.contains("signed in with your password"), "{text}");
    assert!(
        text.contains("tessera-tests/1.0"),
        "names the device: {text}"
    );
    assert_eq!(
        services.report_unfinished_signins().await.unwrap(),
        0,
        "once"
    );
    assert_eq!(
        count_events(app, &setup, "signin_unfinished_reported").await,
        1
    );

    // A second one within the hour is looked at but not emailed.
    password_step(app, ANN).await;
    app.clock.advance(Duration::minutes(11));
    assert_eq!(services.report_unfinished_signins().await.unwrap(), 0);
    let states = "SELECT COUNT(*) FROM mfa_challenges WHERE user_id = $1 AND report_state = $2";
    assert_eq!(
        env.db.count(states, &[(&uid).into(), "sent".into()]).await,
        1
    );
    assert_eq!(
        env.db
            .count(states, &[(&uid).into(), "suppressed".into()])
            .await,
        1
    );
    let queued = env
        .db
        .count(
            "SELECT COUNT(*) FROM outbox WHERE payload LIKE '%unfinished_signin%'",
            &[],
        )
        .await;
    assert_eq!(queued, 1, "one email queued");

    // A completed sign-in is not reported.
    step(app);
    sign_in_with_totp(app, ANN, &totp.secret).await;
    app.clock.advance(Duration::minutes(11));
    assert_eq!(services.report_unfinished_signins().await.unwrap(), 0);
    assert_eq!(
        env.db
            .count(states, &[(&uid).into(), "suppressed".into()])
            .await,
        1
    );

    // An hour after the first email, the next unfinished sign-in is emailed again.
    app.clock.advance(Duration::minutes(30));
    password_step(app, ANN).await;
    app.clock.advance(Duration::minutes(11));
    assert_eq!(services.report_unfinished_signins().await.unwrap(), 1);
    let deadline = tokio::time::Instant::now() + StdDuration::from_secs(15);
    while unfinished_mails(&sink) < 2 {
        assert!(tokio::time::Instant::now() < deadline, "no second report");
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
    assert_eq!(unfinished_mails(&sink), 2);
    env.finish().await;
}

on_both_backends!(unfinished_sign_ins_are_reported);

// 11. Two instances on one database ---------------------------------------------------------

/// Two servers on one PostgreSQL database (with the same keys): a code accepted by one is
/// refused by the other, and a lock set through one holds on the other.
#[tokio::test]
async fn two_instances_share_replay_and_lockout_state() {
    let Some(url) = fresh_postgres().await else {
        return;
    };
    let a = TestApp::builder()
        .backend(Backend::Postgres(url.clone()))
        .start()
        .await;
    let (setup, totp) = user_with_totp(&a, ANN).await;
    let dir = tempfile::tempdir().unwrap();
    copy_keys(a.dir.path(), dir.path());
    let b = TestApp::builder()
        .backend(Backend::Postgres(url.clone()))
        .data_dir(dir)
        .clock(a.clock.clone())
        .start()
        .await;
    assert_eq!(
        b.get("/api/v1/me", Some(&setup)).await.status(),
        StatusCode::OK
    );

    for (first, second) in [(&a, &b), (&b, &a)] {
        step(&a);
        let code = code_at(&a, &totp.secret, 0);
        let accepted = totp_step(first, &challenge_token(first, ANN).await, &code).await;
        assert_eq!(accepted.status(), StatusCode::CREATED);
        let replayed = totp_step(second, &challenge_token(second, ANN).await, &code).await;
        assert_error(replayed, StatusCode::UNAUTHORIZED, "invalid_code").await;
    }
    // A success resets the count before the lock is set through A.
    step(&a);
    sign_in_with_totp(&b, ANN, &totp.secret).await;
    step(&a);
    let on_a = challenge_token(&a, ANN).await;
    for _ in 0..5 {
        let wrong = totp_step(&a, &on_a, &wrong_code(&a, &totp.secret)).await;
        assert_error(wrong, StatusCode::UNAUTHORIZED, "invalid_code").await;
    }
    let on_b = challenge_token(&b, ANN).await;
    let locked = totp_step(&b, &on_b, &code_at(&a, &totp.secret, 0)).await;
    assert_eq!(locked.headers()["retry-after"], "300");
    assert_error(locked, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    a.clock.advance(Duration::minutes(5));
    sign_in_with_totp(&b, ANN, &totp.secret).await;
    b.stop().await;
    a.stop().await;
    drop_postgres(&url).await;
}

// 12. Storage hygiene and tampering ---------------------------------------------------------

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

fn database_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for file in ["tessera.db", "tessera.db-wal"] {
        if let Ok(content) = std::fs::read(dir.join(file)) {
            bytes.extend(content);
        }
    }
    bytes
}

/// Neither a TOTP secret (raw, base32 in either case) nor a backup code (with or without
/// dashes, either case) is in the SQLite file or its WAL — for a confirmed factor and for a
/// pending enrollment, while running and after shutdown.
#[tokio::test]
async fn totp_secrets_and_backup_codes_are_not_stored_in_clear() {
    let app = TestApp::spawn().await;
    let (_, token) = app.signed_in_user(ANN).await;
    let totp = enable_totp(&app, &token).await;
    let pending = start_totp(&app, &token).await;
    let pending_b32 = pending["secret"].as_str().unwrap().to_owned();
    let pending_raw = OtpauthUri::parse(pending["otpauth_uri"].as_str().unwrap())
        .unwrap()
        .secret;
    let regenerated = app
        .post("/api/v1/me/backup-codes", Some(&token), json!({}))
        .await;
    let body: Value = regenerated.json().await.unwrap();
    let mut codes = totp.backup_codes.clone();
    codes.extend(
        body["codes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_owned()),
    );
    let mut needles: Vec<Vec<u8>> = vec![totp.secret.clone(), pending_raw.clone()];
    for b32 in [tessera_otp::encode_secret(&totp.secret), pending_b32] {
        needles.push(b32.as_bytes().to_vec());
        needles.push(b32.to_lowercase().into_bytes());
        // A prefix too: half the secret in clear would be as bad.
        needles.push(b32.as_bytes()[..16].to_vec());
    }
    for code in &codes {
        for form in [
            code.clone(),
            code.replace('-', ""),
            code.to_lowercase(),
            code.to_lowercase().replace('-', ""),
        ] {
            needles.push(form.into_bytes());
        }
    }
    let check = |bytes: &[u8], when: &str| {
        assert!(
            contains(bytes, ANN.as_bytes()),
            "sanity ({when}): the database was read"
        );
        for (i, needle) in needles.iter().enumerate() {
            assert!(
                !contains(bytes, needle),
                "secret #{i} found in the database ({when})"
            );
        }
    };
    check(&database_bytes(app.dir.path()), "running");
    let dir = app.stop().await;
    check(&database_bytes(dir.path()), "stopped");
}

/// A sealed secret that was damaged, or copied from another account, fails the second step
/// closed: never a session, and the password step still owes a second factor.
async fn tampered_secrets_fail_closed(kind: Kind) {
    let Some(env) = Env::start(kind, TestApp::builder()).await else {
        return;
    };
    let app = &env.app;
    let (_ann_setup, ann) = user_with_totp(app, ANN).await;
    let (_bob_setup, bob) = user_with_totp(app, BOB).await;
    let read = "SELECT secret_sealed FROM factors WHERE id = $1";
    let write = "UPDATE factors SET secret_sealed = $1 WHERE id = $2";
    let ann_sealed = env.db.bytes(read, &[(&ann.factor_id).into()]).await;

    step(app);
    let last = ann_sealed.len() - 1;
    for at in [last, last / 2, 0] {
        let mut flipped = ann_sealed.clone();
        flipped[at] ^= 0x01;
        assert_eq!(
            env.db
                .execute(write, &[flipped.into(), (&ann.factor_id).into()])
                .await,
            1
        );
        let challenge = password_step(app, ANN).await;
        assert_eq!(challenge["status"], "mfa_required", "never reads as no MFA");
        let token = challenge["challenge_token"].as_str().unwrap();
        let answer = outcome(totp_step(app, token, &code_at(app, &ann.secret, 0)).await).await;
        assert!(
            answer.status.is_client_error() || answer.status.is_server_error(),
            "byte {at} flipped: {:?}",
            answer.body
        );
        assert!(answer.token.is_none());
        assert!(
            answer.code.is_some(),
            "an error envelope: {:?}",
            answer.body
        );
    }
    // The backup codes still let Ann in.
    let backup = backup_step(app, &challenge_token(app, ANN).await, &ann.backup_codes[0]).await;
    assert_eq!(backup.status(), StatusCode::CREATED);

    // Ann's intact sealed secret copied into Bob's factor row does not open there.
    assert_eq!(
        env.db
            .execute(write, &[ann_sealed.into(), (&bob.factor_id).into()])
            .await,
        1
    );
    let challenge = challenge_token(app, BOB).await;
    for body in [
        json!({"challenge_token": challenge, "method": "totp", "code": code_at(app, &ann.secret, 0)}),
        json!({"challenge_token": challenge, "method": "totp", "factor_id": bob.factor_id, "code": code_at(app, &ann.secret, 0)}),
        json!({"challenge_token": challenge, "method": "totp", "code": code_at(app, &bob.secret, 0)}),
    ] {
        let answer = outcome(second_step_raw(app, body.clone()).await).await;
        assert!(
            answer.status.is_client_error() || answer.status.is_server_error(),
            "{body}: {:?}",
            answer.body
        );
        assert!(answer.token.is_none());
    }
    env.finish().await;
}

on_both_backends!(tampered_secrets_fail_closed);

// 13. Bad input -----------------------------------------------------------------------------

/// The digits of `code` as full-width (U+FF10…) or Arabic-Indic (U+0660…) digits.
fn look_alike_digits(code: &str, zero: char) -> String {
    code.chars()
        .map(|c| char::from_u32(zero as u32 + c.to_digit(10).unwrap()).unwrap())
        .collect()
}

/// Everything malformed sent to the second step or to confirming an enrollment is a 4xx
/// with the API envelope, never a 5xx: `invalid_code` for anything code-shaped (including
/// look-alike digits of the right code), `invalid_request` for wrong types and unknown
/// methods, 413 for an oversized body. Wrong, used, expired and unknown are told apart by
/// nothing: same status, code and message.
async fn bad_input_gets_envelopes(kind: Kind) {
    let Some(env) = Env::start(kind, TestApp::builder()).await else {
        return;
    };
    let app = &env.app;
    let (setup, ann) = user_with_totp(app, ANN).await;
    let (bob_setup, bob) = user_with_totp(app, BOB).await;
    step(app);
    let expiring = challenge_token(app, ANN).await;
    let expiring_enrollment = start_totp(app, &setup).await;
    let challenge = challenge_token(app, ANN).await;
    let right = code_at(app, &ann.secret, 0);
    let huge = "1".repeat(1 << 20);

    // Wrong types, missing or unknown fields, unknown methods: invalid_request.
    for body in [
        json!({"challenge_token": challenge, "method": "totp", "code": [right]}),
        json!({"challenge_token": challenge, "method": "totp", "code": {"code": right}}),
        json!({"challenge_token": challenge, "method": "totp", "code": true}),
        json!({"challenge_token": challenge, "method": "carrier_pigeon", "code": right}),
        json!({"challenge_token": challenge, "method": "TOTP", "code": right}),
        json!({"challenge_token": challenge, "method": "", "code": right}),
        json!({"challenge_token": challenge, "method": "webauthn", "code": right}),
        json!({"challenge_token": challenge, "method": null, "code": right}),
        json!({"challenge_token": challenge, "method": 1, "code": right}),
        json!({"challenge_token": challenge, "code": right}),
        json!({"method": "totp", "code": right}),
        json!({"challenge_token": 42, "method": "totp", "code": right}),
        json!({"challenge_token": null, "method": "totp", "code": right}),
        json!({"challenge_token": challenge, "method": "totp", "factor_id": 7, "code": right}),
        json!({"challenge_token": challenge, "method": "totp", "code": right, "trust_device": true}),
        json!([challenge, "totp", right]),
        json!(null),
        json!(right),
    ] {
        let response = second_step_raw(app, body.clone()).await;
        let status = response.status();
        let text = response.text().await.unwrap();
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {text}");
        let envelope: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            envelope["error"]["code"], "invalid_request",
            "{body}: {text}"
        );
    }
    // An oversized body: 413 with the envelope.
    let response = second_step_raw(
        app,
        json!({"challenge_token": challenge, "method": "totp", "code": huge}),
    )
    .await;
    assert_error(response, StatusCode::PAYLOAD_TOO_LARGE, "invalid_request").await;

    // Code-shaped nonsense: invalid_code, with one message.
    let mut messages = Vec::new();
    let forged = "A".repeat(43);
    let code_shaped = [
        json!({"challenge_token": challenge, "method": "totp", "code": 123_456}),
        json!({"challenge_token": challenge, "method": "totp", "code": right.parse::<u64>().unwrap()}),
        json!({"challenge_token": challenge, "method": "totp", "code": look_alike_digits(&right, '\u{ff10}')}),
        json!({"challenge_token": challenge, "method": "totp", "code": look_alike_digits(&right, '\u{0660}')}),
        json!({"challenge_token": challenge, "method": "totp", "code": format!("{right}\u{200b}")}),
        json!({"challenge_token": challenge, "method": "totp", "code": format!("{right}\u{0}")}),
        json!({"challenge_token": challenge, "method": "totp", "code": ""}),
        json!({"challenge_token": challenge, "method": "totp", "code": null}),
        json!({"challenge_token": challenge, "method": "totp"}),
        json!({"challenge_token": challenge, "method": "totp", "code": &right[..5]}),
        json!({"challenge_token": challenge, "method": "totp", "code": format!("{right}0")}),
        json!({"challenge_token": challenge, "method": "totp", "code": "12345a"}),
        json!({"challenge_token": challenge, "method": "totp", "code": "-12345"}),
        json!({"challenge_token": challenge, "method": "totp", "code": "1".repeat(1000)}),
        json!({"challenge_token": challenge, "method": "totp", "code": "9".repeat(60_000)}),
        json!({"challenge_token": challenge, "method": "backup_code", "code": ""}),
        json!({"challenge_token": challenge, "method": "backup_code", "code": "ZZZZ"}),
        json!({"challenge_token": challenge, "method": "backup_code", "code": "U".repeat(16)}),
        json!({"challenge_token": challenge, "method": "backup_code", "code": "A-".repeat(500)}),
        json!({"challenge_token": challenge, "method": "backup_code", "code": right}),
        json!({"challenge_token": forged, "method": "totp", "code": right}),
        json!({"challenge_token": "", "method": "totp", "code": right}),
        json!({"challenge_token": "x".repeat(5000), "method": "totp", "code": right}),
        json!({"challenge_token": setup, "method": "totp", "code": right}),
    ];
    for body in code_shaped {
        let response = second_step_raw(app, body.clone()).await;
        let answer = outcome(response).await;
        expect_error(&answer, StatusCode::UNAUTHORIZED, "invalid_code");
        messages.push(answer.message.unwrap());
    }

    // Factor ids that are not one of Ann's TOTP factors, with the right codes.
    for (factor_id, code) in [
        ("5f0c7a5e-0000-4000-8000-000000000000", right.clone()),
        (bob.factor_id.as_str(), right.clone()),
        (bob.factor_id.as_str(), code_at(app, &bob.secret, 0)),
        ("not-a-factor", right.clone()),
    ] {
        let response = second_step_raw(
            app,
            json!({"challenge_token": challenge, "method": "totp", "factor_id": factor_id, "code": code}),
        )
        .await;
        let answer = outcome(response).await;
        expect_error(&answer, StatusCode::UNAUTHORIZED, "invalid_code");
        messages.push(answer.message.unwrap());
    }
    // None of that spent the challenge or the code (and the count is reset by the success).
    let done = second_step_raw(
        app,
        json!({"challenge_token": challenge, "method": "totp", "factor_id": ann.factor_id, "code": right}),
    )
    .await;
    assert_eq!(done.status(), StatusCode::CREATED);
    // Bob's factor is untouched: his current code still signs him in.
    sign_in_with_totp(app, BOB, &bob.secret).await;

    // Wrong and used codes (two failures), on a fresh challenge.
    let fresh = challenge_token(app, ANN).await;
    for code in [wrong_code(app, &ann.secret), right.clone()] {
        let answer = outcome(totp_step(app, &fresh, &code).await).await;
        expect_error(&answer, StatusCode::UNAUTHORIZED, "invalid_code");
        messages.push(answer.message.unwrap());
    }

    // Confirming an enrollment.
    let started = start_totp(app, &setup).await;
    let enrollment = started["enrollment_id"].as_str().unwrap().to_owned();
    let secret = OtpauthUri::parse(started["otpauth_uri"].as_str().unwrap())
        .unwrap()
        .secret;
    let good = code_at(app, &secret, 0);
    // A number is code-shaped: refused like a wrong code.
    let response = confirm(app, &setup, &enrollment, json!({"code": 123_456})).await;
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_code").await;
    for body in [
        json!({"code": null}),
        json!({}),
        json!({"code": [good]}),
        json!({"code": good, "label": "x".repeat(65)}),
        json!({"code": good, "label": 5}),
        json!({"code": good, "replace_factor_id": 5}),
        json!({"code": good, "factor_id": ann.factor_id}),
        json!([good]),
    ] {
        let response = confirm(app, &setup, &enrollment, body.clone()).await;
        let status = response.status();
        let text = response.text().await.unwrap();
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {text}");
        let envelope: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            envelope["error"]["code"], "invalid_request",
            "{body}: {text}"
        );
    }
    let response = confirm(app, &setup, &enrollment, json!({"code": huge})).await;
    assert_error(response, StatusCode::PAYLOAD_TOO_LARGE, "invalid_request").await;
    let bob_started = start_totp(app, &bob_setup).await;
    let bob_enrollment = bob_started["enrollment_id"].as_str().unwrap().to_owned();
    let bob_secret = OtpauthUri::parse(bob_started["otpauth_uri"].as_str().unwrap())
        .unwrap()
        .secret;
    for (id, code) in [
        (enrollment.clone(), look_alike_digits(&good, '\u{ff10}')),
        (enrollment.clone(), String::new()),
        (enrollment.clone(), "1".repeat(1000)),
        (enrollment.clone(), good[..5].to_owned()),
        (enrollment.clone(), format!("{good}\u{200b}")),
        ("5f0c7a5e-0000-4000-8000-000000000000".into(), good.clone()),
        ("not-an-enrollment".into(), good.clone()),
        ("9".repeat(300), good.clone()),
        (bob_enrollment.clone(), code_at(app, &bob_secret, 0)),
        (enrollment.clone(), wrong_code(app, &secret)),
    ] {
        let answer = outcome(confirm(app, &setup, &id, json!({"code": code})).await).await;
        expect_error(&answer, StatusCode::UNAUTHORIZED, "invalid_code");
        messages.push(answer.message.unwrap());
    }
    // Still usable after all that (one wrong code of five allowed).
    let confirmed = confirm(app, &setup, &enrollment, json!({"code": good})).await;
    assert_eq!(confirmed.status(), StatusCode::CREATED);
    let used = outcome(confirm(app, &setup, &enrollment, json!({"code": good})).await).await;
    expect_error(&used, StatusCode::UNAUTHORIZED, "invalid_code");
    messages.push(used.message.unwrap());
    // Bob's enrollment is still his to confirm.
    let bob_confirmed = confirm(
        app,
        &bob_setup,
        &bob_enrollment,
        json!({"code": code_at(app, &bob_secret, 0)}),
    )
    .await;
    assert_eq!(bob_confirmed.status(), StatusCode::CREATED);

    // Five wrong confirmation codes void an enrollment: the right code is refused after.
    let voided = start_totp(app, &setup).await;
    let voided_id = voided["enrollment_id"].as_str().unwrap().to_owned();
    let voided_secret = OtpauthUri::parse(voided["otpauth_uri"].as_str().unwrap())
        .unwrap()
        .secret;
    for _ in 0..5 {
        let answer = outcome(
            confirm(
                app,
                &setup,
                &voided_id,
                json!({"code": wrong_code(app, &voided_secret)}),
            )
            .await,
        )
        .await;
        expect_error(&answer, StatusCode::UNAUTHORIZED, "invalid_code");
    }
    let answer = outcome(
        confirm(
            app,
            &setup,
            &voided_id,
            json!({"code": code_at(app, &voided_secret, 0)}),
        )
        .await,
    )
    .await;
    expect_error(&answer, StatusCode::UNAUTHORIZED, "invalid_code");
    messages.push(answer.message.unwrap());

    // Expired: the challenge after 5 minutes, the enrollment after 15.
    app.clock.advance(Duration::seconds(5 * 60 + 1));
    let answer = outcome(totp_step(app, &expiring, &code_at(app, &ann.secret, 0)).await).await;
    expect_error(&answer, StatusCode::UNAUTHORIZED, "invalid_code");
    messages.push(answer.message.unwrap());
    app.clock.advance(Duration::minutes(10));
    let reauth = app
        .post(
            "/api/v1/reauth",
            Some(&setup),
            json!({"password": PASSWORD}),
        )
        .await;
    assert_eq!(reauth.status(), StatusCode::OK);
    let expired_secret = OtpauthUri::parse(expiring_enrollment["otpauth_uri"].as_str().unwrap())
        .unwrap()
        .secret;
    let answer = outcome(
        confirm(
            app,
            &setup,
            expiring_enrollment["enrollment_id"].as_str().unwrap(),
            json!({"code": code_at(app, &expired_secret, 0)}),
        )
        .await,
    )
    .await;
    expect_error(&answer, StatusCode::UNAUTHORIZED, "invalid_code");
    messages.push(answer.message.unwrap());

    messages.dedup();
    assert_eq!(
        messages.len(),
        1,
        "the refusals can be told apart: {messages:?}"
    );
    env.finish().await;
}

on_both_backends!(bad_input_gets_envelopes);

// 14. Concurrent changes to factors and backup codes -------------------------------------------

/// Rounds of a race test (each with a new user), so a race shows up in one run.
const ROUNDS: usize = 5;

/// `n` started enrollments of the session: (enrollment id, its current code).
async fn started_enrollments(app: &TestApp, token: &str, n: usize) -> Vec<(String, String)> {
    let mut enrollments = Vec::with_capacity(n);
    for _ in 0..n {
        let started = start_totp(app, token).await;
        let id = started["enrollment_id"].as_str().unwrap().to_owned();
        let secret = OtpauthUri::parse(started["otpauth_uri"].as_str().unwrap())
            .unwrap()
            .secret;
        enrollments.push((id, code_at(app, &secret, 0)));
    }
    enrollments
}

/// One enrollment confirmed ten times at once gives one factor and one set of backup codes.
async fn one_enrollment_confirmed_at_once(kind: Kind) {
    let Some(env) = Env::start(kind, TestApp::builder()).await else {
        return;
    };
    let app = &env.app;
    let (_, token) = app.signed_in_user(ANN).await;
    let uid = user_id(app, &token).await;
    let enrollment = started_enrollments(app, &token, 1).await.remove(0);
    let (id, code) = (&enrollment.0, &enrollment.1);
    let token = &token;
    let outcomes = join_all((0..10).map(|_| async move {
        outcome(confirm(app, token, id, json!({"code": code})).await).await
    }))
    .await;
    one_winner(&outcomes);
    let factors = "SELECT COUNT(*) FROM factors WHERE user_id = $1";
    assert_eq!(env.db.count(factors, &[(&uid).into()]).await, 1);
    let codes = "SELECT COUNT(*) FROM backup_codes WHERE user_id = $1";
    assert_eq!(env.db.count(codes, &[(&uid).into()]).await, 10);
    assert_eq!(count_events(app, token, "mfa_enabled").await, 1);
    env.finish().await;
}

on_both_backends!(one_enrollment_confirmed_at_once);

/// Four enrollments (four tabs) confirmed at the same moment as the user's first MFA: one of
/// them is the first MFA — one preferred factor, one set of 10 backup codes handed out, and
/// every code handed out works.
async fn first_enrollments_confirmed_at_once(kind: Kind) {
    let Some(env) = Env::start(kind, TestApp::builder()).await else {
        return;
    };
    let app = &env.app;
    // A race: several rounds, each with a new user.
    for round in 0..ROUNDS {
        let email = &format!("ann{round}@example.com");
        let (_, token) = app.signed_in_user(email).await;
        let uid = user_id(app, &token).await;
        let enrollments = started_enrollments(app, &token, 4).await;
        let token = &token;
        let outcomes = join_all(enrollments.iter().map(|(id, code)| async move {
            outcome(confirm(app, token, id, json!({"code": code})).await).await
        }))
        .await;
        let mut sets: Vec<Vec<String>> = Vec::new();
        for answer in &outcomes {
            assert_eq!(answer.status, StatusCode::CREATED, "{:?}", answer.body);
            if let Some(codes) = answer.body["backup_codes"].as_array() {
                sets.push(
                    codes
                        .iter()
                        .map(|c| c.as_str().unwrap().to_owned())
                        .collect(),
                );
            }
        }
        let me = app.get_json("/api/v1/me", Some(token)).await;
        let preferred = me["mfa"]["factors"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["preferred"] == true)
            .count();
        let stored = env
            .db
            .count(
                "SELECT COUNT(*) FROM backup_codes WHERE user_id = $1",
                &[(&uid).into()],
            )
            .await;
        // A set is live or dead as a whole: try its first code.
        let mut dead_sets = 0;
        for set in &sets {
            let response = backup_step(app, &challenge_token(app, email).await, &set[0]).await;
            if response.status() != StatusCode::CREATED {
                dead_sets += 1;
            }
        }
        let enabled_events = count_events(app, token, "mfa_enabled").await;
        assert!(
            preferred == 1
                && sets.len() == 1
                && stored == 10
                && dead_sets == 0
                && enabled_events == 1,
            "{preferred} preferred factors, {} sets of backup codes handed out ({dead_sets} of them \
             not working), {stored} codes stored, {enabled_events} mfa_enabled events",
            sets.len()
        );
    }
    env.finish().await;
}

on_both_backends!(first_enrollments_confirmed_at_once);

/// Four confirmations at once that each replace the same old factor: one replaces it, the
/// others are refused; the user keeps exactly one authenticator app.
async fn replacements_of_one_factor_at_once(kind: Kind) {
    let Some(env) = Env::start(kind, TestApp::builder()).await else {
        return;
    };
    let app = &env.app;
    // A race: several rounds, each with a new user.
    for round in 0..ROUNDS {
        let email = &format!("ann{round}@example.com");
        let (setup, old) = user_with_totp(app, email).await;
        let enrollments = started_enrollments(app, &setup, 4).await;
        let (setup, old_id) = (&setup, &old.factor_id);
        let outcomes = join_all(enrollments.iter().map(|(id, code)| async move {
            let body = json!({"code": code, "replace_factor_id": old_id});
            outcome(confirm(app, setup, id, body).await).await
        }))
        .await;
        let statuses: Vec<StatusCode> = outcomes.iter().map(|o| o.status).collect();
        let me = app.get_json("/api/v1/me", Some(setup)).await;
        let replaced = count_events(app, setup, "factor_replaced").await;
        assert!(
            factor_ids(&me).len() == 1
                && replaced == 1
                && statuses
                    .iter()
                    .filter(|s| **s == StatusCode::CREATED)
                    .count()
                    == 1,
            "answers {statuses:?}, {replaced} factor_replaced events, factors: {}",
            me["mfa"]["factors"]
        );
    }
    env.finish().await;
}

on_both_backends!(replacements_of_one_factor_at_once);

/// Four regenerations at once: afterwards exactly one set of 10 codes is stored.
async fn regenerations_at_once(kind: Kind) {
    let Some(env) = Env::start(kind, TestApp::builder()).await else {
        return;
    };
    let app = &env.app;
    // A race: several rounds, each with a new user.
    for round in 0..ROUNDS {
        let email = &format!("ann{round}@example.com");
        let (setup, _totp) = user_with_totp(app, email).await;
        let uid = user_id(app, &setup).await;
        let setup = &setup;
        let outcomes = join_all((0..4).map(|_| async move {
            outcome(
                app.post("/api/v1/me/backup-codes", Some(setup), json!({}))
                    .await,
            )
            .await
        }))
        .await;
        let mut sets = Vec::new();
        for answer in &outcomes {
            assert_eq!(answer.status, StatusCode::CREATED, "{:?}", answer.body);
            sets.push(answer.body["codes"][0].as_str().unwrap().to_owned());
        }
        let stored = env
            .db
            .count(
                "SELECT COUNT(*) FROM backup_codes WHERE user_id = $1",
                &[(&uid).into()],
            )
            .await;
        let me = app.get_json("/api/v1/me", Some(setup)).await;
        assert_eq!(
            (stored, me["mfa"]["backup_codes"]["remaining"].clone()),
            (10, json!(10)),
            "earlier sets must stop working"
        );
        // Exactly one of the four sets works.
        let mut live = 0;
        for first in &sets {
            if backup_step(app, &challenge_token(app, email).await, first)
                .await
                .status()
                == StatusCode::CREATED
            {
                live += 1;
            }
        }
        assert_eq!(live, 1);
    }
    env.finish().await;
}

on_both_backends!(regenerations_at_once);

/// With `mfa.allow_disable = false`, removing all three factors at once must leave MFA on
/// (every removal but one refused with policy_forbids).
async fn removing_every_factor_at_once(kind: Kind) {
    let Some(env) = Env::start(kind, TestApp::builder().mfa_allow_disable(false)).await else {
        return;
    };
    let app = &env.app;
    // A race: several rounds, each with a new user.
    for round in 0..ROUNDS {
        let email = &format!("ann{round}@example.com");
        let (setup, first) = user_with_totp(app, email).await;
        let mut ids = vec![first.factor_id.clone()];
        for _ in 0..2 {
            ids.push(enable_totp(app, &setup).await.factor_id);
        }
        let setup = &setup;
        let statuses = join_all(ids.iter().map(|id| async move {
            app.delete(&format!("/api/v1/me/factors/{id}"), Some(setup))
                .await
                .status()
        }))
        .await;
        let me = app.get_json("/api/v1/me", Some(setup)).await;
        let password_only = app
            .post(
                "/api/v1/sessions",
                None,
                json!({"email": email, "password": PASSWORD}),
            )
            .await
            .status();
        assert!(
            me["mfa"]["enabled"] == true && password_only == StatusCode::OK,
            "answers {statuses:?}; afterwards MFA enabled = {}, a password alone answers \
             {password_only}, {} backup codes left",
            me["mfa"]["enabled"],
            me["mfa"]["backup_codes"]["remaining"]
        );
    }
    env.finish().await;
}

on_both_backends!(removing_every_factor_at_once);
