//! Acceptance tests for projects, API keys, roles and the audit log, against a real
//! `ward serve`: every endpoint of `/openapi.json` is called with a key of another project and
//! with a viewer key, and the audit log is checked after a row of the database was altered.

mod common;

use std::collections::BTreeMap;

use common::{
    assert_one_error_line, assert_success, http_request, stdout_of, Daemon, HttpResponse,
};
use serde_json::Value;

/// What path parameters become when every endpoint is called.
struct Names {
    workload: String,
    image: String,
    registry: String,
    key: String,
}

/// `ward ARGS...` as the admin, which must succeed; returns stdout.
fn ward_ok(daemon: &Daemon, arguments: &[&str]) -> String {
    assert_success(&daemon.ward(arguments))
}

/// Creates a key with `ward key create` and returns `(id, key)`.
fn create_key(daemon: &Daemon, arguments: &[&str]) -> (String, String) {
    let mut command = vec!["key", "create"];
    command.extend_from_slice(arguments);
    command.extend_from_slice(&["-o", "json"]);
    let created: Value = serde_json::from_str(&ward_ok(daemon, &command)).expect("JSON");
    (
        created["id"].as_str().expect("id").to_string(),
        created["key"].as_str().expect("key").to_string(),
    )
}

/// Every `(method, path template)` that `/openapi.json` describes.
fn endpoints(daemon: &Daemon) -> Vec<(String, String)> {
    let document: Value =
        serde_json::from_str(&daemon.api_get("/openapi.json")).expect("OpenAPI JSON");
    let mut endpoints = Vec::new();
    for (path, operations) in document["paths"].as_object().expect("paths") {
        for method in operations.as_object().expect("operations").keys() {
            if ["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                endpoints.push((method.to_ascii_uppercase(), path.clone()));
            }
        }
    }
    assert!(
        endpoints.len() >= 30,
        "only {} endpoints described",
        endpoints.len()
    );
    endpoints
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

fn fill(template: &str, names: &Names) -> String {
    template
        .replace("{name}", &names.workload)
        .replace("{reference}", &percent_encode(&names.image))
        .replace("{registry}", &percent_encode(&names.registry))
        .replace("{id}", &names.key)
}

fn call(daemon: &Daemon, method: &str, path: &str, key: &str) -> HttpResponse {
    let body = (method != "GET" && method != "DELETE").then_some("{}");
    http_request(daemon.address(), method, path, Some(key), body)
}

/// Project beta with a workload, an image, a registry login and a key; project alpha with an
/// operator key (every capability) and a viewer key.
struct Tenants {
    daemon: Daemon,
    beta: Names,
    alpha_operator: String,
    alpha_viewer: String,
}

fn tenants() -> Tenants {
    let daemon = Daemon::start();
    ward_ok(&daemon, &["project", "create", "alpha"]);
    ward_ok(&daemon, &["project", "create", "beta"]);
    // A workload of beta (a spec that never starts is a resource all the same).
    let spec = r#"{"name": "beta-web", "command": ["sleep", "600"], "restart": "never", "network": "none"}"#;
    let created = http_request(
        daemon.address(),
        "POST",
        "/api/v1/workloads?project=beta",
        Some(daemon.token()),
        Some(spec),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let work = tempfile::tempdir().expect("work directory");
    let archive = work.path().join("beta.tar");
    common::images::busybox_image().write_docker_save(&archive, "beta/secret-image:1");
    ward_ok(
        &daemon,
        &[
            "image",
            "import",
            archive.to_str().expect("path"),
            "--project",
            "beta",
        ],
    );
    let (beta_key, _) = create_key(
        &daemon,
        &["beta-ci", "--project", "beta", "--role", "operator"],
    );
    let (_, alpha_operator) = create_key(
        &daemon,
        &[
            "alpha-ops",
            "--project",
            "alpha",
            "--role",
            "operator",
            "--capability",
            "exec",
            "--capability",
            "audit:read",
            "--capability",
            "secrets:read",
        ],
    );
    let (_, alpha_viewer) = create_key(
        &daemon,
        &["alpha-view", "--project", "alpha", "--role", "viewer"],
    );
    Tenants {
        daemon,
        beta: Names {
            workload: "beta-web".to_string(),
            image: "docker.io/beta/secret-image:1".to_string(),
            registry: "127.0.0.1:5000".to_string(),
            key: beta_key,
        },
        alpha_operator,
        alpha_viewer,
    }
}

#[test]
fn a_key_of_one_project_never_sees_another_projects_data() {
    let tenants = tenants();
    let daemon = &tenants.daemon;
    let secrets_of_beta = ["beta-web", "secret-image", &tenants.beta.key];
    let mut outcomes: BTreeMap<String, u16> = BTreeMap::new();
    for (method, template) in endpoints(daemon) {
        let path = fill(&template, &tenants.beta);
        // Asking for beta by name, and asking without a project (the key's own, alpha).
        for query in ["?project=beta", ""] {
            let target = format!("{path}{query}");
            let response = call(daemon, &method, &target, &tenants.alpha_operator);
            assert!(
                response.status < 500,
                "{method} {target} answered {}: {}",
                response.status,
                response.body
            );
            let leaked = secrets_of_beta
                .iter()
                .find(|secret| response.body.contains(*secret));
            assert!(
                leaked.is_none() || !(200..300).contains(&response.status),
                "{method} {target} answered {} with beta's {:?}: {}",
                response.status,
                leaked,
                response.body
            );
            // Routes without a project (the key's own keys, audit and projects; the API
            // description; health) answer, but with nothing of beta, as checked above.
            let without_project = [
                "/api/v1/keys",
                "/api/v1/audit",
                "/api/v1/projects",
                "/openapi.json",
                "/healthz",
                "/api/v1/sessions",
            ]
            .iter()
            .any(|prefix| template.starts_with(prefix));
            if query == "?project=beta" && !without_project {
                assert!(
                    matches!(response.status, 403 | 404),
                    "{method} {target} answered {} for a key of alpha: {}",
                    response.status,
                    response.body
                );
            }
            outcomes.insert(format!("{method} {target}"), response.status);
        }
    }
    println!("{} calls with a key of alpha:", outcomes.len());
    for (call, status) in &outcomes {
        println!("  {status} {call}");
    }
    // Its own project answers as usual.
    let own = call(daemon, "GET", "/api/v1/workloads", &tenants.alpha_operator);
    assert_eq!(own.status, 200, "{}", own.body);
    let projects = call(daemon, "GET", "/api/v1/projects", &tenants.alpha_operator);
    assert_eq!(projects.status, 200);
    assert!(
        projects.body.contains("alpha") && !projects.body.contains("beta"),
        "{}",
        projects.body
    );
    // The header names a project as the query does.
    let by_header = http_request_with_project(daemon, &tenants.alpha_operator, "beta");
    assert_eq!(by_header.status, 403, "{}", by_header.body);
}

fn http_request_with_project(daemon: &Daemon, key: &str, project: &str) -> HttpResponse {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(daemon.address()).expect("connect");
    write!(
        stream,
        "GET /api/v1/workloads HTTP/1.0\r\nAuthorization: Bearer {key}\r\nX-Ward-Project: {project}\r\n\r\n"
    )
    .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|status| status.parse().ok())
        .expect("status");
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body)
        .unwrap_or_default();
    HttpResponse {
        status,
        body: body.to_string(),
    }
}

