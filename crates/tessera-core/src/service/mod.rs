//! The use cases. Each public method owns one transaction, takes `now` from the injected
//! clock, and returns domain types; handlers only translate HTTP to these calls and back.

mod accounts;
mod contact;
mod mfa;
mod orgs;
mod password;
mod reset;
mod sessions;
mod signin;

pub use accounts::NewAccount;
pub use contact::{
    CodeSent, ContactDestination, DELIVERY_FAILING_WINDOW, FactorUpdate, StartedContactEnrollment,
};
pub use mfa::{
    ConfirmedFactor, MfaChallenge, MfaReset, MfaSettings, MfaState, PasswordOutcome,
    SecondFactorProof, StartedTotpEnrollment,
};
pub use orgs::MemberStatus;
pub use reset::RESET_LINK_PURPOSE;
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
    /// MFA settings.
    pub mfa: MfaSettings,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        Self {
            signup: Signup::Open,
            sessions: SessionPolicy::default(),
            mfa: MfaSettings::default(),
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
    keys: Arc<KeyCell>,
    settings: ServiceSettings,
}

/// Where the key ring can be read again (the keys directory), so a running instance picks up
/// a key added by `tessera keys rotate` the first time it meets a value sealed with it.
pub trait KeyRingSource: Send + Sync + 'static {
    /// Reads the current key ring.
    fn load(&self) -> Result<KeyRing>;
}

/// The current key ring, replaceable at run time.
struct KeyCell {
    ring: std::sync::RwLock<Arc<KeyRing>>,
    source: Option<Arc<dyn KeyRingSource>>,
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
            keys: Arc::new(KeyCell {
                ring: std::sync::RwLock::new(Arc::new(keys)),
                source: None,
            }),
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

    /// Reads the key ring again from `source` when a sealed value names a key this instance
    /// does not have yet.
    pub fn with_key_source(mut self, source: Arc<dyn KeyRingSource>) -> Self {
        let ring = self.key_ring();
        self.keys = Arc::new(KeyCell {
            ring: std::sync::RwLock::new(ring),
            source: Some(source),
        });
        self
    }

    /// The instance key ring (for sealing factor secrets).
    pub fn key_ring(&self) -> Arc<KeyRing> {
        self.keys
            .ring
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Reads the key ring again from its source (periodically, so new values are sealed with
    /// a key added by `tessera keys rotate` without a restart). Returns the primary key id.
    pub fn reload_keys(&self) -> Result<u32> {
        let Some(source) = &self.keys.source else {
            return Ok(self.key_ring().primary_id());
        };
        let fresh = Arc::new(source.load()?);
        let primary = fresh.primary_id();
        *self
            .keys
            .ring
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = fresh;
        Ok(primary)
    }

    /// Opens a sealed value; if its key is unknown here, reads the ring again once (another
    /// process rotated the keys) and retries. Fails closed otherwise.
    pub(crate) fn open_sealed(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        let ring = self.key_ring();
        match ring.open(sealed, aad) {
            Ok(plain) => Ok(plain),
            Err(error) => {
                let Some(source) = &self.keys.source else {
                    return Err(error);
                };
                let unknown_key = crate::crypto::sealed_key_id(sealed)
                    .is_some_and(|id| !ring.keys().iter().any(|k| k.id() == id));
                if !unknown_key {
                    return Err(error);
                }
                let fresh = Arc::new(source.load()?);
                let plain = fresh.open(sealed, aad);
                *self
                    .keys
                    .ring
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = fresh;
                tracing::info!("reloaded the key ring: a newer key is in use");
                plain
            }
        }
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
