//! An instance's cgroup: where it lives in each hierarchy, its resource usage, and the evidence
//! of OOM kills that the monitor reads before the cgroup is deleted.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::host::{CgroupMode, CGROUP_ROOT};
use crate::ResourceUsage;

/// The cgroup of every instance is `/ward/<project group>/<container id>` in each hierarchy:
/// the instances of one project share a parent, which bounds what they use together.
pub(crate) const CGROUP_PARENT: &str = "ward";
/// The CFS period of a project group's CPU cap.
const CPU_PERIOD_MICROS: u64 = 100_000;
/// The smallest CPU quota the kernel accepts.
const CPU_QUOTA_MIN_MICROS: u64 = 1_000;

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

/// Finds the cgroup directories of instances, and reads their usage.
#[derive(Clone, Debug)]
pub(crate) struct CgroupLocator {
    pub mode: CgroupMode,
    v1_mounts: BTreeMap<String, PathBuf>,
    /// Each instance's usage files, kept open between readings.
    open_files: Arc<Mutex<OpenUsageFiles>>,
}

/// Readings between sweeps of the files of instances no longer read.
const USAGE_SWEEP_EVERY: u64 = 1024;
/// An instance not read for this long has its files closed.
const USAGE_FILES_IDLE: std::time::Duration = std::time::Duration::from_secs(120);

#[derive(Debug, Default)]
struct OpenUsageFiles {
    files: HashMap<String, UsageFiles>,
    readings: u64,
}

/// One instance's usage files, open: memory in use, memory statistics, CPU, processes and
/// block I/O (any but the first may be missing).
#[derive(Debug)]
struct UsageFiles {
    files: [Option<fs::File>; 5],
    used: std::time::Instant,
}

impl UsageFiles {
    /// `None` when the first (the memory in use) cannot be opened: no such cgroup.
    fn open(paths: &[PathBuf; 5]) -> Option<UsageFiles> {
        let files = paths.each_ref().map(|path| fs::File::open(path).ok());
        files[0].as_ref()?;
        Some(UsageFiles {
            files,
            used: std::time::Instant::now(),
        })
    }

    /// The whole text of file `index`, read again from its start.
    fn read(&self, index: usize) -> Option<String> {
        use std::os::unix::fs::FileExt;
        let file = self.files[index].as_ref()?;
        let mut text = Vec::with_capacity(4096);
        let mut buffer = [0u8; 4096];
        loop {
            let read = file.read_at(&mut buffer, text.len() as u64).ok()?;
            if read == 0 {
                break;
            }
            text.extend_from_slice(&buffer[..read]);
            if text.len() > 1 << 20 {
                break;
            }
        }
        String::from_utf8(text).ok()
    }
}

