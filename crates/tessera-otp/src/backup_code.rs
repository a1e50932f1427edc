//! Backup codes: single-use recovery codes for a user who has lost their authenticator.
//!
//! Threats: guessing, and mistyping that locks a user out. Each code carries 80 random bits
//! (the caller supplies [`BACKUP_CODE_BYTES`] of CSPRNG output), which an online attacker cannot
//! exhaust under rate limits. They are written in Crockford's base32
//! (<https://www.crockford.com/base32.html>): no `I`, `L`, `O` or `U`, and on reading, case,
//! dashes and whitespace are ignored and `O`→`0`, `I`/`L`→`1`, so what the user copied down
//! by hand still matches. [`BackupCode::normalized`] is the canonical form to hash; comparison
//! is constant time and `Debug` does not print the code.

use std::fmt;

use subtle::ConstantTimeEq;

use crate::OtpError;

/// Random bytes per backup code (80 bits, 16 base32 characters).
pub const BACKUP_CODE_BYTES: usize = 10;

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const CODE_CHARS: usize = 16;
const GROUP_CHARS: usize = 4;
/// Longest input [`BackupCode::parse`] looks at, in bytes.
const MAX_BACKUP_CODE_INPUT_BYTES: usize = 64;

/// A backup code in canonical form: 16 upper-case Crockford base32 characters.
#[derive(Clone)]
pub struct BackupCode(String);

impl BackupCode {
    /// Encodes 80 random bits as 16 characters, most significant bits first.
    pub fn from_bytes(bytes: [u8; BACKUP_CODE_BYTES]) -> Self {
        let mut wide = [0u8; 16];
        wide[16 - BACKUP_CODE_BYTES..].copy_from_slice(&bytes);
        let bits = u128::from_be_bytes(wide);
        let code = (0..CODE_CHARS)
            .rev()
            .map(|group| {
                let index = (bits >> (5 * group)) & 0x1f;
                char::from(ALPHABET[index as usize])
            })
            .collect();
        Self(code)
    }

    /// Reads a code as typed: any case, dashes and ASCII whitespace ignored, `O` read as `0`
    /// and `I`/`L` as `1`. Anything else outside the alphabet (including `U`) is refused, as
    /// are inputs that do not come to exactly 16 characters and inputs over 64 bytes.
    pub fn parse(input: &str) -> Result<Self, OtpError> {
        if input.len() > MAX_BACKUP_CODE_INPUT_BYTES {
            return Err(OtpError::TooLong);
        }
        let mut code = String::with_capacity(CODE_CHARS);
        for byte in input.bytes() {
            if byte == b'-' || byte.is_ascii_whitespace() {
                continue;
            }
            let canonical = match byte.to_ascii_uppercase() {
                b'O' => b'0',
                b'I' | b'L' => b'1',
                other => other,
            };
            if !ALPHABET.contains(&canonical) || code.len() == CODE_CHARS {
                return Err(OtpError::BackupCode);
            }
            code.push(char::from(canonical));
        }
        if code.len() != CODE_CHARS {
            return Err(OtpError::BackupCode);
        }
        Ok(Self(code))
    }

    /// The 16 upper-case characters without dashes: the form to hash and store.
    pub fn normalized(&self) -> &str {
        &self.0
    }

    /// The form shown to the user: `XXXX-XXXX-XXXX-XXXX`.
    pub fn display(&self) -> String {
        let mut shown = String::with_capacity(CODE_CHARS + CODE_CHARS / GROUP_CHARS);
        for (index, character) in self.0.chars().enumerate() {
            if index > 0 && index % GROUP_CHARS == 0 {
                shown.push('-');
            }
            shown.push(character);
        }
        shown
    }
}

