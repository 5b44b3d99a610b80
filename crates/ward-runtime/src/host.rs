//! What the runtime needs to know about the host: the cgroup layout, the caller's limits, kernel
//! features and the top of the host filesystem that process workloads see read-only.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

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

#[derive(Clone, Debug)]
pub(crate) struct HostInfo {
    pub cgroup_mode: CgroupMode,
    /// Mount point of each v1 controller (`memory`, `cpuacct`, `pids`, …) by name.
    pub cgroup_v1_mounts: BTreeMap<String, PathBuf>,
    /// The caller's hard `RLIMIT_NOFILE`; the sandbox never asks for more.
    pub nofile_hard_limit: u64,
    /// Whether the kernel has `mount_setattr(2)`, which recursive read-only binds need.
    pub kernel_recursive_readonly: bool,
    pub cgroup_namespace: bool,
    /// Whether the host swaps and the memory controller accounts swap, so a swap limit applies.
    pub swap_limit: bool,
    /// Names of the host's top-level directories that are bound read-only into the sandbox.
    pub top_level_dirs: Vec<String>,
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
        HostInfo {
            cgroup_mode,
            cgroup_v1_mounts,
            nofile_hard_limit: nofile_hard_limit(),
            kernel_recursive_readonly: kernel_has_mount_setattr(),
            cgroup_namespace: Path::new("/proc/self/ns/cgroup").exists(),
            swap_limit,
            top_level_dirs: top_level_dirs(),
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

/// The v1 controllers the runtime reads.
const CGROUP_V1_CONTROLLERS_USED: [&str; 4] = ["memory", "cpu", "cpuacct", "pids"];

fn cgroup_v1_mounts(mounts: &[MountInfo]) -> BTreeMap<String, PathBuf> {
    let mut controllers = BTreeMap::new();
    for mount in mounts
        .iter()
        .filter(|mount| mount.filesystem_type == "cgroup")
    {
        for option in mount.super_options.split(',') {
            if CGROUP_V1_CONTROLLERS_USED.contains(&option) {
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
        assert_eq!(controllers.len(), 2);
    }
}
