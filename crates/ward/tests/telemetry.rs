//! Telemetry in the running daemon: every instance's samples are stored and watched, and a
//! workload whose memory leaves its usual level gets an anomaly event that says so.

mod common;

use std::time::{Duration, Instant};

use common::{assert_success, stdout_of, Daemon};

#[test]
fn a_memory_jump_is_an_anomaly_event_and_a_quiet_workload_has_none() {
    let daemon = Daemon::start_with_config("metrics: {interval: 100ms}\n");
    // Holds still for 30 s (300 samples: past the detector's warm-up), then takes 200 MiB
    // more, touched, and keeps it.
    let program =
        "import time\ntime.sleep(30)\nb = bytearray(b'x' * (200 << 20))\ntime.sleep(120)\n";
    assert_success(&daemon.ward(&[
        "run", "--name", "hog", "-m", "1g", "--", "python3", "-c", program,
    ]));
    assert_success(&daemon.ward(&["run", "--name", "quiet", "--", "sleep", "300"]));
    let started = Instant::now();

    // Until the allocation, nothing is anomalous.
    while started.elapsed() < Duration::from_secs(27) {
        let events = stdout_of(&daemon.ward(&["events"]));
        assert!(
            !events.contains("anomaly"),
            "an anomaly before anything changed:\n{events}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let line = daemon.wait_for("the memory anomaly of hog", Duration::from_secs(60), || {
        stdout_of(&daemon.ward(&["events"]))
            .lines()
            .find(|line| line.contains("anomaly") && line.contains("memory of hog (replica 0)"))
            .map(str::to_owned)
    });
    assert!(
        line.contains("far above its usual") || line.contains("jumped to"),
        "{line}"
    );
    assert!(line.contains("MiB"), "{line}");

    // The event carries the series and the score for machines.
    let listing = stdout_of(&daemon.ward(&["events", "-o", "json"]));
    let anomaly = listing
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .find(|event| {
            event["kind"] == "anomaly"
                && event["workload"] == "hog"
                && event["data"]["series"] == "ward_instance_memory_bytes"
        })
        .expect("the memory anomaly event in JSON");
    println!("{line}\n{anomaly}");
    assert!(
        anomaly["data"]["score"].as_f64().unwrap() >= 0.99,
        "{anomaly}"
    );
    assert!(
        anomaly["data"]["value"].as_f64().unwrap()
            > 3.0 * anomaly["data"]["usual"].as_f64().unwrap(),
        "{anomaly}"
    );

    let events = stdout_of(&daemon.ward(&["events"]));
    assert!(
        !events
            .lines()
            .any(|l| l.contains("anomaly") && l.contains("quiet")),
        "{events}"
    );
    // `ward anomalies` ranks it, and leaves the quiet workload out.
    let ranked = assert_success(&daemon.ward(&["anomalies"]));
    assert!(ranked.starts_with("SCORE"), "{ranked}");
    assert!(
        ranked
            .lines()
            .any(|l| l.contains("hog-0") && l.contains("ward_instance_memory_bytes")),
        "{ranked}"
    );
    assert!(!ranked.contains("quiet"), "{ranked}");
    let listing: serde_json::Value =
        serde_json::from_str(&assert_success(&daemon.ward(&["anomalies", "-o", "json"]))).unwrap();
    let scores: Vec<f64> = listing
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["data"]["score"].as_f64().unwrap())
        .collect();
    assert!(
        scores.windows(2).all(|pair| pair[0] >= pair[1]),
        "{scores:?}"
    );
    // The samples are in the store, and come back by workload and by step.
    let table = assert_success(&daemon.ward(&[
        "metrics",
        "memory",
        "--workload",
        "hog",
        "--since",
        "5m",
        "--step",
        "5s",
    ]));
    assert!(table.starts_with("TIME (UTC)"), "{table}");
    assert!(
        table.lines().skip(1).all(|line| line.contains(" hog ")),
        "{table}"
    );
    assert!(table.contains("MiB"), "{table}");
    // Once the allocation is whole, the step maxima show it.
    let json = daemon.wait_for(
        "hog's 200 MiB in its metrics",
        Duration::from_secs(60),
        || {
            let listing = assert_success(&daemon.ward(&[
                "metrics",
                "memory",
                "--since",
                "5m",
                "--step",
                "5s",
                "--aggregation",
                "max",
                "-o",
                "json",
            ]));
            let json: serde_json::Value = serde_json::from_str(&listing).unwrap();
            let hog = json["series"]
                .as_array()?
                .iter()
                .find(|s| s["labels"]["workload"] == "hog")?
                .clone();
            let top = hog["points"]
                .as_array()?
                .iter()
                .filter_map(|p| p[1].as_f64())
                .fold(0.0, f64::max);
            (top > 200.0 * 1024.0 * 1024.0).then_some(json)
        },
    );
    assert_eq!(json["name"], "ward_instance_memory_bytes");
    let series = json["series"].as_array().unwrap();
    assert!(
        series.iter().any(|s| s["labels"]["workload"] == "quiet"),
        "{json}"
    );
    // Another project's metrics hold none of this project's series.
    assert_success(&daemon.ward(&["project", "create", "beta"]));
    let other = assert_success(&daemon.ward(&[
        "--project",
        "beta",
        "metrics",
        "memory",
        "--since",
        "5m",
        "-o",
        "json",
    ]));
    assert!(
        !other.contains("hog") && !other.contains("quiet"),
        "{other}"
    );
    // A key of project beta reads none of default's series, and naming default is refused.
    let created: serde_json::Value = serde_json::from_str(&assert_success(&daemon.ward(&[
        "key",
        "create",
        "spy",
        "--project",
        "beta",
        "--role",
        "viewer",
        "-o",
        "json",
    ])))
    .unwrap();
    let key = created["key"].as_str().unwrap().to_owned();
    let call = |query: &str| {
        let output = std::process::Command::new("curl")
            .args([
                "-s",
                "-w",
                "\n%{http_code}",
                "-H",
                &format!("Authorization: Bearer {key}"),
            ])
            .arg(format!("{}/api/v1/metrics/query?{query}", daemon.url()))
            .output()
            .unwrap();
        String::from_utf8(output.stdout).unwrap()
    };
    let own = call("name=memory&start=0");
    assert!(
        own.ends_with("\n200") && !own.contains("hog") && !own.contains("quiet"),
        "{own}"
    );
    let theirs = call("name=memory&start=0&project=default");
    assert!(
        theirs.ends_with("\n403") && !theirs.contains("hog"),
        "{theirs}"
    );
    let bad = daemon.ward(&["metrics", "memory", "--aggregation", "median"]);
    assert!(!bad.status.success());
}

