//! `/api/v1/accounts` and `/api/v1/sessions`: sign-up, sign-in, sessions, sign-out, re-auth.

use super::error::{ApiError, ApiResult, ErrorEnvelope};
use super::extract::{ApiJson, ApiSession, Client, FullApiSession};
use super::wire::*;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use tessera_core::Error;
use tessera_core::factor::FactorKind;
use tessera_core::ids::SessionId;
use tessera_core::service::{NewAccount, PasswordOutcome, SecondFactorProof, SignedIn};

/// Sign up.
#[utoipa::path(post, path = "/api/v1/accounts", tag = "accounts",
    request_body = CreateAccountRequest,
    responses(
        (status = 201, body = AccountResponse),
        (status = 400, description = "invalid_request or weak_password", body = ErrorEnvelope),
        (status = 403, description = "signup_disabled", body = ErrorEnvelope),
        (status = 409, description = "conflict: email already registered", body = ErrorEnvelope),
        (status = 429, description = "rate_limited", body = ErrorEnvelope),
    ))]
pub async fn create_account(
    State(state): State<AppState>,
    Client(client): Client,
    ApiJson(body): ApiJson<CreateAccountRequest>,
) -> ApiResult<(StatusCode, Json<AccountResponse>)> {
    let account = NewAccount {
        email: body.email,
        password: body.password,
        display_name: body.display_name,
    };
    let user = state.services.sign_up(account, client).await?;
    state.outbox_wake.notify_one();
    Ok((
        StatusCode::CREATED,
        Json(AccountResponse {
            user: (&user).into(),
        }),
    ))
}

/// Sign in with a password: a session, or a challenge when a second factor is owed.
#[utoipa::path(post, path = "/api/v1/sessions", tag = "sessions",
    request_body = SignInRequest,
    responses(
        (status = 201, description = "authenticated", body = SignInResponse),
        (status = 200, description = "mfa_required: continue at POST /api/v1/sessions/mfa", body = MfaRequiredResponse),
        (status = 400, body = ErrorEnvelope),
        (status = 401, description = "invalid_credentials", body = ErrorEnvelope),
        (status = 429, description = "rate_limited (Retry-After)", body = ErrorEnvelope),
    ))]
pub async fn create_session(
    State(state): State<AppState>,
    Client(client): Client,
    ApiJson(body): ApiJson<SignInRequest>,
) -> ApiResult<Response> {
    let result = state
        .services
        .sign_in_with_password(&body.email, body.password.expose_secret(), client, None)
        .await;
    state.metrics.record_signin(&result);
    Ok(match result? {
        PasswordOutcome::SignedIn(signed_in) => signed_in_response(&signed_in).into_response(),
        PasswordOutcome::EnrollmentRequired {
            signed_in,
            deadline,
        } => {
            let (status, Json(mut body)) = signed_in_response(&signed_in);
            body.status = "mfa_enrollment_required";
            body.deadline = deadline;
            (status, Json(body)).into_response()
        }
        PasswordOutcome::MfaRequired(challenge) => {
            (StatusCode::OK, Json(MfaRequiredResponse::from(&challenge))).into_response()
        }
    })
}

fn signed_in_response(signed_in: &SignedIn) -> (StatusCode, Json<SignInResponse>) {
    (
        StatusCode::CREATED,
        Json(SignInResponse {
            status: "authenticated",
            session_token: signed_in.token.expose().to_owned(),
            expires_at: signed_in.session.expires_at,
            user: (&signed_in.user).into(),
            amr: signed_in.session.amr.clone(),
            deadline: None,
        }),
    )
}

/// The second step of sign-in: a TOTP or backup code for the challenge.
#[utoipa::path(post, path = "/api/v1/sessions/mfa", tag = "sessions",
    request_body = SecondStepRequest,
    responses(
        (status = 201, body = SignInResponse),
        (status = 400, body = ErrorEnvelope),
        (status = 401, description = "invalid_code: wrong, used or expired code or challenge", body = ErrorEnvelope),
        (status = 429, description = "rate_limited: too many wrong codes (Retry-After)", body = ErrorEnvelope),
    ))]
pub async fn second_step(
    State(state): State<AppState>,
    Client(client): Client,
    ApiJson(body): ApiJson<SecondStepRequest>,
) -> ApiResult<(StatusCode, Json<SignInResponse>)> {
    let code = body.code.as_ref().map_or("", CodeInput::as_code);
    let proof = match body.method.as_str() {
        "totp" => SecondFactorProof::Totp {
            factor_id: body.factor_id.as_deref(),
            code,
        },
        "backup_code" => SecondFactorProof::BackupCode(code),
        "sms" | "email" => SecondFactorProof::Code {
            kind: if body.method == "sms" {
                FactorKind::Sms
            } else {
                FactorKind::Email
            },
            factor_id: body.factor_id.as_deref(),
            code,
        },
        "webauthn" => {
            return Err(ApiError::from(Error::invalid(format!(
                "method: {} is not available on this server yet",
                body.method
            ))));
        }
        _ => {
            return Err(ApiError::from(Error::invalid(
                "method: must be one of totp, backup_code, sms, email, webauthn",
            )));
        }
    };
    let result = state
        .services
        .complete_second_step(body.challenge_token.expose_secret(), proof, client)
        .await;
    let signed_in = result?;
    state.outbox_wake.notify_one();
    Ok(signed_in_response(&signed_in))
}

