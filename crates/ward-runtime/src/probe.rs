//! Health probes, run from inside the instance's network namespace: a TCP connect, a minimal
//! HTTP/1.0 GET, or a command run with `RUNTIME exec`.
//!
//! The socket probes enter the namespace on a fresh thread that is thrown away afterwards, so
//! no thread of the daemon's pools ever changes namespace. A socket keeps the namespace it was
//! made in, so only the connect happens on that thread.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sched::{setns, CloneFlags};
use ward_spec::NetworkMode;

use crate::exec::{ExecTarget, Terminal};

/// Where a socket probe connects: `port` on the loopback of the instance's network.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Target {
    pid: u32,
    network: NetworkMode,
    port: u16,
}

impl Target {
    pub fn new(pid: u32, network: NetworkMode, port: u16) -> Target {
        Target { pid, network, port }
    }
}

pub(crate) fn tcp(target: Target, timeout: Duration) -> Result<(), String> {
    connect(target, timeout).map(drop)
}

/// Sends `GET path HTTP/1.0` and wants a 2xx or 3xx status.
pub(crate) fn http(target: Target, path: &str, timeout: Duration) -> Result<(), String> {
    if !path.starts_with('/')
        || path
            .chars()
            .any(|character| character.is_control() || character == ' ')
    {
        return Err(format!(
            "health check path {path:?} is not a valid request path"
        ));
    }
    let deadline = Instant::now() + timeout;
    let mut stream = connect(target, timeout)?;
    let remaining = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    stream
        .set_write_timeout(Some(remaining()))
        .map_err(|error| error.to_string())?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .map_err(|error| format!("sending the request to port {}: {error}", target.port))?;
    let mut response = Vec::with_capacity(256);
    let mut buffer = [0u8; 256];
    while !response.windows(2).any(|pair| pair == b"\r\n") && response.len() < 4096 {
        stream
            .set_read_timeout(Some(remaining()))
            .map_err(|error| error.to_string())?;
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => response.extend_from_slice(&buffer[..read]),
            Err(error) => {
                return Err(format!(
                    "reading the response from port {}: {error}",
                    target.port
                ))
            }
        }
    }
    let status_line = String::from_utf8_lossy(&response);
    let status_line = status_line.lines().next().unwrap_or_default();
    let status: Option<u16> = status_line
        .strip_prefix("HTTP/")
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok());
    match status {
        Some(code) if (200..400).contains(&code) => Ok(()),
        Some(code) => Err(format!(
            "GET {path} on port {} answered {code}",
            target.port
        )),
        None => Err(format!(
            "GET {path} on port {} got no HTTP status line: {status_line:?}",
            target.port
        )),
    }
}

fn connect(target: Target, timeout: Duration) -> Result<TcpStream, String> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, target.port));
    let connect = move || {
        TcpStream::connect_timeout(&address, timeout)
            .map_err(|error| format!("connect to port {}: {error}", target.port))
    };
    if target.network == NetworkMode::Host {
        return connect();
    }
    let namespace_path = format!("/proc/{}/ns/net", target.pid);
    let namespace =
        File::open(&namespace_path).map_err(|error| format!("open {namespace_path}: {error}"))?;
    std::thread::Builder::new()
        .name("ward-probe".to_string())
        .spawn(move || {
            setns(&namespace, CloneFlags::CLONE_NEWNET)
                .map_err(|error| format!("enter {namespace_path}: {error}"))?;
            connect()
        })
        .map_err(|error| format!("start probe thread: {error}"))?
        .join()
        .map_err(|_| "probe thread panicked".to_string())?
}

/// Runs `command` in the instance and wants exit code 0 within `timeout`.
pub(crate) async fn exec(
    target: ExecTarget<'_>,
    command: &[String],
    timeout: Duration,
) -> Result<(), String> {
    if command.is_empty() {
        return Err("the exec health check has no command".to_string());
    }
    let mut runtime = target
        .command(command, Terminal::None)
        .map_err(|error| error.to_string())?;
    let child = runtime
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|error| format!("run {}: {error}", target.runtime.path.display()))?;
    drop(runtime);
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Err(_) => Err(format!(
            "{:?} did not finish within {timeout:?}",
            command.join(" ")
        )),
        Ok(Err(error)) => Err(format!("wait for {:?}: {error}", command.join(" "))),
        Ok(Ok(output)) if output.status.success() => Ok(()),
        Ok(Ok(output)) => {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let detail = stderr.lines().last().unwrap_or_default();
            Err(format!(
                "{:?} exited with {}: {detail}",
                command.join(" "),
                output.status
            ))
        }
    }
}
