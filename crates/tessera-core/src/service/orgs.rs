//! Organizations: creating one, members and roles, the MFA policy, compliance, the
//! organization's events, and the effective policy of a user (every policy binding them, the
//! instance defaults included, folded by [`EffectivePolicy::fold`]).
//!
//! Permission rules: a non-member learns nothing (`404`); members may read their organization
//! and leave it; owners and admins manage members, the policy (with a re-auth window) and see
//! compliance and events; only owners make or remove owners; the last owner can neither leave
//! nor be demoted. Every check is made under the organization's lock, from reads in the same
//! transaction, so two admins acting at once cannot together remove the last owner.

use super::{FullSession, Services};
use crate::email::Email;
use crate::event::{ClientInfo, EventKind, NewEvent};
use crate::factor::FactorKind;
use crate::ids::{OrgId, UserId};
use crate::org::{
    EffectivePolicy, OrgMember, OrgPolicy, Organization, PolicySource, Role, parse_org_name,
};
use crate::store::StoreTx;
use crate::{Error, Result};
use serde_json::json;
use time::OffsetDateTime;

/// Organization events returned per page by default, and at most.
const EVENTS_PAGE: u32 = 50;
const MAX_EVENTS_PAGE: u32 = 200;

/// A member with their MFA status against the organization's policy.
#[derive(Debug, Clone)]
pub struct MemberStatus {
    /// The member.
    pub member: OrgMember,
    /// Whether they have any factor.
    pub mfa_enabled: bool,
    /// The kinds of their factors.
    pub factor_kinds: Vec<FactorKind>,
    /// Whether they satisfy this organization's policy (always when it requires nothing of
    /// their role).
    pub compliant: bool,
    /// When this organization's requirement is (or was) enforced for them, while they do not
    /// comply.
    pub deadline: Option<OffsetDateTime>,
}

/// Takes the organization's lock in `tx` and reads, under it, the roles of `actor` and of
/// `target`; `404` when there is no such organization or either is not a member.
pub(super) async fn lock_roles(
    tx: &mut dyn StoreTx,
    org_id: OrgId,
    actor: UserId,
    target: UserId,
) -> Result<(Role, Role)> {
    if !tx.lock_org(org_id).await? {
        return Err(Error::NotFound);
    }
    let actor = tx
        .member_role(org_id, actor)
        .await?
        .ok_or(Error::NotFound)?;
    let target = tx
        .member_role(org_id, target)
        .await?
        .ok_or(Error::NotFound)?;
    Ok((actor, target))
}

/// An organization or user id from a path: anything that is not one is `404`.
fn parse_id<T: std::str::FromStr>(id: &str) -> Result<T> {
    if id.len() > 64 {
        return Err(Error::NotFound);
    }
    id.parse().map_err(|_| Error::NotFound)
}

