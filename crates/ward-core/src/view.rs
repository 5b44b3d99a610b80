//! What the engine shows its callers: workloads and their instances, images, volumes, secrets,
//! keys, users and quotas, each as a read-only view.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::{Duration, SystemTime};

use ward_spec::WorkloadSpec;

use crate::access::{Capability, Principal, Role};
use crate::records::{ApiKeyRecord, ImageRecord};
use crate::session::LogLine;

/// The lifecycle state of a workload or an instance (CONTRACT §2 `status.state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Pending,
    Starting,
    Running,
    Stopping,
    Stopped,
    Exited,
    Failed,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "pending",
            Phase::Starting => "starting",
            Phase::Running => "running",
            Phase::Stopping => "stopping",
            Phase::Stopped => "stopped",
            Phase::Exited => "exited",
            Phase::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Phase> {
        Some(match text {
            "pending" => Phase::Pending,
            "starting" => Phase::Starting,
            "running" => Phase::Running,
            "stopping" => Phase::Stopping,
            "stopped" => Phase::Stopped,
            "exited" => Phase::Exited,
            "failed" => Phase::Failed,
            _ => return None,
        })
    }

    /// Settled states that need no more work to reach.
    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Stopped | Phase::Exited | Phase::Failed)
    }
}

/// What the user asked a workload to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DesiredState {
    Running,
    Stopped,
    /// Being removed; the record goes once every instance is gone.
    Deleted,
}

impl DesiredState {
    pub fn as_str(self) -> &'static str {
        match self {
            DesiredState::Running => "running",
            DesiredState::Stopped => "stopped",
            DesiredState::Deleted => "deleted",
        }
    }

    pub fn parse(text: &str) -> DesiredState {
        match text {
            "stopped" => DesiredState::Stopped,
            "deleted" => DesiredState::Deleted,
            _ => DesiredState::Running,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HealthState {
    Starting,
    Healthy,
    Unhealthy,
}

impl HealthState {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthState::Starting => "starting",
            HealthState::Healthy => "healthy",
            HealthState::Unhealthy => "unhealthy",
        }
    }
}

#[derive(Clone, Debug)]
pub struct WorkloadView {
    pub project: String,
    pub spec: WorkloadSpec,
    pub revision: i64,
    pub desired: DesiredState,
    pub created_at: SystemTime,
    pub updated_at: SystemTime,
    pub instances: Vec<InstanceView>,
}

#[derive(Clone, Debug)]
pub struct InstanceView {
    pub replica: u32,
    pub name: String,
    pub phase: Phase,
    pub restarts: u32,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub oom_killed: bool,
    pub pid: Option<u32>,
    pub started_at: Option<SystemTime>,
    pub finished_at: Option<SystemTime>,
    pub health: Option<HealthState>,
    pub address: Option<Ipv4Addr>,
    /// The host ports published to the running instance.
    pub ports: Vec<ward_spec::PortMapping>,
    pub revision: i64,
    pub message: Option<String>,
    pub usage: Option<UsageSample>,
    /// A restart was asked for and has not begun yet.
    pub restart_pending: bool,
    /// When one of its series was last anomalous.
    pub last_anomaly: Option<SystemTime>,
}

/// The latest resource reading of an instance, taken by the sampler.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UsageSample {
    pub cpu_seconds: f64,
    /// CPU use over the last sampling interval, in percent of one core.
    pub cpu_percent: Option<f64>,
    pub memory_bytes: u64,
    pub pids: u64,
    /// Bytes per second over the last sampling interval: read from and written to disk,
    /// received and sent on its own network (`None` until two readings, or on the host's).
    pub disk_read_rate: Option<f64>,
    pub disk_write_rate: Option<f64>,
    pub network_receive_rate: Option<f64>,
    pub network_transmit_rate: Option<f64>,
}

impl WorkloadView {
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The workload's state, summarised over its instances.
    pub fn phase(&self) -> Phase {
        // Scaled to zero: nothing is meant to run, so nothing is pending.
        if self.instances.is_empty() && self.spec.replicas == 0 {
            return Phase::Stopped;
        }
        summarize(
            self.desired,
            self.instances.iter().map(|instance| instance.phase),
        )
    }

