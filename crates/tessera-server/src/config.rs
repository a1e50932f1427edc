//! Configuration: defaults, then a TOML file, then `TESSERA_*` environment variables, then
//! command-line flags — each layer overriding the one before. The names are part of the API
//! contract (API.md, "Running").

use anyhow::{Context, bail};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use tessera_core::factor::AllowedMethods;

/// Environment variables read into [`Settings`] (without the `TESSERA_` prefix).
const ENV_KEYS: &[&str] = &[
    "listen",
    "data_dir",
    "database_url",
    "public_url",
    "smtp_url",
    "mail_from",
    "sms_webhook_url",
    "sms_twilio_base_url",
    "signup",
    "client_rate_limit",
    "session_lifetime_minutes",
    "session_idle_timeout_minutes",
    "trusted_proxies",
    "log_format",
];

/// Environment variables read verbatim, outside figment: figment parses `TESSERA_*` values, so
/// `+15005550006` would arrive as the number 15005550006 and an all-digit token would lose its
/// leading zeros.
const RAW_ENV_KEYS: [&str; 3] = [
    "TESSERA_SMS_TWILIO_ACCOUNT_SID",
    "TESSERA_SMS_TWILIO_AUTH_TOKEN",
    "TESSERA_SMS_TWILIO_FROM",
];

/// The longest session lifetime or idle timeout accepted: one year.
pub const MAX_SESSION_MINUTES: u32 = 365 * 24 * 60;

/// Self-service sign-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignupMode {
    /// Anyone may create an account.
    Open,
    /// Only operators create accounts.
    Closed,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Every setting of the server.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Address to listen on.
    pub listen: String,
    /// Data directory: SQLite database, generated keys, dev outbox.
    pub data_dir: PathBuf,
    /// Database URL; `None` means `sqlite://<data dir>/tessera.db`.
    pub database_url: Option<String>,
    /// The URL users reach the server at (links in emails, cookie `Secure` flag).
    pub public_url: String,
    /// SMTP server URL; `None` writes emails to the dev outbox.
    pub smtp_url: Option<String>,
    /// The `From` of emails.
    pub mail_from: String,
    /// SMS webhook URL; `None` writes text messages to the dev outbox.
    pub sms_webhook_url: Option<String>,
    /// Twilio-compatible SMS: the account SID (with the token and from-number, replaces the
    /// webhook).
    pub sms_twilio_account_sid: Option<String>,
    /// Twilio-compatible SMS: the auth token.
    pub sms_twilio_auth_token: Option<String>,
    /// Twilio-compatible SMS: the sending number (E.164) or messaging-service SID.
    pub sms_twilio_from: Option<String>,
    /// Twilio-compatible SMS: the API's base URL.
    pub sms_twilio_base_url: String,
    /// Self-service sign-up.
    pub signup: SignupMode,
    /// Requests per minute per client address on unauthenticated endpoints; 0 turns it off.
    pub client_rate_limit: u32,
    /// Absolute session lifetime.
    pub session_lifetime_minutes: u32,
    /// Idle timeout of sessions.
    pub session_idle_timeout_minutes: u32,
    /// Proxies whose `X-Forwarded-For` is believed (addresses or CIDR ranges).
    #[serde(deserialize_with = "list_or_comma_separated")]
    pub trusted_proxies: Vec<IpNet>,
    /// Log format.
    pub log_format: LogFormat,
    /// Multi-factor authentication (`[mfa]` in TOML, `TESSERA_MFA_*` in the environment).
    #[serde(default)]
    pub mfa: MfaConfig,
}

/// The `[mfa]` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MfaConfig {
    /// Whether users may remove their last factor or turn MFA off; `false` makes MFA
    /// irreversible once on (`mfa.allow_disable`, `TESSERA_MFA_ALLOW_DISABLE`).
    pub allow_disable: bool,
    /// Which kinds of factor may be enrolled (`mfa.allowed_methods = ["totp", "webauthn"]`,
    /// `TESSERA_MFA_ALLOWED_METHODS=totp,webauthn`); all by default, never empty.
    #[serde(default)]
    pub allowed_methods: AllowedMethods,
    /// Whether every account must use MFA, as if from one more organization that binds
    /// everyone (`mfa.required`, `TESSERA_MFA_REQUIRED`).
    #[serde(default)]
    pub required: bool,
    /// Hours an account has, from when `mfa.required` first applied to it, before it must
    /// enroll (`mfa.grace_period_hours`, `TESSERA_MFA_GRACE_PERIOD_HOURS`; at most 2160).
    #[serde(default)]
    pub grace_period_hours: u32,
}

