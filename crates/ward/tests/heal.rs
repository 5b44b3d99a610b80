//! Self-healing with real workloads: a crash loop ends in a diagnosis, an OOM-killed process
//! gets a raised limit within its bound and one that needs more ends with a report, and a
//! leak forecast to reach its limit is handled before the kill. Every change the healer
//! makes is an event and an audit entry that say why.

mod common;

use std::time::{Duration, Instant};

use common::{assert_success, stdout_of, Daemon};
use serde_json::Value;

/// The daemon's events, as JSON.
fn events(daemon: &Daemon) -> Vec<Value> {
    stdout_of(&daemon.ward(&["events", "-o", "json"]))
        .lines()
        .map(|line| serde_json::from_str(line).expect("an event as JSON"))
        .collect()
}

fn events_of<'a>(events: &'a [Value], workload: &str, kind: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|event| event["workload"] == workload && event["kind"] == kind)
        .collect()
}

/// `ward apply` of `yaml`; its output (a workload that fails at once makes it fail).
fn apply(daemon: &Daemon, name: &str, yaml: &str) -> std::process::Output {
    let path = daemon.data_dir().join(format!("{name}.yaml"));
    std::fs::write(&path, yaml).unwrap();
    daemon.ward(&["apply", "-f", path.to_str().unwrap()])
}

fn apply_ok(daemon: &Daemon, name: &str, yaml: &str) {
    assert_success(&apply(daemon, name, yaml));
}

fn inspect(daemon: &Daemon, name: &str) -> Value {
    serde_json::from_str(&stdout_of(&daemon.ward(&["inspect", name, "-o", "json"])))
        .expect("inspect as JSON")
}

fn memory_limit(daemon: &Daemon, name: &str) -> u64 {
    inspect(daemon, name)["resources"]["memory"]
        .as_u64()
        .expect("a memory limit")
}

const MIB: u64 = 1 << 20;

#[test]
fn a_crash_loop_ends_in_a_diagnosis_with_the_last_words() {
    let daemon = Daemon::start();
    assert_success(&daemon.ward(&[
        "run",
        "--name",
        "boom",
        "--",
        "sh",
        "-c",
        "echo starting; echo 'error: cannot read /etc/boom.conf: No such file' >&2; exit 3",
    ]));
    let diagnosis = daemon.wait_for("the crash loop diagnosis", Duration::from_secs(90), || {
        events_of(&events(&daemon), "boom", "crash_loop")
            .first()
            .map(|event| (*event).clone())
    });
    let message = diagnosis["message"].as_str().unwrap();
    println!("{message}");
    assert!(message.contains("crash loop"), "{message}");
    assert!(message.contains("exit code 3"), "{message}");
    assert!(
        message.contains("error: cannot read /etc/boom.conf"),
        "the diagnosis quotes the telling line: {message}"
    );
    assert_eq!(diagnosis["data"]["exit_code"], 3);
    assert_eq!(diagnosis["data"]["failures"], 5);
    let last_lines = diagnosis["data"]["last_lines"].as_array().unwrap();
    assert!(
        last_lines.iter().any(|line| line == "starting"),
        "{diagnosis}"
    );

    // Restarts have ended: the instance stays failed and starts no more.
    let status = &inspect(&daemon, "boom")["status"];
    assert_eq!(status["state"], "failed", "{status}");
    let starts = events_of(&events(&daemon), "boom", "started").len();
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        events_of(&events(&daemon), "boom", "started").len(),
        starts,
        "a crash loop was restarted after its diagnosis"
    );
    // `ps` says so too.
    let listing = stdout_of(&daemon.ward(&["ps", "-a"]));
    assert!(listing.contains("failed"), "{listing}");

    // Started again by hand, it gets a fresh set of tries.
    assert_success(&daemon.ward(&["start", "boom"]));
    daemon.wait_for(
        "a new start after ward start",
        Duration::from_secs(30),
        || (events_of(&events(&daemon), "boom", "started").len() > starts).then_some(()),
    );
}

#[test]
fn with_heal_off_a_crashing_workload_is_not_diagnosed() {
    let daemon = Daemon::start();
    let _ = apply(
        &daemon,
        "plain",
        "name: plain\ncommand: [sh, -c, 'exit 1']\nheal: off\n",
    );
    // Six quick failures (backoff 1+2+4+8+16 s) pass the crash-loop count of five.
    daemon.wait_for("a sixth start", Duration::from_secs(60), || {
        (events_of(&events(&daemon), "plain", "started").len() >= 6).then_some(())
    });
    assert!(events_of(&events(&daemon), "plain", "crash_loop").is_empty());
}

