//! The dev outbox: when no SMTP server or SMS webhook is configured, messages become files in
//! `<data dir>/outbox/` — `<timestamp>-<id>.eml` (RFC 5322, as an SMTP server would receive it)
//! and `<timestamp>-<id>.sms.json` (`{"to", "body", "created_at"}`).
//!
//! Defends against a reader (a developer's tail, a test) seeing a half-written file: each file
//! is written under a hidden temporary name, synced, then renamed into place, which is atomic on
//! one file system. The names derive from the outbox row, so a repeated delivery replaces the
//! file instead of adding a second one. Messages may carry one-time codes, so on Unix the
//! directory is private to the server's user (0700) and the files 0600.

use super::{EmailTransport, OutgoingEmail, OutgoingSms, SmsTransport, TransportError};
use async_trait::async_trait;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

/// Writes messages as files under `<data dir>/outbox/`.
#[derive(Debug, Clone)]
pub struct DevOutbox {
    dir: PathBuf,
}

/// Distinguishes temporary files of concurrent writers in one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl DevOutbox {
    /// The outbox of the data directory `data_dir` (the directory is created on first write).
    pub fn new(data_dir: &Path) -> Self {
        Self {
            dir: data_dir.join("outbox"),
        }
    }

    /// `<data dir>/outbox`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `20260102T030405Z-42.eml`: sorts by creation time, unique per outbox row.
    pub fn email_file_name(outbox_id: i64, created_at: OffsetDateTime) -> String {
        format!("{}-{outbox_id}.eml", file_timestamp(created_at))
    }

    /// `20260102T030405Z-42.sms.json`.
    pub fn sms_file_name(outbox_id: i64, created_at: OffsetDateTime) -> String {
        format!("{}-{outbox_id}.sms.json", file_timestamp(created_at))
    }

    /// Writes an email and returns its path.
    pub async fn write_email(&self, email: &OutgoingEmail) -> io::Result<PathBuf> {
        let name = Self::email_file_name(email.outbox_id, email.created_at);
        self.write_atomically(name, email.message.formatted()).await
    }

    /// Writes a text message and returns its path.
    pub async fn write_sms(&self, sms: &OutgoingSms) -> io::Result<PathBuf> {
        let created_at = sms
            .created_at
            .format(&Rfc3339)
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
        let json = serde_json::json!({
            "to": sms.to,
            "body": sms.body,
            "created_at": created_at,
        });
        let mut bytes = serde_json::to_vec_pretty(&json)?;
        bytes.push(b'\n');
        let name = Self::sms_file_name(sms.outbox_id, sms.created_at);
        self.write_atomically(name, bytes).await
    }

    async fn write_atomically(&self, name: String, contents: Vec<u8>) -> io::Result<PathBuf> {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || write_atomically_blocking(&dir, &name, &contents))
            .await
            .map_err(io::Error::other)?
    }
}

fn file_timestamp(at: OffsetDateTime) -> String {
    at.to_offset(time::UtcOffset::UTC)
        .format(format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .unwrap_or_else(|_| at.unix_timestamp().to_string())
}

fn write_atomically_blocking(dir: &Path, name: &str, contents: &[u8]) -> io::Result<PathBuf> {
    create_private_dir(dir)?;
    let target = dir.join(name);
    // A leading dot and a `.tmp` suffix keep `*.eml` / `*.sms.json` globs from matching it.
    let temp = dir.join(format!(
        ".{name}.{}-{}.tmp",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = create_private_file(&temp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&temp, &target)
    })();
    if let Err(error) = result {
        // Best effort: the write already failed, and a stray hidden temp file is harmless.
        let _ = fs::remove_file(&temp);
        return Err(error);
    }
    Ok(target)
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)
}

#[cfg(unix)]
fn create_private_file(path: &Path) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn create_private_file(path: &Path) -> io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

fn io_failure(what: &str, error: &io::Error) -> TransportError {
    TransportError(format!("dev outbox: cannot write {what}: {error}"))
}

#[async_trait]
impl EmailTransport for DevOutbox {
    async fn send_email(&self, email: &OutgoingEmail) -> Result<(), TransportError> {
        let path = self
            .write_email(email)
            .await
            .map_err(|e| io_failure("email", &e))?;
        tracing::info!(outbox_id = email.outbox_id, path = %path.display(), "email written to the dev outbox");
        Ok(())
    }

    fn describe(&self) -> String {
        format!("dev outbox {}", self.dir.display())
    }
}