#[test]
fn a_viewer_key_is_refused_every_state_changing_call() {
    let tenants = tenants();
    let daemon = &tenants.daemon;
    let own = Names {
        workload: "alpha-web".to_string(),
        image: "docker.io/library/busybox:1".to_string(),
        registry: "127.0.0.1:5000".to_string(),
        key: "000000000000".to_string(),
    };
    let mut refused = 0;
    for (method, template) in endpoints(daemon) {
        let changes_state = method != "GET" || template.ends_with("/exec");
        let path = fill(&template, &own);
        let response = call(daemon, &method, &path, &tenants.alpha_viewer);
        // Export and completions only read; logging in is open to anyone (with a name and a
        // password).
        let exempt = [
            "/api/v1/images/export",
            "/api/v1/sessions",
            "/v1/chat/completions",
            "/v1/completions",
            "/v1/embeddings",
        ]
        .contains(&template.as_str());
        if changes_state && !exempt {
            assert_eq!(
                response.status, 403,
                "{method} {path} answered {} to a viewer: {}",
                response.status, response.body
            );
            refused += 1;
        } else {
            assert!(response.status < 500, "{method} {path}: {}", response.body);
        }
    }
    println!("{refused} state-changing calls refused to a viewer");
    // The CLI says why, in one line.
    let output = daemon
        .ward_command(&["run", "--name", "nope", "--", "true"])
        .env("WARD_TOKEN", &tenants.alpha_viewer)
        .output()
        .expect("run ward");
    assert_one_error_line(&output, "needs operator");
}

#[test]
fn audit_log_records_who_did_what_and_pinpoints_an_altered_row() {
    let daemon = Daemon::start();
    ward_ok(&daemon, &["project", "create", "alpha"]);
    let (key_id, key) = create_key(
        &daemon,
        &["ops", "--project", "alpha", "--role", "operator"],
    );
    let as_key = |arguments: &[&str]| {
        daemon
            .ward_command(arguments)
            .env("WARD_TOKEN", &key)
            .output()
            .expect("run ward")
    };
    let spec = r#"{"name": "audited", "command": ["sleep", "600"], "restart": "never", "network": "none"}"#;
    let created = http_request(
        daemon.address(),
        "POST",
        "/api/v1/workloads",
        Some(&key),
        Some(spec),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    assert_success(&as_key(&["rm", "-f", "audited"]));
    // A refused attempt is recorded too.
    assert!(!as_key(&["key", "create", "sneaky", "--role", "admin"])
        .status
        .success());
    ward_ok(&daemon, &["key", "revoke", &key_id]);

    let entries: Vec<Value> =
        serde_json::from_str(&ward_ok(&daemon, &["audit", "ls", "-o", "json"])).expect("JSON");
    println!("{}", ward_ok(&daemon, &["audit", "ls"]));
    let find = |action: &str| {
        entries
            .iter()
            .find(|entry| entry["action"] == action)
            .unwrap_or_else(|| panic!("no {action} entry in {entries:?}"))
    };
    let create = find("POST /api/v1/workloads");
    assert_eq!(create["actor"], format!("key:{key_id}"));
    assert_eq!(create["project"], "alpha");
    assert_eq!(create["status"], 201);
    assert_eq!(create["outcome"], "ok");
    let denied = find("POST /api/v1/keys");
    let denied = if denied["actor"] == "admin-token" {
        entries
            .iter()
            .filter(|entry| entry["action"] == "POST /api/v1/keys")
            .find(|entry| entry["actor"] != "admin-token")
            .expect("the refused key creation")
    } else {
        denied
    };
    assert_eq!(denied["status"], 403, "{denied}");
    assert!(
        denied["outcome"]
            .as_str()
            .is_some_and(|outcome| outcome.contains("role")),
        "{denied}"
    );
    assert_eq!(
        find("DELETE /api/v1/keys/{id}")["target"],
        format!("/api/v1/keys/{key_id}")
    );
    // Written with the change, once: the gate does not add a second entry after it.
    let revocations = entries
        .iter()
        .filter(|entry| entry["action"] == "DELETE /api/v1/keys/{id}")
        .count();
    assert_eq!(revocations, 1, "{entries:?}");
    assert_eq!(find("DELETE /api/v1/keys/{id}")["status"], 200);
    // The revoked key is refused now.
    let revoked = as_key(&["ps"]);
    assert_one_error_line(&revoked, "key");

    let verified = ward_ok(&daemon, &["audit", "verify"]);
    assert!(verified.contains("intact"), "{verified}");

    // The log is append-only to SQL, and one byte changed behind its back is found.
    let database = rusqlite::Connection::open(daemon.data_dir().join("ward.db")).expect("open");
    let update = database.execute("UPDATE audit_log SET outcome = 'ok' WHERE seq = 1", []);
    assert!(update.is_err(), "the audit log accepted an UPDATE");
    let victim: i64 = 3;
    let target: String = database
        .query_row(
            "SELECT target FROM audit_log WHERE seq = ?1",
            [victim],
            |row| row.get(0),
        )
        .expect("read entry 3");
    let mut altered = target.into_bytes();
    let last = altered.len() - 1;
    altered[last] ^= 0x01;
    let altered = String::from_utf8(altered).expect("still text");
    database
        .execute_batch("DROP TRIGGER audit_log_no_update")
        .expect("drop the trigger");
    database
        .execute(
            "UPDATE audit_log SET target = ?1 WHERE seq = ?2",
            rusqlite::params![altered, victim],
        )
        .expect("alter entry 3");
    drop(database);
    let output = daemon.ward(&["audit", "verify"]);
    let line = assert_one_error_line(&output, "entry 3 is the first bad one");
    println!("after altering one byte of entry 3: {line}");
    assert!(stdout_of(&output).is_empty());
}

/// Every regular file under `dir`, recursively (symlinks not followed).
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return files;
    };
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            files.extend(files_under(&entry.path()));
        } else if kind.is_file() {
            files.push(entry.path());
        }
    }
    files
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(bytes))
}

