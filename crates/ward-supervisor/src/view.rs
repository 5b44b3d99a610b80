//! Read-only views of workloads and instances, as callers of the supervisor see them.

use std::net::Ipv4Addr;
use std::time::SystemTime;

use ward_spec::WorkloadSpec;

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
}

/// The latest resource reading of an instance, taken by the sampler.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UsageSample {
    pub cpu_seconds: f64,
    /// CPU use over the last sampling interval, in percent of one core.
    pub cpu_percent: Option<f64>,
    pub memory_bytes: u64,
    pub pids: u64,
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