impl CgroupLocator {
    pub fn new(mode: CgroupMode, v1_mounts: BTreeMap<String, PathBuf>) -> CgroupLocator {
        CgroupLocator {
            mode,
            v1_mounts,
            open_files: Arc::default(),
        }
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

    /// Whether a project group carries a quota's cap, of memory or of CPU.
    pub fn group_capped(&self, group: &str) -> bool {
        let read = |controller: &str, file: &str| {
            fs::read_to_string(self.group_dir(controller, group).join(file)).unwrap_or_default()
        };
        match self.mode {
            CgroupMode::Unified => {
                let memory = read("", "memory.max");
                let cpu = read("", "cpu.max");
                (!memory.is_empty() && !memory.starts_with("max"))
                    || (!cpu.is_empty() && !cpu.starts_with("max"))
            }
            _ => {
                let memory_capped = read("memory", "memory.limit_in_bytes")
                    .trim()
                    .parse::<u64>()
                    .is_ok_and(|bytes| bytes < 1 << 60);
                let cpu_capped = read("cpu", "cpu.cfs_quota_us")
                    .trim()
                    .parse::<i64>()
                    .is_ok_and(|quota| quota > 0);
                memory_capped || cpu_capped
            }
        }
    }

    /// Caps what a project group uses together: `memory` bytes and `cpu` cores (`None`: no
    /// cap), creating the group.
    pub fn set_group_limits(
        &self,
        group: &str,
        memory: Option<u64>,
        cpu: Option<f64>,
    ) -> std::io::Result<()> {
        let quota_micros =
            cpu.map(|cores| ((cores * CPU_PERIOD_MICROS as f64) as u64).max(CPU_QUOTA_MIN_MICROS));
        match self.mode {
            CgroupMode::Unified => {
                let dir = self.group_dir("", group);
                fs::create_dir_all(&dir)?;
                if !dir.join("memory.max").exists() || !dir.join("cpu.max").exists() {
                    // Controllers reach a v2 group only when its parent hands them down.
                    if let Some(parent) = dir.parent() {
                        fs::write(parent.join("cgroup.subtree_control"), "+memory +cpu")?;
                    }
                }
                let memory = memory.map_or("max".to_string(), |bytes| bytes.to_string());
                fs::write(dir.join("memory.max"), memory)?;
                let quota = quota_micros.map_or("max".to_string(), |quota| quota.to_string());
                fs::write(dir.join("cpu.max"), format!("{quota} {CPU_PERIOD_MICROS}"))
            }
            CgroupMode::Legacy | CgroupMode::Hybrid => {
                let memory_dir = self.group_dir("memory", group);
                fs::create_dir_all(&memory_dir)?;
                let memory = memory.map_or("-1".to_string(), |bytes| bytes.to_string());
                fs::write(memory_dir.join("memory.limit_in_bytes"), memory)?;
                let cpu_dir = self.group_dir("cpu", group);
                fs::create_dir_all(&cpu_dir)?;
                fs::write(
                    cpu_dir.join("cpu.cfs_period_us"),
                    CPU_PERIOD_MICROS.to_string(),
                )?;
                let quota = quota_micros.map_or("-1".to_string(), |quota| quota.to_string());
                fs::write(cpu_dir.join("cpu.cfs_quota_us"), quota)
            }
        }
    }

    /// Changes a running instance's memory limit in place (as `docker update --memory`),
    /// its swap limit with it where one is set: raised swap first, lowered memory first, so
    /// the kernel never sees memory above memory + swap.
    pub fn set_memory_limit(&self, container_id: &str, bytes: u64) -> std::io::Result<()> {
        match self.mode {
            CgroupMode::Unified => fs::write(
                self.dir("", container_id).join("memory.max"),
                bytes.to_string(),
            ),
            CgroupMode::Legacy | CgroupMode::Hybrid => {
                let dir = self.dir("memory", container_id);
                let memory = dir.join("memory.limit_in_bytes");
                let swap = dir.join("memory.memsw.limit_in_bytes");
                let old = read_number(&memory).ok_or_else(|| {
                    std::io::Error::new(std::io::ErrorKind::NotFound, "no memory cgroup")
                })?;
                // Swap is limited (to the memory limit) where the host accounts it.
                let swap_limited =
                    read_number(&swap).is_some_and(|limit| limit < i64::MAX as u64 / 2);
                if bytes >= old {
                    if swap_limited {
                        fs::write(&swap, bytes.to_string())?;
                    }
                    fs::write(&memory, bytes.to_string())
                } else {
                    fs::write(&memory, bytes.to_string())?;
                    if swap_limited {
                        fs::write(&swap, bytes.to_string())?;
                    }
                    Ok(())
                }
            }
        }
    }

    /// The files an instance's usage is read from, in [`UsageFiles`]' order.
    fn usage_paths(&self, container_id: &str) -> [PathBuf; 5] {
        match self.mode {
            CgroupMode::Unified => {
                let dir = self.dir("", container_id);
                [
                    dir.join("memory.current"),
                    dir.join("memory.stat"),
                    dir.join("cpu.stat"),
                    dir.join("pids.current"),
                    dir.join("io.stat"),
                ]
            }
            CgroupMode::Legacy | CgroupMode::Hybrid => {
                let memory = self.dir("memory", container_id);
                [
                    memory.join("memory.usage_in_bytes"),
                    memory.join("memory.stat"),
                    self.dir("cpuacct", container_id).join("cpuacct.usage"),
                    self.dir("pids", container_id).join("pids.current"),
                    self.dir("blkio", container_id)
                        .join("blkio.throttle.io_service_bytes_recursive"),
                ]
            }
        }
    }

    /// The instance's usage now. Its files stay open between calls (a reading is then one
    /// `pread` per file: no path walk, open or close), and are closed once the cgroup is
    /// gone or the instance has not been read for a while.
    pub fn usage(&self, container_id: &str) -> Option<ResourceUsage> {
        let mut open = self
            .open_files
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = std::time::Instant::now();
        if open.readings.is_multiple_of(USAGE_SWEEP_EVERY) {
            open.files
                .retain(|_, files| now.duration_since(files.used) < USAGE_FILES_IDLE);
        }
        open.readings = open.readings.wrapping_add(1);
        if !open.files.contains_key(container_id) {
            let files = UsageFiles::open(&self.usage_paths(container_id))?;
            open.files.insert(container_id.to_string(), files);
        }
        let files = open.files.get_mut(container_id)?;
        files.used = now;
        let Some(memory) = files
            .read(0)
            .and_then(|text| text.trim().parse::<u64>().ok())
        else {
            // The cgroup is gone (or going): its files say nothing more.
            open.files.remove(container_id);
            return None;
        };
        let unified = self.mode == CgroupMode::Unified;
        let inactive_file = files
            .read(1)
            .and_then(|stat| {
                keyed_value(
                    &stat,
                    if unified {
                        "inactive_file"
                    } else {
                        "total_inactive_file"
                    },
                )
            })
            .unwrap_or(0);
        let cpu_usage_nanos = files
            .read(2)
            .and_then(|text| {
                if unified {
                    keyed_value(&text, "usage_usec").map(|usec| usec.saturating_mul(1000))
                } else {
                    text.trim().parse().ok()
                }
            })
            .unwrap_or(0);
        let pids = files
            .read(3)
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(0);
        let (disk_read_bytes, disk_write_bytes) = files
            .read(4)
            .map(|stat| {
                if unified {
                    io_stat_bytes(&stat)
                } else {
                    let [read, write] = blkio_bytes(&stat);
                    (read, write)
                }
            })
            .unwrap_or_default();
        Some(ResourceUsage {
            cpu_usage_nanos,
            memory_bytes: memory.saturating_sub(inactive_file),
            pids,
            disk_read_bytes,
            disk_write_bytes,
            network: None,
        })
    }

    /// Removes the project groups (see [`project_group`]) of the daemon namespace `namespace`
    /// that hold no instance, in every hierarchy; a group in use stays (the kernel refuses to
    /// remove it). A daemon starting again creates them anew and applies their quotas first.
    pub fn remove_idle_groups(&self, namespace: &str) {
        let prefix = format!("ward-{namespace}.");
        for parent in self
            .hierarchies()
            .iter()
            .map(|root| root.join(CGROUP_PARENT))
        {
            let Ok(entries) = fs::read_dir(&parent) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                if name.to_str().is_some_and(|name| name.starts_with(&prefix)) {
                    let _ = fs::remove_dir(entry.path());
                }
            }
        }
    }

