//! Compose files read into Ward workloads: the Compose specification's common subset, each
//! service one `container` workload named after it (services find each other by that name on
//! the project's network, as on Compose's default network), labelled with its Compose project.
//! A key outside the subset is refused by its path, never ignored, except `x-` extensions and
//! the obsolete `version`.
//!
//! Values are interpolated first as Compose does (`${VAR}`, `${VAR:-default}`, `${VAR?error}`,
//! `$$`), from this shell's environment and then the `.env` file beside the Compose file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _};
use serde_json::{json, Map, Value};

/// The label naming the Compose project a workload belongs to, as Docker Compose sets it.
pub const PROJECT_LABEL: &str = "com.docker.compose.project";
/// The label naming the service a workload runs.
pub const SERVICE_LABEL: &str = "com.docker.compose.service";

/// The file names `ward compose` looks for when no `-f` is given, in Compose's order.
pub const DEFAULT_FILES: &[&str] = &[
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "docker-compose.yml",
];

const TOP_LEVEL_KEYS: &[&str] = &["name", "services", "volumes", "version"];
const SERVICE_KEYS: &[&str] = &[
    "image",
    "command",
    "entrypoint",
    "environment",
    "env_file",
    "ports",
    "expose",
    "volumes",
    "depends_on",
    "healthcheck",
    "restart",
    "deploy",
    "labels",
    "container_name",
    "working_dir",
    "cpus",
    "mem_limit",
    "pids_limit",
    "tty",
    "stdin_open",
];
const HEALTHCHECK_KEYS: &[&str] = &[
    "test",
    "interval",
    "timeout",
    "retries",
    "start_period",
    "start_interval",
    "disable",
];
const DEPLOY_KEYS: &[&str] = &["replicas", "resources", "restart_policy"];
const RESOURCES_KEYS: &[&str] = &["limits", "reservations"];
const LIMITS_KEYS: &[&str] = &["cpus", "memory", "pids"];
const RESTART_POLICY_KEYS: &[&str] = &["condition", "max_attempts", "delay", "window"];
const VOLUME_KEYS: &[&str] = &["type", "source", "target", "read_only", "volume", "bind"];
const PORT_KEYS: &[&str] = &["target", "published", "protocol", "host_ip", "mode", "name"];
const TOP_VOLUME_KEYS: &[&str] = &["name", "external", "driver", "labels"];

/// Why a key Compose has is not read, where a plain "not supported" would leave the user
/// without a next step.
const UNSUPPORTED_WHY: &[(&str, &str)] = &[
    ("build", "Ward runs images and does not build them: build it (docker build, buildah), push it or 'ward image import' it, then name it in image"),
    ("networks", "every workload of a Ward project shares one network, where services reach each other by name; remove networks"),
    ("secrets", "give the workload Ward secrets instead: 'ward secret set NAME', then a secrets list in a Ward spec"),
    ("configs", "mount the file with a bind volume instead, like ./app.conf:/etc/app.conf:ro"),
    ("user", "Ward runs the image's own User; build the image with the user it needs"),
    ("profiles", "keep the services to run in this file, or in a second file given with another -f"),
    ("extends", "write the service out in full"),
    ("include", "give each file with its own -f"),
    ("privileged", "a workload never gets more than Docker's default capabilities"),
    ("cap_add", "a workload never gets more than Docker's default capabilities"),
    ("network_mode", "use a Ward spec with network: host or none"),
];

/// A Compose file read into Ward workloads.
#[derive(Clone, Debug, PartialEq)]
pub struct ComposeProject {
    pub name: String,
    /// In an order where every service comes after those it depends on (by name otherwise).
    pub services: Vec<Service>,
    /// The Ward names of the named volumes the file declares and owns (not `external`).
    pub volumes: Vec<String>,
}

/// One service: its workload spec (raw, as a Ward YAML document would say it) and what it
/// waits for before it starts.
#[derive(Clone, Debug, PartialEq)]
pub struct Service {
    pub name: String,
    pub spec: Value,
    pub depends_on: Vec<Dependency>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dependency {
    pub service: String,
    pub condition: Condition,
}

/// `depends_on` conditions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Condition {
    Started,
    Healthy,
    CompletedSuccessfully,
}

/// Where a Compose file is and what it may read besides itself.
pub struct Source<'a> {
    pub path: &'a Path,
    pub text: &'a str,
    /// This shell's variables (`.env` beside the file comes after them).
    pub environment: &'a dyn Fn(&str) -> Option<String>,
    /// `-p NAME`, which wins over the file's `name`.
    pub project: Option<&'a str>,
}

/// Whether a YAML or JSON text is a Compose file rather than Ward specs: one document with a
/// `services` mapping.
pub fn is_compose(text: &str) -> bool {
    let mut documents = serde_norway::Deserializer::from_str(text);
    let Some(first) = documents.next() else {
        return false;
    };
    let Ok(value) = <serde_norway::Value as serde::Deserialize>::deserialize(first) else {
        return false;
    };
    documents.next().is_none()
        && value
            .get("services")
            .is_some_and(|services| services.is_mapping())
}

