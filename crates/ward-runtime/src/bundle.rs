//! The OCI bundle of an instance: the `config.json` that tells the OCI runtime how to isolate
//! it, the root filesystem it starts from, and the volumes mounted into it.
//!
//! [`oci_config`] is a pure function from [`BundleSettings`] to the typed runtime spec; everything
//! that looks at the host (volumes, the instance's root) is resolved before it is called.

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use std::collections::{HashMap, HashSet};

use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilities, LinuxCapabilitiesBuilder, LinuxCpuBuilder,
    LinuxDeviceCgroupBuilder, LinuxMemoryBuilder, LinuxNamespace, LinuxNamespaceBuilder,
    LinuxNamespaceType, LinuxPidsBuilder, LinuxResources, LinuxResourcesBuilder, Mount,
    MountBuilder, PosixRlimitBuilder, PosixRlimitType, ProcessBuilder, RootBuilder, Spec,
    SpecBuilder, UserBuilder,
};
use oci_spec::OciSpecError;
use ward_spec::{NetworkMode, VolumeMount, WorkloadSpec};

use crate::host::PRIVATE_TOP_LEVEL;
use crate::idmap::{self, IdRange};
use crate::image::{ContainerProcess, DEFAULT_CAPABILITIES};
use crate::seccomp;
use crate::RuntimeError;

/// `PATH` of every workload unless its spec sets one.
pub(crate) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Size of the private `/tmp` when the workload has no memory limit (with one, the limit).
pub(crate) const DEFAULT_TMP_BYTES: u64 = 64 * 1024 * 1024;
/// Size of the private `/run`.
const RUN_BYTES: u64 = 16 * 1024 * 1024;
const CPU_PERIOD_MICROS: u64 = 100_000;
/// The smallest CPU quota the kernel accepts.
const CPU_QUOTA_MIN_MICROS: u64 = 1_000;

/// Paths of the OCI default profile (`crun spec`) that are hidden behind an empty mount.
const DEFAULT_MASKED_PATHS: [&str; 10] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
];
/// Paths of the OCI default profile that are read-only even where their mount is not.
const DEFAULT_READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Host files that the sandbox must not read although they are part of the host filesystem:
/// its root user (uid 0 without capabilities) still owns them, so only a mask hides them.
pub(crate) const HOST_SECRET_PATHS: [&str; 7] = [
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/etc/ssh",
    "/etc/ssl/private",
    "/root",
];

/// The root filesystem an instance starts from.
#[derive(Clone, Debug)]
pub(crate) enum RootFilesystem {
    /// The host's own filesystem, read-only: the instance's own root (see
    /// [`make_instance_root`]), an empty copy of the host's top level with each top-level
    /// directory bound onto it. Process workloads run this way.
    Host {
        root: PathBuf,
        top_level_dirs: Vec<String>,
        /// The runtime and kernel make `rro` binds read-only all the way down.
        recursive_readonly: bool,
        /// Without `rro`: the mount points below the top-level directories, bound read-only
        /// one by one so that none stays writable.
        submounts: Vec<PathBuf>,
    },
    /// An image's root filesystem at `rootfs` (mounted there by the monitor, or a copy),
    /// writable, with the container's own `/etc/hosts`, `/etc/resolv.conf` and
    /// `/etc/hostname` bound read-only over it (they live in the run root, in memory, which a
    /// workload must not fill; Ward keeps `/etc/hosts` current).
    Image {
        rootfs: PathBuf,
        etc_files: Vec<(PathBuf, &'static str)>,
        process: ContainerProcess,
    },
}

/// A host directory the daemon's config opens to some projects, as Nomad's `host_volume`: their
/// specs mount it by name (`NAME:/target`) or by a path at or below it, without the
/// `host-paths` grant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostVolume {
    pub name: String,
    /// Canonical.
    pub path: PathBuf,
    /// Mounted read-only whatever the spec says.
    pub read_only: bool,
    /// The projects it is open to; `None`: every project.
    pub projects: Option<Vec<String>>,
}

impl HostVolume {
    pub fn serves(&self, project: &str) -> bool {
        self.projects
            .as_ref()
            .is_none_or(|projects| projects.iter().any(|name| name == project))
    }

    /// Whether it opens the canonical host path `path` to `project`.
    pub fn opens(&self, project: &str, path: &Path) -> bool {
        self.serves(project) && path.starts_with(&self.path)
    }
}

/// A volume ready to mount: `source` exists on the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ResolvedVolume {
    pub source: PathBuf,
    pub target: String,
    pub read_only: bool,
    /// The source is a file (a secret, a single config file), not a directory: `rro` does
    /// not apply to it.
    pub file: bool,
}