    /// Kills every process in the process cgroups (see [`ProcessCgroup`]) of daemon namespace
    /// `namespace` whose name holds `marker`, and removes those cgroups: what a daemon that
    /// died left running (its model runners). Returns how many processes it killed.
    pub fn reap_process_cgroups(&self, namespace: &str, marker: &str) -> usize {
        let prefix = format!("ward-{namespace}.");
        let mut dirs = Vec::new();
        for parent in self
            .hierarchies()
            .iter()
            .map(|root| root.join(CGROUP_PARENT))
        {
            let Ok(groups) = fs::read_dir(&parent) else {
                continue;
            };
            for group in groups.flatten() {
                if !group.file_name().to_string_lossy().starts_with(&prefix) {
                    continue;
                }
                let Ok(children) = fs::read_dir(group.path()) else {
                    continue;
                };
                dirs.extend(
                    children
                        .flatten()
                        .filter(|child| child.file_name().to_string_lossy().contains(marker))
                        .map(|child| child.path()),
                );
            }
        }
        let mut killed = std::collections::BTreeSet::new();
        for dir in &dirs {
            let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            for pid in procs
                .lines()
                .filter_map(|line| line.trim().parse::<i32>().ok())
            {
                if killed.insert(pid) {
                    // SAFETY: kill(2) with a pid read from the cgroup; no memory is touched.
                    unsafe {
                        libc::kill(pid, libc::SIGKILL);
                    }
                }
            }
        }
        // A killed process leaves its cgroup once the kernel has reaped it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        for dir in &dirs {
            while fs::remove_dir(dir).is_err()
                && dir.exists()
                && std::time::Instant::now() < deadline
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
        killed.len()
    }

