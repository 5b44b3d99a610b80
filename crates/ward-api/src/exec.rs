//! `GET /api/v1/workloads/{name}/exec` (WebSocket): run a command inside a running instance.
//!
//! Binary frames carry a channel byte first: 0 stdin (client → server), 1 stdout and 2 stderr
//! (server → client). Text frames carry [`ExecControl`] JSON: `resize` and `close_stdin` from
//! the client, `exit` or `error` from the server, after which the server closes.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use ward_client::wire::ExecControl;
use ward_runtime::ExecProcess;

use crate::error::ApiError;
use crate::workloads::project_of;
use crate::ApiState;

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;

/// The exec query: `command` repeats, one value per argument.
#[derive(Debug, Default)]
struct ExecQuery {
    command: Vec<String>,
    tty: bool,
    replica: Option<u32>,
    project: Option<String>,
    cols: Option<u16>,
    rows: Option<u16>,
}

fn parse_query(raw: Option<&str>) -> Result<ExecQuery, ApiError> {
    let mut query = ExecQuery::default();
    for pair in raw.unwrap_or("").split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(value);
        let not_a_number =
            |what: &str| ApiError::bad_request(format!("{what}: {value:?} is not a number"));
        match key {
            "command" => query.command.push(value.clone()),
            "tty" => query.tty = value == "true" || value == "1",
            "replica" => query.replica = Some(value.parse().map_err(|_| not_a_number("replica"))?),
            "project" => query.project = Some(value.clone()),
            "cols" => query.cols = Some(value.parse().map_err(|_| not_a_number("cols"))?),
            "rows" => query.rows = Some(value.parse().map_err(|_| not_a_number("rows"))?),
            _ => {}
        }
    }
    if query.command.is_empty() {
        return Err(ApiError::bad_request(
            "command: no command given; pass it as repeated `command=` query parameters",
        ));
    }
    Ok(query)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' if index + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[index + 1..index + 3])
                    .ok()
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok());
                match hex {
                    Some(byte) => {
                        decoded.push(byte);
                        index += 3;
                    }
                    None => {
                        decoded.push(b'%');
                        index += 1;
                    }
                }
            }
            b'+' => {
                decoded.push(b' ');
                index += 1;
            }
            byte => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

#[utoipa::path(get, path = "/api/v1/workloads/{name}/exec", tag = "workloads",
    params(("name" = String, Path), ("command" = Vec<String>, Query, description = "The command, one parameter per argument"),
        ("tty" = Option<bool>, Query), ("replica" = Option<u32>, Query), ("cols" = Option<u16>, Query), ("rows" = Option<u16>, Query)),
    responses((status = 101, description = "WebSocket: binary frames are channel byte + data; text frames are control JSON"),
        (status = 404, body = ward_client::wire::ErrorBody), (status = 409, body = ward_client::wire::ErrorBody)))]
pub async fn exec(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let query = parse_query(raw.as_deref())?;
    let project = project_of(&query.project)?;
    let process = state
        .supervisor
        .exec(&project, &name, query.replica, &query.command, query.tty)
        .await?;
    if let (Some(master), Some(cols), Some(rows)) = (&process.pty_master, query.cols, query.rows) {
        resize(master, cols, rows);
    }
    Ok(upgrade.on_upgrade(move |socket| bridge(socket, process)))
}

fn resize(master: &OwnedFd, cols: u16, rows: u16) {
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize from a valid pointer; the fd is a PTY master we own.
    unsafe {
        libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size);
    }
}

async fn bridge(socket: WebSocket, process: ExecProcess) {
    let ExecProcess {
        mut child,
        pty_master,
    } = process;
    let (mut sender, mut receiver) = socket.split();
    let (output_tx, mut output_rx) = mpsc::channel::<Message>(64);
    let mut readers = Vec::new();
    let mut stdin: Option<Box<dyn AsyncWrite + Unpin + Send>> = None;
    let mut resize_handle: Option<OwnedFd> = None;
    match pty_master {
        Some(master) => match (master.try_clone(), master.try_clone()) {
            (Ok(reader), Ok(writer)) => {
                readers.push(tokio::spawn(pump(
                    tokio::fs::File::from_std(reader.into()),
                    STDOUT,
                    output_tx.clone(),
                )));
                stdin = Some(Box::new(tokio::fs::File::from_std(writer.into())));
                resize_handle = Some(master);
            }
            _ => {
                let _ = child.start_kill();
            }
        },
        None => {
            if let Some(stdout) = child.stdout.take() {
                readers.push(tokio::spawn(pump(stdout, STDOUT, output_tx.clone())));
            }
            if let Some(stderr) = child.stderr.take() {
                readers.push(tokio::spawn(pump(stderr, STDERR, output_tx.clone())));
            }
            if let Some(child_stdin) = child.stdin.take() {
                stdin = Some(Box::new(child_stdin));
            }
        }
    }
    drop(output_tx);
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            Some(message) = output_rx.recv() => {
                if sender.send(message).await.is_err() {
                    let _ = child.start_kill();
                }
            }
            incoming = receiver.next() => match incoming {
                Some(Ok(Message::Binary(data))) if data.first() == Some(&STDIN) => {
                    if let Some(writer) = stdin.as_mut() {
                        if writer.write_all(&data[1..]).await.is_err() || writer.flush().await.is_err() {
                            stdin = None;
                        }
                    }
                }
                Some(Ok(Message::Text(text))) => match serde_json::from_str::<ExecControl>(&text) {
                    Ok(ExecControl::Resize { cols, rows }) => {
                        if let Some(master) = &resize_handle {
                            resize(master, cols, rows);
                        }
                    }
                    Ok(ExecControl::CloseStdin) => {
                        if resize_handle.is_some() {
                            // A terminal has no end of input; send ^D as a shell expects.
                            if let Some(writer) = stdin.as_mut() {
                                let _ = writer.write_all(&[4]).await;
                            }
                        } else {
                            stdin = None;
                        }
                    }
                    _ => {}
                },
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    let _ = child.start_kill();
                }
                Some(Ok(_)) => {}
            },
        }
    };
    drop(stdin);
    // Let the output that is still in the pipes reach the client.
    let drain = async {
        while let Some(message) = output_rx.recv().await {
            if sender.send(message).await.is_err() {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
    for reader in readers {
        reader.abort();
    }
    let control = match status {
        Ok(status) => {
            use std::os::unix::process::ExitStatusExt;
            ExecControl::Exit {
                exit_code: status.code(),
                signal: status.signal(),
            }
        }
        Err(error) => ExecControl::Error {
            message: format!("cannot wait for the command: {error}"),
        },
    };
    if let Ok(text) = serde_json::to_string(&control) {
        let _ = sender.send(Message::Text(text.into())).await;
    }
    let _ = sender.send(Message::Close(None)).await;
}

async fn pump(mut source: impl AsyncRead + Unpin, channel: u8, output: mpsc::Sender<Message>) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        match source.read(&mut buffer[1..]).await {
            Ok(0) | Err(_) => return,
            Ok(count) => {
                buffer[0] = channel;
                let frame = buffer[..=count].to_vec();
                if output.send(Message::Binary(frame.into())).await.is_err() {
                    return;
                }
            }
        }
    }
}
