//! The MFA pages: the second step of sign-in, and Settings → Security → Multi-factor
//! authentication (enable with an authenticator app, backup codes, reset to a new device,
//! remove, disable). They call the same services as the API.
//!
//! Threats: CSRF (every signed-in form carries the session's token; the second-step form is
//! refused cross-site like the sign-in form), the challenge token leaking to scripts or other
//! paths (an `HttpOnly`, `SameSite=Strict` cookie scoped to `/login`), and stale privileges
//! (sensitive actions ask for the password when the re-auth window is closed, then carry out
//! the action that was asked for).

use super::pages::MfaSettingsView;
use super::{
    Client, capitalize, error_page, human_seconds, parse_form, render_security, request_parts,
    same_origin, session_cookie, signed_in_form,
};
use crate::qr;
use crate::state::AppState;
use askama::Template;
use askama_web::WebTemplate;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use serde::Deserialize;
use tessera_core::Error;
use tessera_core::event::ClientInfo;
use tessera_core::factor::{CHALLENGE_TTL, Factor, FactorKind};
use tessera_core::service::{
    Authenticated, FullSession, MfaChallenge, SecondFactorProof, StartedTotpEnrollment,
};

/// Where the second step of sign-in is.
pub const SECOND_STEP_PATH: &str = "/login/mfa";
/// The cookie holding the sign-in challenge between the two steps.
pub const CHALLENGE_COOKIE: &str = "tessera_mfa_challenge";

/// The challenge cookie set after a right password.
pub fn challenge_cookie(state: &AppState, challenge: &MfaChallenge) -> Cookie<'static> {
    let mut cookie = Cookie::new(CHALLENGE_COOKIE, challenge.token.expose().to_owned());
    cookie.set_http_only(true);
    cookie.set_same_site(SameSite::Strict);
    cookie.set_path("/login");
    cookie.set_secure(state.settings.is_https());
    cookie.set_max_age(CHALLENGE_TTL);
    cookie
}

fn challenge_removal(state: &AppState) -> Cookie<'static> {
    let mut cookie = Cookie::new(CHALLENGE_COOKIE, "");
    cookie.set_path("/login");
    cookie.set_secure(state.settings.is_https());
    cookie
}

fn challenge_token(headers: &HeaderMap) -> Option<String> {
    CookieJar::from_headers(headers)
        .get(CHALLENGE_COOKIE)
        .map(|c| c.value().to_owned())
        .filter(|v| !v.is_empty())
}

/// One way to pass the second step, as the page lists it.
pub(super) struct MethodRow {
    /// The factor id (empty for backup codes).
    pub id: String,
    pub name: String,
    pub detail: String,
    /// Where "Try another method" goes for it.
    pub href: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "mfa_signin.html")]
pub(super) struct SecondStepTemplate {
    /// `totp`, `backup_code`, `sms` or `email`: what the form asks for.
    pub method: String,
    /// The SMS or email factor the page is about.
    pub current: Option<MethodRow>,
    /// Whether a code was sent to `current`.
    pub sent: bool,
    pub notice: Option<String>,
    pub warning: Option<String>,
    pub error: Option<String>,
    /// Every other way in ("Try another method").
    pub others: Vec<MethodRow>,
    pub open_others: bool,
    pub has_backup_codes: bool,
    /// The SMS factor offered under the TOTP field ("Text me a code instead").
    pub text_instead: Option<MethodRow>,
}

/// What the second-step page shows: which method and factor, and whether a code went out.
#[derive(Deserialize, Default, Clone)]
pub(super) struct SecondStepQuery {
    pub method: Option<String>,
    pub factor: Option<String>,
    pub sent: Option<String>,
    pub failing: Option<String>,
}

pub(super) async fn second_step_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: axum::extract::RawQuery,
) -> Response {
    let query: SecondStepQuery =
        serde_urlencoded::from_str(query.0.as_deref().unwrap_or_default()).unwrap_or_default();
    render_second_step(&state, &headers, query, None, StatusCode::OK).await
}

