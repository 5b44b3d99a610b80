//! Bridge networking against the real kernel: veths, addresses, NAT rules, published ports and
//! the isolation of projects from one another and of the host from containers.
//!
//! These need root, iproute2 and iptables, and say SKIP otherwise. Each "container" is a
//! `sleep` in a fresh network namespace; servers are sockets bound inside that namespace.
//! Traffic stays on this machine: loopback, the host's own address, the containers' links and a
//! namespace that stands in for the world outside.
//! All tests share one data directory, as containers on one host share one Ward; the tests
//! that look at everything (concurrency, prune) run alone.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{
    Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, SocketAddrV6, TcpListener, TcpStream, UdpSocket,
};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
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
fn a_port_published_on_one_host_address_answers_there_only() {
    let Some(_shared) = shared("a_port_published_on_one_host_address_answers_there_only") else {
        return;
    };
    let container = Container::start("local-only");
    let mut port = tcp(18081, 8000);
    port.host_ip = Some(Ipv4Addr::LOCALHOST);
    container.attach(&[port]).expect("attach");
    let _server = HttpServer::start(&container, 8000);
    check_http(
        SocketAddr::from((Ipv4Addr::LOCALHOST, 18081)),
        &container.id,
    );
    match host_address() {
        Some(host_address) => {
            let other =
                TcpStream::connect_timeout(&SocketAddr::from((host_address, 18081)), TIMEOUT);
            assert!(
                other.is_err(),
                "{host_address}:18081 answers although the port is published on 127.0.0.1 only"
            );
        }
        None => eprintln!("no non-loopback IPv4 address on this host: not checking it"),
    }
    network::detach(state_dir(), &container.id).expect("detach");

    // An address that is not this host's is refused, naming it.
    let elsewhere = Container::start("elsewhere");
    let mut port = tcp(18082, 8000);
    port.host_ip = Some(Ipv4Addr::new(192, 0, 2, 1));
    match elsewhere.attach(&[port]) {
        Err(NetworkError::ForeignHostAddress { address, .. }) => {
            assert_eq!(address, Ipv4Addr::new(192, 0, 2, 1))
        }
        other => panic!("attach with a foreign host address gave {other:?}"),
    }
}

#[test]
fn container_reaches_the_outside_through_the_masquerade() {
    let Some(_shared) = shared("container_reaches_the_outside_through_the_masquerade") else {
        return;
    };
    let container = Container::start("egress");
    container.attach(&[]).expect("attach");
    let outside = Outside::start();

    let listener = in_namespace(outside.network.pid(), || {
        TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0))
    })
    .expect("listen outside");
    let server = SocketAddr::from((
        outside.address,
        listener.local_addr().expect("listener address").port(),
    ));
    let connected = in_namespace(container.pid(), move || {
        TcpStream::connect_timeout(&server, TIMEOUT)
    });
    assert!(
        connected.is_ok(),
        "the container cannot reach {server}: {connected:?}"
    );
    let (_stream, peer) = listener.accept().expect("accept the container");
    assert_eq!(
        peer.ip(),
        outside.host_address,
        "the container's connection was not masqueraded behind the host"
    );
}