    /// Removes the project group `group` from every hierarchy where it holds no instance,
    /// except, with `keep_caps`, the memory and CPU hierarchies that carry a quota's caps.
    pub fn remove_group(&self, group: &str, keep_caps: bool) {
        let capped: Vec<PathBuf> = if keep_caps {
            ["memory", "cpu"]
                .iter()
                .map(|controller| self.group_dir(controller, group))
                .collect()
        } else {
            Vec::new()
        };
        for dir in self
            .hierarchies()
            .iter()
            .map(|root| root.join(CGROUP_PARENT).join(group))
            .filter(|dir| !capped.contains(dir))
        {
            let _ = fs::remove_dir(dir);
        }
    }

    /// Every directory the instance's cgroup has, one per hierarchy.
    pub fn all_dirs(&self, container_id: &str) -> Vec<PathBuf> {
        self.hierarchies()
            .into_iter()
            .map(|root| {
                root.join(CGROUP_PARENT)
                    .join(project_group(container_id))
                    .join(container_id)
            })
            .collect()
    }

    /// The root of every hierarchy: the v2 one on unified hosts, else each v1 mount once
    /// (controllers mounted together share one).
    fn hierarchies(&self) -> Vec<PathBuf> {
        match self.mode {
            CgroupMode::Unified => vec![PathBuf::from(CGROUP_ROOT)],
            CgroupMode::Legacy | CgroupMode::Hybrid => {
                let mut mounts: Vec<PathBuf> = self.v1_mounts.values().cloned().collect();
                mounts.sort();
                mounts.dedup();
                mounts
            }
        }
    }
}

/// The cgroup of a process the daemon starts itself, outside the OCI runtime (a model's
/// runner): a sibling of the project's instances under the project's group, so the project's
/// memory cap bounds it with them, with a memory cap of its own.
#[derive(Clone, Debug)]
pub struct ProcessCgroup {
    mode: CgroupMode,
    /// Its directory in every hierarchy.
    dirs: Vec<PathBuf>,
    /// Its directory in the memory hierarchy.
    memory_dir: PathBuf,
}

