//! Interoperability of authenticator-app MFA with independent implementations: the QR code the
//! API returns is rendered (`rsvg-convert`) and scanned (`zbarimg`) like a phone would, the
//! `otpauth://` URI is parsed here with the `url` crate, and every code comes from `oathtool`
//! (OATH Toolkit) at the test clock's instant, never from `tessera-otp`. Python's `pyotp`
//! cross-checks the codes when it is installed.
//!
//! Needs Debian's `oathtool`, `zbar-tools` and `librsvg2-bin` (installed by `.ci/run`): a
//! missing tool fails the test, it never skips.

use crate::support::app::{PASSWORD, TestApp, assert_error};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Command, Output};
use tessera_core::clock::Clock as _;
use time::OffsetDateTime;
use time::macros::format_description;

/// Runs an external tool; panics with what to install when it is missing or fails.
pub(crate) fn run_tool(program: &str, args: &[&str], package: &str) -> Output {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|error| {
            panic!(
                "cannot run {program} ({error}): install the Debian package {package} \
                 (.ci/run installs it)"
            )
        });
    assert!(
        output.status.success(),
        "{program} {args:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The instant as `oathtool --now` reads it.
fn oathtool_time(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    let formatted = at
        .format(format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second]"
        ))
        .unwrap();
    format!("{formatted} UTC")
}

/// The 6-digit TOTP (SHA-1, 30 s) of a base32 secret at `at`, computed by `oathtool`.
pub(crate) fn oathtool_totp(secret_base32: &str, at: OffsetDateTime) -> String {
    let now = oathtool_time(at);
    let output = run_tool(
        "oathtool",
        &[
            "--totp=SHA1",
            "--base32",
            "--digits=6",
            "--time-step-size=30s",
            "--now",
            &now,
            secret_base32,
        ],
        "oathtool",
    );
    let code = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    assert!(
        code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()),
        "oathtool printed {code:?}"
    );
    if let Some(other) = pyotp_totp(secret_base32, at) {
        assert_eq!(other, code, "pyotp and oathtool disagree at {now}");
    }
    code
}

/// The same code from Python's `pyotp`, when it is installed (optional).
fn pyotp_totp(secret_base32: &str, at: OffsetDateTime) -> Option<String> {
    let script = "import sys, pyotp; \
                  print(pyotp.TOTP(sys.argv[1], digits=6, interval=30).at(int(sys.argv[2])))";
    let output = Command::new("python3")
        .args([
            "-c",
            script,
            secret_base32,
            &at.unix_timestamp().to_string(),
        ])
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// The test clock's instant.
pub(crate) fn now(app: &TestApp) -> OffsetDateTime {
    app.clock.now()
}

/// Renders an SVG QR code to PNG and scans it; returns the decoded text.
fn scan_svg_qr(svg: &str, dir: &Path) -> String {
    let svg_path = dir.join("qr.svg");
    let png_path = dir.join("qr.png");
    std::fs::write(&svg_path, svg).unwrap();
    run_tool(
        "rsvg-convert",
        &[
            "--format=png",
            "--width=600",
            "--height=600",
            "--background-color=white",
            "--output",
            png_path.to_str().unwrap(),
            svg_path.to_str().unwrap(),
        ],
        "librsvg2-bin",
    );
    let output = run_tool(
        "zbarimg",
        &["--raw", "-q", png_path.to_str().unwrap()],
        "zbar-tools",
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let mut lines = text.lines().filter(|l| !l.is_empty());
    let decoded = lines.next().expect("zbarimg found a QR code").to_owned();
    assert!(lines.next().is_none(), "one QR code only: {text:?}");
    decoded
}

/// Decodes `%XX` escapes (the label of an otpauth URI).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).expect("a %XX escape"));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// What an authenticator app reads from an `otpauth://` URI, checked against the contract.
fn parse_otpauth(uri: &str, email: &str) -> String {
    let url = url::Url::parse(uri).unwrap_or_else(|e| panic!("not a URI ({e}): {uri}"));
    assert_eq!(url.scheme(), "otpauth", "{uri}");
    assert_eq!(url.host_str(), Some("totp"), "{uri}");
    let label = percent_decode(url.path().trim_start_matches('/'));
    assert_eq!(label, format!("Tessera:{email}"), "{uri}");
    let params: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    let param = |name: &str| {
        let values: Vec<&str> = params
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(values.len(), 1, "exactly one {name} in {uri}");
        values[0].to_owned()
    };
    assert_eq!(param("issuer"), "Tessera", "{uri}");
    assert_eq!(param("algorithm"), "SHA1", "{uri}");
    assert_eq!(param("digits"), "6", "{uri}");
    assert_eq!(param("period"), "30", "{uri}");
    let secret = param("secret");
    assert_eq!(secret.len(), 32, "160 bits of unpadded base32: {secret}");
    assert!(
        secret
            .bytes()
            .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b)),
        "RFC 4648 base32 alphabet: {secret}"
    );
    let decoded = data_encoding::BASE32_NOPAD
        .decode(secret.as_bytes())
        .expect("valid base32");
    assert_eq!(decoded.len(), 20, "160 bits");
    secret
}

