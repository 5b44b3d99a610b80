//! [`Runtime`]: the [`Driver`] for process workloads, built on an OCI runtime and one monitor
//! process per running instance.

use std::fs::{self, File};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use nix::sys::signal::Signal;
use tokio::io::AsyncReadExt;
use ward_spec::{HealthProbe, NetworkMode, PortMapping, UserNamespace, WorkloadKind, WorkloadSpec};

use crate::bundle::{
    self, BundleSettings, HostVolume, RootFilesystem, SkeletonEntry, VolumeContext,
    HOST_SECRET_PATHS,
};
use crate::cgroup::{self, AttachWarmer, CgroupLocator};
use crate::exec::ExecTarget;
use crate::host::{make_this_thread_idle, CgroupMode, HostInfo, RunRoot};
use crate::idmap::{self, IdRange, IdRanges};
use crate::image::{self, ImageResolver, ImageRoot, Images, PreparedRoot};
use crate::instance::{
    read_json, remove_file_if_exists, ExitRecord, InstancePaths, MonitorConfig, PortRecord,
    StateRecord, SyncMessage,
};
use crate::instance::{OverlayMount, CONTAINER_ROOT, PROCESS_ROOT};
use crate::launcher::{Launched, MonitorLauncher};
use crate::oci::{self, OciRuntime, OciRuntimeKind};
use crate::pidfd::{is_own_child, reap_if_child, running_process_start_ticks, PidFd};
use crate::seccomp;
use crate::secrets::{SecretFiles, SecretResolver};
use crate::{
    exec, hosts, logs, monitor, network, probe, AttachOutcome, Driver, ExecRequest, ExecSession,
    ExitStatus, InstanceHandle, InstanceKey, LogLine, LogLocation, NamedVolume, ResourceUsage,
    RetiredVolume, RuntimeError,
};
use ward_image::layers::LayerStore;
use ward_image::{BlobStore, Digest};

/// Where removed volumes wait to be deleted, under the data dir.
const RETIRED_VOLUMES: &str = "volumes-removed";
/// How many monitors a start replaces when one is gone before it gets the instance.
const MONITOR_REPLACEMENTS: u32 = 3;
/// How long `start` waits for the monitor to report.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a monitor may take to finish (drain output, delete the container) once its
/// instance has been killed.
const MONITOR_FINISH_TIMEOUT: Duration = Duration::from_secs(30);

/// How the runtime is set up; see [`Runtime::new`].
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Ward's data directory; instances, volumes and the OCI runtime's state live below it.
    pub data_dir: PathBuf,
    /// The binary started as `WARD_EXECUTABLE monitor --spare PADDING` for each instance.
    pub ward_executable: PathBuf,
    /// The OCI runtime to use; `None`: crun, else runc, from `PATH`.
    pub oci_runtime: Option<PathBuf>,
    /// Host directories the daemon's config opens to projects.
    pub host_volumes: Vec<HostVolume>,
    /// Host paths no workload may mount besides the runtime's own (the daemon's key,
    /// certificate and config files).
    pub protected_paths: Vec<PathBuf>,
    /// The pids limit of workloads whose spec sets none; `None`: unlimited.
    pub default_pids_limit: Option<u64>,
}

/// Podman's default: enough for any service, few enough that a fork bomb stops early.
pub const DEFAULT_PIDS_LIMIT: u64 = 2048;

impl RuntimeConfig {
    /// The defaults, for a data dir and the executable monitors are started from.
    pub fn new(data_dir: PathBuf, ward_executable: PathBuf) -> RuntimeConfig {
        RuntimeConfig {
            data_dir,
            ward_executable,
            oci_runtime: None,
            host_volumes: Vec::new(),
            protected_paths: Vec::new(),
            default_pids_limit: Some(DEFAULT_PIDS_LIMIT),
        }
    }
}

/// What the runtime found on this host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeInfo {
    pub oci_runtime_path: PathBuf,
    pub oci_runtime: OciRuntimeKind,
    pub oci_runtime_version: String,
    pub cgroup_mode: CgroupMode,
    /// Read-only binds are read-only all the way down (`rro`); otherwise each submount known
    /// when an instance starts is remounted read-only on its own.
    pub recursive_readonly: bool,
}

/// Runs process workloads in sandboxes; cheap to clone.
#[derive(Clone, Debug)]
pub struct Runtime {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    data_dir: PathBuf,
    /// Tells this data dir's containers from those of other Ward daemons on the host: crun
    /// ids, cgroup paths, veths and netfilter rules are host-wide names.
    namespace: String,
    oci: OciRuntime,
    launcher: MonitorLauncher,
    /// The run root (see `host::RunRoot`): run directories, the OCI runtime's state, secrets.
    run_root: PathBuf,
    oci_root: PathBuf,
    host: HostInfo,
    /// The host's top level, which every process instance's root copies.
    skeleton: Vec<SkeletonEntry>,
    /// Each project's host user ids.
    id_ranges: IdRanges,
    host_volumes: Vec<HostVolume>,
    /// Refused as volume sources (canonical): see [`Runtime::protected_paths`].
    protected_paths: Vec<PathBuf>,
    default_pids_limit: Option<u64>,
    cgroups: CgroupLocator,
    /// Starts the kernel's wait before a cgroup move early (v1 hosts).
    attach_warmer: Option<AttachWarmer>,
    recursive_readonly: bool,
    /// The precompiled seccomp filter, where the OCI runtime takes one.
    seccomp_bpf: Option<&'static str>,
    images: Images,
    secrets: SecretFiles,
    /// Hidden from every instance: Ward's data and run directories and host secrets.
    masked_paths: Vec<PathBuf>,
}

