//! The one error type of the crate.
//!
//! Messages are fixed strings: they never echo the input, which may be a code, a secret or a
//! URI carrying one.

/// Why an input was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OtpError {
    /// The number of digits is outside 6..=8.
    #[error("the number of digits must be between 6 and 8")]
    Digits,
    /// The period is outside 1..=3600 seconds.
    #[error("the period must be between 1 and 3600 seconds")]
    Period,
    /// The algorithm is not SHA1, SHA256 or SHA512.
    #[error("the algorithm must be SHA1, SHA256 or SHA512")]
    Algorithm,
    /// The input is longer than the parser accepts.
    #[error("the input is too long")]
    TooLong,
    /// A one-time code is not exactly the expected number of ASCII digits.
    #[error("the code must be exactly the expected number of digits")]
    Code,
    /// A secret is empty or not valid base32.
    #[error("the secret is not valid base32")]
    Secret,
    /// A secret is shorter than 80 bits.
    #[error("the secret is too short")]
    SecretTooShort,
    /// An `otpauth://` URI is malformed; the reason is a fixed description.
    #[error("invalid otpauth URI: {0}")]
    Uri(&'static str),
    /// A backup code is not 16 characters of the Crockford base32 alphabet.
    #[error("the backup code must be 16 characters")]
    BackupCode,
}
