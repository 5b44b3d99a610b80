//! API errors: each maps to one HTTP status and a JSON body; internals never leak.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ward_client::wire::{ErrorBody, ErrorDetail};
use ward_supervisor::SupervisorError;

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<String>,
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "bad_request",
            message: message.into(),
            field: None,
        }
    }

    pub fn unauthorized() -> ApiError {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            code: "unauthorized",
            message: "missing or wrong API key: send `Authorization: Bearer <key>`; the admin key is in DATA_DIR/admin.token"
                .to_string(),
            field: None,
        }
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            message: message.into(),
            field: None,
        }
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::FORBIDDEN,
            code: "forbidden",
            message: message.into(),
            field: None,
        }
    }

    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::CONFLICT,
            code: "conflict",
            message: message.into(),
            field: None,
        }
    }

    pub fn method_not_allowed() -> ApiError {
        ApiError {
            status: StatusCode::METHOD_NOT_ALLOWED,
            code: "method_not_allowed",
            message: "this method is not allowed here: see /openapi.json".to_string(),
            field: None,
        }
    }

    /// Puts `prefix` before the message, e.g. to say which document of a batch was at fault.
    pub fn prefix_message(&mut self, prefix: &str) {
        self.message = format!("{prefix}{}", self.message);
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
        }
    }
}

impl From<SupervisorError> for ApiError {
    fn from(error: SupervisorError) -> ApiError {
        let message = error.to_string();
        let (status, code, field) = match &error {
            SupervisorError::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found", None),
            SupervisorError::AlreadyExists { .. } => {
                (StatusCode::CONFLICT, "conflict", Some("name".to_string()))
            }
            SupervisorError::Invalid { field, .. } => {
                (StatusCode::BAD_REQUEST, "invalid_spec", Some(field.clone()))
            }
            SupervisorError::Conflict { .. } | SupervisorError::NotRunning { .. } => {
                (StatusCode::CONFLICT, "conflict", None)
            }
            SupervisorError::Spec(spec_error) => (
                StatusCode::BAD_REQUEST,
                "invalid_spec",
                Some(spec_error.field().to_string()).filter(|field| !field.is_empty()),
            ),
            SupervisorError::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", None),
            SupervisorError::Store(_) | SupervisorError::Runtime(_) => {
                return ApiError::internal(&error)
            }
        };
        ApiError {
            status,
            code,
            message,
            field,
        }
    }
}

impl From<ward_spec::SpecError> for ApiError {
    fn from(error: ward_spec::SpecError) -> ApiError {
        ApiError::from(SupervisorError::Spec(error))
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
        (self.status, axum::Json(body)).into_response()
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
            Err(rejection) => Err(ApiError::bad_request(format!(
                "request body: {}",
                rejection.body_text()
            ))),
        }
    }
}
