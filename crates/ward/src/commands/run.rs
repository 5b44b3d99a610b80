//! `ward run`: turns flags into a raw workload spec, creates the workload and waits until it
//! runs or has failed to start; the workload then stays in the background (like `podman run -d`).

use serde_json::{json, Map, Value};

use ward_client::LogOptions;

use crate::cli::{EnvironmentFlag, RunArgs};
use crate::commands::Context;
use crate::output;

pub async fn run(context: &Context, arguments: RunArgs) -> anyhow::Result<i32> {
    if arguments.interactive && !arguments.tty {
        anyhow::bail!(
            "-i: a workload's own process takes input through its terminal; add -t (ward run -it …)"
        );
    }
    if arguments.rm && arguments.restart.is_some() {
        anyhow::bail!(
            "restart: --rm removes the workload once it exits, so it never restarts; drop --restart or --rm"
        );
    }
    let mut spec = build_spec(&arguments, &|key| std::env::var(key).ok(), rand::random())?;
    // In the foreground, on this terminal: what ends is over, as with `docker run -it`.
    let attached = arguments.interactive && arguments.tty && !arguments.detach;
    if attached && arguments.restart.is_none() {
        spec["restart"] = json!("never");
    }
    if let Some(note) = arguments.cpus.as_deref().and_then(more_cores_than_the_host) {
        output::note(&note);
    }
    if arguments.rm {
        spec["restart"] = json!("never");
    }
    let is_container = spec
        .get("kind")
        .and_then(Value::as_str)
        .is_none_or(|kind| kind == "container");
    let (image, _) = image_and_command(&arguments)?;
    if let (Some(image), true) = (image, is_container) {
        let positional = !arguments.after_dashes && arguments.image.is_none();
        let program = positional.then(|| host_program(image)).flatten();
        if let Some(program) = &program {
            output::note(&format!(
                "running the image {image}; for the host program {program}, put it after --: 'ward run -- {image} …'"
            ));
        }
        if let Err(error) = ensure_image(context, image).await {
            match program {
                Some(_) => anyhow::bail!(
                    "{error}; for the host program {image}, put it after --: 'ward run -- {image} …'"
                ),
                None => return Err(error),
            }
        }
    }
    let name = spec.get("name").and_then(Value::as_str).unwrap_or_default();
    if arguments.replace {
        match context.client.delete_workload(name, true).await {
            Err(error) if !error.is_not_found() => return Err(error.into()),
            _ => {}
        }
    }
    let document = context.client.create_workload(&spec, true).await?;
    let failed = document.status.state == "failed";
    if attached && !failed {
        return run_attached(context, document.name(), arguments.rm).await;
    }
    if arguments.rm && !failed {
        return run_in_foreground(context, document.name()).await;
    }
    if context.json() {
        output::print_json(&document)?;
    } else if !failed {
        output::print_line(document.name())?;
    }
    if failed {
        let name = document.name();
        let reason = document
            .status
            .message
            .as_deref()
            .unwrap_or("it exited right away");
        anyhow::bail!(
            "workload {name} failed to start: {reason}; fix the command and run it again with --replace, or remove it with 'ward rm {name}'"
        );
    }
    Ok(0)
}

/// `run -it`: this terminal attached to the workload's until it ends; its exit status, and
/// with `--rm` the workload removed. A workload that ended before the attach shows its output.
async fn run_attached(context: &Context, name: &str, remove: bool) -> anyhow::Result<i32> {
    let status = match crate::commands::exec::attach(context, name, None).await {
        Ok(status) => status,
        Err(error) => {
            let document = context.client.get_workload(name).await?;
            if !matches!(
                document.status.state.as_str(),
                "exited" | "failed" | "stopped"
            ) {
                return Err(error);
            }
            let options = LogOptions {
                follow: false,
                tail: None,
                since: None,
            };
            crate::commands::logs::print_logs(context, name, &options, false).await?;
            document.status.exit_code.unwrap_or(0)
        }
    };
    if remove {
        context.client.delete_workload(name, true).await?;
    }
    Ok(status)
}

