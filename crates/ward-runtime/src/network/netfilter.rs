//! Published ports, masquerading and the isolation of containers as iptables rules in Ward's own
//! chains, read with `iptables-save` and changed in one atomic `iptables-restore --noflush` batch.
//!
//! Containers are behind `wv+`, the host's ends of their links, or behind `ward0` for those an
//! older Ward attached to the bridge; every rule about containers is written for both.
//!
//! nat `WARD` (jumped to from PREROUTING and OUTPUT for local destinations) holds one DNAT rule
//! per published port, commented `ward:<container id>`; nat `WARD-POSTROUTING` masquerades
//! loopback clients, container egress and container-to-published-port hairpins.
//!
//! filter `WARD-FORWARD` (first in FORWARD) lets containers' traffic through when FORWARD's
//! policy is DROP, after `WARD-ISOLATION`, which drops what a container sends to another unless
//! it is DNATed (a published port, reached as any outside client would) or stays within one
//! project's /24 block (one rule per block ever given out, never removed). filter `WARD-INPUT`
//! (first in INPUT) drops whatever a container sends to the host itself but answers: above all
//! packets to 127.0.0.0/8, which `route_localnet` would otherwise let in (CVE-2020-8558).
//! Containers reach the host only through published ports, which are DNATed before INPUT.
//! raw `WARD-PREROUTING` (first in raw PREROUTING) drops packets for 127.0.0.0/8 that arrive on
//! any interface but `lo`, before NAT, so a port published on 127.0.0.1 answers the host alone.
//!
//! A chain of fixed rules is rewritten whenever it holds anything else, such as an older Ward's
//! rules. Nothing outside these chains is changed, other than the jumps into them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ward_spec::{PortMapping, Protocol};

use super::link::HOST_INTERFACE_PREFIX;
use super::{command, NetworkError, BRIDGE_NAME, SUBNET_ADDRESS, SUBNET_PREFIX_LENGTH};

const PORTS_CHAIN: &str = "WARD";
/// raw: drops packets for 127.0.0.0/8 that arrive on any interface but `lo`.
const RAW_PREROUTING_CHAIN: &str = "WARD-PREROUTING";
const POSTROUTING_CHAIN: &str = "WARD-POSTROUTING";
const FORWARD_CHAIN: &str = "WARD-FORWARD";
const ISOLATION_CHAIN: &str = "WARD-ISOLATION";
const INPUT_CHAIN: &str = "WARD-INPUT";
const COMMENT_PREFIX: &str = "ward:";

/// The rules of the tables `iptables-save` printed.
pub(super) struct SavedRules {
    tables: BTreeMap<String, Table>,
}

#[derive(Default)]
struct Table {
    chains: BTreeSet<String>,
    rules: Vec<Rule>,
}

/// One `-A CHAIN SPEC` line.
struct Rule {
    chain: String,
    spec: String,
}

/// The lines of one table in a restore batch.
#[derive(Default)]
struct TableChanges {
    declarations: Vec<String>,
    rules: Vec<String>,
}

impl SavedRules {
    /// Every table; what attaching needs to see whether the chains and jumps are in place.
    pub(super) fn read_all() -> Result<SavedRules, NetworkError> {
        command::run("iptables-save", &[]).map(|saved| SavedRules::parse(&saved))
    }

    /// The nat table, where the published ports are.
    pub(super) fn read_nat() -> Result<SavedRules, NetworkError> {
        command::run("iptables-save", &["-t", "nat"]).map(|saved| SavedRules::parse(&saved))
    }

    fn parse(saved: &str) -> SavedRules {
        let mut tables = BTreeMap::new();
        let mut current: Option<&mut Table> = None;
        for line in saved.lines() {
            if let Some(name) = line.strip_prefix('*') {
                current = Some(tables.entry(name.to_string()).or_default());
            } else if let (Some(chain), Some(table)) =
                (line.strip_prefix(':'), current.as_deref_mut())
            {
                table
                    .chains
                    .extend(chain.split_whitespace().next().map(str::to_string));
            } else if let (Some(rule), Some(table)) =
                (line.strip_prefix("-A "), current.as_deref_mut())
            {
                if let Some((chain, spec)) = rule.split_once(' ') {
                    table.rules.push(Rule {
                        chain: chain.to_string(),
                        spec: spec.to_string(),
                    });
                }
            }
        }
        SavedRules { tables }
    }

