//! Tessera's domain: accounts, passwords, sessions, security events, notifications, the
//! [`store::Store`] port and the services that own each use case. No HTTP, no SQL; time comes
//! from a [`clock::Clock`].

pub mod clock;
pub mod crypto;
pub mod email;
pub mod error;
pub mod event;
pub mod factor;
pub mod ids;
pub mod notification;
pub mod org;
pub mod otc;
pub mod password;
pub mod phone;
pub mod service;
pub mod session;
pub mod store;
pub mod throttle;
pub mod user;

pub use error::{Error, Result};