/// `run --rm`: prints the workload's output until it has exited, removes it and exits with
/// its exit code (as `docker run --rm` does); Ctrl-C removes it at once.
async fn run_in_foreground(context: &Context, name: &str) -> anyhow::Result<i32> {
    let follow = crate::commands::logs::print_logs(
        context,
        name,
        &LogOptions {
            follow: true,
            tail: None,
            since: None,
        },
        false,
    );
    let interrupted = tokio::select! {
        followed = follow => { followed?; false }
        _ = tokio::signal::ctrl_c() => true,
    };
    let exit_code = if interrupted {
        130
    } else {
        let document = context.client.get_workload(name).await?;
        document
            .status
            .instances
            .iter()
            .filter_map(|instance| instance.exit_code)
            .find(|code| *code != 0)
            .unwrap_or(0)
    };
    context.client.delete_workload(name, true).await?;
    Ok(exit_code)
}

/// A word for `--cpus` past the cores this host has: the limit is accepted (a workload may
/// move to a bigger host) but bounds nothing here, as `docker run --cpus` would refuse.
fn more_cores_than_the_host(cpus: &str) -> Option<String> {
    let asked = ward_spec::units::parse_cpu(cpus).ok()?;
    let cores = std::thread::available_parallelism().ok()?.get();
    (asked > cores as f64).then(|| {
        format!("--cpus {cpus}: this host has {cores} cores, so the workload may use all of them and the limit holds it back from none")
    })
}

/// The host program a bare `ward run WORD` could also have meant: `WORD` when it is a plain
/// name found on this shell's `PATH`.
fn host_program(word: &str) -> Option<String> {
    if word.contains(['/', ':', '@']) {
        return None;
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|directory| directory.join(word))
        .find(|candidate| candidate.is_file())
        .map(|_| word.to_string())
}

/// Makes sure the daemon has `image`, pulling it if not, so that an image that does not exist
/// is refused before any workload is stored (as `docker run` pulls before it creates).
pub async fn ensure_image(context: &Context, image: &str) -> anyhow::Result<()> {
    match context.client.get_image(image).await {
        Ok(_) => Ok(()),
        Err(error) if error.is_not_found() => match context.client.pull_image(image, false).await {
            Ok(_) => Ok(()),
            Err(error) => anyhow::bail!("cannot pull image {image}: {error}"),
        },
        Err(error) => Err(error.into()),
    }
}