impl Default for MfaConfig {
    fn default() -> Self {
        Self {
            allow_disable: true,
            allowed_methods: AllowedMethods::ALL,
            required: false,
            grace_period_hours: 0,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("./tessera-data"),
            database_url: None,
            public_url: "http://localhost:8080".into(),
            smtp_url: None,
            mail_from: "Tessera <tessera@localhost>".into(),
            sms_webhook_url: None,
            sms_twilio_account_sid: None,
            sms_twilio_auth_token: None,
            sms_twilio_from: None,
            sms_twilio_base_url: crate::notify::TWILIO_BASE_URL.into(),
            signup: SignupMode::Open,
            client_rate_limit: 600,
            session_lifetime_minutes: 12 * 60,
            session_idle_timeout_minutes: 30,
            trusted_proxies: Vec::new(),
            log_format: LogFormat::Text,
            mfa: MfaConfig::default(),
        }
    }
}

/// Hides credentials that may sit in URLs.
fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if !parsed.username().is_empty() || parsed.password().is_some() => {
            let _ = parsed.set_username("REDACTED");
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        Ok(parsed) => parsed.to_string(),
        Err(_) => "[unparseable URL]".into(),
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field(
                "database_url",
                &self.database_url.as_deref().map(redact_url),
            )
            .field("public_url", &self.public_url)
            .field("smtp_url", &self.smtp_url.as_deref().map(redact_url))
            .field("mail_from", &self.mail_from)
            .field(
                "sms_webhook_url",
                &self.sms_webhook_url.as_deref().map(redact_url),
            )
            .field("sms_twilio_account_sid", &self.sms_twilio_account_sid)
            .field(
                "sms_twilio_auth_token",
                &self.sms_twilio_auth_token.as_ref().map(|_| "[REDACTED]"),
            )
            .field("sms_twilio_from", &self.sms_twilio_from)
            .field("sms_twilio_base_url", &self.sms_twilio_base_url)
            .field("signup", &self.signup)
            .field("client_rate_limit", &self.client_rate_limit)
            .field("session_lifetime_minutes", &self.session_lifetime_minutes)
            .field(
                "session_idle_timeout_minutes",
                &self.session_idle_timeout_minutes,
            )
            .field("trusted_proxies", &self.trusted_proxies)
            .field("log_format", &self.log_format)
            .field("mfa", &self.mfa)
            .finish()
    }
}

fn list_or_comma_separated<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<IpNet>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        One(String),
        Many(Vec<String>),
    }
    let items = match Raw::deserialize(deserializer)? {
        Raw::One(text) => text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        Raw::Many(items) => items,
    };
    items
        .iter()
        .map(|item| {
            item.parse::<IpNet>()
                .or_else(|_| item.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    serde::de::Error::custom(format!(
                        "trusted_proxies: `{item}` is not an address or CIDR range"
                    ))
                })
        })
        .collect()
}

/// Values given on the command line; `None` leaves the lower layers alone.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overrides {
    /// `--listen`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// `--data-dir`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// `--database-url`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    /// `--public-url`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
}

impl Settings {
    /// Loads the settings: defaults ← `config_file` (TOML) ← `TESSERA_*` ← `overrides`.
    pub fn load(config_file: Option<&Path>, overrides: &Overrides) -> anyhow::Result<Self> {
        Self::load_from(
            config_file,
            overrides,
            Env::prefixed("TESSERA_").only(ENV_KEYS),
        )
    }

