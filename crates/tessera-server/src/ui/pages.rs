//! Page templates and the rows they show.

use askama::Template;
use askama_web::WebTemplate;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tessera_core::event::SecurityEvent;
use tessera_core::factor::{AllowedMethods, FactorKind, LOW_BACKUP_CODES};
use tessera_core::service::MfaState;
use tessera_core::session::Session;
use time::OffsetDateTime;

#[derive(Template, WebTemplate)]
#[template(path = "login.html")]
pub(super) struct LoginTemplate {
    pub email: String,
    pub error: Option<String>,
    pub notice: Option<String>,
    pub signup_open: bool,
}

#[derive(Default)]
pub(super) struct SignupErrors {
    pub form: Option<String>,
    pub email: Option<String>,
    pub password: Option<String>,
    pub display_name: Option<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "signup.html")]
pub(super) struct SignupTemplate {
    pub email: String,
    pub display_name: String,
    pub errors: SignupErrors,
}

#[derive(Default)]
pub(super) struct PasswordErrors {
    pub form: Option<String>,
    pub current_password: Option<String>,
    pub new_password: Option<String>,
}

pub(super) struct SessionRow {
    pub id: String,
    pub device: String,
    pub ip: String,
    pub created_at: String,
    pub last_seen_at: String,
    pub current: bool,
}

impl SessionRow {
    pub fn new(session: &Session, current: bool) -> Self {
        Self {
            id: session.id.to_string(),
            device: describe_agent(session.user_agent.as_deref()),
            ip: session.ip.clone().unwrap_or_else(|| "unknown".into()),
            created_at: format_time(session.created_at),
            last_seen_at: format_time(session.last_seen_at),
            current,
        }
    }
}

pub(super) struct EventRow {
    pub what: String,
    pub at: String,
    pub ip: String,
    pub device: String,
}

impl From<&SecurityEvent> for EventRow {
    fn from(event: &SecurityEvent) -> Self {
        let what = match event.kind.as_str() {
            "account_created" => "Account created",
            "signin_succeeded" => "Signed in",
            "signin_failed" => "Failed sign-in attempt",
            "signout" => "Signed out",
            "session_revoked" => "Signed out another session",
            "reauth" => "Confirmed password",
            "password_changed" => "Password changed",
            "signin_mfa_pending" => "Password accepted, second step pending",
            "mfa_enabled" => "Multi-factor authentication turned on",
            "mfa_disabled" => "Multi-factor authentication turned off",
            "factor_added" => "Sign-in method added",
            "factor_removed" => "Sign-in method removed",
            "factor_replaced" => "Sign-in method replaced",
            "factor_updated" => "Sign-in method renamed or made preferred",
            "code_sent" => "Verification code sent",
            "backup_codes_generated" => "Backup codes generated",
            "backup_codes_removed" => "Backup codes skipped",
            "backup_code_used" => "Backup code used",
            "second_factor_failed" => "Wrong verification code",
            "second_factor_locked" => "Verification locked after wrong codes",
            "mfa_reset_completed" => "MFA reset by an administrator",
            "signin_unfinished_reported" => "Unfinished sign-in reported",
            other => other,
        };
        Self {
            what: what.to_owned(),
            at: format_time(event.at),
            ip: event.ip.clone().unwrap_or_else(|| "unknown".into()),
            device: describe_agent(event.user_agent.as_deref()),
        }
    }
}

/// One factor in Settings.
pub(super) struct FactorRow {
    pub id: String,
    pub label: String,
    pub kind: &'static str,
    pub is_totp: bool,
    /// SMS or email: codes are sent to `destination`.
    pub is_contact: bool,
    pub is_sms: bool,
    /// The masked number or address (empty for other kinds).
    pub destination: String,
    pub preferred: bool,
    pub created_at: String,
    pub last_used_at: String,
}

/// The MFA section of Settings → Security.
pub(super) struct MfaSettingsView {
    pub enabled: bool,
    pub factors: Vec<FactorRow>,
    pub backup_remaining: u32,
    pub backup_low: bool,
    pub backup_generated_at: String,
    pub backup_locked: bool,
    pub allow_disable: bool,
    pub can_remove_last: bool,
    /// Which kinds may be added (`mfa.allowed_methods`).
    pub allow_totp: bool,
    pub allow_sms: bool,
    pub allow_email: bool,
    /// Every factor is SMS or email: Settings suggests an authenticator app.
    pub only_codes_by_message: bool,
    /// Why MFA cannot be turned off (when `allow_disable` is false).
    pub disable_reason: String,
    /// A requirement the user does not meet yet, with its deadline.
    pub policy_banner: Option<String>,
}

