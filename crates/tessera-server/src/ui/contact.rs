//! Settings → Security → "Add phone" and "Add email": the number or address form, the page
//! that asks for the code that was sent, "Send a new code", and changing a number or address
//! (the old one keeps working until the new one is verified). Same services as the API.
//!
//! Threats: as for the other MFA pages (CSRF tokens on every form; the password is asked
//! again when the re-auth window is closed, before any code is sent).

use super::mfa::{Action, backup_codes_page, reauth_page};
use super::{Client, capitalize, error_page, human_seconds, render_settings_or_required};
use crate::api::wire::DELIVERY_FAILING_MESSAGE;
use crate::state::AppState;
use askama::Template;
use askama_web::WebTemplate;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use tessera_core::Error;
use tessera_core::factor::{FactorKind, mask_destination};
use tessera_core::service::{Authenticated, CodeSent, ContactDestination};

#[derive(Template, WebTemplate)]
#[template(path = "contact_setup.html")]
pub(super) struct ContactTemplate {
    pub title: String,
    pub csrf_token: String,
    /// `sms` or `email`.
    pub kind: &'static str,
    pub is_sms: bool,
    pub replace_factor_id: String,
    /// Empty while the number or address is asked for.
    pub enrollment_id: String,
    pub destination: String,
    pub country_code: String,
    pub phone: String,
    pub email: String,
    pub label: String,
    pub notice: Option<String>,
    pub warning: Option<String>,
    pub error: Option<String>,
}

impl ContactTemplate {
    fn new(state: &AppState, auth: &Authenticated, kind: FactorKind, replace: &str) -> Self {
        let is_sms = kind == FactorKind::Sms;
        let title = match (is_sms, replace.is_empty()) {
            (true, true) => "Add a phone number",
            (true, false) => "Change your phone number",
            (false, true) => "Add an email address for codes",
            (false, false) => "Change the email address for codes",
        };
        Self {
            title: title.to_owned(),
            csrf_token: state.services.csrf_token(auth),
            kind: kind.as_str(),
            is_sms,
            replace_factor_id: replace.to_owned(),
            enrollment_id: String::new(),
            destination: String::new(),
            country_code: String::new(),
            phone: String::new(),
            email: auth.user.email.to_string(),
            label: String::new(),
            notice: None,
            warning: None,
            error: None,
        }
    }

    fn sent(mut self, enrollment_id: String, sent: &CodeSent) -> Self {
        self.enrollment_id = enrollment_id;
        self.destination = sent.masked_destination.clone();
        self.warning = sent
            .delivery_failing
            .then(|| DELIVERY_FAILING_MESSAGE.to_owned());
        self
    }
}

fn parse_kind(kind: &str) -> Option<FactorKind> {
    match kind {
        "sms" => Some(FactorKind::Sms),
        "email" => Some(FactorKind::Email),
        _ => None,
    }
}

fn add_action(kind: FactorKind, replace: &str) -> Action {
    match (kind, replace.is_empty()) {
        (_, false) => Action::ReplaceContact(replace.to_owned()),
        (FactorKind::Sms, true) => Action::AddPhone,
        _ => Action::AddEmail,
    }
}

/// The number or address form, once the re-auth window is open (else the password prompt).
pub(super) fn entry_page(
    state: &AppState,
    auth: &Authenticated,
    kind: FactorKind,
    replace: &str,
) -> Result<Response, Error> {
    if state.services.open_reauth_window(auth).is_none() {
        return Err(Error::ReauthRequired);
    }
    Ok(ContactTemplate::new(state, auth, kind, replace).into_response())
}

/// "Change number": the form for the kind of the named factor.
pub(super) async fn replace_entry_page(
    state: &AppState,
    auth: &Authenticated,
    factor_id: &str,
) -> Result<Response, Error> {
    let factors = state.services.mfa_state(auth.user.id).await?.factors;
    let Some(factor) = factors
        .iter()
        .find(|f| f.id.to_string() == factor_id && f.receives_codes())
    else {
        return Err(Error::NotFound);
    };
    entry_page(state, auth, factor.kind, factor_id)
}

#[derive(Deserialize)]
struct StartForm {
    #[serde(default)]
    country_code: String,
    #[serde(default)]
    phone: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    replace_factor_id: String,
}

