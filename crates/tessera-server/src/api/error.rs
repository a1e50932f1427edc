//! The JSON error envelope of API.md: `{"error": {"code", "message"}}`.
//! 5xx answers say nothing internal; the cause is logged.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tessera_core::Error;
use utoipa::ToSchema;

/// The body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorEnvelope {
    /// The error.
    pub error: ErrorBody,
}

/// The code and message of an error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable snake_case code.
    pub code: String,
    /// Human-readable text.
    pub message: String,
}

/// A domain error on its way to becoming an HTTP answer.
#[derive(Debug)]
pub struct ApiError {
    error: Error,
    status_override: Option<StatusCode>,
}

impl ApiError {
    /// An `invalid_request` with the given status (413 for oversized bodies, 415 for media types,
    /// 405 for methods).
    pub fn with_status(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            error: Error::InvalidRequest(message.into()),
            status_override: Some(status),
        }
    }

    /// A `not_found` for unknown routes.
    pub fn no_route() -> Self {
        Self::from(Error::NotFound)
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        Self {
            error,
            status_override: None,
        }
    }
}

/// The HTTP status of a domain error.
pub fn status_of(error: &Error) -> StatusCode {
    match error {
        Error::InvalidRequest(_) | Error::WeakPassword(_) => StatusCode::BAD_REQUEST,
        Error::Unauthenticated | Error::InvalidCredentials | Error::InvalidCode => {
            StatusCode::UNAUTHORIZED
        }
        Error::MfaRequired
        | Error::MfaEnrollmentRequired
        | Error::ReauthRequired
        | Error::Forbidden
        | Error::PolicyForbids(_)
        | Error::BackupCodesLocked
        | Error::SignupDisabled => StatusCode::FORBIDDEN,
        Error::NotFound | Error::NoSuch(_) => StatusCode::NOT_FOUND,
        Error::Conflict(_) => StatusCode::CONFLICT,
        Error::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self
            .status_override
            .unwrap_or_else(|| status_of(&self.error));
        let message = match &self.error {
            Error::Unavailable(detail) => {
                tracing::error!(detail = %detail, "database unavailable");
                "The service is temporarily unavailable; try again shortly.".to_owned()
            }
            Error::Internal(detail) => {
                tracing::error!(detail = %detail, "internal error");
                "Something went wrong on our side.".to_owned()
            }
            other => other.to_string(),
        };
        let body = ErrorEnvelope {
            error: ErrorBody {
                code: self.error.code().to_owned(),
                message,
            },
        };
        let mut response = (status, Json(body)).into_response();
        if let Error::RateLimited { retry_after_secs } = self.error
            && let Ok(value) = HeaderValue::from_str(&retry_after_secs.max(1).to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

/// The result type of handlers.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn rate_limited_answers_carry_retry_after() {
        let response = ApiError::from(Error::RateLimited {
            retry_after_secs: 42,
        })
        .into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "42");
    }

    #[tokio::test]
    async fn internal_errors_say_nothing_internal() {
        let response =
            ApiError::from(Error::Internal("pool exhausted at db.rs:42".into())).into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let bytes = axum::body::to_bytes(response.into_body(), 10_000)
            .await
            .unwrap();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        assert!(!text.contains("db.rs"), "{text}");
        assert!(text.contains("\"code\":\"internal\""));
    }
}
