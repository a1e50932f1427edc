//! `tessera-bench mfa`: how many second steps of sign-in (`POST /api/v1/sessions/mfa`) can
//! Tessera complete per second, and how long does each take, with 100,000 accounts that have
//! an authenticator app?
//!
//! ```text
//! cargo run --release -p tessera-bench -- mfa                  # SQLite, about 1-2 min
//! cargo run --release -p tessera-bench -- mfa --postgres       # fresh database on 127.0.0.1
//! cargo run --release -p tessera-bench -- mfa --postgres postgres://u@host:5432/postgres
//! cargo run --release -p tessera-bench -- mfa --users 20000 --concurrency 32 --breakdown
//! ```
//!
//! Phases:
//!
//! 1. **Server.** A real server starts in-process (`tessera_server::server::start`, its own
//!    multi-threaded runtime named like `tessera serve`'s, per-address limit off) on embedded
//!    SQLite in a temporary directory, or on a PostgreSQL database created for the run and
//!    dropped after. Its clock is a `FixedClock`: every account's TOTP code at that instant is
//!    valid, exactly once (the factor's last accepted step starts empty).
//! 2. **Seeding**, straight through the store port in big transactions (see `seed.rs`): the
//!    accounts (a fixed Argon2id PHC string, no hashing), one TOTP factor each with its secret
//!    sealed by the server's own key ring, ten backup codes each hashed with the server's
//!    pepper (for the first `--backup-users`), and two open sign-in challenges per account (one
//!    per run) whose tokens the bench keeps. Timed, with the mean time of each store call.
//! 3. **TOTP run.** `--concurrency` requests in flight (HTTP/1.1 keep-alive, `--client-threads`
//!    OS threads of this process), each taking the next unused challenge with the right code,
//!    until every challenge is used or `--seconds` pass. Only 201 counts as success; any other
//!    status is an error and listed. Then: throughput, latency, where the CPU went (per thread
//!    group, and for PostgreSQL its backends), CPU per second step, memory.
//! 4. `--breakdown` (an experiment, no HTTP): the second step through `Services` directly, then
//!    the exact store calls it makes, each timed, at the same concurrency and one at a time —
//!    which statement costs what, and how long each transaction holds the writer.
//! 5. `--store-model` (an experiment, see `store_model.rs`): the same database work through
//!    pools built by the bench, one change at a time — what each proposed store change buys.
//! 6. **Backup-code run**: the same as 3 with each account's first backup code, on the second
//!    set of challenges. It runs last because every success queues an email that the outbox
//!    worker then delivers through the same database writer for minutes afterwards.
//!
//! Targets (issue): on SQLite ≥ 5,000 successful TOTP second steps/s with p99 < 25 ms; on
//! PostgreSQL ≥ 3,000/s. The load generator runs in this process and takes CPU from the server
//! on a small machine (shown); other processes and hypervisor steal are shown per run, and a
//! WARNING says when they took more than 5%. The exit code is 0 either way: a report, not a
//! test.

use crate::load::{self, CLIENT_THREAD, Work};
use crate::procfs::{self, CpuTicks, Memory, ThreadStat};
use crate::seed::{self, SeededUser};
use crate::stats::{Ms, Summary};
use crate::{Group, NOISE_THRESHOLD, SERVER_THREAD, group_by, print_groups, verdict};
use crate::{print_statuses, print_summary, raw};
use anyhow::Context;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tessera_core::clock::{Clock as _, FixedClock, SystemClock, from_unix_seconds, unix_seconds};
use tessera_core::crypto::{KeyRing, Token};
use tessera_core::event::{ClientInfo, EventKind, NewEvent};
use tessera_core::factor::{FactorKind, MfaMethod, totp_secret_aad};
use tessera_core::ids::{SessionId, UserId};
use tessera_core::service::{SecondFactorProof, Services};
use tessera_core::session::{Session, SessionState};
use tessera_core::store::Store;
use tessera_otp::{OtpCode, TotpParams};
use tessera_server::config::Settings;
use tessera_server::server::{StartOptions, start};
use time::OffsetDateTime;

/// The PostgreSQL server `--postgres` uses when given no URL.
pub const DEFAULT_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// Target: successful TOTP second steps per second on SQLite.
const TARGET_SQLITE_RATE: f64 = 5000.0;
/// Target: successful TOTP second steps per second on PostgreSQL.
const TARGET_POSTGRES_RATE: f64 = 3000.0;
/// Target: p99 latency of a successful TOTP second step (set for SQLite).
const TARGET_P99: Duration = Duration::from_millis(25);
/// The TOTP parameters of every factor (what enrollment uses).
const TOTP: TotpParams = TotpParams::STANDARD;
/// The client address and user agent recorded on seeded challenges and direct calls.
const BENCH_IP: &str = "198.51.100.7";
const BENCH_AGENT: &str = "tessera-bench";

