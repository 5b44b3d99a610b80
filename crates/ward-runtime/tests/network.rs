//! Bridge networking against the real kernel: veths, addresses, NAT rules and published ports.
//!
//! These need root, iproute2 and iptables, and say SKIP otherwise. Each "container" is a
//! `sleep` in a fresh network namespace; servers are sockets bound inside that namespace.
//! Traffic stays on this machine: loopback, the host's own address and the `ward0` bridge.
//! All tests share one data directory, as containers on one host share one Ward; the tests
//! that look at everything (concurrency, prune) run alone.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, OnceLock, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::signal::Signal;
use ward_runtime::network::{self, NetworkError, GATEWAY_ADDRESS};
use ward_spec::{PortMapping, Protocol};

const TIMEOUT: Duration = Duration::from_secs(5);

#[test]
fn published_tcp_port_answers_on_loopback_host_address_and_container_address() {
    let Some(_shared) =
        shared("published_tcp_port_answers_on_loopback_host_address_and_container_address")
    else {
        return;
    };
    let container = Container::start("web");

    let started = Instant::now();
    let address = container.attach(&[tcp(18080, 8000)]).expect("attach");
    let attach_time = started.elapsed();
    assert!(
        address.octets()[..2] == [10, 88] && address != GATEWAY_ADDRESS,
        "address {address} is not a container address on ward0"
    );
    let _server = HttpServer::start(&container, 8000);

    check_http(
        SocketAddr::from((Ipv4Addr::LOCALHOST, 18080)),
        &container.id,
    );
    check_http(SocketAddr::from((address, 8000)), &container.id);
    match host_address() {
        Some(host_address) => check_http(SocketAddr::from((host_address, 18080)), &container.id),
        None => {
            eprintln!("no non-loopback IPv4 address on this host: not checking the port through it")
        }
    }

    let started = Instant::now();
    network::detach(state_dir(), &container.id).expect("detach");
    let detach_time = started.elapsed();
    eprintln!("attach_bridge took {attach_time:?}, detach took {detach_time:?}");

    assert_eq!(
        rules_of(&container.id),
        Vec::<String>::new(),
        "rules left after detach"
    );
    assert!(
        !interface_exists(&network::host_interface_name(&container.id)),
        "veth left after detach"
    );
    assert!(
        !allocations().contains(&container.id),
        "address still allocated after detach"
    );
    let refused =
        TcpStream::connect_timeout(&SocketAddr::from((Ipv4Addr::LOCALHOST, 18080)), TIMEOUT);
    assert!(
        refused.is_err(),
        "127.0.0.1:18080 still answers after detach"
    );
    network::detach(state_dir(), &container.id).expect("second detach");
}

#[test]
fn container_reaches_its_gateway() {
    let Some(_shared) = shared("container_reaches_its_gateway") else {
        return;
    };
    let container = Container::start("gateway");
    container.attach(&[]).expect("attach");

    let listener = TcpListener::bind((GATEWAY_ADDRESS, 0)).expect("listen on the gateway address");
    let gateway = listener.local_addr().expect("listener address");
    let connected = in_namespace(container.pid(), move || {
        TcpStream::connect_timeout(&gateway, TIMEOUT).map(drop)
    });
    assert!(
        connected.is_ok(),
        "the container cannot reach {gateway}: {connected:?}"
    );
}

#[test]
fn container_reaches_another_containers_published_port_through_the_gateway() {
    let Some(_shared) =
        shared("container_reaches_another_containers_published_port_through_the_gateway")
    else {
        return;
    };
    let server = Container::start("hairpin-server");
    let client = Container::start("hairpin-client");
    server
        .attach(&[tcp(18160, 8000)])
        .expect("attach the server");
    client.attach(&[]).expect("attach the client");
    let _http = HttpServer::start(&server, 8000);

    let published = SocketAddr::from((GATEWAY_ADDRESS, 18160));
    let response = in_namespace(client.pid(), move || http_get(published));
    let response = response
        .unwrap_or_else(|error| panic!("GET http://{published}/ from another container: {error}"));
    assert!(
        response.ends_with(&server.id),
        "GET http://{published}/ from another container answered {response:?}"
    );
}

