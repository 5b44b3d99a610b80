//! Turns YAML or JSON text, or an API body, into validated [`WorkloadSpec`]s.
//!
//! YAML is first converted to a `serde_json::Value`; then one hand-written walk over the value
//! checks the allowed fields of every object and validates every field, so each error knows its
//! field path. The walk accepts both the short form people write and the normalised form that
//! [`WorkloadSpec::to_normalized_json`] renders.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Number, Value};

use crate::error::SpecError;
use crate::model::{
    Autoscale, Heal, HealPolicy, HealthCheck, HealthProbe, NetworkMode, PortMapping, Protocol,
    Resources, RestartMode, RestartPolicy, SecretMount, UserNamespace, VolumeMount, WorkloadKind,
    WorkloadSpec, SECRETS_DIR,
};
use crate::units;

const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(10);
const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(2);
const DEFAULT_HEALTH_RETRIES: u32 = 3;
const MAXIMUM_HEALTH_RETRIES: i64 = 100;
const MAXIMUM_HEALTH_DURATION: Duration = Duration::from_secs(24 * 60 * 60);
const MAXIMUM_REPLICAS: i64 = 1000;

const TOP_LEVEL_FIELDS: &[&str] = &[
    "name",
    "kind",
    "image",
    "command",
    "entrypoint",
    "tty",
    "workdir",
    "env",
    "resources",
    "ports",
    "publish_all",
    "volumes",
    "secrets",
    "network",
    "userns",
    "restart",
    "health",
    "replicas",
    "autoscale",
    "heal",
    "labels",
    // What `ward inspect -o json` and the API add to the normalised spec. Accepted and ignored,
    // so an inspected workload can be applied again as it is.
    "status",
];
const RESOURCE_FIELDS: &[&str] = &["cpu", "memory", "pids", "gpu", "disk"];
const PORT_FIELDS: &[&str] = &["host", "port", "protocol", "host_ip"];
const VOLUME_FIELDS: &[&str] = &["source", "target", "read_only"];
const SECRET_FIELDS: &[&str] = &["name", "env", "file"];
const RESTART_FIELDS: &[&str] = &["policy", "max_retries"];
const HEALTH_FIELDS: &[&str] = &[
    "http",
    "tcp",
    "exec",
    "interval",
    "timeout",
    "retries",
    "start_period",
    // The normalised form.
    "kind",
    "port",
    "path",
    "command",
    "interval_ms",
    "timeout_ms",
    "start_period_ms",
];
const HTTP_PROBE_FIELDS: &[&str] = &["port", "path"];
const TCP_PROBE_FIELDS: &[&str] = &["port"];
const AUTOSCALE_FIELDS: &[&str] = &["min", "max", "cpu"];
const HEAL_FIELDS: &[&str] = &["policy", "memory_max"];

/// Names people bring from Docker, Compose and Kubernetes, and the field Ward calls that.
const FIELD_ALIASES: &[(&str, &str)] = &[
    ("environment", "env"),
    ("cmd", "command"),
    ("args", "command"),
    ("working_dir", "workdir"),
    ("workingdir", "workdir"),
    ("cwd", "workdir"),
    ("healthcheck", "health"),
    ("restart_policy", "restart"),
    ("mem", "memory"),
    ("mem_limit", "memory"),
    ("cpus", "cpu"),
    ("readonly", "read_only"),
    ("ro", "read_only"),
    ("src", "source"),
    ("destination", "target"),
    ("dst", "target"),
    ("container_port", "port"),
    ("host_port", "host"),
];

/// Parses a file of one or more workloads: YAML (documents separated by `---`, empty documents
/// skipped) or JSON (one object, or an array of objects). A YAML document that is a list counts
/// as one document per element, the same as a JSON array.
///
/// JSON is recognised by its first non-blank character, `{` or `[`; text that starts like JSON
/// but is not valid JSON is tried as YAML (flow style) before its JSON error is reported.
/// Errors carry the document number when the file holds more than one workload.
pub fn parse_documents(text: &str) -> Result<Vec<WorkloadSpec>, SpecError> {
    let documents = read_documents(text)?;
    if documents.is_empty() {
        return Err(SpecError::whole_file(
            "no workload in file: write at least one document with a name, like name: web",
        ));
    }
    let document_count = documents.len();
    let number_errors = |error: SpecError, document_number: usize| {
        if document_count > 1 {
            error.in_document(document_number)
        } else {
            error
        }
    };
    let mut specs: Vec<WorkloadSpec> = Vec::with_capacity(document_count);
    let mut documents_by_name: HashMap<String, usize> = HashMap::new();
    for (index, document) in documents.into_iter().enumerate() {
        let document_number = index + 1;
        let value = match document {
            RawDocument::Json(value) => value,
            RawDocument::Yaml(value) => {
                yaml_to_json(value, "").map_err(|error| number_errors(error, document_number))?
            }
        };
        let spec = parse_value(value).map_err(|error| number_errors(error, document_number))?;
        if let Some(first_document) = documents_by_name.get(&spec.name) {
            let error = SpecError::new(
                "name",
                format!(
                    "{:?} is also the name of document {first_document}: names must be unique within one file",
                    spec.name
                ),
            );
            return Err(number_errors(error, document_number));
        }
        documents_by_name.insert(spec.name.clone(), document_number);
        specs.push(spec);
    }
    Ok(specs)
}

/// Parses one workload from an already decoded value (an API body), with the same rules as
/// [`parse_documents`]. The value must be an object.
pub fn parse_value(value: Value) -> Result<WorkloadSpec, SpecError> {
    let Value::Object(object) = value else {
        return Err(SpecError::whole_file(format!(
            "expected a workload, a mapping of fields like name and command, found {}",
            describe(&value)
        )));
    };
    parse_workload(&object)
}

enum RawDocument {
    Yaml(serde_norway::Value),
    Json(Value),
}

fn read_documents(text: &str) -> Result<Vec<RawDocument>, SpecError> {
    let looks_like_json = matches!(text.trim_start().chars().next(), Some('{') | Some('['));
    if !looks_like_json {
        return read_yaml_documents(text);
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(elements)) => Ok(elements.into_iter().map(RawDocument::Json).collect()),
        Ok(value) => Ok(vec![RawDocument::Json(value)]),
        Err(json_error) => read_yaml_documents(text).map_err(|_| json_syntax_error(&json_error)),
    }
}

fn read_yaml_documents(text: &str) -> Result<Vec<RawDocument>, SpecError> {
    let mut documents = Vec::new();
    for deserializer in serde_norway::Deserializer::from_str(text) {
        // The iterator repeats a failure forever, so stop at the first one.
        let mut value = serde_norway::Value::deserialize(deserializer)
            .map_err(|error| yaml_syntax_error(&error))?;
        value
            .apply_merge()
            .map_err(|error| yaml_syntax_error(&error))?;
        match value {
            serde_norway::Value::Null => {}
            // A list of workloads, like a JSON array: each element counts as one document.
            serde_norway::Value::Sequence(elements) => {
                documents.extend(elements.into_iter().map(RawDocument::Yaml))
            }
            value => documents.push(RawDocument::Yaml(value)),
        }
    }
    Ok(documents)
}

