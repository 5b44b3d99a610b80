//! The two directories of one instance, the names of their files, the JSON records the daemon
//! and the monitor exchange through them, and how they are written so that a crash never
//! leaves half a file.
//!
//! The instance directory, `DATA/instances/<project>/<workload>/<replica>/`, keeps what
//! outlives a start: the workload's logs and how it last exited. The monitor makes it at the
//! first of them. The run directory, `RUN/instances/<project>/<workload>/<replica>/` under the
//! run root (in memory; see `host::RunRoot`), holds what one start needs and what only makes
//! sense while the host is up:
//!
//! | file            | directory | written by   | holds                                         |
//! |-----------------|-----------|--------------|-----------------------------------------------|
//! | `config.json`   | run       | daemon       | the OCI runtime spec (run is the OCI bundle)  |
//! | `monitor.json`  | run       | daemon       | everything the monitor needs ([`MonitorConfig`]) |
//! | `monitor.log`   | run       | monitor      | the monitor's own diagnostics (stdout, stderr) |
//! | `oci.log`       | run       | OCI runtime  | the runtime's JSON log lines                  |
//! | `container.pid` | run       | OCI runtime  | the workload's first process                  |
//! | `state.json`    | run       | monitor      | [`StateRecord`], while the instance runs      |
//! | `etc/`          | run       | daemon       | a container's `hosts`, `resolv.conf`, `hostname` |
//! | `exit.json`     | instance  | monitor      | [`ExitRecord`], once it has exited            |
//! | `log`, `log.N`  | instance  | monitor      | the workload's stdout and stderr (see [`crate::logs`]) |
//!
//! A container's writable layer (`upper/`, `work/`, the `rootfs/` mount point) is in the
//! instance directory too: it lasts as long as the container.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::host::CgroupMode;
use crate::oci::OciRuntimeKind;
use crate::RuntimeError;

/// The files of one instance's two directories.
#[derive(Clone, Debug)]
pub(crate) struct InstancePaths {
    /// Kept across starts (and reboots): logs, the last exit, a container's writable layer.
    pub dir: PathBuf,
    /// Volatile: everything of one start, and the OCI bundle.
    pub run: PathBuf,
}

impl InstancePaths {
    pub fn new(dir: PathBuf, run: PathBuf) -> InstancePaths {
        InstancePaths { dir, run }
    }
    pub fn config(&self) -> PathBuf {
        self.run.join("config.json")
    }
    pub fn monitor_config(&self) -> PathBuf {
        monitor_config_in(&self.run)
    }
    pub fn monitor_log(&self) -> PathBuf {
        self.run.join(MONITOR_LOG)
    }
    pub fn oci_log(&self) -> PathBuf {
        self.run.join("oci.log")
    }
    pub fn container_pid(&self) -> PathBuf {
        self.run.join("container.pid")
    }
    pub fn state(&self) -> PathBuf {
        self.run.join("state.json")
    }
    pub fn etc(&self) -> PathBuf {
        self.run.join("etc")
    }
    /// A process instance's root directory (see `bundle::make_instance_root`); the bundle
    /// names it relative to itself, [`PROCESS_ROOT`].
    pub fn root(&self) -> PathBuf {
        self.run.join(PROCESS_ROOT)
    }
    /// Where a container's root filesystem is mounted (by its monitor); the bundle names it
    /// relative to itself, [`CONTAINER_ROOT`].
    pub fn container_root(&self) -> PathBuf {
        self.run.join(CONTAINER_ROOT)
    }
    pub fn exit(&self) -> PathBuf {
        self.dir.join("exit.json")
    }
    pub fn log(&self) -> PathBuf {
        self.dir.join("log")
    }

    /// Writes `exit.json`, making the instance directory if the instance has printed nothing
    /// yet. An instance whose run directory is gone has been removed: nothing is written.
    pub fn record_exit(&self, record: &ExitRecord) -> Result<(), RuntimeError> {
        if !self.run.exists() {
            return Err(RuntimeError::io(
                "write",
                self.exit(),
                io::Error::other("the instance has been removed"),
            ));
        }
        fs::create_dir_all(&self.dir)
            .map_err(|source| RuntimeError::io("create", &self.dir, source))?;
        write_json(&self.exit(), record)
    }
}