impl Services {
    /// Creates an organization; the caller becomes its owner.
    pub async fn create_org(
        &self,
        auth: &FullSession,
        name: &str,
        client: ClientInfo,
    ) -> Result<Organization> {
        let name = parse_org_name(name)?;
        let now = self.clock.now();
        let org = Organization {
            id: OrgId::new(),
            name,
            created_at: now,
            policy: OrgPolicy::default(),
        };
        let mut tx = self.store.begin().await?;
        tx.insert_org(&org).await?;
        tx.insert_member(org.id, auth.user.id, Role::Owner, now)
            .await?;
        tx.insert_org_event(
            org.id,
            &NewEvent {
                user_id: auth.user.id,
                kind: EventKind::MemberAdded,
                at: now,
                client,
                actor_id: Some(auth.user.id),
                details: json!({ "org_id": org.id.to_string(), "role": "owner", "created": true }),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(org)
    }

    /// The caller's organizations and their role in each.
    pub async fn my_orgs(&self, auth: &FullSession) -> Result<Vec<(Organization, Role)>> {
        Ok(self.store.orgs_of_user(auth.user.id).await?)
    }

    /// An organization the caller belongs to, with their role; `404` otherwise.
    pub async fn org_of_member(
        &self,
        auth: &FullSession,
        org_id: &str,
    ) -> Result<(Organization, Role)> {
        let id = parse_id::<OrgId>(org_id)?;
        self.store
            .orgs_of_user(auth.user.id)
            .await?
            .into_iter()
            .find(|(org, _)| org.id == id)
            .ok_or(Error::NotFound)
    }

    /// The organization, if the caller manages it (`404` for non-members, `403` for members).
    async fn org_as_manager(
        &self,
        auth: &FullSession,
        org_id: &str,
    ) -> Result<(Organization, Role)> {
        let (org, role) = self.org_of_member(auth, org_id).await?;
        if !role.is_manager() {
            return Err(Error::Forbidden);
        }
        Ok((org, role))
    }

    /// The members and whether each complies with the policy (owners and admins);
    /// `noncompliant_only` keeps those who do not.
    pub async fn org_members(
        &self,
        auth: &FullSession,
        org_id: &str,
        noncompliant_only: bool,
    ) -> Result<(Organization, Vec<MemberStatus>)> {
        let (org, _) = self.org_as_manager(auth, org_id).await?;
        let now = self.clock.now();
        let source_key = org.id.to_string();
        let mut statuses = Vec::new();
        for member in self.store.org_members(org.id).await? {
            let factors = self.store.factors_of(member.user.id).await?;
            let factor_kinds: Vec<FactorKind> = factors.iter().map(|f| f.kind).collect();
            let binds = org.policy.binds(member.role);
            let compliant = !binds
                || factor_kinds
                    .iter()
                    .any(|k| org.policy.allowed_methods.allows(*k));
            let deadline = if binds && !compliant {
                let since = self
                    .store
                    .mfa_requirements(member.user.id)
                    .await?
                    .into_iter()
                    .find(|(source, _)| *source == source_key)
                    .map_or(now, |(_, since)| since);
                Some(since + time::Duration::hours(i64::from(org.policy.grace_period_hours)))
            } else {
                None
            };
            if noncompliant_only && compliant {
                continue;
            }
            statuses.push(MemberStatus {
                member,
                mfa_enabled: !factor_kinds.is_empty(),
                factor_kinds,
                compliant,
                deadline,
            });
        }
        Ok((org, statuses))
    }

    /// Adds an existing account as a member (owners and admins; only owners add owners).
    pub async fn add_org_member(
        &self,
        auth: &FullSession,
        org_id: &str,
        email: &str,
        role: &str,
        client: ClientInfo,
    ) -> Result<OrgMember> {
        let role = Role::parse(role)?;
        let email = Email::parse(email)?;
        let (org, actor_role) = self.org_as_manager(auth, org_id).await?;
        if role == Role::Owner && actor_role != Role::Owner {
            return Err(Error::Forbidden);
        }
        let Some(credentials) = self.store.credentials_by_email(&email.normalized()).await? else {
            return Err(Error::NoSuch(format!(
                "no account uses {email}: they must sign up before they can be added"
            )));
        };
        let user = credentials.user;
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        if !tx.lock_org(org.id).await? {
            return Err(Error::NotFound);
        }
        if tx.member_role(org.id, user.id).await?.is_some() {
            return Err(Error::Conflict(format!(
                "{email} is already a member of {}",
                org.name
            )));
        }
        tx.insert_member(org.id, user.id, role, now).await?;
        self.org_event(
            tx.as_mut(),
            org.id,
            user.id,
            auth.user.id,
            EventKind::MemberAdded,
            json!({ "org_id": org.id.to_string(), "role": role.as_str() }),
            &client,
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(OrgMember {
            user,
            role,
            added_at: now,
        })
    }

    /// Changes a member's role (owners and admins; only owners touch owners; the last owner
    /// stays).
    pub async fn change_org_role(
        &self,
        auth: &FullSession,
        org_id: &str,
        user_id: &str,
        role: &str,
        client: ClientInfo,
    ) -> Result<Role> {
        let role = Role::parse(role)?;
        let target = parse_id::<UserId>(user_id)?;
        let (org, _) = self.org_of_member(auth, org_id).await?;
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        let (actor, current) = lock_roles(tx.as_mut(), org.id, auth.user.id, target).await?;
        if !actor.is_manager() {
            return Err(Error::Forbidden);
        }
        if (current == Role::Owner || role == Role::Owner) && actor != Role::Owner {
            return Err(Error::Forbidden);
        }
        if current == role {
            return Ok(role);
        }
        if current == Role::Owner && tx.count_members_with_role(org.id, Role::Owner).await? <= 1 {
            return Err(Error::Conflict(
                "the last owner cannot be demoted: make another member owner first".into(),
            ));
        }
        tx.set_member_role(org.id, target, role).await?;
        self.org_event(
            tx.as_mut(),
            org.id,
            target,
            auth.user.id,
            EventKind::MemberRoleChanged,
            json!({ "org_id": org.id.to_string(), "from": current.as_str(), "to": role.as_str() }),
            &client,
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(role)
    }

    /// Removes a member, or lets a member leave (`user_id` is the caller). Owners and admins
    /// remove others; only owners remove owners; the last owner stays.
    pub async fn remove_org_member(
        &self,
        auth: &FullSession,
        org_id: &str,
        user_id: &str,
        client: ClientInfo,
    ) -> Result<()> {
        let target = parse_id::<UserId>(user_id)?;
        let (org, _) = self.org_of_member(auth, org_id).await?;
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        let (actor, current) = lock_roles(tx.as_mut(), org.id, auth.user.id, target).await?;
        let leaving = target == auth.user.id;
        if !leaving && (!actor.is_manager() || (current == Role::Owner && actor != Role::Owner)) {
            return Err(Error::Forbidden);
        }
        if current == Role::Owner && tx.count_members_with_role(org.id, Role::Owner).await? <= 1 {
            return Err(Error::Conflict(
                "the last owner cannot leave: make another member owner first".into(),
            ));
        }
        tx.delete_member(org.id, target).await?;
        self.org_event(
            tx.as_mut(),
            org.id,
            target,
            auth.user.id,
            EventKind::MemberRemoved,
            json!({ "org_id": org.id.to_string(), "role": current.as_str(), "left": leaving }),
            &client,
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Replaces the organization's MFA policy (owners and admins, re-auth window). A policy
    /// nobody could satisfy on this instance is refused.
    pub async fn set_org_policy(
        &self,
        auth: &FullSession,
        org_id: &str,
        policy: OrgPolicy,
        client: ClientInfo,
    ) -> Result<OrgPolicy> {
        let (org, _) = self.org_as_manager(auth, org_id).await?;
        self.require_reauth(auth)?;
        policy.validate(self.settings.mfa.allowed_methods)?;
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        if !tx.lock_org(org.id).await? {
            return Err(Error::NotFound);
        }
        match tx.member_role(org.id, auth.user.id).await? {
            Some(role) if role.is_manager() => {}
            Some(_) => return Err(Error::Forbidden),
            None => return Err(Error::NotFound),
        }
        tx.set_org_policy(org.id, &policy, now).await?;
        self.org_event(
            tx.as_mut(),
            org.id,
            auth.user.id,
            auth.user.id,
            EventKind::OrgPolicyChanged,
            json!({
                "org_id": org.id.to_string(),
                "mfa_required": policy.mfa_required,
                "roles": policy.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
                "scope": policy.scope.as_str(),
                "grace_period_hours": policy.grace_period_hours,
                "allowed_methods": policy.allowed_methods,
                "allow_disable": policy.allow_disable,
                "app_mfa_max_age_seconds": policy.app_mfa_max_age_seconds,
            }),
            &client,
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(policy)
    }

    /// The organization's security events (owners and admins), newest first.
    pub async fn org_events(
        &self,
        auth: &FullSession,
        org_id: &str,
        before: Option<i64>,
        limit: Option<u32>,
    ) -> Result<Vec<crate::event::SecurityEvent>> {
        let (org, _) = self.org_as_manager(auth, org_id).await?;
        let limit = limit.unwrap_or(EVENTS_PAGE);
        if limit == 0 || limit > MAX_EVENTS_PAGE {
            return Err(Error::invalid(format!(
                "limit: must be between 1 and {MAX_EVENTS_PAGE}"
            )));
        }
        if before.is_some_and(|b| b <= 0) {
            return Err(Error::invalid("before: must be a positive event id"));
        }
        Ok(self.store.org_events(org.id, before, limit).await?)
    }

    /// The effective MFA policy of a user at this instant: the instance defaults and every
    /// organization's policy, strictest wins. Also keeps the record of when each binding
    /// requirement first applied (the grace periods count from there) and forgets those that
    /// no longer bind, so lowering a requirement takes effect at once.
    pub async fn effective_policy(&self, user_id: UserId) -> Result<EffectivePolicy> {
        let now = self.clock.now();
        let mut sources = vec![PolicySource {
            org: None,
            role: None,
            policy: self.settings.mfa.as_policy(),
            required_since: None,
        }];
        for (org, role) in self.store.orgs_of_user(user_id).await? {
            sources.push(PolicySource {
                org: Some((org.id, org.name)),
                role: Some(role),
                policy: org.policy,
                required_since: None,
            });
        }
        let recorded = self.store.mfa_requirements(user_id).await?;
        let binding: Vec<String> = sources
            .iter()
            .filter(|s| s.binds())
            .map(PolicySource::key)
            .collect();
        let stale = recorded.iter().any(|(source, _)| !binding.contains(source));
        let missing = binding
            .iter()
            .any(|key| !recorded.iter().any(|(source, _)| source == key));
        for source in &mut sources {
            let key = source.key();
            source.required_since = recorded
                .iter()
                .find(|(recorded, _)| *recorded == key)
                .map(|(_, since)| *since);
        }
        if stale || missing {
            let mut tx = self.store.begin().await?;
            for key in &binding {
                tx.record_mfa_requirement(user_id, key, now).await?;
            }
            tx.clear_mfa_requirements(user_id, &binding).await?;
            tx.commit().await?;
        }
        Ok(EffectivePolicy::fold(&sources, now))
    }

    /// The factor kinds that count for `user_id` (the instance's and every organization's
    /// allowed methods, intersected): one read, for the second step of sign-in.
    pub(super) async fn allowed_kinds(&self, user_id: UserId) -> Result<Vec<FactorKind>> {
        let mut allowed = self.settings.mfa.allowed_methods.kinds();
        for (org, _) in self.store.orgs_of_user(user_id).await? {
            allowed.retain(|kind| org.policy.allowed_methods.allows(*kind));
        }
        Ok(allowed)
    }

    #[allow(clippy::too_many_arguments)]
    async fn org_event(
        &self,
        tx: &mut dyn StoreTx,
        org_id: OrgId,
        user_id: UserId,
        actor_id: UserId,
        kind: EventKind,
        details: serde_json::Value,
        client: &ClientInfo,
        now: OffsetDateTime,
    ) -> Result<()> {
        tx.insert_org_event(
            org_id,
            &NewEvent {
                user_id,
                kind,
                at: now,
                client: client.clone(),
                actor_id: Some(actor_id),
                details,
            },
        )
        .await?;
        Ok(())
    }
}