fn yaml_syntax_error(error: &serde_norway::Error) -> SpecError {
    let reason = without_locations(&error.to_string());
    match error.location() {
        Some(location) => SpecError::whole_file(format!(
            "invalid YAML at line {} column {}: {reason}",
            location.line(),
            location.column()
        )),
        None => SpecError::whole_file(format!("invalid YAML: {reason}")),
    }
}

fn json_syntax_error(error: &serde_json::Error) -> SpecError {
    let reason = without_locations(&error.to_string());
    SpecError::whole_file(format!(
        "invalid JSON at line {} column {}: {reason}",
        error.line(),
        error.column()
    ))
}

/// Drops the ` at line L column C` and ` at position N` parts of a parser message (the location
/// is reported once, up front) and keeps the message on one line without a trailing period.
fn without_locations(message: &str) -> String {
    let mut result = String::with_capacity(message.len());
    let mut rest = message;
    loop {
        let next_location = [" at line ", " at position "]
            .iter()
            .filter_map(|marker| rest.find(marker).map(|index| (index, marker.len())))
            .min();
        let Some((index, marker_length)) = next_location else {
            result.push_str(rest);
            break;
        };
        result.push_str(&rest[..index]);
        let after_marker = &rest[index + marker_length..];
        let mut remaining =
            after_marker.trim_start_matches(|character: char| character.is_ascii_digit());
        if let Some(after_column) = remaining.strip_prefix(" column ") {
            remaining =
                after_column.trim_start_matches(|character: char| character.is_ascii_digit());
        }
        rest = remaining;
    }
    let one_line = result.split_whitespace().collect::<Vec<_>>().join(" ");
    one_line.trim_end_matches('.').to_string()
}

fn yaml_to_json(value: serde_norway::Value, path: &str) -> Result<Value, SpecError> {
    Ok(match value {
        serde_norway::Value::Null => Value::Null,
        serde_norway::Value::Bool(boolean) => Value::Bool(boolean),
        serde_norway::Value::Number(number) => {
            if let Some(unsigned) = number.as_u64() {
                Value::from(unsigned)
            } else if let Some(signed) = number.as_i64() {
                Value::from(signed)
            } else {
                let float = number.as_f64().and_then(Number::from_f64);
                match float {
                    Some(float) => Value::Number(float),
                    None => {
                        return Err(SpecError::new(
                            path,
                            format!("{number} is not a finite number"),
                        ))
                    }
                }
            }
        }
        serde_norway::Value::String(string) => Value::String(string),
        serde_norway::Value::Sequence(elements) => Value::Array(
            elements
                .into_iter()
                .enumerate()
                .map(|(index, element)| yaml_to_json(element, &index_path(path, index)))
                .collect::<Result<_, _>>()?,
        ),
        serde_norway::Value::Mapping(mapping) => {
            let mut object = Map::new();
            for (key, element) in mapping {
                let key = match key {
                    serde_norway::Value::String(key) => key,
                    serde_norway::Value::Number(number) => {
                        return Err(SpecError::new(
                            path,
                            format!(
                                "the key {number} is not a string: quote it, like \"{number}\""
                            ),
                        ))
                    }
                    serde_norway::Value::Bool(boolean) => {
                        return Err(SpecError::new(
                            path,
                            format!(
                                "the key {boolean} is not a string: quote it, like \"{boolean}\""
                            ),
                        ))
                    }
                    _ => return Err(SpecError::new(path, "keys must be strings")),
                };
                let element = yaml_to_json(element, &key_path(path, &key))?;
                object.insert(key, element);
            }
            Value::Object(object)
        }
        serde_norway::Value::Tagged(tagged) => {
            return Err(SpecError::new(
                path,
                format!("tags like {} are not supported in specs", tagged.tag),
            ))
        }
    })
}

/// `parent.key`, or `parent["odd key"]` when the key is not a plain word.
pub(crate) fn key_path(parent: &str, key: &str) -> String {
    match (is_plain_word(key), parent.is_empty()) {
        (true, true) => key.to_string(),
        (true, false) => format!("{parent}.{key}"),
        (false, _) => format!("{parent}[{key:?}]"),
    }
}

fn is_plain_word(key: &str) -> bool {
    !key.is_empty()
        && key.chars().all(|character| {
            character.is_ascii_alphanumeric() || character == '_' || character == '-'
        })
}

/// A key as it can be written back into YAML: bare when it is a plain word, quoted otherwise.
fn shown_key(key: &str) -> String {
    if is_plain_word(key) {
        key.to_string()
    } else {
        format!("{key:?}")
    }
}

pub(crate) fn index_path(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

/// How a value reads in an error: `the string "x"`, `the number 3`, `a list`.
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "nothing (null)".to_string(),
        Value::Bool(boolean) => format!("{boolean}"),
        Value::Number(number) => format!("the number {number}"),
        Value::String(string) => format!("the string {string:?}"),
        Value::Array(_) => "a list".to_string(),
        Value::Object(_) => "a mapping".to_string(),
    }
}

fn type_error(path: &str, expected: &str, found: &Value) -> SpecError {
    SpecError::new(
        path,
        format!("expected {expected}, found {}", describe(found)),
    )
}

/// One object of the spec with its field path; refuses fields it does not know.
struct Fields<'a> {
    path: String,
    object: &'a Map<String, Value>,
}

impl<'a> Fields<'a> {
    fn new(
        object: &'a Map<String, Value>,
        path: &str,
        allowed: &[&str],
    ) -> Result<Fields<'a>, SpecError> {
        // Report unknown fields in a stable order, whatever the map's order.
        let mut unknown: Vec<&String> = object
            .keys()
            .filter(|key| !allowed.contains(&key.as_str()))
            .collect();
        unknown.sort();
        if let Some(key) = unknown.first() {
            return Err(SpecError::new(
                key_path(path, key),
                unknown_field_message(path, key, allowed),
            ));
        }
        Ok(Fields {
            path: path.to_string(),
            object,
        })
    }

    fn from_value(value: &'a Value, path: &str, allowed: &[&str]) -> Result<Fields<'a>, SpecError> {
        match value {
            Value::Object(object) => Fields::new(object, path, allowed),
            other => Err(type_error(path, "a mapping", other)),
        }
    }

    /// The field's value; `None` when it is absent or null (null means unset everywhere).
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.object.get(key).filter(|value| !value.is_null())
    }

    fn path_of(&self, key: &str) -> String {
        key_path(&self.path, key)
    }
}

fn unknown_field_message(parent_path: &str, key: &str, allowed: &[&str]) -> String {
    let known: Vec<&str> = allowed
        .iter()
        .copied()
        .filter(|field| *field != "status")
        .collect();
    let lower_key = key.to_ascii_lowercase();
    let alias = FIELD_ALIASES
        .iter()
        .find(|(alias, _)| *alias == lower_key.replace('-', "_"))
        .map(|(_, field)| *field);
    if parent_path.is_empty() {
        // `memory: 1G` at the top level belongs under resources.
        let resource_field = alias.unwrap_or(lower_key.as_str());
        if RESOURCE_FIELDS.contains(&resource_field) {
            return format!("unknown field; did you mean `resources.{resource_field}`?");
        }
    }
    // An alias, else the closest field by edit distance, else a field the key abbreviates.
    let suggestion = alias
        .filter(|field| known.contains(field))
        .or_else(|| {
            known
                .iter()
                .map(|field| (strsim::damerau_levenshtein(&lower_key, field), *field))
                .filter(|(distance, field)| *distance <= if field.len() <= 4 { 1 } else { 2 })
                .min()
                .map(|(_, field)| field)
        })
        .or_else(|| {
            let abbreviates =
                |field: &&str| lower_key.len() >= 3 && field.starts_with(lower_key.as_str());
            known.iter().copied().find(abbreviates)
        });
    match suggestion {
        Some(field) => format!("unknown field; did you mean `{field}`?"),
        None => format!("unknown field; expected one of {}", known.join(", ")),
    }
}

