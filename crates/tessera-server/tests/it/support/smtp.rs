//! A small but real SMTP server (RFC 5321) for tests: listens on 127.0.0.1:0 over plain TCP,
//! speaks enough of the protocol for lettre (greeting, EHLO/HELO, MAIL FROM, RCPT TO, DATA with
//! dot-unstuffing, RSET, NOOP, QUIT; no TLS, no AUTH) and keeps every message it accepts.
//!
//! [`SmtpSink::reject_mail`] makes it answer `451` to `MAIL FROM`, a temporary failure, to test
//! the sender's retries.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation should stop the test"
)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// One message the server accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMail {
    /// The envelope sender (`MAIL FROM:<…>`).
    pub from: String,
    /// The envelope recipients (`RCPT TO:<…>`).
    pub to: Vec<String>,
    /// The message as received after DATA, dot-unstuffed, CRLF line ends.
    pub data: String,
}

impl ReceivedMail {
    /// The header block and the body of `entity` (a message or a MIME part).
    fn split(entity: &str) -> (&str, &str) {
        match entity.find("\r\n\r\n") {
            Some(at) => (&entity[..at], &entity[at + 4..]),
            None => (entity, ""),
        }
    }

    /// The unfolded value of the first header `name` (case-insensitive) of `header_block`.
    fn header_in(header_block: &str, name: &str) -> Option<String> {
        let mut value: Option<String> = None;
        for line in header_block.split("\r\n") {
            if line.starts_with([' ', '\t']) {
                if let Some(value) = value.as_mut() {
                    value.push(' ');
                    value.push_str(line.trim());
                }
                continue;
            }
            if value.is_some() {
                break;
            }
            if let Some((key, rest)) = line.split_once(':')
                && key.trim().eq_ignore_ascii_case(name)
            {
                value = Some(rest.trim().to_owned());
            }
        }
        value
    }

    /// The unfolded value of the top-level header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<String> {
        Self::header_in(Self::split(&self.data).0, name)
    }

    /// The decoded content of the first part whose `Content-Type` starts with `content_type`
    /// (e.g. `text/plain`), searching nested multiparts; or the whole body if the message is
    /// not multipart and its type matches.
    pub fn part(&self, content_type: &str) -> Option<String> {
        Self::find_part(&self.data, content_type)
    }

    /// The `Content-Type`s of the parts of a multipart message, in order.
    pub fn part_types(&self) -> Vec<String> {
        let (headers, body) = Self::split(&self.data);
        let Some(boundary) =
            Self::header_in(headers, "Content-Type").and_then(|ct| boundary_of(&ct))
        else {
            return Vec::new();
        };
        parts(body, &boundary)
            .filter_map(|part| Self::header_in(Self::split(part).0, "Content-Type"))
            .collect()
    }

    fn find_part(entity: &str, wanted: &str) -> Option<String> {
        let (headers, body) = Self::split(entity);
        let content_type =
            Self::header_in(headers, "Content-Type").unwrap_or_else(|| "text/plain".into());
        if let Some(boundary) = boundary_of(&content_type) {
            return parts(body, &boundary).find_map(|part| Self::find_part(part, wanted));
        }
        if !content_type
            .to_ascii_lowercase()
            .starts_with(&wanted.to_ascii_lowercase())
        {
            return None;
        }
        let encoding = Self::header_in(headers, "Content-Transfer-Encoding")
            .unwrap_or_default()
            .to_ascii_lowercase();
        Some(match encoding.as_str() {
            "quoted-printable" => decode_quoted_printable(body),
            "base64" => {
                use base64::Engine;
                let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(compact)
                    .unwrap_or_default();
                String::from_utf8_lossy(&bytes).into_owned()
            }
            _ => body.to_owned(),
        })
    }
}

fn boundary_of(content_type: &str) -> Option<String> {
    if !content_type.to_ascii_lowercase().starts_with("multipart/") {
        return None;
    }
    content_type.split(';').find_map(|param| {
        let (key, value) = param.trim().split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| value.trim().trim_matches('"').to_owned())
    })
}

/// The parts between `--boundary` delimiters (RFC 2046 §5.1.1), without the delimiter's CRLFs.
fn parts<'a>(body: &'a str, boundary: &str) -> impl Iterator<Item = &'a str> {
    let delimiter = format!("--{boundary}");
    let mut chunks: Vec<&'a str> = body.split(delimiter.as_str()).collect();
    // Before the first delimiter is the preamble; after the close delimiter (`--…--`) the epilogue.
    if !chunks.is_empty() {
        chunks.remove(0);
    }
    chunks
        .into_iter()
        .take_while(|chunk| !chunk.starts_with("--"))
        .map(|chunk| chunk.strip_prefix("\r\n").unwrap_or(chunk))
        .map(|chunk| chunk.strip_suffix("\r\n").unwrap_or(chunk))
}