fn method_row(factor: &Factor) -> MethodRow {
    let (detail, href) = match factor.kind {
        FactorKind::Totp => (
            "Authenticator app".to_owned(),
            "/login/mfa?method=totp".to_owned(),
        ),
        kind => (
            factor
                .masked_destination()
                .unwrap_or_else(|| kind.as_str().to_owned()),
            format!("/login/mfa?method={}&factor={}", kind.as_str(), factor.id),
        ),
    };
    MethodRow {
        id: factor.id.to_string(),
        name: factor.label.clone(),
        detail,
        href,
    }
}

pub(super) async fn render_second_step(
    state: &AppState,
    headers: &HeaderMap,
    query: SecondStepQuery,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    let Some(token) = challenge_token(headers) else {
        return Redirect::to("/login").into_response();
    };
    let mfa = match state.services.pending_second_step(&token).await {
        Ok(mfa) => mfa,
        Err(Error::InvalidCode) => return expired_challenge(state),
        Err(other) => return error_page(&other),
    };
    let has_backup_codes = mfa.backup_codes.remaining > 0;
    // The method asked for, else the preferred factor's (the list is preferred first).
    let preferred = mfa.factors.first();
    let asked = query.method.as_deref().and_then(|m| match m {
        "backup_code" if has_backup_codes => Some("backup_code"),
        "totp" if mfa.factors.iter().any(|f| f.kind == FactorKind::Totp) => Some("totp"),
        "sms" => Some("sms"),
        "email" => Some("email"),
        _ => None,
    });
    let method = asked
        .map(str::to_owned)
        .or_else(|| preferred.map(|f| f.kind.as_str().to_owned()))
        .unwrap_or_else(|| "backup_code".to_owned());
    let current = match method.as_str() {
        "sms" | "email" => mfa
            .factors
            .iter()
            .filter(|f| f.kind.as_str() == method)
            .find(|f| {
                query
                    .factor
                    .as_deref()
                    .is_none_or(|id| f.id.to_string() == id)
            })
            .or_else(|| mfa.factors.iter().find(|f| f.kind.as_str() == method)),
        _ => None,
    };
    let method = match (method.as_str(), current) {
        // A code method without a factor of that kind falls back to the preferred one.
        ("sms" | "email", None) => preferred
            .map_or("backup_code", |f| f.kind.as_str())
            .to_owned(),
        _ => method,
    };
    let shown_id = current.map(|f| f.id);
    let mut others: Vec<MethodRow> = mfa
        .factors
        .iter()
        .filter(|f| match f.kind {
            FactorKind::Totp => method != "totp",
            _ => Some(f.id) != shown_id,
        })
        .map(method_row)
        .collect();
    // Several authenticator apps are one way in: list the kind once.
    let mut seen_totp = false;
    others.retain(|row| {
        let totp = row.href.ends_with("method=totp");
        let keep = !(totp && seen_totp);
        seen_totp |= totp;
        keep
    });
    if has_backup_codes && method != "backup_code" {
        others.push(MethodRow {
            id: String::new(),
            name: "Backup code".into(),
            detail: format!("{} left", mfa.backup_codes.remaining),
            href: "/login/mfa?method=backup_code".into(),
        });
    }
    let text_instead = (method == "totp")
        .then(|| mfa.factors.iter().find(|f| f.kind == FactorKind::Sms))
        .flatten()
        .map(method_row);
    let sent = query.sent.is_some() && current.is_some();
    let notice = sent.then(|| "Code sent.".to_owned());
    let warning = (sent && query.failing.is_some())
        .then(|| crate::api::wire::DELIVERY_FAILING_MESSAGE.to_owned());
    let page = SecondStepTemplate {
        open_others: query.method.is_some() && current.is_none() && method != "totp",
        method,
        current: current.map(method_row),
        sent,
        notice,
        warning,
        error,
        others,
        has_backup_codes,
        text_instead,
    };
    (status, page).into_response()
}

#[derive(Deserialize)]
struct SendForm {
    #[serde(default)]
    factor_id: String,
}

