//! A real Prometheus (Debian's 2.42) scrapes Ward's `/metrics` with no error, and its
//! remote-write receiver gets every series Ward stores.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{assert_success, free_port, Daemon};
use serde_json::Value;

const PROMETHEUS: &str = "/usr/bin/prometheus";

/// Prometheus's answer to `GET path`, as JSON.
fn prometheus_get(port: u16, path: &str) -> Option<Value> {
    let output = Command::new("curl")
        .args(["-s", "-g", &format!("http://127.0.0.1:{port}{path}")])
        .output()
        .ok()?;
    serde_json::from_slice(&output.stdout).ok()
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn prometheus_scrapes_metrics_cleanly_and_receives_remote_writes() {
    if !std::path::Path::new(PROMETHEUS).exists() {
        eprintln!("skipped: {PROMETHEUS} is not installed (apt-get install prometheus)");
        return;
    }
    let port = free_port();
    let daemon = Daemon::start_with_config(&format!(
        "metrics: {{interval: 200ms, remote_write: http://127.0.0.1:{port}/api/v1/write}}\n"
    ));
    assert_success(&daemon.ward(&["run", "--name", "steady", "--", "sleep", "600"]));

    let directory = tempfile::tempdir().unwrap();
    let config = directory.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{scrape_interval: 1s}}\n\
             scrape_configs:\n\
             \x20 - job_name: ward\n\
             \x20   authorization: {{credentials_file: {}}}\n\
             \x20   static_configs: [{{targets: ['{}']}}]\n",
            daemon.data_dir().join("admin.token").display(),
            daemon.address()
        ),
    )
    .unwrap();
    let _prometheus = Killed(
        Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                directory.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--web.enable-remote-write-receiver")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    // The scrape: up, with no error.
    let target = daemon.wait_for("a healthy scrape of Ward", Duration::from_secs(60), || {
        let targets = prometheus_get(port, "/api/v1/targets")?;
        let target = targets["data"]["activeTargets"]
            .as_array()?
            .first()?
            .clone();
        (target["health"] == "up").then_some(target)
    });
    assert_eq!(target["lastError"], "", "{target:#}");
    let scraped = daemon.wait_for("ward_up in Prometheus", Duration::from_secs(30), || {
        let answer = prometheus_get(port, "/api/v1/query?query=ward_up")?;
        answer["data"]["result"].as_array()?.first().cloned()
    });
    assert_eq!(scraped["value"][1], "1");
    // Every instance metric Ward exposes has a Prometheus name and type it accepts.
    let memory = prometheus_get(
        port,
        "/api/v1/query?query=ward_instance_memory_bytes{job=\"ward\",workload=\"steady\"}",
    )
    .unwrap();
    assert_eq!(memory["status"], "success", "{memory}");
    let scraped_pids = daemon.wait_for(
        "scraped ward_instance_pids",
        Duration::from_secs(30),
        || {
            let answer = prometheus_get(
                port,
                "/api/v1/query?query=ward_instance_pids{job=\"ward\",workload=\"steady\"}",
            )?;
            answer["data"]["result"].as_array()?.first().cloned()
        },
    );
    assert!(
        scraped_pids["value"][1]
            .as_str()
            .and_then(|value| value.parse::<f64>().ok())
            .is_some_and(|pids| pids >= 1.0),
        "{scraped_pids}"
    );

    // Remote write: the stored series arrive with their own labels, and without the
    // scrape's `job` (the scraped copy of the same gauge has it).
    let written = daemon.wait_for("remote-written samples", Duration::from_secs(60), || {
        let answer = prometheus_get(
            port,
            "/api/v1/query?query=ward_instance_pids{workload=\"steady\",job=\"\"}",
        )?;
        answer["data"]["result"].as_array()?.first().cloned()
    });
    println!("{written:#}");
    assert_eq!(written["metric"]["project"], "default");
    assert_eq!(written["metric"]["replica"], "0");
    assert!(written["metric"].get("job").is_none(), "{written}");
    let series = prometheus_get(
        port,
        "/api/v1/series?match[]={workload=\"steady\",job=\"\"}",
    )
    .unwrap();
    let names: Vec<&str> = series["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|series| series["__name__"].as_str())
        .collect();
    for name in [
        "ward_instance_memory_bytes",
        "ward_instance_pids",
        "ward_instance_anomaly_score",
    ] {
        assert!(names.contains(&name), "{name} not among {names:?}");
    }
}