impl ProcessCgroup {
    pub(crate) fn create(
        locator: &CgroupLocator,
        container_id: &str,
        memory_max: u64,
    ) -> std::io::Result<ProcessCgroup> {
        let group = project_group(container_id);
        // v1: the hierarchies that count and cap (cpuset would need its CPUs and nodes
        // copied in before a process may join).
        let mut dirs: Vec<PathBuf> = match locator.mode {
            CgroupMode::Unified => vec![locator.dir("", container_id)],
            CgroupMode::Legacy | CgroupMode::Hybrid => ["memory", "pids", "cpu", "cpuacct"]
                .iter()
                .filter(|controller| locator.v1_mounts.contains_key(**controller))
                .map(|controller| locator.dir(controller, container_id))
                .collect(),
        };
        dirs.sort();
        dirs.dedup();
        let memory_dir = match locator.mode {
            CgroupMode::Unified => {
                let group_dir = locator.group_dir("", group);
                fs::create_dir_all(&group_dir)?;
                // Controllers reach a v2 group only when its parents hand them down.
                for dir in [group_dir.parent(), Some(group_dir.as_path())]
                    .into_iter()
                    .flatten()
                {
                    let control =
                        fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
                    if !control.contains("memory") || !control.contains("pids") {
                        fs::write(dir.join("cgroup.subtree_control"), "+memory +cpu +pids")?;
                    }
                }
                locator.dir("", container_id)
            }
            CgroupMode::Legacy | CgroupMode::Hybrid => locator.dir("memory", container_id),
        };
        for dir in &dirs {
            fs::create_dir_all(dir)?;
        }
        match locator.mode {
            CgroupMode::Unified => {
                fs::write(memory_dir.join("memory.max"), memory_max.to_string())?;
                // Swap would let it run past its cap, slowly.
                let _ = fs::write(memory_dir.join("memory.swap.max"), "0");
                let _ = fs::write(memory_dir.join("pids.max"), "4096");
            }
            CgroupMode::Legacy | CgroupMode::Hybrid => {
                fs::write(
                    memory_dir.join("memory.limit_in_bytes"),
                    memory_max.to_string(),
                )?;
                let _ = fs::write(
                    memory_dir.join("memory.memsw.limit_in_bytes"),
                    memory_max.to_string(),
                );
                let _ = fs::write(locator.dir("pids", container_id).join("pids.max"), "4096");
            }
        }
        Ok(ProcessCgroup {
            mode: locator.mode,
            dirs,
            memory_dir,
        })
    }

    /// The `cgroup.procs` file of every hierarchy: writing a process id (or `0`, for the
    /// writer itself) there moves the process in.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs
            .iter()
            .map(|dir| dir.join("cgroup.procs"))
            .collect()
    }

    /// Whether the kernel killed a process here for going past the memory cap.
    pub fn oom_killed(&self) -> bool {
        oom_killed(self.mode, &self.memory_dir, true)
    }

    /// Memory in use, without the page cache it could drop.
    pub fn memory_bytes(&self) -> Option<u64> {
        let (usage, inactive) = match self.mode {
            CgroupMode::Unified => ("memory.current", "inactive_file"),
            CgroupMode::Legacy | CgroupMode::Hybrid => {
                ("memory.usage_in_bytes", "total_inactive_file")
            }
        };
        let used = read_number(&self.memory_dir.join(usage))?;
        let inactive = fs::read_to_string(self.memory_dir.join("memory.stat"))
            .ok()
            .and_then(|stat| keyed_value(&stat, inactive))
            .unwrap_or(0);
        Some(used.saturating_sub(inactive))
    }

    /// Removes it once its processes have gone (the kernel refuses while one is there).
    pub fn remove(&self) {
        for dir in &self.dirs {
            let _ = fs::remove_dir(dir);
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
/// Bytes read and written, summed over devices, from cgroup v2's `io.stat`
/// (`MAJ:MIN rbytes=… wbytes=… rios=…`).
fn io_stat_bytes(stat: &str) -> (u64, u64) {
    let mut totals = (0u64, 0u64);
    for field in stat.split_whitespace() {
        let Some((name, value)) = field.split_once('=') else {
            continue;
        };
        let value: u64 = value.parse().unwrap_or(0);
        match name {
            "rbytes" => totals.0 = totals.0.saturating_add(value),
            "wbytes" => totals.1 = totals.1.saturating_add(value),
            _ => {}
        }
    }
    totals
}

/// Bytes read and written, summed over devices, from cgroup v1's
/// `blkio.throttle.io_service_bytes_recursive` (`MAJ:MIN Read N`, `MAJ:MIN Write N`, …).
fn blkio_bytes(stat: &str) -> [u64; 2] {
    let mut totals = [0u64; 2];
    for line in stat.lines() {
        let mut fields = line.split_whitespace();
        let (Some(_device), Some(operation), Some(value)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let value: u64 = value.parse().unwrap_or(0);
        match operation {
            "Read" => totals[0] = totals[0].saturating_add(value),
            "Write" => totals[1] = totals[1].saturating_add(value),
            _ => {}
        }
    }
    totals
}

fn keyed_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(' ')?;
        (name == key).then(|| value.trim().parse().ok()).flatten()
    })
}