#[test]
fn container_cannot_reach_host_services_on_the_gateway_or_the_hosts_addresses() {
    let Some(_shared) =
        shared("container_cannot_reach_host_services_on_the_gateway_or_the_hosts_addresses")
    else {
        return;
    };
    let container = Container::start("host-services");
    container.attach(&[]).expect("attach");

    let on_gateway =
        TcpListener::bind((GATEWAY_ADDRESS, 0)).expect("listen on the gateway address");
    // Dual-stack where the host has IPv6.
    let on_every_address = TcpListener::bind((Ipv6Addr::UNSPECIFIED, 0))
        .or_else(|_| TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)))
        .expect("listen on every address");
    let every_port = on_every_address
        .local_addr()
        .expect("listener address")
        .port();
    let mut targets = vec![
        (
            on_gateway.local_addr().expect("listener address"),
            REFUSED_WITHIN,
        ),
        (
            SocketAddr::from((GATEWAY_ADDRESS, every_port)),
            REFUSED_WITHIN,
        ),
    ];
    match host_address() {
        Some(host_address) => {
            targets.push((SocketAddr::from((host_address, every_port)), REFUSED_WITHIN))
        }
        None => eprintln!("no non-loopback IPv4 address on this host: not checking it"),
    }
    if on_every_address
        .local_addr()
        .is_ok_and(|address| address.is_ipv6())
    {
        // The link-local address the host's end of the link would have, made from its MAC.
        let host_interface = network::host_interface_name(&container.id);
        let link_local = link_local_address(mac_address(&host_interface));
        let index = in_namespace(container.pid(), || interface_index("eth0"));
        // Long enough for the address to finish duplicate address detection, were it there.
        let target = SocketAddrV6::new(link_local, every_port, 0, index);
        targets.push((SocketAddr::V6(target), TIMEOUT));
    } else {
        eprintln!("no IPv6 on this host: not checking link-local addresses");
    }

    std::thread::scope(|scope| {
        for (target, limit) in targets {
            let pid = container.pid();
            scope.spawn(move || {
                let connected = in_namespace(pid, move || connects_within(target, limit));
                assert!(
                    !connected,
                    "the container reached the host service on {target}"
                );
            });
        }
    });
}

#[test]
fn container_cannot_send_to_the_hosts_loopback_through_its_gateway() {
    let Some(_shared) = shared("container_cannot_send_to_the_hosts_loopback_through_its_gateway")
    else {
        return;
    };
    let container = Container::start("loopback-udp");
    container.attach(&[]).expect("attach");
    let receiver = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind on the host's loopback");
    receiver
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("set a read timeout");
    let target = receiver.local_addr().expect("receiver address");

    // Bound to eth0, the container's own loopback is out of the way: 127.0.0.1 is sent to the
    // default gateway, as a container with its own network stack may.
    let sender = in_namespace(container.pid(), || {
        let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
        bind_to_device(&socket, "eth0")?;
        io::Result::Ok(socket)
    })
    .expect("bind a socket to the container's eth0");
    let deadline = Instant::now() + REFUSED_WITHIN;
    let mut buffer = [0; 64];
    while Instant::now() < deadline {
        sender
            .send_to(b"to the host's loopback", target)
            .expect("send from the container");
        if let Ok((length, peer)) = receiver.recv_from(&mut buffer) {
            panic!(
                "the host's {target} received {:?} from {peer}",
                String::from_utf8_lossy(&buffer[..length])
            );
        }
    }
}

#[test]
fn container_gets_no_answer_from_the_hosts_loopback_to_a_raw_syn() {
    let Some(_shared) = shared("container_gets_no_answer_from_the_hosts_loopback_to_a_raw_syn")
    else {
        return;
    };
    let container = Container::start("loopback-syn");
    let address = container.attach(&[]).expect("attach");
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("listen on the host's loopback");
    let port = listener.local_addr().expect("listener address").port();
    let host_interface = network::host_interface_name(&container.id);
    let gateway_mac = mac_address(&host_interface);
    // The host answers only a container whose MAC it knows, as it does once the container has
    // sent it anything: here a datagram to the gateway, for which the container asks its MAC.
    let gateway = SocketAddr::from((GATEWAY_ADDRESS, 9));
    in_namespace(container.pid(), move || {
        UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).and_then(|socket| socket.send_to(b"", gateway))
    })
    .expect("send to the gateway");
    assert!(
        eventually(|| knows_neighbour(&host_interface, address)),
        "the host did not learn the MAC of {address}"
    );

    let answer = in_namespace(container.pid(), || {
        loopback_syn_answer(address, gateway_mac, port)
    })
    .expect("send a raw SYN from the container");
    assert_eq!(
        answer, None,
        "127.0.0.1:{port} of the host answered a SYN from the container with TCP flags {answer:#04x?}"
    );
}

