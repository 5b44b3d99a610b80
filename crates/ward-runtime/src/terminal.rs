//! Instances whose first process runs on a terminal (`tty: true`). The monitor holds the
//! terminal's master: it logs what the process prints while nobody is attached and hands a
//! copy of the master to whoever connects to the instance's `attach.sock` (`ward attach`,
//! `ward run -it`), with what was printed since the last attach; it reads the master again
//! once that connection closes. One attach at a time.
//!
//! The hand-over is one message on the new connection: eight bytes (little-endian) giving
//! the length of the output that follows, with the master as SCM_RIGHTS.

use std::fs::File;
use std::future::Future;
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

use crate::{ExecControl, ExecExit, ExecOutput, ExecSession};

/// The name of the socket in the instance's run directory.
pub(crate) const ATTACH_SOCKET: &str = "attach.sock";
/// The most output kept for the next attach; older output is only in the log.
pub(crate) const UNSEEN_LIMIT: usize = 64 * 1024;
/// How long a hand-over may take.
const HAND_OVER_TIMEOUT: Duration = Duration::from_secs(10);

/// A path to `name` in the directory open at `dir` in process `pid`, short whatever the
/// directory's own path (a socket path has at most 107 bytes).
pub(crate) fn short_path(pid: u32, dir: &File, name: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/fd/{}/{name}", dir.as_raw_fd()))
}

/// Monitor side: gives a new connection the master and the output it has not seen.
pub(crate) fn hand_over(
    connection: &UnixStream,
    master: &OwnedFd,
    unseen: &[u8],
) -> io::Result<()> {
    connection.set_write_timeout(Some(HAND_OVER_TIMEOUT))?;
    let header = (unseen.len() as u64).to_le_bytes();
    let fds = [master.as_raw_fd()];
    let control = [ControlMessage::ScmRights(&fds)];
    let sent = sendmsg::<()>(
        connection.as_raw_fd(),
        &[IoSlice::new(&header)],
        &control,
        MsgFlags::MSG_NOSIGNAL,
        None,
    )?;
    let mut writer = connection;
    writer.write_all(&header[sent..])?;
    writer.write_all(unseen)
}

/// Keeps the newest `UNSEEN_LIMIT` bytes of what a terminal printed.
pub(crate) fn remember(unseen: &mut Vec<u8>, output: &[u8]) {
    unseen.extend_from_slice(output);
    if unseen.len() > UNSEEN_LIMIT {
        let excess = unseen.len() - UNSEEN_LIMIT;
        unseen.drain(..excess);
    }
}

/// Daemon side: connects to the terminal of the instance whose run directory is `run_dir`;
/// returns its master, the output printed since the last attach, and the connection, whose
/// closing ends the attach. `NotFound` when the instance has no terminal, `ResourceBusy` when
/// another client is attached.
pub(crate) fn connect(run_dir: &Path) -> io::Result<(OwnedFd, Vec<u8>, UnixStream)> {
    let dir = File::open(run_dir)?;
    let stream = UnixStream::connect(short_path(std::process::id(), &dir, ATTACH_SOCKET))?;
    stream.set_read_timeout(Some(HAND_OVER_TIMEOUT))?;
    let mut header = [0u8; 8];
    let mut control = nix::cmsg_space!([RawFd; 1]);
    let (received, master) = {
        let mut iov = [IoSliceMut::new(&mut header)];
        let message = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut control),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )?;
        let mut master = None;
        for control_message in message.cmsgs()? {
            if let ControlMessageOwned::ScmRights(fds) = control_message {
                for fd in fds {
                    // SAFETY: the kernel installed this descriptor in this process for us.
                    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                    master.get_or_insert(owned);
                }
            }
        }
        (message.bytes, master)
    };
    // The monitor closes a connection without a terminal when another client holds it.
    let master = master
        .ok_or_else(|| io::Error::new(io::ErrorKind::ResourceBusy, "another client is attached"))?;
    let mut reader = &stream;
    reader.read_exact(&mut header[received..])?;
    let length = u64::from_le_bytes(header) as usize;
    if length > UNSEEN_LIMIT {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the monitor announced more output than it keeps",
        ));
    }
    let mut unseen = vec![0u8; length];
    reader.read_exact(&mut unseen)?;
    stream.set_read_timeout(None)?;
    Ok((master, unseen, stream))
}

/// The session of an attach: the output since the last attach, then the terminal's; input
/// into it; its size; and `ended`, how the instance ended, unless the caller detaches first.
pub(crate) fn session(
    master: OwnedFd,
    unseen: Vec<u8>,
    connection: UnixStream,
    ended: impl Future<Output = io::Result<ExecExit>> + Send + 'static,
) -> io::Result<ExecSession> {
    let (sender, output) = tokio::sync::mpsc::channel(64);
    let reader = tokio::fs::File::from_std(master.try_clone()?.into());
    let writer = tokio::fs::File::from_std(master.try_clone()?.into());
    tokio::spawn(async move {
        if !unseen.is_empty() && sender.send(ExecOutput::Stdout(unseen)).await.is_err() {
            return;
        }
        crate::exec::pump(reader, ExecOutput::Stdout, sender).await;
    });
    let detached = Arc::new(tokio::sync::Notify::new());
    let detach = detached.clone();
    let exit = async move {
        tokio::select! {
            ended = ended => ended,
            // Detaching leaves the instance running: no exit to report.
            _ = detach.notified() => Ok(ExecExit { exit_code: None, signal: None }),
        }
    };
    Ok(ExecSession {
        output,
        input: Some(Box::new(writer)),
        terminal: true,
        control: Box::new(TerminalControl {
            master,
            connection: Mutex::new(Some(connection)),
            detached,
        }),
        exit: Box::pin(exit),
    })
}

/// Resizes an attached terminal; `kill` detaches (the instance goes on).
struct TerminalControl {
    master: OwnedFd,
    /// Closed on detach, which tells the monitor to read the terminal again.
    connection: Mutex<Option<UnixStream>>,
    detached: Arc<tokio::sync::Notify>,
}

impl ExecControl for TerminalControl {
    fn resize(&self, cols: u16, rows: u16) {
        crate::exec::resize_terminal(&self.master, cols, rows);
    }

    fn kill(&self) {
        self.connection
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        self.detached.notify_one();
    }
}

impl Drop for TerminalControl {
    fn drop(&mut self) {
        self.kill();
    }
}
