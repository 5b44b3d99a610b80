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
