//! Acceptance tests: the sandbox, resource limits, crash recovery, restart backoff, bad input,
//! the HTTP API and bridge networking, each checked against a real `ward serve`.
//!
//! Tests that run workloads need root and crun and print a `SKIP` line otherwise. Each test
//! prints what it measured: `cargo test -p ward --test acceptance -- --nocapture`.

mod common;

use common::free_port;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::{
    assert_one_error_line, assert_success, dechunk, find, http_request, sandbox_available,
    stderr_of, stdout_of, Daemon, HttpResponse,
};
use serde_json::Value;

/// Long enough for a workload to start, or a probe inside it to print its findings.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between two samples of a measurement.
const SAMPLE_INTERVAL: Duration = Duration::from_millis(200);

// ---------------------------------------------------------------------------------------------
// 1. The sandbox of a process workload
// ---------------------------------------------------------------------------------------------

/// The file the sandbox probe tries to create in every directory.
const PROBE_FILE: &str = ".ward-acceptance-probe";
/// Host directories a workload must not write to.
const READ_ONLY_HOST_DIRS: [&str; 5] = ["/etc", "/usr", "/var", "/root", "/"];

#[test]
fn sandbox_hides_the_host_and_allows_only_private_writes() {
    if !sandbox_available("sandbox_hides_the_host_and_allows_only_private_writes") {
        return;
    }
    // Outside /tmp, where the default data directory also lives: the workload's private /tmp
    // must not be what hides it.
    let daemon = Daemon::start_with_data_dir_under(Path::new("/var/lib"));
    let data_dir = daemon.data_dir().display().to_string();
    let shared = tempfile::tempdir_in("/var/tmp").expect("host directory to share read-only");
    std::fs::write(shared.path().join("greeting"), "hello\n").expect("write the shared file");
    let script = format!(
        r#"cd /proc; echo "pids $(echo [0-9]*)"; cd /
for dir in /etc /usr /var /root / /tmp /data /ro; do
  if touch "$dir/{PROBE_FILE}" 2>/dev/null; then echo "write:$dir yes"; else echo "write:$dir no"; fi
done
echo "read-ro $(cat /ro/greeting 2>/dev/null || echo nothing)"
echo "capeff $(awk '/^CapEff:/ {{print $2}}' /proc/1/status)"
echo "nnp $(awk '/^NoNewPrivs:/ {{print $2}}' /proc/1/status)"
if cat {data_dir}/admin.token >/dev/null 2>&1; then echo "token readable"; else echo "token hidden"; fi
echo "data-dir-entries $(ls -A {data_dir} 2>/dev/null | wc -l)"
echo probe-done
exec sleep 600"#
    );
    let read_only_volume = format!("{}:/ro:ro", shared.path().display());
    run_workload(
        &daemon,
        &[
            "--name",
            "acc-sandbox",
            "--network",
            "none",
            "-v",
            "acc-sandbox-data:/data",
            "-v",
            &read_only_volume,
            "--",
            "sh",
            "-c",
            &script,
        ],
    );
    let findings = daemon.wait_for("the sandbox probe's report", START_TIMEOUT, || {
        let (stdout, _) = logs_of(&daemon, "acc-sandbox");
        stdout.contains("probe-done").then_some(stdout)
    });
    let (_, probe_errors) = logs_of(&daemon, "acc-sandbox");
    // A sandbox that let the probe write to the host must not leave the file there.
    for dir in READ_ONLY_HOST_DIRS {
        let _ = std::fs::remove_file(Path::new(dir).join(PROBE_FILE));
    }
    eprintln!("sandbox probe report:\n{findings}{probe_errors}");
    let report: BTreeMap<String, String> = findings
        .lines()
        .filter_map(|line| line.split_once(' '))
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
    let field = |key: &str| report.get(key).cloned().unwrap_or_default();

    let host_pids: Vec<u32> = [daemon.pid(), std::process::id()]
        .into_iter()
        .chain(monitors_of(daemon.data_dir()))
        .collect();
    let seen_by_command = numbers(&field("pids"));
    eprintln!(
        "processes the workload's command sees: {} {seen_by_command:?}; host pids that must be absent: {host_pids:?}",
        seen_by_command.len()
    );
    let exec = daemon.ward(&[
        "exec",
        "acc-sandbox",
        "--",
        "sh",
        "-c",
        "cd /proc; echo [0-9]*",
    ]);
    let seen_by_exec = numbers(&assert_success(&exec));
    eprintln!(
        "processes `ward exec` sees: {} {seen_by_exec:?}",
        seen_by_exec.len()
    );
    let workload_host_pid = inspect(&daemon, "acc-sandbox")["status"]["pid"]
        .as_u64()
        .map(|pid| pid as u32);
    for seen in [&seen_by_command, &seen_by_exec] {
        assert!(
            !seen.is_empty() && seen.len() <= 5,
            "expected only the workload's few processes in its /proc, got {seen:?}"
        );
        assert!(
            seen.contains(&1),
            "the workload's command should be pid 1: {seen:?}"
        );
        for pid in host_pids.iter().chain(workload_host_pid.as_ref()) {
            assert!(
                *pid <= 1 || !seen.contains(pid),
                "host pid {pid} is visible in the workload: {seen:?}"
            );
        }
    }

    for dir in READ_ONLY_HOST_DIRS {
        assert_eq!(
            field(&format!("write:{dir}")),
            "no",
            "{dir} must be read-only"
        );
    }
    assert_eq!(field("write:/tmp"), "yes", "/tmp must be writable");
    assert_eq!(
        field("write:/data"),
        "yes",
        "the named volume must be writable"
    );
    assert_eq!(field("write:/ro"), "no", "a :ro volume must be read-only");
    assert_eq!(
        field("read-ro"),
        "hello",
        "a :ro volume must still be readable"
    );
    assert_eq!(field("capeff"), "0000000000000000", "capabilities");
    assert_eq!(field("nnp"), "1", "no_new_privs of the workload's command");
    assert_eq!(field("token"), "hidden", "admin.token must not be readable");
    assert_eq!(
        field("data-dir-entries"),
        "0",
        "Ward's data directory must look empty"
    );
}