/// `POST /settings/security/mfa/contact/{kind}`: "Text me a code" / "Email me a code".
pub(super) async fn start_submit(
    State(state): State<AppState>,
    Client(client): Client,
    headers: HeaderMap,
    Path(kind): Path<String>,
    body: Bytes,
) -> Response {
    let (auth, form) = match super::enrolling_form::<StartForm>(&state, &headers, &body).await {
        Ok(parsed) => parsed,
        Err(response) => return response,
    };
    let Some(kind) = parse_kind(&kind) else {
        return error_page(&Error::NotFound);
    };
    let destination = match kind {
        FactorKind::Sms => ContactDestination::Phone {
            country_code: Some(form.country_code.as_str()),
            number: &form.phone,
        },
        _ => ContactDestination::Email(Some(form.email.as_str())),
    };
    let mut page = ContactTemplate::new(&state, &auth, kind, &form.replace_factor_id);
    page.country_code = form.country_code.clone();
    page.phone = form.phone.clone();
    page.email = form.email.clone();
    match state
        .services
        .start_contact_enrollment(&auth, destination, client)
        .await
    {
        Ok(started) => {
            state.outbox_wake.notify_one();
            page.sent(started.enrollment.id.to_string(), &started.sent)
                .into_response()
        }
        Err(error) => {
            refused(
                &state,
                &auth,
                page,
                add_action(kind, &form.replace_factor_id),
                error,
            )
            .await
        }
    }
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

/// The code page of an unfinished enrollment, rebuilt from the store.
async fn code_page(
    state: &AppState,
    auth: &Authenticated,
    kind: FactorKind,
    enrollment_id: &str,
    replace: &str,
) -> Result<ContactTemplate, Error> {
    let enrollment = state
        .services
        .pending_contact_enrollment(auth, enrollment_id)
        .await?;
    if enrollment.kind != kind {
        return Err(Error::InvalidCode);
    }
    let mut page = ContactTemplate::new(state, auth, kind, replace);
    page.enrollment_id = enrollment.id.to_string();
    page.destination = mask_destination(kind, &enrollment.destination);
    Ok(page)
}

/// `POST /settings/security/mfa/contact/{kind}/{enrollment_id}`: "Verify".
pub(super) async fn confirm_submit(
    State(state): State<AppState>,
    Client(client): Client,
    headers: HeaderMap,
    Path((kind, enrollment_id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let (auth, form) = match super::enrolling_form::<ConfirmForm>(&state, &headers, &body).await {
        Ok(parsed) => parsed,
        Err(response) => return response,
    };
    let Some(kind) = parse_kind(&kind) else {
        return error_page(&Error::NotFound);
    };
    let replace = Some(form.replace_factor_id.as_str()).filter(|id| !id.is_empty());
    let label = Some(form.label.as_str()).filter(|l| !l.trim().is_empty());
    let result = state
        .services
        .confirm_contact_enrollment(
            &auth,
            kind,
            &enrollment_id,
            &form.code,
            label,
            replace,
            client,
        )
        .await;
    match result {
        Ok(confirmed) => {
            state.outbox_wake.notify_one();
            match confirmed.backup_codes {
                Some(codes) => backup_codes_page(&state, &auth, &codes, true),
                None if replace.is_some() => {
                    Redirect::to("/settings/security?done=replaced").into_response()
                }
                None => Redirect::to("/settings/security?done=added").into_response(),
            }
        }
        Err(Error::InvalidCode) => {
            match code_page(&state, &auth, kind, &enrollment_id, &form.replace_factor_id).await {
                Ok(mut page) => {
                    page.label = form.label.clone();
                    page.error = Some(
                        "That code didn't work. Enter the latest code we sent; after 3 wrong tries or 10 minutes, send a new one.".into(),
                    );
                    (StatusCode::UNAUTHORIZED, page).into_response()
                }
                Err(_) => {
                    render_settings_or_required(
                        &state,
                        &auth,
                        Some("The setup expired. Start again.".into()),
                        StatusCode::UNAUTHORIZED,
                    )
                    .await
                }
            }
        }
        Err(error) => {
            let page = match code_page(&state, &auth, kind, &enrollment_id, &form.replace_factor_id)
                .await
            {
                Ok(page) => page,
                Err(_) => ContactTemplate::new(&state, &auth, kind, &form.replace_factor_id),
            };
            refused(
                &state,
                &auth,
                page,
                add_action(kind, &form.replace_factor_id),
                error,
            )
            .await
        }
    }
}

#[derive(Deserialize)]
struct ResendForm {
    #[serde(default)]
    replace_factor_id: String,
}

/// `POST /settings/security/mfa/contact/{kind}/{enrollment_id}/resend`: "Send a new code".
pub(super) async fn resend_submit(
    State(state): State<AppState>,
    Client(client): Client,
    headers: HeaderMap,
    Path((kind, enrollment_id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let (auth, form) = match super::enrolling_form::<ResendForm>(&state, &headers, &body).await {
        Ok(parsed) => parsed,
        Err(response) => return response,
    };
    let Some(kind) = parse_kind(&kind) else {
        return error_page(&Error::NotFound);
    };
    let Ok(page) = code_page(&state, &auth, kind, &enrollment_id, &form.replace_factor_id).await
    else {
        return render_settings_or_required(
            &state,
            &auth,
            Some("The setup expired. Start again.".into()),
            StatusCode::NOT_FOUND,
        )
        .await;
    };
    match state
        .services
        .resend_enrollment_code(&auth, kind, &enrollment_id, client)
        .await
    {
        Ok(sent) => {
            state.outbox_wake.notify_one();
            let mut page = page.sent(enrollment_id, &sent);
            page.notice = Some("We sent a new code; the earlier one no longer works.".into());
            page.into_response()
        }
        Err(error) => {
            refused(
                &state,
                &auth,
                page,
                add_action(kind, &form.replace_factor_id),
                error,
            )
            .await
        }
    }
}

/// The page for a refused start, confirmation or resend: the same form with the reason.
async fn refused(
    state: &AppState,
    auth: &Authenticated,
    mut page: ContactTemplate,
    action: Action,
    error: Error,
) -> Response {
    let status = crate::api::error::status_of(&error);
    let message = match &error {
        Error::ReauthRequired => return reauth_page(state, auth, &action, None, StatusCode::OK),
        Error::RateLimited { retry_after_secs } => format!(
            "Too many codes were sent. For your security, try again in {}.",
            human_seconds(*retry_after_secs)
        ),
        Error::InvalidRequest(_) | Error::Conflict(_) => capitalize(&error.to_string()),
        Error::NotFound => "That sign-in method no longer exists.".to_owned(),
        Error::PolicyForbids(_) => {
            return render_settings_or_required(
                state,
                auth,
                Some(capitalize(&error.to_string())),
                StatusCode::FORBIDDEN,
            )
            .await;
        }
        _ => return error_page(&error),
    };
    page.error = Some(message);
    let mut response = (status, page).into_response();
    if let Error::RateLimited { retry_after_secs } = error {
        super::with_retry_after(&mut response, retry_after_secs);
    }
    response
}
