//! A one-time code as the user typed it.
//!
//! Threat: look-alike and oversized input. Only ASCII digits and ASCII spaces are accepted, so
//! full-width or other Unicode digits (which `char::is_numeric` would let through) cannot reach
//! the comparison, and the input is bounded before any work is done. The code is a credential
//! while it is valid, so `Debug` does not print it.

use std::fmt;

use crate::OtpError;

/// Longest input [`OtpCode::parse`] looks at, in bytes, before removing spaces.
const MAX_CODE_INPUT_BYTES: usize = 64;

/// A parsed one-time code: exactly the expected number of ASCII digits.
#[derive(Clone)]
pub struct OtpCode(String);

impl OtpCode {
    /// Parses `input` after removing ASCII spaces (`"123 456"` is `"123456"`). Anything other
    /// than ASCII digits and spaces is refused, as are an empty code, a code of other than
    /// `digits` digits and inputs over 64 bytes.
    pub fn parse(input: &str, digits: u32) -> Result<Self, OtpError> {
        if input.len() > MAX_CODE_INPUT_BYTES {
            return Err(OtpError::TooLong);
        }
        let mut code = String::with_capacity(input.len());
        for byte in input.bytes() {
            match byte {
                b' ' => {}
                b'0'..=b'9' => code.push(char::from(byte)),
                _ => return Err(OtpError::Code),
            }
        }
        if code.is_empty() || u32::try_from(code.len()) != Ok(digits) {
            return Err(OtpError::Code);
        }
        Ok(Self(code))
    }

    /// The digits, without spaces.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for OtpCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OtpCode(******)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_digits_and_spaces() {
        assert_eq!(OtpCode::parse("123456", 6).unwrap().as_str(), "123456");
        assert_eq!(OtpCode::parse(" 123 456 ", 6).unwrap().as_str(), "123456");
        assert_eq!(OtpCode::parse("005924", 6).unwrap().as_str(), "005924");
        assert_eq!(OtpCode::parse("1234 5678", 8).unwrap().as_str(), "12345678");
    }

    #[test]
    fn refuses_everything_else() {
        for (input, digits) in [
            ("", 6),
            ("      ", 6),
            ("", 0),
            ("12345", 6),
            ("1234567", 6),
            ("123-456", 6),
            ("12345a", 6),
            ("abcdef", 6),
            ("１２３４５６", 6), // full-width digits
            ("١٢٣٤٥٦", 6),       // Arabic-Indic digits
            ("123\t456", 6),
            ("123456\n", 6),
            ("+123456", 6),
        ] {
            assert!(OtpCode::parse(input, digits).is_err(), "{input:?} accepted");
        }
    }

    #[test]
    fn refuses_huge_input_without_scanning_it() {
        let megabyte = "1".repeat(1 << 20);
        assert_eq!(OtpCode::parse(&megabyte, 6).err(), Some(OtpError::TooLong));
        let spaces = format!("{}123456", " ".repeat(64));
        assert_eq!(OtpCode::parse(&spaces, 6).err(), Some(OtpError::TooLong));
    }

    #[test]
    fn debug_hides_the_code() {
        let code = OtpCode::parse("987654", 6).unwrap();
        let debug = format!("{code:?}");
        assert_eq!(debug, "OtpCode(******)");
        assert!(!debug.contains("987654"));
    }

    #[test]
    fn error_messages_do_not_echo_the_input() {
        let error = OtpCode::parse("12345x", 6).unwrap_err();
        assert!(!error.to_string().contains("12345"));
    }

    proptest! {
        #[test]
        fn parse_never_panics(input in any::<String>(), digits in any::<u32>()) {
            let _ = OtpCode::parse(&input, digits);
        }

        #[test]
        fn parse_accepts_spaced_digits(code in "[0-9]{6,8}", spaces in "[ ]{0,4}") {
            let spaced = format!("{spaces}{}{spaces}{}", &code[..3], &code[3..]);
            let parsed = OtpCode::parse(&spaced, code.len() as u32).unwrap();
            prop_assert_eq!(parsed.as_str(), code.as_str());
        }

        #[test]
        fn parsed_codes_are_ascii_digits(input in "[0-9 a-z]{0,12}") {
            if let Ok(code) = OtpCode::parse(&input, 6) {
                prop_assert!(code.as_str().bytes().all(|b| b.is_ascii_digit()));
                prop_assert_eq!(code.as_str().len(), 6);
            }
        }
    }
}
