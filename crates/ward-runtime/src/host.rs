//! What the runtime needs to know about the host: the cgroup layout, the caller's limits, kernel
//! features and the top of the host filesystem that process workloads see read-only.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::RuntimeError;

/// How cgroups are mounted on this host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupMode {
    /// Only v1 controllers, under `/sys/fs/cgroup/<controller>`.
    Legacy,
    /// v1 controllers plus a (mostly empty) v2 hierarchy at `/sys/fs/cgroup/unified`.
    Hybrid,
    /// Pure cgroup v2 at `/sys/fs/cgroup`.
    Unified,
}

impl CgroupMode {
    pub fn as_str(self) -> &'static str {
        match self {
            CgroupMode::Legacy => "legacy",
            CgroupMode::Hybrid => "hybrid",
            CgroupMode::Unified => "unified",
        }
    }
}

/// Where the cgroup hierarchies are mounted.
pub(crate) const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// The v2 hierarchy of a hybrid host.
pub(crate) const HYBRID_UNIFIED_MOUNT: &str = "/sys/fs/cgroup/unified";

/// Top-level host directories that the sandbox gets fresh, private mounts for instead of the
/// host's own: kernel interfaces, scratch space, and `/run`, whose sockets (D-Bus, systemd,
/// container engines) would let uid 0 in the sandbox act as root on the host.
pub(crate) const PRIVATE_TOP_LEVEL: [&str; 5] = ["proc", "sys", "dev", "tmp", "run"];

/// The memory-backed directory every Linux host has.
const SHARED_MEMORY: &str = "/dev/shm";

/// Where a daemon keeps what must not outlive the host's uptime nor reach a disk: each
/// instance's runtime files (its OCI bundle, the monitor's records), the OCI runtime's state
/// and secret files. That is `/dev/shm/ward-<namespace>` where `/dev/shm` is a tmpfs, as it is
/// on every common distribution, with `DATA/run` a link to it; elsewhere `DATA/run` itself,
/// on disk, and `in_memory` says so.
#[derive(Clone, Debug)]
pub(crate) struct RunRoot {
    pub path: PathBuf,
    pub in_memory: bool,
}

impl RunRoot {
    /// Finds the run root of the daemon whose data directory is `data_dir` (`namespace` tells
    /// it from other daemons') and creates it (mode 0700; one that is there must be this
    /// user's directory alone).
    pub fn prepare(namespace: &str, data_dir: &Path) -> Result<RunRoot, RuntimeError> {
        RunRoot::prepare_in(Path::new(SHARED_MEMORY), namespace, data_dir)
    }

    /// [`RunRoot::prepare`] with `shared_memory` in place of `/dev/shm`.
    fn prepare_in(
        shared_memory: &Path,
        namespace: &str,
        data_dir: &Path,
    ) -> Result<RunRoot, RuntimeError> {
        let link = data_dir.join("run");
        if !is_tmpfs(shared_memory) {
            private_directory(&link)?;
            return Ok(RunRoot {
                path: link,
                in_memory: false,
            });
        }
        let path = shared_memory.join(format!("ward-{namespace}"));
        private_directory(&path)?;
        // Others may pass through, not list: runc finds an instance's root by its full path
        // from inside the instance's user namespace. What lies below is private by itself
        // (the runtime's state and the secrets in directories of mode 0700, bundles 0600).
        fs::set_permissions(&path, fs::Permissions::from_mode(0o711))
            .map_err(|source| RuntimeError::io("open", &path, source))?;
        if let Err(error) = point_link_at(&link, &path) {
            tracing::warn!(link = %link.display(), %error, "cannot link the run root into the data directory");
        }
        Ok(RunRoot {
            path,
            in_memory: true,
        })
    }
}

/// Makes `link` a symbolic link to `target`, replacing a link elsewhere or an empty directory.
fn point_link_at(link: &Path, target: &Path) -> std::io::Result<()> {
    match fs::symlink_metadata(link) {
        Ok(metadata) if metadata.file_type().is_symlink() => {
            if fs::read_link(link)? == target {
                return Ok(());
            }
            fs::remove_file(link)?;
        }
        Ok(metadata) if metadata.is_dir() => fs::remove_dir(link)?,
        Ok(_) => fs::remove_file(link)?,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    std::os::unix::fs::symlink(target, link)
}

/// Creates `path` as a directory of mode 0700, or checks that the one there is a directory
/// (not a link) of this user's that no one else can list or change: `/dev/shm` is writable
/// by everyone.
pub(crate) fn private_directory(path: &Path) -> Result<(), RuntimeError> {
    match fs::DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => return Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(source) => return Err(RuntimeError::io("create", path, source)),
    }
    let metadata =
        fs::symlink_metadata(path).map_err(|source| RuntimeError::io("inspect", path, source))?;
    // Passing through (search) is allowed; listing and changing are not.
    let private = metadata.is_dir()
        && metadata.uid() == nix::unistd::geteuid().as_raw()
        && metadata.permissions().mode() & 0o066 == 0;
    if private {
        Ok(())
    } else {
        Err(RuntimeError::io(
            "trust",
            path,
            std::io::Error::other(
                "it is not a directory of mode 0700 or 0711 owned by this user; remove it",
            ),
        ))
    }
}