    /// The instance that stands for the whole workload in single-value fields (pid, exit code).
    pub fn primary(&self) -> Option<&InstanceView> {
        self.instances.first()
    }

    pub fn restarts(&self) -> u32 {
        self.instances
            .iter()
            .map(|instance| instance.restarts)
            .sum()
    }
}

/// Summarises instance phases: the least settled state wins, failures show through.
pub fn summarize(desired: DesiredState, phases: impl Iterator<Item = Phase>) -> Phase {
    let phases: Vec<Phase> = phases.collect();
    let any = |phase: Phase| phases.contains(&phase);
    if phases.is_empty() {
        return match desired {
            DesiredState::Running => Phase::Pending,
            _ => Phase::Stopped,
        };
    }
    if any(Phase::Stopping) {
        return Phase::Stopping;
    }
    if any(Phase::Starting) {
        return Phase::Starting;
    }
    if any(Phase::Pending) {
        return Phase::Pending;
    }
    if any(Phase::Failed) {
        return Phase::Failed;
    }
    if any(Phase::Running) {
        return Phase::Running;
    }
    if any(Phase::Exited) {
        return Phase::Exited;
    }
    Phase::Stopped
}

/// What `apply` did, or would do, to one workload.
#[derive(Clone, Debug, PartialEq)]
pub struct ApplyOutcome {
    pub name: String,
    pub action: ApplyAction,
    pub revision: i64,
    pub old: Option<serde_json::Value>,
    pub new: serde_json::Value,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplyAction {
    Created,
    Updated,
    Unchanged,
}

impl ApplyAction {
    pub fn as_str(self) -> &'static str {
        match self {
            ApplyAction::Created => "created",
            ApplyAction::Updated => "updated",
            ApplyAction::Unchanged => "unchanged",
        }
    }
}

/// What a prune removed.
#[derive(Clone, Debug, Default)]
pub struct PruneReport {
    pub blobs: usize,
    pub layers: usize,
    pub bytes: u64,
}

/// Limits of one project; `None`: no limit on that resource.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Quota {
    /// Cores, summed over every replica.
    pub cpu: Option<f64>,
    /// Bytes, summed over every replica; also the project's cgroup memory limit.
    pub memory: Option<u64>,
    pub workloads: Option<u64>,
    pub replicas: Option<u64>,
    pub gpus: Option<u64>,
    /// Bytes in the project's named volumes, as measured.
    pub volume_bytes: Option<u64>,
}

/// What a project uses: asked for by its specs, and measured.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QuotaUsage {
    pub cpu: f64,
    pub memory: u64,
    pub workloads: u64,
    pub replicas: u64,
    pub gpus: u64,
    /// Memory its instances use now.
    pub measured_memory: u64,
    /// Bytes in its named volumes now.
    pub volume_bytes: u64,
}

impl QuotaUsage {
    /// The totals that `specs` ask for (measured fields left at zero).
    pub fn configured<'a>(specs: impl IntoIterator<Item = &'a WorkloadSpec>) -> QuotaUsage {
        let mut usage = QuotaUsage::default();
        for spec in specs {
            // Saturating: a total past u64 is over every quota, never wrapped below one.
            let replicas = u64::from(spec.replicas);
            usage.workloads = usage.workloads.saturating_add(1);
            usage.replicas = usage.replicas.saturating_add(replicas);
            usage.cpu += spec.resources.cpu.unwrap_or(0.0) * replicas as f64;
            usage.memory = usage
                .memory
                .saturating_add(spec.resources.memory.unwrap_or(0).saturating_mul(replicas));
            usage.gpus = usage.gpus.saturating_add(
                u64::from(spec.resources.gpu.unwrap_or(0)).saturating_mul(replicas),
            );
        }
        usage
    }
}

/// A named volume and the workloads of its project that mount it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeView {
    pub name: String,
    pub created_at: Option<SystemTime>,
    pub used_by: Vec<String>,
}

/// A secret's name and times: everything about it but its value.
#[derive(Clone, Debug)]
pub struct SecretInfo {
    pub name: String,
    pub created_at: SystemTime,
    pub updated_at: SystemTime,
}

