//! Ward's bridge network: containers on 10.88.0.0/16 behind the gateway 10.88.0.1 (on the
//! `ward0` bridge), one routed veth pair per container, addresses handed out from a file in the
//! data directory, and published ports as NAT rules.
//!
//! Tenants are isolated: each project (its container ids without workload and replica, so one
//! daemon's project) has a /24 block of its own (`ipam.rs`), and containers reach one another
//! only within a block or through published ports (each container has a routed link of its own,
//! `link.rs`, and the host routes between them through the filter rules of `netfilter.rs`). A
//! container reaches the host itself only through published ports: nothing it sends to the
//! host's addresses, 127.0.0.1 included, is let in but answers to the host's own connections.
//!
//! Every change happens under one exclusive lock, `DATA/network/lock`, so monitors attaching
//! containers at the same time cannot race on the bridge, the address file or the rules. The
//! host's side is changed with iproute2 and iptables, each step batched into one process; the
//! container's side over netlink from the attaching process (`netlink.rs`). An attach costs two
//! or three short-lived processes, a detach two or three.

mod command;
mod ipam;
mod link;
mod netfilter;
mod netlink;

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Instant;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use ward_spec::{PortMapping, Protocol};

/// The bridge every `network: bridge` container is attached to.
pub const BRIDGE_NAME: &str = "ward0";
/// The bridge's own address: the containers' default gateway.
pub const GATEWAY_ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 88, 0, 1);
/// The network of [`GATEWAY_ADDRESS`] and of every container address: 10.88.0.0/16.
pub const SUBNET_ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 88, 0, 0);
/// See [`SUBNET_ADDRESS`].
pub const SUBNET_PREFIX_LENGTH: u8 = 16;

