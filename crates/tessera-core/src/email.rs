//! Email addresses, parsed at the edge. Uniqueness is case-insensitive: the normalized form
//! (trimmed, lower-cased) is what the store keys on.

use crate::{Error, Result};
use std::fmt;

/// The longest address SMTP can carry (RFC 5321 §4.5.3.1.3, path limit minus the brackets).
pub const MAX_EMAIL_LEN: usize = 254;

/// A syntactically valid email address, as the user typed it (trimmed).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    /// Parses an address: one `@`, a non-empty local part of at most 64 bytes, a domain of
    /// dot-separated labels (letters, digits, hyphens) with at least one dot, no spaces or
    /// control characters.
    pub fn parse(input: &str) -> Result<Self> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(Error::invalid("email: must not be empty"));
        }
        if trimmed.len() > MAX_EMAIL_LEN {
            return Err(Error::invalid(format!(
                "email: must be at most {MAX_EMAIL_LEN} characters"
            )));
        }
        let Some((local, domain)) = trimmed.rsplit_once('@') else {
            return Err(Error::invalid("email: must contain an @"));
        };
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && !local.chars().any(crate::user::is_invisible_format)
            && local.chars().all(|c| {
                c.is_ascii_alphanumeric()
                    || "!#$%&'*+-/=?^_`{|}~.".contains(c)
                    || (!c.is_ascii() && !c.is_control() && !c.is_whitespace())
            });
        if !local_ok {
            return Err(Error::invalid("email: the part before the @ is not valid"));
        }
        let labels: Vec<&str> = domain.split('.').collect();
        let domain_ok = labels.len() >= 2
            && labels.iter().all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_alphanumeric() || c == '-')
            });
        if !domain_ok {
            return Err(Error::invalid("email: the domain is not valid"));
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The address as given (trimmed).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form uniqueness is decided on.
    pub fn normalized(&self) -> String {
        self.0.to_lowercase()
    }

    /// The address with its local part hidden but for the first character
    /// (`j•••@example.com`): for labels, pages and emails.
    pub fn masked(&self) -> String {
        let (local, domain) = self.0.rsplit_once('@').unwrap_or((&self.0, ""));
        let first: String = local.chars().take(1).collect();
        format!("{first}•••@{domain}")
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Email({:?})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_addresses_keep_the_first_character_and_the_domain() {
        let email = Email::parse("Jane.Doe@example.com").unwrap();
        assert_eq!(email.masked(), "J•••@example.com");
        assert!(!email.masked().contains("ane"));
    }

    #[test]
    fn accepts_ordinary_addresses() {
        for ok in [
            "a@example.com",
            "First.Last+tag@sub.example.co.uk",
            "  x@y.io  ",
            "ünï@exämple.de",
        ] {
            assert!(Email::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_bad_addresses() {
        for bad in [
            "",
            "plain",
            "@example.com",
            "a@",
            "a@localhost",
            "a b@example.com",
            "a@exa mple.com",
            "a@-x.com",
            "a..b@x.com",
            "a@x..com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
        assert!(Email::parse(&format!("{}@example.com", "a".repeat(300))).is_err());
    }

    #[test]
    fn normalized_is_case_insensitive() {
        assert_eq!(
            Email::parse("Ann@Example.COM").unwrap().normalized(),
            "ann@example.com"
        );
    }
}