#[test]
fn secret_values_reach_the_workload_and_nothing_else_in_clear() {
    if !common::sandbox_available("secret_values_reach_the_workload_and_nothing_else_in_clear") {
        return;
    }
    let daemon = Daemon::start_with_data_dir_under(std::path::Path::new("/var/lib"));
    let marker: u64 = rand::random();
    let file_value = format!("file-secret-{marker:016x}");
    let env_value = format!("env-secret-{marker:016x}");
    let set = |name: &str, value: &str| {
        let mut child = daemon
            .ward_command(&["secret", "set", name])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn ward secret set");
        use std::io::Write;
        writeln!(child.stdin.take().expect("stdin"), "{value}").expect("write the value");
        assert_success(&child.wait_with_output().expect("wait"));
    };
    set("db-password", &file_value);
    set("api-token", &env_value);

    let spec = r#"
name: uses-secrets
network: none
restart: never
secrets:
  - db-password
  - {name: api-token, env: API_TOKEN}
command:
  - sh
  - -c
  - |
    echo "file $(sha256sum /run/secrets/db-password | cut -c1-64)"
    echo "env $(printf %s "$API_TOKEN" | sha256sum | cut -c1-64)"
    echo "mode $(stat -c %a /run/secrets/db-password)"
    if echo x > /run/secrets/db-password; then echo "writable yes"; else echo "writable no"; fi
    echo probe-done
    exec sleep 600
"#;
    let spec_file = tempfile::NamedTempFile::new().expect("spec file");
    std::fs::write(spec_file.path(), spec).expect("write the spec");
    ward_ok(
        &daemon,
        &["apply", "-f", spec_file.path().to_str().expect("path")],
    );
    let report = daemon.wait_for(
        "the secret probe",
        std::time::Duration::from_secs(30),
        || {
            let logs = stdout_of(&daemon.ward(&["logs", "uses-secrets"]));
            logs.contains("probe-done").then_some(logs)
        },
    );
    println!("{report}");
    assert!(
        report.contains(&format!("file {}", sha256_hex(file_value.as_bytes()))),
        "{report}"
    );
    assert!(
        report.contains(&format!("env {}", sha256_hex(env_value.as_bytes()))),
        "{report}"
    );
    assert!(report.contains("mode 400"), "{report}");
    assert!(report.contains("writable no"), "{report}");

    // Reading a value needs secrets:read, and is audited.
    let (_, operator) = create_key(
        &daemon,
        &["ops", "--role", "operator", "--project", "default"],
    );
    let refused = daemon
        .ward_command(&["secret", "get", "db-password"])
        .env("WARD_TOKEN", &operator)
        .output()
        .expect("run ward");
    assert_one_error_line(&refused, "secrets:read");
    assert_eq!(
        ward_ok(&daemon, &["secret", "get", "db-password"]),
        file_value
    );

    // Now look for either value everywhere Ward writes or answers.
    let mut answers = String::new();
    for arguments in [
        &["inspect", "uses-secrets", "-o", "json"][..],
        &["ps", "-a", "-o", "json"],
        &["events", "-o", "json"],
        &["audit", "ls", "-o", "json"],
        &["secret", "ls", "-o", "json"],
        &["key", "ls", "-o", "json"],
        &[
            "apply",
            "-f",
            spec_file.path().to_str().expect("path"),
            "--dry-run",
        ],
    ] {
        answers.push_str(&ward_ok(&daemon, arguments));
    }
    answers.push_str(&daemon.api_get("/metrics"));
    answers.push_str(&daemon.log());
    let audit = ward_ok(&daemon, &["audit", "ls"]);
    assert!(
        audit.contains("GET /api/v1/secrets/{name}/value"),
        "{audit}"
    );
    for value in [&file_value, &env_value] {
        assert!(
            !answers.contains(value.as_str()),
            "{value} appears in an answer or the daemon log"
        );
    }
    let mut scanned = 0;
    for path in files_under(daemon.data_dir()) {
        let bytes = std::fs::read(&path).unwrap_or_default();
        scanned += 1;
        let holds = |value: &str| {
            bytes
                .windows(value.len())
                .any(|window| window == value.as_bytes())
        };
        assert!(
            !holds(&file_value),
            "{} holds the file secret in clear",
            path.display()
        );
        // A variable reaches the process through the OCI runtime's config.json; nowhere else.
        if path.file_name().is_some_and(|name| name != "config.json") {
            assert!(
                !holds(&env_value),
                "{} holds the variable secret in clear",
                path.display()
            );
        }
    }
    println!("{scanned} files of the data directory scanned");
    ward_ok(&daemon, &["rm", "-f", "uses-secrets"]);
}

#[test]
fn a_key_past_its_rate_gets_429_with_retry_after() {
    let daemon = Daemon::start_with_config("rate_limit: {per_second: 1, burst: 5}\n");
    let (_, key) = create_key(
        &daemon,
        &["busy", "--role", "viewer", "--project", "default"],
    );
    let statuses: Vec<HttpResponse> = (0..8)
        .map(|_| {
            http_request(
                daemon.address(),
                "GET",
                "/api/v1/workloads",
                Some(&key),
                None,
            )
        })
        .collect();
    let limited = statuses
        .iter()
        .filter(|response| response.status == 429)
        .count();
    assert!((2..=3).contains(&limited), "{limited} of 8 calls limited");
    let refused = statuses
        .iter()
        .find(|response| response.status == 429)
        .expect("a 429");
    let error: Value = serde_json::from_str(&refused.body).expect("a JSON error");
    assert_eq!(error["error"]["code"], "rate_limited");
    // The admin token is the host's own and is not limited.
    for _ in 0..20 {
        let answer = http_request(
            daemon.address(),
            "GET",
            "/api/v1/workloads",
            Some(daemon.token()),
            None,
        );
        assert_eq!(answer.status, 200);
    }
    // A limited answer says when to come back.
    let headers = (0..10)
        .map(|_| raw_head(&daemon, &key))
        .find(|head| head.contains(" 429 "))
        .expect("a 429 within ten quick calls at one call per second");
    assert!(
        headers.to_ascii_lowercase().contains("retry-after: 1"),
        "{headers}"
    );
}