fn parse_workload(object: &Map<String, Value>) -> Result<WorkloadSpec, SpecError> {
    let fields = Fields::new(object, "", TOP_LEVEL_FIELDS)?;

    let name = match fields.get("name") {
        Some(Value::String(name)) => {
            units::validate_name(name).map_err(|reason| SpecError::new("name", reason))?;
            name.clone()
        }
        Some(other) => return Err(type_error("name", "a string", other)),
        None => {
            return Err(SpecError::new(
                "name",
                "missing: every workload needs a name, like name: web",
            ))
        }
    };

    let image = match fields.get("image") {
        Some(Value::String(image)) => Some(image.as_str()),
        Some(other) => return Err(type_error("image", "a string", other)),
        None => None,
    };
    let kind = match fields.get("kind") {
        Some(value) => parse_kind(value)?,
        None if image.is_some() => WorkloadKind::Container,
        None => WorkloadKind::Process,
    };
    let image = parse_image(kind, image)?;

    let command = match fields.get("command") {
        Some(value) => Some(parse_command(value, "command")?),
        None => None,
    };
    let entrypoint = match fields.get("entrypoint") {
        Some(Value::Array(arguments)) if arguments.is_empty() => Some(Vec::new()),
        Some(Value::Null) | None => None,
        Some(value) => Some(parse_command(value, "entrypoint")?),
    };
    let tty = match fields.get("tty") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(tty)) => *tty,
        Some(other) => return Err(type_error("tty", "true or false", other)),
    };
    if kind == WorkloadKind::Process && command.is_none() {
        return Err(SpecError::new(
            "command",
            "a process workload needs a command, e.g. command: [sleep, \"60\"]",
        ));
    }

    let workdir = match fields.get("workdir") {
        Some(Value::String(workdir)) => {
            units::validate_absolute_path(workdir).map_err(|reason| {
                SpecError::new("workdir", format!("invalid workdir {workdir:?}: {reason}"))
            })?;
            Some(workdir.clone())
        }
        Some(other) => return Err(type_error("workdir", "an absolute path", other)),
        None => None,
    };

    let env = match fields.get("env") {
        Some(value) => parse_string_map(value, "env")?,
        None => BTreeMap::new(),
    };
    let resources = match fields.get("resources") {
        Some(value) => parse_resources(value)?,
        None => Resources::default(),
    };
    let ports = match fields.get("ports") {
        Some(value) => parse_ports(value)?,
        None => Vec::new(),
    };
    let volumes = match fields.get("volumes") {
        Some(value) => parse_volumes(value)?,
        None => Vec::new(),
    };
    let network = match fields.get("network") {
        Some(value) => parse_network(value)?,
        None => NetworkMode::Bridge,
    };
    let userns = match fields.get("userns") {
        Some(value) => parse_userns(value)?,
        None => UserNamespace::Private,
    };
    let secrets = match fields.get("secrets") {
        Some(value) => parse_secrets(value, &env, &volumes)?,
        None => Vec::new(),
    };
    let publish_all = match fields.get("publish_all") {
        Some(Value::Bool(publish_all)) => *publish_all,
        Some(other) => return Err(type_error("publish_all", "true or false", other)),
        None => false,
    };
    if publish_all && kind != WorkloadKind::Container {
        return Err(SpecError::new(
            "publish_all",
            format!(
                "publish_all publishes the ports a container image exposes; a {} workload has no such ports: list them in ports instead",
                kind.as_str()
            ),
        ));
    }
    if publish_all && network != NetworkMode::Bridge {
        return Err(SpecError::new(
            "publish_all",
            format!(
                "ports cannot be published with network: {}: remove publish_all, or use network: bridge",
                network.as_str()
            ),
        ));
    }
    if !ports.is_empty() {
        match network {
            NetworkMode::Bridge => {}
            NetworkMode::Host => {
                return Err(SpecError::new(
                    "ports",
                    "ports are meaningless with network: host, the workload already listens on the host's ports: \
                     remove ports, or use network: bridge",
                ))
            }
            NetworkMode::None => {
                return Err(SpecError::new(
                    "ports",
                    "ports cannot be published with network: none, the workload has no network: \
                     remove ports, or use network: bridge",
                ))
            }
        }
    }
    let restart = match fields.get("restart") {
        Some(value) => parse_restart(value)?,
        None => RestartPolicy::default(),
    };
    let health = match fields.get("health") {
        Some(value) => Some(parse_health(value)?),
        None => None,
    };
    let replicas = match fields.get("replicas") {
        Some(value) => integer_in_range(value, "replicas", 0, MAXIMUM_REPLICAS)? as u32,
        None => 1,
    };
    let autoscale = match fields.get("autoscale") {
        Some(value) => Some(parse_autoscale(value)?),
        None => None,
    };
    let heal = match fields.get("heal") {
        Some(value) => parse_heal(value, resources.memory)?,
        None => Heal::default(),
    };
    let labels = match fields.get("labels") {
        Some(value) => parse_string_map(value, "labels")?,
        None => BTreeMap::new(),
    };
    check_exec_size(&command, &env)?;

    Ok(WorkloadSpec {
        name,
        kind,
        image,
        command,
        entrypoint,
        tty,
        workdir,
        env,
        resources,
        ports,
        publish_all,
        volumes,
        secrets,
        network,
        userns,
        restart,
        health,
        replicas,
        autoscale,
        heal,
        labels,
    })
}

fn parse_kind(value: &Value) -> Result<WorkloadKind, SpecError> {
    match value {
        Value::String(kind) => match kind.as_str() {
            "process" => Ok(WorkloadKind::Process),
            "container" => Ok(WorkloadKind::Container),
            "vm" => Ok(WorkloadKind::Vm),
            "wasm" => Ok(WorkloadKind::Wasm),
            _ => Err(SpecError::new(
                "kind",
                format!("unknown kind {kind:?}: use process, container, vm or wasm"),
            )),
        },
        other => Err(type_error(
            "kind",
            "one of process, container, vm or wasm",
            other,
        )),
    }
}

fn parse_image(kind: WorkloadKind, image: Option<&str>) -> Result<Option<String>, SpecError> {
    match (kind, image) {
        (WorkloadKind::Process, None) => Ok(None),
        (WorkloadKind::Process, Some(_)) => Err(SpecError::new(
            "image",
            "a process workload runs the host's own programs and takes no image: remove image, or set kind: container",
        )),
        (WorkloadKind::Container, None) => {
            Err(SpecError::new("image", "a container workload needs an image, e.g. image: nginx:1.27"))
        }
        (WorkloadKind::Container, Some(reference)) => {
            units::normalize_image(reference).map(Some).map_err(|reason| SpecError::new("image", reason))
        }
        (WorkloadKind::Vm | WorkloadKind::Wasm, None) => Err(SpecError::new(
            "image",
            format!("a {} workload needs an image, a file path or URL", kind.as_str()),
        )),
        (WorkloadKind::Vm | WorkloadKind::Wasm, Some(location)) => {
            if location.trim().is_empty() || location.contains('\0') {
                Err(SpecError::new("image", format!("invalid image {location:?}: give a file path or URL")))
            } else {
                Ok(Some(location.to_string()))
            }
        }
    }
}

