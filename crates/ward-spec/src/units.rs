//! One parser per value rule (sizes, cores, durations, ports, volumes, names, images), shared by
//! the spec parser and the CLI flags so both accept exactly the same text.
//!
//! Every function returns a one-line, lower-case reason without the field name; callers put the
//! field or flag in front of it.

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::model::{HealthProbe, PortMapping, Protocol, RestartMode, RestartPolicy, VolumeMount};

/// The smallest memory limit a workload may have; below this not even a shell starts.
pub const MINIMUM_MEMORY_BYTES: u64 = 4 * 1024 * 1024;
/// The largest memory limit: 1 PiB, past any machine, and far inside what the kernel's
/// counters (and a sum over replicas) hold.
pub const MAXIMUM_MEMORY_BYTES: u64 = 1 << 50;
/// The largest disk size: 1 EiB.
pub const MAXIMUM_DISK_BYTES: u64 = 1 << 60;
/// The largest pids limit the kernel takes (`PID_MAX_LIMIT`, 2^22).
pub const MAXIMUM_PIDS: u64 = 1 << 22;

/// The most cores one workload may ask for.
pub const MAXIMUM_CPU_CORES: f64 = 1024.0;

const KIBIBYTE: u64 = 1 << 10;
const MEBIBYTE: u64 = 1 << 20;
const GIBIBYTE: u64 = 1 << 30;
const TEBIBYTE: u64 = 1 << 40;

const SIZE_HINT: &str = "use a number with an optional unit, like 512MiB or 2G";

/// Checks a workload (or named volume) name: `^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`.
pub fn validate_name(name: &str) -> Result<(), String> {
    let bytes = name.as_bytes();
    let is_lower_alphanumeric = |byte: &u8| byte.is_ascii_lowercase() || byte.is_ascii_digit();
    let valid = match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            bytes.len() <= 63
                && is_lower_alphanumeric(first)
                && is_lower_alphanumeric(last)
                && bytes
                    .iter()
                    .all(|byte| is_lower_alphanumeric(byte) || *byte == b'-')
        }
        _ => false,
    };
    if valid {
        Ok(())
    } else {
        Err(format!(
            "invalid name {name:?}: use 1 to 63 lower-case letters, digits and dashes, \
             starting and ending with a letter or digit"
        ))
    }
}

/// Parses a size in bytes: `1024`, `512MiB`, `2G`, `1.5 GiB`.
///
/// `K`/`KB`/`KiB` mean 2^10, `M`/`MB`/`MiB` 2^20, `G`/`GB`/`GiB` 2^30 and `T`/`TB`/`TiB` 2^40
/// (units are case-insensitive, `Ki`-style and a trailing `B` for bytes are accepted too).
/// Fractions of a byte are rounded down.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let invalid = || format!("invalid size {text:?}: {SIZE_HINT}");
    let trimmed = text.trim();
    let number_end = trimmed
        .find(|character: char| !(character.is_ascii_digit() || character == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(number_end);
    let multiplier = match unit.trim_start().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "ki" | "kib" => KIBIBYTE,
        "m" | "mb" | "mi" | "mib" => MEBIBYTE,
        "g" | "gb" | "gi" | "gib" => GIBIBYTE,
        "t" | "tb" | "ti" | "tib" => TEBIBYTE,
        _ => return Err(invalid()),
    };
    let (whole_digits, fraction_digits) = number.split_once('.').unwrap_or((number, ""));
    let has_digits = !whole_digits.is_empty() || !fraction_digits.is_empty();
    if !has_digits || fraction_digits.contains('.') || fraction_digits.len() > 9 {
        return Err(invalid());
    }
    let too_large = || format!("invalid size {text:?}: too large");
    // Exact decimal arithmetic: (whole.fraction × multiplier), rounded down to whole bytes.
    let whole: u128 = if whole_digits.is_empty() {
        0
    } else {
        whole_digits.parse().map_err(|_| too_large())?
    };
    let fraction: u128 = if fraction_digits.is_empty() {
        0
    } else {
        fraction_digits.parse().map_err(|_| invalid())?
    };
    let fraction_scale = 10u128.pow(fraction_digits.len() as u32);
    let bytes = whole
        .checked_mul(u128::from(multiplier))
        .and_then(|whole_bytes| {
            let fraction_bytes = fraction * u128::from(multiplier) / fraction_scale;
            whole_bytes.checked_add(fraction_bytes)
        })
        .ok_or_else(too_large)?;
    u64::try_from(bytes).map_err(|_| too_large())
}