    fn load_from(
        config_file: Option<&Path>,
        overrides: &Overrides,
        env: Env,
    ) -> anyhow::Result<Self> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(path) = config_file {
            if !path.is_file() {
                bail!("configuration file {} does not exist", path.display());
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        let settings: Settings = figment
            .merge(env)
            .merge(
                Env::prefixed("TESSERA_MFA_")
                    .only(&[
                        "allow_disable",
                        "allowed_methods",
                        "required",
                        "grace_period_hours",
                    ])
                    .map(|key| format!("mfa.{key}").into()),
            )
            .merge(Serialized::globals(overrides))
            .extract()
            .context("invalid configuration")?;
        let mut settings = settings;
        let raw = |key: &str| std::env::var(key).ok();
        let [sid, token, from] = RAW_ENV_KEYS;
        settings.sms_twilio_account_sid = raw(sid).or(settings.sms_twilio_account_sid);
        settings.sms_twilio_auth_token = raw(token).or(settings.sms_twilio_auth_token);
        settings.sms_twilio_from = raw(from).or(settings.sms_twilio_from);
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> anyhow::Result<()> {
        self.listen_addr()?;
        let public = url::Url::parse(&self.public_url)
            .with_context(|| format!("public_url `{}` is not a URL", self.public_url))?;
        if !matches!(public.scheme(), "http" | "https") {
            bail!("public_url must be http or https");
        }
        if self.session_lifetime_minutes == 0 || self.session_idle_timeout_minutes == 0 {
            bail!("session lifetimes must be at least one minute");
        }
        if self.mfa.grace_period_hours > tessera_core::org::MAX_GRACE_PERIOD_HOURS {
            bail!(
                "mfa.grace_period_hours must be at most {} (90 days)",
                tessera_core::org::MAX_GRACE_PERIOD_HOURS
            );
        }
        if self.session_lifetime_minutes > MAX_SESSION_MINUTES
            || self.session_idle_timeout_minutes > MAX_SESSION_MINUTES
        {
            bail!("session lifetimes must be at most {MAX_SESSION_MINUTES} minutes (one year)");
        }
        if let Some(url) = &self.smtp_url {
            let parsed =
                url::Url::parse(url).map_err(|_| anyhow::anyhow!("smtp_url is not a URL"))?;
            if !matches!(parsed.scheme(), "smtp" | "smtps") {
                bail!("smtp_url must start with smtp:// or smtps://");
            }
        }
        if let Some(url) = &self.sms_webhook_url {
            let parsed = url::Url::parse(url)
                .map_err(|_| anyhow::anyhow!("sms_webhook_url is not a URL"))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                bail!("sms_webhook_url must be http or https");
            }
        }
        let twilio = [
            self.sms_twilio_account_sid.is_some(),
            self.sms_twilio_auth_token.is_some(),
            self.sms_twilio_from.is_some(),
        ];
        if twilio.contains(&true) && twilio.contains(&false) {
            bail!(
                "Twilio SMS needs all of sms_twilio_account_sid, sms_twilio_auth_token and sms_twilio_from"
            );
        }
        if twilio[0] && self.sms_webhook_url.is_some() {
            bail!("set either sms_webhook_url or the sms_twilio_* settings, not both");
        }
        Ok(())
    }

    /// The parsed listen address.
    pub fn listen_addr(&self) -> anyhow::Result<SocketAddr> {
        self.listen
            .parse()
            .with_context(|| format!("listen address `{}` is not host:port", self.listen))
    }

    /// The database URL, defaulting to SQLite in the data directory.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("tessera.db").display()
            ),
        }
    }

    /// Whether the public URL is https (cookies get `Secure` and the `__Host-` prefix).
    pub fn is_https(&self) -> bool {
        self.public_url.starts_with("https://")
    }

    /// The database URL with credentials hidden, for logs.
    pub fn database_url_for_logs(&self) -> String {
        redact_url(&self.database_url())
    }
}

#[cfg(test)]
#[expect(
    clippy::result_large_err,
    reason = "figment's Jail closures return its large Error"
)]
mod tests {
    use super::*;
    use figment::Jail;
    use tessera_core::factor::FactorKind;

    #[test]
    fn defaults_match_the_contract() {
        Jail::expect_with(|_jail| {
            let s = Settings::load(None, &Overrides::default()).map_err(|e| e.to_string())?;
            assert_eq!(s.listen, "127.0.0.1:8080");
            assert_eq!(s.data_dir, PathBuf::from("./tessera-data"));
            assert_eq!(s.public_url, "http://localhost:8080");
            assert_eq!(s.signup, SignupMode::Open);
            assert_eq!(s.client_rate_limit, 600);
            assert!(
                s.database_url()
                    .starts_with("sqlite://./tessera-data/tessera.db")
            );
            Ok(())
        });
    }