    /// A port of `ports` that another container already publishes, with that container's id.
    pub(super) fn first_conflict(
        &self,
        container_id: &str,
        ports: &[PortMapping],
    ) -> Option<(PortMapping, String)> {
        self.published().find_map(|(owner, protocol, host_port)| {
            let port = ports
                .iter()
                .find(|port| port.host == host_port && port.protocol.as_str() == protocol)?;
            (owner != container_id).then(|| (*port, owner.to_string()))
        })
    }

    /// Whether some container publishes `port`/`protocol`.
    pub(super) fn publishes(&self, port: u16, protocol: Protocol) -> bool {
        self.published().any(|(_, published_protocol, host_port)| {
            host_port == port && published_protocol == protocol.as_str()
        })
    }

    /// (container id, protocol, host port) of every published port.
    fn published(&self) -> impl Iterator<Item = (&str, &str, u16)> {
        self.rules("nat", PORTS_CHAIN).filter_map(|rule| {
            let port = rule.value_of("--dport")?.parse().ok()?;
            Some((rule.owner()?, rule.value_of("-p")?, port))
        })
    }

    /// Whether `WARD-ISOLATION` exists: when it does not, Ward's rules on this host are missing
    /// or an older Ward's.
    pub(super) fn isolates_projects(&self) -> bool {
        self.has_chain("filter", ISOLATION_CHAIN)
    }

    /// The batch that sets up Ward's chains where they are missing or out of date, lets each
    /// block of `project_blocks` talk within itself, and replaces the published ports of
    /// `container_id` with `ports`, forwarded to `address`; `None` when there is nothing to change.
    pub(super) fn attach_script(
        &self,
        container_id: &str,
        address: Ipv4Addr,
        ports: &[PortMapping],
        project_blocks: &BTreeSet<u8>,
    ) -> Option<String> {
        let subnet = format!("{SUBNET_ADDRESS}/{SUBNET_PREFIX_LENGTH}");
        let containers = container_interfaces();
        // Rules of fixed chains are written as `iptables-save` prints them, so that an
        // up-to-date chain compares equal and is left alone.
        let mut nat = TableChanges::default();
        self.ensure_chain_exists(&mut nat, "nat", PORTS_CHAIN);
        let mut postrouting = Vec::new();
        for interface in &containers {
            postrouting.extend([
                // Clients on the host's loopback: 127.0.0.1 must not reach a container.
                format!("-s 127.0.0.0/8 -o {interface} -j MASQUERADE"),
                // A container reaching a published port that leads to a container: the answer
                // must come back through the host.
                format!("-s {subnet} -o {interface} -m conntrack --ctstate DNAT -j MASQUERADE"),
                format!("-o {interface} -j RETURN"),
            ]);
        }
        // Containers reaching anything else.
        postrouting.push(format!("-s {subnet} -j MASQUERADE"));
        self.ensure_chain(&mut nat, "nat", POSTROUTING_CHAIN, &postrouting);
        self.ensure_jump(
            &mut nat,
            "nat",
            "PREROUTING",
            &format!("-A PREROUTING -m addrtype --dst-type LOCAL -j {PORTS_CHAIN}"),
        );
        self.ensure_jump(
            &mut nat,
            "nat",
            "OUTPUT",
            &format!("-A OUTPUT -m addrtype --dst-type LOCAL -j {PORTS_CHAIN}"),
        );
        self.ensure_jump(
            &mut nat,
            "nat",
            "POSTROUTING",
            &format!("-A POSTROUTING -j {POSTROUTING_CHAIN}"),
        );
        nat.rules
            .extend(self.removals(|owner| owner == container_id));
        nat.rules.extend(ports.iter().map(|port| {
            let protocol = port.protocol.as_str();
            // Published on one host address only (`127.0.0.1:8080:80`), or on all of them.
            let destination = port
                .host_ip
                .map(|host_ip| format!("-d {host_ip}/32 "))
                .unwrap_or_default();
            format!(
                "-A {PORTS_CHAIN} {destination}-p {protocol} -m comment --comment {COMMENT_PREFIX}{container_id} -m {protocol} --dport {} -j DNAT --to-destination {address}:{}",
                port.host, port.port
            )
        }));

        let mut filter = TableChanges::default();
        self.ensure_isolation_chain(&mut filter, project_blocks);
        let mut forward: Vec<String> = containers
            .iter()
            .map(|interface| format!("-i {interface} -j {ISOLATION_CHAIN}"))
            .collect();
        forward.extend(
            containers
                .iter()
                .map(|interface| format!("-i {interface} -j ACCEPT")),
        );
        forward.extend(containers.iter().map(|interface| {
            format!("-o {interface} -m conntrack --ctstate RELATED,ESTABLISHED,DNAT -j ACCEPT")
        }));
        self.ensure_chain(&mut filter, "filter", FORWARD_CHAIN, &forward);
        let input: Vec<String> = containers
            .iter()
            .flat_map(|interface| {
                [
                    // Packets for the host's loopback that no published port DNATed (the rule
                    // Kubernetes added against CVE-2020-8558).
                    format!("-d 127.0.0.0/8 -i {interface} -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP"),
                    // Answers to the host's own connections: published ports on loopback, probes.
                    format!("-i {interface} -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN"),
                    format!("-i {interface} -j DROP"),
                ]
            })
            .collect();
        self.ensure_chain(&mut filter, "filter", INPUT_CHAIN, &input);
        // First, so that an ACCEPT or DROP earlier in these chains (Docker's, a firewall's)
        // cannot shadow them.
        for (builtin, chain) in [("FORWARD", FORWARD_CHAIN), ("INPUT", INPUT_CHAIN)] {
            self.ensure_jump(
                &mut filter,
                "filter",
                builtin,
                &format!("-I {builtin} 1 -j {chain}"),
            );
        }

        // Before conntrack and NAT: nothing for the host's loopback comes in on another
        // interface, not from a container and not from a neighbour on the LAN, whose packets
        // to 127.0.0.1 would otherwise meet the DNAT of a port published on 127.0.0.1.
        let mut raw = TableChanges::default();
        self.ensure_chain(
            &mut raw,
            "raw",
            RAW_PREROUTING_CHAIN,
            &["-d 127.0.0.0/8 ! -i lo -j DROP".to_string()],
        );
        self.ensure_jump(
            &mut raw,
            "raw",
            "PREROUTING",
            &format!("-I PREROUTING 1 -j {RAW_PREROUTING_CHAIN}"),
        );

        restore_script(&[("raw", raw), ("nat", nat), ("filter", filter)])
    }

