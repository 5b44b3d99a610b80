//! The CLI against a real daemon: `ward serve` on a free port with a temporary data directory.
//! The CLI finds the daemon's address and key through `--data-dir` alone.

mod common;

use common::{assert_one_error_line, assert_success, stderr_of, Daemon};

#[test]
fn fresh_daemon_lists_no_workloads() {
    let daemon = Daemon::start();
    let table = assert_success(&daemon.ward(&["ps"]));
    assert_eq!(
        table.split_whitespace().collect::<Vec<_>>(),
        ["NAME", "KIND", "STATE", "RESTARTS", "UPTIME", "CPU", "MEM", "PORTS"]
    );
    let json = assert_success(&daemon.ward(&["ps", "-a", "-o", "json"]));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&json).expect("JSON"),
        serde_json::json!([])
    );
}

/// The ELF type of an executable: 2 for one linked at a fixed address, 3 for a
/// position-independent one.
fn elf_type(path: &std::path::Path) -> u16 {
    let header = std::fs::read(path).expect("read the executable");
    assert_eq!(
        &header[..4],
        b"\x7fELF",
        "{} is not an ELF file",
        path.display()
    );
    u16::from_le_bytes([header[16], header[17]])
}

#[test]
fn serve_hands_over_to_the_position_independent_daemon() {
    let daemon = Daemon::start();
    let ward = std::path::Path::new(common::ward_binary());
    let wardd = ward.with_file_name("wardd");
    let running = std::fs::read_link(format!("/proc/{}/exe", daemon.pid())).expect("exe link");
    assert_eq!(running, wardd, "the daemon runs from {}", running.display());
    assert_eq!(elf_type(ward), 2, "ward must be linked at a fixed address");
    assert_eq!(elf_type(&wardd), 3, "wardd must be position-independent");
    // And the daemon answers as before.
    assert_success(&daemon.ward(&["ps"]));
}
#[test]
fn wrong_key_is_refused_with_one_error_line() {
    let daemon = Daemon::start();
    assert_one_error_line(&daemon.ward(&["ps", "--token", "not-the-key"]), "");
}

#[test]
fn missing_workload_is_named_in_the_error() {
    let daemon = Daemon::start();
    assert_one_error_line(&daemon.ward(&["inspect", "nothing-here"]), "nothing-here");
    assert_one_error_line(&daemon.ward(&["stop", "nothing-here"]), "nothing-here");
}

#[test]
fn dry_run_changes_nothing() {
    let daemon = Daemon::start();
    let directory = tempfile::tempdir().expect("temporary directory");
    let spec = directory.path().join("web.yaml");
    std::fs::write(&spec, "name: web\ncommand: [sleep, \"600\"]\n").expect("write spec");
    let spec_path = spec.to_str().expect("utf-8 path");
    let planned = assert_success(&daemon.ward(&["apply", "--dry-run", "-f", spec_path]));
    assert!(planned.starts_with("web: create (dry run)"), "{planned}");
    let listing = assert_success(&daemon.ward(&["ps", "-a", "-o", "json"]));
    assert_eq!(listing.trim(), "[]");
}

