//! Errors of the runtime crate.

use std::path::PathBuf;

use crate::network::NetworkError;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("no OCI runtime found: install crun or runc")]
    NoOciRuntime,
    #[error("OCI runtime {path} does not work: {reason}")]
    OciRuntimeUnusable { path: PathBuf, reason: String },
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("read {path}: {source}")]
    StateFile {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("workload {workload}: kind {kind} is not supported by this runtime yet")]
    UnsupportedKind {
        workload: String,
        kind: &'static str,
    },
    /// The runtime spec could not be put together (a value the OCI types do not take).
    #[error("workload {workload}: cannot write its OCI runtime spec: {source}")]
    RuntimeSpec {
        workload: String,
        source: oci_spec::OciSpecError,
    },
    #[error("workload {workload}: a process workload needs a command")]
    MissingCommand { workload: String },
    #[error("workload {workload}: the image has no Entrypoint or Cmd; give a command")]
    MissingImageCommand { workload: String },
    #[error("workload {workload}: image {image}: {message}")]
    Image {
        workload: String,
        image: String,
        message: String,
    },
    #[error("workload {workload}: {message}")]
    Secret { workload: String, message: String },
    #[error("instance key {key}: {reason}")]
    InvalidInstanceKey { key: String, reason: &'static str },
    #[error("volume name {name:?} is not valid: use letters, digits, '.', '_' and '-'")]
    InvalidVolumeName { name: String },
    #[error("bind mount source {host_path} does not exist on the host")]
    VolumeSourceMissing { host_path: PathBuf },
    #[error("bind mount source {host_path} is inside {protected}, which belongs to Ward or the kernel: no workload may mount it")]
    ProtectedVolumeSource {
        host_path: PathBuf,
        protected: PathBuf,
    },
    #[error(
        "bind mount source {host_path} now leads to {now} through a link: mount the real path"
    )]
    VolumeSourceMoved { host_path: PathBuf, now: PathBuf },
    #[error("this kernel has no user namespaces, which workload {workload} needs: enable them (user.max_user_namespaces), or run it with userns: host")]
    NoUserNamespaces { workload: String },
    #[error("volume target {target}: {reason}")]
    InvalidVolumeTarget {
        target: String,
        reason: &'static str,
    },
    #[error("instance {id} is already running (monitor pid {monitor_pid})")]
    AlreadyRunning { id: String, monitor_pid: u32 },
    #[error("instance {id} is not running")]
    NotRunning { id: String },
    #[error("workload {workload} has no terminal to attach to: run it with tty: true (ward run -t), or open a shell in it with 'ward exec -it {workload} -- sh'")]
    NoTerminal { workload: String },
    #[error("workload {workload} has a client attached to its terminal already: one at a time")]
    TerminalBusy { workload: String },
    #[error("start monitor {executable} for instance {id}: {source}")]
    MonitorSpawn {
        id: String,
        executable: PathBuf,
        source: std::io::Error,
    },
    #[error("instance {id} failed to start: {message}")]
    StartFailed { id: String, message: String },
    #[error("instance {id} did not start within {seconds} s")]
    StartTimeout { id: String, seconds: u64 },
    #[error("{action} of instance {id} failed: {message}")]
    OciCommand {
        id: String,
        action: &'static str,
        message: String,
    },
    #[error("signal {signal} to pid {pid} of instance {id}: {source}")]
    Signal {
        id: String,
        pid: u32,
        signal: i32,
        source: std::io::Error,
    },
    #[error("exec in instance {id}: {message}")]
    Exec { id: String, message: String },
    /// An exec request that cannot be met as written (an unknown user); `field` names it.
    #[error("{field}: {message}")]
    ExecRefused {
        field: &'static str,
        message: String,
    },
    #[error(transparent)]
    Network(#[from] NetworkError),
}

impl RuntimeError {
    /// Whether a start that failed this way would fail again, unchanged, however often it
    /// were tried: the spec or the host must change first. Such a failure is not retried.
    pub fn is_permanent(&self) -> bool {
        match self {
            RuntimeError::UnsupportedKind { .. }
            | RuntimeError::MissingCommand { .. }
            | RuntimeError::MissingImageCommand { .. }
            | RuntimeError::InvalidVolumeName { .. }
            | RuntimeError::VolumeSourceMissing { .. }
            | RuntimeError::ProtectedVolumeSource { .. }
            | RuntimeError::VolumeSourceMoved { .. }
            | RuntimeError::NoUserNamespaces { .. }
            | RuntimeError::InvalidVolumeTarget { .. } => true,
            RuntimeError::Image { message, .. } => ward_image::pull::says_image_is_missing(message),
            RuntimeError::StartFailed { message, .. } => is_unrunnable_executable(message),
            _ => false,
        }
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> RuntimeError {
        RuntimeError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// Whether the OCI runtime's report of a failed start says the workload's program cannot be
/// executed: it does not exist, is not executable, or is not a program for this machine.
/// crun and runc report the `execve` error in their own words, with the system's message.
fn is_unrunnable_executable(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    let exec_failed = message.contains("exec")
        && (message.contains("no such file or directory")
            || message.contains("not found in $path")
            || message.contains("permission denied")
            || message.contains("is a directory"));
    exec_failed || message.contains("exec format error")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_program_that_cannot_run_is_permanent_and_a_timeout_is_not() {
        let failed = |message: &str| RuntimeError::StartFailed {
            id: "x".to_string(),
            message: message.to_string(),
        };
        for message in [
            "executable file `/nonexistent` not found in $PATH: No such file or directory",
            "exec: \"/nonexistent\": stat /nonexistent: no such file or directory",
            "exec /bin/x: exec format error",
            "exec `/etc/passwd`: Permission denied",
        ] {
            assert!(failed(message).is_permanent(), "{message}");
        }
        assert!(!failed("cannot set up the network: resource busy").is_permanent());
        assert!(!RuntimeError::StartTimeout {
            id: "x".to_string(),
            seconds: 30
        }
        .is_permanent());
    }
}
