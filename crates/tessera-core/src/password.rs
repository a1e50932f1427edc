//! Passwords: the acceptance policy and Argon2id hashing on a bounded pool.
//!
//! Threats: offline cracking of a leaked database (Argon2id with OWASP parameters, m=19 MiB,
//! t=2, p=1), guessable passwords (NIST SP 800-63B §5.1.1.2: a length floor, no composition
//! rules, a check against breached and guessable passwords), account enumeration by timing
//! (unknown emails verify against a dummy hash), and denial of service by sign-in floods (hashing
//! runs on a bounded number of blocking threads; excess requests wait or are shed).

use crate::{Error, Result};
use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use secrecy::{ExposeSecret, SecretString};
use std::collections::HashSet;
use std::sync::{Arc, LazyLock, OnceLock};
use tokio::sync::Semaphore;
use unicode_normalization::UnicodeNormalization;

/// The shortest password accepted, in characters (NIST SP 800-63B: at least 8).
pub const MIN_PASSWORD_CHARS: usize = 8;
/// The longest password accepted, in bytes; bounds the hashing input.
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// zxcvbn scores below this are "too guessable".
pub const MIN_ZXCVBN_SCORE: u8 = 3;

static COMMON_PASSWORDS: LazyLock<HashSet<String>> = LazyLock::new(|| {
    include_str!("../data/common-passwords.txt")
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| line.nfkc().collect::<String>().to_lowercase())
        .collect()
});

/// Normalizes a password as it is hashed and compared: Unicode NFKC (NIST SP 800-63B §5.1.1.2),
/// so the same password typed on different keyboards matches.
pub fn normalize(password: &str) -> SecretString {
    SecretString::from(password.nfkc().collect::<String>())
}

/// Checks a new password against the policy. `context` holds words tied to the account (its
/// email, display name) that must not make up the password.
pub fn check_new_password(password: &str, context: &[&str]) -> Result<SecretString> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(Error::invalid(format!(
            "password: must be at most {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    let normalized = normalize(password);
    let text = normalized.expose_secret();
    if text.chars().count() < MIN_PASSWORD_CHARS {
        return Err(Error::WeakPassword(format!(
            "The password must be at least {MIN_PASSWORD_CHARS} characters long."
        )));
    }
    if text.len() > MAX_PASSWORD_BYTES {
        return Err(Error::invalid(format!(
            "password: must be at most {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    if COMMON_PASSWORDS.contains(&text.to_lowercase()) {
        return Err(Error::WeakPassword(
            "This password appears in lists of commonly used passwords; choose another.".into(),
        ));
    }
    let letters = |text: &str| -> String {
        text.chars()
            .filter(|c| c.is_alphanumeric())
            .flat_map(char::to_lowercase)
            .collect()
    };
    let bare = letters(text);
    if !bare.is_empty()
        && context
            .iter()
            .map(|word| letters(word))
            .any(|word| word.len() >= 4 && word.contains(&bare))
    {
        return Err(Error::WeakPassword(
            "The password must not be based on your email address or name.".into(),
        ));
    }
    // The account's own words (email parts, name) and the service's name make weak passwords.
    let mut inputs: Vec<&str> = vec!["tessera"];
    for word in context {
        inputs.push(word);
        inputs.extend(
            word.split(|c: char| !c.is_alphanumeric())
                .filter(|part| part.len() >= 3),
        );
    }
    let estimate = zxcvbn::zxcvbn(text, &inputs);
    let score = u8::from(estimate.score());
    if score < MIN_ZXCVBN_SCORE {
        let mut reason = String::from("This password is too easy to guess.");
        if let Some(feedback) = estimate.feedback() {
            if let Some(warning) = feedback.warning() {
                reason.push(' ');
                reason.push_str(&warning.to_string());
            }
            for suggestion in feedback.suggestions() {
                reason.push(' ');
                reason.push_str(&suggestion.to_string());
            }
        }
        if !reason.ends_with('.') {
            reason.push('.');
        }
        return Err(Error::WeakPassword(reason));
    }
    Ok(normalized)
}

/// Runs Argon2id on a bounded number of blocking threads.
///
/// At most `workers` hashes run at once; up to `max_waiting` more wait for a slot, and the rest
/// are refused with `rate_limited` so a flood cannot queue unbounded work.
#[derive(Clone)]
pub struct PasswordHasher {
    slots: Arc<Semaphore>,
    waiting: Arc<Semaphore>,
    argon2: Argon2<'static>,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("free_slots", &self.slots.available_permits())
            .finish_non_exhaustive()
    }
}

/// The hash every unknown email is verified against, so both cost the same.
static DUMMY_HASH: OnceLock<String> = OnceLock::new();

impl PasswordHasher {
    /// A hasher with `workers` parallel slots (usually the number of cores) and room for
    /// `max_waiting` queued requests.
    pub fn new(workers: usize, max_waiting: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(workers.max(1))),
            waiting: Arc::new(Semaphore::new(workers.max(1) + max_waiting)),
            // Argon2id, v19, m=19456 KiB, t=2, p=1: the OWASP parameters.
            argon2: Argon2::default(),
        }
    }

    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&Argon2<'static>) -> T + Send + 'static,
    ) -> Result<T> {
        let _queued = self
            .waiting
            .clone()
            .try_acquire_owned()
            .map_err(|_| Error::RateLimited {
                retry_after_secs: 1,
            })?;
        let _slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::Internal("password hashing pool closed".into()))?;
        let argon2 = self.argon2.clone();
        tokio::task::spawn_blocking(move || job(&argon2))
            .await
            .map_err(|error| Error::Internal(format!("password hashing task failed: {error}")))
    }

    /// Hashes a normalized password into a PHC string.
    pub async fn hash(&self, password: SecretString) -> Result<String> {
        self.run(move |argon2| {
            argon2
                .hash_password(password.expose_secret().as_bytes())
                .map(|hash| hash.to_string())
                .map_err(|error| Error::Internal(format!("argon2: {error}")))
        })
        .await?
    }

    /// Verifies a password against a PHC string, or against the dummy hash when `hash` is
    /// `None` (unknown account) so that both take the same time. Returns whether it matched.
    pub async fn verify(&self, password: &str, hash: Option<String>) -> Result<bool> {
        let candidate = normalize(password);
        let known = hash.is_some();
        self.run(move |argon2| {
            // The dummy hash is made (once) on the blocking pool too, never on the runtime.
            let phc = hash.unwrap_or_else(|| dummy_hash(argon2));
            let Ok(parsed) = PasswordHash::new(&phc) else {
                return false;
            };
            let matched = argon2
                .verify_password(candidate.expose_secret().as_bytes(), &parsed)
                .is_ok();
            matched && known
        })
        .await
    }
}

