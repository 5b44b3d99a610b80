//! `ward exec`: runs a command in a workload over the exec WebSocket and exits with its status;
//! `ward attach` speaks the same protocol with the terminal of a workload that runs on one.
//!
//! Binary frames carry a channel byte first (0 stdin, 1 stdout, 2 stderr); text frames are
//! `ExecControl` JSON. With `-it` on a terminal, the local terminal is raw for the duration
//! and follows window size changes.

use std::io::{IsTerminal, Read, Write};

use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use ward_client::wire::ExecControl;
use ward_client::ExecOptions;

use crate::cli::ExecArgs;
use crate::commands::{run, Context};
use crate::terminal::{self, TerminalModeGuard};

const STDIN_CHANNEL: u8 = 0;
const STDOUT_CHANNEL: u8 = 1;
const STDERR_CHANNEL: u8 = 2;

/// Exit status when the command could not be started at all (Docker uses the same).
const COMMAND_NOT_RUN_EXIT_CODE: i32 = 126;

pub async fn run(context: &Context, arguments: ExecArgs) -> anyhow::Result<i32> {
    let window_size = if arguments.tty {
        terminal::window_size()
    } else {
        None
    };
    let options = ExecOptions {
        tty: arguments.tty,
        env: run::resolve_environment(&arguments.env, &|key| std::env::var(key).ok())
            .into_iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect(),
        user: arguments.user.clone(),
        workdir: arguments.workdir.clone(),
        replica: arguments.replica,
        cols: window_size.map(|(columns, _)| columns),
        rows: window_size.map(|(_, rows)| rows),
    };
    let socket = context
        .client
        .exec(&arguments.name, &arguments.command, &options)
        .await?;
    let session = Session {
        tty: arguments.tty,
        interactive: arguments.interactive,
        window_size,
        name: &arguments.name,
    };
    relay(socket, &session).await
}

/// `ward attach NAME`: the terminal of a workload that runs on one, until it ends (the exit
/// status is the workload's) or standard input does.
pub async fn attach(context: &Context, name: &str, replica: Option<u32>) -> anyhow::Result<i32> {
    let window_size = terminal::window_size();
    let options = ExecOptions {
        tty: true,
        replica,
        cols: window_size.map(|(columns, _)| columns),
        rows: window_size.map(|(_, rows)| rows),
        ..ExecOptions::default()
    };
    let socket = context.client.attach(name, &options).await?;
    let session = Session {
        tty: true,
        interactive: true,
        window_size,
        name,
    };
    relay(socket, &session).await
}

/// How the local side of an exec or attach behaves.
pub struct Session<'a> {
    pub tty: bool,
    pub interactive: bool,
    pub window_size: Option<(u16, u16)>,
    /// The workload, for messages.
    pub name: &'a str,
}

