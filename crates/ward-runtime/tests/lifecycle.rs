//! The life of an instance through the `Driver`: exit codes and signals, stop with a grace
//! period, logs, exec, health probes, and monitors that outlive the runtime object that
//! started them ("daemon restarts"). Needs root and crun or runc; says SKIP otherwise.

mod support;

use std::io::Read;
use std::time::{Duration, Instant, SystemTime};

use support::*;
use ward_runtime::{
    AttachOutcome, Driver, ExecRequest, InstanceKey, LogStream, Runtime, RuntimeConfig,
};
use ward_spec::{HealthProbe, NetworkMode, PortMapping, Protocol, VolumeMount};

const LIMIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn exit_codes_and_signals_are_reported() {
    let Some(fixture) = fixture("exit_codes_and_signals_are_reported") else {
        return;
    };
    let (status, _) = fixture.run_to_exit(&shell("exit-seven", "exit 7")).await;
    assert_eq!(
        (status.exit_code, status.signal, status.oom_killed),
        (Some(7), None, false)
    );
    let (status, _) = fixture.run_to_exit(&spec("exit-zero", &["true"])).await;
    assert!(status.success(), "{status:?}");

    let key = fixture.key("killed");
    let handle = fixture
        .runtime
        .start(&key, &spec("killed", &["sleep", "100"]))
        .await
        .expect("start");
    // `sleep` has no SIGTERM handler, and a namespace's init ignores signals it does not
    // handle: only the SIGKILL after the (zero) grace period ends it.
    let status = fixture.kill(&handle).await;
    assert_eq!((status.exit_code, status.signal), (None, Some(9)));
}

#[tokio::test]
async fn missing_programs_fail_the_start_with_the_runtime_message() {
    let Some(fixture) = fixture("missing_programs_fail_the_start_with_the_runtime_message") else {
        return;
    };
    let key = fixture.key("missing");
    let error = fixture
        .runtime
        .start(&key, &spec("missing", &["/no/such/program"]))
        .await
        .expect_err("start fails");
    let message = error.to_string();
    assert!(message.contains("/no/such/program"), "{message}");
    assert_eq!(
        fixture.runtime.attach(&key).expect("attach"),
        AttachOutcome::NotFound
    );
}

#[tokio::test]
async fn stop_sends_sigterm_then_sigkill_after_the_grace_period() {
    let Some(fixture) = fixture("stop_sends_sigterm_then_sigkill_after_the_grace_period") else {
        return;
    };
    let ready = |key: &InstanceKey| fixture.stdout(key).iter().any(|line| line == "ready");

    let key = fixture.key("stubborn");
    let stubborn = shell(
        "stubborn",
        "trap 'echo not leaving' TERM; echo ready; while :; do sleep 0.05; done",
    );
    let handle = fixture.runtime.start(&key, &stubborn).await.expect("start");
    wait_for("the workload to trap SIGTERM", LIMIT, || {
        ready(&key).then_some(())
    })
    .await;
    let started = Instant::now();
    fixture
        .runtime
        .stop(&handle, Duration::from_millis(1500))
        .await
        .expect("stop");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1500),
        "stop returned after {took:?}, before the grace period ended"
    );
    assert!(took < Duration::from_secs(6), "stop took {took:?}");
    let status = fixture.runtime.wait(&handle).await.expect("wait");
    assert_eq!(status.signal, Some(9), "{status:?}");

    // No handler at all (`trap '' TERM` ignores the signal): the grace period would change
    // nothing, so stop kills at once.
    let key = fixture.key("deaf");
    let deaf = shell(
        "deaf",
        "trap '' TERM; echo ready; while :; do sleep 0.05; done",
    );
    let handle = fixture.runtime.start(&key, &deaf).await.expect("start");
    wait_for("the workload to ignore SIGTERM", LIMIT, || {
        ready(&key).then_some(())
    })
    .await;
    let started = Instant::now();
    fixture
        .runtime
        .stop(&handle, Duration::from_secs(30))
        .await
        .expect("stop");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stop of a workload without a SIGTERM handler took {:?}",
        started.elapsed()
    );
    let status = fixture.runtime.wait(&handle).await.expect("wait");
    assert_eq!(status.signal, Some(9), "{status:?}");

    let key = fixture.key("polite");
    let polite = shell(
        "polite",
        "trap 'echo bye; exit 3' TERM; echo ready; while :; do sleep 0.05; done",
    );
    let handle = fixture.runtime.start(&key, &polite).await.expect("start");
    wait_for("the workload to trap SIGTERM", LIMIT, || {
        ready(&key).then_some(())
    })
    .await;
    let started = Instant::now();
    fixture
        .runtime
        .stop(&handle, Duration::from_secs(30))
        .await
        .expect("stop");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stop took {:?}",
        started.elapsed()
    );
    let status = fixture.runtime.wait(&handle).await.expect("wait");
    assert_eq!((status.exit_code, status.signal), (Some(3), None));
    assert_eq!(fixture.stdout(&key).last().map(String::as_str), Some("bye"));
}