/// The head of one `GET /api/v1/workloads` answer with `key`.
fn raw_head(daemon: &Daemon, key: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(daemon.address()).expect("connect");
    write!(
        stream,
        "GET /api/v1/workloads HTTP/1.0\r\nAuthorization: Bearer {key}\r\n\r\n"
    )
    .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    response
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn an_oversized_body_is_refused_with_413() {
    let daemon = Daemon::start();
    let huge = format!("{{\"value\": \"{}\"}}", "x".repeat(5 << 20));
    let answer = http_request(
        daemon.address(),
        "PUT",
        "/api/v1/secrets/big",
        Some(daemon.token()),
        Some(&huge),
    );
    assert_eq!(answer.status, 413, "{}", answer.body);
    let error: Value = serde_json::from_str(&answer.body).expect("a JSON error");
    assert_eq!(error["error"]["code"], "too_large");
    let listed = ward_ok(&daemon, &["secret", "ls", "-o", "json"]);
    assert_eq!(listed.trim(), "[]");
}

/// `ward --project PROJECT ARGS...` as the admin.
fn in_project(daemon: &Daemon, project: &str, arguments: &[&str]) -> std::process::Output {
    let mut command = vec!["--project", project];
    command.extend_from_slice(arguments);
    daemon.ward(&command)
}

#[test]
fn quotas_refuse_creates_scales_and_updates_with_the_numbers() {
    let daemon = Daemon::start();
    ward_ok(
        &daemon,
        &[
            "--project",
            "q",
            "quota",
            "set",
            "--cpu",
            "1",
            "--memory",
            "256MiB",
            "--workloads",
            "2",
            "--replicas",
            "3",
        ],
    );
    let run = |name: &str, extra: &[&str]| {
        let mut arguments = vec![
            "run",
            "--name",
            name,
            "--network",
            "none",
            "--restart",
            "never",
        ];
        arguments.extend_from_slice(extra);
        arguments.extend_from_slice(&["--", "sleep", "600"]);
        in_project(&daemon, "q", &arguments)
    };
    assert_success(&run("a", &["--cpus", "0.5", "--memory", "128MiB"]));
    let line = assert_one_error_line(
        &run("b", &["--memory", "256MiB"]),
        "quota memory of project q",
    );
    assert!(
        line.contains("128MiB in use, this change makes it 384MiB, over the limit of 256MiB"),
        "{line}"
    );
    assert_success(&run("b", &["--memory", "64MiB"]));
    let line = assert_one_error_line(&run("c", &[]), "quota workloads of project q");
    assert!(
        line.contains("2 in use, this change makes it 3, over the limit of 2"),
        "{line}"
    );

    let spec_file = tempfile::NamedTempFile::new().expect("spec file");
    let apply = |spec: &str| {
        std::fs::write(spec_file.path(), spec).expect("write the spec");
        in_project(
            &daemon,
            "q",
            &["apply", "-f", spec_file.path().to_str().expect("path")],
        )
    };
    let scaled = apply(
        "name: a\nnetwork: none\nrestart: never\nreplicas: 3\nresources: {cpu: 0.5, memory: 64MiB}\ncommand: [sleep, \"600\"]\n",
    );
    let line = assert_one_error_line(&scaled, "quota");
    assert!(line.contains("over the limit"), "{line}");
    let updated = apply(
        "name: a\nnetwork: none\nrestart: never\nresources: {cpu: 2, memory: 128MiB}\ncommand: [sleep, \"600\"]\n",
    );
    let line = assert_one_error_line(&updated, "quota cpu of project q");
    assert!(line.contains("over the limit of 1 cores"), "{line}");

    // Nothing refused was applied.
    let listed: Vec<Value> = serde_json::from_str(&assert_success(&in_project(
        &daemon,
        "q",
        &["ps", "-a", "-o", "json"],
    )))
    .expect("JSON");
    let summary: Vec<(String, u64)> = listed
        .iter()
        .map(|workload| {
            (
                workload["name"].as_str().unwrap_or_default().to_string(),
                workload["replicas"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(summary, vec![("a".to_string(), 1), ("b".to_string(), 1)]);
    let quota: Value = serde_json::from_str(&assert_success(&in_project(
        &daemon,
        "q",
        &["quota", "show", "-o", "json"],
    )))
    .expect("JSON");
    assert_eq!(quota["usage"]["workloads"], 2);
    assert_eq!(quota["usage"]["memory"], 192 << 20);
    println!(
        "{}",
        assert_success(&in_project(&daemon, "q", &["quota", "show"]))
    );
    // A key of the project sees its quota and cannot raise it.
    let (_, admin_of_q) = create_key(&daemon, &["q-admin", "--project", "q", "--role", "admin"]);
    let raised = daemon
        .ward_command(&["quota", "set", "--workloads", "100"])
        .env("WARD_TOKEN", &admin_of_q)
        .output()
        .expect("run ward");
    assert_one_error_line(&raised, "every project");
}

#[test]
fn a_project_cannot_use_more_memory_than_its_quota() {
    if !common::sandbox_available("a_project_cannot_use_more_memory_than_its_quota") {
        return;
    }
    let daemon = Daemon::start_with_data_dir_under(std::path::Path::new("/var/lib"));
    ward_ok(
        &daemon,
        &["--project", "small", "quota", "set", "--memory", "64MiB"],
    );
    // No memory limit of its own: the project's cap is all that holds it.
    assert_success(&in_project(
        &daemon,
        "small",
        &[
            "run",
            "--name",
            "hog",
            "--network",
            "none",
            "--restart",
            "never",
            "--",
            "dd",
            "if=/dev/zero",
            "of=/dev/null",
            "bs=256M",
            "count=1",
        ],
    ));
    let document = daemon.wait_for(
        "the hog to be killed",
        std::time::Duration::from_secs(30),
        || {
            let document: Value = serde_json::from_str(&stdout_of(&in_project(
                &daemon,
                "small",
                &["inspect", "hog", "-o", "json"],
            )))
            .ok()?;
            (document["status"]["state"] == "failed").then_some(document)
        },
    );
    println!("{}", document["status"]);
    assert_eq!(
        document["status"]["oom_killed"], true,
        "{}",
        document["status"]
    );
}

#[test]
fn tls_on_request_serves_https_that_local_clients_trust() {
    let daemon = Daemon::start_with_config("tls: {self_signed: true}\n");
    let address = std::fs::read_to_string(daemon.data_dir().join("ward.addr")).expect("ward.addr");
    assert!(address.starts_with("https://127.0.0.1:"), "{address}");
    let certificate = daemon.data_dir().join("tls/cert.pem");
    let key = daemon.data_dir().join("tls/key.pem");
    assert!(certificate.is_file());
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&key).expect("stat the key").permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    // The CLI finds the address and the certificate on its own.
    ward_ok(&daemon, &["project", "create", "tls"]);
    let projects = ward_ok(&daemon, &["project", "ls"]);
    assert!(projects.contains("tls"), "{projects}");
    // Plain HTTP gets no answer from a TLS port.
    assert_eq!(common::http_get_status(daemon.address(), "/healthz"), None);
    // Another client that does not trust the certificate is refused at the handshake.
    let untrusted = daemon
        .ward_command(&["project", "ls"])
        .env("WARD_HOST", address.trim())
        .env("WARD_CA_CERT", "/nonexistent.pem")
        .output()
        .expect("run ward");
    let line = assert_one_error_line(&untrusted, "cannot reach");
    println!("an untrusting client: {line}");
    // exec runs over a wss:// WebSocket with the same trust.
    if common::sandbox_available("tls_on_request_serves_https_that_local_clients_trust (exec)") {
        ward_ok(
            &daemon,
            &[
                "run",
                "--name",
                "over-tls",
                "--network",
                "none",
                "--",
                "sleep",
                "600",
            ],
        );
        assert_eq!(
            ward_ok(&daemon, &["exec", "over-tls", "--", "echo", "hi"]),
            "hi\n"
        );
    }
}

#[test]
fn a_user_logs_in_and_acts_within_their_grant() {
    let daemon = Daemon::start();
    let home = tempfile::tempdir().expect("home for the sessions file");
    let as_client = |arguments: &[&str], stdin: Option<&str>| {
        let mut command = daemon.ward_command(arguments);
        command
            .env("HOME", home.path())
            .env_remove("XDG_CONFIG_HOME")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        match stdin {
            Some(text) => {
                command.stdin(std::process::Stdio::piped());
                let mut child = command.spawn().expect("spawn ward");
                use std::io::Write;
                writeln!(child.stdin.take().expect("stdin"), "{text}").expect("write");
                child.wait_with_output().expect("wait")
            }
            None => command.output().expect("run ward"),
        }
    };
    let password = "a long enough password";
    assert_success(&as_client(&["user", "create", "alice"], Some(password)));
    assert_success(&as_client(
        &[
            "--project",
            "web",
            "user",
            "grant",
            "alice",
            "--role",
            "operator",
        ],
        None,
    ));
    let listed = assert_success(&as_client(&["user", "ls"], None));
    assert!(listed.contains("web:operator"), "{listed}");
    assert!(!listed.contains(password));

    let refused = as_client(
        &["login", "-u", "alice", "--password-stdin"],
        Some("wrong password!"),
    );
    assert_one_error_line(&refused, "wrong username or password");
    let logged_in = assert_success(&as_client(
        &["login", "-u", "alice", "--password-stdin"],
        Some(password),
    ));
    assert!(
        logged_in.contains("Logged in as alice (operator of web)"),
        "{logged_in}"
    );
    let sessions = home.path().join(".config/ward/sessions.json");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&sessions)
            .expect("the sessions file")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    // The session, not the admin token, is who acts now: in web, not elsewhere.
    let spec = r#"{"name": "by-alice", "command": ["sleep", "600"], "restart": "never", "network": "none"}"#;
    std::fs::write(home.path().join("spec.json"), spec).expect("write the spec");
    assert_success(&as_client(
        &[
            "apply",
            "-f",
            home.path().join("spec.json").to_str().expect("path"),
        ],
        None,
    ));
    assert_one_error_line(&as_client(&["--project", "other", "ps"], None), "not other");
    assert_one_error_line(&as_client(&["key", "ls"], None), "needs admin");
    let audit = ward_ok(&daemon, &["audit", "ls", "-o", "json"]);
    let entries: Vec<Value> = serde_json::from_str(&audit).expect("JSON");
    assert!(
        entries.iter().any(|entry| entry["actor"] == "user:alice"
            && entry["action"] == "POST /api/v1/apply"
            && entry["project"] == "web"),
        "{audit}"
    );
    assert!(
        entries.iter().any(|entry| entry["actor"] == "user:alice"
            && entry["action"] == "POST /api/v1/sessions"
            && entry["status"] == 403),
        "{audit}"
    );

    // Logging out ends the session (a new password would too: see the unit tests).
    assert_success(&as_client(&["logout"], None));
    let after = assert_success(&as_client(&["key", "ls"], None));
    assert!(after.contains("ID"), "the admin token acts again: {after}");
    ward_ok(&daemon, &["audit", "verify"]);
}

/// CPU seconds `pid` has used (user and system), from `/proc`.
/// The parent of a process's cgroup, from `/proc/PID/cgroup` text: in the cgroup v1 `cpu`
/// hierarchy (`cpu_v1`) or in the v2 hierarchy, under `mount`.
fn group_dir(proc_cgroup: &str, cpu_v1: bool, mount: &str) -> Option<std::path::PathBuf> {
    proc_cgroup.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let controllers = fields.nth(1)?;
        let path = std::path::Path::new(fields.next()?);
        let wanted = if cpu_v1 {
            controllers.split(',').any(|name| name == "cpu")
        } else {
            controllers.is_empty()
        };
        if !wanted {
            return None;
        }
        Some(std::path::Path::new(mount).join(path.parent()?.strip_prefix("/").ok()?))
    })
}

fn cpu_seconds_of(pid: u64) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: f64 =
        fields[11].parse::<f64>().unwrap_or(0.0) + fields[12].parse::<f64>().unwrap_or(0.0);
    ticks / 100.0
}

