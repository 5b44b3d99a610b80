//! The `Driver` trait: what the supervisor needs from anything that runs instances.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use ward_spec::{HealthProbe, WorkloadSpec};

pub use ward_core::session::{
    ExecControl, ExecExit, ExecOutput, ExecRequest, ExecSession, LogLine, LogStream,
};

use crate::RuntimeError;

/// One instance (replica) of a workload.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct InstanceKey {
    pub project: String,
    pub workload: String,
    pub replica: u32,
}

impl InstanceKey {
    pub fn new(project: &str, workload: &str, replica: u32) -> InstanceKey {
        InstanceKey {
            project: project.to_string(),
            workload: workload.to_string(),
            replica,
        }
    }

    /// `<project>.<workload>.<replica>`: unique within one data dir; the runtime prefixes it
    /// to make the OCI container id unique on the host.
    pub fn container_id(&self) -> String {
        format!("{}.{}.{}", self.project, self.workload, self.replica)
    }

    /// The instance name users see: `<workload>-<replica>`.
    pub fn instance_name(&self) -> String {
        format!("{}-{}", self.workload, self.replica)
    }
}

/// What the daemon keeps about a running instance; enough to find it again after a restart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceHandle {
    pub key: InstanceKey,
    /// The workload's first process, as the host sees it.
    pub pid: u32,
    /// The monitor that holds the instance's stdio and records its exit.
    pub monitor_pid: u32,
    pub started_at: SystemTime,
    /// The instance's address on Ward's bridge, for `network: bridge`.
    pub address: Option<Ipv4Addr>,
    /// The host ports published to it: the spec's, and those chosen for `publish_all`.
    pub ports: Vec<ward_spec::PortMapping>,
}

/// How an instance ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub oom_killed: bool,
    pub finished_at: SystemTime,
}

impl ExitStatus {
    pub fn success(&self) -> bool {
        self.exit_code == Some(0) && !self.oom_killed
    }
}

/// What [`Driver::attach`] finds for an instance after the daemon (re)starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttachOutcome {
    Running(InstanceHandle),
    Exited(ExitStatus),
    NotFound,
}

/// A point-in-time reading of an instance's cgroup.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResourceUsage {
    pub cpu_usage_nanos: u64,
    pub memory_bytes: u64,
    pub pids: u64,
    /// Bytes read from and written to block devices since the start (cgroup I/O accounting).
    pub disk_read_bytes: u64,
    pub disk_write_bytes: u64,
    /// Bytes received and sent on the instance's own network interfaces since the start;
    /// `None` where it shares the host's network (whose counters are not its own).
    pub network: Option<(u64, u64)>,
}

/// Where an instance's log files live, for readers that follow them.
#[derive(Clone, Debug)]
pub struct LogLocation {
    /// The current file; rotated files are `<path>.1`, `<path>.2`, … (older first is highest).
    pub path: PathBuf,
}

