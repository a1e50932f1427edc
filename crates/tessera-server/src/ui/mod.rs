//! The HTML pages: sign-up, sign-in, sign-out and Settings → Security. Server-rendered
//! (askama), working without JavaScript. Handlers call the same services as the API.
//!
//! Threats: CSRF (every form of a signed-in page carries the session-bound token; sign-in and
//! sign-up forms refuse cross-site posts by `Sec-Fetch-Site`/`Origin`), clickjacking and
//! injection (security headers on every response, auto-escaped templates).
#![expect(
    clippy::result_large_err,
    reason = "page handlers exit early with a finished Response; boxing it buys nothing"
)]

mod contact;
mod mfa;
mod orgs;
mod pages;

use crate::api::extract::{Client, session_token};
use crate::ratelimit::limit_by_client;
use crate::state::AppState;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use pages::*;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tessera_core::Error;
use tessera_core::ids::SessionId;
use tessera_core::service::{Authenticated, FullSession, NewAccount, PasswordOutcome};
use time::Duration;

/// Where a session that must set up MFA is sent, whatever page it asks for.
pub const REQUIRED_SETUP_PATH: &str = "/settings/security/required";

const STYLESHEET: &str = include_str!("../../static/tessera.css");
const SCRIPT: &str = include_str!("../../static/tessera.js");

async fn script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        SCRIPT,
    )
}

/// The page routes.
pub fn router(state: &AppState) -> Router<AppState> {
    let credential_forms = Router::new()
        .route("/login", post(login_submit))
        .route("/signup", post(signup_submit))
        .route(mfa::SECOND_STEP_PATH, post(mfa::second_step_submit))
        .route("/login/mfa/send", post(mfa::send_submit))
        .route("/mfa-reset/{token}", post(mfa::reset_submit))
        .route_layer(from_fn_with_state(state.clone(), limit_by_client));
    Router::new()
        .route("/", get(home))
        .route("/login", get(login_page))
        .route("/signup", get(signup_page))
        .route("/logout", post(logout))
        .route("/settings/security", get(security_page))
        .route("/settings/security/password", post(change_password))
        .route(
            "/settings/security/sessions/{id}/revoke",
            post(revoke_session),
        )
        .route("/settings/security/mfa", post(mfa::action_submit))
        .route(
            REQUIRED_SETUP_PATH,
            get(mfa::required_get).post(mfa::required_submit),
        )
        .route("/settings/security/reauth", post(mfa::reauth_submit))
        .route(
            "/settings/security/mfa/setup/{enrollment_id}",
            post(mfa::confirm_submit),
        )
        .route(
            "/settings/security/mfa/contact/{kind}",
            post(contact::start_submit),
        )
        .route(
            "/settings/security/mfa/contact/{kind}/{enrollment_id}",
            post(contact::confirm_submit),
        )
        .route(
            "/settings/security/mfa/contact/{kind}/{enrollment_id}/resend",
            post(contact::resend_submit),
        )
        .route("/orgs", get(orgs::list_page).post(orgs::create_submit))
        .route(
            "/orgs/{id}/members",
            get(orgs::members_page).post(orgs::add_submit),
        )
        .route("/orgs/{id}/members/{user_id}/role", post(orgs::role_submit))
        .route(
            "/orgs/{id}/members/{user_id}/remove",
            post(orgs::remove_submit),
        )
        .route(
            "/orgs/{id}/members/{user_id}/mfa-reset",
            post(orgs::reset_submit),
        )
        .route(
            "/orgs/{id}/security",
            get(orgs::security_page).post(orgs::security_submit),
        )
        .route("/mfa-reset/{token}", get(mfa::reset_page))
        .route(mfa::SECOND_STEP_PATH, get(mfa::second_step_page))
        .route("/static/tessera.css", get(stylesheet))
        .route("/static/tessera.js", get(script))
        .merge(credential_forms)
}

async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        STYLESHEET,
    )
}

/// The signed-in user of a page, or a redirect to the sign-in page.
async fn page_session(state: &AppState, headers: &HeaderMap) -> Result<FullSession, Response> {
    let Some((token, _)) = session_token(&request_parts(headers), state.cookie_name()) else {
        return Err(Redirect::to("/login").into_response());
    };
    match state
        .services
        .authenticate(&token)
        .await
        .and_then(Authenticated::full)
    {
        Ok(full) => Ok(full),
        Err(Error::Unauthenticated) => Err(Redirect::to("/login").into_response()),
        // A restricted session is sent to the setup page from every page, so neither a typed
        // URL nor the Back button leaves it.
        Err(Error::MfaEnrollmentRequired) => Err(Redirect::to(REQUIRED_SETUP_PATH).into_response()),
        Err(other) => Err(error_page(&other)),
    }
}