    /// The batch that deletes the published ports of the containers `select` accepts; `None`
    /// when they have none.
    pub(super) fn removal_script(&self, select: impl Fn(&str) -> bool) -> Option<String> {
        let nat = TableChanges {
            declarations: Vec::new(),
            rules: self.removals(select),
        };
        restore_script(&[("nat", nat)])
    }

    fn removals(&self, select: impl Fn(&str) -> bool) -> Vec<String> {
        self.rules("nat", PORTS_CHAIN)
            .filter(|rule| rule.owner().is_some_and(&select))
            .map(|rule| format!("-D {} {}", rule.chain, rule.spec))
            .collect()
    }

    /// Declares `chain` when it is missing, leaving its rules alone.
    fn ensure_chain_exists(&self, changes: &mut TableChanges, table: &str, chain: &str) {
        if !self.has_chain(table, chain) {
            changes.declarations.push(format!(":{chain} - [0:0]"));
        }
    }

    /// Makes `chain` hold exactly `rules`, in order. A chain that holds anything else (nothing,
    /// an older Ward's rules) is declared again, which in a `--noflush` restore empties it, and
    /// filled in the same batch.
    fn ensure_chain(&self, changes: &mut TableChanges, table: &str, chain: &str, rules: &[String]) {
        let current: Vec<&str> = self.rules(table, chain).map(Rule::spec).collect();
        if self.has_chain(table, chain) && current == rules {
            return;
        }
        changes.declarations.push(format!(":{chain} - [0:0]"));
        changes
            .rules
            .extend(rules.iter().map(|rule| format!("-A {chain} {rule}")));
    }