#[tokio::test]
async fn logs_keep_streams_times_and_filter_by_tail_and_since() {
    let Some(fixture) = fixture("logs_keep_streams_times_and_filter_by_tail_and_since") else {
        return;
    };
    let before = SystemTime::now();
    let script = "echo out-1; echo err-1 >&2; echo out-2; printf 'no newline'";
    let (status, logs) = fixture.run_to_exit(&shell("logs", script)).await;
    assert!(status.success());
    let seen: Vec<(LogStream, &str)> = logs
        .iter()
        .map(|line| (line.stream, line.text.as_str()))
        .collect();
    assert_eq!(seen.len(), 4, "{seen:?}");
    for expected in [
        (LogStream::Stdout, "out-1"),
        (LogStream::Stderr, "err-1"),
        (LogStream::Stdout, "out-2"),
        (LogStream::Stdout, "no newline"),
    ] {
        assert!(
            seen.contains(&expected),
            "{expected:?} missing from {seen:?}"
        );
    }
    let stdout: Vec<&str> = seen
        .iter()
        .filter(|(stream, _)| *stream == LogStream::Stdout)
        .map(|(_, text)| *text)
        .collect();
    assert_eq!(
        stdout,
        ["out-1", "out-2", "no newline"],
        "stdout keeps its order"
    );
    assert!(logs
        .iter()
        .all(|line| line.time >= before && line.time <= SystemTime::now()));
    assert!(
        logs.windows(2).all(|pair| pair[0].time <= pair[1].time),
        "lines are oldest first"
    );

    let key = fixture.key("logs");
    // The two streams are separate pipes, so only each stream's own order is kept.
    let tail = fixture
        .runtime
        .read_logs(&key, Some(2), None)
        .expect("tail");
    assert_eq!(tail, logs[2..]);
    let since = fixture
        .runtime
        .read_logs(&key, None, Some(SystemTime::now()))
        .expect("since now");
    assert!(since.is_empty(), "{since:?}");
    let since_start = fixture
        .runtime
        .read_logs(&key, None, Some(logs[1].time))
        .expect("since");
    assert_eq!(since_start.len(), 3);

    let location = fixture.runtime.log_location(&key);
    let file = std::fs::read_to_string(&location.path).expect("log file");
    let first = file.lines().next().expect("a line");
    let mut fields = first.splitn(4, ' ');
    let time = fields.next().expect("time");
    assert!(
        humantime::parse_rfc3339(time).is_ok() && time.ends_with('Z') && time.len() == 30,
        "CRI time {time:?}"
    );
    assert!(matches!(fields.next(), Some("stdout" | "stderr")));
    assert_eq!(fields.next(), Some("F"));
}