impl MfaSettingsView {
    pub fn new(
        mfa: &MfaState,
        allow_disable: bool,
        backup_locked: bool,
        allowed: AllowedMethods,
    ) -> Self {
        Self {
            allow_totp: allowed.allows(FactorKind::Totp),
            allow_sms: allowed.allows(FactorKind::Sms),
            allow_email: allowed.allows(FactorKind::Email),
            only_codes_by_message: mfa.enabled() && mfa.factors.iter().all(|f| f.receives_codes()),
            disable_reason: String::new(),
            policy_banner: None,
            enabled: mfa.enabled(),
            factors: mfa
                .factors
                .iter()
                .map(|f| FactorRow {
                    id: f.id.to_string(),
                    label: f.label.clone(),
                    kind: match f.kind {
                        FactorKind::Totp => "Authenticator app",
                        FactorKind::Sms => "Text message",
                        FactorKind::Email => "Email",
                        FactorKind::Webauthn => "Security key",
                    },
                    is_totp: f.kind == FactorKind::Totp,
                    is_contact: f.receives_codes(),
                    is_sms: f.kind == FactorKind::Sms,
                    destination: f.masked_destination().unwrap_or_default(),
                    preferred: f.preferred,
                    created_at: format_time(f.created_at),
                    last_used_at: f.last_used_at.map_or_else(|| "Never".into(), format_time),
                })
                .collect(),
            backup_remaining: mfa.backup_codes.remaining,
            backup_low: mfa.backup_codes.remaining <= LOW_BACKUP_CODES,
            backup_generated_at: mfa
                .backup_codes
                .generated_at
                .map(format_time)
                .unwrap_or_default(),
            backup_locked,
            allow_disable,
            can_remove_last: allow_disable,
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "security.html")]
pub(super) struct SecurityTemplate {
    pub mfa: MfaSettingsView,
    pub user_email: String,
    pub display_name: String,
    pub created_at: String,
    pub csrf_token: String,
    pub notice: Option<String>,
    pub password_errors: PasswordErrors,
    pub sessions: Vec<SessionRow>,
    pub events: Vec<EventRow>,
}

#[derive(Template, WebTemplate)]
#[template(path = "message.html")]
pub(super) struct MessageTemplate {
    pub title: String,
    pub message: String,
    pub link: String,
    pub link_text: String,
}

/// A simple page with a title, a sentence and a link.
pub(super) fn message_page(
    status: StatusCode,
    title: &str,
    message: &str,
    link: &str,
    link_text: &str,
) -> Response {
    let page = MessageTemplate {
        title: title.to_owned(),
        message: message.to_owned(),
        link: link.to_owned(),
        link_text: link_text.to_owned(),
    };
    (status, page).into_response()
}

/// `2026-11-23 17:40 UTC`.
pub(super) fn format_time(at: OffsetDateTime) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    at.format(&format).unwrap_or_default()
}

/// A short description of a user agent: the browser and platform when recognisable.
pub(super) fn describe_agent(agent: Option<&str>) -> String {
    let Some(agent) = agent.filter(|a| !a.is_empty()) else {
        return "Unknown device".into();
    };
    let browser = ["Edg/", "Firefox/", "Chrome/", "Safari/", "curl/", "reqwest"]
        .iter()
        .find(|marker| agent.contains(*marker))
        .map(|marker| match *marker {
            "Edg/" => "Edge",
            "Firefox/" => "Firefox",
            "Chrome/" => "Chrome",
            "Safari/" => "Safari",
            "curl/" => "curl",
            _ => "API client",
        });
    let platform = ["Windows", "Android", "iPhone", "iPad", "Mac OS X", "Linux"]
        .iter()
        .find(|marker| agent.contains(*marker))
        .map(|marker| match *marker {
            "Mac OS X" => "macOS",
            other => other,
        });
    match (browser, platform) {
        (Some(b), Some(p)) => format!("{b} on {p}"),
        (Some(b), None) => b.to_owned(),
        _ => agent.chars().take(60).collect(),
    }
}

/// `30 seconds`, `2 minutes`.
pub(super) fn human_seconds(seconds: u64) -> String {
    match seconds {
        0..=1 => "1 second".into(),
        2..=89 => format!("{seconds} seconds"),
        _ => format!("{} minutes", seconds.div_ceil(60)),
    }
}