/// Reads a Compose file.
pub fn read(source: &Source<'_>) -> anyhow::Result<ComposeProject> {
    let directory = source
        .path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let directory = std::path::absolute(&directory).unwrap_or(directory);
    let dotenv = read_env_file(&directory.join(".env"), false)?;
    let lookup =
        |key: &str| (source.environment)(key).or_else(|| dotenv.get(key).cloned().flatten());
    let mut yaml: serde_norway::Value =
        serde_norway::from_str(source.text).context("the file is not valid YAML")?;
    yaml.apply_merge()
        .context("a YAML merge key (<<) cannot be applied")?;
    let mut document = serde_json::to_value(yaml).context("the file has keys that are not text")?;
    interpolate(&mut document, "", &lookup)?;
    let Value::Object(top) = document else {
        bail!("the file is not a mapping: a Compose file starts with services:");
    };
    check_keys(&top, "", TOP_LEVEL_KEYS)?;

    let name = project_name(source, &top, &directory)?;
    let volumes = top_level_volumes(&top, &name)?;
    let Some(Value::Object(services)) = top.get("services") else {
        bail!("services: give a mapping of services, like services: {{web: {{image: nginx}}}}");
    };
    if services.is_empty() {
        bail!("services: no service; add one, like web: {{image: nginx}}");
    }
    let mut read_services = Vec::with_capacity(services.len());
    for (service_name, body) in services {
        read_services.push(read_service(
            service_name,
            body,
            &ServiceContext {
                project: &name,
                directory: &directory,
                volumes: &volumes,
                lookup: &lookup,
            },
        )?);
    }
    let services = in_dependency_order(read_services)?;
    let owned = volumes
        .values()
        .filter(|volume| !volume.external)
        .map(|volume| volume.ward_name.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    Ok(ComposeProject {
        name,
        services,
        volumes: owned,
    })
}

/// What reading one service needs from the file around it.
struct ServiceContext<'a> {
    project: &'a str,
    directory: &'a Path,
    volumes: &'a BTreeMap<String, DeclaredVolume>,
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

#[derive(Clone, Debug)]
struct DeclaredVolume {
    ward_name: String,
    external: bool,
}

fn project_name(
    source: &Source<'_>,
    top: &Map<String, Value>,
    directory: &Path,
) -> anyhow::Result<String> {
    let (given, origin) = if let Some(project) = source.project {
        (project.to_string(), "-p")
    } else if let Some(name) = top.get("name") {
        let Value::String(name) = name else {
            bail!("name: give the project's name as text");
        };
        (name.clone(), "name")
    } else if let Some(name) = (source.environment)("COMPOSE_PROJECT_NAME") {
        (name, "COMPOSE_PROJECT_NAME")
    } else {
        let base = directory
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        (base, "the directory's name")
    };
    let name = ward_name(&given);
    ward_spec::validate_name(&name).map_err(|_| {
        anyhow!(
            "name: the project name {given:?} (from {origin}) gives no Ward name; set name: in the file or -p, with lower-case letters, digits and dashes"
        )
    })?;
    Ok(name)
}

/// A Compose name as a Ward name: lower case, `_`, `.` and spaces as `-`, nothing else that
/// a Ward name cannot hold, no dash at either end.
fn ward_name(name: &str) -> String {
    let mapped: String = name
        .to_ascii_lowercase()
        .chars()
        .filter_map(|character| match character {
            'a'..='z' | '0'..='9' | '-' => Some(character),
            '_' | '.' | ' ' => Some('-'),
            _ => None,
        })
        .collect();
    mapped.trim_matches('-').to_string()
}

fn top_level_volumes(
    top: &Map<String, Value>,
    project: &str,
) -> anyhow::Result<BTreeMap<String, DeclaredVolume>> {
    let mut declared = BTreeMap::new();
    let volumes = match top.get("volumes") {
        None | Some(Value::Null) => return Ok(declared),
        Some(Value::Object(volumes)) => volumes,
        Some(_) => bail!("volumes: give a mapping of volume names, like volumes: {{data: {{}}}}"),
    };
    for (name, body) in volumes {
        let path = format!("volumes.{name}");
        let (given_name, external) = match body {
            Value::Null => (None, false),
            Value::Object(fields) => {
                check_keys(fields, &path, TOP_VOLUME_KEYS)?;
                if let Some(driver) = fields.get("driver") {
                    if driver != "local" {
                        bail!("{path}.driver: only the local driver; remove driver");
                    }
                }
                let external = match fields.get("external") {
                    None | Some(Value::Bool(false)) => false,
                    Some(Value::Bool(true)) => true,
                    Some(_) => bail!("{path}.external: give true or false"),
                };
                let given = match fields.get("name") {
                    None => None,
                    Some(Value::String(name)) => Some(name.clone()),
                    Some(_) => bail!("{path}.name: give the volume's name as text"),
                };
                (given, external)
            }
            _ => bail!("{path}: give a mapping (or nothing), like {name}: {{}}"),
        };
        // Compose prefixes volumes it owns with the project; a named or external one keeps
        // its name.
        let ward = match (&given_name, external) {
            (Some(given), _) => ward_name(given),
            (None, true) => ward_name(name),
            (None, false) => format!("{project}-{}", ward_name(name)),
        };
        ward_spec::validate_name(&ward).map_err(|_| {
            anyhow!("{path}: the volume name {ward:?} is not a Ward name (lower-case letters, digits and dashes, at most 63); set a shorter name:")
        })?;
        declared.insert(
            name.clone(),
            DeclaredVolume {
                ward_name: ward,
                external,
            },
        );
    }
    Ok(declared)
}

fn read_service(name: &str, body: &Value, context: &ServiceContext<'_>) -> anyhow::Result<Service> {
    let path = format!("services.{name}");
    let Value::Object(fields) = body else {
        bail!("{path}: give a mapping, like {name}: {{image: nginx}}");
    };
    check_keys(fields, &path, SERVICE_KEYS)?;
    let workload = match fields.get("container_name") {
        Some(Value::String(container_name)) => container_name.clone(),
        Some(_) => bail!("{path}.container_name: give a name as text"),
        None => name.to_string(),
    };
    ward_spec::validate_name(&workload).map_err(|_| {
        anyhow!(
            "{path}: {workload:?} becomes the workload's name, which takes lower-case letters, digits and dashes: rename the service, or set container_name"
        )
    })?;
    let image = match fields.get("image") {
        Some(Value::String(image)) => image.clone(),
        Some(_) => bail!("{path}.image: give an image reference as text"),
        None => bail!(
            "{path}.image: missing; Ward runs images and does not build them: build it, push it or 'ward image import' it, then name it here"
        ),
    };
    let mut spec = Map::new();
    spec.insert("name".into(), json!(workload));
    spec.insert("kind".into(), json!("container"));
    spec.insert("image".into(), json!(image));
    if let Some(command) = fields.get("command") {
        spec.insert(
            "command".into(),
            json!(words(command, &format!("{path}.command"))?),
        );
    }
    if let Some(entrypoint) = fields.get("entrypoint") {
        spec.insert(
            "entrypoint".into(),
            json!(words(entrypoint, &format!("{path}.entrypoint"))?),
        );
    }
    // `stdin_open` needs nothing more: a terminal's input comes with `ward attach`.
    match fields.get("tty") {
        None | Some(Value::Bool(false)) => {}
        Some(Value::Bool(true)) => {
            spec.insert("tty".into(), json!(true));
        }
        Some(_) => bail!("{path}.tty: give true or false"),
    }
    if let Some(Value::String(workdir)) = fields.get("working_dir") {
        spec.insert("workdir".into(), json!(workdir));
    }
    let environment = environment(fields, &path, context)?;
    if !environment.is_empty() {
        spec.insert("env".into(), json!(environment));
    }
    let ports = ports(fields.get("ports"), &path)?;
    if !ports.is_empty() {
        spec.insert("ports".into(), Value::Array(ports));
    }
    let volumes = volumes(fields.get("volumes"), &path, context)?;
    if !volumes.is_empty() {
        spec.insert("volumes".into(), Value::Array(volumes));
    }
    if let Some(health) = healthcheck(fields.get("healthcheck"), &path)? {
        spec.insert("health".into(), health);
    }
    let deploy = fields.get("deploy");
    if let Some(restart) = restart(fields.get("restart"), deploy, &path)? {
        spec.insert("restart".into(), restart);
    }
    let resources = resources(fields, deploy, &path)?;
    if !resources.is_empty() {
        spec.insert("resources".into(), Value::Object(resources));
    }
    if let Some(replicas) = deploy.and_then(|deploy| deploy.get("replicas")) {
        spec.insert("replicas".into(), replicas.clone());
    }
    let mut labels = match fields.get("labels") {
        Some(value) => string_map(value, &format!("{path}.labels"), &|_| None)?
            .into_iter()
            .map(|(key, value)| (key, value.unwrap_or_default()))
            .collect(),
        None => BTreeMap::new(),
    };
    labels.insert(PROJECT_LABEL.to_string(), context.project.to_string());
    labels.insert(SERVICE_LABEL.to_string(), name.to_string());
    spec.insert("labels".into(), json!(labels));
    Ok(Service {
        name: name.to_string(),
        spec: Value::Object(spec),
        depends_on: depends_on(fields.get("depends_on"), &path)?,
    })
}

/// Refuses keys outside `known`, naming the key and, where there is one, why and what to do.
fn check_keys(fields: &Map<String, Value>, path: &str, known: &[&str]) -> anyhow::Result<()> {
    for key in fields.keys() {
        if key.starts_with("x-") || known.contains(&key.as_str()) {
            continue;
        }
        let at = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        match UNSUPPORTED_WHY.iter().find(|(name, _)| name == key) {
            Some((_, why)) => bail!("{at}: not supported; {why}"),
            None => bail!(
                "{at}: not supported by Ward's Compose reader (it reads {}); remove it, or write a Ward spec",
                known.join(", ")
            ),
        }
    }
    Ok(())
}

/// A command or entrypoint: a list as it is, a string split into words as Compose splits it
/// (no shell runs it).
fn words(value: &Value, path: &str) -> anyhow::Result<Vec<String>> {
    match value {
        Value::String(line) => split_words(line).map_err(|reason| anyhow!("{path}: {reason}")),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(index, item)| scalar(item, &format!("{path}[{index}]")))
            .collect(),
        Value::Null => Ok(Vec::new()),
        _ => bail!("{path}: give a list of words or one line"),
    }
}