#[test]
fn a_project_cannot_use_more_cpu_than_its_quota() {
    if !common::sandbox_available("a_project_cannot_use_more_cpu_than_its_quota") {
        return;
    }
    let daemon = Daemon::start_with_data_dir_under(std::path::Path::new("/var/lib"));
    ward_ok(
        &daemon,
        &["--project", "slow", "quota", "set", "--cpu", "0.25"],
    );
    // No CPU limit of its own: the project's cap is all that holds it.
    assert_success(&in_project(
        &daemon,
        "slow",
        &[
            "run",
            "--name",
            "spin",
            "--network",
            "none",
            "--",
            "sh",
            "-c",
            "while :; do :; done",
        ],
    ));
    let document: Value = serde_json::from_str(&stdout_of(&in_project(
        &daemon,
        "slow",
        &["inspect", "spin", "-o", "json"],
    )))
    .expect("JSON");
    let pid = document["status"]["pid"].as_u64().expect("a pid");
    let started = std::time::Instant::now();
    let before = cpu_seconds_of(pid);
    // Sampling an interval, not waiting for a condition.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let cores = (cpu_seconds_of(pid) - before) / started.elapsed().as_secs_f64();
    println!("a busy loop under a 0.25-core project quota used {cores:.2} cores");
    assert!(cores < 0.35, "{cores:.2} cores");

    // The project's group, capped above, is removed with the daemon once nothing uses it.
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("read cgroups");
    // The cpu controller's hierarchy: its own on cgroup v1, the one hierarchy on v2.
    let group_dirs: Vec<std::path::PathBuf> = group_dir(&cgroups, true, "/sys/fs/cgroup/cpu")
        .or_else(|| group_dir(&cgroups, false, "/sys/fs/cgroup"))
        .into_iter()
        .collect();
    assert!(!group_dirs.is_empty(), "no cpu cgroup in {cgroups}");
    assert!(group_dirs.iter().all(|dir| dir.exists()), "{group_dirs:?}");
    drop(daemon);
    for dir in group_dirs {
        assert!(
            !dir.exists(),
            "{} is left after the daemon stopped",
            dir.display()
        );
    }
}