impl Runtime {
    /// Finds the OCI runtime, looks at the host and prepares the data directory.
    pub fn new(config: RuntimeConfig) -> Result<Runtime, RuntimeError> {
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true).mode(0o700);
        builder
            .create(&config.data_dir)
            .map_err(|source| RuntimeError::io("create", &config.data_dir, source))?;
        let data_dir = config
            .data_dir
            .canonicalize()
            .map_err(|source| RuntimeError::io("resolve", &config.data_dir, source))?;
        let run_root = RunRoot::prepare(&namespace_of(&data_dir), &data_dir)?;
        if !run_root.in_memory {
            tracing::warn!(run_root = %run_root.path.display(),
                "/dev/shm is not a tmpfs: runtime state and secret files are kept on disk, readable by root only");
        }
        let oci_root = run_root.path.join("oci");
        // Volumes removed while an earlier daemon was deleting them.
        let retired = data_dir.join(RETIRED_VOLUMES);
        if retired.exists() {
            std::thread::spawn(move || {
                make_this_thread_idle();
                let _ = fs::remove_dir_all(&retired);
            });
        }
        for dir in [
            data_dir.join("instances"),
            data_dir.join("volumes"),
            run_root.path.join("instances"),
            oci_root.clone(),
        ] {
            builder
                .create(&dir)
                .map_err(|source| RuntimeError::io("create", &dir, source))?;
        }
        // Passed through (not listed) on the way to each instance's bundle: see `RunRoot`.
        let run_instances = run_root.path.join("instances");
        fs::set_permissions(&run_instances, fs::Permissions::from_mode(0o711))
            .map_err(|source| RuntimeError::io("open", &run_instances, source))?;
        let oci = OciRuntime::locate(config.oci_runtime.as_deref())?;
        let host = HostInfo::detect();
        let skeleton = bundle::host_skeleton()
            .map_err(|source| RuntimeError::io("read", Path::new("/"), source))?;
        let id_ranges = IdRanges::open(&data_dir, &namespace_of(&data_dir))?;
        // An earlier version kept one root for every process instance here.
        let _ = fs::remove_dir_all(data_dir.join("rootfs"));
        let mut protected_paths: Vec<PathBuf> = [
            data_dir.clone(),
            run_root.path.clone(),
            PathBuf::from("/dev/shm"),
            PathBuf::from("/proc"),
            PathBuf::from("/sys"),
            // The host's network state and every project's names.
            PathBuf::from("/run/ward"),
        ]
        .into_iter()
        .chain(config.protected_paths.iter().cloned())
        .map(|path| path.canonicalize().unwrap_or(path))
        .collect();
        protected_paths.sort();
        protected_paths.dedup();
        let recursive_readonly =
            host.kernel_recursive_readonly && oci.supports_recursive_readonly();
        let mut masked_paths = vec![data_dir.clone()];
        if !run_root.path.starts_with(&data_dir) {
            masked_paths.push(run_root.path.clone());
        }
        // The daemon's key, certificate and config files outside the data dir.
        masked_paths.extend(
            config
                .protected_paths
                .iter()
                .filter(|path| !path.starts_with(&data_dir) && path.exists())
                .cloned(),
        );
        masked_paths.extend(
            HOST_SECRET_PATHS
                .iter()
                .map(PathBuf::from)
                .filter(|path| path.exists()),
        );
        let images = open_images(&data_dir)?;
        let secrets = SecretFiles::open(run_root.path.join("secrets"));
        let seccomp_bpf = match oci.kind {
            OciRuntimeKind::Crun => seccomp::compiled(),
            OciRuntimeKind::Runc => None,
        };
        let cgroups = CgroupLocator::new(host.cgroup_mode, host.cgroup_v1_mounts.clone());
        let attach_warmer = AttachWarmer::start(host.cgroup_mode, &host.cgroup_v1_mounts);
        tracing::info!(
            oci_runtime = %oci.program.path.display(),
            sealed = oci.program.sealed_fd().is_some(),
            version = %oci.version,
            cgroup_mode = host.cgroup_mode.as_str(),
            recursive_readonly,
            run_root = %run_root.path.display(),
            "runtime ready"
        );
        let launcher = MonitorLauncher::new(
            config.ward_executable.clone(),
            oci.program.clone(),
            &data_dir,
        );
        Ok(Runtime {
            inner: Arc::new(Inner {
                namespace: namespace_of(&data_dir),
                data_dir,
                oci,
                launcher,
                run_root: run_root.path,
                oci_root,
                host,
                skeleton,
                id_ranges,
                host_volumes: config.host_volumes.clone(),
                protected_paths,
                default_pids_limit: config.default_pids_limit,
                cgroups,
                attach_warmer,
                recursive_readonly,
                seccomp_bpf,
                images,
                secrets,
                masked_paths,
            }),
        })
    }

    /// Lets `container` workloads resolve their image references (the daemon's names, per
    /// project); until it is set, containers fail to start with a clear error.
    pub fn set_image_resolver(&self, resolver: Arc<dyn ImageResolver>) {
        *self
            .inner
            .images
            .resolver
            .write()
            .unwrap_or_else(|poison| poison.into_inner()) = Some(resolver);
    }

    /// Sets how secrets named by specs are opened.
    pub fn set_secret_resolver(&self, resolver: Arc<dyn SecretResolver>) {
        *self
            .inner
            .secrets
            .resolver
            .write()
            .unwrap_or_else(|poison| poison.into_inner()) = Some(resolver);
    }

    /// The unpacked layers (shared with the daemon's image commands).
    pub fn layer_store(&self) -> LayerStore {
        self.inner.images.layers.clone()
    }

    /// Whether containers get an overlay root (else a private copy of their image).
    pub fn overlay_supported(&self) -> bool {
        self.inner.images.overlay
    }

    /// Resolves, unpacks and prepares the image of a container instance.
    async fn prepare_image(
        &self,
        key: &InstanceKey,
        spec: &WorkloadSpec,
        paths: &InstancePaths,
        id_range: Option<IdRange>,
    ) -> Result<PreparedRoot, RuntimeError> {
        let reference = spec.image.clone().unwrap_or_default();
        let image_error = |message: String| RuntimeError::Image {
            workload: spec.name.clone(),
            image: reference.clone(),
            message,
        };
        let resolver = self
            .inner
            .images
            .resolver
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
            .ok_or_else(|| image_error("this daemon has no image store".to_string()))?;
        let digest = resolver
            .resolve(&key.project, &reference)
            .await
            .map_err(image_error)?;
        let images = self.inner.images.clone();
        let dir = paths.dir.clone();
        let prepared =
            tokio::task::spawn_blocking(move || prepare_root(&images, &digest, &dir, id_range))
                .await
                .map_err(|error| image_error(error.to_string()))?;
        prepared.map_err(image_error)
    }

    /// Host paths no workload may mount, with everything below them: the data dir, the run
    /// root, `/dev/shm`, `/proc`, `/sys`, the host's network state, and the paths the config
    /// named (canonical).
    pub fn protected_paths(&self) -> Vec<PathBuf> {
        self.inner.protected_paths.clone()
    }

    /// The host user ids of `project`'s workloads (given on first use).
    pub fn id_range(&self, project: &str) -> Result<IdRange, RuntimeError> {
        self.inner.id_ranges.of_project(project)
    }

    pub fn info(&self) -> RuntimeInfo {
        let inner = &self.inner;
        RuntimeInfo {
            oci_runtime_path: inner.oci.program.path.clone(),
            oci_runtime: inner.oci.kind,
            oci_runtime_version: inner.oci.version.clone(),
            cgroup_mode: inner.host.cgroup_mode,
            recursive_readonly: inner.recursive_readonly,
        }
    }

    /// Called when the daemon stops: removes this daemon's project cgroups and run
    /// directories that no instance uses (instances keep theirs), so that a stopped daemon
    /// leaves no empty groups and, once its instances are gone, nothing in memory.
    pub fn release_idle(&self) {
        self.inner.cgroups.remove_idle_groups(&self.inner.namespace);
        remove_empty_tree(&self.inner.run_root);
    }

    /// Kills what a daemon that died left in the process cgroups whose name holds `marker`
    /// (see [`Runtime::process_cgroup`]), and removes them; how many processes it killed.
    pub fn reap_process_cgroups(&self, marker: &str) -> usize {
        self.inner
            .cgroups
            .reap_process_cgroups(&self.inner.namespace, marker)
    }

    /// A cgroup, capped at `memory_max` bytes, for a process of `project` that the daemon
    /// starts itself (`name` tells it from the project's instances and from each other).
    pub fn process_cgroup(
        &self,
        project: &str,
        name: &str,
        memory_max: u64,
    ) -> Result<crate::cgroup::ProcessCgroup, RuntimeError> {
        let container_id = format!("ward-{}.{project}.{name}", self.inner.namespace);
        crate::cgroup::ProcessCgroup::create(&self.inner.cgroups, &container_id, memory_max)
            .map_err(|source| {
                RuntimeError::io(
                    "make the cgroup of",
                    self.inner.cgroups.dir("memory", &container_id),
                    source,
                )
            })
    }

    /// The instance's cgroup directories, one per hierarchy (for inspection and tests).
    pub fn cgroup_dirs(&self, key: &InstanceKey) -> Vec<PathBuf> {
        self.inner.cgroups.all_dirs(&self.inner.container_id(key))
    }

    /// The instance directory, `DATA/instances/<project>/<workload>/<replica>`: logs and the
    /// last exit (see `instance.rs`).
    pub fn instance_dir(&self, key: &InstanceKey) -> Result<PathBuf, RuntimeError> {
        Self::checked(key)?;
        Ok(self.unchecked_instance_dir(key))
    }

    /// The instance's run directory, `RUN/instances/<project>/<workload>/<replica>` under the
    /// run root: its OCI bundle and the monitor's records (see `instance.rs`).
    pub fn run_dir(&self, key: &InstanceKey) -> Result<PathBuf, RuntimeError> {
        Self::checked(key)?;
        Ok(self.unchecked_run_dir(key))
    }

    /// Refuses keys whose names would leave the instance directories.
    fn checked(key: &InstanceKey) -> Result<(), RuntimeError> {
        for (part, value) in [("project", &key.project), ("workload", &key.workload)] {
            let mut components = Path::new(value.as_str()).components();
            let single_normal = matches!(components.next(), Some(Component::Normal(_)))
                && components.next().is_none();
            if !single_normal || value.contains('\0') || value.contains('/') {
                return Err(RuntimeError::InvalidInstanceKey {
                    key: format!("{}/{}/{}", key.project, key.workload, key.replica),
                    reason: if part == "project" {
                        "the project name is not a plain name"
                    } else {
                        "the workload name is not a plain name"
                    },
                });
            }
        }
        Ok(())
    }

    fn unchecked_instance_dir(&self, key: &InstanceKey) -> PathBuf {
        instance_path(&self.inner.data_dir, key)
    }

    fn unchecked_run_dir(&self, key: &InstanceKey) -> PathBuf {
        instance_path(&self.inner.run_root, key)
    }

    fn paths(&self, key: &InstanceKey) -> Result<InstancePaths, RuntimeError> {
        Self::checked(key)?;
        Ok(InstancePaths::new(
            self.unchecked_instance_dir(key),
            self.unchecked_run_dir(key),
        ))
    }

    /// Reserves a monitor and writes the instance's bundle and monitor configuration for it,
    /// then hands the instance over; returns the ports it publishes and the monitor. A reserved
    /// spare that died meanwhile is replaced by a monitor started for the instance.
    fn launch(
        &self,
        key: &InstanceKey,
        spec: &WorkloadSpec,
        paths: &InstancePaths,
        image: Option<&PreparedRoot>,
        id_range: Option<IdRange>,
    ) -> Result<(Vec<PortMapping>, Launched), RuntimeError> {
        let launcher = &self.inner.launcher;
        let id = self.inner.container_id(key);
        let mut monitor = launcher.reserve(&id)?;
        let mut replaced = 0;
        loop {
            let ports = match self.prepare(key, spec, paths, image, id_range, monitor.pid()) {
                Ok(ports) => ports,
                Err(error) => {
                    launcher.put_back(monitor);
                    return Err(error);
                }
            };
            match monitor.hand_over(paths) {
                Ok(launched) => return Ok((ports, launched)),
                Err(error) if replaced < MONITOR_REPLACEMENTS => {
                    tracing::warn!(%error, instance = %id, "monitor gone before it got the instance; starting another");
                    monitor = launcher.start_monitor(&id)?;
                    replaced += 1;
                }
                Err(error) => {
                    return Err(RuntimeError::StartFailed {
                        id,
                        message: format!("the monitor exited before it got the instance: {error}"),
                    })
                }
            }
        }
    }

    /// Writes the bundle and the monitor's configuration of an instance whose monitor is
    /// `monitor_pid` and whose user namespace maps `id_range` (`None`: the host's ids);
    /// returns the ports it publishes.
    fn prepare(
        &self,
        key: &InstanceKey,
        spec: &WorkloadSpec,
        paths: &InstancePaths,
        image: Option<&PreparedRoot>,
        id_range: Option<IdRange>,
        monitor_pid: u32,
    ) -> Result<Vec<PortMapping>, RuntimeError> {
        let inner = &self.inner;
        // The instance directory comes with the first log line or exit (the monitor makes it).
        fs::create_dir_all(&paths.run)
            .map_err(|source| RuntimeError::io("create", &paths.run, source))?;
        // The bundle: the OCI runtime finds the instance's root through it from inside the
        // instance's user namespace, whose root may pass through but not list it (as the run
        // root above).
        fs::set_permissions(&paths.run, fs::Permissions::from_mode(0o711))
            .map_err(|source| RuntimeError::io("open the bundle", &paths.run, source))?;
        let container_id = self.inner.container_id(key);
        let owner = id_range.map(|range| (range.host_base, range.host_base));
        let resolved = bundle::resolve_volumes(
            &VolumeContext {
                data_dir: &inner.data_dir,
                project: &key.project,
                host_root: spec.kind == WorkloadKind::Process,
                id_range,
                protected_paths: &inner.protected_paths,
                host_volumes: &inner.host_volumes,
                own_files: &inner.secrets.dir(&container_id),
            },
            &spec.volumes,
        )?;
        let mut masked_paths = resolved.masked_paths;
        let mut volumes = resolved.volumes;
        let driver =
            crate::kinds::driver(spec.kind).ok_or_else(|| RuntimeError::UnsupportedKind {
                workload: spec.name.clone(),
                kind: spec.kind.as_str(),
            })?;
        let KindRoot {
            command,
            root,
            overlay,
            root_copy,
            hosts_file,
            ports,
        } = (driver.prepare_root)(
            self,
            RootRequest {
                key,
                spec,
                paths,
                image,
                id_range,
                owner,
                volumes: &mut volumes,
                masked_paths: &mut masked_paths,
            },
        )?;
        let ports = crate::network::choose_free_host_ports(ports)?;
        let network_namespace = (spec.network != NetworkMode::Host)
            .then(|| monitor::network_namespace_path(monitor_pid));
        let config = bundle::oci_config(&BundleSettings {
            spec,
            command,
            root: &root,
            volumes: &volumes,
            masked_paths: &masked_paths,
            cgroups_path: cgroup::cgroups_path(&container_id),
            nofile_hard_limit: inner.host.nofile_hard_limit,
            cgroup_namespace: inner.host.cgroup_namespace,
            swap_limit: inner.host.swap_limit,
            seccomp_bpf: inner.seccomp_bpf,
            network_namespace: network_namespace.as_deref(),
            id_range,
            default_pids_limit: inner.default_pids_limit,
        })
        .map_err(|source| RuntimeError::RuntimeSpec {
            workload: spec.name.clone(),
            source,
        })?;
        // Both files are written again at every start, so a crash cannot leave a stale one
        // behind that matters: no fsync.
        let config_bytes =
            serde_json::to_vec(&config).map_err(|source| RuntimeError::StateFile {
                path: paths.config(),
                source,
            })?;
        // Mode 0600: it holds the workload's environment, secrets given as variables included.
        remove_file_if_exists(&paths.config())?;
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(paths.config())
            .and_then(|mut file| std::io::Write::write_all(&mut file, &config_bytes))
            .map_err(|source| RuntimeError::io("write", paths.config(), source))?;
        let monitor_config = MonitorConfig {
            container_id: container_id.clone(),
            instance_dir: paths.dir.clone(),
            oci_runtime: inner.oci.program.path.clone(),
            oci_runtime_kind: inner.oci.kind,
            oci_root: inner.oci_root.clone(),
            data_dir: inner.data_dir.clone(),
            network: spec.network.as_str().to_string(),
            ports: ports.iter().map(PortRecord::from_mapping).collect(),
            cgroup_mode: inner.host.cgroup_mode,
            memory_cgroup: inner.cgroups.dir("memory", &container_id),
            unmount_cgroup2: inner.host.cgroup_mode == CgroupMode::Hybrid
                && inner.oci.kind == OciRuntimeKind::Crun,
            overlay,
            root_copy,
            hosts_file,
            terminal: spec.tty,
        };
        let monitor_bytes =
            serde_json::to_vec(&monitor_config).map_err(|source| RuntimeError::StateFile {
                path: paths.monitor_config(),
                source,
            })?;
        fs::write(paths.monitor_config(), monitor_bytes)
            .map_err(|source| RuntimeError::io("write", paths.monitor_config(), source))?;
        File::create(paths.monitor_log())
            .map_err(|source| RuntimeError::io("create", paths.monitor_log(), source))?;
        remove_file_if_exists(&paths.exit())?;
        remove_file_if_exists(&paths.state())?;
        // A container left in the OCI runtime's state by a monitor that died.
        oci::delete_force(&inner.oci.program, &inner.oci_root, &container_id)?;
        Ok(ports)
    }

    /// Waits for the monitor's report on the sync pipe.
    async fn await_report(
        &self,
        sync_read: OwnedFd,
        id: &str,
        paths: &InstancePaths,
    ) -> Result<Option<SyncMessage>, RuntimeError> {
        let mut receiver = tokio::net::unix::pipe::Receiver::from_owned_fd(sync_read)
            .map_err(|source| RuntimeError::io("watch", &paths.dir, source))?;
        let mut report = Vec::new();
        match tokio::time::timeout(START_TIMEOUT, receiver.read_to_end(&mut report)).await {
            Err(_) => Err(RuntimeError::StartTimeout {
                id: id.to_string(),
                seconds: START_TIMEOUT.as_secs(),
            }),
            Ok(Err(source)) => Err(RuntimeError::io(
                "read the start report of",
                &paths.dir,
                source,
            )),
            Ok(Ok(_)) => Ok(serde_json::from_slice(&report).ok()),
        }
    }

    /// Resolves once the monitor `monitor_pid` of the instance at `paths` has exited, and reaps
    /// it if this process started it. A PID that now belongs to another process (checked by
    /// its start time against `state.json`) counts as exited.
    async fn await_monitor_exit(
        &self,
        paths: &InstancePaths,
        monitor_pid: u32,
    ) -> Result<(), RuntimeError> {
        let pidfd = match PidFd::open(monitor_pid) {
            Ok(pidfd) => pidfd,
            Err(error) if error.raw_os_error() == Some(libc::ESRCH) => return Ok(()),
            Err(source) => {
                return Err(RuntimeError::io(
                    "open pidfd of monitor of",
                    &paths.dir,
                    source,
                ))
            }
        };
        if !is_own_child(monitor_pid) {
            let state: Option<StateRecord> = read_json(&paths.state())?;
            let genuine = state.is_some_and(|state| {
                state.monitor_pid == monitor_pid
                    && running_process_start_ticks(monitor_pid) == Some(state.monitor_start_ticks)
            });
            if !genuine {
                return Ok(());
            }
        }
        pidfd
            .exited()
            .await
            .map_err(|source| RuntimeError::io("wait for monitor of", &paths.dir, source))?;
        reap_if_child(monitor_pid);
        Ok(())
    }

    /// The exit of an instance whose monitor `monitor_pid` died (e.g. killed with SIGKILL)
    /// without recording one: the instance is cleaned up and reported as ended with neither
    /// exit code nor signal.
    fn lost_monitor_exit(
        &self,
        key: &InstanceKey,
        paths: &InstancePaths,
        monitor_pid: u32,
    ) -> Result<ExitStatus, RuntimeError> {
        tracing::warn!(
            instance = %self.inner.container_id(key),
            "the monitor exited without recording an exit status; the instance is killed and counted as failed"
        );
        self.clean_up_after_lost_monitor(key, paths)?;
        let record = ExitRecord {
            exit_code: None,
            signal: None,
            oom_killed: false,
            finished_at: SystemTime::now(),
            monitor_pid: Some(monitor_pid),
        };
        paths.record_exit(&record)?;
        Ok(record.to_status())
    }

    /// Kills and deletes a container whose monitor is gone, and frees its network.
    fn clean_up_after_lost_monitor(
        &self,
        key: &InstanceKey,
        paths: &InstancePaths,
    ) -> Result<(), RuntimeError> {
        let id = self.inner.container_id(key);
        oci::delete_force(&self.inner.oci.program, &self.inner.oci_root, &id)?;
        if let Some(config) = read_json::<MonitorConfig>(&paths.monitor_config())? {
            if config.bridge() {
                if let Err(error) = hosts::leave(Path::new(hosts::HOSTS_STATE_DIR), &id) {
                    tracing::warn!(instance = %id, %error, "cannot take the instance out of its project's hosts files");
                }
                network::detach(Path::new(network::HOST_STATE_DIR), &id)?;
            }
        }
        remove_file_if_exists(&paths.state())
    }

    /// The state of a running instance whose monitor is alive, if it is.
    fn live_state(paths: &InstancePaths) -> Result<Option<StateRecord>, RuntimeError> {
        let state: Option<StateRecord> = read_json(&paths.state())?;
        Ok(state.filter(|state| {
            running_process_start_ticks(state.monitor_pid) == Some(state.monitor_start_ticks)
        }))
    }

    /// A pidfd for the instance's first process, if it still is the process `state` recorded.
    fn open_workload(state: &StateRecord) -> Option<PidFd> {
        let pidfd = PidFd::open(state.pid).ok()?;
        // The pidfd pins the process; checked after opening, the start time cannot change.
        (running_process_start_ticks(state.pid) == Some(state.pid_start_ticks)).then_some(pidfd)
    }

    async fn finish_monitor(
        &self,
        key: &InstanceKey,
        paths: &InstancePaths,
        monitor_pid: u32,
    ) -> Result<(), RuntimeError> {
        match tokio::time::timeout(
            MONITOR_FINISH_TIMEOUT,
            self.await_monitor_exit(paths, monitor_pid),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(RuntimeError::OciCommand {
                id: self.inner.container_id(key),
                action: "stop",
                message: format!(
                    "monitor {monitor_pid} did not finish within {} s",
                    MONITOR_FINISH_TIMEOUT.as_secs()
                ),
            }),
        }
    }

    fn network_mode(paths: &InstancePaths) -> Result<NetworkMode, RuntimeError> {
        let config: Option<MonitorConfig> = read_json(&paths.monitor_config())?;
        Ok(
            match config.as_ref().map(|config| config.network.as_str()) {
                Some("host") => NetworkMode::Host,
                Some("none") => NetworkMode::None,
                _ => NetworkMode::Bridge,
            },
        )
    }

    fn exec_target<'a>(&'a self, container_id: &'a str, bundle_config: &'a Path) -> ExecTarget<'a> {
        self.warm_cgroup_attach();
        ExecTarget {
            runtime: &self.inner.oci.program,
            root: &self.inner.oci_root,
            bundle_config,
            container_id,
            kind: self.inner.oci.kind,
            changes: exec::ProcessChanges::default(),
        }
    }

    /// The runtime is about to move a process into a cgroup: see [`AttachWarmer`].
    fn warm_cgroup_attach(&self) {
        if let Some(warmer) = &self.inner.attach_warmer {
            warmer.nudge();
        }
    }

    fn signal_error(
        &self,
        key: &InstanceKey,
        pid: u32,
        signal: Signal,
        source: io::Error,
    ) -> RuntimeError {
        RuntimeError::Signal {
            id: self.inner.container_id(key),
            pid,
            signal: signal as i32,
            source,
        }
    }
}

