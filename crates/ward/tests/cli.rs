//! The CLI without a daemon: usage errors, completion scripts, an unreachable daemon, and
//! spec errors that `apply` reports before it calls anything.

mod common;

use common::{assert_one_error_line, assert_success, stdout_of, ward_command};

fn ward(arguments: &[&str]) -> std::process::Output {
    ward_command().args(arguments).output().expect("run ward")
}

/// Runs `ward ARGS` and checks for one `error:` line containing `expected`.
fn check(arguments: &[&str], expected: &str) {
    let output = ward(arguments);
    let line = assert_one_error_line(&output, expected);
    assert!(
        stdout_of(&output).is_empty(),
        "{arguments:?} printed to stdout: {}",
        stdout_of(&output)
    );
    assert!(
        line.len() < 400,
        "{arguments:?}: error line too long: {line}"
    );
}

#[test]
fn usage_errors_are_one_error_line() {
    let cases: &[(&[&str], &str)] = &[
        (&["bogus"], "unrecognized subcommand 'bogus'"),
        (&["pss"], "did you mean 'ward ps'?"),
        (&["strat"], "did you mean 'ward start'?"),
        // Docker's words get the Ward command for the job, never a look-alike that does
        // something else (`rm` removes workloads, `start` starts them).
        (&["rmi", "busybox"], "use ward image rm"),
        (&["port"], "use ward ps (its PORTS column)"),
        (&["build", "."], "use ward image import"),
        (
            &["run", "-i", "busybox", "sh"],
            "-i: a workload's own process takes input through its terminal; add -t",
        ),
        (
            &["run", "--rm", "--restart", "always", "busybox"],
            "restart: --rm removes the workload once it exits",
        ),
        (
            &["system", "prune"],
            "use ward image prune and ward volume prune",
        ),
        (&["images"], "use ward image ls"),
        (&["--project", "x", "rmi"], "use ward image rm"),
        (&["ps", "--bogus"], "unexpected argument '--bogus'"),
        (&["ps", "--bogus"], "see 'ward ps --help'"),
        (&["logs"], "required arguments were not provided: <NAME>"),
        (&["logs", "--folow", "web"], "'--follow'"),
        (&["logs", "--tail", "some", "web"], "invalid line count"),
        (&["logs", "--since", "yesterday", "web"], "invalid time"),
        (&["exec", "web"], "<COMMAND>"),
        (&["apply"], "--filename <FILE>"),
        (&["inspect"], "<NAME>"),
        (&["rm"], "<NAME>"),
        (&["completion", "tcsh"], "invalid value 'tcsh'"),
        (&["-o", "yaml", "ps"], "invalid value 'yaml'"),
        (&["ps", "-o", "yaml"], "possible values: table, json, wide"),
        (
            &["run", "--memory", "12XB", "--", "sleep", "1"],
            "invalid size \"12XB\"",
        ),
        (
            &["run", "--memory", "12XB", "--", "sleep", "1"],
            "see 'ward run --help'",
        ),
        (
            &["run", "--cpus", "lots", "--", "sleep", "1"],
            "invalid cpu",
        ),
        (
            &["run", "-p", "99999:80", "--", "sleep", "1"],
            "use a number from 1 to 65535",
        ),
        (
            &["run", "-p", "8080", "-p", "80:80/sctp", "--", "sleep", "1"],
            "invalid protocol",
        ),
        (
            &["run", "-v", "relative/path:/data", "--", "sleep", "1"],
            "invalid mount source",
        ),
        (
            &["run", "--restart", "sometimes", "--", "sleep", "1"],
            "invalid restart policy",
        ),
        (
            &["run", "--name", "Bad_Name", "--", "sleep", "1"],
            "invalid name",
        ),
        (
            &["run", "-e", "=x", "--", "sleep", "1"],
            "invalid variable name",
        ),
        (
            &["run", "--kind", "pod", "--", "sleep", "1"],
            "invalid value 'pod'",
        ),
        (
            &[
                "run",
                "--health-http",
                "80",
                "--health-tcp",
                "80",
                "--",
                "sleep",
                "1",
            ],
            "cannot be used with",
        ),
        (
            &["run", "--health-interval", "5s", "--", "sleep", "1"],
            "required arguments were not provided",
        ),
        (
            &["run", "--health-http", "eighty", "--", "sleep", "1"],
            "invalid http probe",
        ),
        (&["top", "--interval", "soon"], "invalid duration"),
        (&["top", "--interval", "1ms"], "too short"),
        (&["events", "--since", "yesterday"], "invalid event id"),
    ];
    for (arguments, expected) in cases {
        check(arguments, expected);
    }
}

