//! Alerts with real workloads and real receivers: a webhook gets a group's alerts once, in
//! Alertmanager's webhook format, and nothing while they are silenced; a real Alertmanager
//! receives forwarded alerts; another project sees and silences none of them.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{assert_success, stdout_of, Daemon};
use serde_json::Value;

/// An HTTP receiver that keeps every JSON body posted to it.
fn receiver() -> (u16, Arc<Mutex<Vec<Value>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = Arc::new(Mutex::new(Vec::new()));
    let kept = received.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((name, value)) = line.split_once(':') {
                    if name.eq_ignore_ascii_case("content-length") {
                        length = value.trim().parse().unwrap_or(0);
                    }
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_ok() {
                if let Ok(json) = serde_json::from_slice(&body) {
                    kept.lock().unwrap().push(json);
                }
            }
            let _ = reader
                .get_mut()
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (port, received)
}

/// A workload holding 80 MiB, touched.
fn hold_memory(daemon: &Daemon, name: &str) {
    assert_success(&daemon.ward(&[
        "run",
        "--name",
        name,
        "--",
        "python3",
        "-c",
        "import time\nb = b'x' * (80 << 20)\ntime.sleep(600)",
    ]));
}

fn alerts(daemon: &Daemon) -> Vec<Value> {
    let listing = assert_success(&daemon.ward(&["alert", "ls", "-o", "json"]));
    serde_json::from_str::<Value>(&listing)
        .unwrap()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn firing(daemon: &Daemon) -> usize {
    alerts(daemon)
        .iter()
        .filter(|alert| alert["state"] == "firing")
        .count()
}

#[test]
fn a_webhook_gets_a_group_once_and_nothing_while_it_is_silenced() {
    let (port, received) = receiver();
    let daemon = Daemon::start_with_config(&format!(
        "metrics: {{interval: 200ms}}\n\
         alerts:\n  evaluation_interval: 500ms\n  group_wait: 3s\n  group_interval: 2s\n  repeat_interval: 1h\n\
         \x20 webhooks: [http://127.0.0.1:{port}/hook]\n\
         \x20 rules:\n  - alert: HighMemory\n    metric: memory\n    above: 50MiB\n    for: 1s\n    severity: page\n"
    ));
    hold_memory(&daemon, "big1");
    hold_memory(&daemon, "big2");
    assert_success(&daemon.ward(&["run", "--name", "small", "--", "sleep", "600"]));

    // One notification for the group, with both alerts in it.
    let first = daemon.wait_for("the first notification", Duration::from_secs(60), || {
        received.lock().unwrap().first().cloned()
    });
    println!("{first:#}");
    assert_eq!(first["version"], "4");
    assert_eq!(first["status"], "firing");
    assert_eq!(first["receiver"], "ward");
    assert_eq!(first["groupLabels"]["alertname"], "HighMemory");
    assert_eq!(first["commonLabels"]["severity"], "page");
    let told = first["alerts"].as_array().unwrap();
    let mut workloads: Vec<&str> = told
        .iter()
        .map(|alert| alert["labels"]["workload"].as_str().unwrap())
        .collect();
    workloads.sort_unstable();
    assert_eq!(workloads, ["big1", "big2"], "grouped: {first:#}");
    for alert in told {
        assert_eq!(alert["status"], "firing");
        assert!(alert["startsAt"].as_str().unwrap().ends_with('Z'));
        assert_eq!(alert["fingerprint"].as_str().unwrap().len(), 16);
        let summary = alert["annotations"]["summary"].as_str().unwrap();
        assert!(summary.contains("above 50MiB"), "{summary}");
    }
    // Once: nothing more while nothing changes.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(received.lock().unwrap().len(), 1);
    let listing = stdout_of(&daemon.ward(&["alert", "ls"]));
    assert!(
        listing.contains("HighMemory") && listing.contains("firing"),
        "{listing}"
    );
    assert!(!listing.contains("small"), "{listing}");

    // Silenced, a third alert joining the group is not notified.
    let silence = assert_success(&daemon.ward(&[
        "alert",
        "silence",
        "alertname=HighMemory",
        "--for",
        "1h",
        "--comment",
        "known",
    ]));
    let silence_id = silence.split_whitespace().next().unwrap().to_string();
    hold_memory(&daemon, "big3");
    daemon.wait_for("three firing alerts", Duration::from_secs(30), || {
        (firing(&daemon) == 3).then_some(())
    });
    assert!(alerts(&daemon)
        .iter()
        .all(|alert| alert["silenced_by"][0] == silence_id.as_str()));
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        received.lock().unwrap().len(),
        1,
        "notified while silenced: {:#?}",
        received.lock().unwrap()
    );
    let silences = stdout_of(&daemon.ward(&["alert", "silences"]));
    assert!(
        silences.contains(&silence_id) && silences.contains("alertname=HighMemory"),
        "{silences}"
    );

    // Another project sees none of it, and may not silence it.
    assert_success(&daemon.ward(&["project", "create", "beta"]));
    let created: Value = serde_json::from_str(&assert_success(&daemon.ward(&[
        "key",
        "create",
        "beta-operator",
        "--project",
        "beta",
        "--role",
        "operator",
        "-o",
        "json",
    ])))
    .unwrap();
    let key = created["key"].as_str().unwrap();
    let theirs = daemon.ward(&[
        "alert",
        "ls",
        "-o",
        "json",
        "--token",
        key,
        "--project",
        "beta",
    ]);
    assert_eq!(stdout_of(&theirs).trim(), "[]");
    let sneaky = daemon.ward(&[
        "alert",
        "silence",
        "project=default",
        "--token",
        key,
        "--project",
        "beta",
    ]);
    assert!(!sneaky.status.success());
    let expire_theirs = daemon.ward(&[
        "alert",
        "expire",
        &silence_id,
        "--token",
        key,
        "--project",
        "beta",
    ]);
    assert!(!expire_theirs.status.success());
    assert!(
        stdout_of(&daemon.ward(&["alert", "silences"])).contains(&silence_id),
        "another project's key expired the silence"
    );

    // Expired, the silence lets the group's change through: big3 is told.
    assert_success(&daemon.ward(&["alert", "expire", &silence_id]));
    let second = daemon.wait_for(
        "the notification after the silence",
        Duration::from_secs(30),
        || received.lock().unwrap().get(1).cloned(),
    );
    assert_eq!(second["alerts"].as_array().unwrap().len(), 3, "{second:#}");

    // A removed workload's alert resolves and is told resolved.
    assert_success(&daemon.ward(&["rm", "-f", "big1"]));
    let resolved = daemon.wait_for("a resolved notification", Duration::from_secs(30), || {
        received
            .lock()
            .unwrap()
            .iter()
            .skip(2)
            .flat_map(|message| message["alerts"].as_array().cloned().unwrap_or_default())
            .find(|alert| alert["status"] == "resolved")
    });
    assert_eq!(resolved["labels"]["workload"], "big1");
}

#[test]
fn alerts_are_forwarded_to_a_real_alertmanager() {
    let alertmanager = "/usr/bin/prometheus-alertmanager";
    if !std::path::Path::new(alertmanager).exists() {
        eprintln!(
            "skipped: {alertmanager} is not installed (apt-get install prometheus-alertmanager)"
        );
        return;
    }
    let port = common::free_port();
    let cluster_port = common::free_port();
    let directory = tempfile::tempdir().unwrap();
    let config = directory.path().join("alertmanager.yml");
    std::fs::write(
        &config,
        "route:\n  receiver: none\nreceivers:\n  - name: none\n",
    )
    .unwrap();
    let mut server = std::process::Command::new(alertmanager)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.path={}", directory.path().display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg(format!("--cluster.listen-address=127.0.0.1:{cluster_port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let daemon = Daemon::start_with_config(&format!(
        "metrics: {{interval: 200ms}}\n\
         alerts:\n  evaluation_interval: 500ms\n  group_wait: 1s\n\
         \x20 alertmanagers: [http://127.0.0.1:{port}]\n\
         \x20 rules:\n  - alert: HighMemory\n    metric: memory\n    above: 50MiB\n"
    ));
    hold_memory(&daemon, "big");
    let found = daemon.wait_for("the alert in Alertmanager", Duration::from_secs(60), || {
        let output = std::process::Command::new("curl")
            .args(["-s", &format!("http://127.0.0.1:{port}/api/v2/alerts")])
            .output()
            .ok()?;
        let alerts: Value = serde_json::from_slice(&output.stdout).ok()?;
        alerts
            .as_array()?
            .iter()
            .find(|alert| alert["labels"]["alertname"] == "HighMemory")
            .cloned()
    });
    let _ = server.kill();
    let _ = server.wait();
    println!("{found:#}");
    assert_eq!(found["labels"]["workload"], "big");
    assert_eq!(found["labels"]["project"], "default");
    assert_eq!(found["status"]["state"], "active");
}