/// Whether `pid` has a handler for SIGTERM (`SigCgt` in `/proc/PID/status`). When it cannot
/// be read, assume it has one, so the grace period is kept.
fn catches_sigterm(pid: u32) -> bool {
    let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else {
        return true;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("SigCgt:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_none_or(|mask| mask & (1 << (libc::SIGTERM - 1)) != 0)
}

fn is_esrch(error: &io::Error) -> bool {
    error.raw_os_error() == Some(libc::ESRCH)
}

#[async_trait]
impl Driver for Runtime {
    fn start_coming(&self) {
        self.warm_cgroup_attach();
    }

    fn check(&self, spec: &WorkloadSpec) -> Result<(), crate::Unsupported> {
        crate::kinds::check(spec)
    }

    async fn start(
        &self,
        key: &InstanceKey,
        spec: &WorkloadSpec,
    ) -> Result<InstanceHandle, RuntimeError> {
        self.warm_cgroup_attach();
        let paths = self.paths(key)?;
        let id = self.inner.container_id(key);
        if let Some(state) = Self::live_state(&paths)? {
            return Err(RuntimeError::AlreadyRunning {
                id,
                monitor_pid: state.monitor_pid,
            });
        }
        let id_range = match spec.userns {
            UserNamespace::Private if !self.inner.host.user_namespaces => {
                return Err(RuntimeError::NoUserNamespaces {
                    workload: spec.name.clone(),
                })
            }
            UserNamespace::Private => Some(self.inner.id_ranges.of_project(&key.project)?),
            UserNamespace::Host => None,
        };
        let owner = id_range.map(|range| (range.host_base, range.host_base));
        let spec = &self
            .inner
            .secrets
            .apply(&key.project, &id, spec, owner)
            .await?;
        let from_image = crate::kinds::driver(spec.kind).is_some_and(|driver| driver.from_image);
        let image = if from_image {
            Some(self.prepare_image(key, spec, &paths, id_range).await?)
        } else {
            None
        };
        let (
            ports,
            Launched {
                pid: monitor_pid,
                sync_read,
            },
        ) = self.launch(key, spec, &paths, image.as_ref(), id_range)?;

        let report = self.await_report(sync_read, &id, &paths).await;
        self.inner.launcher.refill();
        let failure = match report {
            Ok(Some(SyncMessage::Started { pid })) => {
                let state: Option<StateRecord> = read_json(&paths.state())?;
                if let Some(state) = state.filter(|state| state.pid == pid) {
                    tracing::debug!(instance = %id, pid, monitor_pid, "instance started");
                    return Ok(InstanceHandle {
                        key: key.clone(),
                        pid,
                        monitor_pid,
                        started_at: state.started_at,
                        address: state.address,
                        ports,
                    });
                }
                // The instance already ended and its monitor cleaned up: report the start
                // anyway, `wait` returns the recorded exit.
                return Ok(InstanceHandle {
                    key: key.clone(),
                    pid,
                    monitor_pid,
                    started_at: SystemTime::now(),
                    address: None,
                    ports,
                });
            }
            Ok(Some(SyncMessage::Failed { error })) => RuntimeError::StartFailed {
                id: id.clone(),
                message: error,
            },
            Ok(None) => {
                let log = fs::read_to_string(paths.monitor_log()).unwrap_or_default();
                let last_line = log.lines().last().unwrap_or("no output").to_string();
                RuntimeError::StartFailed {
                    id: id.clone(),
                    message: format!("the monitor exited without a report: {last_line}"),
                }
            }
            Err(error) => {
                if let Ok(pidfd) = PidFd::open(monitor_pid) {
                    let _ = pidfd.send_signal(Signal::SIGKILL);
                }
                let _ = self.clean_up_after_lost_monitor(key, &paths);
                error
            }
        };
        // The monitor cleans up after a failed start and exits; reap it.
        let _ = self.finish_monitor(key, &paths, monitor_pid).await;
        Err(failure)
    }

    async fn wait(&self, handle: &InstanceHandle) -> Result<ExitStatus, RuntimeError> {
        let paths = self.paths(&handle.key)?;
        self.await_monitor_exit(&paths, handle.monitor_pid).await?;
        // By now the instance may have been removed and its directory (and runtime id) given
        // to a new instance of the same name, perhaps not started yet: only a record or a
        // state file of this instance's own monitor is read or acted on.
        if let Some(record) = read_json::<ExitRecord>(&paths.exit())? {
            if record
                .monitor_pid
                .is_none_or(|monitor_pid| monitor_pid == handle.monitor_pid)
            {
                return Ok(record.to_status());
            }
        } else {
            let state: Option<StateRecord> = read_json(&paths.state())?;
            if state.is_some_and(|state| state.monitor_pid == handle.monitor_pid) {
                // The monitor died without recording the exit.
                return self.lost_monitor_exit(&handle.key, &paths, handle.monitor_pid);
            }
        }
        Ok(ExitStatus {
            exit_code: None,
            signal: Some(libc::SIGKILL),
            oom_killed: false,
            finished_at: SystemTime::now(),
        })
    }

    fn attach(&self, key: &InstanceKey) -> Result<AttachOutcome, RuntimeError> {
        let paths = self.paths(key)?;
        if !paths.run.exists() && !paths.dir.exists() {
            return Ok(AttachOutcome::NotFound);
        }
        if let Some(state) = Self::live_state(&paths)? {
            let ports = read_json::<MonitorConfig>(&paths.monitor_config())?
                .map(|config| config.ports.iter().map(PortRecord::to_mapping).collect())
                .unwrap_or_default();
            return Ok(AttachOutcome::Running(InstanceHandle {
                key: key.clone(),
                pid: state.pid,
                monitor_pid: state.monitor_pid,
                started_at: state.started_at,
                address: state.address,
                ports,
            }));
        }
        if let Some(record) = read_json::<ExitRecord>(&paths.exit())? {
            remove_file_if_exists(&paths.state())?;
            return Ok(AttachOutcome::Exited(record.to_status()));
        }
        self.clean_up_after_lost_monitor(key, &paths)?;
        Ok(AttachOutcome::NotFound)
    }

    async fn attach_terminal(&self, handle: &InstanceHandle) -> Result<ExecSession, RuntimeError> {
        let paths = self.paths(&handle.key)?;
        let no_terminal = || RuntimeError::NoTerminal {
            workload: handle.key.instance_name(),
        };
        if Self::live_state(&paths)?.is_none() {
            return Err(RuntimeError::NotRunning {
                id: self.inner.container_id(&handle.key),
            });
        }
        let run = paths.run.clone();
        let connected = tokio::task::spawn_blocking(move || crate::terminal::connect(&run))
            .await
            .map_err(|error| RuntimeError::io("attach to", &paths.run, io::Error::other(error)))?;
        let (master, unseen, connection) = match connected {
            Ok(connected) => connected,
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
                ) =>
            {
                return Err(no_terminal())
            }
            Err(error) if error.kind() == io::ErrorKind::ResourceBusy => {
                return Err(RuntimeError::TerminalBusy {
                    workload: handle.key.instance_name(),
                })
            }
            Err(source) => return Err(RuntimeError::io("attach to", &paths.run, source)),
        };
        let runtime = Runtime {
            inner: self.inner.clone(),
        };
        let instance = handle.clone();
        let ended = async move {
            let status = runtime.wait(&instance).await.map_err(io::Error::other)?;
            Ok(crate::ExecExit {
                exit_code: status.exit_code,
                signal: status.signal,
            })
        };
        crate::terminal::session(master, unseen, connection, ended)
            .map_err(|source| RuntimeError::io("attach to", &paths.run, source))
    }

    fn signal(&self, handle: &InstanceHandle, signal: Signal) -> Result<(), RuntimeError> {
        let paths = self.paths(&handle.key)?;
        let not_running = || RuntimeError::NotRunning {
            id: self.inner.container_id(&handle.key),
        };
        let state = Self::live_state(&paths)?.ok_or_else(not_running)?;
        let workload = Self::open_workload(&state).ok_or_else(not_running)?;
        workload
            .send_signal(signal)
            .map_err(|error| self.signal_error(&handle.key, state.pid, signal, error))
    }

    async fn stop(&self, handle: &InstanceHandle, grace: Duration) -> Result<(), RuntimeError> {
        let paths = self.paths(&handle.key)?;
        let Some(state) = Self::live_state(&paths)? else {
            return self
                .finish_monitor(&handle.key, &paths, handle.monitor_pid)
                .await;
        };
        if let Some(workload) = Self::open_workload(&state) {
            // The first process of a PID namespace never dies of a signal it does not catch:
            // without a SIGTERM handler, waiting out the grace period changes nothing.
            let grace = if catches_sigterm(state.pid) {
                grace
            } else {
                tracing::info!(instance = %self.inner.container_id(&handle.key), "its first process has no SIGTERM handler; killing it now");
                Duration::ZERO
            };
            match workload.send_signal(Signal::SIGTERM) {
                Err(error) if !is_esrch(&error) => {
                    return Err(self.signal_error(&handle.key, state.pid, Signal::SIGTERM, error))
                }
                _ => {}
            }
            if tokio::time::timeout(grace, workload.exited())
                .await
                .is_err()
            {
                tracing::info!(instance = %self.inner.container_id(&handle.key), grace_ms = grace.as_millis() as u64, "grace period over, killing");
                if let Some(workload) = Self::open_workload(&state) {
                    match workload.send_signal(Signal::SIGKILL) {
                        Err(error) if !is_esrch(&error) => {
                            return Err(self.signal_error(
                                &handle.key,
                                state.pid,
                                Signal::SIGKILL,
                                error,
                            ))
                        }
                        _ => {}
                    }
                }
            }
        }
        self.finish_monitor(&handle.key, &paths, state.monitor_pid)
            .await
    }

    async fn remove(&self, key: &InstanceKey) -> Result<(), RuntimeError> {
        let paths = self.paths(key)?;
        if let Some(state) = Self::live_state(&paths)? {
            if let Some(workload) = Self::open_workload(&state) {
                match workload.send_signal(Signal::SIGKILL) {
                    Err(error) if !is_esrch(&error) => {
                        return Err(self.signal_error(key, state.pid, Signal::SIGKILL, error))
                    }
                    _ => {}
                }
            }
            self.finish_monitor(key, &paths, state.monitor_pid).await?;
        }
        let runtime = self.clone();
        let cleanup_key = key.clone();
        let cleanup_paths = paths.clone();
        tokio::task::spawn_blocking(move || {
            runtime.clean_up_after_lost_monitor(&cleanup_key, &cleanup_paths)
        })
        .await
        .map_err(|error| RuntimeError::io("clean up", &paths.dir, io::Error::other(error)))??;
        let container_id = self.inner.container_id(key);
        self.inner.secrets.remove(&container_id)?;
        self.inner.secrets.remove_root_if_empty();
        // The project's cgroup group goes with its last instance, except where it carries
        // the caps of a quota, which must be there for the project's next instance.
        // A runtime that failed half-way through a start (at `pids.max`, say) leaves the
        // instance's own directories; a clean delete has already removed them.
        let cgroups = &self.inner.cgroups;
        for dir in cgroups.all_dirs(&container_id) {
            let _ = fs::remove_dir(dir);
        }
        let group = cgroup::project_group(&container_id);
        cgroups.remove_group(group, cgroups.group_capped(group));
        for (dir, root) in [
            (&paths.run, &self.inner.run_root),
            (&paths.dir, &self.inner.data_dir),
        ] {
            match fs::remove_dir_all(dir) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(RuntimeError::io("remove", dir, source)),
            }
            // Empty workload and project directories go too; ones still in use stay.
            let instances = root.join("instances");
            let mut parent = dir.parent();
            while let Some(dir) = parent.filter(|dir| *dir != instances) {
                if fs::remove_dir(dir).is_err() {
                    break;
                }
                parent = dir.parent();
            }
        }
        Ok(())
    }

    fn usage(&self, handle: &InstanceHandle) -> Option<ResourceUsage> {
        let mut usage = self
            .inner
            .cgroups
            .usage(&self.inner.container_id(&handle.key))?;
        // Only a bridged instance has interfaces of its own to count: `network: none` has
        // loopback alone, `host` the host's.
        if handle.address.is_some() {
            usage.network = crate::host::network_bytes_of(handle.pid);
        }
        Some(usage)
    }

    async fn probe(
        &self,
        handle: &InstanceHandle,
        probe: &HealthProbe,
        timeout: Duration,
    ) -> Result<(), String> {
        let paths = self.paths(&handle.key).map_err(|error| error.to_string())?;
        let network = Self::network_mode(&paths).map_err(|error| error.to_string())?;
        match probe {
            HealthProbe::Exec { command } => {
                let id = self.inner.container_id(&handle.key);
                let bundle_config = paths.config();
                probe::exec(self.exec_target(&id, &bundle_config), command, timeout).await
            }
            HealthProbe::Tcp { port } => {
                let target = probe::Target::new(handle.pid, network, *port);
                tokio::task::spawn_blocking(move || probe::tcp(target, timeout))
                    .await
                    .map_err(|error| format!("probe task failed: {error}"))?
            }
            HealthProbe::Http { port, path } => {
                let target = probe::Target::new(handle.pid, network, *port);
                let path = path.clone();
                tokio::task::spawn_blocking(move || probe::http(target, &path, timeout))
                    .await
                    .map_err(|error| format!("probe task failed: {error}"))?
            }
        }
    }

    fn read_logs(
        &self,
        key: &InstanceKey,
        tail: Option<usize>,
        since: Option<SystemTime>,
    ) -> Result<Vec<LogLine>, RuntimeError> {
        let paths = self.paths(key)?;
        logs::read_lines(&paths.log(), tail, since)
    }

    fn log_location(&self, key: &InstanceKey) -> LogLocation {
        LogLocation {
            path: self.unchecked_instance_dir(key).join("log"),
        }
    }

    async fn exec(
        &self,
        handle: &InstanceHandle,
        request: &ExecRequest,
    ) -> Result<ExecSession, RuntimeError> {
        let paths = self.paths(&handle.key)?;
        let id = self.inner.container_id(&handle.key);
        if Self::live_state(&paths)?.is_none() {
            return Err(RuntimeError::NotRunning { id });
        }
        // Names are the workload's own: read where its first process sees its root.
        let user = request
            .user
            .as_deref()
            .map(|user| exec::resolve_user(user, Path::new(&format!("/proc/{}/root", handle.pid))))
            .transpose()?;
        let bundle_config = paths.config();
        let mut target = self.exec_target(&id, &bundle_config);
        target.changes = exec::ProcessChanges {
            env: &request.env,
            cwd: request.workdir.as_deref(),
            user,
        };
        exec::spawn(
            target,
            &self.inner.data_dir.join("run"),
            &request.command,
            request.tty,
        )
        .await
    }

    fn set_memory_limit(&self, handle: &InstanceHandle, bytes: u64) -> bool {
        let id = self.inner.container_id(&handle.key);
        match self.inner.cgroups.set_memory_limit(&id, bytes) {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(%error, instance = %handle.key.instance_name(), "cannot change the memory limit in place; the instance restarts instead");
                false
            }
        }
    }

    fn set_project_limits(
        &self,
        project: &str,
        memory: Option<u64>,
        cpu: Option<f64>,
    ) -> Result<(), RuntimeError> {
        let group = format!("ward-{}.{project}", self.inner.namespace);
        self.inner
            .cgroups
            .set_group_limits(&group, memory, cpu)
            .map_err(|source| {
                RuntimeError::io(
                    "cap the memory and CPU of",
                    self.inner.cgroups.group_dir("memory", &group),
                    source,
                )
            })
    }

    fn named_volumes(&self, project: &str) -> Result<Vec<NamedVolume>, RuntimeError> {
        let dir = self.inner.data_dir.join("volumes").join(project);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(RuntimeError::io("list the volumes in", &dir, source)),
        };
        let mut volumes: Vec<NamedVolume> = entries
            .flatten()
            .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_dir()))
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                let metadata = entry.metadata().ok();
                let created_at = metadata
                    .and_then(|metadata| metadata.created().or_else(|_| metadata.modified()).ok());
                Some(NamedVolume { name, created_at })
            })
            .collect();
        volumes.sort_by(|left, right| left.name.cmp(&right.name));
        Ok(volumes)
    }

    fn retire_named_volume(
        &self,
        project: &str,
        name: &str,
    ) -> Result<Option<RetiredVolume>, RuntimeError> {
        let dir = bundle::named_volume_dir(&self.inner.data_dir, project, name);
        let retired = self.inner.data_dir.join(RETIRED_VOLUMES);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&retired)
            .map_err(|source| RuntimeError::io("create", &retired, source))?;
        // Unique among retired volumes: a clock reading at nanosecond grain under the caller's
        // lock, which is held while a volume is retired.
        let stamp = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let path = retired.join(format!("{project}.{name}.{stamp}"));
        match fs::rename(&dir, &path) {
            Ok(()) => Ok(Some(RetiredVolume { path })),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(RuntimeError::io("remove the volume", &dir, source)),
        }
    }

    fn project_volume_bytes(&self, project: &str) -> u64 {
        fn bytes_under(dir: &Path) -> u64 {
            let Ok(entries) = fs::read_dir(dir) else {
                return 0;
            };
            entries
                .flatten()
                .map(|entry| match entry.file_type() {
                    Ok(kind) if kind.is_dir() => bytes_under(&entry.path()),
                    Ok(kind) if kind.is_file() => entry.metadata().map_or(0, |meta| meta.len()),
                    _ => 0,
                })
                .sum()
        }
        bytes_under(&self.inner.data_dir.join("volumes").join(project))
    }

    fn images_in_use(&self) -> Vec<Digest> {
        let mut digests = Vec::new();
        let levels = ["project", "workload", "replica"];
        let mut dirs = vec![self.inner.data_dir.join("instances")];
        for _ in levels {
            dirs = dirs
                .iter()
                .filter_map(|dir| fs::read_dir(dir).ok())
                .flatten()
                .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                .filter(|path| path.is_dir())
                .collect();
        }
        for dir in dirs {
            for marker in ["upper.image", "rootfs.image"] {
                if let Some(digest) = fs::read_to_string(dir.join(marker))
                    .ok()
                    .and_then(|text| text.split_whitespace().next()?.parse().ok())
                {
                    digests.push(digest);
                }
            }
        }
        digests
    }
}

