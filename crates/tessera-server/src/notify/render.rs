//! Rendering notifications into what the user reads: an email (subject, text part, HTML part)
//! or a short SMS text.
//!
//! Defends against HTML injection through user-controlled values (a display name such as
//! `<script>`): the HTML part comes from askama `.html` templates, which escape every
//! interpolation, and nothing here is ever marked `|safe`. Every message names the service and
//! tells the user what to do if the change was not theirs (a link to
//! `{public_url}/settings/security`), the advice that makes a security notice useful.
//!
//! All wording for every [`Notification`] kind is chosen in one `match` ([`Renderer::render`]),
//! so a new kind is added in one place.

use askama::Template;
use tessera_core::notification::{FactorChange, Notification};
use tessera_core::otc::{CODE_TTL, CodePurpose};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

/// The name every message signs with.
pub const SERVICE_NAME: &str = "Tessera";

/// Why a notification could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// A template failed to render (a bug; askama templates are checked at compile time).
    #[error("template error: {0}")]
    Template(#[from] askama::Error),
    /// This build does not know how to word this kind of notification (a newer instance wrote it).
    #[error("notification kind not supported by this version")]
    Unsupported,
}

/// An email ready to be put into a MIME message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedEmail {
    /// The `Subject:` header; never contains user data.
    pub subject: String,
    /// The `text/plain` part.
    pub text: String,
    /// The `text/html` part (escaped).
    pub html: String,
}

/// Every form of one notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The email form.
    pub email: RenderedEmail,
    /// The SMS form: plain, short, no markup.
    pub sms: String,
}

/// Turns notifications into text, with links under the public URL.
#[derive(Debug, Clone)]
pub struct Renderer {
    public_url: String,
    security_url: String,
}

/// What the base layouts need.
struct Layout<'a> {
    service: &'static str,
    public_url: &'a str,
    security_url: &'a str,
}

#[derive(Template)]
#[template(path = "email/account_created.html")]
struct AccountCreatedHtml<'a> {
    layout: &'a Layout<'a>,
    subject: &'a str,
    email: &'a str,
}

#[derive(Template)]
#[template(path = "email/account_created.txt")]
struct AccountCreatedText<'a> {
    layout: &'a Layout<'a>,
    email: &'a str,
}

#[derive(Template)]
#[template(path = "email/one_time_code.html")]
struct OneTimeCodeHtml<'a> {
    layout: &'a Layout<'a>,
    subject: &'a str,
    what: &'a str,
    code: &'a str,
    minutes: i64,
}

#[derive(Template)]
#[template(path = "email/one_time_code.txt")]
struct OneTimeCodeText<'a> {
    layout: &'a Layout<'a>,
    what: &'a str,
    code: &'a str,
    minutes: i64,
}

#[derive(Template)]
#[template(path = "email/password_changed.html")]
struct PasswordChangedHtml<'a> {
    layout: &'a Layout<'a>,
    subject: &'a str,
    display_name: &'a str,
    at: &'a str,
    ip: Option<&'a str>,
    sessions_revoked: u64,
}

#[derive(Template)]
#[template(path = "email/password_changed.txt")]
struct PasswordChangedText<'a> {
    layout: &'a Layout<'a>,
    display_name: &'a str,
    at: &'a str,
    ip: Option<&'a str>,
    sessions_revoked: u64,
}

/// The content of a security notice: a greeting, one sentence saying what happened, facts
/// (when, from where), further lines, and what to do if it was not the user. The MFA notices
/// share this one template pair; only their wording differs.
struct Notice {
    subject: String,
    display_name: String,
    lead: String,
    facts: Vec<(&'static str, String)>,
    lines: Vec<String>,
    not_you: &'static str,
    sms: String,
}

#[derive(Template)]
#[template(path = "email/security_notice.html")]
struct NoticeHtml<'a> {
    layout: &'a Layout<'a>,
    subject: &'a str,
    notice: &'a Notice,
}

#[derive(Template)]
#[template(path = "email/security_notice.txt")]
struct NoticeText<'a> {
    layout: &'a Layout<'a>,
    notice: &'a Notice,
}

