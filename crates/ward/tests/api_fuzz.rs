//! The API fuzzed against its own OpenAPI description with schemathesis (from PyPI): over a
//! thousand generated requests, valid and not, with the admin key; none may answer 5xx,
//! crash the daemon or hang.
//!
//! `scripts/install-deps.sh` installs schemathesis into `~/.cache/ward/venv`;
//! `WARD_SCHEMATHESIS` names another binary.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Daemon;

/// The whole run may take this long; past it the API counts as hanging.
const FUZZ_DEADLINE: Duration = Duration::from_secs(600);
/// Generated cases the run must reach.
const MINIMUM_CASES: u64 = 1000;
/// Operations left out, and why:
/// - `/events`, `/logs` and `/exec` stream for as long as the client listens (by design);
/// - `/images/pull`, `/registries/login`, `/models/pull` and `/models/{name}/push` would
///   reach out to whatever host the generator names (a host that cannot be reached is a 502,
///   the upstream's failure), and tests send traffic to this machine only;
/// - `/images/import` takes a tar body that schemathesis cannot generate.
const EXCLUDED_PATHS: &str =
    "(/events|/logs|/exec|/images/pull|/images/import|/registries/login|/models/pull|/push)$";

fn schemathesis() -> PathBuf {
    if let Some(path) = std::env::var_os("WARD_SCHEMATHESIS") {
        return PathBuf::from(path);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let installed = home.join(".cache/ward/venv/bin/schemathesis");
    if installed.is_file() {
        return installed;
    }
    panic!(
        "schemathesis is not installed at {}: run scripts/install-deps.sh (it installs the \
         PyPI package into that virtual environment) or set WARD_SCHEMATHESIS",
        installed.display()
    );
}

#[test]
fn fuzzed_requests_never_get_a_server_error() {
    let daemon = Daemon::start();
    let report = tempfile::tempdir().expect("report directory");
    let mut child = Command::new(schemathesis())
        .arg("run")
        .arg(format!("{}/openapi.json", daemon.url()))
        .arg("--header")
        .arg(format!("Authorization: Bearer {}", daemon.token()))
        .args(["--checks", "not_a_server_error"])
        .args(["--max-examples", "40", "--seed", "7", "--workers", "2"])
        .args(["--request-timeout", "10"])
        .args(["--phases", "examples,fuzzing,stateful"])
        .args(["--exclude-path-regex", EXCLUDED_PATHS])
        .args(["--generation-database", "none", "--no-color"])
        .env("HOME", report.path())
        .current_dir(report.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start schemathesis");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for schemathesis") {
            break status;
        }
        if started.elapsed() > FUZZ_DEADLINE {
            let _ = child.kill();
            daemon.fail(&format!(
                "schemathesis ran past {FUZZ_DEADLINE:?}: the API hangs"
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let output = child.wait_with_output().expect("schemathesis output");
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    let summary = text
        .lines()
        .skip_while(|line| !line.contains("SUMMARY"))
        .collect::<Vec<_>>()
        .join("\n");
    println!("{summary}");
    assert!(status.success(), "schemathesis failed ({status}):\n{text}");
    let generated: u64 = text
        .lines()
        .find_map(|line| {
            let line = line.trim();
            line.split_once(" generated, ")
                .and_then(|(count, _)| count.parse().ok())
        })
        .unwrap_or_else(|| panic!("no test case count in:\n{text}"));
    assert!(
        generated >= MINIMUM_CASES,
        "only {generated} cases generated:\n{summary}"
    );
    assert_eq!(
        common::http_get_status(daemon.address(), "/healthz"),
        Some(200),
        "the daemon stopped answering"
    );
    let log = daemon.log();
    assert!(!log.contains("panicked"), "the daemon panicked:\n{log}");
    println!("{generated} cases in {:?}", started.elapsed());
}
