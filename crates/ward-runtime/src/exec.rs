//! Running a command inside a running instance with `RUNTIME exec`: with pipes, or with a
//! terminal whose master side the runtime hands over on a console socket (SCM_RIGHTS).
//!
//! The OCI runtime gives the command the instance's environment, working directory, limits,
//! namespaces, seccomp profile and (no) capabilities from the bundle's `config.json`.

use std::io::IoSliceMut;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use tokio::io::AsyncReadExt;
use tokio::net::UnixListener;

use crate::{ExecProcess, RuntimeError};

/// How long the runtime may take to hand over the terminal.
const CONSOLE_TIMEOUT: Duration = Duration::from_secs(10);
/// `sun_path` holds 108 bytes including the terminating NUL.
const SOCKET_PATH_MAX: usize = 107;

static CONSOLE_SOCKETS: AtomicU64 = AtomicU64::new(0);

pub(crate) async fn spawn(
    runtime: &Path,
    root: &Path,
    run_dir: &Path,
    container_id: &str,
    command: &[String],
    tty: bool,
) -> Result<ExecProcess, RuntimeError> {
    let failed = |message: String| RuntimeError::Exec { id: container_id.to_string(), message };
    if command.is_empty() {
        return Err(failed("no command given".to_string()));
    }
    let mut process = tokio::process::Command::new(runtime);
    process.arg("--root").arg(root).arg("exec");
    if !tty {
        process.arg(container_id).args(command).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let child = process.spawn().map_err(|source| RuntimeError::io("run", runtime, source))?;
        return Ok(ExecProcess { child, pty_master: None });
    }

    let socket = ConsoleSocket::bind(run_dir).map_err(|source| RuntimeError::io("listen on console socket in", run_dir, source))?;
    process
        .arg("--tty")
        .arg("--console-socket")
        .arg(&socket.path)
        .arg(container_id)
        .args(command)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = process.spawn().map_err(|source| RuntimeError::io("run", runtime, source))?;
    let accepted = tokio::select! {
        accepted = tokio::time::timeout(CONSOLE_TIMEOUT, socket.listener.accept()) => accepted,
        _ = child.wait() => {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = pipe.read_to_string(&mut stderr).await;
            }
            return Err(failed(format!("the runtime exited before it handed over a terminal: {}", stderr.trim())));
        }
    };
    let stream = match accepted {
        Ok(Ok((stream, _))) => stream,
        Ok(Err(source)) => return Err(RuntimeError::io("accept on", &socket.path, source)),
        Err(_) => {
            let _ = child.start_kill();
            return Err(failed(format!("no terminal within {} s", CONSOLE_TIMEOUT.as_secs())));
        }
    };
    let stream = stream.into_std().map_err(|source| RuntimeError::io("accept on", &socket.path, source))?;
    let master = tokio::task::spawn_blocking(move || receive_fd(stream))
        .await
        .map_err(|error| failed(format!("terminal hand-over task failed: {error}")))?
        .map_err(|message| failed(format!("terminal hand-over: {message}")))?;
    Ok(ExecProcess { child, pty_master: Some(master) })
}

/// A listening console socket, removed when dropped.
struct ConsoleSocket {
    path: PathBuf,
    listener: UnixListener,
}

impl ConsoleSocket {
    fn bind(run_dir: &Path) -> std::io::Result<ConsoleSocket> {
        let name = format!("console-{}-{}.sock", std::process::id(), CONSOLE_SOCKETS.fetch_add(1, Ordering::Relaxed));
        let mut path = run_dir.join(&name);
        if path.as_os_str().len() > SOCKET_PATH_MAX {
            path = std::env::temp_dir().join(format!("ward-{name}"));
        }
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        Ok(ConsoleSocket { path, listener })
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Receives one descriptor sent with SCM_RIGHTS.
fn receive_fd(stream: UnixStream) -> Result<OwnedFd, String> {
    stream.set_nonblocking(false).map_err(|error| error.to_string())?;
    stream.set_read_timeout(Some(CONSOLE_TIMEOUT)).map_err(|error| error.to_string())?;
    let mut data = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut data)];
    let mut control = nix::cmsg_space!([std::os::fd::RawFd; 4]);
    let message = recvmsg::<()>(std::os::fd::AsRawFd::as_raw_fd(&stream), &mut iov, Some(&mut control), MsgFlags::MSG_CMSG_CLOEXEC)
        .map_err(|error| error.to_string())?;
    let mut received = Vec::new();
    for control_message in message.cmsgs().map_err(|error| error.to_string())? {
        if let ControlMessageOwned::ScmRights(fds) = control_message {
            // SAFETY: the kernel installed these descriptors in this process for us alone.
            received.extend(fds.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
        }
    }
    let mut received = received.into_iter();
    received.next().ok_or_else(|| "the runtime sent no descriptor".to_string())
}