/// "When" and "From" facts of a notice.
fn when_and_where(at: &str, ip: Option<&String>) -> Vec<(&'static str, String)> {
    let mut facts = vec![("When", human_time(at))];
    if let Some(ip) = ip {
        facts.push(("From", ip.clone()));
    }
    facts
}

fn revoked_line(sessions_revoked: u64) -> Option<String> {
    match sessions_revoked {
        0 => None,
        1 => Some("1 other session was signed out.".into()),
        n => Some(format!("{n} other sessions were signed out.")),
    }
}

const NOT_YOU_FACTOR: &str = "If you did not make this change, someone else may have your password: change it now and review your sign-in methods at";
const NOT_YOU_SIGNIN: &str =
    "If this wasn't you, change your password now: someone may know it. Review your sessions at";

impl Renderer {
    /// The wording of the MFA notices, or `None` for kinds with their own templates.
    fn notice(&self, notification: &Notification) -> Option<Notice> {
        let security = &self.security_url;
        Some(match notification {
            Notification::FactorChanged {
                display_name,
                change,
                label,
                at,
                ip,
                sessions_revoked,
                kind,
            } => {
                let (what, code_source) = match kind.as_deref() {
                    Some("sms") => ("the phone number", "a code sent to it by text message"),
                    Some("email") => ("the email address", "a code sent to it"),
                    _ => ("the authenticator app", "a code from it"),
                };
                let (subject, lead, sms) = match change {
                    FactorChange::MfaEnabled => (
                        format!("Two-step verification is on for your {SERVICE_NAME} account"),
                        format!("Two-step verification was turned on with {what} \"{label}\". Signing in now needs {code_source} (or a backup code)."),
                        "two-step verification was turned on",
                    ),
                    FactorChange::Added => (
                        format!("A sign-in method was added to your {SERVICE_NAME} account"),
                        format!("{} \"{label}\" was added to your account.", crate::ui::capitalize(what)),
                        "a sign-in method was added",
                    ),
                    FactorChange::Replaced if matches!(kind.as_deref(), Some("sms" | "email")) => (
                        format!("A sign-in method on your {SERVICE_NAME} account was replaced"),
                        format!("{} \"{label}\" replaces the previous one, which no longer receives sign-in codes. Your backup codes still work.", crate::ui::capitalize(what)),
                        "a sign-in method was replaced",
                    ),
                    FactorChange::Replaced => (
                        format!("Your {SERVICE_NAME} authenticator app was reset"),
                        format!("Your authenticator was reset: \"{label}\" replaces the previous app, whose codes no longer work. Your backup codes still work."),
                        "your authenticator app was reset",
                    ),
                    FactorChange::Removed => (
                        format!("A sign-in method was removed from your {SERVICE_NAME} account"),
                        format!("The sign-in method \"{label}\" was removed from your account."),
                        "a sign-in method was removed",
                    ),
                };
                Notice {
                    subject,
                    display_name: display_name.clone(),
                    lead,
                    facts: when_and_where(at, ip.as_ref()),
                    lines: revoked_line(*sessions_revoked).into_iter().collect(),
                    not_you: NOT_YOU_FACTOR,
                    sms: format!("{SERVICE_NAME}: {sms}. Not you? {security}"),
                }
            }
            Notification::MfaDisabled {
                display_name,
                at,
                ip,
                by_operator,
            } => Notice {
                subject: format!("Two-step verification is off for your {SERVICE_NAME} account"),
                display_name: display_name.clone(),
                lead: if *by_operator {
                    "An administrator reset two-step verification on your account: every authenticator app and backup code was removed. Set it up again from your security settings.".into()
                } else {
                    "Two-step verification was turned off: every authenticator app and backup code was removed. Your password alone now signs you in.".into()
                },
                facts: when_and_where(at, ip.as_ref()),
                lines: Vec::new(),
                not_you: NOT_YOU_FACTOR,
                sms: format!("{SERVICE_NAME}: two-step verification was turned off. Not you? {security}"),
            },
            Notification::BackupCodesRegenerated {
                display_name,
                at,
                ip,
            } => Notice {
                subject: format!("New {SERVICE_NAME} backup codes were generated"),
                display_name: display_name.clone(),
                lead: "A new set of 10 backup codes was generated for your account. Every earlier backup code stopped working.".into(),
                facts: when_and_where(at, ip.as_ref()),
                lines: Vec::new(),
                not_you: NOT_YOU_FACTOR,
                sms: format!("{SERVICE_NAME}: new backup codes were generated. Not you? {security}"),
            },
            Notification::BackupCodeUsed {
                display_name,
                at,
                ip,
                remaining,
            } => {
                let mut lines = vec![match remaining {
                    1 => "You have 1 backup code left.".to_owned(),
                    n => format!("You have {n} backup codes left."),
                }];
                if *remaining <= tessera_core::factor::LOW_BACKUP_CODES {
                    lines.push("You are running low: generate new backup codes in your security settings.".into());
                }
                Notice {
                    subject: format!("A backup code was used to sign in to {SERVICE_NAME}"),
                    display_name: display_name.clone(),
                    lead: "A backup code was used to sign in to your account. Each code works once.".into(),
                    facts: when_and_where(at, ip.as_ref()),
                    lines,
                    not_you: NOT_YOU_SIGNIN,
                    sms: format!("{SERVICE_NAME}: a backup code was used to sign in; {remaining} left. Not you? {security}"),
                }
            }
            Notification::MfaResetCompleted {
                display_name,
                member_email,
                at,
                ip,
            } => Notice {
                subject: match member_email {
                    Some(member) => format!("{member} finished resetting two-step verification"),
                    None => format!("Two-step verification was reset on your {SERVICE_NAME} account"),
                },
                display_name: display_name.clone(),
                lead: match member_email {
                    Some(member) => format!("{member} set up a new sign-in method with the reset link you sent; their old sign-in methods and backup codes were removed."),
                    None => "You set up a new sign-in method with a reset link. Every earlier sign-in method and backup code was removed, and other sessions were signed out.".into(),
                },
                facts: when_and_where(at, ip.as_ref()),
                lines: Vec::new(),
                not_you: NOT_YOU_FACTOR,
                sms: format!("{SERVICE_NAME}: two-step verification was reset. Not you? {security}"),
            },
            Notification::UnfinishedSignin {
                display_name,
                at,
                ip,
                user_agent,
            } => {
                let mut facts = when_and_where(at, ip.as_ref());
                if let Some(agent) = user_agent {
                    facts.push(("Device", agent.chars().take(120).collect()));
                }
                Notice {
                    subject: format!("Someone signed in to {SERVICE_NAME} with your password"),
                    display_name: display_name.clone(),
                    lead: "Someone signed in with your password but did not complete two-step verification.".into(),
                    facts,
                    lines: vec!["If this was you, you can ignore this message.".into()],
                    not_you: NOT_YOU_SIGNIN,
                    sms: format!("{SERVICE_NAME}: someone signed in with your password. Not you? Change it: {security}"),
                }
            }
            _ => return None,
        })
    }