/// A command is a list of arguments (numbers and booleans become strings), or one string, which
/// runs through the shell: `command: "echo $HOME"` means `["sh", "-c", "echo $HOME"]`.
fn parse_command(value: &Value, path: &str) -> Result<Vec<String>, SpecError> {
    let command = match value {
        Value::String(line) => {
            if line.trim().is_empty() {
                return Err(SpecError::new(
                    path,
                    "the command is empty: give a program and its arguments",
                ));
            }
            vec!["sh".to_string(), "-c".to_string(), line.clone()]
        }
        Value::Array(arguments) => arguments
            .iter()
            .enumerate()
            .map(|(index, argument)| scalar_to_string(argument, &index_path(path, index)))
            .collect::<Result<Vec<_>, _>>()?,
        other => {
            return Err(type_error(
                path,
                "a list of arguments or a shell command line",
                other,
            ))
        }
    };
    units::validate_command(&command).map_err(|reason| SpecError::new(path, reason))?;
    Ok(command)
}

/// Strings as they are; numbers and booleans as YAML writes them (`8000`, `true`).
fn scalar_to_string(value: &Value, path: &str) -> Result<String, SpecError> {
    match value {
        Value::String(string) => Ok(string.clone()),
        Value::Number(number) => Ok(number.to_string()),
        Value::Bool(boolean) => Ok(boolean.to_string()),
        other => Err(type_error(path, "a string", other)),
    }
}

/// `env` and `labels`: a mapping of strings, or a list of `KEY=VALUE` strings.
fn parse_string_map(value: &Value, path: &str) -> Result<BTreeMap<String, String>, SpecError> {
    let mut map = BTreeMap::new();
    match value {
        Value::Object(object) => {
            for (key, element) in object {
                let element_path = key_path(path, key);
                units::validate_env_key(key)
                    .map_err(|reason| SpecError::new(&element_path, reason))?;
                let text = match element {
                    Value::Null => {
                        return Err(SpecError::new(
                            &element_path,
                            format!(
                                "no value: write {}: \"\" for an empty value",
                                shown_key(key)
                            ),
                        ))
                    }
                    other => scalar_to_string(other, &element_path)?,
                };
                if text.contains('\0') {
                    return Err(SpecError::new(&element_path, "values must not contain NUL"));
                }
                map.insert(key.clone(), text);
            }
        }
        Value::Array(elements) => {
            for (index, element) in elements.iter().enumerate() {
                let element_path = index_path(path, index);
                let Value::String(assignment) = element else {
                    return Err(type_error(&element_path, "a KEY=VALUE string", element));
                };
                let (key, text) = units::parse_env_assignment(assignment)
                    .map_err(|reason| SpecError::new(&element_path, reason))?;
                if map.contains_key(&key) {
                    return Err(SpecError::new(
                        &element_path,
                        format!("the key {key:?} is set twice"),
                    ));
                }
                map.insert(key, text);
            }
        }
        other => return Err(type_error(path, "a mapping of names to values", other)),
    }
    Ok(map)
}

fn parse_resources(value: &Value) -> Result<Resources, SpecError> {
    let fields = Fields::from_value(value, "resources", RESOURCE_FIELDS)?;
    let cpu = match fields.get("cpu") {
        Some(value) => Some(parse_cpu_value(value, &fields.path_of("cpu"))?),
        None => None,
    };
    let memory = match fields.get("memory") {
        Some(value) => {
            let path = fields.path_of("memory");
            let bytes = parse_size_value(value, &path)?;
            if bytes < units::MINIMUM_MEMORY_BYTES {
                return Err(SpecError::new(
                    path,
                    format!(
                        "{} is too small: the minimum is {}",
                        units::format_size(bytes),
                        units::format_size(units::MINIMUM_MEMORY_BYTES)
                    ),
                ));
            }
            if bytes > units::MAXIMUM_MEMORY_BYTES {
                return Err(SpecError::new(
                    path,
                    format!(
                        "{} is too large: the maximum is {}",
                        units::format_size(bytes),
                        units::format_size(units::MAXIMUM_MEMORY_BYTES)
                    ),
                ));
            }
            Some(bytes)
        }
        None => None,
    };
    let disk = match fields.get("disk") {
        Some(value) => {
            let path = fields.path_of("disk");
            let bytes = parse_size_value(value, &path)?;
            if bytes == 0 {
                return Err(SpecError::new(path, "must be greater than 0"));
            }
            if bytes > units::MAXIMUM_DISK_BYTES {
                return Err(SpecError::new(
                    path,
                    format!(
                        "{} is too large: the maximum is {}",
                        units::format_size(bytes),
                        units::format_size(units::MAXIMUM_DISK_BYTES)
                    ),
                ));
            }
            Some(bytes)
        }
        None => None,
    };
    let pids = match fields.get("pids") {
        Some(value) => Some(integer_in_range(
            value,
            &fields.path_of("pids"),
            1,
            units::MAXIMUM_PIDS as i64,
        )? as u64),
        None => None,
    };
    let gpu = match fields.get("gpu") {
        Some(value) => Some(integer_in_range(value, &fields.path_of("gpu"), 0, 1024)? as u32),
        None => None,
    };
    Ok(Resources {
        cpu,
        memory,
        pids,
        gpu,
        disk,
    })
}

fn parse_cpu_value(value: &Value, path: &str) -> Result<f64, SpecError> {
    match value {
        Value::Number(number) => {
            let cores = number.as_f64().unwrap_or(f64::NAN);
            units::validate_cpu(cores)
                .map_err(|reason| SpecError::new(path, format!("invalid cpu {number}: {reason}")))
        }
        Value::String(text) => {
            units::parse_cpu(text).map_err(|reason| SpecError::new(path, reason))
        }
        other => Err(type_error(
            path,
            "a number of cores, like 1.5 or \"500m\"",
            other,
        )),
    }
}

fn parse_size_value(value: &Value, path: &str) -> Result<u64, SpecError> {
    match value {
        Value::Number(number) => match number.as_u64() {
            Some(bytes) => Ok(bytes),
            None => Err(SpecError::new(
                path,
                format!("invalid size {number}: a plain number counts bytes and must be whole: add a unit, like 1.5GiB"),
            )),
        },
        Value::String(text) => units::parse_size(text).map_err(|reason| SpecError::new(path, reason)),
        other => Err(type_error(path, "a size, like 512MiB or 2G", other)),
    }
}