/// Splits a line into words as a POSIX shell would, without expanding anything: quotes group,
/// a backslash escapes outside single quotes.
pub fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut current: Option<String> = None;
    let mut characters = line.chars();
    while let Some(character) = characters.next() {
        match character {
            ' ' | '\t' | '\n' => {
                if let Some(word) = current.take() {
                    words.push(word);
                }
            }
            '\'' => {
                let word = current.get_or_insert_with(String::new);
                loop {
                    match characters.next() {
                        Some('\'') => break,
                        Some(quoted) => word.push(quoted),
                        None => return Err("a ' is not closed".to_string()),
                    }
                }
            }
            '"' => {
                let word = current.get_or_insert_with(String::new);
                loop {
                    match characters.next() {
                        Some('"') => break,
                        Some('\\') => match characters.next() {
                            Some(escaped @ ('"' | '\\' | '$' | '`')) => word.push(escaped),
                            Some(other) => {
                                word.push('\\');
                                word.push(other);
                            }
                            None => return Err("a \" is not closed".to_string()),
                        },
                        Some(quoted) => word.push(quoted),
                        None => return Err("a \" is not closed".to_string()),
                    }
                }
            }
            '\\' => {
                let word = current.get_or_insert_with(String::new);
                if let Some(escaped) = characters.next() {
                    word.push(escaped);
                }
            }
            other => current.get_or_insert_with(String::new).push(other),
        }
    }
    words.extend(current);
    Ok(words)
}

fn scalar(value: &Value, path: &str) -> anyhow::Result<String> {
    match value {
        Value::String(text) => Ok(text.clone()),
        Value::Number(number) => Ok(number.to_string()),
        Value::Bool(boolean) => Ok(boolean.to_string()),
        _ => bail!("{path}: give text, a number or true/false"),
    }
}

/// `environment` as a mapping or a `KEY=VALUE` list; a key without a value takes this shell's
/// (or is left out when unset there), as Compose does.
type StringMap = BTreeMap<String, Option<String>>;

fn string_map(
    value: &Value,
    path: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<StringMap> {
    let mut map = BTreeMap::new();
    match value {
        Value::Object(fields) => {
            for (key, value) in fields {
                let text = match value {
                    Value::Null => lookup(key),
                    other => Some(scalar(other, &format!("{path}.{key}"))?),
                };
                map.insert(key.clone(), text);
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                let Value::String(item) = item else {
                    bail!("{path}[{index}]: give KEY=VALUE");
                };
                match item.split_once('=') {
                    Some((key, text)) => map.insert(key.to_string(), Some(text.to_string())),
                    None => map.insert(item.clone(), lookup(item)),
                };
            }
        }
        Value::Null => {}
        _ => bail!("{path}: give a mapping or a list of KEY=VALUE"),
    }
    Ok(map)
}

fn environment(
    fields: &Map<String, Value>,
    path: &str,
    context: &ServiceContext<'_>,
) -> anyhow::Result<BTreeMap<String, String>> {
    let mut environment = BTreeMap::new();
    let env_files: Vec<(String, bool)> = match fields.get("env_file") {
        None => Vec::new(),
        Some(Value::String(file)) => vec![(file.clone(), true)],
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(index, item)| match item {
                Value::String(file) => Ok((file.clone(), true)),
                Value::Object(long) => {
                    let file = long.get("path").and_then(Value::as_str).ok_or_else(|| {
                        anyhow!("{path}.env_file[{index}].path: give the file's path")
                    })?;
                    let required = long
                        .get("required")
                        .and_then(Value::as_bool)
                        .unwrap_or(true);
                    Ok((file.to_string(), required))
                }
                _ => bail!("{path}.env_file[{index}]: give a path"),
            })
            .collect::<anyhow::Result<_>>()?,
        Some(_) => bail!("{path}.env_file: give a path or a list of paths"),
    };
    for (file, required) in env_files {
        let file = context.directory.join(file);
        for (key, value) in
            read_env_file(&file, required).map_err(|error| anyhow!("{path}.env_file: {error:#}"))?
        {
            if let Some(value) = value.or_else(|| (context.lookup)(&key)) {
                environment.insert(key, value);
            }
        }
    }
    if let Some(value) = fields.get("environment") {
        for (key, value) in string_map(value, &format!("{path}.environment"), context.lookup)? {
            match value {
                Some(value) => environment.insert(key, value),
                None => environment.remove(&key),
            };
        }
    }
    Ok(environment)
}

