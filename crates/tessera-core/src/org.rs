//! Organizations, roles and MFA policy: [`OrgPolicy`] as an organization sets it, and
//! [`EffectivePolicy`], the strictest combination of every policy that binds a user
//! ([`EffectivePolicy::fold`], pure).
//!
//! The folding rules (issue 5): MFA is required if any binding policy requires it (for the
//! user's role there); the deadline is the earliest of the binding requirements' (each counted
//! from when it first applied to the user, plus its grace period); the allowed methods are the
//! intersection of every policy's (backup codes are recovery and always allowed); disabling is
//! allowed only if every policy allows it and nothing requires MFA; the client-app MFA age is
//! the smallest given. The instance defaults fold in as one more policy that binds everyone.
//!
//! Threats: a policy that locks everyone out (a requirement whose methods nobody may enroll:
//! refused by [`OrgPolicy::validate`]), absurd grace periods (capped at 90 days), and stale
//! flags (the effective policy is computed from the current policies at each request).

use crate::factor::{ALL_FACTOR_KINDS, AllowedMethods, FactorKind};
use crate::ids::OrgId;
use crate::{Error, Result};
use time::{Duration, OffsetDateTime};

/// How the instance defaults are named among the organizations of
/// [`EffectivePolicy::required_by`].
pub const INSTANCE_NAME: &str = "this server";
/// The longest grace period: 90 days.
pub const MAX_GRACE_PERIOD_HOURS: u32 = 90 * 24;
/// The longest organization name, in characters.
pub const MAX_ORG_NAME_CHARS: usize = 100;
/// The longest client-app MFA age a policy may ask for: 30 days.
pub const MAX_APP_MFA_AGE_SECONDS: u32 = 30 * 24 * 3600;

/// A member's role in an organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Full control, including owners and the organization itself.
    Owner,
    /// Manages members (not owners) and the policy.
    Admin,
    /// Bound by the policy.
    Member,
}

impl Role {
    /// Every role, most powerful first.
    pub const ALL: [Role; 3] = [Role::Owner, Role::Admin, Role::Member];

    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }

    /// Parses a wire name; the error says what is accepted.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "owner" => Ok(Role::Owner),
            "admin" => Ok(Role::Admin),
            "member" => Ok(Role::Member),
            other => Err(Error::invalid(format!(
                "role: unknown role `{}`: expected owner, admin or member",
                other.chars().take(32).collect::<String>()
            ))),
        }
    }

    /// Whether the role manages members and the policy.
    pub fn is_manager(self) -> bool {
        matches!(self, Role::Owner | Role::Admin)
    }
}

/// Where a policy's requirement applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyScope {
    /// Tessera's own pages and API.
    Console,
    /// Client applications signing in through Tessera (OpenID Connect).
    Apps,
    /// Both.
    All,
}

impl PolicyScope {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyScope::Console => "console",
            PolicyScope::Apps => "apps",
            PolicyScope::All => "all",
        }
    }

    /// Parses a wire name.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "console" => Ok(PolicyScope::Console),
            "apps" => Ok(PolicyScope::Apps),
            "all" => Ok(PolicyScope::All),
            _ => Err(Error::invalid("scope: expected console, apps or all")),
        }
    }

    /// Whether it covers Tessera's own pages and API.
    pub fn covers_console(self) -> bool {
        matches!(self, PolicyScope::Console | PolicyScope::All)
    }

    /// Whether it covers client applications.
    pub fn covers_apps(self) -> bool {
        matches!(self, PolicyScope::Apps | PolicyScope::All)
    }
}

/// An organization's MFA policy (API.md `OrgPolicy`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgPolicy {
    /// Whether MFA is required.
    pub mfa_required: bool,
    /// Whom the requirement applies to.
    pub roles: Vec<Role>,
    /// Where it applies.
    pub scope: PolicyScope,
    /// Hours from when the requirement first applied to a user until it is enforced.
    pub grace_period_hours: u32,
    /// Kinds of factor members may enroll (and that satisfy the requirement).
    pub allowed_methods: AllowedMethods,
    /// Whether members may turn MFA off.
    pub allow_disable: bool,
    /// How recent an MFA must be for client apps (0: at every connection; `None`: any).
    pub app_mfa_max_age_seconds: Option<u32>,
}

impl Default for OrgPolicy {
    /// No requirement: what a new organization starts with.
    fn default() -> Self {
        Self {
            mfa_required: false,
            roles: Role::ALL.to_vec(),
            scope: PolicyScope::All,
            grace_period_hours: 7 * 24,
            allowed_methods: AllowedMethods::ALL,
            allow_disable: true,
            app_mfa_max_age_seconds: None,
        }
    }
}