/// Everything [`oci_config`] needs.
#[derive(Clone, Debug)]
pub(crate) struct BundleSettings<'a> {
    pub spec: &'a WorkloadSpec,
    pub command: &'a [String],
    pub root: &'a RootFilesystem,
    pub volumes: &'a [ResolvedVolume],
    /// Hidden in addition to the OCI defaults (Ward's data directory, host secrets).
    pub masked_paths: &'a [PathBuf],
    pub cgroups_path: String,
    /// The caller's hard `RLIMIT_NOFILE`, which the sandbox must not exceed.
    pub nofile_hard_limit: u64,
    pub cgroup_namespace: bool,
    /// Limit swap to the memory limit (only where the host swaps and accounts swap).
    pub swap_limit: bool,
    /// The seccomp profile compiled to BPF (base64), for a runtime that loads it as it is
    /// (crun); without it the runtime compiles the OCI profile at every start.
    pub seccomp_bpf: Option<&'a str>,
    /// The network namespace made ahead of the instance, which it joins; without one (and
    /// unless it uses the host's) the runtime makes a new one.
    pub network_namespace: Option<&'a Path>,
    /// The host ids of the instance's own user namespace; `None`: the host's user ids.
    pub id_range: Option<IdRange>,
    /// The pids limit of an instance whose spec sets none.
    pub default_pids_limit: Option<u64>,
}

/// The OCI runtime spec (version 1.0) of an instance.
pub(crate) fn oci_config(settings: &BundleSettings<'_>) -> Result<Spec, OciSpecError> {
    let spec = settings.spec;
    let cwd = match spec.workdir.as_deref() {
        Some(workdir) if workdir.starts_with('/') => workdir.to_string(),
        Some(workdir) => format!("/{workdir}"),
        None => "/".to_string(),
    };

    let mut namespaces = vec![
        namespace(LinuxNamespaceType::Pid, None)?,
        namespace(LinuxNamespaceType::Ipc, None)?,
        namespace(LinuxNamespaceType::Uts, None)?,
        namespace(LinuxNamespaceType::Mount, None)?,
    ];
    match (spec.network, settings.network_namespace) {
        (NetworkMode::Host, _) => {}
        (_, path) => namespaces.push(namespace(LinuxNamespaceType::Network, path)?),
    }
    if settings.cgroup_namespace {
        namespaces.push(namespace(LinuxNamespaceType::Cgroup, None)?);
    }
    if settings.id_range.is_some() {
        namespaces.push(namespace(LinuxNamespaceType::User, None)?);
    }

    let mut masked_paths: Vec<String> = DEFAULT_MASKED_PATHS
        .iter()
        .map(|path| path.to_string())
        .collect();
    masked_paths.extend(
        settings
            .masked_paths
            .iter()
            .map(|path| path.display().to_string()),
    );

    let (root_path, root_readonly) = match settings.root {
        RootFilesystem::Host { root, .. } => (root, true),
        RootFilesystem::Image { rootfs, .. } => (rootfs, false),
    };

    let process = match settings.root {
        RootFilesystem::Image { process, .. } => ProcessBuilder::default()
            .args(process.args.clone())
            .env(process.env.clone())
            .cwd(&process.cwd)
            .user(
                UserBuilder::default()
                    .uid(process.uid)
                    .gid(process.gid)
                    .additional_gids(process.additional_gids.clone())
                    .build()?,
            )
            .capabilities(capabilities(&DEFAULT_CAPABILITIES)?),
        RootFilesystem::Host { .. } => ProcessBuilder::default()
            .args(settings.command.to_vec())
            .env(environment(spec))
            .cwd(cwd)
            .user(UserBuilder::default().uid(0u32).gid(0u32).build()?)
            .capabilities(capabilities(&[])?),
    }
    .terminal(spec.tty)
    .rlimits(vec![PosixRlimitBuilder::default()
        .typ(PosixRlimitType::RlimitNofile)
        .soft(settings.nofile_hard_limit.min(1024))
        .hard(settings.nofile_hard_limit)
        .build()?])
    .no_new_privileges(true)
    .build()?;

    let mut linux = LinuxBuilder::default()
        .resources(resources(settings)?)
        .cgroups_path(PathBuf::from(&settings.cgroups_path))
        .namespaces(namespaces)
        .masked_paths(masked_paths)
        .readonly_paths(DEFAULT_READONLY_PATHS.map(str::to_string).to_vec())
        .rootfs_propagation("rprivate");
    if let Some(range) = settings.id_range {
        linux = linux
            .uid_mappings(range.oci_mapping()?)
            .gid_mappings(range.oci_mapping()?);
    }
    let mut annotations = HashMap::new();
    match settings.seccomp_bpf {
        Some(program) => {
            annotations.insert("run.oci.seccomp_bpf_data".to_string(), program.to_string());
        }
        None => linux = linux.seccomp(seccomp::profile()?),
    }

    SpecBuilder::default()
        .version("1.0.0")
        .process(process)
        .root(
            RootBuilder::default()
                .path(root_path)
                .readonly(root_readonly)
                .build()?,
        )
        .hostname(spec.name.clone())
        .mounts(mounts(settings)?)
        .linux(linux.build()?)
        .annotations(annotations)
        .build()
}

