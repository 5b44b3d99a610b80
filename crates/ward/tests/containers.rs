//! Acceptance tests for images and `container` workloads, against a real `ward serve` and a
//! real registry (`docker-registry` on 127.0.0.1) holding images these tests build from
//! busybox-static: pulls (plain, multi-platform, authenticated, interrupted and resumed),
//! imports and exports, a corrupted store, and containers running from those images with their
//! config, ports, limits and exec, surviving a killed daemon.
//!
//! Tests that run containers need root and crun and print a `SKIP` line otherwise. Needs the
//! Debian packages `busybox-static`, `docker-registry`, `skopeo` and `umoci`.

mod common;

use common::free_port;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::images::{
    busybox_image, host_architecture, push, push_with_login, run_tool, skopeo,
    write_multi_platform_layout, Compression, ImageBuilder, Layer, Registry, ThrottledProxy,
};
use common::{
    assert_one_error_line, assert_success, sandbox_available, stderr_of, stdout_of, Daemon,
};
use serde_json::Value;

/// Long enough for a container to start, or a probe inside it to print its findings.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Docker's default capability set, as `CapEff` shows it.
const DOCKER_DEFAULT_CAPABILITIES: &str = "00000000a80425fb";

/// Builds `image` into an OCI layout and pushes it to `registry` as `repository:tag`; returns
/// the reference Ward pulls it by.
fn publish(image: &ImageBuilder, registry: &Registry, repository: &str, tag: &str) -> String {
    let layout = tempfile::tempdir().expect("layout directory");
    image.write_layout(layout.path(), tag);
    push(layout.path(), tag, registry, repository);
    format!("{}/{repository}:{tag}", registry.address)
}

/// `ward ARGS...`, which must succeed; returns stdout.
fn ward_ok(daemon: &Daemon, arguments: &[&str]) -> String {
    let output = daemon.ward(arguments);
    if !output.status.success() {
        daemon.fail(&format!(
            "ward {}: {}",
            arguments.join(" "),
            stderr_of(&output)
        ));
    }
    stdout_of(&output)
}

/// `ward run ARGS...`, which must succeed.
fn run_container(daemon: &Daemon, arguments: &[&str]) {
    let mut command = vec!["run"];
    command.extend_from_slice(arguments);
    ward_ok(daemon, &command);
}

/// `ward run --name NAME --network none --restart never --image IMAGE [-- COMMAND...]`.
fn run_once(daemon: &Daemon, name: &str, image: &str, command: &[&str]) {
    let mut arguments = vec![
        "--name",
        name,
        "--network",
        "none",
        "--restart",
        "never",
        "--image",
        image,
    ];
    if !command.is_empty() {
        arguments.push("--");
        arguments.extend_from_slice(command);
    }
    run_container(daemon, &arguments);
}

/// `ward inspect NAME -o json`.
fn inspect(daemon: &Daemon, name: &str) -> Value {
    serde_json::from_str(&ward_ok(daemon, &["inspect", name, "-o", "json"]))
        .expect("inspect prints JSON")
}

/// `ward image inspect IMAGE` as JSON.
fn inspect_image(daemon: &Daemon, reference: &str) -> Value {
    serde_json::from_str(&ward_ok(daemon, &["image", "inspect", reference]))
        .expect("image inspect prints JSON")
}

/// Waits until the logs of `name` contain `marker`; returns them.
fn wait_for_logs(daemon: &Daemon, name: &str, marker: &str) -> String {
    daemon.wait_for(
        &format!("{marker:?} in the logs of {name}"),
        START_TIMEOUT,
        || {
            let output = daemon.ward(&["logs", name]);
            let text = stdout_of(&output) + &stderr_of(&output);
            text.contains(marker).then_some(text)
        },
    )
}

/// The value after `key ` on the line that starts with it.
fn field<'a>(report: &'a str, key: &str) -> &'a str {
    report
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{key} ")))
        .unwrap_or_else(|| panic!("no {key:?} line in:\n{report}"))
        .trim()
}

