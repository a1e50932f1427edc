//! `tessera-bench`: how fast can Tessera sign people in with a password, and does a sign-in
//! flood stall everything else? (DESIGN.md §6: Argon2id runs on a bounded blocking pool "so a
//! flood of password attempts cannot stall second-step or page requests".)
//!
//! Run it in release mode, on an otherwise idle machine:
//!
//! ```text
//! cargo run --release -p tessera-bench -- --seconds 10 --users 50 --concurrency 16
//! ```
//!
//! Phases, in order:
//!
//! 1. **Raw Argon2id.** `Argon2::default()` (Argon2id v19, m=19456 KiB, t=2, p=1) verifies a
//!    PHC hash — exactly what a sign-in does — on N OS threads, N = `available_parallelism`
//!    (the size of the server's hashing pool), for `--raw-seconds`. This is the ceiling: no
//!    server can sign in more passwords per second than this machine can verify.
//! 2. **Server.** A real Tessera server starts in-process on 127.0.0.1:0 through
//!    `tessera_server::server::start` (SQLite in a temporary directory, per-address limit off,
//!    no log output) on its own multi-threaded runtime, as `tessera serve` does. `--users`
//!    accounts are created through `POST /api/v1/accounts` (not measured).
//! 3. **`/me` baseline.** One signed-in session calls `GET /api/v1/me` back to back for
//!    `--baseline-seconds` with nothing else running.
//! 4. **Sign-in flood.** `--concurrency` tasks call `POST /api/v1/sessions` with correct
//!    passwords for `--seconds` while the `/me` probe keeps running. Throughput counts the 201s
//!    completed inside the window; any other status is listed (429 means the hashing queue shed
//!    load). The report also shows, per group of threads, CPU time and time spent runnable but
//!    waiting for a core (from `/proc/self/task/*/schedstat`) — that is where `/me` latency
//!    under a flood comes from.
//! 5. **Memory.** VmRSS / VmHWM of the process at each step.
//!
//! How to read it: "sign-in / raw" near 100% means the HTTP, JSON and SQLite work around each
//! hash is cheap and the pool keeps every core hashing; the target is ≥ 85%. "/me p99 during
//! flood" is what a signed-in user feels while someone hammers the sign-in endpoint; the target
//! is < 20 ms. The load generator and the probe run in the same process (on their own threads),
//! so they take a little CPU from the server: the numbers are a slight underestimate of a
//! dedicated server. The last lines are PASS/FAIL per target; the exit code is 0 either way
//! (this is a report, not a test).

mod load;
mod procfs;
mod raw;
mod stats;

use anyhow::Context;
use clap::Parser;
use procfs::{Memory, ThreadStat};
use stats::{Ms, Summary};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tessera_core::clock::SystemClock;
use tessera_server::config::Settings;
use tessera_server::server::{HASH_QUEUE_DEPTH, StartOptions, start};

/// Target: password sign-ins per second, as a share of the raw Argon2id rate.
const TARGET_THROUGHPUT_RATIO: f64 = 0.85;
/// Target: p99 of `GET /api/v1/me` during the sign-in flood.
const TARGET_ME_P99: Duration = Duration::from_millis(20);
/// Thread name of the server's runtime (workers and blocking pool).
const SERVER_THREAD: &str = "tessera-rt";

