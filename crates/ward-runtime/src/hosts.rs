//! Names on a project's network: every bridge instance's `/etc/hosts` lists the addresses of
//! its project's workloads, kept current as instances of the project come and go, as Docker's
//! user-defined networks resolve container names.
//!
//! Each project (of each daemon: the key is the container id without workload and replica)
//! has a directory under `/run/ward/hosts/` with one record per attached instance (its address,
//! name and hosts file). Whoever attaches or detaches an instance (its monitor, or the runtime
//! cleaning up after a lost monitor) changes the records under the directory's lock and then
//! rewrites the hosts file of every instance of the project. Files are rewritten in place,
//! since each is bound into its instance by inode.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

/// Where the records of every project live; shared by every daemon on the host, like the
/// bridge itself.
pub const HOSTS_STATE_DIR: &str = "/run/ward/hosts";

/// One attached instance of a project.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    address: Ipv4Addr,
    workload: String,
    replica: u32,
    hosts_file: PathBuf,
}

/// The parts of a container id `ward-<namespace>.<project>.<workload>.<replica>`: the project
/// key (`ward-<namespace>.<project>`), the workload and the replica.
fn split_container_id(container_id: &str) -> Option<(&str, &str, u32)> {
    let mut parts = container_id.rsplitn(3, '.');
    let replica = parts.next()?.parse().ok()?;
    let workload = parts.next()?;
    let project_key = parts.next()?;
    (!project_key.is_empty() && !workload.is_empty()).then_some((project_key, workload, replica))
}

/// Adds the instance `container_id` at `address`, whose hosts file is `hosts_file` (it holds
/// the instance's own lines: localhost and its name), and rewrites the hosts files of its
/// project.
pub fn join(
    state_dir: &Path,
    container_id: &str,
    address: Ipv4Addr,
    hosts_file: &Path,
) -> io::Result<()> {
    let Some((project_key, workload, replica)) = split_container_id(container_id) else {
        return Err(io::Error::other(format!(
            "{container_id} is not a container id of Ward's"
        )));
    };
    let project = ProjectDir::lock(state_dir, project_key)?;
    let record = Record {
        address,
        workload: workload.to_string(),
        replica,
        hosts_file: hosts_file.to_path_buf(),
    };
    let bytes = serde_json::to_vec(&record).map_err(io::Error::other)?;
    let temporary = project.dir.join(format!(".{container_id}.tmp"));
    fs::write(&temporary, bytes)?;
    fs::rename(&temporary, project.dir.join(container_id))?;
    project.rewrite()
}

/// Removes the instance `container_id`, if it was there, and rewrites the hosts files of the
/// rest of its project.
pub fn leave(state_dir: &Path, container_id: &str) -> io::Result<()> {
    let Some((project_key, _, _)) = split_container_id(container_id) else {
        return Ok(());
    };
    if !state_dir.join(project_key).is_dir() {
        return Ok(());
    }
    let project = ProjectDir::lock(state_dir, project_key)?;
    match fs::remove_file(project.dir.join(container_id)) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error),
    }
    project.rewrite()
}

/// The lines every instance of a project gets after its own: one per attached instance,
/// `ADDRESS NAME REPLICA.NAME`, replicas in order.
fn project_lines(records: &[Record]) -> String {
    let mut lines = String::from("# the workloads of this project\n");
    for record in records {
        lines.push_str(&format!(
            "{}\t{}\t{}.{}\n",
            record.address, record.workload, record.replica, record.workload
        ));
    }
    lines
}

/// The most of a hosts file that is read: Ward writes them, a few lines per workload.
const MAX_HOSTS_FILE_BYTES: u64 = 1 << 20;

/// A hosts file's text, refusing a file that is not a regular one or is past
/// [`MAX_HOSTS_FILE_BYTES`].
fn read_bounded(path: &Path) -> io::Result<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let metadata = file.metadata()?;
    if !metadata.is_file() || metadata.len() > MAX_HOSTS_FILE_BYTES {
        return Err(io::Error::other("not a hosts file Ward wrote"));
    }
    let mut text = String::new();
    file.take(MAX_HOSTS_FILE_BYTES).read_to_string(&mut text)?;
    Ok(text)
}