#[tokio::test]
async fn monitor_outlives_the_runtime_and_a_new_runtime_attaches() {
    let Some(fixture) = fixture("monitor_outlives_the_runtime_and_a_new_runtime_attaches") else {
        return;
    };
    let key = fixture.key("survivor");
    let mut survivor = shell(
        "survivor",
        "echo first; while [ ! -e /signal/go ]; do sleep 0.02; done; echo second; sleep 100",
    );
    survivor.volumes = vec![VolumeMount {
        source: "signal".into(),
        target: "/signal".into(),
        read_only: true,
    }];

    let first_runtime = Runtime::new(RuntimeConfig {
        data_dir: fixture.data_dir().to_path_buf(),
        ward_executable: monitor_executable(),
        oci_runtime: Some(fixture.runtime.info().oci_runtime_path),
        ..RuntimeConfig::new(Default::default(), Default::default())
    })
    .expect("runtime");
    let handle = first_runtime.start(&key, &survivor).await.expect("start");
    wait_for("the first line", LIMIT, || {
        fixture
            .stdout(&key)
            .contains(&"first".to_string())
            .then_some(())
    })
    .await;
    drop(first_runtime);

    // While no runtime object exists, the workload prints again.
    let volume = fixture
        .data_dir()
        .join("volumes")
        .join(&fixture.project)
        .join("signal");
    std::fs::write(volume.join("go"), "").expect("signal the workload");

    let second_runtime = Runtime::new(RuntimeConfig {
        data_dir: fixture.data_dir().to_path_buf(),
        ward_executable: monitor_executable(),
        oci_runtime: Some(fixture.runtime.info().oci_runtime_path),
        ..RuntimeConfig::new(Default::default(), Default::default())
    })
    .expect("runtime");
    match second_runtime.attach(&key).expect("attach") {
        AttachOutcome::Running(found) => {
            assert_eq!(
                (found.pid, found.monitor_pid, found.started_at),
                (handle.pid, handle.monitor_pid, handle.started_at)
            )
        }
        other => panic!("attach found {other:?}"),
    }
    wait_for("the line printed without a runtime", LIMIT, || {
        let lines = second_runtime.read_logs(&key, None, None).ok()?;
        lines.iter().any(|line| line.text == "second").then_some(())
    })
    .await;

    second_runtime
        .stop(&handle, Duration::ZERO)
        .await
        .expect("stop");
    let status = second_runtime.wait(&handle).await.expect("wait");
    assert_eq!(status.signal, Some(9));
    assert_eq!(
        second_runtime.attach(&key).expect("attach"),
        AttachOutcome::Exited(status)
    );
    second_runtime.remove(&key).await.expect("remove");
    assert_eq!(
        second_runtime.attach(&key).expect("attach"),
        AttachOutcome::NotFound
    );
}

/// The "daemon" of [`workload_survives_its_daemon_killed_with_sigkill`]: this test binary run
/// again with only this test, told its data directory through the environment.
#[tokio::test]
#[ignore = "run by workload_survives_its_daemon_killed_with_sigkill as the daemon it kills"]
async fn daemon_that_gets_killed() {
    let (Some(data_dir), Ok(project)) = (
        std::env::var_os("WARD_TEST_DAEMON_DATA"),
        std::env::var("WARD_TEST_DAEMON_PROJECT"),
    ) else {
        return;
    };
    let runtime = Runtime::new(RuntimeConfig {
        data_dir: data_dir.into(),
        ward_executable: monitor_executable(),
        oci_runtime: std::env::var_os("WARD_TEST_OCI_RUNTIME").map(Into::into),
        ..RuntimeConfig::new(Default::default(), Default::default())
    })
    .expect("runtime");
    let key = InstanceKey::new(&project, "killed-daemon", 0);
    let handle = runtime
        .start(
            &key,
            &shell("killed-daemon", "while :; do echo tick; sleep 0.02; done"),
        )
        .await
        .expect("start");
    println!("started {} {}", handle.pid, handle.monitor_pid);
    std::future::pending::<()>().await;
}

#[tokio::test]
async fn workload_survives_its_daemon_killed_with_sigkill() {
    let Some(fixture) = fixture("workload_survives_its_daemon_killed_with_sigkill") else {
        return;
    };
    let key = fixture.key("killed-daemon");
    let mut daemon = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "daemon_that_gets_killed",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("WARD_TEST_DAEMON_DATA", fixture.data_dir())
        .env("WARD_TEST_DAEMON_PROJECT", &fixture.project)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the daemon");
    let stdout = daemon.stdout.take().expect("daemon stdout");
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // libtest may print the test's name on the same line first.
        let started = std::io::BufRead::lines(std::io::BufReader::new(stdout))
            .map_while(Result::ok)
            .find_map(|line| {
                line.split_once("started ")
                    .map(|(_, pids)| pids.to_string())
            });
        let _ = sender.send(started);
    });
    let started = receiver.recv_timeout(LIMIT).ok().flatten();
    let Some(started) = started else {
        let _ = daemon.kill();
        let _ = daemon.wait();
        panic!("the daemon did not report a start");
    };
    let (pid, monitor_pid) = started.split_once(' ').expect("two pids");
    let (pid, monitor_pid): (u32, u32) = (
        pid.parse().expect("pid"),
        monitor_pid.trim().parse().expect("pid"),
    );
    daemon.kill().expect("SIGKILL the daemon");
    daemon.wait().expect("reap the daemon");

    let handle = match fixture.runtime.attach(&key).expect("attach") {
        AttachOutcome::Running(handle) => handle,
        other => panic!("after the daemon died, attach found {other:?}"),
    };
    assert_eq!((handle.pid, handle.monitor_pid), (pid, monitor_pid));
    let ticks = fixture.stdout(&key).len();
    wait_for("more output after the daemon died", LIMIT, || {
        (fixture.stdout(&key).len() > ticks + 5).then_some(())
    })
    .await;
    // The monitor is no child of this process: waiting goes by its pidfd and recorded start time.
    let status = fixture.kill(&handle).await;
    assert_eq!(status.signal, Some(9), "{status:?}");
}