/// Renders bytes with the largest binary unit: `256MiB`, `1.5GiB`, `512B`.
///
/// Exact multiples print without a fraction; everything else with one decimal.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (TEBIBYTE, "TiB"),
        (GIBIBYTE, "GiB"),
        (MEBIBYTE, "MiB"),
        (KIBIBYTE, "KiB"),
    ];
    for (index, (unit_bytes, unit_name)) in UNITS.iter().enumerate() {
        if bytes < *unit_bytes {
            continue;
        }
        if bytes % unit_bytes == 0 {
            return format!("{}{unit_name}", bytes / unit_bytes);
        }
        let rounded = format!("{:.1}", bytes as f64 / *unit_bytes as f64);
        // 1023.96MiB rounds to "1024.0"; say 1GiB-ish in the next unit up instead.
        if rounded == "1024.0" && index > 0 {
            let (larger_unit_bytes, larger_unit_name) = UNITS[index - 1];
            return format!(
                "{:.1}{larger_unit_name}",
                bytes as f64 / larger_unit_bytes as f64
            );
        }
        return format!("{rounded}{unit_name}");
    }
    format!("{bytes}B")
}

/// Parses a number of cores: `1.5`, `2`, or millicores `500m` (0.5).
pub fn parse_cpu(text: &str) -> Result<f64, String> {
    let trimmed = text.trim();
    let is_plain_decimal = |digits: &str| {
        !digits.is_empty()
            && digits
                .chars()
                .all(|character| character.is_ascii_digit() || character == '.')
            && digits.chars().filter(|character| *character == '.').count() <= 1
            && digits != "."
    };
    let cores = match trimmed.strip_suffix('m') {
        Some(millicores) if is_plain_decimal(millicores) => millicores
            .parse::<f64>()
            .ok()
            .map(|millicores| millicores / 1000.0),
        Some(_) => None,
        None if is_plain_decimal(trimmed) => trimmed.parse::<f64>().ok(),
        None => None,
    };
    match cores {
        Some(cores) => {
            validate_cpu(cores).map_err(|reason| format!("invalid cpu {text:?}: {reason}"))
        }
        None => Err(format!(
            "invalid cpu {text:?}: use a number of cores, like 1.5, or millicores, like 500m"
        )),
    }
}

/// Checks that a number of cores is usable: greater than 0 and at most 1024.
pub fn validate_cpu(cores: f64) -> Result<f64, String> {
    if cores.is_finite() && cores > 0.0 && cores <= MAXIMUM_CPU_CORES {
        Ok(cores)
    } else {
        Err("cores must be greater than 0 and at most 1024, like 1.5 or 500m".to_string())
    }
}

/// Parses a duration: `10s`, `500ms`, `1m30s`, `1.5s`, or a plain integer meaning seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if !trimmed.is_empty() && trimmed.bytes().all(|byte| byte.is_ascii_digit()) {
        return trimmed
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| format!("invalid duration {text:?}: too large"));
    }
    humantime::parse_duration(trimmed).map_err(|_| {
        format!("invalid duration {text:?}: use a number with a unit, like 10s, 500ms or 1m30s")
    })
}

/// Parses a port number from 1 to 65535.
pub fn parse_port(text: &str) -> Result<u16, String> {
    let trimmed = text.trim();
    let number = if !trimmed.is_empty() && trimmed.bytes().all(|byte| byte.is_ascii_digit()) {
        trimmed.parse::<u64>().ok()
    } else {
        None
    };
    match number.map(validate_port) {
        Some(Ok(port)) => Ok(port),
        _ => Err(format!(
            "invalid port {text:?}: use a number from 1 to 65535"
        )),
    }
}

