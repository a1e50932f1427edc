//! The outbox worker: claims due messages, delivers them, and records the outcome.
//!
//! Defends against lost and duplicated notifications. A message is written in the transaction of
//! its use case, so a crash before delivery loses nothing: any worker (this process after a
//! restart, or another instance) claims it later. Claiming takes a lease
//! ([`OUTBOX_LEASE`]) in one atomic store statement, so two workers never deliver the same
//! message at once; a worker that dies mid-delivery leaves the lease to expire, and the message
//! is tried again (at least once, never lost). Each delivery is bounded by [`DELIVERY_TIMEOUT`],
//! well inside the lease. Failures back off ([`retry_delay`]) and are given up after
//! [`OUTBOX_GIVE_UP_AFTER`], or at once when retrying cannot help (a malformed address).
//!
//! The worker polls every [`DEFAULT_POLL_INTERVAL`] and is woken at once through an
//! [`OutboxWaker`] that the server pokes after committing a transaction that enqueued a message.

use super::{Delivery, DeliveryError, TransportError};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tessera_core::clock::Clock;
use tessera_core::notification::{OUTBOX_GIVE_UP_AFTER, OUTBOX_LEASE, OutboxMessage, retry_delay};
use tessera_core::store::{Store, StoreError};
use tokio::sync::{Notify, watch};

/// How often an idle worker looks for due messages (retries come due without a poke).
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(500);

/// The longest one delivery may take before it counts as failed; well under [`OUTBOX_LEASE`],
/// so no other worker claims a message that is still being sent.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long the worker waits after the store failed before trying again.
const STORE_ERROR_BACKOFF: Duration = Duration::from_secs(5);

/// Running totals of the worker, for `/metrics`.
#[derive(Debug, Default)]
pub struct WorkerStats {
    delivered: AtomicU64,
    retried: AtomicU64,
    failed: AtomicU64,
}

impl WorkerStats {
    /// Messages handed to a transport and marked sent.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// Failed attempts that were scheduled for a retry.
    pub fn retried(&self) -> u64 {
        self.retried.load(Ordering::Relaxed)
    }

    /// Messages given up on.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    fn record(&self, outcome: &PassOutcome) {
        self.delivered
            .fetch_add(outcome.delivered, Ordering::Relaxed);
        self.retried.fetch_add(outcome.retried, Ordering::Relaxed);
        self.failed.fetch_add(outcome.failed, Ordering::Relaxed);
    }
}

/// Wakes the worker so it delivers a freshly committed message without waiting for the next
/// poll. Cheap to clone; a wake while the worker is busy is remembered, never lost.
#[derive(Debug, Clone, Default)]
pub struct OutboxWaker(Arc<Notify>);

impl OutboxWaker {
    /// A waker not yet attached to a worker (pass it to [`OutboxWorker::with_waker`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// A waker sharing `notify` (the server's `Arc<Notify>`).
    pub fn from_notify(notify: Arc<Notify>) -> Self {
        Self(notify)
    }

    /// Asks the worker to look for due messages now. Call after a commit that enqueued.
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

/// What one pass over the due messages did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PassOutcome {
    /// Messages delivered and marked sent.
    pub delivered: u64,
    /// Messages that failed and were scheduled for a retry.
    pub retried: u64,
    /// Messages given up on.
    pub failed: u64,
}

impl PassOutcome {
    /// Messages claimed in the pass.
    pub fn attempted(&self) -> u64 {
        self.delivered + self.retried + self.failed
    }
}

enum Outcome {
    Delivered,
    Retried,
    Failed,
}

/// Called after every pass with what it did (e.g. to add to Prometheus counters).
pub type PassHook = Arc<dyn Fn(&PassOutcome) + Send + Sync>;

/// Drains the outbox through a [`Delivery`].
#[derive(Clone)]
pub struct OutboxWorker {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    delivery: Arc<Delivery>,
    waker: OutboxWaker,
    stats: Arc<WorkerStats>,
    on_pass: Option<PassHook>,
    poll_interval: Duration,
}

impl std::fmt::Debug for OutboxWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxWorker")
            .field("delivery", &self.delivery)
            .field("stats", &self.stats)
            .field("poll_interval", &self.poll_interval)
            .finish_non_exhaustive()
    }
}