fn read_number(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Starts, ahead of need, the wait that the kernel puts a move between cgroup v1 groups through.
///
/// Moving a process into a cgroup (a write to `cgroup.procs`, as the OCI runtime does for every
/// new container and exec) takes a lock that first waits for an RCU grace period, unless
/// another move took it within the last grace period; on a quiet host that wait is most of
/// the runtime's start (5–20 ms here). A nudge makes this thread move the daemon into the
/// cgroup it is already in: a move that changes nothing, but starts the grace period at once.
/// The daemon nudges as a start or exec begins, so the wait runs while it writes the bundle and
/// the runtime starts up, and the runtime's own move finds the lock ready. Pure cgroup v2
/// hosts need none of this: runtimes there create the container directly in its cgroup.
#[derive(Debug)]
pub(crate) struct AttachWarmer {
    nudges: std::sync::mpsc::SyncSender<()>,
}

impl AttachWarmer {
    /// The warmer of a v1 host, moving the daemon within the `pids` hierarchy (or any other
    /// v1 one); `None` on a unified host or where this process's cgroup cannot be written.
    pub fn start(mode: CgroupMode, v1_mounts: &BTreeMap<String, PathBuf>) -> Option<AttachWarmer> {
        if mode == CgroupMode::Unified {
            return None;
        }
        let own_cgroups = fs::read_to_string("/proc/self/cgroup").ok()?;
        let preferred = ["pids", "memory", "cpu"].map(str::to_string);
        let (mount, own) = preferred
            .into_iter()
            .chain(v1_mounts.keys().cloned())
            .find_map(|controller| {
                let mount = v1_mounts.get(&controller)?;
                Some((mount.clone(), own_cgroup(&own_cgroups, &controller)?))
            })?;
        let procs = mount.join(own.trim_start_matches('/')).join("cgroup.procs");
        let mut file = fs::OpenOptions::new().write(true).open(&procs).ok()?;
        let (nudges, received) = std::sync::mpsc::sync_channel::<()>(1);
        std::thread::Builder::new()
            .name("ward-cgroup-warm".into())
            .spawn(move || {
                while received.recv().is_ok() {
                    // "0" is the writer's own process. Failing changes nothing but the wait.
                    if let Err(error) = std::io::Write::write_all(&mut file, b"0") {
                        tracing::debug!(%error, path = %procs.display(), "cgroup warm-up failed");
                    }
                }
            })
            .ok()?;
        Some(AttachWarmer { nudges })
    }

    /// Starts a grace period now, unless one is already under way.
    pub fn nudge(&self) {
        let _ = self.nudges.try_send(());
    }
}

/// This process's cgroup in the v1 hierarchy of `controller`, from `/proc/self/cgroup`
/// (`ID:controller[,controller…]:PATH` lines).
fn own_cgroup(proc_cgroup: &str, controller: &str) -> Option<String> {
    proc_cgroup.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let _id = fields.next()?;
        let controllers = fields.next()?;
        let path = fields.next()?;
        controllers
            .split(',')
            .any(|name| name == controller)
            .then(|| path.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cgroup_is_read_per_controller() {
        let text = "12:pids:/user.slice\n4:cpu,cpuacct:/a/b\n1:name=systemd:/init.scope\n0::/x\n";
        assert_eq!(own_cgroup(text, "pids").as_deref(), Some("/user.slice"));
        assert_eq!(own_cgroup(text, "cpuacct").as_deref(), Some("/a/b"));
        assert_eq!(own_cgroup(text, "memory"), None);
    }

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
