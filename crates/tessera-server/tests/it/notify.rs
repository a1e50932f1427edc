//! Notification delivery against real peers: a real SMTP server, a real HTTP webhook, and the
//! real store (SQLite in a temporary file) for the outbox worker.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation should stop the test"
)]

use crate::support::sms::SmsWebhook;
use crate::support::smtp::SmtpSink;
use axum::Json;
use axum::http::StatusCode;
use secrecy::SecretString;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tempfile::TempDir;
use tessera_core::clock::{Clock, FixedClock};
use tessera_core::crypto::KeyRing;
use tessera_core::notification::{
    Channel, NewOutboxMessage, Notification, OUTBOX_GIVE_UP_AFTER, OutboxMessage, retry_delay,
};
use tessera_core::otc::{CodePurpose, OneTimeCode, seal_for_outbox};
use tessera_core::store::Store;
use tessera_server::notify::{
    Delivery, KeySource, NotifyConfig, OutboxWorker, PassOutcome, TwilioSettings,
};
use tessera_store::SqlStore;
use time::OffsetDateTime;
use time::macros::datetime;
use tokio::sync::watch;

const START: OffsetDateTime = datetime!(2026-02-03 10:00 UTC);
const WAIT: Duration = Duration::from_secs(10);

fn secret(url: String) -> Option<SecretString> {
    Some(SecretString::from(url))
}

fn config(dir: &TempDir) -> NotifyConfig {
    NotifyConfig::dev("https://id.example.com", dir.path())
}

fn welcome(email: &str) -> Notification {
    Notification::AccountCreated {
        email: email.into(),
    }
}

/// A notification that greets its (own) account holder by name.
fn password_changed_for(display_name: &str) -> Notification {
    Notification::PasswordChanged {
        display_name: display_name.into(),
        at: "2026-02-03T10:00:00Z".into(),
        ip: Some("203.0.113.7".into()),
        sessions_revoked: 1,
    }
}

fn password_changed() -> Notification {
    Notification::PasswordChanged {
        display_name: "Ann".into(),
        at: "2026-02-03T10:00:00Z".into(),
        ip: Some("203.0.113.7".into()),
        sessions_revoked: 1,
    }
}

fn outbox_message(
    id: i64,
    channel: Channel,
    recipient: &str,
    notification: Notification,
) -> OutboxMessage {
    OutboxMessage {
        id,
        channel,
        recipient: recipient.into(),
        notification,
        created_at: START,
        attempts: 0,
    }
}

/// A migrated SQLite store in a temporary directory, with a clock standing at [`START`].
async fn store() -> (TempDir, Arc<dyn Store>, Arc<FixedClock>) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("tessera.db").display()
    );
    let store = SqlStore::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    (dir, Arc::new(store), Arc::new(FixedClock::at(START)))
}

async fn enqueue(
    store: &dyn Store,
    channel: Channel,
    recipient: &str,
    notification: Notification,
    at: OffsetDateTime,
) {
    let mut tx = store.begin().await.unwrap();
    tx.enqueue(&NewOutboxMessage {
        channel,
        recipient: recipient.into(),
        notification,
        created_at: at,
    })
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn smtp_delivers_a_multipart_email_to_a_real_server() {
    let smtp = SmtpSink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir);
    config.smtp_url = secret(smtp.url());
    config.mail_from = "Tessera Security <security@id.example.com>".into();
    let delivery = Delivery::from_config(&config).unwrap();
    assert_eq!(
        delivery.describe().split(';').next().unwrap(),
        format!("email: SMTP {}", smtp.url())
    );

    let name = "Ann <script>alert(1)</script>";
    delivery
        .deliver(&outbox_message(
            5,
            Channel::Email,
            "ann@example.com",
            password_changed_for(name),
        ))
        .await
        .unwrap();

    let mail = smtp.wait_for(1, WAIT).await.remove(0);
    assert_eq!(mail.from, "security@id.example.com");
    assert_eq!(mail.to, ["ann@example.com"]);
    assert_eq!(
        mail.header("From").unwrap(),
        "\"Tessera Security\" <security@id.example.com>"
    );
    assert_eq!(mail.header("To").unwrap(), "ann@example.com");
    assert_eq!(
        mail.header("Subject").unwrap(),
        "Your Tessera password was changed"
    );
    assert_eq!(
        mail.header("Message-ID").unwrap(),
        format!("<outbox-5.{}@id.example.com>", START.unix_timestamp())
    );
    assert!(mail.header("Date").is_some());
    assert!(
        mail.header("Content-Type")
            .unwrap()
            .starts_with("multipart/alternative;")
    );
    let types = mail.part_types();
    assert_eq!(types.len(), 2, "{types:?}");
    assert!(
        types[0].starts_with("text/plain") && types[1].starts_with("text/html"),
        "{types:?}"
    );

    let text = mail.part("text/plain").unwrap();
    assert!(text.contains(&format!("Hello {name},")), "{text}");
    assert!(
        text.contains("https://id.example.com/settings/security"),
        "{text}"
    );
    let html = mail.part("text/html").unwrap();
    assert!(html.contains("<!DOCTYPE html>"), "{html}");
    assert!(
        html.contains("https://id.example.com/settings/security"),
        "{html}"
    );
    assert!(!html.contains("<script>"), "{html}");
    assert!(
        html.contains("Hello Ann &#60;script&#62;") || html.contains("Hello Ann &lt;script&gt;"),
        "{html}"
    );
    // No file in the dev outbox when SMTP is configured.
    assert!(!dir.path().join("outbox").exists());
}

