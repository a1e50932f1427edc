//! Test support: the server under test and real peers.

pub mod app;
pub mod browser;
pub mod mfa;
pub mod sms;
pub mod smtp;

use std::path::Path;
use std::time::Duration;

/// Waits (bounded) for an `.eml` in the dev outbox whose text contains `needle`, and returns it.
pub async fn wait_for_outbox_email(dir: &Path, needle: &str) -> String {
    for _ in 0..100 {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "eml") {
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    if text.to_lowercase().contains(&needle.to_lowercase()) {
                        return text;
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no email containing {needle:?} in {}", dir.display());
}
