//! The per-client-address limit on unauthenticated endpoints (sign-up, sign-in).
//!
//! Threat: one address hammering the password endpoints or creating accounts in bulk. GCRA
//! (`governor`), keyed on the client address from [`crate::api::extract::client_ip`] — the
//! peer, never a forgeable `X-Forwarded-For` unless trusted proxies are configured. This limit is
//! per process by design (a coarse shield); the limits that must hold across instances (per
//! account) live in the database.

use crate::api::error::ApiError;
use crate::api::extract::client_ip;
use crate::state::AppState;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::net::IpAddr;
use std::num::NonZeroU32;
use tessera_core::Error;

/// A keyed limiter over client addresses.
pub struct ClientRateLimiter {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    clock: DefaultClock,
}

impl std::fmt::Debug for ClientRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientRateLimiter")
    }
}

impl ClientRateLimiter {
    /// `per_minute` requests a minute per address (bursts up to the same number); `None` when 0.
    pub fn new(per_minute: u32) -> Option<Self> {
        let per_minute = NonZeroU32::new(per_minute)?;
        Some(Self {
            limiter: RateLimiter::keyed(Quota::per_minute(per_minute)),
            clock: DefaultClock::default(),
        })
    }

    /// Takes one request from `ip`'s allowance, or says how many seconds to wait. IPv6
    /// addresses share the allowance of their /64, which one host usually holds whole.
    pub fn check(&self, ip: IpAddr) -> Result<(), u64> {
        self.limiter
            .check_key(&allowance_key(ip))
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()).as_secs().max(1))
    }

    /// Forgets addresses whose allowance is full again (call periodically).
    pub fn forget_idle(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

/// The key an address is limited under: itself for IPv4, its /64 for IPv6.
pub fn allowance_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
    }
}

/// Middleware for the unauthenticated routes.
pub async fn limit_by_client(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(limiter) = &state.client_limiter {
        let (parts, body) = request.into_parts();
        let ip = client_ip(&parts, &state.settings.trusted_proxies);
        if let Some(ip) = ip
            && let Err(retry_after_secs) = limiter.check(ip)
        {
            return ApiError::from(Error::RateLimited { retry_after_secs }).into_response();
        }
        return next.run(Request::from_parts(parts, body)).await;
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_has_its_own_allowance() {
        let limiter = ClientRateLimiter::new(3).unwrap();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..3 {
            assert!(limiter.check(a).is_ok());
        }
        assert!(limiter.check(a).unwrap_err() >= 1);
        assert!(limiter.check(b).is_ok());
        assert!(ClientRateLimiter::new(0).is_none());
    }

    #[test]
    fn an_ipv6_slash_64_shares_one_allowance() {
        let limiter = ClientRateLimiter::new(2).unwrap();
        assert!(limiter.check("2001:db8:1:2::1".parse().unwrap()).is_ok());
        assert!(
            limiter
                .check("2001:db8:1:2:ffff::9".parse().unwrap())
                .is_ok()
        );
        assert!(limiter.check("2001:db8:1:2::77".parse().unwrap()).is_err());
        assert!(limiter.check("2001:db8:1:3::1".parse().unwrap()).is_ok());
    }
}
