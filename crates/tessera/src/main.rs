//! `tessera`: run the server and administer it.

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use secrecy::SecretString;
use std::io::{BufRead as _, IsTerminal as _};
use std::path::PathBuf;
use std::sync::Arc;
use tessera_core::clock::SystemClock;
use tessera_core::event::ClientInfo;
use tessera_core::service::NewAccount;
use tessera_server::config::{LogFormat, Overrides, Settings};
use tessera_server::server;

/// Tessera: accounts, sign-in and multi-factor authentication, self-hosted.
#[derive(Debug, Parser)]
#[command(name = "tessera", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    command: Command,
}

/// Settings every command shares; each also reads `TESSERA_*` and the TOML file.
#[derive(Debug, Args)]
struct CommonArgs {
    /// TOML configuration file
    #[arg(long, global = true, env = "TESSERA_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory: SQLite database, generated keys, dev outbox [env: TESSERA_DATA_DIR] [default: ./tessera-data]
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Database URL (sqlite://… or postgres://…) [env: TESSERA_DATABASE_URL] [default: sqlite://<data dir>/tessera.db]
    #[arg(long, global = true)]
    database_url: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Run the database migrations and exit.
    Migrate,
    /// Administer accounts.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Manage the instance keys.
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on [env: TESSERA_LISTEN] [default: 127.0.0.1:8080]
    #[arg(long)]
    listen: Option<String>,
    /// The URL users reach this server at [env: TESSERA_PUBLIC_URL] [default: http://localhost:8080]
    #[arg(long)]
    public_url: Option<String>,
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Create an account (whatever the sign-up setting).
    CreateUser {
        /// The account's email address.
        #[arg(long)]
        email: String,
        /// The display name.
        #[arg(long)]
        name: Option<String>,
        /// Read the password from the first line of standard input instead of prompting.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List the accounts.
    ListUsers,
    /// Remove every MFA factor and backup code of an account (a user who lost everything);
    /// records the event and emails the user. With `--link`, nothing is removed at once: the
    /// user is emailed a single-use link (72 hours) to set up a new factor with their password.
    ResetMfa {
        /// The account's email address.
        #[arg(long)]
        email: String,
        /// Email a reset link instead of removing the factors now.
        #[arg(long)]
        link: bool,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Add a new AES-256-GCM key, make it primary, and re-seal every stored secret under it;
    /// older keys stay in the ring and keep opening what they sealed.
    Rotate,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn load_settings(common: &CommonArgs, serve: Option<&ServeArgs>) -> anyhow::Result<Settings> {
    let overrides = Overrides {
        listen: serve.and_then(|s| s.listen.clone()),
        data_dir: common.data_dir.clone(),
        database_url: common.database_url.clone(),
        public_url: serve.and_then(|s| s.public_url.clone()),
    };
    Settings::load(common.config.as_deref(), &overrides)
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TESSERA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Serve(args) => {
            let settings = load_settings(&cli.common, Some(args))?;
            init_logging(settings.log_format);
            serve(settings).await
        }
        Command::Migrate => {
            let settings = load_settings(&cli.common, None)?;
            server::open_store(&settings).await?;
            println!("migrations applied to {}", settings.database_url_for_logs());
            Ok(())
        }
        Command::Admin(AdminCommand::CreateUser {
            email,
            name,
            password_stdin,
        }) => {
            let settings = load_settings(&cli.common, None)?;
            let password = read_password(*password_stdin)?;
            let store = server::open_store(&settings).await?;
            let services = server::services(&settings, store, Arc::new(SystemClock)).await?;
            let account = NewAccount {
                email: email.clone(),
                password,
                display_name: name.clone(),
            };
            let user = services
                .create_account(
                    account,
                    ClientInfo::new(None, Some("tessera admin create-user")),
                )
                .await?;
            println!("created {} ({})", user.email, user.id);
            Ok(())
        }
        Command::Admin(AdminCommand::ListUsers) => {
            let settings = load_settings(&cli.common, None)?;
            let store = server::open_store(&settings).await?;
            let services = server::services(&settings, store, Arc::new(SystemClock)).await?;
            let users = services.list_users().await?;
            println!("{:<36}  {:<20}  {:<32}  NAME", "ID", "CREATED", "EMAIL");
            let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]");
            for user in &users {
                println!(
                    "{:<36}  {:<20}  {:<32}  {}",
                    user.id,
                    user.created_at.format(&format).unwrap_or_default(),
                    user.email,
                    user.display_name
                );
            }
            println!("{} account(s)", users.len());
            Ok(())
        }
        Command::Admin(AdminCommand::ResetMfa { email, link: true }) => {
            let settings = load_settings(&cli.common, None)?;
            let store = server::open_store(&settings).await?;
            let services = server::services(&settings, store, Arc::new(SystemClock)).await?;
            let expires_at = services
                .request_operator_mfa_reset(email)
                .await
                .map_err(|error| match error {
                    tessera_core::Error::NotFound => {
                        anyhow::anyhow!("no account with the email {email}")
                    }
                    other => anyhow::anyhow!(other),
                })?;
            println!(
                "emailed {email} a link to reset MFA (valid until {expires_at}); nothing changes until they use it"
            );
            Ok(())
        }
        Command::Admin(AdminCommand::ResetMfa { email, link: false }) => {
            let settings = load_settings(&cli.common, None)?;
            let store = server::open_store(&settings).await?;
            let services = server::services(&settings, store, Arc::new(SystemClock)).await?;
            let reset = services
                .operator_reset_mfa(email)
                .await
                .map_err(|error| match error {
                    tessera_core::Error::NotFound => {
                        anyhow::anyhow!("no account with the email {email}")
                    }
                    other => anyhow::anyhow!(other),
                })?;
            // The email is in the outbox; a running server delivers it (the outbox is shared).
            println!(
                "reset MFA of {email}: removed {} factor(s) and {} backup code(s); the user was emailed",
                reset.factors, reset.backup_codes
            );
            Ok(())
        }
        Command::Keys(KeysCommand::Rotate) => {
            let settings = load_settings(&cli.common, None)?;
            let id = tessera_server::keys::rotate(&settings.data_dir)?;
            println!("key {id} is now the primary sealing key; re-sealing stored secrets under it");
            let store = server::open_store(&settings).await?;
            let services = server::services(&settings, store, Arc::new(SystemClock)).await?;
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} secrets re-sealed ({eta} left)",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            let resealed = services
                .reseal_secrets(|done, total| {
                    bar.set_length(total);
                    bar.set_position(done);
                })
                .await
                .context("re-sealing stopped; run `tessera keys rotate` again after fixing the cause (old keys are kept)")?;
            bar.finish();
            println!(
                "re-sealed {resealed} secret(s) under key {id}; older keys remain in the ring"
            );
            Ok(())
        }
    }
}

fn read_password(from_stdin: bool) -> anyhow::Result<SecretString> {
    let password = if from_stdin || !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    } else {
        let first = rpassword::prompt_password("Password: ").context("cannot read the password")?;
        let again =
            rpassword::prompt_password("Password (again): ").context("cannot read the password")?;
        if first != again {
            bail!("the passwords do not match");
        }
        first
    };
    if password.is_empty() {
        bail!("the password is empty");
    }
    Ok(SecretString::from(password))
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let data_dir =
        std::fs::canonicalize(&settings.data_dir).unwrap_or_else(|_| settings.data_dir.clone());
    let database = settings.database_url_for_logs();
    let public_url = settings.public_url.clone();
    let mut running = server::start(
        settings,
        Arc::new(SystemClock),
        server::StartOptions::default(),
    )
    .await?;
    tracing::info!(
        listen = %running.addr,
        public_url = %public_url,
        data_dir = %data_dir.display(),
        database = %database,
        "Tessera is listening on http://{} (data in {})",
        running.addr,
        data_dir.display()
    );
    tokio::select! {
        result = running.wait() => return result,
        () = shutdown_signal() => {}
    }
    tracing::info!("shutting down: finishing in-flight requests");
    running.shutdown().await?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn admin_commands_take_the_shared_settings() {
        let cli = Cli::try_parse_from([
            "tessera",
            "admin",
            "create-user",
            "--email",
            "a@example.com",
            "--data-dir",
            "/tmp/x",
            "--password-stdin",
        ])
        .unwrap();
        assert_eq!(cli.common.data_dir, Some(PathBuf::from("/tmp/x")));
        assert!(matches!(
            cli.command,
            Command::Admin(AdminCommand::CreateUser {
                password_stdin: true,
                ..
            })
        ));
        let cli = Cli::try_parse_from([
            "tessera",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            "postgres://h/db",
        ])
        .unwrap();
        assert_eq!(cli.common.database_url.as_deref(), Some("postgres://h/db"));
    }

