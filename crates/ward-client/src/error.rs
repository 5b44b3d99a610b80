//! Errors of the API client.

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The daemon answered with an error body.
    #[error("{message}")]
    Api {
        status: u16,
        code: String,
        message: String,
        field: Option<String>,
    },
    #[error("cannot reach the Ward daemon at {url}: {reason}; is `ward serve` running?")]
    Unreachable { url: String, reason: String },
    #[error("unexpected answer from {url}: {reason}")]
    Protocol { url: String, reason: String },
    #[error("websocket to {url}: {reason}")]
    WebSocket { url: String, reason: String },
    #[error("TLS: {reason}")]
    Tls { reason: String },
}

impl ClientError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, ClientError::Api { code, .. } if code == "not_found")
    }
}
