//! What the database must never hold in clear: passwords, session tokens, keys.

use crate::support::app::{NEW_PASSWORD, PASSWORD, TestApp};
use base64::Engine as _;
use serde_json::json;

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn no_password_token_or_key_is_stored_in_clear() {
    let app = TestApp::spawn().await;
    let (email, token) = app.signed_in_user("ann@example.com").await;
    let other = app.sign_in(&email, PASSWORD).await;
    app.post(
        "/api/v1/me/password",
        Some(&token),
        json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD}),
    )
    .await;
    let dir = app.stop().await;

    let mut database = Vec::new();
    for file in ["tessera.db", "tessera.db-wal"] {
        if let Ok(bytes) = std::fs::read(dir.path().join(file)) {
            database.extend(bytes);
        }
    }
    assert!(
        contains(&database, b"ann@example.com"),
        "sanity: the database was read"
    );
    for secret in [PASSWORD, NEW_PASSWORD, &token, &other] {
        assert!(
            !contains(&database, secret.as_bytes()),
            "found a secret in the database"
        );
    }
    let pepper = std::fs::read_to_string(dir.path().join("keys/pepper.key")).unwrap();
    let pepper = base64::engine::general_purpose::STANDARD
        .decode(pepper.trim())
        .unwrap();
    assert!(!contains(&database, &pepper));
    assert!(!contains(&database, pepper.as_slice().get(..16).unwrap()));
    let ring: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("keys/keyring.json")).unwrap())
            .unwrap();
    let key = base64::engine::general_purpose::STANDARD
        .decode(ring["keys"][0]["key"].as_str().unwrap())
        .unwrap();
    assert!(!contains(&database, &key));
}