/// A whole number between `minimum` and `maximum`; `3.0` counts as whole.
fn integer_in_range(
    value: &Value,
    path: &str,
    minimum: i64,
    maximum: i64,
) -> Result<i64, SpecError> {
    let Value::Number(number) = value else {
        return Err(type_error(path, "a whole number", value));
    };
    let integer = if let Some(signed) = number.as_i64() {
        Some(signed)
    } else if number.as_u64().is_some() {
        // Larger than any field allows; report it as out of range below.
        Some(i64::MAX)
    } else {
        number
            .as_f64()
            .filter(|float| float.fract() == 0.0 && float.abs() < 9.0e15)
            .map(|float| float as i64)
    };
    let Some(integer) = integer else {
        return Err(SpecError::new(
            path,
            format!("expected a whole number, found {number}"),
        ));
    };
    if integer < minimum || integer > maximum {
        let allowed = if maximum == i64::MAX {
            format!("use {minimum} or more")
        } else {
            format!("use {minimum} to {maximum}")
        };
        return Err(SpecError::new(
            path,
            format!("{number} is out of range: {allowed}"),
        ));
    }
    Ok(integer)
}

fn parse_port_number(value: &Value, path: &str) -> Result<u16, SpecError> {
    match value {
        Value::String(text) => {
            units::parse_port(text).map_err(|reason| SpecError::new(path, reason))
        }
        Value::Number(_) => {
            let number = integer_in_range(value, path, i64::MIN, i64::MAX)?;
            let in_range = u64::try_from(number).map_err(|_| {
                format!("port {number} is out of range: use a number from 1 to 65535")
            });
            in_range
                .and_then(units::validate_port)
                .map_err(|reason| SpecError::new(path, reason))
        }
        other => Err(type_error(path, "a port number", other)),
    }
}

fn parse_ports(value: &Value) -> Result<Vec<PortMapping>, SpecError> {
    let Value::Array(elements) = value else {
        return Err(SpecError::new(
            "ports",
            format!(
                "expected a list, found {}: write ports: [\"8080:80\"]",
                describe(value)
            ),
        ));
    };
    let mut ports = Vec::with_capacity(elements.len());
    let mut indexes_by_host_port: HashMap<(u16, Protocol), usize> = HashMap::new();
    for (index, element) in elements.iter().enumerate() {
        let path = index_path("ports", index);
        let mapping = match element {
            Value::String(text) => {
                units::parse_port_mapping(text).map_err(|reason| SpecError::new(&path, reason))?
            }
            Value::Number(_) => PortMapping {
                host: units::FREE_HOST_PORT,
                port: parse_port_number(element, &path)?,
                protocol: Protocol::Tcp,
                host_ip: None,
            },
            Value::Object(object) => {
                let fields = Fields::new(object, &path, PORT_FIELDS)?;
                let port = match fields.get("port") {
                    Some(value) => parse_port_number(value, &fields.path_of("port"))?,
                    None => {
                        return Err(SpecError::new(
                            fields.path_of("port"),
                            "missing: give the workload's port, like {host: 8080, port: 80}",
                        ))
                    }
                };
                // No host port (or 0): a free one, chosen when the instance starts.
                let host = match fields.get("host") {
                    None | Some(Value::Null) => units::FREE_HOST_PORT,
                    Some(value) if value.as_u64() == Some(0) || value.as_str() == Some("0") => {
                        units::FREE_HOST_PORT
                    }
                    Some(value) => parse_port_number(value, &fields.path_of("host"))?,
                };
                let protocol = match fields.get("protocol") {
                    Some(Value::String(protocol)) => units::parse_protocol(protocol)
                        .map_err(|reason| SpecError::new(fields.path_of("protocol"), reason))?,
                    Some(other) => {
                        return Err(type_error(&fields.path_of("protocol"), "tcp or udp", other))
                    }
                    None => Protocol::Tcp,
                };
                let host_ip = match fields.get("host_ip") {
                    Some(Value::String(address)) => Some(
                        units::parse_host_address(address)
                            .map_err(|reason| SpecError::new(fields.path_of("host_ip"), reason))?,
                    ),
                    Some(Value::Null) | None => None,
                    Some(other) => {
                        return Err(type_error(
                            &fields.path_of("host_ip"),
                            "an IPv4 address like \"127.0.0.1\"",
                            other,
                        ))
                    }
                };
                PortMapping {
                    host,
                    port,
                    protocol,
                    host_ip,
                }
            }
            other => return Err(type_error(&path, "a port mapping like \"8080:80\"", other)),
        };
        let chosen_at_start = mapping.host == units::FREE_HOST_PORT;
        if let Some(first_index) = indexes_by_host_port
            .get(&(mapping.host, mapping.protocol))
            .filter(|_| !chosen_at_start)
        {
            return Err(SpecError::new(
                &path,
                format!(
                    "host port {}/{} is already published by ports[{first_index}]: use another host port",
                    mapping.host,
                    mapping.protocol.as_str()
                ),
            ));
        }
        indexes_by_host_port.insert((mapping.host, mapping.protocol), index);
        ports.push(mapping);
    }
    Ok(ports)
}

/// `secrets: [name, {name, env, file}]`: a bare name, or an object naming a variable and/or a
/// file, becomes a file under `/run/secrets` unless the object names a variable only.
fn parse_secrets(
    value: &Value,
    env: &BTreeMap<String, String>,
    volumes: &[VolumeMount],
) -> Result<Vec<SecretMount>, SpecError> {
    let Value::Array(elements) = value else {
        return Err(SpecError::new(
            "secrets",
            format!(
                "expected a list, found {}: write secrets: [db-password] or secrets: [{{name: db-password, env: DB_PASSWORD}}]",
                describe(value)
            ),
        ));
    };
    let mut secrets: Vec<SecretMount> = Vec::with_capacity(elements.len());
    for (index, element) in elements.iter().enumerate() {
        let path = index_path("secrets", index);
        let default_file = |name: &str| Some(format!("{SECRETS_DIR}/{name}"));
        let secret = match element {
            Value::String(name) => {
                units::validate_name(name)
                    .map_err(|reason| SpecError::new(&path, format!("secret name: {reason}")))?;
                SecretMount {
                    name: name.clone(),
                    env: None,
                    file: default_file(name),
                }
            }
            Value::Object(object) => {
                let fields = Fields::new(object, &path, SECRET_FIELDS)?;
                let name = match fields.get("name") {
                    Some(Value::String(name)) => {
                        units::validate_name(name).map_err(|reason| {
                            SpecError::new(fields.path_of("name"), format!("secret name: {reason}"))
                        })?;
                        name.clone()
                    }
                    Some(other) => {
                        return Err(type_error(&fields.path_of("name"), "a secret name", other))
                    }
                    None => {
                        return Err(SpecError::new(
                            fields.path_of("name"),
                            "missing: name the secret, like name: db-password",
                        ))
                    }
                };
                let variable = match fields.get("env") {
                    Some(Value::String(variable)) => {
                        units::validate_env_key(variable)
                            .map_err(|reason| SpecError::new(fields.path_of("env"), reason))?;
                        Some(variable.clone())
                    }
                    Some(Value::Null) | None => None,
                    Some(other) => {
                        return Err(type_error(&fields.path_of("env"), "a variable name", other))
                    }
                };
                let file = match fields.get("file") {
                    Some(Value::String(file)) => {
                        units::validate_mount_target(file)
                            .map_err(|reason| SpecError::new(fields.path_of("file"), reason))?;
                        Some(file.clone())
                    }
                    Some(Value::Null) | None if variable.is_none() => default_file(&name),
                    Some(Value::Null) | None => None,
                    Some(other) => {
                        return Err(type_error(
                            &fields.path_of("file"),
                            "an absolute path",
                            other,
                        ))
                    }
                };
                SecretMount {
                    name,
                    env: variable,
                    file,
                }
            }
            other => {
                return Err(type_error(
                    &path,
                    "a secret name or {name, env, file}",
                    other,
                ))
            }
        };
        if let Some(variable) = &secret.env {
            let taken_by_env = env.contains_key(variable);
            let taken_by_secret = secrets
                .iter()
                .any(|earlier| earlier.env.as_ref() == Some(variable));
            if taken_by_env || taken_by_secret {
                return Err(SpecError::new(
                    format!("{path}.env"),
                    format!(
                        "the variable {variable} is already set {}: use another variable",
                        if taken_by_env {
                            "in env"
                        } else {
                            "by an earlier secret"
                        }
                    ),
                ));
            }
        }
        if let Some(file) = &secret.file {
            let clash = secrets
                .iter()
                .any(|earlier| earlier.file.as_ref() == Some(file))
                || volumes.iter().any(|volume| volume.target == *file);
            if clash {
                return Err(SpecError::new(
                    format!("{path}.file"),
                    format!(
                        "{file} is already mounted by another secret or a volume: use another path"
                    ),
                ));
            }
        }
        secrets.push(secret);
    }
    Ok(secrets)
}