/// The whole numbers in a space-separated list.
fn numbers(text: &str) -> Vec<u32> {
    text.split_whitespace()
        .filter_map(|word| word.parse().ok())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// 2. Memory limit
// ---------------------------------------------------------------------------------------------

/// Fills 300 MiB, far past the 64 MiB limit; prints `survived` if it was allowed to.
const MEMORY_HOG: &str =
    "hog = bytearray(300 * 1024 * 1024)\nprint('survived', flush=True)\nimport time\ntime.sleep(600)";

#[test]
fn memory_limit_oom_kills_and_the_restart_policy_applies() {
    if !sandbox_available("memory_limit_oom_kills_and_the_restart_policy_applies") {
        return;
    }
    let daemon = Daemon::start();
    let started = Instant::now();
    for (name, restart) in [("acc-oom-again", "on-failure"), ("acc-oom-once", "never")] {
        run_workload(
            &daemon,
            &[
                "--name",
                name,
                "--network",
                "none",
                "--memory",
                "64MiB",
                "--restart",
                restart,
                "--",
                "python3",
                "-c",
                MEMORY_HOG,
            ],
        );
    }

    let mut again_seen_oom_killed = false;
    let again = daemon.wait_for(
        "acc-oom-again to be restarted after its OOM kill",
        START_TIMEOUT,
        || {
            let document = inspect(&daemon, "acc-oom-again");
            again_seen_oom_killed |= document["status"]["oom_killed"] == true;
            (document["status"]["restarts"].as_u64() >= Some(1)).then_some(document)
        },
    );
    eprintln!(
        "acc-oom-again (on-failure): restarts {} after {:?}",
        again["status"]["restarts"],
        started.elapsed()
    );
    let again = if again_seen_oom_killed {
        again
    } else {
        daemon.wait_for(
            "inspect to show acc-oom-again as oom_killed",
            START_TIMEOUT,
            || {
                let document = inspect(&daemon, "acc-oom-again");
                (document["status"]["oom_killed"] == true).then_some(document)
            },
        )
    };
    assert_eq!(again["status"]["oom_killed"], true, "{again}");

    let once = daemon.wait_for("acc-oom-once to be OOM-killed", START_TIMEOUT, || {
        let document = inspect(&daemon, "acc-oom-once");
        (document["status"]["oom_killed"] == true).then_some(document)
    });
    eprintln!(
        "acc-oom-once (never): state {} oom_killed after {:?}",
        once["status"]["state"],
        started.elapsed()
    );
    // Longer than the first backoff (1 s): a restart would have happened by now.
    std::thread::sleep(Duration::from_secs(4));
    let once = inspect(&daemon, "acc-oom-once");
    eprintln!("acc-oom-once 4 s later: {}", once["status"]);
    assert_eq!(once["status"]["state"], "failed", "{once}");
    assert_eq!(once["status"]["restarts"], 0, "{once}");
    assert_eq!(once["status"]["oom_killed"], true, "{once}");

    let events = assert_success(&daemon.ward(&["events", "-o", "json"]));
    for name in ["acc-oom-again", "acc-oom-once"] {
        let kills = events
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|event| event["kind"] == "oom_killed" && event["workload"] == name)
            .count();
        eprintln!("{name}: {kills} oom_killed event(s)");
        assert!(kills >= 1, "no oom_killed event for {name} in:\n{events}");
        let (stdout, _) = logs_of(&daemon, name);
        assert!(
            !stdout.contains("survived"),
            "{name} got past its memory limit"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Process limit
// ---------------------------------------------------------------------------------------------

/// Every process forks for ever; failed forks are retried after 10 ms.
const FORK_BOMB: &str =
    "import os, time\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        time.sleep(0.01)";
const PIDS_LIMIT: usize = 64;

#[test]
fn fork_bomb_stops_at_the_pids_limit_and_leaves_nothing_behind() {
    if !sandbox_available("fork_bomb_stops_at_the_pids_limit_and_leaves_nothing_behind") {
        return;
    }
    let daemon = Daemon::start();
    let names = ["acc-bomb".to_string()];
    let limit = PIDS_LIMIT.to_string();
    run_workload(
        &daemon,
        &[
            "--name",
            "acc-bomb",
            "--network",
            "none",
            "--pids",
            &limit,
            "--",
            "python3",
            "-c",
            FORK_BOMB,
        ],
    );
    let started = Instant::now();
    let reached = daemon.wait_for("the fork bomb to reach its limit", START_TIMEOUT, || {
        let count = processes_in_cgroups_of(&names).len();
        (count >= PIDS_LIMIT - 4).then_some(count)
    });
    eprintln!(
        "fork bomb: {reached} processes after {:?}",
        started.elapsed()
    );

    // The daemon samples usage every few seconds; the window starts with a sample.
    let mut most_in_status = daemon.wait_for(
        "status.process_count of the fork bomb",
        START_TIMEOUT,
        || inspect(&daemon, "acc-bomb")["status"]["process_count"].as_u64(),
    );
    let mut most_on_host = 0;
    let mut slowest_ps = Duration::ZERO;
    let observed = Instant::now();
    while observed.elapsed() < Duration::from_secs(5) {
        let asked = Instant::now();
        assert_success(&daemon.ward(&["ps"]));
        slowest_ps = slowest_ps.max(asked.elapsed());
        let document = inspect(&daemon, "acc-bomb");
        most_in_status =
            most_in_status.max(document["status"]["process_count"].as_u64().unwrap_or(0));
        most_on_host = most_on_host.max(processes_in_cgroups_of(&names).len());
        std::thread::sleep(SAMPLE_INTERVAL);
    }
    eprintln!(
        "fork bomb over 5 s: at most {most_on_host} processes in its cgroup on the host, \
         status.process_count at most {most_in_status}, slowest `ward ps` {slowest_ps:?}"
    );
    assert!(most_on_host <= PIDS_LIMIT, "{most_on_host} processes");
    assert!(
        most_in_status as usize <= PIDS_LIMIT,
        "{most_in_status} processes"
    );
    assert!(
        slowest_ps < Duration::from_secs(2),
        "the daemon took {slowest_ps:?} to answer `ward ps`"
    );

    assert!(
        !monitors_of(daemon.data_dir()).is_empty(),
        "no monitor process found for the data directory"
    );
    let removing = Instant::now();
    assert_success(&daemon.ward(&["rm", "-f", "acc-bomb"]));
    let removed_in = removing.elapsed();
    let left_at_return = processes_in_cgroups_of(&names);
    daemon.wait_for(
        "the fork bomb's processes and monitor to be gone",
        Duration::from_secs(5),
        || {
            (processes_in_cgroups_of(&names).is_empty()
                && monitors_of(daemon.data_dir()).is_empty())
            .then_some(())
        },
    );
    eprintln!(
        "`ward rm -f` took {removed_in:?}; processes left when it returned: {}; all gone {:?} after it was called",
        left_at_return.len(),
        removing.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Recovery from daemon crashes
// ---------------------------------------------------------------------------------------------

const RECOVERY_WORKLOADS: usize = 20;
const DAEMON_KILLS: usize = 10;
/// Prints `line 0`, `line 1`, ... every 50 ms.
const COUNTER: &str = "i=0; while :; do echo line $i; i=$((i+1)); sleep 0.05; done";

#[test]
fn workloads_survive_repeated_daemon_kills_without_losing_output() {
    if !sandbox_available("workloads_survive_repeated_daemon_kills_without_losing_output") {
        return;
    }
    let mut daemon = Daemon::start();
    let names: Vec<String> = (0..RECOVERY_WORKLOADS)
        .map(|index| format!("acc-recover-{index:02}"))
        .collect();
    for name in &names {
        run_workload(
            &daemon,
            &[
                "--name",
                name,
                "--network",
                "none",
                "--",
                "sh",
                "-c",
                COUNTER,
            ],
        );
    }
    let pids_before = daemon.wait_for("all workloads to run", START_TIMEOUT, || {
        let pids = running_pids(&daemon);
        (pids.len() == RECOVERY_WORKLOADS).then_some(pids)
    });

    let mut random = Xorshift(0x5eed_0f3a_4d11);
    let started = Instant::now();
    for round in 1..=DAEMON_KILLS {
        let pause = Duration::from_millis(random.below(1500));
        std::thread::sleep(pause);
        let killed = Instant::now();
        daemon.kill9();
        daemon.restart();
        let healthy_after = killed.elapsed();
        daemon.wait_for(
            &format!("all workloads to show as running after restart {round}"),
            Duration::from_secs(20),
            || {
                let pids = running_pids(&daemon);
                for (name, pid) in &pids {
                    assert_eq!(
                        Some(pid),
                        pids_before.get(name),
                        "{name} has a new pid after daemon restart {round}"
                    );
                }
                (pids.len() == RECOVERY_WORKLOADS).then_some(())
            },
        );
        eprintln!(
            "restart {round}: killed after {pause:?}, healthy again after {healthy_after:?}, \
             all {RECOVERY_WORKLOADS} running after {:?}",
            killed.elapsed()
        );
    }
    let documents = ps_all(&daemon);
    let workload_restarts: u64 = documents
        .iter()
        .map(|document| document["status"]["restarts"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(workload_restarts, 0, "workloads were restarted");

    let mut shortest_log = usize::MAX;
    for name in &names {
        let (stdout, _) = logs_of(&daemon, name);
        let lines: Vec<&str> = stdout.lines().collect();
        for (number, line) in lines.iter().enumerate() {
            assert_eq!(
                *line,
                format!("line {number}"),
                "{name}: output line {number} is missing or out of order"
            );
        }
        shortest_log = shortest_log.min(lines.len());
    }
    eprintln!(
        "{DAEMON_KILLS} daemon kills and restarts in {:?}; {RECOVERY_WORKLOADS} workloads kept \
         their pids, 0 workload restarts, every log gap-free (shortest {shortest_log} lines)",
        started.elapsed()
    );
    assert!(shortest_log >= 20, "a workload stopped printing");

    // Re-attached for real, not just remembered: the last daemon notices a workload dying.
    let victim = &names[0];
    let victim_pid = pids_before[victim];
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(victim_pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill a workload's process");
    let killed = Instant::now();
    let new_pid = daemon.wait_for(
        &format!("{victim} to be restarted after its process was killed"),
        START_TIMEOUT,
        || {
            let status = inspect(&daemon, victim)["status"].take();
            let pid = status["pid"].as_u64()?;
            (status["state"] == "running"
                && status["restarts"].as_u64() >= Some(1)
                && pid != victim_pid)
                .then_some(pid)
        },
    );
    eprintln!(
        "{victim}: killed pid {victim_pid} from the host, running again as pid {new_pid} after {:?}",
        killed.elapsed()
    );

    let mut arguments = vec!["rm", "-f"];
    arguments.extend(names.iter().map(String::as_str));
    assert_success(&daemon.ward(&arguments));
    let removed = Instant::now();
    daemon.wait_for(
        "every workload process and monitor to be gone",
        Duration::from_secs(10),
        || {
            (processes_in_cgroups_of(&names).is_empty()
                && monitors_of(daemon.data_dir()).is_empty())
            .then_some(())
        },
    );
    eprintln!(
        "no orphan processes {:?} after `ward rm -f` returned",
        removed.elapsed()
    );
}

/// The host pid of every running workload.
fn running_pids(daemon: &Daemon) -> BTreeMap<String, u64> {
    ps_all(daemon)
        .iter()
        .filter(|document| document["status"]["state"] == "running")
        .filter_map(|document| {
            Some((
                document["name"].as_str()?.to_string(),
                document["status"]["pid"].as_u64()?,
            ))
        })
        .collect()
}

/// A small deterministic pseudo-random sequence (xorshift64).
struct Xorshift(u64);

impl Xorshift {
    /// A number in `0..bound`.
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Crash loop
// ---------------------------------------------------------------------------------------------

#[test]
fn crash_loop_backs_off_and_costs_the_daemon_little_cpu() {
    if !sandbox_available("crash_loop_backs_off_and_costs_the_daemon_little_cpu") {
        return;
    }
    let daemon = Daemon::start();
    let window = Duration::from_secs(20);
    let cpu_before = cpu_seconds_of(daemon.pid());
    let started = Instant::now();
    run_workload(
        &daemon,
        &[
            "--name",
            "acc-crash",
            "--network",
            "none",
            "--",
            "sh",
            "-c",
            "exit 1",
        ],
    );
    let mut restarts = 0;
    let mut timeline = Vec::new();
    while started.elapsed() < window {
        let seen = inspect(&daemon, "acc-crash")["status"]["restarts"]
            .as_u64()
            .unwrap_or(0);
        if seen != restarts {
            timeline.push(format!("{seen} at {:.1}s", started.elapsed().as_secs_f64()));
            restarts = seen;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let cpu_used = cpu_seconds_of(daemon.pid()) - cpu_before;
    let share = cpu_used / started.elapsed().as_secs_f64();
    eprintln!(
        "crash loop over {:?}: {restarts} restarts ({}); daemon CPU {cpu_used:.2} s = {:.1}% of one core",
        started.elapsed(),
        timeline.join(", "),
        share * 100.0
    );
    assert!(
        (3..=5).contains(&restarts),
        "expected 3 to 5 restarts in 20 s with a 1 s doubling backoff, got {restarts}"
    );
    assert!(
        share < 0.10,
        "the daemon used {:.1}% of a core",
        share * 100.0
    );
}

/// User plus system CPU time of a process, in seconds.
fn cpu_seconds_of(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    // Fields after the command name, which may contain spaces: state is field 3, utime 14.
    let after_name = &stat[stat.rfind(')').expect("a stat line") + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // SAFETY: sysconf has no preconditions.
    let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    ticks as f64 / ticks_per_second as f64
}

// ---------------------------------------------------------------------------------------------
// 6. Bad input
// ---------------------------------------------------------------------------------------------

/// What a bad-input case gives the CLI.
enum Input<'a> {
    /// A `ward` command line.
    Arguments(&'a [&'a str]),
    /// The content of a file given to `ward apply -f`.
    File(&'a str),
}

/// Refused with one `error: ` line that contains every one of `expected`, and nothing changed.
fn check(daemon: &Daemon, input: Input<'_>, expected: &[&str]) {
    let before = workloads_snapshot(daemon);
    let directory = tempfile::tempdir().expect("temporary directory");
    let output = match input {
        Input::Arguments(arguments) => daemon.ward(arguments),
        Input::File(content) => {
            let path = directory.path().join("spec.yaml");
            std::fs::write(&path, content).expect("write the spec");
            daemon.ward(&["apply", "-f", path.to_str().expect("utf-8 path")])
        }
    };
    let line = assert_one_error_line(&output, expected[0]);
    for part in expected {
        assert!(line.contains(part), "expected {part:?} in: {line}");
    }
    eprintln!("refused: {line}");
    assert_eq!(
        workloads_snapshot(daemon),
        before,
        "the workloads changed after: {line}"
    );
}

/// What `ward ps -a -o json` says, less the usage figures and times that change on their own.
fn workloads_snapshot(daemon: &Daemon) -> Vec<Value> {
    ps_all(daemon)
        .into_iter()
        .map(|mut document| {
            let status = document["status"].take();
            document["status"] = serde_json::json!({
                "state": status["state"],
                "revision": status["revision"],
                "restarts": status["restarts"],
                "pid": status["pid"],
            });
            document
        })
        .collect()
}

#[test]
fn bad_input_is_refused_with_one_line_and_changes_nothing() {
    if !sandbox_available("bad_input_is_refused_with_one_line_and_changes_nothing") {
        return;
    }
    let _bridge = bridge_turn();
    let daemon = Daemon::start();
    let published = free_port();
    let mapping = format!("{published}:8000");
    run_workload(
        &daemon,
        &[
            "--name",
            "acc-bad-web",
            "-p",
            &mapping,
            "--",
            "sleep",
            "600",
        ],
    );
    let listener = TcpListener::bind("0.0.0.0:0").expect("bind a host port");
    let taken = listener.local_addr().expect("local address").port();
    let clash_with_workload = format!("{published}:8000");
    let clash_with_listener = format!("{taken}:8000");
    let published_text = format!("host port {published}");
    let taken_text = format!("host port {taken}");

    check(&daemon, Input::File("name: [unclosed\n"), &["invalid YAML"]);
    check(
        &daemon,
        Input::File("name: acc-bad-typo\ncomand: [sleep, \"600\"]\n"),
        &["comand", "did you mean", "command"],
    );
    check(
        &daemon,
        Input::File("name: acc-bad-size\ncommand: [sleep, \"600\"]\nresources: {memory: lots}\n"),
        &["resources.memory", "lots"],
    );
    check(
        &daemon,
        Input::Arguments(&[
            "run",
            "--name",
            "acc-bad-size",
            "--memory",
            "12XB",
            "--",
            "sleep",
            "600",
        ]),
        &["--memory", "12XB"],
    );
    check(
        &daemon,
        Input::Arguments(&[
            "run",
            "--name",
            "acc-bad-clash",
            "-p",
            &clash_with_workload,
            "--",
            "sleep",
            "600",
        ]),
        &[&published_text, "acc-bad-web"],
    );
    check(
        &daemon,
        Input::Arguments(&[
            "run",
            "--name",
            "acc-bad-taken",
            "-p",
            &clash_with_listener,
            "--",
            "sleep",
            "600",
        ]),
        &[&taken_text],
    );
    check(
        &daemon,
        Input::Arguments(&["run", "--name", "acc-bad-web", "--", "sleep", "600"]),
        &["acc-bad-web", "already exists"],
    );
    check(
        &daemon,
        Input::Arguments(&["run", "--name", "acc-bad-nothing"]),
        &["command"],
    );
    for command in ["inspect", "stop", "rm", "logs"] {
        check(
            &daemon,
            Input::Arguments(&[command, "acc-bad-missing"]),
            &["acc-bad-missing", "not found"],
        );
    }
    check(
        &daemon,
        Input::File(
            "name: acc-bad-first\ncommand: [sleep, \"600\"]\n---\nname: acc-bad-second\ncommand: [sleep, \"600\"]\nresources: {memory: 12XB}\n",
        ),
        &["document 2", "resources.memory", "12XB"],
    );
    assert_one_error_line(&daemon.ward(&["inspect", "acc-bad-first"]), "acc-bad-first");
    drop(listener);
}

// ---------------------------------------------------------------------------------------------
// 7. HTTP API
// ---------------------------------------------------------------------------------------------

#[test]
fn api_needs_the_key_everywhere_but_healthz() {
    // Runs no workload, so it needs neither root nor crun.
    let daemon = Daemon::start();
    let address = daemon.address();
    let token = daemon.token().to_string();

    let openapi = http(address, "GET", "/openapi.json", Some(&token));
    assert_eq!(openapi.status, 200, "{}", openapi.body);
    let openapi: Value = serde_json::from_str(&openapi.body).expect("/openapi.json is JSON");
    let version = openapi["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3."), "openapi version {version:?}");
    let paths = openapi["paths"]
        .as_object()
        .expect("paths in /openapi.json");
    for expected in [
        "/healthz",
        "/metrics",
        "/openapi.json",
        "/api/v1/workloads",
        "/api/v1/workloads/{name}",
        "/api/v1/workloads/{name}/start",
        "/api/v1/workloads/{name}/stop",
        "/api/v1/workloads/{name}/restart",
        "/api/v1/workloads/{name}/logs",
        "/api/v1/workloads/{name}/exec",
        "/api/v1/events",
    ] {
        assert!(
            paths.contains_key(expected),
            "/openapi.json lacks {expected}"
        );
    }

    // Every documented operation, and the contract's endpoints that may not be documented.
    let mut operations: BTreeSet<(String, String)> = paths
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .into_iter()
                .flat_map(|methods| methods.keys())
                .filter(|method| {
                    ["get", "post", "put", "delete", "patch"].contains(&method.as_str())
                })
                .map(move |method| {
                    (
                        method.to_uppercase(),
                        path.replace("{name}", "acc-api-missing"),
                    )
                })
        })
        .collect();
    for (method, path) in [
        ("GET", "/v1/models"),
        ("POST", "/v1/chat/completions"),
        ("POST", "/v1/completions"),
        ("POST", "/v1/embeddings"),
        ("POST", "/mcp"),
    ] {
        operations.insert((method.to_string(), path.to_string()));
    }
    let mut refused = 0;
    for (method, path) in &operations {
        for token in [None, Some("not-the-key")] {
            let response = http(address, method, path, token);
            if method == "GET" && path == "/healthz" {
                assert_eq!(response.status, 200, "GET /healthz: {}", response.body);
                continue;
            }
            // Logging in is how a user without a key gets one; an empty body is no login.
            if method == "POST" && path == "/api/v1/sessions" {
                assert_eq!(
                    response.status, 400,
                    "POST /api/v1/sessions: {}",
                    response.body
                );
                continue;
            }
            assert_eq!(
                response.status, 401,
                "{method} {path} with key {token:?}: {}",
                response.body
            );
            let body: Value = serde_json::from_str(&response.body)
                .unwrap_or_else(|_| panic!("{method} {path}: not JSON: {}", response.body));
            assert_eq!(
                body["error"]["code"], "unauthorized",
                "{method} {path}: {body}"
            );
            assert!(
                body["error"]["message"].is_string(),
                "{method} {path}: {body}"
            );
            refused += 1;
        }
    }
    eprintln!(
        "{} operations checked; {refused} requests without a valid key refused with 401",
        operations.len()
    );
}

#[test]
fn metrics_show_the_daemon_and_each_instance_memory() {
    if !sandbox_available("metrics_show_the_daemon_and_each_instance_memory") {
        return;
    }
    let daemon = Daemon::start();
    run_workload(
        &daemon,
        &[
            "--name",
            "acc-api-mem",
            "--network",
            "none",
            "--",
            "sleep",
            "600",
        ],
    );
    let started = Instant::now();
    let (text, memory) = daemon.wait_for(
        "a memory gauge of acc-api-mem in /metrics",
        START_TIMEOUT,
        || {
            let response = http(daemon.address(), "GET", "/metrics", Some(daemon.token()));
            assert_eq!(response.status, 200, "{}", response.body);
            let memory = response
                .body
                .lines()
                .filter(|line| line.starts_with("ward_instance_memory_bytes{"))
                .filter(|line| line.contains("workload=\"acc-api-mem\""))
                .find_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
                .filter(|bytes| *bytes > 0.0)?;
            Some((response.body, memory))
        },
    );
    eprintln!(
        "acc-api-mem memory gauge {memory} bytes, {:?} after start",
        started.elapsed()
    );
    assert!(
        text.lines().any(|line| line == "ward_up 1"),
        "no `ward_up 1` in:\n{text}"
    );
}

#[test]
fn event_stream_delivers_a_later_start() {
    if !sandbox_available("event_stream_delivers_a_later_start") {
        return;
    }
    let daemon = Daemon::start();
    let mut stream = TcpStream::connect(daemon.address()).expect("connect to the daemon");
    let request = format!(
        "GET /api/v1/events?follow=true HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nAccept: text/event-stream\r\n\r\n",
        daemon.address(),
        daemon.token()
    );
    stream
        .write_all(request.as_bytes())
        .expect("send the request");
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("read timeout");
    let mut received = Vec::new();
    let head_end = daemon.wait_for("the event stream's headers", START_TIMEOUT, || {
        read_available(&mut stream, &mut received);
        find(&received, b"\r\n\r\n")
    });
    let head = String::from_utf8_lossy(&received[..head_end]).to_string();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("text/event-stream"),
        "{head}"
    );
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body_start = head_end + 4;

    let created = Instant::now();
    run_workload(
        &daemon,
        &[
            "--name",
            "acc-api-sse",
            "--network",
            "none",
            "--",
            "sleep",
            "600",
        ],
    );
    let message = daemon.wait_for(
        "a `started` event of acc-api-sse on the stream",
        START_TIMEOUT,
        || {
            read_available(&mut stream, &mut received);
            let body = if chunked {
                dechunk(&received[body_start..])
            } else {
                received[body_start..].to_vec()
            };
            String::from_utf8_lossy(&body)
                .replace("\r\n", "\n")
                .split("\n\n")
                .find(|message| {
                    message.lines().any(|line| line == "event: started")
                        && message.contains("\"workload\":\"acc-api-sse\"")
                })
                .map(str::to_string)
        },
    );
    eprintln!(
        "started event {:?} after the workload was created:\n{message}",
        created.elapsed()
    );
}

/// Sends one request (with the key as a bearer token where given) and reads the whole answer.
fn http(address: SocketAddr, method: &str, path: &str, token: Option<&str>) -> HttpResponse {
    http_request(address, method, path, token, None)
}

/// Appends whatever the stream has to give within its read timeout.
fn read_available(stream: &mut TcpStream, received: &mut Vec<u8>) {
    let mut buffer = [0; 16 * 1024];
    match stream.read(&mut buffer) {
        Ok(count) => received.extend_from_slice(&buffer[..count]),
        Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        Err(error) => panic!("read the event stream: {error}"),
    }
}

// ---------------------------------------------------------------------------------------------
// 8. Networking
// ---------------------------------------------------------------------------------------------

#[test]
fn bridge_publishes_ports_none_isolates_host_shares() {
    if !sandbox_available("bridge_publishes_ports_none_isolates_host_shares") {
        return;
    }
    let _bridge = bridge_turn();
    let daemon = Daemon::start();

    let port = free_port();
    let mapping = format!("{port}:8000");
    run_workload(
        &daemon,
        &[
            "--name",
            "acc-net-web",
            "-p",
            &mapping,
            "--",
            "python3",
            "-m",
            "http.server",
            "8000",
        ],
    );
    let started = Instant::now();
    let published = SocketAddr::from(([127, 0, 0, 1], port));
    daemon.wait_for(
        &format!("GET http://{published}/ to answer 200"),
        START_TIMEOUT,
        || (common::http_get_status(published, "/") == Some(200)).then_some(()),
    );
    eprintln!(
        "bridge: GET http://{published}/ answered 200 {:?} after start",
        started.elapsed()
    );

    let host_listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let host_port = host_listener.local_addr().expect("local address").port();
    host_listener
        .set_nonblocking(true)
        .expect("non-blocking listener");
    let probe = format!(
        "import socket\ntry:\n    socket.create_connection(('127.0.0.1', {host_port}), timeout=3)\n    print('reach yes', flush=True)\nexcept OSError as error:\n    print('reach no', error, flush=True)\ntry:\n    own = socket.create_server(('127.0.0.1', 0))\n    socket.create_connection(own.getsockname(), timeout=3)\n    print('loopback up', flush=True)\nexcept OSError as error:\n    print('loopback down', error, flush=True)\nprint('interfaces', ' '.join(sorted(line.split(':')[0].strip() for line in open('/proc/net/dev') if ':' in line)), flush=True)\nimport time\ntime.sleep(600)"
    );
    let interfaces_script =
        "echo interfaces $(awk -F: 'NR > 2 {print $1}' /proc/net/dev | sort); exec sleep 600";
    run_workload(
        &daemon,
        &[
            "--name",
            "acc-net-none",
            "--network",
            "none",
            "--",
            "python3",
            "-c",
            &probe,
        ],
    );
    run_workload(
        &daemon,
        &[
            "--name",
            "acc-net-host",
            "--network",
            "host",
            "--",
            "sh",
            "-c",
            interfaces_script,
        ],
    );
    let isolated = daemon.wait_for("the --network none probe", START_TIMEOUT, || {
        let (stdout, _) = logs_of(&daemon, "acc-net-none");
        stdout.contains("interfaces").then_some(stdout)
    });
    let shared = daemon.wait_for("the --network host probe", START_TIMEOUT, || {
        let (stdout, _) = logs_of(&daemon, "acc-net-host");
        stdout.contains("interfaces").then_some(stdout)
    });
    eprintln!("--network none: {}", isolated.trim());
    eprintln!("--network host: {}", shared.trim());
    assert!(
        isolated.contains("reach no"),
        "--network none reached the host's 127.0.0.1:{host_port}: {isolated}"
    );
    assert!(
        isolated.contains("loopback up"),
        "--network none should have a working loopback: {isolated}"
    );
    assert!(
        matches!(host_listener.accept(), Err(error) if error.kind() == ErrorKind::WouldBlock),
        "the host listener got a connection"
    );
    let interfaces = |report: &str| -> BTreeSet<String> {
        report
            .lines()
            .find_map(|line| line.strip_prefix("interfaces"))
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    assert_eq!(
        interfaces(&isolated),
        BTreeSet::from(["lo".to_string()]),
        "--network none should have loopback only"
    );
    let host_default = default_route_interface().expect("a default route on the host");
    let seen_with_host_network = interfaces(&shared);
    assert!(
        seen_with_host_network.contains(&host_default) && seen_with_host_network.contains("lo"),
        "--network host should see the host's {host_default}: {seen_with_host_network:?}"
    );
}

/// The interface of the host's IPv4 default route.
fn default_route_interface() -> Option<String> {
    std::fs::read_to_string("/proc/net/route")
        .ok()?
        .lines()
        .skip(1)
        .find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.get(1) == Some(&"00000000")).then(|| fields[0].to_string())
        })
}

// ---------------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------------

/// Tests that put workloads on Ward's bridge network take turns: the published ports and the
/// host's netfilter chains are shared by every daemon on the host.
static BRIDGE: Mutex<()> = Mutex::new(());

fn bridge_turn() -> MutexGuard<'static, ()> {
    BRIDGE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `ward run ARGS...`, which must succeed.
fn run_workload(daemon: &Daemon, arguments: &[&str]) {
    let mut command = vec!["run"];
    command.extend_from_slice(arguments);
    let output = daemon.ward(&command);
    if !output.status.success() {
        daemon.fail(&format!(
            "ward {}: {}",
            command.join(" "),
            stderr_of(&output)
        ));
    }
}

/// `ward inspect NAME -o json`.
fn inspect(daemon: &Daemon, name: &str) -> Value {
    serde_json::from_str(&assert_success(
        &daemon.ward(&["inspect", name, "-o", "json"]),
    ))
    .expect("inspect prints JSON")
}

/// `ward ps -a -o json`.
fn ps_all(daemon: &Daemon) -> Vec<Value> {
    serde_json::from_str(&assert_success(&daemon.ward(&["ps", "-a", "-o", "json"])))
        .expect("ps prints a JSON array")
}

/// Stdout and stderr of `ward logs NAME`.
fn logs_of(daemon: &Daemon, name: &str) -> (String, String) {
    let output = daemon.ward(&["logs", name]);
    assert!(
        output.status.success(),
        "ward logs {name}: {}",
        stderr_of(&output)
    );
    (stdout_of(&output), stderr_of(&output))
}

/// Host processes whose cgroup, in any hierarchy, belongs to an instance of one of `workloads`
/// (`/ward/ward-<namespace>.default.<workload>.<replica>`).
fn processes_in_cgroups_of(workloads: &[String]) -> Vec<u32> {
    let fragments: Vec<String> = workloads
        .iter()
        .map(|workload| format!(".default.{workload}."))
        .collect();
    host_processes()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/cgroup")).is_ok_and(|cgroups| {
                cgroups.lines().any(|line| {
                    line.contains("/ward/ward-")
                        && fragments
                            .iter()
                            .any(|fragment| line.contains(fragment.as_str()))
                })
            })
        })
        .collect()
}

/// `ward monitor` processes of instances in `data_dir`.
fn monitors_of(data_dir: &Path) -> Vec<u32> {
    let data_dir = data_dir.display().to_string();
    host_processes()
        .filter(|pid| {
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let arguments: Vec<String> = cmdline
                .split(|byte| *byte == 0)
                .map(|argument| String::from_utf8_lossy(argument).into_owned())
                .collect();
            arguments.get(1).map(String::as_str) == Some("monitor")
                && arguments
                    .iter()
                    .any(|argument| argument.starts_with(&data_dir))
        })
        .collect()
}

fn host_processes() -> impl Iterator<Item = u32> {
    std::fs::read_dir("/proc")
        .expect("read /proc")
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
}
