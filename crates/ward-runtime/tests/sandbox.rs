//! The isolation a process workload gets, checked from inside real sandboxes: its own
//! processes only, the host filesystem read-only, no capabilities, Ward's data hidden, and
//! memory and process limits that hold. Needs root and crun or runc; says SKIP otherwise.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use support::*;
use ward_runtime::Driver;
use ward_spec::VolumeMount;

fn lines(logs: &[ward_runtime::LogLine]) -> Vec<&str> {
    logs.iter().map(|line| line.text.as_str()).collect()
}

#[tokio::test]
async fn workload_sees_only_its_own_processes() {
    let Some(fixture) = fixture("workload_sees_only_its_own_processes") else {
        return;
    };
    let script = "cat /proc/1/comm; ls -d /proc/[0-9]* | wc -l";
    let (status, logs) = fixture.run_to_exit(&shell("ps", script)).await;
    assert!(status.success(), "{status:?} {logs:?}");
    let lines = lines(&logs);
    assert_eq!(lines[0], "sh", "pid 1 is the workload itself");
    let processes: usize = lines[1].trim().parse().expect("a count");
    // sh, ls and wc (the pipeline's processes), nothing of the host.
    assert!(processes <= 3, "the workload sees {processes} processes");
}

#[tokio::test]
async fn filesystem_is_read_only_except_tmp_and_volumes() {
    let Some(fixture) = fixture("filesystem_is_read_only_except_tmp_and_volumes") else {
        return;
    };
    // A host directory given to the project's users is theirs to write; one the host's root
    // owns is not, although it is mounted read-write.
    let bound = tempfile::tempdir().expect("host dir");
    let range = fixture
        .runtime
        .id_range(&fixture.project)
        .expect("id range");
    std::os::unix::fs::chown(bound.path(), Some(range.host_base), Some(range.host_base))
        .expect("give the directory to the project's root");
    let root_owned = tempfile::tempdir().expect("host dir");
    let mut spec = shell(
        "fs",
        "for dir in /etc /usr /root /var /home /opt /run/.. /tmp /data /readonly /tmp/bound /tmp/root-owned; do \
           if touch $dir/ward-write-test 2>/dev/null; then echo \"writable $dir\"; else echo \"read-only $dir\"; fi; \
         done",
    );
    spec.volumes = vec![
        VolumeMount {
            source: "data".into(),
            target: "/data".into(),
            read_only: false,
        },
        VolumeMount {
            source: "data".into(),
            target: "/readonly".into(),
            read_only: true,
        },
        VolumeMount {
            source: bound.path().display().to_string(),
            target: "/tmp/bound".into(),
            read_only: false,
        },
        VolumeMount {
            source: root_owned.path().display().to_string(),
            target: "/tmp/root-owned".into(),
            read_only: false,
        },
    ];
    let (status, logs) = fixture.run_to_exit(&spec).await;
    assert!(status.success(), "{status:?} {logs:?}");
    assert_eq!(
        lines(&logs),
        [
            "read-only /etc",
            "read-only /usr",
            "read-only /root",
            "read-only /var",
            "read-only /home",
            "read-only /opt",
            "read-only /run/..",
            "writable /tmp",
            "writable /data",
            "read-only /readonly",
            "writable /tmp/bound",
            "read-only /tmp/root-owned",
        ]
    );
    let volume = fixture
        .data_dir()
        .join("volumes")
        .join(&fixture.project)
        .join("data");
    assert!(
        volume.join("ward-write-test").exists(),
        "the named volume holds what the workload wrote"
    );
    assert!(
        bound.path().join("ward-write-test").exists(),
        "the bind mount holds what the workload wrote"
    );
    assert!(!std::path::Path::new("/etc/ward-write-test").exists());
}

#[tokio::test]
async fn submounts_of_the_host_stay_read_only() {
    let Some(fixture) = fixture("submounts_of_the_host_stay_read_only") else {
        return;
    };
    // A writable mount below a read-only top-level directory, as /run/netns or a mounted disk.
    let host_dir = tempfile::Builder::new()
        .prefix("ward-submount-")
        .tempdir_in("/var/tmp")
        .expect("dir");
    nix::mount::mount(
        Some("tmpfs"),
        host_dir.path(),
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("size=1m"),
    )
    .expect("mount a tmpfs");
    let script = format!(
        "touch {}/x 2>/dev/null && echo writable || echo read-only",
        host_dir.path().display()
    );
    let (status, logs) = fixture.run_to_exit(&shell("submount", &script)).await;
    let _ = nix::mount::umount2(host_dir.path(), nix::mount::MntFlags::MNT_DETACH);
    assert!(status.success(), "{status:?} {logs:?}");
    assert_eq!(lines(&logs), ["read-only"]);
}

