//! Idmapped mounts: a directory shown with its owners shifted into a workload's id range, so
//! that image layers kept once, owned by the host's ids, read inside a user namespace as
//! they would in the image (`mount_setattr(2)` with `MOUNT_ATTR_IDMAP`, Linux 5.12+).
//!
//! Used by the monitor, in its own mount namespace, before it mounts a container's overlay.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;

use crate::idmap::IdRange;

const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x0000_0004;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

/// `struct mount_attr` of `mount_setattr(2)`.
#[repr(C)]
struct MountAttributes {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// A user namespace whose ids map as `range` says, held by a descriptor only: a child
/// process makes it and exits once its maps are written and the namespace is open.
pub(crate) fn user_namespace(range: IdRange) -> Result<OwnedFd, Errno> {
    let (ready_read, ready_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let (done_read, done_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    // SAFETY: the monitor has one thread; the child makes only system calls before it exits.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Child => {
            drop(ready_read);
            drop(done_write);
            let status = match nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER) {
                Ok(()) => 0,
                Err(_) => 1,
            };
            let _ = nix::unistd::write(&ready_write, &[status]);
            let mut byte = [0_u8; 1];
            let _ = nix::unistd::read(&done_read, &mut byte);
            // SAFETY: _exit ends the child at once, running nothing of the parent's.
            unsafe { libc::_exit(0) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(ready_write);
            drop(done_read);
            let made = (|| {
                let mut status = [1_u8; 1];
                let read = nix::unistd::read(&ready_read, &mut status)?;
                if read != 1 || status[0] != 0 {
                    return Err(Errno::EPERM);
                }
                let map = format!("0 {} {}\n", range.host_base, range.size());
                for file in ["uid_map", "gid_map"] {
                    std::fs::write(format!("/proc/{child}/{file}"), &map)
                        .map_err(|error| Errno::from_raw(error.raw_os_error().unwrap_or(0)))?;
                }
                nix::fcntl::open(
                    format!("/proc/{child}/ns/user").as_str(),
                    nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
                    nix::sys::stat::Mode::empty(),
                )
            })();
            drop(done_write);
            let _ = nix::sys::wait::waitpid(child, None);
            made
        }
    }
}

/// Mounts, on top of `path`, `path` as seen through `user_namespace`'s id mapping: a file the
/// host owns as id `n` shows as owned by the range's host id `base + n`, which is `n` inside
/// a workload of that range. Only this mount namespace sees it.
pub(crate) fn idmap_in_place(path: &Path, user_namespace: &OwnedFd) -> Result<(), Errno> {
    let path = CString::new(path.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)?;
    // SAFETY: open_tree reads the NUL-terminated path and returns a new descriptor or -1.
    let tree = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            path.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    if tree < 0 {
        return Err(Errno::last());
    }
    // SAFETY: open_tree just returned this descriptor; nothing else owns it.
    let tree = unsafe { OwnedFd::from_raw_fd(tree as i32) };
    let attributes = MountAttributes {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: user_namespace.as_raw_fd() as u64,
    };
    let empty = c"";
    // SAFETY: the attributes live across the call and their size is passed with them.
    let set = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH,
            &attributes as *const MountAttributes,
            std::mem::size_of::<MountAttributes>(),
        )
    };
    if set < 0 {
        return Err(Errno::last());
    }
    // SAFETY: move_mount attaches the detached tree (ours) at the NUL-terminated path.
    let moved = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            path.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if moved < 0 {
        return Err(Errno::last());
    }
    Ok(())
}
