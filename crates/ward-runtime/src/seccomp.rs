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
//! in Docker) and the C library falls back to `clone`, whose flags are checked. io_uring
//! (`io_uring_setup`, `io_uring_enter`, `io_uring_register`) fails with ENOSYS too, as
//! Docker and containerd deny it: its requests bypass seccomp altogether, and it has been the
//! door of many kernel exploits. Programs fall back to ordinary calls when it is missing.
//!
//! The profile exists twice: as the OCI `linux.seccomp` object, which every runtime compiles
//! with libseccomp at each start, and, on x86_64, as a classic BPF program compiled here once
//! ([`compiled`]), which crun loads as it is from the `run.oci.seccomp_bpf_data` annotation
//! and so skips libseccomp (about 0.8 ms of each start). Both say the same thing; the tests
//! hold the program to it against the kernel.

use std::sync::OnceLock;

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompBuilder, LinuxSeccompOperator, LinuxSyscallBuilder,
};
use oci_spec::OciSpecError;

/// Syscalls that fail with ENOSYS: callers take them for absent and fall back.
const MISSING: &[&str] = &[
    "clone3",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
];

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

const EPERM: u32 = 1;
const ENOSYS: u32 = 38;

/// The OCI `linux.seccomp` object: [`DENIED`] fail with `EPERM`, [`MISSING`] with `ENOSYS`,
/// and `clone` and `personality` with the flags above with `EPERM`.
pub(crate) fn profile() -> Result<LinuxSeccomp, OciSpecError> {
    let refuse = |names: &[&str], errno: u32, args: Vec<LinuxSeccompArg>| {
        let mut rule = LinuxSyscallBuilder::default()
            .names(
                names
                    .iter()
                    .map(|name| name.to_string())
                    .collect::<Vec<_>>(),
            )
            .action(LinuxSeccompAction::ScmpActErrno)
            .errno_ret(errno);
        if !args.is_empty() {
            rule = rule.args(args);
        }
        rule.build()
    };
    let masked_first_argument = |mask: u64, value: u64| {
        LinuxSeccompArgBuilder::default()
            .index(0usize)
            .value(mask)
            .value_two(value)
            .op(LinuxSeccompOperator::ScmpCmpMaskedEq)
            .build()
    };
    let mut syscalls = vec![
        refuse(DENIED, EPERM, Vec::new())?,
        refuse(MISSING, ENOSYS, Vec::new())?,
    ];
    for flag in NAMESPACE_FLAGS {
        syscalls.push(refuse(
            &["clone"],
            EPERM,
            vec![masked_first_argument(flag, flag)?],
        )?);
    }
    // personality(2) takes an `unsigned long`; the query call passes 0xffffffff, which matches
    // every flag mask, so a rule matches only when the argument is not that exact value: the
    // mask covers the flag and bit 31, which no real persona sets, and expects the flag alone.
    for flag in PERSONALITY_FLAGS {
        syscalls.push(refuse(
            &["personality"],
            EPERM,
            vec![masked_first_argument(flag | 0x8000_0000, flag)?],
        )?);
    }
    LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActAllow)
        // The native ABI only: a 32-bit syscall (int 0x80, x32) hits libseccomp's bad-arch
        // action and kills the caller, which closes the old trick of reaching a denied call
        // through another ABI, and compiles a third of the filter (≈0.7 ms per start).
        .architectures(vec![native_architecture()])
        .syscalls(syscalls)
        .build()
}

/// The profile as a BPF program for `seccomp(SECCOMP_SET_MODE_FILTER)`, base64-encoded for
/// crun's `run.oci.seccomp_bpf_data` annotation; `None` where Ward has no syscall table for the
/// host's architecture (the OCI profile then does the work).
pub(crate) fn compiled() -> Option<&'static str> {
    static COMPILED: OnceLock<Option<String>> = OnceLock::new();
    COMPILED
        .get_or_init(|| native::TABLE.map(|table| base64_encode(&bpf::encode(&program(table)))))
        .as_deref()
}

