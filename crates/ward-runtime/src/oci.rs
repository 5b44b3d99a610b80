//! The OCI runtime binary (crun or runc): finding it, what it supports, and the command lines
//! Ward runs it with. Ward always passes a private `--root` so that its containers never mix
//! with those of other users of the same runtime.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Seek};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::RuntimeError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OciRuntimeKind {
    Crun,
    Runc,
}

impl OciRuntimeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OciRuntimeKind::Crun => "crun",
            OciRuntimeKind::Runc => "runc",
        }
    }
}

/// Where a runtime is looked for when `PATH` lacks it (runc lives in `/usr/sbin` on Debian).
const FALLBACK_SEARCH_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The descriptor at which a monitor inherits the daemon's sealed copy of the runtime.
pub(crate) const SEALED_RUNTIME_FD: RawFd = 4;
/// The seals that crun and runc look for on `/proc/self/exe` (runc's `RUNC_MEMFD_SEALS`).
const RUNTIME_SEALS: libc::c_int =
    libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
/// `MFD_EXEC` (Linux 6.3): an executable memfd where `vm.memfd_noexec` makes them no-exec by
/// default.
const MFD_EXEC: libc::c_uint = 0x10;

/// How the runtime binary is executed: from its path, or from a sealed copy in memory.
///
/// Before every start, crun and runc copy their own binary and execute the copy, so that a
/// container cannot overwrite the host's binary through `/proc/self/exe` (CVE-2019-5736) —
/// unless they already run from a memfd with all write seals set, which cannot be written by
/// anyone. Ward makes that copy once per daemon and hands it to every monitor, which saves
/// each start a copy, a second exec and a second round of dynamic linking.
#[derive(Clone, Debug)]
pub(crate) struct OciProgram {
    /// The binary on disk: `argv[0]`, and what messages name.
    pub path: PathBuf,
    sealed: Option<Arc<OwnedFd>>,
}

impl OciProgram {
    /// Runs the binary at `path` as it is.
    pub fn plain(path: PathBuf) -> OciProgram {
        OciProgram { path, sealed: None }
    }

