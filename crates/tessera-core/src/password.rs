//! Passwords: the acceptance policy and Argon2id hashing on a bounded pool.
//!
//! Threats: offline cracking of a leaked database (Argon2id with OWASP parameters, m=19 MiB,
//! t=2, p=1), guessable passwords (NIST SP 800-63B §5.1.1.2: a length floor, no composition
//! rules, a check against breached and guessable passwords), account enumeration by timing
//! (unknown emails verify against a dummy hash), and denial of service by sign-in floods (hashing
//! runs on a bounded number of blocking threads; excess requests wait or are shed).

use crate::{Error, Result};
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use secrecy::{ExposeSecret, SecretString};
use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, LazyLock, Mutex, OnceLock};
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

/// Names of the hashing threads start with this (they are `argon2-0`, `argon2-1`, …).
pub const HASHING_THREAD_PREFIX: &str = "argon2-";

/// A hashing job: runs on a hashing thread with that thread's state.
type HashJob = Box<dyn FnOnce(&mut HashingThread) + Send>;

/// The largest Argon2 memory a hashing thread keeps for reuse (64 MiB); verifying a hash
/// with a bigger `m` allocates for that one call instead.
const MAX_REUSED_BLOCKS: usize = 64 * 1024;

/// What one hashing thread owns: its Argon2 instance and the Argon2 memory it reuses for every
/// verification, so a sign-in does not allocate, zero and page-fault 19 MiB each time.
struct HashingThread {
    argon2: Argon2<'static>,
    memory: Vec<Block>,
}

impl HashingThread {
    /// Verifies `password` against a PHC string, reusing this thread's memory. Any malformed
    /// hash is a mismatch (fail closed).
    fn verify(&mut self, password: &[u8], phc: &str) -> bool {
        let Ok(parsed) = PasswordHash::new(phc) else {
            return false;
        };
        let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
            return false;
        };
        let Ok(params) = Params::try_from(&parsed) else {
            return false;
        };
        let blocks = params.block_count();
        if blocks > MAX_REUSED_BLOCKS {
            return self.argon2.verify_password(password, &parsed).is_ok();
        }
        let Ok(algorithm) = Algorithm::try_from(parsed.algorithm.as_str()) else {
            return false;
        };
        let version = match parsed.version.map(Version::try_from).transpose() {
            Ok(version) => version.unwrap_or_default(),
            Err(_) => return false,
        };
        if self.memory.len() < blocks {
            self.memory.resize(blocks, Block::default());
        }
        let mut computed = vec![0u8; expected.len()];
        let hashed = Argon2::new(algorithm, version, params).hash_password_into_with_memory(
            password,
            salt.as_ref(),
            &mut computed,
            &mut self.memory[..blocks],
        );
        hashed.is_ok() && crate::crypto::constant_time_eq(&computed, expected.as_bytes())
    }
}

/// Runs Argon2id on a fixed set of dedicated threads.
///
/// `workers` threads (usually one per core) take jobs from a queue of at most `max_waiting`;
/// beyond that, requests are refused with `rate_limited` so a flood cannot queue unbounded work.
/// Long-lived threads keep both cores busy back to back (no hand-off through the async runtime
/// between hashes) and reuse their own 19 MiB of Argon2 memory, which the benchmark showed to be
/// worth about a quarter of the throughput compared with `spawn_blocking` behind a semaphore.
#[derive(Clone)]
pub struct PasswordHasher {
    queue: SyncSender<HashJob>,
    workers: usize,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("workers", &self.workers)
            .finish_non_exhaustive()
    }
}

/// The hash every unknown email is verified against, so both cost the same.
static DUMMY_HASH: OnceLock<String> = OnceLock::new();

fn hashing_thread(jobs: &Mutex<Receiver<HashJob>>) {
    let mut state = HashingThread {
        // Argon2id, v19, m=19456 KiB, t=2, p=1: the OWASP parameters.
        argon2: Argon2::default(),
        memory: Vec::new(),
    };
    loop {
        let job = {
            let Ok(jobs) = jobs.lock() else { return };
            match jobs.recv() {
                Ok(job) => job,
                // Every PasswordHasher is gone.
                Err(_) => return,
            }
        };
        // A panicking job drops its reply (the caller gets an error); the thread lives on.
        let _ = std::panic::catch_unwind(AssertUnwindSafe(|| job(&mut state)));
    }
}

