//! Errors of the supervisor, one variant per thing a caller can act on.

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error(
        "workload {name} not found in project {project}: see `ward ps -a` for the workloads there"
    )]
    NotFound { project: String, name: String },
    #[error("project {project} does not exist: create it with `ward project create {project}`, or leave --project out for the default project")]
    UnknownProject { project: String },
    #[error("workload {name} already exists in project {project}: pick another name, replace it with `ward run --replace`, or update it with `ward apply`")]
    AlreadyExists { project: String, name: String },
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("workload {name} is {state}: {hint}")]
    Conflict {
        name: String,
        state: String,
        hint: String,
    },
    #[error(
        "volume {name} not found in project {project}: see `ward volume ls` for the volumes there"
    )]
    VolumeNotFound { project: String, name: String },
    #[error("volume {name} is used by {users}: remove {them} first (`ward rm`), or keep the volume", users = users.join(", "), them = if users.len() == 1 { "that workload" } else { "those workloads" })]
    VolumeInUse { name: String, users: Vec<String> },
    #[error("workload {name} has no running instance{replica}", replica = replica.map(|replica| format!(" {replica}")).unwrap_or_default())]
    NotRunning { name: String, replica: Option<u32> },
    #[error(transparent)]
    Spec(#[from] ward_spec::SpecError),
    #[error("state database: {0}")]
    Store(#[from] ward_store::StoreError),
    #[error(transparent)]
    Runtime(#[from] ward_runtime::RuntimeError),
    #[error("the daemon is shutting down")]
    ShuttingDown,
    #[error("metric store: {0}")]
    Metrics(#[from] ward_tsdb::Error),
    /// Refused at the door, or by a check the vocabulary makes (a role that is none).
    #[error(transparent)]
    Core(#[from] ward_core::Error),
    /// The caller lacks a grant the request needs; the message names it.
    #[error("{message}")]
    Forbidden { message: String },
    #[error("{message}")]
    QuotaExceeded {
        quota: &'static str,
        message: String,
    },
}

impl SupervisorError {
    /// Whether the write failed for lack of disk space under the data directory; the message
    /// names the directory and the space left.
    pub fn is_disk_full(&self) -> bool {
        matches!(
            self,
            SupervisorError::Store(ward_store::StoreError::DiskFull { .. })
        )
    }
}