#[tokio::test]
async fn other_kinds_are_refused_until_their_drivers_exist() {
    let Some(fixture) = fixture("other_kinds_are_refused_until_their_drivers_exist") else {
        return;
    };
    let key = fixture.key("vm");
    let mut vm = spec("vm", &["true"]);
    vm.kind = ward_spec::WorkloadKind::Vm;
    let error = fixture
        .runtime
        .start(&key, &vm)
        .await
        .expect_err("no vm driver");
    assert!(
        matches!(
            error,
            ward_runtime::RuntimeError::UnsupportedKind { kind: "vm", .. }
        ),
        "{error}"
    );
}

#[tokio::test]
async fn a_killed_monitor_is_not_mistaken_for_a_running_instance() {
    let Some(fixture) = fixture("a_killed_monitor_is_not_mistaken_for_a_running_instance") else {
        return;
    };
    let key = fixture.key("orphan");
    let handle = fixture
        .runtime
        .start(&key, &spec("orphan", &["sleep", "100"]))
        .await
        .expect("start");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(handle.monitor_pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the monitor");
    let status = fixture.runtime.wait(&handle).await.expect("wait");
    assert_eq!(
        (status.exit_code, status.signal),
        (None, None),
        "an exit nobody recorded"
    );
    wait_for("the orphaned workload to be killed", LIMIT, || {
        (!std::path::Path::new(&format!("/proc/{}", handle.pid)).exists()).then_some(())
    })
    .await;
}

#[tokio::test]
async fn exec_runs_commands_with_pipes_and_with_a_terminal() {
    let Some(fixture) = fixture("exec_runs_commands_with_pipes_and_with_a_terminal") else {
        return;
    };
    let key = fixture.key("exec");
    let mut target = spec("exec", &["sleep", "100"]);
    target.env.insert("GREETING".into(), "hello".into());
    target.workdir = Some("/tmp".into());
    let handle = fixture.runtime.start(&key, &target).await.expect("start");

    let command = [
        "sh",
        "-c",
        "echo $GREETING; pwd; cat /proc/self/status | grep NoNewPrivs; echo oops >&2; exit 4",
    ];
    let session = fixture
        .runtime
        .exec(&handle, &request(&command, false))
        .await
        .expect("exec");
    assert!(!session.terminal);
    let (exit, stdout, stderr) = collect(session).await;
    assert_eq!(exit.exit_code, Some(4));
    assert_eq!(stdout, "hello\n/tmp\nNoNewPrivs:\t1\n");
    assert_eq!(stderr, "oops\n");

    // The variables, directory and user of one command change for it alone.
    let changed = ExecRequest {
        env: vec!["GREETING=changed".into(), "EXTRA=x=y".into()],
        workdir: Some("/".into()),
        user: Some("1000:1001".into()),
        ..request(
            &["sh", "-c", "echo $GREETING $EXTRA; pwd; id -u; id -g"],
            false,
        )
    };
    let session = fixture.runtime.exec(&handle, &changed).await.expect("exec");
    let (exit, stdout, stderr) = collect(session).await;
    assert_eq!(exit.exit_code, Some(0), "{stderr}");
    assert_eq!(stdout, "changed x=y\n/\n1000\n1001\n");
    let unknown = ExecRequest {
        user: Some("no-such-user".into()),
        ..request(&["true"], false)
    };
    let error = fixture
        .runtime
        .exec(&handle, &unknown)
        .await
        .expect_err("unknown user");
    assert!(
        error.to_string().contains("no user no-such-user"),
        "{error}"
    );

    let command = ["sh", "-c", "tty; echo from-the-terminal; echo TERM=$TERM"];
    let session = fixture
        .runtime
        .exec(&handle, &request(&command, true))
        .await
        .expect("exec with tty");
    assert!(session.terminal);
    let (exit, output, _) = collect(session).await;
    assert_eq!(exit.exit_code, Some(0), "{exit:?}");
    assert!(output.contains("/dev/pts/"), "tty printed {output:?}");
    assert!(output.contains("from-the-terminal"), "{output:?}");
    assert!(
        output.contains("TERM=xterm"),
        "a terminal without TERM: {output:?}"
    );

    // A command that would run for long ends when killed.
    let session = fixture
        .runtime
        .exec(&handle, &request(&["sleep", "600"], false))
        .await
        .expect("exec sleep");
    session.control.kill();
    let exit = tokio::time::timeout(LIMIT, session.exit)
        .await
        .expect("a killed exec ends")
        .expect("exec status");
    assert_eq!(exit.signal, Some(9), "{exit:?}");

    fixture
        .runtime
        .stop(&handle, Duration::ZERO)
        .await
        .expect("stop");
    let error = fixture
        .runtime
        .exec(&handle, &request(&["true"], false))
        .await
        .expect_err("no exec after stop");
    assert!(
        matches!(error, ward_runtime::RuntimeError::NotRunning { .. }),
        "{error}"
    );
}

#[tokio::test]
async fn probes_run_inside_the_instance_network() {
    let Some(fixture) = fixture("probes_run_inside_the_instance_network") else {
        return;
    };
    let key = fixture.key("web");
    let server = spec(
        "web",
        &[
            "python3",
            "-m",
            "http.server",
            "8000",
            "--bind",
            "127.0.0.1",
            "--directory",
            "/usr/share",
        ],
    );
    let handle = fixture.runtime.start(&key, &server).await.expect("start");
    let timeout = Duration::from_secs(2);
    let deadline = Instant::now() + LIMIT;
    while let Err(error) = fixture
        .runtime
        .probe(&handle, &HealthProbe::Tcp { port: 8000 }, timeout)
        .await
    {
        assert!(
            Instant::now() < deadline,
            "the server does not listen: {error}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let http = HealthProbe::Http {
        port: 8000,
        path: "/".into(),
    };
    fixture
        .runtime
        .probe(&handle, &http, timeout)
        .await
        .expect("http probe");
    let missing = HealthProbe::Http {
        port: 8000,
        path: "/no-such-page".into(),
    };
    let error = fixture
        .runtime
        .probe(&handle, &missing, timeout)
        .await
        .expect_err("404 fails");
    assert!(error.contains("404"), "{error}");
    let closed = fixture
        .runtime
        .probe(&handle, &HealthProbe::Tcp { port: 8001 }, timeout)
        .await
        .expect_err("closed port");
    assert!(closed.contains("8001"), "{closed}");
    // The host's own loopback is another network: nothing listens on 8000 there for this test.
    let exec_ok = HealthProbe::Exec {
        command: vec!["sh".into(), "-c".into(), "test -d /proc/1".into()],
    };
    fixture
        .runtime
        .probe(&handle, &exec_ok, timeout)
        .await
        .expect("exec probe");
    let exec_fails = HealthProbe::Exec {
        command: vec!["false".into()],
    };
    assert!(fixture
        .runtime
        .probe(&handle, &exec_fails, timeout)
        .await
        .is_err());
    let exec_hangs = HealthProbe::Exec {
        command: vec!["sleep".into(), "10".into()],
    };
    let started = Instant::now();
    assert!(fixture
        .runtime
        .probe(&handle, &exec_hangs, Duration::from_millis(300))
        .await
        .is_err());
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn host_network_probes_connect_on_the_host() {
    let Some(fixture) = fixture("host_network_probes_connect_on_the_host") else {
        return;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("free port")
        .local_addr()
        .expect("address")
        .port();
    let key = fixture.key("hostweb");
    let mut server = spec(
        "hostweb",
        &[
            "python3",
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ],
    );
    server.network = NetworkMode::Host;
    server.workdir = Some("/usr/share".into());
    let handle = fixture.runtime.start(&key, &server).await.expect("start");
    wait_for("the server to listen on the host", LIMIT, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    })
    .await;
    let http = HealthProbe::Http {
        port,
        path: "/".into(),
    };
    fixture
        .runtime
        .probe(&handle, &http, Duration::from_secs(2))
        .await
        .expect("http probe on the host network");
}

#[tokio::test]
async fn bridge_network_gets_an_address_and_publishes_ports() {
    let Some(fixture) = fixture("bridge_network_gets_an_address_and_publishes_ports") else {
        return;
    };
    if !tools_installed(&["ip", "iptables"]) {
        eprintln!(
            "SKIP bridge_network_gets_an_address_and_publishes_ports: needs iproute2 and iptables"
        );
        return;
    }
    let host_port = std::net::TcpListener::bind("0.0.0.0:0")
        .expect("free port")
        .local_addr()
        .expect("address")
        .port();
    let key = fixture.key("bridged");
    let mut server = spec(
        "bridged",
        &[
            "python3",
            "-m",
            "http.server",
            "8000",
            "--directory",
            "/usr/share",
        ],
    );
    server.network = NetworkMode::Bridge;
    server.ports = vec![PortMapping {
        host: host_port,
        port: 8000,
        protocol: Protocol::Tcp,
        host_ip: None,
    }];
    let handle = fixture.runtime.start(&key, &server).await.expect("start");
    let address = handle.address.expect("an address on the bridge");
    assert_eq!(address.octets()[..2], [10, 88], "{address}");

    let http = HealthProbe::Http {
        port: 8000,
        path: "/".into(),
    };
    let deadline = Instant::now() + LIMIT;
    while let Err(error) = fixture
        .runtime
        .probe(&handle, &http, Duration::from_secs(2))
        .await
    {
        assert!(
            Instant::now() < deadline,
            "the server does not answer: {error}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for target in [
        std::net::SocketAddr::from(([127, 0, 0, 1], host_port)),
        std::net::SocketAddr::from((address, 8000)),
    ] {
        let mut stream =
            std::net::TcpStream::connect_timeout(&target, Duration::from_secs(2)).expect("connect");
        std::io::Write::write_all(&mut stream, b"GET / HTTP/1.0\r\n\r\n").expect("request");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("response");
        assert!(
            response.starts_with("HTTP/1.0 200"),
            "{target} answered {response:?}"
        );
    }

    fixture.runtime.remove(&key).await.expect("remove");
    let refused = std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], host_port)),
        Duration::from_secs(1),
    );
    assert!(
        refused.is_err(),
        "the published port still answers after remove"
    );
}

