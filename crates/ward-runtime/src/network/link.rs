//! The `ward0` bridge, the per-container veth pair, the container's side of it, and the sysctls
//! that let the host route and NAT to the bridge.

use std::collections::BTreeSet;
use std::ffi::CString;
use std::net::Ipv4Addr;
use std::path::Path;

use super::command::{self, NetworkNamespace};
use super::netlink::Inside;
use super::{NetworkError, BRIDGE_NAME, GATEWAY_ADDRESS, SUBNET_PREFIX_LENGTH};

/// A fixed, locally administered MAC for the bridge. Without one the kernel gives the bridge
/// the lowest MAC of its ports, so the gateway's MAC would change as containers come and go and
/// every container's ARP entry for it would go stale.
const BRIDGE_MAC: &str = "02:77:61:72:64:30";

/// The prefix of every host-side veth Ward creates.
const HOST_INTERFACE_PREFIX: &str = "wv";
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

/// Turns on IPv4 forwarding, and lets traffic to the host's 127.0.0.0/8 be NATed onto the
/// bridge (`route_localnet`, on `ward0` only rather than on every interface).
pub(super) fn enable_routing() -> Result<(), NetworkError> {
    write_sysctl("/proc/sys/net/ipv4/ip_forward")?;
    write_sysctl(&format!(
        "/proc/sys/net/ipv4/conf/{BRIDGE_NAME}/route_localnet"
    ))
}

/// Creates the veth pair of `container_id`, puts its peer into `namespace` as `eth0` with
/// `address`, and routes the namespace's traffic through the bridge.
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
    host_batch.push_str(&format!(
        "link add {host_interface} type veth peer name eth0 netns {}\nlink set {host_interface} master {BRIDGE_NAME} up\n",
        namespace.path().display()
    ));
    command::run_with_input("ip", &["-batch", "-"], &host_batch)?;

    configure_inside(container_id, &namespace, address)
}

/// Inside the container's namespace: `lo` and `eth0` up, `address` on `eth0`, the default
/// route through the bridge (over netlink from this process; see `netlink.rs`).
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

/// Deletes Ward's host-side veths on `ward0` whose names are not in `live`.
pub(super) fn delete_stale_host_interfaces(live: &BTreeSet<String>) -> Result<(), NetworkError> {
    if !interface_exists(BRIDGE_NAME) {
        return Ok(());
    }
    // Lines look like `7: wv0123456789abc@if2: <BROADCAST,…> mtu 1500 master ward0 …`.
    let ports = command::run("ip", &["-o", "link", "show", "master", BRIDGE_NAME])?;
    let names = ports
        .lines()
        .filter_map(|line| line.split(": ").nth(1))
        .map(|name| name.split('@').next().unwrap_or(name));
    for name in names {
        if is_host_interface_name(name) && !live.contains(name) {
            delete_host_interface(name)?;
        }
    }
    Ok(())
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

/// Sets a boolean sysctl to 1, writing only when it is not already set.
fn write_sysctl(path: &str) -> Result<(), NetworkError> {
    let io_error = |action, source| NetworkError::Io {
        action,
        path: path.into(),
        source,
    };
    let current = std::fs::read_to_string(path).map_err(|source| io_error("read", source))?;
    if current.trim() != "1" {
        std::fs::write(path, "1\n").map_err(|source| io_error("write", source))?;
    }
    Ok(())
}
