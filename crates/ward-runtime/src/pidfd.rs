//! Process handles that survive PID reuse: pidfds, and `/proc` start times that tell a process
//! apart from a later one with the same PID.

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::sys::signal::Signal;
use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag};
use nix::unistd::Pid;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// A pidfd: refers to one process for as long as it is open, however its PID is reused.
#[derive(Debug)]
pub(crate) struct PidFd {
    fd: OwnedFd,
}

impl PidFd {
    /// Opens a pidfd for `pid`; fails with `ESRCH` when no such process exists.
    pub fn open(pid: u32) -> io::Result<PidFd> {
        let pid =
            libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
        let result = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0 as libc::c_uint) };
        if result < 0 {
            return Err(io::Error::last_os_error());
        }
        let raw = i32::try_from(result).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
        // SAFETY: the kernel just gave us this descriptor and nothing else owns it.
        Ok(PidFd {
            fd: unsafe { OwnedFd::from_raw_fd(raw) },
        })
    }

    pub fn send_signal(&self, signal: Signal) -> io::Result<()> {
        // SAFETY: pidfd_send_signal reads only its integer arguments (info is NULL).
        let result = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.fd.as_raw_fd(),
                signal as libc::c_int,
                std::ptr::null::<libc::siginfo_t>(),
                0 as libc::c_uint,
            )
        };
        if result < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Resolves once the process has exited.
    pub async fn exited(self) -> io::Result<()> {
        // SAFETY: the AsyncFd owns the descriptor, which stays open and unchanged until it drops.
        let fd = unsafe { AsyncFd::register_with_interest(self.fd, Interest::READABLE) }?;
        let _ready = fd.readable().await?;
        Ok(())
    }
}

/// The start time of `pid` in clock ticks after boot (field 22 of `/proc/PID/stat`).
pub(crate) fn process_start_ticks(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat).map(|(_, start_ticks)| start_ticks)
}

/// [`process_start_ticks`] of a process that has not exited: a zombie waiting to be reaped
/// counts as gone.
pub(crate) fn running_process_start_ticks(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    match parse_stat(&stat)? {
        ('Z' | 'X' | 'x', _) => None,
        (_, start_ticks) => Some(start_ticks),
    }
}

/// The state (field 3) and start time (field 22) from `/proc/PID/stat`.
fn parse_stat(stat: &str) -> Option<(char, u64)> {
    let state = stat_field(stat, 3)?.chars().next()?;
    let start_ticks = stat_field(stat, 22)?.parse().ok()?;
    Some((state, start_ticks))
}

/// Field `number` (numbered from 1 as in proc(5), 3 or later) of `/proc/PID/stat` text.
pub(crate) fn stat_field(stat: &str, number: usize) -> Option<&str> {
    // The command name (field 2) may hold spaces and parentheses; everything after the last
    // `)` is space-separated, starting with field 3.
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(number.checked_sub(3)?)
}

/// Whether `pid` is an unreaped child of this process (it may have exited already).
pub(crate) fn is_own_child(pid: u32) -> bool {
    let Ok(raw) = libc::pid_t::try_from(pid) else {
        return false;
    };
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    waitid(Id::Pid(Pid::from_raw(raw)), flags).is_ok()
}

/// Reaps `pid` if it is an exited child of this process; anything else is left alone.
pub(crate) fn reap_if_child(pid: u32) -> Option<nix::sys::wait::WaitStatus> {
    let raw = libc::pid_t::try_from(pid).ok()?;
    // ECHILD (not our child, or reaped already) and "still running" are both fine here.
    waitpid(Pid::from_raw(raw), Some(WaitPidFlag::WNOHANG)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_ticks_survive_odd_command_names() {
        let stat =
            "1234 (a) b (c) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 200";
        assert_eq!(parse_stat(stat), Some(('S', 98765)));
    }

    #[test]
    fn own_start_ticks_are_readable() {
        let own = process_start_ticks(std::process::id());
        assert!(own.is_some());
        assert_eq!(running_process_start_ticks(std::process::id()), own);
    }

    #[test]
    fn zombies_do_not_count_as_running() {
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let pid = child.id();
        // Exited, not yet reaped: waitid with WNOWAIT returns once it is a zombie.
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT;
        waitid(Id::Pid(Pid::from_raw(pid as i32)), flags).expect("wait for exit");
        assert!(process_start_ticks(pid).is_some());
        assert_eq!(running_process_start_ticks(pid), None);
        assert!(is_own_child(pid));
        reap_if_child(pid);
        assert!(!is_own_child(pid));
        // Reaped already: `wait` finds no child, which is all it can say now.
        assert!(child.wait().is_err());
    }
}