/// A project's directory of records, under its lock for as long as this lives.
struct ProjectDir {
    dir: PathBuf,
    _lock: Flock<File>,
}

impl ProjectDir {
    fn lock(state_dir: &Path, project_key: &str) -> io::Result<ProjectDir> {
        let dir = state_dir.join(project_key);
        fs::create_dir_all(&dir)?;
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(".lock"))?;
        let lock = loop {
            match Flock::lock(file, FlockArg::LockExclusive) {
                Ok(lock) => break lock,
                Err((returned, Errno::EINTR)) => file = returned,
                Err((_, errno)) => return Err(errno.into()),
            }
        };
        Ok(ProjectDir { dir, _lock: lock })
    }

    /// The records, each with the path it is kept at, by workload and replica.
    fn records(&self) -> io::Result<Vec<(PathBuf, Record)>> {
        let mut records = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            // A record that cannot be read is skipped rather than blocking the project.
            if let Some(record) = fs::read(entry.path())
                .ok()
                .and_then(|bytes| serde_json::from_slice::<Record>(&bytes).ok())
            {
                records.push((entry.path(), record));
            }
        }
        records.sort_by(|(_, a), (_, b)| (&a.workload, a.replica).cmp(&(&b.workload, b.replica)));
        Ok(records)
    }

    /// Rewrites every instance's hosts file: its own first lines (up to the project's part),
    /// then the project's lines.
    fn rewrite(&self) -> io::Result<()> {
        let mut records = self.records()?;
        // An instance whose file is gone ended without leaving.
        records.retain(|(path, record)| {
            let present = record.hosts_file.is_file();
            if !present {
                let _ = fs::remove_file(path);
            }
            present
        });
        let listed: Vec<Record> = records.iter().map(|(_, record)| record.clone()).collect();
        let lines = project_lines(&listed);
        for record in &listed {
            let Ok(current) = read_bounded(&record.hosts_file) else {
                continue;
            };
            let own = current
                .split("# the workloads of this project\n")
                .next()
                .unwrap_or_default();
            let content = format!("{own}{lines}");
            if content == current {
                continue;
            }
            // In place: the file is bound into the instance by inode.
            let mut file = OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(&record.hosts_file)?;
            file.write_all(content.as_bytes())?;
        }
        if records.is_empty() {
            let _ = fs::remove_file(self.dir.join(".lock"));
            let _ = fs::remove_dir(&self.dir);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_instance_of_a_project_lists_the_others_and_no_other_projects() {
        let state = tempfile::tempdir().expect("state");
        let files = tempfile::tempdir().expect("files");
        let hosts = |name: &str| {
            let path = files.path().join(name);
            fs::write(&path, format!("127.0.0.1\tlocalhost\n127.0.1.1\t{name}\n")).expect("hosts");
            path
        };
        let (web, db, other) = (hosts("web"), hosts("db"), hosts("other"));
        let address = |last: u8| Ipv4Addr::new(10, 88, 1, last);
        join(state.path(), "ward-0000abcd.alpha.web.0", address(2), &web).expect("web");
        join(state.path(), "ward-0000abcd.alpha.db.0", address(3), &db).expect("db");
        join(
            state.path(),
            "ward-0000abcd.beta.other.0",
            Ipv4Addr::new(10, 88, 2, 2),
            &other,
        )
        .expect("other");
        let read = |path: &Path| fs::read_to_string(path).expect("read");
        let expected_alpha =
            "# the workloads of this project\n10.88.1.3\tdb\t0.db\n10.88.1.2\tweb\t0.web\n";
        assert_eq!(
            read(&web),
            format!("127.0.0.1\tlocalhost\n127.0.1.1\tweb\n{expected_alpha}")
        );
        assert!(read(&db).ends_with(expected_alpha));
        assert!(!read(&other).contains("10.88.1."), "{}", read(&other));

        leave(state.path(), "ward-0000abcd.alpha.db.0").expect("leave");
        assert!(!read(&web).contains("db"), "{}", read(&web));
        leave(state.path(), "ward-0000abcd.alpha.web.0").expect("leave");
        assert!(!state.path().join("ward-0000abcd.alpha").exists());
        // Twice is fine.
        leave(state.path(), "ward-0000abcd.alpha.web.0").expect("leave again");
    }
}