#[test]
fn published_udp_port_answers() {
    let Some(_shared) = shared("published_udp_port_answers") else {
        return;
    };
    let container = Container::start("dns");
    container
        .attach(&[PortMapping {
            host: 18053,
            port: 5300,
            protocol: Protocol::Udp,
        }])
        .expect("attach");
    let _server = UdpEchoServer::start(&container, 5300);

    let client = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a client socket");
    client
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("set a read timeout");
    let deadline = Instant::now() + TIMEOUT;
    let mut buffer = [0; 64];
    let answer = loop {
        // Resent until the deadline: a datagram can be dropped while the kernel resolves the
        // container's MAC address.
        client
            .send_to(b"ping", (Ipv4Addr::LOCALHOST, 18053))
            .expect("send a datagram");
        if let Ok(length) = client.recv(&mut buffer) {
            break &buffer[..length];
        }
        assert!(
            Instant::now() < deadline,
            "no answer from 127.0.0.1:18053/udp"
        );
    };
    assert_eq!(answer, b"ping");
}

#[test]
fn containers_get_different_addresses_and_cannot_share_a_host_port() {
    let Some(_shared) = shared("containers_get_different_addresses_and_cannot_share_a_host_port")
    else {
        return;
    };
    let first = Container::start("first");
    let second = Container::start("second");
    let first_address = first.attach(&[tcp(18100, 80)]).expect("attach the first");

    let refused = second.attach(&[tcp(18101, 80), tcp(18100, 80)]);
    let Err(error @ NetworkError::PortAlreadyPublished { .. }) = refused else {
        panic!("second publish of 18100 was not refused: {refused:?}")
    };
    let message = error.to_string();
    assert!(
        message.contains("18100/tcp")
            && message.contains(&first.id)
            && message.contains(&second.id),
        "unclear error: {message}"
    );
    assert!(
        !allocations().contains(&second.id),
        "refused attach left an address allocated"
    );
    assert!(rules_of(&second.id).is_empty(), "refused attach left rules");

    let second_address = second.attach(&[tcp(18101, 80)]).expect("attach the second");
    assert_ne!(first_address, second_address);
}

#[test]
fn attaching_again_keeps_the_address_and_replaces_the_rules() {
    let Some(_shared) = shared("attaching_again_keeps_the_address_and_replaces_the_rules") else {
        return;
    };
    let container = Container::start("again");
    let address = container
        .attach(&[tcp(18120, 80), tcp(18121, 81)])
        .expect("attach");
    let again = container.attach(&[tcp(18122, 80)]).expect("attach again");

    assert_eq!(address, again);
    let rules = rules_of(&container.id);
    assert!(
        rules.len() == 1 && rules[0].contains("--dport 18122"),
        "rules after attaching again: {rules:#?}"
    );
    let masquerades = iptables_lines("nat", "WARD-POSTROUTING")
        .into_iter()
        .filter(|line| line.starts_with("-A"))
        .count();
    assert_eq!(masquerades, 3, "WARD-POSTROUTING rules were added twice");
}

#[test]
fn detach_is_safe_when_nothing_exists() {
    let Some(_shared) = shared("detach_is_safe_when_nothing_exists") else {
        return;
    };
    let container_id = container_id("never-attached");
    network::detach(state_dir(), &container_id).expect("detach");
    network::detach(state_dir(), &container_id).expect("detach again");
}

#[test]
fn host_port_is_free_reflects_listeners_and_published_ports() {
    let Some(_shared) = shared("host_port_is_free_reflects_listeners_and_published_ports") else {
        return;
    };
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("listen");
    let port = listener.local_addr().expect("listener address").port();
    assert!(
        !network::host_port_is_free(port, Protocol::Tcp),
        "{port}/tcp has a listener"
    );
    drop(listener);
    // Another test's child, forked before it execs, can hold a copy of the socket for a moment.
    assert!(
        eventually(|| network::host_port_is_free(port, Protocol::Tcp)),
        "{port}/tcp is not free again"
    );

    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("bind");
    let port = socket.local_addr().expect("socket address").port();
    assert!(
        !network::host_port_is_free(port, Protocol::Udp),
        "{port}/udp is bound"
    );
    drop(socket);

    let container = Container::start("published");
    container.attach(&[tcp(18140, 80)]).expect("attach");
    assert!(
        !network::host_port_is_free(18140, Protocol::Tcp),
        "18140/tcp is published"
    );
    assert!(
        network::host_port_is_free(18140, Protocol::Udp),
        "only 18140/tcp is published"
    );
    network::detach(state_dir(), &container.id).expect("detach");
    assert!(
        eventually(|| network::host_port_is_free(18140, Protocol::Tcp)),
        "18140/tcp is not free after detach"
    );
}

