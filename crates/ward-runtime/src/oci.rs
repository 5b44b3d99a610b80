//! The OCI runtime binary (crun or runc): finding it, what it supports, and the command lines
//! Ward runs it with. Ward always passes a private `--root` so that its containers never mix
//! with those of other users of the same runtime.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

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

#[derive(Clone, Debug)]
pub(crate) struct OciRuntime {
    pub path: PathBuf,
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
        let output = Command::new(&path)
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .map_err(|error| unusable(error.to_string()))?;
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
            path,
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
pub(crate) fn command(runtime: &Path, root: &Path) -> Command {
    let mut command = Command::new(runtime);
    command.arg("--root").arg(root).stdin(Stdio::null());
    command
}

/// `RUNTIME --root ROOT delete --force ID`, tolerating a container that does not exist.
pub(crate) fn delete_force(
    runtime: &Path,
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
        .map_err(|source| RuntimeError::io("run", runtime, source))?;
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

    #[test]
    fn recursive_readonly_goes_by_version() {
        let runtime = |kind, version: &str| OciRuntime {
            path: PathBuf::from("/x"),
            kind,
            version: version.into(),
        };
        assert!(runtime(OciRuntimeKind::Crun, "1.8.1").supports_recursive_readonly());
        assert!(!runtime(OciRuntimeKind::Crun, "1.3").supports_recursive_readonly());
        assert!(runtime(OciRuntimeKind::Runc, "1.1.5+ds1").supports_recursive_readonly());
        assert!(!runtime(OciRuntimeKind::Runc, "1.0.3").supports_recursive_readonly());
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