#[test]
fn usage_errors_exit_with_status_2() {
    assert_eq!(ward(&["ps", "--bogus"]).status.code(), Some(2));
}

#[test]
fn help_and_version_print_to_stdout_and_succeed() {
    let help = assert_success(&ward(&["--help"]));
    for command in [
        "run",
        "apply",
        "ps",
        "inspect",
        "logs",
        "exec",
        "events",
        "top",
        "serve",
        "completion",
    ] {
        assert!(
            help.contains(command),
            "--help does not list {command}: {help}"
        );
    }
    assert!(!help.contains("monitor"), "the monitor is internal: {help}");
    let run_help = assert_success(&ward(&["run", "--help"]));
    assert!(
        run_help.contains("background"),
        "run --help should say it is detached: {run_help}"
    );
    let version = assert_success(&ward(&["--version"]));
    assert!(version.starts_with("ward "), "{version}");
    let bare = assert_success(&ward(&[]));
    assert!(bare.contains("Usage: ward"), "{bare}");
}

#[test]
fn completion_scripts_mention_ward() {
    for shell in ["bash", "zsh", "fish"] {
        let script = assert_success(&ward(&["completion", shell]));
        assert!(
            script.contains("ward"),
            "{shell} completion does not mention ward"
        );
        assert!(
            script.contains("inspect"),
            "{shell} completion does not know the subcommands"
        );
    }
}

#[test]
fn unreachable_daemon_says_how_to_start_it() {
    let output = ward(&["ps", "--host", "http://127.0.0.1:1"]);
    let line = assert_one_error_line(
        &output,
        "cannot reach the Ward daemon at http://127.0.0.1:1",
    );
    assert!(line.contains("ward serve"), "{line}");
    assert_eq!(output.status.code(), Some(1));

    let output = ward_command()
        .args(["stop", "a", "b"])
        .env("WARD_HOST", "127.0.0.1:1")
        .output()
        .expect("run ward");
    assert_one_error_line(
        &output,
        "cannot reach the Ward daemon at http://127.0.0.1:1",
    );
}

#[test]
fn apply_reports_spec_errors_before_calling_the_daemon() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let check_file = |contents: &str, expected: &str| {
        let path = directory.path().join("web.yaml");
        std::fs::write(&path, contents).expect("write spec");
        let output = ward(&[
            "apply",
            "--host",
            "http://127.0.0.1:1",
            "-f",
            path.to_str().expect("utf-8 path"),
        ]);
        assert_one_error_line(&output, expected);
    };
    check_file(
        "name: web\ncommand: [sleep, \"1\"]\nresources: {memory: 12XB}\n",
        "resources.memory: invalid size",
    );
    check_file(
        "name: web\ncommand: [sleep, \"1\"]\nimagee: nginx\n",
        "imagee",
    );
    check_file("name: web\ncommand: [sleep\n", "invalid YAML");
    check_file("", "no workload in file");

    let output = ward(&["apply", "-f", "/nonexistent/web.yaml"]);
    assert_one_error_line(&output, "cannot read /nonexistent/web.yaml: no such file");
}

#[test]
fn run_without_command_or_image_says_what_to_give() {
    check(
        &["run", "--host", "http://127.0.0.1:1", "--name", "web"],
        "nothing to run",
    );
}