#[test]
fn projects_are_separate_networks() {
    let Some(_shared) = shared("projects_are_separate_networks") else {
        return;
    };
    let daemon = format!("ward-{:08x}", std::process::id());
    let other_daemon = format!("ward-{:08x}", std::process::id() | 0x8000_0000);
    let web = Container::named(format!("{daemon}.alpha.web.0"));
    let db = Container::named(format!("{daemon}.alpha.db.0"));
    let beta = Container::named(format!("{daemon}.beta.web.0"));
    let stranger = Container::named(format!("{other_daemon}.alpha.web.0"));
    let web_address = web.attach(&[]).expect("attach alpha's web");
    let db_address = db.attach(&[tcp(18400, 8000)]).expect("attach alpha's db");
    let beta_address = beta.attach(&[]).expect("attach beta's web");
    let stranger_address = stranger.attach(&[]).expect("attach another daemon's alpha");
    let _web_server = HttpServer::start(&web, 8000);
    let _db_server = HttpServer::start(&db, 8000);

    let block = |address: Ipv4Addr| address.octets()[2];
    assert_eq!(
        block(web_address),
        block(db_address),
        "one project, two blocks: {web_address}, {db_address}"
    );
    let blocks: BTreeSet<u8> = [web_address, beta_address, stranger_address]
        .into_iter()
        .map(block)
        .collect();
    assert_eq!(
        blocks.len(),
        3,
        "projects share a block: alpha {web_address}, beta {beta_address}, other daemon's alpha {stranger_address}"
    );
    assert!(!blocks.contains(&0), "block 0 is the gateway's");

    let redirects_before = icmp_in_redirects(web.pid());
    for (from, to) in [(&web, db_address), (&db, web_address)] {
        let server = SocketAddr::from((to, 8000));
        let response = in_namespace(from.pid(), move || http_get(server))
            .unwrap_or_else(|error| panic!("GET http://{server}/ from {}: {error}", from.id));
        assert!(
            response.starts_with("HTTP/1.0 200 OK"),
            "GET http://{server}/ from {} answered {response:?}",
            from.id
        );
    }
    assert_eq!(
        icmp_in_redirects(web.pid()),
        redirects_before,
        "the host sent alpha's web an ICMP redirect"
    );

    for outsider in [&beta, &stranger] {
        for target in [web_address, db_address] {
            let server = SocketAddr::from((target, 8000));
            let connected = in_namespace(outsider.pid(), move || {
                connects_within(server, REFUSED_WITHIN)
            });
            assert!(!connected, "{} reached {server}", outsider.id);
        }
    }

    // A published port stays open to every project, through the host as to any outside client.
    let published = SocketAddr::from((GATEWAY_ADDRESS, 18400));
    let response = in_namespace(beta.pid(), move || http_get(published))
        .unwrap_or_else(|error| panic!("GET http://{published}/ from beta: {error}"));
    assert!(
        response.ends_with(&db.id),
        "GET http://{published}/ from beta answered {response:?}"
    );
}