/// Second steps of sign-in: successful TOTP and backup-code steps per second, and latency.
#[derive(Debug, clap::Args)]
pub struct MfaArgs {
    /// Accounts to seed, each with a TOTP factor and an open challenge for the TOTP run.
    #[arg(long, default_value_t = 100_000)]
    users: usize,
    /// Accounts (the first ones) that also get 10 backup codes and a second challenge, for the
    /// backup-code run; defaults to every account.
    #[arg(long)]
    backup_users: Option<usize>,
    /// Requests in flight.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// OS threads of the load generator (each with its own runtime and HTTP client); the
    /// requests in flight are split between them.
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// Time limit of each run, in seconds (a run also ends when every challenge is used).
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// About this many rows per seeding transaction.
    #[arg(long, default_value_t = 4000)]
    seed_tx_rows: usize,
    /// Seeding transactions in flight; defaults to 1 on SQLite (one writer connection) and 8
    /// on PostgreSQL.
    #[arg(long)]
    seed_parallel: Option<usize>,
    /// Run on PostgreSQL instead of embedded SQLite: a fresh database is created on the server
    /// at this URL (default: the local server) and dropped after the run.
    #[arg(long, num_args = 0..=1, default_missing_value = DEFAULT_POSTGRES, value_name = "ADMIN_URL")]
    postgres: Option<String>,
    /// Worker threads of the server's runtime; defaults to one per core, like `tessera serve`.
    #[arg(long)]
    server_workers: Option<usize>,
    /// Experiment: start the server without its outbox worker (which each successful second
    /// step wakes, and which then looks for mail to send on the database).
    #[arg(long)]
    no_outbox_worker: bool,
    /// Skip the backup-code run.
    #[arg(long)]
    skip_backup: bool,
    /// Experiment: afterwards, the second step through `Services` without HTTP, then its store
    /// calls one by one with timings (needs fresh challenges: seeds `--breakdown-users` more
    /// per variant and moves the fixed clock to the next TOTP step).
    #[arg(long)]
    breakdown: bool,
    /// Challenges per `--breakdown` variant.
    #[arg(long, default_value_t = 20_000)]
    breakdown_users: usize,
    /// Experiment: afterwards, the database work of a TOTP second step (tessera-store's own
    /// SQL) through pools built here, changing one thing at a time: ping on acquire, SQLite
    /// page cache, number of reads, `Any` vs the native driver (see `store_model.rs`).
    #[arg(long)]
    store_model: bool,
    /// Challenges per `--store-model` variant.
    #[arg(long, default_value_t = 20_000)]
    model_users: usize,
}

/// Runs the MFA benchmark.
pub fn run(args: MfaArgs) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism()
        .map(usize::from)
        .context("cannot read available_parallelism")?;
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all().thread_name(SERVER_THREAD);
    if let Some(workers) = args.server_workers {
        builder.worker_threads(workers.max(1));
    }
    let server_rt = builder.build().context("cannot build the server runtime")?;
    let server_workers =
        procfs::named_threads(SERVER_THREAD, args.server_workers.unwrap_or(cores).max(1))?;

    println!("Tessera benchmark: MFA second steps (POST /api/v1/sessions/mfa)");
    println!(
        "machine: available_parallelism = {cores}; build: {}",
        if cfg!(debug_assertions) {
            "DEBUG (numbers are meaningless; use --release)"
        } else {
            "release"
        }
    );
    let database = match &args.postgres {
        Some(admin_url) => Some(server_rt.block_on(FreshDatabase::create(admin_url))?),
        None => None,
    };
    let outcome = run_on(&args, &server_rt, &server_workers, cores, database.as_ref());
    if let Some(database) = database {
        match server_rt.block_on(database.drop_it()) {
            Ok(()) => println!("dropped database {}", database.name),
            Err(error) => println!(
                "WARNING could not drop database {}: {error:#}",
                database.name
            ),
        }
    }
    outcome
}

/// A PostgreSQL database made for one run.
struct FreshDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl FreshDatabase {
    async fn create(admin_url: &str) -> anyhow::Result<Self> {
        use sqlx::Connection as _;
        let mut admin = sqlx::PgConnection::connect(admin_url)
            .await
            .with_context(|| format!("cannot connect to PostgreSQL at {admin_url}"))?;
        let name = format!("tessera_bench_{}", UserId::new().0.simple());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .with_context(|| format!("cannot create database {name}"))?;
        admin.close().await.ok();
        let url = with_database(admin_url, &name);
        Ok(Self {
            admin_url: admin_url.to_owned(),
            name,
            url,
        })
    }

    async fn drop_it(&self) -> anyhow::Result<()> {
        use sqlx::Connection as _;
        let mut admin = sqlx::PgConnection::connect(&self.admin_url).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )))
        .execute(&mut admin)
        .await?;
        admin.close().await.ok();
        Ok(())
    }
}

/// `url` with its database (path) replaced by `name`, the query string kept.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let root = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{root}/{name}?{query}"),
        None => format!("{root}/{name}"),
    }
}