fn namespace(typ: LinuxNamespaceType, path: Option<&Path>) -> Result<LinuxNamespace, OciSpecError> {
    let mut namespace = LinuxNamespaceBuilder::default().typ(typ);
    if let Some(path) = path {
        namespace = namespace.path(path);
    }
    namespace.build()
}

/// The same set in each of the process's capability sets but the inheritable and ambient
/// ones, which stay empty.
fn capabilities(names: &[Capability]) -> Result<LinuxCapabilities, OciSpecError> {
    let set: HashSet<Capability> = names.iter().copied().collect();
    LinuxCapabilitiesBuilder::default()
        .bounding(set.clone())
        .effective(set.clone())
        .permitted(set)
        .inheritable(HashSet::new())
        .ambient(HashSet::new())
        .build()
}

/// `PATH` and `HOSTNAME`, then the spec's variables (which win over both).
fn environment(spec: &WorkloadSpec) -> Vec<String> {
    let mut environment = Vec::with_capacity(spec.env.len() + 2);
    if !spec.env.contains_key("PATH") {
        environment.push(format!("PATH={DEFAULT_PATH}"));
    }
    if !spec.env.contains_key("HOSTNAME") {
        environment.push(format!("HOSTNAME={}", spec.name));
    }
    if spec.tty && !spec.env.contains_key("TERM") {
        environment.push("TERM=xterm".to_string());
    }
    environment.extend(
        spec.env
            .iter()
            .map(|(name, value)| format!("{name}={value}")),
    );
    environment
}

fn mounts(settings: &BundleSettings<'_>) -> Result<Vec<Mount>, OciSpecError> {
    let mut mounts = Vec::new();
    let (top_level_dirs, recursive_readonly, submounts) = match settings.root {
        RootFilesystem::Host {
            top_level_dirs,
            recursive_readonly,
            submounts,
            ..
        } => (
            top_level_dirs.as_slice(),
            *recursive_readonly,
            submounts.as_slice(),
        ),
        RootFilesystem::Image { etc_files, .. } => {
            mounts.extend(kernel_filesystems(settings.id_range.is_some())?);
            for (source, destination) in etc_files {
                mounts.push(mount(
                    destination,
                    "bind",
                    source,
                    &["rbind", "ro", "nosuid", "nodev", "noexec"],
                )?);
            }
            push_volumes(&mut mounts, settings.volumes, false)?;
            return Ok(mounts);
        }
    };
    let readonly_bind = |path: &Path, recursive: bool| {
        let options: &[&str] = if recursive {
            &["rbind", "ro", "rro", "nosuid", "nodev"]
        } else {
            &["rbind", "ro", "nosuid", "nodev"]
        };
        mount(path, "bind", path, options)
    };
    for dir in top_level_dirs {
        mounts.push(readonly_bind(
            &Path::new("/").join(dir),
            recursive_readonly,
        )?);
    }
    if !recursive_readonly {
        for submount in submounts {
            mounts.push(readonly_bind(submount, false)?);
        }
    }

    let tmp_bytes = settings.spec.resources.memory.unwrap_or(DEFAULT_TMP_BYTES);
    mounts.extend(kernel_filesystems(settings.id_range.is_some())?);
    mounts.push(mount(
        "/tmp",
        "tmpfs",
        "tmpfs",
        &["nosuid", "nodev", "mode=1777", &format!("size={tmp_bytes}")],
    )?);
    mounts.push(mount(
        "/run",
        "tmpfs",
        "tmpfs",
        &[
            "nosuid",
            "nodev",
            "noexec",
            "mode=755",
            &format!("size={RUN_BYTES}"),
        ],
    )?);
    push_volumes(&mut mounts, settings.volumes, recursive_readonly)?;
    Ok(mounts)
}