fn parse_volumes(value: &Value) -> Result<Vec<VolumeMount>, SpecError> {
    let Value::Array(elements) = value else {
        return Err(SpecError::new(
            "volumes",
            format!(
                "expected a list, found {}: write volumes: [\"data:/var/lib/data\"]",
                describe(value)
            ),
        ));
    };
    let mut volumes: Vec<VolumeMount> = Vec::with_capacity(elements.len());
    for (index, element) in elements.iter().enumerate() {
        let path = index_path("volumes", index);
        let volume = match element {
            Value::String(text) => {
                units::parse_volume(text).map_err(|reason| SpecError::new(&path, reason))?
            }
            Value::Object(object) => {
                let fields = Fields::new(object, &path, VOLUME_FIELDS)?;
                let source = match fields.get("source") {
                    Some(Value::String(source)) => {
                        units::validate_mount_source(source)
                            .map_err(|reason| SpecError::new(fields.path_of("source"), reason))?;
                        source.clone()
                    }
                    Some(other) => {
                        return Err(type_error(
                            &fields.path_of("source"),
                            "a path or volume name",
                            other,
                        ))
                    }
                    None => {
                        return Err(SpecError::new(
                            fields.path_of("source"),
                            "missing: give a host path or a volume name, like source: data",
                        ))
                    }
                };
                let target = match fields.get("target") {
                    Some(Value::String(target)) => {
                        units::validate_mount_target(target)
                            .map_err(|reason| SpecError::new(fields.path_of("target"), reason))?;
                        target.clone()
                    }
                    Some(other) => {
                        return Err(type_error(
                            &fields.path_of("target"),
                            "an absolute path",
                            other,
                        ))
                    }
                    None => return Err(SpecError::new(
                        fields.path_of("target"),
                        "missing: give the path inside the workload, like target: /var/lib/data",
                    )),
                };
                let read_only = match fields.get("read_only") {
                    Some(Value::Bool(read_only)) => *read_only,
                    Some(other) => {
                        return Err(type_error(
                            &fields.path_of("read_only"),
                            "true or false",
                            other,
                        ))
                    }
                    None => false,
                };
                VolumeMount {
                    source,
                    target,
                    read_only,
                }
            }
            other => {
                return Err(type_error(
                    &path,
                    "a volume like \"data:/var/lib/data\"",
                    other,
                ))
            }
        };
        let comparable_target = |target: &str| target.trim_end_matches('/').to_string();
        if let Some(first_index) = volumes.iter().position(|earlier| {
            comparable_target(&earlier.target) == comparable_target(&volume.target)
        }) {
            return Err(SpecError::new(
                &path,
                format!(
                    "target {:?} is already used by volumes[{first_index}]: mount each path once",
                    volume.target
                ),
            ));
        }
        volumes.push(volume);
    }
    Ok(volumes)
}

fn parse_userns(value: &Value) -> Result<UserNamespace, SpecError> {
    match value {
        Value::String(userns) => match userns.as_str() {
            "private" => Ok(UserNamespace::Private),
            "host" => Ok(UserNamespace::Host),
            _ => Err(SpecError::new(
                "userns",
                format!("unknown user namespace {userns:?}: use private (the default) or host"),
            )),
        },
        Value::Null => Ok(UserNamespace::Private),
        other => Err(type_error("userns", "private or host", other)),
    }
}

fn parse_network(value: &Value) -> Result<NetworkMode, SpecError> {
    match value {
        Value::String(network) => match network.as_str() {
            "bridge" => Ok(NetworkMode::Bridge),
            "host" => Ok(NetworkMode::Host),
            "none" => Ok(NetworkMode::None),
            _ => Err(SpecError::new(
                "network",
                format!("unknown network {network:?}: use bridge, host or none"),
            )),
        },
        other => Err(type_error("network", "one of bridge, host or none", other)),
    }
}

fn parse_restart(value: &Value) -> Result<RestartPolicy, SpecError> {
    match value {
        Value::String(text) => {
            units::parse_restart(text).map_err(|reason| SpecError::new("restart", reason))
        }
        Value::Object(object) => {
            let fields = Fields::new(object, "restart", RESTART_FIELDS)?;
            let policy = match fields.get("policy") {
                Some(Value::String(policy)) => units::parse_restart_mode(policy)
                    .map_err(|reason| SpecError::new(fields.path_of("policy"), reason))?,
                Some(other) => {
                    return Err(type_error(
                        &fields.path_of("policy"),
                        "one of never, on-failure or always",
                        other,
                    ))
                }
                None => RestartMode::OnFailure,
            };
            let max_retries = match fields.get("max_retries") {
                Some(value) => {
                    let path = fields.path_of("max_retries");
                    let retries = integer_in_range(value, &path, 0, i64::from(u32::MAX))? as u32;
                    if policy != RestartMode::OnFailure {
                        return Err(SpecError::new(
                            path,
                            format!(
                                "only applies to policy on-failure, not {}: remove max_retries, or use policy: on-failure",
                                policy.as_str()
                            ),
                        ));
                    }
                    Some(retries)
                }
                None => None,
            };
            Ok(RestartPolicy {
                policy,
                max_retries,
            })
        }
        other => Err(type_error(
            "restart",
            "a policy (never, on-failure or always) or {policy, max_retries}",
            other,
        )),
    }
}