/// Runs instances of one or more workload kinds.
#[async_trait]
pub trait Driver: Send + Sync + 'static {
    /// A hint that instances are about to start (a create, apply, start or restart was
    /// accepted): the driver may begin set-up that does not depend on which instance it is.
    fn start_coming(&self) {}

    /// Starts an instance and returns once its first process runs.
    async fn start(
        &self,
        key: &InstanceKey,
        spec: &WorkloadSpec,
    ) -> Result<InstanceHandle, RuntimeError>;

    /// Resolves when the instance has exited; works for instances started by an earlier daemon.
    async fn wait(&self, handle: &InstanceHandle) -> Result<ExitStatus, RuntimeError>;

    /// Finds an instance left by an earlier daemon.
    fn attach(&self, key: &InstanceKey) -> Result<AttachOutcome, RuntimeError>;

    /// Sends SIGTERM, then SIGKILL after `grace`; returns once the instance is gone.
    async fn stop(&self, handle: &InstanceHandle, grace: Duration) -> Result<(), RuntimeError>;

    /// Attaches to the terminal of an instance whose first process runs on one (`tty`): its
    /// output since the last attach and from now on, its input and its size; the session's
    /// `exit` is how the instance ended, and `kill` detaches, leaving it running.
    async fn attach_terminal(&self, handle: &InstanceHandle) -> Result<ExecSession, RuntimeError> {
        Err(RuntimeError::NoTerminal {
            workload: handle.key.instance_name(),
        })
    }

    /// Sends `signal` to the instance's first process (`ward kill -s`); what follows is up to
    /// the process and the restart policy.
    fn signal(&self, handle: &InstanceHandle, signal: crate::Signal) -> Result<(), RuntimeError> {
        Err(RuntimeError::NotRunning {
            id: format!(
                "{} (signal {signal} cannot be sent to this kind)",
                handle.key.instance_name()
            ),
        })
    }

    /// Kills the instance if it runs and deletes everything it left (logs included).
    async fn remove(&self, key: &InstanceKey) -> Result<(), RuntimeError>;

    fn usage(&self, handle: &InstanceHandle) -> Option<ResourceUsage>;

    /// Runs one health probe from inside the instance's network namespace.
    async fn probe(
        &self,
        handle: &InstanceHandle,
        probe: &HealthProbe,
        timeout: Duration,
    ) -> Result<(), String>;

    /// Log lines of an instance, oldest first: the last `tail` lines, or all, newer than `since`.
    fn read_logs(
        &self,
        key: &InstanceKey,
        tail: Option<usize>,
        since: Option<SystemTime>,
    ) -> Result<Vec<LogLine>, RuntimeError>;

    fn log_location(&self, key: &InstanceKey) -> LogLocation;

    async fn exec(
        &self,
        handle: &InstanceHandle,
        request: &ExecRequest,
    ) -> Result<ExecSession, RuntimeError>;

    /// Manifest digests of the images that instances run, or ran and may run again: what an
    /// image prune must keep even when no name points at them any more.
    fn images_in_use(&self) -> Vec<ward_image::Digest> {
        Vec::new()
    }

    /// Changes a running instance's memory limit without restarting it; `false` where this
    /// driver cannot, and the instance must restart to take the new limit.
    fn set_memory_limit(&self, _handle: &InstanceHandle, _bytes: u64) -> bool {
        false
    }

    /// Bounds the memory (bytes) and CPU (cores) that all instances of `project` use
    /// together (`None`: unbounded).
    fn set_project_limits(
        &self,
        _project: &str,
        _memory: Option<u64>,
        _cpu: Option<f64>,
    ) -> Result<(), RuntimeError> {
        Ok(())
    }

    /// Bytes held in the named volumes of `project`.
    fn project_volume_bytes(&self, _project: &str) -> u64 {
        0
    }

    /// The named volumes `project` has on this host, by name.
    fn named_volumes(&self, _project: &str) -> Result<Vec<NamedVolume>, RuntimeError> {
        Ok(Vec::new())
    }

    /// Takes a named volume of `project` away at once, so that no start finds it any more,
    /// and returns what is left to delete (slow for a large volume, so the caller does it
    /// outside its locks); `None` if there is no such volume.
    fn retire_named_volume(
        &self,
        _project: &str,
        _name: &str,
    ) -> Result<Option<RetiredVolume>, RuntimeError> {
        Ok(None)
    }

    /// Refuses a spec that this host can never run as written (a kind without a driver, a
    /// field no driver honours), before anything is stored.
    fn check(&self, _spec: &WorkloadSpec) -> Result<(), Unsupported> {
        Ok(())
    }
}

/// A named volume: a directory of the data dir that outlives the workloads that mount it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedVolume {
    pub name: String,
    /// When it was made (its first use).
    pub created_at: Option<SystemTime>,
}

/// A named volume taken out of use; its files are deleted by [`RetiredVolume::delete`], or by
/// the next daemon if this one dies first.
#[derive(Debug)]
pub struct RetiredVolume {
    pub(crate) path: std::path::PathBuf,
}

impl RetiredVolume {
    /// Deletes the files; slow for a volume of many files.
    pub fn delete(self) -> Result<(), RuntimeError> {
        std::fs::remove_dir_all(&self.path)
            .map_err(|source| RuntimeError::io("delete the volume", &self.path, source))
    }
}

/// A field of a spec that no driver on this host honours, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsupported {
    pub field: String,
    pub reason: String,
}