#[tokio::test]
async fn a_dot_at_a_line_start_survives_the_smtp_transfer() {
    let smtp = SmtpSink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir);
    config.smtp_url = secret(smtp.url());
    let delivery = Delivery::from_config(&config).unwrap();
    // The text part starts a line with "Hello .hidden," — a name starting with a dot.
    delivery
        .deliver(&outbox_message(
            6,
            Channel::Email,
            "ann@example.com",
            password_changed_for(".hidden"),
        ))
        .await
        .unwrap();
    let mail = smtp.wait_for(1, WAIT).await.remove(0);
    assert!(mail.part("text/plain").unwrap().contains("Hello .hidden,"));
}

#[tokio::test]
async fn the_sms_webhook_gets_to_and_body_as_json() {
    let webhook = SmsWebhook::start(202).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir);
    config.sms_webhook_url = secret(webhook.url.clone());
    let delivery = Delivery::from_config(&config).unwrap();
    assert!(!format!("{delivery:?} {}", delivery.describe()).contains("s3cr3t"));

    delivery
        .deliver(&outbox_message(
            9,
            Channel::Sms,
            "+15555550123",
            password_changed(),
        ))
        .await
        .unwrap();

    assert_eq!(
        webhook.bodies(),
        [serde_json::json!({
            "to": "+15555550123",
            "body": "Tessera: your password was changed. Not you? https://id.example.com/settings/security",
        })]
    );
    assert!(!dir.path().join("outbox").exists());
}

/// A one-time-code notification as the services enqueue it: the code sealed for its
/// recipient and purpose.
fn sealed_code(keys: &KeyRing, code: &OneTimeCode, to: &str, purpose: CodePurpose) -> Notification {
    Notification::OneTimeCode {
        purpose: purpose.as_str().into(),
        sealed_code: seal_for_outbox(keys, code, to, purpose).unwrap(),
    }
}

#[tokio::test]
async fn sms_codes_are_opened_only_at_delivery_and_name_the_service_and_purpose() {
    let webhook = SmsWebhook::start(202).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir);
    config.sms_webhook_url = secret(webhook.url.clone());
    let keys = Arc::new(KeyRing::generate().unwrap());
    let delivery = Delivery::from_config(&config)
        .unwrap()
        .with_keys(KeySource::fixed(Arc::clone(&keys)));
    let code = OneTimeCode::generate().unwrap();
    let to = "+14155552671";
    let notification = sealed_code(&keys, &code, to, CodePurpose::Signin);
    // The outbox payload (what the database holds) does not carry the code.
    let payload = serde_json::to_string(&notification).unwrap();
    assert!(!payload.contains(code.expose()), "{payload}");

    delivery
        .deliver(&outbox_message(11, Channel::Sms, to, notification.clone()))
        .await
        .unwrap();
    assert_eq!(
        webhook.bodies(),
        [serde_json::json!({
            "to": to,
            "body": format!("Your Tessera sign-in code is {}. It expires in 10 minutes.", code.expose()),
        })]
    );

    // Moved to another number, without the keys, or under other keys: never sent, and
    // retrying cannot help.
    let moved = delivery
        .deliver(&outbox_message(
            12,
            Channel::Sms,
            "+14155550000",
            notification.clone(),
        ))
        .await
        .unwrap_err();
    assert!(moved.is_permanent(), "{moved}");
    let keyless = Delivery::from_config(&config).unwrap();
    let error = keyless
        .deliver(&outbox_message(13, Channel::Sms, to, notification.clone()))
        .await
        .unwrap_err();
    assert!(error.is_permanent(), "{error}");
    let other = Delivery::from_config(&config)
        .unwrap()
        .with_keys(KeySource::fixed(Arc::new(KeyRing::generate().unwrap())));
    assert!(
        other
            .deliver(&outbox_message(14, Channel::Sms, to, notification))
            .await
            .is_err()
    );
    assert_eq!(webhook.bodies().len(), 1);
}

