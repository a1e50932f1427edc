//! The MFA pages in a real browser: headless Chromium driven through chromedriver (WebDriver).
//! The authenticator is `oathtool`, fed the key shown on the setup page and the test clock's
//! instant; backup codes are saved through the page's download link.
//!
//! Needs Debian's `chromium`, `chromium-driver` and `oathtool` (installed by `.ci/run`).

use crate::mfa_interop::{now, oathtool_totp};
use crate::support::app::{PASSWORD, TestApp};
use crate::support::browser::{
    ChromeDriver, browser, by_id, click_id, fill, page_text, submit, wait_for_any_text,
    wait_for_text, wait_for_url,
};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;
use thirtyfour::prelude::*;

const EMAIL: &str = "ann@example.com";
const DOWNLOAD_NAME: &str = "tessera-backup-codes.txt";

/// After a sensitive action: confirms the password if the page asks, then waits for `expected`.
/// Returns whether the password was asked.
pub(crate) async fn reauth_if_asked(browser: &WebDriver, expected: &str) -> bool {
    let asked = wait_for_any_text(browser, &[expected, "Confirm your password"]).await == 1;
    if asked {
        fill(browser, "password", PASSWORD).await;
        submit(browser).await;
        wait_for_text(browser, expected).await;
    }
    asked
}

pub(crate) async fn sign_out(browser: &WebDriver) {
    browser
        .query(By::Css("header form button"))
        .first()
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_url(browser, "/login?signed_out=1").await;
    wait_for_text(browser, "You are signed out.").await;
}

/// The password step from the sign-in page; an account with MFA lands on the second step.
async fn password_step(browser: &WebDriver) {
    fill(browser, "email", EMAIL).await;
    fill(browser, "password", PASSWORD).await;
    submit(browser).await;
    wait_for_url(browser, "/login/mfa").await;
    wait_for_text(browser, "Two-step verification").await;
}

/// The backup codes listed on the page.
async fn listed_codes(browser: &WebDriver) -> Vec<String> {
    let mut codes = Vec::new();
    for element in browser
        .find_all(By::Css("#backup-codes li code"))
        .await
        .unwrap()
    {
        codes.push(element.text().await.unwrap().trim().to_owned());
    }
    codes
}

fn looks_like_backup_code(code: &str) -> bool {
    const CROCKFORD: &str = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let groups: Vec<&str> = code.split('-').collect();
    groups.len() == 4
        && groups
            .iter()
            .all(|g| g.len() == 4 && g.chars().all(|c| CROCKFORD.contains(c)))
}