fn is_tmpfs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .is_ok_and(|stats| stats.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC)
}

/// Puts the calling thread in the `SCHED_IDLE` class, for background work (measuring
/// volumes) that must never take a core from a request; false if the kernel refused.
pub fn make_this_thread_idle() -> bool {
    let parameters = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is the calling thread; the parameters outlive the call.
    unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &parameters) == 0 }
}

#[derive(Clone, Debug)]
pub(crate) struct HostInfo {
    pub cgroup_mode: CgroupMode,
    /// Mount point of each v1 controller (`memory`, `cpuacct`, `pids`, …, `name=systemd`).
    pub cgroup_v1_mounts: BTreeMap<String, PathBuf>,
    /// The caller's hard `RLIMIT_NOFILE`; the sandbox never asks for more.
    pub nofile_hard_limit: u64,
    /// Whether the kernel has `mount_setattr(2)`, which recursive read-only binds need.
    pub kernel_recursive_readonly: bool,
    pub cgroup_namespace: bool,
    /// Whether the kernel makes user namespaces, which workloads run in by default.
    pub user_namespaces: bool,
    /// Whether the host swaps and the memory controller accounts swap, so a swap limit applies.
    pub swap_limit: bool,
    /// Names of the host's top-level directories that are bound read-only into the sandbox.
    pub top_level_dirs: Vec<String>,
    /// Those of them that users other than their owner may enter: all a workload in its own
    /// user namespace can use (`/root` or `/lost+found` stay empty directories there).
    pub open_top_level_dirs: Vec<String>,
}

impl HostInfo {
    pub fn detect() -> HostInfo {
        let cgroup_mode = detect_cgroup_mode();
        let mounts = read_mountinfo();
        let cgroup_v1_mounts = match cgroup_mode {
            CgroupMode::Unified => BTreeMap::new(),
            CgroupMode::Legacy | CgroupMode::Hybrid => cgroup_v1_mounts(&mounts),
        };
        let swap_limit = host_has_swap()
            && match cgroup_mode {
                CgroupMode::Unified => true,
                CgroupMode::Legacy | CgroupMode::Hybrid => cgroup_v1_mounts
                    .get("memory")
                    .is_some_and(|memory| memory.join("memory.memsw.limit_in_bytes").exists()),
            };
        let top_level_dirs = top_level_dirs();
        HostInfo {
            cgroup_mode,
            cgroup_v1_mounts,
            nofile_hard_limit: nofile_hard_limit(),
            kernel_recursive_readonly: kernel_has_mount_setattr(),
            cgroup_namespace: Path::new("/proc/self/ns/cgroup").exists(),
            user_namespaces: Path::new("/proc/self/ns/user").exists()
                && fs::read_to_string("/proc/sys/user/max_user_namespaces")
                    .ok()
                    .and_then(|text| text.trim().parse::<u64>().ok())
                    .is_none_or(|limit| limit > 0),
            swap_limit,
            open_top_level_dirs: top_level_dirs
                .iter()
                .filter(|name| {
                    fs::metadata(Path::new("/").join(name))
                        .is_ok_and(|metadata| metadata.permissions().mode() & 0o001 != 0)
                })
                .cloned()
                .collect(),
            top_level_dirs,
        }
    }

    /// Mount points below the read-only top-level directories, parents first: what must be
    /// remounted read-only one by one where recursive read-only binds are not available.
    pub fn submounts_of_top_level_dirs(&self) -> Vec<PathBuf> {
        read_mountinfo()
            .into_iter()
            .map(|mount| mount.mount_point)
            .filter(|mount_point| {
                let mut components = mount_point.components().skip(1);
                let first = components
                    .next()
                    .and_then(|component| component.as_os_str().to_str());
                let below = components.next().is_some();
                below
                    && first.is_some_and(|first| self.top_level_dirs.iter().any(|dir| dir == first))
            })
            .collect()
    }
}