/// `POST /login/mfa/send`: "Send me a code" / "Text me a code instead".
pub(super) async fn send_submit(
    State(state): State<AppState>,
    Client(client): Client,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !same_origin(&state, &headers) {
        return super::cross_site_refusal("/login", "Sign in");
    }
    let Some(token) = challenge_token(&headers) else {
        return Redirect::to("/login").into_response();
    };
    let form: SendForm = match parse_form(&body) {
        Ok(form) => form,
        Err(response) => return response,
    };
    match state
        .services
        .send_signin_code(&token, &form.factor_id, client)
        .await
    {
        Ok(sent) => {
            state.outbox_wake.notify_one();
            let failing = if sent.delivery_failing {
                "&failing=1"
            } else {
                ""
            };
            Redirect::to(&format!(
                "{SECOND_STEP_PATH}?method={}&factor={}&sent=1{failing}",
                sent.kind.as_str(),
                sent.target
            ))
            .into_response()
        }
        Err(Error::InvalidCode) => expired_challenge(&state),
        Err(error @ (Error::RateLimited { .. } | Error::NotFound | Error::InvalidRequest(_))) => {
            let message = match &error {
                Error::RateLimited { retry_after_secs } => format!(
                    "We can't send another code yet. Try again in {}, or use another method.",
                    human_seconds(*retry_after_secs)
                ),
                Error::NotFound => "That sign-in method is not one of yours.".to_owned(),
                other => capitalize(&other.to_string()),
            };
            let query = SecondStepQuery {
                factor: Some(form.factor_id.clone()),
                ..Default::default()
            };
            let status = crate::api::error::status_of(&error);
            let mut response =
                render_second_step(&state, &headers, query, Some(message), status).await;
            if let Error::RateLimited { retry_after_secs } = error {
                super::with_retry_after(&mut response, retry_after_secs);
            }
            response
        }
        Err(other) => error_page(&other),
    }
}

fn expired_challenge(state: &AppState) -> Response {
    let jar = CookieJar::new().add(challenge_removal(state));
    (jar, Redirect::to("/login?expired=1")).into_response()
}

#[derive(Deserialize)]
struct SecondStepForm {
    #[serde(default)]
    method: String,
    #[serde(default)]
    code: String,
    factor_id: Option<String>,
}

pub(super) async fn second_step_submit(
    State(state): State<AppState>,
    Client(client): Client,
    headers: HeaderMap,
    jar: CookieJar,
    body: Bytes,
) -> Response {
    if !same_origin(&state, &headers) {
        return super::cross_site_refusal("/login", "Sign in");
    }
    let Some(token) = challenge_token(&headers) else {
        return Redirect::to("/login").into_response();
    };
    let form: SecondStepForm = match parse_form(&body) {
        Ok(form) => form,
        Err(response) => return response,
    };
    let backup = form.method == "backup_code";
    let factor_id = form.factor_id.as_deref().filter(|id| !id.is_empty());
    let proof = match form.method.as_str() {
        "backup_code" => SecondFactorProof::BackupCode(&form.code),
        "sms" => SecondFactorProof::Code {
            kind: FactorKind::Sms,
            factor_id,
            code: &form.code,
        },
        "email" => SecondFactorProof::Code {
            kind: FactorKind::Email,
            factor_id,
            code: &form.code,
        },
        _ => SecondFactorProof::Totp {
            factor_id: None,
            code: &form.code,
        },
    };
    let by_message = matches!(form.method.as_str(), "sms" | "email");
    let again = SecondStepQuery {
        method: Some(form.method.clone()),
        factor: form.factor_id.clone(),
        sent: by_message.then(|| "1".to_owned()),
        failing: None,
    };
    match state
        .services
        .complete_second_step(&token, proof, client)
        .await
    {
        Ok(signed_in) => {
            state.outbox_wake.notify_one();
            // The page's previous session (if any) is replaced like at a password sign-in.
            let previous = super::session_token(&request_parts(&headers), state.cookie_name());
            if let Some((old, _)) = previous
                && let Ok(old) = state.services.authenticate(&old).await
                && old.user.id == signed_in.user.id
            {
                let _ = state.services.sign_out(&old, ClientInfo::default()).await;
            }
            let jar = jar
                .add(session_cookie(&state, signed_in.token.expose().to_owned()))
                .add(challenge_removal(&state));
            (jar, Redirect::to("/settings/security")).into_response()
        }
        Err(Error::InvalidCode) => {
            let message = if backup {
                "That backup code didn't work. Check it and try again; each code works once."
            } else if by_message {
                "That code didn't work. Enter the latest code we sent; after 3 wrong tries or 10 minutes, send a new one."
            } else {
                "That code didn't work. Enter the current 6-digit code from your authenticator app."
            };
            render_second_step(
                &state,
                &headers,
                again,
                Some(message.into()),
                StatusCode::UNAUTHORIZED,
            )
            .await
        }
        Err(Error::RateLimited { retry_after_secs }) => {
            let mut response = render_second_step(
                &state,
                &headers,
                again,
                Some(format!(
                    "Too many wrong codes. For your security, try again in {}.",
                    human_seconds(retry_after_secs)
                )),
                StatusCode::TOO_MANY_REQUESTS,
            )
            .await;
            super::with_retry_after(&mut response, retry_after_secs);
            response
        }
        Err(other) => error_page(&other),
    }
}

