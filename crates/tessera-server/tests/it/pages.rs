//! The pages in a real browser: headless Chromium driven through chromedriver (WebDriver).
//! Needs Debian's `chromium` and `chromium-driver` (installed by `.ci/run`).

use crate::support::app::{PASSWORD, TestApp};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use thirtyfour::PageLoadStrategy;
use thirtyfour::prelude::*;

struct ChromeDriver {
    child: Child,
    url: String,
}

impl ChromeDriver {
    #[expect(
        clippy::zombie_processes,
        reason = "Drop kills and waits for the child"
    )]
    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let binary = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let child = Command::new(&binary)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {binary} (install chromium-driver): {e}"));
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Self {
                    child,
                    url: format!("http://127.0.0.1:{port}"),
                };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("chromedriver did not start");
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn browser(driver: &ChromeDriver) -> WebDriver {
    let mut caps = DesiredCapabilities::chrome();
    caps.set_binary(&std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()))
        .unwrap();
    for arg in [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1200,900",
    ] {
        caps.add_arg(arg).unwrap();
    }
    // Commands never wait for page loads (chromedriver can block for its whole page-load timeout
    // when a click's navigation starts late); every step waits for what it expects instead.
    caps.set_page_load_strategy(PageLoadStrategy::None).unwrap();
    WebDriver::new(&driver.url, caps)
        .await
        .expect("a Chromium session")
}

async fn fill(browser: &WebDriver, id: &str, value: &str) {
    let field = browser.find(By::Id(id)).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(value).await.unwrap();
}

async fn submit(browser: &WebDriver) {
    browser
        .find(By::Css("main form button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Waits (bounded) for a navigation started by a click to land on a URL ending with `suffix`.
async fn wait_for_url(browser: &WebDriver, suffix: &str) {
    for _ in 0..100 {
        if browser
            .current_url()
            .await
            .unwrap()
            .as_str()
            .ends_with(suffix)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let url = browser.current_url().await.unwrap();
    panic!(
        "expected a page ending with {suffix}, still at {url}: {}",
        page_text(browser).await
    );
}

/// Waits (bounded) until the page shows `needle`.
async fn wait_for_text(browser: &WebDriver, needle: &str) {
    for _ in 0..100 {
        if page_text(browser).await.contains(needle) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let url = browser.current_url().await.unwrap();
    panic!("expected {needle:?} at {url}: {}", page_text(browser).await);
}

async fn page_text(browser: &WebDriver) -> String {
    match browser.find(By::Tag("body")).await {
        Ok(body) => body.text().await.unwrap_or_default(),
        Err(error) => format!("(no page: {error})"),
    }
}

#[tokio::test]
async fn the_api_documentation_renders_under_its_content_security_policy() {
    let app = TestApp::spawn().await;
    let driver = ChromeDriver::start().await;
    let browser = browser(&driver).await;
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
    let browser = browser(&driver).await;
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
