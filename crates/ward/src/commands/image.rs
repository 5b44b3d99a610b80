//! `ward image pull|import|ls|inspect|rm|prune`.

use std::io::Read;

use ward_client::wire::ImageDocument;

use crate::cli::ImageCommand;
use crate::commands::Context;
use crate::output;

pub async fn run(context: &Context, command: ImageCommand) -> anyhow::Result<i32> {
    match command {
        ImageCommand::Pull {
            reference,
            plain_http,
        } => {
            let image = context.client.pull_image(&reference, plain_http).await?;
            print_images(context, &[image])
        }
        ImageCommand::Import { file, name } => {
            let archive = if file.as_os_str() == "-" {
                let mut bytes = Vec::new();
                std::io::stdin().read_to_end(&mut bytes)?;
                bytes
            } else {
                std::fs::read(&file)
                    .map_err(|error| anyhow::anyhow!("cannot read {}: {error}", file.display()))?
            };
            let images = context
                .client
                .import_image(archive, name.as_deref())
                .await?;
            print_images(context, &images)
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

fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    &hex[..hex.len().min(12)]
}
