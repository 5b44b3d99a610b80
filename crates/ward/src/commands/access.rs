//! `ward key create|ls|revoke`, `ward audit ls|verify` and `ward project create|ls`.

use anyhow::bail;
use ward_client::wire::KeyRequest;

use crate::cli::{AuditCommand, KeyCommand, ProjectCommand};
use crate::commands::Context;
use crate::output;

pub async fn key(context: &Context, command: KeyCommand) -> anyhow::Result<i32> {
    match command {
        KeyCommand::Create {
            name,
            role,
            capabilities,
            expires,
        } => {
            let created = context
                .client
                .create_key(&KeyRequest {
                    name,
                    project: context.settings.project.clone(),
                    role,
                    capabilities,
                    expires_in: expires,
                })
                .await?;
            if context.json() {
                output::print_json(&created)?;
            } else {
                output::print_line(&created.key)?;
                eprintln!(
                    "Key {} ({}, {}): shown only now; send it as 'Authorization: Bearer KEY' or set WARD_TOKEN",
                    created.document.id,
                    created.document.role,
                    created
                        .document
                        .project
                        .as_deref()
                        .map_or("every project".to_string(), |project| format!("project {project}"))
                );
            }
        }
        KeyCommand::Ls => {
            let keys = context.client.list_keys().await?;
            if context.json() {
                output::print_json(&keys)?;
                return Ok(0);
            }
            let rows: Vec<Vec<String>> = keys
                .iter()
                .map(|key| {
                    let state = match (&key.revoked_at, &key.expires_at) {
                        (Some(_), _) => "revoked".to_string(),
                        (None, Some(expiry)) => {
                            format!("until {}", output::format_timestamp(expiry))
                        }
                        (None, None) => "active".to_string(),
                    };
                    vec![
                        key.id.clone(),
                        key.name.clone(),
                        key.project.clone().unwrap_or_else(|| "*".to_string()),
                        key.role.clone(),
                        key.capabilities.join(","),
                        state,
                        output::format_timestamp(&key.created_at),
                    ]
                })
                .collect();
            output::print_text(&output::render_table(
                &[
                    "ID",
                    "NAME",
                    "PROJECT",
                    "ROLE",
                    "CAPABILITIES",
                    "STATE",
                    "CREATED",
                ],
                &rows,
            ))?;
        }
        KeyCommand::Revoke { ids } => {
            for id in &ids {
                let key = context.client.revoke_key(id).await?;
                if context.json() {
                    output::print_json_line(&key)?;
                } else {
                    output::print_line(&key.id)?;
                }
            }
        }
    }
    Ok(0)
}

pub async fn audit(context: &Context, command: AuditCommand) -> anyhow::Result<i32> {
    match command {
        AuditCommand::Ls { after, limit } => {
            let entries = context.client.audit(after, limit).await?;
            if context.json() {
                output::print_json(&entries)?;
                return Ok(0);
            }
            let rows: Vec<Vec<String>> = entries
                .iter()
                .map(|entry| {
                    vec![
                        entry.seq.to_string(),
                        output::format_timestamp(&entry.time),
                        entry.actor.clone(),
                        entry.project.clone().unwrap_or_else(|| "-".to_string()),
                        entry.action.clone(),
                        entry.target.clone(),
                        entry.status.to_string(),
                        entry.outcome.clone(),
                    ]
                })
                .collect();
            output::print_text(&output::render_table(
                &[
                    "SEQ", "TIME", "ACTOR", "PROJECT", "ACTION", "TARGET", "STATUS", "OUTCOME",
                ],
                &rows,
            ))?;
            Ok(0)
        }
        AuditCommand::Verify => {
            let verification = context.client.verify_audit().await?;
            if context.json() {
                output::print_json(&verification)?;
            }
            match (verification.first_bad_seq, verification.reason) {
                (Some(seq), reason) => bail!(
                    "the audit log was altered: entry {seq} is the first bad one ({}); {} entries checked",
                    reason.unwrap_or_default(),
                    verification.entries
                ),
                (None, _) => {
                    if !context.json() {
                        output::print_line(&format!(
                            "audit log intact: {} entries, every hash and link checks out",
                            verification.entries
                        ))?;
                    }
                    Ok(0)
                }
            }
        }
    }
}

pub async fn project(context: &Context, command: ProjectCommand) -> anyhow::Result<i32> {
    match command {
        ProjectCommand::Create { name } => {
            let project = context.client.create_project(&name).await?;
            if context.json() {
                output::print_json(&project)?;
            } else {
                output::print_line(&project.name)?;
            }
        }
        ProjectCommand::Ls => {
            let projects = context.client.list_projects().await?;
            if context.json() {
                output::print_json(&projects)?;
            } else {
                for project in projects {
                    output::print_line(&project.name)?;
                }
            }
        }
    }
    Ok(0)
}