    fn render_notice(&self, notice: Notice) -> Result<Rendered, RenderError> {
        let layout = Layout {
            service: SERVICE_NAME,
            public_url: &self.public_url,
            security_url: &self.security_url,
        };
        let html = NoticeHtml {
            layout: &layout,
            subject: &notice.subject,
            notice: &notice,
        }
        .render()?;
        let text = NoticeText {
            layout: &layout,
            notice: &notice,
        }
        .render()?;
        Ok(Rendered {
            email: RenderedEmail {
                subject: notice.subject,
                text,
                html,
            },
            sms: notice.sms,
        })
    }

    /// The MFA reset link email; `token` was opened from the outbox by the delivery.
    pub fn reset_link(
        &self,
        display_name: &str,
        org_name: Option<&str>,
        token: &str,
        expires_at: &str,
    ) -> Result<Rendered, RenderError> {
        let link = format!("{}/mfa-reset/{token}", self.public_url);
        let who = match org_name {
            Some(org) => format!("An administrator of {org}"),
            None => format!("The administrator of this {SERVICE_NAME} server"),
        };
        self.render_notice(Notice {
            subject: format!("Reset two-step verification on your {SERVICE_NAME} account"),
            display_name: display_name.to_owned(),
            lead: format!("{who} asked to reset two-step verification on your account. To set up a new sign-in method, open this link and enter your password:"),
            facts: vec![("Expires", human_time(expires_at))],
            lines: vec![
                link.clone(),
                "The link works once. Until you set up the new method, your current one keeps working.".into(),
            ],
            not_you: "If you did not expect this, ignore this email and tell your administrator; nothing changes unless the link is used with your password. Review your account at",
            sms: format!("{SERVICE_NAME}: reset your two-step verification: {link}"),
        })
    }