/// The attack of a project operator on the host through volumes, and what stays possible.
#[test]
fn host_paths_need_a_grant_and_wards_own_files_are_out_of_reach() {
    let daemon = Daemon::start();
    ward_ok(&daemon, &["project", "create", "p2"]);
    let (_, operator) = create_key(
        &daemon,
        &["p2-ops", "--project", "p2", "--role", "operator"],
    );
    let (_, project_admin) =
        create_key(&daemon, &["p2-admin", "--project", "p2", "--role", "admin"]);
    let marker = tempfile::Builder::new()
        .prefix("ward-host-path-")
        .tempdir_in("/var/tmp")
        .expect("host dir");
    std::fs::set_permissions(
        marker.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o1777),
    )
    .expect("chmod");
    let written = marker.path().join("owned");
    let script = format!("echo x > /host{}", written.display());
    let run_as = |key: Option<&str>, name: &str, volume: &str| {
        let mut arguments = vec![
            "--project",
            "p2",
            "run",
            "--name",
            name,
            "--network",
            "none",
            "--restart",
            "never",
            "-v",
            volume,
        ];
        arguments.extend_from_slice(&["--", "sh", "-c", &script]);
        let mut command = daemon.ward_command(&arguments);
        if let Some(key) = key {
            command.env("WARD_TOKEN", key);
        }
        command.output().expect("run ward")
    };

    // An operator (and a project's admin) of p2: refused, naming the grant, nothing stored.
    for key in [&operator, &project_admin] {
        let line = assert_one_error_line(&run_as(Some(key), "x", "/:/host"), "host-paths");
        assert!(line.contains("capability"), "{line}");
    }
    assert!(!written.exists(), "a refused workload wrote to the host");
    let listed = ward_ok(&daemon, &["--project", "p2", "ps", "-a", "-o", "json"]);
    assert_eq!(listed.trim(), "[]", "a refused workload was stored");
    // Nor can a project's admin hand the grant to a key of its own.
    let mut grant = daemon.ward_command(&[
        "key",
        "create",
        "sneaky",
        "--project",
        "p2",
        "--role",
        "operator",
        "--capability",
        "host-paths",
    ]);
    grant.env("WARD_TOKEN", &project_admin);
    assert_one_error_line(
        &grant.output().expect("run ward"),
        "does not hold host-paths and cannot grant it",
    );
    // network: host and userns: host are an admin's of every project too.
    let mut host_network = daemon.ward_command(&[
        "--project",
        "p2",
        "run",
        "--name",
        "hostnet",
        "--network",
        "host",
        "--",
        "true",
    ]);
    host_network.env("WARD_TOKEN", &operator);
    assert_one_error_line(&host_network.output().expect("run ward"), "network: host");
    let mut host_users = daemon.ward_command(&[
        "--project",
        "p2",
        "run",
        "--name",
        "hostusers",
        "--network",
        "none",
        "--userns",
        "host",
        "--",
        "true",
    ]);
    host_users.env("WARD_TOKEN", &operator);
    assert_one_error_line(&host_users.output().expect("run ward"), "userns: host");

    // An admin of every project may, and the workload is still not the host's root: what it
    // writes belongs to its project's range.
    assert_success(&run_as(None, "x", "/:/host"));
    daemon.wait_for(
        "the write through /host",
        std::time::Duration::from_secs(20),
        || written.exists().then_some(()),
    );
    let owner = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&written).expect("stat"));
    assert!(owner >= 1 << 30, "written as host uid {owner}");
    ward_ok(&daemon, &["--project", "p2", "rm", "-f", "x"]);
    // So may a key granted host-paths.
    let (_, granted) = create_key(
        &daemon,
        &[
            "p2-host",
            "--project",
            "p2",
            "--role",
            "operator",
            "--capability",
            "host-paths",
        ],
    );
    std::fs::remove_file(&written).expect("remove");
    assert_success(&run_as(Some(&granted), "y", "/:/host"));
    daemon.wait_for(
        "the write through /host",
        std::time::Duration::from_secs(20),
        || written.exists().then_some(()),
    );

    // Ward's own files and the kernel's are refused for everyone, the admin included.
    let data_dir = daemon.data_dir().canonicalize().expect("data dir");
    let shm_run_root = std::fs::read_link(data_dir.join("run")).ok();
    let mut forbidden = vec![
        format!("{}:/d", data_dir.display()),
        format!("{}:/d", data_dir.join("instances").display()),
        "/dev/shm:/x".to_string(),
        "/proc:/x".to_string(),
        "/sys/kernel:/x".to_string(),
    ];
    forbidden.extend(shm_run_root.map(|path| format!("{}:/x", path.display())));
    for volume in &forbidden {
        for key in [None, Some(granted.as_str())] {
            assert_one_error_line(&run_as(key, "z", volume), "belongs to Ward or the kernel");
        }
    }
    // A link to them is no way around.
    let link_dir = tempfile::tempdir().expect("link dir");
    let link = link_dir.path().join("innocent");
    std::os::unix::fs::symlink(&data_dir, &link).expect("symlink");
    assert_one_error_line(
        &run_as(None, "z", &format!("{}:/d", link.display())),
        "goes through a link",
    );
}

