//! Phases 1 and 6: the machine's raw Argon2id rate, with nothing else running; phase 5: the
//! same through Tessera's hashing pool.
//!
//! In the reference mode ([`Memory::PerHash`]) each thread does what one sign-in does in
//! `tessera_core::password::PasswordHasher::verify`: parse the stored PHC string and verify a
//! password against it with `Argon2::default()` (Argon2id v19, m=19456 KiB, t=2, p=1), which
//! allocates (zeroed) and frees its 19 MiB of blocks every time.

use crate::procfs;
use anyhow::{Context, bail};
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::{Argon2, Block, Params};
use std::time::{Duration, Instant};
use tessera_core::password::HASHING_THREAD_PREFIX;
use tessera_core::password::PasswordHasher;

/// The result of the raw measurement.
#[derive(Debug, Clone)]
pub struct RawRate {
    /// The PHC prefix of the hash that was verified (shows the parameters).
    pub params: String,
    /// Threads that verified in parallel.
    pub threads: usize,
    /// Verifications per thread.
    pub per_thread: Vec<u64>,
    /// CPU time the hashing threads got, in nanoseconds (from their schedstat).
    pub cpu_ns: u64,
    /// Minor page faults of the hashing threads.
    pub minor_faults: u64,
    /// Wall time from start until every thread stopped.
    pub elapsed: Duration,
}

impl RawRate {
    /// Verifications per second, all threads together.
    pub fn total_per_sec(&self) -> f64 {
        self.per_thread.iter().sum::<u64>() as f64 / self.elapsed.as_secs_f64()
    }

    /// CPU time per verification.
    pub fn cpu_per_hash(&self) -> Duration {
        let hashes = self.per_thread.iter().sum::<u64>().max(1);
        Duration::from_nanos(self.cpu_ns / hashes)
    }

    /// Minor page faults per verification (a fresh 19 MiB is 4,864 pages of 4 KiB).
    pub fn faults_per_hash(&self) -> u64 {
        self.minor_faults / self.per_thread.iter().sum::<u64>().max(1)
    }

    /// Verifications per second per thread.
    pub fn per_thread_per_sec(&self) -> f64 {
        self.total_per_sec() / self.threads.max(1) as f64
    }
}

/// How each verification gets its 19 MiB of Argon2 memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Memory {
    /// Allocated (zeroed) and freed by every verification: `verify_password`, what Tessera
    /// does.
    PerHash,
    /// One buffer per thread, reused (`hash_password_into_with_memory`): no allocation, no
    /// zeroing, no page faults. Argon2 writes every block before reading it, so this is safe.
    Reused,
}

/// What every verification checks: a PHC hash of the password (for [`Memory::PerHash`]) and
/// the raw Argon2id output for a fixed salt (for [`Memory::Reused`]).
#[derive(Debug, Clone)]
pub struct Fixture {
    password: String,
    phc: String,
    salt: &'static [u8],
    expected: [u8; Params::DEFAULT_OUTPUT_LEN],
}

impl Fixture {
    /// Hashes `password` both ways.
    pub fn new(password: &str) -> anyhow::Result<Self> {
        let argon2 = Argon2::default();
        let phc = argon2
            .hash_password(password.as_bytes())
            .map_err(|error| anyhow::anyhow!("argon2 hash: {error}"))?
            .to_string();
        let salt: &'static [u8] = b"tessera-bench-salt";
        let mut expected = [0_u8; Params::DEFAULT_OUTPUT_LEN];
        argon2
            .hash_password_into(password.as_bytes(), salt, &mut expected)
            .map_err(|error| anyhow::anyhow!("argon2: {error}"))?;
        Ok(Self {
            password: password.to_owned(),
            phc,
            salt,
            expected,
        })
    }

    /// The PHC string of the password (what `users.password_hash` holds).
    pub fn phc(&self) -> &str {
        &self.phc
    }

    /// The PHC prefix, which shows the algorithm and parameters.
    pub fn params(&self) -> String {
        self.phc
            .split('$')
            .filter(|part| !part.is_empty())
            .take(3)
            .collect::<Vec<_>>()
            .join("$")
    }
}

/// One thread's verifier.
pub struct Verifier {
    argon2: Argon2<'static>,
    memory: Memory,
    blocks: Vec<Block>,
}

impl Verifier {
    /// A verifier; with [`Memory::Reused`] it allocates its 19 MiB once, here.
    pub fn new(memory: Memory) -> Self {
        let blocks = match memory {
            Memory::PerHash => Vec::new(),
            Memory::Reused => vec![Block::new(); Params::DEFAULT.block_count()],
        };
        Self {
            argon2: Argon2::default(),
            memory,
            blocks,
        }
    }