/// An env file: `KEY=VALUE` lines (`export` allowed, `#` comments, quoted values); a bare
/// `KEY` means "this shell's value" (`None`). A missing file is empty unless `required`.
fn read_env_file(file: &Path, required: bool) -> anyhow::Result<StringMap> {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound && !required => {
            return Ok(BTreeMap::new())
        }
        Err(error) => bail!("cannot read {}: {error}", file.display()),
    };
    let mut map = BTreeMap::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, raw)) = line.split_once('=') else {
            map.insert(line.to_string(), None);
            continue;
        };
        let key = key.trim();
        if key.is_empty() || key.contains(char::is_whitespace) {
            bail!(
                "{} line {}: {key:?} is not a variable name",
                file.display(),
                number + 1
            );
        }
        map.insert(key.to_string(), Some(env_file_value(raw.trim())));
    }
    Ok(map)
}

fn env_file_value(raw: &str) -> String {
    if let Some(inner) = raw
        .strip_prefix('\'')
        .and_then(|rest| rest.split_once('\''))
    {
        return inner.0.to_string();
    }
    if let Some(rest) = raw.strip_prefix('"') {
        let mut value = String::new();
        let mut characters = rest.chars();
        while let Some(character) = characters.next() {
            match character {
                '"' => break,
                '\\' => match characters.next() {
                    Some('n') => value.push('\n'),
                    Some('t') => value.push('\t'),
                    Some(other) => value.push(other),
                    None => {}
                },
                other => value.push(other),
            }
        }
        return value;
    }
    // Unquoted: a ` #` starts a comment.
    match raw.find(" #") {
        Some(comment) => raw[..comment].trim_end().to_string(),
        None => raw.to_string(),
    }
}

/// `ports`, short (`"8080:80"`, `"127.0.0.1:8080:80/udp"`, `"8000-8001:8000-8001"`) and long
/// (`{target, published, protocol, host_ip}`), as Ward's `HOST:PORT` forms.
fn ports(value: Option<&Value>, path: &str) -> anyhow::Result<Vec<Value>> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let Value::Array(items) = value else {
        bail!("{path}.ports: give a list, like [\"8080:80\"]");
    };
    let mut ports = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let at = format!("{path}.ports[{index}]");
        match item {
            Value::String(_) | Value::Number(_) => {
                let text = scalar(item, &at)?;
                ports.extend(short_ports(&text).map_err(|reason| anyhow!("{at}: {reason}"))?);
            }
            Value::Object(fields) => {
                check_keys(fields, &at, PORT_KEYS)?;
                let target = fields
                    .get("target")
                    .map(|target| scalar(target, &format!("{at}.target")))
                    .transpose()?
                    .ok_or_else(|| anyhow!("{at}.target: missing; give the container's port"))?;
                // No published port: a free one, as Compose picks.
                let published = match fields.get("published") {
                    None | Some(Value::Null) => String::new(),
                    Some(published) => scalar(published, &format!("{at}.published"))?,
                };
                let protocol = fields
                    .get("protocol")
                    .and_then(Value::as_str)
                    .unwrap_or("tcp");
                let mut text = format!("{published}:{target}/{protocol}");
                if let Some(Value::String(address)) = fields.get("host_ip") {
                    text = format!("{address}:{text}");
                }
                ports.extend(short_ports(&text).map_err(|reason| anyhow!("{at}: {reason}"))?);
            }
            _ => bail!("{at}: give \"HOST:PORT\" or {{target, published}}"),
        }
    }
    Ok(ports)
}

fn short_ports(text: &str) -> Result<Vec<Value>, String> {
    let (mappings, protocol) = match text.split_once('/') {
        Some((mappings, protocol)) => (mappings, Some(protocol)),
        None => (text, None),
    };
    let parts: Vec<&str> = mappings.rsplitn(3, ':').collect();
    // No host port: a free one each, chosen when the instance starts.
    let (target, published, address) = match parts.as_slice() {
        [target] => (*target, "", None),
        [target, published] => (*target, *published, None),
        [target, published, address] => (*target, *published, Some(*address)),
        _ => unreachable!("rsplitn gives one to three parts"),
    };
    let range = |text: &str| -> Result<(u32, u32), String> {
        let number = |text: &str| {
            text.parse::<u32>()
                .map_err(|_| format!("{text:?} is not a port number"))
        };
        match text.split_once('-') {
            Some((first, last)) => Ok((number(first)?, number(last)?)),
            None => number(text).map(|port| (port, port)),
        }
    };
    let (target_first, target_last) = range(target)?;
    let free = published.is_empty();
    let (published_first, published_last) = if free {
        (0, target_last.saturating_sub(target_first))
    } else {
        range(published)?
    };
    if target_last < target_first || target_last - target_first != published_last - published_first
    {
        return Err(format!(
            "{text:?}: the host and container ranges must be the same length"
        ));
    }
    let suffix = protocol
        .map(|protocol| format!("/{protocol}"))
        .unwrap_or_default();
    let prefix = address
        .map(|address| format!("{}:", address.trim_matches(['[', ']'])))
        .unwrap_or_default();
    Ok((0..=target_last - target_first)
        .map(|offset| {
            let host = if free { 0 } else { published_first + offset };
            json!(format!("{prefix}{host}:{}{suffix}", target_first + offset))
        })
        .collect())
}

