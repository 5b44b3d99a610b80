//! `ward volume ls|rm|prune`: the project's named volumes, as `docker volume` shows them, and
//! which workloads mount each.

use crate::cli::VolumeCommand;
use crate::commands::Context;
use crate::output;

pub async fn run(context: &Context, command: VolumeCommand) -> anyhow::Result<i32> {
    match command {
        VolumeCommand::Ls { quiet } => {
            let volumes = context.client.list_volumes().await?;
            if context.json() {
                output::print_json(&volumes)?;
            } else if quiet {
                for volume in &volumes {
                    output::print_line(&volume.name)?;
                }
            } else {
                let rows: Vec<Vec<String>> = volumes
                    .iter()
                    .map(|volume| {
                        vec![
                            volume.name.clone(),
                            volume
                                .created_at
                                .as_deref()
                                .map_or_else(|| "-".to_string(), output::format_timestamp),
                            if volume.used_by.is_empty() {
                                "-".to_string()
                            } else {
                                volume.used_by.join(",")
                            },
                        ]
                    })
                    .collect();
                output::print_text(&output::render_table(
                    &["VOLUME", "CREATED", "USED BY"],
                    &rows,
                ))?;
            }
            Ok(0)
        }
        VolumeCommand::Rm { names } => {
            // Each name on its own, as `docker volume rm` does: one in use keeps no other.
            let mut first_error = None;
            for name in &names {
                match context.client.remove_volume(name).await {
                    Ok(_) => output::print_line(name)?,
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
        VolumeCommand::Prune => {
            let report = context.client.prune_volumes().await?;
            if context.json() {
                output::print_json(&report)?;
            } else {
                for name in &report.removed {
                    output::print_line(name)?;
                }
            }
            Ok(0)
        }
    }
}
