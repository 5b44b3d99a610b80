//! `ward model import|ls|show|rm|ps|load|unload`: the project's models, as `ollama list` and
//! `docker model` show them.

use std::path::Path;

use anyhow::{bail, Context as _};
use ward_client::wire::ModelDocument;

use crate::cli::ModelCommand;
use crate::commands::image::upload_stream;
use crate::commands::Context;
use crate::output;

pub async fn run(context: &Context, command: ModelCommand) -> anyhow::Result<i32> {
    match command {
        ModelCommand::Pull { source, name } => {
            let events = context
                .client
                .pull_model_events(&source, name.as_deref())
                .await?;
            let model = follow_transfer(&source, events).await?;
            print_models(
                context,
                &[model.ok_or_else(|| anyhow::anyhow!("the pull ended without its model"))?],
            )
        }
        ModelCommand::Push { name, reference } => {
            let events = context.client.push_model_events(&name, &reference).await?;
            follow_transfer(&reference, events).await?;
            output::print_line(&reference)?;
            Ok(0)
        }
        ModelCommand::Import { path, name } => {
            let model = import(context, &path, name.as_deref()).await?;
            print_models(context, &[model])
        }
        ModelCommand::Ls => {
            let models = context.client.list_models().await?;
            print_models(context, &models)
        }
        ModelCommand::Show { name } => {
            let model = context.client.get_model(&name).await?;
            if context.json() {
                output::print_json(&model)?;
            } else {
                output::print_text(&describe(&model))?;
            }
            Ok(0)
        }
        ModelCommand::Ps => {
            let loaded = context.client.loaded_models().await?;
            if context.json() {
                output::print_json(&loaded)?;
                return Ok(0);
            }
            let rows: Vec<Vec<String>> = loaded
                .iter()
                .map(|model| {
                    vec![
                        model.name.clone(),
                        short(&model.digest).to_string(),
                        output::format_size(model.memory_bytes),
                        format!("{} x {}", model.slots, model.context),
                        model.requests.to_string(),
                        format!("{} s", model.unloads_in_seconds),
                    ]
                })
                .collect();
            output::print_text(&output::render_table(
                &[
                    "MODEL",
                    "ID",
                    "MEMORY",
                    "SLOTS x CONTEXT",
                    "REQUESTS",
                    "UNLOADS IN",
                ],
                &rows,
            ))?;
            Ok(0)
        }
        ModelCommand::Load { name } => {
            let model = context.client.load_model(&name).await?;
            if context.json() {
                output::print_json(&model)?;
            } else {
                output::print_line(&model.name)?;
            }
            Ok(0)
        }
        ModelCommand::Unload { name } => {
            let model = context.client.unload_model(&name).await?;
            output::print_line(&model.name)?;
            Ok(0)
        }
        ModelCommand::Rm { names, force } => {
            // Each name on its own: one that is missing keeps no other.
            let mut first_error = None;
            for name in &names {
                match context.client.remove_model(name, force).await {
                    Ok(model) => output::print_line(&model.name)?,
                    Err(error) => {
                        first_error.get_or_insert(error);
                    }
                }
            }
            match first_error {
                Some(error) => Err(error.into()),
                None => Ok(0),
            }
        }
    }
}

async fn import(
    context: &Context,
    path: &Path,
    name: Option<&str>,
) -> anyhow::Result<ModelDocument> {
    let metadata =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    let name = match name {
        Some(name) => name.to_string(),
        None if metadata.is_dir() => path
            .canonicalize()
            .ok()
            .and_then(|path| path.file_stem()?.to_str().map(str::to_string))
            .with_context(|| {
                format!(
                    "{} has no directory name to take the model's name from: give one with --name",
                    path.display()
                )
            })?,
        None => path
            .file_stem()
            .and_then(|stem| stem.to_str())
            .map(str::to_string)
            .with_context(|| {
                format!(
                    "{} has no file name to take the model's name from: give one with --name",
                    path.display()
                )
            })?,
    };
    if metadata.is_dir() {
        // A sentence-transformers directory becomes one GGUF file here, and that is what
        // the daemon stores.
        if !ward_model::convert::is_model_directory(path) {
            bail!(
                "{} is a directory without config.json, model.safetensors and tokenizer.json: give a GGUF file or a sentence-transformers directory",
                path.display()
            );
        }
        let directory = path.to_path_buf();
        let converted = tokio::task::spawn_blocking(move || -> anyhow::Result<std::fs::File> {
            let mut file = tempfile::tempfile().context("cannot make a temporary file")?;
            ward_model::convert::sentence_transformers(&directory, &mut file)?;
            std::io::Seek::rewind(&mut file)?;
            Ok(file)
        })
        .await??;
        let length = converted.metadata()?.len();
        let body = upload_stream(tokio::fs::File::from_std(converted), Some(length));
        return Ok(context.client.import_model(body, &name).await?);
    }
    let opened = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("cannot read {}", path.display()))?;
    let body = upload_stream(opened, Some(metadata.len()));
    Ok(context.client.import_model(body, &name).await?)
}