/// Checks that a number is a usable port (1 to 65535).
pub fn validate_port(number: u64) -> Result<u16, String> {
    match u16::try_from(number) {
        Ok(port) if port >= 1 => Ok(port),
        _ => Err(format!(
            "port {number} is out of range: use a number from 1 to 65535"
        )),
    }
}

/// The host port of a mapping that takes a free one when its instance starts.
pub const FREE_HOST_PORT: u16 = 0;

/// Parses a protocol name: `tcp` or `udp`.
pub fn parse_protocol(text: &str) -> Result<Protocol, String> {
    match text {
        "tcp" => Ok(Protocol::Tcp),
        "udp" => Ok(Protocol::Udp),
        _ => Err(format!("invalid protocol {text:?}: use tcp or udp")),
    }
}

/// Parses a published port: `[HOST_IP:]HOST:PORT[/tcp|udp]`, or `PORT[/tcp|udp]` for the same
/// port on both sides.
pub fn parse_port_mapping(text: &str) -> Result<PortMapping, String> {
    let invalid = |reason: String| format!("invalid port mapping {text:?}: {reason}");
    let (ports, protocol) = match text.split_once('/') {
        Some((ports, protocol)) => (ports, parse_protocol(protocol).map_err(invalid)?),
        None => (text, Protocol::Tcp),
    };
    let parts: Vec<&str> = ports.split(':').collect();
    // A host port of 0, or none, is a free one chosen when the instance starts (as Docker
    // picks one for `-p 80`).
    let host_port = |text: &str| match text.trim() {
        "0" | "" => Ok(FREE_HOST_PORT),
        _ => parse_port(text),
    };
    let (host_ip, host, port) = match parts.as_slice() {
        [port] => (None, FREE_HOST_PORT, parse_port(port).map_err(invalid)?),
        [host, port] => (
            None,
            host_port(host).map_err(invalid)?,
            parse_port(port).map_err(invalid)?,
        ),
        [address, host, port] => (
            Some(parse_host_address(address).map_err(invalid)?),
            host_port(host).map_err(invalid)?,
            parse_port(port).map_err(invalid)?,
        ),
        _ => {
            return Err(invalid(
                "use [HOST_IP:]HOST_PORT:PORT[/tcp|udp], like 8080:80, 127.0.0.1:8080:80 or 5353:53/udp"
                    .to_string(),
            ))
        }
    };
    Ok(PortMapping {
        host,
        port,
        protocol,
        host_ip,
    })
}

/// Parses the host address a port is published on: an IPv4 address other than `0.0.0.0`
/// (which is what leaving it out means) and not a multicast or broadcast one.
pub fn parse_host_address(text: &str) -> Result<Ipv4Addr, String> {
    let address: Ipv4Addr = text.parse().map_err(|_| {
        format!("{text:?} is not an IPv4 address: write it like 127.0.0.1, or leave it out to publish on every address")
    })?;
    if address.is_unspecified() || address.is_multicast() || address.is_broadcast() {
        return Err(format!(
            "{address} cannot be a host address to publish on: use 127.0.0.1 or an address of this host, or leave it out"
        ));
    }
    Ok(address)
}

/// Checks a volume mount target: an absolute path other than `/`, without `..`.
pub fn validate_mount_target(target: &str) -> Result<(), String> {
    validate_absolute_path(target)
        .map_err(|reason| format!("invalid mount target {target:?}: {reason}"))?;
    if target.trim_end_matches('/').is_empty() {
        return Err(format!(
            "invalid mount target {target:?}: cannot mount over /"
        ));
    }
    Ok(())
}

/// Checks a volume source: an absolute host path (bind mount) or a volume name (named volume).
pub fn validate_mount_source(source: &str) -> Result<(), String> {
    if source.starts_with('/') {
        return validate_absolute_path(source)
            .map_err(|reason| format!("invalid mount source {source:?}: {reason}"));
    }
    validate_name(source).map_err(|_| {
        format!(
            "invalid mount source {source:?}: use an absolute host path, like /srv/data, \
             or a volume name of lower-case letters, digits and dashes, like data"
        )
    })
}