fn detect_cgroup_mode() -> CgroupMode {
    let is_cgroup2 = |path: &str| {
        nix::sys::statfs::statfs(path)
            .is_ok_and(|stat| stat.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
    };
    if is_cgroup2(CGROUP_ROOT) {
        CgroupMode::Unified
    } else if is_cgroup2(HYBRID_UNIFIED_MOUNT) {
        CgroupMode::Hybrid
    } else {
        CgroupMode::Legacy
    }
}

/// The mount point of every v1 hierarchy by the controllers it carries: the ones the runtime
/// reads (`memory`, `cpu`, `cpuacct`, `pids`), and every other one a runtime makes an
/// instance's cgroup in (`blkio`, `devices`, `name=systemd`, …), which removal must visit.
fn cgroup_v1_mounts(mounts: &[MountInfo]) -> BTreeMap<String, PathBuf> {
    let known: Vec<String> = fs::read_to_string("/proc/cgroups")
        .unwrap_or_default()
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split_whitespace().next().map(str::to_string))
        .collect();
    let mut controllers = BTreeMap::new();
    for mount in mounts
        .iter()
        .filter(|mount| mount.filesystem_type == "cgroup")
    {
        for option in mount.super_options.split(',') {
            if option.starts_with("name=") || known.iter().any(|known| known == option) {
                controllers
                    .entry(option.to_string())
                    .or_insert_with(|| mount.mount_point.clone());
            }
        }
    }
    controllers
}

fn host_has_swap() -> bool {
    let Ok(meminfo) = fs::read_to_string("/proc/meminfo") else {
        return false;
    };
    meminfo
        .lines()
        .find_map(|line| line.strip_prefix("SwapTotal:"))
        .and_then(|value| value.split_whitespace().next())
        .and_then(|kilobytes| kilobytes.parse::<u64>().ok())
        .is_some_and(|kilobytes| kilobytes > 0)
}

fn nofile_hard_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass and reads nothing else.
    let result = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    if result == 0 {
        limit.rlim_max
    } else {
        1024
    }
}

/// Calls `mount_setattr(-1, "", 0, NULL, 0)`: a kernel without it says ENOSYS, one with it
/// refuses the bad descriptor or the empty arguments.
fn kernel_has_mount_setattr() -> bool {
    // SAFETY: with a NULL attribute pointer and size 0 the kernel reads no memory of ours.
    let result = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            -1 as libc::c_int,
            c"".as_ptr(),
            0 as libc::c_uint,
            std::ptr::null::<u8>(),
            0 as libc::size_t,
        )
    };
    result == 0 || nix::errno::Errno::last() != nix::errno::Errno::ENOSYS
}

fn top_level_dirs() -> Vec<String> {
    let Ok(entries) = fs::read_dir("/") else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_dir()))
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| !PRIVATE_TOP_LEVEL.contains(&name.as_str()))
        .collect();
    names.sort();
    names
}

/// One line of `/proc/self/mountinfo`.
#[derive(Clone, Debug)]
pub(crate) struct MountInfo {
    pub mount_point: PathBuf,
    pub filesystem_type: String,
    pub super_options: String,
}

pub(crate) fn read_mountinfo() -> Vec<MountInfo> {
    fs::read_to_string("/proc/self/mountinfo")
        .map(|text| text.lines().filter_map(parse_mountinfo_line).collect())
        .unwrap_or_default()
}

fn parse_mountinfo_line(line: &str) -> Option<MountInfo> {
    let (before, after) = line.split_once(" - ")?;
    let mount_point = before.split(' ').nth(4)?;
    let mut after = after.split(' ');
    let filesystem_type = after.next()?.to_string();
    let _source = after.next()?;
    let super_options = after.next().unwrap_or_default().to_string();
    Some(MountInfo {
        mount_point: PathBuf::from(unescape_octal(mount_point)),
        filesystem_type,
        super_options,
    })
}