/// Everything measured in one run over HTTP.
struct Run {
    samples: load::Samples,
    offered: usize,
    sent: usize,
    wall: Duration,
    cpu: CpuTicks,
    threads: BTreeMap<u32, ThreadStat>,
    postgres: Option<(u64, u64)>,
}

impl Run {
    fn ok(&self) -> Vec<Duration> {
        self.samples.latencies(201, Duration::MAX)
    }

    fn rate(&self) -> f64 {
        self.ok().len() as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    fn errors(&self) -> usize {
        self.samples.samples.len() - self.ok().len()
    }
}

#[expect(
    clippy::too_many_lines,
    reason = "one phase after the other, printed as it goes"
)]
fn run_on(
    args: &MfaArgs,
    server_rt: &tokio::runtime::Runtime,
    server_workers: &BTreeSet<u32>,
    cores: usize,
    database: Option<&FreshDatabase>,
) -> anyhow::Result<()> {
    let mut memory = vec![("start", procfs::memory()?)];
    let backup_users = args.backup_users.unwrap_or(args.users).min(args.users);
    let data = tempfile::tempdir().context("cannot create a temporary data directory")?;
    let settings = Settings {
        listen: "127.0.0.1:0".into(),
        data_dir: data.path().to_path_buf(),
        database_url: database.map(|d| d.url.clone()),
        client_rate_limit: 0,
        ..Settings::default()
    };
    let database_url = settings.database_url();
    // Whole seconds: the store keeps unix seconds.
    let now = from_unix_seconds(unix_seconds(SystemClock.now()));
    let clock = Arc::new(FixedClock::at(now));
    let server = server_rt.block_on(start(
        settings,
        clock.clone(),
        StartOptions {
            outbox_worker: !args.no_outbox_worker,
        },
    ))?;
    let base = format!("http://{}", server.addr);
    // The writer pool connects first, then the readers': the lowest-numbered SQLite worker
    // thread alive now is the writer connection's (sqlx names them all alike).
    let sqlite_writer = procfs::threads()?
        .into_iter()
        .filter(|(_, t)| t.name.starts_with("sqlx-sqlite"))
        .map(|(tid, _)| tid)
        .min();
    let backend = match database {
        Some(db) => format!("PostgreSQL database {} (created for this run)", db.name),
        None => format!("SQLite in {}", data.path().display()),
    };
    println!(
        "run: {} users with TOTP ({backup_users} with 10 backup codes) | {} in flight from {} client thread(s) | limit {} s per run | outbox worker {}",
        args.users,
        args.concurrency,
        args.client_threads.max(1),
        args.seconds,
        if args.no_outbox_worker {
            "OFF (experiment)"
        } else {
            "on"
        }
    );
    println!();
    println!(
        "[1] server on {} ({backend}, client_rate_limit = 0, {} runtime workers, FixedClock at {now})",
        server.addr,
        server_workers.len()
    );
    let (keys, _) = tessera_server::keys::load_or_generate(data.path())?;

    // 2. Seeding.
    println!();
    println!("[2] seeding through the store port (StoreTx), in transactions");
    let prepared = Instant::now();
    let phc = raw::Fixture::new(load::PASSWORD)?.phc().to_owned();
    let (users, accounts) = seed::prepare_accounts(
        args.users,
        backup_users,
        &keys.ring,
        &keys.pepper,
        &phc,
        now,
    )?;
    let ids: Vec<UserId> = users.iter().map(|u| u.id).collect();
    let (totp_tokens, totp_rows) = seed::prepare_challenges(&ids, now)?;
    let (backup_tokens, backup_rows) = seed::prepare_challenges(&ids[..backup_users], now)?;
    println!(
        "    prepared in memory in {:.1} s (random secrets, AES-GCM sealing, backup-code HMACs, tokens; one PHC string for all: {})",
        prepared.elapsed().as_secs_f64(),
        phc.split('$').take(4).collect::<Vec<_>>().join("$")
    );
    let store = server.state.services.store().clone();
    let parallel = args
        .seed_parallel
        .unwrap_or(if database.is_some() { 8 } else { 1 });
    let rows_per_account = 2 + if backup_users > 0 { 10 } else { 0 };
    let seeded = Instant::now();
    let report = server_rt.block_on(seed::seed(
        store.clone(),
        vec![accounts],
        now,
        args.seed_tx_rows / rows_per_account,
        parallel,
    ))?;
    report.print(&format!(
        "accounts, factors, backup codes ({} accounts per tx, {parallel} tx in flight)",
        (args.seed_tx_rows / rows_per_account).max(1)
    ));
    let report = server_rt.block_on(seed::seed(
        store.clone(),
        vec![totp_rows, backup_rows],
        now,
        args.seed_tx_rows,
        parallel,
    ))?;
    report.print(&format!(
        "challenges ({} per tx, {parallel} tx in flight)",
        args.seed_tx_rows.max(1)
    ));
    println!(
        "    seeding took {:.1} s in all",
        seeded.elapsed().as_secs_f64()
    );
    memory.push(("after seeding", procfs::memory()?));

    // 3. TOTP.
    let url = format!("{base}/api/v1/sessions/mfa");
    let step_at = now.unix_timestamp();
    let bodies = users
        .iter()
        .zip(&totp_tokens)
        .map(|(user, token)| totp_body(user, token, step_at))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let totp = drive(
        args,
        Work::new(url.clone(), bodies),
        server_workers,
        sqlite_writer,
        database,
    )?;
    memory.push(("after the TOTP run", procfs::memory()?));
    println!();
    println!(
        "[3] TOTP second steps over HTTP: {} challenges, {} in flight",
        totp.offered, args.concurrency
    );
    print_run(&totp, cores, database.is_some());

    // 4 and 5. Experiments (before the backup-code run: see there).
    if args.breakdown {
        breakdown(
            args,
            server_rt,
            &server.state.services,
            &clock,
            &keys.ring,
            &users,
        )?;
        memory.push(("after the breakdown", procfs::memory()?));
    }
    if args.store_model {
        println!();
        println!(
            "[5] EXPERIMENT: the store's SQL for one TOTP second step through pools built by the bench, one change at a time (no HTTP, no services; the server idles)"
        );
        crate::store_model::run(
            server_rt,
            &store,
            &database_url,
            database.map(|d| d.name.as_str()),
            &keys.ring,
            &users[..args.model_users.min(users.len())],
            // After every step the runs so far used.
            clock.now(),
            args.concurrency,
        )?;
        memory.push(("after the store model", procfs::memory()?));
    }

    // 6. Backup codes, last: each queues an email, and the outbox worker then drains them
    // through the same writer for minutes, which would disturb any later measurement. Their
    // challenges were opened at the seeding instant: put the clock back there (the
    // experiments moved it on; backup codes have no time step).
    clock.set(now);
    let backup = if args.skip_backup || backup_users == 0 {
        None
    } else {
        let bodies = users
            .iter()
            .zip(&backup_tokens)
            .filter_map(|(user, token)| {
                let code = user.backup_codes.first()?;
                Some(
                    json!({
                        "challenge_token": token.expose(),
                        "method": "backup_code",
                        "code": code.display(),
                    })
                    .to_string(),
                )
            })
            .collect();
        let run = drive(
            args,
            Work::new(url, bodies),
            server_workers,
            sqlite_writer,
            database,
        )?;
        memory.push(("after the backup-code run", procfs::memory()?));
        println!();
        println!(
            "[6] backup-code second steps over HTTP: {} challenges, {} in flight (each also queues an email)",
            run.offered, args.concurrency
        );
        print_run(&run, cores, database.is_some());
        Some(run)
    };

    server_rt.block_on(server.shutdown())?;

    println!();
    println!("[memory] of the process (VmRSS now / VmHWM peak so far)");
    for (label, Memory { rss_kib, hwm_kib }) in &memory {
        println!(
            "    {label:<32} RSS {:>7.1} MiB   HWM {:>7.1} MiB",
            *rss_kib as f64 / 1024.0,
            *hwm_kib as f64 / 1024.0
        );
    }

    // Verdicts.
    println!();
    println!("RESULT");
    let noisy: Vec<String> = [
        ("TOTP run", Some(&totp)),
        ("backup-code run", backup.as_ref()),
    ]
    .into_iter()
    .filter_map(|(label, run)| run.map(|run| (label, run.cpu.others_share())))
    .filter(|(_, share)| *share > NOISE_THRESHOLD)
    .map(|(label, share)| format!("{label} {:.0}%", share * 100.0))
    .collect();
    if !noisy.is_empty() {
        println!(
            "    WARNING  other processes{} + hypervisor steal took CPU during: {}; rerun on a quiet machine before trusting the verdicts",
            if database.is_some() {
                " (PostgreSQL included)"
            } else {
                ""
            },
            noisy.join(", ")
        );
    }
    let (target, backend) = match database {
        Some(_) => (TARGET_POSTGRES_RATE, "PostgreSQL"),
        None => (TARGET_SQLITE_RATE, "SQLite"),
    };
    println!(
        "    {}  TOTP second steps on {backend}: {:.0}/s (target ≥ {target:.0}/s)",
        verdict(totp.rate() >= target),
        totp.rate()
    );
    match Summary::of(totp.ok()) {
        Some(summary) if database.is_none() => println!(
            "    {}  TOTP p99 {} (p50 {}, max {}; target < {})",
            verdict(summary.p99 < TARGET_P99),
            Ms(summary.p99),
            Ms(summary.p50),
            Ms(summary.max),
            Ms(TARGET_P99)
        ),
        Some(summary) => println!(
            "    INFO  TOTP p99 {} (p50 {}, max {}; the {} target is set for SQLite)",
            Ms(summary.p99),
            Ms(summary.p50),
            Ms(summary.max),
            Ms(TARGET_P99)
        ),
        None => println!("    FAIL  TOTP: no successful second step"),
    }
    println!(
        "    {}  TOTP errors: {} of {} requests were not 201",
        verdict(totp.errors() == 0),
        totp.errors(),
        totp.samples.samples.len()
    );
    if totp.sent < totp.offered {
        println!(
            "    INFO  the {} s limit ended the TOTP run: {} of {} challenges used",
            args.seconds, totp.sent, totp.offered
        );
    }
    if let Some(backup) = &backup {
        let summary = Summary::of(backup.ok());
        println!(
            "    INFO  backup-code second steps: {:.0}/s, p50 {}, p99 {}, {} errors (no target of its own)",
            backup.rate(),
            summary.map_or_else(|| "n/a".to_owned(), |s| Ms(s.p50).to_string()),
            summary.map_or_else(|| "n/a".to_owned(), |s| Ms(s.p99).to_string()),
            backup.errors()
        );
    }
    Ok(())
}