impl Inner {
    /// The OCI container id: `ward-<namespace>.<project>.<workload>.<replica>`.
    fn container_id(&self, key: &InstanceKey) -> String {
        format!("ward-{}.{}", self.namespace, key.container_id())
    }
}

/// Eight hex digits of FNV-1a over the data dir's canonical path: stable across restarts,
/// different for each data dir.
/// Removes `dir` if it holds nothing but directories that this removes in turn; returns
/// whether it did.
fn remove_empty_tree(dir: &Path) -> bool {
    let Ok(entries) = fs::read_dir(dir) else {
        return false;
    };
    let mut empty = true;
    for entry in entries.flatten() {
        let is_dir = entry.file_type().is_ok_and(|kind| kind.is_dir());
        if !(is_dir && remove_empty_tree(&entry.path())) {
            empty = false;
        }
    }
    empty && fs::remove_dir(dir).is_ok()
}

/// `ROOT/instances/<project>/<workload>/<replica>`.
fn instance_path(root: &Path, key: &InstanceKey) -> PathBuf {
    root.join("instances")
        .join(&key.project)
        .join(&key.workload)
        .join(key.replica.to_string())
}

fn namespace_of(data_dir: &Path) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in data_dir.as_os_str().as_encoded_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:08x}", hash as u32 ^ (hash >> 32) as u32)
}