/// The filter for one architecture: the same decisions as [`profile`], in this order.
fn program(table: &native::Table) -> Vec<bpf::Instruction> {
    use bpf::{Instruction as I, Target::*};

    let mut code = vec![
        // A syscall through another ABI kills the process (libseccomp's bad-arch action).
        I::load(bpf::ARCH_OFFSET),
        I::jump_eq(table.audit_arch, Next, Kill),
        I::load(bpf::NR_OFFSET),
    ];
    if let Some(bit) = table.foreign_abi_bit {
        // x32 syscalls carry the native audit arch and a number with this bit set.
        code.push(I::jump_ge(bit, Kill, Next));
    }
    for name in DENIED {
        if let Some(number) = table.number(name) {
            code.push(I::jump_eq(number, DenyEperm, Next));
        }
    }
    for name in MISSING {
        if let Some(number) = table.number(name) {
            code.push(I::jump_eq(number, DenyEnosys, Next));
        }
    }
    code.push(I::jump_eq(
        table.number("clone").expect("clone"),
        Label(CLONE),
        Next,
    ));
    code.push(I::jump_eq(
        table.number("personality").expect("personality"),
        Label(PERSONALITY),
        Next,
    ));
    code.push(I::ret(bpf::RET_ALLOW));

    // clone: any namespace flag in the low word of the first argument (the high word of every
    // mask is zero, so it never matters).
    code.push(I::label(CLONE));
    code.push(I::load(bpf::ARG0_LOW_OFFSET));
    let namespace_mask = NAMESPACE_FLAGS.iter().fold(0, |mask, flag| mask | flag);
    code.push(I::jump_set(low_word(namespace_mask), DenyEperm, Allow));

    // personality: each weakening flag on its own, with bit 31 clear (see `profile`).
    code.push(I::label(PERSONALITY));
    for flag in PERSONALITY_FLAGS {
        code.push(I::load(bpf::ARG0_LOW_OFFSET));
        code.push(I::and(low_word(flag | 0x8000_0000)));
        code.push(I::jump_eq(low_word(flag), DenyEperm, Next));
    }
    code.push(I::ret(bpf::RET_ALLOW));

    code.push(I::label(Allow.label()));
    code.push(I::ret(bpf::RET_ALLOW));
    code.push(I::label(DenyEperm.label()));
    code.push(I::ret(bpf::RET_ERRNO | EPERM));
    code.push(I::label(DenyEnosys.label()));
    code.push(I::ret(bpf::RET_ERRNO | ENOSYS));
    code.push(I::label(Kill.label()));
    code.push(I::ret(bpf::RET_KILL_PROCESS));
    code
}

const CLONE: u32 = 0;
const PERSONALITY: u32 = 1;

fn low_word(value: u64) -> u32 {
    u32::try_from(value).expect("flag masks fit the low word")
}

/// Standard base64 with padding (RFC 4648), which is what crun decodes.
fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Classic BPF as seccomp runs it: a tiny assembler with forward jumps to labels.
mod bpf {
    /// `struct seccomp_data` offsets: the syscall number, the audit architecture and the low
    /// 32 bits of the first argument (little-endian hosts only, which every table here is).
    pub const NR_OFFSET: u32 = 0;
    pub const ARCH_OFFSET: u32 = 4;
    pub const ARG0_LOW_OFFSET: u32 = 16;

    pub const RET_KILL_PROCESS: u32 = 0x8000_0000;
    pub const RET_ERRNO: u32 = 0x0005_0000;
    pub const RET_ALLOW: u32 = 0x7fff_0000;

    const LD_W_ABS: u16 = 0x20;
    const ALU_AND_K: u16 = 0x54;
    const JMP_JEQ_K: u16 = 0x15;
    const JMP_JGE_K: u16 = 0x35;
    const JMP_JSET_K: u16 = 0x45;
    const RET_K: u16 = 0x06;

