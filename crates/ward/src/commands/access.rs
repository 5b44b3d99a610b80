//! `ward key create|ls|revoke`, `ward audit ls|verify` and `ward project create|ls`.

use anyhow::bail;
use ward_client::wire::{KeyRequest, QuotaDocument, QuotaLimits};

use crate::cli::{AuditCommand, KeyCommand, ProjectCommand, QuotaCommand};
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

pub async fn quota(context: &Context, command: QuotaCommand) -> anyhow::Result<i32> {
    let document = match command {
        QuotaCommand::Show => context.client.quota().await?,
        QuotaCommand::Set {
            cpu,
            memory,
            workloads,
            replicas,
            gpus,
            volume_bytes,
        } => {
            let cpu = cpu
                .map(|text| ward_spec::units::parse_cpu(&text))
                .transpose()
                .map_err(anyhow::Error::msg)?;
            context
                .client
                .set_quota(&QuotaLimits {
                    cpu,
                    memory: memory.map(serde_json::Value::from),
                    workloads,
                    replicas,
                    gpus,
                    volume_bytes: volume_bytes.map(serde_json::Value::from),
                })
                .await?
        }
    };
    if context.json() {
        output::print_json(&document)?;
    } else {
        output::print_text(&render_quota(&document))?;
    }
    Ok(0)
}

/// `RESOURCE  USED  LIMIT` rows.
fn render_quota(document: &QuotaDocument) -> String {
    let limits = document.limits.clone().unwrap_or_default();
    let size = |value: &Option<serde_json::Value>| {
        value
            .as_ref()
            .and_then(serde_json::Value::as_u64)
            .map_or("-".to_string(), output::format_size)
    };
    let count = |value: Option<u64>| value.map_or("-".to_string(), |value| value.to_string());
    let usage = &document.usage;
    let rows = vec![
        vec![
            "cpu".to_string(),
            format!("{}", usage.cpu),
            limits.cpu.map_or("-".to_string(), |cpu| cpu.to_string()),
        ],
        vec![
            "memory".to_string(),
            output::format_size(usage.memory),
            size(&limits.memory),
        ],
        vec![
            "memory (measured)".to_string(),
            output::format_size(usage.measured_memory),
            size(&limits.memory),
        ],
        vec![
            "workloads".to_string(),
            usage.workloads.to_string(),
            count(limits.workloads),
        ],
        vec![
            "replicas".to_string(),
            usage.replicas.to_string(),
            count(limits.replicas),
        ],
        vec![
            "gpus".to_string(),
            usage.gpus.to_string(),
            count(limits.gpus),
        ],
        vec![
            "volume bytes".to_string(),
            output::format_size(usage.volume_bytes),
            size(&limits.volume_bytes),
        ],
    ];
    format!(
        "project {}\n{}",
        document.project,
        output::render_table(&["RESOURCE", "USED", "LIMIT"], &rows)
    )
}