fn mount(
    destination: impl AsRef<Path>,
    typ: &str,
    source: impl AsRef<Path>,
    options: &[&str],
) -> Result<Mount, OciSpecError> {
    MountBuilder::default()
        .destination(destination.as_ref())
        .typ(typ)
        .source(source.as_ref())
        .options(
            options
                .iter()
                .map(|option| option.to_string())
                .collect::<Vec<_>>(),
        )
        .build()
}

/// Appends the volume binds; `recursive_readonly`: `:ro` volumes are read-only all the way
/// down.
fn push_volumes(
    mounts: &mut Vec<Mount>,
    volumes: &[ResolvedVolume],
    recursive_readonly: bool,
) -> Result<(), OciSpecError> {
    for volume in volumes {
        let access = if volume.read_only { "ro" } else { "rw" };
        let mut options = vec!["rbind", access, "nosuid", "nodev"];
        if volume.read_only && recursive_readonly && !volume.file {
            options.push("rro");
        }
        mounts.push(mount(&volume.target, "bind", &volume.source, &options)?);
    }
    Ok(())
}

/// `/proc`, `/dev` and `/sys` as every sandbox gets them. In a user namespace of its own, whose
/// network namespace belongs to the host's user namespace, the kernel refuses a new sysfs, so
/// the host's is bound read-only (as crun falls back to, and rootless engines do).
fn kernel_filesystems(user_namespace: bool) -> Result<[Mount; 6], OciSpecError> {
    let sys = if user_namespace {
        mount(
            "/sys",
            "bind",
            "/sys",
            &["rbind", "nosuid", "noexec", "nodev", "ro"],
        )?
    } else {
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        )?
    };
    Ok([
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        )?,
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
        sys,
    ])
}

fn resources(settings: &BundleSettings<'_>) -> Result<LinuxResources, OciSpecError> {
    let limits = &settings.spec.resources;
    let mut resources =
        LinuxResourcesBuilder::default().devices(vec![LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .access("rwm")
            .build()?]);
    if let Some(memory) = limits.memory {
        let bytes = i64::try_from(memory).unwrap_or(i64::MAX);
        let mut limit = LinuxMemoryBuilder::default().limit(bytes);
        if settings.swap_limit {
            limit = limit.swap(bytes);
        }
        resources = resources.memory(limit.build()?);
    }
    if let Some(cores) = limits.cpu {
        let quota = (cores * CPU_PERIOD_MICROS as f64)
            .round()
            .max(CPU_QUOTA_MIN_MICROS as f64) as i64;
        resources = resources.cpu(
            LinuxCpuBuilder::default()
                .quota(quota)
                .period(CPU_PERIOD_MICROS)
                .build()?,
        );
    }
    if let Some(pids) = limits.pids.or(settings.default_pids_limit) {
        resources = resources.pids(
            LinuxPidsBuilder::default()
                .limit(i64::try_from(pids).unwrap_or(i64::MAX))
                .build()?,
        );
    }
    resources.build()
}

/// Where named volumes live: `DATA/volumes/<project>/<name>`.
pub(crate) fn named_volume_dir(data_dir: &Path, project: &str, name: &str) -> PathBuf {
    data_dir.join("volumes").join(project).join(name)
}

/// What [`resolve_volumes`] needs to know besides the volumes.
pub(crate) struct VolumeContext<'a> {
    pub data_dir: &'a Path,
    pub project: &'a str,
    /// The instance sees the host filesystem read-only, so a target inside it must already
    /// exist there.
    pub host_root: bool,
    /// The instance's id range: its named volumes are owned by it.
    pub id_range: Option<IdRange>,
    /// Host paths no volume may reach (canonical).
    pub protected_paths: &'a [PathBuf],
    pub host_volumes: &'a [HostVolume],
    /// The instance's own files (its secrets), which may be bound although they lie in the
    /// run root.
    pub own_files: &'a Path,
}

/// Volumes ready to mount, and the paths inside the instance to mask because a bound host
/// directory holds a protected path (`/:/host` hides `/host/var/lib/ward`).
pub(crate) struct ResolvedVolumes {
    pub volumes: Vec<ResolvedVolume>,
    pub masked_paths: Vec<PathBuf>,
}