    /// Where a conditional jump goes.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Target {
        Next,
        Allow,
        DenyEperm,
        DenyEnosys,
        Kill,
        Label(u32),
    }

    impl Target {
        /// The label of the shared return blocks (numbered after the program's own labels).
        pub fn label(self) -> u32 {
            match self {
                Target::Allow => 1_000,
                Target::DenyEperm => 1_001,
                Target::DenyEnosys => 1_002,
                Target::Kill => 1_003,
                Target::Label(label) => label,
                Target::Next => unreachable!("`Next` is not a label"),
            }
        }
    }

    #[derive(Clone, Copy, Debug)]
    pub enum Instruction {
        Statement {
            code: u16,
            k: u32,
        },
        Jump {
            code: u16,
            k: u32,
            taken: Target,
            not_taken: Target,
        },
        Label(u32),
    }

    impl Instruction {
        pub fn load(offset: u32) -> Instruction {
            Instruction::Statement {
                code: LD_W_ABS,
                k: offset,
            }
        }
        pub fn and(mask: u32) -> Instruction {
            Instruction::Statement {
                code: ALU_AND_K,
                k: mask,
            }
        }
        pub fn ret(value: u32) -> Instruction {
            Instruction::Statement {
                code: RET_K,
                k: value,
            }
        }
        pub fn jump_eq(k: u32, taken: Target, not_taken: Target) -> Instruction {
            Instruction::Jump {
                code: JMP_JEQ_K,
                k,
                taken,
                not_taken,
            }
        }
        pub fn jump_ge(k: u32, taken: Target, not_taken: Target) -> Instruction {
            Instruction::Jump {
                code: JMP_JGE_K,
                k,
                taken,
                not_taken,
            }
        }
        pub fn jump_set(k: u32, taken: Target, not_taken: Target) -> Instruction {
            Instruction::Jump {
                code: JMP_JSET_K,
                k,
                taken,
                not_taken,
            }
        }
        pub fn label(label: u32) -> Instruction {
            Instruction::Label(label)
        }
    }

    /// `struct sock_filter[]` in the host's byte order. Panics on a backward or too long jump,
    /// which only a change to the program here can cause (and its tests catch).
    pub fn encode(program: &[Instruction]) -> Vec<u8> {
        let mut positions = std::collections::HashMap::new();
        let mut position = 0usize;
        for instruction in program {
            match instruction {
                Instruction::Label(label) => {
                    positions.insert(*label, position);
                }
                _ => position += 1,
            }
        }
        let mut bytes = Vec::with_capacity(position * 8);
        let mut position = 0usize;
        for instruction in program {
            let (code, jt, jf, k) = match *instruction {
                Instruction::Label(_) => continue,
                Instruction::Statement { code, k } => (code, 0, 0, k),
                Instruction::Jump {
                    code,
                    k,
                    taken,
                    not_taken,
                } => {
                    let offset = |target: Target| -> u8 {
                        if target == Target::Next {
                            return 0;
                        }
                        let destination = positions[&target.label()];
                        let offset = destination
                            .checked_sub(position + 1)
                            .expect("seccomp jumps go forward");
                        u8::try_from(offset).expect("seccomp jumps span at most 255 instructions")
                    };
                    (code, offset(taken), offset(not_taken), k)
                }
            };
            bytes.extend_from_slice(&code.to_ne_bytes());
            bytes.push(jt);
            bytes.push(jf);
            bytes.extend_from_slice(&k.to_ne_bytes());
            position += 1;
        }
        bytes
    }
}