#[test]
fn full_blocks_are_refused_naming_the_project_and_the_limit() {
    let Some(_shared) = shared("full_blocks_are_refused_naming_the_project_and_the_limit") else {
        return;
    };
    let container = Container::named("ward-fullfull.crowded.web.254".to_string());
    let namespace = PathBuf::from(format!("/proc/{}/ns/net", container.pid()));

    let crowded: serde_json::Map<String, serde_json::Value> = (1..=254)
        .map(|host| {
            (
                format!("ward-fullfull.crowded.web.{}", host + 1000),
                serde_json::Value::from(format!("10.88.1.{host}")),
            )
        })
        .collect();
    let state = isolated_state_dir(&crowded);
    let refused = network::attach_bridge(state.path(), &container.id, &namespace, &[]);
    let Err(error @ NetworkError::ProjectAddressesExhausted { .. }) = refused else {
        panic!("a 255th container in one project was not refused: {refused:?}")
    };
    let message = error.to_string();
    assert!(
        message.contains("ward-fullfull.crowded") && message.contains("254"),
        "unclear error: {message}"
    );

    let every_block: serde_json::Map<String, serde_json::Value> = (1..=255)
        .map(|block| {
            (
                format!("ward-fullfull.project-{block}.web.0"),
                serde_json::Value::from(format!("10.88.{block}.1")),
            )
        })
        .collect();
    let state = isolated_state_dir(&every_block);
    let refused = network::attach_bridge(state.path(), &container.id, &namespace, &[]);
    let Err(error @ NetworkError::ProjectsExhausted { .. }) = refused else {
        panic!("a 256th project was not refused: {refused:?}")
    };
    let message = error.to_string();
    assert!(
        message.contains("ward-fullfull.crowded") && message.contains("255"),
        "unclear error: {message}"
    );
    assert!(
        !interface_exists(&network::host_interface_name(&container.id)),
        "a refused attach left a veth"
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
            host_ip: None,
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
    let postrouting: Vec<String> = iptables_lines("nat", "WARD-POSTROUTING")
        .into_iter()
        .filter(|line| line.starts_with("-A"))
        .collect();
    let distinct: BTreeSet<&String> = postrouting.iter().collect();
    assert_eq!(
        distinct.len(),
        postrouting.len(),
        "WARD-POSTROUTING rules were added twice: {postrouting:#?}"
    );
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
fn rules_an_older_ward_left_are_brought_up_to_date() {
    let Some(_alone) = alone("rules_an_older_ward_left_are_brought_up_to_date") else {
        return;
    };
    // A container an older Ward attached to the bridge, as it did every container.
    let old = Container::start("older-ward");
    let old_port = network::host_interface_name(&old.id);
    let _old_port = LinkGuard(old_port.clone());
    run_ip(&format!(
        "link add {old_port} type veth peer name eth0 netns {}",
        old.pid()
    ));
    run_ip(&format!("link set {old_port} master ward0 up"));
    // The older Ward's chains: no WARD-INPUT or WARD-ISOLATION, its own WARD-FORWARD and
    // WARD-POSTROUTING.
    for arguments in [
        "-D INPUT -j WARD-INPUT",
        "-F WARD-INPUT",
        "-X WARD-INPUT",
        "-F WARD-FORWARD",
        "-F WARD-ISOLATION",
        "-X WARD-ISOLATION",
    ] {
        // Missing on a host this test sees first.
        let _ = Command::new("iptables")
            .args(["-w"])
            .args(arguments.split(' '))
            .stderr(Stdio::null())
            .status();
    }
    restore(
        "*filter\n:WARD-FORWARD - [0:0]\n-A WARD-FORWARD -i ward0 -j ACCEPT\n-A WARD-FORWARD -o ward0 -m conntrack --ctstate RELATED,ESTABLISHED,DNAT -j ACCEPT\nCOMMIT\n*nat\n:WARD-POSTROUTING - [0:0]\n-A WARD-POSTROUTING -s 127.0.0.0/8 -o ward0 -j MASQUERADE\n-A WARD-POSTROUTING -s 10.88.0.0/16 ! -o ward0 -j MASQUERADE\n-A WARD-POSTROUTING -s 10.88.0.0/16 -o ward0 -m conntrack --ctstate DNAT -j MASQUERADE\nCOMMIT\n",
    );
    // And an address it gave out, in the block that is now the gateway's.
    let container = Container::start("upgraded");
    set_allocation(&container.id, Ipv4Addr::new(10, 88, 0, 7));

    let address = container.attach(&[]).expect("attach");

    assert_ne!(
        address.octets()[2],
        0,
        "the container kept the address {address} from before blocks"
    );
    let expected = |chain: &str, rules: &[&str]| {
        let rules: Vec<String> = rules
            .iter()
            .map(|rule| format!("-A {chain} {rule}"))
            .collect();
        rules
    };
    assert_eq!(
        added_rules("filter", "WARD-INPUT"),
        expected(
            "WARD-INPUT",
            &[
                "-d 127.0.0.0/8 -i wv+ -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP",
                "-i wv+ -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",
                "-i wv+ -j DROP",
                "-d 127.0.0.0/8 -i ward0 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP",
                "-i ward0 -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",
                "-i ward0 -j DROP",
            ]
        )
    );
    assert_eq!(
        added_rules("filter", "WARD-FORWARD"),
        expected(
            "WARD-FORWARD",
            &[
                "-i wv+ -j WARD-ISOLATION",
                "-i ward0 -j WARD-ISOLATION",
                "-i wv+ -j ACCEPT",
                "-i ward0 -j ACCEPT",
                "-o wv+ -m conntrack --ctstate RELATED,ESTABLISHED,DNAT -j ACCEPT",
                "-o ward0 -m conntrack --ctstate RELATED,ESTABLISHED,DNAT -j ACCEPT",
            ]
        )
    );
    assert_eq!(
        added_rules("nat", "WARD-POSTROUTING"),
        expected(
            "WARD-POSTROUTING",
            &[
                "-s 127.0.0.0/8 -o wv+ -j MASQUERADE",
                "-s 10.88.0.0/16 -o wv+ -m conntrack --ctstate DNAT -j MASQUERADE",
                "-o wv+ -j RETURN",
                "-s 127.0.0.0/8 -o ward0 -j MASQUERADE",
                "-s 10.88.0.0/16 -o ward0 -m conntrack --ctstate DNAT -j MASQUERADE",
                "-o ward0 -j RETURN",
                "-s 10.88.0.0/16 -j MASQUERADE",
            ]
        )
    );
    let isolation = added_rules("filter", "WARD-ISOLATION");
    let block = address.octets()[2];
    let (first, rest) = isolation.split_first().expect("WARD-ISOLATION is empty");
    assert_eq!(
        first,
        "-A WARD-ISOLATION -m conntrack --ctstate DNAT -j RETURN"
    );
    assert!(
        rest.ends_with(&[
            "-A WARD-ISOLATION -o wv+ -j DROP".to_string(),
            "-A WARD-ISOLATION -o ward0 -j DROP".to_string(),
        ]),
        "WARD-ISOLATION does not end by dropping: {isolation:#?}"
    );
    let block_rule = format!(
        "-A WARD-ISOLATION -s 10.88.{block}.0/24 -d 10.88.{block}.0/24 -i wv+ -o wv+ -j RETURN"
    );
    assert!(
        isolation.contains(&block_rule),
        "WARD-ISOLATION lacks {block_rule:?}: {isolation:#?}"
    );
    for (chain, jump) in [
        ("INPUT", "-A INPUT -j WARD-INPUT"),
        ("FORWARD", "-A FORWARD -j WARD-FORWARD"),
    ] {
        assert_eq!(
            added_rules("filter", chain).first().map(String::as_str),
            Some(jump),
            "{chain} does not jump to Ward's chain first"
        );
    }
    let details = Command::new("ip")
        .args(["-d", "-o", "link", "show", &old_port])
        .output()
        .expect("run ip link show");
    assert!(
        String::from_utf8_lossy(&details.stdout).contains("isolated on"),
        "the older Ward's bridge port was not isolated"
    );

    // Up to date now: the next attach leaves the chains as they are, counters included.
    let dropped_before = packet_counts("filter", "WARD-INPUT");
    let gateway = SocketAddr::from((GATEWAY_ADDRESS, 9));
    in_namespace(container.pid(), move || {
        UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).and_then(|socket| socket.send_to(b"x", gateway))
    })
    .expect("send to the gateway");
    assert!(
        eventually(|| packet_counts("filter", "WARD-INPUT")[2] > dropped_before[2]),
        "WARD-INPUT did not count the datagram it dropped"
    );
    let dropped = packet_counts("filter", "WARD-INPUT");
    let next = Container::start("after-upgrade");
    next.attach(&[]).expect("attach after the upgrade");
    assert!(
        packet_counts("filter", "WARD-INPUT")[2] >= dropped[2],
        "attaching again rewrote WARD-INPUT"
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
        host_ip: None,
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
        Container::named(container_id(name))
    }

    /// A container whose id is `id`, as Ward names them: `ward-<daemon>.<project>.<workload>.<replica>`.
    fn named(id: String) -> Container {
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
        Container { id, process }
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

/// How long a connection or datagram that must not get through is given to get through.
const REFUSED_WITHIN: Duration = Duration::from_secs(2);

/// A network namespace outside Ward, linked to the host by a veth pair of its own: somewhere
/// for containers to reach beyond the bridge without leaving the machine.
struct Outside {
    network: Container,
    host_interface: String,
    host_address: Ipv4Addr,
    address: Ipv4Addr,
}

impl Outside {
    fn start() -> Outside {
        let network = Container::start("outside");
        let pid = std::process::id();
        let host_interface = format!("wx{pid:x}");
        // A /30 in 198.18.0.0/15, the range set aside for benchmarks, picked by process.
        let base = u32::from(Ipv4Addr::new(198, 18, 0, 0)) + (pid % 32768) * 4;
        let host_address = Ipv4Addr::from(base + 1);
        let address = Ipv4Addr::from(base + 2);
        let outside = Outside {
            network,
            host_interface,
            host_address,
            address,
        };
        run_ip(&format!(
            "link add {} type veth peer name eth0 netns {}",
            outside.host_interface,
            outside.network.pid()
        ));
        run_ip(&format!(
            "addr add {host_address}/30 dev {}",
            outside.host_interface
        ));
        run_ip(&format!("link set {} up", outside.host_interface));
        in_namespace(outside.network.pid(), || {
            run_ip(&format!("addr add {address}/30 dev eth0"));
            run_ip("link set eth0 up");
        });
        outside
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_interface])
            .stderr(Stdio::null())
            .status();
    }
}

/// Deletes a link the test made on the host, even when the test fails.
struct LinkGuard(String);

impl Drop for LinkGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.0])
            .stderr(Stdio::null())
            .status();
    }
}