/// Opens the layer store under `DATA/images` and looks for overlayfs.
fn open_images(data_dir: &Path) -> Result<Images, RuntimeError> {
    let root = data_dir.join("images");
    let open_error = |error: &dyn std::fmt::Display| {
        RuntimeError::io(
            "open the image store at",
            &root,
            io::Error::other(error.to_string()),
        )
    };
    let blobs = BlobStore::open_at(&root).map_err(|error| open_error(&error))?;
    let layers =
        LayerStore::open_at(root.join("layers"), blobs).map_err(|error| open_error(&error))?;
    let overlay = fs::read_to_string("/proc/filesystems")
        .map(|text| {
            text.lines()
                .any(|line| line.trim_end().ends_with("\toverlay"))
        })
        .unwrap_or(false);
    if !overlay {
        tracing::warn!("overlayfs is not available: each container gets a full copy of its image");
    }
    Ok(Images {
        layers,
        overlay,
        resolver: Arc::default(),
    })
}

/// Unpacks the image's layers (once, shared) or, without overlayfs, copies the image into the
/// instance's own root (kept while it is of the same image).
fn prepare_root(
    images: &Images,
    digest: &Digest,
    instance_dir: &Path,
    id_range: Option<IdRange>,
) -> Result<PreparedRoot, String> {
    if images.overlay {
        let prepared = images
            .layers
            .prepare(digest)
            .map_err(|error| error.to_string())?;
        let layers_root = images.layers.root().to_path_buf();
        let passwd = image::read_image_file(&layers_root, &prepared.lower_dirs, "etc/passwd");
        let group = image::read_image_file(&layers_root, &prepared.lower_dirs, "etc/group");
        return Ok(PreparedRoot {
            digest: digest.clone(),
            config: prepared.config.config,
            root: ImageRoot::Overlay {
                layers_root,
                lower_dirs: prepared.lower_dirs,
            },
            passwd,
            group,
        });
    }
    let rootfs = instance_dir.join("rootfs");
    let marker = instance_dir.join("rootfs.image");
    let current = fs::read_to_string(&marker).ok();
    let expected = image_marker(digest, id_range);
    let config = if current.as_deref() == Some(expected.as_str()) {
        images
            .layers
            .read_image(digest)
            .map_err(|error| error.to_string())?
            .1
    } else {
        ward_image::layers::remove_tree(&rootfs).map_err(|error| error.to_string())?;
        let _ = fs::remove_file(&marker);
        fs::create_dir_all(&rootfs).map_err(|error| error.to_string())?;
        let config = images
            .layers
            .flatten_into(digest, &rootfs)
            .map_err(|error| error.to_string())?;
        if let Some(range) = id_range {
            idmap::shift_ownership(&rootfs, range).map_err(|error| {
                format!("cannot give the copy of the image to the container's users: {error}")
            })?;
        }
        fs::write(&marker, expected).map_err(|error| error.to_string())?;
        config
    };
    let read = |path: &str| fs::read_to_string(rootfs.join(path)).ok();
    Ok(PreparedRoot {
        digest: digest.clone(),
        config: config.config,
        root: ImageRoot::Copy,
        passwd: read("etc/passwd"),
        group: read("etc/group"),
    })
}

