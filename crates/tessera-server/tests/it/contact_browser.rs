//! SMS and email factors in a real browser (headless Chromium through chromedriver): add an
//! email factor (code read from a real SMTP server) and a phone (code read from a real SMS
//! webhook), make the phone preferred, then sign in with "Send me a code" and, through "Try
//! another method", with an emailed code.

use crate::mfa_browser::{reauth_if_asked, sign_out};
use crate::support::app::{PASSWORD, TestApp};
use crate::support::browser::{
    ChromeDriver, browser, by_id, click_id, fill, page_text, submit, wait_for_text, wait_for_url,
};
use crate::support::sms::{SmsWebhook, six_digits};
use crate::support::smtp::SmtpSink;
use std::time::Duration;
use thirtyfour::prelude::*;

const EMAIL: &str = "pia@example.com";

/// Waits (bounded) for the next message from the SMTP server to `to` after the first `skip`,
/// and returns the 6-digit code in its text.
async fn emailed_code(smtp: &SmtpSink, skip: usize, subject: &str) -> String {
    for _ in 0..200 {
        if let Some(mail) = smtp
            .messages()
            .into_iter()
            .skip(skip)
            .find(|m| m.to == [EMAIL] && m.header("Subject").as_deref() == Some(subject))
        {
            return six_digits(&mail.part("text/plain").unwrap());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no mail {subject:?} to {EMAIL}");
}

async fn password_step(browser: &WebDriver) {
    fill(browser, "email", EMAIL).await;
    fill(browser, "password", PASSWORD).await;
    submit(browser).await;
    wait_for_url(browser, "/login/mfa").await;
    wait_for_text(browser, "Two-step verification").await;
}

#[tokio::test]
async fn add_email_and_phone_then_sign_in_by_sms_and_by_email_in_chromium() {
    let smtp = SmtpSink::start().await;
    let hook = SmsWebhook::start(200).await;
    let app = TestApp::builder()
        .smtp(smtp.url())
        .sms_webhook(hook.url.clone())
        .start()
        .await;
    app.sign_up(EMAIL, PASSWORD).await;
    let driver = ChromeDriver::start().await;
    let browser = browser(&driver, None).await;
    let result = async {
        browser.goto(app.url("/login")).await?;
        fill(&browser, "email", EMAIL).await;
        fill(&browser, "password", PASSWORD).await;
        submit(&browser).await;
        wait_for_url(&browser, "/settings/security").await;

        // Add email: the account address is offered; the code arrives by SMTP.
        click_id(&browser, "add-email").await;
        reauth_if_asked(&browser, "Add an email address for codes").await;
        assert_eq!(
            by_id(&browser, "email").await.value().await?.as_deref(),
            Some(EMAIL)
        );
        let sent_before = smtp.messages().len();
        click_id(&browser, "send-code").await;
        wait_for_text(&browser, "We sent a 6-digit code to p•••@example.com").await;
        let code = emailed_code(&smtp, sent_before, "Your Tessera verification code").await;
        fill(&browser, "code", &code).await;
        submit(&browser).await;
        // The first factor: backup codes are shown once.
        wait_for_text(&browser, "Save your backup codes").await;
        click_id(&browser, "done").await;
        wait_for_url(&browser, "/settings/security?done=enabled").await;
        let text = page_text(&browser).await;
        assert!(text.contains("p•••@example.com"), "{text}");
        assert!(
            text.contains("Add an authenticator app"),
            "suggested: {text}"
        );

        // Add phone: country code and number; the code arrives at the webhook.
        click_id(&browser, "add-phone").await;
        reauth_if_asked(&browser, "Add a phone number").await;
        assert!(page_text(&browser).await.contains("least secure"));
        fill(&browser, "country_code", "+1").await;
        fill(&browser, "phone", "415 555 2671").await;
        click_id(&browser, "send-code").await;
        wait_for_text(&browser, "We sent a 6-digit code to +1 ••• ••• 2671").await;
        let code = hook.code(1).await;
        fill(&browser, "code", &code).await;
        fill(&browser, "label", "My mobile").await;
        submit(&browser).await;
        wait_for_url(&browser, "/settings/security?done=added").await;
        let text = page_text(&browser).await;
        assert!(text.contains("My mobile"), "{text}");
        assert!(text.contains("(least secure)"), "{text}");

        // Make the phone preferred.
        let phone_id = app
            .services()
            .store()
            .list_users()
            .await
            .map(|users| users[0].id)
            .map_err(|e| WebDriverError::FatalError(e.to_string()))?;
        let factors = app
            .services()
            .mfa_state(phone_id)
            .await
            .map_err(|e| WebDriverError::FatalError(e.to_string()))?
            .factors;
        let phone = factors
            .iter()
            .find(|f| f.label == "My mobile")
            .expect("the phone factor");
        click_id(&browser, &format!("prefer-{}", phone.id)).await;
        wait_for_url(&browser, "/settings/security?done=preferred").await;
        let row = browser
            .query(By::XPath("//tr[contains(., 'My mobile')]"))
            .first()
            .await?
            .text()
            .await?;
        assert!(row.contains("Preferred"), "{row}");

        // Sign in by SMS: the preferred method, "Send me a code".
        sign_out(&browser).await;
        password_step(&browser).await;
        let text = page_text(&browser).await;
        assert!(text.contains("+1 ••• ••• 2671"), "{text}");
        click_id(&browser, "send-code").await;
        wait_for_text(&browser, "Code sent.").await;
        let code = hook.code(2).await;
        assert!(
            hook.wait_for(2).await[1]["body"]
                .as_str()
                .unwrap()
                .contains("sign-in code")
        );
        fill(&browser, "code", &code).await;
        submit(&browser).await;
        wait_for_url(&browser, "/settings/security").await;

        // Sign in by email through "Try another method".
        sign_out(&browser).await;
        password_step(&browser).await;
        click_id(&browser, "try-another").await;
        browser
            .query(By::PartialLinkText("p•••@example.com"))
            .first()
            .await?
            .click()
            .await?;
        wait_for_text(&browser, "We will send a 6-digit code to p•••@example.com.").await;
        let sent_before = smtp.messages().len();
        click_id(&browser, "send-code").await;
        wait_for_text(&browser, "Code sent.").await;
        let code = emailed_code(&smtp, sent_before, "Your Tessera sign-in code").await;
        fill(&browser, "code", &code).await;
        submit(&browser).await;
        wait_for_url(&browser, "/settings/security").await;
        wait_for_text(&browser, "Multi-factor authentication").await;
        Ok::<(), WebDriverError>(())
    }
    .await;
    browser.quit().await.ok();
    result.unwrap();
}
