//! `ward compose up|down|ps` (and `ward apply -f compose.yaml`): brings a Compose file's services
//! up as workloads, each after the services it depends on have met their condition (started,
//! healthy, completed), and takes them down again, with their volumes when asked.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use ward_client::wire::{ApplyRequest, WorkloadDocument};

use crate::cli::{ComposeArgs, ComposeCommand};
use crate::commands::{apply, run, Context};
use crate::compose::{self, ComposeProject, Condition, Dependency, PROJECT_LABEL};
use crate::output;

/// How long a service waits for a dependency to meet its condition.
const DEPENDENCY_WAIT: Duration = Duration::from_secs(300);

/// How `up` goes about it.
#[derive(Clone, Copy, Debug)]
pub struct UpOptions {
    /// Wait until every service runs (or has failed to start).
    pub wait: bool,
    /// Remove workloads of the project that the file no longer has.
    pub remove_orphans: bool,
    /// Only say what would change.
    pub dry_run: bool,
}

pub async fn run(context: &Context, arguments: ComposeArgs) -> anyhow::Result<i32> {
    let files = arguments.all_files();
    match &arguments.command {
        &ComposeCommand::Up {
            detach: _,
            no_wait,
            remove_orphans,
            dry_run,
            ..
        } => {
            let path = compose_file(&files)?;
            let project = read_file(&path, arguments.project_name.as_deref())?;
            let options = UpOptions {
                wait: !no_wait,
                remove_orphans,
                dry_run,
            };
            up(context, &project, options).await
        }
        &ComposeCommand::Down { volumes, .. } => {
            let project = match (&arguments.project_name, files.is_empty()) {
                (Some(name), true) if find_default_file().is_none() => {
                    if volumes {
                        bail!(
                            "-v: the volumes to remove come from the Compose file; give it with -f"
                        );
                    }
                    return down_by_name(context, name).await;
                }
                _ => {
                    let path = compose_file(&files)?;
                    read_file(&path, arguments.project_name.as_deref())?
                }
            };
            down(context, &project, volumes).await
        }
        ComposeCommand::Logs {
            follow,
            tail,
            services,
            ..
        } => {
            let name = project_name(arguments.project_name.as_deref(), &files)?;
            let options = ward_client::LogOptions {
                follow: *follow,
                tail: *tail,
                since: None,
            };
            logs(context, &name, services, &options).await
        }
        ComposeCommand::Ps { .. } => {
            let name = project_name(arguments.project_name.as_deref(), &files)?;
            let filters = vec![crate::cli::PsFilter::Label {
                key: PROJECT_LABEL.to_string(),
                value: Some(name),
            }];
            let listing = crate::cli::PsArgs {
                all: true,
                quiet: false,
                filters,
                client_options: Default::default(),
            };
            crate::commands::ps::run(context, listing).await
        }
    }
}

/// The Compose project's name: `-p` alone, else from the file.
fn project_name(given: Option<&str>, files: &[PathBuf]) -> anyhow::Result<String> {
    match (given, files.is_empty()) {
        (Some(name), true) => Ok(name.to_string()),
        _ => {
            let path = compose_file(files)?;
            Ok(read_file(&path, given)?.name)
        }
    }
}

/// The output of the project's workloads (of `services` only, when given), merged as it
/// comes, each line after its instance's name as `docker compose logs` shows it.
async fn logs(
    context: &Context,
    project: &str,
    services: &[String],
    options: &ward_client::LogOptions,
) -> anyhow::Result<i32> {
    use futures_util::StreamExt;
    let workloads: Vec<WorkloadDocument> = context
        .client
        .list_workloads(true)
        .await?
        .into_iter()
        .filter(|workload| compose_project_of(workload) == Some(project))
        .filter(|workload| {
            services.is_empty()
                || workload
                    .spec
                    .get("labels")
                    .and_then(|labels| labels.get(crate::compose::SERVICE_LABEL))
                    .and_then(|service| service.as_str())
                    .is_some_and(|service| services.iter().any(|wanted| wanted == service))
        })
        .collect();
    if workloads.is_empty() {
        bail!(
            "Compose project {project} has no workload{}; see 'ward compose ps'",
            if services.is_empty() {
                String::new()
            } else {
                format!(" for {}", services.join(", "))
            }
        );
    }
    let width = workloads
        .iter()
        .map(|workload| workload.name().len() + 2)
        .max()
        .unwrap_or(0);
    let mut streams = Vec::with_capacity(workloads.len());
    for workload in &workloads {
        streams.push(Box::pin(
            context.client.logs(workload.name(), options).await?,
        ));
    }
    let mut merged = futures_util::stream::select_all(streams);
    while let Some(entry) = merged.next().await {
        crate::commands::logs::print_entry(&entry?, Some(width), false)?;
    }
    Ok(0)
}

