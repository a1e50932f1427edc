//! One-time passwords for Tessera's second factors.
//!
//! - [`hotp`] and [`totp_at`]/[`verify_totp`]: RFC 4226 HOTP and RFC 6238 TOTP.
//! - [`OtpCode`]: a code as the user typed it, parsed at the edge.
//! - [`encode_secret`]/[`decode_secret`]: RFC 4648 base32 for TOTP seeds.
//! - [`OtpauthUri`]: the Google Authenticator "Key Uri Format" used in enrollment QR codes.
//! - [`BackupCode`]: 80-bit recovery codes in Crockford base32.
//!
//! The crate is pure: it reads no clock (callers pass `unix_seconds`), draws no randomness
//! (callers pass random bytes) and does no I/O, so every function is deterministic and testable.

mod backup_code;
mod code;
mod error;
mod hotp;
mod secret;
mod totp;
mod uri;

pub use backup_code::{BACKUP_CODE_BYTES, BackupCode};
pub use code::OtpCode;
pub use error::OtpError;
pub use hotp::{Algorithm, hotp};
pub use secret::{TOTP_SECRET_BYTES, decode_secret, encode_secret, group_secret};
pub use totp::{TOTP_WINDOW_STEPS, TotpParams, time_step, totp_at, verify_totp};
pub use uri::OtpauthUri;

/// The text of a file in the workspace's `testdata/`, for tests that read RFC vectors.
#[cfg(test)]
macro_rules! testdata {
    ($name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../testdata/",
            $name
        ))
    };
}
#[cfg(test)]
pub(crate) use testdata;