/// What a kind's driver makes of an instance: the command the OCI runtime runs (empty: the
/// image's process is in `root`), the root it runs in, the overlay or copy the monitor
/// mounts, the instance's own hosts file, and the ports it publishes.
pub(crate) struct KindRoot<'a> {
    command: &'a [String],
    root: RootFilesystem,
    overlay: Option<OverlayMount>,
    root_copy: Option<PathBuf>,
    hosts_file: Option<PathBuf>,
    ports: Vec<PortMapping>,
}

/// What a kind's driver may use, and add to, when it prepares an instance.
pub(crate) struct RootRequest<'a, 'b> {
    key: &'b InstanceKey,
    spec: &'a WorkloadSpec,
    paths: &'b InstancePaths,
    image: Option<&'b PreparedRoot>,
    id_range: Option<IdRange>,
    /// The owner of the instance's own files: its user namespace's root.
    owner: Option<(u32, u32)>,
    volumes: &'b mut Vec<bundle::ResolvedVolume>,
    masked_paths: &'b mut Vec<PathBuf>,
}

/// The process driver: a host program in a root of the instance's own, with the host's
/// top-level directories bound read-only into it.
pub(crate) fn process_root<'a>(
    runtime: &Runtime,
    request: RootRequest<'a, '_>,
) -> Result<KindRoot<'a>, RuntimeError> {
    let inner = &runtime.inner;
    let RootRequest {
        key,
        spec,
        paths,
        id_range,
        owner,
        volumes,
        masked_paths,
        ..
    } = request;
    let command = match spec.command.as_deref() {
        Some(command) if !command.is_empty() => command,
        _ => {
            return Err(RuntimeError::MissingCommand {
                workload: spec.name.clone(),
            })
        }
    };
    let root_dir = paths.root();
    bundle::make_instance_root(&root_dir, &inner.skeleton, volumes, owner)
        .map_err(|source| RuntimeError::io("make the root of", &root_dir, source))?;
    // On the bridge, its own /etc/hosts: the names of its project's workloads.
    let hosts_file = if spec.network == NetworkMode::Bridge {
        let dir = paths.etc();
        fs::create_dir_all(&dir).map_err(|source| RuntimeError::io("create", &dir, source))?;
        let path = dir.join("hosts");
        fs::write(&path, image::hosts_file(&spec.name))
            .map_err(|source| RuntimeError::io("write", &path, source))?;
        volumes.push(bundle::ResolvedVolume {
            source: path.clone(),
            target: "/etc/hosts".to_string(),
            read_only: true,
            file: true,
        });
        Some(path)
    } else {
        None
    };
    let root = RootFilesystem::Host {
        root: PathBuf::from(PROCESS_ROOT),
        top_level_dirs: if id_range.is_some() {
            inner.host.open_top_level_dirs.clone()
        } else {
            inner.host.top_level_dirs.clone()
        },
        recursive_readonly: inner.recursive_readonly,
        submounts: if inner.recursive_readonly {
            Vec::new()
        } else {
            inner.host.submounts_of_top_level_dirs()
        },
    };
    masked_paths.extend(inner.masked_paths.iter().cloned());
    // Host directories the config opens to other projects only.
    masked_paths.extend(
        inner
            .host_volumes
            .iter()
            .filter(|host_volume| !host_volume.serves(&key.project))
            .map(|host_volume| host_volume.path.clone()),
    );
    Ok(KindRoot {
        command,
        root,
        overlay: None,
        root_copy: None,
        hosts_file,
        ports: spec.ports.clone(),
    })
}

