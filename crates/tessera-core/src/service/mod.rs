//! The use cases. Each public method owns one transaction, takes `now` from the injected
//! clock, and returns domain types; handlers only translate HTTP to these calls and back.

mod accounts;
mod password;
mod sessions;
mod signin;

pub use accounts::NewAccount;
pub use signin::SignedIn;

use crate::clock::Clock;
use crate::crypto::{KeyRing, Pepper};
use crate::password::PasswordHasher;
use crate::session::{Session, SessionPolicy, SessionState};
use crate::store::Store;
use crate::user::User;
use crate::{Error, Result};
use std::sync::Arc;

/// Whether anyone may create an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signup {
    /// Self-service sign-up is on.
    Open,
    /// Only operators create accounts (`tessera admin create-user`).
    Closed,
}

/// Instance settings the services need.
#[derive(Debug, Clone, Copy)]
pub struct ServiceSettings {
    /// Self-service sign-up.
    pub signup: Signup,
    /// Session lifetimes.
    pub sessions: SessionPolicy,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        Self {
            signup: Signup::Open,
            sessions: SessionPolicy::default(),
        }
    }
}

/// Everything the use cases run on. Cheap to clone.
#[derive(Clone)]
pub struct Services {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    hasher: PasswordHasher,
    pepper: Arc<Pepper>,
    keys: Arc<KeyRing>,
    settings: ServiceSettings,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services")
            .field("hasher", &self.hasher)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Services {
    /// Wires the services.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        hasher: PasswordHasher,
        pepper: Pepper,
        keys: KeyRing,
        settings: ServiceSettings,
    ) -> Self {
        Self {
            store,
            clock,
            hasher,
            pepper: Arc::new(pepper),
            keys: Arc::new(keys),
            settings,
        }
    }

    /// The store, for health checks and workers.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The instance key ring (for sealing factor secrets).
    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }

    /// The settings.
    pub fn settings(&self) -> &ServiceSettings {
        &self.settings
    }

    /// The CSRF token of an authenticated session.
    pub fn csrf_token(&self, auth: &Authenticated) -> String {
        crate::crypto::csrf_token(&self.pepper, &auth.session.token_hash)
    }

    /// Until when the session's re-auth window is open, if it is open now.
    pub fn open_reauth_window(&self, auth: &Authenticated) -> Option<time::OffsetDateTime> {
        let now = self.clock.now();
        auth.session
            .reauth_until
            .filter(|_| auth.session.reauth_open(now))
    }

    /// Checks a CSRF token presented with a cookie-authenticated change, in constant time.
    pub fn check_csrf(&self, auth: &Authenticated, presented: &str) -> bool {
        crate::crypto::constant_time_eq(self.csrf_token(auth).as_bytes(), presented.as_bytes())
    }
}

/// A live session and its user: what an authenticated request carries.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// The session.
    pub session: Session,
    /// Its user.
    pub user: User,
}

impl Authenticated {
    /// The capability to act with every authentication step done; restricted sessions are
    /// refused here, so a handler that asks for a full session cannot be reached by them.
    pub fn full(self) -> Result<FullSession> {
        match self.session.state {
            SessionState::Full => Ok(FullSession(self)),
            SessionState::EnrollmentOnly => Err(Error::MfaEnrollmentRequired),
        }
    }
}

/// A session that has completed every authentication step.
#[derive(Debug, Clone)]
pub struct FullSession(Authenticated);

impl std::ops::Deref for FullSession {
    type Target = Authenticated;
    fn deref(&self) -> &Authenticated {
        &self.0
    }
}