fn totp_body(user: &SeededUser, token: &Token, at: i64) -> anyhow::Result<String> {
    let code = tessera_otp::totp_at(&user.secret, at, TOTP).context("no TOTP code at this time")?;
    Ok(json!({
        "challenge_token": token.expose(),
        "method": "totp",
        "code": code,
    })
    .to_string())
}

/// One run over HTTP: every body of `work` once, or until the time limit.
fn drive(
    args: &MfaArgs,
    work: Work,
    server_workers: &BTreeSet<u32>,
    sqlite_writer: Option<u32>,
    database: Option<&FreshDatabase>,
) -> anyhow::Result<Run> {
    let postgres_now = || procfs::processes(is_postgres);
    let postgres_before = database.map(|_| postgres_now());
    let threads_before = procfs::threads()?;
    let cpu = CpuTicks::now()?;
    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.seconds);
    let (samples, clients) = load::spawn_post_each(
        &work,
        args.client_threads,
        args.concurrency,
        start,
        deadline,
    )?;
    let wall = samples
        .samples
        .iter()
        .map(|s| s.done_at)
        .max()
        .unwrap_or_else(|| start.elapsed());
    let cpu = CpuTicks::now()?.since(&cpu);
    let threads = procfs::delta(&threads_before, &procfs::threads()?);
    let postgres = database.zip(postgres_before).map(|(db, before)| {
        let used = procfs::process_delta(&before, &postgres_now());
        let ours: u64 = used
            .values()
            .filter(|(cmdline, _)| cmdline.contains(&db.name))
            .map(|(_, ticks)| ticks)
            .sum();
        let all: u64 = used.values().map(|(_, ticks)| ticks).sum();
        (ours, all - ours)
    });
    let mut threads = threads;
    // The client threads have exited: they reported themselves (ids above any real one).
    for (i, mut stat) in clients.into_iter().enumerate() {
        stat.name = CLIENT_THREAD.to_owned();
        threads.insert(u32::MAX - u32::try_from(i).unwrap_or(0), stat);
    }
    // Tag the thread groups by name here, so `print_run` needs only the map.
    for (tid, stat) in &mut threads {
        stat.name = if server_workers.contains(tid) {
            WORKERS.to_owned()
        } else if Some(*tid) == sqlite_writer {
            SQLITE_WRITER.to_owned()
        } else if stat.name.starts_with("sqlx-sqlite") {
            SQLITE_READERS.to_owned()
        } else if stat.name.starts_with(GROUP_COMMIT_THREAD) {
            SQLITE_GROUP_COMMIT.to_owned()
        } else if stat.name == SERVER_THREAD {
            SERVER_OTHER.to_owned()
        } else if stat.name.starts_with(CLIENT_THREAD) {
            CLIENT.to_owned()
        } else {
            OTHER.to_owned()
        };
    }
    Ok(Run {
        sent: work.taken(),
        offered: work.bodies.len(),
        samples,
        wall,
        cpu,
        threads,
        postgres,
    })
}

