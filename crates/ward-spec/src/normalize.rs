//! The normalised JSON form of a spec (what `ward inspect -o json` and the API return) and the
//! field-by-field diff between two such forms (what `ward apply --dry-run` prints).

use serde_json::{json, Map, Value};

use crate::model::{Heal, HealthProbe, WorkloadSpec};
use crate::parse::key_path;

impl WorkloadSpec {
    /// Renders the normalised form: every field present, `null` where unset, sizes in bytes,
    /// durations in milliseconds. [`crate::parse_value`] reads it back to the same spec.
    pub fn to_normalized_json(&self) -> Value {
        let resources = &self.resources;
        let mut normalized = json!({
            "name": self.name,
            "kind": self.kind.as_str(),
            "image": self.image,
            "command": self.command,
            "workdir": self.workdir,
            "env": self.env,
            "resources": {
                "cpu": resources.cpu.map(number),
                "memory": resources.memory,
                "pids": resources.pids,
                "gpu": resources.gpu,
                "disk": resources.disk,
            },
            "ports": self.ports.iter().map(|mapping| {
                let mut port = json!({
                    // null: a free host port, chosen when the instance starts.
                    "host": (mapping.host != crate::units::FREE_HOST_PORT).then_some(mapping.host),
                    "port": mapping.port,
                    "protocol": mapping.protocol.as_str(),
                });
                // Only where set, so the common form stays `{host, port, protocol}`.
                if let Some(address) = mapping.host_ip {
                    port["host_ip"] = json!(address.to_string());
                }
                port
            }).collect::<Vec<_>>(),
            "publish_all": self.publish_all,
            "volumes": self.volumes.iter().map(|volume| json!({
                "source": volume.source,
                "target": volume.target,
                "read_only": volume.read_only,
            })).collect::<Vec<_>>(),
            "secrets": self.secrets.iter().map(|secret| json!({
                "name": secret.name,
                "env": secret.env,
                "file": secret.file,
            })).collect::<Vec<_>>(),
            "network": self.network.as_str(),
            "userns": self.userns.as_str(),
            "restart": {
                "policy": self.restart.policy.as_str(),
                "max_retries": self.restart.max_retries,
            },
            "health": self.health.as_ref().map(|health| {
                let (kind, port, path, command) = match &health.probe {
                    HealthProbe::Http { port, path } => ("http", Some(*port), Some(path), None),
                    HealthProbe::Tcp { port } => ("tcp", Some(*port), None, None),
                    HealthProbe::Exec { command } => ("exec", None, None, Some(command)),
                };
                let mut normalized = json!({
                    "kind": kind,
                    "port": port,
                    "path": path,
                    "command": command,
                    "interval_ms": duration_milliseconds(health.interval),
                    "timeout_ms": duration_milliseconds(health.timeout),
                    "retries": health.retries,
                });
                // Present only when set, so specs written before it normalise as they did.
                if !health.start_period.is_zero() {
                    normalized["start_period_ms"] = json!(duration_milliseconds(health.start_period));
                }
                normalized
            }),
            "replicas": self.replicas,
            "autoscale": self.autoscale.as_ref().map(|autoscale| json!({
                "min": autoscale.min,
                "max": autoscale.max,
                "cpu": number(autoscale.cpu_percent),
            })),
            "labels": self.labels,
        });
        // Present only when set, so specs without one normalise as they did.
        if let Some(entrypoint) = &self.entrypoint {
            normalized["entrypoint"] = json!(entrypoint);
        }
        if self.tty {
            normalized["tty"] = json!(true);
        }
        if self.heal != Heal::default() {
            normalized["heal"] = json!({
                "policy": self.heal.policy.as_str(),
                "memory_max": self.heal.memory_max,
            });
        }
        normalized
    }

    /// What changes, field by field, when `self` is replaced by `new`.
    pub fn diff(&self, new: &WorkloadSpec) -> Vec<FieldChange> {
        diff_normalized(&self.to_normalized_json(), &new.to_normalized_json())
    }
}

/// Whole numbers print as integers (`2`, not `2.0`); the parser reads both.
fn number(value: f64) -> Value {
    if value.fract() == 0.0 && value.abs() < 9.0e15 {
        Value::from(value as i64)
    } else {
        Value::from(value)
    }
}

/// Health durations are whole milliseconds (the parser refuses finer ones) of at most a day.
fn duration_milliseconds(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// One changed field between two normalised specs.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldChange {
    /// Dotted path: `resources.memory`, `env.GREETING`, `ports` (lists change as a whole).
    pub path: String,
    /// `None` when the field did not exist before (a new `env` or `labels` key).
    pub old: Option<Value>,
    /// `None` when the field is gone (a removed `env` or `labels` key).
    pub new: Option<Value>,
}

/// Compares two normalised specs (or any two JSON values) and lists the changed leaves, in path
/// order. Objects are compared key by key; lists and scalars as a whole.
pub fn diff_normalized(old: &Value, new: &Value) -> Vec<FieldChange> {
    let mut changes = Vec::new();
    collect_changes("", Some(old), Some(new), &mut changes);
    changes
}

fn collect_changes(
    path: &str,
    old: Option<&Value>,
    new: Option<&Value>,
    changes: &mut Vec<FieldChange>,
) {
    if let (Some(Value::Object(old_object)), Some(Value::Object(new_object))) = (old, new) {
        for key in sorted_union_of_keys(old_object, new_object) {
            collect_changes(
                &key_path(path, key),
                old_object.get(key),
                new_object.get(key),
                changes,
            );
        }
        return;
    }
    if old != new {
        changes.push(FieldChange {
            path: path.to_string(),
            old: old.cloned(),
            new: new.cloned(),
        });
    }
}

fn sorted_union_of_keys<'a>(
    old: &'a Map<String, Value>,
    new: &'a Map<String, Value>,
) -> Vec<&'a String> {
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    keys
}
