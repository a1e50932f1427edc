//! MFA reset by link: an organization's owner or admin (or the operator, `tessera admin
//! reset-mfa --link`) asks; the member gets a single-use link valid 72 hours; opening it asks
//! for their password — never a way around it — and gives a restricted session that may only
//! set up a new factor; confirming one removes every old factor and backup code (see
//! [`Services::activate_factor`](super::Services)), signs out other sessions and tells the
//! member and the admin. Until then nothing changes and the old factor keeps working.
//!
//! Threats: a stolen or replayed link (stored only as SHA-256, single use by one conditional
//! `UPDATE`, 72 hours, voided by a newer request, and useless without the password), an admin
//! taking over an owner (refused), and resetting oneself around one's own factors (refused:
//! Settings is the way).

use super::signin::SignedIn;
use super::{FullSession, Services};
use crate::crypto::Token;
use crate::email::Email;
use crate::event::{ClientInfo, EventKind, NewEvent};
use crate::ids::{EnrollmentId, OrgId, UserId};
use crate::notification::{Channel, NewOutboxMessage, Notification};
use crate::org::{MFA_RESET_LINK_TTL, MfaResetRequest, Organization, Role};
use crate::otc::seal_secret_for_outbox;
use crate::session::{REAUTH_WINDOW, SessionState};
use crate::store::StoreTx;
use crate::user::User;
use crate::{Error, Result};
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The purpose a reset link's token is sealed for in the outbox.
pub const RESET_LINK_PURPOSE: &str = "mfa-reset-link";

fn unusable_link() -> Error {
    Error::NoSuch(
        "this reset link was already used, has expired or does not exist: ask your administrator for a new one"
            .into(),
    )
}

impl Services {
    /// `POST /api/v1/orgs/{id}/members/{user_id}/mfa-reset` (owners and admins, re-auth
    /// window): emails the member a reset link. Returns when it expires.
    pub async fn request_org_mfa_reset(
        &self,
        auth: &FullSession,
        org_id: &str,
        user_id: &str,
        client: ClientInfo,
    ) -> Result<OffsetDateTime> {
        let (org, actor) = self.org_of_member(auth, org_id).await?;
        if !actor.is_manager() {
            return Err(Error::Forbidden);
        }
        self.require_reauth(auth)?;
        let target: UserId = user_id.parse().map_err(|_| Error::NotFound)?;
        if target == auth.user.id {
            return Err(Error::invalid(
                "you cannot reset your own MFA this way: change your sign-in methods in Settings → Security",
            ));
        }
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        let (actor, role) =
            super::orgs::lock_roles(tx.as_mut(), org.id, auth.user.id, target).await?;
        if !actor.is_manager() {
            return Err(Error::Forbidden);
        }
        if role == Role::Owner && actor != Role::Owner {
            return Err(Error::PolicyForbids(
                "admins cannot reset an owner's MFA: ask another owner".into(),
            ));
        }
        let Some(user) = self.store.user_by_id(target).await? else {
            return Err(Error::NotFound);
        };
        let expires_at = self
            .send_reset_link(
                tx.as_mut(),
                &user,
                Some(&org),
                Some(auth.user.id),
                &client,
                now,
            )
            .await?;
        tx.commit().await?;
        Ok(expires_at)
    }

    /// `tessera admin reset-mfa --email E --link`: the same link, asked for by the operator.
    pub async fn request_operator_mfa_reset(&self, email: &str) -> Result<OffsetDateTime> {
        let email = Email::parse(email)?;
        let Some(credentials) = self.store.credentials_by_email(&email.normalized()).await? else {
            return Err(Error::NotFound);
        };
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        let expires_at = self
            .send_reset_link(
                tx.as_mut(),
                &credentials.user,
                None,
                None,
                &ClientInfo::default(),
                now,
            )
            .await?;
        tx.commit().await?;
        Ok(expires_at)
    }

    async fn send_reset_link(
        &self,
        tx: &mut dyn StoreTx,
        user: &User,
        org: Option<&Organization>,
        requested_by: Option<UserId>,
        client: &ClientInfo,
        now: OffsetDateTime,
    ) -> Result<OffsetDateTime> {
        let token = Token::generate()?;
        let reset = MfaResetRequest {
            id: EnrollmentId::new(),
            user_id: user.id,
            org_id: org.map(|o| o.id),
            requested_by,
            token_hash: token.hash(),
            created_at: now,
            expires_at: now + MFA_RESET_LINK_TTL,
        };
        tx.void_mfa_resets(user.id, now).await?;
        tx.insert_mfa_reset(&reset).await?;
        let recipient = user.email.to_string();
        let sealed_token = seal_secret_for_outbox(
            &self.key_ring(),
            token.expose(),
            &recipient,
            RESET_LINK_PURPOSE,
        )?;
        tx.enqueue(&NewOutboxMessage {
            channel: Channel::Email,
            recipient,
            notification: Notification::MfaResetLink {
                display_name: user.display_name.clone(),
                org_name: org.map(|o| o.name.clone()),
                sealed_token,
                expires_at: reset.expires_at.format(&Rfc3339).unwrap_or_default(),
            },
            created_at: now,
        })
        .await?;
        let event = NewEvent {
            user_id: user.id,
            kind: EventKind::MfaResetRequested,
            at: now,
            client: client.clone(),
            actor_id: requested_by,
            details: json!({
                "org_id": org.map(|o| o.id.to_string()),
                "expires_at": reset.expires_at.format(&Rfc3339).unwrap_or_default(),
            }),
        };
        match org {
            Some(org) => tx.insert_org_event(org.id, &event).await?,
            None => tx.insert_event(&event).await?,
        }
        Ok(reset.expires_at)
    }

