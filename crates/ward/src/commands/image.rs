//! `ward image pull|import|export|ls|inspect|rm|prune`, with progress bars on a terminal.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::Path;

use anyhow::{bail, Context as _};
use futures_util::{Stream, StreamExt};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::io::{AsyncRead, AsyncReadExt};
use ward_client::wire::{ImageDocument, PullEvent};

use crate::cli::ImageCommand;
use crate::commands::Context;
use crate::output;

/// Bytes read from an archive per upload chunk.
const UPLOAD_CHUNK: usize = 256 * 1024;

pub async fn run(context: &Context, command: ImageCommand) -> anyhow::Result<i32> {
    match command {
        ImageCommand::Pull {
            reference,
            plain_http,
        } => {
            let image = pull(context, &reference, plain_http).await?;
            print_images(context, &[image])
        }
        ImageCommand::Import { file, name } => {
            let images = import(context, &file, name.as_deref()).await?;
            print_images(context, &images)
        }
        ImageCommand::Export { references, file } => {
            export(context, &references, file.as_deref()).await?;
            Ok(0)
        }
        ImageCommand::Ls => {
            let images = context.client.list_images().await?;
            if context.json() {
                output::print_json(&images)?;
                return Ok(0);
            }
            let rows: Vec<Vec<String>> = images
                .iter()
                .map(|image| {
                    vec![
                        image.reference.clone(),
                        short(&image.digest).to_string(),
                        image.platform.clone(),
                        output::format_size(image.size),
                        output::format_timestamp(&image.created_at),
                    ]
                })
                .collect();
            output::print_text(&output::render_table(
                &["IMAGE", "ID", "PLATFORM", "SIZE", "CREATED"],
                &rows,
            ))?;
            Ok(0)
        }
        ImageCommand::Inspect { references } => {
            let mut images = Vec::new();
            for reference in &references {
                images.push(context.client.get_image(reference).await?);
            }
            output::print_json_one_or_many(&images)?;
            Ok(0)
        }
        ImageCommand::Rm { references, force } => {
            let mut removed = Vec::new();
            for reference in &references {
                removed.push(context.client.remove_image(reference, force).await?);
            }
            print_images(context, &removed)
        }
        ImageCommand::Prune => {
            let report = context.client.prune_images().await?;
            if context.json() {
                output::print_json(&report)?;
            } else {
                output::print_line(&format!(
                    "removed {} blobs and {} unpacked layers, {} freed",
                    report.blobs,
                    report.layers,
                    output::format_size(report.bytes)
                ))?;
            }
            Ok(0)
        }
    }
}

/// Pulls with a bar per blob on a terminal (on stderr), as `docker pull` shows them.
async fn pull(
    context: &Context,
    reference: &str,
    plain_http: bool,
) -> anyhow::Result<ImageDocument> {
    let mut events = Box::pin(
        context
            .client
            .pull_image_events(reference, plain_http)
            .await?,
    );
    let bars = MultiProgress::with_draw_target(progress_target());
    let mut by_digest: HashMap<String, ProgressBar> = HashMap::new();
    while let Some(event) = events.next().await {
        match event? {
            PullEvent::Resolved { digest, blobs } => {
                bars.println(format!("{reference}: resolved to {}", short(&digest)))?;
                for blob in blobs {
                    let bar = bars.add(ProgressBar::new(blob.total));
                    bar.set_style(bar_style());
                    bar.set_prefix(short(&blob.digest).to_string());
                    by_digest.insert(blob.digest, bar);
                }
            }
            PullEvent::Progress(blob) => {
                if let Some(bar) = by_digest.get(&blob.digest) {
                    bar.set_position(blob.done);
                    if blob.done >= blob.total {
                        bar.finish();
                    }
                }
            }
            PullEvent::Done { image } => {
                for bar in by_digest.values() {
                    bar.finish();
                }
                return Ok(image);
            }
            PullEvent::Error { error } => {
                bars.clear()?;
                bail!("{}", error.message);
            }
        }
    }
    bail!("the daemon closed the pull of {reference} without saying how it ended; see its log")
}

/// Uploads an archive, or an OCI layout directory as a tar, with a bar on a terminal.
async fn import(
    context: &Context,
    file: &Path,
    name: Option<&str>,
) -> anyhow::Result<Vec<ImageDocument>> {
    if file.as_os_str() == "-" {
        let body = upload_stream(tokio::io::stdin(), None);
        return Ok(context.client.import_image(body, name).await?);
    }
    let metadata =
        std::fs::metadata(file).with_context(|| format!("cannot read {}", file.display()))?;
    // A layout directory travels as a tar written to a temporary file first.
    let packed;
    let archive: &Path = if metadata.is_dir() {
        if !file.join("oci-layout").is_file() {
            bail!(
                "{} is a directory without an oci-layout file: give an OCI image layout \
                 directory, or a 'docker save' or OCI layout archive",
                file.display()
            );
        }
        packed = pack_directory(file)?;
        packed.path()
    } else {
        file
    };
    let opened = tokio::fs::File::open(archive)
        .await
        .with_context(|| format!("cannot read {}", archive.display()))?;
    let size = opened.metadata().await.ok().map(|metadata| metadata.len());
    let body = upload_stream(opened, size);
    Ok(context.client.import_image(body, name).await?)
}