/// A form with no fields but the CSRF token.
#[derive(Deserialize)]
struct Nothing {}

/// The signed-in user of a page that a restricted (`mfa_enrollment_required`) session may
/// use too: the setup pages.
async fn enrolling_session(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Authenticated, Response> {
    let Some((token, _)) = session_token(&request_parts(headers), state.cookie_name()) else {
        return Err(Redirect::to("/login").into_response());
    };
    match state.services.authenticate(&token).await {
        Ok(auth) => Ok(auth),
        Err(Error::Unauthenticated) => Err(Redirect::to("/login").into_response()),
        Err(other) => Err(error_page(&other)),
    }
}

/// A setup page's form post (restricted sessions included), its CSRF token checked.
async fn enrolling_form<T: DeserializeOwned>(
    state: &AppState,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(Authenticated, T), Response> {
    let auth = enrolling_session(state, headers).await?;
    let CsrfForm { csrf_token } = parse_form(body)?;
    if !csrf_ok(state, &auth, &csrf_token) {
        return Err(csrf_failure());
    }
    Ok((auth, parse_form(body)?))
}

/// Settings → Security with `notice` for a full session, the setup-required page for a
/// restricted one.
async fn render_settings_or_required(
    state: &AppState,
    auth: &Authenticated,
    notice: Option<String>,
    status: StatusCode,
) -> Response {
    match auth.clone().full() {
        Ok(full) => render_security(state, &full, notice, PasswordErrors::default(), status).await,
        Err(_) => mfa::required_page(state, auth, notice, status).await,
    }
}

/// Browsers say where a form post came from; refuse other sites (login CSRF). Clients that send
/// neither header are not browsers and are not exposed to CSRF.
fn same_origin(state: &AppState, headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return matches!(site, "same-origin" | "none");
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let public =
        url::Url::parse(&state.settings.public_url).map(|url| url.origin().ascii_serialization());
    if public.is_ok_and(|public| public.eq_ignore_ascii_case(origin)) {
        return true;
    }
    url::Url::parse(origin).ok().is_some_and(|url| {
        let authority = match url.port() {
            Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_owned(),
        };
        authority.eq_ignore_ascii_case(host)
    })
}

/// The answer to a sign-in or sign-up form posted from another site.
fn cross_site_refusal(form: &str, form_name: &str) -> Response {
    message_page(
        StatusCode::FORBIDDEN,
        "Form refused",
        "This form came from another site.",
        form,
        form_name,
    )
}

fn parse_form<T: DeserializeOwned>(body: &Bytes) -> Result<T, Response> {
    serde_urlencoded::from_bytes(body).map_err(|_| {
        message_page(
            StatusCode::BAD_REQUEST,
            "Bad request",
            "The form could not be read. Go back and try again.",
            "/",
            "Home",
        )
    })
}

/// A signed-in page's form post: its session, its fields, and its CSRF token checked.
async fn signed_in_form<T: DeserializeOwned>(
    state: &AppState,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(FullSession, T), Response> {
    let auth = page_session(state, headers).await?;
    let CsrfForm { csrf_token } = parse_form(body)?;
    if !csrf_ok(state, &auth, &csrf_token) {
        return Err(csrf_failure());
    }
    Ok((auth, parse_form(body)?))
}

fn csrf_ok(state: &AppState, auth: &Authenticated, presented: &str) -> bool {
    state.services.check_csrf(auth, presented)
}

fn csrf_failure() -> Response {
    message_page(
        StatusCode::FORBIDDEN,
        "Form expired",
        "This form is no longer valid. Reload the page and try again.",
        "/settings/security",
        "Back to Settings",
    )
}

fn session_cookie(state: &AppState, token: String) -> Cookie<'static> {
    let mut cookie = Cookie::new(state.cookie_name(), token);
    cookie.set_http_only(true);
    cookie.set_same_site(SameSite::Lax);
    cookie.set_path("/");
    cookie.set_secure(state.settings.is_https());
    cookie.set_max_age(Duration::minutes(i64::from(
        state.settings.session_lifetime_minutes,
    )));
    cookie
}

fn removal_cookie(state: &AppState) -> Cookie<'static> {
    let mut cookie = Cookie::new(state.cookie_name(), "");
    cookie.set_path("/");
    cookie.set_secure(state.settings.is_https());
    cookie
}

async fn home(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match page_session(&state, &headers).await {
        Ok(_) => Redirect::to("/settings/security").into_response(),
        Err(redirect) => redirect,
    }
}

#[derive(Deserialize, Default)]
struct LoginQuery {
    created: Option<String>,
    signed_out: Option<String>,
    expired: Option<String>,
}

async fn login_page(State(state): State<AppState>, query: axum::extract::RawQuery) -> Response {
    let query: LoginQuery =
        serde_urlencoded::from_str(query.0.as_deref().unwrap_or_default()).unwrap_or_default();
    let notice = if query.created.is_some() {
        Some("Your account is ready. Sign in to continue.".to_owned())
    } else if query.signed_out.is_some() {
        Some("You are signed out.".to_owned())
    } else if query.expired.is_some() {
        Some("Your sign-in took too long. Enter your password again.".to_owned())
    } else {
        None
    };
    LoginTemplate {
        email: String::new(),
        error: None,
        notice,
        signup_open: signup_open(&state),
    }
    .into_response()
}

fn signup_open(state: &AppState) -> bool {
    state.settings.signup == crate::config::SignupMode::Open
}

#[derive(Deserialize)]
struct LoginForm {
    email: String,
    password: String,
}

async fn login_submit(
    State(state): State<AppState>,
    Client(client): Client,
    headers: HeaderMap,
    jar: CookieJar,
    body: Bytes,
) -> Response {
    if !same_origin(&state, &headers) {
        return cross_site_refusal("/login", "Sign in");
    }
    let form: LoginForm = match parse_form(&body) {
        Ok(form) => form,
        Err(response) => return response,
    };
    // Signing in replaces the session this browser had, in the same transaction.
    let previous = match session_token(&request_parts(&headers), state.cookie_name()) {
        Some((old, _)) => state.services.authenticate(&old).await.ok(),
        None => None,
    };
    let result = state
        .services
        .sign_in_with_password(&form.email, &form.password, client, previous.as_ref())
        .await;
    state.metrics.record_signin(&result);
    let retry_page = |status: StatusCode, error: String| {
        let page = LoginTemplate {
            email: form.email.clone(),
            error: Some(error),
            notice: None,
            signup_open: signup_open(&state),
        };
        (status, page).into_response()
    };
    match result {
        Ok(PasswordOutcome::SignedIn(signed_in)) => {
            let jar = jar.add(session_cookie(&state, signed_in.token.expose().to_owned()));
            (jar, Redirect::to("/settings/security")).into_response()
        }
        Ok(PasswordOutcome::EnrollmentRequired { signed_in, .. }) => {
            let jar = jar.add(session_cookie(&state, signed_in.token.expose().to_owned()));
            (jar, Redirect::to(REQUIRED_SETUP_PATH)).into_response()
        }
        Ok(PasswordOutcome::MfaRequired(challenge)) => {
            let jar = jar.add(mfa::challenge_cookie(&state, &challenge));
            (jar, Redirect::to(mfa::SECOND_STEP_PATH)).into_response()
        }
        Err(Error::InvalidCredentials) => retry_page(
            StatusCode::UNAUTHORIZED,
            "The email or password is incorrect.".into(),
        ),
        Err(Error::InvalidRequest(_)) => retry_page(
            StatusCode::BAD_REQUEST,
            "Enter a valid email address and your password.".into(),
        ),
        Err(Error::RateLimited { retry_after_secs }) => {
            let mut response = retry_page(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "Too many attempts. Try again in {}.",
                    human_seconds(retry_after_secs)
                ),
            );
            with_retry_after(&mut response, retry_after_secs);
            response
        }
        Err(other) => error_page(&other),
    }
}

