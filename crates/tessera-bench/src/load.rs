//! The HTTP side: creating users, the sign-in flood, the `/me` probe and the second-step
//! drive of the MFA benchmark ([`spawn_post_each`]). Each runs on its own OS thread with its own
//! single-threaded runtime and its own `reqwest` client (HTTP/1.1, keep-alive), so the load
//! generator never runs on the server's worker threads.

use crate::procfs::{self, ThreadStat};
use anyhow::{Context, bail};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// The password of every benchmark account (passes the strength policy).
pub const PASSWORD: &str = "glacier-otter-lantern-97";

/// An HTTP/1.1 keep-alive client.
pub fn client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .http1_only()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(1024)
        .timeout(Duration::from_secs(60))
        .build()
        .context("cannot build the HTTP client")
}

/// A single-threaded runtime for one client thread.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot build a client runtime")
}

/// The email of benchmark account `i`.
pub fn email(i: usize) -> String {
    format!("bench-user-{i}@example.com")
}

/// Creates accounts `0..count` with `parallel` requests in flight.
pub async fn create_users(base: &str, count: usize, parallel: usize) -> anyhow::Result<()> {
    let client = client()?;
    let url = format!("{base}/api/v1/accounts");
    let mut tasks = JoinSet::new();
    let mut next = 0;
    loop {
        while next < count && tasks.len() < parallel.max(1) {
            let (client, url) = (client.clone(), url.clone());
            let body = json!({ "email": email(next), "password": PASSWORD });
            tasks.spawn(async move {
                let response = client.post(&url).json(&body).send().await?;
                let status = response.status();
                if status != reqwest::StatusCode::CREATED {
                    let text = response.text().await.unwrap_or_default();
                    bail!("sign-up answered {status}: {text}");
                }
                Ok(())
            });
            next += 1;
        }
        match tasks.join_next().await {
            Some(joined) => joined.context("sign-up task failed")??,
            None => return Ok(()),
        }
    }
}

/// Signs account `i` in and returns its session token.
pub async fn sign_in(base: &str, i: usize) -> anyhow::Result<String> {
    let response = client()?
        .post(format!("{base}/api/v1/sessions"))
        .json(&json!({ "email": email(i), "password": PASSWORD }))
        .send()
        .await?;
    let status = response.status();
    if status != reqwest::StatusCode::CREATED {
        let text = response.text().await.unwrap_or_default();
        bail!("sign-in answered {status}: {text}");
    }
    let body: serde_json::Value = response.json().await?;
    body.get("session_token")
        .and_then(|token| token.as_str())
        .map(str::to_owned)
        .context("sign-in response without session_token")
}

/// One request of the flood or the probe.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// When it completed, measured from the start of the phase.
    pub done_at: Duration,
    /// How long it took.
    pub latency: Duration,
    /// The HTTP status; `None` for a transport error.
    pub status: Option<u16>,
}

/// All samples of a phase.
#[derive(Debug, Default)]
pub struct Samples {
    pub samples: Vec<Sample>,
    /// The first transport error, to show what went wrong.
    pub first_error: Option<String>,
}

impl Samples {
    /// The status of a finished request, reading its body so the connection goes back to the
    /// pool; a failed request keeps its first error and has no status.
    pub(crate) async fn status_of(
        &mut self,
        result: reqwest::Result<reqwest::Response>,
    ) -> Option<u16> {
        let failed = match result {
            Ok(response) => {
                let status = response.status().as_u16();
                match response.bytes().await {
                    Ok(_) => return Some(status),
                    Err(error) => error,
                }
            }
            Err(error) => error,
        };
        self.first_error.get_or_insert(failed.to_string());
        None
    }

    /// Count per status (`0` stands for transport errors).
    pub fn by_status(&self) -> BTreeMap<u16, u64> {
        let mut out = BTreeMap::new();
        for sample in &self.samples {
            *out.entry(sample.status.unwrap_or(0)).or_insert(0) += 1;
        }
        out
    }