    /// Verifies the fixture's password; an error if it does not match.
    pub fn verify(&mut self, fixture: &Fixture) -> anyhow::Result<()> {
        match self.memory {
            Memory::PerHash => {
                let parsed = PasswordHash::new(&fixture.phc)
                    .map_err(|error| anyhow::anyhow!("PHC string: {error}"))?;
                self.argon2
                    .verify_password(fixture.password.as_bytes(), &parsed)
                    .map_err(|error| anyhow::anyhow!("argon2 verify: {error}"))
            }
            Memory::Reused => {
                let mut out = [0_u8; Params::DEFAULT_OUTPUT_LEN];
                self.argon2
                    .hash_password_into_with_memory(
                        fixture.password.as_bytes(),
                        fixture.salt,
                        &mut out,
                        &mut self.blocks,
                    )
                    .map_err(|error| anyhow::anyhow!("argon2: {error}"))?;
                if out != fixture.expected {
                    bail!("reused-memory Argon2 gave a different output");
                }
                Ok(())
            }
        }
    }
}

/// Verifies `password` on `threads` OS threads, back to back, for `duration`.
pub fn measure(
    password: &str,
    threads: usize,
    duration: Duration,
    memory: Memory,
) -> anyhow::Result<RawRate> {
    let fixture = Fixture::new(password)?;
    // One untimed verification, so page faults of the first 19 MiB allocation are not counted.
    Verifier::new(Memory::PerHash).verify(&fixture)?;

    let start = Instant::now();
    let deadline = start + duration;
    let per_thread = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let fixture = &fixture;
                std::thread::Builder::new()
                    .name(format!("raw-argon2-{i}"))
                    .spawn_scoped(scope, move || -> anyhow::Result<(u64, u64, u64)> {
                        let mut verifier = Verifier::new(memory);
                        let before = procfs::current_thread()?;
                        let mut done = 0_u64;
                        while Instant::now() < deadline {
                            verifier.verify(fixture)?;
                            done += 1;
                        }
                        let used = procfs::current_thread()?.since(&before);
                        Ok((done, used.run_ns, used.minor_faults))
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
            .collect::<anyhow::Result<Vec<(u64, u64, u64)>>>()
    })?;
    Ok(RawRate {
        params: fixture.params(),
        threads,
        cpu_ns: per_thread.iter().map(|(_, cpu, _)| cpu).sum(),
        minor_faults: per_thread.iter().map(|(_, _, faults)| faults).sum(),
        per_thread: per_thread.into_iter().map(|(done, _, _)| done).collect(),
        elapsed: start.elapsed(),
    })
}

/// Phase 5: Tessera's own hashing pool, without HTTP or SQLite.
///
/// `tessera_core::password::PasswordHasher` with the server's size (`slots`) and queue, on a
/// multi-threaded runtime like the server's; `concurrency` tasks verify back to back. What it
/// loses against [`measure`] is the hand-off of jobs to the hashing threads and the replies.
pub fn measure_pool(
    password: &str,
    slots: usize,
    queue: usize,
    concurrency: usize,
    window: Duration,
) -> anyhow::Result<PoolRate> {
    const NAME: &str = "pool-rt";
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name(NAME)
        .build()
        .context("cannot build the pool runtime")?;
    let before = procfs::threads()?;
    let hashes = runtime.block_on(async {
        let hasher = PasswordHasher::new(slots, queue);
        let phc = hasher
            .hash(tessera_core::password::normalize(password))
            .await
            .map_err(|error| anyhow::anyhow!("hash: {error}"))?;
        let start = Instant::now();
        let deadline = start + window;
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..concurrency.max(1) {
            let (hasher, phc, password) = (hasher.clone(), phc.clone(), password.to_owned());
            tasks.spawn(async move {
                let mut done = 0_u64;
                while Instant::now() < deadline {
                    let matched = hasher
                        .verify(&password, Some(phc.clone()))
                        .await
                        .map_err(|error| anyhow::anyhow!("verify: {error}"))?;
                    if !matched {
                        bail!("the pool did not match the password");
                    }
                    if start.elapsed() <= window {
                        done += 1;
                    }
                }
                Ok(done)
            });
        }
        let mut total = 0;
        while let Some(joined) = tasks.join_next().await {
            total += joined.context("pool task failed")??;
        }
        anyhow::Ok(total)
    })?;
    let used = procfs::delta(&before, &procfs::threads()?);
    let blocking = used
        .iter()
        .filter(|(_, thread)| thread.name.starts_with(HASHING_THREAD_PREFIX));
    let (cpu_ns, minor_faults) = blocking.fold((0, 0), |(cpu, faults), (_, thread)| {
        (cpu + thread.run_ns, faults + thread.minor_faults)
    });
    Ok(PoolRate {
        hashes,
        window,
        cpu_ns,
        minor_faults,
    })
}

/// The result of [`measure_pool`].
#[derive(Debug, Clone, Copy)]
pub struct PoolRate {
    /// Verifications completed inside the window.
    pub hashes: u64,
    /// The window.
    pub window: Duration,
    /// CPU time of the blocking threads (the hashing), nanoseconds; includes the hashes that
    /// finished just after the window.
    pub cpu_ns: u64,
    /// Minor page faults of the blocking threads.
    pub minor_faults: u64,
}

impl PoolRate {
    /// Verifications per second.
    pub fn per_sec(&self) -> f64 {
        self.hashes as f64 / self.window.as_secs_f64()
    }
}
