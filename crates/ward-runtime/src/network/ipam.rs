//! Address allocation on 10.88.0.0/16: `DATA/network/allocations.json` maps container ids to
//! addresses; the lowest free address is handed out, so freed ones are reused first.
//!
//! Callers hold the network lock; the file is replaced atomically so a crash never leaves it torn.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::Path;

use super::{NetworkError, GATEWAY_ADDRESS, SUBNET_ADDRESS, SUBNET_PREFIX_LENGTH};

type Allocations = BTreeMap<String, Ipv4Addr>;

/// The address of `container_id`: the one it already has, or the lowest free one.
pub(super) fn allocate(path: &Path, container_id: &str) -> Result<Ipv4Addr, NetworkError> {
    let mut allocations = load(path)?;
    if let Some(address) = allocations.get(container_id) {
        return Ok(*address);
    }
    let taken: BTreeSet<u32> = allocations
        .values()
        .map(|address| u32::from(*address))
        .collect();
    let network = u32::from(SUBNET_ADDRESS);
    let broadcast = network | (u32::MAX >> SUBNET_PREFIX_LENGTH);
    let address = (network + 1..broadcast)
        .filter(|candidate| *candidate != u32::from(GATEWAY_ADDRESS))
        .find(|candidate| !taken.contains(candidate))
        .map(Ipv4Addr::from)
        .ok_or_else(|| NetworkError::AddressesExhausted {
            container_id: container_id.to_string(),
        })?;
    allocations.insert(container_id.to_string(), address);
    store(path, &allocations)?;
    Ok(address)
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