impl OrgPolicy {
    /// Checks a policy before it is stored: bounded numbers, at least one role when MFA is
    /// required, and methods that can actually be enrolled on this instance (`instance`), so
    /// a requirement never locks everyone out. The message says what to fix.
    pub fn validate(&self, instance: AllowedMethods) -> Result<()> {
        if self.grace_period_hours > MAX_GRACE_PERIOD_HOURS {
            return Err(Error::invalid(format!(
                "grace_period_hours: at most {MAX_GRACE_PERIOD_HOURS} (90 days)"
            )));
        }
        if self
            .app_mfa_max_age_seconds
            .is_some_and(|age| age > MAX_APP_MFA_AGE_SECONDS)
        {
            return Err(Error::invalid(format!(
                "app_mfa_max_age_seconds: at most {MAX_APP_MFA_AGE_SECONDS} (30 days), or null for any age"
            )));
        }
        if self.mfa_required && self.roles.is_empty() {
            return Err(Error::invalid(
                "roles: name at least one role the requirement applies to (owner, admin, member)",
            ));
        }
        let usable: Vec<&str> = ALL_FACTOR_KINDS
            .into_iter()
            .filter(|k| self.allowed_methods.allows(*k) && instance.allows(*k))
            .map(FactorKind::as_str)
            .collect();
        if self.mfa_required && usable.is_empty() {
            let offered: Vec<&str> = instance
                .kinds()
                .into_iter()
                .map(FactorKind::as_str)
                .collect();
            return Err(Error::invalid(format!(
                "allowed_methods: nobody could satisfy this requirement — this server only offers {}",
                offered.join(", ")
            )));
        }
        Ok(())
    }

    /// Whether the requirement binds a member with `role`.
    pub fn binds(&self, role: Role) -> bool {
        self.mfa_required && self.roles.contains(&role)
    }
}

/// One policy that applies to a user, as [`EffectivePolicy::fold`] reads it.
#[derive(Debug, Clone)]
pub struct PolicySource {
    /// The organization (`None` for the instance defaults).
    pub org: Option<(OrgId, String)>,
    /// The user's role there (the instance defaults bind every role).
    pub role: Option<Role>,
    /// The policy.
    pub policy: OrgPolicy,
    /// When its requirement first applied to the user (`None`: it applies from now).
    pub required_since: Option<OffsetDateTime>,
}

impl PolicySource {
    /// Whether its requirement binds the user.
    pub fn binds(&self) -> bool {
        match self.role {
            Some(role) => self.policy.binds(role),
            None => self.policy.mfa_required,
        }
    }

    /// The key its "required since" is stored under.
    pub fn key(&self) -> String {
        self.org
            .as_ref()
            .map_or_else(|| "instance".to_owned(), |(id, _)| id.to_string())
    }
}

/// The strictest combination of every policy binding a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectivePolicy {
    /// MFA is required for Tessera's own pages and API.
    pub console_required: bool,
    /// MFA is required for client applications.
    pub apps_required: bool,
    /// The earliest enforcement instant of the binding requirements (console or apps).
    pub deadline: Option<OffsetDateTime>,
    /// The kinds that may be enrolled and satisfy the requirement (possibly empty when two
    /// organizations allow disjoint sets).
    pub allowed_methods: Vec<FactorKind>,
    /// Whether the user may remove their last allowed factor or disable MFA.
    pub allow_disable: bool,
    /// The smallest client-app MFA age.
    pub app_mfa_max_age_seconds: Option<u32>,
    /// The organizations whose policy requires MFA of the user (for messages).
    pub required_by: Vec<String>,
    /// The organizations whose policy forbids turning MFA off.
    pub disable_forbidden_by: Vec<String>,
}

