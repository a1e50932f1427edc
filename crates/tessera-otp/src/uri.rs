//! `otpauth://` URIs, the Google Authenticator "Key Uri Format" shown as a QR code at enrollment:
//! `otpauth://totp/{issuer}:{account}?secret=…&issuer=…&algorithm=SHA1&digits=6&period=30`.
//!
//! Threats: a crafted URI that parses to something other than what it looks like (a label issuer
//! contradicting the `issuer` parameter, a parameter given twice, a truncated or empty secret),
//! and oversized input. Parsing is by hand over RFC 3986 percent-encoding rather than with a
//! general URL parser, so no path normalisation (`.`/`..` segments) can alter a label; it
//! refuses contradictions, duplicates and secrets under 80 bits (RFC 4226 §4 R6 asks for 128,
//! recommends 160; 80 is what some issuers still hand out), and bounds the input.

use std::fmt;

use crate::{Algorithm, OtpError, TotpParams, decode_secret, encode_secret};

/// Longest URI [`OtpauthUri::parse`] accepts, in bytes.
const MAX_URI_BYTES: usize = 4096;
/// Shortest secret an imported URI may carry, in bytes (80 bits).
const MIN_SECRET_BYTES: usize = 10;
const SCHEME: &str = "otpauth://";

/// The contents of a TOTP `otpauth://` URI.
#[derive(Clone, PartialEq, Eq)]
pub struct OtpauthUri {
    /// Who runs the account, shown by the app above the code; may be empty.
    pub issuer: String,
    /// Which account, typically the user's e-mail address; [`parse`](Self::parse) requires one.
    pub account: String,
    /// The raw seed.
    pub secret: Vec<u8>,
    /// Algorithm, digits and period.
    pub params: TotpParams,
}

impl OtpauthUri {
    /// Writes the URI. The label is the percent-encoded issuer and account joined by a literal
    /// `:` (just the account when the issuer is empty); parameters come in the order `secret`,
    /// `issuer` (when non-empty), `algorithm`, `digits`, `period`, always all present because
    /// some apps ignore the defaults.
    pub fn to_uri(&self) -> String {
        let mut uri = String::from("otpauth://totp/");
        if !self.issuer.is_empty() {
            percent_encode_into(&mut uri, &self.issuer);
            uri.push(':');
        }
        percent_encode_into(&mut uri, &self.account);
        uri.push_str("?secret=");
        uri.push_str(&encode_secret(&self.secret));
        if !self.issuer.is_empty() {
            uri.push_str("&issuer=");
            percent_encode_into(&mut uri, &self.issuer);
        }
        uri.push_str("&algorithm=");
        uri.push_str(self.params.algorithm.as_str());
        uri.push_str(&format!(
            "&digits={}&period={}",
            self.params.digits, self.params.period
        ));
        uri
    }