/// Checks an absolute path: starts with `/`, no `..` components, no NUL byte.
pub fn validate_absolute_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err("use an absolute path, starting with /".to_string());
    }
    if path.contains('\0') {
        return Err("must not contain a NUL byte".to_string());
    }
    if path.split('/').any(|component| component == "..") {
        return Err("must not contain .. components".to_string());
    }
    Ok(())
}

/// Parses a volume mount: `SOURCE:TARGET[:ro|:rw]`, where SOURCE is an absolute host path or a
/// volume name and TARGET an absolute path inside the workload.
pub fn parse_volume(text: &str) -> Result<VolumeMount, String> {
    let parts: Vec<&str> = text.split(':').collect();
    let (source, target, read_only) = match parts.as_slice() {
        [source, target] => (*source, *target, false),
        [source, target, "ro"] => (*source, *target, true),
        [source, target, "rw"] => (*source, *target, false),
        [_, _, mode] => return Err(format!("invalid volume {text:?}: unknown mode {mode:?}: use ro or rw")),
        _ => {
            return Err(format!(
                "invalid volume {text:?}: use SOURCE:TARGET[:ro], like data:/var/lib/data or /srv/site:/site:ro"
            ))
        }
    };
    validate_mount_source(source)?;
    validate_mount_target(target)?;
    Ok(VolumeMount {
        source: source.to_string(),
        target: target.to_string(),
        read_only,
    })
}

/// Checks an environment variable name: not empty, no `=` and no NUL byte.
pub fn validate_env_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        Err("invalid variable name \"\": names must not be empty".to_string())
    } else if key.contains('=') || key.contains('\0') {
        Err(format!(
            "invalid variable name {key:?}: names must not contain = or NUL"
        ))
    } else {
        Ok(())
    }
}

/// Parses `KEY=VALUE` (the value may be empty and may contain `=`).
pub fn parse_env_assignment(text: &str) -> Result<(String, String), String> {
    let Some((key, value)) = text.split_once('=') else {
        return Err(format!(
            "invalid variable {text:?}: use KEY=VALUE, like GREETING=hello"
        ));
    };
    validate_env_key(key)?;
    if value.contains('\0') {
        return Err(format!(
            "invalid variable {text:?}: values must not contain NUL"
        ));
    }
    Ok((key.to_string(), value.to_string()))
}

/// Parses a restart policy: `never`, `on-failure`, `always`, `on-failure:N` (at most N
/// retries), and the Docker spellings `no` (never) and `unless-stopped` (always).
pub fn parse_restart(text: &str) -> Result<RestartPolicy, String> {
    if let Some(retries) = text.strip_prefix("on-failure:") {
        let max_retries = retries
            .parse::<u32>()
            .map_err(|_| format!("invalid restart policy {text:?}: use on-failure:N with N a whole number, like on-failure:5"))?;
        return Ok(RestartPolicy {
            policy: RestartMode::OnFailure,
            max_retries: Some(max_retries),
        });
    }
    parse_restart_mode(text).map(|policy| RestartPolicy {
        policy,
        max_retries: None,
    })
}

/// Parses the restart mode alone: `never` (or `no`), `on-failure`, `always` (or `unless-stopped`).
pub fn parse_restart_mode(text: &str) -> Result<RestartMode, String> {
    match text {
        "never" | "no" => Ok(RestartMode::Never),
        "on-failure" => Ok(RestartMode::OnFailure),
        "always" | "unless-stopped" => Ok(RestartMode::Always),
        _ => Err(format!(
            "invalid restart policy {text:?}: use never, on-failure or always"
        )),
    }
}