impl EffectivePolicy {
    /// Folds `sources` (the instance defaults among them) at `now`.
    pub fn fold(sources: &[PolicySource], now: OffsetDateTime) -> Self {
        let mut allowed = [true; 4];
        let mut effective = EffectivePolicy {
            console_required: false,
            apps_required: false,
            deadline: None,
            allowed_methods: Vec::new(),
            allow_disable: true,
            app_mfa_max_age_seconds: None,
            required_by: Vec::new(),
            disable_forbidden_by: Vec::new(),
        };
        for source in sources {
            let policy = &source.policy;
            for (i, kind) in ALL_FACTOR_KINDS.into_iter().enumerate() {
                allowed[i] &= policy.allowed_methods.allows(kind);
            }
            let name = source
                .org
                .as_ref()
                .map_or_else(|| INSTANCE_NAME.to_owned(), |(_, name)| name.clone());
            if !policy.allow_disable {
                effective.allow_disable = false;
                effective.disable_forbidden_by.push(name.clone());
            }
            if let Some(age) = policy.app_mfa_max_age_seconds {
                effective.app_mfa_max_age_seconds = Some(
                    effective
                        .app_mfa_max_age_seconds
                        .map_or(age, |current| current.min(age)),
                );
            }
            if !source.binds() {
                continue;
            }
            effective.console_required |= policy.scope.covers_console();
            effective.apps_required |= policy.scope.covers_apps();
            let since = source.required_since.unwrap_or(now);
            let deadline = since + Duration::hours(i64::from(policy.grace_period_hours));
            effective.deadline = Some(effective.deadline.map_or(deadline, |d| d.min(deadline)));
            effective.required_by.push(name);
        }
        effective.allowed_methods = ALL_FACTOR_KINDS
            .into_iter()
            .enumerate()
            .filter(|(i, _)| allowed[*i])
            .map(|(_, kind)| kind)
            .collect();
        if effective.console_required || effective.apps_required {
            effective.allow_disable = false;
        }
        effective
    }

    /// Whether MFA is required anywhere.
    pub fn required(&self) -> bool {
        self.console_required || self.apps_required
    }

    /// Whether a user without an allowed factor must enroll before using the console at `now`
    /// (the console requirement's grace period is over).
    pub fn console_enforced(&self, now: OffsetDateTime) -> bool {
        self.console_required && self.deadline.is_some_and(|d| now >= d)
    }

    /// Why MFA cannot be turned off (when `allow_disable` is false), naming the organization
    /// that forbids it: for the `403 policy_forbids` message and Settings.
    pub fn disable_refusal(&self) -> String {
        let org = self
            .required_by
            .iter()
            .chain(self.disable_forbidden_by.iter())
            .find(|name| *name != INSTANCE_NAME);
        match org {
            Some(org) if self.required() => {
                format!(
                    "Your organization {org} requires MFA: keep at least one sign-in method it allows"
                )
            }
            Some(org) => {
                format!(
                    "Your organization {org} does not allow turning multi-factor authentication off"
                )
            }
            None => "multi-factor authentication cannot be turned off on this server".to_owned(),
        }
    }

    /// Whether `kind` may be enrolled and satisfies the requirement.
    pub fn allows(&self, kind: FactorKind) -> bool {
        self.allowed_methods.contains(&kind)
    }

    /// Whether factors of these kinds satisfy the policy (one allowed kind is enough).
    pub fn satisfied_by(&self, kinds: impl IntoIterator<Item = FactorKind>) -> bool {
        kinds.into_iter().any(|kind| self.allows(kind))
    }
}

/// An organization as stored, with its policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organization {
    /// Its id.
    pub id: OrgId,
    /// Its name.
    pub name: String,
    /// When it was created.
    pub created_at: OffsetDateTime,
    /// Its MFA policy.
    pub policy: OrgPolicy,
}

/// A member of an organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgMember {
    /// The account.
    pub user: crate::user::User,
    /// Their role.
    pub role: Role,
    /// When they were added.
    pub added_at: OffsetDateTime,
}

/// How long an MFA reset link works.
pub const MFA_RESET_LINK_TTL: Duration = Duration::hours(72);

/// An MFA reset link as stored (only its token's hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MfaResetRequest {
    /// Its id.
    pub id: crate::ids::EnrollmentId,
    /// Whose MFA it resets.
    pub user_id: crate::ids::UserId,
    /// The organization whose admin asked (`None`: an operator).
    pub org_id: Option<OrgId>,
    /// Who asked (`None`: an operator).
    pub requested_by: Option<crate::ids::UserId>,
    /// SHA-256 of the link's token.
    pub token_hash: crate::crypto::TokenHash,
    /// When it was asked for.
    pub created_at: OffsetDateTime,
    /// When the link stops working.
    pub expires_at: OffsetDateTime,
}

