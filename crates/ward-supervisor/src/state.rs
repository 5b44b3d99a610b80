//! The supervisor's in-memory state: the desired and actual state of every workload.
//!
//! SQLite holds the durable copy (written through on every change); reads are served from
//! here so that `GET` never touches the database.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use ward_runtime::{ExitStatus, InstanceHandle, InstanceKey};
use ward_spec::WorkloadSpec;

use crate::time::to_millis;
use crate::view::{DesiredState, HealthState, InstanceView, Phase, UsageSample, WorkloadView};

/// `(project, name)`
pub(crate) type WorkloadKey = (String, String);

#[derive(Default)]
pub(crate) struct State {
    pub workloads: BTreeMap<WorkloadKey, WorkloadEntry>,
    pub shutting_down: bool,
}

pub(crate) struct WorkloadEntry {
    pub project: String,
    pub spec: WorkloadSpec,
    pub spec_json: String,
    pub revision: i64,
    pub desired: DesiredState,
    pub created_at: SystemTime,
    pub updated_at: SystemTime,
    pub instances: BTreeMap<u32, InstanceEntry>,
    /// How long a stop waits after SIGTERM before SIGKILL, when `stop -t` or `kill` said so
    /// (the daemon's setting otherwise); cleared by the next start.
    pub stop_grace: Option<Duration>,
    /// A deleted workload without instances whose record is being deleted; it leaves the
    /// state once that is done (see `reconcile::forget`).
    pub forgetting: bool,
}

pub(crate) struct InstanceEntry {
    pub phase: Phase,
    /// An operation (start, stop, remove) is in flight; the planner leaves the instance alone.
    pub busy: bool,
    pub handle: Option<InstanceHandle>,
    /// The workload revision this instance was started from.
    pub revision: i64,
    pub restarts: u32,
    pub failures_in_row: u32,
    pub last_exit: Option<ExitStatus>,
    /// When a crashed instance may start again; `None` while it should not.
    pub retry_at: Option<Instant>,
    pub started_at: Option<SystemTime>,
    /// When this daemon saw the current run begin (monotonic, for backoff resets).
    pub running_since: Option<Instant>,
    pub finished_at: Option<SystemTime>,
    pub message: Option<String>,
    pub health: Option<HealthState>,
    /// Set by a user restart or a failing health check; the planner replaces the instance.
    pub restart_requested: bool,
    /// New on every start, from [`next_generation`], so results of watchers of an older run
    /// are ignored: also those of a removed instance whose name was taken again at once.
    pub generation: u64,
    pub usage: Option<UsageSample>,
    /// The previous reading and when it was taken, for rates.
    pub last_cpu_reading: Option<(Instant, ward_runtime::ResourceUsage)>,
    /// When one of the instance's series was last anomalous.
    pub last_anomaly: Option<std::time::SystemTime>,
    /// How long the newest health check took, in seconds.
    pub last_probe_seconds: Option<f64>,
}

impl InstanceEntry {
    pub fn new(revision: i64) -> InstanceEntry {
        InstanceEntry {
            phase: Phase::Pending,
            busy: false,
            handle: None,
            revision,
            restarts: 0,
            failures_in_row: 0,
            last_exit: None,
            retry_at: None,
            started_at: None,
            running_since: None,
            finished_at: None,
            message: None,
            health: None,
            restart_requested: false,
            generation: 0,
            usage: None,
            last_cpu_reading: None,
            last_anomaly: None,
            last_probe_seconds: None,
        }
    }

    pub fn view(&self, key: &InstanceKey) -> InstanceView {
        InstanceView {
            replica: key.replica,
            name: key.instance_name(),
            phase: self.phase,
            restarts: self.restarts,
            exit_code: self.last_exit.as_ref().and_then(|exit| exit.exit_code),
            signal: self.last_exit.as_ref().and_then(|exit| exit.signal),
            oom_killed: self.last_exit.as_ref().is_some_and(|exit| exit.oom_killed),
            pid: self.handle.as_ref().map(|handle| handle.pid),
            started_at: self.started_at,
            finished_at: self.finished_at,
            health: self.health,
            address: self.handle.as_ref().and_then(|handle| handle.address),
            ports: self
                .handle
                .as_ref()
                .map(|handle| handle.ports.clone())
                .unwrap_or_default(),
            revision: self.revision,
            message: self.message.clone(),
            usage: if self.phase == Phase::Running {
                self.usage
            } else {
                None
            },
            restart_pending: self.restart_requested,
            last_anomaly: self.last_anomaly,
        }
    }

    pub fn to_record(&self, key: &InstanceKey) -> ward_store::InstanceRecord {
        ward_store::InstanceRecord {
            project: key.project.clone(),
            workload: key.workload.clone(),
            replica: key.replica,
            state: self.phase.as_str().to_string(),
            pid: self.handle.as_ref().map(|handle| handle.pid),
            monitor_pid: self.handle.as_ref().map(|handle| handle.monitor_pid),
            restarts: self.restarts,
            exit_code: self.last_exit.as_ref().and_then(|exit| exit.exit_code),
            oom_killed: self.last_exit.as_ref().is_some_and(|exit| exit.oom_killed),
            started_at_ms: self.started_at.map(to_millis),
            finished_at_ms: self.finished_at.map(to_millis),
            handle_json: Some(
                serde_json::json!({
                    "handle": self.handle.as_ref().map(|handle| serde_json::json!({
                        "pid": handle.pid,
                        "monitor_pid": handle.monitor_pid,
                        "started_at_ms": to_millis(handle.started_at),
                        "address": handle.address.map(|address| address.to_string()),
                    })),
                    "revision": self.revision,
                    "failures_in_row": self.failures_in_row,
                    "signal": self.last_exit.as_ref().and_then(|exit| exit.signal),
                })
                .to_string(),
            ),
            message: self.message.clone(),
            updated_at_ms: to_millis(SystemTime::now()),
        }
    }
}

impl WorkloadEntry {
    pub fn view(&self) -> WorkloadView {
        WorkloadView {
            project: self.project.clone(),
            spec: self.spec.clone(),
            revision: self.revision,
            desired: self.desired,
            created_at: self.created_at,
            updated_at: self.updated_at,
            instances: self
                .instances
                .iter()
                .map(|(replica, instance)| instance.view(&self.instance_key(*replica)))
                .collect(),
        }
    }

    pub fn instance_key(&self, replica: u32) -> InstanceKey {
        InstanceKey::new(&self.project, &self.spec.name, replica)
    }

    pub fn to_record(&self) -> ward_store::WorkloadRecord {
        ward_store::WorkloadRecord {
            project: self.project.clone(),
            name: self.spec.name.clone(),
            kind: self.spec.kind.as_str().to_string(),
            spec_json: self.spec_json.clone(),
            revision: self.revision,
            desired_state: self.desired.as_str().to_string(),
            created_at_ms: to_millis(self.created_at),
            updated_at_ms: to_millis(self.updated_at),
        }
    }
}

/// A number no earlier run of any instance had: generations are unique across instances, so
/// the late exit of a removed instance never matches the new instance of the same name.
pub(crate) fn next_generation() -> u64 {
    static GENERATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    GENERATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}