fn tools_installed(tools: &[&str]) -> bool {
    tools.iter().all(|tool| {
        std::process::Command::new(tool)
            .arg("-V")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok()
    })
}

#[tokio::test]
async fn monitor_stays_small() {
    let Some(fixture) = fixture("monitor_stays_small") else {
        return;
    };
    let key = fixture.key("small");
    let handle = fixture
        .runtime
        .start(
            &key,
            &shell("small", "while :; do echo tick; sleep 0.01; done"),
        )
        .await
        .expect("start");
    wait_for("some output", LIMIT, || {
        (fixture.stdout(&key).len() > 20).then_some(())
    })
    .await;
    let status = std::fs::read_to_string(format!("/proc/{}/status", handle.monitor_pid))
        .expect("monitor status");
    let kib = |field: &str| -> u64 {
        status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|value| value.split_whitespace().next())
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("{field} in {status}"))
    };
    let (rss, anonymous, file) = (kib("VmRSS:"), kib("RssAnon:"), kib("RssFile:"));
    eprintln!("monitor VmRSS: {rss} KiB (anonymous {anonymous} KiB, file {file} KiB)");
    // What each monitor adds is its anonymous memory; its file pages (program text and the C
    // library) are shared by every monitor, and vary by 64 KiB steps with fault-around.
    assert!(
        anonymous <= 512,
        "the monitor holds {anonymous} KiB of its own"
    );
    assert!(rss <= 2560, "the monitor uses {rss} KiB");
    let mut stderr = String::new();
    let mut file = std::fs::File::open(
        fixture
            .runtime
            .run_dir(&key)
            .expect("dir")
            .join("monitor.log"),
    )
    .expect("monitor.log");
    file.read_to_string(&mut stderr).expect("read");
    assert_eq!(stderr, "", "the monitor complained");
}

