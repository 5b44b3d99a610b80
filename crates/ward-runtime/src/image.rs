//! What a `container` instance takes from its image: the root filesystem (an overlay of the
//! shared unpacked layers, or a private copy where overlayfs is unavailable) and the process
//! defaults of the image config, which the spec overrides.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use ward_image::layers::LayerStore;
use ward_image::manifest::RunConfig;
use ward_image::Digest;
use ward_spec::{NetworkMode, PortMapping, Protocol, WorkloadSpec};

use crate::bundle::DEFAULT_PATH;
use crate::RuntimeError;

/// Turns an image reference into the manifest digest to run, pulling it if need be. The
/// daemon provides it: names live in its database, per project.
#[async_trait]
pub trait ImageResolver: Send + Sync + 'static {
    async fn resolve(&self, project: &str, reference: &str) -> Result<Digest, String>;
}

/// Images as the runtime sees them.
#[derive(Clone)]
pub(crate) struct Images {
    pub layers: LayerStore,
    /// overlayfs works here; otherwise each instance gets a copy of its image.
    pub overlay: bool,
    pub resolver: Arc<std::sync::RwLock<Option<Arc<dyn ImageResolver>>>>,
}

impl std::fmt::Debug for Images {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Images")
            .field("layers", &self.layers.root())
            .field("overlay", &self.overlay)
            .finish()
    }
}

/// How an instance's root filesystem is built from its image.
#[derive(Clone, Debug)]
pub(crate) enum ImageRoot {
    /// overlayfs over shared layers: `lower_dirs` relative to `layers_root`, top first.
    Overlay {
        layers_root: PathBuf,
        lower_dirs: Vec<String>,
    },
    /// A private copy already written to the instance's `rootfs`.
    Copy,
}

/// The image of an instance, ready for its bundle.
#[derive(Clone, Debug)]
pub(crate) struct PreparedRoot {
    pub digest: Digest,
    pub root: ImageRoot,
    pub config: RunConfig,
    /// `etc/passwd` and `etc/group` as the image has them (for `User` names).
    pub passwd: Option<String>,
    pub group: Option<String>,
}

/// The process of a container: the image's defaults with the spec's overrides.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ContainerProcess {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

/// The ports the image exposes (`ExposedPorts`: `8080/tcp`, `53/udp`, `8080`); entries Ward
/// cannot publish (another protocol, not a port number) are left out with a warning.
pub(crate) fn exposed_ports(config: &RunConfig) -> Vec<(u16, Protocol)> {
    let mut ports = Vec::new();
    for key in config.exposed_ports.iter().flat_map(|ports| ports.keys()) {
        let (number, protocol) = key.split_once('/').unwrap_or((key.as_str(), "tcp"));
        let protocol = match protocol.to_ascii_lowercase().as_str() {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            _ => {
                tracing::warn!(port = %key, "the image exposes a port of a protocol Ward does not publish");
                continue;
            }
        };
        match number.parse::<u16>() {
            Ok(number) if number > 0 => ports.push((number, protocol)),
            _ => tracing::warn!(port = %key, "the image exposes something that is not a port"),
        }
    }
    ports
}

/// The ports to publish for a container: the spec's, then, with `publish_all`, each port the
/// image exposes that the spec does not publish, on a free host port.
pub(crate) fn published_ports(
    spec: &WorkloadSpec,
    image: &PreparedRoot,
) -> Result<Vec<PortMapping>, RuntimeError> {
    let mut ports = spec.ports.clone();
    if !spec.publish_all {
        return Ok(ports);
    }
    for (port, protocol) in exposed_ports(&image.config) {
        let published = ports
            .iter()
            .any(|mapping| mapping.port == port && mapping.protocol == protocol);
        if published {
            continue;
        }
        let taken: Vec<u16> = ports
            .iter()
            .filter(|mapping| mapping.protocol == protocol)
            .map(|mapping| mapping.host)
            .collect();
        let host = crate::network::free_host_port(protocol, &taken)?;
        ports.push(PortMapping {
            host,
            port,
            protocol,
            host_ip: None,
        });
    }
    Ok(ports)
}