#[test]
fn an_unknown_project_is_named_with_how_to_create_it() {
    let daemon = Daemon::start();
    let refused = daemon.ward(&[
        "--project",
        "nosuchproj",
        "run",
        "--name",
        "x",
        "--",
        "true",
    ]);
    let line = assert_one_error_line(&refused, "project nosuchproj does not exist");
    assert!(line.contains("ward project create nosuchproj"), "{line}");
    let answer = common::http_request(
        daemon.address(),
        "POST",
        "/api/v1/workloads?project=nosuchproj",
        Some(daemon.token()),
        Some(r#"{"name": "x", "command": ["true"]}"#),
    );
    assert_eq!(answer.status, 404, "{}", answer.body);
    assert!(
        answer.body.contains(r#""field":"project""#),
        "{}",
        answer.body
    );
    assert_success(&daemon.ward(&["project", "create", "nosuchproj"]));
    // Nothing of the refused calls was stored.
    let listing =
        assert_success(&daemon.ward(&["--project", "nosuchproj", "ps", "-a", "-o", "json"]));
    assert_eq!(listing.trim(), "[]");
}

/// Running workloads needs the sandbox (namespaces, cgroups), which needs root.
/// `ward run --name NAME --network none OPTIONS... -- COMMAND...`, which must succeed.
fn run_sandboxed(daemon: &Daemon, name: &str, options: &[&str], command: &[&str]) -> String {
    let mut arguments = vec!["run", "--name", name, "--network", "none"];
    arguments.extend_from_slice(options);
    arguments.push("--");
    arguments.extend_from_slice(command);
    assert_success(&daemon.ward(&arguments))
}

fn can_run_workloads() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!(
        "skipped: running workloads needs root, and this test runs as uid {}",
        nix::unistd::geteuid()
    );
    false
}

#[test]
fn a_daemon_stopped_without_workloads_leaves_nothing_in_memory() {
    let mut daemon = Daemon::start();
    let run_root = daemon
        .data_dir()
        .join("run")
        .canonicalize()
        .expect("DATA/run leads to the run root");
    if can_run_workloads() {
        assert_success(&daemon.ward(&[
            "run",
            "--name",
            "brief",
            "--network",
            "none",
            "--",
            "true",
        ]));
        assert_success(&daemon.ward(&["rm", "-f", "brief"]));
    }
    assert!(run_root.is_dir(), "{run_root:?}");
    assert!(
        daemon.stop(),
        "the daemon did not stop on SIGTERM:\n{}",
        daemon.log()
    );
    assert!(
        !run_root.exists(),
        "{run_root:?} is left behind: {:?}",
        std::fs::read_dir(&run_root).map(|entries| entries
            .flatten()
            .map(|entry| entry.path())
            .collect::<Vec<_>>())
    );
}

/// Every cgroup directory of this daemon's instances and project groups, in every hierarchy:
/// `ward/<prefix>…` under each v1 mount and under the v2 root.
fn cgroups_named(prefix: &str) -> Vec<std::path::PathBuf> {
    let mut parents = vec![std::path::PathBuf::from("/sys/fs/cgroup/ward")];
    parents.extend(
        std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path().join("ward")),
    );
    parents
        .iter()
        .filter_map(|parent| std::fs::read_dir(parent).ok())
        .flatten()
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().starts_with(prefix))
        .map(|entry| entry.path())
        .collect()
}

#[test]
fn removed_workloads_and_a_clean_stop_leave_no_cgroup_behind() {
    if !can_run_workloads() {
        return;
    }
    let mut daemon = Daemon::start();
    for name in ["kept", "gone"] {
        assert_success(&daemon.ward(&[
            "run",
            "--name",
            name,
            "--network",
            "none",
            "--",
            "sleep",
            "600",
        ]));
    }
    let inspected = assert_success(&daemon.ward(&["inspect", "kept", "-o", "json"]));
    let document: serde_json::Value = serde_json::from_str(&inspected).expect("inspect JSON");
    let pid = document["status"]["pid"].as_u64().expect("a running pid");
    // `…:/ward/ward-<namespace>.default/ward-<namespace>.default.kept.0` in every hierarchy.
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("its cgroups");
    let instance = cgroups
        .lines()
        .find_map(|line| line.split_once(":/ward/")?.1.split('/').nth(1))
        .expect("an instance cgroup under /ward")
        .to_string();
    let prefix = format!("{}.", instance.split('.').next().expect("the namespace"));
    assert!(!cgroups_named(&prefix).is_empty(), "{prefix} in {cgroups}");
    assert_success(&daemon.ward(&["rm", "-f", "gone"]));
    assert_success(&daemon.ward(&["rm", "-f", "kept"]));
    assert!(daemon.stop(), "no stop on SIGTERM:\n{}", daemon.log());
    let left = cgroups_named(&prefix);
    assert!(left.is_empty(), "cgroups left behind: {left:?}");
}

/// A tmpfs of `size` mounted for the life of the value.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> SmallDisk {
        let dir = tempfile::tempdir().expect("a mount point");
        nix::mount::mount(
            Some("tmpfs"),
            dir.path(),
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some(format!("size={size},mode=0755").as_str()),
        )
        .expect("mount a tmpfs");
        SmallDisk { dir }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(self.dir.path(), nix::mount::MntFlags::MNT_DETACH);
    }
}