/// Relays standard input, output and window size over an exec connection until the daemon
/// reports the end; returns the exit status to use.
pub async fn relay(socket: ward_client::WebSocket, session: &Session<'_>) -> anyhow::Result<i32> {
    let (mut sender, mut receiver) = socket.split();

    let stdin_is_terminal = std::io::stdin().is_terminal();
    // Dropped on every way out of this function, which puts the terminal back.
    let raw_terminal = if session.tty && session.interactive && stdin_is_terminal {
        Some(
            TerminalModeGuard::raw()
                .map_err(|error| anyhow::anyhow!("cannot put the terminal in raw mode: {error}"))?,
        )
    } else {
        None
    };

    let mut stdin_chunks = if session.interactive {
        Some(spawn_stdin_reader())
    } else {
        send_control(&mut sender, &ExecControl::CloseStdin).await?;
        None
    };
    let mut window_changes = if session.tty && session.window_size.is_some() {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change()).ok()
    } else {
        None
    };

    loop {
        tokio::select! {
            message = receiver.next() => match message {
                Some(Ok(Message::Binary(frame))) => write_output(&frame)?,
                Some(Ok(Message::Text(text))) => match serde_json::from_str::<ExecControl>(text.as_str()) {
                    Ok(ExecControl::Exit { exit_code, signal }) => return Ok(exit_status(exit_code, signal)),
                    Ok(ExecControl::Error { message }) => {
                        drop(raw_terminal);
                        eprintln!("error: {message}");
                        return Ok(COMMAND_NOT_RUN_EXIT_CODE);
                    }
                    // Client-bound only; a daemon does not send these.
                    Ok(ExecControl::Resize { .. } | ExecControl::CloseStdin) => {}
                    Err(error) => anyhow::bail!("the daemon sent an exec message this client does not understand: {error}"),
                },
                Some(Ok(Message::Close(_))) | None => {
                    anyhow::bail!("the daemon closed the exec connection before the command exited; see 'ward logs {}'", session.name)
                }
                Some(Ok(_)) => {}
                Some(Err(error)) => anyhow::bail!("the exec connection to the daemon failed: {error}"),
            },
            chunk = next_stdin_chunk(&mut stdin_chunks) => match chunk {
                Some(bytes) => {
                    let mut frame = Vec::with_capacity(bytes.len() + 1);
                    frame.push(STDIN_CHANNEL);
                    frame.extend_from_slice(&bytes);
                    sender.send(Message::Binary(frame.into())).await?;
                }
                None => {
                    stdin_chunks = None;
                    send_control(&mut sender, &ExecControl::CloseStdin).await?;
                }
            },
            () = next_window_change(&mut window_changes) => {
                if let Some((cols, rows)) = terminal::window_size() {
                    send_control(&mut sender, &ExecControl::Resize { cols, rows }).await?;
                }
            }
        }
    }
}

/// The command's exit code, or 128 + the signal that killed it (like a shell).
fn exit_status(exit_code: Option<i32>, signal: Option<i32>) -> i32 {
    match (signal, exit_code) {
        (Some(signal), _) => 128 + signal,
        (None, Some(exit_code)) => exit_code,
        (None, None) => 0,
    }
}

fn write_output(frame: &[u8]) -> anyhow::Result<()> {
    let Some((channel, data)) = frame.split_first() else {
        return Ok(());
    };
    match *channel {
        STDOUT_CHANNEL => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(data)?;
            stdout.flush()?;
        }
        STDERR_CHANNEL => {
            let mut stderr = std::io::stderr().lock();
            stderr.write_all(data)?;
            stderr.flush()?;
        }
        _ => {}
    }
    Ok(())
}

async fn send_control<S>(sender: &mut S, control: &ExecControl) -> anyhow::Result<()>
where
    S: futures_util::Sink<Message, Error = tokio_tungstenite::tungstenite::Error> + Unpin,
{
    let text = serde_json::to_string(control)?;
    sender.send(Message::text(text)).await?;
    Ok(())
}

/// Reads stdin on a plain thread (a blocking read cannot be cancelled; the process exit ends
/// it) and hands the chunks over; the channel closes at end of input.
fn spawn_stdin_reader() -> mpsc::Receiver<Vec<u8>> {
    let (chunks, receiver) = mpsc::channel(16);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buffer = vec![0u8; 8192];
        loop {
            match stdin.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(length) => {
                    if chunks.blocking_send(buffer[..length].to_vec()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    receiver
}

/// The next stdin chunk, `None` at end of input; never resolves once stdin is done.
async fn next_stdin_chunk(chunks: &mut Option<mpsc::Receiver<Vec<u8>>>) -> Option<Vec<u8>> {
    match chunks {
        Some(receiver) => receiver.recv().await,
        None => std::future::pending().await,
    }
}

/// Resolves on SIGWINCH; never without a terminal.
async fn next_window_change(signals: &mut Option<tokio::signal::unix::Signal>) {
    match signals {
        Some(signal) => {
            if signal.recv().await.is_none() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn killed_commands_exit_with_128_plus_signal() {
        assert_eq!(exit_status(Some(3), None), 3);
        assert_eq!(exit_status(None, Some(9)), 137);
        assert_eq!(exit_status(Some(0), None), 0);
    }
}