/// The container driver: the image's process in its layers, mounted by the monitor.
pub(crate) fn container_root<'a>(
    _runtime: &Runtime,
    request: RootRequest<'a, '_>,
) -> Result<KindRoot<'a>, RuntimeError> {
    let RootRequest {
        spec,
        paths,
        image,
        id_range,
        ..
    } = request;
    let Some(image) = image else {
        return Err(RuntimeError::UnsupportedKind {
            workload: spec.name.clone(),
            kind: spec.kind.as_str(),
        });
    };
    let process = image::container_process(spec, image)?;
    let ports = image::published_ports(spec, image)?;
    let (etc_files, hosts_file) = write_etc_files(paths, spec)?;
    let rootfs = paths.container_root();
    fs::create_dir_all(&rootfs).map_err(|source| RuntimeError::io("create", &rootfs, source))?;
    let overlay = match &image.root {
        ImageRoot::Overlay {
            layers_root,
            lower_dirs,
        } => Some(overlay_dirs(
            paths,
            &image.digest,
            layers_root,
            lower_dirs,
            id_range,
        )?),
        ImageRoot::Copy => None,
    };
    let root_copy = matches!(image.root, ImageRoot::Copy).then(|| paths.dir.join("rootfs"));
    let root = RootFilesystem::Image {
        rootfs: PathBuf::from(CONTAINER_ROOT),
        etc_files,
        process,
    };
    Ok(KindRoot {
        command: &[],
        root,
        overlay,
        root_copy,
        hosts_file: Some(hosts_file),
        ports,
    })
}