/// `volumes` of a service: named volumes the file declares, and host paths (relative ones
/// from the file's directory, made when missing as Compose makes them).
fn volumes(
    value: Option<&Value>,
    path: &str,
    context: &ServiceContext<'_>,
) -> anyhow::Result<Vec<Value>> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let Value::Array(items) = value else {
        bail!("{path}.volumes: give a list, like [\"data:/var/lib/data\"]");
    };
    let mut volumes = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let at = format!("{path}.volumes[{index}]");
        let (source, target, read_only, create) = match item {
            Value::String(text) => {
                let parts: Vec<&str> = text.split(':').collect();
                match parts.as_slice() {
                    [_target] => bail!(
                        "{at}: {text:?} is an anonymous volume; give it a name, like data:{text}, and declare it under volumes:"
                    ),
                    [source, target] => (source.to_string(), target.to_string(), false, true),
                    [source, target, mode] => {
                        let read_only = mode.split(',').any(|option| option == "ro");
                        if let Some(option) = mode
                            .split(',')
                            .find(|option| !matches!(*option, "ro" | "rw" | "z" | "Z"))
                        {
                            bail!("{at}: the mode {option:?} is not supported; use ro or rw");
                        }
                        (source.to_string(), target.to_string(), read_only, true)
                    }
                    _ => bail!("{at}: give SOURCE:TARGET[:ro]"),
                }
            }
            Value::Object(fields) => {
                check_keys(fields, &at, VOLUME_KEYS)?;
                let kind = fields
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("volume");
                if !matches!(kind, "volume" | "bind") {
                    bail!("{at}.type: {kind} is not supported; use volume or bind");
                }
                let text = |key: &str| fields.get(key).and_then(Value::as_str).map(str::to_string);
                let source = text("source")
                    .ok_or_else(|| anyhow!("{at}.source: missing; name the volume or host path"))?;
                let target = text("target")
                    .ok_or_else(|| anyhow!("{at}.target: missing; give the path inside"))?;
                let read_only = fields
                    .get("read_only")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                let create = fields
                    .get("bind")
                    .and_then(|bind| bind.get("create_host_path"))
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                if kind == "bind" && !is_host_path(&source) {
                    bail!("{at}.source: a bind mount takes a host path, like ./data or /srv/data");
                }
                (source, target, read_only, create)
            }
            _ => bail!("{at}: give \"SOURCE:TARGET[:ro]\" or {{type, source, target}}"),
        };
        let source = if is_host_path(&source) {
            host_path(&source, context.directory, create)
                .map_err(|error| anyhow!("{at}: {error:#}"))?
        } else {
            match context.volumes.get(&source) {
                Some(declared) => declared.ward_name.clone(),
                None => bail!(
                    "{at}: the volume {source:?} is not declared; add it under the top-level volumes:, like volumes: {{{source}: {{}}}}"
                ),
            }
        };
        volumes.push(json!({"source": source, "target": target, "read_only": read_only}));
    }
    Ok(volumes)
}

fn is_host_path(source: &str) -> bool {
    source.starts_with(['/', '.', '~'])
}

fn host_path(source: &str, directory: &Path, create: bool) -> anyhow::Result<String> {
    let path = if let Some(rest) = source.strip_prefix("~/") {
        let home = std::env::var_os("HOME").ok_or_else(|| anyhow!("~ needs HOME to be set"))?;
        PathBuf::from(home).join(rest)
    } else {
        directory.join(source)
    };
    let path = normalize(&path);
    if create && !path.exists() {
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot make the host directory {}", path.display()))?;
    }
    path.to_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("the host path {} is not UTF-8", path.display()))
}

/// `a/./b/../c` → `a/c`, without touching the filesystem.
fn normalize(path: &Path) -> PathBuf {
    let mut normalized = PathBuf::new();
    for component in path.components() {
        match component {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                normalized.pop();
            }
            other => normalized.push(other),
        }
    }
    normalized
}

fn healthcheck(value: Option<&Value>, path: &str) -> anyhow::Result<Option<Value>> {
    let Some(value) = value else {
        return Ok(None);
    };
    let at = format!("{path}.healthcheck");
    let Value::Object(fields) = value else {
        bail!("{at}: give a mapping with test:");
    };
    check_keys(fields, &at, HEALTHCHECK_KEYS)?;
    if fields.get("disable") == Some(&Value::Bool(true)) {
        return Ok(None);
    }
    let probe = match fields.get("test") {
        None => bail!("{at}.test: missing; give [\"CMD\", \"program\", \"arg\"] or [\"CMD-SHELL\", \"command line\"]"),
        Some(Value::String(line)) => json!(line),
        Some(Value::Array(items)) => {
            let items = items
                .iter()
                .enumerate()
                .map(|(index, item)| scalar(item, &format!("{at}.test[{index}]")))
                .collect::<anyhow::Result<Vec<String>>>()?;
            match items.split_first() {
                Some((first, rest)) if first == "CMD" && !rest.is_empty() => json!(rest),
                Some((first, rest)) if first == "CMD-SHELL" && !rest.is_empty() => {
                    json!(rest.join(" "))
                }
                Some((first, _)) if first == "NONE" => return Ok(None),
                _ => bail!("{at}.test: start with CMD or CMD-SHELL, like [\"CMD\", \"pg_isready\"]"),
            }
        }
        Some(_) => bail!("{at}.test: give a list or a command line"),
    };
    let mut health = Map::new();
    health.insert("exec".into(), probe);
    for key in ["interval", "timeout", "retries", "start_period"] {
        if let Some(value) = fields.get(key) {
            health.insert(key.into(), value.clone());
        }
    }
    Ok(Some(Value::Object(health)))
}

