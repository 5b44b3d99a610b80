//! How an operation fails, as every caller sees it: a kind to act on (and answer with a status),
//! a message that says what to do, and the field at fault. Internal details (host paths, SQL,
//! the OCI runtime's words) never reach it: the engine logs them and says less.

/// What kind of failure an [`Error`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is wrong: a value that is not one, a reference that names nothing.
    Invalid,
    /// A spec that cannot be run as written; the field names what.
    InvalidSpec,
    NotFound,
    /// The object exists in a state that does not allow the call (running, in use, taken).
    Conflict,
    /// The caller lacks a grant the call needs.
    Forbidden,
    /// The call would take the project past a quota; the field is `quota.<name>`.
    QuotaExceeded,
    /// The engine is shutting down, or what the call needs could not start.
    Unavailable,
    /// Too many calls wait for the same thing; try again in a moment.
    Busy,
    /// The disk under the data directory is full; the message names it and the space left.
    InsufficientStorage,
    /// A registry or other server Ward called failed or could not be reached.
    Upstream,
    /// Ward's own machinery failed; the details are in the daemon's log only.
    Internal,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    /// The field of the request at fault, when one is.
    pub field: Option<String>,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
            field: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Invalid, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Forbidden, message)
    }

    pub fn not_found(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::NotFound, message)
    }

    /// A failure of Ward's own; `detail` goes to the log, never to the caller.
    pub fn internal(detail: &dyn std::fmt::Display) -> Error {
        tracing::error!(%detail, "internal error");
        Error::new(
            ErrorKind::Internal,
            "internal error; the daemon log has the details",
        )
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Error {
        self.field = Some(field.into());
        self
    }
}

impl From<ward_spec::SpecError> for Error {
    fn from(error: ward_spec::SpecError) -> Error {
        let field = error.field().to_string();
        let error_text = error.to_string();
        let error = Error::new(ErrorKind::InvalidSpec, error_text);
        if field.is_empty() {
            error
        } else {
            error.with_field(field)
        }
    }
}