/// The spec in the raw form people write in YAML; the daemon validates and normalises it.
/// `lookup_environment` answers `-e KEY` without a value; `random` makes generated names unique.
pub fn build_spec(
    arguments: &RunArgs,
    lookup_environment: &dyn Fn(&str) -> Option<String>,
    random: u16,
) -> anyhow::Result<Value> {
    let (image, command) = image_and_command(arguments)?;
    let name = match &arguments.name {
        Some(name) => name.clone(),
        None => generate_name(command, image, random),
    };
    let mut spec = Map::new();
    spec.insert("name".to_string(), json!(name));
    insert_if_some(
        &mut spec,
        "kind",
        arguments.kind.as_ref().map(|kind| json!(kind)),
    );
    insert_if_some(&mut spec, "image", image.map(|image| json!(image)));
    if !command.is_empty() {
        spec.insert("command".to_string(), json!(command));
    }
    insert_if_some(
        &mut spec,
        "workdir",
        arguments.workdir.as_ref().map(|workdir| json!(workdir)),
    );

    let mut environment = Map::new();
    for (key, value) in resolve_environment(&arguments.env, lookup_environment) {
        environment.insert(key, json!(value));
    }
    if !environment.is_empty() {
        spec.insert("env".to_string(), Value::Object(environment));
    }

    let mut resources = Map::new();
    insert_if_some(
        &mut resources,
        "memory",
        arguments.memory.as_ref().map(|memory| json!(memory)),
    );
    insert_if_some(
        &mut resources,
        "cpu",
        arguments.cpus.as_ref().map(|cpus| json!(cpus)),
    );
    insert_if_some(
        &mut resources,
        "pids",
        arguments.pids.map(|pids| json!(pids)),
    );
    if !resources.is_empty() {
        spec.insert("resources".to_string(), Value::Object(resources));
    }

    if !arguments.secrets.is_empty() {
        spec.insert("secrets".to_string(), json!(arguments.secrets));
    }
    if arguments.publish_all {
        spec.insert("publish_all".to_string(), json!(true));
    }
    if !arguments.publish.is_empty() {
        spec.insert("ports".to_string(), json!(arguments.publish));
    }
    if !arguments.volumes.is_empty() {
        spec.insert("volumes".to_string(), json!(arguments.volumes));
    }
    insert_if_some(
        &mut spec,
        "network",
        arguments.network.as_ref().map(|network| json!(network)),
    );
    insert_if_some(
        &mut spec,
        "userns",
        arguments.userns.as_ref().map(|userns| json!(userns)),
    );
    insert_if_some(
        &mut spec,
        "restart",
        arguments.restart.as_ref().map(|restart| json!(restart)),
    );
    insert_if_some(&mut spec, "health", health_check(arguments));
    insert_if_some(
        &mut spec,
        "replicas",
        arguments.replicas.map(|replicas| json!(replicas)),
    );
    if arguments.tty {
        spec.insert("tty".to_string(), json!(true));
    }
    if !arguments.labels.is_empty() {
        let labels: Map<String, Value> = arguments
            .labels
            .iter()
            .map(|(key, value)| (key.clone(), json!(value)))
            .collect();
        spec.insert("labels".to_string(), Value::Object(labels));
    }
    Ok(Value::Object(spec))
}

/// The image and the command of a run: `IMAGE [ARGS...]` as `docker run` takes them (the
/// arguments replace the image's Cmd; a `--` between them is allowed), `--image REF`, and a
/// host program after `--`.
pub fn image_and_command(arguments: &RunArgs) -> anyhow::Result<(Option<&str>, &[String])> {
    let words = arguments.command.as_slice();
    let flag = arguments.image.as_deref();
    if arguments.after_dashes || words.is_empty() {
        if words.is_empty() && flag.is_none() {
            anyhow::bail!(
                "command: nothing to run; give an image, like 'ward run nginx:1.27', or a host program after --, like 'ward run -- python3 -m http.server'"
            );
        }
        return Ok((flag, words));
    }
    let (image, rest) = words.split_first().expect("words is not empty");
    if let Some(flag) = flag {
        anyhow::bail!(
            "image: given twice, as --image {flag} and as {image}; give one, or put a host program after --, like 'ward run --image {flag} -- {image}'"
        );
    }
    let arguments = match rest.split_first() {
        Some((first, after)) if first == "--" => after,
        _ => rest,
    };
    Ok((Some(image.as_str()), arguments))
}

fn health_check(arguments: &RunArgs) -> Option<Value> {
    let (probe_kind, probe) = if let Some(http) = &arguments.health_http {
        ("http", json!(http))
    } else if let Some(port) = arguments.health_tcp {
        ("tcp", json!(port))
    } else if let Some(command) = &arguments.health_cmd {
        // A string runs through the shell, like Docker's --health-cmd.
        ("exec", json!(command))
    } else {
        return None;
    };
    let mut health = Map::new();
    health.insert(probe_kind.to_string(), probe);
    insert_if_some(
        &mut health,
        "interval",
        arguments
            .health_interval
            .as_ref()
            .map(|interval| json!(interval)),
    );
    insert_if_some(
        &mut health,
        "timeout",
        arguments
            .health_timeout
            .as_ref()
            .map(|timeout| json!(timeout)),
    );
    insert_if_some(
        &mut health,
        "retries",
        arguments.health_retries.map(|retries| json!(retries)),
    );
    Some(Value::Object(health))
}