/// `ip ARGUMENTS`, which must succeed; in the namespace of the calling thread.
fn run_ip(arguments: &str) {
    let status = Command::new("ip")
        .args(arguments.split(' '))
        .status()
        .expect("run ip");
    assert!(status.success(), "ip {arguments}: {status}");
}

fn restore(script: &str) {
    let mut child = Command::new("iptables-restore")
        .args(["-w", "--noflush"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("run iptables-restore");
    child
        .stdin
        .take()
        .expect("iptables-restore's stdin")
        .write_all(script.as_bytes())
        .expect("write to iptables-restore");
    let status = child.wait().expect("wait for iptables-restore");
    assert!(status.success(), "iptables-restore: {status}");
}

/// The `-A` lines of `iptables -S CHAIN`.
fn added_rules(table: &str, chain: &str) -> Vec<String> {
    iptables_lines(table, chain)
        .into_iter()
        .filter(|line| line.starts_with("-A "))
        .collect()
}

/// The packets each rule of `chain` has matched, in order.
fn packet_counts(table: &str, chain: &str) -> Vec<u64> {
    let output = Command::new("iptables")
        .args(["-w", "-t", table, "-L", chain, "-v", "-x", "-n"])
        .output()
        .expect("run iptables -L");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .skip(2)
        .filter_map(|line| line.split_whitespace().next()?.parse().ok())
        .collect()
}

/// Records `address` as the allocation of `container_id` in the shared data directory.
fn set_allocation(container_id: &str, address: Ipv4Addr) {
    let path = state_dir().join("allocations.json");
    let mut allocations: serde_json::Map<String, serde_json::Value> =
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).expect("parse allocations.json"),
            Err(_) => serde_json::Map::new(),
        };
    allocations.insert(
        container_id.to_string(),
        serde_json::Value::from(address.to_string()),
    );
    std::fs::write(&path, serde_json::to_vec(&allocations).expect("serialise"))
        .expect("write allocations.json");
}