    /// Latencies of samples with `status` that completed within `window` of the start.
    pub fn latencies(&self, status: u16, window: Duration) -> Vec<Duration> {
        self.samples
            .iter()
            .filter(|s| s.status == Some(status) && s.done_at <= window)
            .map(|s| s.latency)
            .collect()
    }

    pub(crate) fn merge(&mut self, other: Samples) {
        self.samples.extend(other.samples);
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// `concurrency` tasks each sign in, one after the other, until `start + duration`; task `t`
/// cycles through accounts `t, t + concurrency, …` modulo `users`.
pub async fn signin_flood(
    base: String,
    users: usize,
    concurrency: usize,
    start: Instant,
    duration: Duration,
) -> anyhow::Result<Samples> {
    let client = client()?;
    let url = Arc::new(format!("{base}/api/v1/sessions"));
    let bodies: Arc<Vec<String>> = Arc::new(
        (0..users.max(1))
            .map(|i| json!({ "email": email(i), "password": PASSWORD }).to_string())
            .collect(),
    );
    let deadline = start + duration;
    let mut tasks = JoinSet::new();
    for task in 0..concurrency.max(1) {
        let (client, url, bodies) = (client.clone(), url.clone(), bodies.clone());
        tasks.spawn(async move {
            let mut out = Samples::default();
            let mut user = task;
            while Instant::now() < deadline {
                let body = bodies.get(user % bodies.len()).cloned().unwrap_or_default();
                user += concurrency;
                let sent = Instant::now();
                let result = client
                    .post(url.as_str())
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
                let status = out.status_of(result).await;
                let now = Instant::now();
                out.samples.push(Sample {
                    done_at: now - start,
                    latency: now - sent,
                    status,
                });
                if status == Some(429) {
                    // Shed: back off a little instead of spinning.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            out
        });
    }
    let mut all = Samples::default();
    while let Some(joined) = tasks.join_next().await {
        all.merge(joined.context("flood task failed")?);
    }
    Ok(all)
}

/// `concurrency` tasks each call `GET /api/v1/me` once per `interval` (back to back when it is
/// zero, or when a request takes longer) until `start + duration`.
pub async fn me_probe(
    base: String,
    token: String,
    concurrency: usize,
    interval: Duration,
    start: Instant,
    duration: Duration,
) -> anyhow::Result<Samples> {
    let client = client()?;
    let url = Arc::new(format!("{base}/api/v1/me"));
    let token = Arc::new(token);
    let deadline = start + duration;
    let mut tasks = JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (client, url, token) = (client.clone(), url.clone(), token.clone());
        tasks.spawn(async move {
            let mut out = Samples::default();
            let mut ticks = (!interval.is_zero()).then(|| {
                let mut ticks = tokio::time::interval(interval);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                ticks
            });
            while Instant::now() < deadline {
                if let Some(ticks) = &mut ticks {
                    ticks.tick().await;
                }
                let sent = Instant::now();
                let result = client
                    .get(url.as_str())
                    .bearer_auth(token.as_str())
                    .send()
                    .await;
                let status = out.status_of(result).await;
                let now = Instant::now();
                out.samples.push(Sample {
                    done_at: now - start,
                    latency: now - sent,
                    status,
                });
            }
            out
        });
    }
    let mut all = Samples::default();
    while let Some(joined) = tasks.join_next().await {
        all.merge(joined.context("probe task failed")?);
    }
    Ok(all)
}

/// What the probe thread returns: its samples and the CPU it used.
pub type ProbeResult = anyhow::Result<(Samples, ThreadStat)>;

/// Runs the `/me` probe on its own OS thread named `me-probe`.
pub fn spawn_me_probe(
    base: String,
    token: String,
    concurrency: usize,
    interval: Duration,
    start: Instant,
    duration: Duration,
) -> anyhow::Result<std::thread::JoinHandle<ProbeResult>> {
    std::thread::Builder::new()
        .name("me-probe".into())
        .spawn(move || {
            let before = procfs::current_thread()?;
            let samples = runtime()?.block_on(me_probe(
                base,
                token,
                concurrency,
                interval,
                start,
                duration,
            ))?;
            let used = procfs::current_thread()?.since(&before);
            Ok((samples, used))
        })
        .context("cannot spawn the probe thread")
}

/// The bodies to post and the index of the next unused one, shared by every client thread.
#[derive(Debug, Clone)]
pub struct Work {
    /// Where to post.
    pub url: Arc<String>,
    /// JSON bodies, each to be sent exactly once.
    pub bodies: Arc<Vec<String>>,
    /// The next body to send.
    pub next: Arc<AtomicUsize>,
}

impl Work {
    /// Work for `url`: every body once.
    pub fn new(url: String, bodies: Vec<String>) -> Self {
        Self {
            url: Arc::new(url),
            bodies: Arc::new(bodies),
            next: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Bodies handed out so far (at most all of them).
    pub fn taken(&self) -> usize {
        self.next.load(Ordering::Relaxed).min(self.bodies.len())
    }
}

/// `concurrency` tasks each take the next unused body of `work` and POST it, one after the
/// other, until every body has been sent or `deadline` passed. Every body is sent at most once
/// (a challenge, or a TOTP step, can be used only once).
pub async fn post_each(
    work: Work,
    concurrency: usize,
    start: Instant,
    deadline: Instant,
) -> anyhow::Result<Samples> {
    let client = client()?;
    let mut tasks = JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (client, work) = (client.clone(), work.clone());
        tasks.spawn(async move {
            let mut out = Samples::default();
            while Instant::now() < deadline {
                let index = work.next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = work.bodies.get(index) else {
                    break;
                };
                let sent = Instant::now();
                let result = client
                    .post(work.url.as_str())
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await;
                let status = out.status_of(result).await;
                let now = Instant::now();
                out.samples.push(Sample {
                    done_at: now - start,
                    latency: now - sent,
                    status,
                });
            }
            out
        });
    }
    let mut all = Samples::default();
    while let Some(joined) = tasks.join_next().await {
        all.merge(joined.context("client task failed")?);
    }
    Ok(all)
}

/// Name prefix of the client threads of [`spawn_post_each`].
pub const CLIENT_THREAD: &str = "bench-client";

/// Runs [`post_each`] on `threads` OS threads (each with its own runtime and client) that
/// share `work` and split `concurrency` between them; returns the merged samples and what each
/// client thread used (they have exited by then, so they report themselves).
pub fn spawn_post_each(
    work: &Work,
    threads: usize,
    concurrency: usize,
    start: Instant,
    deadline: Instant,
) -> anyhow::Result<(Samples, Vec<ThreadStat>)> {
    let concurrency = concurrency.max(1);
    let threads = threads.clamp(1, concurrency);
    let handles = (0..threads)
        .map(|i| {
            // The first threads take one more task when the split is uneven.
            let share = concurrency / threads + usize::from(i < concurrency % threads);
            let work = work.clone();
            std::thread::Builder::new()
                .name(format!("{CLIENT_THREAD}-{i}"))
                .spawn(move || -> anyhow::Result<(Samples, ThreadStat)> {
                    let before = procfs::current_thread()?;
                    let samples = runtime()?.block_on(post_each(work, share, start, deadline))?;
                    Ok((samples, procfs::current_thread()?.since(&before)))
                })
                .context("cannot spawn a client thread")
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut all = Samples::default();
    let mut used = Vec::new();
    for handle in handles {
        let (samples, stat) = handle
            .join()
            .map_err(|_| anyhow::anyhow!("a client thread panicked"))??;
        all.merge(samples);
        used.push(stat);
    }
    Ok((all, used))
}
