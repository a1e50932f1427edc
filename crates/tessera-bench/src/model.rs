//! Phase 5b (`--model-fix`), an experiment: what the hashing pool would do if it were built
//! differently — `slots` dedicated OS threads that take jobs straight off a bounded queue and
//! answer through a oneshot channel, optionally each with its own reused 19 MiB buffer. The
//! async side only enqueues (refusing when the queue is full, as the server sheds with 429)
//! and awaits the answer; between two hashes a thread never waits for the async runtime.

use crate::procfs;
use crate::raw::{Fixture, Memory, PoolRate, Verifier};
use anyhow::{Context, bail};
use std::sync::mpsc::{Receiver, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// A job: where to send whether the password matched.
type Job = oneshot::Sender<bool>;

/// Runs the model for `window` with `concurrency` verifications in flight.
pub fn measure_dedicated(
    password: &str,
    slots: usize,
    queue: usize,
    concurrency: usize,
    window: Duration,
    memory: Memory,
) -> anyhow::Result<PoolRate> {
    let fixture = Arc::new(Fixture::new(password)?);
    let (sender, receiver) = sync_channel::<Job>(queue.max(1));
    let receiver = Arc::new(Mutex::new(receiver));
    let threads = (0..slots.max(1))
        .map(|i| {
            let (fixture, receiver) = (fixture.clone(), receiver.clone());
            std::thread::Builder::new()
                .name(format!("hash-worker-{i}"))
                .spawn(move || hashing_thread(&fixture, &receiver, memory))
                .context("cannot spawn a hashing thread")
        })
        .collect::<anyhow::Result<Vec<_>>>()?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("model-rt")
        .build()
        .context("cannot build the model runtime")?;
    let hashes = runtime.block_on(async move {
        let start = Instant::now();
        let deadline = start + window;
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..concurrency.max(1) {
            let sender = sender.clone();
            tasks.spawn(async move {
                let mut done = 0_u64;
                while Instant::now() < deadline {
                    let (reply, answer) = oneshot::channel();
                    match sender.try_send(reply) {
                        Ok(()) => {}
                        Err(TrySendError::Full(_)) => bail!("the model's queue is full"),
                        Err(TrySendError::Disconnected(_)) => bail!("the hashing threads died"),
                    }
                    if !answer.await.context("no answer from the hashing thread")? {
                        bail!("the model did not match the password");
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
            total += joined.context("model task failed")??;
        }
        anyhow::Ok(total)
    })?;
    // Every sender is gone: the threads see the queue close and report what they used.
    let (mut cpu_ns, mut minor_faults) = (0, 0);
    for thread in threads {
        let used = match thread.join() {
            Ok(used) => used?,
            Err(_) => bail!("a hashing thread panicked"),
        };
        cpu_ns += used.run_ns;
        minor_faults += used.minor_faults;
    }
    Ok(PoolRate {
        hashes,
        window,
        cpu_ns,
        minor_faults,
    })
}

fn hashing_thread(
    fixture: &Fixture,
    receiver: &Mutex<Receiver<Job>>,
    memory: Memory,
) -> anyhow::Result<procfs::ThreadStat> {
    let mut verifier = Verifier::new(memory);
    let before = procfs::current_thread()?;
    loop {
        let job = match receiver.lock() {
            Ok(receiver) => receiver.recv(),
            Err(_) => bail!("the queue lock is poisoned"),
        };
        let Ok(reply) = job else { break };
        let matched = verifier.verify(fixture).is_ok();
        let _ = reply.send(matched);
    }
    Ok(procfs::current_thread()?.since(&before))
}
