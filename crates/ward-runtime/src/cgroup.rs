//! An instance's cgroup: where it lives in each hierarchy, its resource usage, and the evidence
//! of OOM kills that the monitor reads before the cgroup is deleted.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::host::{CgroupMode, CGROUP_ROOT};
use crate::ResourceUsage;

/// The cgroup of every instance is `/ward/<project group>/<container id>` in each hierarchy:
/// the instances of one project share a parent, which bounds what they use together.
pub(crate) const CGROUP_PARENT: &str = "ward";

/// The project's group: `ward-<namespace>.<project>`, the first two dot-separated parts of a
/// container id (`ward-<namespace>.<project>.<workload>.<replica>`; names have no dots).
pub(crate) fn project_group(container_id: &str) -> &str {
    match container_id.match_indices('.').nth(1) {
        Some((end, _)) => &container_id[..end],
        None => container_id,
    }
}

pub(crate) fn cgroups_path(container_id: &str) -> String {
    format!(
        "/{CGROUP_PARENT}/{}/{container_id}",
        project_group(container_id)
    )
}

/// Finds the cgroup directories of instances.
#[derive(Clone, Debug)]
pub(crate) struct CgroupLocator {
    pub mode: CgroupMode,
    v1_mounts: BTreeMap<String, PathBuf>,
}

impl CgroupLocator {
    pub fn new(mode: CgroupMode, v1_mounts: BTreeMap<String, PathBuf>) -> CgroupLocator {
        CgroupLocator { mode, v1_mounts }
    }

    /// The instance's directory in the hierarchy of `controller` (the v2 hierarchy on unified hosts).
    pub fn dir(&self, controller: &str, container_id: &str) -> PathBuf {
        self.group_dir(controller, project_group(container_id))
            .join(container_id)
    }

    /// The directory of a project group (see [`project_group`]) in the hierarchy of
    /// `controller`.
    pub fn group_dir(&self, controller: &str, group: &str) -> PathBuf {
        let root = match self.mode {
            CgroupMode::Unified => PathBuf::from(CGROUP_ROOT),
            CgroupMode::Legacy | CgroupMode::Hybrid => self
                .v1_mounts
                .get(controller)
                .cloned()
                .unwrap_or_else(|| Path::new(CGROUP_ROOT).join(controller)),
        };
        root.join(CGROUP_PARENT).join(group)
    }

    /// Whether a project group has a memory cap (a quota's).
    pub fn group_memory_capped(&self, group: &str) -> bool {
        let dir = self.group_dir("memory", group);
        let file = match self.mode {
            CgroupMode::Unified => "memory.max",
            _ => "memory.limit_in_bytes",
        };
        fs::read_to_string(dir.join(file))
            .ok()
            .and_then(|text| text.trim().parse::<u64>().ok())
            .is_some_and(|bytes| bytes < 1 << 60)
    }

    /// Caps the memory of a project group (`None`: no cap), creating the group.
    pub fn set_group_memory_limit(&self, group: &str, limit: Option<u64>) -> std::io::Result<()> {
        let dir = self.group_dir("memory", group);
        fs::create_dir_all(&dir)?;
        let (file, value) = match (self.mode, limit) {
            (CgroupMode::Unified, Some(bytes)) => ("memory.max", bytes.to_string()),
            (CgroupMode::Unified, None) => ("memory.max", "max".to_string()),
            (_, Some(bytes)) => ("memory.limit_in_bytes", bytes.to_string()),
            (_, None) => ("memory.limit_in_bytes", "-1".to_string()),
        };
        if self.mode == CgroupMode::Unified && !dir.join(file).exists() {
            // The memory controller reaches a v2 group only when its parent hands it down.
            if let Some(parent) = dir.parent() {
                fs::write(parent.join("cgroup.subtree_control"), "+memory")?;
            }
        }
        fs::write(dir.join(file), value)
    }