/// Send a sign-in code to an SMS or email factor of the challenge's user.
#[utoipa::path(post, path = "/api/v1/sessions/mfa/send", tag = "sessions",
    request_body = SendCodeRequest,
    responses(
        (status = 202, body = CodeSentResponse),
        (status = 400, description = "invalid_request: the factor does not receive codes (an authenticator app)", body = ErrorEnvelope),
        (status = 401, description = "invalid_code: the challenge is unknown, used or expired", body = ErrorEnvelope),
        (status = 404, description = "not one of the user's factors", body = ErrorEnvelope),
        (status = 429, description = "rate_limited: too many codes or wrong codes (Retry-After); nothing was sent", body = ErrorEnvelope),
    ))]
pub async fn send_code(
    State(state): State<AppState>,
    Client(client): Client,
    ApiJson(body): ApiJson<SendCodeRequest>,
) -> ApiResult<(StatusCode, Json<CodeSentResponse>)> {
    let sent = state
        .services
        .send_signin_code(
            body.challenge_token.expose_secret(),
            &body.factor_id,
            client,
        )
        .await?;
    state.outbox_wake.notify_one();
    Ok((StatusCode::ACCEPTED, Json((&sent).into())))
}

/// The caller's live sessions.
#[utoipa::path(get, path = "/api/v1/sessions", tag = "sessions",
    responses((status = 200, body = SessionsResponse), (status = 401, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn list_sessions(
    State(state): State<AppState>,
    FullApiSession(auth): FullApiSession,
) -> ApiResult<Json<SessionsResponse>> {
    let sessions = state.services.list_sessions(&auth).await?;
    let sessions = sessions
        .iter()
        .map(|s| SessionResponse::new(s, s.id == auth.session.id))
        .collect();
    Ok(Json(SessionsResponse { sessions }))
}

/// Sign out (end the current session).
#[utoipa::path(delete, path = "/api/v1/sessions/current", tag = "sessions",
    responses((status = 204), (status = 401, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn delete_current_session(
    State(state): State<AppState>,
    Client(client): Client,
    ApiSession(auth): ApiSession,
) -> ApiResult<StatusCode> {
    state.services.sign_out(&auth, client).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// End one of the caller's sessions.
#[utoipa::path(delete, path = "/api/v1/sessions/{id}", tag = "sessions",
    params(("id" = String, Path, description = "Session id")),
    responses((status = 204), (status = 401, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn delete_session(
    State(state): State<AppState>,
    Client(client): Client,
    FullApiSession(auth): FullApiSession,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id: SessionId = id.parse().map_err(ApiError::from)?;
    state.services.revoke_session(&auth, id, client).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Open the 10-minute re-auth window: with the password, or with a code sent to an SMS or
/// email factor for re-authentication.
#[utoipa::path(post, path = "/api/v1/reauth", tag = "sessions",
    request_body = ReauthRequest,
    responses(
        (status = 200, body = ReauthResponse),
        (status = 400, description = "neither a password nor a code method", body = ErrorEnvelope),
        (status = 401, description = "invalid_credentials or invalid_code", body = ErrorEnvelope),
        (status = 429, body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub async fn reauth(
    State(state): State<AppState>,
    Client(client): Client,
    FullApiSession(auth): FullApiSession,
    ApiJson(body): ApiJson<ReauthRequest>,
) -> ApiResult<Json<ReauthResponse>> {
    let services = &state.services;
    let reauth_until = match (&body.password, body.method.as_deref()) {
        (Some(password), None) => {
            services
                .reauthenticate(&auth, password.expose_secret(), client)
                .await?
        }
        (None, Some(method @ ("sms" | "email"))) => {
            let kind = if method == "sms" {
                FactorKind::Sms
            } else {
                FactorKind::Email
            };
            let code = body.code.as_ref().map_or("", CodeInput::as_code);
            services
                .reauthenticate_with_code(&auth, kind, body.factor_id.as_deref(), code, client)
                .await?
        }
        _ => {
            return Err(ApiError::from(Error::invalid(
                "give either \"password\", or \"method\" (sms or email) with the \"code\" sent by POST /api/v1/reauth/send",
            )));
        }
    };
    Ok(Json(ReauthResponse { reauth_until }))
}

/// Send a re-authentication code to one of the caller's SMS or email factors.
#[utoipa::path(post, path = "/api/v1/reauth/send", tag = "sessions",
    request_body = ReauthSendRequest,
    responses(
        (status = 202, body = CodeSentResponse),
        (status = 400, description = "the factor does not receive codes", body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope),
        (status = 404, description = "not one of your factors", body = ErrorEnvelope),
        (status = 429, description = "rate_limited (Retry-After); nothing was sent", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub async fn reauth_send(
    State(state): State<AppState>,
    Client(client): Client,
    FullApiSession(auth): FullApiSession,
    ApiJson(body): ApiJson<ReauthSendRequest>,
) -> ApiResult<(StatusCode, Json<CodeSentResponse>)> {
    let sent = state
        .services
        .send_reauth_code(&auth, &body.factor_id, client)
        .await?;
    state.outbox_wake.notify_one();
    Ok((StatusCode::ACCEPTED, Json((&sent).into())))
}
