//! Test harness: a real `ward serve` on a free port with a temporary data directory, and the
//! `ward` CLI and typed client pointed at it.
//!
//! Every test file compiles this module on its own and uses a different part of it.
#![allow(dead_code)]

pub mod images;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long the daemon may take to come up, and to stop after SIGTERM.
const START_DEADLINE: Duration = Duration::from_secs(20);
const STOP_DEADLINE: Duration = Duration::from_secs(10);
/// Pause between two looks at a condition while waiting on it.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// The environment variables that would point the CLI somewhere else than the test says.
const WARD_VARIABLES: [&str; 6] = [
    "WARD_HOST",
    "WARD_TOKEN",
    "WARD_DATA_DIR",
    "WARD_PROJECT",
    "WARD_LISTEN",
    "WARD_CONFIG",
];

/// The `ward` binary under test.
pub fn ward_binary() -> &'static str {
    env!("CARGO_BIN_EXE_ward")
}

/// A `ward` command with the caller's WARD_* variables removed.
pub fn ward_command() -> Command {
    let mut command = Command::new(ward_binary());
    for variable in WARD_VARIABLES {
        command.env_remove(variable);
    }
    command.stdin(Stdio::null());
    command
}

/// A running `ward serve`; stopped with SIGTERM (then SIGKILL) when dropped.
pub struct Daemon {
    child: Child,
    data_dir: tempfile::TempDir,
    address: SocketAddr,
    token: String,
    /// Holds the daemon's log, outside the data directory the daemon owns.
    _log_dir: tempfile::TempDir,
    log_path: PathBuf,
    /// `--config` of every start, when the test gave one.
    config_path: Option<PathBuf>,
}

impl Daemon {
    /// Starts `ward serve --data-dir <temp> --listen 127.0.0.1:0` and waits until it answers
    /// `GET /healthz`.
    pub fn start() -> Daemon {
        Daemon::start_with(
            tempfile::tempdir().expect("create a temporary data directory"),
            None,
        )
    }

    /// Like [`Daemon::start`], with `config` (YAML) as the daemon's `--config` file.
    pub fn start_with_config(config: &str) -> Daemon {
        Daemon::start_with(
            tempfile::tempdir().expect("create a temporary data directory"),
            Some(config),
        )
    }

    /// Like [`Daemon::start`], with the data directory created under `parent`: a sandbox test
    /// needs it outside `/tmp`, which every workload replaces with its own, so that the data
    /// directory is hidden by Ward and not by accident.
    pub fn start_with_data_dir_under(parent: &Path) -> Daemon {
        Daemon::start_with(
            tempfile::Builder::new()
                .prefix("ward-test-")
                .tempdir_in(parent)
                .expect("create a data directory"),
            None,
        )
    }

    fn start_with(data_dir: tempfile::TempDir, config: Option<&str>) -> Daemon {
        let log_dir = tempfile::tempdir().expect("create a temporary log directory");
        let log_path = log_dir.path().join("serve.log");
        let config_path = config.map(|config| {
            let path = log_dir.path().join("config.yaml");
            std::fs::write(&path, config).expect("write the daemon config");
            path
        });
        let child = spawn_serve(data_dir.path(), &log_path, config_path.as_deref());
        let mut daemon = Daemon {
            child,
            data_dir,
            address: SocketAddr::from(([127, 0, 0, 1], 0)),
            token: String::new(),
            _log_dir: log_dir,
            log_path,
            config_path,
        };
        daemon.wait_until_healthy();
        daemon.token = std::fs::read_to_string(daemon.data_dir().join("admin.token"))
            .unwrap_or_else(|error| daemon.fail(&format!("no admin.token after start: {error}")))
            .trim()
            .to_string();
        daemon
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the daemon with SIGTERM, as a service manager would, and waits for it to exit;
    /// true if it did within the deadline.
    pub fn stop(&mut self) -> bool {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + STOP_DEADLINE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        false
    }

    /// Kills the daemon with SIGKILL, as a crash would, and reaps it; its workloads live on.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts a new `ward serve` on the same data directory after [`Daemon::kill9`] and waits
    /// until it answers `GET /healthz`; its log goes on in the same file.
    pub fn restart(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.fail("restart needs the daemon to be stopped first (see kill9)");
        }
        // The killed daemon's address: another daemon may own that port by now.
        let _ = std::fs::remove_file(self.data_dir().join("ward.addr"));
        self.child = spawn_serve(
            self.data_dir.path(),
            &self.log_path,
            self.config_path.as_deref(),
        );
        self.wait_until_healthy();
    }

