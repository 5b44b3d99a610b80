//! User ids of the host that workloads run as: each project gets a range of 65,536 host ids of
//! its own, so that root in a workload is an unprivileged user of the host that owns nothing
//! outside its project's volumes and layers.
//!
//! The ranges are kept in `DATA/idmap.json` (`{project: first host id}`) so that a project's
//! volumes keep their owner across restarts. A project's range starts at a slot picked from a
//! hash of the daemon's namespace and the project, then the next free one, so two daemons on a
//! host rarely share a range; should they, their data directories (mode 0700, owned by the
//! host's root) still keep each one's files from the other's workloads.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::RuntimeError;

/// Ids in each range: what a Linux distribution's users and groups need (0–65535).
pub const RANGE_SIZE: u32 = 65_536;
/// The first host id any range may use: far above the ids of the host's own users.
const FIRST_HOST_ID: u32 = 1 << 30;
/// Ranges that fit between [`FIRST_HOST_ID`] and 2^31 + 2^30, below the kernel's invalid
/// id (2^32 - 1) and the overflow ids.
const SLOTS: u32 = 1 << 15;

/// The host ids of one workload: container id `n` is host id `host_base + n` for
/// `n < RANGE_SIZE`, for users and groups alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IdRange {
    pub host_base: u32,
}

impl IdRange {
    pub fn size(self) -> u32 {
        RANGE_SIZE
    }

    /// The host id of container id `id`, if the range holds it.
    pub fn host_id(self, id: u32) -> Option<u32> {
        (id < RANGE_SIZE).then(|| self.host_base + id)
    }

    /// Whether host id `id` belongs to this range.
    pub fn contains_host_id(self, id: u32) -> bool {
        id >= self.host_base && id - self.host_base < RANGE_SIZE
    }

    /// The OCI `uidMappings` / `gidMappings` entry.
    pub fn oci_mapping(
        self,
    ) -> Result<Vec<oci_spec::runtime::LinuxIdMapping>, oci_spec::OciSpecError> {
        Ok(vec![oci_spec::runtime::LinuxIdMappingBuilder::default()
            .container_id(0u32)
            .host_id(self.host_base)
            .size(RANGE_SIZE)
            .build()?])
    }
}

/// The ranges of every project of one daemon.
#[derive(Debug)]
pub(crate) struct IdRanges {
    path: PathBuf,
    namespace: String,
    ranges: Mutex<BTreeMap<String, u32>>,
}

impl IdRanges {
    /// Reads `DATA/idmap.json`; a missing file is an empty one.
    pub fn open(data_dir: &Path, namespace: &str) -> Result<IdRanges, RuntimeError> {
        let path = data_dir.join("idmap.json");
        let ranges = match fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|source| RuntimeError::StateFile {
                    path: path.clone(),
                    source,
                })?
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => BTreeMap::new(),
            Err(source) => return Err(RuntimeError::io("read", &path, source)),
        };
        Ok(IdRanges {
            path,
            namespace: namespace.to_string(),
            ranges: Mutex::new(ranges),
        })
    }

    /// The range of `project`, given one (and written down) the first time it is asked for.
    pub fn of_project(&self, project: &str) -> Result<IdRange, RuntimeError> {
        let mut ranges = self
            .ranges
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if let Some(host_base) = ranges.get(project) {
            return Ok(IdRange {
                host_base: *host_base,
            });
        }
        let taken: std::collections::BTreeSet<u32> = ranges.values().copied().collect();
        let first_slot = slot_hash(&self.namespace, project) % SLOTS;
        let host_base = (0..SLOTS)
            .map(|offset| FIRST_HOST_ID + ((first_slot + offset) % SLOTS) * RANGE_SIZE)
            .find(|base| !taken.contains(base))
            .ok_or_else(|| {
                RuntimeError::io(
                    "give a user id range to a project in",
                    &self.path,
                    io::Error::other("every range is taken"),
                )
            })?;
        let mut updated = ranges.clone();
        updated.insert(project.to_string(), host_base);
        write_atomically(&self.path, &updated)?;
        *ranges = updated;
        Ok(IdRange { host_base })
    }
}

/// FNV-1a over the namespace and the project.
fn slot_hash(namespace: &str, project: &str) -> u32 {
    let hash = namespace
        .bytes()
        .chain([0])
        .chain(project.bytes())
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
    (hash ^ (hash >> 32)) as u32
}

fn write_atomically(path: &Path, ranges: &BTreeMap<String, u32>) -> Result<(), RuntimeError> {
    let temporary = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec_pretty(ranges).map_err(|source| RuntimeError::StateFile {
        path: path.to_path_buf(),
        source,
    })?;
    let write = || -> io::Result<()> {
        let mut file = fs::File::create(&temporary)?;
        io::Write::write_all(&mut file, &bytes)?;
        file.sync_all()?;
        fs::rename(&temporary, path)
    };
    write().map_err(|source| RuntimeError::io("write", path, source))
}