#[test]
fn an_oom_killed_process_gets_a_raised_limit_and_one_that_needs_too_much_ends_in_a_report() {
    let daemon = Daemon::start();
    // Takes 150 MiB, touched: killed at 64 and 96 MiB, runs at 216 (64 → 96 → 144 → 216).
    apply_ok(
        &daemon,
        "grower",
        "name: grower\ncommand: [python3, -c, \"b = b'x' * (150 << 20)\\nimport time\\ntime.sleep(600)\"]\n\
         resources: {memory: 64MiB}\nheal: {policy: auto, memory_max: 512MiB}\n",
    );
    // Takes 300 MiB: more than its bound of 128 MiB (64 → 96 → 128, then a report).
    apply_ok(
        &daemon,
        "glutton",
        "name: glutton\ncommand: [python3, -c, \"b = b'x' * (300 << 20)\\nimport time\\ntime.sleep(600)\"]\n\
         resources: {memory: 64MiB}\nheal: {policy: auto, memory_max: 128MiB}\n",
    );

    daemon.wait_for(
        "grower running at a raised limit",
        Duration::from_secs(120),
        || {
            let document = inspect(&daemon, "grower");
            let limit = document["resources"]["memory"].as_u64()?;
            (limit > 150 * MIB && document["status"]["state"] == "running").then_some(())
        },
    );
    assert_eq!(memory_limit(&daemon, "grower"), 216 * MIB);
    let all = events(&daemon);
    let kills = events_of(&all, "grower", "oom_killed").len();
    assert!((1..=3).contains(&kills), "{kills} OOM kills of grower");
    let raises: Vec<&str> = events_of(&all, "grower", "heal")
        .iter()
        .map(|event| event["message"].as_str().unwrap())
        .collect();
    println!("{raises:#?}");
    assert_eq!(raises.len(), 3, "{raises:?}");
    assert!(
        raises[0].contains("killed for memory at its limit 64MiB"),
        "{raises:?}"
    );
    assert!(raises[0].contains("from 64MiB to 96MiB"), "{raises:?}");
    // The spec change itself names the healer and its reason.
    let updates = events_of(&all, "grower", "updated");
    assert!(
        updates
            .iter()
            .all(|event| event["data"]["agent"] == "healer"
                && event["message"]
                    .as_str()
                    .unwrap()
                    .contains("raised resources.memory")),
        "{updates:?}"
    );

    let report = daemon.wait_for("glutton's report", Duration::from_secs(120), || {
        events_of(&events(&daemon), "glutton", "heal")
            .into_iter()
            .find(|event| event["data"]["action"] == "at_cap")
            .map(|event| event["message"].as_str().unwrap().to_string())
    });
    println!("{report}");
    assert!(
        report.contains("needs more than heal.memory_max 128MiB"),
        "{report}"
    );
    // The healer stopped it: it is not restarted into the same kill.
    daemon.wait_for(
        "the healer's stop of glutton",
        Duration::from_secs(60),
        || {
            stdout_of(&daemon.ward(&["audit", "ls"]))
                .lines()
                .any(|line| {
                    line.contains("healer") && line.contains("/api/v1/workloads/glutton/stop")
                })
                .then_some(())
        },
    );
    let state = inspect(&daemon, "glutton")["status"]["state"].clone();
    assert!(state == "stopped" || state == "failed", "{state}");
    assert_eq!(memory_limit(&daemon, "glutton"), 128 * MIB);
    let all = events(&daemon);
    assert_eq!(
        events_of(&all, "glutton", "updated").len(),
        2,
        "two raises (96, 128 MiB), then no more"
    );
    let starts = events_of(&all, "glutton", "started").len();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        events_of(&events(&daemon), "glutton", "started").len(),
        starts
    );

    // The audit log names the healer, the policy it acted for, and why.
    let audit: Value =
        serde_json::from_str(&stdout_of(&daemon.ward(&["audit", "ls", "-o", "json"]))).unwrap();
    let raise = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["target"] == "/api/v1/workloads/grower" && entry["actor"] == "healer")
        .unwrap_or_else(|| panic!("no audit entry of the healer's raise: {audit:#}"));
    assert_eq!(raise["on_behalf_of"], "heal-policy:grower", "{raise}");
    assert!(
        raise["outcome"]
            .as_str()
            .unwrap()
            .contains("raised resources.memory from 64MiB to 96MiB"),
        "{raise}"
    );
}