/// Checks the volumes of a workload, creates its named volumes (owned by its id range) and
/// resolves host paths and the config's host volumes to canonical, unprotected paths.
pub(crate) fn resolve_volumes(
    context: &VolumeContext<'_>,
    volumes: &[VolumeMount],
) -> Result<ResolvedVolumes, RuntimeError> {
    let mut resolved = Vec::with_capacity(volumes.len());
    let mut masked_paths = Vec::new();
    for volume in volumes {
        check_target(&volume.target, context.host_root)?;
        let mut read_only = volume.read_only;
        let source = if volume.is_named() {
            if !valid_volume_name(&volume.source) {
                return Err(RuntimeError::InvalidVolumeName {
                    name: volume.source.clone(),
                });
            }
            match context
                .host_volumes
                .iter()
                .find(|host| host.name == volume.source && host.serves(context.project))
            {
                Some(host) => {
                    read_only |= host.read_only;
                    host.path.clone()
                }
                None => named_volume(context, &volume.source)?,
            }
        } else {
            let path = PathBuf::from(&volume.source);
            let canonical = path
                .canonicalize()
                .map_err(|_| RuntimeError::VolumeSourceMissing {
                    host_path: path.clone(),
                })?;
            // The path was approved as it is written; one that now goes through a link leads
            // somewhere else than what was approved.
            if canonical != path {
                return Err(RuntimeError::VolumeSourceMoved {
                    host_path: path,
                    now: canonical,
                });
            }
            if !canonical.starts_with(context.own_files) {
                if let Some(protected) = context
                    .protected_paths
                    .iter()
                    .find(|protected| canonical.starts_with(protected))
                {
                    return Err(RuntimeError::ProtectedVolumeSource {
                        host_path: canonical,
                        protected: protected.clone(),
                    });
                }
                masked_paths.extend(context.protected_paths.iter().filter_map(|protected| {
                    let inside = protected.strip_prefix(&canonical).ok()?;
                    Some(Path::new(&volume.target).join(inside))
                }));
            }
            canonical
        };
        resolved.push(ResolvedVolume {
            file: source.is_file(),
            source,
            target: volume.target.clone(),
            read_only,
        });
    }
    Ok(ResolvedVolumes {
        volumes: resolved,
        masked_paths,
    })
}

/// The directory of a named volume, made on first use; in an instance with an id range, its
/// files are given to that range once (and stay so: the range is the project's).
fn named_volume(context: &VolumeContext<'_>, name: &str) -> Result<PathBuf, RuntimeError> {
    let dir = named_volume_dir(context.data_dir, context.project, name);
    fs::create_dir_all(&dir).map_err(|source| RuntimeError::io("create volume", &dir, source))?;
    if let Some(range) = context.id_range {
        if !idmap::owned_by_range(&dir, range) {
            idmap::shift_ownership(&dir, range)
                .map_err(|source| RuntimeError::io("give the workload's users", &dir, source))?;
        }
    }
    Ok(dir)
}

fn valid_volume_name(name: &str) -> bool {
    let valid_character =
        |character: char| character.is_ascii_alphanumeric() || matches!(character, '.' | '_' | '-');
    !name.is_empty()
        && name != "."
        && name != ".."
        && name.len() <= 128
        && name.chars().all(valid_character)
}

fn check_target(target: &str, host_root: bool) -> Result<(), RuntimeError> {
    let invalid = |reason| {
        Err(RuntimeError::InvalidVolumeTarget {
            target: target.to_string(),
            reason,
        })
    };
    let path = Path::new(target);
    if !path.is_absolute() {
        return invalid("must be an absolute path");
    }
    if path
        .components()
        .any(|component| matches!(component, Component::ParentDir))
    {
        return invalid("must not contain '..'");
    }
    let Some(Component::Normal(first)) = path.components().nth(1) else {
        return invalid("cannot be the root directory");
    };
    let first = first.to_string_lossy();
    if matches!(first.as_ref(), "proc" | "sys" | "dev") {
        return invalid("is reserved for the kernel's filesystems");
    }
    let inside_host_filesystem = !PRIVATE_TOP_LEVEL.contains(&first.as_ref())
        && Path::new("/").join(first.as_ref()).exists();
    if host_root && inside_host_filesystem && !path.exists() {
        return invalid(
            "does not exist on the host, whose filesystem the workload sees read-only: \
             mount volumes on an existing directory, under /tmp, or on a new top-level directory",
        );
    }
    Ok(())
}

/// One entry of the host's top level as the sandbox's root shows it before anything is
/// mounted: an empty directory, or the same symbolic link (`/bin -> usr/bin`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SkeletonEntry {
    Directory(String),
    Link { name: String, target: PathBuf },
}

