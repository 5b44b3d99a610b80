//! `ward apply -f FILE`: checks the file with the spec parser (the daemon's own rules, so errors
//! come early and read the same), sends every document in one all-or-nothing request, and
//! reports like kubectl: `web created`, `api configured`, `db unchanged`.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use ward_client::wire::{ApplyRequest, ApplyResponse, ApplyResult, FieldChange};

use crate::cli::ApplyArgs;
use crate::commands::{compose, run, Context};
use crate::output;

/// How long `apply` waits for what it created or changed to start.
const START_WAIT: Duration = Duration::from_secs(120);

pub async fn run(context: &Context, arguments: ApplyArgs) -> anyhow::Result<i32> {
    let mut workloads = Vec::new();
    let mut images = BTreeSet::new();
    for file in &arguments.files {
        let (source_name, text) = read_source(file)?;
        if crate::compose::is_compose(&text) {
            if arguments.files.len() > 1 {
                anyhow::bail!(
                    "-f: {source_name} is a Compose file; apply it on its own (or with 'ward compose up -f {source_name}')"
                );
            }
            let project = compose::read_text(file, &text, None)?;
            let options = compose::UpOptions {
                wait: !arguments.no_wait,
                remove_orphans: false,
                dry_run: arguments.dry_run,
            };
            return compose::up(context, &project, options).await;
        }
        let (documents, file_images) = documents_of(&source_name, &text)?;
        workloads.extend(documents);
        images.extend(file_images);
    }
    // An image that does not exist refuses the whole file before anything is stored.
    if !arguments.dry_run {
        for image in &images {
            run::ensure_image(context, image).await?;
        }
    }
    let request = ApplyRequest {
        workloads,
        dry_run: arguments.dry_run,
    };
    let response = context.client.apply(&request).await?;
    let changed: Vec<&str> = response
        .results
        .iter()
        .filter(|result| result.action != "unchanged")
        .map(|result| result.name.as_str())
        .collect();
    let failures = if response.dry_run || arguments.no_wait {
        Vec::new()
    } else {
        failed_starts(context, &changed).await?
    };

    if context.json() {
        if response.dry_run {
            output::print_json(&response)?;
        } else {
            let mut documents = Vec::with_capacity(response.results.len());
            for result in &response.results {
                documents.push(context.client.get_workload(&result.name).await?);
            }
            output::print_json_one_or_many(&documents)?;
        }
    } else {
        output::print_text(&render_apply_response(&response))?;
    }
    if !failures.is_empty() {
        anyhow::bail!("{}; fix the spec and apply it again", failures.join("; "));
    }
    Ok(0)
}

/// Waits until each of `names` has started or failed to, and says how each failure ended.
pub(crate) async fn failed_starts(
    context: &Context,
    names: &[&str],
) -> anyhow::Result<Vec<String>> {
    let deadline = Instant::now() + START_WAIT;
    let mut failures = Vec::new();
    for name in names {
        loop {
            let document = context.client.get_workload(name).await?;
            let status = &document.status;
            match status.state.as_str() {
                "pending" | "starting" if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                "failed" => {
                    let reason = status.message.as_deref().unwrap_or("it could not start");
                    failures.push(format!("workload {name} failed to start: {reason}"));
                    break;
                }
                _ => break,
            }
        }
    }
    Ok(failures)
}

/// The file's text and the name to use for it in messages; `-` is standard input.
fn read_source(file: &Path) -> anyhow::Result<(String, String)> {
    if file == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|error| {
                anyhow::anyhow!("cannot read the spec from standard input: {error}")
            })?;
        return Ok(("<stdin>".to_string(), text));
    }
    let text = std::fs::read_to_string(file).map_err(|error| {
        anyhow::anyhow!(
            "cannot read {}: {}; check the path given to -f",
            file.display(),
            describe_io_error(&error)
        )
    })?;
    Ok((file.display().to_string(), text))
}

fn describe_io_error(error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => error.to_string(),
    }
}

/// The workloads of one file as JSON values, as written (the daemon normalises them), after
/// the spec parser has accepted the whole file, and the container images they run.
pub fn documents_of(source_name: &str, text: &str) -> anyhow::Result<(Vec<Value>, Vec<String>)> {
    let specs = ward_spec::parse_documents(text)
        .map_err(|error| anyhow::anyhow!("{source_name}: {error}"))?;
    let images = specs
        .iter()
        .filter(|spec| spec.kind == ward_spec::WorkloadKind::Container)
        .filter_map(|spec| spec.image.clone())
        .collect();
    let documents = match raw_documents(text) {
        Some(documents) if documents.len() == specs.len() => documents,
        // Cannot happen for text the parser accepted; the normalised form means the same.
        _ => specs.iter().map(|spec| spec.to_normalized_json()).collect(),
    };
    Ok((documents, images))
}

