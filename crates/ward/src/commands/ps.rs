//! `ward ps`: the workload table (NAME KIND STATE RESTARTS UPTIME CPU MEM PORTS; `-o wide`
//! adds REPLICAS, running of asked for, and HEALTH), or the documents as a JSON array.

use std::time::SystemTime;

use serde_json::Value;
use ward_client::wire::WorkloadDocument;

use crate::cli::{PsArgs, PsFilter};
use crate::commands::Context;
use crate::output;

pub const PS_HEADERS: [&str; 8] = [
    "NAME", "KIND", "STATE", "RESTARTS", "UPTIME", "CPU", "MEM", "PORTS",
];

/// The columns `-o wide` adds.
const WIDE_HEADERS: [&str; 2] = ["REPLICAS", "HEALTH"];

pub async fn run(context: &Context, arguments: PsArgs) -> anyhow::Result<i32> {
    let documents = context.client.list_workloads(true).await?;
    // A filter on the state looks at every workload, as `docker ps -f status=exited` does.
    let filters_state = arguments
        .filters
        .iter()
        .any(|filter| matches!(filter, PsFilter::State(_)));
    let mut shown = select_workloads(documents, arguments.all || filters_state);
    shown.retain(|document| {
        arguments
            .filters
            .iter()
            .all(|filter| matches_filter(document, filter))
    });
    shown.sort_by(|left, right| left.name().cmp(right.name()));
    if context.json() {
        output::print_json(&shown)?;
    } else if arguments.quiet {
        for document in &shown {
            output::print_line(document.name())?;
        }
    } else {
        output::print_text(&render_ps_table(&shown, SystemTime::now(), context.wide()))?;
    }
    Ok(0)
}

/// Without `--all`, like `docker ps`: what is meant to run and has not finished — a workload
/// that exited successfully or was stopped is hidden; a failed one stays, it needs attention.
pub fn select_workloads(documents: Vec<WorkloadDocument>, all: bool) -> Vec<WorkloadDocument> {
    if all {
        return documents;
    }
    documents
        .into_iter()
        .filter(|document| {
            (document.status.desired_state == "running" && document.status.state != "exited")
                || document.status.state == "failed"
        })
        .collect()
}

/// Whether a workload passes one `--filter`.
pub fn matches_filter(document: &WorkloadDocument, filter: &PsFilter) -> bool {
    match filter {
        PsFilter::Name(part) => document.name().contains(part.as_str()),
        PsFilter::Label { key, value } => {
            let label = document
                .spec
                .get("labels")
                .and_then(|labels| labels.get(key))
                .and_then(Value::as_str);
            match (label, value) {
                (Some(label), Some(value)) => label == value,
                (Some(_), None) => true,
                (None, _) => false,
            }
        }
        PsFilter::State(state) => document.status.state == *state,
        PsFilter::Kind(kind) => document.kind() == kind,
        PsFilter::Health(state) => health(document) == *state,
    }
}

pub fn render_ps_table(documents: &[WorkloadDocument], now: SystemTime, wide: bool) -> String {
    let rows: Vec<Vec<String>> = documents
        .iter()
        .map(|document| {
            let status = &document.status;
            let mut row = vec![
                document.name().to_string(),
                document.kind().to_string(),
                status.state.clone(),
                status.restarts.to_string(),
                uptime(document, now),
                status
                    .cpu_percent
                    .map(output::format_percent)
                    .unwrap_or_else(|| "-".to_string()),
                status
                    .memory_bytes
                    .map(output::format_size)
                    .unwrap_or_else(|| "-".to_string()),
                ports(document),
            ];
            if wide {
                row.extend([replicas(document), health(document)]);
            }
            row
        })
        .collect();
    if wide {
        let headers: Vec<&str> = PS_HEADERS.iter().chain(&WIDE_HEADERS).copied().collect();
        output::render_table(&headers, &rows)
    } else {
        output::render_table(&PS_HEADERS, &rows)
    }
}

/// `2/3`: instances running of those the spec asks for.
fn replicas(document: &WorkloadDocument) -> String {
    let running = document
        .status
        .instances
        .iter()
        .filter(|instance| instance.state == "running")
        .count();
    let asked = document
        .spec
        .get("replicas")
        .and_then(Value::as_u64)
        .unwrap_or(1);
    format!("{running}/{asked}")
}

/// `healthy`, `unhealthy` or `starting` (the worst of the instances'), `-` without a check.
fn health(document: &WorkloadDocument) -> String {
    let states: Vec<&str> = document
        .status
        .instances
        .iter()
        .filter_map(|instance| instance.health.as_deref())
        .collect();
    ["unhealthy", "starting", "healthy"]
        .into_iter()
        .find(|state| states.contains(state))
        .or(document.status.health.as_deref())
        .unwrap_or("-")
        .to_string()
}

/// How long the workload has been running, `-` when it is not.
pub fn uptime(document: &WorkloadDocument, now: SystemTime) -> String {
    if document.status.state != "running" {
        return "-".to_string();
    }
    document
        .status
        .started_at
        .as_deref()
        .and_then(|started_at| output::elapsed_since(started_at, now))
        .map(output::format_uptime)
        .unwrap_or_else(|| "-".to_string())
}