/// Syscall numbers of the host's architecture, where Ward has a table for it.
mod native {
    pub struct Table {
        pub audit_arch: u32,
        /// A number bit that selects another ABI under the same audit arch (x32 on x86_64).
        pub foreign_abi_bit: Option<u32>,
        pub numbers: &'static [(&'static str, libc::c_long)],
    }

    impl Table {
        pub fn number(&self, name: &str) -> Option<u32> {
            self.numbers
                .iter()
                .find(|(known, _)| *known == name)
                .map(|(_, number)| u32::try_from(*number).expect("syscall numbers are small"))
        }
    }

    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    pub const TABLE: Option<&Table> = Some(&Table {
        audit_arch: 0xc000_003e,
        foreign_abi_bit: Some(0x4000_0000),
        numbers: &[
            ("mount", libc::SYS_mount),
            ("umount2", libc::SYS_umount2),
            ("pivot_root", libc::SYS_pivot_root),
            ("chroot", libc::SYS_chroot),
            ("move_mount", libc::SYS_move_mount),
            ("open_tree", libc::SYS_open_tree),
            ("fsopen", libc::SYS_fsopen),
            ("fsconfig", libc::SYS_fsconfig),
            ("fsmount", libc::SYS_fsmount),
            ("fspick", libc::SYS_fspick),
            ("mount_setattr", libc::SYS_mount_setattr),
            ("setns", libc::SYS_setns),
            ("unshare", libc::SYS_unshare),
            ("swapon", libc::SYS_swapon),
            ("swapoff", libc::SYS_swapoff),
            ("reboot", libc::SYS_reboot),
            ("kexec_load", libc::SYS_kexec_load),
            ("kexec_file_load", libc::SYS_kexec_file_load),
            ("init_module", libc::SYS_init_module),
            ("finit_module", libc::SYS_finit_module),
            ("delete_module", libc::SYS_delete_module),
            // Long gone from the kernel and from `libc`, but their numbers stay reserved.
            ("create_module", 174),
            ("get_kernel_syms", 177),
            ("query_module", 178),
            ("bpf", libc::SYS_bpf),
            ("perf_event_open", libc::SYS_perf_event_open),
            ("lookup_dcookie", libc::SYS_lookup_dcookie),
            ("syslog", libc::SYS_syslog),
            ("kcmp", libc::SYS_kcmp),
            ("process_vm_readv", libc::SYS_process_vm_readv),
            ("process_vm_writev", libc::SYS_process_vm_writev),
            ("fanotify_init", libc::SYS_fanotify_init),
            ("userfaultfd", libc::SYS_userfaultfd),
            ("keyctl", libc::SYS_keyctl),
            ("add_key", libc::SYS_add_key),
            ("request_key", libc::SYS_request_key),
            ("settimeofday", libc::SYS_settimeofday),
            ("clock_settime", libc::SYS_clock_settime),
            ("clock_adjtime", libc::SYS_clock_adjtime),
            ("adjtimex", libc::SYS_adjtimex),
            ("acct", libc::SYS_acct),
            ("quotactl", libc::SYS_quotactl),
            ("quotactl_fd", libc::SYS_quotactl_fd),
            ("open_by_handle_at", libc::SYS_open_by_handle_at),
            ("name_to_handle_at", libc::SYS_name_to_handle_at),
            ("iopl", libc::SYS_iopl),
            ("ioperm", libc::SYS_ioperm),
            ("nfsservctl", libc::SYS_nfsservctl),
            ("uselib", libc::SYS_uselib),
            ("_sysctl", libc::SYS__sysctl),
            ("sysfs", libc::SYS_sysfs),
            ("ustat", libc::SYS_ustat),
            ("clone", libc::SYS_clone),
            ("clone3", libc::SYS_clone3),
            ("io_uring_setup", libc::SYS_io_uring_setup),
            ("io_uring_enter", libc::SYS_io_uring_enter),
            ("io_uring_register", libc::SYS_io_uring_register),
            ("personality", libc::SYS_personality),
        ],
    });

    /// Names in the profile that x86_64 has no syscall for.
    #[cfg(all(test, target_arch = "x86_64", target_os = "linux"))]
    pub const ABSENT: &[&str] = &[
        "umount",
        "clock_settime64",
        "clock_adjtime64",
        "stime",
        "vm86",
        "vm86old",
        "pciconfig_read",
        "pciconfig_write",
        "pciconfig_iobase",
    ];

    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    pub const TABLE: Option<&Table> = None;
    #[cfg(all(test, not(all(target_arch = "x86_64", target_os = "linux"))))]
    pub const ABSENT: &[&str] = &[];
}