/// Gives every file under `root` (itself included, links not followed) the owner and group
/// it has inside a workload of `range`: host id `n` below the range's size becomes
/// `range.host_base + n`. Ids already in the range, and ids past its size, are left alone.
/// This is the one-time chown of a volume or an image copy that a user namespace needs.
///
/// The tree may hold what earlier workloads made, so it is walked by descriptor: each
/// directory is opened beneath its parent without following links, and each entry changed
/// relative to it, so a link swapped in meanwhile leads nowhere else. chown clears set-user-id
/// and set-group-id bits, and they stay cleared.
pub(crate) fn shift_ownership(root: &Path, range: IdRange) -> io::Result<()> {
    use nix::fcntl::{AtFlags, OFlag};
    use nix::sys::stat::Mode;
    use std::os::fd::{AsFd, OwnedFd};

    let shift = |id: u32| {
        if range.contains_host_id(id) {
            None
        } else {
            range.host_id(id)
        }
    };
    let directory_flags =
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let open_root: OwnedFd = nix::fcntl::open(root, directory_flags, Mode::empty())?;
    let change =
        |parent: &OwnedFd, name: &std::ffi::OsStr| -> io::Result<nix::sys::stat::FileStat> {
            let stat = nix::sys::stat::fstatat(parent.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
            let (uid, gid) = (shift(stat.st_uid), shift(stat.st_gid));
            if uid.is_some() || gid.is_some() {
                nix::unistd::fchownat(
                    parent.as_fd(),
                    name,
                    uid.map(nix::unistd::Uid::from_raw),
                    gid.map(nix::unistd::Gid::from_raw),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )?;
            }
            Ok(stat)
        };
    // The root itself, through its own descriptor.
    let stat = nix::sys::stat::fstat(open_root.as_fd())?;
    let (uid, gid) = (shift(stat.st_uid), shift(stat.st_gid));
    if uid.is_some() || gid.is_some() {
        nix::unistd::fchown(
            open_root.as_fd(),
            uid.map(nix::unistd::Uid::from_raw),
            gid.map(nix::unistd::Gid::from_raw),
        )?;
    }
    let mut pending = vec![open_root];
    while let Some(directory) = pending.pop() {
        let mut names = Vec::new();
        let listing =
            nix::dir::Dir::openat(directory.as_fd(), ".", directory_flags, Mode::empty())?;
        for entry in listing {
            let entry = entry?;
            let name = std::ffi::OsStr::from_bytes(entry.file_name().to_bytes()).to_os_string();
            if name != "." && name != ".." {
                names.push(name);
            }
        }
        for name in names {
            let stat = change(&directory, &name)?;
            if stat.st_mode & libc::S_IFMT == libc::S_IFDIR {
                match nix::fcntl::openat(
                    directory.as_fd(),
                    name.as_os_str(),
                    directory_flags,
                    Mode::empty(),
                ) {
                    Ok(child) => pending.push(child),
                    // Replaced by a link or removed since: nothing of ours to change below it.
                    Err(
                        nix::errno::Errno::ELOOP
                        | nix::errno::Errno::ENOTDIR
                        | nix::errno::Errno::ENOENT,
                    ) => {}
                    Err(error) => return Err(error.into()),
                }
            }
        }
    }
    Ok(())
}

/// Whether `path` is owned by a host id of `range` (what a shifted tree's root is).
pub(crate) fn owned_by_range(path: &Path, range: IdRange) -> bool {
    fs::symlink_metadata(path).is_ok_and(|metadata| range.contains_host_id(metadata.uid()))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn projects_get_distinct_ranges_that_persist() {
        let data = tempfile::tempdir().expect("tempdir");
        let ranges = IdRanges::open(data.path(), "0000abcd").expect("open");
        let web = ranges.of_project("web").expect("web");
        let db = ranges.of_project("db").expect("db");
        assert_ne!(web, db);
        assert_eq!(ranges.of_project("web").expect("again"), web);
        for range in [web, db] {
            assert!(range.host_base >= FIRST_HOST_ID);
            assert!(u64::from(range.host_base) + u64::from(RANGE_SIZE) < u64::from(u32::MAX));
        }
        let reopened = IdRanges::open(data.path(), "0000abcd").expect("reopen");
        assert_eq!(reopened.of_project("web").expect("web"), web);
        assert_eq!(reopened.of_project("db").expect("db"), db);
    }

    #[test]
    fn shifting_moves_owners_into_the_range_once() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: chown needs root");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("volume");
        fs::create_dir_all(root.join("sub")).expect("mkdir");
        fs::write(root.join("sub/file"), "x").expect("write");
        std::os::unix::fs::lchown(root.join("sub/file"), Some(999), Some(999)).expect("chown");
        fs::set_permissions(root.join("sub/file"), fs::Permissions::from_mode(0o4755))
            .expect("chmod");
        std::os::unix::fs::symlink("/etc/passwd", root.join("link")).expect("symlink");
        let range = IdRange {
            host_base: FIRST_HOST_ID,
        };
        assert!(!owned_by_range(&root, range));
        shift_ownership(&root, range).expect("shift");
        shift_ownership(&root, range).expect("shift again");
        let owner = |path: &Path| {
            let metadata = fs::symlink_metadata(path).expect("stat");
            (metadata.uid(), metadata.gid())
        };
        assert!(owned_by_range(&root, range));
        assert_eq!(
            owner(&root.join("sub/file")),
            (FIRST_HOST_ID + 999, FIRST_HOST_ID + 999)
        );
        assert_eq!(owner(&root.join("link")), (FIRST_HOST_ID, FIRST_HOST_ID));
        assert_eq!(
            owner(Path::new("/etc/passwd")).0,
            0,
            "links are not followed"
        );
        let mode = fs::metadata(root.join("sub/file")).expect("stat").mode();
        assert_eq!(
            mode & 0o7777,
            0o755,
            "set-user-id is dropped with the old owner"
        );
    }
}