#[tokio::test]
async fn email_codes_reach_a_real_smtp_server_with_text_and_html_parts() {
    let smtp = SmtpSink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir);
    config.smtp_url = secret(smtp.url());
    let keys = Arc::new(KeyRing::generate().unwrap());
    let delivery = Delivery::from_config(&config)
        .unwrap()
        .with_keys(KeySource::fixed(Arc::clone(&keys)));
    let code = OneTimeCode::generate().unwrap();
    let to = "ann@example.com";
    delivery
        .deliver(&outbox_message(
            15,
            Channel::Email,
            to,
            sealed_code(&keys, &code, to, CodePurpose::Enrollment),
        ))
        .await
        .unwrap();
    let mail = smtp.wait_for(1, WAIT).await.remove(0);
    assert_eq!(mail.to, [to]);
    assert_eq!(
        mail.header("Subject").unwrap(),
        "Your Tessera verification code"
    );
    let text = mail.part("text/plain").unwrap();
    assert!(text.contains(code.expose()), "{text}");
    assert!(text.contains("expires in 10 minutes"), "{text}");
    let html = mail.part("text/html").unwrap();
    assert!(html.contains(code.expose()), "{html}");
    assert!(
        html.contains("https://id.example.com/settings/security"),
        "{html}"
    );
}

/// What a Twilio-compatible API on 127.0.0.1:0 received: path, `Authorization`, form fields.
type TwilioRequests = Arc<Mutex<Vec<(String, String, Vec<(String, String)>)>>>;

async fn twilio_api(status: u16) -> (String, TwilioRequests) {
    let requests: TwilioRequests = Arc::default();
    let seen = Arc::clone(&requests);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().fallback(
        move |uri: axum::http::Uri,
              headers: axum::http::HeaderMap,
              axum::Form(fields): axum::Form<Vec<(String, String)>>| {
            let seen = Arc::clone(&seen);
            async move {
                let auth = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                seen.lock()
                    .unwrap()
                    .push((uri.path().to_owned(), auth, fields));
                (
                    StatusCode::from_u16(status).unwrap(),
                    Json(serde_json::json!({"code": 21211, "sid": "SM1"})),
                )
            }
        },
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, requests)
}

fn twilio_settings(base_url: String) -> TwilioSettings {
    TwilioSettings {
        account_sid: "AC0123456789abcdef0123456789abcdef".into(),
        auth_token: SecretString::from("tw1l10-s3cr3t".to_owned()),
        from: "+15005550006".into(),
        base_url,
    }
}

#[tokio::test]
async fn twilio_gets_the_messages_form_with_basic_auth() {
    use base64::Engine as _;
    let (base, requests) = twilio_api(201).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir);
    config.sms_twilio = Some(twilio_settings(base.clone()));
    let delivery = Delivery::from_config(&config).unwrap();
    assert!(
        delivery.describe().contains("Twilio-compatible API"),
        "{}",
        delivery.describe()
    );
    assert!(!format!("{delivery:?} {}", delivery.describe()).contains("s3cr3t"));

    delivery
        .deliver(&outbox_message(
            21,
            Channel::Sms,
            "+14155552671",
            password_changed(),
        ))
        .await
        .unwrap();

    let requests = requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 1);
    let (path, auth, fields) = &requests[0];
    assert_eq!(
        path,
        "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages.json"
    );
    let expected = base64::engine::general_purpose::STANDARD
        .encode("AC0123456789abcdef0123456789abcdef:tw1l10-s3cr3t");
    assert_eq!(auth, &format!("Basic {expected}"));
    let field = |name: &str| {
        fields
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    assert_eq!(field("To"), Some("+14155552671"));
    assert_eq!(field("From"), Some("+15005550006"));
    assert_eq!(
        field("Body"),
        Some(
            "Tessera: your password was changed. Not you? https://id.example.com/settings/security"
        )
    );
    assert!(!dir.path().join("outbox").exists());
}

