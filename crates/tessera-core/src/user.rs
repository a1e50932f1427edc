//! Accounts.

use crate::email::Email;
use crate::ids::UserId;
use crate::{Error, Result};
use time::OffsetDateTime;

/// The longest display name accepted, in characters.
pub const MAX_DISPLAY_NAME_CHARS: usize = 100;

/// An account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Its id.
    pub id: UserId,
    /// The address it signs in with (unique, case-insensitively).
    pub email: Email,
    /// The name shown in pages and emails.
    pub display_name: String,
    /// When it was created.
    pub created_at: OffsetDateTime,
}

/// A user with the stored hash of their password, as sign-in reads it.
#[derive(Clone)]
pub struct UserCredentials {
    /// The account.
    pub user: User,
    /// The Argon2id PHC string.
    pub password_hash: String,
}

impl std::fmt::Debug for UserCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserCredentials")
            .field("user", &self.user)
            .field("password_hash", &"[REDACTED]")
            .finish()
    }
}

/// Zero-width and text-direction characters, which make one name look like another (or reverse
/// how the rest of a line reads) in pages and emails.
pub fn is_invisible_format(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}' | '\u{00AD}')
}

/// Validates a display name: trimmed, at most [`MAX_DISPLAY_NAME_CHARS`], no control characters.
/// An empty name falls back to the local part of the email.
pub fn parse_display_name(input: Option<&str>, email: &Email) -> Result<String> {
    let name = input.map(str::trim).unwrap_or_default();
    if name.chars().count() > MAX_DISPLAY_NAME_CHARS {
        return Err(Error::invalid(format!(
            "display_name: must be at most {MAX_DISPLAY_NAME_CHARS} characters"
        )));
    }
    if name
        .chars()
        .any(|c| c.is_control() || is_invisible_format(c))
    {
        return Err(Error::invalid(
            "display_name: must not contain control or invisible formatting characters",
        ));
    }
    if name.is_empty() {
        let local = email.as_str().split('@').next().unwrap_or_default();
        return Ok(local.to_owned());
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_are_trimmed_bounded_and_visible() {
        let email = Email::parse("ann.lee@example.com").unwrap();
        assert_eq!(
            parse_display_name(Some("  Ann Lee "), &email).unwrap(),
            "Ann Lee"
        );
        assert_eq!(parse_display_name(None, &email).unwrap(), "ann.lee");
        assert!(parse_display_name(Some(&"x".repeat(101)), &email).is_err());
        assert!(parse_display_name(Some("Ann\u{202E}eeL"), &email).is_err());
        assert!(parse_display_name(Some("A\u{200B}nn"), &email).is_err());
        assert!(parse_display_name(Some("bell\u{7}"), &email).is_err());
    }
}
