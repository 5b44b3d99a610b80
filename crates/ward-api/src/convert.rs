//! Domain views → wire documents, by hand, so the wire format is decided here alone.

use std::collections::BTreeSet;
use std::time::SystemTime;

use ward_client::wire::{
    EventEntry, InstanceStatus, LogEntry, PublishedPort, WorkloadDocument, WorkloadStatus,
};
use ward_core::access::Capability;
use ward_core::events::Event;
use ward_core::session::LogLine;
use ward_core::view::{DesiredState, InstanceView, Phase, UsageSample, WorkloadView};

pub fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

/// [`rfc3339`] of the store's milliseconds since the epoch.
pub fn rfc3339_ms(milliseconds: i64) -> String {
    rfc3339(SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(milliseconds.max(0) as u64))
}

/// The names of a set of capabilities, as the wire carries them.
pub fn capability_names(capabilities: &BTreeSet<Capability>) -> Vec<String> {
    capabilities
        .iter()
        .map(|capability| capability.as_str().to_string())
        .collect()
}

pub fn workload_document(view: &WorkloadView) -> WorkloadDocument {
    let spec = match view.spec.to_normalized_json() {
        serde_json::Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    let primary = view.primary();
    let running: Vec<&InstanceView> = view
        .instances
        .iter()
        .filter(|instance| instance.phase == Phase::Running)
        .collect();
    let samples: Vec<_> = running
        .iter()
        .filter_map(|instance| instance.usage)
        .collect();
    let health = if view.spec.health.is_none() {
        None
    } else {
        let states: Vec<_> = view
            .instances
            .iter()
            .filter_map(|instance| instance.health)
            .collect();
        if states.is_empty() {
            None
        } else if states.iter().any(|state| state.as_str() == "unhealthy") {
            Some("unhealthy".to_string())
        } else if states.iter().all(|state| state.as_str() == "healthy") {
            Some("healthy".to_string())
        } else {
            Some("starting".to_string())
        }
    };
    let message = view
        .instances
        .iter()
        .find_map(|instance| instance.message.clone());
    let status = WorkloadStatus {
        state: view.phase().as_str().to_string(),
        restarts: view.restarts(),
        exit_code: primary.and_then(|instance| instance.exit_code),
        pid: primary.and_then(|instance| instance.pid),
        started_at: primary
            .and_then(|instance| instance.started_at)
            .map(rfc3339),
        revision: view.revision,
        project: view.project.clone(),
        desired_state: match view.desired {
            DesiredState::Running => "running",
            DesiredState::Stopped => "stopped",
            DesiredState::Deleted => "deleted",
        }
        .to_string(),
        oom_killed: primary.is_some_and(|instance| instance.oom_killed),
        finished_at: primary
            .and_then(|instance| instance.finished_at)
            .map(rfc3339),
        health,
        message,
        created_at: rfc3339(view.created_at),
        updated_at: rfc3339(view.updated_at),
        cpu_seconds: (!samples.is_empty())
            .then(|| samples.iter().map(|sample| sample.cpu_seconds).sum()),
        cpu_percent: samples
            .iter()
            .map(|sample| sample.cpu_percent)
            .collect::<Option<Vec<f64>>>()
            .filter(|percents| !percents.is_empty())
            .map(|percents| percents.iter().sum()),
        memory_bytes: (!samples.is_empty())
            .then(|| samples.iter().map(|sample| sample.memory_bytes).sum()),
        process_count: (!samples.is_empty())
            .then(|| samples.iter().map(|sample| sample.pids).sum()),
        disk_read_bytes_per_second: rate_sum(&samples, |sample| sample.disk_read_rate),
        disk_write_bytes_per_second: rate_sum(&samples, |sample| sample.disk_write_rate),
        network_receive_bytes_per_second: rate_sum(&samples, |sample| sample.network_receive_rate),
        network_transmit_bytes_per_second: rate_sum(&samples, |sample| {
            sample.network_transmit_rate
        }),
        last_anomaly: view
            .instances
            .iter()
            .filter_map(|instance| instance.last_anomaly)
            .max()
            .map(rfc3339),
        instances: view.instances.iter().map(instance_status).collect(),
    };
    WorkloadDocument { spec, status }
}

/// The sum of a rate over the instances that have it; `None` if none has.
fn rate_sum(samples: &[UsageSample], rate: impl Fn(&UsageSample) -> Option<f64>) -> Option<f64> {
    samples
        .iter()
        .filter_map(rate)
        .fold(None, |sum, rate| Some(sum.unwrap_or(0.0) + rate))
}

fn instance_status(instance: &InstanceView) -> InstanceStatus {
    InstanceStatus {
        name: instance.name.clone(),
        replica: instance.replica,
        state: instance.phase.as_str().to_string(),
        restarts: instance.restarts,
        exit_code: instance.exit_code,
        pid: instance.pid,
        started_at: instance.started_at.map(rfc3339),
        finished_at: instance.finished_at.map(rfc3339),
        oom_killed: instance.oom_killed,
        health: instance.health.map(|health| health.as_str().to_string()),
        address: instance.address.map(|address| address.to_string()),
        ports: instance
            .ports
            .iter()
            .map(|mapping| PublishedPort {
                host: mapping.host,
                port: mapping.port,
                protocol: mapping.protocol.as_str().to_string(),
            })
            .collect(),
        revision: instance.revision,
        message: instance.message.clone(),
    }
}

pub fn log_entry(instance: &str, line: &LogLine) -> LogEntry {
    LogEntry {
        time: humantime::format_rfc3339_nanos(line.time).to_string(),
        stream: line.stream.as_str().to_string(),
        instance: instance.to_string(),
        line: line.text.clone(),
    }
}

pub fn event_entry(event: &Event) -> EventEntry {
    EventEntry {
        id: event.id,
        time: rfc3339(event.time),
        project: event.project.clone(),
        workload: event.workload.clone(),
        instance: match (&event.workload, event.replica) {
            (Some(workload), Some(replica)) => Some(format!("{workload}-{replica}")),
            _ => None,
        },
        kind: event.kind.clone(),
        message: event.message.clone(),
        data: event.data.clone(),
    }
}
