//! The organization pages: the list (and "Create"), an organization's **Members** page (MFA
//! status, compliance, the non-compliant filter, add, change role, remove) and its **MFA &
//! sign-in security** page (the policy form). Same services as the API, same permission rules.

use super::pages::format_time;
use super::{Client, capitalize, error_page, signed_in_form};
use crate::state::AppState;
use askama::Template;
use askama_web::WebTemplate;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use tessera_core::Error;
use tessera_core::factor::{AllowedMethods, FactorKind};
use tessera_core::org::{OrgPolicy, PolicyScope, Role};
use tessera_core::service::FullSession;

pub(super) struct OrgRow {
    pub id: String,
    pub name: String,
    pub role: &'static str,
    pub manager: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "orgs.html")]
pub(super) struct OrgsTemplate {
    pub csrf_token: String,
    pub user_email: String,
    pub orgs: Vec<OrgRow>,
    pub error: Option<String>,
    pub banner: Option<String>,
}

pub(super) struct MemberRow {
    pub user_id: String,
    pub email: String,
    pub display_name: String,
    pub role: &'static str,
    pub factor_kinds: String,
    pub compliant: bool,
    pub deadline: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "org_members.html")]
pub(super) struct MembersTemplate {
    pub csrf_token: String,
    pub user_email: String,
    pub org_id: String,
    pub org_name: String,
    pub members: Vec<MemberRow>,
    pub noncompliant_only: bool,
    pub notice: Option<String>,
    pub error: Option<String>,
    /// The signed-in user's id (no "Reset MFA" for oneself).
    pub me_id: String,
    pub banner: Option<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "org_security.html")]
pub(super) struct SecurityTemplate {
    pub csrf_token: String,
    pub user_email: String,
    pub org_id: String,
    pub org_name: String,
    pub mfa_required: bool,
    pub role_owner: bool,
    pub role_admin: bool,
    pub role_member: bool,
    pub scope: &'static str,
    pub grace_period_hours: String,
    pub method_totp: bool,
    pub method_webauthn: bool,
    pub method_sms: bool,
    pub method_email: bool,
    pub allow_disable: bool,
    pub app_mfa_max_age_seconds: String,
    pub notice: Option<String>,
    pub error: Option<String>,
    pub banner: Option<String>,
}

async fn session(state: &AppState, headers: &HeaderMap) -> Result<FullSession, Response> {
    super::page_session(state, headers).await
}

/// `GET /orgs`.
pub(super) async fn list_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match session(&state, &headers).await {
        Ok(auth) => render_list(&state, &auth, None, StatusCode::OK).await,
        Err(response) => response,
    }
}

async fn render_list(
    state: &AppState,
    auth: &FullSession,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    let orgs = match state.services.my_orgs(auth).await {
        Ok(orgs) => orgs,
        Err(error) => return error_page(&error),
    };
    let page = OrgsTemplate {
        csrf_token: state.services.csrf_token(auth),
        user_email: auth.user.email.to_string(),
        orgs: orgs
            .iter()
            .map(|(org, role)| OrgRow {
                id: org.id.to_string(),
                name: org.name.clone(),
                role: role.as_str(),
                manager: role.is_manager(),
            })
            .collect(),
        error,
        banner: super::mfa::banner_of(state, auth).await,
    };
    (status, page).into_response()
}

#[derive(Deserialize)]
struct CreateForm {
    #[serde(default)]
    name: String,
}

/// `POST /orgs`: "Create".
pub(super) async fn create_submit(
    State(state): State<AppState>,
    Client(client): Client,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (auth, form) = match signed_in_form::<CreateForm>(&state, &headers, &body).await {
        Ok(parsed) => parsed,
        Err(response) => return response,
    };
    match state.services.create_org(&auth, &form.name, client).await {
        Ok(org) => Redirect::to(&format!("/orgs/{}/security", org.id)).into_response(),
        Err(error @ Error::InvalidRequest(_)) => {
            render_list(
                &state,
                &auth,
                Some(capitalize(&error.to_string())),
                StatusCode::BAD_REQUEST,
            )
            .await
        }
        Err(other) => error_page(&other),
    }
}