    /// Copies the ELF binary at `path` into a sealed memfd (opened close-on-exec, at a
    /// descriptor above the ones a monitor is given).
    pub fn sealed(path: PathBuf) -> io::Result<OciProgram> {
        let mut binary = File::open(&path)?;
        let mut magic = [0u8; 4];
        binary.read_exact(&mut magic)?;
        binary.rewind()?;
        if magic != *b"\x7fELF" {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "not an ELF binary (a script cannot run from a sealed copy)",
            ));
        }
        let name = c"ward-oci-runtime";
        let flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
        // SAFETY: memfd_create takes a NUL-terminated name and flags; it returns a new
        // descriptor or -1.
        let mut raw = unsafe { libc::memfd_create(name.as_ptr(), flags | MFD_EXEC) };
        if raw < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
            // SAFETY: as above, on a kernel without MFD_EXEC.
            raw = unsafe { libc::memfd_create(name.as_ptr(), flags) };
        }
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: memfd_create just returned this descriptor; nothing else owns it.
        let memfd = unsafe { OwnedFd::from_raw_fd(raw) };
        let memfd = above_monitor_descriptors(memfd)?;
        let mut copy = File::from(memfd);
        io::copy(&mut binary, &mut copy)?;
        // SAFETY: F_ADD_SEALS on a descriptor this function owns.
        if unsafe { libc::fcntl(copy.as_raw_fd(), libc::F_ADD_SEALS, RUNTIME_SEALS) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(OciProgram {
            path,
            sealed: Some(Arc::new(OwnedFd::from(copy))),
        })
    }

    /// In a monitor: the sealed copy at `fd` if the daemon passed one there, else the binary
    /// at `path`. The descriptor is made close-on-exec, so neither the runtime nor the
    /// workload holds it.
    pub fn inherited(path: PathBuf, fd: RawFd) -> OciProgram {
        // SAFETY: F_GET_SEALS only reads the flags of whatever `fd` is, if anything.
        let seals = unsafe { libc::fcntl(fd, libc::F_GET_SEALS) };
        if seals < 0 || seals & RUNTIME_SEALS != RUNTIME_SEALS {
            return OciProgram::plain(path);
        }
        // SAFETY: `fd` is an open sealed memfd (checked above) that nothing else in this
        // process owns: the daemon placed it there for the monitor.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: F_SETFD on the descriptor just taken over.
        unsafe { libc::fcntl(owned.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
        OciProgram {
            path,
            sealed: Some(Arc::new(owned)),
        }
    }

    /// The sealed copy's descriptor in this process, if there is one.
    pub fn sealed_fd(&self) -> Option<RawFd> {
        self.sealed.as_ref().map(|fd| fd.as_raw_fd())
    }

    /// What to execute: the sealed copy through `/proc/self/fd` (resolved in the child before
    /// its close-on-exec descriptors close), or the path.
    pub fn executable(&self) -> PathBuf {
        match self.sealed_fd() {
            Some(fd) => PathBuf::from(format!("/proc/self/fd/{fd}")),
            None => self.path.clone(),
        }
    }

    /// The runtime with stdin from /dev/null and its usual `argv[0]`.
    pub fn command(&self) -> Command {
        let mut command = Command::new(self.executable());
        command.arg0(&self.path).stdin(Stdio::null());
        command
    }
}

/// Moves `fd` to a descriptor number above those a monitor is given (0–5: stdio, the sync
/// pipe, the sealed runtime and the orders pipe), so that placing them in a child never
/// overwrites it, and no source is already its own target (where `dup2` would leave it
/// close-on-exec, and the child would start without it).
pub(crate) fn above_monitor_descriptors(fd: OwnedFd) -> io::Result<OwnedFd> {
    let highest = crate::monitor::ORDERS_FD.max(SEALED_RUNTIME_FD);
    if fd.as_raw_fd() > highest {
        return Ok(fd);
    }
    // SAFETY: F_DUPFD_CLOEXEC duplicates a descriptor this function owns.
    let raw = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, highest + 1) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fcntl just returned this new descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

#[derive(Clone, Debug)]
pub(crate) struct OciRuntime {
    pub program: OciProgram,
    pub kind: OciRuntimeKind,
    pub version: String,
}

impl OciRuntime {
    /// The runtime at `configured`, or else crun, or else runc, from `PATH`.
    pub fn locate(configured: Option<&Path>) -> Result<OciRuntime, RuntimeError> {
        let path = match configured {
            Some(path) if path.components().count() > 1 => path.to_path_buf(),
            Some(name) => find_in_path(name.as_os_str()).ok_or(RuntimeError::NoOciRuntime)?,
            None => find_in_path(OsStr::new("crun"))
                .or_else(|| find_in_path(OsStr::new("runc")))
                .ok_or(RuntimeError::NoOciRuntime)?,
        };
        let unusable = |reason: String| RuntimeError::OciRuntimeUnusable {
            path: path.clone(),
            reason,
        };
        let version_of = |program: &OciProgram| program.command().arg("--version").output();
        let sealed = OciProgram::sealed(path.clone())
            .inspect_err(|error| {
                tracing::info!(runtime = %path.display(), %error, "the runtime runs from its path, not from a sealed copy");
            })
            .ok()
            .and_then(|program| {
                let output = version_of(&program).ok()?;
                output.status.success().then_some((program, output))
            });
        let (program, output) = match sealed {
            Some(sealed) => sealed,
            None => {
                let program = OciProgram::plain(path.clone());
                let output = version_of(&program).map_err(|error| unusable(error.to_string()))?;
                (program, output)
            }
        };
        let text = String::from_utf8_lossy(&output.stdout);
        let first_line = text.lines().next().unwrap_or_default();
        let mut words = first_line.split_whitespace();
        let kind = match words.next() {
            Some("crun") => OciRuntimeKind::Crun,
            Some("runc") => OciRuntimeKind::Runc,
            _ => {
                return Err(unusable(format!(
                    "`--version` printed {first_line:?}, expected crun or runc"
                )))
            }
        };
        let version = first_line
            .rsplit(' ')
            .next()
            .unwrap_or_default()
            .to_string();
        Ok(OciRuntime {
            program,
            kind,
            version,
        })
    }

    /// Whether the runtime applies the `rro` mount option (recursive read-only through
    /// `mount_setattr`). Both silently ignore options they do not know, so this goes by
    /// version: runc has it since 1.1, crun since 1.4 (1.8.1 verified).
    pub fn supports_recursive_readonly(&self) -> bool {
        let (major, minor) = parse_major_minor(&self.version);
        match self.kind {
            OciRuntimeKind::Crun => (major, minor) >= (1, 4),
            OciRuntimeKind::Runc => (major, minor) >= (1, 1),
        }
    }
}

/// `RUNTIME --root ROOT` with stdin from /dev/null.
pub(crate) fn command(runtime: &OciProgram, root: &Path) -> Command {
    let mut command = runtime.command();
    command.arg("--root").arg(root);
    command
}

/// `RUNTIME --root ROOT delete --force ID`, tolerating a container that does not exist.
pub(crate) fn delete_force(
    runtime: &OciProgram,
    root: &Path,
    container_id: &str,
) -> Result<(), RuntimeError> {
    if !root.join(container_id).exists() {
        return Ok(());
    }
    let output = command(runtime, root)
        .args(["delete", "--force", container_id])
        .stdout(Stdio::null())
        .output()
        .map_err(|source| RuntimeError::io("run", &runtime.path, source))?;
    if output.status.success() || !root.join(container_id).exists() {
        return Ok(());
    }
    Err(RuntimeError::OciCommand {
        id: container_id.to_string(),
        action: "delete",
        message: String::from_utf8_lossy(&output.stderr).trim().to_string(),
    })
}

/// The last error the runtime wrote to its JSON log (`--log FILE --log-format json`).
pub(crate) fn last_logged_error(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines().rev().find_map(|line| {
        let value: serde_json::Value = serde_json::from_str(line).ok()?;
        let level = value
            .get("level")
            .and_then(|level| level.as_str())
            .unwrap_or("error");
        if level != "error" && level != "fatal" {
            return None;
        }
        value
            .get("msg")
            .and_then(|message| message.as_str())
            .map(str::to_string)
    })
}

fn find_in_path(name: &OsStr) -> Option<PathBuf> {
    let search = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&search)
        .chain(std::env::split_paths(FALLBACK_SEARCH_PATH))
        .map(|dir| dir.join(name))
        .find(|candidate| {
            candidate.metadata().is_ok_and(|metadata| {
                metadata.is_file() && metadata.permissions().mode() & 0o111 != 0
            })
        })
}