    pub fn usage(&self, container_id: &str) -> Option<ResourceUsage> {
        match self.mode {
            CgroupMode::Unified => {
                let dir = self.dir("", container_id);
                let cpu_stat = fs::read_to_string(dir.join("cpu.stat")).ok()?;
                let usage_usec = keyed_value(&cpu_stat, "usage_usec").unwrap_or(0);
                let memory = read_number(&dir.join("memory.current")).unwrap_or(0);
                let inactive_file = fs::read_to_string(dir.join("memory.stat"))
                    .ok()
                    .and_then(|stat| keyed_value(&stat, "inactive_file"))
                    .unwrap_or(0);
                Some(ResourceUsage {
                    cpu_usage_nanos: usage_usec.saturating_mul(1000),
                    memory_bytes: memory.saturating_sub(inactive_file),
                    pids: read_number(&dir.join("pids.current")).unwrap_or(0),
                })
            }
            CgroupMode::Legacy | CgroupMode::Hybrid => {
                let memory_dir = self.dir("memory", container_id);
                let memory = read_number(&memory_dir.join("memory.usage_in_bytes"))?;
                let inactive_file = fs::read_to_string(memory_dir.join("memory.stat"))
                    .ok()
                    .and_then(|stat| keyed_value(&stat, "total_inactive_file"))
                    .unwrap_or(0);
                Some(ResourceUsage {
                    cpu_usage_nanos: read_number(
                        &self.dir("cpuacct", container_id).join("cpuacct.usage"),
                    )
                    .unwrap_or(0),
                    memory_bytes: memory.saturating_sub(inactive_file),
                    pids: read_number(&self.dir("pids", container_id).join("pids.current"))
                        .unwrap_or(0),
                })
            }
        }
    }

    /// Every directory the instance's cgroup has, one per hierarchy.
    pub fn all_dirs(&self, container_id: &str) -> Vec<PathBuf> {
        match self.mode {
            CgroupMode::Unified => vec![self.dir("", container_id)],
            CgroupMode::Legacy | CgroupMode::Hybrid => {
                let mut mounts: Vec<&PathBuf> = self.v1_mounts.values().collect();
                mounts.sort();
                mounts.dedup();
                mounts
                    .into_iter()
                    .map(|mount| {
                        mount
                            .join(CGROUP_PARENT)
                            .join(project_group(container_id))
                            .join(container_id)
                    })
                    .collect()
            }
        }
    }
}

/// Whether the memory cgroup `dir` recorded an OOM kill. `killed_by_sigkill` is used only on
/// kernels without an `oom_kill` counter: then a SIGKILL after the limit was hit counts.
pub(crate) fn oom_killed(mode: CgroupMode, dir: &Path, killed_by_sigkill: bool) -> bool {
    let (file, fallback_counter) = match mode {
        CgroupMode::Unified => ("memory.events", Some("oom")),
        CgroupMode::Legacy | CgroupMode::Hybrid => ("memory.oom_control", None),
    };
    let text = fs::read_to_string(dir.join(file)).unwrap_or_default();
    if let Some(kills) = keyed_value(&text, "oom_kill") {
        return kills > 0;
    }
    if !killed_by_sigkill {
        return false;
    }
    match fallback_counter {
        Some(counter) => keyed_value(&text, counter).is_some_and(|count| count > 0),
        None => read_number(&dir.join("memory.failcnt")).is_some_and(|failures| failures > 0),
    }
}

/// The value of `key` in a flat keyed file (`key value` per line).
fn keyed_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(' ')?;
        (name == key).then(|| value.trim().parse().ok()).flatten()
    })
}

fn read_number(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oom_kills_are_read_from_the_counters() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(
            dir.path().join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )
        .expect("write");
        assert!(oom_killed(CgroupMode::Hybrid, dir.path(), false));
        fs::write(
            dir.path().join("memory.events"),
            "low 0\nhigh 0\nmax 4\noom 1\noom_kill 0\n",
        )
        .expect("write");
        assert!(!oom_killed(CgroupMode::Unified, dir.path(), true));
    }

    #[test]
    fn without_a_counter_a_sigkill_at_the_limit_counts() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(
            dir.path().join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\n",
        )
        .expect("write");
        fs::write(dir.path().join("memory.failcnt"), "12\n").expect("write");
        assert!(oom_killed(CgroupMode::Legacy, dir.path(), true));
        assert!(!oom_killed(CgroupMode::Legacy, dir.path(), false));
    }
}