/// A sensitive action of the MFA section; carried through the password prompt when the
/// re-auth window is closed, then carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Action {
    Enable,
    Reset(String),
    Regenerate,
    SkipBackupCodes,
    Remove(String),
    Disable,
    AddPhone,
    AddEmail,
    /// A new number or address for this SMS or email factor.
    ReplaceContact(String),
    /// Make this factor the preferred one.
    Prefer(String),
}

impl Action {
    fn parse(name: &str, factor_id: Option<&str>) -> Option<Self> {
        Some(match (name, factor_id) {
            ("enable", _) => Action::Enable,
            ("reset", Some(id)) => Action::Reset(id.to_owned()),
            ("regenerate", _) => Action::Regenerate,
            ("skip_backup_codes", _) => Action::SkipBackupCodes,
            ("remove", Some(id)) => Action::Remove(id.to_owned()),
            ("disable", _) => Action::Disable,
            ("add_phone", _) => Action::AddPhone,
            ("add_email", _) => Action::AddEmail,
            ("replace_contact", Some(id)) => Action::ReplaceContact(id.to_owned()),
            ("prefer", Some(id)) => Action::Prefer(id.to_owned()),
            _ => return None,
        })
    }

    fn name(&self) -> &'static str {
        match self {
            Action::Enable => "enable",
            Action::Reset(_) => "reset",
            Action::Regenerate => "regenerate",
            Action::SkipBackupCodes => "skip_backup_codes",
            Action::Remove(_) => "remove",
            Action::Disable => "disable",
            Action::AddPhone => "add_phone",
            Action::AddEmail => "add_email",
            Action::ReplaceContact(_) => "replace_contact",
            Action::Prefer(_) => "prefer",
        }
    }

    fn factor_id(&self) -> &str {
        match self {
            Action::Reset(id)
            | Action::Remove(id)
            | Action::ReplaceContact(id)
            | Action::Prefer(id) => id,
            _ => "",
        }
    }

    fn describe(&self) -> &'static str {
        match self {
            Action::Enable => "turn on multi-factor authentication",
            Action::Reset(_) => "reset your authenticator app",
            Action::Regenerate => "generate new backup codes",
            Action::SkipBackupCodes => "continue without backup codes",
            Action::Remove(_) => "remove this sign-in method",
            Action::Disable => "turn off multi-factor authentication",
            Action::AddPhone => "add a phone number",
            Action::AddEmail => "add an email address for codes",
            Action::ReplaceContact(_) => "change this number or address",
            Action::Prefer(_) => "change your preferred method",
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "reauth.html")]
pub(super) struct ReauthTemplate {
    pub csrf_token: String,
    pub user_email: String,
    pub action: String,
    pub factor_id: String,
    pub purpose: String,
    pub error: Option<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "mfa_setup.html")]
pub(super) struct SetupTemplate {
    pub csrf_token: String,
    pub enrollment_id: String,
    pub qr_svg: String,
    pub secret_grouped: String,
    pub otpauth_uri: String,
    pub replace_factor_id: String,
    pub error: Option<String>,
    pub label: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "backup_codes.html")]
pub(super) struct BackupCodesTemplate {
    pub csrf_token: String,
    pub codes: Vec<String>,
    pub download_href: String,
    pub first_time: bool,
    pub notice: Option<String>,
}

#[derive(Deserialize)]
struct ActionForm {
    #[serde(default)]
    action: String,
    factor_id: Option<String>,
}

