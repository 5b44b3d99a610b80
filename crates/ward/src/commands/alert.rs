//! `ward alert ls | silence | silences | expire`: the project's alerts and their silences.

use std::collections::BTreeMap;

use crate::cli::AlertCommand;
use crate::commands::Context;
use crate::output;

pub async fn run(context: &Context, command: AlertCommand) -> anyhow::Result<i32> {
    match command {
        AlertCommand::Ls => {
            let alerts = context.client.alerts().await?;
            if context.json() {
                output::print_json(&alerts)?;
                return Ok(0);
            }
            let rows: Vec<Vec<String>> = alerts
                .as_array()
                .into_iter()
                .flatten()
                .map(|alert| {
                    let label =
                        |name: &str| alert["labels"][name].as_str().unwrap_or("-").to_string();
                    let silenced = alert["silenced_by"]
                        .as_array()
                        .is_some_and(|silences| !silences.is_empty());
                    let state = alert["state"].as_str().unwrap_or("-");
                    vec![
                        label("alertname"),
                        if silenced {
                            format!("{state} (silenced)")
                        } else {
                            state.to_string()
                        },
                        label("workload"),
                        label("severity"),
                        alert["active_at"].as_str().unwrap_or("-").to_string(),
                        alert["annotations"]["summary"]
                            .as_str()
                            .unwrap_or("")
                            .to_string(),
                    ]
                })
                .collect();
            if rows.is_empty() {
                output::note("no alerts: nothing any rule watches is wrong now");
                return Ok(0);
            }
            output::print_text(&output::render_table(
                &["ALERT", "STATE", "WORKLOAD", "SEVERITY", "SINCE", "SUMMARY"],
                &rows,
            ))?;
        }
        AlertCommand::Silence {
            matchers,
            duration,
            comment,
        } => {
            let mut parsed = BTreeMap::new();
            for matcher in &matchers {
                let Some((name, value)) = matcher.split_once('=') else {
                    anyhow::bail!(
                        "matcher {matcher:?}: give LABEL=VALUE, like alertname=HighMemory"
                    );
                };
                parsed.insert(name.trim().to_string(), value.trim().to_string());
            }
            let silence = context
                .client
                .create_silence(&parsed, &duration, &comment)
                .await?;
            if context.json() {
                output::print_json(&silence)?;
            } else {
                println!(
                    "{} (until {})",
                    silence["id"].as_str().unwrap_or_default(),
                    silence["ends_at"].as_str().unwrap_or_default()
                );
            }
        }
        AlertCommand::Silences => {
            let silences = context.client.silences().await?;
            if context.json() {
                output::print_json(&silences)?;
                return Ok(0);
            }
            let rows: Vec<Vec<String>> = silences
                .as_array()
                .into_iter()
                .flatten()
                .map(|silence| {
                    let matchers = silence["matchers"]
                        .as_object()
                        .into_iter()
                        .flatten()
                        .filter(|(name, _)| *name != "project")
                        .map(|(name, value)| {
                            format!("{name}={}", value.as_str().unwrap_or_default())
                        })
                        .collect::<Vec<_>>()
                        .join(" ");
                    let text = |name: &str| silence[name].as_str().unwrap_or("-").to_string();
                    vec![
                        text("id"),
                        matchers,
                        text("ends_at"),
                        text("created_by"),
                        text("comment"),
                    ]
                })
                .collect();
            if rows.is_empty() {
                output::note("no silences");
                return Ok(0);
            }
            output::print_text(&output::render_table(
                &["ID", "MATCHERS", "UNTIL", "BY", "COMMENT"],
                &rows,
            ))?;
        }
        AlertCommand::Expire { id } => {
            let silence = context.client.expire_silence(&id).await?;
            if context.json() {
                output::print_json(&silence)?;
            } else {
                println!("{id} expired");
            }
        }
    }
    Ok(0)
}
