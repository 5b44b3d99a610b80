//! The per-container veth pair, the container's side of it, the `ward0` bridge that holds the
//! gateway's address, and the sysctls that let the host route and NAT to the containers.
//!
//! Each container has a routed point-to-point link of its own, as CNI's `ptp` plugin gives: the
//! host's end has the gateway's address as a /32 and a /32 route to the container, answers ARP
//! for every other address (`proxy_arp`), and has no IPv6. Containers share no layer-2 segment,
//! so all their traffic, with each other too, is routed by the host through the filter rules of
//! `netfilter.rs`. Bridge ports would not do: where `br_netfilter` is loaded, a packet that a
//! published port DNATs to another container on the same bridge is bridged rather than routed,
//! and isolated ports (the only layer-2 isolation that does not need `br_netfilter`) drop it.
//!
//! `ward0` keeps the gateway's address and route for the ports an older Ward attached to it;
//! they are isolated from one another when Ward first sees its rules out of date.

use std::collections::BTreeSet;
use std::ffi::CString;
use std::net::Ipv4Addr;
use std::path::Path;

use super::command::{self, NetworkNamespace};
use super::netlink::Inside;
use super::{NetworkError, BRIDGE_NAME, GATEWAY_ADDRESS, SUBNET_PREFIX_LENGTH};

/// A fixed, locally administered MAC for the bridge. Without one the kernel gives the bridge
/// the lowest MAC of its ports, so the gateway's MAC would change as the ports of an older
/// Ward's containers go and their ARP entries for it would go stale.
const BRIDGE_MAC: &str = "02:77:61:72:64:30";

/// The prefix of every host-side veth Ward creates.
pub(super) const HOST_INTERFACE_PREFIX: &str = "wv";
/// Hex digits of the id hash in a host-side veth name: 2 + 13 = IFNAMSIZ - 1.
const HOST_INTERFACE_HASH_DIGITS: usize = 13;

pub(super) fn host_interface_name(container_id: &str) -> String {
    // FNV-1a: stable across Rust versions and hosts, unlike `DefaultHasher`.
    let hash = container_id
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
    let digits = format!("{hash:016x}");
    format!(
        "{HOST_INTERFACE_PREFIX}{}",
        &digits[..HOST_INTERFACE_HASH_DIGITS]
    )
}

/// Creates `ward0` if it is missing. Its address and state are (re)applied by [`create_veth`].
pub(super) fn ensure_bridge() -> Result<(), NetworkError> {
    if interface_exists(BRIDGE_NAME) {
        return Ok(());
    }
    match command::run(
        "ip",
        &[
            "link",
            "add",
            "name",
            BRIDGE_NAME,
            "address",
            BRIDGE_MAC,
            "type",
            "bridge",
        ],
    ) {
        // Someone outside this data directory's lock made it in the meantime.
        Err(_) if interface_exists(BRIDGE_NAME) => Ok(()),
        result => result.map(drop),
    }
}

/// Turns on IPv4 forwarding and IPv6 off on `ward0`, so that no container on it reaches the host
/// over an IPv6 link-local address.
pub(super) fn configure_host() -> Result<(), NetworkError> {
    write_sysctl("/proc/sys/net/ipv4/ip_forward", "1")?;
    disable_ipv6(BRIDGE_NAME)
}

/// Creates the veth pair of `container_id`, puts its peer into `namespace` as `eth0` with
/// `address`, and routes between the two ends.
pub(super) fn create_veth(
    container_id: &str,
    namespace: &Path,
    address: Ipv4Addr,
) -> Result<(), NetworkError> {
    let namespace = NetworkNamespace::open(container_id, namespace)?;
    let host_interface = host_interface_name(container_id);
    let prefix_length = SUBNET_PREFIX_LENGTH;

    let mut host_batch = format!("addr replace {GATEWAY_ADDRESS}/{prefix_length} dev {BRIDGE_NAME}\nlink set {BRIDGE_NAME} up\n");
    if interface_exists(&host_interface) {
        // Left by an earlier attach of the same container; its peer goes with it.
        host_batch.push_str(&format!("link del {host_interface}\n"));
    }
    // The gateway's address on the host's end too, so that the host answers the container's
    // ARP requests for it even where `arp_ignore` wants the address on the asking interface.
    // The container's MAC follows from its address, as Docker's does: a neighbour entry the
    // host kept from an earlier run of the container (or of another with the address) is
    // still right, so a restarted container answers at once.
    host_batch.push_str(&format!(
        "link add {host_interface} type veth peer name eth0 address {} netns {}\naddr add {GATEWAY_ADDRESS}/32 dev {host_interface}\nlink set {host_interface} up\nroute replace {address}/32 dev {host_interface} src {GATEWAY_ADDRESS}\n",
        container_mac(address),
        namespace.path().display()
    ));
    command::run_with_input("ip", &["-batch", "-"], &host_batch)?;
    // The container is not running yet: nothing crosses the link before these are set.
    configure_host_interface(&host_interface)?;

    configure_inside(container_id, &namespace, address)
}