#[test]
fn a_full_disk_is_a_507_naming_the_data_dir_and_nothing_is_half_applied() {
    if !can_run_workloads() {
        return;
    }
    let disk = SmallDisk::mount("32m");
    let mut daemon = Daemon::start_with_data_dir_under(disk.dir.path());
    assert_success(&daemon.ward(&[
        "run",
        "--name",
        "before",
        "--network",
        "none",
        "--",
        "sleep",
        "600",
    ]));
    // Fill the file system to the last block.
    let filler_path = disk.dir.path().join("filler");
    let mut filler = std::fs::File::create(&filler_path).expect("create the filler");
    let block = vec![7u8; 64 * 1024];
    let full = loop {
        if let Err(error) = std::io::Write::write_all(&mut filler, &block) {
            break error;
        }
    };
    assert_eq!(full.raw_os_error(), Some(libc::ENOSPC), "{full}");
    let spec = r#"{"name": "late", "command": ["true"], "network": "none"}"#;
    let answer = common::http_request(
        daemon.address(),
        "POST",
        "/api/v1/workloads",
        Some(daemon.token()),
        Some(spec),
    );
    assert_eq!(answer.status, 507, "{}", answer.body);
    let data_dir = daemon.data_dir().display().to_string();
    assert!(
        answer
            .body
            .contains(&format!("the disk holding {data_dir} is full"))
            && answer.body.contains(" left"),
        "{}",
        answer.body
    );
    let refused = daemon.ward(&["run", "--name", "late", "--network", "none", "--", "true"]);
    assert!(!refused.status.success());
    assert!(
        common::stderr_of(&refused).contains("is full"),
        "{}",
        common::stderr_of(&refused)
    );
    // Space back: nothing of the refused calls was kept, and writes work again.
    drop(filler);
    std::fs::remove_file(&filler_path).expect("remove the filler");
    let listing = assert_success(&daemon.ward(&["ps", "-a"]));
    assert!(
        listing.contains("before") && !listing.contains("late"),
        "{listing}"
    );
    assert_success(&daemon.ward(&["run", "--name", "late", "--network", "none", "--", "true"]));
    assert_success(&daemon.ward(&["rm", "-f", "before", "late"]));
    assert!(daemon.stop(), "no stop on SIGTERM:\n{}", daemon.log());
}

#[test]
fn exec_takes_docker_s_env_user_and_workdir_flags() {
    if !can_run_workloads() {
        return;
    }
    let daemon = Daemon::start();
    run_sandboxed(&daemon, "box", &[], &["sleep", "600"]);
    let output = assert_success(&daemon.ward(&[
        "exec",
        "-e",
        "GREETING=hi",
        "-u",
        "1000:1000",
        "-w",
        "/tmp",
        "box",
        "--",
        "sh",
        "-c",
        "echo $GREETING; pwd; id -u",
    ]));
    assert_eq!(output, "hi\n/tmp\n1000\n");
    let refused = daemon.ward(&["exec", "-w", "tmp", "box", "--", "true"]);
    assert_one_error_line(&refused, "workdir: \"tmp\" is not an absolute path");
    let refused = daemon.ward(&["exec", "-u", "nosuchuser", "box", "--", "true"]);
    let line = assert_one_error_line(&refused, "user: no user nosuchuser");
    assert!(line.contains("numeric UID"), "{line}");
    assert_success(&daemon.ward(&["rm", "-f", "box"]));
}