#[tokio::test]
async fn workload_has_no_capabilities_and_cannot_gain_privileges() {
    let Some(fixture) = fixture("workload_has_no_capabilities_and_cannot_gain_privileges") else {
        return;
    };
    let script = "grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status | tr -s '\\t' ' '; \
                  unshare -U true 2>/dev/null && echo 'user namespace: created' || echo 'user namespace: refused'; \
                  hostname; echo $HOSTNAME";
    let (status, logs) = fixture.run_to_exit(&shell("caps", script)).await;
    assert!(status.success(), "{status:?} {logs:?}");
    assert_eq!(
        lines(&logs),
        [
            "CapInh: 0000000000000000",
            "CapPrm: 0000000000000000",
            "CapEff: 0000000000000000",
            "CapBnd: 0000000000000000",
            "CapAmb: 0000000000000000",
            "NoNewPrivs: 1",
            "Seccomp: 2",
            "user namespace: refused",
            "caps",
            "caps",
        ]
    );
}

#[tokio::test]
async fn ward_data_and_host_secrets_are_hidden() {
    let Some(fixture) = fixture("ward_data_and_host_secrets_are_hidden") else {
        return;
    };
    let token = fixture.data_dir().join("admin.token");
    std::fs::write(&token, "secret-admin-token\n").expect("write token");
    let script = format!(
        "cat {} 2>/dev/null || echo 'token: unreadable'; ls -A {} | wc -l; \
         cat /etc/shadow 2>/dev/null | wc -c; ls -A /root | wc -l",
        token.display(),
        fixture.data_dir().display()
    );
    let (status, logs) = fixture.run_to_exit(&shell("secrets", &script)).await;
    assert!(status.success(), "{status:?} {logs:?}");
    assert_eq!(lines(&logs), ["token: unreadable", "0", "0", "0"]);
}

#[tokio::test]
async fn memory_limit_ends_in_an_oom_kill() {
    let Some(fixture) = fixture("memory_limit_ends_in_an_oom_kill") else {
        return;
    };
    let mut spec = spec("oom", &["python3", "-c", "b = b'x' * (200 * 1024 * 1024)"]);
    spec.resources.memory = Some(64 * 1024 * 1024);
    let (status, logs) = fixture.run_to_exit(&spec).await;
    assert!(status.oom_killed, "{status:?} {logs:?}");
    assert_eq!(status.signal, Some(9), "{status:?}");
    assert!(!status.success());
}

#[tokio::test]
async fn fork_bomb_stops_at_the_pid_limit_and_remove_cleans_up() {
    let Some(fixture) = fixture("fork_bomb_stops_at_the_pid_limit_and_remove_cleans_up") else {
        return;
    };
    let mut spec = spec(
        "forkbomb",
        &["python3", "-c", "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"],
    );
    spec.resources.pids = Some(64);
    spec.resources.cpu = Some(0.5);
    let key = fixture.key(&spec.name);
    let handle = fixture.runtime.start(&key, &spec).await.expect("start");

    let mut most = 0;
    let pids = wait_for(
        "the fork bomb to reach the pid limit",
        Duration::from_secs(30),
        || {
            let pids = fixture
                .runtime
                .usage(&handle)
                .map(|usage| usage.pids)
                .unwrap_or(0);
            most = most.max(pids);
            (pids >= 60).then_some(pids)
        },
    )
    .await;
    assert!(
        pids <= 64 && most <= 64,
        "{most} processes under a limit of 64"
    );

    // The host still answers: a process starts and ends promptly.
    let started = Instant::now();
    let host_process = std::process::Command::new("true")
        .status()
        .expect("run true on the host");
    assert!(host_process.success());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the host took {:?} to run `true`",
        started.elapsed()
    );

    let cgroups = fixture.runtime.cgroup_dirs(&key);
    assert!(
        cgroups.iter().any(|dir| dir.exists()),
        "cgroups {cgroups:?} exist while it runs"
    );
    fixture.runtime.remove(&key).await.expect("remove");
    for dir in &cgroups {
        assert!(
            !dir.exists(),
            "cgroup {} is left after remove",
            dir.display()
        );
    }
    assert!(
        !std::path::Path::new(&format!("/proc/{}", handle.pid)).exists(),
        "the workload still runs"
    );
    assert!(
        !std::path::Path::new(&format!("/proc/{}", handle.monitor_pid)).exists(),
        "the monitor still runs"
    );
    assert!(
        !fixture.runtime.instance_dir(&key).expect("dir").exists(),
        "the instance directory is left"
    );
}

