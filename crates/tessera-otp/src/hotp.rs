//! HOTP, the HMAC-based one-time password of RFC 4226.
//!
//! Threat: an attacker who sees some codes must not be able to predict the next one. The code is
//! a truncated HMAC of a moving counter under a secret seed, so this holds as long as the seed
//! stays secret. RFC 6238 §1.2 extends the choice of hash to SHA-256 and SHA-512.

use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::{Sha256, Sha512};
use std::fmt;
use std::str::FromStr;

use crate::OtpError;

/// The HMAC hash function of a TOTP factor (RFC 6238 §1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// HMAC-SHA-1, the RFC 4226 default and the only one every authenticator app supports.
    Sha1,
    /// HMAC-SHA-256.
    Sha256,
    /// HMAC-SHA-512.
    Sha512,
}

impl Algorithm {
    /// The name used in `otpauth://` URIs: `"SHA1"`, `"SHA256"` or `"SHA512"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Sha1 => "SHA1",
            Self::Sha256 => "SHA256",
            Self::Sha512 => "SHA512",
        }
    }

    /// Parses `SHA1`, `SHA256` or `SHA512`, in any case.
    pub fn parse(name: &str) -> Result<Self, OtpError> {
        [Self::Sha1, Self::Sha256, Self::Sha512]
            .into_iter()
            .find(|algorithm| algorithm.as_str().eq_ignore_ascii_case(name))
            .ok_or(OtpError::Algorithm)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = OtpError;

    fn from_str(name: &str) -> Result<Self, OtpError> {
        Self::parse(name)
    }
}

/// The most digits for which `10^digits` stays below the 31-bit truncated value's range.
const MAX_HOTP_DIGITS: u32 = 9;

/// The RFC 4226 code for `counter`: HMAC of the big-endian counter, dynamic truncation (§5.3),
/// reduced modulo `10^digits` and zero-padded to `digits` characters (`"005924"`).
///
/// `digits` is meant to come from a validated [`TotpParams`](crate::TotpParams) (6..=8); other
/// values are clamped to 1..=9, the range where the truncated 31-bit value covers every code.
pub fn hotp(secret: &[u8], counter: u64, algorithm: Algorithm, digits: u32) -> String {
    let message = counter.to_be_bytes();
    let mac = match algorithm {
        Algorithm::Sha1 => hmac_of::<Hmac<Sha1>>(secret, &message),
        Algorithm::Sha256 => hmac_of::<Hmac<Sha256>>(secret, &message),
        Algorithm::Sha512 => hmac_of::<Hmac<Sha512>>(secret, &message),
    };
    let digits = digits.clamp(1, MAX_HOTP_DIGITS);
    let code = dynamic_truncation(&mac) % 10u32.pow(digits);
    format!("{code:0width$}", width = digits as usize)
}

fn hmac_of<M: Mac + KeyInit>(key: &[u8], message: &[u8]) -> Vec<u8> {
    #[expect(
        clippy::expect_used,
        reason = "HMAC accepts keys of any length (RFC 2104 §2): new_from_slice never fails"
    )]
    let mut mac = <M as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// RFC 4226 §5.3: the low nibble of the last byte picks four bytes, read as a 31-bit integer.
/// Every supported MAC is at least 20 bytes long, so `offset + 3 <= 18` is always in range.
fn dynamic_truncation(mac: &[u8]) -> u32 {
    let offset = usize::from(mac[mac.len() - 1] & 0x0f);
    let word = [
        mac[offset],
        mac[offset + 1],
        mac[offset + 2],
        mac[offset + 3],
    ];
    u32::from_be_bytes(word) & 0x7fff_ffff
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC4226_SECRET: &[u8] = b"12345678901234567890";

    #[test]
    fn rfc4226_appendix_d_vectors() {
        let mut rows = 0;
        for line in crate::testdata!("rfc4226-hotp.tsv").lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let mut columns = line.split('\t');
            let (Some(counter), Some(expected)) = (columns.next(), columns.next()) else {
                panic!("malformed row {line:?}");
            };
            let counter: u64 = counter.parse().unwrap();
            assert_eq!(
                hotp(RFC4226_SECRET, counter, Algorithm::Sha1, 6),
                expected,
                "counter {counter}"
            );
            rows += 1;
        }
        assert_eq!(rows, 10);
    }

    #[test]
    fn rfc4226_intermediate_truncation_value() {
        // RFC 4226 §5.4: the example HMAC truncates to 0x50ef7f19 = 1357872921 → "872921".
        let mac = [
            0x1f, 0x86, 0x98, 0x69, 0x0e, 0x02, 0xca, 0x16, 0x61, 0x85, 0x50, 0xef, 0x7f, 0x19,
            0xda, 0x8e, 0x94, 0x5b, 0x55, 0x5a,
        ];
        assert_eq!(dynamic_truncation(&mac), 0x50ef_7f19);
    }

    #[test]
    fn digits_are_clamped_and_zero_padded() {
        assert_eq!(hotp(RFC4226_SECRET, 0, Algorithm::Sha1, 0).len(), 1);
        assert_eq!(hotp(RFC4226_SECRET, 0, Algorithm::Sha1, u32::MAX).len(), 9);
        assert_eq!(hotp(RFC4226_SECRET, 0, Algorithm::Sha1, 8).len(), 8);
        assert!(
            hotp(b"", 0, Algorithm::Sha512, 6)
                .bytes()
                .all(|b| b.is_ascii_digit())
        );
    }

    #[test]
    fn algorithm_names() {
        for algorithm in [Algorithm::Sha1, Algorithm::Sha256, Algorithm::Sha512] {
            assert_eq!(Algorithm::parse(algorithm.as_str()), Ok(algorithm));
            assert_eq!(
                algorithm.as_str().to_lowercase().parse::<Algorithm>(),
                Ok(algorithm)
            );
        }
        assert_eq!(Algorithm::parse("sHa256"), Ok(Algorithm::Sha256));
        assert_eq!(Algorithm::parse("SHA-1"), Err(OtpError::Algorithm));
        assert_eq!(Algorithm::parse("MD5"), Err(OtpError::Algorithm));
        assert_eq!(Algorithm::parse(""), Err(OtpError::Algorithm));
    }
}
