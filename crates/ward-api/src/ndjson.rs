//! Long operations answered as NDJSON (pulls, pushes): one JSON line per event as the
//! operation reports it, the last line its end; closing the connection cancels it.

use std::convert::Infallible;
use std::future::Future;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap};
use axum::response::Response;
use futures_util::StreamExt;
use serde::Serialize;
use tokio::sync::mpsc::UnboundedSender;
use tokio_stream::wrappers::UnboundedReceiverStream;

use crate::error::ApiError;

/// Whether the caller asked for NDJSON (`Accept: application/x-ndjson`).
pub fn wanted(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|accept| accept.to_str().ok())
        .is_some_and(|accept| accept.contains("application/x-ndjson"))
}

/// Runs `work` in a task of its own, handing it a sender for its progress events; the
/// answer is those events, then the one `work` ends with, as lines.
pub fn lines<T, F, Fut>(work: F) -> Result<Response, ApiError>
where
    T: Serialize + Send + 'static,
    F: FnOnce(UnboundedSender<T>) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
{
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel::<T>();
    let last = sender.clone();
    let future = work(sender);
    let task = tokio::spawn(async move {
        let end = future.await;
        let _ = last.send(end);
    });
    let cancel_on_disconnect = AbortOnDrop(task.abort_handle());
    let lines = UnboundedReceiverStream::new(receiver).map(move |event| {
        let _keep = &cancel_on_disconnect;
        let mut line = serde_json::to_vec(&event).unwrap_or_default();
        line.push(b'\n');
        Ok::<_, Infallible>(Bytes::from(line))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .body(Body::from_stream(lines))
        .map_err(|error| ApiError::internal(&error))
}

/// Aborts a task when the response streaming its output is dropped (the client went away).
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
