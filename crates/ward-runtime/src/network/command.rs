//! Running iproute2 and iptables with the command line and stderr kept for the error, and the
//! network namespaces those commands and `netlink.rs` act on.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::NetworkError;

/// A network namespace (`/proc/PID/ns/net`, or a descriptor of one as `/proc/PID/fd/N`),
/// opened so that commands can be run inside it.
pub(super) struct NetworkNamespace {
    path: PathBuf,
    file: File,
}

impl NetworkNamespace {
    pub(super) fn open(container_id: &str, path: &Path) -> Result<NetworkNamespace, NetworkError> {
        let file = File::open(path).map_err(|source| NetworkError::Namespace {
            container_id: container_id.to_string(),
            path: path.to_path_buf(),
            source,
        })?;
        Ok(NetworkNamespace {
            path: path.to_path_buf(),
            file,
        })
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn file(&self) -> &File {
        &self.file
    }
}

/// Runs `program args…` and returns its stdout.
pub(super) fn run(program: &str, args: &[&str]) -> Result<String, NetworkError> {
    let mut command = Command::new(program);
    command.args(args);
    finish(command, None, command_line(program, args))
}

/// Runs `program args…` with `input` on stdin and returns its stdout.
pub(super) fn run_with_input(
    program: &str,
    args: &[&str],
    input: &str,
) -> Result<String, NetworkError> {
    let mut command = Command::new(program);
    command.args(args);
    let described = format!(
        "{} [{}]",
        command_line(program, args),
        input.trim_end().replace('\n', "; ")
    );
    finish(command, Some(input), described)
}

fn finish(
    mut command: Command,
    input: Option<&str>,
    described: String,
) -> Result<String, NetworkError> {
    command
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let spawn_error = |source| NetworkError::CommandSpawn {
        command: described.clone(),
        source,
    };
    let mut child = command.spawn().map_err(spawn_error)?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        // Batches are a few hundred bytes, well under a pipe's buffer, so this cannot block on
        // the child's output.
        stdin.write_all(input.as_bytes()).map_err(spawn_error)?;
    }
    let output = child.wait_with_output().map_err(spawn_error)?;
    if !output.status.success() {
        return Err(NetworkError::CommandFailed {
            command: described,
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn command_line(program: &str, args: &[&str]) -> String {
    std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ")
}