fn request_parts(headers: &HeaderMap) -> axum::http::request::Parts {
    let mut request = axum::http::Request::new(());
    *request.headers_mut() = headers.clone();
    request.into_parts().0
}

async fn signup_page(State(state): State<AppState>) -> Response {
    if !signup_open(&state) {
        return signup_closed_page();
    }
    SignupTemplate {
        email: String::new(),
        display_name: String::new(),
        errors: SignupErrors::default(),
    }
    .into_response()
}

fn signup_closed_page() -> Response {
    message_page(
        StatusCode::FORBIDDEN,
        "Sign-up is closed",
        "Accounts on this server are created by its operator.",
        "/login",
        "Sign in",
    )
}

#[derive(Deserialize)]
struct SignupForm {
    email: String,
    password: String,
    #[serde(default)]
    display_name: String,
}

async fn signup_submit(
    State(state): State<AppState>,
    Client(client): Client,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !same_origin(&state, &headers) {
        return cross_site_refusal("/signup", "Sign up");
    }
    let form: SignupForm = match parse_form(&body) {
        Ok(form) => form,
        Err(response) => return response,
    };
    let account = NewAccount {
        email: form.email.clone(),
        password: form.password.into(),
        display_name: Some(form.display_name.clone()),
    };
    let mut errors = SignupErrors::default();
    let status = match state.services.sign_up(account, client).await {
        Ok(_) => {
            state.outbox_wake.notify_one();
            return Redirect::to("/login?created=1").into_response();
        }
        Err(Error::SignupDisabled) => return signup_closed_page(),
        Err(Error::WeakPassword(reason)) => {
            errors.password = Some(reason);
            StatusCode::BAD_REQUEST
        }
        Err(Error::InvalidRequest(message)) => {
            let (field, text) = message.split_once(": ").unwrap_or(("", message.as_str()));
            let text = capitalize(text);
            match field {
                "email" => errors.email = Some(format!("{text}.")),
                "password" => errors.password = Some(format!("{text}.")),
                "display_name" => errors.display_name = Some(format!("{text}.")),
                _ => errors.form = Some(message.clone()),
            }
            StatusCode::BAD_REQUEST
        }
        Err(Error::Conflict(_)) => {
            errors.email =
                Some("An account with this email already exists. Sign in instead.".into());
            StatusCode::CONFLICT
        }
        Err(Error::RateLimited { .. }) => {
            errors.form = Some("Too many attempts. Wait a minute and try again.".into());
            StatusCode::TOO_MANY_REQUESTS
        }
        Err(other) => return error_page(&other),
    };
    (
        status,
        SignupTemplate {
            email: form.email,
            display_name: form.display_name,
            errors,
        },
    )
        .into_response()
}