    fn wait_until_healthy(&mut self) {
        let deadline = Instant::now() + START_DEADLINE;
        let address_file = self.data_dir().join("ward.addr");
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.fail(&format!(
                    "ward serve exited with {status} before it was healthy"
                ));
            }
            let text = std::fs::read_to_string(&address_file).unwrap_or_default();
            // A daemon serving HTTPS names the scheme; the CLI, which trusts its certificate,
            // is then the health check.
            let (tls, address_text) = match text.trim().strip_prefix("https://") {
                Some(rest) => (true, rest.to_string()),
                None => (false, text.trim().to_string()),
            };
            if let Ok(address) = address_text.parse::<SocketAddr>() {
                let healthy = if tls {
                    self.ward(&["ps"]).status.success()
                } else {
                    http_get_status(address, "/healthz") == Some(200)
                };
                if healthy {
                    self.address = address;
                    return;
                }
            }
            if Instant::now() > deadline {
                self.fail(&format!(
                    "ward serve was not healthy within {START_DEADLINE:?}"
                ));
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Polls `look` until it gives a value, and panics with the daemon's log when `timeout`
    /// passes first; `what` names the awaited condition in that message.
    pub fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut look: impl FnMut() -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(value) = look() {
                return value;
            }
            if Instant::now() > deadline {
                self.fail(&format!("timed out after {timeout:?} waiting for {what}"));
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Panics with the daemon's log, so a failed start or wait says why.
    pub fn fail(&self, message: &str) -> ! {
        let log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        panic!("{message}\n--- ward serve log ---\n{log}");
    }

    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// The daemon's stdout and stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Runs `ward --data-dir <data dir> ARGS...`: the CLI finds address and key on its own.
    pub fn ward(&self, arguments: &[&str]) -> Output {
        self.ward_command(arguments).output().expect("run ward")
    }

    /// The command [`Daemon::ward`] runs, for tests that need stdin or other settings.
    pub fn ward_command(&self, arguments: &[&str]) -> Command {
        let mut command = ward_command();
        command
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(arguments);
        command
    }

    /// The body of `GET path` with the admin key; fails the test unless it answers 200.
    pub fn api_get(&self, path: &str) -> String {
        let mut stream = TcpStream::connect(self.address)
            .unwrap_or_else(|error| self.fail(&format!("connect for GET {path}: {error}")));
        write!(
            stream,
            "GET {path} HTTP/1.0\r\nAuthorization: Bearer {}\r\n\r\n",
            self.token
        )
        .unwrap_or_else(|error| self.fail(&format!("send GET {path}: {error}")));
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        match response.split_once("\r\n\r\n") {
            Some((head, body))
                if head
                    .lines()
                    .next()
                    .is_some_and(|line| line.contains(" 200 ")) =>
            {
                body.to_string()
            }
            _ => self.fail(&format!("GET {path} answered: {response}")),
        }
    }

    /// The typed client, with the admin key.
    pub fn client(&self) -> ward_client::Client {
        ward_client::Client::new(&self.url(), Some(self.token.clone()))
    }

    /// Removes every workload, so none outlives the test (workloads survive the daemon).
    /// Removes every workload of every project: workloads outlive their daemon by design, so
    /// one left behind would keep running after the test.
    fn remove_all_workloads(&self) {
        let names_in = |arguments: &[&str]| -> Vec<String> {
            let Ok(listing) = self.ward_command(arguments).output() else {
                return Vec::new();
            };
            let Ok(serde_json::Value::Array(documents)) =
                serde_json::from_slice::<serde_json::Value>(&listing.stdout)
            else {
                return Vec::new();
            };
            documents
                .iter()
                .filter_map(|document| document.get("name")?.as_str().map(str::to_string))
                .collect()
        };
        let mut projects = names_in(&["project", "ls", "-o", "json"]);
        if projects.is_empty() {
            projects.push("default".to_string());
        }
        for project in projects {
            let names = names_in(&["--project", &project, "ps", "-a", "-o", "json"]);
            if !names.is_empty() {
                let mut arguments = vec!["--project", project.as_str(), "rm", "-f"];
                arguments.extend(names.iter().map(String::as_str));
                let _ = self.ward(&arguments);
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.remove_all_workloads();
            if !self.stop() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

/// Whether this machine can run sandboxed workloads (root and crun); prints a `SKIP` line
/// naming `test` and the reason when it cannot.
pub fn sandbox_available(test: &str) -> bool {
    let uid = nix::unistd::geteuid();
    if !uid.is_root() {
        eprintln!("SKIP {test}: running workloads needs root, and this test runs as uid {uid}");
        return false;
    }
    let on_path = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|directory| directory.join("crun").is_file())
    });
    if !on_path {
        eprintln!("SKIP {test}: running workloads needs crun, and there is none on PATH");
        return false;
    }
    true
}

/// Spawns `ward serve` on `data_dir`, appending its output to the file at `log_path`.
fn spawn_serve(data_dir: &Path, log_path: &Path, config: Option<&Path>) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .expect("open the daemon log");
    let mut command = ward_command();
    if let Some(config) = config {
        command.arg("serve").arg("--config").arg(config);
    } else {
        command.arg("serve");
    }
    command
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .stdout(log.try_clone().expect("clone the log handle"))
        .stderr(log)
        .spawn()
        .expect("spawn ward serve")
}

/// The status code of a plain `GET`, or `None` when nothing answers.
pub fn http_get_status(address: SocketAddr, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let status_line = String::from_utf8_lossy(&response)
        .lines()
        .next()?
        .to_string();
    status_line.split_whitespace().nth(1)?.parse().ok()
}

/// Stdout of a command as text.
pub fn stdout_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Stderr of a command as text.
pub fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts the CONTRACT §1 error shape: non-zero exit, one `error: ` line on stderr that
/// contains `expected`, no panic; returns that line.
pub fn assert_one_error_line(output: &Output, expected: &str) -> String {
    let stderr = stderr_of(output);
    assert!(
        !output.status.success(),
        "expected a failure, got {:?}; stderr: {stderr}",
        output.status
    );
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "expected one line on stderr, got: {stderr:?}"
    );
    assert!(
        lines[0].starts_with("error: "),
        "expected 'error: ', got: {stderr:?}"
    );
    assert!(
        lines[0].contains(expected),
        "expected {expected:?} in: {stderr:?}"
    );
    lines[0].to_string()
}

/// Asserts success and returns stdout.
pub fn assert_success(output: &Output) -> String {
    assert!(
        output.status.success(),
        "expected success, got {:?}; stderr: {}",
        output.status,
        stderr_of(output)
    );
    stdout_of(output)
}

/// One HTTP response.
pub struct HttpResponse {
    pub status: u16,
    pub body: String,
}

/// Sends one request with an optional bearer key and JSON body, and reads the whole answer.
pub fn http_request(
    address: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> HttpResponse {
    let mut stream = TcpStream::connect(address).expect("connect to the daemon");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    let authorization = token
        .map(|token| format!("Authorization: Bearer {token}\r\n"))
        .unwrap_or_default();
    let body = body.unwrap_or_default();
    let content_type = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/json\r\n"
    };
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\n{authorization}{content_type}\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .expect("send the request");
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .unwrap_or_else(|error| panic!("read the answer to {method} {path}: {error}"));
    let head_end = find(&response, b"\r\n\r\n").expect("an HTTP response");
    let head = String::from_utf8_lossy(&response[..head_end]).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|status| status.parse().ok())
        .expect("a status code");
    let body = &response[head_end + 4..];
    let body = if head.contains("transfer-encoding: chunked") {
        dechunk(body)
    } else {
        body.to_vec()
    };
    HttpResponse {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// The payload of the complete chunks at the start of a chunked body.
pub fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut payload = Vec::new();
    while let Some(line_end) = find(body, b"\r\n") {
        let size_text = String::from_utf8_lossy(&body[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let Ok(size) = usize::from_str_radix(size_text, 16) else {
            break;
        };
        let start = line_end + 2;
        if size == 0 || body.len() < start + size + 2 {
            break;
        }
        payload.extend_from_slice(&body[start..start + size]);
        body = &body[start + size + 2..];
    }
    payload
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// A TCP port that nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("0.0.0.0:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind port 0")
        .port()
}