fn native_architecture() -> Arch {
    match std::env::consts::ARCH {
        "aarch64" => Arch::ScmpArchAarch64,
        "riscv64" => Arch::ScmpArchRiscv64,
        "s390x" => Arch::ScmpArchS390x,
        "powerpc64" => Arch::ScmpArchPpc64le,
        _ => Arch::ScmpArchX86_64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denies_the_namespace_and_kernel_calls() {
        let profile = serde_json::to_value(profile().expect("profile")).expect("JSON");
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

    #[test]
    fn every_denied_name_has_a_number_or_is_absent_from_the_architecture() {
        let Some(table) = native::TABLE else {
            return;
        };
        for name in DENIED.iter().chain(MISSING) {
            assert!(
                table.number(name).is_some() != native::ABSENT.contains(name),
                "{name} must be either numbered or listed as absent"
            );
        }
    }

    #[test]
    fn base64_matches_the_rfc_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(plain.as_bytes()), encoded, "{plain:?}");
        }
        assert_eq!(base64_encode(&[0xfb, 0xff, 0xbf]), "+/+/");
    }

    /// The compiled program, loaded into a real process by the kernel, decides each call the
    /// way the profile says: run as root without it, every call below would succeed or fail
    /// differently.
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    #[test]
    fn the_kernel_runs_the_compiled_program_as_the_profile_says() {
        use std::os::unix::process::{CommandExt, ExitStatusExt};

        let table = native::TABLE.expect("x86_64 has a table");
        let program = bpf::encode(&program(table));
        assert!(compiled().is_some_and(|encoded| encoded == base64_encode(&program)));
        let script = r#"
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def call(label, *args):
    ctypes.set_errno(0)
    result = libc.syscall(*[ctypes.c_long(arg) for arg in args])
    if result == 0 and args[0] == 56:
        os._exit(0)
    print(label, "ok" if result >= 0 else ctypes.get_errno(), flush=True)
call("unshare-user", 272, 0x10000000)
call("unshare-none", 272, 0)
call("clone3", 435, 0, 0)
call("io_uring_setup", 425, 1, 0)
call("clone-newnet", 56, 0x40000000 | 17, 0, 0, 0, 0)
call("mount", 165, 0, 0, 0, 0, 0)
call("keyctl", 250, 0, 0)
call("personality-query", 135, 0xffffffff)
call("personality-no-randomize", 135, 0x0040000)
call("getpid", 39)
pid = os.fork()
if pid == 0:
    os._exit(7)
print("fork", os.waitpid(pid, 0)[1] >> 8, flush=True)
call("x32-getpid", 0x40000000 | 39)
"#;
        let filter = program.clone();
        let mut command = std::process::Command::new("python3");
        command.args(["-c", script]);
        // SAFETY: between fork and exec the closure makes two system calls on memory that was
        // allocated before the fork.
        unsafe {
            command.pre_exec(move || {
                let fprog = libc::sock_fprog {
                    len: (filter.len() / 8) as u16,
                    filter: filter.as_ptr() as *mut libc::sock_filter,
                };
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                    || libc::syscall(libc::SYS_seccomp, 1, 0, &fprog) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let output = command.output().expect("run python3 under the filter");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(
            stdout,
            "unshare-user 1\nunshare-none 1\nclone3 38\nio_uring_setup 38\nclone-newnet 1\nmount 1\nkeyctl 1\n\
             personality-query ok\npersonality-no-randomize 1\ngetpid ok\nfork 7\n",
            "stderr: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(
            output.status.signal(),
            Some(libc::SIGSYS),
            "a syscall through the x32 ABI kills the process"
        );
    }
}
