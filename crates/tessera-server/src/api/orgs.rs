//! `/api/v1/orgs`: organizations, members and roles, the MFA policy, compliance and the
//! organization's events. Every route needs a full session; who may do what is decided by
//! the service (`service/orgs.rs`): non-members get `404`, members `403` for admin actions.

use super::error::{ApiError, ApiResult, ErrorEnvelope};
use super::extract::{ApiJson, ApiQuery, Client, FullApiSession};
use super::wire::*;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use tessera_core::Error;
use tessera_core::org::Role;

/// Create an organization; the caller becomes its owner.
#[utoipa::path(post, path = "/api/v1/orgs", tag = "orgs",
    request_body = CreateOrgRequest,
    responses((status = 201, body = OrgEnvelope), (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn create_org(
    State(state): State<AppState>,
    Client(client): Client,
    FullApiSession(auth): FullApiSession,
    ApiJson(body): ApiJson<CreateOrgRequest>,
) -> ApiResult<(StatusCode, Json<OrgEnvelope>)> {
    let org = state.services.create_org(&auth, &body.name, client).await?;
    Ok((
        StatusCode::CREATED,
        Json(OrgEnvelope {
            org: OrgResponse::new(&org, Role::Owner),
        }),
    ))
}

/// The caller's organizations.
#[utoipa::path(get, path = "/api/v1/orgs", tag = "orgs",
    responses((status = 200, body = OrgsResponse), (status = 401, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn list_orgs(
    State(state): State<AppState>,
    FullApiSession(auth): FullApiSession,
) -> ApiResult<Json<OrgsResponse>> {
    let orgs = state.services.my_orgs(&auth).await?;
    Ok(Json(OrgsResponse {
        orgs: orgs
            .iter()
            .map(|(org, role)| OrgResponse::new(org, *role))
            .collect(),
    }))
}

/// An organization and its policy (members).
#[utoipa::path(get, path = "/api/v1/orgs/{id}", tag = "orgs",
    params(("id" = String, Path, description = "Organization id")),
    responses((status = 200, body = OrgDetailResponse), (status = 401, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)),
    security(("bearer" = [])))]
pub async fn get_org(
    State(state): State<AppState>,
    FullApiSession(auth): FullApiSession,
    Path(id): Path<String>,
) -> ApiResult<Json<OrgDetailResponse>> {
    let (org, role) = state.services.org_of_member(&auth, &id).await?;
    Ok(Json(OrgDetailResponse {
        org: OrgResponse::new(&org, role),
        policy: (&org.policy).into(),
    }))
}

/// The members, their MFA status and compliance (admins and owners);
/// `?filter=noncompliant` lists only those who do not comply.
#[utoipa::path(get, path = "/api/v1/orgs/{id}/members", tag = "orgs",
    params(("id" = String, Path, description = "Organization id"), MembersQuery),
    responses(
        (status = 200, body = MembersResponse),
        (status = 400, body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope),
        (status = 403, description = "members may not list compliance", body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub async fn list_members(
    State(state): State<AppState>,
    FullApiSession(auth): FullApiSession,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<MembersQuery>,
) -> ApiResult<Json<MembersResponse>> {
    let noncompliant = match query.filter.as_deref() {
        None | Some("") | Some("all") => false,
        Some("noncompliant") => true,
        Some(_) => {
            return Err(ApiError::from(Error::invalid(
                "filter: expected noncompliant or all",
            )));
        }
    };
    let (_, members) = state.services.org_members(&auth, &id, noncompliant).await?;
    Ok(Json(MembersResponse {
        members: members.iter().map(MemberResponse::from).collect(),
    }))
}

/// Add an existing account as a member (admins and owners; only owners add owners).
#[utoipa::path(post, path = "/api/v1/orgs/{id}/members", tag = "orgs",
    params(("id" = String, Path, description = "Organization id")),
    request_body = AddMemberRequest,
    responses(
        (status = 201, body = RoleResponse),
        (status = 400, body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope),
        (status = 404, description = "no such organization, or no account with that email", body = ErrorEnvelope),
        (status = 409, description = "already a member", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub async fn add_member(
    State(state): State<AppState>,
    Client(client): Client,
    FullApiSession(auth): FullApiSession,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<AddMemberRequest>,
) -> ApiResult<(StatusCode, Json<RoleResponse>)> {
    let member = state
        .services
        .add_org_member(&auth, &id, &body.email, &body.role, client)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(RoleResponse {
            user_id: member.user.id.to_string(),
            role: member.role.as_str(),
        }),
    ))
}

/// Change a member's role (admins and owners; only owners touch owners; never the last owner).
#[utoipa::path(patch, path = "/api/v1/orgs/{id}/members/{user_id}", tag = "orgs",
    params(("id" = String, Path, description = "Organization id"), ("user_id" = String, Path, description = "Member")),
    request_body = ChangeRoleRequest,
    responses(
        (status = 200, body = RoleResponse),
        (status = 400, body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope),
        (status = 409, description = "the last owner", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub async fn change_role(
    State(state): State<AppState>,
    Client(client): Client,
    FullApiSession(auth): FullApiSession,
    Path((id, user_id)): Path<(String, String)>,
    ApiJson(body): ApiJson<ChangeRoleRequest>,
) -> ApiResult<Json<RoleResponse>> {
    let role = state
        .services
        .change_org_role(&auth, &id, &user_id, &body.role, client)
        .await?;
    Ok(Json(RoleResponse {
        user_id,
        role: role.as_str(),
    }))
}

/// Remove a member, or leave (your own user id).
#[utoipa::path(delete, path = "/api/v1/orgs/{id}/members/{user_id}", tag = "orgs",
    params(("id" = String, Path, description = "Organization id"), ("user_id" = String, Path, description = "Member")),
    responses(
        (status = 204),
        (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope),
        (status = 409, description = "the last owner", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub async fn remove_member(
    State(state): State<AppState>,
    Client(client): Client,
    FullApiSession(auth): FullApiSession,
    Path((id, user_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    state
        .services
        .remove_org_member(&auth, &id, &user_id, client)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Replace the MFA policy (admins and owners; needs a re-auth window).
#[utoipa::path(put, path = "/api/v1/orgs/{id}/policy", tag = "orgs",
    params(("id" = String, Path, description = "Organization id")),
    request_body = OrgPolicyBody,
    responses(
        (status = 200, body = OrgPolicyResponse),
        (status = 400, description = "what to fix in the policy", body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope),
        (status = 403, description = "forbidden or reauth_required", body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub async fn put_policy(
    State(state): State<AppState>,
    Client(client): Client,
    FullApiSession(auth): FullApiSession,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<OrgPolicyBody>,
) -> ApiResult<Json<OrgPolicyResponse>> {
    // Who asks is checked before what they ask: a non-member learns nothing from errors,
    // and a member is refused before their policy is read.
    let (_, role) = state.services.org_of_member(&auth, &id).await?;
    if !role.is_manager() {
        return Err(ApiError::from(Error::Forbidden));
    }
    let policy = body.to_policy()?;
    let policy = state
        .services
        .set_org_policy(&auth, &id, policy, client)
        .await?;
    Ok(Json(OrgPolicyResponse {
        policy: (&policy).into(),
    }))
}

/// The organization's security events (admins and owners), newest first.
#[utoipa::path(get, path = "/api/v1/orgs/{id}/events", tag = "orgs",
    params(("id" = String, Path, description = "Organization id"), EventsQuery),
    responses(
        (status = 200, body = EventsResponse),
        (status = 400, body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope),
        (status = 403, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub async fn org_events(
    State(state): State<AppState>,
    FullApiSession(auth): FullApiSession,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<EventsQuery>,
) -> ApiResult<Json<EventsResponse>> {
    let events = state
        .services
        .org_events(&auth, &id, query.before, query.limit)
        .await?;
    Ok(Json(EventsResponse {
        events: events.iter().map(EventResponse::from).collect(),
    }))
}

/// Email a member a single-use link (72 hours) to reset their MFA (admins and owners; needs a
/// re-auth window). Nothing changes until the member uses it with their password.
#[utoipa::path(post, path = "/api/v1/orgs/{id}/members/{user_id}/mfa-reset", tag = "orgs",
    params(("id" = String, Path, description = "Organization id"), ("user_id" = String, Path, description = "Member")),
    responses(
        (status = 202, body = MfaResetResponse),
        (status = 400, description = "your own account", body = ErrorEnvelope),
        (status = 401, body = ErrorEnvelope),
        (status = 403, description = "forbidden, reauth_required, or policy_forbids (admins cannot reset owners)", body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub async fn request_mfa_reset(
    State(state): State<AppState>,
    Client(client): Client,
    FullApiSession(auth): FullApiSession,
    Path((id, user_id)): Path<(String, String)>,
) -> ApiResult<(StatusCode, Json<MfaResetResponse>)> {
    let expires_at = state
        .services
        .request_org_mfa_reset(&auth, &id, &user_id, client)
        .await?;
    state.outbox_wake.notify_one();
    Ok((StatusCode::ACCEPTED, Json(MfaResetResponse { expires_at })))
}

/// Open an MFA reset link with the member's password: a restricted session that may set up a
/// new factor; confirming one completes the reset.
#[utoipa::path(post, path = "/api/v1/mfa-resets/{token}", tag = "orgs",
    params(("token" = String, Path, description = "From the emailed link")),
    request_body = OpenResetRequest,
    responses(
        (status = 201, body = SignInResponse),
        (status = 401, description = "invalid_credentials", body = ErrorEnvelope),
        (status = 404, description = "the link was used, expired or never existed", body = ErrorEnvelope),
        (status = 429, body = ErrorEnvelope),
    ))]
pub async fn open_mfa_reset(
    State(state): State<AppState>,
    Client(client): Client,
    Path(token): Path<String>,
    ApiJson(body): ApiJson<OpenResetRequest>,
) -> ApiResult<(StatusCode, Json<SignInResponse>)> {
    let signed_in = state
        .services
        .open_mfa_reset(
            &token,
            secrecy::ExposeSecret::expose_secret(&body.password),
            client,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(SignInResponse {
            status: "mfa_enrollment_required",
            session_token: signed_in.token.expose().to_owned(),
            expires_at: signed_in.session.expires_at,
            user: (&signed_in.user).into(),
            amr: signed_in.session.amr.clone(),
            deadline: None,
        }),
    ))
}
