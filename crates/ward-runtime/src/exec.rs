//! Running a command inside a running instance with `RUNTIME exec`: with pipes, or with a
//! terminal whose master side the runtime hands over on a console socket (SCM_RIGHTS).
//!
//! The command gets the `process` object of the bundle's `config.json` with only its
//! arguments (and terminal) changed, passed with `--process`: the same environment, working
//! directory, user, limits, no capabilities and no new privileges as the instance itself.
//! Without it, `crun exec` would start in `/`, without `noNewPrivileges`. The runtime applies
//! the instance's namespaces, cgroup and seccomp profile on its own.

use std::io::{IoSliceMut, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::pty::openpty;
use nix::sys::memfd::{memfd_create, MFdFlags};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use tokio::io::AsyncReadExt;
use tokio::net::UnixListener;

use crate::oci::{OciProgram, OciRuntimeKind};
use crate::{ExecControl, ExecExit, ExecOutput, ExecSession, RuntimeError};

/// How long the runtime may take to hand over the terminal.
const CONSOLE_TIMEOUT: Duration = Duration::from_secs(10);
/// `sun_path` holds 108 bytes including the terminating NUL.
const SOCKET_PATH_MAX: usize = 107;

static CONSOLE_SOCKETS: AtomicU64 = AtomicU64::new(0);

/// What `RUNTIME exec` needs to run a command in one instance.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ExecTarget<'a> {
    pub runtime: &'a OciProgram,
    pub root: &'a Path,
    /// The instance's `config.json`, whose `process` the command inherits.
    pub bundle_config: &'a Path,
    pub container_id: &'a str,
    pub kind: OciRuntimeKind,
    /// What the command changes of the instance's process.
    pub changes: ProcessChanges<'a>,
}

/// What one command changes of the instance's own `process`.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ProcessChanges<'a> {
    /// `KEY=VALUE` entries that replace or join the instance's.
    pub env: &'a [String],
    pub cwd: Option<&'a str>,
    /// User and group ids, in the instance's user namespace.
    pub user: Option<(u32, u32)>,
}

impl ProcessChanges<'_> {
    /// Applies the changes to an OCI `process` object; a terminal gets `TERM=xterm` unless
    /// the changes set `TERM`, as `docker exec -t` does.
    fn apply(&self, process: &mut serde_json::Value, terminal: bool) {
        let mut env: Vec<String> = process["env"]
            .as_array()
            .map(|entries| {
                entries
                    .iter()
                    .filter_map(|entry| entry.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let mut set = |entry: &str| {
            let key = entry.split('=').next().unwrap_or(entry);
            env.retain(|existing| existing.split('=').next() != Some(key));
            env.push(entry.to_string());
        };
        if terminal && !self.env.iter().any(|entry| entry.starts_with("TERM=")) {
            set("TERM=xterm");
        }
        for entry in self.env {
            set(entry);
        }
        process["env"] = serde_json::json!(env);
        if let Some(cwd) = self.cwd {
            process["cwd"] = serde_json::json!(cwd);
        }
        if let Some((uid, gid)) = self.user {
            process["user"] = serde_json::json!({"uid": uid, "gid": gid});
        }
    }
}

/// The ids of `user` (`UID[:GID]`, or names) in the root file system at `root`: names come
/// from its `/etc/passwd` and `/etc/group`; a user id without a group takes the user's
/// group from `/etc/passwd`, else 0, as Docker does.
pub(crate) fn resolve_user(user: &str, root: &Path) -> Result<(u32, u32), RuntimeError> {
    let refused = |message: String| RuntimeError::ExecRefused {
        field: "user",
        message,
    };
    let read =
        |file: &str| std::fs::read_to_string(root.join("etc").join(file)).unwrap_or_default();
    // name:password:id:… lines; the third field is the id, the fourth the passwd's group.
    let find = |table: &str, name: &str| -> Option<Vec<String>> {
        table.lines().find_map(|line| {
            let fields: Vec<String> = line.split(':').map(str::to_string).collect();
            (fields.len() >= 3 && (fields[0] == name || fields[2] == name)).then_some(fields)
        })
    };
    let (user_part, group_part) = match user.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (user, None),
    };
    if user_part.is_empty() || group_part.is_some_and(str::is_empty) {
        return Err(refused(format!(
            "{user:?} is not a user; give UID, UID:GID, NAME or NAME:GROUP"
        )));
    }
    let passwd = read("passwd");
    let entry = find(&passwd, user_part);
    let uid = match user_part.parse::<u32>() {
        Ok(uid) => uid,
        Err(_) => entry
            .as_ref()
            .and_then(|fields| fields[2].parse().ok())
            .ok_or_else(|| {
                refused(format!(
                    "no user {user_part} in the workload's /etc/passwd; give a numeric UID"
                ))
            })?,
    };
    let gid = match group_part {
        Some(group) => match group.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => find(&read("group"), group)
                .and_then(|fields| fields[2].parse().ok())
                .ok_or_else(|| {
                    refused(format!(
                        "no group {group} in the workload's /etc/group; give a numeric GID"
                    ))
                })?,
        },
        None => entry
            .and_then(|fields| fields.get(3).and_then(|gid| gid.parse().ok()))
            .unwrap_or(0),
    };
    Ok((uid, gid))
}