    /// Reads a TOTP URI (`hotp` is refused). The label may carry the issuer before a literal
    /// `:`; if the `issuer` parameter is also present the two must be equal. Missing
    /// `algorithm`, `digits` and `period` default to SHA1, 6 and 30; `secret` is required and
    /// must be base32 of at least 10 bytes. Unknown parameters are ignored, repeated ones
    /// refused, a fragment ignored; the input is limited to 4096 bytes.
    pub fn parse(uri: &str) -> Result<Self, OtpError> {
        if uri.len() > MAX_URI_BYTES {
            return Err(OtpError::TooLong);
        }
        let rest = uri
            .get(..SCHEME.len())
            .filter(|scheme| scheme.eq_ignore_ascii_case(SCHEME))
            .and_then(|_| uri.get(SCHEME.len()..))
            .ok_or(OtpError::Uri("the scheme must be otpauth"))?;
        let (kind, rest) = rest
            .split_once('/')
            .ok_or(OtpError::Uri("the label is missing"))?;
        if kind.eq_ignore_ascii_case("hotp") {
            return Err(OtpError::Uri("HOTP is not supported"));
        }
        if !kind.eq_ignore_ascii_case("totp") {
            return Err(OtpError::Uri("the type must be totp"));
        }
        let rest = rest
            .split_once('#')
            .map_or(rest, |(before, _fragment)| before);
        let (label, query) = rest.split_once('?').unwrap_or((rest, ""));

        // Split on a literal colon before decoding, so that an encoded one stays in the name.
        let (label_issuer, raw_account) = match label.split_once(':') {
            Some((issuer, account)) => (Some(percent_decode(issuer, false)?), account),
            None => (None, label),
        };
        let mut account = percent_decode(raw_account, false)?;

        let query = QueryParams::parse(query)?;
        let issuer = match (label_issuer, query.issuer) {
            (Some(from_label), Some(from_query)) if from_label != from_query => {
                return Err(OtpError::Uri("the issuer parameter contradicts the label"));
            }
            (Some(from_label), _) => from_label,
            (None, Some(from_query)) => {
                // Some generators encode the label's colon; accept "Issuer%3Aaccount" when it
                // repeats the issuer parameter.
                if let Some(stripped) = account
                    .strip_prefix(from_query.as_str())
                    .and_then(|rest| rest.strip_prefix(':'))
                {
                    account = stripped.to_owned();
                }
                from_query
            }
            (None, None) => String::new(),
        };
        if account.is_empty() {
            return Err(OtpError::Uri("the label must name an account"));
        }

        let secret = decode_secret(
            &query
                .secret
                .ok_or(OtpError::Uri("the secret parameter is missing"))?,
        )?;
        if secret.len() < MIN_SECRET_BYTES {
            return Err(OtpError::SecretTooShort);
        }
        let algorithm = match query.algorithm {
            Some(name) => Algorithm::parse(&name)?,
            None => TotpParams::STANDARD.algorithm,
        };
        let digits = match query.digits {
            Some(text) => parse_decimal(&text).ok_or(OtpError::Digits)?,
            None => TotpParams::STANDARD.digits,
        };
        let period = match query.period {
            Some(text) => parse_decimal(&text).ok_or(OtpError::Period)?,
            None => TotpParams::STANDARD.period,
        };
        Ok(Self {
            issuer,
            account,
            secret,
            params: TotpParams::new(algorithm, digits, period)?,
        })
    }
}

impl fmt::Debug for OtpauthUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtpauthUri")
            .field("issuer", &self.issuer)
            .field("account", &self.account)
            .field("secret", &format_args!("[REDACTED]"))
            .field("params", &self.params)
            .finish()
    }
}

/// The parameters the format defines, decoded; others are skipped.
#[derive(Default)]
struct QueryParams {
    secret: Option<String>,
    issuer: Option<String>,
    algorithm: Option<String>,
    digits: Option<String>,
    period: Option<String>,
}

impl QueryParams {
    fn parse(query: &str) -> Result<Self, OtpError> {
        let mut params = Self::default();
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let slot = match key {
                "secret" => &mut params.secret,
                "issuer" => &mut params.issuer,
                "algorithm" => &mut params.algorithm,
                "digits" => &mut params.digits,
                "period" => &mut params.period,
                _ => continue,
            };
            if slot.replace(percent_decode(value, true)?).is_some() {
                return Err(OtpError::Uri("a parameter is repeated"));
            }
        }
        Ok(params)
    }
}

/// Plain decimal digits only: `str::parse` would also take a leading `+`.
fn parse_decimal<T: std::str::FromStr>(text: &str) -> Option<T> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Appends `text` with every byte outside RFC 3986's unreserved set percent-encoded, which is
/// safe in both the label and the query.
fn percent_encode_into(out: &mut String, text: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
    }
}

/// Decodes `%XX` escapes (and, in a query, `+` as a space as HTML forms write it); a `%` not
/// followed by two hex digits, or a result that is not UTF-8, is refused.
fn percent_decode(text: &str, plus_is_space: bool) -> Result<String, OtpError> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut input = text.bytes();
    while let Some(byte) = input.next() {
        match byte {
            b'%' => {
                let high = input.next().and_then(hex_value);
                let low = input.next().and_then(hex_value);
                let (Some(high), Some(low)) = (high, low) else {
                    return Err(OtpError::Uri("malformed percent-encoding"));
                };
                bytes.push(high << 4 | low);
            }
            b'+' if plus_is_space => bytes.push(b' '),
            _ => bytes.push(byte),
        }
    }
    String::from_utf8(bytes).map_err(|_| OtpError::Uri("the label or a parameter is not UTF-8"))
}