    /// A renderer whose links point under `public_url` (e.g. `https://id.example.com`).
    pub fn new(public_url: &str) -> Self {
        let public_url = public_url.trim_end_matches('/').to_owned();
        let security_url = format!("{public_url}/settings/security");
        Self {
            public_url,
            security_url,
        }
    }

    /// The public URL links are built on (without a trailing slash).
    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    /// Where the "if this wasn't you" advice sends the user.
    pub fn security_url(&self) -> &str {
        &self.security_url
    }

    /// The email form of `notification`.
    pub fn email(&self, notification: &Notification) -> Result<RenderedEmail, RenderError> {
        Ok(self.render(notification)?.email)
    }

    /// The SMS form of `notification`.
    pub fn sms(&self, notification: &Notification) -> Result<String, RenderError> {
        Ok(self.render(notification)?.sms)
    }

    /// Every form of a one-time code message (the code opened from
    /// [`Notification::OneTimeCode`] by the delivery worker): "Your Tessera sign-in code is
    /// 123456. It expires in 10 minutes." Nothing else secret goes in.
    pub fn one_time_code(&self, code: &str, purpose: CodePurpose) -> Result<Rendered, RenderError> {
        let layout = Layout {
            service: SERVICE_NAME,
            public_url: &self.public_url,
            security_url: &self.security_url,
        };
        let what = match purpose {
            CodePurpose::Enrollment => "verification code",
            CodePurpose::Signin => "sign-in code",
            CodePurpose::Reauth => "confirmation code",
        };
        let minutes = CODE_TTL.whole_minutes();
        let subject = format!("Your {SERVICE_NAME} {what}");
        let html = OneTimeCodeHtml {
            layout: &layout,
            subject: &subject,
            what,
            code,
            minutes,
        }
        .render()?;
        let text = OneTimeCodeText {
            layout: &layout,
            what,
            code,
            minutes,
        }
        .render()?;
        Ok(Rendered {
            email: RenderedEmail {
                subject,
                text,
                html,
            },
            sms: format!("Your {SERVICE_NAME} {what} is {code}. It expires in {minutes} minutes."),
        })
    }

    /// Every form of `notification`. The one place that words each kind.
    pub fn render(&self, notification: &Notification) -> Result<Rendered, RenderError> {
        let layout = Layout {
            service: SERVICE_NAME,
            public_url: &self.public_url,
            security_url: &self.security_url,
        };
        if let Some(notice) = self.notice(notification) {
            return self.render_notice(notice);
        }
        match notification {
            Notification::AccountCreated { email } => {
                let subject = format!("Welcome to {SERVICE_NAME}");
                let html = AccountCreatedHtml {
                    layout: &layout,
                    subject: &subject,
                    email,
                }
                .render()?;
                let text = AccountCreatedText {
                    layout: &layout,
                    email,
                }
                .render()?;
                let sms = format!(
                    "{SERVICE_NAME}: your account was created. Not you? {}",
                    self.security_url
                );
                Ok(Rendered {
                    email: RenderedEmail {
                        subject,
                        text,
                        html,
                    },
                    sms,
                })
            }
            Notification::PasswordChanged {
                display_name,
                at,
                ip,
                sessions_revoked,
            } => {
                let subject = format!("Your {SERVICE_NAME} password was changed");
                let at = human_time(at);
                let ip = ip.as_deref();
                let html = PasswordChangedHtml {
                    layout: &layout,
                    subject: &subject,
                    display_name,
                    at: &at,
                    ip,
                    sessions_revoked: *sessions_revoked,
                }
                .render()?;
                let text = PasswordChangedText {
                    layout: &layout,
                    display_name,
                    at: &at,
                    ip,
                    sessions_revoked: *sessions_revoked,
                }
                .render()?;
                let sms = format!(
                    "{SERVICE_NAME}: your password was changed. Not you? {}",
                    self.security_url
                );
                Ok(Rendered {
                    email: RenderedEmail {
                        subject,
                        text,
                        html,
                    },
                    sms,
                })
            }
            // `Notification` is `#[non_exhaustive]`. A kind this build does not know was written
            // by a newer instance during a rolling upgrade: leave it for that instance (retry).
            _ => Err(RenderError::Unsupported),
        }
    }
}