fn insert_if_some(object: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    if let Some(value) = value {
        object.insert(key.to_string(), value);
    }
}

/// A Docker-like name: the image's or program's base name and four hex digits, like
/// `python3-4f2a`, reduced to what the name rule allows.
pub fn generate_name(command: &[String], image: Option<&str>, random: u16) -> String {
    let stem = match (image, command.first()) {
        (Some(image), _) => image_base_name(image),
        (None, Some(program)) => program.rsplit('/').next().unwrap_or(program).to_string(),
        (None, None) => String::new(),
    };
    let mut sanitized = String::new();
    for character in stem.to_ascii_lowercase().chars() {
        let allowed = character.is_ascii_lowercase() || character.is_ascii_digit();
        if allowed {
            sanitized.push(character);
        } else if !sanitized.is_empty() && !sanitized.ends_with('-') {
            sanitized.push('-');
        }
    }
    // 63 characters at most, five of them for `-` and the suffix.
    sanitized.truncate(58);
    let stem = sanitized.trim_end_matches('-');
    let stem = if stem.is_empty() { "workload" } else { stem };
    format!("{stem}-{random:04x}")
}

/// `ghcr.io/org/api:1.2@sha256:…` → `api`.
fn image_base_name(image: &str) -> String {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last_component = without_digest.rsplit('/').next().unwrap_or(without_digest);
    last_component
        .split(':')
        .next()
        .unwrap_or(last_component)
        .to_string()
}