/// The MAC of the container with `address`: locally administered, Ward's `02:77` prefix, then
/// the four octets of the address.
fn container_mac(address: Ipv4Addr) -> String {
    let [a, b, c, d] = address.octets();
    format!("02:77:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
}

/// The sysctls of the host's end of a container's link, on that interface only:
/// - `proxy_arp`: the host answers the container's ARP requests for the rest of 10.88.0.0/16,
///   which it believes on its link, so that it sends those packets to the host too;
/// - `neigh` `proxy_delay` 0: those answers would otherwise wait up to 0.8 s;
/// - `route_localnet`: published ports answer on the host's 127.0.0.1, NATed onto the link;
///   what containers send to 127.0.0.0/8 themselves is dropped by `netfilter.rs`;
/// - `rp_filter` strict: the container cannot send with another's address (where the host's
///   `all` setting is not loose);
/// - no IPv6.
fn configure_host_interface(name: &str) -> Result<(), NetworkError> {
    for (setting, value) in [
        ("proxy_arp", "1"),
        ("route_localnet", "1"),
        ("rp_filter", "1"),
    ] {
        write_sysctl(&format!("/proc/sys/net/ipv4/conf/{name}/{setting}"), value)?;
    }
    write_sysctl(&format!("/proc/sys/net/ipv4/neigh/{name}/proxy_delay"), "0")?;
    disable_ipv6(name)
}

fn disable_ipv6(interface: &str) -> Result<(), NetworkError> {
    match write_sysctl(
        &format!("/proc/sys/net/ipv6/conf/{interface}/disable_ipv6"),
        "1",
    ) {
        // A kernel without IPv6 has nothing to turn off.
        Err(NetworkError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Ok(())
        }
        result => result,
    }
}

/// Inside the container's namespace: `lo` and `eth0` up, `address` on `eth0`, the default
/// route through the gateway (over netlink from this process; see `netlink.rs`).
fn configure_inside(
    container_id: &str,
    namespace: &NetworkNamespace,
    address: Ipv4Addr,
) -> Result<(), NetworkError> {
    let failed = |step: &'static str| {
        move |source: std::io::Error| NetworkError::Configure {
            container_id: container_id.to_string(),
            step,
            source,
        }
    };
    let mut inside = Inside::open(namespace.file()).map_err(failed("enter the namespace"))?;
    inside.set_up("lo").map_err(failed("set lo up"))?;
    inside
        .add_address("eth0", address, SUBNET_PREFIX_LENGTH)
        .map_err(failed("give eth0 its address"))?;
    inside.set_up("eth0").map_err(failed("set eth0 up"))?;
    inside
        .add_default_route(GATEWAY_ADDRESS)
        .map_err(failed("add the default route"))
}

/// Deletes a host-side veth (and so its peer); nothing to do when it is already gone, as it is
/// once the container's namespace has died.
pub(super) fn delete_host_interface(name: &str) -> Result<(), NetworkError> {
    if !interface_exists(name) {
        return Ok(());
    }
    match command::run("ip", &["link", "del", name]) {
        Err(_) if !interface_exists(name) => Ok(()),
        result => result.map(drop),
    }
}

/// Deletes Ward's host-side veths whose names are not in `live`.
pub(super) fn delete_stale_host_interfaces(live: &BTreeSet<String>) -> Result<(), NetworkError> {
    // Lines look like `7: wv0123456789abc@if2: <BROADCAST,…> mtu 1500 …`.
    let links = command::run("ip", &["-o", "link", "show"])?;
    for name in host_interfaces(&links) {
        if !live.contains(name) {
            delete_host_interface(name)?;
        }
    }
    Ok(())
}

/// Isolates from one another the ports of `ward0`, which only an older Ward made: it attached
/// containers to the bridge, and nothing but that stops them reaching each other directly.
pub(super) fn isolate_bridge_ports() -> Result<(), NetworkError> {
    if !interface_exists(BRIDGE_NAME) {
        return Ok(());
    }
    let ports = command::run("ip", &["-o", "link", "show", "master", BRIDGE_NAME])?;
    let batch: String = host_interfaces(&ports)
        .map(|name| format!("link set {name} type bridge_slave isolated on\n"))
        .collect();
    if batch.is_empty() {
        return Ok(());
    }
    command::run_with_input("ip", &["-batch", "-"], &batch).map(drop)
}

/// The names of Ward's host-side veths in the output of `ip -o link show`.
fn host_interfaces(links: &str) -> impl Iterator<Item = &str> {
    links
        .lines()
        .filter_map(|line| line.split(": ").nth(1))
        .map(|name| name.split('@').next().unwrap_or(name))
        .filter(|name| is_host_interface_name(name))
}

fn is_host_interface_name(name: &str) -> bool {
    name.strip_prefix(HOST_INTERFACE_PREFIX)
        .is_some_and(|hash| {
            hash.len() == HOST_INTERFACE_HASH_DIGITS
                && hash.bytes().all(|byte| byte.is_ascii_hexdigit())
        })
}

/// Whether this network namespace has an interface called `name`. Asks the kernel rather than
/// `/sys/class/net`, which shows the namespace sysfs was mounted in.
fn interface_exists(name: &str) -> bool {
    let Ok(name) = CString::new(name) else {
        return false;
    };
    // SAFETY: `name` is a valid NUL-terminated string that outlives the call.
    unsafe { libc::if_nametoindex(name.as_ptr()) != 0 }
}

/// Sets a sysctl to `value`, writing only when it is not already set.
fn write_sysctl(path: &str, value: &str) -> Result<(), NetworkError> {
    let io_error = |action, source| NetworkError::Io {
        action,
        path: path.into(),
        source,
    };
    let current = std::fs::read_to_string(path).map_err(|source| io_error("read", source))?;
    if current.trim() != value {
        std::fs::write(path, format!("{value}\n")).map_err(|source| io_error("write", source))?;
    }
    Ok(())
}