fn parse_health(value: &Value) -> Result<HealthCheck, SpecError> {
    let fields = Fields::from_value(value, "health", HEALTH_FIELDS)?;
    let probes: Vec<(&str, &Value)> = ["http", "tcp", "exec"]
        .into_iter()
        .filter_map(|probe_kind| {
            fields
                .get(probe_kind)
                .map(|probe_value| (probe_kind, probe_value))
        })
        .collect();
    let probe = match (fields.get("kind"), probes.as_slice()) {
        (Some(_), [_, ..]) => return Err(SpecError::new(
            "health",
            "use either kind with port, path or command, or one of http, tcp and exec, not both",
        )),
        (Some(kind), []) => parse_normalized_probe(&fields, kind)?,
        (None, [(probe_kind, probe_value)]) => {
            for normalized_field in ["port", "path", "command"] {
                if fields.get(normalized_field).is_some() {
                    return Err(SpecError::new(
                        fields.path_of(normalized_field),
                        format!("belongs inside the {probe_kind} probe: move it under health.{probe_kind}"),
                    ));
                }
            }
            parse_probe(probe_kind, probe_value, &fields.path_of(probe_kind))?
        }
        (None, [(first, _), (second, _), ..]) => {
            return Err(SpecError::new(
                "health",
                format!(
                    "has both {first} and {second} probes: use exactly one of http, tcp and exec"
                ),
            ))
        }
        (None, []) => {
            return Err(SpecError::new(
                "health",
                "no probe: add one of http, tcp or exec, like http: {port: 8080, path: /}",
            ))
        }
    };
    let interval =
        parse_health_duration(&fields, "interval", false)?.unwrap_or(DEFAULT_HEALTH_INTERVAL);
    let timeout =
        parse_health_duration(&fields, "timeout", false)?.unwrap_or(DEFAULT_HEALTH_TIMEOUT);
    let start_period =
        parse_health_duration(&fields, "start_period", true)?.unwrap_or(Duration::ZERO);
    let retries = match fields.get("retries") {
        Some(value) => {
            integer_in_range(value, &fields.path_of("retries"), 1, MAXIMUM_HEALTH_RETRIES)? as u32
        }
        None => DEFAULT_HEALTH_RETRIES,
    };
    Ok(HealthCheck {
        probe,
        interval,
        timeout,
        retries,
        start_period,
    })
}

/// `http: {port, path}` or `"PORT/PATH"` or a port; `tcp: {port}` or a port; `exec: command`.
fn parse_probe(probe_kind: &str, value: &Value, path: &str) -> Result<HealthProbe, SpecError> {
    match (probe_kind, value) {
        ("http", Value::String(text)) => {
            units::parse_http_probe(text).map_err(|reason| SpecError::new(path, reason))
        }
        ("http", Value::Number(_)) => Ok(HealthProbe::Http {
            port: parse_port_number(value, path)?,
            path: "/".to_string(),
        }),
        ("http", Value::Object(object)) => {
            let fields = Fields::new(object, path, HTTP_PROBE_FIELDS)?;
            let port = required_port(&fields)?;
            let http_path = parse_http_path(&fields)?;
            Ok(HealthProbe::Http {
                port,
                path: http_path,
            })
        }
        ("http", other) => Err(type_error(path, "{port, path} or \"PORT/PATH\"", other)),
        ("tcp", Value::String(_) | Value::Number(_)) => Ok(HealthProbe::Tcp {
            port: parse_port_number(value, path)?,
        }),
        ("tcp", Value::Object(object)) => {
            let fields = Fields::new(object, path, TCP_PROBE_FIELDS)?;
            Ok(HealthProbe::Tcp {
                port: required_port(&fields)?,
            })
        }
        ("tcp", other) => Err(type_error(path, "{port} or a port number", other)),
        (_, value) => Ok(HealthProbe::Exec {
            command: parse_command(value, path)?,
        }),
    }
}

/// The normalised form: `{kind, port, path, command}` with the unused ones null.
fn parse_normalized_probe(fields: &Fields<'_>, kind: &Value) -> Result<HealthProbe, SpecError> {
    let kind_path = fields.path_of("kind");
    let kind = match kind {
        Value::String(kind) if ["http", "tcp", "exec"].contains(&kind.as_str()) => kind.as_str(),
        Value::String(kind) => {
            return Err(SpecError::new(
                kind_path,
                format!("unknown probe kind {kind:?}: use http, tcp or exec"),
            ))
        }
        other => return Err(type_error(&kind_path, "one of http, tcp or exec", other)),
    };
    let unused_fields: &[&str] = match kind {
        "http" => &["command"],
        "tcp" => &["path", "command"],
        _ => &["port", "path"],
    };
    for unused_field in unused_fields {
        if fields.get(unused_field).is_some() {
            return Err(SpecError::new(
                fields.path_of(unused_field),
                format!("is not used by the {kind} probe: remove it"),
            ));
        }
    }
    match kind {
        "http" => Ok(HealthProbe::Http {
            port: required_port(fields)?,
            path: parse_http_path(fields)?,
        }),
        "tcp" => Ok(HealthProbe::Tcp {
            port: required_port(fields)?,
        }),
        _ => match fields.get("command") {
            Some(command) => Ok(HealthProbe::Exec {
                command: parse_command(command, &fields.path_of("command"))?,
            }),
            None => Err(SpecError::new(
                fields.path_of("command"),
                "missing: an exec probe needs a command, like command: [pg_isready]",
            )),
        },
    }
}

fn required_port(fields: &Fields<'_>) -> Result<u16, SpecError> {
    match fields.get("port") {
        Some(value) => parse_port_number(value, &fields.path_of("port")),
        None => Err(SpecError::new(
            fields.path_of("port"),
            "missing: give the port to probe, like port: 8080",
        )),
    }
}

fn parse_http_path(fields: &Fields<'_>) -> Result<String, SpecError> {
    match fields.get("path") {
        Some(Value::String(http_path)) => {
            units::validate_http_path(http_path)
                .map_err(|reason| SpecError::new(fields.path_of("path"), reason))?;
            Ok(http_path.clone())
        }
        Some(other) => Err(type_error(
            &fields.path_of("path"),
            "a path like /healthz",
            other,
        )),
        None => Ok("/".to_string()),
    }
}

/// `interval`/`timeout`/`start_period` as a duration (`10s`, or an integer meaning seconds), or
/// the normalised `NAME_ms` as an integer of milliseconds; never both. Zero only where
/// `zero_allowed`.
fn parse_health_duration(
    fields: &Fields<'_>,
    name: &str,
    zero_allowed: bool,
) -> Result<Option<Duration>, SpecError> {
    let milliseconds_name = format!("{name}_ms");
    let (path, duration) = match (fields.get(name), fields.get(&milliseconds_name)) {
        (Some(_), Some(_)) => {
            return Err(SpecError::new(
                fields.path_of(&milliseconds_name),
                format!("give {name} or {milliseconds_name}, not both"),
            ))
        }
        (Some(value), None) => {
            let path = fields.path_of(name);
            let duration = match value {
                Value::String(text) => {
                    units::parse_duration(text).map_err(|reason| SpecError::new(&path, reason))?
                }
                Value::Number(_) => {
                    Duration::from_secs(integer_in_range(value, &path, 0, i64::MAX)? as u64)
                }
                other => return Err(type_error(&path, "a duration like 10s or 500ms", other)),
            };
            (path, duration)
        }
        (None, Some(value)) => {
            let path = fields.path_of(&milliseconds_name);
            let milliseconds = integer_in_range(value, &path, 0, i64::MAX)? as u64;
            (path, Duration::from_millis(milliseconds))
        }
        (None, None) => return Ok(None),
    };
    if duration.is_zero() && !zero_allowed {
        return Err(SpecError::new(path, "must be longer than 0, like 10s"));
    }
    if duration > MAXIMUM_HEALTH_DURATION {
        return Err(SpecError::new(path, "must be at most 24h"));
    }
    if duration.subsec_nanos() % 1_000_000 != 0 {
        return Err(SpecError::new(
            path,
            "must be a whole number of milliseconds, like 1500ms",
        ));
    }
    Ok(Some(duration))
}