/// Docker's semantics: the spec's command replaces the image's `Cmd` and keeps its
/// `Entrypoint`; the spec's entrypoint replaces the image's and drops its `Cmd`; the spec's
/// variables win over the image's; the spec's workdir over the image's `WorkingDir`.
pub(crate) fn container_process(
    spec: &WorkloadSpec,
    image: &PreparedRoot,
) -> Result<ContainerProcess, RuntimeError> {
    let config = &image.config;
    let command = spec.command.as_ref().filter(|command| !command.is_empty());
    let mut args: Vec<String> = match &spec.entrypoint {
        Some(entrypoint) => entrypoint.clone(),
        None => config.entrypoint.clone().unwrap_or_default(),
    };
    match command {
        Some(command) => args.extend(command.iter().cloned()),
        None if spec.entrypoint.is_none() => args.extend(config.cmd.clone().unwrap_or_default()),
        None => {}
    }
    if args.is_empty() {
        return Err(RuntimeError::MissingImageCommand {
            workload: spec.name.clone(),
        });
    }
    let mut variables: BTreeMap<String, String> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut pairs: Vec<(&str, &str)> = config
        .env
        .iter()
        .flatten()
        .map(|entry| entry.split_once('=').unwrap_or((entry.as_str(), "")))
        .collect();
    pairs.extend(
        spec.env
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str())),
    );
    let has = |wanted: &str| pairs.iter().any(|(name, _)| *name == wanted);
    let defaults = [
        (!has("PATH")).then_some(("PATH", DEFAULT_PATH)),
        (!has("HOSTNAME")).then_some(("HOSTNAME", spec.name.as_str())),
        (spec.tty && !has("TERM")).then_some(("TERM", "xterm")),
    ];
    pairs.extend(defaults.into_iter().flatten());
    for (name, value) in pairs {
        if variables
            .insert(name.to_string(), value.to_string())
            .is_none()
        {
            order.push(name.to_string());
        }
    }
    let env = order
        .iter()
        .map(|name| format!("{name}={}", variables[name]))
        .collect();
    let cwd = match spec.workdir.as_deref().or(config.working_dir.as_deref()) {
        Some(dir) if dir.starts_with('/') => dir.to_string(),
        Some(dir) if !dir.is_empty() => format!("/{dir}"),
        _ => "/".to_string(),
    };
    let (uid, gid, additional_gids) = resolve_user(
        config.user.as_deref().unwrap_or(""),
        image.passwd.as_deref(),
        image.group.as_deref(),
    )
    .map_err(|message| RuntimeError::Image {
        workload: spec.name.clone(),
        image: spec.image.clone().unwrap_or_default(),
        message,
    })?;
    Ok(ContainerProcess {
        args,
        env,
        cwd,
        uid,
        gid,
        additional_gids,
    })
}

/// `User` of an image config: `""`, `name`, `uid`, `name:group`, `uid:gid`, resolved with the
/// image's own `/etc/passwd` and `/etc/group`.
pub(crate) fn resolve_user(
    user: &str,
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<(u32, u32, Vec<u32>), String> {
    if user.is_empty() {
        return Ok((0, 0, Vec::new()));
    }
    let (user_part, group_part) = match user.split_once(':') {
        Some((user_part, group_part)) => (user_part, Some(group_part)),
        None => (user, None),
    };
    let passwd_entries: Vec<Vec<&str>> = passwd
        .unwrap_or("")
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .filter(|fields| fields.len() >= 4)
        .collect();
    let group_entries: Vec<Vec<&str>> = group
        .unwrap_or("")
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .filter(|fields| fields.len() >= 3)
        .collect();
    let (uid, name, primary_gid) = match user_part.parse::<u32>() {
        Ok(uid) => {
            let entry = passwd_entries
                .iter()
                .find(|fields| fields[2].parse::<u32>() == Ok(uid));
            (
                uid,
                entry.map(|fields| fields[0]),
                entry
                    .and_then(|fields| fields[3].parse::<u32>().ok())
                    .unwrap_or(0),
            )
        }
        Err(_) => {
            let entry = passwd_entries
                .iter()
                .find(|fields| fields[0] == user_part)
                .ok_or_else(|| format!("user {user_part:?} is not in the image's /etc/passwd"))?;
            let uid = entry[2]
                .parse()
                .map_err(|_| format!("user {user_part:?} has no numeric uid"))?;
            let gid = entry[3]
                .parse()
                .map_err(|_| format!("user {user_part:?} has no numeric gid"))?;
            (uid, Some(entry[0]), gid)
        }
    };
    let gid = match group_part {
        None | Some("") => primary_gid,
        Some(group_part) => match group_part.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => group_entries
                .iter()
                .find(|fields| fields[0] == group_part)
                .and_then(|fields| fields[2].parse().ok())
                .ok_or_else(|| format!("group {group_part:?} is not in the image's /etc/group"))?,
        },
    };
    let additional_gids = match name {
        Some(name) => group_entries
            .iter()
            .filter(|fields| {
                fields
                    .get(3)
                    .is_some_and(|members| members.split(',').any(|member| member == name))
            })
            .filter_map(|fields| fields[2].parse().ok())
            .filter(|extra| *extra != gid)
            .collect(),
        None => Vec::new(),
    };
    Ok((uid, gid, additional_gids))
}