/// The entries of the host's top level, plus the private directories (`/proc`, `/tmp`, …).
pub(crate) fn host_skeleton() -> io::Result<Vec<SkeletonEntry>> {
    let mut skeleton = Vec::new();
    for entry in fs::read_dir("/")? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if PRIVATE_TOP_LEVEL.contains(&name.as_str()) {
            continue;
        }
        let kind = entry.file_type()?;
        if kind.is_symlink() {
            skeleton.push(SkeletonEntry::Link {
                target: fs::read_link(entry.path())?,
                name,
            });
        } else if kind.is_dir() {
            skeleton.push(SkeletonEntry::Directory(name));
        }
    }
    skeleton.extend(
        PRIVATE_TOP_LEVEL
            .iter()
            .map(|private| SkeletonEntry::Directory(private.to_string())),
    );
    Ok(skeleton)
}

/// Makes `root`, the root directory of one process instance (in its run directory, in
/// memory): the host's top level as empty directories and links, plus the mount point of
/// every volume that is not inside a host directory, so that mounts never change a root
/// another instance uses. Owned by the instance's root user (`owner`, host ids), as a
/// root filesystem is; the OCI runtime makes it read-only.
pub(crate) fn make_instance_root(
    root: &Path,
    skeleton: &[SkeletonEntry],
    volumes: &[ResolvedVolume],
    owner: Option<(u32, u32)>,
) -> io::Result<()> {
    match fs::remove_dir_all(root) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    fs::create_dir(root)?;
    for entry in skeleton {
        match entry {
            SkeletonEntry::Directory(name) => fs::create_dir(root.join(name))?,
            SkeletonEntry::Link { name, target } => {
                std::os::unix::fs::symlink(target, root.join(name))?
            }
        }
    }
    let chown = |path: &Path| match owner {
        Some((uid, gid)) => std::os::unix::fs::lchown(path, Some(uid), Some(gid)),
        None => Ok(()),
    };
    let from_host = |first: &std::ffi::OsStr| {
        skeleton.iter().any(|entry| match entry {
            SkeletonEntry::Directory(name) | SkeletonEntry::Link { name, .. } => {
                first == name.as_str()
            }
        })
    };
    for volume in volumes {
        let target = Path::new(&volume.target);
        let Some(Component::Normal(first)) = target.components().nth(1) else {
            continue;
        };
        if from_host(first) {
            continue;
        }
        // A mount point of the instance's own: made here, with its parents.
        let mount_point = root.join(target.strip_prefix("/").unwrap_or(target));
        let parent = if volume.file {
            mount_point.parent().unwrap_or(root).to_path_buf()
        } else {
            mount_point.clone()
        };
        fs::create_dir_all(&parent)?;
        if volume.file && !mount_point.exists() {
            fs::File::create(&mount_point)?;
        }
        let mut made = Some(mount_point.as_path());
        while let Some(path) = made.filter(|path| *path != root) {
            chown(path)?;
            made = path.parent();
        }
    }
    chown(root)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use ward_spec::{Resources, RestartPolicy, WorkloadKind};

    use serde_json::{json, Value};

    use super::*;

    fn spec(network: NetworkMode) -> WorkloadSpec {
        WorkloadSpec {
            name: "web".into(),
            kind: WorkloadKind::Process,
            image: None,
            command: Some(vec!["sleep".into(), "1".into()]),
            entrypoint: None,
            tty: false,
            workdir: Some("/srv".into()),
            env: BTreeMap::from([("GREETING".to_string(), "hello".to_string())]),
            resources: Resources {
                cpu: Some(1.5),
                memory: Some(64 << 20),
                pids: Some(64),
                gpu: None,
                disk: None,
            },
            ports: Vec::new(),
            publish_all: false,
            volumes: Vec::new(),
            secrets: Vec::new(),
            network,
            userns: ward_spec::UserNamespace::Private,
            restart: RestartPolicy::default(),
            health: None,
            replicas: 1,
            autoscale: None,
            heal: Default::default(),
            labels: BTreeMap::new(),
        }
    }

    fn config(spec: &WorkloadSpec, recursive_readonly: bool) -> Value {
        let root = RootFilesystem::Host {
            root: PathBuf::from("/run/instances/default/web/0/root"),
            top_level_dirs: vec!["etc".into(), "usr".into()],
            recursive_readonly,
            submounts: vec![PathBuf::from("/usr/share/mnt")],
        };
        let volumes = [ResolvedVolume {
            source: "/data/volumes/default/data".into(),
            target: "/data".into(),
            read_only: true,
            file: false,
        }];
        let masked = [PathBuf::from("/data")];
        oci_config(&BundleSettings {
            spec,
            command: spec.command.as_deref().unwrap_or_default(),
            root: &root,
            volumes: &volumes,
            masked_paths: &masked,
            cgroups_path: "/ward/ward.default.web.0".into(),
            nofile_hard_limit: 20_000,
            cgroup_namespace: true,
            swap_limit: true,
            seccomp_bpf: None,
            network_namespace: None,
            id_range: None,
            default_pids_limit: Some(2048),
        })
        .map(|config| serde_json::to_value(config).expect("JSON"))
        .expect("a valid spec")
    }

    fn destinations(config: &Value) -> Vec<&str> {
        config["mounts"]
            .as_array()
            .expect("mounts")
            .iter()
            .filter_map(|mount| mount["destination"].as_str())
            .collect()
    }

    #[test]
    fn process_is_unprivileged_and_limited() {
        let config = config(&spec(NetworkMode::None), true);
        let process = &config["process"];
        assert_eq!(process["args"], json!(["sleep", "1"]));
        assert_eq!(process["cwd"], "/srv");
        assert_eq!(process["noNewPrivileges"], true);
        assert_eq!(process["user"], json!({"uid": 0, "gid": 0}));
        for set in [
            "bounding",
            "effective",
            "inheritable",
            "permitted",
            "ambient",
        ] {
            assert_eq!(
                process["capabilities"][set],
                json!([]),
                "capability set {set}"
            );
        }
        assert_eq!(
            process["rlimits"],
            json!([{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 20000}])
        );
        assert_eq!(
            process["env"],
            json!([
                format!("PATH={DEFAULT_PATH}"),
                "HOSTNAME=web",
                "GREETING=hello"
            ])
        );
        assert_eq!(config["hostname"], "web");
        let resources = &config["linux"]["resources"];
        assert_eq!(
            resources["memory"],
            json!({"limit": 64 << 20, "swap": 64 << 20})
        );
        assert_eq!(
            resources["cpu"],
            json!({"quota": 150_000, "period": 100_000})
        );
        assert_eq!(resources["pids"], json!({"limit": 64}));
        assert_eq!(config["linux"]["cgroupsPath"], "/ward/ward.default.web.0");
        assert_eq!(
            config["linux"]["seccomp"]["defaultAction"],
            "SCMP_ACT_ALLOW"
        );
    }

    #[test]
    fn host_filesystem_is_read_only_with_private_scratch_space() {
        let config = config(&spec(NetworkMode::None), true);
        assert_eq!(
            config["root"],
            json!({"path": "/run/instances/default/web/0/root", "readonly": true})
        );
        let mounts = config["mounts"].as_array().expect("mounts");
        assert_eq!(
            mounts[0]["options"],
            json!(["rbind", "ro", "rro", "nosuid", "nodev"])
        );
        assert_eq!(
            destinations(&config),
            [
                "/etc",
                "/usr",
                "/proc",
                "/dev",
                "/dev/pts",
                "/dev/shm",
                "/dev/mqueue",
                "/sys",
                "/tmp",
                "/run",
                "/data"
            ]
        );
        let tmp = mounts
            .iter()
            .find(|mount| mount["destination"] == "/tmp")
            .expect("/tmp");
        assert_eq!(
            tmp["options"],
            json!(["nosuid", "nodev", "mode=1777", format!("size={}", 64 << 20)])
        );
        let volume = mounts.last().expect("volume");
        assert_eq!(
            volume["options"],
            json!(["rbind", "ro", "nosuid", "nodev", "rro"])
        );
        let masked = config["linux"]["maskedPaths"].as_array().expect("masked");
        assert!(masked.contains(&json!("/data")) && masked.contains(&json!("/proc/kcore")));
    }

    #[test]
    fn without_recursive_readonly_submounts_are_bound_one_by_one() {
        let config = config(&spec(NetworkMode::None), false);
        let mounts = config["mounts"].as_array().expect("mounts");
        assert_eq!(mounts[2]["destination"], "/usr/share/mnt");
        assert_eq!(
            mounts[2]["options"],
            json!(["rbind", "ro", "nosuid", "nodev"])
        );
    }

    #[test]
    fn network_namespace_follows_the_network_mode() {
        let has_network_namespace = |mode| {
            config(&spec(mode), true)["linux"]["namespaces"]
                .as_array()
                .expect("namespaces")
                .iter()
                .any(|namespace| namespace["type"] == "network")
        };
        assert!(has_network_namespace(NetworkMode::None));
        assert!(has_network_namespace(NetworkMode::Bridge));
        assert!(!has_network_namespace(NetworkMode::Host));
    }

    #[test]
    fn volumes_are_checked() {
        let data = tempfile::tempdir().expect("tempdir");
        let data_dir = data.path().canonicalize().expect("canonical");
        let site = data_dir.join("site");
        fs::create_dir_all(site.join("html")).expect("site");
        let protected = [data_dir.join("volumes"), PathBuf::from("/proc")];
        let host_volumes = [HostVolume {
            name: "site".into(),
            path: site.clone(),
            read_only: true,
            projects: Some(vec!["default".into()]),
        }];
        let mount = |source: &str, target: &str| VolumeMount {
            source: source.into(),
            target: target.into(),
            read_only: false,
        };
        let resolve = |volume: VolumeMount| {
            resolve_volumes(
                &VolumeContext {
                    data_dir: &data_dir,
                    project: "default",
                    host_root: true,
                    id_range: None,
                    protected_paths: &protected,
                    host_volumes: &host_volumes,
                    own_files: Path::new("/nonexistent-own-files"),
                },
                &[volume],
            )
        };

        let named = resolve(mount("data", "/tmp/data")).expect("named volume");
        assert_eq!(
            named.volumes[0].source,
            data_dir.join("volumes/default/data")
        );
        assert!(named.volumes[0].source.is_dir());
        let host_volume = resolve(mount("site", "/tmp/site")).expect("host volume");
        assert_eq!(host_volume.volumes[0].source, site);
        assert!(
            host_volume.volumes[0].read_only,
            "the config makes it read-only"
        );
        assert!(matches!(
            resolve(mount("..", "/x")),
            Err(RuntimeError::InvalidVolumeName { .. })
        ));
        assert!(matches!(
            resolve(mount("/no/such/dir", "/x")),
            Err(RuntimeError::VolumeSourceMissing { .. })
        ));
        assert!(matches!(
            resolve(mount(
                &data_dir.join("volumes/default").display().to_string(),
                "/x"
            )),
            Err(RuntimeError::ProtectedVolumeSource { .. })
        ));
        assert!(matches!(
            resolve(mount("/proc/sys", "/x")),
            Err(RuntimeError::ProtectedVolumeSource { .. })
        ));
        // A path approved as written that now goes through a link.
        let link = data_dir.join("link");
        std::os::unix::fs::symlink(data_dir.join("volumes"), &link).expect("symlink");
        assert!(matches!(
            resolve(mount(&link.display().to_string(), "/x")),
            Err(RuntimeError::VolumeSourceMoved { .. })
        ));
        let parent = resolve(mount(&data_dir.display().to_string(), "/host")).expect("parent");
        assert_eq!(parent.masked_paths, [PathBuf::from("/host/volumes")]);
        assert!(matches!(
            resolve(mount("data", "relative")),
            Err(RuntimeError::InvalidVolumeTarget { .. })
        ));
        assert!(matches!(
            resolve(mount("data", "/proc/x")),
            Err(RuntimeError::InvalidVolumeTarget { .. })
        ));
        assert!(matches!(
            resolve(mount("data", "/usr/no-such-dir-for-ward")),
            Err(RuntimeError::InvalidVolumeTarget { .. })
        ));
        assert!(resolve(mount("data", "/ward-new-top-level")).is_ok());
    }

    #[test]
    fn each_instance_root_mirrors_the_host_and_holds_its_own_mount_points() {
        let dir = tempfile::tempdir().expect("tempdir");
        let skeleton = host_skeleton().expect("skeleton");
        let volume = |target: &str, file: bool| ResolvedVolume {
            source: "/data/volumes/default/data".into(),
            target: target.into(),
            read_only: false,
            file,
        };
        let first = dir.path().join("first");
        make_instance_root(
            &first,
            &skeleton,
            &[volume("/x", false), volume("/config/app.yaml", true)],
            None,
        )
        .expect("first root");
        for private in PRIVATE_TOP_LEVEL {
            assert!(first.join(private).is_dir(), "{private} missing");
        }
        assert!(first.join("usr").is_dir());
        assert_eq!(fs::read_dir(first.join("usr")).expect("usr").count(), 0);
        if let Ok(target) = fs::read_link("/bin") {
            assert_eq!(fs::read_link(first.join("bin")).expect("bin link"), target);
        }
        assert!(first.join("x").is_dir());
        assert!(first.join("config/app.yaml").is_file());

        // Another instance's root knows nothing of the first one's mount points.
        let second = dir.path().join("second");
        make_instance_root(&second, &skeleton, &[volume("/x", true)], None).expect("second");
        assert!(second.join("x").is_file());
        assert!(!second.join("config").exists());
        // Made again, a root loses the mount points it no longer has.
        make_instance_root(&first, &skeleton, &[], None).expect("again");
        assert!(!first.join("x").exists());
    }
}