    #[test]
    fn environment_overrides_file_and_flags_override_environment() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "tessera.toml",
                r#"
                listen = "127.0.0.1:9000"
                signup = "closed"
                client_rate_limit = 5
                public_url = "https://id.example.com"
                trusted_proxies = ["10.0.0.0/8"]
                "#,
            )?;
            jail.set_env("TESSERA_CLIENT_RATE_LIMIT", "0");
            jail.set_env("TESSERA_SMTP_URL", "smtp://user:hunter2@127.0.0.1:2525");
            jail.set_env("TESSERA_TRUSTED_PROXIES", "192.168.0.1, 172.16.0.0/12");
            let overrides = Overrides {
                listen: Some("127.0.0.1:9100".into()),
                ..Overrides::default()
            };
            let s = Settings::load(Some(Path::new("tessera.toml")), &overrides)
                .map_err(|e| e.to_string())?;
            assert_eq!(s.listen, "127.0.0.1:9100");
            assert_eq!(s.signup, SignupMode::Closed);
            assert_eq!(s.client_rate_limit, 0);
            assert!(s.is_https());
            assert_eq!(s.trusted_proxies.len(), 2);
            let printed = format!("{s:?}");
            assert!(!printed.contains("hunter2"), "{printed}");
            Ok(())
        });
    }

    #[test]
    fn bad_values_are_reported() {
        Jail::expect_with(|jail| {
            jail.create_file("bad.toml", "unknown_setting = 1\n")?;
            assert!(Settings::load(Some(Path::new("bad.toml")), &Overrides::default()).is_err());
            assert!(
                Settings::load(Some(Path::new("missing.toml")), &Overrides::default()).is_err()
            );
            jail.set_env("TESSERA_SESSION_LIFETIME_MINUTES", "999999999");
            assert!(Settings::load(None, &Overrides::default()).is_err());
            jail.set_env("TESSERA_SESSION_LIFETIME_MINUTES", "60");
            jail.set_env("TESSERA_SIGNUP", "maybe");
            assert!(Settings::load(None, &Overrides::default()).is_err());
            jail.set_env("TESSERA_SIGNUP", "open");
            // Allowed methods: names from the environment, never none, never unknown ones.
            jail.set_env("TESSERA_MFA_ALLOWED_METHODS", "totp, webauthn");
            let settings = Settings::load(None, &Overrides::default()).unwrap();
            assert_eq!(
                settings.mfa.allowed_methods.kinds(),
                [FactorKind::Totp, FactorKind::Webauthn]
            );
            for bad in ["", "totp,carrier-pigeon"] {
                jail.set_env("TESSERA_MFA_ALLOWED_METHODS", bad);
                let error = Settings::load(None, &Overrides::default()).unwrap_err();
                assert!(
                    format!("{error:#}").contains("allowed_methods"),
                    "{error:#}"
                );
            }
            jail.set_env("TESSERA_MFA_ALLOWED_METHODS", "totp,sms,email,webauthn");
            // Twilio needs its three settings together, and not beside the webhook.
            jail.set_env("TESSERA_SMS_TWILIO_ACCOUNT_SID", "AC123");
            let error = Settings::load(None, &Overrides::default()).unwrap_err();
            assert!(format!("{error:#}").contains("needs all of"), "{error:#}");
            jail.set_env("TESSERA_SMS_TWILIO_AUTH_TOKEN", "s3cr3t");
            jail.set_env("TESSERA_SMS_TWILIO_FROM", "+15005550006");
            let settings = Settings::load(None, &Overrides::default()).unwrap();
            assert!(!format!("{settings:?}").contains("s3cr3t"));
            assert_eq!(settings.sms_twilio_from.as_deref(), Some("+15005550006"));
            jail.set_env("TESSERA_SMS_TWILIO_AUTH_TOKEN", "0123456789");
            let settings = Settings::load(None, &Overrides::default()).unwrap();
            assert_eq!(
                settings.sms_twilio_auth_token.as_deref(),
                Some("0123456789")
            );
            jail.set_env("TESSERA_SMS_WEBHOOK_URL", "https://sms.example.com/hook");
            let error = Settings::load(None, &Overrides::default()).unwrap_err();
            assert!(format!("{error:#}").contains("not both"), "{error:#}");
            Ok(())
        });
    }
}