/// `POST /settings/security/mfa`: every MFA action button posts here.
pub(super) async fn action_submit(
    State(state): State<AppState>,
    Client(client): Client,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (auth, form) = match signed_in_form::<ActionForm>(&state, &headers, &body).await {
        Ok(parsed) => parsed,
        Err(response) => return response,
    };
    let Some(action) = Action::parse(&form.action, form.factor_id.as_deref()) else {
        return error_page(&Error::invalid("unknown action"));
    };
    perform(&state, &auth, action, client).await
}

#[derive(Deserialize)]
struct ReauthForm {
    #[serde(default)]
    password: String,
    #[serde(default)]
    action: String,
    factor_id: Option<String>,
}

/// `POST /settings/security/reauth`: the password prompt; on success the action it was
/// shown for is carried out.
pub(super) async fn reauth_submit(
    State(state): State<AppState>,
    Client(client): Client,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (auth, form) = match signed_in_form::<ReauthForm>(&state, &headers, &body).await {
        Ok(parsed) => parsed,
        Err(response) => return response,
    };
    let Some(action) = Action::parse(&form.action, form.factor_id.as_deref()) else {
        return error_page(&Error::invalid("unknown action"));
    };
    let error = match state
        .services
        .reauthenticate(&auth, &form.password, client.clone())
        .await
    {
        Ok(_) => {
            // The session now has an open window; read it again so the action sees it.
            let Ok(refreshed) = super::page_session(&state, &headers).await else {
                return Redirect::to("/login").into_response();
            };
            return perform(&state, &refreshed, action, client).await;
        }
        Err(Error::InvalidCredentials) => "The password is incorrect.".to_owned(),
        Err(Error::RateLimited { retry_after_secs }) => format!(
            "Too many wrong passwords. Try again in {}.",
            human_seconds(retry_after_secs)
        ),
        Err(other) => return error_page(&other),
    };
    reauth_page(
        &state,
        &auth,
        &action,
        Some(error),
        StatusCode::UNAUTHORIZED,
    )
}

pub(super) fn reauth_page(
    state: &AppState,
    auth: &Authenticated,
    action: &Action,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    let page = ReauthTemplate {
        csrf_token: state.services.csrf_token(auth),
        user_email: auth.user.email.to_string(),
        action: action.name().to_owned(),
        factor_id: action.factor_id().to_owned(),
        purpose: action.describe().to_owned(),
        error,
    };
    (status, page).into_response()
}

async fn perform(
    state: &AppState,
    auth: &FullSession,
    action: Action,
    client: ClientInfo,
) -> Response {
    let services = &state.services;
    let result: Result<Response, Error> = match &action {
        Action::Enable => services
            .start_totp_enrollment(auth)
            .await
            .and_then(|started| setup_page(state, auth, &started, "", None, StatusCode::OK)),
        Action::Reset(id) => services
            .start_totp_enrollment(auth)
            .await
            .and_then(|started| setup_page(state, auth, &started, id, None, StatusCode::OK)),
        Action::Regenerate => services
            .regenerate_backup_codes(auth, client)
            .await
            .map(|codes| {
                state.outbox_wake.notify_one();
                backup_codes_page(state, auth, &codes, false)
            }),
        Action::SkipBackupCodes => services
            .discard_backup_codes(auth, client)
            .await
            .map(|()| Redirect::to("/settings/security?done=skipped").into_response()),
        Action::Remove(id) => services.remove_factor(auth, id, client).await.map(|()| {
            state.outbox_wake.notify_one();
            Redirect::to("/settings/security?done=removed").into_response()
        }),
        Action::Disable => services.disable_mfa(auth, client).await.map(|()| {
            state.outbox_wake.notify_one();
            Redirect::to("/settings/security?done=disabled").into_response()
        }),
        Action::AddPhone => super::contact::entry_page(state, auth, FactorKind::Sms, ""),
        Action::AddEmail => super::contact::entry_page(state, auth, FactorKind::Email, ""),
        Action::ReplaceContact(id) => super::contact::replace_entry_page(state, auth, id).await,
        Action::Prefer(id) => {
            let update = tessera_core::service::FactorUpdate {
                label: None,
                preferred: Some(true),
            };
            services
                .update_factor(auth, id, update, client)
                .await
                .map(|_| Redirect::to("/settings/security?done=preferred").into_response())
        }
    };
    match result {
        Ok(response) => response,
        Err(Error::ReauthRequired) => reauth_page(state, auth, &action, None, StatusCode::OK),
        Err(
            error @ (Error::PolicyForbids(_) | Error::BackupCodesLocked | Error::InvalidRequest(_)),
        ) => {
            let message = match &error {
                Error::BackupCodesLocked => "You signed in with a backup code. Sign in with your authenticator app (or set up a new one) before generating new backup codes.".to_owned(),
                other => capitalize(&other.to_string()),
            };
            render_security(
                state,
                auth,
                Some(message),
                Default::default(),
                StatusCode::FORBIDDEN,
            )
            .await
        }
        Err(other) => error_page(&other),
    }
}