/// Checks an HTTP probe path: starts with `/`, no whitespace or control characters.
pub fn validate_http_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!(
            "invalid path {path:?}: start it with /, like /healthz"
        ));
    }
    if path
        .chars()
        .any(|character| character.is_whitespace() || character.is_control())
    {
        return Err(format!(
            "invalid path {path:?}: must not contain spaces or control characters"
        ));
    }
    Ok(())
}

/// Parses an HTTP health probe: `PORT` (path `/`) or `PORT/PATH`, like `8000/healthz`.
pub fn parse_http_probe(text: &str) -> Result<HealthProbe, String> {
    let (port, path) = match text.find('/') {
        Some(slash) => text.split_at(slash),
        None => (text, "/"),
    };
    let port = parse_port(port).map_err(|_| {
        format!("invalid http probe {text:?}: use PORT or PORT/PATH, like 8000/healthz")
    })?;
    validate_http_path(path)?;
    Ok(HealthProbe::Http {
        port,
        path: path.to_string(),
    })
}

/// Checks one command line: at least one argument, a non-empty program, no NUL bytes.
pub fn validate_command(command: &[String]) -> Result<(), String> {
    match command.first() {
        None => Err(
            "the command is empty: give the program and its arguments, like [sleep, \"60\"]"
                .to_string(),
        ),
        Some(program) if program.is_empty() => {
            Err("the program (the first element) is empty".to_string())
        }
        Some(_) if command.iter().any(|argument| argument.contains('\0')) => {
            Err("arguments must not contain a NUL byte".to_string())
        }
        Some(_) => Ok(()),
    }
}

/// A container image reference in its parts, read the way Docker reads one: the one grammar
/// of image references in Ward, which both the spec and the registry client go by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageReference {
    /// `docker.io` for Docker Hub (`index.docker.io` is read as that).
    pub registry: String,
    /// With `library/` for Docker Hub's official images.
    pub repository: String,
    /// `latest` when the reference has neither a tag nor a digest.
    pub tag: Option<String>,
    /// `sha256:…` or `sha512:…`.
    pub digest: Option<String>,
}

impl ImageReference {
    /// Reads `nginx` as `docker.io/library/nginx:latest`, `postgres:16` as
    /// `docker.io/library/postgres:16`, `ghcr.io/o/r` as `ghcr.io/o/r:latest`; a digest
    /// (`name@sha256:…`) is kept and then no tag is added.
    pub fn parse(reference: &str) -> Result<ImageReference, String> {
        let invalid = |reason: &str| format!("invalid image {reference:?}: {reason}");
        if reference.is_empty() {
            return Err(invalid(
                "the image is empty: give an image reference, like nginx:1.27",
            ));
        }
        let (name_and_tag, digest) = match reference.split_once('@') {
            Some((name_and_tag, digest)) => {
                validate_digest(digest).map_err(|reason| invalid(&reason))?;
                (name_and_tag, Some(digest))
            }
            None => (reference, None),
        };
        let last_slash = name_and_tag.rfind('/').map_or(0, |index| index + 1);
        let (name, tag) = match name_and_tag[last_slash..].rfind(':') {
            Some(colon) => {
                let split_at = last_slash + colon;
                (
                    &name_and_tag[..split_at],
                    Some(&name_and_tag[split_at + 1..]),
                )
            }
            None => (name_and_tag, None),
        };
        if let Some(tag) = tag {
            validate_tag(tag).map_err(|reason| invalid(&reason))?;
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                validate_registry(first).map_err(|reason| invalid(&reason))?;
                let registry = if first == "index.docker.io" {
                    "docker.io"
                } else {
                    first
                };
                (registry, rest.to_string())
            }
            _ => ("docker.io", name.to_string()),
        };
        let repository = if registry == "docker.io" && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        for component in repository.split('/') {
            validate_repository_component(component).map_err(|reason| invalid(&reason))?;
        }
        if registry.len() + 1 + repository.len() > 255 {
            return Err(invalid("the name is longer than 255 characters"));
        }
        let tag = match (tag, digest) {
            (Some(tag), _) => Some(tag.to_string()),
            (None, None) => Some("latest".to_string()),
            (None, Some(_)) => None,
        };
        Ok(ImageReference {
            registry: registry.to_string(),
            repository,
            tag,
            digest: digest.map(str::to_string),
        })
    }
}