/// The longest container id accepted; iptables comments hold at most 255 bytes.
const MAX_CONTAINER_ID_LENGTH: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("invalid container id {container_id:?}: use 1 to 200 ASCII letters, digits, '.', '_' or '-'")]
    InvalidContainerId { container_id: String },
    #[error("container {container_id} publishes host port {port} on {address}, which is no address of this host: use 127.0.0.1, an address `ip addr` lists, or none")]
    ForeignHostAddress {
        container_id: String,
        address: Ipv4Addr,
        port: u16,
    },
    #[error("container {container_id} publishes host port {port}/{protocol} more than once")]
    DuplicatePort {
        container_id: String,
        port: u16,
        protocol: &'static str,
    },
    #[error("cannot publish host port {port}/{protocol} for container {container_id}: container {owner} already publishes it")]
    PortAlreadyPublished {
        container_id: String,
        port: u16,
        protocol: &'static str,
        owner: String,
    },
    #[error("no free address for container {container_id}: project {project} already has {limit} containers attached, the most one project may have")]
    ProjectAddressesExhausted {
        container_id: String,
        project: String,
        limit: usize,
    },
    #[error("no free address block for container {container_id} of project {project}: {limit} projects already have containers attached, the most one host may have")]
    ProjectsExhausted {
        container_id: String,
        project: String,
        limit: usize,
    },
    #[error("cannot open the network namespace {} of container {container_id}: {source}", path.display())]
    Namespace {
        container_id: String,
        path: PathBuf,
        source: io::Error,
    },
    #[error("cannot {step} in the network namespace of container {container_id}: {source}")]
    Configure {
        container_id: String,
        step: &'static str,
        source: io::Error,
    },
    #[error("cannot run `{command}`: {source}")]
    CommandSpawn { command: String, source: io::Error },
    #[error("`{command}` failed ({status}): {stderr}")]
    CommandFailed {
        command: String,
        status: ExitStatus,
        stderr: String,
    },
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("found no free host port for {protocol} in {attempts} attempts")]
    NoFreeHostPort {
        protocol: &'static str,
        attempts: usize,
    },
    #[error("cannot parse the address allocations in {path}: {source}")]
    CorruptAllocations {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// Where the address allocations and the lock live. The bridge and the netfilter chains are
/// one per host, so this is too: every Ward daemon on the host shares it, whatever its data dir.
pub const HOST_STATE_DIR: &str = "/run/ward/network";

/// Gives the container whose network namespace is the file `namespace` (`/proc/PID/ns/net`,
/// or a descriptor of a namespace made ahead of the container) an address on Ward's bridge and
/// publishes `ports`.
///
/// `state_dir` is [`HOST_STATE_DIR`] in production; tests may isolate their allocations.
///
/// Attaching a container that is already attached replaces its veth and rules and keeps its address.
pub fn attach_bridge(
    state_dir: &Path,
    container_id: &str,
    namespace: &Path,
    ports: &[PortMapping],
) -> Result<Ipv4Addr, NetworkError> {
    validate_container_id(container_id)?;
    refuse_duplicate_ports(container_id, ports)?;
    refuse_foreign_host_addresses(container_id, ports)?;
    let started = Instant::now();
    let state = NetworkState::lock(state_dir)?;

    link::ensure_bridge()?;
    link::configure_host()?;
    let rules = netfilter::SavedRules::read_all()?;
    if let Some((port, owner)) = rules.first_conflict(container_id, ports) {
        return Err(NetworkError::PortAlreadyPublished {
            container_id: container_id.to_string(),
            port: port.host,
            protocol: port.protocol.as_str(),
            owner,
        });
    }
    let allocation = ipam::allocate(&state.allocations_path(), container_id)?;
    let address = allocation.address;

    // The rules first, so that the container's link never comes up on a host without them.
    let wired = (|| {
        if !rules.isolates_projects() {
            // Ward's rules are missing or an older Ward's, which attached containers to ward0.
            link::isolate_bridge_ports()?;
        }
        if let Some(script) =
            rules.attach_script(container_id, address, ports, &allocation.project_blocks)
        {
            netfilter::apply(&script)?;
        }
        link::create_veth(container_id, namespace, address)
    })();
    if let Err(error) = wired {
        // Leave nothing half-made behind; the first error is the one worth reporting.
        if let Err(cleanup_error) = remove_container(&state, container_id) {
            tracing::warn!(container_id, error = %cleanup_error, "cannot undo a failed bridge attach");
        }
        return Err(error);
    }
    tracing::info!(
        container_id,
        %address,
        ports = ports.len(),
        elapsed_us = started.elapsed().as_micros() as u64,
        "attached container to the bridge network"
    );
    Ok(address)
}

/// Removes the address, veth and published ports of `container_id`; idempotent, safe to call when nothing exists.
pub fn detach(state_dir: &Path, container_id: &str) -> Result<(), NetworkError> {
    validate_container_id(container_id)?;
    let started = Instant::now();
    let state = NetworkState::lock(state_dir)?;
    remove_container(&state, container_id)?;
    tracing::info!(
        container_id,
        elapsed_us = started.elapsed().as_micros() as u64,
        "detached container from the bridge network"
    );
    Ok(())
}

/// Removes the rules, addresses and veths of every container not in `live_container_ids`.
///
/// Run at daemon start to clean up after monitors that died before they could detach.
pub fn prune(state_dir: &Path, live_container_ids: &[String]) -> Result<(), NetworkError> {
    let state = NetworkState::lock(state_dir)?;
    let live: BTreeSet<&str> = live_container_ids.iter().map(String::as_str).collect();

    let rules = netfilter::SavedRules::read_nat()?;
    if let Some(script) = rules.removal_script(|owner| !live.contains(owner)) {
        netfilter::apply(&script)?;
    }
    let live_interfaces: BTreeSet<String> = live
        .iter()
        .map(|id| link::host_interface_name(id))
        .collect();
    link::delete_stale_host_interfaces(&live_interfaces)?;
    let pruned = ipam::retain(&state.allocations_path(), |container_id| {
        live.contains(container_id)
    })?;
    if !pruned.is_empty() {
        tracing::info!(containers = ?pruned, "pruned stale bridge network state");
    }
    Ok(())
}

/// Whether `port`/`protocol` is free on the host right now: nothing is bound to it (checked by
/// binding 0.0.0.0 and ::) and no Ward container publishes it.
pub fn host_port_is_free(port: u16, protocol: Protocol) -> bool {
    let bindable = |address: SocketAddr| -> io::Result<()> {
        match protocol {
            Protocol::Tcp => TcpListener::bind(address).map(drop),
            Protocol::Udp => UdpSocket::bind(address).map(drop),
        }
    };
    if bindable(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))).is_err() {
        return false;
    }
    // A listener on an IPv6 address alone is invisible to the IPv4 bind; a host without IPv6
    // fails here with something other than "in use".
    if let Err(error) = bindable(SocketAddr::from((Ipv6Addr::UNSPECIFIED, port))) {
        if error.kind() == io::ErrorKind::AddrInUse {
            return false;
        }
    }
    match netfilter::SavedRules::read_nat() {
        Ok(rules) => !rules.publishes(port, protocol),
        Err(error) => {
            tracing::warn!(port, protocol = protocol.as_str(), %error, "cannot read Ward's published ports");
            true
        }
    }
}

/// Attempts at finding a free host port before giving up.
const FREE_PORT_ATTEMPTS: usize = 32;