fn restart(
    value: Option<&Value>,
    deploy: Option<&Value>,
    path: &str,
) -> anyhow::Result<Option<Value>> {
    if let Some(policy) = deploy.and_then(|deploy| deploy.get("restart_policy")) {
        let at = format!("{path}.deploy.restart_policy");
        let Value::Object(fields) = policy else {
            bail!("{at}: give a mapping with condition:");
        };
        check_keys(fields, &at, RESTART_POLICY_KEYS)?;
        let policy = match fields.get("condition").and_then(Value::as_str) {
            None | Some("any") => "always",
            Some("on-failure") => "on-failure",
            Some("none") => "never",
            Some(other) => bail!("{at}.condition: {other:?}; use none, on-failure or any"),
        };
        return Ok(Some(json!({
            "policy": policy,
            "max_retries": fields.get("max_attempts").cloned().unwrap_or(Value::Null),
        })));
    }
    let Some(value) = value else {
        return Ok(None);
    };
    let text = scalar(value, &format!("{path}.restart"))?;
    let restart = match text.as_str() {
        "no" | "false" => json!("never"),
        "always" | "unless-stopped" => json!("always"),
        "on-failure" => json!("on-failure"),
        other => match other.strip_prefix("on-failure:") {
            Some(retries) => match retries.parse::<u32>() {
                Ok(retries) => json!({"policy": "on-failure", "max_retries": retries}),
                Err(_) => {
                    bail!("{path}.restart: {other:?}; the count after on-failure: is a number")
                }
            },
            None => {
                bail!("{path}.restart: {other:?}; use no, always, on-failure[:N] or unless-stopped")
            }
        },
    };
    Ok(Some(restart))
}

fn resources(
    fields: &Map<String, Value>,
    deploy: Option<&Value>,
    path: &str,
) -> anyhow::Result<Map<String, Value>> {
    let mut resources = Map::new();
    for (compose, ward) in [
        ("cpus", "cpu"),
        ("mem_limit", "memory"),
        ("pids_limit", "pids"),
    ] {
        if let Some(value) = fields.get(compose) {
            resources.insert(ward.into(), numeric_text(value));
        }
    }
    let Some(deploy) = deploy else {
        return Ok(resources);
    };
    let at = format!("{path}.deploy");
    let Value::Object(deploy) = deploy else {
        bail!("{at}: give a mapping");
    };
    check_keys(deploy, &at, DEPLOY_KEYS)?;
    let Some(section) = deploy.get("resources") else {
        return Ok(resources);
    };
    let at = format!("{at}.resources");
    let Value::Object(section) = section else {
        bail!("{at}: give a mapping with limits:");
    };
    check_keys(section, &at, RESOURCES_KEYS)?;
    if let Some(Value::Object(reservations)) = section.get("reservations") {
        // A reservation is what the scheduler sets aside; one host has nothing to place, and
        // devices (GPUs) are not handed over from Compose.
        if reservations.contains_key("devices") {
            bail!("{at}.reservations.devices: not supported; give a Ward spec resources.gpu");
        }
    }
    if let Some(limits) = section.get("limits") {
        let at = format!("{at}.limits");
        let Value::Object(limits) = limits else {
            bail!("{at}: give a mapping, like {{cpus: \"0.5\", memory: 512M}}");
        };
        check_keys(limits, &at, LIMITS_KEYS)?;
        for (compose, ward) in [("cpus", "cpu"), ("memory", "memory"), ("pids", "pids")] {
            if let Some(value) = limits.get(compose) {
                resources.insert(ward.into(), numeric_text(value));
            }
        }
    }
    Ok(resources)
}

/// Compose writes CPUs as text (`"0.5"`); Ward takes the number.
fn numeric_text(value: &Value) -> Value {
    match value {
        Value::String(text) => text
            .parse::<f64>()
            .ok()
            .and_then(|number| serde_json::Number::from_f64(number).map(Value::Number))
            .unwrap_or_else(|| value.clone()),
        other => other.clone(),
    }
}

fn depends_on(value: Option<&Value>, path: &str) -> anyhow::Result<Vec<Dependency>> {
    let at = format!("{path}.depends_on");
    let dependencies = match value {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(index, item)| match item {
                Value::String(service) => Ok(Dependency {
                    service: service.clone(),
                    condition: Condition::Started,
                }),
                _ => bail!("{at}[{index}]: give a service name"),
            })
            .collect::<anyhow::Result<_>>()?,
        Some(Value::Object(services)) => services
            .iter()
            .map(|(service, options)| {
                let condition = match options.get("condition").and_then(Value::as_str) {
                    None | Some("service_started") => Condition::Started,
                    Some("service_healthy") => Condition::Healthy,
                    Some("service_completed_successfully") => Condition::CompletedSuccessfully,
                    Some(other) => bail!(
                        "{at}.{service}.condition: {other:?}; use service_started, service_healthy or service_completed_successfully"
                    ),
                };
                Ok(Dependency {
                    service: service.clone(),
                    condition,
                })
            })
            .collect::<anyhow::Result<_>>()?,
        Some(_) => bail!("{at}: give a list of services or a mapping with conditions"),
    };
    Ok(dependencies)
}

/// Orders services so that each comes after those it depends on (by name otherwise);
/// refuses a dependency on a service that is not in the file, and a cycle.
fn in_dependency_order(services: Vec<Service>) -> anyhow::Result<Vec<Service>> {
    let names: BTreeSet<&str> = services
        .iter()
        .map(|service| service.name.as_str())
        .collect();
    for service in &services {
        for dependency in &service.depends_on {
            if !names.contains(dependency.service.as_str()) {
                bail!(
                    "services.{}.depends_on: no service {:?} in this file",
                    service.name,
                    dependency.service
                );
            }
        }
    }
    let mut ordered: Vec<Service> = Vec::with_capacity(services.len());
    let mut waiting = services;
    while !waiting.is_empty() {
        let placed: BTreeSet<String> = ordered.iter().map(|service| service.name.clone()).collect();
        let ready = waiting.iter().position(|service| {
            service
                .depends_on
                .iter()
                .all(|dependency| placed.contains(&dependency.service))
        });
        match ready {
            Some(index) => ordered.push(waiting.remove(index)),
            None => {
                let cycle: Vec<&str> = waiting
                    .iter()
                    .map(|service| service.name.as_str())
                    .collect();
                bail!(
                    "depends_on: {} depend on each other in a cycle; break it",
                    cycle.join(", ")
                );
            }
        }
    }
    Ok(ordered)
}

