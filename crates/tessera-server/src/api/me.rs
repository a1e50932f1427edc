//! `/api/v1/me`: the account, its password and its security activity.

use super::error::{ApiResult, ErrorEnvelope};
use super::extract::{ApiJson, ApiQuery, ApiSession, Client, FullApiSession};
use super::wire::*;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use secrecy::ExposeSecret;

/// The account, its CSRF token, MFA state and effective policy.
#[utoipa::path(get, path = "/api/v1/me", tag = "me",
    responses((status = 200, body = MeResponse), (status = 401, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn me(
    State(state): State<AppState>,
    ApiSession(auth): ApiSession,
) -> ApiResult<Json<MeResponse>> {
    let mfa = state.services.mfa_state(auth.user.id).await?;
    let policy = state.services.effective_policy(auth.user.id).await?;
    Ok(Json(MeResponse {
        user: (&auth.user).into(),
        csrf_token: state.services.csrf_token(&auth),
        mfa: MfaStatus::from(&mfa),
        policy: EffectivePolicy::from(&policy),
        reauth_until: state.services.open_reauth_window(&auth),
    }))
}

/// Change the password; signs out every other session and emails the user.
#[utoipa::path(post, path = "/api/v1/me/password", tag = "me",
    request_body = ChangePasswordRequest,
    responses(
        (status = 204),
        (status = 400, description = "weak_password or invalid_request", body = ErrorEnvelope),
        (status = 401, description = "invalid_credentials", body = ErrorEnvelope),
        (status = 429, body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub async fn change_password(
    State(state): State<AppState>,
    Client(client): Client,
    FullApiSession(auth): FullApiSession,
    ApiJson(body): ApiJson<ChangePasswordRequest>,
) -> ApiResult<StatusCode> {
    state
        .services
        .change_password(
            &auth,
            body.current_password.expose_secret(),
            body.new_password.expose_secret(),
            client,
        )
        .await?;
    state.outbox_wake.notify_one();
    Ok(StatusCode::NO_CONTENT)
}

/// A page of security events, newest first.
#[utoipa::path(get, path = "/api/v1/me/events", tag = "me",
    params(EventsQuery),
    responses((status = 200, body = EventsResponse), (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn events(
    State(state): State<AppState>,
    FullApiSession(auth): FullApiSession,
    ApiQuery(query): ApiQuery<EventsQuery>,
) -> ApiResult<Json<EventsResponse>> {
    let events = state
        .services
        .security_events(&auth, query.before, query.limit)
        .await?;
    Ok(Json(EventsResponse {
        events: events.iter().map(EventResponse::from).collect(),
    }))
}