/// Sessions last this long unless asked otherwise.
pub const DEFAULT_SESSION: Duration = Duration::from_secs(12 * 60 * 60);

/// A user as the API shows it: name, grants, never the password.
#[derive(Clone, Debug)]
pub struct UserView {
    pub name: String,
    pub created_at: SystemTime,
    pub grants: Vec<Grant>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Grant {
    /// `None`: every project.
    pub project: Option<String>,
    pub role: Role,
    pub capabilities: BTreeSet<Capability>,
}

/// A session handed out by a login.
#[derive(Clone, Debug)]
pub struct Session {
    pub token: String,
    pub expires_at: SystemTime,
    pub principal: Principal,
}

/// A key to create.
#[derive(Clone, Debug)]
pub struct NewKey {
    pub name: String,
    /// `None`: the creator's own project; for a creator of every project, every project.
    pub project: Option<String>,
    pub role: Role,
    pub capabilities: BTreeSet<Capability>,
    pub expires_in: Option<Duration>,
}

/// A key as the API shows it: never its secret.
#[derive(Clone, Debug)]
pub struct KeyView {
    pub record: ApiKeyRecord,
    pub role: Role,
    pub capabilities: BTreeSet<Capability>,
}

/// A named image: its record, the digests of its layers and its run configuration (the
/// image config's `config` object: entrypoint, command, environment, user, ports).
#[derive(Clone, Debug)]
pub struct ImageView {
    pub record: ImageRecord,
    pub layers: Vec<String>,
    pub config: serde_json::Value,
}

/// How far a pull is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PullProgress {
    /// The manifest is known: these blobs (digest, size) make up the image.
    Resolved {
        manifest_digest: String,
        blobs: Vec<(String, u64)>,
    },
    /// `done` of `total` bytes of a blob are stored (resumed bytes included).
    Blob {
        digest: String,
        done: u64,
        total: u64,
    },
}

/// A follow of one workload's logs.
#[async_trait::async_trait]
pub trait LogFollow: Send {
    /// The lines written since the last call (each after its instance's name), once there are
    /// some; `None` once the workload is gone, or has stopped and its last lines were sent (as
    /// `docker logs -f` ends when its container does).
    async fn next(&mut self) -> Option<Vec<(String, LogLine)>>;
}

/// What a model file says of itself.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelMetadata {
    /// `general.architecture`, like `llama` or `bert`.
    pub architecture: Option<String>,
    /// Weights in every tensor.
    pub parameters: u64,
    /// The storage type most weights have, like `Q4_K` or `F16`.
    pub quantization: Option<String>,
    /// The context the model was trained for, in tokens.
    pub context_length: Option<u64>,
    pub chat_template: Option<String>,
    /// For an embedding model, the length of its vectors; `None` for one that generates text.
    #[serde(default)]
    pub embedding_length: Option<u64>,
}

/// A named model.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelView {
    pub name: String,
    /// `sha256:<hex>` of the file.
    pub digest: String,
    pub size: u64,
    /// `gguf`.
    pub format: String,
    pub metadata: ModelMetadata,
    pub source: String,
    pub created_at: SystemTime,
    /// Whether a runner has it in memory now.
    pub loaded: bool,
}

/// Where an alert stands: its condition holds but not yet for its rule's `for`, or it does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlertState {
    Pending,
    Firing,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
        }
    }
}

/// One active alert: a rule's condition holding for one series.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertView {
    /// `alertname`, `project`, `workload`, `replica`, `severity` and the rule's own labels.
    pub labels: BTreeMap<String, String>,
    /// `summary` in words, and `value`.
    pub annotations: BTreeMap<String, String>,
    pub state: AlertState,
    /// Since when the condition has held.
    pub active_at: SystemTime,
    /// The silences that mute it now.
    pub silenced_by: Vec<String>,
}

/// A silence: alerts whose labels match every matcher are not notified until it ends.
#[derive(Clone, Debug, PartialEq)]
pub struct SilenceView {
    pub id: String,
    /// Label name and exact value; `project` is always one of them.
    pub matchers: BTreeMap<String, String>,
    pub starts_at: SystemTime,
    pub ends_at: SystemTime,
    pub created_by: String,
    pub comment: String,
}
