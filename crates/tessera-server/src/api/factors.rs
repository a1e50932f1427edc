//! `/api/v1/me/factors`, `/api/v1/me/backup-codes` and `/api/v1/me/mfa`: enrolling an
//! authenticator app, a phone number or an address, resetting them, labels and the preferred
//! factor, removing factors, backup codes, disabling MFA. Every route needs a full session and
//! (checked by the service) the re-auth window — except enrolling a factor (start, resend,
//! confirm), which a restricted `mfa_enrollment_required` session may do too.

use super::error::{ApiResult, ErrorEnvelope};
use super::extract::{ApiJson, ApiSession, Client, FullApiSession};
use super::wire::*;
use crate::qr;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use tessera_core::event::ClientInfo;
use tessera_core::factor::FactorKind;
use tessera_core::service::{Authenticated, ContactDestination, FactorUpdate};

/// Start enrolling an authenticator app: a new secret and its QR code.
#[utoipa::path(post, path = "/api/v1/me/factors/totp", tag = "factors",
    responses(
        (status = 201, body = TotpEnrollmentResponse),
        (status = 401, body = ErrorEnvelope),
        (status = 403, description = "reauth_required", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub async fn start_totp(
    State(state): State<AppState>,
    ApiSession(auth): ApiSession,
    _body: ApiJson<EmptyRequest>,
) -> ApiResult<(StatusCode, Json<TotpEnrollmentResponse>)> {
    let started = state.services.start_totp_enrollment(&auth).await?;
    let qr_svg = qr::svg(&started.otpauth_uri)?;
    Ok((
        StatusCode::CREATED,
        Json(TotpEnrollmentResponse {
            enrollment_id: started.enrollment.id.to_string(),
            secret: started.secret_base32.to_string(),
            otpauth_uri: started.otpauth_uri.to_string(),
            qr_svg,
            expires_at: started.enrollment.expires_at,
        }),
    ))
}

/// Confirm an authenticator app with a current code; with `replace_factor_id`, swap it for
/// an older one (reset to a new device).
#[utoipa::path(post, path = "/api/v1/me/factors/totp/{enrollment_id}/confirm", tag = "factors",
    params(("enrollment_id" = String, Path, description = "From the enrollment")),
    request_body = ConfirmFactorRequest,
    responses(
        (status = 201, body = ConfirmFactorResponse),
        (status = 400, body = ErrorEnvelope),
        (status = 401, description = "invalid_code", body = ErrorEnvelope),
        (status = 403, description = "reauth_required", body = ErrorEnvelope),
        (status = 404, description = "replace_factor_id is not one of your authenticator apps", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub async fn confirm_totp(
    State(state): State<AppState>,
    Client(client): Client,
    ApiSession(auth): ApiSession,
    Path(enrollment_id): Path<String>,
    ApiJson(body): ApiJson<ConfirmFactorRequest>,
) -> ApiResult<(StatusCode, Json<ConfirmFactorResponse>)> {
    let confirmed = state
        .services
        .confirm_totp_enrollment(
            &auth,
            &enrollment_id,
            body.code.as_code(),
            body.label.as_deref(),
            body.replace_factor_id.as_deref(),
            client,
        )
        .await?;
    state.outbox_wake.notify_one();
    Ok((StatusCode::CREATED, Json(confirmed_response(confirmed))))
}

/// Start verifying a phone number: a 6-digit code is sent to it by text message.
#[utoipa::path(post, path = "/api/v1/me/factors/sms", tag = "factors",
    request_body = StartSmsRequest,
    responses(
        (status = 202, body = ContactEnrollmentResponse),
        (status = 400, description = "invalid_request: the number and what to fix", body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope),
        (status = 403, description = "reauth_required or policy_forbids", body = ErrorEnvelope),
        (status = 409, description = "the number is already a factor", body = ErrorEnvelope),
        (status = 429, description = "rate_limited: too many codes (Retry-After); nothing was sent", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub async fn start_sms(
    State(state): State<AppState>,
    Client(client): Client,
    ApiSession(auth): ApiSession,
    ApiJson(body): ApiJson<StartSmsRequest>,
) -> ApiResult<(StatusCode, Json<ContactEnrollmentResponse>)> {
    let destination = ContactDestination::Phone {
        country_code: body.country_code.as_deref(),
        number: &body.phone,
    };
    start_contact(&state, &auth, destination, client).await
}

/// Start verifying an email address (the account's by default): a 6-digit code is sent to it.
#[utoipa::path(post, path = "/api/v1/me/factors/email", tag = "factors",
    request_body = StartEmailRequest,
    responses(
        (status = 202, body = ContactEnrollmentResponse),
        (status = 400, description = "invalid_request: the address and what to fix", body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope),
        (status = 403, description = "reauth_required or policy_forbids", body = ErrorEnvelope),
        (status = 409, description = "the address is already a factor", body = ErrorEnvelope),
        (status = 429, description = "rate_limited: too many codes (Retry-After); nothing was sent", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub async fn start_email(
    State(state): State<AppState>,
    Client(client): Client,
    ApiSession(auth): ApiSession,
    ApiJson(body): ApiJson<StartEmailRequest>,
) -> ApiResult<(StatusCode, Json<ContactEnrollmentResponse>)> {
    let destination = ContactDestination::Email(body.email.as_deref());
    start_contact(&state, &auth, destination, client).await
}

async fn start_contact(
    state: &AppState,
    auth: &Authenticated,
    destination: ContactDestination<'_>,
    client: ClientInfo,
) -> ApiResult<(StatusCode, Json<ContactEnrollmentResponse>)> {
    let started = state
        .services
        .start_contact_enrollment(auth, destination, client)
        .await?;
    state.outbox_wake.notify_one();
    Ok((
        StatusCode::ACCEPTED,
        Json(ContactEnrollmentResponse {
            enrollment_id: started.enrollment.id.to_string(),
            expires_at: started.enrollment.expires_at,
            sent: (&started.sent).into(),
        }),
    ))
}

/// Send a new code for an unfinished phone enrollment; the earlier code stops working.
#[utoipa::path(post, path = "/api/v1/me/factors/sms/{enrollment_id}/resend", tag = "factors",
    params(("enrollment_id" = String, Path, description = "From the enrollment")),
    responses(
        (status = 202, body = CodeSentResponse),
        (status = 401, body = ErrorEnvelope),
        (status = 403, description = "reauth_required", body = ErrorEnvelope),
        (status = 404, description = "no such unfinished enrollment", body = ErrorEnvelope),
        (status = 429, description = "rate_limited (Retry-After); nothing was sent", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub async fn resend_sms(
    State(state): State<AppState>,
    Client(client): Client,
    ApiSession(auth): ApiSession,
    Path(enrollment_id): Path<String>,
    _body: ApiJson<EmptyRequest>,
) -> ApiResult<(StatusCode, Json<CodeSentResponse>)> {
    resend(&state, &auth, FactorKind::Sms, &enrollment_id, client).await
}

/// Send a new code for an unfinished email enrollment; the earlier code stops working.
#[utoipa::path(post, path = "/api/v1/me/factors/email/{enrollment_id}/resend", tag = "factors",
    params(("enrollment_id" = String, Path, description = "From the enrollment")),
    responses(
        (status = 202, body = CodeSentResponse),
        (status = 401, body = ErrorEnvelope),
        (status = 403, description = "reauth_required", body = ErrorEnvelope),
        (status = 404, description = "no such unfinished enrollment", body = ErrorEnvelope),
        (status = 429, description = "rate_limited (Retry-After); nothing was sent", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub async fn resend_email(
    State(state): State<AppState>,
    Client(client): Client,
    ApiSession(auth): ApiSession,
    Path(enrollment_id): Path<String>,
    _body: ApiJson<EmptyRequest>,
) -> ApiResult<(StatusCode, Json<CodeSentResponse>)> {
    resend(&state, &auth, FactorKind::Email, &enrollment_id, client).await
}

async fn resend(
    state: &AppState,
    auth: &Authenticated,
    kind: FactorKind,
    enrollment_id: &str,
    client: ClientInfo,
) -> ApiResult<(StatusCode, Json<CodeSentResponse>)> {
    let sent = state
        .services
        .resend_enrollment_code(auth, kind, enrollment_id, client)
        .await?;
    state.outbox_wake.notify_one();
    Ok((StatusCode::ACCEPTED, Json((&sent).into())))
}

/// Confirm a phone number with the code it received; with `replace_factor_id`, it replaces
/// an older number (phone-number reset) in the same transaction.
#[utoipa::path(post, path = "/api/v1/me/factors/sms/{enrollment_id}/confirm", tag = "factors",
    params(("enrollment_id" = String, Path, description = "From the enrollment")),
    request_body = ConfirmFactorRequest,
    responses(
        (status = 201, body = ConfirmFactorResponse),
        (status = 400, body = ErrorEnvelope),
        (status = 401, description = "invalid_code", body = ErrorEnvelope),
        (status = 403, description = "reauth_required or policy_forbids", body = ErrorEnvelope),
        (status = 404, description = "replace_factor_id is not one of your phone numbers", body = ErrorEnvelope),
        (status = 409, description = "the number is already a factor", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub async fn confirm_sms(
    State(state): State<AppState>,
    Client(client): Client,
    ApiSession(auth): ApiSession,
    Path(enrollment_id): Path<String>,
    ApiJson(body): ApiJson<ConfirmFactorRequest>,
) -> ApiResult<(StatusCode, Json<ConfirmFactorResponse>)> {
    confirm_contact(&state, &auth, FactorKind::Sms, &enrollment_id, body, client).await
}

/// Confirm an email address with the code it received; with `replace_factor_id`, it
/// replaces an older address in the same transaction.
#[utoipa::path(post, path = "/api/v1/me/factors/email/{enrollment_id}/confirm", tag = "factors",
    params(("enrollment_id" = String, Path, description = "From the enrollment")),
    request_body = ConfirmFactorRequest,
    responses(
        (status = 201, body = ConfirmFactorResponse),
        (status = 400, body = ErrorEnvelope),
        (status = 401, description = "invalid_code", body = ErrorEnvelope),
        (status = 403, description = "reauth_required or policy_forbids", body = ErrorEnvelope),
        (status = 404, description = "replace_factor_id is not one of your email factors", body = ErrorEnvelope),
        (status = 409, description = "the address is already a factor", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub async fn confirm_email(
    State(state): State<AppState>,
    Client(client): Client,
    ApiSession(auth): ApiSession,
    Path(enrollment_id): Path<String>,
    ApiJson(body): ApiJson<ConfirmFactorRequest>,
) -> ApiResult<(StatusCode, Json<ConfirmFactorResponse>)> {
    confirm_contact(
        &state,
        &auth,
        FactorKind::Email,
        &enrollment_id,
        body,
        client,
    )
    .await
}

async fn confirm_contact(
    state: &AppState,
    auth: &Authenticated,
    kind: FactorKind,
    enrollment_id: &str,
    body: ConfirmFactorRequest,
    client: ClientInfo,
) -> ApiResult<(StatusCode, Json<ConfirmFactorResponse>)> {
    let confirmed = state
        .services
        .confirm_contact_enrollment(
            auth,
            kind,
            enrollment_id,
            body.code.as_code(),
            body.label.as_deref(),
            body.replace_factor_id.as_deref(),
            client,
        )
        .await?;
    state.outbox_wake.notify_one();
    Ok((StatusCode::CREATED, Json(confirmed_response(confirmed))))
}

fn confirmed_response(confirmed: tessera_core::service::ConfirmedFactor) -> ConfirmFactorResponse {
    ConfirmFactorResponse {
        factor: (&confirmed.factor).into(),
        backup_codes: confirmed
            .backup_codes
            .map(|codes| codes.iter().map(|c| c.display()).collect()),
        sessions_revoked: confirmed.sessions_revoked,
    }
}

/// Rename a factor or make it the preferred one (offered first at sign-in).
#[utoipa::path(patch, path = "/api/v1/me/factors/{id}", tag = "factors",
    params(("id" = String, Path, description = "Factor id")),
    request_body = UpdateFactorRequest,
    responses(
        (status = 200, body = FactorResponse),
        (status = 400, body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope),
        (status = 403, description = "reauth_required", body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub async fn update_factor(
    State(state): State<AppState>,
    Client(client): Client,
    FullApiSession(auth): FullApiSession,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateFactorRequest>,
) -> ApiResult<Json<FactorResponse>> {
    let update = FactorUpdate {
        label: body.label.as_deref(),
        preferred: body.preferred,
    };
    let factor = state
        .services
        .update_factor(&auth, &id, update, client)
        .await?;
    Ok(Json(FactorResponse {
        factor: (&factor).into(),
    }))
}

/// Remove a factor; removing the last one turns MFA off (where allowed).
#[utoipa::path(delete, path = "/api/v1/me/factors/{id}", tag = "factors",
    params(("id" = String, Path, description = "Factor id")),
    responses(
        (status = 204),
        (status = 401, body = ErrorEnvelope),
        (status = 403, description = "reauth_required or policy_forbids", body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub async fn delete_factor(
    State(state): State<AppState>,
    Client(client): Client,
    FullApiSession(auth): FullApiSession,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    state.services.remove_factor(&auth, &id, client).await?;
    state.outbox_wake.notify_one();
    Ok(StatusCode::NO_CONTENT)
}

/// Turn MFA off: removes every factor and backup code.
#[utoipa::path(delete, path = "/api/v1/me/mfa", tag = "factors",
    responses(
        (status = 204),
        (status = 400, description = "MFA is not on", body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope),
        (status = 403, description = "reauth_required or policy_forbids", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub async fn disable_mfa(
    State(state): State<AppState>,
    Client(client): Client,
    FullApiSession(auth): FullApiSession,
) -> ApiResult<StatusCode> {
    state.services.disable_mfa(&auth, client).await?;
    state.outbox_wake.notify_one();
    Ok(StatusCode::NO_CONTENT)
}

/// Replace every backup code with 10 new ones.
#[utoipa::path(post, path = "/api/v1/me/backup-codes", tag = "factors",
    responses(
        (status = 201, body = BackupCodesResponse),
        (status = 400, description = "MFA is not on", body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope),
        (status = 403, description = "reauth_required or backup_codes_locked", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub async fn regenerate_backup_codes(
    State(state): State<AppState>,
    Client(client): Client,
    FullApiSession(auth): FullApiSession,
    _body: ApiJson<EmptyRequest>,
) -> ApiResult<(StatusCode, Json<BackupCodesResponse>)> {
    let codes = state
        .services
        .regenerate_backup_codes(&auth, client)
        .await?;
    state.outbox_wake.notify_one();
    Ok((
        StatusCode::CREATED,
        Json(BackupCodesResponse {
            codes: codes.iter().map(|c| c.display()).collect(),
        }),
    ))
}
