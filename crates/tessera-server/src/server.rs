//! Starting and stopping the server: data directory, keys, database, migrations, background
//! workers, the listener, and graceful shutdown (in-flight requests finish).

use crate::app;
use crate::config::{Settings, SignupMode};
use crate::keys;
use crate::metrics::Metrics;
use crate::ratelimit::ClientRateLimiter;
use crate::state::AppState;
use anyhow::Context;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration as StdDuration;
use tessera_core::clock::Clock;
use tessera_core::password::PasswordHasher;
use tessera_core::service::{MfaSettings, ServiceSettings, Services, Signup};
use tessera_core::session::SessionPolicy;
use tessera_store::SqlStore;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

/// Requests allowed to wait for a password-hashing slot before new ones are shed.
pub const HASH_QUEUE_DEPTH: usize = 512;

/// Opens the data directory and the database, and runs the migrations.
pub async fn open_store(settings: &Settings) -> anyhow::Result<SqlStore> {
    if !settings.data_dir.exists() {
        use std::os::unix::fs::DirBuilderExt as _;
        // The database holds password hashes and the keys sit beside it: owner only.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&settings.data_dir)
            .with_context(|| {
                format!(
                    "cannot create the data directory {}",
                    settings.data_dir.display()
                )
            })?;
    }
    let store = SqlStore::connect(&settings.database_url())
        .await
        .with_context(|| {
            format!(
                "cannot open the database {}",
                settings.database_url_for_logs()
            )
        })?;
    store
        .migrate()
        .await
        .context("cannot run the database migrations")?;
    Ok(store)
}

/// Wires the services on an open store. Refuses keys other than those the database was set up
/// with (another instance's data directory, a restore without `keys/`): fail closed.
pub async fn services(
    settings: &Settings,
    store: SqlStore,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Services> {
    use tessera_core::store::Store as _;
    let (keys, generated) = keys::load_or_generate(&settings.data_dir)?;
    if generated {
        tracing::info!(dir = %settings.data_dir.join("keys").display(), "generated new instance keys");
    }
    let matches = store
        .ensure_key_check(&keys.pepper.check_value(), clock.now())
        .await
        .context("cannot check the instance keys")?;
    if !matches {
        anyhow::bail!(
            "the keys in {} are not the keys this database was set up with; give every instance the same keys/ directory (copy it from the first instance, or restore it from backup)",
            settings.data_dir.join("keys").display()
        );
    }
    let workers = std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(2);
    let service_settings = ServiceSettings {
        signup: match settings.signup {
            SignupMode::Open => Signup::Open,
            SignupMode::Closed => Signup::Closed,
        },
        sessions: SessionPolicy {
            lifetime: time::Duration::minutes(i64::from(settings.session_lifetime_minutes)),
            idle_timeout: time::Duration::minutes(i64::from(settings.session_idle_timeout_minutes)),
        },
        mfa: MfaSettings {
            allow_disable: settings.mfa.allow_disable,
            allowed_methods: settings.mfa.allowed_methods,
            required: settings.mfa.required,
            grace_period_hours: settings.mfa.grace_period_hours,
        },
    };
    Ok(Services::new(
        Arc::new(store),
        clock,
        PasswordHasher::new(workers, HASH_QUEUE_DEPTH),
        keys.pepper,
        keys.ring,
        service_settings,
    )
    .with_key_source(Arc::new(keys::KeysDirectory::new(&settings.data_dir))))
}

/// A running server.
pub struct RunningServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its shared state (tests reach the services through it).
    pub state: AppState,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    http: JoinHandle<std::io::Result<()>>,
}

impl std::fmt::Debug for RunningServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl RunningServer {
    /// Stops accepting, lets in-flight requests finish, stops the workers.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        self.http
            .await
            .context("server task failed")?
            .context("server error")?;
        for task in self.tasks {
            let _ = task.await;
        }
        Ok(())
    }

    /// Waits until the server stops by itself (it does not, unless it fails).
    pub async fn wait(&mut self) -> anyhow::Result<()> {
        (&mut self.http)
            .await
            .context("server task failed")?
            .context("server error")
    }
}

/// Options of [`start`].
#[derive(Debug, Clone, Copy)]
pub struct StartOptions {
    /// Run the outbox worker (tests turn it off to simulate a crash before delivery).
    pub outbox_worker: bool,
}

impl Default for StartOptions {
    fn default() -> Self {
        Self {
            outbox_worker: true,
        }
    }
}

/// Starts the server described by `settings` with `clock`.
pub async fn start(
    settings: Settings,
    clock: Arc<dyn Clock>,
    options: StartOptions,
) -> anyhow::Result<RunningServer> {
    let addr = settings.listen_addr()?;
    let store = open_store(&settings).await?;
    let services = services(&settings, store, clock).await?;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let addr = listener.local_addr()?;

    let mut state = AppState {
        services,
        client_limiter: ClientRateLimiter::new(settings.client_rate_limit).map(Arc::new),
        settings: Arc::new(settings),
        metrics: Arc::new(Metrics::default()),
        outbox_wake: Arc::new(Notify::new()),
        openapi_json: Arc::new(String::new()),
    };
    state.openapi_json = Arc::new(app::openapi_json(&state));

    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut tasks = vec![tokio::spawn(housekeeping(
        state.clone(),
        shutdown_rx.clone(),
    ))];
    if options.outbox_worker {
        tasks.push(crate::notify::spawn_outbox_worker(
            &state,
            shutdown_rx.clone(),
        )?);
    }

    let router = app::router(state.clone());
    let mut stop = shutdown_rx;
    let http = tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|stop| *stop).await;
        })
        .await
    });
    Ok(RunningServer {
        addr,
        state,
        shutdown,
        tasks,
        http,
    })
}

/// Periodic work: reports of unfinished sign-ins (every minute), expired sessions, idle
/// rate-limiter keys.
async fn housekeeping(state: AppState, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(StdDuration::from_secs(60));
    let mut minutes: u64 = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        if let Some(limiter) = &state.client_limiter {
            limiter.forget_idle();
        }
        if let Err(error) = state.services.reload_keys() {
            tracing::warn!(%error, "could not read the key ring again; keeping the one in memory");
        }
        match state.services.report_unfinished_signins().await {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(emails = n, "reported unfinished sign-ins");
                state.outbox_wake.notify_one();
            }
            Err(error) => tracing::warn!(%error, "could not report unfinished sign-ins"),
        }
        if minutes.is_multiple_of(10) {
            match state.services.delete_expired_sessions().await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(sessions = n, "deleted expired sessions"),
                Err(error) => tracing::warn!(%error, "could not delete expired sessions"),
            }
        }
        minutes += 1;
    }
}