/// The variables of `-e` flags: `KEY=VALUE` as given, and a bare `KEY` with the value
/// `lookup` finds (this shell's); like Docker, a bare key that is not set here is not set
/// there either.
pub fn resolve_environment(
    flags: &[EnvironmentFlag],
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Vec<(String, String)> {
    flags
        .iter()
        .filter_map(|flag| match flag {
            EnvironmentFlag::Assignment { key, value } => Some((key.clone(), value.clone())),
            EnvironmentFlag::Inherited { key } => lookup(key).map(|value| (key.clone(), value)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{parse_words, ClientCommand, Command};

    fn spec_for(arguments: &[&str]) -> Value {
        let words: Vec<std::ffi::OsString> = std::iter::once("ward")
            .chain(arguments.iter().copied())
            .map(Into::into)
            .collect();
        let command_line =
            parse_words(&words).unwrap_or_else(|error| panic!("{arguments:?}: {error}"));
        let Command::Client(ClientCommand::Run(run)) = command_line.command else {
            panic!("expected run")
        };
        let lookup = |key: &str| (key == "FROM_SHELL").then(|| "shell value".to_string());
        build_spec(&run, &lookup, 0x4f2a).expect("builds")
    }

    #[test]
    fn every_flag_lands_in_the_raw_spec() {
        let spec = spec_for(&[
            "run",
            "--name",
            "api",
            "--kind",
            "process",
            "-p",
            "8080:8000",
            "-p",
            "5353:53/udp",
            "-e",
            "MODE=prod",
            "-e",
            "FROM_SHELL",
            "-e",
            "UNSET_HERE",
            "--memory",
            "256MiB",
            "--cpus",
            "500m",
            "--pids",
            "64",
            "--restart",
            "always",
            "-v",
            "data:/data",
            "-v",
            "/srv:/srv:ro",
            "--network",
            "host",
            "--replicas",
            "2",
            "-l",
            "team=web",
            "--workdir",
            "/srv",
            "--health-http",
            "8000/healthz",
            "--health-interval",
            "5s",
            "--health-retries",
            "4",
            "--",
            "python3",
            "-m",
            "http.server",
            "8000",
        ]);
        assert_eq!(
            spec,
            json!({
                "name": "api",
                "kind": "process",
                "command": ["python3", "-m", "http.server", "8000"],
                "workdir": "/srv",
                "env": {"MODE": "prod", "FROM_SHELL": "shell value"},
                "resources": {"memory": "256MiB", "cpu": "500m", "pids": 64},
                "ports": ["8080:8000", "5353:53/udp"],
                "volumes": ["data:/data", "/srv:/srv:ro"],
                "network": "host",
                "restart": "always",
                "health": {"http": "8000/healthz", "interval": "5s", "retries": 4},
                "replicas": 2,
                "labels": {"team": "web"},
            })
        );
    }

    #[test]
    fn minimal_run_sends_only_name_and_command() {
        assert_eq!(
            spec_for(&["run", "--", "sleep", "60"]),
            json!({"name": "sleep-4f2a", "command": ["sleep", "60"]})
        );
        assert_eq!(
            spec_for(&[
                "run",
                "--health-cmd",
                "pg_isready",
                "--image",
                "postgres:16"
            ]),
            json!({"name": "postgres-4f2a", "image": "postgres:16", "health": {"exec": "pg_isready"}})
        );
    }

    #[test]
    fn an_image_comes_first_as_in_docker_run_and_a_host_program_after_dashes() {
        assert_eq!(
            spec_for(&["run", "nginx:1.27"]),
            json!({"name": "nginx-4f2a", "image": "nginx:1.27"})
        );
        assert_eq!(
            spec_for(&["run", "--name", "web", "nginx", "-g", "daemon off;"]),
            json!({"name": "web", "image": "nginx", "command": ["-g", "daemon off;"]})
        );
        assert_eq!(
            spec_for(&["run", "busybox", "--", "sh", "-c", "true"]),
            json!({"name": "busybox-4f2a", "image": "busybox", "command": ["sh", "-c", "true"]})
        );
        assert_eq!(
            spec_for(&["run", "-p", "80:80", "--", "nginx", "-t"]),
            json!({"name": "nginx-4f2a", "command": ["nginx", "-t"], "ports": ["80:80"]})
        );
        assert_eq!(
            spec_for(&["run", "--image", "busybox", "--", "sleep", "1"]),
            json!({"name": "busybox-4f2a", "image": "busybox", "command": ["sleep", "1"]})
        );
    }

    #[test]
    fn an_image_given_twice_or_nothing_to_run_is_refused() {
        let refusal = |arguments: &[&str]| {
            let words: Vec<std::ffi::OsString> = std::iter::once("ward")
                .chain(arguments.iter().copied())
                .map(Into::into)
                .collect();
            let Command::Client(ClientCommand::Run(run)) =
                parse_words(&words).expect("parses").command
            else {
                panic!("expected run")
            };
            build_spec(&run, &|_| None, 0)
                .expect_err("refused")
                .to_string()
        };
        let twice = refusal(&["run", "--image", "alpine", "busybox"]);
        assert!(twice.starts_with("image: given twice"), "{twice}");
        assert!(
            twice.contains("'ward run --image alpine -- busybox'"),
            "{twice}"
        );
        let nothing = refusal(&["run", "--name", "x"]);
        assert!(nothing.starts_with("command: nothing to run"), "{nothing}");
    }

    #[test]
    fn generated_names_follow_the_name_rule() {
        let check = |command: &[&str], image: Option<&str>, expected: &str| {
            let command: Vec<String> = command
                .iter()
                .map(|argument| argument.to_string())
                .collect();
            let name = generate_name(&command, image, 0xbeef);
            assert_eq!(name, expected);
            ward_spec::units::validate_name(&name).expect("valid name");
        };
        check(&["/usr/bin/python3", "-m"], None, "python3-beef");
        check(
            &[],
            Some("ghcr.io/org/My_API:1.2@sha256:abc"),
            "my-api-beef",
        );
        check(&["./run.sh"], None, "run-sh-beef");
        check(&["__"], None, "workload-beef");
        check(
            &[&"x".repeat(100)],
            None,
            &format!("{}-beef", "x".repeat(58)),
        );
    }
}