/// A data directory of its own holding `allocations`.
fn isolated_state_dir(
    allocations: &serde_json::Map<String, serde_json::Value>,
) -> tempfile::TempDir {
    let directory = tempfile::Builder::new()
        .prefix("network-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("create a data directory");
    std::fs::write(
        directory.path().join("allocations.json"),
        serde_json::to_vec(allocations).expect("serialise"),
    )
    .expect("write allocations.json");
    directory
}

/// Whether the host has the MAC of `address` behind `interface`.
fn knows_neighbour(interface: &str, address: Ipv4Addr) -> bool {
    let output = Command::new("ip")
        .args(["neigh", "show", &address.to_string(), "dev", interface])
        .output()
        .expect("run ip neigh show");
    String::from_utf8_lossy(&output.stdout).contains("lladdr")
}

/// The MAC address of the host's interface `name`.
fn mac_address(name: &str) -> [u8; 6] {
    let text = std::fs::read_to_string(format!("/sys/class/net/{name}/address"))
        .unwrap_or_else(|error| panic!("read the MAC address of {name}: {error}"));
    let bytes: Vec<u8> = text
        .trim()
        .split(':')
        .map(|byte| u8::from_str_radix(byte, 16).expect("a hex byte"))
        .collect();
    bytes.try_into().expect("six bytes")
}

/// The IPv6 link-local address the kernel makes from `mac` (EUI-64).
fn link_local_address(mac: [u8; 6]) -> Ipv6Addr {
    let [a, b, c, d, e, f] = mac;
    Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        a ^ 0x02,
        b,
        c,
        0xff,
        0xfe,
        d,
        e,
        f,
    ])
}

