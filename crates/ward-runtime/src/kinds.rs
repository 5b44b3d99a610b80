//! The kinds of workload this runtime has a driver for: what each honours of a spec (a spec is
//! checked against them when it is applied, so a kind without a driver, or a field no driver
//! honours, is refused by name instead of failing at every start), and how each prepares an
//! instance's root and process, which `Runtime::prepare` takes from here by kind.

use std::path::Path;

use ward_spec::{WorkloadKind, WorkloadSpec};

use crate::runtime::{self, KindRoot, RootRequest, Runtime};
use crate::{RuntimeError, Unsupported};

/// Prepares the root and the process of an instance of one kind.
pub(crate) type PrepareRoot =
    for<'a, 'b> fn(&Runtime, RootRequest<'a, 'b>) -> Result<KindRoot<'a>, RuntimeError>;

/// What one kind's driver honours, and how it prepares an instance.
pub(crate) struct KindDriver {
    kind: WorkloadKind,
    /// Whether its instances run from an OCI image, which a start pulls and unpacks first.
    pub(crate) from_image: bool,
    pub(crate) prepare_root: PrepareRoot,
    /// What a workload of this kind runs from, in words.
    runs: &'static str,
    /// Whether `resources.disk` (a VM's disk) means anything to it.
    has_disk: bool,
}

/// The drivers of this host, by kind. Process and container workloads run through the OCI
/// runtime; VMs and WASM modules have no driver yet.
const DRIVERS: &[KindDriver] = &[
    KindDriver {
        kind: WorkloadKind::Process,
        from_image: false,
        prepare_root: runtime::process_root,
        runs: "a host program",
        has_disk: false,
    },
    KindDriver {
        kind: WorkloadKind::Container,
        from_image: true,
        prepare_root: runtime::container_root,
        runs: "an image's root filesystem",
        has_disk: false,
    },
];

/// The driver of `kind` on this host, if it has one.
pub(crate) fn driver(kind: WorkloadKind) -> Option<&'static KindDriver> {
    DRIVERS.iter().find(|driver| driver.kind == kind)
}

/// Refuses what no driver here would run as the spec says.
pub(crate) fn check(spec: &WorkloadSpec) -> Result<(), Unsupported> {
    let unsupported = |field: &str, reason: String| {
        Err(Unsupported {
            field: field.to_string(),
            reason,
        })
    };
    let Some(driver) = driver(spec.kind) else {
        let kinds: Vec<&str> = DRIVERS.iter().map(|driver| driver.kind.as_str()).collect();
        return unsupported(
            "kind",
            format!(
                "this host has no driver for {} workloads; it runs {}",
                spec.kind.as_str(),
                kinds.join(" and ")
            ),
        );
    };
    if let Some(disk) = spec.resources.disk.filter(|_| !driver.has_disk) {
        return unsupported(
            "resources.disk",
            format!(
                "{disk} bytes: the size of a VM's disk; a {} workload runs {} and has none to size: leave it out",
                spec.kind.as_str(),
                driver.runs
            ),
        );
    }
    if let Some(gpus) = spec.resources.gpu.filter(|gpus| *gpus > 0) {
        let reason = if host_has_gpu() {
            format!("{gpus}: Ward does not pass GPUs to workloads yet; set 0 or leave it out")
        } else {
            format!("{gpus}: this host has no GPU (no /dev/nvidia0 or /dev/dri render node); set 0 or leave it out")
        };
        return unsupported("resources.gpu", reason);
    }
    if spec.entrypoint.is_some() && spec.kind != WorkloadKind::Container {
        return unsupported(
            "entrypoint",
            format!(
                "only a container has an image entrypoint to replace; give a {} its program in command",
                spec.kind.as_str()
            ),
        );
    }
    if spec.tty && !matches!(spec.kind, WorkloadKind::Process | WorkloadKind::Container) {
        return unsupported(
            "tty",
            format!("a {} has no terminal to attach to yet", spec.kind.as_str()),
        );
    }
    // A process's program is on the host and checked here; a container's is in its image,
    // which the start resolves.
    if spec.kind == WorkloadKind::Process {
        let program = spec.command.as_ref().and_then(|command| command.first());
        if let Some(program) =
            program.filter(|program| !program_exists(program, spec.env.get("PATH")))
        {
            let where_looked = if program.contains('/') {
                String::new()
            } else {
                " (looked in the PATH directories)".to_string()
            };
            return unsupported(
                "command",
                format!(
                    "no program {program} on this host{where_looked}: install it, or give its full path"
                ),
            );
        }
    }
    Ok(())
}

/// The `PATH` a process workload gets when its spec sets none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Whether `program` names an executable file on the host: an absolute path as it is, a bare
/// name in a directory of `path` (the spec's `PATH`, else the default).
fn program_exists(program: &str, path: Option<&String>) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let executable = |file: &Path| {
        std::fs::metadata(file)
            .is_ok_and(|metadata| metadata.is_file() && metadata.permissions().mode() & 0o111 != 0)
    };
    if program.starts_with('/') {
        return executable(Path::new(program));
    }
    if program.contains('/') {
        // Relative to the workload's working directory, which only its start resolves.
        return true;
    }
    path.map_or(DEFAULT_PATH, String::as_str)
        .split(':')
        .filter(|directory| directory.starts_with('/'))
        .any(|directory| executable(&Path::new(directory).join(program)))
}

/// Whether the host has a GPU a driver could hand to a workload.
fn host_has_gpu() -> bool {
    Path::new("/dev/nvidia0").exists()
        || std::fs::read_dir("/dev/dri").is_ok_and(|entries| {
            entries
                .flatten()
                .any(|entry| entry.file_name().to_string_lossy().starts_with("renderD"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> WorkloadSpec {
        ward_spec::parse_documents(yaml)
            .expect("a valid spec")
            .remove(0)
    }

    #[test]
    fn kinds_without_a_driver_and_fields_no_driver_honours_are_named() {
        let refused = |yaml: &str| check(&spec(yaml)).expect_err(yaml).field;
        assert_eq!(refused("name: v\nkind: vm\nimage: disk.qcow2\n"), "kind");
        assert_eq!(refused("name: w\nkind: wasm\nimage: app.wasm\n"), "kind");
        assert_eq!(
            refused("name: p\ncommand: [true]\nresources: {disk: 1GiB}\n"),
            "resources.disk"
        );
        assert_eq!(
            refused("name: p\ncommand: [true]\nresources: {gpu: 1}\n"),
            "resources.gpu"
        );
        check(&spec(
            "name: p\ncommand: [true]\nresources: {gpu: 0, memory: 64MiB}\n",
        ))
        .expect("a plain process");
        check(&spec("name: c\nimage: busybox\n")).expect("a plain container");
    }
}
