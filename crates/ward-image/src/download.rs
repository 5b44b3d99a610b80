//! Files fetched over HTTPS (a model from a URL, or from Hugging Face): written to a partial
//! file that outlives an interrupted transfer, resumed with a `Range` request where the server
//! allows it (from the start where it does not), hashed once whole.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use nix::fcntl::{Flock, FlockArg};

use crate::digest::{Digest, Hasher};

/// Transfers tried before a download gives up.
const ATTEMPTS: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("{url}: {reason}")]
    Remote { url: String, reason: String },
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A whole download: the partial file, now complete.
#[derive(Debug)]
pub struct Downloaded {
    pub path: PathBuf,
    pub digest: Digest,
    pub size: u64,
}

/// Downloads `url` into `partial` (resuming what an earlier attempt left there), reporting
/// `(done, total)` bytes as it goes; `total` is 0 while unknown.
pub async fn download(
    url: &str,
    partial: &Path,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<Downloaded, DownloadError> {
    let io = |action: &'static str| {
        move |source: std::io::Error| DownloadError::Io {
            action,
            path: partial.to_path_buf(),
            source,
        }
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(partial)
        .map_err(io("open"))?;
    // Two pulls of one URL take turns; the second finds the file whole.
    let locked = tokio::task::spawn_blocking(move || Flock::lock(file, FlockArg::LockExclusive))
        .await
        .map_err(|error| io("lock")(std::io::Error::other(error)))?;
    let mut file = locked.map_err(|(_, errno)| io("lock")(errno.into()))?;
    let client = reqwest::Client::builder()
        .user_agent(concat!("ward/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(30))
        .build()
        .map_err(|error| DownloadError::Remote {
            url: url.to_string(),
            reason: error.to_string(),
        })?;
    let mut last_error = String::new();
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            tracing::warn!(url, attempt, error = %last_error, "download interrupted; resuming");
            tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
        }
        match transfer(&client, url, &mut file, progress).await {
            Ok(()) => {
                let path = partial.to_path_buf();
                let mut reader = file.try_clone().map_err(io("read"))?;
                let (digest, size) = tokio::task::spawn_blocking(move || hash(&mut reader))
                    .await
                    .map_err(|error| io("read")(std::io::Error::other(error)))?
                    .map_err(io("read"))?;
                return Ok(Downloaded { path, digest, size });
            }
            Err(Failure::Final(reason)) => {
                return Err(DownloadError::Remote {
                    url: url.to_string(),
                    reason,
                })
            }
            Err(Failure::Retry(reason)) => last_error = reason,
            Err(Failure::Local(source)) => return Err(io("write")(source)),
        }
    }
    Err(DownloadError::Remote {
        url: url.to_string(),
        reason: format!("{last_error} (after {ATTEMPTS} attempts)"),
    })
}

enum Failure {
    /// Trying again may help (the connection broke, the server had a moment).
    Retry(String),
    /// It will not (not found, refused).
    Final(String),
    Local(std::io::Error),
}

/// One transfer: from where the file ends to the end of the remote file.
async fn transfer(
    client: &reqwest::Client,
    url: &str,
    file: &mut File,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> Result<(), Failure> {
    let mut offset = file.seek(SeekFrom::End(0)).map_err(Failure::Local)?;
    let mut request = client.get(url);
    if offset > 0 {
        request = request.header(reqwest::header::RANGE, format!("bytes={offset}-"));
    }
    let response = request
        .send()
        .await
        .map_err(|error| Failure::Retry(error.to_string()))?;
    let status = response.status();
    if status == reqwest::StatusCode::RANGE_NOT_SATISFIABLE && offset > 0 {
        // What we have is all there is.
        return Ok(());
    }
    if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        return Err(Failure::Retry(format!("the server answered {status}")));
    }
    if !status.is_success() {
        return Err(Failure::Final(format!("the server answered {status}")));
    }
    let total = if status == reqwest::StatusCode::PARTIAL_CONTENT {
        response
            .headers()
            .get(reqwest::header::CONTENT_RANGE)
            .and_then(|value| value.to_str().ok())
            .and_then(|range| range.rsplit('/').next())
            .and_then(|total| total.parse::<u64>().ok())
            .unwrap_or(0)
    } else {
        // The whole file again: the server does not resume.
        if offset > 0 {
            file.set_len(0).map_err(Failure::Local)?;
            file.seek(SeekFrom::Start(0)).map_err(Failure::Local)?;
            offset = 0;
        }
        response.content_length().unwrap_or(0)
    };
    progress(offset, total);
    let mut stream = response.bytes_stream();
    let mut reported = offset;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|error| Failure::Retry(error.to_string()))?;
        file.write_all(&chunk).map_err(Failure::Local)?;
        offset += chunk.len() as u64;
        if offset - reported >= 1 << 20 {
            reported = offset;
            progress(offset, total);
        }
    }
    file.sync_all().map_err(Failure::Local)?;
    if total > 0 && offset < total {
        return Err(Failure::Retry(format!(
            "the transfer ended at {offset} of {total} bytes"
        )));
    }
    progress(offset, total.max(offset));
    Ok(())
}

fn hash(file: &mut File) -> std::io::Result<(Digest, u64)> {
    file.seek(SeekFrom::Start(0))?;
    let mut hasher = Hasher::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    let size = hasher.bytes();
    Ok((hasher.finish(), size))
}