#[test]
fn eight_concurrent_attaches_get_distinct_addresses() {
    let Some(_alone) = alone("eight_concurrent_attaches_get_distinct_addresses") else {
        return;
    };
    let containers: Vec<Container> = (0..8)
        .map(|index| Container::start(&format!("parallel-{index}")))
        .collect();
    let barrier = Barrier::new(containers.len());

    let addresses: Vec<Ipv4Addr> = std::thread::scope(|scope| {
        let attaching: Vec<_> = containers
            .iter()
            .zip(18200..)
            .map(|(container, host_port)| {
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    container.attach(&[tcp(host_port, 80)])
                })
            })
            .collect();
        attaching
            .into_iter()
            .map(|thread| thread.join().expect("attach thread").expect("attach"))
            .collect()
    });
    let distinct: BTreeSet<Ipv4Addr> = addresses.iter().copied().collect();
    assert_eq!(distinct.len(), containers.len(), "addresses: {addresses:?}");

    std::thread::scope(|scope| {
        for container in &containers {
            scope.spawn(move || network::detach(state_dir(), &container.id).expect("detach"));
        }
    });
    assert_eq!(allocations(), Vec::<String>::new());
}

#[test]
fn prune_removes_what_dead_containers_left() {
    let Some(_alone) = alone("prune_removes_what_dead_containers_left") else {
        return;
    };
    let live = Container::start("live");
    let dead = Container::start("dead");
    live.attach(&[tcp(18300, 80)])
        .expect("attach the live container");
    dead.attach(&[tcp(18301, 80)])
        .expect("attach the dead container");

    network::prune(state_dir(), std::slice::from_ref(&live.id)).expect("prune");

    assert!(
        rules_of(&dead.id).is_empty(),
        "rules of a pruned container are left"
    );
    assert!(
        !interface_exists(&network::host_interface_name(&dead.id)),
        "veth of a pruned container is left"
    );
    assert_eq!(allocations(), vec![live.id.clone()]);
    assert_eq!(
        rules_of(&live.id).len(),
        1,
        "prune removed the live container's rule"
    );
    assert!(
        interface_exists(&network::host_interface_name(&live.id)),
        "prune removed the live container's veth"
    );
}

#[test]
fn failed_attach_leaves_nothing_behind() {
    let Some(_shared) = shared("failed_attach_leaves_nothing_behind") else {
        return;
    };
    let mut exited = Command::new("true").spawn().expect("run true");
    exited.wait().expect("wait for true");
    let container_id = container_id("exited");

    let namespace = PathBuf::from(format!("/proc/{}/ns/net", exited.id()));
    let refused = network::attach_bridge(state_dir(), &container_id, &namespace, &[tcp(18180, 80)]);
    let Err(error @ NetworkError::Namespace { .. }) = refused else {
        panic!("attaching an exited process did not fail on its namespace: {refused:?}")
    };
    let message = error.to_string();
    assert!(
        message.contains(&container_id) && message.contains(&exited.id().to_string()),
        "unclear error: {message}"
    );
    assert!(
        !allocations().contains(&container_id),
        "failed attach left an address allocated"
    );
    assert!(
        rules_of(&container_id).is_empty(),
        "failed attach left rules"
    );
    assert!(
        !interface_exists(&network::host_interface_name(&container_id)),
        "failed attach left a veth"
    );
}