    /// Makes `WARD-ISOLATION`, which sees only what containers send, let DNATed traffic
    /// through, then traffic within each block it already lets through and each of
    /// `project_blocks`, and drop the rest bound for containers. A chain in any other shape is
    /// rewritten, keeping its block rules.
    fn ensure_isolation_chain(&self, changes: &mut TableChanges, project_blocks: &BTreeSet<u8>) {
        let published = "-m conntrack --ctstate DNAT -j RETURN".to_string();
        let rest: Vec<String> = container_interfaces()
            .iter()
            .map(|interface| format!("-o {interface} -j DROP"))
            .collect();
        let current: Vec<&str> = self
            .rules("filter", ISOLATION_CHAIN)
            .map(Rule::spec)
            .collect();
        let allowed: BTreeSet<u8> = current
            .iter()
            .filter_map(|spec| block_of_rule(spec))
            .collect();
        let well_formed = current.len() == 1 + allowed.len() + rest.len()
            && current.first() == Some(&published.as_str())
            && current[current.len() - rest.len()..] == rest;
        if well_formed {
            changes.rules.extend(
                project_blocks
                    .difference(&allowed)
                    .map(|block| format!("-I {ISOLATION_CHAIN} 2 {}", block_rule(*block))),
            );
            return;
        }
        changes
            .declarations
            .push(format!(":{ISOLATION_CHAIN} - [0:0]"));
        let rules = std::iter::once(published)
            .chain(
                allowed
                    .union(project_blocks)
                    .map(|block| block_rule(*block)),
            )
            .chain(rest);
        changes
            .rules
            .extend(rules.map(|rule| format!("-A {ISOLATION_CHAIN} {rule}")));
    }

    fn has_chain(&self, table: &str, chain: &str) -> bool {
        self.tables
            .get(table)
            .is_some_and(|saved| saved.chains.contains(chain))
    }

    /// Adds `line`, a rule in the built-in `chain` jumping to one of Ward's chains, unless
    /// `chain` already jumps there.
    fn ensure_jump(&self, changes: &mut TableChanges, table: &str, chain: &str, line: &str) {
        let target = line.rsplit(' ').next().unwrap_or_default();
        if !self
            .rules(table, chain)
            .any(|rule| rule.value_of("-j") == Some(target))
        {
            changes.rules.push(line.to_string());
        }
    }

    fn rules<'a>(&'a self, table: &str, chain: &'a str) -> impl Iterator<Item = &'a Rule> {
        self.tables
            .get(table)
            .into_iter()
            .flat_map(|saved| saved.rules.iter())
            .filter(move |rule| rule.chain == chain)
    }
}

impl Rule {
    fn spec(&self) -> &str {
        &self.spec
    }

    /// The word after `flag`, unquoted. Ward's own rules have no spaces inside their values.
    fn value_of(&self, flag: &str) -> Option<&str> {
        let mut words = self.spec.split_whitespace();
        words.find(|word| *word == flag)?;
        words.next().map(|value| value.trim_matches('"'))
    }

    /// The container a rule belongs to, from its `ward:<container id>` comment.
    fn owner(&self) -> Option<&str> {
        self.value_of("--comment")?.strip_prefix(COMMENT_PREFIX)
    }
}

/// The interfaces containers are behind, as iptables matches them: the host's ends of their
/// links, and `ward0` for those an older Ward attached to it.
fn container_interfaces() -> [String; 2] {
    [format!("{HOST_INTERFACE_PREFIX}+"), BRIDGE_NAME.to_string()]
}

/// The rule of `WARD-ISOLATION` that lets traffic within block 10.88.`block`.0/24 through.
fn block_rule(block: u8) -> String {
    let [first, second, ..] = SUBNET_ADDRESS.octets();
    let network = format!("{first}.{second}.{block}.0/24");
    let links = format!("{HOST_INTERFACE_PREFIX}+");
    format!("-s {network} -d {network} -i {links} -o {links} -j RETURN")
}

/// The block whose [`block_rule`] `spec` is.
fn block_of_rule(spec: &str) -> Option<u8> {
    let source = spec.strip_prefix("-s ")?.split(' ').next()?;
    let block = source
        .strip_suffix(".0/24")?
        .rsplit('.')
        .next()?
        .parse()
        .ok()?;
    (block_rule(block) == spec).then_some(block)
}

fn restore_script(tables: &[(&str, TableChanges)]) -> Option<String> {
    let mut script = String::new();
    for (name, changes) in tables {
        if changes.declarations.is_empty() && changes.rules.is_empty() {
            continue;
        }
        script.push_str(&format!("*{name}\n"));
        for line in changes.declarations.iter().chain(&changes.rules) {
            script.push_str(line);
            script.push('\n');
        }
        script.push_str("COMMIT\n");
    }
    (!script.is_empty()).then_some(script)
}

/// Applies a batch atomically, leaving every rule it does not name alone.
pub(super) fn apply(script: &str) -> Result<(), NetworkError> {
    command::run_with_input("iptables-restore", &["-w", "--noflush"], script).map(drop)
}
