//! `tessera-bench`: how fast can Tessera sign people in with a password, and does a sign-in
//! flood stall everyone else? (DESIGN.md §6: Argon2id runs on a bounded blocking pool "so a
//! flood of password attempts cannot stall second-step or page requests".)
//!
//! ```text
//! cargo run --release -p tessera-bench                       # defaults, about 35 s
//! cargo run --release -p tessera-bench -- --seconds 10 --users 200 --concurrency 16
//! cargo run --release -p tessera-bench -- --model-fix        # + the pool-design experiment
//! cargo run --release -p tessera-bench -- mfa                # MFA second steps, see mfa.rs
//! cargo run --release -p tessera-bench -- mfa --postgres
//! ```
//!
//! The `mfa` subcommand is a separate benchmark (second steps of sign-in with 100,000 seeded
//! TOTP users, on SQLite or PostgreSQL); its phases and targets are described in `mfa.rs`.
//! Without a subcommand, the password benchmark below runs.
//!
//! Run it in release mode on an otherwise idle machine. Phases, in order:
//!
//! 1. **Raw Argon2id.** `Argon2::default()` (Argon2id v19, m=19456 KiB, t=2, p=1) verifies a
//!    PHC hash — what one sign-in does, allocating its 19 MiB each time — on N OS threads,
//!    N = `available_parallelism` (the size of the server's hashing pool), back to back, for
//!    `--raw-seconds`. This is the reference: the server cannot sign in more passwords per
//!    second than the machine verifies this way. Then the same with one reused buffer per
//!    thread (no allocation, zeroing or page faults), to show what the allocation costs.
//! 2. **Server.** A real Tessera server starts in-process on 127.0.0.1:0 through
//!    `tessera_server::server::start` (SQLite in a temporary directory, per-address limit off,
//!    no tracing subscriber so no log output) on its own multi-threaded runtime, like
//!    `tessera serve`. `--users` accounts (+1 for the probe) are created through
//!    `POST /api/v1/accounts`; that is not measured.
//! 3. **`/me` baseline.** A signed-in session calls `GET /api/v1/me` every `--me-interval-ms`
//!    (0 = back to back) for `--baseline-seconds`, nothing else running.
//! 4. **Sign-in flood.** `--concurrency` tasks call `POST /api/v1/sessions` with correct
//!    passwords (HTTP/1.1 keep-alive) for `--seconds` while the `/me` probe keeps going.
//!    Throughput counts the 201s completed inside the window; any other status is listed (429:
//!    the hashing queue shed load). Then: where the cores' time went (Argon2, the rest of the
//!    server, the in-process clients, other processes, hypervisor steal, idle), CPU time and
//!    page faults per hash, and per group of threads the time on a CPU and the time runnable
//!    but waiting for one (`/proc/self/task/*/schedstat`) — that waiting is what `/me` latency
//!    under a flood is made of.
//! 5. **The pool alone**: `tessera_core::password::PasswordHasher::verify` with the server's
//!    pool size and queue, same concurrency, no HTTP and no SQLite — separates what the pool
//!    loses from what the rest of the server costs. `--model-fix` adds 5b, a model of another
//!    design (see `model.rs`).
//! 6. **Raw Argon2id again**, server stopped: shared and virtual machines drift by 10–20%
//!    within a minute, so the throughput ratio is taken against the mean of phases 1 and 6,
//!    and each phase says how much CPU other processes and the hypervisor took.
//! 7. **Memory.** VmRSS / VmHWM of the process after each step.
//!
//! How to read it: "% of raw" near 100% means the HTTP, JSON and SQLite work around each hash
//! is cheap and the pool keeps every core hashing (target ≥ 85%). "/me p99 during the flood"
//! is what a signed-in user feels while someone hammers sign-in (target < 20 ms). "idle"
//! during the flood is time a core had nothing to run although sign-ins were queued. The load
//! generator and the probe run in this process on their own threads and runtimes, so they take
//! a little CPU from the server (shown in the breakdown). A WARNING line means other processes
//! or the hypervisor took more than 5% of the CPU in some phase: rerun on a quiet machine
//! before believing either verdict. The exit code is 0 either way: this is a report, not a test.
//!
//! Experiments (none changes the server): `--hashing-nice N` renices the server's hashing
//! threads (where Argon2 runs) by N with `renice` during the flood, to show what lowering their
//! priority does to `/me` latency and throughput; `--baseline-hashing-threads N` runs N plain
//! Argon2 threads in this process during the `/me` baseline, to tell CPU contention from the
//! cost of the sign-in path itself; `--concurrency 1` keeps only one hashing slot busy;
//! `--model-fix` measures another pool design (phase 5b).