/// The root of a process instance, relative to its bundle (the run directory). Relative, so
/// that the OCI runtime reaches it from the bundle inside the instance's user namespace,
/// whose root may not search the run root's private directories above it.
pub(crate) const PROCESS_ROOT: &str = "root";
/// The root of a container, relative to its bundle; see [`PROCESS_ROOT`].
pub(crate) const CONTAINER_ROOT: &str = "rootfs";

/// The monitor's own diagnostics, in the run directory.
pub(crate) const MONITOR_LOG: &str = "monitor.log";

/// `monitor.json` of the run directory `run`.
pub(crate) fn monitor_config_in(run: &Path) -> PathBuf {
    run.join("monitor.json")
}

/// `monitor.json`: written by the daemon before it starts the monitor, so that the monitor
/// never reads the workload spec.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct MonitorConfig {
    pub container_id: String,
    /// The instance directory (the run directory is where this file is).
    pub instance_dir: PathBuf,
    pub oci_runtime: PathBuf,
    pub oci_runtime_kind: OciRuntimeKind,
    /// The OCI runtime's private state directory (`--root`).
    pub oci_root: PathBuf,
    pub data_dir: PathBuf,
    /// `bridge`, `host` or `none`.
    pub network: String,
    pub ports: Vec<PortRecord>,
    pub cgroup_mode: CgroupMode,
    /// The instance's memory cgroup, where the monitor looks for OOM kills.
    pub memory_cgroup: PathBuf,
    /// Unmount the v2 hierarchy in a private mount namespace before running the OCI runtime
    /// (crun refuses hybrid hosts otherwise).
    pub unmount_cgroup2: bool,
    /// The overlay the monitor mounts as the container's root, in its own mount namespace
    /// (so the mount lives exactly as long as the instance).
    #[serde(default)]
    pub overlay: Option<OverlayMount>,
    /// A private copy of the container's image (where overlayfs is missing), which the
    /// monitor binds at the bundle's root in its own mount namespace.
    #[serde(default)]
    pub root_copy: Option<PathBuf>,
    /// The instance's own `/etc/hosts` (on the bridge), which the monitor keeps listing the
    /// project's workloads (see `hosts.rs`).
    #[serde(default)]
    pub hosts_file: Option<PathBuf>,
    /// The first process runs on a terminal whose master the monitor holds, logs, and hands
    /// to whoever connects to `attach.sock` (see `monitor.rs`).
    #[serde(default)]
    pub terminal: bool,
}

/// An overlayfs mount: `lower_dirs` are relative to `layers_root` (the monitor mounts from
/// there, which keeps the options within one page), top layer first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OverlayMount {
    pub layers_root: PathBuf,
    pub lower_dirs: Vec<String>,
    pub upper: PathBuf,
    pub work: PathBuf,
    pub target: PathBuf,
    /// The container's id range: the layers are mounted idmapped into it first, so that the
    /// files the host owns as root are root's inside the container's user namespace.
    #[serde(default)]
    pub id_range: Option<crate::idmap::IdRange>,
}

impl MonitorConfig {
    pub fn bridge(&self) -> bool {
        self.network == ward_spec::NetworkMode::Bridge.as_str()
    }

