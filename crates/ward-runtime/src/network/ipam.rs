//! Address allocation on 10.88.0.0/16, one /24 block per project: `DATA/network/allocations.json`
//! maps container ids to addresses, and a project's block is the one its containers' addresses
//! are in, so nothing but the addresses is stored.
//!
//! A project is its container ids without their last two dot-separated parts (workload and
//! replica): `ward-<daemon namespace>.<project>`, unique to one daemon's project on the host.
//! Its block is 10.88.B.0/24 with B from 1 to 255 (block 0 holds the gateway); a project without
//! addresses gets the lowest block no container uses, and within the block the lowest free address
//! is handed out, so freed ones are reused first. Addresses from before blocks (in block 0, or in a
//! block that several projects share) are never handed out again, and a container holding one gets
//! a new address when it attaches again.
//!
//! Callers hold the network lock; the file is replaced atomically so a crash never leaves it torn.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::Path;

use super::{NetworkError, SUBNET_ADDRESS};

type Allocations = BTreeMap<String, Ipv4Addr>;

/// The blocks projects may get: the third octet of 10.88.B.0/24.
const PROJECT_BLOCKS: std::ops::RangeInclusive<u8> = 1..=255;
/// The last octets of the addresses in a block: 10.88.B.1 to 10.88.B.254.
const BLOCK_HOSTS: std::ops::RangeInclusive<u8> = 1..=254;

/// An address handed out, and every block that now belongs to exactly one project.
pub(super) struct Allocation {
    pub(super) address: Ipv4Addr,
    pub(super) project_blocks: BTreeSet<u8>,
}

/// The project of `container_id`: the id without its workload and replica, or the whole id when
/// it has no such parts.
pub(super) fn project_of(container_id: &str) -> &str {
    let mut parts = container_id.rsplitn(3, '.');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(_replica), Some(_workload), Some(project)) => project,
        _ => container_id,
    }
}

/// The address of `container_id`: the one it already has in its project's block, or the lowest
/// free one there.
pub(super) fn allocate(path: &Path, container_id: &str) -> Result<Allocation, NetworkError> {
    let mut allocations = load(path)?;
    let project = project_of(container_id);
    let kept = allocations.get(container_id).copied().filter(|address| {
        block_of(*address)
            .is_some_and(|block| project_blocks(&allocations).get(&block) == Some(&project))
    });
    let address = match kept {
        Some(address) => address,
        None => {
            allocations.remove(container_id);
            let address = free_address(&allocations, container_id, project)?;
            allocations.insert(container_id.to_string(), address);
            store(path, &allocations)?;
            address
        }
    };
    Ok(Allocation {
        address,
        project_blocks: project_blocks(&allocations).into_keys().collect(),
    })
}

/// Forgets the address of `container_id`, if it has one.
pub(super) fn free(path: &Path, container_id: &str) -> Result<(), NetworkError> {
    retain(path, |other| other != container_id).map(drop)
}

/// Keeps the allocations of the containers `keep` accepts and returns the ids of the others.
pub(super) fn retain(
    path: &Path,
    keep: impl Fn(&str) -> bool,
) -> Result<Vec<String>, NetworkError> {
    let mut allocations = load(path)?;
    let removed: Vec<String> = allocations
        .keys()
        .filter(|container_id| !keep(container_id))
        .cloned()
        .collect();
    if !removed.is_empty() {
        allocations.retain(|container_id, _| keep(container_id));
        store(path, &allocations)?;
    }
    Ok(removed)
}

/// The lowest free address in the block of `project`, which is the lowest unused block when the
/// project has none yet.
fn free_address(
    allocations: &Allocations,
    container_id: &str,
    project: &str,
) -> Result<Ipv4Addr, NetworkError> {
    let used = blocks(allocations);
    let block = project_blocks(allocations)
        .into_iter()
        .find_map(|(block, owner)| (owner == project).then_some(block))
        .or_else(|| {
            let mut blocks = PROJECT_BLOCKS;
            blocks.find(|block| !used.contains_key(block))
        })
        .ok_or_else(|| NetworkError::ProjectsExhausted {
            container_id: container_id.to_string(),
            project: project.to_string(),
            limit: PROJECT_BLOCKS.len(),
        })?;
    let taken: BTreeSet<Ipv4Addr> = allocations.values().copied().collect();
    BLOCK_HOSTS
        .map(|host| address_in(block, host))
        .find(|candidate| !taken.contains(candidate))
        .ok_or_else(|| NetworkError::ProjectAddressesExhausted {
            container_id: container_id.to_string(),
            project: project.to_string(),
            limit: BLOCK_HOSTS.len(),
        })
}

/// The projects holding addresses in each block of 10.88.0.0/16.
fn blocks(allocations: &Allocations) -> BTreeMap<u8, BTreeSet<&str>> {
    let mut blocks: BTreeMap<u8, BTreeSet<&str>> = BTreeMap::new();
    for (container_id, address) in allocations {
        if let Some(block) = block_of(*address) {
            blocks
                .entry(block)
                .or_default()
                .insert(project_of(container_id));
        }
    }
    blocks
}

/// The blocks a project may be given that hold the addresses of that one project only, with it.
fn project_blocks(allocations: &Allocations) -> BTreeMap<u8, &str> {
    blocks(allocations)
        .into_iter()
        .filter(|(block, _)| PROJECT_BLOCKS.contains(block))
        .filter_map(|(block, owners)| {
            let mut owners = owners.into_iter();
            match (owners.next(), owners.next()) {
                (Some(owner), None) => Some((block, owner)),
                _ => None,
            }
        })
        .collect()
}

/// The third octet of `address` when it is in 10.88.0.0/16.
fn block_of(address: Ipv4Addr) -> Option<u8> {
    let [first, second, block, _] = address.octets();
    let [subnet_first, subnet_second, ..] = SUBNET_ADDRESS.octets();
    (first == subnet_first && second == subnet_second).then_some(block)
}

fn address_in(block: u8, host: u8) -> Ipv4Addr {
    let [first, second, ..] = SUBNET_ADDRESS.octets();
    Ipv4Addr::new(first, second, block, host)
}

fn load(path: &Path) -> Result<Allocations, NetworkError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).map_err(|source| NetworkError::CorruptAllocations {
                path: path.to_path_buf(),
                source,
            })
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(Allocations::new()),
        Err(source) => Err(NetworkError::Io {
            action: "read",
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn store(path: &Path, allocations: &Allocations) -> Result<(), NetworkError> {
    let temporary = path.with_extension("json.tmp");
    let write = || -> io::Result<()> {
        let mut file = File::create(&temporary)?;
        serde_json::to_writer_pretty(&mut file, allocations)?;
        file.write_all(b"\n")?;
        file.sync_all()
    };
    write().map_err(|source| NetworkError::Io {
        action: "write",
        path: temporary.clone(),
        source,
    })?;
    std::fs::rename(&temporary, path).map_err(|source| NetworkError::Io {
        action: "replace",
        path: path.to_path_buf(),
        source,
    })
}