mod load;
mod mfa;
mod model;
mod procfs;
mod raw;
mod seed;
mod stats;
mod store_model;

use anyhow::Context;
use clap::Parser;
use procfs::{CpuTicks, Memory, ThreadStat};
use stats::{Ms, Summary};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tessera_core::clock::SystemClock;
use tessera_core::password::HASHING_THREAD_PREFIX;
use tessera_server::config::Settings;
use tessera_server::server::{HASH_QUEUE_DEPTH, StartOptions, start};

/// Target: password sign-ins per second, as a share of the raw Argon2id rate.
const TARGET_THROUGHPUT_RATIO: f64 = 0.85;
/// Target: p99 of `GET /api/v1/me` during the sign-in flood.
const TARGET_ME_P99: Duration = Duration::from_millis(20);
/// A phase is flagged when other processes and the hypervisor took more than this share of the
/// machine's CPU time.
const NOISE_THRESHOLD: f64 = 0.05;
/// Thread name of the server's runtime (workers and blocking pool).
const SERVER_THREAD: &str = "tessera-rt";

/// Sign-in throughput against raw Argon2id, and `/me` latency under a sign-in flood; or, with
/// `mfa`, second-step throughput and latency.
#[derive(Debug, Parser)]
#[command(
    name = "tessera-bench",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Duration of the sign-in flood, in seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Duration of each hashing-only measurement (raw, raw with a reused buffer, the pool
    /// alone, raw again), in seconds.
    #[arg(long, default_value_t = 4)]
    raw_seconds: u64,
    /// Duration of the `/me` baseline (no flood), in seconds.
    #[arg(long, default_value_t = 3)]
    baseline_seconds: u64,
    /// Accounts to create before the flood (sign-up hashes too, so this takes time).
    #[arg(long, default_value_t = 50)]
    users: usize,
    /// Sign-in requests in flight during the flood. Beyond the server's queue (512 + pool
    /// size) the excess is shed with 429.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Concurrent `/me` probe tasks.
    #[arg(long, default_value_t = 1)]
    me_concurrency: usize,
    /// Milliseconds between the requests of each `/me` probe task; 0 calls back to back (which
    /// makes the probe a load generator worth most of a core on a small machine).
    #[arg(long, default_value_t = 10)]
    me_interval_ms: u64,
    /// Threads of the raw measurement; defaults to available_parallelism (the server's pool).
    #[arg(long)]
    raw_threads: Option<usize>,
    /// Worker threads of the server's runtime; defaults to one per core, like `tessera serve`.
    #[arg(long)]
    server_workers: Option<usize>,
    /// Experiment: renice the server's hashing (Argon2) threads by this much during the
    /// flood, with `renice`.
    #[arg(long)]
    hashing_nice: Option<i32>,
    /// Experiment: during the `/me` baseline, run this many plain Argon2 threads (no server,
    /// no sign-ins) in this process.
    #[arg(long, default_value_t = 0)]
    baseline_hashing_threads: usize,
    /// Experiment: after the pool alone, run a model of a different pool (dedicated hashing
    /// threads fed by a bounded queue), with per-hash and with reused Argon2 memory.
    #[arg(long)]
    model_fix: bool,
}

