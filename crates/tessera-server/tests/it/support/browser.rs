//! Headless Chromium for the page tests: a chromedriver process, a browser session, and
//! bounded waits (commands never wait for page loads; each step waits for what it expects).
//! Needs Debian's `chromium` and `chromium-driver` (installed by `.ci/run`).

use serde_json::json;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use thirtyfour::PageLoadStrategy;
use thirtyfour::prelude::*;

/// A chromedriver process on a free port, killed on drop.
pub struct ChromeDriver {
    child: Child,
    pub url: String,
}

impl ChromeDriver {
    #[expect(
        clippy::zombie_processes,
        reason = "Drop kills and waits for the child"
    )]
    pub async fn start() -> Self {
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

/// A headless Chromium; with `downloads`, files it downloads land there without asking.
pub async fn browser(driver: &ChromeDriver, downloads: Option<&Path>) -> WebDriver {
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
    if let Some(downloads) = downloads {
        caps.add_experimental_option(
            "prefs",
            json!({
                "download.default_directory": downloads.to_str().unwrap(),
                "download.prompt_for_download": false,
                "download.directory_upgrade": true,
            }),
        )
        .unwrap();
    }
    // Commands never wait for page loads (chromedriver can block for its whole page-load timeout
    // when a click's navigation starts late); every step waits for what it expects instead.
    caps.set_page_load_strategy(PageLoadStrategy::None).unwrap();
    WebDriver::new(&driver.url, caps)
        .await
        .expect("a Chromium session")
}

/// The element with `id`, waiting (bounded) for it to appear.
pub async fn by_id(browser: &WebDriver, id: &str) -> WebElement {
    browser
        .query(By::Id(id))
        .first()
        .await
        .unwrap_or_else(|e| panic!("no #{id}: {e}"))
}

pub async fn fill(browser: &WebDriver, id: &str, value: &str) {
    let field = by_id(browser, id).await;
    field.clear().await.unwrap();
    field.send_keys(value).await.unwrap();
}

pub async fn submit(browser: &WebDriver) {
    browser
        .query(By::Css("main form button[type=submit]"))
        .first()
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

pub async fn click_id(browser: &WebDriver, id: &str) {
    by_id(browser, id).await.click().await.unwrap();
}

/// Waits (bounded) for a navigation started by a click to land on a URL ending with `suffix`.
pub async fn wait_for_url(browser: &WebDriver, suffix: &str) {
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
pub async fn wait_for_text(browser: &WebDriver, needle: &str) {
    wait_for_any_text(browser, &[needle]).await;
}

/// Waits (bounded) until the page shows one of `needles`; returns which.
pub async fn wait_for_any_text(browser: &WebDriver, needles: &[&str]) -> usize {
    for _ in 0..100 {
        let text = page_text(browser).await;
        if let Some(index) = needles.iter().position(|n| text.contains(n)) {
            return index;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let url = browser.current_url().await.unwrap();
    panic!(
        "expected one of {needles:?} at {url}: {}",
        page_text(browser).await
    );
}

pub async fn page_text(browser: &WebDriver) -> String {
    match browser.find(By::Tag("body")).await {
        Ok(body) => body.text().await.unwrap_or_default(),
        Err(error) => format!("(no page: {error})"),
    }
}