#[tokio::test]
async fn instance_keys_cannot_escape_the_data_directory() {
    let Some(fixture) = fixture("instance_keys_cannot_escape_the_data_directory") else {
        return;
    };
    let key = InstanceKey::new("..", "x", 0);
    assert!(fixture.runtime.attach(&key).is_err());
    let key = InstanceKey::new("p", "a/b", 0);
    assert!(fixture
        .runtime
        .start(&key, &spec("x", &["true"]))
        .await
        .is_err());
}

/// The monitor of an instance is a spare started ahead of time: each start hands the next
/// instance to a waiting spare. It shows its instance on the command line, as a monitor
/// started for the instance would, and a spare nobody took exits with its runtime.
#[tokio::test]
async fn spare_monitors_take_instances_and_leave_with_their_runtime() {
    let Some(fixture) = fixture("spare_monitors_take_instances_and_leave_with_their_runtime")
    else {
        return;
    };
    let spares_before = spare_monitors();
    assert!(
        !spares_before.is_empty(),
        "the runtime started no spare monitor"
    );
    let key = fixture.key("spared");
    let handle = fixture
        .runtime
        .start(&key, &spec("spared", &["sleep", "100"]))
        .await
        .expect("start");
    assert!(
        spares_before.contains(&handle.monitor_pid),
        "monitor {} was not one of the spares {spares_before:?}",
        handle.monitor_pid
    );
    let command_line = std::fs::read(format!("/proc/{}/cmdline", handle.monitor_pid))
        .expect("read the monitor's command line");
    let arguments: Vec<String> = command_line
        .split(|byte| *byte == 0)
        .filter(|argument| !argument.is_empty())
        .map(|argument| String::from_utf8_lossy(argument).into_owned())
        .collect();
    let instance_dir = fixture
        .data_dir()
        .canonicalize()
        .expect("data dir")
        .join("instances")
        .join(&fixture.project)
        .join("spared")
        .join("0");
    assert_eq!(
        arguments[1..],
        ["monitor".to_string(), instance_dir.display().to_string()],
        "{arguments:?}"
    );
    let next_spare = wait_for("a new spare monitor", LIMIT, || {
        spare_monitors()
            .into_iter()
            .find(|pid| !spares_before.contains(pid))
    })
    .await;

    fixture.kill(&handle).await;
    drop(fixture);
    wait_for("the spare to exit with its runtime", LIMIT, || {
        (!spare_monitors().contains(&next_spare)).then_some(())
    })
    .await;
}