/// The Compose file: the one `-f` names, else the first of Compose's default names here.
fn compose_file(files: &[PathBuf]) -> anyhow::Result<PathBuf> {
    match files {
        [] => find_default_file().ok_or_else(|| {
            anyhow!(
                "no Compose file here (looked for {}); give one with -f FILE",
                compose::DEFAULT_FILES.join(", ")
            )
        }),
        [file] => Ok(file.clone()),
        _ => bail!("-f: give one Compose file; merging several is not supported"),
    }
}

fn find_default_file() -> Option<PathBuf> {
    compose::DEFAULT_FILES
        .iter()
        .map(PathBuf::from)
        .find(|path| path.is_file())
}

/// Reads and translates a Compose file; errors name the file and the key.
pub fn read_file(path: &Path, project: Option<&str>) -> anyhow::Result<ComposeProject> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        anyhow!(
            "cannot read {}: {error}; check the path given to -f",
            path.display()
        )
    })?;
    read_text(path, &text, project)
}

pub fn read_text(path: &Path, text: &str, project: Option<&str>) -> anyhow::Result<ComposeProject> {
    let lookup = |key: &str| std::env::var(key).ok();
    compose::read(&compose::Source {
        path,
        text,
        environment: &lookup,
        project,
    })
    .map_err(|error| anyhow!("{}: {error:#}", path.display()))
}

/// Applies the services in dependency order, each once those it depends on meet their
/// condition; fails (non-zero) if one cannot start.
pub async fn up(
    context: &Context,
    project: &ComposeProject,
    options: UpOptions,
) -> anyhow::Result<i32> {
    let existing = context.client.list_workloads(true).await?;
    for service in &project.services {
        let name = workload_name(service);
        if let Some(workload) = existing.iter().find(|workload| workload.name() == name) {
            if compose_project_of(workload) != Some(project.name.as_str()) {
                bail!(
                    "workload {name} exists and is not part of Compose project {}: remove it ('ward rm -f {name}'), or set container_name for the service",
                    project.name
                );
            }
        }
    }
    if options.dry_run {
        let request = ApplyRequest {
            workloads: project
                .services
                .iter()
                .map(|service| service.spec.clone())
                .collect(),
            dry_run: true,
        };
        let response = context.client.apply(&request).await?;
        output::print_text(&apply::render_apply_response(&response))?;
        return Ok(0);
    }
    let mut images: Vec<&str> = project
        .services
        .iter()
        .filter_map(|service| service.spec.get("image").and_then(|image| image.as_str()))
        .collect();
    images.sort_unstable();
    images.dedup();
    for image in images {
        run::ensure_image(context, image).await?;
    }

    let mut changed = Vec::new();
    for service in &project.services {
        for dependency in &service.depends_on {
            let Some(target) = project
                .services
                .iter()
                .find(|candidate| candidate.name == dependency.service)
            else {
                continue;
            };
            wait_for(context, &service.name, dependency, workload_name(target)).await?;
        }
        let request = ApplyRequest {
            workloads: vec![service.spec.clone()],
            dry_run: false,
        };
        let response = context.client.apply(&request).await?;
        output::print_text(&apply::render_apply_response(&response))?;
        changed.extend(
            response
                .results
                .into_iter()
                .filter(|result| result.action != "unchanged")
                .map(|result| result.name),
        );
    }

    let orphans: Vec<&WorkloadDocument> = existing
        .iter()
        .filter(|workload| compose_project_of(workload) == Some(project.name.as_str()))
        .filter(|workload| {
            !project
                .services
                .iter()
                .any(|service| workload_name(service) == workload.name())
        })
        .collect();
    for orphan in &orphans {
        if options.remove_orphans {
            context.client.delete_workload(orphan.name(), true).await?;
            output::print_line(&format!("{} removed", orphan.name()))?;
        } else {
            output::note(&format!(
                "workload {} belongs to Compose project {} but its service is not in the file; remove it with --remove-orphans",
                orphan.name(),
                project.name
            ));
        }
    }

    if options.wait {
        let names: Vec<&str> = changed.iter().map(String::as_str).collect();
        let failures = apply::failed_starts(context, &names).await?;
        if !failures.is_empty() {
            bail!(
                "{}; fix the Compose file and run 'ward compose up' again",
                failures.join("; ")
            );
        }
    }
    Ok(0)
}