/// A restart keeps the container's address; the host's neighbour entry for it, left from the
/// run before (or from anything else), must not cut the new run off: 20 restarts, each with a
/// stale entry planted on `ward0` and, where it is still there, on the container's own link,
/// each answering on its published port within 1 s of `ward restart` returning.
#[test]
fn a_restarted_container_answers_at_once_despite_a_stale_neighbour_entry() {
    if !sandbox_available("a_restarted_container_answers_at_once_despite_a_stale_neighbour_entry") {
        return;
    }
    let _turn = bridge_turn();
    let registry = Registry::start();
    let reference = publish(&busybox_image(), &registry, "ward/restarted", "1");
    let daemon = Daemon::start();
    let port = free_port();
    let publish_flag = format!("{port}:8080");
    run_web_server(&daemon, "ctr-again", &publish_flag, &reference);
    daemon.wait_for("the web server", START_TIMEOUT, || {
        http_body(port, "/index.html")
    });
    for round in 0..20 {
        let document = inspect(&daemon, "ctr-again");
        let address = document["status"]["instances"][0]["address"]
            .as_str()
            .unwrap_or_else(|| panic!("no address in {document}"))
            .to_string();
        let stale = std::process::Command::new("ip")
            .args([
                "neigh",
                "replace",
                &address,
                "lladdr",
                "02:00:5e:00:53:01",
                "dev",
                "ward0",
            ])
            .args(["nud", "reachable"])
            .status()
            .expect("run ip");
        assert!(stale.success(), "cannot plant the stale neighbour entry");
        ward_ok(&daemon, &["restart", "ctr-again"]);
        let restarted = Instant::now();
        let answered = loop {
            if http_body(port, "/index.html").is_some() {
                break true;
            }
            if restarted.elapsed() > Duration::from_secs(1) {
                break false;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(
            answered,
            "restart {round}: port {port} did not answer within 1 s; {}",
            inspect(&daemon, "ctr-again")
        );
        let after = inspect(&daemon, "ctr-again");
        assert_eq!(after["status"]["instances"][0]["address"], address.as_str());
    }
    let _ = std::process::Command::new("ip")
        .args(["neigh", "flush", "dev", "ward0"])
        .status();
}

/// What can be checked before a workload is stored is checked, and a refusal stores nothing:
/// an image the registry does not have, a host path that is not there, a program the host
/// lacks; the corrected command then succeeds. A start that fails after that says how to
/// run it again under the same name, and `--replace` does.
#[test]
fn failed_runs_and_applies_leave_nothing_behind() {
    if !sandbox_available("failed_runs_and_applies_leave_nothing_behind") {
        return;
    }
    let registry = Registry::start();
    let reference = publish(&busybox_image(), &registry, "ward/present", "1");
    let daemon = Daemon::start();
    let directory = tempfile::tempdir().expect("spec directory");
    let missing = format!("{}/ward/absent:1", registry.address);
    let spec = directory.path().join("web.yaml");
    std::fs::write(
        &spec,
        format!("name: web\nimage: {missing}\ncommand: [sleep, \"600\"]\n"),
    )
    .expect("write the spec");
    let refused = daemon.ward(&["apply", "-f", spec.to_str().expect("utf-8")]);
    let line = assert_one_error_line(&refused, &format!("has no image {missing}"));
    assert!(line.contains("manifest unknown"), "{line}");
    let nothing = |daemon: &Daemon| ward_ok(daemon, &["ps", "-a", "-o", "json"]).trim() == "[]";
    assert!(nothing(&daemon));
    std::fs::write(
        &spec,
        format!("name: web\nimage: {reference}\ncommand: [sleep, \"600\"]\n"),
    )
    .expect("write the spec");
    assert_eq!(
        ward_ok(&daemon, &["apply", "-f", spec.to_str().expect("utf-8")]),
        "web created\n"
    );
    assert_eq!(inspect(&daemon, "web")["status"]["state"], "running");

    let refused = daemon.ward(&[
        "run",
        "--name",
        "bound",
        "-v",
        "/nonexistent-ward-source:/data",
        "--",
        "sleep",
        "600",
    ]);
    assert_one_error_line(
        &refused,
        "volumes[0]: host path /nonexistent-ward-source cannot be used",
    );
    let refused = daemon.ward(&["run", "--name", "bound", "--", "no-such-program-here"]);
    assert_one_error_line(
        &refused,
        "command: no program no-such-program-here on this host",
    );
    let source = tempfile::tempdir().expect("a bind source");
    let volume = format!("{}:/data", source.path().display());
    ward_ok(
        &daemon,
        &[
            "run", "--name", "bound", "-v", &volume, "--", "sleep", "600",
        ],
    );

    // A container whose program is not in its image fails at its start, for good; the same
    // name then says how to replace it, and --replace does.
    let failed = daemon.ward(&[
        "run", "--name", "typo", "--image", &reference, "--", "slep", "1",
    ]);
    let line = assert_one_error_line(&failed, "workload typo failed to start");
    assert!(line.contains("--replace"), "{line}");
    let taken = daemon.ward(&[
        "run", "--name", "typo", "--image", &reference, "--", "sleep", "600",
    ]);
    assert_one_error_line(&taken, "ward run --replace");
    ward_ok(
        &daemon,
        &[
            "run",
            "--replace",
            "--name",
            "typo",
            "--image",
            &reference,
            "--",
            "sleep",
            "600",
        ],
    );
    assert_eq!(inspect(&daemon, "typo")["status"]["state"], "running");
    ward_ok(&daemon, &["rm", "-f", "web", "bound", "typo"]);
    assert!(nothing(&daemon));
}

/// `ward run IMAGE ARGS` runs the image as `docker run` does; `--rm` stays in the foreground
/// with the output, exits with the workload's code and leaves nothing; a host program still
/// runs after `--`, and a word that is both says which one was taken.
#[test]
fn run_takes_the_image_first_as_docker_does_and_rm_leaves_nothing() {
    if !sandbox_available("run_takes_the_image_first_as_docker_does_and_rm_leaves_nothing") {
        return;
    }
    let registry = Registry::start();
    let reference = publish(&busybox_image(), &registry, "ward/positional", "1");
    let daemon = Daemon::start();
    let name_of = |output: &str| output.trim().to_string();
    let name = name_of(&ward_ok(
        &daemon,
        &["run", "--network", "none", &reference, "sleep", "600"],
    ));
    assert!(name.starts_with("positional-"), "{name}");
    let document = inspect(&daemon, &name);
    assert_eq!(document["kind"], "container");
    assert_eq!(document["image"], reference.as_str());
    assert_eq!(document["command"], serde_json::json!(["sleep", "600"]));
    ward_ok(&daemon, &["rm", "-f", &name]);

    let foreground = daemon.ward(&[
        "run",
        "--rm",
        "--name",
        "once",
        "--network",
        "none",
        &reference,
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(
        foreground.status.code(),
        Some(3),
        "{}",
        stderr_of(&foreground)
    );
    assert_eq!(stdout_of(&foreground), "out\n");
    assert!(
        stderr_of(&foreground).contains("err"),
        "{}",
        stderr_of(&foreground)
    );
    assert_eq!(
        ward_ok(&daemon, &["ps", "-a", "-o", "json"]).trim(),
        "[]",
        "--rm left the workload behind"
    );

    // `sleep` is a host program too: the image of that name is taken, and said so.
    let ambiguous = daemon.ward(&["run", "--name", "nap", "sleep", "600"]);
    assert!(!ambiguous.status.success());
    let said = stderr_of(&ambiguous);
    assert!(
        said.contains("running the image sleep") && said.contains("'ward run -- sleep"),
        "{said}"
    );
    ward_ok(
        &daemon,
        &[
            "run",
            "--name",
            "nap",
            "--network",
            "none",
            "--",
            "sleep",
            "600",
        ],
    );
    assert_eq!(inspect(&daemon, "nap")["kind"], "process");
    ward_ok(&daemon, &["rm", "-f", "nap"]);
}

/// A Compose file of a web server, a database and a cache (health checks, depends_on with
/// conditions, a named volume, an env file) comes up with `ward compose up`, serves what it
/// fetched from the other two by name, and goes away with `ward compose down -v`.
#[test]
fn a_compose_file_comes_up_serves_and_goes_down() {
    if !sandbox_available("a_compose_file_comes_up_serves_and_goes_down") {
        return;
    }
    let _turn = bridge_turn();
    let registry = Registry::start();
    let reference = publish(&busybox_image(), &registry, "ward/compose", "1");
    let daemon = Daemon::start();
    let port = free_port();
    let directory = tempfile::tempdir().expect("compose directory");
    std::fs::write(
        directory.path().join("web.env"),
        "GREETING=hello from web\n",
    )
    .expect("env file");
    std::fs::write(
        directory.path().join(".env"),
        format!("IMAGE={reference}\n"),
    )
    .expect(".env");
    let compose = format!(
        r#"name: shop
services:
  web:
    image: ${{IMAGE}}
    command: ["sh", "-c", "wget -q -O /srv/db http://db:5432/rows && wget -q -O /srv/cache http://cache:6379/ping && echo $$GREETING > /srv/greeting && exec httpd -f -p 8080 -h /srv"]
    env_file: web.env
    ports: ["{port}:8080"]
    restart: "no"
    depends_on:
      db: {{condition: service_healthy}}
      cache: {{condition: service_healthy}}
  db:
    image: ${{IMAGE}}
    command: sh -c 'echo 42 rows > /data/rows && echo db ready && exec httpd -f -p 5432 -h /data'
    volumes: ["data:/data"]
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:5432/rows"]
      interval: 1s
      retries: 30
  cache:
    image: ${{IMAGE}}
    entrypoint: ["sh", "-c"]
    command: ["busybox mkdir -p /c && echo pong > /c/ping && exec httpd -f -p 6379 -h /c"]
    healthcheck:
      test: ["CMD-SHELL", "wget -q -O /dev/null http://127.0.0.1:6379/ping"]
      interval: 1s
volumes:
  data: {{}}
"#
    );
    std::fs::write(directory.path().join("compose.yaml"), compose).expect("compose file");
    let in_directory = |arguments: &[&str]| {
        daemon
            .ward_command(arguments)
            .current_dir(directory.path())
            .output()
            .expect("run ward")
    };
    let up = in_directory(&["compose", "up", "-d"]);
    assert!(up.status.success(), "{}", stderr_of(&up));
    let order: Vec<String> = stdout_of(&up).lines().map(str::to_string).collect();
    assert_eq!(
        order.last().map(String::as_str),
        Some("web created"),
        "{order:?}"
    );
    assert_eq!(order.len(), 3, "{order:?}");

    let body = |path: &str| {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(body) = http_body(port, path) {
                return body;
            }
            assert!(Instant::now() < deadline, "web does not serve {path}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    assert_eq!(body("/db"), "42 rows\n");
    assert_eq!(body("/cache"), "pong\n");
    assert_eq!(body("/greeting"), "hello from web\n");
    let web = inspect(&daemon, "web");
    assert_eq!(web["labels"]["com.docker.compose.project"], "shop");
    assert_eq!(web["labels"]["com.docker.compose.service"], "web");
    assert_eq!(
        inspect(&daemon, "cache")["entrypoint"],
        serde_json::json!(["sh", "-c"])
    );
    let volumes = ward_ok(&daemon, &["volume", "ls", "-q"]);
    assert_eq!(volumes, "shop-data\n");
    let listed = in_directory(&["compose", "ps"]);
    let names: Vec<String> = stdout_of(&listed)
        .lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().next().map(str::to_string))
        .collect();
    assert_eq!(names, ["cache", "db", "web"], "{}", stdout_of(&listed));
    let logs = in_directory(&["compose", "logs", "db"]);
    let said = stdout_of(&logs);
    assert!(
        said.lines()
            .any(|line| line.starts_with("db-0 ") && line.ends_with("| db ready")),
        "{said} / {}",
        stderr_of(&logs)
    );
    let refused = in_directory(&["compose", "logs", "nosuch"]);
    assert_one_error_line(&refused, "Compose project shop has no workload for nosuch");

    // Up again changes nothing; apply of the same file is the same as up.
    let again = in_directory(&["apply", "-f", "compose.yaml"]);
    assert!(again.status.success(), "{}", stderr_of(&again));
    assert!(
        stdout_of(&again)
            .lines()
            .all(|line| line.ends_with(" unchanged")),
        "{}",
        stdout_of(&again)
    );

    // A workload of another origin is not taken over.
    let refused = in_directory(&["compose", "-p", "other", "up"]);
    assert_one_error_line(
        &refused,
        "workload cache exists and is not part of Compose project other",
    );

    let down = in_directory(&["compose", "down", "-v"]);
    assert!(down.status.success(), "{}", stderr_of(&down));
    assert_eq!(
        stdout_of(&down),
        "web removed\ndb removed\ncache removed\nvolume shop-data removed\n"
    );
    assert_eq!(ward_ok(&daemon, &["ps", "-a", "-o", "json"]).trim(), "[]");
    assert_eq!(ward_ok(&daemon, &["volume", "ls", "-q"]), "");
    assert!(
        http_body(port, "/db").is_none(),
        "web still serves after down"
    );

    // A key Ward does not read is refused by its path, and nothing is stored.
    std::fs::write(
        directory.path().join("compose.yaml"),
        "services:\n  web:\n    image: busybox\n    build: .\n",
    )
    .expect("compose file");
    let refused = in_directory(&["compose", "up"]);
    assert_one_error_line(&refused, "compose.yaml: services.web.build: not supported");
    assert_eq!(ward_ok(&daemon, &["ps", "-a", "-o", "json"]).trim(), "[]");
}

/// `ward run -it --rm IMAGE sh` driven through tmux: a prompt, a command, `exit`, the exit
/// status, and nothing left behind; `ward attach` to a `-t` workload, one client at a time.
#[test]
fn run_it_rm_gives_a_shell_on_this_terminal_and_leaves_nothing() {
    if !sandbox_available("run_it_rm_gives_a_shell_on_this_terminal_and_leaves_nothing") {
        return;
    }
    let registry = Registry::start();
    let reference = publish(&busybox_image(), &registry, "ward/shell", "1");
    let daemon = Daemon::start();
    let tmux = Tmux::start(&format!("ward-test-{}", std::process::id()));
    let ward = format!(
        "{} --data-dir {}",
        common::ward_binary(),
        daemon.data_dir().display()
    );
    tmux.run(&format!(
        "{ward} run -it --rm --name shell --network none {reference} sh; echo EXIT=$?"
    ));
    tmux.wait_for("the prompt", |screen| screen.contains("/srv #"));
    tmux.keys("echo in-$((6*7)) $TERM");
    tmux.wait_for("the command's output", |screen| {
        screen.contains("in-42 xterm")
    });
    tmux.keys("exit 3");
    tmux.wait_for("the exit status", |screen| screen.contains("EXIT=3"));
    assert_eq!(ward_ok(&daemon, &["ps", "-a", "-o", "json"]).trim(), "[]");

    // A workload on a terminal in the background; attach to it, one client at a time.
    ward_ok(
        &daemon,
        &[
            "run",
            "-t",
            "--name",
            "held",
            "--network",
            "none",
            &reference,
            "sh",
        ],
    );
    tmux.run(&format!("{ward} attach held; echo EXIT=$?"));
    // The earlier shell's prompt may still be on the screen: wait for an answer that only
    // the attached shell can give.
    tmux.keys("echo ready-$((2+3))");
    tmux.wait_for("the attached shell", |screen| screen.contains("ready-5"));
    let busy = daemon.ward(&["attach", "held"]);
    assert_one_error_line(&busy, "workload held is attached already");
    tmux.keys("echo attached-$((1+1))");
    tmux.wait_for("the attached output", |screen| {
        screen.contains("attached-2")
    });
    tmux.keys("exit");
    tmux.wait_for("the exit status", |screen| screen.contains("EXIT=0"));
    run_once(&daemon, "plain", &reference, &["sleep", "600"]);
    let refused = daemon.ward(&["attach", "plain"]);
    let line = assert_one_error_line(&refused, "workload plain is running without a terminal");
    assert!(line.contains("ward exec -it plain -- sh"), "{line}");
    ward_ok(&daemon, &["rm", "-f", "held", "plain"]);
}

/// A tmux server of a test's own, with one window.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(socket: &str) -> Tmux {
        let tmux = Tmux {
            socket: socket.to_string(),
        };
        tmux.command(&["new-session", "-d", "-s", "main", "-x", "150", "-y", "40"]);
        tmux
    }

    fn command(&self, arguments: &[&str]) -> String {
        let output = std::process::Command::new("tmux")
            .args(["-L", &self.socket])
            .args(arguments)
            .output()
            .expect("tmux runs (install it: apt-get install tmux)");
        assert!(
            output.status.success(),
            "tmux {arguments:?}: {}",
            stderr_of(&output)
        );
        stdout_of(&output)
    }

    /// Types a line into the window and presses Enter.
    fn keys(&self, line: &str) {
        self.command(&["send-keys", "-t", "main", "-l", line]);
        self.command(&["send-keys", "-t", "main", "Enter"]);
    }

    /// Runs a command line in the window's shell, after clearing the screen.
    fn run(&self, line: &str) {
        self.keys(&format!("clear; {line}"));
    }

    fn wait_for(&self, what: &str, done: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let screen = self.command(&["capture-pane", "-p", "-t", "main"]);
            if done(&screen) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no {what} on the terminal:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = std::process::Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

/// Runs busybox's web server on port 8080 of `reference`, published as `publish_flag`.
fn run_web_server(daemon: &Daemon, name: &str, publish_flag: &str, reference: &str) {
    run_container(
        daemon,
        &[
            "--name",
            name,
            "-p",
            publish_flag,
            "--image",
            reference,
            "--",
            "httpd",
            "-f",
            "-p",
            "8080",
            "-h",
            "/srv",
        ],
    );
}

/// One bridge test at a time: published ports go through the host's shared iptables chains.
fn bridge_turn() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// The host port that the first instance of `document` publishes for container port `port`.
fn published_host_port(document: &Value, port: u64) -> u16 {
    document["status"]["instances"][0]["ports"]
        .as_array()
        .and_then(|ports| ports.iter().find(|mapping| mapping["port"] == port))
        .and_then(|mapping| mapping["host"].as_u64())
        .and_then(|host| u16::try_from(host).ok())
        .unwrap_or_else(|| panic!("no host port for {port} in {document}"))
}

/// The body of `GET path` on `127.0.0.1:port`, when the server answers 200.
fn http_body(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.lines()
        .next()?
        .contains(" 200 ")
        .then(|| body.to_string())
}

// ---------------------------------------------------------------------------------------------
// Pull and run
// ---------------------------------------------------------------------------------------------

#[test]
fn pulled_image_runs_with_its_config_layers_limits_and_capabilities() {
    if !sandbox_available("pulled_image_runs_with_its_config_layers_limits_and_capabilities") {
        return;
    }
    let registry = Registry::start();
    let reference = publish(&busybox_image(), &registry, "ward/busybox", "1");
    let daemon = Daemon::start();

    // A loopback registry is spoken to over plain HTTP without being asked, as Docker does.
    let pulled = ward_ok(&daemon, &["image", "pull", &reference]);
    assert!(pulled.starts_with(&reference), "pull printed {pulled:?}");
    let image = inspect_image(&daemon, &reference);
    assert_eq!(image["platform"], format!("linux/{}", host_architecture()));
    assert_eq!(image["layers"].as_array().map(Vec::len), Some(3));
    let listed: Vec<Value> =
        serde_json::from_str(&ward_ok(&daemon, &["image", "ls", "-o", "json"])).expect("JSON");
    assert_eq!(listed.len(), 1, "{listed:?}");

    // No command: the image's Cmd runs.
    run_once(&daemon, "ctr-default", &reference, &[]);
    wait_for_logs(&daemon, "ctr-default", "hello from busybox");
    let document = daemon.wait_for("ctr-default to exit", START_TIMEOUT, || {
        let document = inspect(&daemon, "ctr-default");
        (document["status"]["state"] == "exited").then_some(document)
    });
    assert_eq!(document["kind"], "container");
    assert_eq!(document["image"], reference);
    assert_eq!(document["status"]["exit_code"], 0);

    // The image's WorkingDir and Env, the spec's variables on top, the layers with their
    // whiteout applied, the container's own /etc/hostname and /etc/hosts, Docker's
    // capabilities, and a writable root that is the container's alone.
    let script = r#"echo "cwd $(pwd)"
echo "fixture $FIXTURE"
echo "extra $EXTRA"
if [ -e /etc/ward-fixture/keep ]; then echo "keep yes"; else echo "keep no"; fi
if [ -e /etc/ward-fixture/gone ]; then echo "gone yes"; else echo "gone no"; fi
echo "second $(cat /srv/second)"
echo "hostname $(cat /etc/hostname)"
if grep -q ctr-probe /etc/hosts; then echo "hosts yes"; else echo "hosts no"; fi
echo "uid $(id -u)"
echo "capeff $(grep CapEff /proc/self/status | { read -r _ value; echo $value; })"
echo "pids $(cd /proc && echo [0-9]* | wc -w)"
if echo x > /etc/written; then echo "root-write yes"; else echo "root-write no"; fi
echo "uidmap $(cat /proc/self/uid_map)"
if cat /hostdir/root-only >/dev/null 2>&1; then echo "host-secret read"; else echo "host-secret refused"; fi
echo probe-done
exec sleep 600"#;
    // A host directory (mounted by the admin) with a file only the host's root may read.
    let host_dir = tempfile::tempdir().expect("host dir");
    std::fs::set_permissions(
        host_dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let secret = host_dir.path().join("root-only");
    std::fs::write(&secret, "host root's secret").expect("write");
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod");
    let host_volume = format!("{}:/hostdir:ro", host_dir.path().display());
    run_container(
        &daemon,
        &[
            "--name",
            "ctr-probe",
            "--network",
            "none",
            "-v",
            &host_volume,
            "-e",
            "EXTRA=2",
            "--image",
            &reference,
            "--",
            "sh",
            "-c",
            script,
        ],
    );
    let report = wait_for_logs(&daemon, "ctr-probe", "probe-done");
    println!("container probe:\n{report}");
    assert_eq!(field(&report, "cwd"), "/srv");
    assert_eq!(field(&report, "fixture"), "1");
    assert_eq!(field(&report, "extra"), "2");
    assert_eq!(field(&report, "keep"), "yes");
    assert_eq!(
        field(&report, "gone"),
        "no",
        "the whiteout of the third layer"
    );
    assert_eq!(field(&report, "second"), "second layer");
    assert_eq!(field(&report, "hostname"), "ctr-probe");
    assert_eq!(field(&report, "hosts"), "yes");
    assert_eq!(field(&report, "uid"), "0");
    assert_eq!(field(&report, "capeff"), DOCKER_DEFAULT_CAPABILITIES);
    assert_eq!(field(&report, "root-write"), "yes");
    // Root of the container is an unprivileged user of the host: a range of its own.
    let map: Vec<&str> = field(&report, "uidmap").split_whitespace().collect();
    assert_eq!(map.len(), 3, "{report}");
    assert_eq!(map[0], "0");
    assert!(
        map[1].parse::<u64>().expect("host id") >= 1 << 30,
        "{report}"
    );
    assert_eq!(map[2], "65536");
    assert_eq!(field(&report, "host-secret"), "refused");

    // exec runs in the same root: it sees what the container wrote.
    let executed = ward_ok(
        &daemon,
        &[
            "exec",
            "ctr-probe",
            "--",
            "cat",
            "/etc/written",
            "/srv/index.html",
        ],
    );
    assert_eq!(executed, "x\nhello from the image\n");
    // ... and another container of the same image does not.
    run_container(
        &daemon,
        &[
            "--name",
            "ctr-other",
            "--network",
            "none",
            "--image",
            &reference,
            "--",
            "sleep",
            "600",
        ],
    );
    let other = daemon.ward(&["exec", "ctr-other", "--", "cat", "/etc/written"]);
    assert!(
        !other.status.success(),
        "a second container saw the first one's file"
    );

    // A program that allocates past the memory limit is OOM-killed and recorded as such.
    run_container(
        &daemon,
        &[
            "--name",
            "ctr-oom",
            "--network",
            "none",
            "--memory",
            "32MiB",
            "--restart",
            "never",
            "--image",
            &reference,
            "--",
            "dd",
            "if=/dev/zero",
            "of=/dev/null",
            "bs=256M",
            "count=1",
        ],
    );
    let oom = daemon.wait_for("ctr-oom to be OOM-killed", START_TIMEOUT, || {
        let document = inspect(&daemon, "ctr-oom");
        (document["status"]["state"] == "failed").then_some(document)
    });
    assert_eq!(oom["status"]["oom_killed"], true, "{oom}");
    let events = ward_ok(&daemon, &["events", "-o", "json"]);
    assert!(
        events
            .lines()
            .any(|line| line.contains("ctr-oom") && line.contains("oom_killed")),
        "no oom_killed event for ctr-oom:\n{events}"
    );
}

#[test]
fn container_publishes_ports_and_survives_a_daemon_kill() {
    if !sandbox_available("container_publishes_ports_and_survives_a_daemon_kill") {
        return;
    }
    let _turn = bridge_turn();
    let registry = Registry::start();
    let reference = publish(&busybox_image(), &registry, "ward/web", "1");
    let mut daemon = Daemon::start();
    let port = free_port();
    let publish_flag = format!("{port}:8080");
    // The image is pulled on first use, as `docker run` does.
    run_web_server(&daemon, "ctr-web", &publish_flag, &reference);
    let body = daemon.wait_for("the container's web server", START_TIMEOUT, || {
        http_body(port, "/index.html")
    });
    assert_eq!(body, "hello from the image\n");
    let before = inspect(&daemon, "ctr-web")["status"]["pid"].clone();
    assert!(before.as_u64().is_some(), "no pid: {before}");

    // -P: the port the image exposes (8080/tcp) goes to a free host port, shown in the status.
    run_container(
        &daemon,
        &[
            "--name", "ctr-auto", "-P", "--image", &reference, "--", "httpd", "-f", "-p", "8080",
            "-h", "/srv",
        ],
    );
    let auto_port = published_host_port(&inspect(&daemon, "ctr-auto"), 8080);
    let body = daemon.wait_for("the -P container's web server", START_TIMEOUT, || {
        http_body(auto_port, "/second")
    });
    assert_eq!(body, "second layer\n");
    let ps = ward_ok(&daemon, &["ps"]);
    assert!(ps.contains(&format!("{auto_port}->8080/tcp")), "{ps}");

    daemon.kill9();
    assert_eq!(
        http_body(port, "/second").as_deref(),
        Some("second layer\n"),
        "the container stopped serving while the daemon was down"
    );
    daemon.restart();
    let after = daemon.wait_for("ctr-web to be running again", START_TIMEOUT, || {
        let document = inspect(&daemon, "ctr-web");
        (document["status"]["state"] == "running").then_some(document)
    });
    assert_eq!(
        after["status"]["pid"], before,
        "the container was restarted, not re-attached"
    );
    assert_eq!(after["status"]["restarts"], 0);
    let auto_after = daemon.wait_for("ctr-auto to be running again", START_TIMEOUT, || {
        let document = inspect(&daemon, "ctr-auto");
        (document["status"]["state"] == "running").then_some(document)
    });
    assert_eq!(
        published_host_port(&auto_after, 8080),
        auto_port,
        "the chosen port moved"
    );
    // Its overlay root is still mounted: exec sees the image's files.
    let executed = ward_ok(&daemon, &["exec", "ctr-web", "--", "cat", "/srv/second"]);
    assert_eq!(executed, "second layer\n");
}

#[test]
fn multi_platform_index_pulls_the_host_platform() {
    if !sandbox_available("multi_platform_index_pulls_the_host_platform") {
        return;
    }
    let registry = Registry::start();
    let layout = tempfile::tempdir().expect("layout directory");
    write_multi_platform_layout(&busybox_image(), layout.path(), "multi");
    push(layout.path(), "multi", &registry, "ward/multi");
    let reference = format!("{}/ward/multi:multi", registry.address);
    let daemon = Daemon::start();
    ward_ok(&daemon, &["image", "pull", &reference]);
    let image = inspect_image(&daemon, &reference);
    assert_eq!(image["platform"], format!("linux/{}", host_architecture()));
    run_once(
        &daemon,
        "ctr-multi",
        &reference,
        &[
            "sh",
            "-c",
            "if [ -e /platform ]; then echo foreign; else echo host; fi",
        ],
    );
    let logs = wait_for_logs(&daemon, "ctr-multi", "host");
    assert!(!logs.contains("foreign"), "{logs}");
}

#[test]
fn wrong_platform_only_index_is_refused_and_stores_no_name() {
    let registry = Registry::start();
    let foreign = if host_architecture() == "arm64" {
        "amd64"
    } else {
        "arm64"
    };
    let image = ImageBuilder::new()
        .architecture(foreign)
        .layer(Layer::new().file("/only", "x", 0o644));
    let reference = publish(&image, &registry, "ward/foreign", "1");
    let daemon = Daemon::start();
    let output = daemon.ward(&["image", "pull", &reference]);
    let line = assert_one_error_line(&output, foreign);
    println!("refused: {line}");
    let listed: Vec<Value> =
        serde_json::from_str(&ward_ok(&daemon, &["image", "ls", "-o", "json"])).expect("JSON");
    assert!(listed.is_empty(), "{listed:?}");
}

// ---------------------------------------------------------------------------------------------
// Offline: import and export
// ---------------------------------------------------------------------------------------------

#[test]
fn docker_save_archives_and_oci_layouts_import_export_and_run() {
    if !sandbox_available("docker_save_archives_and_oci_layouts_import_export_and_run") {
        return;
    }
    let work = tempfile::tempdir().expect("work directory");
    let daemon = Daemon::start();

    // A `docker save` archive names its image.
    let saved = work.path().join("saved.tar");
    busybox_image().write_docker_save(&saved, "saved/busybox:1");
    let imported = ward_ok(&daemon, &["image", "import", saved.to_str().expect("path")]);
    assert!(
        imported.starts_with("docker.io/saved/busybox:1 "),
        "{imported:?}"
    );
    run_once(&daemon, "ctr-saved", "saved/busybox:1", &[]);
    wait_for_logs(&daemon, "ctr-saved", "hello from busybox");

    // An OCI layout directory, named on import.
    let layout = work.path().join("layout");
    busybox_image()
        .cmd(["/bin/sh", "-c", "echo hello from the layout"])
        .write_layout(&layout, "1");
    ward_ok(
        &daemon,
        &[
            "image",
            "import",
            layout.to_str().expect("path"),
            "--name",
            "layout/busybox:2",
        ],
    );
    run_once(&daemon, "ctr-layout", "layout/busybox:2", &[]);
    wait_for_logs(&daemon, "ctr-layout", "hello from the layout");

    // Export both into one archive that skopeo reads as an OCI layout and as `docker save`.
    let exported = work.path().join("exported.tar");
    ward_ok(
        &daemon,
        &[
            "image",
            "export",
            "saved/busybox:1",
            "layout/busybox:2",
            "--file",
            exported.to_str().expect("path"),
        ],
    );
    // OCI layouts name images by tag (as containerd writes them), docker archives in full.
    for (transport, name) in [
        ("oci-archive", "1"),
        ("docker-archive", "docker.io/saved/busybox:1"),
    ] {
        let reference = format!("{transport}:{}:{name}", exported.display());
        let inspected: Value = serde_json::from_slice(&run_tool(skopeo().args([
            "--insecure-policy",
            "inspect",
            "--config",
            &reference,
        ])))
        .expect("skopeo prints the config");
        assert_eq!(inspected["config"]["WorkingDir"], "/srv", "{transport}");
    }
    // To stdout too, which a terminal refuses.
    let streamed = daemon
        .ward_command(&["image", "export", "layout/busybox:2"])
        .stdout(Stdio::piped())
        .output()
        .expect("run export");
    assert!(streamed.status.success(), "{}", stderr_of(&streamed));
    assert!(
        streamed.stdout.len() > 100_000,
        "{} bytes",
        streamed.stdout.len()
    );

    // Round trip: remove everything, import the export through stdin, run again.
    ward_ok(&daemon, &["rm", "-f", "ctr-saved", "ctr-layout"]);
    ward_ok(
        &daemon,
        &["image", "rm", "saved/busybox:1", "layout/busybox:2"],
    );
    let pruned = ward_ok(&daemon, &["image", "prune", "-o", "json"]);
    let pruned: Value = serde_json::from_str(&pruned).expect("JSON");
    assert!(pruned["blobs"].as_u64() >= Some(4), "{pruned}");
    let mut import = daemon
        .ward_command(&["image", "import", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn import");
    import
        .stdin
        .take()
        .expect("stdin")
        .write_all(&std::fs::read(&exported).expect("read the export"))
        .expect("write the archive");
    let output = import.wait_with_output().expect("wait for import");
    let listed = assert_success(&output);
    assert!(listed.contains("docker.io/saved/busybox:1"), "{listed}");
    assert!(listed.contains("docker.io/layout/busybox:2"), "{listed}");
    run_once(&daemon, "ctr-again", "layout/busybox:2", &[]);
    wait_for_logs(&daemon, "ctr-again", "hello from the layout");

    // One name for an archive of two images would point at whichever came last: refused.
    let refused = daemon.ward(&[
        "image",
        "import",
        exported.to_str().expect("path"),
        "--name",
        "one/name:1",
    ]);
    let line = assert_one_error_line(&refused, "--name: the archive holds 2 images");
    assert!(line.contains("without --name"), "{line}");
    assert!(!ward_ok(&daemon, &["image", "ls"]).contains("one/name"));

    // Bad input: a missing file, a directory that is no layout, an unknown image to export.
    assert_one_error_line(
        &daemon.ward(&["image", "import", "/nonexistent.tar"]),
        "/nonexistent.tar",
    );
    assert_one_error_line(
        &daemon.ward(&["image", "import", work.path().to_str().expect("path")]),
        "oci-layout",
    );
    let missing = work.path().join("missing.tar");
    assert_one_error_line(
        &daemon.ward(&[
            "image",
            "export",
            "nothing:1",
            "--file",
            missing.to_str().expect("path"),
        ]),
        "not found",
    );
    assert!(!missing.exists(), "a failed export left a file behind");
}

// ---------------------------------------------------------------------------------------------
// Interrupted pulls and a corrupted store
// ---------------------------------------------------------------------------------------------

/// Size of the incompressible layer of the image that the interrupted pull fetches.
const BIG_LAYER_BYTES: usize = 48 << 20;
/// How fast the slow registry sends: the full layer takes about six seconds.
const SLOW_REGISTRY_BYTES_PER_SECOND: u64 = 8 << 20;

/// `length` bytes that no compressor shrinks (xorshift), the same every time.
fn incompressible(length: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut bytes = Vec::with_capacity(length + 8);
    while bytes.len() < length {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(length);
    bytes
}

/// Partial downloads in the daemon's ingest directory: `(file, bytes)`.
fn partial_downloads(data_dir: &Path) -> Vec<(PathBuf, u64)> {
    std::fs::read_dir(data_dir.join("images/ingest"))
        .map(|entries| {
            entries
                .filter_map(|entry| {
                    let entry = entry.ok()?;
                    let size = entry.metadata().ok()?.len();
                    Some((entry.path(), size))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn killed_pull_resumes_and_fetches_only_what_is_missing() {
    let registry = Registry::start();
    let image = busybox_image()
        .compression(Compression::None)
        .layer(Layer::new().file("/big", incompressible(BIG_LAYER_BYTES), 0o644));
    let layout = tempfile::tempdir().expect("layout directory");
    image.write_layout(layout.path(), "1");
    push(layout.path(), "1", &registry, "ward/big");
    let slow = ThrottledProxy::start(&registry.address, SLOW_REGISTRY_BYTES_PER_SECOND);
    let reference = format!("{}/ward/big:1", slow.address);
    let daemon = Daemon::start();

    let mut pull = daemon
        .ward_command(&["image", "pull", &reference])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ward image pull");
    let quarter = (BIG_LAYER_BYTES / 4) as u64;
    let partial = daemon.wait_for("a quarter of the big layer", START_TIMEOUT, || {
        partial_downloads(daemon.data_dir())
            .into_iter()
            .find(|(_, size)| *size >= quarter)
    });
    pull.kill().expect("kill ward image pull");
    let _ = pull.wait();
    // The daemon cancels the pull when its client goes away; the partial blob stays.
    let stopped_at = daemon.wait_for(
        "the cancelled download to stop growing",
        START_TIMEOUT,
        || {
            let before = std::fs::metadata(&partial.0).ok()?.len();
            std::thread::sleep(Duration::from_millis(300));
            let after = std::fs::metadata(&partial.0).ok()?.len();
            (before == after).then_some(after)
        },
    );
    assert!(
        stopped_at < BIG_LAYER_BYTES as u64,
        "the download finished before it was killed"
    );
    let listed: Vec<Value> =
        serde_json::from_str(&ward_ok(&daemon, &["image", "ls", "-o", "json"])).expect("JSON");
    assert!(
        listed.is_empty(),
        "an interrupted pull named an image: {listed:?}"
    );

    let delivered_before = slow.delivered();
    let started = Instant::now();
    ward_ok(&daemon, &["image", "pull", &reference]);
    let fetched_again = slow.delivered() - delivered_before;
    let missing = BIG_LAYER_BYTES as u64 - stopped_at;
    println!(
        "interrupted at {stopped_at} of {BIG_LAYER_BYTES} bytes; the second pull fetched \
         {fetched_again} bytes ({missing} missing) in {:?}",
        started.elapsed()
    );
    // What was missing, plus manifests, the small layers not yet fetched and HTTP headers.
    assert!(
        fetched_again < missing + (2 << 20),
        "the second pull fetched {fetched_again} bytes for {missing} missing"
    );
    assert!(
        partial_downloads(daemon.data_dir()).is_empty(),
        "a partial download was left behind"
    );
    let image = inspect_image(&daemon, &reference);
    assert_eq!(image["layers"].as_array().map(Vec::len), Some(4));
}

#[test]
fn corrupted_blob_fails_the_next_use_loudly() {
    if !sandbox_available("corrupted_blob_fails_the_next_use_loudly") {
        return;
    }
    let registry = Registry::start();
    let reference = publish(&busybox_image(), &registry, "ward/corrupt", "1");
    let daemon = Daemon::start();
    ward_ok(&daemon, &["image", "pull", &reference]);
    run_once(&daemon, "ctr-first", &reference, &[]);
    wait_for_logs(&daemon, "ctr-first", "hello from busybox");

    // Flip one byte in the middle of the second layer's stored blob.
    let image = inspect_image(&daemon, &reference);
    let layer = image["layers"][1]
        .as_str()
        .expect("layer digest")
        .to_string();
    let blob = daemon
        .data_dir()
        .join("images/blobs/sha256")
        .join(layer.trim_start_matches("sha256:"));
    let mut bytes = std::fs::read(&blob).expect("read the blob");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&blob, &bytes).expect("write the blob");

    let output = daemon.ward(&[
        "run",
        "--name",
        "ctr-second",
        "--network",
        "none",
        "--restart",
        "never",
        "--image",
        &reference,
    ]);
    let line = assert_one_error_line(&output, "ctr-second");
    assert!(
        line.contains(&layer[..19]),
        "the error does not name the corrupt blob: {line}"
    );
    println!("run after corruption: {line}");
    let exported = tempfile::NamedTempFile::new().expect("temporary file");
    let export = daemon.ward(&[
        "image",
        "export",
        &reference,
        "--file",
        exported.path().to_str().expect("path"),
    ]);
    let line = assert_one_error_line(&export, &layer[..19]);
    println!("export after corruption: {line}");
    assert_eq!(
        std::fs::metadata(exported.path()).expect("stat").len(),
        0,
        "a corrupt export was written"
    );
}

// ---------------------------------------------------------------------------------------------
// Registry logins
// ---------------------------------------------------------------------------------------------

#[test]
fn login_keeps_credentials_private_and_opens_an_authenticated_registry() {
    let (username, password) = ("ward-user", "correct horse battery staple");
    let registry = Registry::start_with_login(Some((username, password)));
    let layout = tempfile::tempdir().expect("layout directory");
    busybox_image().write_layout(layout.path(), "1");
    push_with_login(
        layout.path(),
        "1",
        &registry,
        "private/busybox",
        Some((username, password)),
    );
    let reference = format!("{}/private/busybox:1", registry.address);
    let daemon = Daemon::start();

    let refused = daemon.ward(&["image", "pull", &reference]);
    let line = assert_one_error_line(&refused, &format!("ward login {}", registry.address));
    println!("pull without a login: {line}");

    let login = |password: &str| ward_login(&daemon, &registry.address, username, password);
    assert_one_error_line(&login("wrong password"), "refused");
    let credentials = daemon.data_dir().join("registries.json");
    assert!(!credentials.exists(), "a refused login was kept");
    let accepted = login(password);
    assert_eq!(
        assert_success(&accepted).trim(),
        format!("Logged in to {} as {username}", registry.address)
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&credentials)
            .expect("stat registries.json")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    ward_ok(&daemon, &["image", "pull", &reference]);
    let logins = daemon.api_get("/api/v1/registries");
    assert!(
        logins.contains(username) && !logins.contains(password),
        "{logins}"
    );
    assert!(
        !daemon.log().contains(password),
        "the password is in the daemon log"
    );

    let logged_out = ward_ok(&daemon, &["logout", &registry.address]);
    assert!(logged_out.contains(&registry.address), "{logged_out}");
    assert_one_error_line(
        &daemon.ward(&["logout", &registry.address]),
        "not logged in",
    );
    ward_ok(&daemon, &["image", "rm", &reference]);
    assert_one_error_line(
        &daemon.ward(&["image", "pull", &reference]),
        &registry.address,
    );
}

/// Pulls, logins and volume removals change files as well as rows. With the audit log
/// refusing every entry, each of them fails and changes nothing; once it takes entries again,
/// each is recorded once.
#[test]
fn changes_outside_the_database_are_never_left_without_their_audit_entry() {
    if !sandbox_available("changes_outside_the_database_are_never_left_without_their_audit_entry") {
        return;
    }
    let (username, password) = ("ward-user", "audited login");
    let private = Registry::start_with_login(Some((username, password)));
    let open = Registry::start();
    let reference = publish(&busybox_image(), &open, "ward/audited", "1");
    let daemon = Daemon::start();
    ward_ok(
        &daemon,
        &[
            "run",
            "--name",
            "writer",
            "--restart",
            "never",
            "--network",
            "none",
            "-v",
            "kept:/data",
            "--",
            "sh",
            "-c",
            "echo kept > /data/file",
        ],
    );
    let volume = daemon.data_dir().join("volumes/default/kept");
    daemon.wait_for("the file in the volume", START_TIMEOUT, || {
        volume.join("file").exists().then_some(())
    });
    ward_ok(&daemon, &["rm", "-f", "writer"]);
    daemon.wait_for("writer to be gone", START_TIMEOUT, || {
        (!ward_ok(&daemon, &["ps", "-a", "-q"]).contains("writer")).then_some(())
    });

    let database = rusqlite::Connection::open(daemon.data_dir().join("ward.db")).expect("open");
    database
        .execute_batch(
            "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log
             BEGIN SELECT RAISE(ABORT, 'the audit log refuses'); END;",
        )
        .expect("trigger");
    let login = || ward_login(&daemon, &private.address, username, password);
    assert!(!login().status.success(), "a login went through unaudited");
    assert!(
        !daemon.api_get("/api/v1/registries").contains(username),
        "an unaudited login was kept"
    );
    assert!(!daemon.ward(&["image", "pull", &reference]).status.success());
    assert!(
        !ward_ok(&daemon, &["image", "ls"]).contains("ward/audited"),
        "an unaudited pull named its image"
    );
    assert!(!daemon.ward(&["volume", "rm", "kept"]).status.success());
    assert!(
        volume.join("file").exists(),
        "an unaudited removal took the volume"
    );

    database
        .execute_batch("DROP TRIGGER refuse_audit")
        .expect("drop the trigger");
    assert_success(&login());
    ward_ok(&daemon, &["image", "pull", &reference]);
    ward_ok(&daemon, &["volume", "rm", "kept"]);
    assert!(!volume.exists(), "the volume is still there");
    let audit: Value = serde_json::from_str(&daemon.api_get("/api/v1/audit")).expect("JSON");
    let entries = audit["entries"].as_array().expect("entries");
    for action in [
        "POST /api/v1/registries/login",
        "POST /api/v1/images/pull",
        "DELETE /api/v1/volumes/{name}",
    ] {
        let recorded: Vec<&Value> = entries
            .iter()
            .filter(|entry| entry["action"] == action)
            .collect();
        assert_eq!(recorded.len(), 1, "{action}: {recorded:?}");
        assert_eq!(recorded[0]["status"], 200, "{action}: {recorded:?}");
    }
    assert!(ward_ok(&daemon, &["audit", "verify"]).contains("intact"));
}

/// `ward login REGISTRY -u USERNAME --password-stdin`, the password written to its input.
fn ward_login(
    daemon: &Daemon,
    registry: &str,
    username: &str,
    password: &str,
) -> std::process::Output {
    let mut child = daemon
        .ward_command(&["login", registry, "-u", username, "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ward login");
    writeln!(child.stdin.take().expect("stdin"), "{password}").expect("write the password");
    child.wait_with_output().expect("wait for ward login")
}

/// Reads the NDJSON progress of a pull through the API: the events name every blob and end
/// with the image.
#[test]
fn pull_progress_streams_every_blob_then_the_image() {
    let registry = Registry::start();
    let reference = publish(&busybox_image(), &registry, "ward/progress", "1");
    let daemon = Daemon::start();
    let body = format!(r#"{{"reference":"{reference}"}}"#);
    let mut stream = TcpStream::connect(daemon.address()).expect("connect");
    write!(
        stream,
        "POST /api/v1/images/pull HTTP/1.0\r\nAuthorization: Bearer {}\r\n\
         Accept: application/x-ndjson\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        daemon.token(),
        body.len()
    )
    .expect("send the request");
    let mut lines = Vec::new();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    let mut in_body = false;
    while reader.read_line(&mut line).expect("read") > 0 {
        if in_body && !line.trim().is_empty() {
            lines.push(serde_json::from_str::<Value>(line.trim()).expect("a JSON line"));
        }
        if line == "\r\n" {
            in_body = true;
        }
        line.clear();
    }
    let statuses: Vec<&str> = lines
        .iter()
        .filter_map(|event| event["status"].as_str())
        .collect();
    assert_eq!(statuses.first(), Some(&"resolved"), "{statuses:?}");
    assert_eq!(statuses.last(), Some(&"done"), "{statuses:?}");
    let blobs = lines[0]["blobs"].as_array().expect("blobs").clone();
    assert_eq!(blobs.len(), 4, "config and three layers");
    for blob in &blobs {
        let finished = lines.iter().any(|event| {
            event["status"] == "progress"
                && event["digest"] == blob["digest"]
                && event["done"] == blob["total"]
        });
        assert!(finished, "no final progress for {blob}");
    }
    assert_eq!(
        lines.last().expect("a last line")["image"]["reference"],
        reference
    );
}

#[test]
fn prune_keeps_the_images_that_workloads_run() {
    if !sandbox_available("prune_keeps_the_images_that_workloads_run") {
        return;
    }
    let registry = Registry::start();
    let reference = publish(&busybox_image(), &registry, "ward/kept", "1");
    let unused = publish(
        &busybox_image().layer(Layer::new().file("/unused", "unused\n", 0o644)),
        &registry,
        "ward/unused",
        "1",
    );
    let daemon = Daemon::start();
    ward_ok(&daemon, &["image", "pull", &unused]);
    run_once(&daemon, "ctr-kept", &reference, &["sleep", "600"]);

    // The name goes (forced: a workload uses it), the image stays while the workload exists.
    assert_one_error_line(&daemon.ward(&["image", "rm", &reference]), "ctr-kept");
    ward_ok(&daemon, &["image", "rm", "--force", &reference, &unused]);
    let pruned: Value =
        serde_json::from_str(&ward_ok(&daemon, &["image", "prune", "-o", "json"])).expect("JSON");
    println!("pruned: {pruned}");
    // The unused image's manifest, config and its own layer; the shared layers stay.
    assert_eq!(pruned["blobs"], 3, "{pruned}");
    assert_eq!(pruned["layers"], 1, "{pruned}");
    ward_ok(&daemon, &["restart", "ctr-kept"]);
    let executed = ward_ok(&daemon, &["exec", "ctr-kept", "--", "cat", "/srv/second"]);
    assert_eq!(executed, "second layer\n");

    // The restart resolved the name again, pulling it as a first run does.
    let listed = ward_ok(&daemon, &["image", "ls"]);
    assert!(listed.contains(&reference), "{listed}");

    // Once the workload and the name are gone, so is the image.
    ward_ok(&daemon, &["rm", "-f", "ctr-kept"]);
    ward_ok(&daemon, &["image", "rm", &reference]);
    let instance = daemon.data_dir().join("instances/default/ctr-kept");
    daemon.wait_for("the instance directory to go", START_TIMEOUT, || {
        (!instance.exists()).then_some(())
    });
    let pruned: Value =
        serde_json::from_str(&ward_ok(&daemon, &["image", "prune", "-o", "json"])).expect("JSON");
    assert_eq!(pruned["blobs"], 5, "{pruned}");
    assert_eq!(pruned["layers"], 3, "{pruned}");
    let left = std::fs::read_dir(daemon.data_dir().join("images/blobs/sha256"))
        .expect("read the blob directory")
        .count();
    assert_eq!(left, 0, "blobs left after the last prune");
}