#[test]
fn failed_command_is_reported_with_its_command_line_and_stderr() {
    let Some(_shared) = shared("failed_command_is_reported_with_its_command_line_and_stderr")
    else {
        return;
    };
    let container = Container::start("taken-eth0");
    // A child forked on a thread inside the namespace runs inside it too.
    let made = in_namespace(container.pid(), || {
        Command::new("ip")
            .args([
                "link", "add", "eth0", "type", "veth", "peer", "name", "eth1",
            ])
            .status()
    });
    assert!(
        made.as_ref().is_ok_and(|status| status.success()),
        "cannot add an eth0: {made:?}"
    );

    let refused = container.attach(&[tcp(18190, 80)]);
    let Err(error @ NetworkError::CommandFailed { .. }) = refused else {
        panic!("attaching next to an existing eth0 did not fail in ip: {refused:?}")
    };
    let message = error.to_string();
    assert!(
        message.contains("ip -batch -")
            && message.contains("peer name eth0")
            && message.contains("exists"),
        "unclear error: {message}"
    );
    assert!(
        !allocations().contains(&container.id),
        "failed attach left an address allocated"
    );
    assert!(
        rules_of(&container.id).is_empty(),
        "failed attach left rules"
    );
}

#[test]
fn invalid_container_id_is_refused() {
    let refused = network::attach_bridge(
        Path::new("/nonexistent"),
        "has space",
        Path::new("/proc/1/ns/net"),
        &[],
    );
    assert!(
        matches!(refused, Err(NetworkError::InvalidContainerId { .. })),
        "{refused:?}"
    );
    let refused = network::detach(Path::new("/nonexistent"), "");
    assert!(
        matches!(refused, Err(NetworkError::InvalidContainerId { .. })),
        "{refused:?}"
    );
}

/// Tests that only add and remove their own containers run side by side; tests that look at
/// everything Ward has on the host run alone.
static EXCLUSIVE: RwLock<()> = RwLock::new(());

fn shared(test: &str) -> Option<RwLockReadGuard<'static, ()>> {
    privileged(test).then(|| EXCLUSIVE.read().unwrap_or_else(PoisonError::into_inner))
}

fn alone(test: &str) -> Option<RwLockWriteGuard<'static, ()>> {
    privileged(test).then(|| EXCLUSIVE.write().unwrap_or_else(PoisonError::into_inner))
}

fn privileged(test: &str) -> bool {
    let missing = if !nix::unistd::geteuid().is_root() {
        Some("root")
    } else {
        [
            "ip",
            "iptables",
            "iptables-save",
            "iptables-restore",
            "sleep",
        ]
        .into_iter()
        .find(|program| {
            Command::new(program)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_err()
        })
    };
    if let Some(missing) = missing {
        eprintln!("SKIP {test}: needs {missing}");
    }
    missing.is_none()
}

fn state_dir() -> &'static Path {
    static DATA_DIR: OnceLock<PathBuf> = OnceLock::new();
    DATA_DIR.get_or_init(|| {
        tempfile::Builder::new()
            .prefix("network-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("create a data directory")
            .keep()
    })
}

fn container_id(name: &str) -> String {
    format!("ward.nettest-{}.{name}", std::process::id())
}

fn tcp(host: u16, port: u16) -> PortMapping {
    PortMapping {
        host,
        port,
        protocol: Protocol::Tcp,
    }
}

/// A stand-in for a container: `sleep` in a network namespace of its own. Detached and killed
/// on drop, even when the test fails.
struct Container {
    id: String,
    process: Child,
}

impl Container {
    fn start(name: &str) -> Container {
        let mut command = Command::new("sleep");
        command.arg("600");
        // SAFETY: unshare and prctl are plain system calls, safe between fork and exec.
        unsafe {
            command.pre_exec(|| {
                unshare(CloneFlags::CLONE_NEWNET)?;
                // Dies with the thread that started it, should the test process be killed.
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
                Ok(())
            });
        }
        let process = command
            .spawn()
            .expect("start sleep in a new network namespace");
        Container {
            id: container_id(name),
            process,
        }
    }

    fn pid(&self) -> u32 {
        self.process.id()
    }

    fn attach(&self, ports: &[PortMapping]) -> Result<Ipv4Addr, NetworkError> {
        let namespace = PathBuf::from(format!("/proc/{}/ns/net", self.pid()));
        network::attach_bridge(state_dir(), &self.id, &namespace, ports)
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if let Err(error) = network::detach(state_dir(), &self.id) {
            eprintln!("cannot detach {}: {error}", self.id);
        }
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// Runs `action` on a thread that has entered the network namespace of `pid`.
fn in_namespace<T: Send>(pid: u32, action: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let namespace =
                    File::open(format!("/proc/{pid}/ns/net")).expect("open the network namespace");
                setns(namespace, CloneFlags::CLONE_NEWNET).expect("enter the network namespace");
                action()
            })
            .join()
            .expect("thread in the network namespace")
    })
}