fn setup_page(
    state: &AppState,
    auth: &Authenticated,
    started: &StartedTotpEnrollment,
    replace_factor_id: &str,
    error: Option<String>,
    status: StatusCode,
) -> Result<Response, Error> {
    let page = SetupTemplate {
        csrf_token: state.services.csrf_token(auth),
        enrollment_id: started.enrollment.id.to_string(),
        qr_svg: qr::svg(&started.otpauth_uri)?,
        secret_grouped: tessera_otp::group_secret(&started.secret_base32),
        otpauth_uri: started.otpauth_uri.to_string(),
        replace_factor_id: replace_factor_id.to_owned(),
        error,
        label: String::new(),
    };
    Ok((status, page).into_response())
}

pub(super) fn backup_codes_page(
    state: &AppState,
    auth: &Authenticated,
    codes: &[tessera_otp::BackupCode],
    first_time: bool,
) -> Response {
    let codes: Vec<String> = codes.iter().map(|c| c.display()).collect();
    let text = format!(
        "Tessera backup codes for {}\r\nEach code works once. Keep them somewhere safe.\r\n\r\n{}\r\n",
        auth.user.email,
        codes.join("\r\n")
    );
    let page = BackupCodesTemplate {
        csrf_token: state.services.csrf_token(auth),
        download_href: format!("data:text/plain;charset=utf-8,{}", percent_encode(&text)),
        codes,
        first_time,
        notice: first_time.then(|| "Multi-factor authentication is on.".to_owned()),
    };
    page.into_response()
}

fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[derive(Deserialize)]
struct ConfirmForm {
    #[serde(default)]
    code: String,
    #[serde(default)]
    label: String,
    #[serde(default)]
    replace_factor_id: String,
}

/// `POST /settings/security/mfa/setup/{enrollment_id}`: "Verify".
pub(super) async fn confirm_submit(
    State(state): State<AppState>,
    Client(client): Client,
    headers: HeaderMap,
    Path(enrollment_id): Path<String>,
    body: Bytes,
) -> Response {
    let (auth, form) = match super::enrolling_form::<ConfirmForm>(&state, &headers, &body).await {
        Ok(parsed) => parsed,
        Err(response) => return response,
    };
    let replace = Some(form.replace_factor_id.as_str()).filter(|id| !id.is_empty());
    let label = Some(form.label.as_str()).filter(|l| !l.trim().is_empty());
    match state
        .services
        .confirm_totp_enrollment(&auth, &enrollment_id, &form.code, label, replace, client)
        .await
    {
        Ok(confirmed) => {
            state.outbox_wake.notify_one();
            match confirmed.backup_codes {
                Some(codes) => backup_codes_page(&state, &auth, &codes, true),
                None if replace.is_some() => {
                    Redirect::to("/settings/security?done=reset").into_response()
                }
                None => Redirect::to("/settings/security?done=enabled").into_response(),
            }
        }
        Err(Error::InvalidCode) => {
            // Show the same enrollment again: the secret is sealed in the store, so the page
            // can be rebuilt while the enrollment lasts.
            match state
                .services
                .resume_totp_enrollment(&auth, &enrollment_id)
                .await
            {
                Ok(started) => setup_page(
                    &state,
                    &auth,
                    &started,
                    &form.replace_factor_id,
                    Some(
                        "That code didn't work. Enter the 6-digit code your app shows now.".into(),
                    ),
                    StatusCode::UNAUTHORIZED,
                )
                .unwrap_or_else(|error| error_page(&error)),
                Err(_) => {
                    super::render_settings_or_required(
                        &state,
                        &auth,
                        Some("The setup expired. Start again.".into()),
                        StatusCode::UNAUTHORIZED,
                    )
                    .await
                }
            }
        }
        Err(Error::ReauthRequired) => reauth_page(
            &state,
            &auth,
            &Action::Enable,
            Some("Your password confirmation expired. Confirm it and scan the new code.".into()),
            StatusCode::FORBIDDEN,
        ),
        Err(error @ (Error::InvalidRequest(_) | Error::PolicyForbids(_))) => {
            let status = crate::api::error::status_of(&error);
            super::render_settings_or_required(
                &state,
                &auth,
                Some(capitalize(&error.to_string())),
                status,
            )
            .await
        }
        Err(other) => error_page(&other),
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "mfa_required.html")]
pub(super) struct RequiredTemplate {
    pub csrf_token: String,
    pub user_email: String,
    pub allow_totp: bool,
    pub allow_sms: bool,
    pub allow_email: bool,
    pub none_allowed: bool,
    pub notice: Option<String>,
    /// The sentence that says why setup is needed.
    pub why: String,
}

