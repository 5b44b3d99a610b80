//! What a caller gets back from a running workload: its log lines and exec sessions, the same
//! whatever driver runs it (an OCI runtime, a VM, a WASM host).

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// A signal to send to a workload's processes.
pub use nix::sys::signal::Signal;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogStream {
    Stdout,
    Stderr,
}

impl LogStream {
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    pub time: SystemTime,
    pub stream: LogStream,
    pub text: String,
}

/// A command to run inside an instance, and what it changes of the instance's own process
/// for that command (as `docker exec -e -u -w -t` does).
#[derive(Clone, Debug, Default)]
pub struct ExecRequest {
    pub command: Vec<String>,
    /// A terminal; `TERM` is `xterm` unless `env` sets it.
    pub tty: bool,
    /// `KEY=VALUE` entries set on top of the instance's environment.
    pub env: Vec<String>,
    /// `UID[:GID]`, or a user (and group) name from the instance's `/etc/passwd`
    /// (`/etc/group`).
    pub user: Option<String>,
    /// An absolute working directory.
    pub workdir: Option<String>,
}

/// A command running inside an instance, whatever runs it (an OCI runtime's `exec`, a VM's
/// guest agent or serial console, a WASM host): its output, its input, its terminal and its
/// end. Made by a driver's `exec`.
pub struct ExecSession {
    /// Output in the order it came; closed once the command's output has ended.
    pub output: tokio::sync::mpsc::Receiver<ExecOutput>,
    /// The command's input; `None` when it takes none.
    pub input: Option<Box<dyn tokio::io::AsyncWrite + Send + Unpin>>,
    /// Whether the command runs on a terminal: its output is then all `Stdout`, and the end
    /// of its input is a ^D rather than a closed pipe.
    pub terminal: bool,
    /// Resizes the terminal and ends the command.
    pub control: Box<dyn ExecControl>,
    /// Resolves with how the command ended (also after [`ExecControl::kill`]).
    pub exit:
        std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<ExecExit>> + Send>>,
}

impl std::fmt::Debug for ExecSession {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ExecSession")
            .field("terminal", &self.terminal)
            .finish_non_exhaustive()
    }
}

/// A piece of an exec'd command's output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExecOutput {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
}

/// How an exec'd command ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecExit {
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
}

/// What a caller may do to a running exec'd command besides feeding it input.
pub trait ExecControl: Send + Sync {
    /// Sets the terminal's size; nothing without a terminal.
    fn resize(&self, cols: u16, rows: u16);
    /// Ends the command.
    fn kill(&self);
}