/// Splits the text the way the spec parser does: JSON (one object or an array) when it starts
/// like JSON, else YAML documents separated by `---`, empty ones skipped.
fn raw_documents(text: &str) -> Option<Vec<Value>> {
    if matches!(text.trim_start().chars().next(), Some('{' | '[')) {
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Array(elements)) => return Some(elements),
            Ok(Value::Null) => return Some(Vec::new()),
            Ok(value) => return Some(vec![value]),
            Err(_) => {}
        }
    }
    let mut documents = Vec::new();
    for deserializer in serde_norway::Deserializer::from_str(text) {
        let mut value: serde_norway::Value = serde::Deserialize::deserialize(deserializer).ok()?;
        value.apply_merge().ok()?;
        if !value.is_null() {
            documents.push(serde_json::to_value(value).ok()?);
        }
    }
    Some(documents)
}

/// kubectl-style lines; with a dry run, what would change, field by field.
pub fn render_apply_response(response: &ApplyResponse) -> String {
    let mut rendered = String::new();
    for result in &response.results {
        if response.dry_run {
            rendered.push_str(&format!(
                "{}: {} (dry run)\n",
                result.name,
                planned_action(result)
            ));
            for change in &result.changes {
                rendered.push_str(&format!("  {}\n", render_change(change)));
            }
        } else {
            rendered.push_str(&format!("{} {}\n", result.name, past_action(result)));
        }
    }
    rendered
}

fn past_action(result: &ApplyResult) -> &str {
    match result.action.as_str() {
        "updated" => "configured",
        other => other,
    }
}

fn planned_action(result: &ApplyResult) -> &str {
    match result.action.as_str() {
        "created" => "create",
        "updated" => "update",
        other => other,
    }
}

/// `path: old -> new`, `+ path: new` for an added field, `- path: old` for a removed one.
fn render_change(change: &FieldChange) -> String {
    let show = |value: &Value| serde_json::to_string(value).unwrap_or_else(|_| value.to_string());
    match (&change.old, &change.new) {
        (None, Some(new)) => format!("+ {}: {}", change.path, show(new)),
        (Some(old), None) => format!("- {}: {}", change.path, show(old)),
        (Some(old), Some(new)) => format!("{}: {} -> {}", change.path, show(old), show(new)),
        (None, None) => change.path.clone(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn result(name: &str, action: &str, changes: Vec<FieldChange>) -> ApplyResult {
        ApplyResult {
            name: name.to_string(),
            action: action.to_string(),
            revision: 1,
            changes,
        }
    }

    fn change(path: &str, old: Option<Value>, new: Option<Value>) -> FieldChange {
        FieldChange {
            path: path.to_string(),
            old,
            new,
        }
    }

    #[test]
    fn applied_results_read_like_kubectl() {
        let response = ApplyResponse {
            dry_run: false,
            results: vec![
                result("web", "created", vec![]),
                result("api", "updated", vec![]),
                result("db", "unchanged", vec![]),
            ],
        };
        assert_eq!(
            render_apply_response(&response),
            "web created\napi configured\ndb unchanged\n"
        );
    }

    #[test]
    fn dry_run_shows_each_changed_field() {
        let response = ApplyResponse {
            dry_run: true,
            results: vec![
                result(
                    "api",
                    "updated",
                    vec![
                        change(
                            "resources.memory",
                            Some(json!(268435456)),
                            Some(json!(536870912)),
                        ),
                        change("env.NEW", None, Some(json!("x"))),
                        change("labels.old", Some(json!("y")), None),
                    ],
                ),
                result("db", "unchanged", vec![]),
            ],
        };
        assert_eq!(
            render_apply_response(&response),
            "api: update (dry run)\n  resources.memory: 268435456 -> 536870912\n  + env.NEW: \"x\"\n  - labels.old: \"y\"\ndb: unchanged (dry run)\n"
        );
    }

    #[test]
    fn documents_are_sent_as_written() {
        let yaml = "name: web\ncommand: [sleep, \"60\"]\nresources: {memory: 64MiB}\n---\n---\nname: api\ncommand: sleep 60\n";
        let (documents, images) = documents_of("web.yaml", yaml).expect("valid");
        assert!(images.is_empty());
        assert_eq!(
            documents,
            vec![
                json!({"name": "web", "command": ["sleep", "60"], "resources": {"memory": "64MiB"}}),
                json!({"name": "api", "command": "sleep 60"}),
            ]
        );
        let json_array =
            r#"[{"name": "a", "command": ["true"]}, {"name": "b", "command": ["true"]}]"#;
        assert_eq!(
            documents_of("list.json", json_array)
                .expect("valid")
                .0
                .len(),
            2
        );
    }

    #[test]
    fn the_images_of_containers_are_found() {
        let yaml = "name: web\nimage: registry.local/web:1\n---\nname: job\ncommand: [true]\n";
        let (_, images) = documents_of("both.yaml", yaml).expect("valid");
        assert_eq!(images, ["registry.local/web:1"]);
    }

    #[test]
    fn spec_errors_name_the_file_and_the_field() {
        let error = documents_of(
            "web.yaml",
            "name: web\ncommand: [sleep]\nresources: {memory: 12XB}\n",
        )
        .expect_err("bad size")
        .to_string();
        assert!(error.starts_with("web.yaml: resources.memory: "), "{error}");
    }
}