    const PASSWORD: &str = "glacier-otter-lantern-97";

    fn cli(args: &[&str], dir: &std::path::Path) -> Cli {
        let mut all: Vec<String> = std::iter::once("tessera")
            .chain(args.iter().copied())
            .map(str::to_owned)
            .collect();
        all.extend(["--data-dir".to_owned(), dir.display().to_string()]);
        Cli::try_parse_from(all).unwrap()
    }

    /// `keys rotate` re-seals every secret (factors and unfinished enrollments) under the new
    /// key and the codes still work; `admin reset-mfa` removes factors and backup codes,
    /// records the event and queues the email; `--link` only queues a reset link.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keys_rotate_reseals_secrets_and_reset_mfa_removes_everything() {
        use tessera_core::clock::Clock as _;
        use tessera_core::service::{PasswordOutcome, SecondFactorProof};
        use tessera_core::store::Store as _;
        use tessera_otp::TotpParams;

        let dir = tempfile::tempdir().unwrap();
        let settings = Settings {
            data_dir: dir.path().to_path_buf(),
            ..Settings::default()
        };
        let store = server::open_store(&settings).await.unwrap();
        let services = server::services(&settings, store.clone(), Arc::new(SystemClock))
            .await
            .unwrap();
        let account = NewAccount {
            email: "ann@example.com".into(),
            password: PASSWORD.into(),
            display_name: None,
        };
        let user = services
            .create_account(account, ClientInfo::default())
            .await
            .unwrap();
        let PasswordOutcome::SignedIn(signed_in) = services
            .sign_in_with_password("ann@example.com", PASSWORD, ClientInfo::default(), None)
            .await
            .unwrap()
        else {
            panic!("no MFA yet");
        };
        let auth = services
            .authenticate(signed_in.token.expose())
            .await
            .unwrap()
            .full()
            .unwrap();
        let started = services.start_totp_enrollment(&auth).await.unwrap();
        let secret = tessera_otp::decode_secret(&started.secret_base32).unwrap();
        let now = SystemClock.now().unix_timestamp();
        let code = tessera_otp::totp_at(&secret, now, TotpParams::STANDARD).unwrap();
        services
            .confirm_totp_enrollment(
                &auth,
                &started.enrollment.id.to_string(),
                &code,
                None,
                None,
                ClientInfo::default(),
            )
            .await
            .unwrap();
        services.start_totp_enrollment(&auth).await.unwrap();
        assert_eq!(store.count_secrets_not_under_key(2).await.unwrap(), 2);

