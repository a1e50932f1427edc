//! `/api/v1/me/factors`, `/api/v1/me/backup-codes` and `/api/v1/me/mfa`: enrolling an
//! authenticator app, resetting it to a new device, removing factors, backup codes, disabling
//! MFA. Every route needs a full session and (checked by the service) the re-auth window.

use super::error::{ApiResult, ErrorEnvelope};
use super::extract::{ApiJson, Client, FullApiSession};
use super::wire::*;
use crate::qr;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

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
    FullApiSession(auth): FullApiSession,
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
    FullApiSession(auth): FullApiSession,
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
    Ok((
        StatusCode::CREATED,
        Json(ConfirmFactorResponse {
            factor: (&confirmed.factor).into(),
            backup_codes: confirmed
                .backup_codes
                .map(|codes| codes.iter().map(|c| c.display()).collect()),
            sessions_revoked: confirmed.sessions_revoked,
        }),
    ))
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