/// mountinfo writes space, tab, newline and backslash in paths as `\ooo`.
fn unescape_octal(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = bytes.get(index + 1..index + 4).filter(|digits| {
            bytes[index] == b'\\' && digits.iter().all(|digit| (b'0'..=b'7').contains(digit))
        });
        match escaped {
            Some(digits) => {
                let value = digits
                    .iter()
                    .fold(0u32, |value, digit| value * 8 + u32::from(digit - b'0'));
                out.push(u8::try_from(value).unwrap_or(b'?'));
                index += 4;
            }
            None => {
                out.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_run_root_is_the_data_directory_s_own_where_shared_memory_is_on_disk() {
        let disk = tempfile::tempdir_in("/var/tmp").expect("tempdir");
        if is_tmpfs(disk.path()) {
            return;
        }
        let data = tempfile::tempdir().expect("tempdir");
        let root = RunRoot::prepare_in(disk.path(), "0123abcd", data.path()).expect("prepare");
        assert!(!root.in_memory);
        assert_eq!(root.path, data.path().join("run"));
        let metadata = fs::symlink_metadata(&root.path).expect("run");
        assert!(metadata.is_dir() && metadata.permissions().mode() & 0o777 == 0o700);
        assert!(!disk.path().join("ward-0123abcd").exists());
    }

    #[test]
    fn the_run_root_in_memory_is_private_and_linked_from_the_data_directory() {
        let shared_memory = Path::new(SHARED_MEMORY);
        if !is_tmpfs(shared_memory) {
            return;
        }
        let data = tempfile::tempdir().expect("tempdir");
        let namespace = format!("test-{}", std::process::id());
        let target = shared_memory.join(format!("ward-{namespace}"));
        // An empty directory from an older layout gives way to the link.
        fs::create_dir(data.path().join("run")).expect("old run dir");
        let root = RunRoot::prepare_in(shared_memory, &namespace, data.path()).expect("prepare");
        assert!(root.in_memory);
        assert_eq!(root.path, target);
        assert_eq!(
            fs::read_link(data.path().join("run")).expect("link"),
            target
        );
        assert_eq!(
            fs::metadata(&target).expect("root").permissions().mode() & 0o777,
            0o711,
            "others may pass through, not list"
        );
        // Again, as at every daemon start.
        RunRoot::prepare_in(shared_memory, &namespace, data.path()).expect("prepare again");
        // One that anybody could have made is refused, and named.
        fs::set_permissions(&target, fs::Permissions::from_mode(0o755)).expect("chmod");
        let refused = RunRoot::prepare_in(shared_memory, &namespace, data.path())
            .expect_err("a directory others may enter")
            .to_string();
        assert!(refused.contains(&target.display().to_string()), "{refused}");
        fs::remove_dir(&target).expect("clean up");
    }

    #[test]
    fn mountinfo_lines_parse_with_escaped_spaces() {
        let line = "42 27 254:0 /run/netns /run/my\\040netns rw,relatime shared:1 - ext4 /dev/vda rw,discard";
        let mount = parse_mountinfo_line(line).expect("parses");
        assert_eq!(mount.mount_point, PathBuf::from("/run/my netns"));
        assert_eq!(mount.filesystem_type, "ext4");
        assert_eq!(mount.super_options, "rw,discard");
    }

    #[test]
    fn v1_controllers_come_from_super_options() {
        let mounts: Vec<MountInfo> = [
            "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct",
            "40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd",
            "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw",
        ]
        .iter()
        .filter_map(|line| parse_mountinfo_line(line))
        .collect();
        let controllers = cgroup_v1_mounts(&mounts);
        assert_eq!(
            controllers.get("cpuacct"),
            Some(&PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"))
        );
        assert_eq!(
            controllers.get("cpu"),
            Some(&PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"))
        );
        assert_eq!(
            controllers.get("name=systemd"),
            Some(&PathBuf::from("/sys/fs/cgroup/systemd"))
        );
        assert_eq!(controllers.len(), 3, "rw and xattr are not controllers");
    }
}

/// Bytes received and sent on the interfaces of process `pid`'s network namespace, loopback
/// aside: for an instance with a namespace of its own.
pub fn network_bytes_of(pid: u32) -> Option<(u64, u64)> {
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).ok()?;
    Some(network_bytes(&table))
}

/// Received and sent bytes summed over `/proc/net/dev`'s interfaces but `lo`.
fn network_bytes(table: &str) -> (u64, u64) {
    let mut totals = (0u64, 0u64);
    for line in table.lines().skip(2) {
        let Some((interface, counters)) = line.split_once(':') else {
            continue;
        };
        if interface.trim() == "lo" {
            continue;
        }
        let counters: Vec<u64> = counters
            .split_whitespace()
            .map(|field| field.parse().unwrap_or(0))
            .collect();
        if counters.len() >= 9 {
            totals.0 = totals.0.saturating_add(counters[0]);
            totals.1 = totals.1.saturating_add(counters[8]);
        }
    }
    totals
}

#[cfg(test)]
mod network_tests {
    #[test]
    fn interface_counters_are_summed_without_loopback() {
        let table = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0
  eth0:    5000      50    0    0    0     0          0         0     7000      70    0    0    0     0       0          0
";
        assert_eq!(super::network_bytes(table), (5000, 7000));
    }
}