#[tokio::test]
async fn an_independent_authenticator_scans_the_qr_code_and_signs_in() {
    let app = TestApp::spawn().await;
    let email = "ann@example.com";
    app.sign_up(email, PASSWORD).await;
    let token = app.sign_in(email, PASSWORD).await;

    let response = app
        .post("/api/v1/me/factors/totp", Some(&token), json!({}))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let started: Value = response.json().await.unwrap();
    let svg = started["qr_svg"].as_str().expect("qr_svg");
    assert!(svg.contains("<svg"), "{svg}");

    // Scan the QR code like a phone.
    let dir = tempfile::tempdir().unwrap();
    let scanned = scan_svg_qr(svg, dir.path());
    assert_eq!(
        scanned,
        started["otpauth_uri"].as_str().unwrap(),
        "the QR code holds the otpauth URI"
    );
    let secret = parse_otpauth(&scanned, email);
    assert_eq!(
        started["secret"].as_str().unwrap(),
        secret,
        "the key for manual entry is the one in the QR code"
    );

    // A code from another time is refused; the current one confirms the enrollment.
    let confirm_path = format!(
        "/api/v1/me/factors/totp/{}/confirm",
        started["enrollment_id"].as_str().unwrap()
    );
    let stale = oathtool_totp(&secret, now(&app) - time::Duration::minutes(10));
    let current = oathtool_totp(&secret, now(&app));
    if stale != current {
        let response = app
            .post(&confirm_path, Some(&token), json!({"code": stale}))
            .await;
        assert_error(response, StatusCode::UNAUTHORIZED, "invalid_code").await;
    }
    let response = app
        .post(&confirm_path, Some(&token), json!({"code": current}))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let confirmed: Value = response.json().await.unwrap();
    assert_eq!(confirmed["factor"]["kind"], "totp");
    let factor_id = confirmed["factor"]["id"].as_str().unwrap().to_owned();
    assert_eq!(confirmed["backup_codes"].as_array().unwrap().len(), 10);
    let me = app.get_json("/api/v1/me", Some(&token)).await;
    assert_eq!(me["mfa"]["enabled"], true, "{me}");

    // Sign out, then in: password, challenge, the next oathtool code.
    let response = app.delete("/api/v1/sessions/current", Some(&token)).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let response = app
        .post(
            "/api/v1/sessions",
            None,
            json!({"email": email, "password": PASSWORD}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let challenge: Value = response.json().await.unwrap();
    assert_eq!(challenge["status"], "mfa_required", "{challenge}");
    assert_eq!(challenge["preferred_factor_id"], factor_id.as_str());
    let challenge_token = challenge["challenge_token"].as_str().unwrap();

    app.clock.advance(time::Duration::seconds(30));
    let code = oathtool_totp(&secret, now(&app));
    let response = app
        .post(
            "/api/v1/sessions/mfa",
            None,
            json!({"challenge_token": challenge_token, "method": "totp", "code": code}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let signed_in: Value = response.json().await.unwrap();
    assert_eq!(signed_in["status"], "authenticated");
    let amr: Vec<&str> = signed_in["amr"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for expected in ["pwd", "otp", "mfa"] {
        assert!(amr.contains(&expected), "amr {amr:?} lacks {expected}");
    }
    let new_token = signed_in["session_token"].as_str().unwrap();
    let me = app.get_json("/api/v1/me", Some(new_token)).await;
    assert_eq!(me["user"]["email"], email);
}

#[test]
fn oathtool_matches_the_rfc_6238_vectors() {
    // The independent authenticator itself, against RFC 6238 appendix B (SHA-1, 8 digits
    // truncated to the last 6, which is the same dynamic truncation modulo 10^6).
    let secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"; // "12345678901234567890"
    for (unix, expected8) in [
        (59, "94287082"),
        (1_111_111_109, "07081804"),
        (1_234_567_890, "89005924"),
        (2_000_000_000, "69279037"),
    ] {
        let at = OffsetDateTime::from_unix_timestamp(unix).unwrap();
        assert_eq!(oathtool_totp(secret, at), expected8[2..], "at {unix}");
    }
}