/// Benchmarks other than the default password one.
#[derive(Debug, clap::Subcommand)]
enum Command {
    /// MFA second steps (`POST /api/v1/sessions/mfa`) with 100,000 seeded TOTP users: TOTP and
    /// backup-code runs, on SQLite or (`--postgres`) PostgreSQL.
    Mfa(mfa::MfaArgs),
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(Command::Mfa(mfa)) = args.command {
        return mfa::run(mfa);
    }
    let cores = std::thread::available_parallelism()
        .map(usize::from)
        .context("cannot read available_parallelism")?;
    let raw_threads = args.raw_threads.unwrap_or(cores).max(1);
    let raw_window = Duration::from_secs(args.raw_seconds);
    let me_interval = Duration::from_millis(args.me_interval_ms);
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
        "run: hashing-only phases {} s each × {raw_threads} threads | {} users | /me baseline {} s | flood {} s, {} sign-ins in flight | /me probe {} task(s), {}{}",
        args.raw_seconds,
        args.users,
        args.baseline_seconds,
        args.seconds,
        args.concurrency,
        args.me_concurrency,
        if me_interval.is_zero() {
            "back to back".to_owned()
        } else {
            format!("every {} ms", args.me_interval_ms)
        },
        args.hashing_nice.map_or_else(String::new, |n| format!(
            " | EXPERIMENT: Argon2 threads reniced by {n}"
        ))
    );

    // 1. Raw Argon2id.
    let (raw, cpu) = measure_raw(raw_threads, raw_window, raw::Memory::PerHash)?;
    let raw_noise = cpu.others_share();
    println!();
    println!(
        "[1] raw Argon2id verify (${}), {} threads, {:.2} s",
        raw.params,
        raw.threads,
        raw.elapsed.as_secs_f64()
    );
    print_raw(&raw, &cpu);
    let (reused, cpu) = measure_raw(raw_threads, raw_window, raw::Memory::Reused)?;
    let reused_noise = cpu.others_share();
    println!(
        "    the same with one reused 19 MiB buffer per thread (no allocation, zeroing or page faults, as Tessera's hashing threads verify):"
    );
    print_raw(&reused, &cpu);
    memory.push(("after raw Argon2id", procfs::memory()?));

    // 2. The server, on its own runtime like `tessera serve`.
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all().thread_name(SERVER_THREAD);
    if let Some(workers) = args.server_workers {
        builder.worker_threads(workers.max(1));
    }
    let server_rt = builder.build().context("cannot build the server runtime")?;
    let server_workers =
        procfs::named_threads(SERVER_THREAD, args.server_workers.unwrap_or(cores).max(1))?;
    let data = tempfile::tempdir().context("cannot create a temporary data directory")?;
    let settings = Settings {
        listen: "127.0.0.1:0".into(),
        data_dir: data.path().to_path_buf(),
        client_rate_limit: 0,
        ..Settings::default()
    };
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
        "    created {} users (+1 for the /me probe) in {:.1} s; sign-up hashes too, not measured",
        args.users,
        created.elapsed().as_secs_f64()
    );
    memory.push(("server started, users created", procfs::memory()?));

    // 3. /me with nothing else running (or, as an experiment, next to plain Argon2 threads).
    let baseline_window = Duration::from_secs(args.baseline_seconds);
    let background = (args.baseline_hashing_threads > 0)
        .then(|| {
            let threads = args.baseline_hashing_threads;
            std::thread::Builder::new()
                .name("bg-argon2".into())
                .spawn(move || {
                    raw::measure(
                        load::PASSWORD,
                        threads,
                        baseline_window + Duration::from_millis(200),
                        raw::Memory::PerHash,
                    )
                })
                .context("cannot spawn the background hashing")
        })
        .transpose()?;
    let (baseline, _) = load::spawn_me_probe(
        base.clone(),
        token.clone(),
        args.me_concurrency,
        me_interval,
        Instant::now(),
        baseline_window,
    )?
    .join()
    .map_err(|_| anyhow::anyhow!("the probe thread panicked"))??;
    if let Some(background) = background {
        background
            .join()
            .map_err(|_| anyhow::anyhow!("the background hashing panicked"))??;
    }
    println!();
    if args.baseline_hashing_threads > 0 {
        println!(
            "[3] /me, no flood but EXPERIMENT: {} plain Argon2 thread(s) in this process, {} s",
            args.baseline_hashing_threads, args.baseline_seconds
        );
    } else {
        println!("[3] /me baseline, no flood, {} s", args.baseline_seconds);
    }
    print_statuses("    statuses", &baseline);
    let baseline_me = Summary::of(baseline.latencies(200, Duration::MAX));
    print_summary("    200 latency", baseline_me);
    memory.push(("after /me baseline", procfs::memory()?));

    // 4. The flood, with the probe running alongside.
    let renicer = args
        .hashing_nice
        .map(|nice| Renicer::spawn(nice, server_workers.clone()))
        .transpose()?;
    let window = Duration::from_secs(args.seconds);
    let main_tid = procfs::current_tid()?;
    let threads_before = procfs::threads()?;
    let cpu = CpuTicks::now()?;
    let start_at = Instant::now();
    let probe = load::spawn_me_probe(
        base.clone(),
        token,
        args.me_concurrency,
        me_interval,
        start_at,
        window,
    )?;
    let flood = client_rt.block_on(load::signin_flood(
        base.clone(),
        args.users,
        args.concurrency,
        start_at,
        window,
    ))?;
    let flood_wall = start_at.elapsed();
    let (during, probe_cpu) = probe
        .join()
        .map_err(|_| anyhow::anyhow!("the probe thread panicked"))??;
    let flood_cpu = CpuTicks::now()?.since(&cpu);
    let flood_noise = flood_cpu.others_share();
    let mut threads_used = procfs::delta(&threads_before, &procfs::threads()?);
    threads_used.insert(0, probe_cpu); // the probe thread has exited: it reported itself
    let reniced = renicer.map(Renicer::stop).unwrap_or_default();
    memory.push(("after flood", procfs::memory()?));

    let ok_in_window = flood.latencies(201, window);
    let signin_rate = ok_in_window.len() as f64 / window.as_secs_f64();
    let ok_total = flood.latencies(201, Duration::MAX).len();
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
        "    throughput {signin_rate:.1} sign-ins/s (201s completed inside the {} s window)",
        args.seconds
    );
    print_summary("    201 latency", Summary::of(ok_in_window));
    if signin_rate > 0.0 {
        println!(
            "    (Little's law: {} in flight / {signin_rate:.1} per s = {:.0} ms, nearly all of it queueing for a hashing slot)",
            args.concurrency,
            args.concurrency as f64 / signin_rate * 1000.0
        );
    }
    println!("  /me during the flood");
    print_statuses("    statuses", &during);
    let flood_me = Summary::of(during.latencies(200, window));
    print_summary("    200 latency", flood_me);
    if let Some(nice) = args.hashing_nice {
        println!("  EXPERIMENT: reniced {reniced} hashing thread(s) by {nice}");
    }
    let groups = group_threads(&threads_used, &server_workers, main_tid);
    print_breakdown(&groups, &flood_cpu, flood_wall, cores, ok_total, &raw);
    print_groups(
        &groups,
        flood_wall,
        &format!("the Argon2 pool can use {cores}00%"),
    );

    server_rt.block_on(server.shutdown())?;
    drop(server_rt);

    // 5. The hashing pool alone.
    let cpu = CpuTicks::now()?;
    let pool = raw::measure_pool(
        load::PASSWORD,
        cores,
        HASH_QUEUE_DEPTH,
        args.concurrency,
        raw_window,
    )?;
    let pool_cpu = CpuTicks::now()?.since(&cpu);
    let pool_noise = pool_cpu.others_share();
    println!();
    println!(
        "[5] Tessera's hashing pool alone (PasswordHasher::verify, {cores} slots, {} in flight, no HTTP, no SQLite), {} s",
        args.concurrency, args.raw_seconds
    );
    print_pool(&pool);
    println!("    machine CPU: {}", pool_cpu.describe());

    if args.model_fix {
        for (label, memory) in [
            ("allocating per hash, like today", raw::Memory::PerHash),
            ("each thread reusing one 19 MiB buffer", raw::Memory::Reused),
        ] {
            let cpu = CpuTicks::now()?;
            let model = model::measure_dedicated(
                load::PASSWORD,
                cores,
                HASH_QUEUE_DEPTH,
                args.concurrency,
                raw_window,
                memory,
            )?;
            let cpu = CpuTicks::now()?.since(&cpu);
            println!(
                "[5b] EXPERIMENT: {cores} dedicated hashing threads fed by a bounded queue, {label}, {} in flight",
                args.concurrency
            );
            print_pool(&model);
            println!("    machine CPU: {}", cpu.describe());
        }
    }

    // 6. The raw rate again: did the machine change under us?
    let (raw_after, cpu) = measure_raw(raw_threads, raw_window, raw::Memory::PerHash)?;
    let raw_after_noise = cpu.others_share();
    println!();
    println!(
        "[6] raw Argon2id again, server stopped, {:.2} s",
        raw_after.elapsed.as_secs_f64()
    );
    print_raw(&raw_after, &cpu);

    // 7. Memory.
    println!();
    println!("[7] memory of the process (VmRSS now / VmHWM peak so far)");
    for (label, Memory { rss_kib, hwm_kib }) in &memory {
        println!(
            "    {label:<32} RSS {:>7.1} MiB   HWM {:>7.1} MiB",
            *rss_kib as f64 / 1024.0,
            *hwm_kib as f64 / 1024.0
        );
    }

    // Verdicts.
    let raw_mean = (raw.total_per_sec() + raw_after.total_per_sec()) / 2.0;
    let ratio = signin_rate / raw_mean;
    println!();
    println!("RESULT");
    println!(
        "    raw Argon2id: {:.1}/s before, {:.1}/s after, mean {raw_mean:.1}/s; sign-in {signin_rate:.1}/s = {:.1}% / {:.1}% of each",
        raw.total_per_sec(),
        raw_after.total_per_sec(),
        signin_rate / raw.total_per_sec() * 100.0,
        signin_rate / raw_after.total_per_sec() * 100.0
    );
    println!(
        "    pool alone: {:.1}/s = {:.1}% of the mean raw rate (the hand-off between hashes, without HTTP or SQLite)",
        pool.per_sec(),
        pool.per_sec() / raw_mean * 100.0
    );
    // Each rate scaled up by the CPU share other processes and the hypervisor took meanwhile.
    println!(
        "    raw with a reused buffer: {:.1}/s = {:.1}% of the mean raw rate (the ceiling for verification)",
        reused.total_per_sec(),
        reused.total_per_sec() / raw_mean * 100.0
    );
    let left = |taken: f64| 1.0 - taken.clamp(0.0, 0.9);
    let raw_quiet = (raw.total_per_sec() / left(raw_noise)
        + raw_after.total_per_sec() / left(raw_after_noise))
        / 2.0;
    let signin_quiet = signin_rate / left(flood_noise);
    println!(
        "    load-adjusted (each rate divided by the CPU share left to this process): sign-in {signin_quiet:.1}/s vs raw {raw_quiet:.1}/s = {:.1}%",
        signin_quiet / raw_quiet * 100.0
    );
    let noise = [
        ("raw Argon2id", raw_noise),
        ("raw, reused buffer", reused_noise),
        ("sign-in flood", flood_noise),
        ("pool alone", pool_noise),
        ("raw Argon2id again", raw_after_noise),
    ];
    let noisy: Vec<String> = noise
        .iter()
        .filter(|(_, share)| *share > NOISE_THRESHOLD)
        .map(|(phase, share)| format!("{phase} {:.0}%", share * 100.0))
        .collect();
    if !noisy.is_empty() {
        println!(
            "    WARNING  other processes + hypervisor steal took CPU during: {}; rerun on a quiet machine before trusting the verdicts",
            noisy.join(", ")
        );
    }
    println!(
        "    {}  sign-in throughput {:.1}% of raw Argon2id ({signin_rate:.1} vs {raw_mean:.1}/s; target ≥ {:.0}%)",
        verdict(ratio >= TARGET_THROUGHPUT_RATIO),
        ratio * 100.0,
        TARGET_THROUGHPUT_RATIO * 100.0
    );
    match flood_me {
        Some(summary) => println!(
            "    {}  /me p99 during the flood {} (p50 {}, max {}; baseline p99 {}; target < {})",
            verdict(summary.p99 < TARGET_ME_P99),
            Ms(summary.p99),
            Ms(summary.p50),
            Ms(summary.max),
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

/// The raw measurement, with the machine's CPU accounting over it.
fn measure_raw(
    threads: usize,
    window: Duration,
    memory: raw::Memory,
) -> anyhow::Result<(raw::RawRate, CpuTicks)> {
    let cpu = CpuTicks::now()?;
    let raw = raw::measure(load::PASSWORD, threads, window, memory)?;
    Ok((raw, CpuTicks::now()?.since(&cpu)))
}

fn print_pool(pool: &raw::PoolRate) {
    println!(
        "    total {:.1} hashes/s | {:.1} ms on a CPU and {} page faults per hash",
        pool.per_sec(),
        pool.cpu_ns as f64 / 1e6 / pool.hashes.max(1) as f64,
        pool.minor_faults / pool.hashes.max(1)
    );
}

fn print_raw(raw: &raw::RawRate, cpu: &CpuTicks) {
    println!(
        "    total {:.1} hashes/s | per thread {:.1}/s = {:.1} ms each, {:.1} ms of it on a CPU | {} page faults per hash | counts {:?}",
        raw.total_per_sec(),
        raw.per_thread_per_sec(),
        1000.0 / raw.per_thread_per_sec(),
        raw.cpu_per_hash().as_secs_f64() * 1000.0,
        raw.faults_per_hash(),
        raw.per_thread
    );
    println!("    machine CPU: {}", cpu.describe());
}

/// Renices the server's hashing threads as they appear (the experiment).
struct Renicer {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<usize>,
}

impl Renicer {
    fn spawn(nice: i32, workers: BTreeSet<u32>) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("renicer".into())
            .spawn(move || {
                let mut done = BTreeSet::new();
                while !flag.load(Ordering::Relaxed) {
                    let threads = procfs::threads().unwrap_or_default();
                    for (tid, thread) in threads {
                        if !thread.name.starts_with(HASHING_THREAD_PREFIX)
                            || workers.contains(&tid)
                            || done.contains(&tid)
                        {
                            continue;
                        }
                        let status = std::process::Command::new("renice")
                            .args(["-n", &nice.to_string(), "-p", &tid.to_string()])
                            .stdout(std::process::Stdio::null())
                            .status();
                        if status.is_ok_and(|status| status.success()) {
                            done.insert(tid);
                        }
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                done.len()
            })
            .context("cannot spawn the renicer")?;
        // Let it catch the existing pool threads before the flood starts.
        std::thread::sleep(Duration::from_millis(100));
        Ok(Self { stop, thread })
    }

    fn stop(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or(0)
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

/// Scheduler totals of a group of threads.
#[derive(Debug, Default)]
struct Group {
    threads: usize,
    run_ns: u64,
    wait_ns: u64,
    slices: u64,
    minor_faults: u64,
}

const POOL: &str = "server hashing threads (Argon2)";
const WORKERS: &str = "server async workers";
const SQLITE: &str = "server SQLite threads";
const FLOOD: &str = "client: sign-in flood";
const PROBE: &str = "client: /me probe";

fn group_threads(
    delta: &BTreeMap<u32, ThreadStat>,
    server_workers: &BTreeSet<u32>,
    main_tid: u32,
) -> BTreeMap<&'static str, Group> {
    group_by(delta, |tid, stat| {
        if server_workers.contains(&tid) {
            WORKERS
        } else if stat.name.starts_with(HASHING_THREAD_PREFIX) {
            POOL
        } else if stat.name == SERVER_THREAD {
            "server runtime, other threads"
        } else if stat.name.starts_with("sqlx") {
            SQLITE
        } else if tid == main_tid {
            FLOOD
        } else if stat.name == "me-probe" {
            PROBE
        } else {
            "other threads of this process"
        }
    })
}

/// Sums the threads that ran in `delta` into the groups `classify` names.
fn group_by(
    delta: &BTreeMap<u32, ThreadStat>,
    classify: impl Fn(u32, &ThreadStat) -> &'static str,
) -> BTreeMap<&'static str, Group> {
    let mut groups: BTreeMap<&str, Group> = BTreeMap::new();
    for (tid, stat) in delta {
        if stat.run_ns == 0 && stat.slices == 0 {
            continue;
        }
        let entry = groups.entry(classify(*tid, stat)).or_default();
        entry.threads += 1;
        entry.run_ns += stat.run_ns;
        entry.wait_ns += stat.wait_ns;
        entry.slices += stat.slices;
        entry.minor_faults += stat.minor_faults;
    }
    groups
}

/// Where the cores' time went during the flood.
fn print_breakdown(
    groups: &BTreeMap<&str, Group>,
    machine: &CpuTicks,
    wall: Duration,
    cores: usize,
    signins: usize,
    raw: &raw::RawRate,
) {
    let capacity_ns = wall.as_nanos() as f64 * cores as f64;
    let run = |names: &[&str]| -> f64 {
        names
            .iter()
            .filter_map(|name| groups.get(name))
            .map(|g| g.run_ns as f64)
            .sum::<f64>()
            / capacity_ns
            * 100.0
    };
    let pool_ns = groups.get(POOL).map_or(0, |g| g.run_ns);
    let pool_faults = groups.get(POOL).map_or(0, |g| g.minor_faults);
    let rows = [
        (
            "Argon2 (server hashing threads)".to_owned(),
            run(&[POOL]),
            format!(
                "{:.1} ms of CPU and {} page faults per sign-in; raw: {:.1} ms, {} faults per hash",
                pool_ns as f64 / 1e6 / signins.max(1) as f64,
                pool_faults / signins.max(1) as u64,
                raw.cpu_per_hash().as_secs_f64() * 1000.0,
                raw.faults_per_hash()
            ),
        ),
        (
            "rest of the server".to_owned(),
            run(&[WORKERS, SQLITE]),
            "HTTP, JSON, sessions, SQLite".to_owned(),
        ),
        (
            "in-process load generator + probe".to_owned(),
            run(&[FLOOD, PROBE, "other threads of this process"]),
            "would be on another machine in production".to_owned(),
        ),
        (
            "other processes".to_owned(),
            machine.others_only_share() * 100.0,
            String::new(),
        ),
        (
            "hypervisor steal".to_owned(),
            machine.steal_share() * 100.0,
            String::new(),
        ),
        (
            "idle".to_owned(),
            machine.idle_share() * 100.0,
            "a hashing slot was free while sign-ins waited".to_owned(),
        ),
    ];
    println!(
        "  where the {cores} cores' time went ({:.2} s × {cores} = {:.2} core-s):",
        wall.as_secs_f64(),
        wall.as_secs_f64() * cores as f64
    );
    for (label, share, note) in rows {
        println!("    {label:<36} {share:>5.1}%   {note}");
    }
}

/// Per group of threads: time on a CPU and time runnable but waiting for one.
fn print_groups(groups: &BTreeMap<&str, Group>, wall: Duration, note: &str) {
    let wall_ns = wall.as_nanos() as f64;
    println!(
        "  per thread group, in % of ONE core over {:.2} s ({note}):",
        wall.as_secs_f64()
    );
    println!(
        "    {:<30} {:>7} {:>8} {:>13} {:>10} {:>12}",
        "threads", "threads", "on CPU", "runnable but", "times", "mean wait"
    );
    println!(
        "    {:<30} {:>7} {:>8} {:>13} {:>10} {:>12}",
        "", "", "", "waiting", "scheduled", "per slice"
    );
    for (name, g) in groups {
        println!(
            "    {:<30} {:>7} {:>7.0}% {:>12.0}% {:>10} {:>12}",
            name,
            g.threads,
            g.run_ns as f64 / wall_ns * 100.0,
            g.wait_ns as f64 / wall_ns * 100.0,
            g.slices,
            Ms(Duration::from_nanos(g.wait_ns / g.slices.max(1))).to_string()
        );
    }
}