#[derive(Deserialize, Default)]
struct MembersQuery {
    filter: Option<String>,
    done: Option<String>,
}

/// `GET /orgs/{id}/members`.
pub(super) async fn members_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: axum::extract::RawQuery,
) -> Response {
    let auth = match session(&state, &headers).await {
        Ok(auth) => auth,
        Err(response) => return response,
    };
    let query: MembersQuery =
        serde_urlencoded::from_str(query.0.as_deref().unwrap_or_default()).unwrap_or_default();
    let notice = match query.done.as_deref() {
        Some("added") => Some("The member was added.".to_owned()),
        Some("role") => Some("The role was changed.".to_owned()),
        Some("removed") => Some("The member was removed.".to_owned()),
        Some("reset") => Some("A reset link was emailed to the member; it works once, for 72 hours. Their MFA changes only when they use it.".to_owned()),
        _ => None,
    };
    let noncompliant = query.filter.as_deref() == Some("noncompliant");
    render_members(
        &state,
        &auth,
        &id,
        noncompliant,
        notice,
        None,
        StatusCode::OK,
    )
    .await
}

async fn render_members(
    state: &AppState,
    auth: &FullSession,
    id: &str,
    noncompliant_only: bool,
    notice: Option<String>,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    let (org, members) = match state
        .services
        .org_members(auth, id, noncompliant_only)
        .await
    {
        Ok(found) => found,
        Err(error) => return error_page(&error),
    };
    let page = MembersTemplate {
        csrf_token: state.services.csrf_token(auth),
        user_email: auth.user.email.to_string(),
        org_id: org.id.to_string(),
        org_name: org.name,
        members: members
            .iter()
            .map(|m| MemberRow {
                user_id: m.member.user.id.to_string(),
                email: m.member.user.email.to_string(),
                display_name: m.member.user.display_name.clone(),
                role: m.member.role.as_str(),
                factor_kinds: m
                    .factor_kinds
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                compliant: m.compliant,
                deadline: m.deadline.map(format_time).unwrap_or_default(),
            })
            .collect(),
        noncompliant_only,
        notice,
        error,
        me_id: auth.user.id.to_string(),
        banner: super::mfa::banner_of(state, auth).await,
    };
    (status, page).into_response()
}

#[derive(Deserialize)]
struct AddForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    role: String,
}

#[derive(Deserialize)]
struct RoleForm {
    #[serde(default)]
    role: String,
}

/// `POST /orgs/{id}/members`: "Add".
pub(super) async fn add_submit(
    State(state): State<AppState>,
    Client(client): Client,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let (auth, form) = match signed_in_form::<AddForm>(&state, &headers, &body).await {
        Ok(parsed) => parsed,
        Err(response) => return response,
    };
    let result = state
        .services
        .add_org_member(&auth, &id, &form.email, &form.role, client)
        .await
        .map(|_| "added");
    member_result(&state, &auth, &id, result).await
}