#[tokio::test]
async fn a_twilio_refusal_is_a_retryable_failure_naming_its_code_not_the_token() {
    let (base, requests) = twilio_api(400).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir);
    config.sms_twilio = Some(twilio_settings(base));
    let delivery = Delivery::from_config(&config).unwrap();
    let error = delivery
        .deliver(&outbox_message(
            22,
            Channel::Sms,
            "+14155552671",
            password_changed(),
        ))
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("HTTP 400") && text.contains("21211"),
        "{text}"
    );
    assert!(!text.contains("s3cr3t"), "{text}");
    assert!(!error.is_permanent());
    assert_eq!(requests.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_failing_webhook_is_retried_with_backoff_then_delivered() {
    let webhook = SmsWebhook::start(500).await;
    let (dir, store, clock) = store().await;
    let mut config = config(&dir);
    config.sms_webhook_url = secret(webhook.url.clone());
    let worker = OutboxWorker::new(
        store.clone(),
        clock.clone(),
        Arc::new(Delivery::from_config(&config).unwrap()),
    );
    enqueue(
        &*store,
        Channel::Sms,
        "+15555550123",
        password_changed(),
        START,
    )
    .await;

    let outcome = worker.deliver_due_once().await.unwrap();
    assert_eq!(
        outcome,
        PassOutcome {
            delivered: 0,
            retried: 1,
            failed: 0
        }
    );
    assert_eq!(webhook.bodies().len(), 1);
    assert_eq!(store.outbox_backlog().await.unwrap(), 1);

    // Not due before the first backoff has passed …
    clock.advance(retry_delay(0) - time::Duration::seconds(1));
    assert_eq!(worker.deliver_due_once().await.unwrap().attempted(), 0);
    // … due after it, failing again, and the next wait doubles.
    clock.advance(time::Duration::seconds(1));
    assert_eq!(worker.deliver_due_once().await.unwrap().retried, 1);
    let now = clock.now();
    assert!(
        store
            .claim_outbox_message(now + retry_delay(1) - time::Duration::seconds(1), now)
            .await
            .unwrap()
            .is_none()
    );
    let claimed = store
        .claim_outbox_message(now + retry_delay(1), now + retry_delay(1))
        .await
        .unwrap()
        .expect("due after the second backoff");
    assert_eq!(claimed.attempts, 2);
    // Release that probe's lease by moving past it, and let the provider recover.
    clock.advance(retry_delay(1) + time::Duration::seconds(1));
    webhook.set_status(200);
    assert_eq!(worker.deliver_due_once().await.unwrap().delivered, 1);
    assert_eq!(webhook.bodies().len(), 3);
    assert_eq!(store.outbox_backlog().await.unwrap(), 0);
    let stats = worker.stats();
    assert_eq!(
        (stats.delivered(), stats.retried(), stats.failed()),
        (1, 2, 0)
    );
}

#[tokio::test]
async fn a_message_failing_for_a_day_is_given_up() {
    let smtp = SmtpSink::start().await;
    smtp.reject_mail(true);
    let (dir, store, clock) = store().await;
    let mut config = config(&dir);
    config.smtp_url = secret(smtp.url());
    let worker = OutboxWorker::new(
        store.clone(),
        clock.clone(),
        Arc::new(Delivery::from_config(&config).unwrap()),
    );
    enqueue(
        &*store,
        Channel::Email,
        "ann@example.com",
        welcome("Ann"),
        START,
    )
    .await;

    assert_eq!(worker.deliver_due_once().await.unwrap().retried, 1);
    clock.advance(OUTBOX_GIVE_UP_AFTER);
    assert_eq!(worker.deliver_due_once().await.unwrap().failed, 1);
    assert_eq!(store.outbox_backlog().await.unwrap(), 0);
    assert_eq!(worker.stats().failed(), 1);

    // A failed message is never tried again, even once the server accepts mail.
    smtp.reject_mail(false);
    clock.advance(time::Duration::days(2));
    assert_eq!(worker.deliver_due_once().await.unwrap().attempted(), 0);
    assert!(smtp.messages().is_empty());
}

#[tokio::test]
async fn a_malformed_recipient_fails_at_once() {
    let (dir, store, clock) = store().await;
    let worker = OutboxWorker::new(
        store.clone(),
        clock.clone(),
        Arc::new(Delivery::from_config(&config(&dir)).unwrap()),
    );
    enqueue(
        &*store,
        Channel::Email,
        "not an address",
        welcome("Ann"),
        START,
    )
    .await;
    assert_eq!(
        worker.deliver_due_once().await.unwrap(),
        PassOutcome {
            delivered: 0,
            retried: 0,
            failed: 1
        }
    );
    assert_eq!(store.outbox_backlog().await.unwrap(), 0);
}

#[tokio::test]
async fn a_message_committed_before_a_crash_is_delivered_exactly_once_by_the_worker() {
    let smtp = SmtpSink::start().await;
    let (dir, store, clock) = store().await;
    // "Killed before delivery": the use case committed, no worker ran.
    enqueue(
        &*store,
        Channel::Email,
        "ann@example.com",
        password_changed(),
        START,
    )
    .await;
    assert_eq!(store.outbox_backlog().await.unwrap(), 1);

    let mut config = config(&dir);
    config.smtp_url = secret(smtp.url());
    let worker = OutboxWorker::new(
        store.clone(),
        clock.clone(),
        Arc::new(Delivery::from_config(&config).unwrap()),
    )
    .with_poll_interval(Duration::from_millis(20));
    let stats = worker.stats();
    let (shutdown, shutdown_rx) = watch::channel(false);
    let running = tokio::spawn(worker.clone().run(shutdown_rx));

    let mail = smtp.wait_for(1, WAIT).await.remove(0);
    assert_eq!(mail.to, ["ann@example.com"]);
    assert_eq!(
        mail.header("Subject").unwrap(),
        "Your Tessera password was changed"
    );
    // Several polls later, still exactly one.
    tokio::time::sleep(Duration::from_millis(200)).await;
    shutdown.send(true).unwrap();
    tokio::time::timeout(WAIT, running).await.unwrap().unwrap();
    assert_eq!(smtp.messages().len(), 1);
    assert_eq!(stats.delivered(), 1);
    assert_eq!(store.outbox_backlog().await.unwrap(), 0);

    // A later pass (e.g. after the lease would have expired) delivers nothing more.
    clock.advance(time::Duration::hours(1));
    assert_eq!(
        worker.deliver_due_once().await.unwrap(),
        PassOutcome::default()
    );
    assert_eq!(smtp.messages().len(), 1);
}

#[tokio::test]
async fn a_poke_delivers_at_once_and_shutdown_stops_the_worker_promptly() {
    let (dir, store, clock) = store().await;
    // Polling once an hour: only the poke can explain a prompt delivery.
    let worker = OutboxWorker::new(
        store.clone(),
        clock.clone(),
        Arc::new(Delivery::from_config(&config(&dir)).unwrap()),
    )
    .with_poll_interval(Duration::from_secs(3600));
    let waker = worker.waker();
    let stats = worker.stats();
    let (shutdown, shutdown_rx) = watch::channel(false);
    let running = tokio::spawn(worker.run(shutdown_rx));
    tokio::time::sleep(Duration::from_millis(100)).await;

    enqueue(
        &*store,
        Channel::Email,
        "ann@example.com",
        welcome("Ann"),
        START,
    )
    .await;
    enqueue(&*store, Channel::Sms, "+15555550123", welcome("Ann"), START).await;
    waker.wake();
    let deadline = tokio::time::Instant::now() + WAIT;
    while stats.delivered() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the poke did not wake the worker"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut files: Vec<String> = std::fs::read_dir(dir.path().join("outbox"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(
        files[0].starts_with("20260203T100000Z-") && files[0].ends_with(".eml"),
        "{files:?}"
    );
    assert!(files[1].ends_with(".sms.json"), "{files:?}");

    shutdown.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(2), running)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn two_workers_never_deliver_one_message_twice() {
    let smtp = SmtpSink::start().await;
    let (dir, store, clock) = store().await;
    for i in 0..10 {
        enqueue(
            &*store,
            Channel::Email,
            &format!("user{i}@example.com"),
            welcome("Ann"),
            START,
        )
        .await;
    }
    let mut config = config(&dir);
    config.smtp_url = secret(smtp.url());
    let delivery = Arc::new(Delivery::from_config(&config).unwrap());
    let a = OutboxWorker::new(store.clone(), clock.clone(), delivery.clone());
    let b = OutboxWorker::new(store.clone(), clock.clone(), delivery);
    let (first, second) = tokio::join!(a.deliver_due_once(), b.deliver_due_once());
    assert_eq!(first.unwrap().delivered + second.unwrap().delivered, 10);
    let mut recipients: Vec<String> = smtp
        .wait_for(10, WAIT)
        .await
        .into_iter()
        .flat_map(|m| m.to)
        .collect();
    recipients.sort();
    recipients.dedup();
    assert_eq!(recipients.len(), 10);
    assert_eq!(smtp.messages().len(), 10);
}