/// The index of the interface `name` in the calling thread's network namespace.
fn interface_index(name: &str) -> u32 {
    let name = std::ffi::CString::new(name).expect("an interface name without NUL");
    // SAFETY: `name` is a valid NUL-terminated string that outlives the call.
    unsafe { libc::if_nametoindex(name.as_ptr()) }
}

/// Whether a TCP connection to `address` succeeds within `limit`, trying again after refusals.
fn connects_within(address: SocketAddr, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        if TcpStream::connect_timeout(&address, left).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn bind_to_device(socket: &impl AsRawFd, device: &str) -> io::Result<()> {
    // SAFETY: the option value is `device.len()` readable bytes that outlive the call.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            device.as_ptr().cast(),
            device.len() as libc::socklen_t,
        )
    };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// ICMP redirects received in the network namespace of `pid`.
fn icmp_in_redirects(pid: u32) -> u64 {
    let snmp = std::fs::read_to_string(format!("/proc/{pid}/net/snmp")).expect("read snmp");
    let mut icmp = snmp.lines().filter(|line| line.starts_with("Icmp:"));
    let (Some(names), Some(values)) = (icmp.next(), icmp.next()) else {
        panic!("no Icmp lines in /proc/{pid}/net/snmp")
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find_map(|(name, value)| (name == "InRedirects").then(|| value.parse().ok())?)
        .expect("an InRedirects counter")
}

/// From the calling thread's network namespace, sends a TCP SYN for 127.0.0.1:`port` built by
/// hand as an Ethernet frame to `gateway_mac` out of `eth0`, as an attacker with `CAP_NET_RAW`
/// can, and returns the flags of the first segment that comes back from 127.0.0.1:`port`.
fn loopback_syn_answer(
    source: Ipv4Addr,
    gateway_mac: [u8; 6],
    port: u16,
) -> io::Result<Option<u8>> {
    const ETH_P_IP: u16 = libc::ETH_P_IP as u16;
    const SOURCE_PORT: u16 = 40_404;
    // SAFETY: a plain system call; the descriptor is owned below.
    let descriptor = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            i32::from(ETH_P_IP.to_be()),
        )
    };
    if descriptor < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `descriptor` is an open socket nothing else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(descriptor) };
    // SAFETY: sockaddr_ll is plain data.
    let mut link: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    link.sll_family = libc::AF_PACKET as u16;
    link.sll_protocol = ETH_P_IP.to_be();
    link.sll_ifindex = interface_index("eth0") as i32;
    let mut length = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: `link` is a sockaddr_ll of `length` bytes that outlives both calls.
    let bound = unsafe {
        libc::bind(socket.as_raw_fd(), (&raw const link).cast(), length) == 0
            && libc::getsockname(socket.as_raw_fd(), (&raw mut link).cast(), &mut length) == 0
    };
    if !bound {
        return Err(io::Error::last_os_error());
    }
    let own_mac = &link.sll_addr[..6];
    let timeout = libc::timeval {
        tv_sec: 0,
        tv_usec: 100_000,
    };
    // SAFETY: `timeout` is a timeval that outlives the call.
    if unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const timeout).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    } != 0
    {
        return Err(io::Error::last_os_error());
    }

    let loopback = Ipv4Addr::LOCALHOST.octets();
    let mut tcp = Vec::with_capacity(20);
    tcp.extend_from_slice(&SOURCE_PORT.to_be_bytes());
    tcp.extend_from_slice(&port.to_be_bytes());
    tcp.extend_from_slice(&1u32.to_be_bytes()); // sequence number
    tcp.extend_from_slice(&0u32.to_be_bytes()); // acknowledgement number
    tcp.extend_from_slice(&[5 << 4, 0x02]); // header length in words, SYN
    tcp.extend_from_slice(&64_240u16.to_be_bytes()); // window
    tcp.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
    let mut pseudo_header = Vec::with_capacity(12);
    pseudo_header.extend_from_slice(&source.octets());
    pseudo_header.extend_from_slice(&loopback);
    pseudo_header.extend_from_slice(&[0, 6, 0, 20]); // zero, TCP, TCP length
    let checksum = internet_checksum(&[&pseudo_header, &tcp]);
    tcp[16..18].copy_from_slice(&checksum.to_be_bytes());
    let mut ip = vec![0x45, 0, 0, 40, 0, 1, 0x40, 0, 64, 6, 0, 0];
    ip.extend_from_slice(&source.octets());
    ip.extend_from_slice(&loopback);
    let checksum = internet_checksum(&[&ip]);
    ip[10..12].copy_from_slice(&checksum.to_be_bytes());
    let mut frame = Vec::with_capacity(54);
    frame.extend_from_slice(&gateway_mac);
    frame.extend_from_slice(own_mac);
    frame.extend_from_slice(&ETH_P_IP.to_be_bytes());
    frame.extend_from_slice(&ip);
    frame.extend_from_slice(&tcp);

    let deadline = Instant::now() + REFUSED_WITHIN;
    let mut next_send = Instant::now();
    let mut buffer = [0u8; 2048];
    while Instant::now() < deadline {
        if Instant::now() >= next_send {
            // SAFETY: `frame` is readable for its length during the call.
            if unsafe { libc::send(socket.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) } < 0
            {
                return Err(io::Error::last_os_error());
            }
            next_send = Instant::now() + Duration::from_millis(250);
        }
        // SAFETY: `buffer` is writable for its length during the call.
        let received = unsafe {
            libc::recv(
                socket.as_raw_fd(),
                buffer.as_mut_ptr().cast(),
                buffer.len(),
                0,
            )
        };
        let Ok(received) = usize::try_from(received) else {
            continue;
        };
        let frame = &buffer[..received];
        if frame.len() < 14 + 20 + 20 || frame[12..14] != ETH_P_IP.to_be_bytes() {
            continue;
        }
        let ip = &frame[14..];
        let header_length = usize::from(ip[0] & 0x0f) * 4;
        if ip[9] != 6 || ip[12..16] != loopback || ip.len() < header_length + 20 {
            continue;
        }
        let tcp = &ip[header_length..];
        if tcp[0..2] == port.to_be_bytes() && tcp[2..4] == SOURCE_PORT.to_be_bytes() {
            return Ok(Some(tcp[13]));
        }
    }
    Ok(None)
}

/// The ones' complement of the ones' complement sum of `parts`, each of an even length.
fn internet_checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = parts
        .iter()
        .flat_map(|part| part.chunks(2))
        .map(|pair| {
            u32::from(u16::from_be_bytes([
                pair[0],
                pair.get(1).copied().unwrap_or(0),
            ]))
        })
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}