impl std::fmt::Display for ImageReference {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(formatter, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(formatter, "@{digest}")?;
        }
        Ok(())
    }
}

/// Normalises a container image reference the way Docker does (see [`ImageReference::parse`]).
pub fn normalize_image(reference: &str) -> Result<String, String> {
    ImageReference::parse(reference).map(|parsed| parsed.to_string())
}

fn validate_digest(digest: &str) -> Result<(), String> {
    let expected_length = match digest.split_once(':') {
        Some(("sha256", hex)) => (hex, 64),
        Some(("sha512", hex)) => (hex, 128),
        _ => {
            return Err(format!(
                "a digest looks like sha256:<64 hex digits>, found {digest:?}"
            ))
        }
    };
    let (hex, length) = expected_length;
    if hex.len() == length
        && hex
            .bytes()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
    {
        Ok(())
    } else {
        Err(format!(
            "a digest looks like sha256:<64 hex digits>, found {digest:?}"
        ))
    }
}

fn validate_tag(tag: &str) -> Result<(), String> {
    let valid_character =
        |byte: u8| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b'-');
    let valid = match tag.as_bytes().first() {
        Some(first) => {
            (first.is_ascii_alphanumeric() || *first == b'_')
                && tag.len() <= 128
                && tag.bytes().all(valid_character)
        }
        None => false,
    };
    if valid {
        Ok(())
    } else {
        Err(format!(
            "invalid tag {tag:?}: use up to 128 letters, digits, _, . and -, not starting with . or -"
        ))
    }
}

fn validate_registry(registry: &str) -> Result<(), String> {
    let (host, port) = match registry.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (registry, None),
    };
    let host_valid = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    let port_valid = port.is_none_or(|port| parse_port(port).is_ok());
    if host_valid && port_valid {
        Ok(())
    } else {
        Err(format!("invalid registry {registry:?}"))
    }
}

fn validate_repository_component(component: &str) -> Result<(), String> {
    let bytes = component.as_bytes();
    let is_lower_alphanumeric = |byte: &u8| byte.is_ascii_lowercase() || byte.is_ascii_digit();
    if bytes.iter().any(|byte| byte.is_ascii_uppercase()) {
        return Err(format!(
            "repository names must be lower-case, found {component:?}"
        ));
    }
    let valid = match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            is_lower_alphanumeric(first)
                && is_lower_alphanumeric(last)
                && bytes
                    .iter()
                    .all(|byte| is_lower_alphanumeric(byte) || matches!(byte, b'.' | b'_' | b'-'))
        }
        _ => false,
    };
    if valid {
        Ok(())
    } else {
        Err(format!(
            "invalid repository name {component:?}: use lower-case letters, digits, ., _ and -, \
             starting and ending with a letter or digit"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::ImageReference;

    #[test]
    fn an_image_reference_reads_into_its_parts_and_back() {
        let parts = |reference: &str| ImageReference::parse(reference).expect("valid");
        let busybox = parts("busybox");
        assert_eq!(
            (busybox.registry.as_str(), busybox.repository.as_str()),
            ("docker.io", "library/busybox")
        );
        assert_eq!(busybox.tag.as_deref(), Some("latest"));
        let digest = format!("sha256:{}", "a".repeat(64));
        let pinned = parts(&format!("127.0.0.1:5000/team/app@{digest}"));
        assert_eq!(pinned.registry, "127.0.0.1:5000");
        assert_eq!(
            (pinned.tag, pinned.digest.as_deref()),
            (None, Some(digest.as_str()))
        );
        for reference in [
            "docker.io/library/nginx:1.27".to_string(),
            format!("ghcr.io/o/r:1@{digest}"),
            "localhost/app:dev".to_string(),
        ] {
            assert_eq!(parts(&reference).to_string(), reference);
        }
        assert!(ImageReference::parse("Upper/Case").is_err());
    }
}