impl PartialEq for BackupCode {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl Eq for BackupCode {}

impl fmt::Debug for BackupCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BackupCode(****-****-****-****)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn encodes_with_the_crockford_alphabet() {
        assert_eq!(
            BackupCode::from_bytes([0; BACKUP_CODE_BYTES]).normalized(),
            "0000000000000000"
        );
        assert_eq!(
            BackupCode::from_bytes([0xff; BACKUP_CODE_BYTES]).normalized(),
            "ZZZZZZZZZZZZZZZZ"
        );
        // 0x0000_0000_0000_0000_0001 is 1 in the last group; 0x8000… sets the top bit.
        let mut one = [0; BACKUP_CODE_BYTES];
        one[9] = 1;
        assert_eq!(BackupCode::from_bytes(one).normalized(), "0000000000000001");
        let mut top = [0; BACKUP_CODE_BYTES];
        top[0] = 0x80;
        assert_eq!(BackupCode::from_bytes(top).normalized(), "G000000000000000");
        // 0x00443214C74254B635CF: 5-bit groups 0,1,2,...,15.
        let counting = [0x00, 0x44, 0x32, 0x14, 0xc7, 0x42, 0x54, 0xb6, 0x35, 0xcf];
        let code = BackupCode::from_bytes(counting);
        assert_eq!(code.normalized(), "0123456789ABCDEF");
        assert_eq!(code.display(), "0123-4567-89AB-CDEF");
    }

    #[test]
    fn reads_what_people_type() {
        let expected = BackupCode::parse("0123-4567-89AB-CDEF").unwrap();
        for typed in [
            "0123456789ABCDEF",
            "0123-4567-89ab-cdef",
            " 0123 4567\t89AB-CDEF\n",
            "O123-4567-89AB-CDEF",
            "o123456789abcdef",
            "--0123--4567--89AB--CDEF--",
        ] {
            assert_eq!(BackupCode::parse(typed), Ok(expected.clone()), "{typed:?}");
        }
        let ones = BackupCode::parse("1111-1111-1111-1111").unwrap();
        assert_eq!(BackupCode::parse("IiLl-1111-1111-1111"), Ok(ones));
    }

    #[test]
    fn refuses_everything_else() {
        for typed in [
            "",
            "----",
            "0123-4567-89AB-CDE",
            "0123-4567-89AB-CDEF0",
            "0123-4567-89AB-CDEU",
            "0123-4567-89AB-CDE!",
            "0123-4567-89AB-CDE_",
            "０123-4567-89AB-CDEF",
            "0123-4567-89AB-CDÉF",
        ] {
            assert_eq!(
                BackupCode::parse(typed),
                Err(OtpError::BackupCode),
                "{typed:?}"
            );
        }
        assert_eq!(
            BackupCode::parse(&"-".repeat(1 << 20)),
            Err(OtpError::TooLong)
        );
    }

    #[test]
    fn debug_hides_the_code() {
        let code = BackupCode::parse("ABCD-EFGH-JKMN-PQRS").unwrap();
        let debug = format!("{code:?}");
        assert!(!debug.contains("ABCD"), "{debug}");
        assert!(!debug.contains("PQRS"), "{debug}");
    }

    fn bytes() -> impl Strategy<Value = [u8; BACKUP_CODE_BYTES]> {
        any::<[u8; BACKUP_CODE_BYTES]>()
    }

    proptest! {
        #[test]
        fn display_then_parse_round_trips(bytes in bytes()) {
            let code = BackupCode::from_bytes(bytes);
            prop_assert_eq!(code.normalized().len(), 16);
            prop_assert_eq!(BackupCode::parse(&code.display()), Ok(code.clone()));
            prop_assert_eq!(BackupCode::parse(code.normalized()), Ok(code));
        }

        #[test]
        fn sloppy_variants_parse_to_the_same_code(bytes in bytes(), dashes in any::<bool>()) {
            let code = BackupCode::from_bytes(bytes);
            let shown = if dashes { code.display() } else { code.normalized().to_owned() };
            let lower = shown.to_lowercase();
            let misread: String = shown
                .chars()
                .map(|c| match c { '0' => 'O', '1' => 'l', c => c })
                .collect();
            let misread_i: String = lower
                .chars()
                .map(|c| match c { '0' => 'o', '1' => 'I', c => c })
                .collect();
            for variant in [lower, misread, misread_i] {
                prop_assert_eq!(BackupCode::parse(&variant), Ok(code.clone()));
            }
        }

        #[test]
        fn parse_never_panics(input in any::<String>()) {
            let _ = BackupCode::parse(&input);
        }

        #[test]
        fn parsed_codes_are_canonical(input in "[0-9A-Za-z -]{0,24}") {
            if let Ok(code) = BackupCode::parse(&input) {
                prop_assert_eq!(code.normalized().len(), 16);
                prop_assert!(code.normalized().bytes().all(|b| ALPHABET.contains(&b)));
            }
        }
    }
}