fn parse_autoscale(value: &Value) -> Result<Autoscale, SpecError> {
    let fields = Fields::from_value(value, "autoscale", AUTOSCALE_FIELDS)?;
    let min = match fields.get("min") {
        Some(value) => integer_in_range(value, &fields.path_of("min"), 1, MAXIMUM_REPLICAS)? as u32,
        None => 1,
    };
    let max = match fields.get("max") {
        Some(value) => integer_in_range(value, &fields.path_of("max"), 1, MAXIMUM_REPLICAS)? as u32,
        None => {
            return Err(SpecError::new(
                fields.path_of("max"),
                "missing: give the most replicas to run, like max: 4",
            ))
        }
    };
    if min > max {
        return Err(SpecError::new(
            fields.path_of("min"),
            format!("min {min} is greater than max {max}: make min at most max"),
        ));
    }
    let cpu_path = fields.path_of("cpu");
    let cpu_percent = match fields.get("cpu") {
        Some(Value::Number(number)) => number.as_f64().unwrap_or(f64::NAN),
        Some(Value::String(text)) => text
            .trim()
            .trim_end_matches('%')
            .trim()
            .parse::<f64>()
            .map_err(|_| {
                SpecError::new(
                    &cpu_path,
                    format!("invalid cpu target {text:?}: use a percent, like 70 or \"70%\""),
                )
            })?,
        Some(other) => {
            return Err(type_error(
                &cpu_path,
                "a target CPU percent, like 70",
                other,
            ))
        }
        None => {
            return Err(SpecError::new(
                cpu_path,
                "missing: give the target CPU percent, like cpu: 70",
            ))
        }
    };
    if !(1.0..=100.0).contains(&cpu_percent) {
        return Err(SpecError::new(
            cpu_path,
            format!("{cpu_percent} is out of range: use a target CPU percent from 1 to 100"),
        ));
    }
    Ok(Autoscale {
        min,
        max,
        cpu_percent,
    })
}

/// `heal: auto`, or `heal: {policy: auto, memory_max: 2GiB}`; `memory` is the spec's limit,
/// which `memory_max` bounds the raises of.
fn parse_heal(value: &Value, memory: Option<u64>) -> Result<Heal, SpecError> {
    let parse_policy = |text: &str, path: &str| match text {
        "off" => Ok(HealPolicy::Off),
        "suggest" => Ok(HealPolicy::Suggest),
        "auto" => Ok(HealPolicy::Auto),
        _ => Err(SpecError::new(
            path,
            format!("unknown policy {text:?}: use off, suggest or auto"),
        )),
    };
    let heal = match value {
        Value::String(text) => Heal {
            policy: parse_policy(text, "heal")?,
            memory_max: None,
        },
        Value::Object(_) => {
            let fields = Fields::from_value(value, "heal", HEAL_FIELDS)?;
            let policy = match fields.get("policy") {
                Some(Value::String(text)) => parse_policy(text, &fields.path_of("policy"))?,
                Some(other) => {
                    return Err(type_error(
                        &fields.path_of("policy"),
                        "one of off, suggest or auto",
                        other,
                    ))
                }
                None => HealPolicy::default(),
            };
            let memory_max = match fields.get("memory_max") {
                Some(value) => {
                    let path = fields.path_of("memory_max");
                    let bytes = parse_size_value(value, &path)?;
                    let Some(memory) = memory else {
                        return Err(SpecError::new(
                            path,
                            "bounds raises of resources.memory, which is not set: set resources.memory, \
                             the limit to start from",
                        ));
                    };
                    if bytes < memory {
                        return Err(SpecError::new(
                            path,
                            format!(
                                "{} is below resources.memory {}: make memory_max at least the limit it raises",
                                units::format_size(bytes),
                                units::format_size(memory)
                            ),
                        ));
                    }
                    if bytes > units::MAXIMUM_MEMORY_BYTES {
                        return Err(SpecError::new(
                            path,
                            format!(
                                "{} is too large: the maximum is {}",
                                units::format_size(bytes),
                                units::format_size(units::MAXIMUM_MEMORY_BYTES)
                            ),
                        ));
                    }
                    Some(bytes)
                }
                None => None,
            };
            Heal { policy, memory_max }
        }
        other => {
            return Err(type_error(
                "heal",
                "a policy (off, suggest or auto) or {policy, memory_max}",
                other,
            ))
        }
    };
    Ok(heal)
}

/// The most bytes the kernel takes for one argument or `NAME=value` (`MAX_ARG_STRLEN`).
const MAXIMUM_ARGUMENT_BYTES: usize = 128 * 1024;
/// The most bytes of arguments and environment together that every Linux host takes: a
/// quarter of the default 8 MiB stack (`ARG_MAX` as `getconf` reports it).
const MAXIMUM_EXEC_BYTES: usize = 2 * 1024 * 1024;

/// Refuses a command and environment that `execve` would refuse with E2BIG on every host,
/// however often the start were tried.
fn check_exec_size(
    command: &Option<Vec<String>>,
    env: &BTreeMap<String, String>,
) -> Result<(), SpecError> {
    let arguments = command.as_deref().unwrap_or_default();
    for (index, argument) in arguments.iter().enumerate() {
        if argument.len() + 1 > MAXIMUM_ARGUMENT_BYTES {
            return Err(SpecError::new(
                format!("command[{index}]"),
                format!(
                    "{} bytes: the kernel takes at most {} per argument; pass large data in a file or volume",
                    argument.len(),
                    MAXIMUM_ARGUMENT_BYTES - 1
                ),
            ));
        }
    }
    for (name, value) in env {
        if name.len() + value.len() + 2 > MAXIMUM_ARGUMENT_BYTES {
            return Err(SpecError::new(
                format!("env.{name}"),
                format!(
                    "{} bytes: the kernel takes at most {} per variable; pass large data in a file or volume",
                    name.len() + value.len() + 1,
                    MAXIMUM_ARGUMENT_BYTES - 1
                ),
            ));
        }
    }
    // Each string costs its bytes, its terminating NUL and a pointer.
    let pointer = std::mem::size_of::<usize>();
    let arguments_bytes: usize = arguments
        .iter()
        .map(|argument| argument.len() + 1 + pointer)
        .sum();
    let env_bytes: usize = env
        .iter()
        .map(|(name, value)| name.len() + value.len() + 2 + pointer)
        .sum();
    if arguments_bytes + env_bytes > MAXIMUM_EXEC_BYTES {
        let field = if env_bytes >= arguments_bytes {
            "env"
        } else {
            "command"
        };
        return Err(SpecError::new(
            field,
            format!(
                "the command ({} arguments) and environment ({} variables) take {} bytes; the kernel starts a program with at most {}: pass large data in a file or volume",
                arguments.len(),
                env.len(),
                arguments_bytes + env_bytes,
                MAXIMUM_EXEC_BYTES
            ),
        ));
    }
    Ok(())
}
