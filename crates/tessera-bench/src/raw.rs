//! Phase 1: the machine's raw Argon2id rate, with nothing else running.
//!
//! Each thread does what one sign-in does in `tessera_core::password::PasswordHasher::verify`:
//! parse the stored PHC string and verify a password against it with `Argon2::default()`
//! (Argon2id v19, m=19456 KiB, t=2, p=1), allocating the 19 MiB of blocks afresh each time.

use anyhow::{Context, bail};
use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use std::time::{Duration, Instant};

/// The result of the raw measurement.
#[derive(Debug, Clone)]
pub struct RawRate {
    /// The PHC prefix of the hash that was verified (shows the parameters).
    pub params: String,
    /// Threads that verified in parallel.
    pub threads: usize,
    /// Verifications per thread.
    pub per_thread: Vec<u64>,
    /// Wall time from start until every thread stopped.
    pub elapsed: Duration,
}

impl RawRate {
    /// Verifications per second, all threads together.
    pub fn total_per_sec(&self) -> f64 {
        self.per_thread.iter().sum::<u64>() as f64 / self.elapsed.as_secs_f64()
    }

    /// Verifications per second per thread.
    pub fn per_thread_per_sec(&self) -> f64 {
        self.total_per_sec() / self.threads.max(1) as f64
    }
}

/// Verifies `password` against its own Argon2id hash on `threads` OS threads for `duration`.
pub fn measure(password: &str, threads: usize, duration: Duration) -> anyhow::Result<RawRate> {
    let argon2 = Argon2::default();
    let phc = argon2
        .hash_password(password.as_bytes())
        .map_err(|error| anyhow::anyhow!("argon2 hash: {error}"))?
        .to_string();
    let params = phc
        .split('$')
        .filter(|part| !part.is_empty())
        .take(3)
        .collect::<Vec<_>>()
        .join("$");

    // One untimed verification, so page faults of the first 19 MiB allocation are not counted.
    verify_once(&argon2, &phc, password)?;

    let start = Instant::now();
    let deadline = start + duration;
    let per_thread = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let phc = phc.as_str();
                std::thread::Builder::new()
                    .name(format!("raw-argon2-{i}"))
                    .spawn_scoped(scope, move || -> anyhow::Result<u64> {
                        let argon2 = Argon2::default();
                        let mut done = 0_u64;
                        while Instant::now() < deadline {
                            verify_once(&argon2, phc, password)?;
                            done += 1;
                        }
                        Ok(done)
                    })
                    .context("cannot spawn a hashing thread")
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| match handle?.join() {
                Ok(result) => result,
                Err(_) => bail!("a hashing thread panicked"),
            })
            .collect::<anyhow::Result<Vec<u64>>>()
    })?;
    Ok(RawRate {
        params,
        threads,
        per_thread,
        elapsed: start.elapsed(),
    })
}

fn verify_once(argon2: &Argon2<'_>, phc: &str, password: &str) -> anyhow::Result<()> {
    let parsed = PasswordHash::new(phc).map_err(|error| anyhow::anyhow!("PHC string: {error}"))?;
    argon2
        .verify_password(password.as_bytes(), &parsed)
        .map_err(|error| anyhow::anyhow!("argon2 verify: {error}"))
}