/// Workload `name`'s memory series in one-second steps from `start` (epoch seconds), as
/// (seconds, bytes), oldest first: steps from a fixed start are the same in every call.
fn memory_points(daemon: &Daemon, name: &str, start: u64) -> Vec<(f64, f64)> {
    let end = start + 3600;
    let body = daemon.api_get(&format!(
        "/api/v1/metrics/query?name=memory&workload={name}&start={start}&end={end}&step=1&aggregation=last"
    ));
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    json["series"]
        .as_array()
        .and_then(|series| series.first())
        .and_then(|series| series["points"].as_array())
        .map(|points| {
            points
                .iter()
                .filter_map(|point| Some((point[0].as_f64()?, point[1].as_f64()?)))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn kill_9_of_the_daemon_during_collection_leaves_the_store_readable() {
    let mut daemon = Daemon::start_with_config("metrics: {interval: 100ms}\n");
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert_success(&daemon.ward(&["run", "--name", "steady", "--", "sleep", "600"]));
    // Three times: collect for a while, then kill the daemon in the middle of it.
    let mut before = Vec::new();
    for round in 0..3 {
        before = daemon.wait_for("samples of steady", Duration::from_secs(30), || {
            let points = memory_points(&daemon, "steady", start);
            (points.len() > before.len() + 4).then_some(points)
        });
        daemon.kill9();
        daemon.restart();
        // Everything answered before the kill is there after it, value for value: only the
        // newest second may differ (a batch being written at the kill may be lost, and the
        // new daemon's samples join that second's step).
        let after = memory_points(&daemon, "steady", start);
        let settled = &before[..before.len() - 1];
        let lost: Vec<_> = settled
            .iter()
            .filter(|point| !after.contains(point))
            .collect();
        assert!(
            lost.is_empty(),
            "round {round}: lost {lost:?} of {settled:?} in the kill"
        );
        // And the store takes new samples again.
        let newest = after.last().map_or(0.0, |point| point.0);
        daemon.wait_for(
            "new samples after the restart",
            Duration::from_secs(30),
            || {
                memory_points(&daemon, "steady", start)
                    .last()
                    .is_some_and(|point| point.0 > newest)
                    .then_some(())
            },
        );
        before = memory_points(&daemon, "steady", start);
    }
}

#[test]
fn ward_forecast_name_says_when_a_leak_reaches_the_memory_limit() {
    let daemon = Daemon::start_with_config("metrics: {interval: 500ms}\n");
    // 2 MiB a second towards a 1 GiB limit: there in about eight and a half minutes.
    let program = "import time\nkept = []\nwhile True:\n    kept.append(b'x' * (1 << 20))\n    time.sleep(0.5)\n";
    assert_success(&daemon.ward(&[
        "run", "--name", "slow", "-m", "1g", "--", "python3", "-c", program,
    ]));
    let forecast = daemon.wait_for(
        "a forecast that reaches the limit",
        Duration::from_secs(60),
        || {
            let listing = assert_success(&daemon.ward(&[
                "forecast",
                "slow",
                "--horizon",
                "1h",
                "-o",
                "json",
            ]));
            let json: serde_json::Value = serde_json::from_str(&listing).unwrap();
            let first = json.as_array()?.first()?.clone();
            (first["forecast"].as_array()?.len() > 10 && first["reaches_limit_at"].is_number())
                .then_some(first)
        },
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let reaches = forecast["reaches_limit_at"].as_f64().unwrap();
    assert_eq!(forecast["instance"], "slow-0");
    assert_eq!(forecast["limit"].as_f64(), Some(1024.0 * 1024.0 * 1024.0));
    // Eight and a half minutes away, give or take what a short history allows.
    assert!(
        (now + 240.0..now + 1200.0).contains(&reaches),
        "reaches the limit {:.0} s from now",
        reaches - now
    );
    let table = assert_success(&daemon.ward(&["forecast", "slow", "--horizon", "1h"]));
    println!("{table}");
    assert!(
        table.contains("REACHES LIMIT") && table.contains("slow-0"),
        "{table}"
    );
    assert!(table.contains("1GiB") && table.contains(" in "), "{table}");
    // A workload that does not exist is a clear error.
    let missing = daemon.ward(&["forecast", "nothing-here"]);
    assert!(!missing.status.success());
}

#[test]
fn the_host_is_sampled_and_only_keys_of_every_project_read_it() {
    let daemon = Daemon::start_with_config("metrics: {interval: 100ms}\n");
    let series = |name: &str| {
        let listing = assert_success(&daemon.ward(&[
            "metrics", name, "--since", "1m", "--step", "1s", "-o", "json",
        ]));
        let json: serde_json::Value = serde_json::from_str(&listing).unwrap();
        json["series"][0]["points"]
            .as_array()
            .and_then(|points| points.last())
            .and_then(|point| point[1].as_f64())
    };
    let used = daemon.wait_for("the host's series", Duration::from_secs(30), || {
        series("ward_host_disk_used_bytes")
    });
    let capacity = series("ward_host_disk_capacity_bytes").unwrap();
    assert!(used > 0.0 && used <= capacity, "{used} of {capacity}");
    let total = series("ward_host_memory_total_bytes").unwrap();
    let available = series("ward_host_memory_available_bytes").unwrap();
    assert!(
        available > 0.0 && available < total,
        "{available} of {total}"
    );
    daemon.wait_for("the host's CPU", Duration::from_secs(30), || {
        series("ward_host_cpu_usage_cores")
    });
    assert!(series("ward_host_load1").is_some());

    // The disk's forecast is against its capacity.
    let forecast = daemon.wait_for("a forecast of the disk", Duration::from_secs(30), || {
        let listing = assert_success(&daemon.ward(&[
            "forecast",
            "--metric",
            "host_disk",
            "--horizon",
            "1h",
            "-o",
            "json",
        ]));
        let json: serde_json::Value = serde_json::from_str(&listing).unwrap();
        json.as_array()?.first().cloned()
    });
    assert_eq!(forecast["instance"], "host");
    assert_eq!(forecast["limit"].as_f64(), Some(capacity));

    // A key of one project learns nothing about the machine.
    assert_success(&daemon.ward(&["project", "create", "beta"]));
    let created: serde_json::Value = serde_json::from_str(&assert_success(&daemon.ward(&[
        "key",
        "create",
        "beta-admin",
        "--project",
        "beta",
        "--role",
        "admin",
        "-o",
        "json",
    ])))
    .unwrap();
    let key = created["key"].as_str().unwrap();
    let refused = daemon.ward(&[
        "metrics",
        "ward_host_cpu_usage_cores",
        "--token",
        key,
        "--project",
        "beta",
    ]);
    assert!(!refused.status.success());
    assert!(
        common::stderr_of(&refused).contains("keys of every project"),
        "{}",
        common::stderr_of(&refused)
    );
}

#[test]
fn health_check_times_and_restarts_are_stored_per_instance() {
    let daemon = Daemon::start_with_config("metrics: {interval: 100ms}\n");
    let port = common::free_port().to_string();
    assert_success(&daemon.ward(&[
        "run",
        "--name",
        "checked",
        "--health-http",
        "8000/",
        "-p",
        &format!("{port}:8000"),
        "--",
        "python3",
        "-m",
        "http.server",
        "8000",
    ]));
    let spec = daemon.data_dir().join("flaky.yaml");
    std::fs::write(
        &spec,
        "name: flaky\ncommand: [sh, -c, 'sleep 1; exit 1']\nheal: off\n",
    )
    .unwrap();
    let _ = daemon.ward(&["apply", "-f", spec.to_str().unwrap()]);
    let newest = |name: &str, workload: &str| {
        let listing = assert_success(&daemon.ward(&[
            "metrics",
            name,
            "--workload",
            workload,
            "--since",
            "5m",
            "--step",
            "1s",
            "--aggregation",
            "max",
            "-o",
            "json",
        ]));
        let json: serde_json::Value = serde_json::from_str(&listing).unwrap();
        json["series"][0]["points"]
            .as_array()
            .and_then(|points| points.last())
            .and_then(|point| point[1].as_f64())
    };
    let probe = daemon.wait_for(
        "a stored health check time",
        Duration::from_secs(60),
        || newest("ward_instance_health_check_seconds", "checked"),
    );
    assert!(probe > 0.0 && probe < 2.0, "{probe} s");
    daemon.wait_for("restarts counted", Duration::from_secs(60), || {
        newest("ward_instance_restarts_total", "flaky").filter(|restarts| *restarts >= 2.0)
    });
}