/// Answers every HTTP request with the container id, from a socket bound inside the container.
struct HttpServer {
    listener: TcpListener,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    fn start(container: &Container, port: u16) -> HttpServer {
        let listener = in_namespace(container.pid(), || {
            TcpListener::bind((Ipv4Addr::UNSPECIFIED, port))
        })
        .expect("listen in the container");
        let serving = listener.try_clone().expect("clone the listener");
        let body = container.id.clone();
        let thread = std::thread::spawn(move || {
            // Ends when `drop` shuts the listener down.
            for stream in serving.incoming() {
                let Ok(mut stream) = stream else { break };
                let _ = stream.set_read_timeout(Some(TIMEOUT));
                let mut request = Vec::new();
                let mut buffer = [0; 1024];
                while !request.windows(4).any(|window| window == b"\r\n\r\n") {
                    match stream.read(&mut buffer) {
                        Ok(0) | Err(_) => break,
                        Ok(length) => request.extend_from_slice(&buffer[..length]),
                    }
                }
                let _ = write!(
                    stream,
                    "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        HttpServer {
            listener,
            thread: Some(thread),
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        // Shutting a listening socket down wakes the blocked accept with an error.
        let _ =
            nix::sys::socket::shutdown(self.listener.as_raw_fd(), nix::sys::socket::Shutdown::Both);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Echoes datagrams from a socket bound inside the container.
struct UdpEchoServer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl UdpEchoServer {
    fn start(container: &Container, port: u16) -> UdpEchoServer {
        let socket = in_namespace(container.pid(), || {
            UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port))
        })
        .expect("bind in the container");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("set a read timeout");
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut buffer = [0; 1024];
            while !stopping.load(Ordering::Relaxed) {
                if let Ok((length, peer)) = socket.recv_from(&mut buffer) {
                    let _ = socket.send_to(&buffer[..length], peer);
                }
            }
        });
        UdpEchoServer {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for UdpEchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Whether `condition` holds within [`TIMEOUT`], checking it again and again until then.
fn eventually(condition: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn check_http(address: SocketAddr, expected_body: &str) {
    let response =
        http_get(address).unwrap_or_else(|error| panic!("GET http://{address}/: {error}"));
    assert!(
        response.starts_with("HTTP/1.0 200 OK") && response.ends_with(expected_body),
        "GET http://{address}/ answered {response:?}"
    );
}

fn http_get(address: SocketAddr) -> io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&address, TIMEOUT)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
    stream.shutdown(Shutdown::Write)?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}

/// The host's first global IPv4 address outside Ward's bridge, e.g. eth0's.
fn host_address() -> Option<Ipv4Addr> {
    let output = Command::new("ip")
        .args(["-4", "-o", "addr", "show", "scope", "global"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let interface = words.get(1)?;
            if *interface == "ward0" || interface.starts_with("wv") {
                return None;
            }
            let address = words
                .iter()
                .position(|word| *word == "inet")
                .and_then(|index| words.get(index + 1))?;
            address.split('/').next()?.parse().ok()
        })
}

fn iptables_lines(table: &str, chain: &str) -> Vec<String> {
    let output = Command::new("iptables")
        .args(["-w", "-t", table, "-S", chain])
        .output()
        .expect("run iptables -S");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// The rules in nat `WARD` carrying the comment of `container_id`.
fn rules_of(container_id: &str) -> Vec<String> {
    let comment = format!("ward:{container_id}");
    iptables_lines("nat", "WARD")
        .into_iter()
        .filter(|line| {
            line.split_whitespace()
                .any(|word| word.trim_matches('"') == comment)
        })
        .collect()
}

fn interface_exists(name: &str) -> bool {
    let name = std::ffi::CString::new(name).expect("an interface name without NUL");
    // SAFETY: `name` is a valid NUL-terminated string that outlives the call.
    unsafe { libc::if_nametoindex(name.as_ptr()) != 0 }
}

/// The container ids with an address in the shared data directory.
fn allocations() -> Vec<String> {
    let path = state_dir().join("allocations.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Vec::new();
    };
    let allocations: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&text).expect("parse allocations.json");
    allocations.keys().cloned().collect()
}