impl OutboxWorker {
    /// A worker with its own waker and stats, polling every [`DEFAULT_POLL_INTERVAL`].
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, delivery: Arc<Delivery>) -> Self {
        Self {
            store,
            clock,
            delivery,
            waker: OutboxWaker::new(),
            stats: Arc::new(WorkerStats::default()),
            on_pass: None,
            poll_interval: DEFAULT_POLL_INTERVAL,
        }
    }

    /// Polls every `interval` when idle (tests use a short one).
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Uses `waker`, created before the worker (e.g. when the app state is built first).
    pub fn with_waker(mut self, waker: OutboxWaker) -> Self {
        self.waker = waker;
        self
    }

    /// Adds to `stats`, shared with whoever exposes them.
    pub fn with_stats(mut self, stats: Arc<WorkerStats>) -> Self {
        self.stats = stats;
        self
    }

    /// Calls `hook` after every pass that claimed at least one message.
    pub fn with_pass_hook(mut self, hook: PassHook) -> Self {
        self.on_pass = Some(hook);
        self
    }

    /// The handle that wakes this worker.
    pub fn waker(&self) -> OutboxWaker {
        self.waker.clone()
    }

    /// The worker's running totals.
    pub fn stats(&self) -> Arc<WorkerStats> {
        Arc::clone(&self.stats)
    }

    /// Delivers every message due now, one at a time, and says what happened. A store error
    /// ends the pass early; messages already claimed stay leased and come back when it expires.
    pub async fn deliver_due_once(&self) -> Result<PassOutcome, StoreError> {
        self.pass(|| false).await
    }

    /// Runs until `shutdown` becomes `true` (or its sender is dropped). A message being sent
    /// when shutdown comes is finished and recorded first; nothing new is claimed after.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        tracing::info!(transports = %self.delivery.describe(), "outbox worker started");
        loop {
            if *shutdown.borrow() {
                break;
            }
            let wait = match self.pass(|| *shutdown.borrow()).await {
                Ok(_) => self.poll_interval,
                Err(error) => {
                    tracing::warn!(%error, "outbox worker: the store failed; trying again shortly");
                    STORE_ERROR_BACKOFF.max(self.poll_interval)
                }
            };
            tokio::select! {
                biased;
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                () = self.waker.0.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
        tracing::info!("outbox worker stopped");
    }

    async fn pass(&self, should_stop: impl Fn() -> bool) -> Result<PassOutcome, StoreError> {
        let mut outcome = PassOutcome::default();
        let result = loop {
            if should_stop() {
                break Ok(());
            }
            let now = self.clock.now();
            let message = match self
                .store
                .claim_outbox_message(now, now + OUTBOX_LEASE)
                .await
            {
                Ok(Some(message)) => message,
                Ok(None) => break Ok(()),
                Err(error) => break Err(error),
            };
            match self.process(&message).await {
                Ok(Outcome::Delivered) => outcome.delivered += 1,
                Ok(Outcome::Retried) => outcome.retried += 1,
                Ok(Outcome::Failed) => outcome.failed += 1,
                Err(error) => break Err(error),
            }
        };
        self.stats.record(&outcome);
        if let Some(hook) = &self.on_pass
            && outcome.attempted() > 0
        {
            hook(&outcome);
        }
        result.map(|()| outcome)
    }

    async fn process(&self, message: &OutboxMessage) -> Result<Outcome, StoreError> {
        let delivered =
            match tokio::time::timeout(DELIVERY_TIMEOUT, self.delivery.deliver(message)).await {
                Ok(result) => result,
                Err(_elapsed) => Err(DeliveryError::Transport(TransportError(format!(
                    "delivery took longer than {} s",
                    DELIVERY_TIMEOUT.as_secs()
                )))),
            };
        let now = self.clock.now();
        match delivered {
            Ok(()) => {
                self.store.mark_outbox_sent(message.id, now).await?;
                Ok(Outcome::Delivered)
            }
            Err(error)
                if error.is_permanent() || now - message.created_at >= OUTBOX_GIVE_UP_AFTER =>
            {
                let text = error.to_string();
                self.store.mark_outbox_failed(message.id, &text).await?;
                tracing::error!(
                    outbox_id = message.id,
                    channel = message.channel.as_str(),
                    attempts = message.attempts + 1,
                    error = %text,
                    "gave up delivering a notification"
                );
                Ok(Outcome::Failed)
            }
            Err(error) => {
                let text = error.to_string();
                let next_attempt_at = now + retry_delay(message.attempts);
                self.store
                    .mark_outbox_retry(message.id, next_attempt_at, &text)
                    .await?;
                tracing::warn!(
                    outbox_id = message.id,
                    channel = message.channel.as_str(),
                    attempts = message.attempts + 1,
                    %next_attempt_at,
                    error = %text,
                    "notification not delivered; will retry"
                );
                Ok(Outcome::Retried)
            }
        }
    }
}

/// Runs an outbox worker until `shutdown` becomes `true`; `waker` wakes it after commits.
/// Shorthand for [`OutboxWorker::new`] + [`OutboxWorker::with_waker`] + [`OutboxWorker::run`].
pub async fn run_outbox_worker(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    delivery: Arc<Delivery>,
    waker: OutboxWaker,
    shutdown: watch::Receiver<bool>,
) {
    OutboxWorker::new(store, clock, delivery)
        .with_waker(waker)
        .run(shutdown)
        .await;
}