/// Adds `Retry-After` to a page answering 429.
fn with_retry_after(response: &mut Response, retry_after_secs: u64) {
    if let Ok(value) = retry_after_secs.to_string().parse() {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
}

/// `text` with its first letter upper-cased (error messages start lower-case).
pub(crate) fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf_token: String,
}

async fn logout(
    State(state): State<AppState>,
    Client(client): Client,
    headers: HeaderMap,
    jar: CookieJar,
    body: Bytes,
) -> Response {
    // Any session may sign out, whatever its state; only a missing or dead one skips the
    // server side.
    let token = session_token(&request_parts(&headers), state.cookie_name());
    let auth = match token {
        None => {
            return (jar.remove(removal_cookie(&state)), Redirect::to("/login")).into_response();
        }
        Some((token, _)) => match state.services.authenticate(&token).await {
            Ok(auth) => auth,
            Err(Error::Unauthenticated) => {
                return (jar.remove(removal_cookie(&state)), Redirect::to("/login"))
                    .into_response();
            }
            Err(error) => return error_page(&error),
        },
    };
    let form: CsrfForm = match parse_form(&body) {
        Ok(form) => form,
        Err(response) => return response,
    };
    if !csrf_ok(&state, &auth, &form.csrf_token) {
        return csrf_failure();
    }
    if let Err(error) = state.services.sign_out(&auth, client).await {
        return error_page(&error);
    }
    (
        jar.remove(removal_cookie(&state)),
        Redirect::to("/login?signed_out=1"),
    )
        .into_response()
}

#[derive(Deserialize, Default)]
struct SecurityQuery {
    done: Option<String>,
}

async fn security_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: axum::extract::RawQuery,
) -> Response {
    let auth = match page_session(&state, &headers).await {
        Ok(auth) => auth,
        Err(response) => return response,
    };
    let query: SecurityQuery =
        serde_urlencoded::from_str(query.0.as_deref().unwrap_or_default()).unwrap_or_default();
    let notice = match query.done.as_deref() {
        Some("password") => {
            Some("Your password was changed. Other sessions were signed out.".to_owned())
        }
        Some("revoked") => Some("The session was signed out.".to_owned()),
        Some("enabled") => Some("Multi-factor authentication is on. Other sessions were signed out.".to_owned()),
        Some("reset") => Some("Your new authenticator app is set up; the old one no longer works. Other sessions were signed out.".to_owned()),
        Some("removed") => Some("The sign-in method was removed.".to_owned()),
        Some("added") => Some("The new sign-in method is ready. Other sessions were signed out.".to_owned()),
        Some("replaced") => Some("The new number or address is set up; the old one no longer gets codes. Other sessions were signed out.".to_owned()),
        Some("preferred") => Some("Your preferred sign-in method was changed.".to_owned()),
        Some("disabled") => Some("Multi-factor authentication is off.".to_owned()),
        Some("skipped") => Some("Multi-factor authentication is on, without backup codes. Generate them below before you need them.".to_owned()),
        Some("codes") => Some("Your new backup codes are active; earlier codes no longer work.".to_owned()),
        _ => None,
    };
    render_security(
        &state,
        &auth,
        notice,
        PasswordErrors::default(),
        StatusCode::OK,
    )
    .await
}