/// The page a restricted session is held on: what the policy asks and the methods it allows.
pub(super) async fn required_page(
    state: &AppState,
    auth: &Authenticated,
    notice: Option<String>,
    status: StatusCode,
) -> Response {
    let policy = match state.services.effective_policy(auth.user.id).await {
        Ok(policy) => policy,
        Err(error) => return error_page(&error),
    };
    let page = RequiredTemplate {
        csrf_token: state.services.csrf_token(auth),
        user_email: auth.user.email.to_string(),
        allow_totp: policy.allows(FactorKind::Totp),
        allow_sms: policy.allows(FactorKind::Sms),
        allow_email: policy.allows(FactorKind::Email),
        none_allowed: policy.allowed_methods.is_empty(),
        notice,
        why: if policy.required_by.is_empty() {
            "Set up a new sign-in method to finish resetting multi-factor authentication.".into()
        } else {
            format!(
                "{} requires multi-factor authentication for your account.",
                policy.required_by.join(", ")
            )
        },
    };
    let mut response = (status, page).into_response();
    // Never cached: Back must ask the server again, which sends it here.
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

/// `GET /settings/security/required`.
pub(super) async fn required_get(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let auth = match super::enrolling_session(&state, &headers).await {
        Ok(auth) => auth,
        Err(response) => return response,
    };
    if auth.session.state == tessera_core::session::SessionState::Full {
        return Redirect::to("/settings/security").into_response();
    }
    required_page(&state, &auth, None, StatusCode::OK).await
}

/// `POST /settings/security/required`: "Set up" buttons of a restricted session.
pub(super) async fn required_submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (auth, form) = match super::enrolling_form::<ActionForm>(&state, &headers, &body).await {
        Ok(parsed) => parsed,
        Err(response) => return response,
    };
    let result = match form.action.as_str() {
        "enable" => match state.services.start_totp_enrollment(&auth).await {
            Ok(started) => setup_page(&state, &auth, &started, "", None, StatusCode::OK),
            Err(error) => Err(error),
        },
        "add_phone" => super::contact::entry_page(&state, &auth, FactorKind::Sms, ""),
        "add_email" => super::contact::entry_page(&state, &auth, FactorKind::Email, ""),
        _ => Err(Error::invalid("unknown action")),
    };
    match result {
        Ok(response) => response,
        Err(Error::ReauthRequired) => required_page(
            &state,
            &auth,
            Some(
                "Your sign-in is more than 10 minutes old: sign out and sign in again to continue."
                    .into(),
            ),
            StatusCode::FORBIDDEN,
        )
        .await,
        Err(error @ (Error::PolicyForbids(_) | Error::InvalidRequest(_))) => {
            let status = crate::api::error::status_of(&error);
            required_page(&state, &auth, Some(capitalize(&error.to_string())), status).await
        }
        Err(other) => error_page(&other),
    }
}