impl PasswordHasher {
    /// A hasher with `workers` hashing threads (usually the number of cores) and room for
    /// `max_waiting` queued requests. The threads end when the last clone is dropped.
    pub fn new(workers: usize, max_waiting: usize) -> Self {
        let workers = workers.max(1);
        let (queue, jobs) = sync_channel::<HashJob>(max_waiting);
        let jobs = Arc::new(Mutex::new(jobs));
        for index in 0..workers {
            let jobs = Arc::clone(&jobs);
            let spawned = std::thread::Builder::new()
                .name(format!("{HASHING_THREAD_PREFIX}{index}"))
                .spawn(move || hashing_thread(&jobs));
            if let Err(error) = spawned {
                // With no thread at all the queue disconnects and every call fails closed.
                tracing::error!(%error, "cannot start a password hashing thread");
            }
        }
        Self { queue, workers }
    }

    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut HashingThread) -> T + Send + 'static,
    ) -> Result<T> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: HashJob = Box::new(move |thread| {
            let _ = reply.send(job(thread));
        });
        self.queue.try_send(job).map_err(|error| match error {
            TrySendError::Full(_) => Error::RateLimited {
                retry_after_secs: 1,
            },
            TrySendError::Disconnected(_) => {
                Error::Internal("password hashing threads stopped".into())
            }
        })?;
        answer
            .await
            .map_err(|_| Error::Internal("password hashing job failed".into()))
    }

    /// Hashes a normalized password into a PHC string.
    pub async fn hash(&self, password: SecretString) -> Result<String> {
        self.run(move |thread| {
            thread
                .argon2
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
        self.run(move |thread| {
            // The dummy hash is made (once) on a hashing thread too, never on the runtime.
            let phc = hash.unwrap_or_else(|| dummy_hash(&thread.argon2));
            let matched = thread.verify(candidate.expose_secret().as_bytes(), &phc);
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
    async fn verification_with_reused_memory_matches_the_reference_implementation() {
        use argon2::password_hash::PasswordHasher as _;
        let hasher = PasswordHasher::new(1, 8);
        let small = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8192, 1, 1, None).unwrap(),
        )
        .hash_password(b"pw-one-two-three")
        .unwrap()
        .to_string();
        let owasp = Argon2::default()
            .hash_password(b"pw-one-two-three")
            .unwrap()
            .to_string();
        let argon2i = Argon2::new(
            Algorithm::Argon2i,
            Version::V0x13,
            Params::new(8192, 2, 1, None).unwrap(),
        )
        .hash_password(b"pw-one-two-three")
        .unwrap()
        .to_string();
        // Twice over, so the second round runs on memory the first one left behind.
        for _ in 0..2 {
            for phc in [&small, &owasp, &argon2i] {
                assert!(
                    hasher
                        .verify("pw-one-two-three", Some(phc.clone()))
                        .await
                        .unwrap(),
                    "{phc}"
                );
                assert!(
                    !hasher
                        .verify("pw-one-two-thre3", Some(phc.clone()))
                        .await
                        .unwrap(),
                    "{phc}"
                );
            }
        }
        for malformed in [
            "",
            "$argon2id$v=19$garbage",
            "$argon2id$v=19$m=8192,t=1,p=1$c2FsdHNhbHQ",
        ] {
            assert!(
                !hasher
                    .verify("pw-one-two-three", Some(malformed.into()))
                    .await
                    .unwrap()
            );
        }
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
        let hasher = PasswordHasher::new(1, 1);
        // Occupy the only thread until released, and know when it has started.
        let (started_tx, started) = std::sync::mpsc::channel();
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let busy = {
            let hasher = hasher.clone();
            tokio::spawn(async move {
                hasher
                    .run(move |_| {
                        started_tx.send(()).unwrap();
                        gate.recv().unwrap();
                    })
                    .await
            })
        };
        tokio::task::spawn_blocking(move || started.recv().unwrap())
            .await
            .unwrap();
        // Poll one request once: it takes the only place in the queue.
        let mut queued = Box::pin(hasher.verify("queued", None));
        tokio::select! {
            biased;
            _ = &mut queued => panic!("cannot finish while the thread is busy"),
            () = std::future::ready(()) => {}
        }
        assert!(matches!(
            hasher.verify("y", None).await,
            Err(Error::RateLimited { .. })
        ));
        release.send(()).unwrap();
        busy.await.unwrap().unwrap();
        assert!(!queued.await.unwrap());
    }
}