/// Checks an organization name: trimmed, 1 to [`MAX_ORG_NAME_CHARS`] characters, no control
/// characters.
pub fn parse_org_name(name: &str) -> Result<String> {
    let name = name.trim();
    if name.is_empty() {
        return Err(Error::invalid("name: must not be empty"));
    }
    if name.chars().count() > MAX_ORG_NAME_CHARS {
        return Err(Error::invalid(format!(
            "name: must be at most {MAX_ORG_NAME_CHARS} characters"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::invalid("name: must not contain control characters"));
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-12-03 12:00 UTC);

    fn methods(kinds: &[FactorKind]) -> AllowedMethods {
        AllowedMethods::of(kinds).unwrap()
    }

    fn org(
        name: &str,
        role: Role,
        policy: OrgPolicy,
        since_hours_ago: Option<i64>,
    ) -> PolicySource {
        PolicySource {
            org: Some((OrgId::new(), name.to_owned())),
            role: Some(role),
            policy,
            required_since: since_hours_ago.map(|h| NOW - Duration::hours(h)),
        }
    }

    fn instance(policy: OrgPolicy) -> PolicySource {
        PolicySource {
            org: None,
            role: None,
            policy,
            required_since: None,
        }
    }

    fn required(roles: &[Role], scope: PolicyScope, grace: u32) -> OrgPolicy {
        OrgPolicy {
            mfa_required: true,
            roles: roles.to_vec(),
            scope,
            grace_period_hours: grace,
            ..OrgPolicy::default()
        }
    }

    use FactorKind::{Email, Sms, Totp, Webauthn};
    use Role::{Admin, Member, Owner};

    #[test]
    fn the_strictest_combination_wins() {
        struct Case {
            name: &'static str,
            sources: Vec<PolicySource>,
            console: bool,
            apps: bool,
            deadline_hours_from_now: Option<i64>,
            allowed: Vec<FactorKind>,
            allow_disable: bool,
            max_age: Option<u32>,
        }
        let all = vec![Totp, Sms, Email, Webauthn];
        let cases = vec![
            Case {
                name: "nothing binds: instance defaults only",
                sources: vec![instance(OrgPolicy::default())],
                console: false,
                apps: false,
                deadline_hours_from_now: None,
                allowed: all.clone(),
                allow_disable: true,
                max_age: None,
            },
            Case {
                name: "a requirement for another role does not bind",
                sources: vec![
                    instance(OrgPolicy::default()),
                    org(
                        "Acme",
                        Member,
                        required(&[Admin, Owner], PolicyScope::All, 0),
                        Some(1),
                    ),
                ],
                console: false,
                apps: false,
                deadline_hours_from_now: None,
                allowed: all.clone(),
                allow_disable: true,
                max_age: None,
            },
            Case {
                name: "required if any requires; the shortest deadline; scopes add up",
                sources: vec![
                    instance(OrgPolicy::default()),
                    org(
                        "Acme",
                        Member,
                        required(&[Member], PolicyScope::Apps, 48),
                        Some(10),
                    ),
                    org(
                        "Beta",
                        Admin,
                        required(&[Admin], PolicyScope::Console, 24),
                        Some(20),
                    ),
                ],
                console: true,
                apps: true,
                deadline_hours_from_now: Some(4),
                allowed: all.clone(),
                allow_disable: false,
                max_age: None,
            },
            Case {
                name: "a requirement that just applied counts its grace from now",
                sources: vec![org(
                    "Acme",
                    Member,
                    required(&[Member], PolicyScope::All, 72),
                    None,
                )],
                console: true,
                apps: true,
                deadline_hours_from_now: Some(72),
                allowed: all.clone(),
                allow_disable: false,
                max_age: None,
            },
            Case {
                name: "allowed methods intersect, even from policies that require nothing",
                sources: vec![
                    instance(OrgPolicy {
                        allowed_methods: methods(&[Totp, Sms, Webauthn]),
                        ..OrgPolicy::default()
                    }),
                    org(
                        "Acme",
                        Member,
                        OrgPolicy {
                            allowed_methods: methods(&[Totp, Webauthn, Email]),
                            ..OrgPolicy::default()
                        },
                        None,
                    ),
                ],
                console: false,
                apps: false,
                deadline_hours_from_now: None,
                allowed: vec![Totp, Webauthn],
                allow_disable: true,
                max_age: None,
            },
            Case {
                name: "disjoint methods leave none",
                sources: vec![
                    org(
                        "Acme",
                        Member,
                        OrgPolicy {
                            allowed_methods: methods(&[Totp]),
                            ..OrgPolicy::default()
                        },
                        None,
                    ),
                    org(
                        "Beta",
                        Member,
                        OrgPolicy {
                            allowed_methods: methods(&[Sms]),
                            ..OrgPolicy::default()
                        },
                        None,
                    ),
                ],
                console: false,
                apps: false,
                deadline_hours_from_now: None,
                allowed: vec![],
                allow_disable: true,
                max_age: None,
            },
            Case {
                name: "disable only if all allow; the instance default counts",
                sources: vec![
                    instance(OrgPolicy {
                        allow_disable: false,
                        ..OrgPolicy::default()
                    }),
                    org("Acme", Member, OrgPolicy::default(), None),
                ],
                console: false,
                apps: false,
                deadline_hours_from_now: None,
                allowed: all.clone(),
                allow_disable: false,
                max_age: None,
            },
            Case {
                name: "the instance requirement binds everyone; smallest app MFA age",
                sources: vec![
                    instance(OrgPolicy {
                        app_mfa_max_age_seconds: Some(3600),
                        ..required(&[], PolicyScope::Console, 0)
                    }),
                    org(
                        "Acme",
                        Member,
                        OrgPolicy {
                            app_mfa_max_age_seconds: Some(0),
                            ..OrgPolicy::default()
                        },
                        None,
                    ),
                ],
                console: true,
                apps: false,
                deadline_hours_from_now: Some(0),
                allowed: all.clone(),
                allow_disable: false,
                max_age: Some(0),
            },
        ];
        for case in cases {
            let effective = EffectivePolicy::fold(&case.sources, NOW);
            assert_eq!(effective.console_required, case.console, "{}", case.name);
            assert_eq!(effective.apps_required, case.apps, "{}", case.name);
            assert_eq!(
                effective.deadline,
                case.deadline_hours_from_now
                    .map(|h| NOW + Duration::hours(h)),
                "{}",
                case.name
            );
            assert_eq!(effective.allowed_methods, case.allowed, "{}", case.name);
            assert_eq!(effective.allow_disable, case.allow_disable, "{}", case.name);
            assert_eq!(
                effective.app_mfa_max_age_seconds, case.max_age,
                "{}",
                case.name
            );
        }
    }

    #[test]
    fn enforcement_starts_at_the_deadline() {
        let sources = [org(
            "Acme",
            Member,
            required(&[Member], PolicyScope::All, 24),
            Some(0),
        )];
        let effective = EffectivePolicy::fold(&sources, NOW);
        assert!(!effective.console_enforced(NOW + Duration::hours(24) - Duration::seconds(1)));
        assert!(effective.console_enforced(NOW + Duration::hours(24)));
        assert!(effective.console_enforced(NOW + Duration::hours(25)));
        assert_eq!(effective.required_by, vec!["Acme".to_owned()]);
        let apps_only = [org(
            "Acme",
            Member,
            required(&[Member], PolicyScope::Apps, 0),
            Some(0),
        )];
        assert!(!EffectivePolicy::fold(&apps_only, NOW).console_enforced(NOW));
    }

    #[test]
    fn policies_that_cannot_be_satisfied_or_are_absurd_are_refused() {
        let totp_only = methods(&[Totp]);
        let sms_required = OrgPolicy {
            allowed_methods: methods(&[Sms]),
            ..required(&[Member], PolicyScope::All, 0)
        };
        let message = sms_required.validate(totp_only).unwrap_err().to_string();
        assert!(message.contains("nobody could satisfy"), "{message}");
        assert!(sms_required.validate(AllowedMethods::ALL).is_ok());
        let long = OrgPolicy {
            grace_period_hours: MAX_GRACE_PERIOD_HOURS + 1,
            ..OrgPolicy::default()
        };
        assert!(long.validate(AllowedMethods::ALL).is_err());
        let no_roles = required(&[], PolicyScope::All, 0);
        assert!(no_roles.validate(AllowedMethods::ALL).is_err());
        assert!(
            Role::parse("superuser")
                .unwrap_err()
                .to_string()
                .contains("owner, admin or member")
        );
        assert!(parse_org_name("  ").is_err());
        assert_eq!(parse_org_name(" Acme ").unwrap(), "Acme");
    }

    #[test]
    fn satisfaction_needs_an_allowed_kind() {
        let sources = [org(
            "Acme",
            Member,
            OrgPolicy {
                allowed_methods: methods(&[Totp, Webauthn]),
                ..required(&[Member], PolicyScope::All, 0)
            },
            Some(0),
        )];
        let effective = EffectivePolicy::fold(&sources, NOW);
        assert!(!effective.satisfied_by([Sms, Email]));
        assert!(effective.satisfied_by([Sms, Totp]));
        assert!(!effective.satisfied_by([]));
    }
}
