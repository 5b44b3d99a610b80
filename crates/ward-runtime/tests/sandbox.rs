//! The isolation a process workload gets, checked from inside real sandboxes: its own
//! processes only, the host filesystem read-only, no capabilities, Ward's data hidden, and
//! memory and process limits that hold. Needs root and crun or runc; says SKIP otherwise.

mod support;

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
    let bound = tempfile::tempdir().expect("host dir");
    let mut spec = shell(
        "fs",
        "for dir in /etc /usr /root /var /home /opt /run/.. /tmp /data /readonly /tmp/bound; do \
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
