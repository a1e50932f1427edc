//! A real HTTP server standing in for an SMS provider's webhook: it records the JSON bodies
//! the SMS transport posts (`{"to", "body"}`) and answers with a status the test sets.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A webhook on 127.0.0.1:0 answering `status` and recording the JSON bodies it got.
pub struct SmsWebhook {
    pub url: String,
    status: Arc<AtomicU16>,
    bodies: Arc<Mutex<Vec<serde_json::Value>>>,
}

#[derive(Clone)]
struct Hook {
    status: Arc<AtomicU16>,
    bodies: Arc<Mutex<Vec<serde_json::Value>>>,
}

async fn receive(State(hook): State<Hook>, Json(body): Json<serde_json::Value>) -> StatusCode {
    hook.bodies.lock().unwrap().push(body);
    StatusCode::from_u16(hook.status.load(Ordering::SeqCst)).unwrap()
}

impl SmsWebhook {
    pub async fn start(status: u16) -> Self {
        let hook = Hook {
            status: Arc::new(AtomicU16::new(status)),
            bodies: Arc::default(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/sms/send?token=s3cr3t",
            listener.local_addr().unwrap()
        );
        let app = axum::Router::new()
            .route("/sms/send", post(receive))
            .with_state(hook.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url,
            status: hook.status,
            bodies: hook.bodies,
        }
    }

    /// What the next requests are answered with.
    pub fn set_status(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    /// Every body received so far.
    pub fn bodies(&self) -> Vec<serde_json::Value> {
        self.bodies.lock().unwrap().clone()
    }

    /// Waits (bounded) until `n` bodies arrived and returns them.
    pub async fn wait_for(&self, n: usize) -> Vec<serde_json::Value> {
        for _ in 0..200 {
            let bodies = self.bodies();
            if bodies.len() >= n {
                return bodies;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "the SMS webhook got {} of {n} messages",
            self.bodies().len()
        );
    }

    /// Waits for message `n` (counting from 1) and returns the 6-digit code in its text.
    pub async fn code(&self, n: usize) -> String {
        let body = self.wait_for(n).await.remove(n - 1);
        six_digits(body["body"].as_str().unwrap())
    }
}

/// The first run of exactly six digits in `text`.
pub fn six_digits(text: &str) -> String {
    text.split(|c: char| !c.is_ascii_digit())
        .find(|run| run.len() == 6)
        .unwrap_or_else(|| panic!("no 6-digit code in {text:?}"))
        .to_owned()
}