fn dummy_hash(argon2: &Argon2<'static>) -> String {
    DUMMY_HASH
        .get_or_init(|| {
            argon2
                .hash_password(b"tessera dummy password for unknown accounts")
                .map(|hash| hash.to_string())
                .unwrap_or_default()
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_rules() {
        assert!(matches!(
            check_new_password("Ab1!x", &[]),
            Err(Error::WeakPassword(_))
        ));
        let long = "x".repeat(MAX_PASSWORD_BYTES + 1);
        assert!(matches!(
            check_new_password(&long, &[]),
            Err(Error::InvalidRequest(_))
        ));
    }

    #[test]
    fn common_and_guessable_passwords_are_refused_with_a_reason() {
        for weak in [
            "password",
            "Password1!",
            "12345678",
            "qwertyuiop",
            "aaaaaaaaaaaa",
        ] {
            match check_new_password(weak, &[]) {
                Err(Error::WeakPassword(reason)) => assert!(!reason.is_empty()),
                other => panic!("{weak}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_account_email_does_not_make_a_password() {
        match check_new_password("jane.doe.example", &["jane.doe@example.com"]) {
            Err(Error::WeakPassword(reason)) => {
                assert!(reason.contains("email address or name"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        // Symbols only: judged by zxcvbn, not mistaken for a part of the email.
        match check_new_password("!!!!!!!!!!", &["jane.doe@example.com"]) {
            Err(Error::WeakPassword(reason)) => {
                assert!(reason.contains("too easy to guess"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn strong_passwords_pass_without_composition_rules() {
        assert!(check_new_password("correct horse battery staple", &[]).is_ok());
        assert!(check_new_password("glacier-otter-lantern-97", &[]).is_ok());
    }

    #[test]
    fn nfkc_makes_equivalent_passwords_equal() {
        // U+FB01 (the "fi" ligature) normalizes to "fi".
        assert_eq!(normalize("\u{FB01}ne").expose_secret(), "fine");
    }

    #[tokio::test]
    async fn hash_then_verify() {
        let hasher = PasswordHasher::new(2, 8);
        let hash = hasher
            .hash(normalize("glacier-otter-lantern-97"))
            .await
            .unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(
            hasher
                .verify("glacier-otter-lantern-97", Some(hash.clone()))
                .await
                .unwrap()
        );
        assert!(
            !hasher
                .verify("glacier-otter-lantern-98", Some(hash))
                .await
                .unwrap()
        );
        assert!(
            !hasher
                .verify("glacier-otter-lantern-97", None)
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn the_pool_sheds_load_beyond_its_queue() {
        let hasher = PasswordHasher::new(1, 0);
        let first = hasher.clone();
        let busy = tokio::spawn(async move { first.verify("x", None).await });
        tokio::task::yield_now().await;
        // Give the first job time to take the only slot.
        while hasher.waiting.available_permits() != 0 {
            tokio::task::yield_now().await;
        }
        assert!(matches!(
            hasher.verify("y", None).await,
            Err(Error::RateLimited { .. })
        ));
        busy.await.unwrap().unwrap();
    }
}