/// Removes the project's workloads, dependents first (then those the file no longer
/// names), and with `volumes` the named volumes the file owns.
pub async fn down(
    context: &Context,
    project: &ComposeProject,
    volumes: bool,
) -> anyhow::Result<i32> {
    let mut ours: Vec<WorkloadDocument> = context
        .client
        .list_workloads(true)
        .await?
        .into_iter()
        .filter(|workload| compose_project_of(workload) == Some(project.name.as_str()))
        .collect();
    let order = |workload: &WorkloadDocument| {
        project
            .services
            .iter()
            .rev()
            .position(|service| workload_name(service) == workload.name())
            .unwrap_or(usize::MAX)
    };
    ours.sort_by_key(|workload| order(workload));
    remove_all(context, &ours).await?;
    if volumes {
        for volume in &project.volumes {
            match context.client.remove_volume(volume).await {
                Ok(_) => output::print_line(&format!("volume {volume} removed"))?,
                Err(error) if error.is_not_found() => {}
                Err(error) => return Err(error.into()),
            }
        }
    }
    Ok(0)
}

/// Removes every workload labelled with Compose project `name`.
async fn down_by_name(context: &Context, name: &str) -> anyhow::Result<i32> {
    let ours: Vec<WorkloadDocument> = context
        .client
        .list_workloads(true)
        .await?
        .into_iter()
        .filter(|workload| compose_project_of(workload) == Some(name))
        .collect();
    remove_all(context, &ours).await?;
    Ok(0)
}

async fn remove_all(context: &Context, workloads: &[WorkloadDocument]) -> anyhow::Result<()> {
    for workload in workloads {
        context
            .client
            .delete_workload(workload.name(), true)
            .await?;
        output::print_line(&format!("{} removed", workload.name()))?;
    }
    Ok(())
}

fn workload_name(service: &compose::Service) -> &str {
    service
        .spec
        .get("name")
        .and_then(|name| name.as_str())
        .unwrap_or(&service.name)
}

fn compose_project_of(workload: &WorkloadDocument) -> Option<&str> {
    workload
        .spec
        .get("labels")
        .and_then(|labels| labels.get(PROJECT_LABEL))
        .and_then(|project| project.as_str())
}

/// Waits until the workload `target` meets `dependency`'s condition, for `service`.
async fn wait_for(
    context: &Context,
    service: &str,
    dependency: &Dependency,
    target: &str,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + DEPENDENCY_WAIT;
    let wanted = match dependency.condition {
        Condition::Started => "to start",
        Condition::Healthy => "to be healthy",
        Condition::CompletedSuccessfully => "to complete",
    };
    loop {
        let document = context.client.get_workload(target).await?;
        let status = &document.status;
        let failed = |why: String| {
            anyhow!("service {service} waits for {target} {wanted}, but {target} {why}; see 'ward logs {target}'")
        };
        let met = match dependency.condition {
            Condition::Started => match status.state.as_str() {
                "running" | "exited" => true,
                "failed" => {
                    return Err(failed(format!(
                        "failed: {}",
                        status.message.as_deref().unwrap_or("it could not start")
                    )))
                }
                _ => false,
            },
            Condition::Healthy => {
                if document
                    .spec
                    .get("health")
                    .is_none_or(|health| health.is_null())
                {
                    bail!(
                        "services.{service}.depends_on.{}: condition service_healthy, but {target} has no healthcheck; add one or use service_started",
                        dependency.service
                    );
                }
                match status.state.as_str() {
                    "failed" | "exited" | "stopped" => {
                        return Err(failed(format!("is {}", status.state)))
                    }
                    _ => status.state == "running" && status.health.as_deref() == Some("healthy"),
                }
            }
            Condition::CompletedSuccessfully => match status.state.as_str() {
                "exited" => match status.exit_code {
                    Some(0) | None => true,
                    Some(code) => return Err(failed(format!("exited with code {code}"))),
                },
                "failed" => return Err(failed("failed".to_string())),
                _ => false,
            },
        };
        if met {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(failed(format!(
                "is still {} after {} s",
                status.state,
                DEPENDENCY_WAIT.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
