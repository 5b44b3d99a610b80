//! Request bodies too large to hold in memory (image archives, model files), written to a
//! temporary file under the daemon's upload directory as they arrive.

use std::path::Path;

use axum::body::Body;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::error::ApiError;

/// Writes `body` to a new temporary file in `directory`, refusing it past `limit` bytes;
/// `what` names it in errors ("the archive"). The file goes when the handle is dropped.
pub async fn receive(
    directory: &Path,
    body: Body,
    limit: u64,
    what: &str,
) -> Result<tempfile::NamedTempFile, ApiError> {
    let upload = tempfile::Builder::new()
        .prefix("upload-")
        .tempfile_in(directory)
        .map_err(|error| ApiError::internal(&error))?;
    let mut file = tokio::fs::File::from_std(
        upload
            .as_file()
            .try_clone()
            .map_err(|error| ApiError::internal(&error))?,
    );
    let mut stream = body.into_data_stream();
    let mut received: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|error| ApiError::bad_request(format!("reading {what}: {error}")))?;
        received += chunk.len() as u64;
        if received > limit {
            return Err(ApiError::too_large(format!(
                "{what} is larger than {limit} bytes"
            )));
        }
        file.write_all(&chunk)
            .await
            .map_err(|error| ApiError::internal(&error))?;
    }
    file.flush()
        .await
        .map_err(|error| ApiError::internal(&error))?;
    Ok(upload)
}
