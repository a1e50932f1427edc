//! Mandatory MFA in a real browser (headless Chromium through chromedriver): an owner creates
//! an organization, adds a member and makes MFA mandatory; the member signing in is taken to
//! setup and cannot browse away (typed URLs and Back both land there); after setting up an
//! authenticator app (codes from `oathtool`) the member reaches Settings.

use crate::mfa_browser::sign_out;
use crate::mfa_interop::{now, oathtool_totp};
use crate::support::app::{PASSWORD, TestApp};
use crate::support::browser::{
    ChromeDriver, browser, by_id, click_id, fill, page_text, submit, wait_for_text, wait_for_url,
};
use thirtyfour::prelude::*;

async fn sign_in(browser: &WebDriver, app: &TestApp, email: &str) {
    browser.goto(app.url("/login")).await.unwrap();
    fill(browser, "email", email).await;
    fill(browser, "password", PASSWORD).await;
    submit(browser).await;
}

#[tokio::test]
async fn an_owner_makes_mfa_mandatory_and_a_member_must_set_it_up_in_chromium() {
    let app = TestApp::spawn().await;
    app.sign_up("olga@example.com", PASSWORD).await;
    app.sign_up("max@example.com", PASSWORD).await;
    let driver = ChromeDriver::start().await;
    let browser = browser(&driver, None).await;
    let result = async {
        // The owner: create Acme, add Max, require MFA for members at the next sign-in.
        sign_in(&browser, &app, "olga@example.com").await;
        wait_for_url(&browser, "/settings/security").await;
        click_id(&browser, "orgs-link").await;
        wait_for_text(&browser, "Create an organization").await;
        fill(&browser, "name", "Acme").await;
        click_id(&browser, "create-org").await;
        wait_for_text(&browser, "Acme · MFA & sign-in security").await;
        browser.find(By::LinkText("Members")).await?.click().await?;
        wait_for_text(&browser, "Acme · Members").await;
        fill(&browser, "email", "max@example.com").await;
        click_id(&browser, "add-member").await;
        wait_for_text(&browser, "The member was added.").await;
        let text = page_text(&browser).await;
        assert!(text.contains("max@example.com"), "{text}");
        browser
            .find(By::LinkText("MFA & sign-in security"))
            .await?
            .click()
            .await?;
        wait_for_text(&browser, "Save policy").await;
        by_id(&browser, "mfa_required").await.click().await?;
        fill(&browser, "grace_period_hours", "0").await;
        click_id(&browser, "save-policy").await;
        wait_for_text(&browser, "The policy is saved").await;
        assert!(by_id(&browser, "mfa_required").await.is_selected().await?);
        // "Reset MFA" on the Members page emails Max a link (and changes nothing yet).
        browser.find(By::LinkText("Members")).await?.click().await?;
        wait_for_text(&browser, "Acme · Members").await;
        let max = browser
            .find(By::XPath(
                "//tr[contains(., 'max@example.com')]//button[text()='Reset MFA']",
            ))
            .await?;
        max.click().await?;
        wait_for_text(&browser, "A reset link was emailed to the member").await;
        browser.goto(app.url("/settings/security")).await?;
        sign_out(&browser).await;

        // The member: taken to setup, and kept there.
        sign_in(&browser, &app, "max@example.com").await;
        wait_for_url(&browser, "/settings/security/required").await;
        wait_for_text(&browser, "Acme requires multi-factor authentication").await;
        for escape in ["/settings/security", "/orgs", "/"] {
            browser.goto(app.url(escape)).await?;
            wait_for_url(&browser, "/settings/security/required").await;
        }
        browser.back().await?;
        wait_for_url(&browser, "/settings/security/required").await;
        wait_for_text(&browser, "Set up multi-factor authentication").await;

        // Set up an authenticator app; the same session becomes a full one.
        click_id(&browser, "enable-mfa").await;
        wait_for_text(&browser, "Set up an authenticator app").await;
        let secret: String = by_id(&browser, "secret")
            .await
            .text()
            .await?
            .split_whitespace()
            .collect();
        fill(&browser, "code", &oathtool_totp(&secret, now(&app))).await;
        submit(&browser).await;
        wait_for_text(&browser, "Save your backup codes").await;
        click_id(&browser, "done").await;
        wait_for_url(&browser, "/settings/security?done=enabled").await;
        wait_for_text(&browser, "Settings · Security").await;
        let text = page_text(&browser).await;
        assert!(
            text.contains("Your organization Acme requires MFA"),
            "{text}"
        );
        Ok::<(), WebDriverError>(())
    }
    .await;
    browser.quit().await.ok();
    result.unwrap();
}