#[tokio::test]
async fn root_in_a_workload_is_not_the_hosts_root() {
    let Some(fixture) = fixture("root_in_a_workload_is_not_the_hosts_root") else {
        return;
    };
    // A secret of the host's root in a directory every workload sees (read-only).
    let visible = tempfile::Builder::new()
        .prefix("ward-userns-")
        .tempdir_in("/var/tmp")
        .expect("host dir");
    std::fs::set_permissions(visible.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    let secret = visible.path().join("root-only");
    std::fs::write(&secret, "host root's secret\n").expect("write");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let script = format!(
        "cat /proc/self/uid_map; id -u; if cat {} 2>/dev/null; then echo read; else echo refused; fi",
        secret.display()
    );
    let range = fixture
        .runtime
        .id_range(&fixture.project)
        .expect("id range");

    let (status, logs) = fixture.run_to_exit(&shell("userns", &script)).await;
    assert!(status.success(), "{status:?} {logs:?}");
    let first = lines(&logs);
    let map: Vec<&str> = first[0].split_whitespace().collect();
    assert_eq!(
        map,
        ["0", &range.host_base.to_string(), "65536"],
        "root inside is host id {}",
        range.host_base
    );
    assert_eq!(first[1], "0", "the workload still runs as its own root");
    assert_eq!(first[2], "refused", "{first:?}");

    // The same workload with the host's user ids (an admin's choice) reads it: the check
    // above can fail.
    let mut host_users = shell("hostusers", &script);
    host_users.userns = ward_spec::UserNamespace::Host;
    let (status, logs) = fixture.run_to_exit(&host_users).await;
    assert!(status.success(), "{status:?} {logs:?}");
    let lines = lines(&logs);
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["0", "0", "4294967295"]
    );
    assert!(lines.contains(&"host root's secret"), "{lines:?}");
}

#[tokio::test]
async fn a_default_workload_holds_no_more_than_the_default_pids_limit() {
    let Some(fixture) = fixture("a_default_workload_holds_no_more_than_the_default_pids_limit")
    else {
        return;
    };
    // Forks sleepers until fork fails, then reports how many it got; they end with it.
    let script = "import os, time\nn = 0\ntry:\n    while n < 3000:\n        if os.fork() == 0:\n            time.sleep(60)\n            os._exit(0)\n        n += 1\nexcept OSError:\n    pass\nprint(n, flush=True)\n";
    let (status, logs) = fixture
        .run_to_exit(&spec("pids", &["python3", "-c", script]))
        .await;
    assert!(status.success() || status.exit_code.is_some(), "{status:?}");
    let lines = lines(&logs);
    let started: usize = lines
        .iter()
        .find_map(|line: &&str| line.trim().parse().ok())
        .unwrap_or_else(|| panic!("no count in {lines:?}"));
    assert!(
        started < ward_runtime::DEFAULT_PIDS_LIMIT as usize,
        "the workload started {started} processes"
    );
    assert!(
        started > 100,
        "the workload started only {started} processes"
    );
}

#[tokio::test]
async fn a_mount_point_of_one_workload_leaves_the_next_ones_alone() {
    let Some(fixture) = fixture("a_mount_point_of_one_workload_leaves_the_next_ones_alone") else {
        return;
    };
    // First a file at /x, then a directory at /x: each workload's root is its own.
    let file = tempfile::NamedTempFile::new_in("/var/tmp").expect("host file");
    std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(0o644)).expect("chmod");
    std::fs::write(file.path(), "a file\n").expect("write");
    let mut with_file = shell("file-at-x", "cat /x");
    with_file.volumes = vec![VolumeMount {
        source: file.path().display().to_string(),
        target: "/x".into(),
        read_only: true,
    }];
    let (status, logs) = fixture.run_to_exit(&with_file).await;
    assert!(status.success(), "{status:?} {logs:?}");
    assert_eq!(lines(&logs), ["a file"]);

    let mut with_directory = shell("dir-at-x", "echo in > /x/made && ls /x");
    with_directory.volumes = vec![VolumeMount {
        source: "scratch".into(),
        target: "/x".into(),
        read_only: false,
    }];
    let (status, logs) = fixture.run_to_exit(&with_directory).await;
    assert!(status.success(), "{status:?} {logs:?}");
    assert_eq!(lines(&logs), ["made"]);
}

/// io_uring is absent inside a workload (ENOSYS, as under Docker): its requests would bypass
/// the seccomp filter. The same probe on the host gets a ring, so the check can fail.
#[tokio::test]
async fn io_uring_is_absent_inside_a_workload() {
    let Some(fixture) = fixture("io_uring_is_absent_inside_a_workload") else {
        return;
    };
    let probe = "import ctypes
libc = ctypes.CDLL(None, use_errno=True)
params = ctypes.create_string_buffer(120)
result = libc.syscall(425, 1, params)
print('ring' if result >= 0 else 'errno %d' % ctypes.get_errno(), flush=True)";
    let host = std::process::Command::new("python3")
        .args(["-c", probe])
        .output()
        .expect("python3 on the host");
    let on_host = String::from_utf8_lossy(&host.stdout).trim().to_string();
    let (status, logs) = fixture
        .run_to_exit(&shell("uring", &format!("python3 -c \"{probe}\"")))
        .await;
    assert!(status.success(), "{status:?} {logs:?}");
    assert_eq!(lines(&logs), ["errno 38"], "inside the workload");
    if on_host != "ring" {
        eprintln!("note: the host itself refuses io_uring ({on_host}); the probe cannot tell the filter from the kernel here");
    }
}