const WORKERS: &str = "server async workers";
const SQLITE_WRITER: &str = "server SQLite writer conn.";
const SQLITE_READERS: &str = "server SQLite reader conns.";
const SQLITE_GROUP_COMMIT: &str = "server SQLite group commit";
/// The store's group-commit thread (`tessera-sqlite-commit`) as `/proc` shows it: thread
/// names are cut to 15 bytes.
const GROUP_COMMIT_THREAD: &str = "tessera-sqlite-";
const SERVER_OTHER: &str = "server runtime, blocking";
const CLIENT: &str = "client (load generator)";
const OTHER: &str = "other threads of this process";
/// The thread groups that make up the server.
const SERVER_GROUPS: [&str; 5] = [
    WORKERS,
    SQLITE_WRITER,
    SQLITE_READERS,
    SQLITE_GROUP_COMMIT,
    SERVER_OTHER,
];

/// Whether a command line is the PostgreSQL server's (postmaster, backends, helpers).
fn is_postgres(cmdline: &str) -> bool {
    cmdline.starts_with("postgres:") || cmdline.contains("bin/postgres ")
}

fn print_run(run: &Run, cores: usize, postgres: bool) {
    print_statuses("    statuses", &run.samples);
    let ok = run.ok();
    println!(
        "    used {} of {} challenges; last response after {:.2} s",
        run.sent,
        run.offered,
        run.wall.as_secs_f64()
    );
    println!(
        "    throughput {:.1} successful second steps/s (201s / time to the last response)",
        run.rate()
    );
    print_summary("    201 latency", Summary::of(ok.clone()));
    if run.errors() > 0 {
        println!("    ERRORS: {} requests were not 201", run.errors());
    }
    println!("    machine CPU: {}", run.cpu.describe());
    // Clock ticks → share of the machine's CPU time over the run.
    let ticks_total = (run.cpu.busy + run.cpu.idle + run.cpu.steal).max(1) as f64;
    if let Some((ours, other)) = run.postgres {
        println!(
            "    PostgreSQL: backends of this database {:.0}% of the machine, its other processes (WAL writer, checkpointer, other databases) {:.0}%; other processes outside PostgreSQL {:.0}%",
            ours as f64 / ticks_total * 100.0,
            other as f64 / ticks_total * 100.0,
            (run.cpu.others_only_share() - (ours + other) as f64 / ticks_total).max(0.0) * 100.0
        );
    }
    let groups: BTreeMap<&str, Group> =
        group_by(&run.threads, |_, stat| match stat.name.as_str() {
            WORKERS => WORKERS,
            SQLITE_WRITER => SQLITE_WRITER,
            SQLITE_READERS => SQLITE_READERS,
            SQLITE_GROUP_COMMIT => SQLITE_GROUP_COMMIT,
            SERVER_OTHER => SERVER_OTHER,
            CLIENT => CLIENT,
            _ => OTHER,
        });
    print_groups(&groups, run.wall, &format!("{cores} cores = {cores}00%"));
    // CPU per successful second step, per group (µs).
    let per = |ns: u64| ns as f64 / 1e3 / ok.len().max(1) as f64;
    let run_ns = |name: &str| groups.get(name).map_or(0, |g| g.run_ns);
    let server_ns: u64 = SERVER_GROUPS.iter().map(|name| run_ns(name)).sum();
    let mut parts = vec![
        format!(
            "server {:.0} µs (async workers {:.0}, SQLite group commit {:.0}, SQLite writer {:.0}, SQLite readers {:.0})",
            per(server_ns),
            per(run_ns(WORKERS)),
            per(run_ns(SQLITE_GROUP_COMMIT)),
            per(run_ns(SQLITE_WRITER)),
            per(run_ns(SQLITE_READERS))
        ),
        format!("client {:.0} µs", per(run_ns(CLIENT))),
    ];
    if let Some((ours, _)) = run.postgres {
        // Clock ticks are 10 ms (USER_HZ = 100 on Linux).
        parts.push(format!(
            "PostgreSQL backends {:.0} µs",
            per(ours.saturating_mul(10_000_000))
        ));
    }
    println!("    CPU per successful second step: {}", parts.join(", "));
    let slices = |name: &str| groups.get(name).map_or(0, |g| g.slices);
    let per_step = |n: u64| n as f64 / ok.len().max(1) as f64;
    let server_slices: u64 = SERVER_GROUPS.iter().map(|name| slices(name)).sum();
    println!(
        "    times a thread was scheduled in, per successful second step: server {:.1} (async workers {:.1}, SQLite group commit {:.1}, SQLite writer {:.1}, SQLite readers {:.1}), client {:.1}",
        per_step(server_slices),
        per_step(slices(WORKERS)),
        per_step(slices(SQLITE_GROUP_COMMIT)),
        per_step(slices(SQLITE_WRITER)),
        per_step(slices(SQLITE_READERS)),
        per_step(slices(CLIENT))
    );
    // The SQLite threads that every write goes through: at 100% of a core, each is a ceiling.
    let ceilings = [
        (
            SQLITE_GROUP_COMMIT,
            "SQLite group-commit thread",
            "it writes every TOTP second step",
        ),
        (
            SQLITE_WRITER,
            "SQLite writer connection's thread",
            "one writer",
        ),
    ];
    for (group, name, why) in ceilings {
        if let Some(thread) = groups.get(group).filter(|_| !postgres) {
            println!(
                "    the {name} was on a CPU {:.0}% of the run and runnable-but-waiting {:.0}% ({why}: at 100% it is the ceiling)",
                thread.run_ns as f64 / run.wall.as_nanos().max(1) as f64 * 100.0,
                thread.wait_ns as f64 / run.wall.as_nanos().max(1) as f64 * 100.0
            );
        }
    }
}