/// A host port for `protocol` that nothing uses now (the kernel's pick from its ephemeral
/// range, as Docker's `-P` does), other than those in `taken`.
pub fn free_host_port(protocol: Protocol, taken: &[u16]) -> Result<u16, NetworkError> {
    for _ in 0..FREE_PORT_ATTEMPTS {
        let any = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
        let picked = match protocol {
            Protocol::Tcp => TcpListener::bind(any).and_then(|socket| socket.local_addr()),
            Protocol::Udp => UdpSocket::bind(any).and_then(|socket| socket.local_addr()),
        };
        let Ok(address) = picked else { continue };
        let port = address.port();
        if !taken.contains(&port) && host_port_is_free(port, protocol) {
            return Ok(port);
        }
    }
    Err(NetworkError::NoFreeHostPort {
        protocol: protocol.as_str(),
        attempts: FREE_PORT_ATTEMPTS,
    })
}

/// `ports` with each host port of 0 (`FREE_HOST_PORT`) replaced by a free one, none twice.
pub fn choose_free_host_ports(
    mut ports: Vec<PortMapping>,
) -> Result<Vec<PortMapping>, NetworkError> {
    for index in 0..ports.len() {
        if ports[index].host != ward_spec::units::FREE_HOST_PORT {
            continue;
        }
        let protocol = ports[index].protocol;
        let taken: Vec<u16> = ports
            .iter()
            .filter(|mapping| mapping.protocol == protocol)
            .map(|mapping| mapping.host)
            .collect();
        ports[index].host = free_host_port(protocol, &taken)?;
    }
    Ok(ports)
}

/// The host-side name of the veth pair of `container_id`: `wv` and 13 hex digits of a hash of
/// the id, within the kernel's 15-character limit on interface names.
pub fn host_interface_name(container_id: &str) -> String {
    link::host_interface_name(container_id)
}

/// Removes everything `container_id` has on the bridge; the caller holds the lock.
fn remove_container(state: &NetworkState, container_id: &str) -> Result<(), NetworkError> {
    let rules = netfilter::SavedRules::read_nat()?;
    if let Some(script) = rules.removal_script(|owner| owner == container_id) {
        netfilter::apply(&script)?;
    }
    link::delete_host_interface(&link::host_interface_name(container_id))?;
    ipam::free(&state.allocations_path(), container_id)?;
    Ok(())
}

fn validate_container_id(container_id: &str) -> Result<(), NetworkError> {
    let valid_character =
        |character: char| character.is_ascii_alphanumeric() || matches!(character, '.' | '_' | '-');
    if container_id.is_empty()
        || container_id.len() > MAX_CONTAINER_ID_LENGTH
        || !container_id.chars().all(valid_character)
    {
        return Err(NetworkError::InvalidContainerId {
            container_id: container_id.to_string(),
        });
    }
    Ok(())
}

/// A port published on one host address needs an address of this host: anything else would
/// never be forwarded.
fn refuse_foreign_host_addresses(
    container_id: &str,
    ports: &[PortMapping],
) -> Result<(), NetworkError> {
    for port in ports {
        let Some(host_ip) = port.host_ip else {
            continue;
        };
        if let Err(error) = UdpSocket::bind(SocketAddr::from((host_ip, 0))) {
            if error.kind() == io::ErrorKind::AddrNotAvailable {
                return Err(NetworkError::ForeignHostAddress {
                    container_id: container_id.to_string(),
                    address: host_ip,
                    port: port.host,
                });
            }
        }
    }
    Ok(())
}

fn refuse_duplicate_ports(container_id: &str, ports: &[PortMapping]) -> Result<(), NetworkError> {
    let mut seen = BTreeSet::new();
    for port in ports {
        if !seen.insert((port.host, port.protocol.as_str())) {
            return Err(NetworkError::DuplicatePort {
                container_id: container_id.to_string(),
                port: port.host,
                protocol: port.protocol.as_str(),
            });
        }
    }
    Ok(())
}

/// `DATA/network`, held under an exclusive `flock` on its `lock` file for as long as this lives.
struct NetworkState {
    directory: PathBuf,
    _lock: Flock<File>,
}

impl NetworkState {
    fn lock(state_dir: &Path) -> Result<NetworkState, NetworkError> {
        let directory = state_dir.to_path_buf();
        std::fs::create_dir_all(&directory).map_err(|source| NetworkError::Io {
            action: "create",
            path: directory.clone(),
            source,
        })?;
        let lock_path = directory.join("lock");
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| NetworkError::Io {
                action: "open",
                path: lock_path.clone(),
                source,
            })?;
        let lock = loop {
            match Flock::lock(file, FlockArg::LockExclusive) {
                Ok(lock) => break lock,
                Err((returned, Errno::EINTR)) => file = returned,
                Err((_, errno)) => {
                    return Err(NetworkError::Io {
                        action: "lock",
                        path: lock_path,
                        source: errno.into(),
                    })
                }
            }
        };
        Ok(NetworkState {
            directory,
            _lock: lock,
        })
    }

    fn allocations_path(&self) -> PathBuf {
        self.directory.join("allocations.json")
    }
}