/// The upper and work directories of an instance's overlay; they start empty whenever the
/// instance runs another image, or with other host ids, than before, and survive restarts of
/// the same one. With an id range, the upper directory (the container's `/`) is its root's.
fn overlay_dirs(
    paths: &InstancePaths,
    digest: &Digest,
    layers_root: &Path,
    lower_dirs: &[String],
    id_range: Option<IdRange>,
) -> Result<OverlayMount, RuntimeError> {
    let upper = paths.dir.join("upper");
    let work = paths.dir.join("work");
    let marker = paths.dir.join("upper.image");
    let expected = image_marker(digest, id_range);
    if fs::read_to_string(&marker).ok().as_deref() != Some(expected.as_str()) {
        for dir in [&upper, &work] {
            ward_image::layers::remove_tree(dir).map_err(|error| {
                RuntimeError::io("reset", dir, io::Error::other(error.to_string()))
            })?;
        }
        fs::create_dir_all(&upper).map_err(|source| RuntimeError::io("create", &upper, source))?;
        if let Some(range) = id_range {
            std::os::unix::fs::lchown(&upper, Some(range.host_base), Some(range.host_base))
                .map_err(|source| RuntimeError::io("give the container's root", &upper, source))?;
        }
        fs::write(&marker, &expected)
            .map_err(|source| RuntimeError::io("write", &marker, source))?;
    }
    for dir in [&upper, &work] {
        fs::create_dir_all(dir).map_err(|source| RuntimeError::io("create", dir, source))?;
    }
    Ok(OverlayMount {
        layers_root: layers_root.to_path_buf(),
        lower_dirs: lower_dirs.to_vec(),
        upper,
        work,
        target: paths.container_root(),
        id_range,
    })
}

/// What an instance's `upper.image` or `rootfs.image` says: the image's digest, and the
/// first host id its files are owned by when it has its own user namespace.
fn image_marker(digest: &Digest, id_range: Option<IdRange>) -> String {
    match id_range {
        Some(range) => format!("{digest} ids={}", range.host_base),
        None => digest.to_string(),
    }
}

/// A file of the instance bound over a path of the container's `/etc`.
type EtcBind = (PathBuf, &'static str);

/// Writes the container's `/etc/hosts`, `/etc/resolv.conf` and `/etc/hostname`; returns the
/// binds and the hosts file (which the monitor completes with the instance's address).
fn write_etc_files(
    paths: &InstancePaths,
    spec: &WorkloadSpec,
) -> Result<(Vec<EtcBind>, PathBuf), RuntimeError> {
    let dir = paths.etc();
    fs::create_dir_all(&dir).map_err(|source| RuntimeError::io("create", &dir, source))?;
    let host_resolv = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let files = [
        ("hosts", image::hosts_file(&spec.name), "/etc/hosts"),
        (
            "resolv.conf",
            image::resolv_conf(&host_resolv, spec.network),
            "/etc/resolv.conf",
        ),
        ("hostname", format!("{}\n", spec.name), "/etc/hostname"),
    ];
    let mut binds = Vec::with_capacity(files.len());
    for (name, content, destination) in files {
        let path = dir.join(name);
        fs::write(&path, content).map_err(|source| RuntimeError::io("write", &path, source))?;
        binds.push((path, destination));
    }
    Ok((binds, dir.join("hosts")))
}