/// Draws a pull's or push's progress until its end; the pulled model, if it was a pull.
async fn follow_transfer(
    what: &str,
    events: impl futures_util::Stream<
        Item = Result<ward_client::wire::ModelTransferEvent, ward_client::ClientError>,
    >,
) -> anyhow::Result<Option<ModelDocument>> {
    use futures_util::StreamExt;
    use indicatif::{MultiProgress, ProgressBar};
    use ward_client::wire::ModelTransferEvent;
    let mut events = Box::pin(events);
    let bars = MultiProgress::with_draw_target(crate::commands::image::progress_target());
    let mut by_digest: std::collections::HashMap<String, ProgressBar> = Default::default();
    while let Some(event) = events.next().await {
        match event? {
            ModelTransferEvent::Resolved { blobs, .. } => {
                for blob in blobs {
                    let bar = bars.add(ProgressBar::new(blob.total));
                    bar.set_style(crate::commands::image::bar_style());
                    bar.set_prefix(short(&blob.digest).to_string());
                    by_digest.insert(blob.digest, bar);
                }
            }
            ModelTransferEvent::Progress(blob) => {
                if let Some(bar) = by_digest.get(&blob.digest) {
                    if bar.length() != Some(blob.total) && blob.total > 0 {
                        bar.set_length(blob.total);
                    }
                    bar.set_position(blob.done);
                }
            }
            ModelTransferEvent::Done { model } => {
                by_digest.values().for_each(ProgressBar::finish);
                return Ok(Some(model));
            }
            ModelTransferEvent::Pushed(_) => {
                by_digest.values().for_each(ProgressBar::finish);
                return Ok(None);
            }
            ModelTransferEvent::Error { error } => {
                bars.clear()?;
                bail!("{}", error.message);
            }
        }
    }
    bail!("{what}: the daemon ended the transfer without saying how it ended")
}

fn print_models(context: &Context, models: &[ModelDocument]) -> anyhow::Result<i32> {
    if context.json() {
        output::print_json(&models)?;
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = models
        .iter()
        .map(|model| {
            vec![
                model.name.clone(),
                short(&model.digest).to_string(),
                model
                    .architecture
                    .clone()
                    .unwrap_or_else(|| "-".to_string()),
                format_parameters(model.parameters),
                model
                    .quantization
                    .clone()
                    .unwrap_or_else(|| "-".to_string()),
                output::format_size(model.size),
                if model.loaded { "yes" } else { "no" }.to_string(),
                output::format_timestamp(&model.created_at),
            ]
        })
        .collect();
    output::print_text(&output::render_table(
        &[
            "MODEL", "ID", "ARCH", "PARAMS", "QUANT", "SIZE", "LOADED", "CREATED",
        ],
        &rows,
    ))?;
    Ok(0)
}

/// What `ward model show` prints, as `ollama show` does.
fn describe(model: &ModelDocument) -> String {
    let mut text = String::new();
    let mut line = |key: &str, value: String| text.push_str(&format!("{key:<16}{value}\n"));
    line("name", model.name.clone());
    line("digest", model.digest.clone());
    line("format", model.format.clone());
    line(
        "architecture",
        model.architecture.clone().unwrap_or_else(|| "-".into()),
    );
    line("parameters", format_parameters(model.parameters));
    line(
        "quantization",
        model.quantization.clone().unwrap_or_else(|| "-".into()),
    );
    line(
        "context length",
        model
            .context_length
            .map_or_else(|| "-".into(), |length| length.to_string()),
    );
    line("kind", model.kind.clone());
    if let Some(length) = model.embedding_length {
        line("vector length", length.to_string());
    }
    line("size", output::format_size(model.size));
    line("loaded", if model.loaded { "yes" } else { "no" }.into());
    line("source", model.source.clone());
    line("created", output::format_timestamp(&model.created_at));
    match &model.chat_template {
        Some(template) => text.push_str(&format!("chat template:\n{template}\n")),
        None => text.push_str("chat template   -\n"),
    }
    text
}

/// `1.2B`, `207K`, as model cards say it.
fn format_parameters(count: u64) -> String {
    let count = count as f64;
    if count >= 1e9 {
        format!("{:.1}B", count / 1e9)
    } else if count >= 1e6 {
        format!("{:.1}M", count / 1e6)
    } else if count >= 1e3 {
        format!("{:.0}K", count / 1e3)
    } else {
        format!("{count}")
    }
}

fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    &hex[..hex.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_read_as_model_cards_write_them() {
        assert_eq!(format_parameters(1_235_814_400), "1.2B");
        assert_eq!(format_parameters(207_168), "207K");
        assert_eq!(format_parameters(7_000_000), "7.0M");
        assert_eq!(format_parameters(12), "12");
    }
}