        run(cli(&["keys", "rotate"], dir.path())).await.unwrap();
        assert_eq!(store.count_secrets_not_under_key(2).await.unwrap(), 0);
        let factors = store.factors_of(user.id).await.unwrap();
        assert_eq!(factors[0].key_id, Some(2));

        // The running services meet key 2 for the first time and read the ring again.
        let PasswordOutcome::MfaRequired(challenge) = services
            .sign_in_with_password("ann@example.com", PASSWORD, ClientInfo::default(), None)
            .await
            .unwrap()
        else {
            panic!("MFA is on");
        };
        let next = tessera_otp::totp_at(&secret, now + 30, TotpParams::STANDARD).unwrap();
        services
            .complete_second_step(
                challenge.token.expose(),
                SecondFactorProof::Totp {
                    factor_id: None,
                    code: &next,
                },
                ClientInfo::default(),
            )
            .await
            .unwrap();

        // --link removes nothing: it records the request and queues the link.
        let backlog = store.outbox_backlog().await.unwrap();
        run(cli(
            &["admin", "reset-mfa", "--email", "ann@example.com", "--link"],
            dir.path(),
        ))
        .await
        .unwrap();
        assert_eq!(store.factors_of(user.id).await.unwrap().len(), 1);
        let events = store.events_of(user.id, None, 10).await.unwrap();
        assert_eq!(events[0].kind, "mfa_reset_requested");
        assert_eq!(store.outbox_backlog().await.unwrap(), backlog + 1);

        run(cli(
            &["admin", "reset-mfa", "--email", "ann@example.com"],
            dir.path(),
        ))
        .await
        .unwrap();
        assert!(store.factors_of(user.id).await.unwrap().is_empty());
        assert_eq!(
            store.backup_code_status(user.id).await.unwrap().remaining,
            0
        );
        let events = store.events_of(user.id, None, 10).await.unwrap();
        assert_eq!(events[0].kind, "mfa_reset_completed");
        assert!(
            store.outbox_backlog().await.unwrap() > 0,
            "the user is emailed"
        );

        let unknown = run(cli(
            &["admin", "reset-mfa", "--email", "nobody@example.com"],
            dir.path(),
        ))
        .await;
        assert!(unknown.unwrap_err().to_string().contains("no account"));
        store.close().await;
    }
}
