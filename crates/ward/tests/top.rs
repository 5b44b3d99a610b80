//! `ward top` in a real terminal (tmux): every workload's CPU, memory, disk and network,
//! live; an anomalous one marked; each refresh drawn over the last without clearing the
//! screen, so it does not flicker.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{assert_success, ward_binary, Daemon};

fn tmux(arguments: &[&str]) -> String {
    let output = Command::new("tmux")
        .args(arguments)
        .output()
        .expect("run tmux");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

struct Session(String);

impl Drop for Session {
    fn drop(&mut self) {
        tmux(&["kill-session", "-t", &self.0]);
    }
}

#[test]
fn top_shows_usage_live_marks_anomalies_and_redraws_in_place() {
    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("skipped: no tmux");
        return;
    }
    let daemon = Daemon::start_with_config("metrics: {interval: 100ms}\n");
    let port = common::free_port();
    assert_success(&daemon.ward(&[
        "run",
        "--name",
        "web",
        "-p",
        &format!("{port}:8000"),
        "--",
        "python3",
        "-m",
        "http.server",
        "8000",
    ]));
    // Still for 40 s (past the detector's warm-up), then 200 MiB more.
    assert_success(&daemon.ward(&[
        "run",
        "--name",
        "hog",
        "--",
        "python3",
        "-c",
        "import time\ntime.sleep(40)\nb = bytearray(b'x' * (200 << 20))\ntime.sleep(600)",
    ]));

    let session = Session(format!("ward-top-{}", std::process::id()));
    let recording = daemon.data_dir().join("top.raw");
    let command = format!(
        "{} --data-dir {} top --interval 300ms",
        ward_binary(),
        daemon.data_dir().display()
    );
    tmux(&[
        "new-session",
        "-d",
        "-s",
        &session.0,
        "-x",
        "170",
        "-y",
        "20",
        &command,
    ]);
    tmux(&[
        "pipe-pane",
        "-o",
        "-t",
        &session.0,
        &format!("cat >> {}", recording.display()),
    ]);
    let screen = || tmux(&["capture-pane", "-p", "-t", &session.0]);

    // Traffic to the web workload shows in its network column.
    let web_line = daemon.wait_for(
        "web's network traffic in top",
        Duration::from_secs(60),
        || {
            let _ = Command::new("curl")
                .args([
                    "-s",
                    "-o",
                    "/dev/null",
                    &format!("http://127.0.0.1:{port}/"),
                ])
                .status();
            let shown = screen();
            let line = shown
                .lines()
                .find(|line| line.starts_with("web"))?
                .to_string();
            // NET RX/TX is the three fields before RESTARTS: `RX / TX`.
            let fields: Vec<&str> = line.split_whitespace().collect();
            let network = *fields.get(fields.len().checked_sub(4)?)?;
            (network != "-" && network != "0B/s").then_some(line)
        },
    );
    println!("{web_line}");
    let shown = screen();
    let header = shown.lines().next().unwrap_or_default();
    for column in ["NAME", "CPU%", "MEM", "DISK R/W", "NET RX/TX", "RESTARTS"] {
        assert!(header.contains(column), "{shown}");
    }
    let hog = shown
        .lines()
        .find(|line| line.starts_with("hog"))
        .unwrap_or_default();
    // Before its jump (if the first look comes before it on a slow machine), it is not
    // marked.
    let fields: Vec<&str> = hog.split_whitespace().collect();
    let marked = fields.get(1) == Some(&"!");
    let memory = fields
        .get(if marked { 4 } else { 3 })
        .copied()
        .unwrap_or("");
    let before_jump = memory.ends_with("KiB")
        || memory
            .strip_suffix("MiB")
            .and_then(|mib| mib.parse::<f64>().ok())
            .is_some_and(|mib| mib < 100.0);
    if before_jump {
        assert!(
            !marked,
            "marked before anything happened: {shown}\n{}",
            common::stdout_of(&daemon.ward(&["events"]))
        );
    } else {
        eprintln!("the hog had jumped ({memory}) before top was first read; not checked before");
    }

    // The hog's jump marks it.
    let marked = daemon.wait_for("hog marked anomalous", Duration::from_secs(90), || {
        screen()
            .lines()
            .find(|line| line.starts_with("hog !"))
            .map(str::to_string)
    });
    println!("{marked}");

    // Many frames, and the screen cleared only once, at the start.
    let raw = std::fs::read(&recording).unwrap();
    let count = |needle: &[u8]| raw.windows(needle.len()).filter(|w| *w == needle).count();
    assert!(count(b"\x1b[H") >= 10, "{} frames", count(b"\x1b[H"));
    assert!(
        count(b"\x1b[2J") <= 1,
        "the screen was cleared {} times",
        count(b"\x1b[2J")
    );
}