fn parse_major_minor(version: &str) -> (u32, u32) {
    let mut numbers = version
        .split(|character: char| !character.is_ascii_digit())
        .map(|part| part.parse().unwrap_or(0));
    (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::FromRawFd;

    /// Every descriptor a child is given comes from above the numbers it is placed at, the
    /// orders pipe's 5 included: a source that already is its target would stay
    /// close-on-exec, and the monitor would start without its orders.
    #[test]
    fn sources_move_above_every_monitor_descriptor() {
        let (read, _write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe");
        // SAFETY: F_DUPFD_CLOEXEC makes a new descriptor, owned below.
        let low = unsafe { libc::fcntl(read.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
        assert!(low >= 3);
        // SAFETY: fcntl just returned it; nothing else owns it.
        let low = unsafe { OwnedFd::from_raw_fd(low) };
        let moved = above_monitor_descriptors(low).expect("move");
        assert!(
            moved.as_raw_fd() > crate::monitor::ORDERS_FD,
            "{}",
            moved.as_raw_fd()
        );
    }

    #[test]
    fn recursive_readonly_goes_by_version() {
        let runtime = |kind, version: &str| OciRuntime {
            program: OciProgram::plain(PathBuf::from("/x")),
            kind,
            version: version.into(),
        };
        assert!(runtime(OciRuntimeKind::Crun, "1.8.1").supports_recursive_readonly());
        assert!(!runtime(OciRuntimeKind::Crun, "1.3").supports_recursive_readonly());
        assert!(runtime(OciRuntimeKind::Runc, "1.1.5+ds1").supports_recursive_readonly());
        assert!(!runtime(OciRuntimeKind::Runc, "1.0.3").supports_recursive_readonly());
    }

    #[test]
    fn a_sealed_copy_runs_and_cannot_be_written() {
        let Ok(program) = OciProgram::sealed(PathBuf::from("/bin/true")) else {
            panic!("sealing /bin/true failed");
        };
        let fd = program.sealed_fd().expect("a sealed copy");
        assert!(
            fd > SEALED_RUNTIME_FD,
            "fd {fd} would be overwritten in a monitor"
        );
        // SAFETY: F_GET_SEALS on a descriptor the program owns.
        let seals = unsafe { libc::fcntl(fd, libc::F_GET_SEALS) };
        assert_eq!(seals & RUNTIME_SEALS, RUNTIME_SEALS);
        // SAFETY: a write attempt on the sealed memfd, which must fail.
        let written = unsafe { libc::write(fd, b"x".as_ptr().cast(), 1) };
        assert_eq!(written, -1);
        let status = program.command().status().expect("run the copy");
        assert!(status.success());
        assert!(program.executable().starts_with("/proc/self/fd"));
    }

    #[test]
    fn a_script_is_run_from_its_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = dir.path().join("runtime");
        std::fs::write(&script, "#!/bin/sh\nexit 0\n").expect("write");
        let error = OciProgram::sealed(script).expect_err("a script cannot be sealed");
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn a_monitor_takes_only_a_sealed_descriptor() {
        let file = File::open("/bin/true").expect("open");
        let plain = OciProgram::inherited(PathBuf::from("/bin/true"), file.as_raw_fd());
        assert_eq!(plain.sealed_fd(), None);
        assert_eq!(plain.executable(), PathBuf::from("/bin/true"));
        let sealed = OciProgram::sealed(PathBuf::from("/bin/true")).expect("seal");
        let raw = sealed.sealed_fd().expect("sealed");
        // SAFETY: dup of a descriptor the program owns; `inherited` takes over the copy.
        let copy = unsafe { libc::dup(raw) };
        let inherited = OciProgram::inherited(PathBuf::from("/bin/true"), copy);
        assert_eq!(inherited.sealed_fd(), Some(copy));
        assert!(inherited.command().status().expect("run").success());
    }

    #[test]
    fn last_error_comes_from_the_json_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("oci.log");
        std::fs::write(
            &log,
            "{\"msg\":\"first\",\"level\":\"error\"}\n{\"msg\":\"note\",\"level\":\"warning\"}\n{\"msg\":\"second\",\"level\":\"error\"}\n",
        )
        .expect("write");
        assert_eq!(last_logged_error(&log).as_deref(), Some("second"));
    }
}