/// `ward logs -f` ends once the workload has stopped and its last lines are out, as
/// `docker logs -f` does; `--tail N` is N lines of each instance.
#[test]
fn followed_logs_end_with_the_workload_and_tail_counts_per_instance() {
    if !can_run_workloads() {
        return;
    }
    let daemon = Daemon::start();
    run_sandboxed(
        &daemon,
        "brief",
        &["--restart", "never"],
        &["sh", "-c", "echo one; sleep 1; echo two"],
    );
    let started = std::time::Instant::now();
    let followed = assert_success(&daemon.ward(&["logs", "-f", "brief"]));
    assert_eq!(followed, "one\ntwo\n");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    run_sandboxed(
        &daemon,
        "pair",
        &["--replicas", "2"],
        &["sh", "-c", "echo first; echo last; exec sleep 600"],
    );
    // One line of each replica, each named: its last, once both have written it (until
    // then a replica's last line may still be its first).
    daemon.wait_for(
        "`pair-0 | last` and `pair-1 | last` from `ward logs --tail 1 pair`",
        std::time::Duration::from_secs(10),
        || {
            let tail = assert_success(&daemon.ward(&["logs", "--tail", "1", "pair"]));
            let mut lines: Vec<&str> = tail.lines().collect();
            lines.sort_unstable();
            (lines == ["pair-0 | last", "pair-1 | last"]).then_some(())
        },
    );
    assert_success(&daemon.ward(&["rm", "-f", "brief", "pair"]));
}