async fn render_security(
    state: &AppState,
    auth: &FullSession,
    notice: Option<String>,
    password_errors: PasswordErrors,
    status: StatusCode,
) -> Response {
    let sessions = match state.services.list_sessions(auth).await {
        Ok(sessions) => sessions,
        Err(error) => return error_page(&error),
    };
    let events = match state.services.security_events(auth, None, Some(20)).await {
        Ok(events) => events,
        Err(error) => return error_page(&error),
    };
    let mfa = match mfa::settings_view(state, auth).await {
        Ok(mfa) => mfa,
        Err(error) => return error_page(&error),
    };
    let page = SecurityTemplate {
        mfa,
        user_email: auth.user.email.to_string(),
        display_name: auth.user.display_name.clone(),
        created_at: format_time(auth.user.created_at),
        csrf_token: state.services.csrf_token(auth),
        notice,
        password_errors,
        sessions: sessions
            .iter()
            .map(|s| SessionRow::new(s, s.id == auth.session.id))
            .collect(),
        events: events.iter().map(EventRow::from).collect(),
    };
    (status, page).into_response()
}

#[derive(Deserialize)]
struct PasswordForm {
    current_password: String,
    new_password: String,
}

async fn change_password(
    State(state): State<AppState>,
    Client(client): Client,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (auth, form) = match signed_in_form::<PasswordForm>(&state, &headers, &body).await {
        Ok(parsed) => parsed,
        Err(response) => return response,
    };
    let mut errors = PasswordErrors::default();
    let status = match state
        .services
        .change_password(&auth, &form.current_password, &form.new_password, client)
        .await
    {
        Ok(_) => {
            state.outbox_wake.notify_one();
            return Redirect::to("/settings/security?done=password").into_response();
        }
        Err(Error::InvalidCredentials) => {
            errors.current_password = Some("The current password is incorrect.".into());
            StatusCode::UNAUTHORIZED
        }
        Err(Error::WeakPassword(reason)) => {
            errors.new_password = Some(reason);
            StatusCode::BAD_REQUEST
        }
        Err(Error::InvalidRequest(message)) => {
            errors.new_password = Some(capitalize(
                message
                    .split_once(": ")
                    .map_or(message.as_str(), |(_, m)| m),
            ));
            StatusCode::BAD_REQUEST
        }
        Err(Error::RateLimited { retry_after_secs }) => {
            errors.form = Some(format!(
                "Too many wrong passwords. Try again in {}.",
                human_seconds(retry_after_secs)
            ));
            StatusCode::TOO_MANY_REQUESTS
        }
        Err(other) => return error_page(&other),
    };
    render_security(&state, &auth, None, errors, status).await
}

async fn revoke_session(
    State(state): State<AppState>,
    Client(client): Client,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let (auth, CsrfForm { .. }) = match signed_in_form::<CsrfForm>(&state, &headers, &body).await {
        Ok(parsed) => parsed,
        Err(response) => return response,
    };
    let Ok(id) = id.parse::<SessionId>() else {
        return error_page(&Error::NotFound);
    };
    match state.services.revoke_session(&auth, id, client).await {
        Ok(()) if id == auth.session.id => Redirect::to("/login?signed_out=1").into_response(),
        Ok(()) => Redirect::to("/settings/security?done=revoked").into_response(),
        Err(error) => error_page(&error),
    }
}

/// An HTML page for an error that has no better place to be shown.
pub fn error_page(error: &Error) -> Response {
    let status = crate::api::error::status_of(error);
    match error {
        Error::NotFound => message_page(
            status,
            "Not found",
            "There is nothing at this address.",
            "/",
            "Home",
        ),
        Error::Unavailable(detail) => {
            tracing::error!(detail = %detail, "database unavailable");
            message_page(
                status,
                "Temporarily unavailable",
                "Tessera cannot reach its database right now. Try again shortly.",
                "/",
                "Try again",
            )
        }
        Error::Internal(detail) => {
            tracing::error!(detail = %detail, "internal error");
            message_page(
                status,
                "Something went wrong",
                "Something went wrong on our side.",
                "/",
                "Home",
            )
        }
        other => message_page(status, "Not allowed", &other.to_string(), "/", "Home"),
    }
}

/// The page for unknown addresses.
pub async fn not_found_page() -> Response {
    error_page(&Error::NotFound)
}