/// Timings of the store calls of one second step, by call.
#[derive(Debug, Default)]
struct CallTimes {
    calls: BTreeMap<&'static str, Vec<Duration>>,
}

impl CallTimes {
    fn add(&mut self, call: &'static str, took: Duration) {
        self.calls.entry(call).or_default().push(took);
    }

    fn merge(&mut self, other: CallTimes) {
        for (call, times) in other.calls {
            self.calls.entry(call).or_default().extend(times);
        }
    }
}

/// The order of the calls in a second step (for printing).
const CALL_ORDER: [&str; 13] = [
    "challenge_by_token_hash (reader)",
    "second_factor_throttle (reader)",
    "user_by_id (reader)",
    "factors_of (reader)",
    "open secret + verify_totp (CPU)",
    "begin (waits for the writer)",
    "clear_second_factor_failures",
    "advance_totp_step",
    "complete_challenge",
    "insert_session",
    "insert_event",
    "commit",
    "transaction: begin → commit done",
];

/// `--breakdown`: the second step without HTTP, through `Services` and as bare store calls.
fn breakdown(
    args: &MfaArgs,
    server_rt: &tokio::runtime::Runtime,
    services: &Services,
    clock: &Arc<FixedClock>,
    ring: &KeyRing,
    users: &[SeededUser],
) -> anyhow::Result<()> {
    let count = args.breakdown_users.min(users.len());
    let users = &users[..count];
    let ids: Vec<UserId> = users.iter().map(|u| u.id).collect();
    let store = services.store().clone();
    let variants: [(&str, usize); 3] = [
        ("Services::complete_second_step, no HTTP", args.concurrency),
        ("the same store calls, each timed", args.concurrency),
        ("the same store calls, one second step at a time", 1),
    ];
    for (index, (label, concurrency)) in variants.into_iter().enumerate() {
        // A fresh time step (every factor accepted the previous one) and fresh challenges.
        clock.advance(time::Duration::seconds(30));
        let now = clock.now();
        let (tokens, rows) = seed::prepare_challenges(&ids, now)?;
        server_rt.block_on(seed::seed(store.clone(), vec![rows], now, 4000, 1))?;
        let codes: Vec<String> = users
            .iter()
            .map(|u| tessera_otp::totp_at(&u.secret, now.unix_timestamp(), TOTP))
            .collect::<Option<_>>()
            .context("no TOTP code at this time")?;
        let jobs = Arc::new(
            users
                .iter()
                .zip(tokens)
                .zip(codes)
                .map(|((user, token), code)| (user.id, token, code))
                .collect::<Vec<_>>(),
        );
        let next = Arc::new(AtomicUsize::new(0));
        let cpu = CpuTicks::now()?;
        let started = Instant::now();
        let (latencies, failures, times) = server_rt.block_on(async {
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..concurrency.max(1) {
                let (jobs, next, services, ring) =
                    (jobs.clone(), next.clone(), services.clone(), ring.clone());
                tasks.spawn(async move {
                    let mut latencies = Vec::new();
                    let mut failures = 0_u64;
                    let mut times = CallTimes::default();
                    while let Some((user_id, token, code)) =
                        jobs.get(next.fetch_add(1, Ordering::Relaxed))
                    {
                        let at = Instant::now();
                        let ok = if index == 0 {
                            services
                                .complete_second_step(
                                    token.expose(),
                                    SecondFactorProof::Totp {
                                        factor_id: None,
                                        code,
                                    },
                                    ClientInfo {
                                        ip: Some(BENCH_IP.into()),
                                        user_agent: Some(BENCH_AGENT.into()),
                                    },
                                )
                                .await
                                .is_ok()
                        } else {
                            store_second_step(
                                services.store().as_ref(),
                                &ring,
                                *user_id,
                                token,
                                code,
                                services.clock().now(),
                                &mut times,
                            )
                            .await
                            .unwrap_or(false)
                        };
                        if ok {
                            latencies.push(at.elapsed());
                        } else {
                            failures += 1;
                        }
                    }
                    (latencies, failures, times)
                });
            }
            let mut all = (Vec::new(), 0_u64, CallTimes::default());
            while let Some(joined) = tasks.join_next().await {
                let (latencies, failures, times) = joined.context("breakdown task failed")?;
                all.0.extend(latencies);
                all.1 += failures;
                all.2.merge(times);
            }
            anyhow::Ok(all)
        })?;
        let wall = started.elapsed();
        let cpu = CpuTicks::now()?.since(&cpu);
        println!();
        println!(
            "[4{}] EXPERIMENT: {label}, {concurrency} in flight, {count} fresh challenges (clock moved to the next TOTP step)",
            ["a", "b", "c"].get(index).copied().unwrap_or("?")
        );
        println!(
            "    {:.1} successful second steps/s, {failures} failures, in {:.2} s",
            latencies.len() as f64 / wall.as_secs_f64().max(1e-9),
            wall.as_secs_f64()
        );
        print_summary("    latency", Summary::of(latencies));
        println!("    machine CPU: {}", cpu.describe());
        if !times.calls.is_empty() {
            println!(
                "    {:<36} {:>9} {:>9} {:>9}",
                "store call", "mean", "p50", "p99"
            );
            for call in CALL_ORDER {
                let Some(summary) = times.calls.get(call).cloned().and_then(Summary::of) else {
                    continue;
                };
                println!(
                    "    {call:<36} {:>6.0} µs {:>6.0} µs {:>6.0} µs",
                    summary.mean.as_secs_f64() * 1e6,
                    summary.p50.as_secs_f64() * 1e6,
                    summary.p99.as_secs_f64() * 1e6
                );
            }
            if let Some(held) = times
                .calls
                .get("transaction: begin → commit done")
                .cloned()
                .and_then(Summary::of)
            {
                println!(
                    "    one writer connection (SQLite) serialises transactions: a mean hold of {:.0} µs caps it at {:.0} second steps/s",
                    held.mean.as_secs_f64() * 1e6,
                    1.0 / held.mean.as_secs_f64().max(1e-9)
                );
            }
        }
    }
    Ok(())
}

