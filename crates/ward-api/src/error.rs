//! API errors: each maps to one HTTP status and a JSON body; internals never leak.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ward_client::wire::{ErrorBody, ErrorDetail};
use ward_core::{Error, ErrorKind};

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<String>,
    /// Seconds until a rate-limited caller may try again (`Retry-After`).
    retry_after: Option<u64>,
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "bad_request",
            message: message.into(),
            field: None,
            retry_after: None,
        }
    }

    pub fn unauthorized() -> ApiError {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            code: "unauthorized",
            message: "missing or wrong API key: send `Authorization: Bearer <key>`; the admin key is in DATA_DIR/admin.token"
                .to_string(),
            field: None,
            retry_after: None,
        }
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            message: message.into(),
            field: None,
            retry_after: None,
        }
    }

    pub fn rate_limited(wait: std::time::Duration) -> ApiError {
        let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
        ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: "rate_limited",
            message: format!("too many calls with this key; try again in {seconds} s"),
            field: None,
            retry_after: Some(seconds),
        }
    }

    pub fn too_large(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            code: "too_large",
            message: message.into(),
            field: None,
            retry_after: None,
        }
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::FORBIDDEN,
            code: "forbidden",
            message: message.into(),
            field: None,
            retry_after: None,
        }
    }

    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::CONFLICT,
            code: "conflict",
            message: message.into(),
            field: None,
            retry_after: None,
        }
    }

    /// Another server Ward depends on (a registry) failed or cannot be reached.
    pub fn bad_gateway(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_GATEWAY,
            code: "bad_gateway",
            message: message.into(),
            field: None,
            retry_after: None,
        }
    }

    pub fn method_not_allowed() -> ApiError {
        ApiError {
            status: StatusCode::METHOD_NOT_ALLOWED,
            code: "method_not_allowed",
            message: "this method is not allowed here: see /openapi.json".to_string(),
            field: None,
            retry_after: None,
        }
    }

    /// Puts `prefix` before the message, e.g. to say which document of a batch was at fault.
    pub fn prefix_message(&mut self, prefix: &str) {
        self.message = format!("{prefix}{}", self.message);
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The body this error is answered with, for streams that report errors in-line.
    pub fn detail(&self) -> ErrorDetail {
        ErrorDetail {
            code: self.code.to_string(),
            message: self.message.clone(),
            field: self.field.clone(),
        }
    }

    pub fn internal(error: &dyn std::fmt::Display) -> ApiError {
        tracing::error!(%error, "internal error");
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            message: "internal error; the daemon log has the details".to_string(),
            field: None,
            retry_after: None,
        }
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> ApiError {
        let (status, code) = match error.kind {
            ErrorKind::Invalid => (StatusCode::BAD_REQUEST, "bad_request"),
            ErrorKind::InvalidSpec => (StatusCode::BAD_REQUEST, "invalid_spec"),
            ErrorKind::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ErrorKind::Conflict => (StatusCode::CONFLICT, "conflict"),
            ErrorKind::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
            ErrorKind::QuotaExceeded => (StatusCode::FORBIDDEN, "quota_exceeded"),
            ErrorKind::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ErrorKind::Busy => {
                return ApiError {
                    status: StatusCode::TOO_MANY_REQUESTS,
                    code: "busy",
                    message: error.message,
                    field: error.field,
                    retry_after: Some(1),
                }
            }
            ErrorKind::InsufficientStorage => {
                (StatusCode::INSUFFICIENT_STORAGE, "insufficient_storage")
            }
            ErrorKind::Upstream => (StatusCode::BAD_GATEWAY, "bad_gateway"),
            ErrorKind::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        ApiError {
            status,
            code,
            message: error.message,
            field: error.field,
            retry_after: None,
        }
    }
}

impl From<ward_spec::SpecError> for ApiError {
    fn from(error: ward_spec::SpecError) -> ApiError {
        ApiError::from(Error::from(error))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
                field: self.field,
            },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(seconds),
            );
        }
        response
    }
}

/// A JSON request body whose rejection is an [`ApiError`] (`{"error": …}`, status 400) naming
/// what was wrong, rather than axum's plain-text 422.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for JsonBody<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(JsonBody(value)),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::too_large(format!(
                    "request body: larger than {} bytes",
                    crate::limits::MAX_JSON_BODY_BYTES
                )))
            }
            Err(rejection) => Err(ApiError::bad_request(format!(
                "request body: {}",
                rejection.body_text()
            ))),
        }
    }
}

/// The longest plain-text error body turned into JSON.
const MAX_TEXT_ERROR_BYTES: usize = 16 * 1024;

/// Puts the errors axum answers by itself (a body over the limit, a query or path that does
/// not parse, a missing WebSocket upgrade) into the contract's JSON, as every handler's are.
pub async fn json_errors(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_TEXT_ERROR_BYTES)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_string())
        .unwrap_or_default();
    let (code, message) = match status {
        StatusCode::PAYLOAD_TOO_LARGE => (
            "too_large",
            "the request body is larger than this endpoint takes; send a smaller one".to_string(),
        ),
        StatusCode::INTERNAL_SERVER_ERROR => {
            tracing::error!(error = %text, "internal error");
            (
                "internal",
                "internal error; the daemon log has the details".to_string(),
            )
        }
        _ if text.is_empty() => (
            "bad_request",
            format!(
                "{}; see /openapi.json",
                status.canonical_reason().unwrap_or("bad request")
            ),
        ),
        _ => ("bad_request", format!("{text}; see /openapi.json")),
    };
    let error = ApiError {
        status,
        code,
        message,
        field: None,
        retry_after: None,
    };
    let mut response = error.into_response();
    for (name, value) in parts.headers.iter() {
        if name != axum::http::header::CONTENT_TYPE && name != axum::http::header::CONTENT_LENGTH {
            response.headers_mut().insert(name.clone(), value.clone());
        }
    }
    response
}