fn decode_quoted_printable(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' {
            if bytes[i + 1..].starts_with(b"\r\n") {
                i += 3;
                continue;
            }
            if let Some(hex) = text.get(i + 1..i + 3)
                && let Ok(byte) = u8::from_str_radix(hex, 16)
            {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[derive(Default)]
struct Shared {
    received: Mutex<Vec<ReceivedMail>>,
    arrived: Notify,
    reject_mail: AtomicBool,
}

/// The test SMTP server. Stops when dropped.
pub struct SmtpSink {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl SmtpSink {
    /// Starts a server on 127.0.0.1 with a free port.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the test SMTP server");
        let addr = listener.local_addr().expect("local address");
        let shared = Arc::new(Shared::default());
        let task = tokio::spawn({
            let shared = Arc::clone(&shared);
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    tokio::spawn(session(stream, Arc::clone(&shared)));
                }
            }
        });
        Self { addr, shared, task }
    }

    /// `smtp://127.0.0.1:<port>`: plain SMTP, for `TESSERA_SMTP_URL`.
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    /// Makes `MAIL FROM` fail with `451` (temporary) while `reject` is true.
    pub fn reject_mail(&self, reject: bool) {
        self.shared.reject_mail.store(reject, Ordering::SeqCst);
    }

    /// Every message accepted so far.
    pub fn messages(&self) -> Vec<ReceivedMail> {
        self.shared.received.lock().unwrap().clone()
    }

    /// Waits until at least `n` messages have arrived and returns them all; panics after
    /// `timeout`.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<ReceivedMail> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let arrived = self.shared.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            let messages = self.messages();
            if messages.len() >= n {
                return messages;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                panic!(
                    "expected {n} messages within {timeout:?}, got {}: {messages:#?}",
                    messages.len()
                );
            }
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Extracts the address inside `<…>` after `MAIL FROM:` / `RCPT TO:` (ignoring parameters).
fn path_argument(argument: &str) -> Option<String> {
    let start = argument.find('<')?;
    let end = argument[start..].find('>')? + start;
    Some(argument[start + 1..end].to_owned())
}

async fn reply(write: &mut tokio::net::tcp::OwnedWriteHalf, text: &str) -> bool {
    write.write_all(text.as_bytes()).await.is_ok()
}

async fn session(stream: TcpStream, shared: Arc<Shared>) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    if !reply(&mut write, "220 tessera-test ESMTP ready\r\n").await {
        return;
    }
    let mut from: Option<String> = None;
    let mut to: Vec<String> = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line);
        let command = text.trim_end_matches(['\r', '\n']);
        let (verb, argument) = command.split_once([' ', ':']).unwrap_or((command, ""));
        let verb = verb.to_ascii_uppercase();
        let answer = match verb.as_str() {
            "EHLO" => {
                "250-tessera-test greets you\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 PIPELINING\r\n"
                    .to_owned()
            }
            "HELO" => "250 tessera-test\r\n".to_owned(),
            "MAIL" if shared.reject_mail.load(Ordering::SeqCst) => {
                "451 4.3.0 temporarily unavailable, try again later\r\n".to_owned()
            }
            "MAIL" => match path_argument(argument) {
                Some(sender) => {
                    from = Some(sender);
                    to.clear();
                    "250 2.1.0 OK\r\n".to_owned()
                }
                None => "501 5.5.4 syntax: MAIL FROM:<address>\r\n".to_owned(),
            },
            "RCPT" => match (&from, path_argument(argument)) {
                (None, _) => "503 5.5.1 MAIL first\r\n".to_owned(),
                (Some(_), Some(recipient)) => {
                    to.push(recipient);
                    "250 2.1.5 OK\r\n".to_owned()
                }
                (Some(_), None) => "501 5.5.4 syntax: RCPT TO:<address>\r\n".to_owned(),
            },
            "DATA" if from.is_none() || to.is_empty() => {
                "503 5.5.1 MAIL and RCPT first\r\n".to_owned()
            }
            "DATA" => {
                if !reply(&mut write, "354 end data with <CR><LF>.<CR><LF>\r\n").await {
                    return;
                }
                let mut data = Vec::new();
                loop {
                    line.clear();
                    match reader.read_until(b'\n', &mut line).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    if line == b".\r\n" || line == b".\n" {
                        break;
                    }
                    // Dot-unstuffing (RFC 5321 §4.5.2).
                    let content = if line.starts_with(b".") {
                        &line[1..]
                    } else {
                        &line[..]
                    };
                    data.extend_from_slice(content);
                }
                let mail = ReceivedMail {
                    from: from.take().unwrap_or_default(),
                    to: std::mem::take(&mut to),
                    data: String::from_utf8_lossy(&data).into_owned(),
                };
                shared.received.lock().unwrap().push(mail);
                shared.arrived.notify_waiters();
                "250 2.0.0 OK queued\r\n".to_owned()
            }
            "RSET" => {
                from = None;
                to.clear();
                "250 2.0.0 OK\r\n".to_owned()
            }
            "NOOP" => "250 2.0.0 OK\r\n".to_owned(),
            "QUIT" => {
                reply(&mut write, "221 2.0.0 bye\r\n").await;
                return;
            }
            _ => "502 5.5.2 command not implemented\r\n".to_owned(),
        };
        if !reply(&mut write, &answer).await {
            return;
        }
    }
}
