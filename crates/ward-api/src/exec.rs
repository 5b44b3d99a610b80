//! `GET /api/v1/workloads/{name}/exec` (WebSocket): run a command inside a running instance;
//! `GET /api/v1/workloads/{name}/attach`: the same protocol on the terminal of an instance
//! that runs on one.
//!
//! Binary frames carry a channel byte first: 0 stdin (client → server), 1 stdout and 2 stderr
//! (server → client). Text frames carry [`ExecControl`] JSON: `resize` and `close_stdin` from
//! the client, `exit` or `error` from the server, after which the server closes.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use ward_client::wire::ExecControl;
use ward_core::session::{ExecOutput, ExecRequest, ExecSession};

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
    env: Vec<String>,
    user: Option<String>,
    workdir: Option<String>,
    replica: Option<u32>,
    project: Option<String>,
    cols: Option<u16>,
    rows: Option<u16>,
}

fn parse_query(raw: Option<&str>) -> Result<ExecQuery, ApiError> {
    let mut query = ExecQuery::default();
    for (key, value) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        let not_a_number =
            |what: &str| ApiError::bad_request(format!("{what}: {value:?} is not a number"));
        match key.as_ref() {
            "command" => query.command.push(value.to_string()),
            "tty" => query.tty = value == "true" || value == "1",
            "env" => {
                if !value.contains('=') || value.starts_with('=') || value.contains('\0') {
                    return Err(ApiError::bad_request(format!(
                        "env: {value:?} is not KEY=VALUE; give each variable as env=KEY=VALUE"
                    )));
                }
                query.env.push(value.to_string());
            }
            "user" => query.user = Some(value.to_string()),
            "workdir" => {
                if !value.starts_with('/') || value.contains('\0') {
                    return Err(ApiError::bad_request(format!(
                        "workdir: {value:?} is not an absolute path; give one that starts with /"
                    )));
                }
                query.workdir = Some(value.to_string());
            }
            "replica" => query.replica = Some(value.parse().map_err(|_| not_a_number("replica"))?),
            "project" => query.project = Some(value.to_string()),
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

#[utoipa::path(get, path = "/api/v1/workloads/{name}/exec", tag = "workloads",
    params(("name" = String, Path), ("command" = Vec<String>, Query, description = "The command, one parameter per argument"),
        ("tty" = Option<bool>, Query, description = "A terminal; TERM is xterm unless env sets it"),
        ("env" = Vec<String>, Query, description = "KEY=VALUE, repeated: variables set for the command"),
        ("user" = Option<String>, Query, description = "UID[:GID] or names from the workload's /etc/passwd"),
        ("workdir" = Option<String>, Query, description = "Absolute working directory"),
        ("replica" = Option<u32>, Query), ("cols" = Option<u16>, Query), ("rows" = Option<u16>, Query)),
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
    let session = state
        .workloads
        .exec(
            &project,
            &name,
            query.replica,
            &ExecRequest {
                command: query.command,
                tty: query.tty,
                env: query.env,
                user: query.user,
                workdir: query.workdir,
            },
        )
        .await?;
    if let (Some(cols), Some(rows)) = (query.cols, query.rows) {
        session.control.resize(cols, rows);
    }
    Ok(upgrade.on_upgrade(move |socket| bridge(socket, session)))
}

#[utoipa::path(get, path = "/api/v1/workloads/{name}/attach", tag = "workloads",
    params(("name" = String, Path), ("replica" = Option<u32>, Query), ("cols" = Option<u16>, Query), ("rows" = Option<u16>, Query)),
    responses((status = 101, description = "WebSocket, as exec: the terminal of a workload that runs on one (tty: true); the exit message comes when the instance ends"),
        (status = 404, body = ward_client::wire::ErrorBody), (status = 409, body = ward_client::wire::ErrorBody)))]
pub async fn attach(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    // The exec query without a command: a placeholder satisfies its check.
    let raw = format!("{}&command=-", raw.unwrap_or_default());
    let query = parse_query(Some(&raw))?;
    let project = project_of(&query.project)?;
    let session = state
        .workloads
        .attach(&project, &name, query.replica)
        .await?;
    if let (Some(cols), Some(rows)) = (query.cols, query.rows) {
        session.control.resize(cols, rows);
    }
    Ok(upgrade.on_upgrade(move |socket| bridge(socket, session)))
}

async fn bridge(socket: WebSocket, session: ExecSession) {
    let ExecSession {
        mut output,
        mut input,
        terminal,
        control,
        mut exit,
    } = session;
    let (mut sender, mut receiver) = socket.split();
    let status = loop {
        tokio::select! {
            status = &mut exit => break status,
            Some(piece) = output.recv() => {
                if sender.send(frame(piece)).await.is_err() {
                    control.kill();
                }
            }
            incoming = receiver.next() => match incoming {
                Some(Ok(Message::Binary(data))) if data.first() == Some(&STDIN) => {
                    if let Some(writer) = input.as_mut() {
                        if writer.write_all(&data[1..]).await.is_err() || writer.flush().await.is_err() {
                            input = None;
                        }
                    }
                }
                Some(Ok(Message::Text(text))) => match serde_json::from_str::<ExecControl>(&text) {
                    Ok(ExecControl::Resize { cols, rows }) => control.resize(cols, rows),
                    Ok(ExecControl::CloseStdin) => {
                        if terminal {
                            // A terminal has no end of input; send ^D as a shell expects.
                            if let Some(writer) = input.as_mut() {
                                let _ = writer.write_all(&[4]).await;
                            }
                        } else {
                            input = None;
                        }
                    }
                    _ => {}
                },
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => control.kill(),
                Some(Ok(_)) => {}
            },
        }
    };
    drop(input);
    // Let the output that is still in the pipes reach the client.
    let drain = async {
        while let Some(piece) = output.recv().await {
            if sender.send(frame(piece)).await.is_err() {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
    drop(output);
    let control = match status {
        Ok(exit) => ExecControl::Exit {
            exit_code: exit.exit_code,
            signal: exit.signal,
        },
        Err(error) => ExecControl::Error {
            message: format!("cannot wait for the command: {error}"),
        },
    };
    if let Ok(text) = serde_json::to_string(&control) {
        let _ = sender.send(Message::Text(text.into())).await;
    }
    let _ = sender.send(Message::Close(None)).await;
}

/// A binary frame: the channel byte, then the output.
fn frame(piece: ExecOutput) -> Message {
    let (channel, data) = match piece {
        ExecOutput::Stdout(data) => (STDOUT, data),
        ExecOutput::Stderr(data) => (STDERR, data),
    };
    let mut frame = Vec::with_capacity(data.len() + 1);
    frame.push(channel);
    frame.extend_from_slice(&data);
    Message::Binary(frame.into())
}