#[test]
fn a_leak_forecast_to_reach_its_limit_is_handled_before_the_oom_kill() {
    let daemon = Daemon::start_with_config("metrics: {interval: 500ms}\n");
    // Leaks 6 MiB a second up to 120 MiB, then holds: past its 96 MiB limit in about 15 s.
    apply_ok(
        &daemon,
        "leaker",
        "name: leaker\ncommand: [python3, -c, \"import time\\nkept = []\\nfor _ in range(40):\\n    kept.append(b'x' * (3 << 20))\\n    time.sleep(0.5)\\ntime.sleep(600)\"]\n\
         resources: {memory: 96MiB}\nheal: {policy: auto, memory_max: 512MiB}\n",
    );
    let started = Instant::now();
    let action = daemon.wait_for("the forecast raise", Duration::from_secs(60), || {
        events_of(&events(&daemon), "leaker", "heal")
            .first()
            .map(|event| (*event).clone())
    });
    let message = action["message"].as_str().unwrap();
    println!("after {:?}: {message}", started.elapsed());
    assert!(
        message.contains("forecast to reach its limit 96MiB"),
        "{message}"
    );
    assert!(
        message.contains("raised resources.memory from 96MiB"),
        "{message}"
    );
    // Let the leak run its course at the raised limit (its newest sample at 120 MiB or more):
    // no OOM kill, ever.
    daemon.wait_for("the leak to reach 120 MiB", Duration::from_secs(90), || {
        let listing = assert_success(&daemon.ward(&[
            "metrics",
            "memory",
            "--workload",
            "leaker",
            "--since",
            "1m",
            "--step",
            "1s",
            "--aggregation",
            "max",
            "-o",
            "json",
        ]));
        let json: Value = serde_json::from_str(&listing).unwrap();
        let newest = json["series"].as_array()?.first()?["points"]
            .as_array()?
            .last()?[1]
            .as_f64()?;
        (newest >= 120.0 * MIB as f64).then_some(())
    });
    let all = events(&daemon);
    assert!(
        events_of(&all, "leaker", "oom_killed").is_empty(),
        "the leak was killed for memory: {all:#?}"
    );
    assert!(memory_limit(&daemon, "leaker") >= 144 * MIB);
    assert!(memory_limit(&daemon, "leaker") <= 512 * MIB);
    // Raised in place: the same process ran on, never restarted.
    let status = inspect(&daemon, "leaker")["status"].clone();
    assert_eq!(status["state"], "running");
    assert_eq!(status["restarts"], 0, "{status}");
    assert!(events_of(&all, "leaker", "started").len() == 1, "{all:#?}");
}

#[test]
fn a_cpu_bound_service_scales_out_and_back_in_without_flapping() {
    let daemon = Daemon::start_with_config("metrics: {interval: 500ms}\n");
    // Every replica spins until a moment 30 s from now, then idles.
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 30;
    apply_ok(
        &daemon,
        "busy",
        &format!(
            "name: busy\ncommand: [python3, -c, \"import time\\nwhile time.time() < {until}: pass\\ntime.sleep(3600)\"]\n\
             resources: {{cpu: 0.25}}\nautoscale: {{min: 1, max: 3, cpu: 50}}\n"
        ),
    );
    // Out to the maximum while it spins…
    daemon.wait_for("three replicas", Duration::from_secs(60), || {
        (inspect(&daemon, "busy")["replicas"] == 3).then_some(())
    });
    // …and back in to the minimum once it idles.
    daemon.wait_for("one replica again", Duration::from_secs(90), || {
        (inspect(&daemon, "busy")["replicas"] == 1).then_some(())
    });
    // Then it holds.
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(inspect(&daemon, "busy")["replicas"], 1);

    // The count went up, then down: never back and forth.
    let counts: Vec<u64> = events_of(&events(&daemon), "busy", "updated")
        .iter()
        .map(|event| {
            let message = event["message"].as_str().unwrap();
            assert_eq!(event["data"]["agent"], "healer", "{message}");
            assert!(message.contains("scaled from"), "{message}");
            let to = message.split(" to ").nth(1).unwrap();
            to.split_whitespace().next().unwrap().parse().unwrap()
        })
        .collect();
    println!("replicas over time: {counts:?}");
    let peak = counts
        .iter()
        .position(|&count| count == 3)
        .expect("reached 3");
    assert!(
        counts[..=peak].windows(2).all(|pair| pair[0] < pair[1]),
        "{counts:?}"
    );
    assert!(
        counts[peak..].windows(2).all(|pair| pair[0] > pair[1]),
        "{counts:?}"
    );
    assert_eq!(counts.last(), Some(&1));
    assert!(counts.len() <= 4, "{counts:?}");
}