/// What a workload prints when it tries `address:port` over TCP: `reached`, or `blocked`.
const CONNECT_PROBE: &str = r#"
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3).close()
    print("reached", flush=True)
except OSError as error:
    print("blocked", error, flush=True)
"#;

/// The logs of `name` in `project` once they contain `marker`.
fn logs_with(daemon: &Daemon, project: &str, name: &str, marker: &str) -> String {
    daemon.wait_for(
        &format!("{marker:?} in the logs of {project}/{name}"),
        std::time::Duration::from_secs(30),
        || {
            let output = in_project(daemon, project, &["logs", name]);
            let text = stdout_of(&output);
            text.contains(marker).then_some(text)
        },
    )
}

#[test]
fn projects_are_separate_networks_where_workloads_find_each_other_by_name() {
    if !common::sandbox_available(
        "projects_are_separate_networks_where_workloads_find_each_other_by_name",
    ) {
        return;
    }
    let daemon = Daemon::start();
    for project in ["alpha", "beta"] {
        ward_ok(&daemon, &["project", "create", project]);
    }
    let run = |project: &str, name: &str, command: &[&str]| {
        let mut arguments = vec!["run", "--name", name, "--restart", "never", "--"];
        arguments.extend_from_slice(command);
        assert_success(&in_project(&daemon, project, &arguments));
    };
    run("alpha", "api", &["python3", "-m", "http.server", "8000"]);
    let address = daemon.wait_for("api's address", std::time::Duration::from_secs(30), || {
        let output = in_project(&daemon, "alpha", &["inspect", "api", "-o", "json"]);
        let document: Value = serde_json::from_str(&stdout_of(&output)).ok()?;
        let instance = &document["status"]["instances"][0];
        (instance["state"] == "running")
            .then(|| instance["address"].as_str().map(str::to_string))
            .flatten()
    });

    // The server listens before anyone tries it.
    daemon.wait_for("api to listen", std::time::Duration::from_secs(30), || {
        let output = in_project(
            &daemon,
            "alpha",
            &[
                "exec",
                "api",
                "--",
                "python3",
                "-c",
                CONNECT_PROBE,
                "127.0.0.1",
                "8000",
            ],
        );
        stdout_of(&output).contains("reached").then_some(())
    });

    // What a workload of `project` gets trying `target`:8000, from its logs.
    let probe = |project: &str, name: &str, target: &str| {
        run(
            project,
            name,
            &["python3", "-c", CONNECT_PROBE, target, "8000"],
        );
        logs_with(&daemon, project, name, "ed")
    };

    // Within the project: by name, and by address.
    let logs = probe("alpha", "by-name", "api");
    assert!(logs.contains("reached"), "{logs}");
    let logs = probe("alpha", "by-address", &address);
    assert!(logs.contains("reached"), "{logs}");
    let hosts = in_project(
        &daemon,
        "alpha",
        &["exec", "api", "--", "cat", "/etc/hosts"],
    );
    assert!(
        stdout_of(&hosts).contains(&format!("{address}\tapi")),
        "{hosts:?}"
    );

    // From another project: not by address, and the name means nothing there.
    let logs = probe("beta", "intruder", &address);
    assert!(logs.contains("blocked"), "{logs}");
    let logs = probe("beta", "guess", "api");
    assert!(logs.contains("blocked"), "{logs}");

    // Gone from the project, gone from its names.
    ward_ok(
        &daemon,
        &["--project", "alpha", "rm", "-f", "by-name", "by-address"],
    );
    let remaining = in_project(
        &daemon,
        "alpha",
        &["exec", "api", "--", "cat", "/etc/hosts"],
    );
    assert!(!stdout_of(&remaining).contains("by-name"), "{remaining:?}");
}

/// `curl` with the given arguments, its output as text (headers included with `-i`).
fn curl(arguments: &[&str]) -> String {
    let output = std::process::Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "10"])
        .args(arguments)
        .output()
        .expect("curl (apt-get install curl)");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A browser holds its session in an HttpOnly, SameSite=Strict cookie: with it alone, an