#[async_trait]
impl SmsTransport for DevOutbox {
    async fn send_sms(&self, sms: &OutgoingSms) -> Result<(), TransportError> {
        let path = self
            .write_sms(sms)
            .await
            .map_err(|e| io_failure("SMS", &e))?;
        tracing::info!(outbox_id = sms.outbox_id, path = %path.display(), "SMS written to the dev outbox");
        Ok(())
    }

    fn describe(&self) -> String {
        format!("dev outbox {}", self.dir.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::{Delivery, NotifyConfig};
    use tessera_core::notification::{Channel, Notification, OutboxMessage};
    use time::macros::datetime;

    const AT: OffsetDateTime = datetime!(2026-01-02 03:04:05 UTC);

    fn file_names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn names_sort_by_time_and_carry_the_id() {
        assert_eq!(
            DevOutbox::email_file_name(42, AT),
            "20260102T030405Z-42.eml"
        );
        assert_eq!(
            DevOutbox::sms_file_name(7, AT),
            "20260102T030405Z-7.sms.json"
        );
        let offset = datetime!(2026-01-02 05:04:05 +02:00);
        assert_eq!(
            DevOutbox::email_file_name(1, offset),
            "20260102T030405Z-1.eml"
        );
    }

    #[tokio::test]
    async fn an_email_becomes_one_eml_file_and_a_repeat_replaces_it() {
        let data = tempfile::tempdir().unwrap();
        let delivery =
            Delivery::from_config(&NotifyConfig::dev("https://id.example.com", data.path()))
                .unwrap();
        let message = OutboxMessage {
            id: 42,
            channel: Channel::Email,
            recipient: "ann@example.com".into(),
            notification: Notification::AccountCreated {
                email: "ann@example.com".into(),
            },
            created_at: AT,
            attempts: 0,
        };
        delivery.deliver(&message).await.unwrap();
        delivery.deliver(&message).await.unwrap();

        let outbox = data.path().join("outbox");
        assert_eq!(file_names(&outbox), ["20260102T030405Z-42.eml"]);
        let eml = fs::read_to_string(outbox.join("20260102T030405Z-42.eml")).unwrap();
        assert!(eml.contains("To: ann@example.com\r\n"), "{eml}");
        assert!(eml.contains("Subject: Welcome to Tessera\r\n"), "{eml}");
        assert!(eml.contains("Content-Type: text/plain"), "{eml}");
        assert!(eml.contains("Content-Type: text/html"), "{eml}");
        assert!(eml.contains("Hello,"), "{eml}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let dir_mode = fs::metadata(&outbox).unwrap().permissions().mode() & 0o777;
            let file_mode = fs::metadata(outbox.join("20260102T030405Z-42.eml"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777;
            assert_eq!((dir_mode, file_mode), (0o700, 0o600));
        }
    }

    #[tokio::test]
    async fn an_sms_becomes_a_json_file() {
        let data = tempfile::tempdir().unwrap();
        let delivery =
            Delivery::from_config(&NotifyConfig::dev("https://id.example.com", data.path()))
                .unwrap();
        let message = OutboxMessage {
            id: 7,
            channel: Channel::Sms,
            recipient: "+15555550123".into(),
            notification: Notification::AccountCreated {
                email: "ann@example.com".into(),
            },
            created_at: AT,
            attempts: 2,
        };
        delivery.deliver(&message).await.unwrap();

        let outbox = data.path().join("outbox");
        assert_eq!(file_names(&outbox), ["20260102T030405Z-7.sms.json"]);
        let json: serde_json::Value =
            serde_json::from_slice(&fs::read(outbox.join("20260102T030405Z-7.sms.json")).unwrap())
                .unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "to": "+15555550123",
                "body": "Tessera: your account was created. Not you? https://id.example.com/settings/security",
                "created_at": "2026-01-02T03:04:05Z",
            })
        );
    }

    #[test]
    fn a_failed_write_leaves_no_file_behind() {
        let data = tempfile::tempdir().unwrap();
        let outbox = data.path().join("outbox");
        fs::create_dir_all(outbox.join("20260102T030405Z-1.eml")).unwrap();
        // The target name is taken by a non-empty directory, so the rename fails.
        fs::write(outbox.join("20260102T030405Z-1.eml").join("x"), b"x").unwrap();
        let error = write_atomically_blocking(&outbox, "20260102T030405Z-1.eml", b"data");
        assert!(error.is_err());
        assert_eq!(file_names(&outbox), ["20260102T030405Z-1.eml"]);
    }
}