/// `POST /orgs/{id}/members/{user_id}/role`.
pub(super) async fn role_submit(
    State(state): State<AppState>,
    Client(client): Client,
    headers: HeaderMap,
    Path((id, user_id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let (auth, form) = match signed_in_form::<RoleForm>(&state, &headers, &body).await {
        Ok(parsed) => parsed,
        Err(response) => return response,
    };
    let result = state
        .services
        .change_org_role(&auth, &id, &user_id, &form.role, client)
        .await
        .map(|_| "role");
    member_result(&state, &auth, &id, result).await
}

/// `POST /orgs/{id}/members/{user_id}/remove`.
pub(super) async fn remove_submit(
    State(state): State<AppState>,
    Client(client): Client,
    headers: HeaderMap,
    Path((id, user_id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let (auth, ()) = match signed_in_form::<super::Nothing>(&state, &headers, &body).await {
        Ok((auth, _)) => (auth, ()),
        Err(response) => return response,
    };
    let result = state
        .services
        .remove_org_member(&auth, &id, &user_id, client)
        .await
        .map(|()| "removed");
    if result.is_ok() && user_id == auth.user.id.to_string() {
        return Redirect::to("/orgs").into_response();
    }
    member_result(&state, &auth, &id, result).await
}

/// `POST /orgs/{id}/members/{user_id}/mfa-reset`: "Reset MFA".
pub(super) async fn reset_submit(
    State(state): State<AppState>,
    Client(client): Client,
    headers: HeaderMap,
    Path((id, user_id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let auth = match signed_in_form::<super::Nothing>(&state, &headers, &body).await {
        Ok((auth, _)) => auth,
        Err(response) => return response,
    };
    let result = state
        .services
        .request_org_mfa_reset(&auth, &id, &user_id, client)
        .await
        .map(|_| "reset");
    if result.is_ok() {
        state.outbox_wake.notify_one();
    }
    let result = result.map_err(|error| match error {
        Error::ReauthRequired => Error::invalid(
            "resetting a member's MFA needs a recent password: sign out and sign in again, then retry",
        ),
        Error::PolicyForbids(why) => Error::invalid(why),
        other => other,
    });
    member_result(&state, &auth, &id, result).await
}

async fn member_result(
    state: &AppState,
    auth: &FullSession,
    id: &str,
    result: Result<&'static str, Error>,
) -> Response {
    match result {
        Ok(done) => Redirect::to(&format!("/orgs/{id}/members?done={done}")).into_response(),
        Err(
            error @ (Error::InvalidRequest(_)
            | Error::Conflict(_)
            | Error::NoSuch(_)
            | Error::Forbidden),
        ) => {
            let status = crate::api::error::status_of(&error);
            let message = match &error {
                Error::Forbidden => "Only owners can make, change or remove owners.".to_owned(),
                other => capitalize(&other.to_string()),
            };
            render_members(state, auth, id, false, None, Some(message), status).await
        }
        Err(other) => error_page(&other),
    }
}

/// `GET /orgs/{id}/security`.
pub(super) async fn security_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: axum::extract::RawQuery,
) -> Response {
    let auth = match session(&state, &headers).await {
        Ok(auth) => auth,
        Err(response) => return response,
    };
    let notice = query
        .0
        .as_deref()
        .filter(|q| q.contains("done=saved"))
        .map(|_| "The policy is saved; it applies at each member's next request.".to_owned());
    let (org, role) = match state.services.org_of_member(&auth, &id).await {
        Ok(found) => found,
        Err(error) => return error_page(&error),
    };
    if !role.is_manager() {
        return error_page(&Error::Forbidden);
    }
    let page = policy_template(&state, &auth, &org.id.to_string(), &org.name, &org.policy);
    let banner = super::mfa::banner_of(&state, &auth).await;
    SecurityTemplate {
        notice,
        banner,
        ..page
    }
    .into_response()
}

fn policy_template(
    state: &AppState,
    auth: &FullSession,
    org_id: &str,
    org_name: &str,
    policy: &OrgPolicy,
) -> SecurityTemplate {
    let methods = policy.allowed_methods;
    SecurityTemplate {
        csrf_token: state.services.csrf_token(auth),
        user_email: auth.user.email.to_string(),
        org_id: org_id.to_owned(),
        org_name: org_name.to_owned(),
        mfa_required: policy.mfa_required,
        role_owner: policy.roles.contains(&Role::Owner),
        role_admin: policy.roles.contains(&Role::Admin),
        role_member: policy.roles.contains(&Role::Member),
        scope: policy.scope.as_str(),
        grace_period_hours: policy.grace_period_hours.to_string(),
        method_totp: methods.allows(FactorKind::Totp),
        method_webauthn: methods.allows(FactorKind::Webauthn),
        method_sms: methods.allows(FactorKind::Sms),
        method_email: methods.allows(FactorKind::Email),
        allow_disable: policy.allow_disable,
        app_mfa_max_age_seconds: policy
            .app_mfa_max_age_seconds
            .map(|a| a.to_string())
            .unwrap_or_default(),
        notice: None,
        error: None,
        banner: None,
    }
}

#[derive(Deserialize, Default)]
struct PolicyForm {
    mfa_required: Option<String>,
    role_owner: Option<String>,
    role_admin: Option<String>,
    role_member: Option<String>,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    grace_period_hours: String,
    method_totp: Option<String>,
    method_webauthn: Option<String>,
    method_sms: Option<String>,
    method_email: Option<String>,
    allow_disable: Option<String>,
    #[serde(default)]
    app_mfa_max_age_seconds: String,
    #[serde(default)]
    password: String,
}

impl PolicyForm {
    fn to_policy(&self) -> Result<OrgPolicy, Error> {
        let roles = [
            (&self.role_owner, Role::Owner),
            (&self.role_admin, Role::Admin),
            (&self.role_member, Role::Member),
        ]
        .into_iter()
        .filter(|(on, _)| on.is_some())
        .map(|(_, role)| role)
        .collect();
        let kinds: Vec<FactorKind> = [
            (&self.method_totp, FactorKind::Totp),
            (&self.method_sms, FactorKind::Sms),
            (&self.method_email, FactorKind::Email),
            (&self.method_webauthn, FactorKind::Webauthn),
        ]
        .into_iter()
        .filter(|(on, _)| on.is_some())
        .map(|(_, kind)| kind)
        .collect();
        let grace_period_hours = self.grace_period_hours.trim().parse::<u32>().map_err(|_| {
            Error::invalid("grace period: enter a whole number of hours from 0 to 2160")
        })?;
        let age = self.app_mfa_max_age_seconds.trim();
        let app_mfa_max_age_seconds = if age.is_empty() {
            None
        } else {
            Some(age.parse::<u32>().map_err(|_| {
                Error::invalid("client-app MFA age: enter seconds (0 or more) or leave it empty")
            })?)
        };
        Ok(OrgPolicy {
            mfa_required: self.mfa_required.is_some(),
            roles,
            scope: PolicyScope::parse(&self.scope)?,
            grace_period_hours,
            allowed_methods: AllowedMethods::of(&kinds)
                .ok_or_else(|| Error::invalid("allowed methods: choose at least one method"))?,
            allow_disable: self.allow_disable.is_some(),
            app_mfa_max_age_seconds,
        })
    }
}

/// `POST /orgs/{id}/security`: "Save policy".
pub(super) async fn security_submit(
    State(state): State<AppState>,
    Client(client): Client,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let (mut auth, form) = match signed_in_form::<PolicyForm>(&state, &headers, &body).await {
        Ok(parsed) => parsed,
        Err(response) => return response,
    };
    let (org, role) = match state.services.org_of_member(&auth, &id).await {
        Ok(found) => found,
        Err(error) => return error_page(&error),
    };
    if !role.is_manager() {
        return error_page(&Error::Forbidden);
    }
    if !form.password.is_empty() {
        match state
            .services
            .reauthenticate(&auth, &form.password, client.clone())
            .await
        {
            Ok(_) => match super::page_session(&state, &headers).await {
                Ok(refreshed) => auth = refreshed,
                Err(response) => return response,
            },
            Err(error) => return policy_error(&state, &auth, &org, &form, error),
        }
    }
    let result = match form.to_policy() {
        Ok(policy) => {
            state
                .services
                .set_org_policy(&auth, &id, policy, client)
                .await
        }
        Err(error) => Err(error),
    };
    match result {
        Ok(_) => Redirect::to(&format!("/orgs/{id}/security?done=saved")).into_response(),
        Err(error) => policy_error(&state, &auth, &org, &form, error),
    }
}

fn policy_error(
    state: &AppState,
    auth: &FullSession,
    org: &tessera_core::org::Organization,
    form: &PolicyForm,
    error: Error,
) -> Response {
    let message = match &error {
        Error::ReauthRequired => "Enter your password to save the policy.".to_owned(),
        Error::InvalidCredentials => "The password is incorrect.".to_owned(),
        Error::InvalidRequest(_) | Error::PolicyForbids(_) => capitalize(&error.to_string()),
        _ => return error_page(&error),
    };
    let status = crate::api::error::status_of(&error);
    // Show what was submitted, so nothing has to be ticked again.
    let shown = form.to_policy().unwrap_or_else(|_| org.policy.clone());
    let mut page = policy_template(state, auth, &org.id.to_string(), &org.name, &shown);
    page.grace_period_hours = form.grace_period_hours.clone();
    page.error = Some(message);
    (status, page).into_response()
}