/// Sign-in throughput against raw Argon2id, and `/me` latency under a sign-in flood.
#[derive(Debug, Parser)]
#[command(name = "tessera-bench", version, about)]
struct Args {
    /// Duration of the sign-in flood, in seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Duration of the raw Argon2id measurement, in seconds.
    #[arg(long, default_value_t = 5)]
    raw_seconds: u64,
    /// Duration of the `/me` baseline (no flood), in seconds.
    #[arg(long, default_value_t = 3)]
    baseline_seconds: u64,
    /// Accounts to create before the flood (sign-up hashes too: about 40 per second here).
    #[arg(long, default_value_t = 50)]
    users: usize,
    /// Sign-in requests in flight during the flood. Above the server's queue (512 + pool size)
    /// the excess is shed with 429.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Concurrent `/me` probe tasks.
    #[arg(long, default_value_t = 1)]
    me_concurrency: usize,
    /// Threads of the raw measurement; defaults to available_parallelism (the server's pool).
    #[arg(long)]
    raw_threads: Option<usize>,
    /// Worker threads of the server's runtime; defaults to tokio's default (one per core), as
    /// `tessera serve` uses.
    #[arg(long)]
    server_workers: Option<usize>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let cores = std::thread::available_parallelism()
        .map(usize::from)
        .context("cannot read available_parallelism")?;
    let raw_threads = args.raw_threads.unwrap_or(cores).max(1);
    let mut memory = vec![("start", procfs::memory()?)];

    println!("Tessera benchmark: password sign-in vs raw Argon2id; /me under a sign-in flood");
    println!(
        "machine: available_parallelism = {cores} (server hashing pool = {cores} slots, queue {HASH_QUEUE_DEPTH}); build: {}",
        if cfg!(debug_assertions) {
            "DEBUG (numbers are meaningless; use --release)"
        } else {
            "release"
        }
    );
    println!(
        "run: raw {} s × {raw_threads} threads | {} users | /me baseline {} s | flood {} s × {} sign-ins in flight, {} /me probe task(s)",
        args.raw_seconds,
        args.users,
        args.baseline_seconds,
        args.seconds,
        args.concurrency,
        args.me_concurrency
    );
    println!();

    // 1. Raw Argon2id.
    let raw = raw::measure(
        load::PASSWORD,
        raw_threads,
        Duration::from_secs(args.raw_seconds),
    )?;
    println!(
        "[1] raw Argon2id verify (${}), {} threads, {:.2} s",
        raw.params,
        raw.threads,
        raw.elapsed.as_secs_f64()
    );
    println!(
        "    total {:.1} hashes/s | per thread {:.1} hashes/s ({:.1} ms each) | per-thread counts {:?}",
        raw.total_per_sec(),
        raw.per_thread_per_sec(),
        1000.0 / raw.per_thread_per_sec(),
        raw.per_thread
    );
    memory.push(("after raw Argon2id", procfs::memory()?));

    // 2. The server, on its own runtime like `tessera serve`.
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all().thread_name(SERVER_THREAD);
    if let Some(workers) = args.server_workers {
        builder.worker_threads(workers.max(1));
    }
    let server_rt = builder.build().context("cannot build the server runtime")?;
    let expected_workers = args.server_workers.unwrap_or(cores).max(1);
    let server_workers = worker_tids(expected_workers)?;
    let data = tempfile::tempdir().context("cannot create a temporary data directory")?;
    let settings = Settings {
        listen: "127.0.0.1:0".into(),
        data_dir: data.path().to_path_buf(),
        client_rate_limit: 0,
        ..Settings::default()
    };
    // No tracing subscriber is installed, so the server logs nothing.
    let server = server_rt.block_on(start(
        settings,
        Arc::new(SystemClock),
        StartOptions::default(),
    ))?;
    let base = format!("http://{}", server.addr);
    println!();
    println!(
        "[2] server on {} (SQLite in {}, client_rate_limit = 0, {} runtime workers)",
        server.addr,
        data.path().display(),
        server_workers.len()
    );

    let client_rt = load::runtime()?;
    let created = Instant::now();
    let probe_user = args.users; // one extra account, kept out of the flood
    client_rt.block_on(load::create_users(&base, args.users + 1, cores * 2))?;
    let token = client_rt.block_on(load::sign_in(&base, probe_user))?;
    println!(
        "    created {} users (+1 for the /me probe) in {:.1} s — sign-up hashes too; not measured",
        args.users,
        created.elapsed().as_secs_f64()
    );
    memory.push(("server started, users created", procfs::memory()?));