/// `8080->8000/tcp, 5353->53/udp`, like `docker ps`: what the running instances publish
/// (host ports chosen for `publish_all` included), else what the spec asks for.
pub fn ports(document: &WorkloadDocument) -> String {
    let published: Vec<String> = document
        .status
        .instances
        .iter()
        .flat_map(|instance| &instance.ports)
        .map(|port| format!("{}->{}/{}", port.host, port.port, port.protocol))
        .collect();
    if !published.is_empty() {
        return published.join(", ");
    }
    let Some(Value::Array(ports)) = document.spec.get("ports") else {
        return String::new();
    };
    ports
        .iter()
        .map(|port| match port {
            Value::Object(mapping) => {
                let number = |key: &str| {
                    mapping
                        .get(key)
                        .map(|value| value.to_string())
                        .unwrap_or_default()
                };
                let protocol = mapping
                    .get("protocol")
                    .and_then(Value::as_str)
                    .unwrap_or("tcp");
                // A free host port is chosen when the instance starts.
                let host = match mapping.get("host") {
                    None | Some(Value::Null) => "*".to_string(),
                    Some(_) => number("host"),
                };
                format!("{host}->{}/{protocol}", number("port"))
            }
            Value::String(text) => text.clone(),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;

    /// A document as the daemon sends it, with the status fields that matter here.
    pub(crate) fn document(
        name: &str,
        state: &str,
        desired_state: &str,
        extra_status: Value,
        ports: Value,
    ) -> WorkloadDocument {
        let mut status = json!({
            "state": state, "restarts": 0, "exit_code": null, "pid": null, "started_at": null,
            "revision": 1, "project": "default", "desired_state": desired_state, "oom_killed": false,
            "finished_at": null, "health": null, "message": null,
            "created_at": "2025-05-01T11:00:00Z", "updated_at": "2025-05-01T11:00:00Z",
            "cpu_seconds": null, "memory_bytes": null, "instances": [],
        });
        if let (Value::Object(status), Value::Object(extra)) = (&mut status, extra_status) {
            status.extend(extra);
        }
        serde_json::from_value(json!({
            "name": name, "kind": "process", "ports": ports, "resources": {"memory": 268435456},
            "status": status,
        }))
        .expect("a valid document")
    }

    fn now() -> SystemTime {
        output::parse_timestamp("2025-05-01T12:00:00Z").expect("valid time")
    }

    #[test]
    fn ps_table_matches_docker_layout() {
        let documents = vec![
            document(
                "web",
                "running",
                "running",
                json!({"started_at": "2025-05-01T11:57:00Z", "restarts": 2, "cpu_percent": 0.5, "memory_bytes": 12897485}),
                json!([{"host": 8080, "port": 8000, "protocol": "tcp"}, {"host": 5353, "port": 53, "protocol": "udp"}]),
            ),
            document(
                "batch-job",
                "exited",
                "running",
                json!({"exit_code": 0}),
                json!([]),
            ),
        ];
        insta::assert_snapshot!(render_ps_table(&documents, now(), false), @r"
        NAME        KIND      STATE     RESTARTS   UPTIME   CPU    MEM       PORTS
        web         process   running   2          3m       0.5%   12.3MiB   8080->8000/tcp, 5353->53/udp
        batch-job   process   exited    0          -        -      -
        ");
    }

    #[test]
    fn wide_ps_shows_replicas_and_the_worst_health() {
        let instance = |replica: u32, state: &str, health: &str| {
            json!({"name": format!("api-{replica}"), "replica": replica, "state": state,
                "restarts": 0, "exit_code": null, "pid": null, "started_at": null,
                "finished_at": null, "oom_killed": false, "health": health, "address": null,
                "revision": 1, "message": null})
        };
        let mut api = document(
            "api",
            "running",
            "running",
            json!({"instances": [instance(0, "running", "healthy"), instance(1, "running", "unhealthy"), instance(2, "starting", "starting")]}),
            json!([]),
        );
        api.spec.insert("replicas".to_string(), json!(3));
        let plain = document("plain", "running", "running", json!({}), json!([]));
        insta::assert_snapshot!(render_ps_table(&[api, plain], now(), true), @r"
        NAME    KIND      STATE     RESTARTS   UPTIME   CPU   MEM   PORTS   REPLICAS   HEALTH
        api     process   running   0          -        -     -             2/3        unhealthy
        plain   process   running   0          -        -     -             0/1        -
        ");
    }

    #[test]
    fn ps_without_all_hides_stopped_but_keeps_failed() {
        let documents = vec![
            document("up", "running", "running", json!({}), json!([])),
            document("stopped", "stopped", "stopped", json!({}), json!([])),
            document("broken", "failed", "stopped", json!({}), json!([])),
            document("done", "exited", "running", json!({}), json!([])),
        ];
        let names = |documents: Vec<WorkloadDocument>| {
            documents
                .iter()
                .map(|document| document.name().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(select_workloads(documents.clone(), false)),
            ["up", "broken"]
        );
        assert_eq!(
            names(select_workloads(documents, true)),
            ["up", "stopped", "broken", "done"]
        );
    }

    #[test]
    fn uptime_counts_only_while_running() {
        let running = document(
            "a",
            "running",
            "running",
            json!({"started_at": "2025-05-01T07:59:59+00:00"}),
            json!([]),
        );
        assert_eq!(uptime(&running, now()), "4h");
        let stopped = document(
            "b",
            "stopped",
            "stopped",
            json!({"started_at": "2025-05-01T11:00:00Z"}),
            json!([]),
        );
        assert_eq!(uptime(&stopped, now()), "-");
        assert_eq!(
            uptime(&running, now() + Duration::from_secs(5 * 86400)),
            "5d"
        );
    }
}
