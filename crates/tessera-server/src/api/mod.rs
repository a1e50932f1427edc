//! The JSON API under `/api/v1` (API.md), plus the operational endpoints. Routes are registered
//! through utoipa-axum, so the router and `GET /api/v1/openapi.json` come from one list: a
//! route cannot exist without being published (and the route-inventory test walks it).

pub mod accounts;
pub mod error;
pub mod extract;
pub mod factors;
pub mod me;
pub mod ops;
pub mod orgs;
pub mod wire;

use crate::ratelimit::limit_by_client;
use crate::state::AppState;
use axum::middleware::from_fn_with_state;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

#[derive(OpenApi)]
#[openapi(
    info(title = "Tessera API", description = "Accounts, sessions and multi-factor authentication. Errors use the envelope {\"error\": {\"code\", \"message\"}}."),
    modifiers(&BearerAuth),
    tags(
        (name = "accounts", description = "Sign-up"),
        (name = "sessions", description = "Sign-in, sessions, sign-out and re-authentication"),
        (name = "me", description = "The signed-in account"),
        (name = "factors", description = "Multi-factor authentication: authenticator apps, phone numbers, email addresses, backup codes"),
        (name = "orgs", description = "Organizations, members and MFA policy"),
        (name = "operations", description = "Health, readiness and metrics"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Paths anyone may call without a session. Everything else must answer 401 without one; the
/// route-inventory test holds the router to this list.
pub const PUBLIC_PATHS: &[(&str, &str)] = &[
    ("post", "/api/v1/accounts"),
    ("post", "/api/v1/sessions"),
    ("post", "/api/v1/sessions/mfa"),
    ("post", "/api/v1/sessions/mfa/send"),
    ("post", "/api/v1/mfa-resets/{token}"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/api/v1/openapi.json"),
];

/// Every API route, with its OpenAPI description.
pub fn router(state: &AppState) -> OpenApiRouter<AppState> {
    // Unauthenticated endpoints that take credentials get the per-address limit.
    let unauthenticated = OpenApiRouter::new()
        .routes(routes!(accounts::create_account))
        .routes(routes!(accounts::create_session))
        .routes(routes!(accounts::second_step))
        .routes(routes!(accounts::send_code))
        .routes(routes!(orgs::open_mfa_reset))
        .route_layer(from_fn_with_state(state.clone(), limit_by_client));
    let authenticated = OpenApiRouter::new()
        .routes(routes!(accounts::list_sessions))
        .routes(routes!(accounts::delete_current_session))
        .routes(routes!(accounts::delete_session))
        .routes(routes!(accounts::reauth))
        .routes(routes!(accounts::reauth_send))
        .routes(routes!(me::me))
        .routes(routes!(me::change_password))
        .routes(routes!(me::events))
        .routes(routes!(factors::start_totp))
        .routes(routes!(factors::confirm_totp))
        .routes(routes!(factors::start_sms))
        .routes(routes!(factors::start_email))
        .routes(routes!(factors::resend_sms))
        .routes(routes!(factors::resend_email))
        .routes(routes!(factors::confirm_sms))
        .routes(routes!(factors::confirm_email))
        .routes(routes!(factors::delete_factor, factors::update_factor))
        .routes(routes!(factors::disable_mfa))
        .routes(routes!(factors::regenerate_backup_codes))
        .routes(routes!(orgs::create_org, orgs::list_orgs))
        .routes(routes!(orgs::get_org))
        .routes(routes!(orgs::list_members, orgs::add_member))
        .routes(routes!(orgs::change_role, orgs::remove_member))
        .routes(routes!(orgs::put_policy))
        .routes(routes!(orgs::org_events))
        .routes(routes!(orgs::request_mfa_reset));
    let operations = OpenApiRouter::new()
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
        .routes(routes!(ops::openapi_json));
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(unauthenticated)
        .merge(authenticated)
        .merge(operations)
}