    // 3. /me with nothing else running.
    let baseline_window = Duration::from_secs(args.baseline_seconds);
    let baseline = load::spawn_me_probe(
        base.clone(),
        token.clone(),
        args.me_concurrency,
        Instant::now(),
        baseline_window,
    )?
    .join()
    .map_err(|_| anyhow::anyhow!("the probe thread panicked"))??;
    println!();
    println!(
        "[3] /me baseline, no flood, {} s, {} task(s)",
        args.baseline_seconds, args.me_concurrency
    );
    print_statuses("    statuses", &baseline);
    let baseline_me = Summary::of(baseline.latencies(200, Duration::MAX));
    print_summary("    200 latency", baseline_me);
    memory.push(("after /me baseline", procfs::memory()?));

    // 4. The flood, with the probe running alongside.
    let window = Duration::from_secs(args.seconds);
    let main_tid = procfs::current_tid()?;
    let threads_before = procfs::threads()?;
    let start_at = Instant::now();
    let probe = load::spawn_me_probe(base.clone(), token, args.me_concurrency, start_at, window)?;
    let flood = client_rt.block_on(load::signin_flood(
        base.clone(),
        args.users,
        args.concurrency,
        start_at,
        window,
    ))?;
    let flood_wall = start_at.elapsed();
    let during = probe
        .join()
        .map_err(|_| anyhow::anyhow!("the probe thread panicked"))??;
    let threads_after = procfs::threads()?;
    memory.push(("after flood", procfs::memory()?));

    let ok_in_window = flood.latencies(201, window);
    let signin_rate = ok_in_window.len() as f64 / window.as_secs_f64();
    let ratio = signin_rate / raw.total_per_sec();
    println!();
    println!(
        "[4] sign-in flood, {} s, {} in flight over {} accounts (drained after {:.2} s)",
        args.seconds,
        args.concurrency,
        args.users,
        flood_wall.as_secs_f64()
    );
    print_statuses("    statuses", &flood);
    println!(
        "    throughput {signin_rate:.1} sign-ins/s (201s completed in the window) = {:.1}% of raw {:.1} hashes/s",
        ratio * 100.0,
        raw.total_per_sec()
    );
    print_summary("    201 latency", Summary::of(ok_in_window));
    println!(
        "    (latency ≈ requests in flight / throughput: {} / {signin_rate:.1} = {:.0} ms of queueing for the pool)",
        args.concurrency,
        if signin_rate > 0.0 {
            args.concurrency as f64 / signin_rate * 1000.0
        } else {
            0.0
        }
    );
    println!("  /me during the flood, {} task(s)", args.me_concurrency);
    print_statuses("    statuses", &during);
    let flood_me = Summary::of(during.latencies(200, window));
    print_summary("    200 latency", flood_me);
    print_cpu(
        &procfs::delta(&threads_before, &threads_after),
        &server_workers,
        main_tid,
        flood_wall,
        cores,
    );

    // 5. Memory.
    println!();
    println!("[5] memory of the process (VmRSS now / VmHWM peak so far)");
    for (label, Memory { rss_kib, hwm_kib }) in &memory {
        println!(
            "    {label:<32} RSS {:>7.1} MiB   HWM {:>7.1} MiB",
            *rss_kib as f64 / 1024.0,
            *hwm_kib as f64 / 1024.0
        );
    }

    server_rt.block_on(server.shutdown())?;

    println!();
    println!("RESULT");
    let throughput_ok = ratio >= TARGET_THROUGHPUT_RATIO;
    println!(
        "    {}  sign-in throughput {:.1}% of raw Argon2id ({signin_rate:.1} vs {:.1}/s; target ≥ {:.0}%)",
        verdict(throughput_ok),
        ratio * 100.0,
        raw.total_per_sec(),
        TARGET_THROUGHPUT_RATIO * 100.0
    );
    match flood_me {
        Some(summary) => println!(
            "    {}  /me p99 during the flood {} (baseline {}; target < {})",
            verdict(summary.p99 < TARGET_ME_P99),
            Ms(summary.p99),
            baseline_me.map_or_else(|| "n/a".to_owned(), |b| Ms(b.p99).to_string()),
            Ms(TARGET_ME_P99)
        ),
        None => println!("    FAIL  /me during the flood: no successful request"),
    }
    Ok(())
}