/// A file of the image as its top-most layer has it (`None` if absent or whited out).
pub(crate) fn read_image_file(
    layers_root: &Path,
    lower_dirs: &[String],
    path: &str,
) -> Option<String> {
    for dir in lower_dirs {
        let candidate = layers_root.join(dir).join(path);
        match fs::symlink_metadata(&candidate) {
            Ok(meta) if meta.file_type().is_char_device() => return None,
            Ok(meta) if meta.is_file() => {
                return fs::read(&candidate)
                    .ok()
                    .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            }
            Ok(_) => return None,
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            Err(_) => return None,
        }
    }
    None
}

/// `/etc/hosts` of a container (its own address is added by the monitor once known).
pub(crate) fn hosts_file(hostname: &str) -> String {
    format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n"
    )
}

/// `/etc/resolv.conf` of a container: the host's, without loopback name servers where the
/// container has its own network (they would be its own loopback), with Docker's public
/// fallback when none is left.
pub(crate) fn resolv_conf(host: &str, network: NetworkMode) -> String {
    if network == NetworkMode::Host {
        return host.to_string();
    }
    let mut servers = 0;
    let mut lines: Vec<&str> = Vec::new();
    for line in host.lines() {
        let mut words = line.split_whitespace();
        if words.next() == Some("nameserver") {
            let server = words.next().unwrap_or("");
            if server.starts_with("127.") || server == "::1" {
                continue;
            }
            servers += 1;
        }
        lines.push(line);
    }
    let mut text = lines.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    if servers == 0 && network == NetworkMode::Bridge {
        text.push_str("nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
    }
    text
}

/// Docker's default capabilities of a container.
pub(crate) const DEFAULT_CAPABILITIES: [oci_spec::runtime::Capability; 14] = {
    use oci_spec::runtime::Capability::*;
    [
        Chown,
        DacOverride,
        Fsetid,
        Fowner,
        Mknod,
        NetRaw,
        Setgid,
        Setuid,
        Setfcap,
        Setpcap,
        NetBindService,
        SysChroot,
        Kill,
        AuditWrite,
    ]
};

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\napp:x:1000:\nwheel:x:10:app\n";

    #[test]
    fn resolves_users_like_docker() {
        assert_eq!(resolve_user("", None, None), Ok((0, 0, vec![])));
        assert_eq!(
            resolve_user("app", Some(PASSWD), Some(GROUP)),
            Ok((1000, 1000, vec![10]))
        );
        assert_eq!(
            resolve_user("1000", Some(PASSWD), Some(GROUP)),
            Ok((1000, 1000, vec![10]))
        );
        assert_eq!(
            resolve_user("4242:4343", Some(PASSWD), Some(GROUP)),
            Ok((4242, 4343, vec![]))
        );
        assert_eq!(
            resolve_user("app:wheel", Some(PASSWD), Some(GROUP)),
            Ok((1000, 10, vec![]))
        );
        assert!(resolve_user("ghost", Some(PASSWD), Some(GROUP))
            .unwrap_err()
            .contains("ghost"));
    }

    #[test]
    fn resolv_conf_drops_loopback_servers_on_own_networks() {
        let host = "search example.org\nnameserver 127.0.0.53\n";
        assert_eq!(
            resolv_conf(host, NetworkMode::Bridge),
            "search example.org\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
        assert_eq!(resolv_conf(host, NetworkMode::Host), host);
        assert_eq!(
            resolv_conf("nameserver 10.0.0.2\n", NetworkMode::Bridge),
            "nameserver 10.0.0.2\n"
        );
    }
}