    /// `POST /api/v1/mfa-resets/{token}` (and the `/mfa-reset/{token}` page): the member's
    /// password opens the link once and gives a restricted session that may set up a new
    /// factor.
    pub async fn open_mfa_reset(
        &self,
        token: &str,
        password: &str,
        client: ClientInfo,
    ) -> Result<SignedIn> {
        if token.len() > 256 {
            return Err(unusable_link());
        }
        let token = Token::from_client(token);
        let now = self.clock.now();
        let Some((reset, opened)) = self.store.mfa_reset_by_token(&token.hash()).await? else {
            return Err(unusable_link());
        };
        if opened || now >= reset.expires_at {
            return Err(unusable_link());
        }
        let Some(user) = self.store.user_by_id(reset.user_id).await? else {
            return Err(unusable_link());
        };
        let attempt = self
            .check_password_of(&user, password, "mfa_reset", &client)
            .await?;
        let (mut session, session_token, mut event) = self.new_session(
            &user,
            vec!["pwd".into()],
            None,
            Some(now + REAUTH_WINDOW),
            &client,
            now,
        )?;
        session.state = SessionState::EnrollmentOnly;
        event.details["restricted"] = json!("mfa_reset");
        let mut tx = self.store.begin().await?;
        tx.reset_password_failures(&attempt.key).await?;
        if tx
            .open_mfa_reset(&token.hash(), session.id, now)
            .await?
            .is_none()
        {
            return Err(unusable_link());
        }
        tx.insert_session(&session).await?;
        tx.insert_event(&event).await?;
        tx.commit().await?;
        Ok(SignedIn {
            session,
            token: session_token,
            user,
        })
    }

    /// Completes the reset tied to the restricted session in `tx`, if any: every old factor
    /// and backup code goes, the event is recorded, the admin is told. Returns whether one
    /// was completed. Called by `activate_factor` before the new factor is added.
    pub(super) async fn complete_reset_in(
        &self,
        tx: &mut dyn StoreTx,
        user: &User,
        session_id: crate::ids::SessionId,
        client: &ClientInfo,
        now: OffsetDateTime,
    ) -> Result<bool> {
        let Some(reset) = tx.complete_mfa_reset(session_id, now).await? else {
            return Ok(false);
        };
        let factors = tx.delete_factors(user.id).await?;
        let backup_codes = tx.delete_backup_codes(user.id).await?;
        let event = NewEvent {
            user_id: user.id,
            kind: EventKind::MfaResetCompleted,
            at: now,
            client: client.clone(),
            actor_id: reset.requested_by,
            details: json!({
                "org_id": reset.org_id.map(|id: OrgId| id.to_string()),
                "factors_removed": factors,
                "backup_codes_removed": backup_codes,
            }),
        };
        match reset.org_id {
            Some(org_id) => tx.insert_org_event(org_id, &event).await?,
            None => tx.insert_event(&event).await?,
        }
        let at = now.format(&Rfc3339).unwrap_or_default();
        tx.enqueue(&NewOutboxMessage {
            channel: Channel::Email,
            recipient: user.email.to_string(),
            notification: Notification::MfaResetCompleted {
                display_name: user.display_name.clone(),
                member_email: None,
                at: at.clone(),
                ip: client.ip.clone(),
            },
            created_at: now,
        })
        .await?;
        if let Some(admin_id) = reset.requested_by
            && let Some(admin) = self.store.user_by_id(admin_id).await?
        {
            tx.enqueue(&NewOutboxMessage {
                channel: Channel::Email,
                recipient: admin.email.to_string(),
                notification: Notification::MfaResetCompleted {
                    display_name: admin.display_name.clone(),
                    member_email: Some(user.email.to_string()),
                    at,
                    ip: None,
                },
                created_at: now,
            })
            .await?;
        }
        tracing::info!(user_id = %user.id, "mfa reset completed");
        Ok(true)
    }
}