fn verdict(ok: bool) -> &'static str {
    if ok { "PASS" } else { "FAIL" }
}

/// The server runtime's worker threads: the `tessera-rt` threads that exist right after the
/// runtime is built (the blocking pool starts its threads on demand, later).
fn worker_tids(expected: usize) -> anyhow::Result<BTreeSet<u32>> {
    let started = Instant::now();
    loop {
        let workers: BTreeSet<u32> = procfs::threads()?
            .into_iter()
            .filter(|(_, thread)| thread.name == SERVER_THREAD)
            .map(|(tid, _)| tid)
            .collect();
        if workers.len() >= expected || started.elapsed() > Duration::from_secs(2) {
            return Ok(workers);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn print_statuses(label: &str, samples: &load::Samples) {
    let parts: Vec<String> = samples
        .by_status()
        .iter()
        .map(|(status, count)| match status {
            0 => format!("transport error × {count}"),
            status => format!("{status} × {count}"),
        })
        .collect();
    println!("{label}: {}", parts.join(", "));
    if let Some(error) = &samples.first_error {
        println!("{label}: first transport error: {error}");
    }
}

fn print_summary(label: &str, summary: Option<Summary>) {
    match summary {
        Some(summary) => println!("{label}: {summary}"),
        None => println!("{label}: no samples"),
    }
}

/// CPU and run-queue wait per group of threads during the flood.
fn print_cpu(
    delta: &BTreeMap<u32, ThreadStat>,
    server_workers: &BTreeSet<u32>,
    main_tid: u32,
    wall: Duration,
    cores: usize,
) {
    #[derive(Default)]
    struct Group {
        threads: usize,
        run_ns: u64,
        wait_ns: u64,
        slices: u64,
    }
    let mut groups: BTreeMap<&str, Group> = BTreeMap::new();
    for (tid, stat) in delta {
        if stat.run_ns == 0 && stat.slices == 0 {
            continue;
        }
        let group = if server_workers.contains(tid) {
            "server async workers"
        } else if stat.name == SERVER_THREAD {
            "server blocking pool (Argon2)"
        } else if stat.name.starts_with("sqlx") {
            "server SQLite threads"
        } else if *tid == main_tid {
            "client: sign-in flood"
        } else if stat.name == "me-probe" {
            "client: /me probe"
        } else {
            "other"
        };
        let entry = groups.entry(group).or_default();
        entry.threads += 1;
        entry.run_ns += stat.run_ns;
        entry.wait_ns += stat.wait_ns;
        entry.slices += stat.slices;
    }
    let wall_ns = wall.as_nanos() as f64;
    let total_run: u64 = groups.values().map(|g| g.run_ns).sum();
    println!(
        "  CPU during the flood ({:.2} s wall × {cores} cores = {:.2} core-s; used {:.2} core-s = {:.0}%)",
        wall.as_secs_f64(),
        wall.as_secs_f64() * cores as f64,
        total_run as f64 / 1e9,
        total_run as f64 / (wall_ns * cores as f64) * 100.0
    );
    println!(
        "    {:<31} {:>7} {:>8} {:>7} {:>12} {:>9} {:>15}",
        "threads", "count", "cpu s", "% core", "runq wait s", "slices", "wait per slice"
    );
    for (name, g) in &groups {
        println!(
            "    {:<31} {:>7} {:>8.2} {:>6.0}% {:>12.2} {:>9} {:>15}",
            name,
            g.threads,
            g.run_ns as f64 / 1e9,
            g.run_ns as f64 / wall_ns * 100.0,
            g.wait_ns as f64 / 1e9,
            g.slices,
            Ms(Duration::from_nanos(g.wait_ns / g.slices.max(1))).to_string()
        );
    }
}
