//! Extractors: JSON and query strings that fail with the API envelope, the client's address,
//! and the session capabilities (`ApiSession`, `FullApiSession`).
//!
//! Threats: cross-site request forgery on cookie-authenticated changes (a session-bound token
//! in `X-CSRF-Token` is required for them; bearer-token clients are not exposed to CSRF), and
//! address spoofing (`X-Forwarded-For` is believed only from configured proxies).

use super::error::ApiError;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRef, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, header};
use axum_extra::extract::CookieJar;
use ipnet::IpNet;
use serde::de::DeserializeOwned;
use std::net::{IpAddr, SocketAddr};
use tessera_core::Error;
use tessera_core::event::ClientInfo;
use tessera_core::service::{Authenticated, FullSession};

/// The largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A JSON body; malformed JSON, wrong types, unknown or missing fields become `invalid_request`.
/// An empty body counts as `{}`.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = req.headers().get(header::CONTENT_TYPE).cloned();
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::with_status(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the body must be at most {MAX_BODY_BYTES} bytes"),
                )
            } else {
                ApiError::from(Error::invalid("the body could not be read"))
            }
        })?;
        let body: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        if !bytes.is_empty() {
            let is_json = content_type
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(';').next())
                .is_some_and(|mime| {
                    let mime = mime.trim().to_ascii_lowercase();
                    mime == "application/json"
                        || (mime.starts_with("application/") && mime.ends_with("+json"))
                });
            if !is_json {
                return Err(ApiError::with_status(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "the body must be JSON (Content-Type: application/json)",
                ));
            }
        }
        serde_json::from_slice(body)
            .map(ApiJson)
            .map_err(|error| ApiError::from(Error::invalid(describe_json_error(&error))))
    }
}

fn describe_json_error(error: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let text = error.to_string();
    // serde's messages name the field and the problem; drop the position suffix for data
    // errors, keep it for syntax errors where it helps.
    match error.classify() {
        Category::Data => format!(
            "invalid body: {}",
            text.split(" at line").next().unwrap_or(&text)
        ),
        Category::Syntax | Category::Eof => format!("malformed JSON: {text}"),
        Category::Io => "the body could not be read".into(),
    }
}

/// Query parameters; unknown parameters and bad values become `invalid_request`.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        serde_urlencoded::from_str(query)
            .map(ApiQuery)
            .map_err(|error| ApiError::from(Error::invalid(format!("invalid query: {error}"))))
    }
}

/// The client address: the peer, or — when the peer is a trusted proxy — the right-most
/// `X-Forwarded-For` entry that is not itself a trusted proxy.
pub fn client_ip(parts: &Parts, trusted_proxies: &[IpNet]) -> Option<IpAddr> {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())?;
    let is_trusted = |ip: &IpAddr| trusted_proxies.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let forwarded: Vec<IpAddr> = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|item| item.trim().parse().ok())
        .collect();
    Some(
        forwarded
            .into_iter()
            .rev()
            .find(|ip| !is_trusted(ip))
            .unwrap_or(peer),
    )
}

/// Where the request came from, for events and sessions.
#[derive(Debug, Clone)]
pub struct Client(pub ClientInfo);

impl<S> FromRequestParts<S> for Client
where
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let app = AppState::from_ref(state);
        let ip = client_ip(parts, &app.settings.trusted_proxies).map(|ip| ip.to_string());
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok());
        Ok(Client(ClientInfo::new(ip, user_agent)))
    }
}

/// How the session token arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// `Authorization: Bearer`.
    Bearer,
    /// The session cookie of the pages.
    Cookie,
}

/// Reads the session token from the `Authorization` header or the cookie.
pub fn session_token(parts: &Parts, cookie_name: &str) -> Option<(String, Credential)> {
    if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        let (scheme, token) = value.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        return Some((token.trim().to_owned(), Credential::Bearer));
    }
    let jar = CookieJar::from_headers(&parts.headers);
    jar.get(cookie_name)
        .map(|c| (c.value().to_owned(), Credential::Cookie))
}

/// An authenticated API request (any session state). Cookie-authenticated requests that change
/// state must carry the session's CSRF token in `X-CSRF-Token`.
#[derive(Debug, Clone)]
pub struct ApiSession(pub Authenticated);

impl<S> FromRequestParts<S> for ApiSession
where
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let app = AppState::from_ref(state);
        let (token, credential) =
            session_token(parts, app.cookie_name()).ok_or(Error::Unauthenticated)?;
        let auth = app.services.authenticate(&token).await?;
        let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        if credential == Credential::Cookie && !safe {
            let presented = parts
                .headers
                .get("x-csrf-token")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if !app.services.check_csrf(&auth, presented) {
                return Err(ApiError::from(Error::Forbidden));
            }
        }
        Ok(ApiSession(auth))
    }
}

/// An authenticated API request whose session has done every authentication step.
#[derive(Debug, Clone)]
pub struct FullApiSession(pub FullSession);

impl<S> FromRequestParts<S> for FullApiSession
where
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let ApiSession(auth) = ApiSession::from_request_parts(parts, state).await?;
        Ok(FullApiSession(auth.full()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request as HttpRequest;

    fn parts(peer: &str, xff: Option<&str>) -> Parts {
        let mut builder = HttpRequest::builder().uri("/");
        if let Some(xff) = xff {
            builder = builder.header("x-forwarded-for", xff);
        }
        let (mut parts, ()) = builder.body(()).unwrap().into_parts();
        parts
            .extensions
            .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
        parts
    }

    #[test]
    fn forwarded_for_is_ignored_without_trusted_proxies() {
        let p = parts("203.0.113.9:5000", Some("1.2.3.4"));
        assert_eq!(client_ip(&p, &[]), Some("203.0.113.9".parse().unwrap()));
    }

    #[test]
    fn forwarded_for_is_believed_from_trusted_proxies_only() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let p = parts("10.0.0.5:5000", Some("6.6.6.6, 198.51.100.7, 10.0.0.9"));
        assert_eq!(
            client_ip(&p, &trusted),
            Some("198.51.100.7".parse().unwrap())
        );
        let direct = parts("198.51.100.8:5000", Some("6.6.6.6"));
        assert_eq!(
            client_ip(&direct, &trusted),
            Some("198.51.100.8".parse().unwrap())
        );
    }
}
