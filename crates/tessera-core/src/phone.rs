//! Phone numbers of SMS factors, parsed at the edge: [`Phone`].
//!
//! A number must be given with its country code (`+1 415 555 2671`, or the country code and
//! the national number as two fields) and must be a valid number for that country in
//! libphonenumber's metadata (the `phonenumber` crate). It is stored and sent to in E.164
//! (`+14155552671`) and shown masked (`+1 ••• ••• 2671`).
//!
//! Threats: input that costs the parser time (the length is capped before parsing), numbers
//! that are not real (validated against the country's number plan, which also stops most
//! premium-rate "SMS pumping" destinations that are not mobile or fixed-line numbers), and
//! revealing a user's number on screens and in emails (only the last four digits are shown).

use crate::{Error, Result};
use std::fmt;

/// The most characters a phone number field may hold: E.164 allows 15 digits; spaces,
/// dashes, dots and brackets make it longer, never this long.
pub const MAX_PHONE_INPUT: usize = 32;

/// How many trailing digits a masked number keeps.
const VISIBLE_DIGITS: usize = 4;

/// A valid phone number with its country code.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Phone {
    e164: String,
    /// International format (`+1 415-555-2671`), for masking.
    international: String,
}

impl Phone {
    /// Parses `number` in international form (`+` and the country code first), or, when
    /// `country_code` is given (`"1"`, `"+44"`), the national number of that country.
    ///
    /// Errors are [`Error::InvalidRequest`] messages that say what to fix.
    pub fn parse(country_code: Option<&str>, number: &str) -> Result<Self> {
        let number = number.trim();
        if number.is_empty() {
            return Err(Error::invalid("phone: must not be empty"));
        }
        if number.chars().count() > MAX_PHONE_INPUT {
            return Err(Error::invalid(format!(
                "phone: must be at most {MAX_PHONE_INPUT} characters"
            )));
        }
        if let Some(bad) = number
            .chars()
            .find(|c| !(c.is_ascii_digit() || " -.()+".contains(*c)))
        {
            return Err(Error::invalid(format!(
                "phone: only digits, spaces, dashes, dots and brackets are allowed (found {bad:?})"
            )));
        }
        let full = match country_code.map(str::trim).filter(|c| !c.is_empty()) {
            Some(code) => {
                let digits = code.strip_prefix('+').unwrap_or(code);
                if digits.is_empty()
                    || digits.len() > 3
                    || !digits.chars().all(|c| c.is_ascii_digit())
                {
                    return Err(Error::invalid(
                        "phone: the country code must be 1 to 3 digits, like +1 or +44",
                    ));
                }
                if number.starts_with('+') {
                    return Err(Error::invalid(
                        "phone: give the number without its country code when the country code is given separately",
                    ));
                }
                format!("+{digits} {number}")
            }
            None if number.starts_with('+') => number.to_owned(),
            None => {
                return Err(Error::invalid(
                    "phone: include the country code, starting with + (for example +1 415 555 2671)",
                ));
            }
        };
        let parsed = phonenumber::parse(None, &full).map_err(|_| {
            Error::invalid("phone: not a phone number (check the country code and the digits)")
        })?;
        if !parsed.is_valid() {
            return Err(Error::invalid(
                "phone: not a valid number for its country (check the digits and the country code)",
            ));
        }
        let e164 = parsed.format().mode(phonenumber::Mode::E164).to_string();
        let international = parsed
            .format()
            .mode(phonenumber::Mode::International)
            .to_string();
        Ok(Self {
            e164,
            international,
        })
    }

    /// The number in E.164 (`+14155552671`): what is stored and sent to.
    pub fn e164(&self) -> &str {
        &self.e164
    }

    /// The number with all but its last four digits hidden, grouped as the country writes it
    /// (`+1 ••• ••• 2671`, `+44 •• •••• 0958`): for labels, pages and emails.
    pub fn masked(&self) -> String {
        mask_international(&self.international)
    }
}

/// Masks an international-format number: the country code stays, every later digit but the
/// last [`VISIBLE_DIGITS`] becomes `•`, and separators become spaces.
fn mask_international(international: &str) -> String {
    let (code, rest) = international.split_once(' ').unwrap_or((international, ""));
    let digits = rest.chars().filter(char::is_ascii_digit).count();
    let hidden = digits.saturating_sub(VISIBLE_DIGITS);
    let mut seen = 0;
    let mut out = String::with_capacity(international.len() * 3);
    out.push_str(code);
    out.push(' ');
    for c in rest.chars() {
        if c.is_ascii_digit() {
            out.push(if seen < hidden { '•' } else { c });
            seen += 1;
        } else if !out.ends_with(' ') {
            out.push(' ');
        }
    }
    out.trim_end().to_owned()
}

impl fmt::Debug for Phone {
    // The full number is personal data: debug output shows the masked form only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Phone").field(&self.masked()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(result: Result<Phone>) -> String {
        match result {
            Err(Error::InvalidRequest(message)) => message,
            other => panic!("expected invalid_request, got {other:?}"),
        }
    }

    #[test]
    fn international_numbers_parse_to_e164() {
        let us = Phone::parse(None, "+1 (415) 555-2671").unwrap();
        assert_eq!(us.e164(), "+14155552671");
        let uk = Phone::parse(None, "+44 20 7946 0958").unwrap();
        assert_eq!(uk.e164(), "+442079460958");
    }

    #[test]
    fn a_separate_country_code_is_combined_with_the_national_number() {
        let with_plus = Phone::parse(Some("+1"), "415 555 2671").unwrap();
        let without = Phone::parse(Some("1"), "415.555.2671").unwrap();
        assert_eq!(with_plus, without);
        assert_eq!(with_plus.e164(), "+14155552671");
        // The UK's trunk prefix 0 is dropped, as the number plan says.
        assert_eq!(
            Phone::parse(Some("44"), "020 7946 0958").unwrap().e164(),
            "+442079460958"
        );
    }

    #[test]
    fn masks_keep_the_country_code_and_the_last_four_digits() {
        assert_eq!(
            Phone::parse(None, "+14155552671").unwrap().masked(),
            "+1 ••• ••• 2671"
        );
        assert_eq!(
            Phone::parse(None, "+442079460958").unwrap().masked(),
            "+44 •• •••• 0958"
        );
        let debug = format!("{:?}", Phone::parse(None, "+14155552671").unwrap());
        assert!(!debug.contains("415"), "{debug}");
    }

    #[test]
    fn bad_numbers_say_what_to_fix() {
        assert!(message(Phone::parse(None, "415 555 2671")).contains("country code"));
        assert!(message(Phone::parse(None, "+1 415 CALL NOW")).contains("only digits"));
        assert!(message(Phone::parse(None, "")).contains("empty"));
        assert!(message(Phone::parse(None, &"9".repeat(100))).contains("at most 32"));
        assert!(message(Phone::parse(Some("12345"), "4155552671")).contains("country code"));
        assert!(message(Phone::parse(Some("1"), "+14155552671")).contains("separately"));
        // Right shape, not a number of the plan: US area codes never start with 0 or 1.
        assert!(message(Phone::parse(None, "+1 015 555 2671")).contains("not a valid"));
        assert!(message(Phone::parse(None, "+")).contains("phone"));
        // Full-width digits are not ASCII digits.
        assert!(message(Phone::parse(None, "+１４１５５５５２６７１")).contains("only digits"));
    }
}
