//! The pages in a real browser: headless Chromium driven through chromedriver (WebDriver).
//! Needs Debian's `chromium` and `chromium-driver` (installed by `.ci/run`).

use crate::support::app::{PASSWORD, TestApp};
use crate::support::browser::{
    ChromeDriver, browser, fill, page_text, submit, wait_for_text, wait_for_url,
};
use thirtyfour::prelude::*;

#[tokio::test]
async fn the_api_documentation_renders_under_its_content_security_policy() {
    let app = TestApp::spawn().await;
    let driver = ChromeDriver::start().await;
    let browser = browser(&driver, None).await;
    let result = async {
        browser.goto(app.url("/api/docs/")).await?;
        wait_for_text(&browser, "Tessera API").await;
        let title = browser
            .query(By::Css(".info .title"))
            .first()
            .await?
            .text()
            .await?;
        assert!(title.contains("Tessera API"), "{title}");
        let operations = browser.find_all(By::Css(".opblock")).await?;
        assert!(
            operations.len() >= 10,
            "{} operations shown",
            operations.len()
        );
        Ok::<_, WebDriverError>(())
    }
    .await;
    browser.quit().await.unwrap();
    result.unwrap();
}

#[tokio::test]
async fn sign_up_sign_in_security_settings_and_sign_out_in_chromium() {
    let app = TestApp::spawn().await;
    let driver = ChromeDriver::start().await;
    let browser = browser(&driver, None).await;
    let result = async {
        // Sign up; a weak password is explained next to the field.
        browser.goto(app.url("/signup")).await?;
        wait_for_text(&browser, "Create an account").await;
        fill(&browser, "display_name", "Ann Example").await;
        fill(&browser, "email", "ann@example.com").await;
        fill(&browser, "password", "password123").await;
        submit(&browser).await;
        wait_for_text(&browser, "appears in lists of commonly used passwords").await;
        let error = browser.find(By::Id("password-error")).await?.text().await?;
        assert!(error.contains("commonly used"), "{error}");
        fill(&browser, "password", PASSWORD).await;
        submit(&browser).await;
        wait_for_url(&browser, "/login?created=1").await;
        wait_for_text(&browser, "Your account is ready").await;

        // A wrong password, then the right one.
        fill(&browser, "email", "ann@example.com").await;
        fill(&browser, "password", "not-my-password").await;
        submit(&browser).await;
        wait_for_text(&browser, "The email or password is incorrect.").await;
        fill(&browser, "password", PASSWORD).await;
        submit(&browser).await;

        // Settings → Security.
        wait_for_url(&browser, "/settings/security").await;
        wait_for_text(&browser, "Recent security activity").await;
        let text = page_text(&browser).await;
        assert!(text.contains("Settings · Security"), "{text}");
        assert!(text.contains("Ann Example"));
        assert!(text.contains("This device"));
        assert!(text.contains("Failed sign-in attempt"));
        assert!(text.contains("Account created"));
        let cookie = browser.get_named_cookie("tessera_session").await?;
        assert_eq!(cookie.http_only, Some(true));

        // Sign out; the settings page is then out of reach.
        browser
            .find(By::Css("header form button"))
            .await?
            .click()
            .await?;
        wait_for_url(&browser, "/login?signed_out=1").await;
        wait_for_text(&browser, "You are signed out.").await;
        browser.goto(app.url("/settings/security")).await?;
        wait_for_url(&browser, "/login").await;
        wait_for_text(&browser, "Sign in").await;
        Ok::<_, WebDriverError>(())
    }
    .await;
    browser.quit().await.unwrap();
    result.unwrap();
}