/// A tar of the directory at `directory` (its entries at the top level), in a temporary file.
fn pack_directory(directory: &Path) -> anyhow::Result<tempfile::NamedTempFile> {
    let packed = tempfile::Builder::new()
        .prefix("ward-layout-")
        .suffix(".tar")
        .tempfile()
        .context("cannot create a temporary file for the layout's tar")?;
    let mut builder = tar::Builder::new(std::io::BufWriter::new(packed.as_file()));
    builder.follow_symlinks(false);
    builder
        .append_dir_all(".", directory)
        .and_then(|()| builder.finish())
        .with_context(|| format!("cannot pack {} into a tar", directory.display()))?;
    drop(builder);
    Ok(packed)
}

/// The bytes of `reader` as a request body, with a bar of `size` bytes on a terminal.
pub(crate) fn upload_stream(
    reader: impl AsyncRead + Unpin + Send + 'static,
    size: Option<u64>,
) -> reqwest::Body {
    let bar = match size {
        Some(size) => ProgressBar::with_draw_target(Some(size), progress_target()),
        None => ProgressBar::with_draw_target(None, progress_target()),
    };
    bar.set_style(bar_style());
    bar.set_prefix("uploading");
    let chunks = futures_util::stream::unfold((reader, bar), |(mut reader, bar)| async move {
        let mut buffer = vec![0u8; UPLOAD_CHUNK];
        match reader.read(&mut buffer).await {
            Ok(0) => {
                bar.finish_and_clear();
                None
            }
            Ok(read) => {
                buffer.truncate(read);
                bar.inc(read as u64);
                Some((Ok::<_, std::io::Error>(buffer), (reader, bar)))
            }
            Err(error) => Some((Err(error), (reader, bar))),
        }
    });
    reqwest::Body::wrap_stream(chunks)
}

/// Streams the archive into `file` (through a temporary file renamed into place, so a failed
/// export leaves nothing half-written) or to stdout.
async fn export(
    context: &Context,
    references: &[String],
    file: Option<&Path>,
) -> anyhow::Result<()> {
    if file.is_none() && std::io::stdout().is_terminal() {
        bail!(
            "refusing to write an archive to a terminal: give --file FILE or redirect the output"
        );
    }
    let chunks = context.client.export_images(references).await?;
    match file {
        Some(file) => {
            let directory = file
                .parent()
                .filter(|parent| !parent.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let mut partial = tempfile::Builder::new()
                .prefix(".ward-export-")
                .tempfile_in(directory)
                .with_context(|| format!("cannot write in {}", directory.display()))?;
            write_chunks(chunks, partial.as_file_mut()).await?;
            partial
                .persist(file)
                .with_context(|| format!("cannot write {}", file.display()))?;
        }
        None => write_chunks(chunks, &mut std::io::stdout().lock()).await?,
    }
    Ok(())
}

async fn write_chunks(
    chunks: impl Stream<Item = Result<bytes::Bytes, ward_client::ClientError>>,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let mut chunks = Box::pin(chunks);
    let mut written = 0u64;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk?;
        out.write_all(&chunk).context("cannot write the archive")?;
        written += chunk.len() as u64;
    }
    out.flush().context("cannot write the archive")?;
    // A tar ends with two zero blocks: fewer bytes than that is no archive at all.
    if written < 1024 {
        bail!("the daemon sent an incomplete archive; see its log");
    }
    Ok(())
}

/// Progress goes to stderr, and only when it is a terminal.
pub(crate) fn progress_target() -> ProgressDrawTarget {
    if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    }
}

pub(crate) fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{prefix:>12} [{bar:30}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} {eta:>4}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ")
}

/// Names with their ids, or the documents with `-o json`.
fn print_images(context: &Context, images: &[ImageDocument]) -> anyhow::Result<i32> {
    if context.json() {
        output::print_json(&images)?;
    } else {
        for image in images {
            output::print_line(&format!("{} {}", image.reference, short(&image.digest)))?;
        }
    }
    Ok(0)
}

/// The first 12 hex digits of a digest, as `docker images` shows ids.
fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    &hex[..hex.len().min(12)]
}