/// Where the command's terminal comes from.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Terminal<'a> {
    /// None: stdio are whatever the caller sets.
    None,
    /// The runtime allocates one and sends its master to this socket (crun).
    ConsoleSocket(&'a Path),
    /// The runtime allocates one and relays it to its own stdio, which the caller makes a
    /// terminal (runc, which takes a console socket only when it detaches).
    Relayed,
}

impl ExecTarget<'_> {
    fn failed(&self, message: String) -> RuntimeError {
        RuntimeError::Exec {
            id: self.container_id.to_string(),
            message,
        }
    }

    /// `RUNTIME --root ROOT exec --process /proc/self/fd/N [--tty [--console-socket S]] ID`.
    /// The process description is in a memfd that only this command inherits.
    pub fn command(
        &self,
        command: &[String],
        terminal: Terminal<'_>,
    ) -> Result<tokio::process::Command, RuntimeError> {
        if command.is_empty() {
            return Err(self.failed("no command given".to_string()));
        }
        let config = std::fs::read(self.bundle_config)
            .map_err(|source| RuntimeError::io("read", self.bundle_config, source))?;
        let config: serde_json::Value =
            serde_json::from_slice(&config).map_err(|source| RuntimeError::StateFile {
                path: self.bundle_config.to_path_buf(),
                source,
            })?;
        let mut process = config.get("process").cloned().unwrap_or_default();
        process["args"] = serde_json::json!(command);
        let on_terminal = !matches!(terminal, Terminal::None);
        process["terminal"] = serde_json::json!(on_terminal);
        self.changes.apply(&mut process, on_terminal);

        let description = memfd_create("ward-exec-process", MFdFlags::MFD_CLOEXEC)
            .map_err(|error| self.failed(format!("create the process description: {error}")))?;
        let mut file = std::fs::File::from(description);
        serde_json::to_writer(&mut file, &process)
            .map_err(|error| self.failed(format!("write the process description: {error}")))?;
        file.flush()
            .map_err(|error| self.failed(format!("write the process description: {error}")))?;
        let description: OwnedFd = file.into();
        let raw = description.as_raw_fd();

        let mut runtime = tokio::process::Command::new(self.runtime.executable());
        runtime
            .arg0(&self.runtime.path)
            .arg("--root")
            .arg(self.root)
            .arg("exec")
            .arg("--process")
            .arg(format!("/proc/self/fd/{raw}"));
        match terminal {
            Terminal::None => {}
            Terminal::ConsoleSocket(socket) => {
                runtime.arg("--tty").arg("--console-socket").arg(socket);
            }
            Terminal::Relayed => {
                runtime.arg("--tty");
            }
        }
        runtime.arg(self.container_id);
        // SAFETY: fcntl is async-signal-safe; the closure owns the descriptor, so it stays open
        // until the command is dropped, and clearing FD_CLOEXEC in the child alone lets only
        // the runtime inherit it.
        unsafe {
            runtime.pre_exec(move || {
                if libc::fcntl(description.as_raw_fd(), libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Ok(runtime)
    }
}

pub(crate) async fn spawn(
    target: ExecTarget<'_>,
    run_dir: &Path,
    command: &[String],
    tty: bool,
) -> Result<ExecSession, RuntimeError> {
    let process = spawn_process(target, run_dir, command, tty).await?;
    session(process).map_err(|error| target.failed(format!("share the terminal: {error}")))
}

/// A process started by `RUNTIME exec`.
struct ExecProcess {
    child: tokio::process::Child,
    /// The PTY master when a terminal was asked for; otherwise the child's stdio are pipes.
    pty_master: Option<OwnedFd>,
}

/// The session of an exec'd process: its pipes or its terminal pumped into one channel.
fn session(process: ExecProcess) -> std::io::Result<ExecSession> {
    let ExecProcess {
        mut child,
        pty_master,
    } = process;
    let (sender, output) = tokio::sync::mpsc::channel(64);
    let killed = Arc::new(tokio::sync::Notify::new());
    let (input, terminal): (Option<Box<dyn tokio::io::AsyncWrite + Send + Unpin>>, _) =
        match &pty_master {
            Some(master) => {
                let reader = tokio::fs::File::from_std(master.try_clone()?.into());
                tokio::spawn(pump(reader, ExecOutput::Stdout, sender));
                let writer = tokio::fs::File::from_std(master.try_clone()?.into());
                (Some(Box::new(writer)), true)
            }
            None => {
                if let Some(stdout) = child.stdout.take() {
                    tokio::spawn(pump(stdout, ExecOutput::Stdout, sender.clone()));
                }
                if let Some(stderr) = child.stderr.take() {
                    tokio::spawn(pump(stderr, ExecOutput::Stderr, sender));
                }
                let input = child
                    .stdin
                    .take()
                    .map(|stdin| Box::new(stdin) as Box<dyn tokio::io::AsyncWrite + Send + Unpin>);
                (input, false)
            }
        };
    let kill = killed.clone();
    let exit = async move {
        let status = tokio::select! {
            status = child.wait() => status,
            _ = kill.notified() => {
                let _ = child.start_kill();
                child.wait().await
            }
        }?;
        use std::os::unix::process::ExitStatusExt;
        Ok(ExecExit {
            exit_code: status.code(),
            signal: status.signal(),
        })
    };
    Ok(ExecSession {
        output,
        input,
        terminal,
        control: Box::new(ProcessControl { pty_master, killed }),
        exit: Box::pin(exit),
    })
}

/// Reads `source` into the session's channel until it ends, or until nobody listens.
pub(crate) async fn pump(
    mut source: impl tokio::io::AsyncRead + Unpin,
    piece: fn(Vec<u8>) -> ExecOutput,
    output: tokio::sync::mpsc::Sender<ExecOutput>,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let read = tokio::select! {
            read = source.read(&mut buffer) => read,
            // A terminal may never end while other processes hold it: stop with the reader.
            _ = output.closed() => return,
        };
        match read {
            Ok(0) | Err(_) => return,
            Ok(count) => {
                if output.send(piece(buffer[..count].to_vec())).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Sets the size of the terminal whose master is `master`.
pub(crate) fn resize_terminal(master: &OwnedFd, cols: u16, rows: u16) {
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize from a valid pointer; the fd is a PTY master the
    // caller holds.
    unsafe {
        libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size);
    }
}

/// Resizes an exec'd process's terminal and kills it.
struct ProcessControl {
    pty_master: Option<OwnedFd>,
    killed: Arc<tokio::sync::Notify>,
}

impl ExecControl for ProcessControl {
    fn resize(&self, cols: u16, rows: u16) {
        if let Some(master) = &self.pty_master {
            resize_terminal(master, cols, rows);
        }
    }

    fn kill(&self) {
        // A permit is kept if the exit is not being awaited yet.
        self.killed.notify_one();
    }
}

async fn spawn_process(
    target: ExecTarget<'_>,
    run_dir: &Path,
    command: &[String],
    tty: bool,
) -> Result<ExecProcess, RuntimeError> {
    if !tty {
        let mut process = target.command(command, Terminal::None)?;
        process
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = process
            .spawn()
            .map_err(|source| RuntimeError::io("run", &target.runtime.path, source))?;
        return Ok(ExecProcess {
            child,
            pty_master: None,
        });
    }

    if target.kind == OciRuntimeKind::Runc {
        return spawn_relayed_terminal(target, command);
    }
    let socket = ConsoleSocket::bind(run_dir)
        .map_err(|source| RuntimeError::io("listen on console socket in", run_dir, source))?;
    let mut process = target.command(command, Terminal::ConsoleSocket(&socket.path))?;
    process
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = process
        .spawn()
        .map_err(|source| RuntimeError::io("run", &target.runtime.path, source))?;
    drop(process);
    let failed = |message: String| target.failed(message);
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
            return Err(failed(format!(
                "no terminal within {} s",
                CONSOLE_TIMEOUT.as_secs()
            )));
        }
    };
    let stream = stream
        .into_std()
        .map_err(|source| RuntimeError::io("accept on", &socket.path, source))?;
    let master = tokio::task::spawn_blocking(move || receive_fd(stream))
        .await
        .map_err(|error| failed(format!("terminal hand-over task failed: {error}")))?
        .map_err(|message| failed(format!("terminal hand-over: {message}")))?;
    Ok(ExecProcess {
        child,
        pty_master: Some(master),
    })
}

/// Runs the command with a terminal pair made here: the runtime gets the slave as its stdio
/// (and controlling terminal) and relays it to the terminal it makes inside the instance;
/// the caller gets the master.
fn spawn_relayed_terminal(
    target: ExecTarget<'_>,
    command: &[String],
) -> Result<ExecProcess, RuntimeError> {
    let failed = |message: String| target.failed(message);
    let pair = openpty(None, None).map_err(|error| failed(format!("open a terminal: {error}")))?;
    let stdio = |fd: &OwnedFd| {
        fd.try_clone()
            .map(Stdio::from)
            .map_err(|error| failed(format!("share the terminal: {error}")))
    };
    let mut process = target.command(command, Terminal::Relayed)?;
    process
        .stdin(stdio(&pair.slave)?)
        .stdout(stdio(&pair.slave)?)
        .stderr(stdio(&pair.slave)?);
    // SAFETY: setsid and ioctl are async-signal-safe; they make stdin, already the slave,
    // the controlling terminal of the runtime's new session.
    unsafe {
        process.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = process
        .spawn()
        .map_err(|source| RuntimeError::io("run", &target.runtime.path, source))?;
    drop(process);
    drop(pair.slave);
    Ok(ExecProcess {
        child,
        pty_master: Some(pair.master),
    })
}

/// A listening console socket, removed when dropped.
struct ConsoleSocket {
    path: PathBuf,
    listener: UnixListener,
}

impl ConsoleSocket {
    fn bind(run_dir: &Path) -> std::io::Result<ConsoleSocket> {
        let name = format!(
            "console-{}-{}.sock",
            std::process::id(),
            CONSOLE_SOCKETS.fetch_add(1, Ordering::Relaxed)
        );
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
pub(crate) fn receive_fd(stream: UnixStream) -> Result<OwnedFd, String> {
    stream
        .set_nonblocking(false)
        .map_err(|error| error.to_string())?;
    stream
        .set_read_timeout(Some(CONSOLE_TIMEOUT))
        .map_err(|error| error.to_string())?;
    let mut data = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut data)];
    let mut control = nix::cmsg_space!([std::os::fd::RawFd; 4]);
    let message = recvmsg::<()>(
        std::os::fd::AsRawFd::as_raw_fd(&stream),
        &mut iov,
        Some(&mut control),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(|error| error.to_string())?;
    let mut received = Vec::new();
    for control_message in message.cmsgs().map_err(|error| error.to_string())? {
        if let ControlMessageOwned::ScmRights(fds) = control_message {
            // SAFETY: the kernel installed these descriptors in this process for us alone.
            received.extend(
                fds.into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    let mut received = received.into_iter();
    received
        .next()
        .ok_or_else(|| "the runtime sent no descriptor".to_string())
}