/// EventSource reads events and a WebSocket opens exec, while a change without the session's
/// anti-forgery token is refused, and a WebSocket from another site too.
#[test]
fn a_session_cookie_reads_events_and_opens_exec_and_a_change_needs_the_csrf_token() {
    let daemon = Daemon::start();
    let password = "a long enough password";
    let created = http_request(
        daemon.address(),
        "POST",
        "/api/v1/users",
        Some(daemon.token()),
        Some(&format!(
            r#"{{"name": "browser", "password": "{password}"}}"#
        )),
    );
    assert_eq!(created.status, 200, "{}", created.body);
    let granted = http_request(
        daemon.address(),
        "POST",
        "/api/v1/users/browser/grants",
        Some(daemon.token()),
        Some(r#"{"project": "default", "role": "operator", "capabilities": ["exec"]}"#),
    );
    assert_eq!(granted.status, 200, "{}", granted.body);

    let jar = tempfile::NamedTempFile::new().expect("cookie jar");
    let jar_path = jar.path().to_str().expect("path");
    let url = daemon.url();
    let login = curl(&[
        "-i",
        "-c",
        jar_path,
        "-H",
        "Content-Type: application/json",
        "-d",
        &format!(r#"{{"username": "browser", "password": "{password}"}}"#),
        &format!("{url}/api/v1/sessions"),
    ]);
    let session_cookie = login
        .lines()
        .find(|line| {
            line.to_ascii_lowercase()
                .starts_with("set-cookie: ward_session=")
        })
        .unwrap_or_else(|| panic!("no session cookie in {login}"));
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(session_cookie.contains(attribute), "{session_cookie}");
    }
    let body = login.split("\r\n\r\n").last().expect("a body");
    let csrf = serde_json::from_str::<Value>(body).expect("JSON")["csrf_token"]
        .as_str()
        .expect("a csrf_token")
        .to_string();

    // A change with the cookie alone is refused, and nothing is created.
    let spec = r#"{"name": "cookie-made", "command": ["sleep", "600"], "network": "none"}"#;
    // A POST of `spec` with the session cookie, and the anti-forgery header when given.
    let post_with_cookie = |csrf: Option<&str>, path: &str| {
        let header = csrf.map(|token| format!("X-CSRF-Token: {token}"));
        let mut arguments = vec!["-i", "-b", jar_path, "-H", "Content-Type: application/json"];
        if let Some(header) = &header {
            arguments.extend(["-H", header.as_str()]);
        }
        let target = format!("{url}{path}");
        arguments.extend(["-d", spec, target.as_str()]);
        curl(&arguments)
    };
    let forged = post_with_cookie(None, "/api/v1/workloads");
    assert!(forged.starts_with("HTTP/1.1 403"), "{forged}");
    assert!(forged.contains("X-CSRF-Token"), "{forged}");
    let absent = http_request(
        daemon.address(),
        "GET",
        "/api/v1/workloads/cookie-made",
        Some(daemon.token()),
        None,
    );
    assert_eq!(absent.status, 404, "{}", absent.body);
    let wrong = post_with_cookie(Some("forged"), "/api/v1/workloads");
    assert!(wrong.starts_with("HTTP/1.1 403"), "{wrong}");

    // With the token it goes through, and the audit log names the user.
    let made = post_with_cookie(Some(&csrf), "/api/v1/workloads?wait=true");
    assert!(made.starts_with("HTTP/1.1 201"), "{made}");

    // The event stream, read as an EventSource does: the cookie and nothing else.
    let events = curl(&[
        "-b",
        jar_path,
        "-H",
        "Accept: text/event-stream",
        &format!("{url}/api/v1/events"),
    ]);
    assert!(
        events.contains("data:") && events.contains("cookie-made"),
        "{events}"
    );

    // The exec WebSocket opens with the cookie, from the API's own origin only.
    let upgrade = |origin: &str| {
        curl(&[
            "-i",
            "--max-time",
            "3",
            "-b",
            jar_path,
            "-H",
            "Connection: Upgrade",
            "-H",
            "Upgrade: websocket",
            "-H",
            "Sec-WebSocket-Version: 13",
            "-H",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "-H",
            &format!("Origin: {origin}"),
            &format!("{url}/api/v1/workloads/cookie-made/exec?command=true"),
        ])
    };
    let foreign = upgrade("https://evil.example");
    assert!(foreign.starts_with("HTTP/1.1 403"), "{foreign}");
    if common::sandbox_available("a_session_cookie_… (exec)") {
        let opened = upgrade(&url);
        assert!(opened.starts_with("HTTP/1.1 101"), "{opened}");
    }

    // Bearer keys work as before, without any token, and logging out clears the cookies.
    let listed = http_request(
        daemon.address(),
        "GET",
        "/api/v1/workloads",
        Some(daemon.token()),
        None,
    );
    assert_eq!(listed.status, 200);
    let logout = curl(&[
        "-i",
        "-X",
        "DELETE",
        "-b",
        jar_path,
        "-H",
        &format!("X-CSRF-Token: {csrf}"),
        &format!("{url}/api/v1/sessions"),
    ]);
    assert!(logout.starts_with("HTTP/1.1 200"), "{logout}");
    assert!(
        logout.contains("ward_session=; Path=/; Max-Age=0"),
        "{logout}"
    );
    let audit = daemon.api_get("/api/v1/audit");
    assert!(
        audit.contains("\"actor\":\"user:browser\"") && audit.contains("POST /api/v1/workloads"),
        "{audit}"
    );
}

/// Sizes past what any machine has are refused by name, before a sum over replicas could
/// wrap around below a quota.
#[test]
fn a_size_that_would_overflow_the_quota_is_refused_by_name() {
    let daemon = Daemon::start();
    ward_ok(&daemon, &["project", "create", "tight"]);
    let quota = http_request(
        daemon.address(),
        "PUT",
        "/api/v1/quota?project=tight",
        Some(daemon.token()),
        Some(r#"{"memory": "1GiB"}"#),
    );
    assert_eq!(quota.status, 200, "{}", quota.body);
    let spec = r#"{"workloads": [{"name": "huge", "command": ["true"], "replicas": 4, "resources": {"memory": "4194304T"}}]}"#;
    let refused = http_request(
        daemon.address(),
        "POST",
        "/api/v1/apply?project=tight",
        Some(daemon.token()),
        Some(spec),
    );
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(
        refused.body.contains("resources.memory") && refused.body.contains("too large"),
        "{}",
        refused.body
    );
    let listed = http_request(
        daemon.address(),
        "GET",
        "/api/v1/workloads?project=tight&all=true",
        Some(daemon.token()),
        None,
    );
    assert!(!listed.body.contains("huge"), "{}", listed.body);
}

/// The errors axum makes by itself (an oversized body, a query that does not parse, a path
/// parameter of the wrong type) come in the contract's JSON like every other error.
#[test]
fn every_error_body_is_the_contracts_json() {
    let daemon = Daemon::start();
    let huge = format!("{{\"name\": \"{}\"}}", "x".repeat(5 << 20));
    let cases = [
        ("POST", "/api/v1/workloads", Some(huge.as_str()), 413),
        ("GET", "/api/v1/workloads/x/logs?tail=lots", None, 400),
        ("GET", "/api/v1/events?since=yesterday", None, 400),
        ("GET", "/api/v1/workloads?all=maybe", None, 400),
    ];
    for (method, path, body, status) in cases {
        let answer = http_request(daemon.address(), method, path, Some(daemon.token()), body);
        assert_eq!(answer.status, status, "{method} {path}: {}", answer.body);
        let error: Value = serde_json::from_str(&answer.body)
            .unwrap_or_else(|_| panic!("{method} {path} answered text: {}", answer.body));
        assert!(
            error["error"]["code"].is_string() && error["error"]["message"].is_string(),
            "{method} {path}: {error}"
        );
    }
}