/// This process's spare monitors that are still waiting (zombies excluded).
fn spare_monitors() -> Vec<u32> {
    let own = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .expect("read /proc")
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            let Some((_, fields)) = stat.rsplit_once(')') else {
                return false;
            };
            let fields: Vec<&str> = fields.split_whitespace().collect();
            let waiting = fields.first() != Some(&"Z") && fields.get(1) == Some(&own.as_str());
            waiting
                && std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|line| {
                    line.split(|byte| *byte == 0)
                        .any(|argument| argument == b"--spare")
                })
        })
        .collect()
}

#[tokio::test]
async fn a_late_wait_leaves_a_successor_of_the_same_name_alone() {
    let Some(fixture) = fixture("a_late_wait_leaves_a_successor_of_the_same_name_alone") else {
        return;
    };
    let key = fixture.key("reused");
    let first = fixture
        .runtime
        .start(&key, &spec("reused", &["true"]))
        .await
        .expect("start");
    // `ward rm -f` then `ward run` with the same name: the first instance is removed, and its
    // directory made again for the successor, before anyone waited for the first's exit.
    // The wait must neither take the successor's directory for a monitor that died without
    // a record nor write into it.
    fixture.runtime.remove(&key).await.expect("remove");
    let dir = fixture.runtime.instance_dir(&key).expect("instance dir");
    std::fs::create_dir_all(&dir).expect("the successor's directory");
    let run_dir = fixture.runtime.run_dir(&key).expect("run dir");
    std::fs::create_dir_all(&run_dir).expect("the successor's run directory");
    let status = fixture.runtime.wait(&first).await.expect("wait");
    assert_eq!(
        (status.exit_code, status.signal),
        (None, Some(9)),
        "{status:?}"
    );
    assert!(
        !dir.join("exit.json").exists(),
        "the late wait wrote into its successor's directory"
    );
    let second = fixture
        .runtime
        .start(&key, &spec("reused", &["sleep", "100"]))
        .await
        .expect("start the successor");
    assert!(
        std::path::Path::new(&format!("/proc/{}", second.pid)).exists(),
        "the successor runs"
    );
    let status = fixture.kill(&second).await;
    assert_eq!(status.signal, Some(9));
}