/// Waits (bounded) for a finished download named `name` in `dir` and returns its text.
async fn wait_for_download(dir: &Path, name: &str) -> String {
    let path = dir.join(name);
    for _ in 0..100 {
        if path.is_file() {
            let text = std::fs::read_to_string(&path).unwrap();
            if !text.is_empty() {
                return text;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let present: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    panic!(
        "no {name} downloaded into {} (present: {present:?})",
        dir.display()
    );
}

async fn has_element(browser: &WebDriver, id: &str) -> bool {
    !browser.find_all(By::Id(id)).await.unwrap().is_empty()
}

#[tokio::test]
async fn enable_mfa_sign_in_with_codes_regenerate_and_disable_in_chromium() {
    let app = TestApp::spawn().await;
    let downloads = tempfile::tempdir().unwrap();
    let driver = ChromeDriver::start().await;
    let browser = browser(&driver, Some(downloads.path())).await;
    let result = async {
        // Sign up and sign in with the password alone.
        browser.goto(app.url("/signup")).await?;
        wait_for_text(&browser, "Create an account").await;
        fill(&browser, "display_name", "Ann Example").await;
        fill(&browser, "email", EMAIL).await;
        fill(&browser, "password", PASSWORD).await;
        submit(&browser).await;
        wait_for_url(&browser, "/login?created=1").await;
        wait_for_text(&browser, "Your account is ready").await;
        fill(&browser, "email", EMAIL).await;
        fill(&browser, "password", PASSWORD).await;
        submit(&browser).await;
        wait_for_url(&browser, "/settings/security").await;
        wait_for_text(&browser, "Multi-factor authentication").await;
        let text = page_text(&browser).await;
        assert!(
            text.contains("Protect your account with a code in addition to your password"),
            "{text}"
        );

        // Settings → Security → Enable: the setup page shows the key; oathtool is the app.
        click_id(&browser, "enable-mfa").await;
        reauth_if_asked(&browser, "Set up an authenticator app").await;
        let text = page_text(&browser).await;
        assert!(text.contains("Key for manual entry"), "{text}");
        assert!(
            !browser.find_all(By::Css("figure.qr svg")).await?.is_empty(),
            "the setup page shows a QR code"
        );
        let shown = by_id(&browser, "secret").await.text().await?;
        let groups: Vec<&str> = shown.split_whitespace().collect();
        assert_eq!(groups.len(), 8, "grouped in fours: {shown:?}");
        assert!(groups.iter().all(|g| g.len() == 4), "{shown:?}");
        let secret: String = groups.concat();
        let enrollment_code = oathtool_totp(&secret, now(&app));
        fill(&browser, "code", &enrollment_code).await;
        submit(&browser).await;

        // The backup codes, on the page and in the downloaded file.
        wait_for_text(&browser, "Save your backup codes").await;
        let text = page_text(&browser).await;
        assert!(
            text.contains("Multi-factor authentication is on."),
            "{text}"
        );
        assert!(
            text.contains("This is the only time they are shown"),
            "{text}"
        );
        let codes = listed_codes(&browser).await;
        assert_eq!(codes.len(), 10, "{codes:?}");
        assert!(codes.iter().all(|c| looks_like_backup_code(c)), "{codes:?}");
        assert_eq!(codes.iter().collect::<BTreeSet<_>>().len(), 10, "{codes:?}");
        // "Copy codes" is shown by the page's script (allowed by the CSP) and copies them all.
        let copy = by_id(&browser, "copy-codes").await;
        assert!(copy.is_displayed().await?, "the script shows Copy codes");
        assert_eq!(copy.attr("data-codes").await?, Some(codes.join(" ")));
        let link = by_id(&browser, "download-codes").await;
        assert_eq!(link.attr("download").await?.as_deref(), Some(DOWNLOAD_NAME));
        assert!(link.text().await?.contains("Download as .txt"));
        link.click().await?;
        let file = wait_for_download(downloads.path(), DOWNLOAD_NAME).await;
        assert!(
            file.contains(&format!("Tessera backup codes for {EMAIL}")),
            "{file}"
        );
        for code in &codes {
            assert!(file.contains(code.as_str()), "{code} missing from {file:?}");
        }
        let saved: Vec<String> = file
            .lines()
            .map(str::trim)
            .filter(|l| looks_like_backup_code(l))
            .map(str::to_owned)
            .collect();
        assert_eq!(saved, codes, "the file holds exactly the codes shown");
        click_id(&browser, "done").await;
        wait_for_url(&browser, "/settings/security?done=enabled").await;
        wait_for_text(&browser, "Multi-factor authentication is on.").await;
        let text = page_text(&browser).await;
        assert!(
            text.contains("On Signing in needs your password and a code"),
            "{text}"
        );
        assert!(text.contains("Authenticator app"), "{text}");
        assert!(text.contains("10 of 10 backup codes left"), "{text}");
        assert!(has_element(&browser, "disable").await);

        // Sign out; signing in now takes a second step. The confirming code was used already.
        sign_out(&browser).await;
        password_step(&browser).await;
        let text = page_text(&browser).await;
        assert!(text.contains("Open your authenticator app"), "{text}");
        assert!(text.contains("Use a backup code instead"), "{text}");
        click_id(&browser, "try-another").await;
        wait_for_text(&browser, "Backup code 10 left").await;
        assert_eq!(
            by_id(&browser, "code")
                .await
                .attr("autocomplete")
                .await?
                .as_deref(),
            Some("one-time-code")
        );
        fill(&browser, "code", &enrollment_code).await;
        submit(&browser).await;
        wait_for_text(&browser, "That code didn't work.").await;
        app.clock.advance(time::Duration::seconds(30));
        fill(&browser, "code", &oathtool_totp(&secret, now(&app))).await;
        submit(&browser).await;
        wait_for_url(&browser, "/settings/security").await;
        wait_for_text(&browser, "Settings · Security").await;
        let text = page_text(&browser).await;
        assert!(text.contains("10 of 10 backup codes left"), "{text}");
        assert!(has_element(&browser, "regenerate").await);

        // Sign out; sign in with a downloaded backup code.
        sign_out(&browser).await;
        password_step(&browser).await;
        browser
            .query(By::LinkText("Use a backup code instead"))
            .first()
            .await?
            .click()
            .await?;
        wait_for_url(&browser, "/login/mfa?method=backup_code").await;
        wait_for_text(&browser, "Enter one of your backup codes").await;
        fill(&browser, "code", &saved[0]).await;
        submit(&browser).await;
        wait_for_url(&browser, "/settings/security").await;
        wait_for_text(&browser, "Settings · Security").await;
        let text = page_text(&browser).await;
        assert!(text.contains("9 of 10 backup codes left"), "{text}");
        assert!(text.contains("Backup code used"), "{text}");
        // Signed in with a backup code: regenerating is refused until an app sign-in.
        assert!(text.contains("You signed in with a backup code."), "{text}");
        assert!(!has_element(&browser, "regenerate").await, "{text}");
        // Posting the action anyway (the page's own form, with its CSRF token) is refused too.
        browser
            .execute(
                r#"
                const form = document.createElement("form");
                form.method = "post";
                form.action = "/settings/security/mfa";
                for (const [name, value] of [
                    ["csrf_token", document.querySelector("header input[name=csrf_token]").value],
                    ["action", "regenerate"],
                ]) {
                    const input = document.createElement("input");
                    input.type = "hidden";
                    input.name = name;
                    input.value = value;
                    form.appendChild(input);
                }
                document.body.appendChild(form);
                form.submit();
                "#,
                Vec::new(),
            )
            .await?;
        wait_for_url(&browser, "/settings/security/mfa").await;
        wait_for_text(&browser, "before generating new backup codes").await;
        let text = page_text(&browser).await;
        assert!(!text.contains("Save your backup codes"), "{text}");
        assert!(text.contains("9 of 10 backup codes left"), "{text}");

        // Sign out; sign in with the app again; regenerate the backup codes.
        sign_out(&browser).await;
        password_step(&browser).await;
        click_id(&browser, "try-another").await;
        wait_for_text(&browser, "Backup code 9 left").await;
        app.clock.advance(time::Duration::seconds(30));
        fill(&browser, "code", &oathtool_totp(&secret, now(&app))).await;
        submit(&browser).await;
        wait_for_url(&browser, "/settings/security").await;
        wait_for_text(&browser, "Settings · Security").await;
        click_id(&browser, "regenerate").await;
        reauth_if_asked(&browser, "Save your backup codes").await;
        let text = page_text(&browser).await;
        assert!(
            !text.contains("Multi-factor authentication is on."),
            "no first-time notice: {text}"
        );
        let new_codes = listed_codes(&browser).await;
        assert_eq!(new_codes.len(), 10, "{new_codes:?}");
        assert!(new_codes.iter().all(|c| looks_like_backup_code(c)));
        assert!(
            new_codes.iter().all(|c| !codes.contains(c)),
            "new codes differ from the old: {new_codes:?} vs {codes:?}"
        );
        assert!(
            !has_element(&browser, "skip").await,
            "no Skip after regenerating"
        );
        click_id(&browser, "done").await;
        wait_for_url(&browser, "/settings/security?done=codes").await;
        wait_for_text(&browser, "Your new backup codes are active").await;
        assert!(
            page_text(&browser)
                .await
                .contains("10 of 10 backup codes left")
        );

        // The earlier codes stopped working; a new one works, typed loosely.
        sign_out(&browser).await;
        password_step(&browser).await;
        click_id(&browser, "try-another").await;
        wait_for_text(&browser, "Backup code 10 left").await;
        browser
            .query(By::LinkText("Use a backup code instead"))
            .first()
            .await?
            .click()
            .await?;
        wait_for_url(&browser, "/login/mfa?method=backup_code").await;
        wait_for_text(&browser, "Enter one of your backup codes").await;
        fill(&browser, "code", &saved[1]).await;
        submit(&browser).await;
        wait_for_text(&browser, "That backup code didn't work.").await;
        let loose = new_codes[0].to_lowercase().replace('-', " ");
        fill(&browser, "code", &loose).await;
        submit(&browser).await;
        wait_for_url(&browser, "/settings/security").await;
        wait_for_text(&browser, "Settings · Security").await;
        assert!(
            page_text(&browser)
                .await
                .contains("9 of 10 backup codes left")
        );

        // Disable MFA.
        click_id(&browser, "disable").await;
        let asked = reauth_if_asked(&browser, "Multi-factor authentication is off.").await;
        assert!(!asked, "the window opened at sign-in is still open");
        wait_for_url(&browser, "/settings/security?done=disabled").await;
        let text = page_text(&browser).await;
        assert!(
            text.contains("Off Protect your account with a code in addition to your password"),
            "{text}"
        );
        assert!(has_element(&browser, "enable-mfa").await);
        assert!(!has_element(&browser, "disable").await);

        // The password alone signs in again.
        sign_out(&browser).await;
        fill(&browser, "email", EMAIL).await;
        fill(&browser, "password", PASSWORD).await;
        submit(&browser).await;
        wait_for_url(&browser, "/settings/security").await;
        wait_for_text(&browser, "Settings · Security").await;
        Ok::<_, WebDriverError>(())
    }
    .await;
    browser.quit().await.unwrap();
    result.unwrap();
}