/// The banner every signed-in page shows while a requirement binds the user and they do not
/// meet it yet (the grace period).
pub(super) fn policy_banner(
    policy: &tessera_core::org::EffectivePolicy,
    mfa: &tessera_core::service::MfaState,
) -> Option<String> {
    if !policy.required() || policy.satisfied_by(mfa.factors.iter().map(|f| f.kind)) {
        return None;
    }
    let who = policy.required_by.join(", ");
    Some(match policy.deadline {
        Some(deadline) => format!(
            "{who} requires multi-factor authentication. Set it up before {}; after that you will have to set it up before anything else.",
            super::pages::format_time(deadline)
        ),
        None => format!("{who} requires multi-factor authentication."),
    })
}

/// The banner of the signed-in user, read fresh (see [`policy_banner`]).
pub(super) async fn banner_of(state: &AppState, auth: &FullSession) -> Option<String> {
    let policy = state.services.effective_policy(auth.user.id).await.ok()?;
    let mfa = state.services.mfa_state(auth.user.id).await.ok()?;
    policy_banner(&policy, &mfa)
}

/// The MFA section of Settings → Security, under the user's effective policy.
pub(super) async fn settings_view(
    state: &AppState,
    auth: &FullSession,
) -> Result<MfaSettingsView, Error> {
    let mfa = state.services.mfa_state(auth.user.id).await?;
    let policy = state.services.effective_policy(auth.user.id).await?;
    let settings = state.services.settings().mfa;
    let allowed = tessera_core::factor::AllowedMethods::of(&policy.allowed_methods)
        .unwrap_or(settings.allowed_methods);
    let mut view = MfaSettingsView::new(
        &mfa,
        policy.allow_disable,
        auth.session.mfa_method == Some(tessera_core::factor::MfaMethod::BackupCode),
        allowed,
    );
    view.disable_reason = format!("{}.", capitalize(&policy.disable_refusal()));
    view.policy_banner = policy_banner(&policy, &mfa);
    Ok(view)
}

#[derive(Template, WebTemplate)]
#[template(path = "mfa_reset.html")]
pub(super) struct ResetTemplate {
    pub token: String,
    pub usable: bool,
    pub error: Option<String>,
}

/// A reset token as the form's action may carry it back: URL-safe characters only, bounded.
fn shown_token(token: &str) -> String {
    token
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-_".contains(*c))
        .take(256)
        .collect()
}

/// `GET /mfa-reset/{token}`: the password prompt of a reset link.
pub(super) async fn reset_page(Path(token): Path<String>) -> Response {
    ResetTemplate {
        token: shown_token(&token),
        usable: true,
        error: None,
    }
    .into_response()
}

#[derive(Deserialize)]
struct ResetForm {
    #[serde(default)]
    password: String,
}

/// `POST /mfa-reset/{token}`: the password opens the link; the restricted session goes to setup.
pub(super) async fn reset_submit(
    State(state): State<AppState>,
    Client(client): Client,
    headers: HeaderMap,
    jar: CookieJar,
    Path(token): Path<String>,
    body: Bytes,
) -> Response {
    if !same_origin(&state, &headers) {
        return super::cross_site_refusal("/login", "Sign in");
    }
    let form: ResetForm = match parse_form(&body) {
        Ok(form) => form,
        Err(response) => return response,
    };
    let shown = shown_token(&token);
    match state
        .services
        .open_mfa_reset(&token, &form.password, client)
        .await
    {
        Ok(signed_in) => {
            let jar = jar.add(session_cookie(&state, signed_in.token.expose().to_owned()));
            (jar, Redirect::to(super::REQUIRED_SETUP_PATH)).into_response()
        }
        Err(Error::InvalidCredentials) => (
            StatusCode::UNAUTHORIZED,
            ResetTemplate {
                token: shown,
                usable: true,
                error: Some("The password is incorrect.".into()),
            },
        )
            .into_response(),
        Err(error @ Error::NoSuch(_)) => (
            StatusCode::NOT_FOUND,
            ResetTemplate {
                token: shown,
                usable: false,
                error: Some(capitalize(&error.to_string())),
            },
        )
            .into_response(),
        Err(Error::RateLimited { retry_after_secs }) => (
            StatusCode::TOO_MANY_REQUESTS,
            ResetTemplate {
                token: shown,
                usable: true,
                error: Some(format!(
                    "Too many wrong passwords. Try again in {}.",
                    human_seconds(retry_after_secs)
                )),
            },
        )
            .into_response(),
        Err(other) => error_page(&other),
    }
}
