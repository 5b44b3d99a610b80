//! Published ports and masquerading as iptables rules in Ward's own chains, read with
//! `iptables-save` and changed in one atomic `iptables-restore --noflush` batch.
//!
//! nat `WARD` (jumped to from PREROUTING and OUTPUT for local destinations) holds one DNAT rule
//! per published port, commented `ward:<container id>`; nat `WARD-POSTROUTING` masquerades
//! loopback clients, container egress and container-to-published-port hairpins; filter
//! `WARD-FORWARD` (first in FORWARD) lets bridge traffic through when FORWARD's policy is DROP.
//! Nothing outside these chains is changed, other than the jumps into them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ward_spec::{PortMapping, Protocol};

use super::{command, NetworkError, BRIDGE_NAME, SUBNET_ADDRESS, SUBNET_PREFIX_LENGTH};

const PORTS_CHAIN: &str = "WARD";
const POSTROUTING_CHAIN: &str = "WARD-POSTROUTING";
const FORWARD_CHAIN: &str = "WARD-FORWARD";
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

    /// The batch that sets up Ward's chains where they are missing and replaces the published
    /// ports of `container_id` with `ports`, forwarded to `address`; `None` when there is nothing
    /// to change.
    pub(super) fn attach_script(
        &self,
        container_id: &str,
        address: Ipv4Addr,
        ports: &[PortMapping],
    ) -> Option<String> {
        let subnet = format!("{SUBNET_ADDRESS}/{SUBNET_PREFIX_LENGTH}");
        let mut nat = TableChanges::default();
        self.ensure_chain(&mut nat, "nat", PORTS_CHAIN, &[]);
        self.ensure_chain(
            &mut nat,
            "nat",
            POSTROUTING_CHAIN,
            &[
                // Clients on the host's loopback: 127.0.0.1 must not leave through the bridge.
                format!("-s 127.0.0.0/8 -o {BRIDGE_NAME} -j MASQUERADE"),
                // Containers reaching anything beyond the bridge.
                format!("-s {subnet} ! -o {BRIDGE_NAME} -j MASQUERADE"),
                // A container reaching a published port that leads back onto the bridge: the
                // answer must come back through the host, not straight from the other container.
                format!("-s {subnet} -o {BRIDGE_NAME} -m conntrack --ctstate DNAT -j MASQUERADE"),
            ],
        );
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
            format!(
                "-A {PORTS_CHAIN} -p {protocol} -m comment --comment {COMMENT_PREFIX}{container_id} -m {protocol} --dport {} -j DNAT --to-destination {address}:{}",
                port.host, port.port
            )
        }));

        let mut filter = TableChanges::default();
        self.ensure_chain(
            &mut filter,
            "filter",
            FORWARD_CHAIN,
            &[
                format!("-i {BRIDGE_NAME} -j ACCEPT"),
                format!(
                    "-o {BRIDGE_NAME} -m conntrack --ctstate RELATED,ESTABLISHED,DNAT -j ACCEPT"
                ),
            ],
        );
        // First, so that a DROP earlier in FORWARD (Docker's, a firewall's) cannot shadow it.
        self.ensure_jump(
            &mut filter,
            "filter",
            "FORWARD",
            &format!("-I FORWARD 1 -j {FORWARD_CHAIN}"),
        );

        restore_script(&[("nat", nat), ("filter", filter)])
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

    /// Declares `chain` and fills it with `rules` when it is missing or has been flushed.
    fn ensure_chain(&self, changes: &mut TableChanges, table: &str, chain: &str, rules: &[String]) {
        let exists = self
            .tables
            .get(table)
            .is_some_and(|saved| saved.chains.contains(chain));
        if !exists {
            changes.declarations.push(format!(":{chain} - [0:0]"));
        }
        if !exists || self.rules(table, chain).next().is_none() {
            changes
                .rules
                .extend(rules.iter().map(|rule| format!("-A {chain} {rule}")));
        }
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