fn hex_value(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|value| u8::try_from(value).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SEED: &[u8] = b"12345678901234567890";
    const SEED_BASE32: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

    fn example() -> OtpauthUri {
        OtpauthUri {
            issuer: "ACME Co".to_owned(),
            account: "john.doe@email.com".to_owned(),
            secret: SEED.to_vec(),
            params: TotpParams::STANDARD,
        }
    }

    #[test]
    fn writes_the_key_uri_format() {
        assert_eq!(
            example().to_uri(),
            format!(
                "otpauth://totp/ACME%20Co:john.doe%40email.com?secret={SEED_BASE32}\
                 &issuer=ACME%20Co&algorithm=SHA1&digits=6&period=30"
            )
        );
        let no_issuer = OtpauthUri {
            issuer: String::new(),
            params: TotpParams::new(Algorithm::Sha512, 8, 60).unwrap(),
            ..example()
        };
        assert_eq!(
            no_issuer.to_uri(),
            format!(
                "otpauth://totp/john.doe%40email.com?secret={SEED_BASE32}\
                 &algorithm=SHA512&digits=8&period=60"
            )
        );
    }

    #[test]
    fn reads_the_google_example_and_variants() {
        let google = format!(
            "otpauth://totp/ACME%20Co:john.doe@email.com?secret={SEED_BASE32}\
             &issuer=ACME%20Co&algorithm=SHA1&digits=6&period=30"
        );
        assert_eq!(OtpauthUri::parse(&google), Ok(example()));
        for uri in [
            // Defaults, issuer only in the label.
            format!("otpauth://totp/ACME%20Co:john.doe%40email.com?secret={SEED_BASE32}"),
            // Issuer only as a parameter, '+' for a space, lower-case secret with padding.
            format!(
                "OTPAUTH://TOTP/john.doe@email.com?secret={}%3D%3D%3D%3D&issuer=ACME+Co",
                SEED_BASE32.to_lowercase()
            ),
            // Encoded colon repeating the issuer parameter; unknown parameter; fragment.
            format!(
                "otpauth://totp/ACME%20Co%3Ajohn.doe@email.com?image=x&secret={SEED_BASE32}\
                 &issuer=ACME%20Co#ignored"
            ),
        ] {
            assert_eq!(OtpauthUri::parse(&uri), Ok(example()), "{uri}");
        }
        let parsed = OtpauthUri::parse(&format!(
            "otpauth://totp/alice?secret={SEED_BASE32}&algorithm=sha256&digits=8&period=60"
        ))
        .unwrap();
        assert_eq!(parsed.issuer, "");
        assert_eq!(parsed.account, "alice");
        assert_eq!(
            parsed.params,
            TotpParams::new(Algorithm::Sha256, 8, 60).unwrap()
        );
    }

    #[test]
    fn refuses_malformed_uris() {
        let s = SEED_BASE32;
        let cases = [
            (format!("https://totp/a?secret={s}"), "scheme"),
            (format!("otpauth:/totp/a?secret={s}"), "scheme"),
            (format!("otpauth://hotp/a?secret={s}&counter=0"), "hotp"),
            (format!("otpauth://motp/a?secret={s}"), "type"),
            (format!("otpauth://totp?secret={s}"), "no label"),
            (format!("otpauth://totp/?secret={s}"), "empty label"),
            (format!("otpauth://totp/ACME:?secret={s}"), "empty account"),
            ("otpauth://totp/a".to_owned(), "no secret"),
            ("otpauth://totp/a?secret=".to_owned(), "empty secret"),
            (
                "otpauth://totp/a?secret=GEZDGNBVGY3TQOJ".to_owned(),
                "short",
            ),
            (
                "otpauth://totp/a?secret=GEZDGNBV!Y3TQOJQ".to_owned(),
                "bad base32",
            ),
            (
                format!("otpauth://totp/a?secret={s}&secret={s}"),
                "repeated",
            ),
            (
                format!("otpauth://totp/A:a?secret={s}&issuer=B"),
                "issuer mismatch",
            ),
            (
                format!("otpauth://totp/a?secret={s}&algorithm=MD5"),
                "algorithm",
            ),
            (format!("otpauth://totp/a?secret={s}&digits=10"), "digits"),
            (
                format!("otpauth://totp/a?secret={s}&digits=+6"),
                "digits sign",
            ),
            (
                format!("otpauth://totp/a?secret={s}&digits="),
                "digits empty",
            ),
            (format!("otpauth://totp/a?secret={s}&period=0"), "period"),
            (
                format!("otpauth://totp/a?secret={s}&period=99999999999999999999999"),
                "period",
            ),
            (format!("otpauth://totp/a%2?secret={s}"), "percent"),
            (format!("otpauth://totp/a%FF?secret={s}"), "utf-8"),
            (
                format!("otpauth://totp/{}?secret={s}", "a".repeat(4096)),
                "too long",
            ),
        ];
        for (uri, why) in cases {
            assert!(OtpauthUri::parse(&uri).is_err(), "{why}: {uri} accepted");
        }
        assert_eq!(
            OtpauthUri::parse("otpauth://totp/a?secret=GEZDGNBVGY3TQOJ"),
            Err(OtpError::Secret)
        );
        assert_eq!(
            OtpauthUri::parse("otpauth://totp/a?secret=GEZDGNBVGY3TQ"),
            Err(OtpError::SecretTooShort)
        );
        assert!(OtpauthUri::parse("otpauth://totp/a?secret=GEZDGNBVGY3TQOJQ").is_ok());
    }

    #[test]
    fn debug_hides_the_secret() {
        let debug = format!("{:?}", example());
        assert!(debug.contains("ACME Co"));
        assert!(debug.contains("[REDACTED]"));
        assert!(!debug.contains(SEED_BASE32));
        assert!(!debug.contains("49, 50, 51"), "{debug}");
    }

    #[test]
    fn error_messages_do_not_echo_the_uri() {
        let error = OtpauthUri::parse("otpauth://totp/Secretive:a?secret=AB%ZZ").unwrap_err();
        assert!(!error.to_string().contains("Secretive"));
    }

    fn algorithms() -> impl Strategy<Value = Algorithm> {
        prop_oneof![
            Just(Algorithm::Sha1),
            Just(Algorithm::Sha256),
            Just(Algorithm::Sha512)
        ]
    }

    proptest! {
        #[test]
        fn to_uri_then_parse_round_trips(
            issuer in prop_oneof![Just(String::new()), "[a-zA-Z :?&%=#+/@.~\u{e9}\u{4e16}\u{1f600}-]{1,24}", any::<String>()],
            account in prop_oneof!["[a-zA-Z :?&%=#+/@.~\u{e9}\u{4e16}\u{1f600}-]{1,24}", "\\PC{1,40}"],
            secret in proptest::collection::vec(any::<u8>(), 10..=64),
            algorithm in algorithms(),
            digits in 6u32..=8,
            period in 1u64..=3600,
        ) {
            let original = OtpauthUri {
                issuer,
                account,
                secret,
                params: TotpParams::new(algorithm, digits, period).unwrap(),
            };
            prop_assert_eq!(OtpauthUri::parse(&original.to_uri()), Ok(original));
        }

        #[test]
        fn parse_never_panics(input in any::<String>()) {
            let _ = OtpauthUri::parse(&input);
        }

        #[test]
        fn parse_never_panics_on_near_misses(
            label in "[a-zA-Z%:?&=#+/0-9\u{e9}]{0,20}",
            query in "[a-zA-Z%:?&=#+/0-9\u{e9}]{0,60}",
        ) {
            let _ = OtpauthUri::parse(&format!("otpauth://totp/{label}?{query}"));
            let _ = OtpauthUri::parse(&format!("otpauth://totp/{label}?secret={SEED_BASE32}&{query}"));
        }
    }
}