    /// Whether the instance has a network namespace of its own: the one its monitor made
    /// ahead of it (see `monitor::network_namespace_path`), which the bundle names.
    pub fn own_network(&self) -> bool {
        self.network != ward_spec::NetworkMode::Host.as_str()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PortRecord {
    pub host: u16,
    pub port: u16,
    pub protocol: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<Ipv4Addr>,
}

impl PortRecord {
    pub fn from_mapping(mapping: &ward_spec::PortMapping) -> PortRecord {
        PortRecord {
            host: mapping.host,
            port: mapping.port,
            protocol: mapping.protocol.as_str().to_string(),
            host_ip: mapping.host_ip,
        }
    }

    pub fn to_mapping(&self) -> ward_spec::PortMapping {
        let protocol = match self.protocol.as_str() {
            "udp" => ward_spec::Protocol::Udp,
            _ => ward_spec::Protocol::Tcp,
        };
        ward_spec::PortMapping {
            host: self.host,
            port: self.port,
            protocol,
            host_ip: self.host_ip,
        }
    }
}

/// `state.json`: the running instance, with the start times that tell its processes apart from
/// later processes that reuse their PIDs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StateRecord {
    pub pid: u32,
    pub pid_start_ticks: u64,
    pub monitor_pid: u32,
    pub monitor_start_ticks: u64,
    #[serde(with = "rfc3339")]
    pub started_at: SystemTime,
    pub address: Option<Ipv4Addr>,
}

/// `exit.json`: how the instance ended. `exit_code` is `null` when a signal ended it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ExitRecord {
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub oom_killed: bool,
    #[serde(with = "rfc3339")]
    pub finished_at: SystemTime,
    /// The monitor that wrote the record, which tells this run's record from another's
    /// in a directory reused by a new instance of the same name. Absent in records of
    /// monitors older than the field.
    #[serde(default)]
    pub monitor_pid: Option<u32>,
}

impl ExitRecord {
    pub fn to_status(&self) -> crate::ExitStatus {
        crate::ExitStatus {
            exit_code: self.exit_code,
            signal: self.signal,
            oom_killed: self.oom_killed,
            finished_at: self.finished_at,
        }
    }
}

/// The one-line message the monitor writes on its sync pipe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub(crate) enum SyncMessage {
    Started { pid: u32 },
    Failed { error: String },
}

/// Writes a temporary file and renames it over `path`, so readers see the old file or the
/// new one, never a part — whatever process crashes. There is no fsync: the records written
/// here (`state.json`, `exit.json`) describe processes that a power loss ends anyway, and
/// after a reboot the daemon finds no monitor and applies the restart policy; meanwhile an
/// fsync behind other writers' I/O measured up to 230 ms here, and it stalls the journal
/// that every other start renames its files through.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let file_name = path
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or("file");
    let temporary = path.with_file_name(format!(".{file_name}.{}.tmp", std::process::id()));
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&temporary)?;
    file.write_all(bytes)?;
    drop(file);
    fs::rename(&temporary, path)
}

pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), RuntimeError> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|source| RuntimeError::StateFile {
        path: path.into(),
        source,
    })?;
    bytes.push(b'\n');
    write_atomic(path, &bytes).map_err(|source| RuntimeError::io("write", path, source))
}

/// Reads a JSON record; `None` when the file does not exist.
pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, RuntimeError> {
    match fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| RuntimeError::StateFile {
                    path: path.into(),
                    source,
                })
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(RuntimeError::io("read", path, source)),
    }
}

pub(crate) fn remove_file_if_exists(path: &Path) -> Result<(), RuntimeError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(RuntimeError::io("remove", path, source)),
    }
}

/// RFC 3339 timestamps with nanoseconds, UTC, in the JSON records.
pub(crate) mod rfc3339 {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(time: &SystemTime, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&humantime::format_rfc3339_nanos(*time))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SystemTime, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_rfc3339(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn records_round_trip_through_their_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("exit.json");
        let record = ExitRecord {
            exit_code: None,
            signal: Some(9),
            oom_killed: true,
            finished_at: SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789),
            monitor_pid: Some(4242),
        };
        write_json(&path, &record).expect("write");
        assert_eq!(read_json::<ExitRecord>(&path).expect("read"), Some(record));
        assert_eq!(
            read_json::<ExitRecord>(&dir.path().join("missing.json")).expect("read"),
            None
        );
    }

    #[test]
    fn sync_messages_are_one_line_json() {
        assert_eq!(
            serde_json::to_string(&SyncMessage::Started { pid: 7 }).expect("json"),
            r#"{"pid":7}"#
        );
        let failed: SyncMessage = serde_json::from_str(r#"{"error":"boom"}"#).expect("parse");
        assert_eq!(
            failed,
            SyncMessage::Failed {
                error: "boom".into()
            }
        );
    }
}
