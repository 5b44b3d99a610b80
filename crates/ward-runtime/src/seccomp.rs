//! The default seccomp profile of sandboxed workloads.
//!
//! Docker's default profile is an allowlist: about 350 named syscalls are allowed and the rest
//! fail with EPERM. Ward uses the inverse: everything is allowed except the syscalls Docker's
//! profile denies to a container without extra capabilities. The two differ only for syscalls
//! that are neither in Docker's list nor dangerous (new, harmless syscalls work here and fail
//! under Docker), and a denylist keeps working on kernels and libseccomp versions that know
//! syscalls Ward has never heard of. Most of the denied calls would already fail for lack of
//! capabilities; the filter is the second wall, and it also closes the calls that need no
//! capability at all: user namespaces (`unshare`, `clone` with `CLONE_NEW*`), `userfaultfd`,
//! `bpf`, `perf_event_open`, `keyctl` and `process_vm_*`.
//!
//! `ptrace` stays allowed, as in Docker on kernels since 4.8: it reaches only processes of the
//! same sandbox, and debuggers need it.
//!
//! `clone3` passes its flags in memory, where seccomp cannot look, so it fails with ENOSYS (as
//! in Docker) and the C library falls back to `clone`, whose flags are checked.

use serde_json::{json, Value};

/// Syscalls that fail with EPERM.
const DENIED: &[&str] = &[
    // Mounting and changing the filesystem tree.
    "mount",
    "umount",
    "umount2",
    "pivot_root",
    "chroot",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    // Namespaces.
    "setns",
    "unshare",
    // Swap, reboot and kernel modules.
    "swapon",
    "swapoff",
    "reboot",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "create_module",
    "get_kernel_syms",
    "query_module",
    // Kernel introspection and tracing of other processes.
    "bpf",
    "perf_event_open",
    "lookup_dcookie",
    "syslog",
    "kcmp",
    "process_vm_readv",
    "process_vm_writev",
    "fanotify_init",
    "userfaultfd",
    // The kernel keyring, which is not namespaced.
    "keyctl",
    "add_key",
    "request_key",
    // The system clock.
    "settimeofday",
    "clock_settime",
    "clock_settime64",
    "clock_adjtime",
    "clock_adjtime64",
    "adjtimex",
    "stime",
    // Accounting, quotas and file handles (which bypass path permissions).
    "acct",
    "quotactl",
    "quotactl_fd",
    "open_by_handle_at",
    "name_to_handle_at",
    // Direct hardware access and obsolete interfaces.
    "iopl",
    "ioperm",
    "nfsservctl",
    "uselib",
    "vm86",
    "vm86old",
    "pciconfig_read",
    "pciconfig_write",
    "pciconfig_iobase",
    "_sysctl",
    "sysfs",
    "ustat",
];

/// `CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID
/// | CLONE_NEWNET`, each refused in `clone` (one rule per flag: rules for one syscall are ORed).
const NAMESPACE_FLAGS: [u64; 7] = [
    0x0002_0000,
    0x0200_0000,
    0x0400_0000,
    0x0800_0000,
    0x1000_0000,
    0x2000_0000,
    0x4000_0000,
];

/// `personality` flags that weaken the process's own hardening: `ADDR_NO_RANDOMIZE`,
/// `READ_IMPLIES_EXEC`, `MMAP_PAGE_ZERO`. The query value `0xffffffff` has every bit set, so
/// each rule also requires the upper 32 bits of the argument to be clear of its lower half's
/// pattern; see [`profile`].
const PERSONALITY_FLAGS: [u64; 3] = [0x0004_0000, 0x0040_0000, 0x0010_0000];

const EPERM: i64 = 1;
const ENOSYS: i64 = 38;

/// The OCI `linux.seccomp` object.
pub(crate) fn profile() -> Value {
    let mut syscalls = vec![
        json!({ "names": DENIED, "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM }),
        json!({ "names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS }),
    ];
    for flag in NAMESPACE_FLAGS {
        syscalls.push(json!({
            "names": ["clone"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": EPERM,
            "args": [{ "index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ" }],
        }));
    }
    // personality(2) takes an `unsigned long`; the query call passes 0xffffffff, which matches
    // every flag mask, so a rule matches only when the argument is not that exact value: the
    // mask covers the flag and bit 31, which no real persona sets, and expects the flag alone.
    for flag in PERSONALITY_FLAGS {
        let mask = flag | 0x8000_0000;
        syscalls.push(json!({
            "names": ["personality"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": EPERM,
            "args": [{ "index": 0, "value": mask, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ" }],
        }));
    }
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        // The native ABI only: a 32-bit syscall (int 0x80, x32) hits libseccomp's bad-arch
        // action and kills the caller, which closes the old trick of reaching a denied call
        // through another ABI, and compiles a third of the filter (≈0.7 ms per start).
        "architectures": [native_architecture()],
        "syscalls": syscalls,
    })
}

fn native_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "SCMP_ARCH_AARCH64",
        "riscv64" => "SCMP_ARCH_RISCV64",
        "s390x" => "SCMP_ARCH_S390X",
        "powerpc64" => "SCMP_ARCH_PPC64LE",
        _ => "SCMP_ARCH_X86_64",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denies_the_namespace_and_kernel_calls() {
        let profile = profile();
        assert_eq!(profile["defaultAction"], "SCMP_ACT_ALLOW");
        let denied = profile["syscalls"][0]["names"].as_array().expect("names");
        for name in [
            "mount",
            "unshare",
            "setns",
            "bpf",
            "keyctl",
            "kexec_load",
            "userfaultfd",
        ] {
            assert!(
                denied.iter().any(|denied| denied == name),
                "{name} is not denied"
            );
        }
        let user_namespace_rule = profile["syscalls"]
            .as_array()
            .expect("rules")
            .iter()
            .find(|rule| rule["names"][0] == "clone" && rule["args"][0]["value"] == 0x1000_0000)
            .expect("a clone rule for CLONE_NEWUSER");
        assert_eq!(user_namespace_rule["args"][0]["op"], "SCMP_CMP_MASKED_EQ");
    }
}