/// The store calls of `Services::complete_second_step` for a right TOTP code, in the same
/// order and with the same rows, each timed. Returns whether it succeeded.
async fn store_second_step(
    store: &dyn Store,
    ring: &KeyRing,
    user_id: UserId,
    token: &Token,
    code: &str,
    now: OffsetDateTime,
    times: &mut CallTimes,
) -> anyhow::Result<bool> {
    macro_rules! timed {
        ($name:expr, $call:expr) => {{
            let at = Instant::now();
            let out = $call;
            times.add($name, at.elapsed());
            out
        }};
    }
    let fail = |error: tessera_core::store::StoreError| anyhow::anyhow!("{error}");
    let Some(challenge) = timed!(
        CALL_ORDER[0],
        store.challenge_by_token_hash(&token.hash()).await
    )
    .map_err(fail)?
    .filter(|c| c.is_open(now)) else {
        return Ok(false);
    };
    let throttle = timed!(
        CALL_ORDER[1],
        store.second_factor_throttle(challenge.user_id).await
    )
    .map_err(fail)?;
    if throttle.retry_after(now).is_some() {
        return Ok(false);
    }
    let Some(user) = timed!(CALL_ORDER[2], store.user_by_id(user_id).await).map_err(fail)? else {
        return Ok(false);
    };
    let factors = timed!(CALL_ORDER[3], store.factors_of(user.id).await).map_err(fail)?;
    let matched = timed!(CALL_ORDER[4], {
        let code = OtpCode::parse(code, TOTP.digits).map_err(|e| anyhow::anyhow!("{e}"))?;
        factors
            .iter()
            .filter(|f| f.kind == FactorKind::Totp)
            .find_map(|factor| {
                let secret = ring
                    .open(
                        factor.secret_sealed.as_deref()?,
                        &totp_secret_aad(user.id, factor.id),
                    )
                    .ok()?;
                tessera_otp::verify_totp(&secret, &code, now.unix_timestamp(), TOTP)
                    .map(|step| (factor.id, step))
            })
    });
    let Some((factor_id, step)) = matched else {
        return Ok(false);
    };
    let held = Instant::now();
    let mut tx = timed!(CALL_ORDER[5], store.begin().await).map_err(fail)?;
    timed!(
        CALL_ORDER[6],
        tx.clear_second_factor_failures(user.id).await
    )
    .map_err(fail)?;
    if !timed!(
        CALL_ORDER[7],
        tx.advance_totp_step(factor_id, step, now).await
    )
    .map_err(fail)?
    {
        return Ok(false);
    }
    if !timed!(
        CALL_ORDER[8],
        tx.complete_challenge(challenge.id, now).await
    )
    .map_err(fail)?
    {
        return Ok(false);
    }
    let session_token = Token::generate().map_err(|e| anyhow::anyhow!("{e}"))?;
    let session = Session {
        id: SessionId::new(),
        user_id: user.id,
        token_hash: session_token.hash(),
        state: SessionState::Full,
        amr: MfaMethod::Totp.amr_with_password(),
        created_at: now,
        last_seen_at: now,
        expires_at: now + time::Duration::days(30),
        reauth_until: Some(challenge.created_at + time::Duration::minutes(10)),
        ip: Some(BENCH_IP.into()),
        user_agent: Some(BENCH_AGENT.into()),
        mfa_method: Some(MfaMethod::Totp),
    };
    timed!(CALL_ORDER[9], tx.insert_session(&session).await).map_err(fail)?;
    let event = NewEvent {
        user_id: user.id,
        kind: EventKind::SigninSucceeded,
        at: now,
        client: ClientInfo {
            ip: Some(BENCH_IP.into()),
            user_agent: Some(BENCH_AGENT.into()),
        },
        actor_id: None,
        details: json!({
            "session_id": session.id.to_string(),
            "amr": session.amr,
            "method": "totp",
        }),
    };
    timed!(CALL_ORDER[10], tx.insert_event(&event).await).map_err(fail)?;
    timed!(CALL_ORDER[11], tx.commit().await).map_err(fail)?;
    times.add(CALL_ORDER[12], held.elapsed());
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_replace_the_path() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "b"),
            "postgres://postgres@127.0.0.1:5432/b"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "b"),
            "postgres://u:p@h/b?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "b"), "postgres://h/b");
    }
}