#[tokio::test]
async fn workloads_start_with_default_signal_dispositions_and_no_blocked_signals() {
    let Some(fixture) =
        fixture("workloads_start_with_default_signal_dispositions_and_no_blocked_signals")
    else {
        return;
    };
    // The monitor blocks SIGHUP and ignores SIGPIPE for itself; neither may reach the workload,
    // whichever way the runtime treats what it inherits.
    let (status, logs) = fixture
        .run_to_exit(&shell(
            "signals",
            "exec grep -E '^Sig(Blk|Ign):' /proc/self/status",
        ))
        .await;
    assert!(status.success(), "{status:?}");
    let masks: Vec<(String, u64)> = logs
        .iter()
        .filter_map(|line| {
            let (name, value) = line.text.split_once(':')?;
            Some((
                name.to_string(),
                u64::from_str_radix(value.trim(), 16).ok()?,
            ))
        })
        .collect();
    assert_eq!(masks.len(), 2, "{logs:?}");
    for (name, mask) in masks {
        let sighup = 1 << (libc::SIGHUP - 1);
        let sigpipe = 1 << (libc::SIGPIPE - 1);
        assert_eq!(mask & (sighup | sigpipe), 0, "{name}: {mask:#x}");
        if name == "SigBlk" {
            assert_eq!(mask, 0, "blocked signals in the workload: {mask:#x}");
        }
    }
}

#[tokio::test]
async fn runtime_files_stay_in_memory_and_only_logs_and_exits_reach_the_data_directory() {
    let Some(fixture) = fixture("runtime_files_stay_in_memory") else {
        return;
    };
    let in_memory = |path: &std::path::Path| {
        nix::sys::statfs::statfs(path)
            .is_ok_and(|stats| stats.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC)
    };
    let key = fixture.key("quiet");
    let quiet = fixture
        .runtime
        .start(&key, &spec("quiet", &["sleep", "100"]))
        .await
        .expect("start");
    let run_dir = fixture.runtime.run_dir(&key).expect("run dir");
    let instance_dir = fixture.runtime.instance_dir(&key).expect("instance dir");
    for file in ["config.json", "monitor.json", "state.json", "container.pid"] {
        assert!(run_dir.join(file).exists(), "{file} is not in {run_dir:?}");
    }
    if in_memory(std::path::Path::new("/dev/shm")) {
        assert!(in_memory(&run_dir), "{run_dir:?} is on disk");
        let linked = fixture
            .data_dir()
            .join("run")
            .canonicalize()
            .expect("DATA/run");
        assert!(
            run_dir.starts_with(&linked),
            "DATA/run leads to {linked:?}, not above {run_dir:?}"
        );
    }
    assert!(
        !instance_dir.exists(),
        "a start that printed nothing made {instance_dir:?}"
    );
    fixture.kill(&quiet).await;
    assert!(
        instance_dir.join("exit.json").exists(),
        "the exit was not recorded in {instance_dir:?}"
    );

    let key = fixture.key("talker");
    let talker = fixture
        .runtime
        .start(&key, &shell("talker", "echo hello; exec sleep 100"))
        .await
        .expect("start");
    wait_for("the line in the log", LIMIT, || {
        (fixture.stdout(&key) == ["hello"]).then_some(())
    })
    .await;
    let instance_dir = fixture.runtime.instance_dir(&key).expect("instance dir");
    assert!(instance_dir.join("log").exists());
    assert!(!in_memory(&instance_dir), "logs must survive a reboot");
    fixture.kill(&talker).await;
    fixture.runtime.remove(&key).await.expect("remove");
    let run_dir = fixture.runtime.run_dir(&key).expect("run dir");
    assert!(
        !run_dir.exists() && !instance_dir.exists(),
        "remove left a directory"
    );
}

/// Everything an exec session printed, and how it ended: its exit first, then the output
/// that was still on its way.
async fn collect(
    mut session: ward_runtime::ExecSession,
) -> (ward_runtime::ExecExit, String, String) {
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let exit = tokio::time::timeout(LIMIT, async {
        loop {
            tokio::select! {
                exit = &mut session.exit => break exit,
                Some(piece) = session.output.recv() => match piece {
                    ward_runtime::ExecOutput::Stdout(data) => stdout.extend(data),
                    ward_runtime::ExecOutput::Stderr(data) => stderr.extend(data),
                },
            }
        }
    })
    .await
    .expect("exec ends")
    .expect("exec status");
    while let Ok(Some(piece)) =
        tokio::time::timeout(Duration::from_secs(2), session.output.recv()).await
    {
        match piece {
            ward_runtime::ExecOutput::Stdout(data) => stdout.extend(data),
            ward_runtime::ExecOutput::Stderr(data) => stderr.extend(data),
        }
    }
    (
        exit,
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// An exec of `command` that changes nothing else of the instance's process.
fn request(command: &[&str], tty: bool) -> ExecRequest {
    ExecRequest {
        command: command
            .iter()
            .map(|argument| argument.to_string())
            .collect(),
        tty,
        ..ExecRequest::default()
    }
}