/// `2026-01-01T12:30:00Z` → `2026-01-01 12:30 UTC`; anything unparsable is shown as given.
fn human_time(rfc3339: &str) -> String {
    OffsetDateTime::parse(rfc3339, &Rfc3339)
        .ok()
        .and_then(|at| {
            at.to_offset(time::UtcOffset::UTC)
                .format(format_description!(
                    "[year]-[month]-[day] [hour]:[minute] UTC"
                ))
                .ok()
        })
        .unwrap_or_else(|| rfc3339.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn renderer() -> Renderer {
        Renderer::new("https://id.example.com/")
    }

    fn password_changed(
        display_name: &str,
        ip: Option<&str>,
        sessions_revoked: u64,
    ) -> Notification {
        Notification::PasswordChanged {
            display_name: display_name.into(),
            at: "2026-03-04T05:06:07Z".into(),
            ip: ip.map(Into::into),
            sessions_revoked,
        }
    }

    #[test]
    fn public_url_loses_its_trailing_slash() {
        let r = renderer();
        assert_eq!(r.public_url(), "https://id.example.com");
        assert_eq!(r.security_url(), "https://id.example.com/settings/security");
    }

    #[test]
    fn account_created_email_names_the_service_and_the_address() {
        let email = renderer()
            .email(&Notification::AccountCreated {
                email: "ann@example.com".into(),
            })
            .unwrap();
        assert_eq!(email.subject, "Welcome to Tessera");
        for part in [&email.text, &email.html] {
            assert!(part.contains("Hello,"), "{part}");
            assert!(part.contains("ann@example.com"), "{part}");
            assert!(part.contains("Tessera"), "{part}");
            assert!(
                part.contains("https://id.example.com/settings/security"),
                "{part}"
            );
            assert!(
                part.contains("If you did not create this account"),
                "{part}"
            );
        }
        assert!(email.html.starts_with("<!DOCTYPE html>"));
        assert!(email.html.contains("<title>Welcome to Tessera</title>"));
        assert!(!email.text.contains('<'), "{}", email.text);
    }

    #[test]
    fn password_changed_email_says_when_from_where_and_what_was_revoked() {
        let email = renderer()
            .email(&password_changed("Ann", Some("203.0.113.9"), 2))
            .unwrap();
        assert_eq!(email.subject, "Your Tessera password was changed");
        for part in [&email.text, &email.html] {
            assert!(part.contains("Hello Ann,"), "{part}");
            assert!(part.contains("2026-03-04 05:06 UTC"), "{part}");
            assert!(part.contains("203.0.113.9"), "{part}");
            assert!(part.contains("2 other sessions were signed out."), "{part}");
            assert!(
                part.contains("If you did not change your password"),
                "{part}"
            );
            assert!(
                part.contains("https://id.example.com/settings/security"),
                "{part}"
            );
        }
        assert!(
            email
                .text
                .contains("When: 2026-03-04 05:06 UTC\nFrom: 203.0.113.9\n"),
            "{}",
            email.text
        );
    }

    #[test]
    fn password_changed_wording_follows_the_counts() {
        let r = renderer();
        let one = r.email(&password_changed("Ann", None, 1)).unwrap();
        assert!(one.text.contains("1 other session was signed out."));
        assert!(one.html.contains("1 other session was signed out."));
        let none = r.email(&password_changed("Ann", None, 0)).unwrap();
        for part in [&none.text, &none.html] {
            assert!(!part.contains("signed out"), "{part}");
            assert!(!part.contains("From"), "{part}");
        }
    }

    #[test]
    fn html_escapes_user_data_and_text_keeps_it_verbatim() {
        let name = "<script>alert(\"x\")</script> & co";
        let r = renderer();
        for notification in [
            Notification::AccountCreated { email: name.into() },
            password_changed(name, Some("<b>1.2.3.4</b>"), 3),
        ] {
            let email = r.email(&notification).unwrap();
            assert!(!email.html.contains("<script>"), "{}", email.html);
            assert!(!email.html.contains("<b>"), "{}", email.html);
            assert!(
                email.html.contains("&#60;script&#62;") || email.html.contains("&lt;script&gt;")
            );
            assert!(email.html.contains("&#38; co") || email.html.contains("&amp; co"));
            assert!(email.text.contains(name), "{}", email.text);
            assert!(!email.subject.contains('<'));
        }
    }

    #[test]
    fn mfa_notices_say_what_happened_and_what_to_do() {
        let r = renderer();
        let used = r
            .email(&Notification::BackupCodeUsed {
                display_name: "Ann".into(),
                at: "2026-03-04T05:06:07Z".into(),
                ip: Some("203.0.113.9".into()),
                remaining: 3,
            })
            .unwrap();
        assert_eq!(used.subject, "A backup code was used to sign in to Tessera");
        for part in [&used.text, &used.html] {
            assert!(part.contains("Hello Ann,"), "{part}");
            assert!(part.contains("You have 3 backup codes left."), "{part}");
            assert!(part.contains("running low"), "{part}");
            assert!(part.contains("2026-03-04 05:06 UTC"), "{part}");
            assert!(
                part.contains("https://id.example.com/settings/security"),
                "{part}"
            );
        }
        let enabled = r
            .email(&Notification::FactorChanged {
                display_name: "<b>Ann</b>".into(),
                change: FactorChange::MfaEnabled,
                label: "<i>Phone</i>".into(),
                at: "2026-03-04T05:06:07Z".into(),
                ip: None,
                sessions_revoked: 2,
                kind: None,
            })
            .unwrap();
        assert!(enabled.subject.contains("Two-step verification is on"));
        assert!(enabled.text.contains("the authenticator app"));
        let replaced = r
            .email(&Notification::FactorChanged {
                display_name: "Ann".into(),
                change: FactorChange::Replaced,
                label: "+1 ••• ••• 2671".into(),
                at: "2026-03-04T05:06:07Z".into(),
                ip: None,
                sessions_revoked: 0,
                kind: Some("sms".into()),
            })
            .unwrap();
        assert_eq!(
            replaced.subject,
            "A sign-in method on your Tessera account was replaced"
        );
        assert!(
            replaced
                .text
                .contains("The phone number \"+1 ••• ••• 2671\" replaces the previous one")
        );
        assert!(enabled.text.contains("2 other sessions were signed out."));
        assert!(
            !enabled.html.contains("<b>Ann") && !enabled.html.contains("<i>"),
            "{}",
            enabled.html
        );
        let unfinished = r
            .render(&Notification::UnfinishedSignin {
                display_name: "Ann".into(),
                at: "2026-03-04T05:06:07Z".into(),
                ip: Some("198.51.100.4".into()),
                user_agent: Some("Firefox".into()),
            })
            .unwrap();
        assert!(
            unfinished.email.text.contains("change your password"),
            "{}",
            unfinished.email.text
        );
        assert!(unfinished.email.text.contains("Device: Firefox"));
        assert!(unfinished.sms.chars().count() <= 160, "{}", unfinished.sms);
    }

    #[test]
    fn unparsable_times_are_shown_as_given() {
        assert_eq!(human_time("yesterday"), "yesterday");
        assert_eq!(
            human_time("2026-03-04T07:06:07+02:00"),
            "2026-03-04 05:06 UTC"
        );
    }

    #[test]
    fn sms_is_short_plain_text_with_the_security_link() {
        let r = renderer();
        for notification in [
            Notification::AccountCreated {
                email: "ann@example.com".into(),
            },
            password_changed("Ann", None, 0),
        ] {
            let sms = r.sms(&notification).unwrap();
            assert!(sms.starts_with("Tessera: "), "{sms}");
            assert!(
                sms.ends_with("https://id.example.com/settings/security"),
                "{sms}"
            );
            assert!(sms.chars().count() <= 160, "{sms}");
            assert!(!sms.contains('<'), "{sms}");
        }
    }
}