#[test]
fn run_ps_logs_stop_rm_round_trip() {
    if !can_run_workloads() {
        return;
    }
    let daemon = Daemon::start();
    let name = assert_success(&daemon.ward(&[
        "run",
        "--name",
        "greeter",
        "--",
        "sh",
        "-c",
        "echo hello from greeter; echo oops >&2; exec sleep 600",
    ]));
    assert_eq!(name.trim(), "greeter", "daemon log:\n{}", daemon.log());

    let table = assert_success(&daemon.ward(&["ps"]));
    let row = table
        .lines()
        .find(|line| line.starts_with("greeter"))
        .unwrap_or_else(|| panic!("no greeter in:\n{table}"));
    assert!(row.contains("process") && row.contains("running"), "{row}");

    let document: serde_json::Value = serde_json::from_str(&assert_success(
        &daemon.ward(&["inspect", "greeter", "-o", "json"]),
    ))
    .expect("JSON");
    assert_eq!(document["name"], "greeter");
    assert_eq!(document["restart"]["policy"], "on-failure");
    assert_eq!(document["status"]["state"], "running");

    // The first line may take a moment to reach the log; `logs -f` waits for it.
    let mut follower = daemon
        .ward_command(&["logs", "-f", "greeter"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn ward logs -f");
    let mut first_line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(follower.stdout.take().expect("piped stdout")),
        &mut first_line,
    )
    .expect("read a log line");
    let _ = follower.kill();
    let _ = follower.wait();
    assert_eq!(first_line, "hello from greeter\n");

    let logs = daemon.ward(&["logs", "greeter"]);
    assert_eq!(common::stdout_of(&logs), "hello from greeter\n");
    assert_eq!(stderr_of(&logs), "oops\n");

    assert_one_error_line(&daemon.ward(&["rm", "greeter"]), "greeter");
    assert_eq!(
        assert_success(&daemon.ward(&["stop", "greeter"])).trim(),
        "greeter"
    );
    assert_eq!(
        assert_success(&daemon.ward(&["rm", "greeter"])).trim(),
        "greeter"
    );
    assert_eq!(
        assert_success(&daemon.ward(&["ps", "-a", "-o", "json"])).trim(),
        "[]"
    );
}

#[test]
fn apply_twice_is_unchanged() {
    if !can_run_workloads() {
        return;
    }
    let daemon = Daemon::start();
    let directory = tempfile::tempdir().expect("temporary directory");
    let spec = directory.path().join("apply.yaml");
    std::fs::write(
        &spec,
        "name: web\ncommand: [sleep, \"600\"]\nresources: {memory: 256MiB}\n---\nname: api\ncommand: [sleep, \"600\"]\n",
    )
    .expect("write spec");
    let spec_path = spec.to_str().expect("utf-8 path");
    assert_eq!(
        assert_success(&daemon.ward(&["apply", "-f", spec_path])),
        "web created\napi created\n"
    );
    assert_eq!(
        assert_success(&daemon.ward(&["apply", "-f", spec_path])),
        "web unchanged\napi unchanged\n"
    );

    std::fs::write(
        &spec,
        "name: web\ncommand: [sleep, \"600\"]\nresources: {memory: 512MiB}\n",
    )
    .expect("write spec");
    let planned = assert_success(&daemon.ward(&["apply", "--dry-run", "-f", spec_path]));
    assert_eq!(
        planned,
        "web: update (dry run)\n  resources.memory: 268435456 -> 536870912\n"
    );
    assert_eq!(
        assert_success(&daemon.ward(&["apply", "-f", spec_path])),
        "web configured\n"
    );
}

#[test]
fn exec_returns_the_command_exit_code() {
    if !can_run_workloads() {
        return;
    }
    let daemon = Daemon::start();
    assert_success(&daemon.ward(&["run", "--name", "box", "--", "sleep", "600"]));
    let output = daemon.ward(&["exec", "box", "--", "sh", "-c", "echo inside; exit 3"]);
    assert_eq!(common::stdout_of(&output), "inside\n");
    assert_eq!(output.status.code(), Some(3));
}

/// `ward logs -f` sends every line once, in order, even when lines share a timestamp and the
/// follower polls across them (a regression: each poll re-sent the newest line).
#[test]
fn followed_logs_have_no_gaps_and_no_repeats() {
    if !can_run_workloads() {
        return;
    }
    let daemon = Daemon::start();
    assert_success(&daemon.ward(&[
        "run",
        "--name",
        "ticker",
        "--network",
        "none",
        "--",
        "sh",
        "-c",
        "i=0; while :; do echo tick $i; echo tock $i; i=$((i+1)); sleep 0.03; done",
    ]));
    let mut follower = daemon
        .ward_command(&["logs", "-f", "ticker"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start ward logs -f");
    let stdout = follower.stdout.take().expect("stdout");
    let mut lines = Vec::new();
    for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
        lines.push(line.expect("read a log line"));
        if lines.len() == 120 {
            break;
        }
    }
    let _ = follower.kill();
    let _ = follower.wait();
    let expected: Vec<String> = (0..60)
        .flat_map(|index| [format!("tick {index}"), format!("tock {index}")])
        .collect();
    assert_eq!(lines, expected);
    assert_success(&daemon.ward(&["rm", "-f", "ticker"]));
}

/// A program that does not exist can never start: the instance fails at once with the
/// reason, and is not restarted (a restart policy is for programs that ran).
#[test]
fn a_program_that_does_not_exist_fails_at_once_and_is_not_restarted() {
    if !can_run_workloads() {
        return;
    }
    let daemon = Daemon::start();
    // A program missing on the host is refused before anything is stored.
    let refused = daemon.ward(&["run", "--name", "x", "--", "/nonexistent"]);
    let line = assert_one_error_line(&refused, "command: no program /nonexistent on this host");
    assert!(line.contains("full path"), "{line}");
    assert_eq!(
        assert_success(&daemon.ward(&["ps", "-a", "-o", "json"])).trim(),
        "[]"
    );
    // One that exists on the host but not in the workload (every workload has its own /tmp)
    // fails at its start, for good.
    let outside = tempfile::tempdir().expect("a directory in /tmp");
    let program = outside.path().join("only-on-the-host");
    std::fs::write(&program, "#!/bin/sh\necho hi\n").expect("write the program");
    std::fs::set_permissions(
        &program,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("make it executable");
    let started = std::time::Instant::now();
    let _ = daemon.ward(&["run", "--name", "x", "--", program.to_str().expect("utf-8")]);
    let failed_after = daemon.wait_for(
        "x to fail with the reason",
        std::time::Duration::from_secs(10),
        || {
            let inspected = common::stdout_of(&daemon.ward(&["inspect", "x"])).to_lowercase();
            (inspected.contains("failed") && inspected.contains("no such file"))
                .then(|| started.elapsed())
        },
    );
    assert!(
        failed_after < std::time::Duration::from_secs(2),
        "failed only after {failed_after:?}"
    );
    // Backoff would have tried again after 1 s and 3 s: watch past both.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(4);
    while std::time::Instant::now() < deadline {
        let events = common::stdout_of(&daemon.ward(&["events"]));
        let starts = events.matches("starting x-0").count();
        assert_eq!(starts, 1, "x was started again:\n{events}");
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    let events = common::stdout_of(&daemon.ward(&["events"]));
    assert!(events.contains("not retried"), "{events}");
}

/// A daemon started at once after the previous one was killed waits the moment the kernel
/// takes to release the data dir's lock, instead of refusing to start.
#[test]
fn a_daemon_starts_at_once_after_the_previous_one_was_killed() {
    let mut daemon = Daemon::start();
    for _ in 0..5 {
        daemon.kill9();
        daemon.restart();
    }
    assert_success(&daemon.ward(&["ps"]));
}

/// A spec this host can never run is refused when it is applied, by the field at fault, and
/// nothing is stored: a kind without a driver, a GPU where no driver hands one out.
#[test]
fn a_spec_no_driver_can_run_is_refused_at_apply_and_nothing_is_stored() {
    let daemon = Daemon::start();
    let directory = tempfile::tempdir().expect("temp dir");
    for (name, spec, field) in [
        ("vm", "name: vm\nkind: vm\nimage: disk.qcow2\n", "kind"),
        (
            "gpu",
            "name: gpu\ncommand: [sleep, '60']\nresources: {gpu: 1}\n",
            "resources.gpu",
        ),
    ] {
        let file = directory.path().join(format!("{name}.yaml"));
        std::fs::write(&file, spec).expect("write the spec");
        let output = daemon.ward(&["apply", "-f", file.to_str().expect("path")]);
        let line = assert_one_error_line(&output, field);
        assert!(line.starts_with("error:"), "{line}");
    }
    let listed = common::stdout_of(&daemon.ward(&["ps", "-a"]));
    assert!(
        !listed.contains("vm") && !listed.contains("gpu"),
        "{listed}"
    );
}

/// `ward volume ls|rm|prune`: a volume shows the workloads that mount it, is not removed while
/// one does (stopped or not), and goes with its files once none does; names cannot reach
/// outside the project's volumes, and another project's volume of the same name is its own.
#[test]
fn named_volumes_are_listed_kept_while_mounted_and_removed_with_their_files() {
    if !can_run_workloads() {
        return;
    }
    let mut daemon = Daemon::start();
    let run_with_volume = |project: &str, name: &str, volume: &str| {
        assert_success(&daemon.ward(&[
            "--project",
            project,
            "run",
            "--name",
            name,
            "--network",
            "none",
            "--restart",
            "never",
            "-v",
            &format!("{volume}:/data"),
            "--",
            "sh",
            "-c",
            "echo kept > /data/file",
        ]));
    };
    assert_success(&daemon.ward(&["project", "create", "other"]));
    run_with_volume("default", "writer", "data");
    run_with_volume("default", "scratch-user", "scratch");
    run_with_volume("other", "writer", "data");
    let volume_dir =
        |project: &str, name: &str| daemon.data_dir().join("volumes").join(project).join(name);
    daemon.wait_for(
        "the file in the volume",
        std::time::Duration::from_secs(10),
        || {
            volume_dir("default", "data")
                .join("file")
                .exists()
                .then_some(())
        },
    );

    let listing = assert_success(&daemon.ward(&["volume", "ls"]));
    let rows: Vec<Vec<&str>> = listing
        .lines()
        .map(|line| line.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["VOLUME", "CREATED", "USED", "BY"], "{listing}");
    assert_eq!(rows[1][0], "data", "{listing}");
    assert_eq!(rows[1].last(), Some(&"writer"), "{listing}");
    assert_eq!(rows[2][0], "scratch", "{listing}");

    // Exited, but still a workload that mounts it.
    let refused = daemon.ward(&["volume", "rm", "data"]);
    let line = assert_one_error_line(&refused, "volume data is used by writer");
    assert!(line.contains("ward rm"), "{line}");
    assert!(volume_dir("default", "data").join("file").exists());
    for hostile in ["..", ".", "data/..", "%2e%2e"] {
        let refused = daemon.ward(&["volume", "rm", hostile]);
        assert!(!refused.status.success(), "{hostile} was accepted");
        assert!(daemon.data_dir().join("volumes").join("default").exists());
    }

    assert_success(&daemon.ward(&["rm", "-f", "writer", "scratch-user"]));
    assert_eq!(
        assert_success(&daemon.ward(&["volume", "rm", "data"])),
        "data\n"
    );
    assert!(!volume_dir("default", "data").exists());
    let missing = daemon.ward(&["volume", "rm", "data"]);
    assert_one_error_line(&missing, "volume data not found in project default");
    assert_eq!(
        assert_success(&daemon.ward(&["volume", "prune"])),
        "scratch\n"
    );
    assert_eq!(assert_success(&daemon.ward(&["volume", "ls", "-q"])), "");
    // The other project's volume of the same name is untouched, and still in use there.
    assert!(volume_dir("other", "data").join("file").exists());
    let listing = assert_success(&daemon.ward(&["--project", "other", "volume", "ls", "-q"]));
    assert_eq!(listing, "data\n");
    assert_success(&daemon.ward(&["--project", "other", "rm", "-f", "writer"]));
    assert!(daemon.stop(), "no stop on SIGTERM:\n{}", daemon.log());
}

/// Docker's everyday flags: `ps -q` and `--filter`, `inspect --format`, `stop -t`, `kill`
/// (SIGKILL stops for good; `-s` only signals), `stats`, and a note for `--cpus` past the host.
#[test]
fn ps_filters_inspect_format_stop_time_kill_and_stats_work_as_in_docker() {
    if !can_run_workloads() {
        return;
    }
    let daemon = Daemon::start();
    let run = |name: &str, label: &str, extra: &[&str], script: &str| {
        let mut arguments = vec!["run", "--name", name, "--network", "none", "-l", label];
        arguments.extend_from_slice(extra);
        arguments.extend_from_slice(&["--", "sh", "-c", script]);
        daemon.ward(&arguments)
    };
    // Catches TERM and goes on: only SIGKILL ends it.
    let stubborn =
        "trap 'echo got TERM' TERM; trap 'echo got HUP' HUP; while true; do sleep 0.1; done";
    assert_success(&run("front", "team=web", &[], stubborn));
    let busy = run("back", "team=db", &["--cpus", "64"], "exec sleep 600");
    assert_success(&busy);
    let said = String::from_utf8_lossy(&busy.stderr).to_string();
    assert!(said.contains("note: --cpus 64: this host has"), "{said}");

    let quiet = |filters: &[&str]| {
        let mut arguments = vec!["ps", "-q"];
        arguments.extend_from_slice(filters);
        assert_success(&daemon.ward(&arguments))
    };
    assert_eq!(quiet(&[]), "back\nfront\n");
    assert_eq!(quiet(&["-f", "label=team=web"]), "front\n");
    assert_eq!(quiet(&["--filter", "label=team"]), "back\nfront\n");
    assert_eq!(quiet(&["-f", "name=ac", "-f", "state=running"]), "back\n");
    let refused = daemon.ward(&["ps", "-f", "colour=red"]);
    assert_one_error_line(
        &refused,
        "colour: no such filter; use name, label, state, kind or health",
    );
    let refused = daemon.ward(&["ps", "-f", "state=up"]);
    assert_one_error_line(&refused, "state=up: no such state");

    let formatted = assert_success(&daemon.ward(&[
        "inspect",
        "-f",
        "{{.name}} {{.Status.State}} {{json .labels}}",
        "front",
        "back",
    ]));
    assert_eq!(
        formatted,
        "front running {\"team\":\"web\"}\nback running {\"team\":\"db\"}\n"
    );
    let refused = daemon.ward(&["inspect", "-f", "{{.status.phase}}", "front"]);
    assert_one_error_line(&refused, "format: no field phase in .status.phase");

    let stats = assert_success(&daemon.ward(&["stats"]));
    assert!(
        stats.starts_with("NAME") && stats.contains("front"),
        "{stats}"
    );

    // -s only signals: the trap answers and the workload keeps running.
    assert_success(&daemon.ward(&["kill", "-s", "HUP", "front"]));
    daemon.wait_for("the HUP trap", std::time::Duration::from_secs(10), || {
        assert_success(&daemon.ward(&["logs", "front"]))
            .contains("got HUP")
            .then_some(())
    });
    let refused = daemon.ward(&["kill", "-s", "NOSUCH", "front"]);
    assert_one_error_line(&refused, "signal: \"NOSUCH\" is not a signal");

    // The TERM trap keeps it alive: stop -t 1 kills it after a second, not after ten.
    let started = std::time::Instant::now();
    assert_success(&daemon.ward(&["stop", "-t", "1", "front"]));
    let took = started.elapsed();
    assert!(
        took >= std::time::Duration::from_millis(900) && took < std::time::Duration::from_secs(8),
        "stop -t 1 took {took:?}"
    );
    assert!(assert_success(&daemon.ward(&["logs", "front"])).contains("got TERM"));

    // SIGKILL stops it, and it stays stopped.
    assert_success(&daemon.ward(&["kill", "back"]));
    let listing = assert_success(&daemon.ward(&["ps", "-a", "-q", "-f", "state=stopped"]));
    assert_eq!(listing, "back\nfront\n");
    assert_success(&daemon.ward(&["rm", "front", "back"]));
}

/// Bash completion offers the project's workloads where a command takes one, and only there.
#[test]
fn bash_completion_offers_workload_names() {
    if !can_run_workloads() {
        return;
    }
    let daemon = Daemon::start();
    for name in ["web", "worker"] {
        run_sandboxed(&daemon, name, &[], &["sleep", "600"]);
    }
    let script = assert_success(&daemon.ward(&["completion", "bash"]));
    let directory = tempfile::tempdir().expect("script directory");
    let script_path = directory.path().join("ward.bash");
    std::fs::write(&script_path, script).expect("write the script");
    let binary_directory = std::path::Path::new(common::ward_binary())
        .parent()
        .expect("the binary's directory")
        .to_path_buf();
    let complete = |words: &str| {
        let program = format!(
            "source {}; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); _ward_workloads ward \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"; echo \"${{COMPREPLY[*]}}\"",
            script_path.display()
        );
        let path = format!(
            "{}:{}",
            binary_directory.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let output = std::process::Command::new("bash")
            .args(["-c", &program])
            .env("PATH", path)
            .env("WARD_DATA_DIR", daemon.data_dir())
            .output()
            .expect("run bash");
        assert_success(&output).trim().to_string()
    };
    assert_eq!(complete("ward logs w"), "web worker");
    assert_eq!(complete("ward --project default stop we"), "web");
    assert_eq!(complete("ward exec -e A=1 wo"), "worker");
    // Not a workload: a subcommand, an option.
    assert_eq!(complete("ward ima"), "image");
    assert!(complete("ward logs --fol").contains("--follow"));
    assert_success(&daemon.ward(&["rm", "-f", "web", "worker"]));
}

/// `-p PORT` without a host port publishes on a free one chosen at the start, as `docker run
/// -p 80` does, so that replicas can each publish: both answer, on ports `ps` shows.
#[test]
fn a_port_without_a_host_port_gets_a_free_one_for_each_replica() {
    if !can_run_workloads() {
        return;
    }
    let daemon = Daemon::start();
    assert_success(&daemon.ward(&[
        "run",
        "--name",
        "web",
        "--replicas",
        "2",
        "-p",
        "8000",
        "--",
        "busybox",
        "httpd",
        "-f",
        "-p",
        "8000",
        "-h",
        "/",
    ]));
    let document = daemon.wait_for(
        "both replicas running",
        std::time::Duration::from_secs(10),
        || {
            let output = assert_success(&daemon.ward(&["inspect", "web"]));
            let document: serde_json::Value = serde_json::from_str(&output).expect("JSON");
            let running = document["status"]["instances"]
                .as_array()
                .is_some_and(|instances| {
                    instances.len() == 2
                        && instances
                            .iter()
                            .all(|instance| instance["state"] == "running")
                });
            running.then_some(document)
        },
    );
    assert_eq!(
        document["ports"][0]["host"],
        serde_json::Value::Null,
        "{document}"
    );
    let hosts: Vec<u64> = document["status"]["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .map(|instance| instance["ports"][0]["host"].as_u64().expect("a host port"))
        .collect();
    assert_ne!(hosts[0], hosts[1]);
    for host in &hosts {
        assert_ne!(*host, 0);
        daemon.wait_for(
            "the published port",
            std::time::Duration::from_secs(10),
            || std::net::TcpStream::connect(("127.0.0.1", *host as u16)).ok(),
        );
    }
    let listing = assert_success(&daemon.ward(&["ps"]));
    assert!(
        listing.contains(&format!("{}->8000/tcp", hosts[0])),
        "{listing}"
    );
    assert_success(&daemon.ward(&["rm", "-f", "web"]));
}