/// Interpolates every string of the document (not its keys) as Compose does.
fn interpolate(
    value: &mut Value,
    path: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<()> {
    match value {
        Value::String(text) => {
            *text = interpolate_text(text, lookup).map_err(|reason| {
                anyhow!("{}: {reason}", if path.is_empty() { "(top)" } else { path })
            })?;
        }
        Value::Array(items) => {
            for (index, item) in items.iter_mut().enumerate() {
                interpolate(item, &format!("{path}[{index}]"), lookup)?;
            }
        }
        Value::Object(fields) => {
            for (key, item) in fields.iter_mut() {
                let at = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                interpolate(item, &at, lookup)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// `$$` is `$`; `$VAR` and `${VAR}` the variable (empty when unset); `${VAR:-default}` and
/// `${VAR-default}` with a default when unset (or, with `:`, empty); `${VAR:?message}` and
/// `${VAR?message}` refuse the file when it is unset (or empty).
pub fn interpolate_text(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let mut result = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        result.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            result.push('$');
            rest = tail;
        } else if let Some(braced) = after.strip_prefix('{') {
            let end = braced
                .find('}')
                .ok_or_else(|| format!("${{ in {text:?} is not closed with }}"))?;
            result.push_str(&substitute(&braced[..end], lookup)?);
            rest = &braced[end + 1..];
        } else {
            let length = after
                .find(|character: char| !(character.is_ascii_alphanumeric() || character == '_'))
                .unwrap_or(after.len());
            if length == 0 {
                result.push('$');
            } else {
                result.push_str(&lookup(&after[..length]).unwrap_or_default());
            }
            rest = &after[length..];
        }
    }
    result.push_str(rest);
    Ok(result)
}

fn substitute(expression: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let name_end = expression
        .find(|character: char| !(character.is_ascii_alphanumeric() || character == '_'))
        .unwrap_or(expression.len());
    let (name, operator) = expression.split_at(name_end);
    if name.is_empty() {
        return Err(format!("${{{expression}}} names no variable"));
    }
    let value = lookup(name);
    let unset_or_empty = value.as_deref().is_none_or(str::is_empty);
    let substituted = match operator {
        "" => value.unwrap_or_default(),
        _ if operator.starts_with(":-") => {
            if unset_or_empty {
                operator[2..].to_string()
            } else {
                value.unwrap_or_default()
            }
        }
        _ if operator.starts_with('-') => value.unwrap_or_else(|| operator[1..].to_string()),
        _ if operator.starts_with(":?") => {
            if unset_or_empty {
                return Err(required_message(name, &operator[2..]));
            }
            value.unwrap_or_default()
        }
        _ if operator.starts_with('?') => match value {
            Some(value) => value,
            None => return Err(required_message(name, &operator[1..])),
        },
        _ if operator.starts_with(":+") => {
            if unset_or_empty {
                String::new()
            } else {
                operator[2..].to_string()
            }
        }
        _ if operator.starts_with('+') => {
            if value.is_some() {
                operator[1..].to_string()
            } else {
                String::new()
            }
        }
        _ => return Err(format!("${{{expression}}}: unknown form after {name}")),
    };
    Ok(substituted)
}

fn required_message(name: &str, message: &str) -> String {
    if message.is_empty() {
        format!("the variable {name} is required; set it in this shell or in .env")
    } else {
        format!("the variable {name} is required: {message}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_text(text: &str, environment: &[(&str, &str)]) -> anyhow::Result<ComposeProject> {
        let directory = tempfile::tempdir().expect("directory");
        let path = directory.path().join("compose.yaml");
        let environment: BTreeMap<String, String> = environment
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect();
        let lookup = move |key: &str| environment.get(key).cloned();
        read(&Source {
            path: &path,
            text,
            environment: &lookup,
            project: Some("shop"),
        })
    }

    fn error_of(text: &str) -> String {
        format!("{:#}", read_text(text, &[]).expect_err("refused"))
    }

    #[test]
    fn a_web_database_and_cache_file_becomes_ward_workloads_in_dependency_order() {
        let project = read_text(
            r#"
services:
  web:
    image: registry.local/web:1
    command: httpd -f -p "8080"
    ports: ["8080:8080", "127.0.0.1:9000-9001:9000-9001/udp"]
    environment:
      DATABASE: postgres://db/shop
      FROM_SHELL:
    depends_on:
      db: {condition: service_healthy}
      cache: {condition: service_started}
    deploy:
      replicas: 1
      resources: {limits: {cpus: "0.5", memory: 256M}}
    restart: unless-stopped
    labels: {com.example.tier: front}
  db:
    image: registry.local/db:1
    volumes: ["data:/var/lib/db", {type: volume, source: data, target: /backup, read_only: true}]
    healthcheck:
      test: ["CMD-SHELL", "test -f /var/lib/db/ready"]
      interval: 1s
      retries: 30
    restart: on-failure:3
  cache:
    image: registry.local/cache:1
    entrypoint: ["/bin/cache"]
    healthcheck: {test: [CMD, cache, ping], start_period: 5s}
volumes:
  data: {}
x-notes: ignored
"#,
            &[("FROM_SHELL", "yes")],
        )
        .expect("reads");
        assert_eq!(project.name, "shop");
        assert_eq!(project.volumes, ["shop-data"]);
        let names: Vec<&str> = project
            .services
            .iter()
            .map(|service| service.name.as_str())
            .collect();
        assert_eq!(names, ["cache", "db", "web"]);
        let web = &project.services[2];
        assert_eq!(
            web.spec,
            json!({
                "name": "web", "kind": "container", "image": "registry.local/web:1",
                "command": ["httpd", "-f", "-p", "8080"],
                "env": {"DATABASE": "postgres://db/shop", "FROM_SHELL": "yes"},
                "ports": ["8080:8080", "127.0.0.1:9000:9000/udp", "127.0.0.1:9001:9001/udp"],
                "restart": "always",
                "resources": {"cpu": 0.5, "memory": "256M"},
                "replicas": 1,
                "labels": {"com.example.tier": "front", PROJECT_LABEL: "shop", SERVICE_LABEL: "web"},
            })
        );
        assert_eq!(
            web.depends_on,
            [
                Dependency {
                    service: "cache".into(),
                    condition: Condition::Started
                },
                Dependency {
                    service: "db".into(),
                    condition: Condition::Healthy
                },
            ]
        );
        let db = &project.services[1];
        assert_eq!(
            db.spec["volumes"],
            json!([
                {"source": "shop-data", "target": "/var/lib/db", "read_only": false},
                {"source": "shop-data", "target": "/backup", "read_only": true},
            ])
        );
        assert_eq!(
            db.spec["health"],
            json!({"exec": "test -f /var/lib/db/ready", "interval": "1s", "retries": 30})
        );
        assert_eq!(
            db.spec["restart"],
            json!({"policy": "on-failure", "max_retries": 3})
        );
        let cache = &project.services[0];
        assert_eq!(cache.spec["entrypoint"], json!(["/bin/cache"]));
        assert_eq!(
            cache.spec["health"],
            json!({"exec": ["cache", "ping"], "start_period": "5s"})
        );
        // Every spec is one Ward's parser takes.
        for service in &project.services {
            ward_spec::parse_value(service.spec.clone()).expect("a valid Ward spec");
        }
    }

    #[test]
    fn unsupported_keys_are_refused_by_path_with_what_to_do() {
        let cases = [
            ("services: {web: {build: .}}", "services.web.build: not supported; Ward runs images and does not build them"),
            ("services: {web: {image: a, networks: [front]}}", "services.web.networks: not supported; every workload of a Ward project shares one network"),
            ("services: {web: {image: a, stop_signal: SIGINT}}", "services.web.stop_signal: not supported by Ward's Compose reader"),
            ("services: {web: {image: a}}\nnetworks: {front: {}}", "networks: not supported"),
            ("services: {web: {image: a, volumes: [\"/data\"]}}", "services.web.volumes[0]: \"/data\" is an anonymous volume"),
            ("services: {web: {image: a, volumes: [\"cache:/c\"]}}", "services.web.volumes[0]: the volume \"cache\" is not declared"),
            ("services: {web: {image: a, depends_on: [db]}}", "services.web.depends_on: no service \"db\" in this file"),
            ("services: {a: {image: a, depends_on: [b]}, b: {image: b, depends_on: [a]}}", "depends_on: a, b depend on each other in a cycle"),
            ("services: {My_App: {image: a}}", "services.My_App: \"My_App\" becomes the workload's name"),
            ("services: {web: {command: x}}", "services.web.image: missing"),
            ("services: {web: {image: \"${TAG:?set the tag}\"}}", "services.web.image: the variable TAG is required: set the tag"),
            ("services: {web: {image: a, restart: sometimes}}", "services.web.restart: \"sometimes\""),
            ("services: {web: {image: a, deploy: {mode: global}}}", "services.web.deploy.mode: not supported"),
        ];
        for (text, expected) in cases {
            let error = error_of(text);
            assert!(
                error.starts_with(expected),
                "{text}:\n  {error}\n  does not start with {expected}"
            );
        }
    }

    #[test]
    fn a_port_without_a_host_port_takes_a_free_one() {
        let project = read_text(
            "services: {web: {image: a, ports: [\"3000\", \"7000-7001\", {target: 80}]}}",
            &[],
        )
        .expect("reads");
        assert_eq!(
            project.services[0].spec["ports"],
            json!(["0:3000", "0:7000", "0:7001", "0:80/tcp"])
        );
    }

    #[test]
    fn interpolation_follows_compose() {
        let lookup = |key: &str| match key {
            "SET" => Some("value".to_string()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        let check = |text: &str, expected: &str| {
            assert_eq!(
                interpolate_text(text, &lookup).as_deref(),
                Ok(expected),
                "{text}"
            );
        };
        check("a $SET b", "a value b");
        check("${SET}x", "valuex");
        check("$$SET", "$SET");
        check("${UNSET:-fallback}", "fallback");
        check("${EMPTY:-fallback}", "fallback");
        check("${EMPTY-fallback}", "");
        check("${SET:+alt}", "alt");
        check("${UNSET}", "");
        check("cost: 5$", "cost: 5$");
        assert!(interpolate_text("${EMPTY:?needed}", &lookup).is_err());
        assert_eq!(
            interpolate_text("${EMPTY?needed}", &lookup).as_deref(),
            Ok("")
        );
    }

    #[test]
    fn words_split_as_a_shell_would_without_expanding() {
        assert_eq!(
            split_words(r#"sh -c 'echo "$HOME"' "a b" c\ d"#).expect("splits"),
            ["sh", "-c", "echo \"$HOME\"", "a b", "c d"]
        );
        assert!(split_words("echo 'open").is_err());
    }

    #[test]
    fn env_files_are_read_beside_the_compose_file_and_environment_wins() {
        let directory = tempfile::tempdir().expect("directory");
        std::fs::write(
            directory.path().join("app.env"),
            "# settings\nexport MODE=prod\nQUOTED=\"two\\nlines\"\nSINGLE='$raw'\nCOMMENTED=x # note\nOVERRIDDEN=file\n",
        )
        .expect("env file");
        std::fs::write(directory.path().join(".env"), "TAG=7\n").expect(".env");
        let path = directory.path().join("compose.yaml");
        let text = "services:\n  web:\n    image: app:${TAG}\n    env_file: app.env\n    environment: [OVERRIDDEN=compose]\n    volumes: [./site:/srv:ro]\n";
        let project = read(&Source {
            path: &path,
            text,
            environment: &|_| None,
            project: None,
        })
        .expect("reads");
        let web = &project.services[0];
        assert_eq!(web.spec["image"], "app:7");
        assert_eq!(
            web.spec["env"],
            json!({"MODE": "prod", "QUOTED": "two\nlines", "SINGLE": "$raw", "COMMENTED": "x", "OVERRIDDEN": "compose"})
        );
        let site = directory.path().join("site");
        assert!(
            site.is_dir(),
            "a missing bind source is made, as Compose makes it"
        );
        assert_eq!(
            web.spec["volumes"][0]["source"],
            site.to_str().expect("utf-8")
        );
        // The project is named after the directory.
        let expected = ward_name(&directory.path().file_name().unwrap().to_string_lossy());
        assert_eq!(project.name, expected);
    }

    #[test]
    fn only_a_single_document_with_services_is_compose() {
        assert!(is_compose("services:\n  web: {image: nginx}\n"));
        assert!(!is_compose("name: web\nimage: nginx\n"));
        assert!(!is_compose("name: a\ncommand: [x]\n---\nservices: {}\n"));
    }
}
