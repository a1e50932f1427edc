-- Organizations, their members and MFA policy (sqlite).
-- Keep in step with ../postgres/0006_organizations.sql (same tables, columns and indexes).

-- An organization and its MFA policy (tessera_core::org::OrgPolicy): roles and
-- allowed_methods are comma-separated names, checked by the domain when written.
CREATE TABLE organizations (
    id                      TEXT   NOT NULL PRIMARY KEY,
    name                    TEXT   NOT NULL,
    created_at              INTEGER NOT NULL,
    mfa_required            INTEGER NOT NULL DEFAULT 0,
    policy_roles            TEXT   NOT NULL DEFAULT 'owner,admin,member',
    policy_scope            TEXT   NOT NULL DEFAULT 'all' CHECK (policy_scope IN ('console', 'apps', 'all')),
    grace_period_hours      INTEGER NOT NULL DEFAULT 168,
    allowed_methods         TEXT   NOT NULL DEFAULT 'totp,sms,email,webauthn',
    allow_disable           INTEGER NOT NULL DEFAULT 1,
    app_mfa_max_age_seconds INTEGER,
    policy_updated_at       INTEGER
) STRICT;

CREATE TABLE org_members (
    org_id   TEXT   NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id  TEXT   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role     TEXT   NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    added_at INTEGER NOT NULL,
    PRIMARY KEY (org_id, user_id)
) STRICT;

CREATE INDEX org_members_user_id ON org_members (user_id);

-- When each MFA requirement (source: an organization id, or 'instance') first applied to a
-- user: the grace period counts from here. Rows of requirements that no longer apply are
-- deleted, so a requirement that comes back starts a new grace period.
CREATE TABLE mfa_requirements (
    user_id TEXT   NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    source  TEXT   NOT NULL,
    since   INTEGER NOT NULL,
    PRIMARY KEY (user_id, source)
) STRICT;

-- Events that concern an organization (policy changes, members, resets) are also visible to
-- its admins.
ALTER TABLE security_events ADD COLUMN org_id TEXT;
CREATE INDEX security_events_org_id_id ON security_events (org_id, id);
