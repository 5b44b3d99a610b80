//! The per-instance monitor (Ward's conmon): it starts the instance through the OCI runtime,
//! holds its stdout and stderr and writes them to the log files, records how it exits, and
//! cleans up after it. It outlives the daemon, which finds it again through the files of the
//! instance directory (`state.json`, `exit.json`, `log`; listed in `instance.rs`).
//!
//! It is one thread without an async runtime: `poll(2)` over the two output pipes and a
//! signalfd for SIGCHLD. It is the child subreaper of everything the OCI runtime starts, so
//! the instance's first process becomes its child and its exit status arrives by `waitpid`.
//!
//! The daemon starts it as `ward monitor --spare PADDING`, before the instance is known (see
//! `launcher.rs`), in its own session with stdio on /dev/null, the write end of a pipe as fd 3,
//! the daemon's sealed copy of the OCI runtime (when there is one, see `oci::OciProgram`) as
//! fd 4 and the read end of its orders pipe as fd 5. It sets itself up, makes the instance's
//! network namespace and holds it as fd 6, then reads the instance directory from fd 5, sends
//! its output to `DIR/monitor.log`, and reports one JSON line on fd 3, `{"pid":N}` or
//! `{"error":"…"}`, once the instance runs or has failed to start.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::signal::{signal, SigHandler, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{pipe2, setsid, Pid};

use crate::host::HYBRID_UNIFIED_MOUNT;
use crate::hosts;
use crate::idmount;
use crate::instance::{
    monitor_config_in, read_json, remove_file_if_exists, write_json, ExitRecord, InstancePaths,
    MonitorConfig, OverlayMount, StateRecord, SyncMessage, MONITOR_LOG,
};
use crate::logs::{LineSplitter, LogWriter};
use crate::oci::OciProgram;
use crate::pidfd::{process_start_ticks, stat_field};
use crate::{cgroup, network, oci, LogStream, RuntimeError};

/// The descriptor on which the daemon waits for the start report.
pub(crate) const SYNC_FD: i32 = 3;
/// The descriptor on which a spare monitor reads the directory of its instance.
pub(crate) const ORDERS_FD: i32 = 5;
/// The first argument of a spare monitor.
pub(crate) const SPARE_FLAG: &str = "--spare";
/// The descriptor at which a monitor holds the network namespace it made for its instance.
const NETWORK_NAMESPACE_FD: i32 = 6;
/// How long output is still collected after the instance's first process has exited, for
/// descendants that keep the pipes open.
pub const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(1);
/// How long after the start the monitor drops its start-up pages (see `trim_startup_pages`):
/// not at once, when the daemon and the client are still finishing the start on the same CPUs.
const TRIM_AFTER_START: Duration = Duration::from_millis(200);
/// Bytes read from a pipe at a time.
const READ_CHUNK_BYTES: usize = 16 * 1024;

/// Monitors the instance whose run directory is `run_dir`, with the process set up (or the
/// error of setting it up, reported to the daemon as a failed start).
fn monitor(run_dir: &Path, setup: Result<ProcessSetup, (&'static str, Errno)>) -> i32 {
    let sync = SyncPipe::inherited();
    // The daemon makes the monitor a session leader; when started by hand it becomes one here.
    let _ = setsid();
    let started = setup
        .map_err(|(action, error)| RuntimeError::io(action, run_dir, error.into()))
        .and_then(|setup| start(run_dir, setup));
    let mut running = match started {
        Ok(running) => running,
        Err(error) => {
            eprintln!("ward monitor {}: {error}", run_dir.display());
            sync.report(&SyncMessage::Failed {
                error: error.to_string(),
            });
            return 1;
        }
    };
    sync.report(&SyncMessage::Started { pid: running.pid });
    let exit = running.supervise();
    running.finish(exit);
    0
}

/// Runs the monitor if the arguments after the program name are `monitor --spare PADDING`
/// (what the daemon starts), and returns its exit code; `None` for any other command line.
pub fn run_from_command_line(
    mut arguments: impl Iterator<Item = std::ffi::OsString>,
) -> Option<i32> {
    match (
        arguments.next(),
        arguments.next(),
        arguments.next(),
        arguments.next(),
    ) {
        (Some(word), Some(flag), Some(_padding), None)
            if word == "monitor" && flag == SPARE_FLAG =>
        {
            Some(spare_main())
        }
        _ => None,
    }
}

/// Runs a monitor: sets itself up, waits for the daemon to name an instance's run directory,
/// then starts and monitors that instance. Returns 0 without doing anything when the daemon
/// goes away first.
fn spare_main() -> i32 {
    let setup = set_up_process();
    let Some(run_dir) = await_orders() else {
        return 0;
    };
    let log = run_dir.join(MONITOR_LOG);
    if let Ok(log) = std::fs::OpenOptions::new().append(true).open(&log) {
        for target in [libc::STDOUT_FILENO, libc::STDERR_FILENO] {
            // SAFETY: dup2 onto the standard descriptors, which this process owns.
            unsafe { libc::dup2(log.as_raw_fd(), target) };
        }
    }
    monitor(&run_dir, setup)
}

/// The run directory the daemon writes to fd 5 (one line, then end-of-file); `None` when the
/// pipe closes without one.
fn await_orders() -> Option<PathBuf> {
    // SAFETY: F_GETFD only checks whether the descriptor is open.
    if unsafe { libc::fcntl(ORDERS_FD, libc::F_GETFD) } < 0 {
        return None;
    }
    // SAFETY: fd 5 is open and was placed there for this process alone; the File owns it.
    let mut orders = File::from(unsafe { OwnedFd::from_raw_fd(ORDERS_FD) });
    let mut order = Vec::new();
    orders.read_to_end(&mut order).ok()?;
    let line = order.strip_suffix(b"\n")?;
    (!line.is_empty()).then(|| PathBuf::from(std::ffi::OsStr::from_bytes(line)))
}

/// Rewrites the command line (`ps`, `/proc/PID/cmdline`) to `WARD monitor DIR`, which names
/// the instance, in the room the spare's padding argument reserved.
fn show_in_command_line(instance_dir: &Path) {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return;
    };
    // `arg_start` and `arg_end` are fields 48 and 49 (proc(5)).
    let number = |field: usize| stat_field(&stat, field)?.parse::<usize>().ok();
    let (Some(start), Some(end)) = (number(48), number(49)) else {
        return;
    };
    let mut title = b"monitor\0".to_vec();
    title.extend_from_slice(instance_dir.as_os_str().as_bytes());
    title.push(0);
    // SAFETY: [start, end) is this process's argument area, placed by the kernel at exec on
    // the process's own writable stack. Only bytes inside it are read and written, through
    // raw pointers; the arguments were parsed before this, and nothing holds a reference.
    unsafe {
        let area = start as *mut u8;
        let mut first_end = 0;
        while first_end < end - start && *area.add(first_end) != 0 {
            first_end += 1;
        }
        let room = (end - start).saturating_sub(first_end + 1);
        if title.len() > room {
            return;
        }
        let rest = area.add(first_end + 1);
        std::ptr::copy_nonoverlapping(title.as_ptr(), rest, title.len());
        std::ptr::write_bytes(rest.add(title.len()), 0, room - title.len());
    }
}

/// Drops this process's mappings of clean, read-only file pages (program text and constants of
/// the monitor and of the C library) touched while starting. They stay in the page cache,
/// shared with every other process, and the few that the log loop needs fault back in; what
/// remains resident is the monitor's working set. Mappings holding private (copied) pages,
/// such as relocated read-only data, are left alone: dropping those would lose their contents.
fn trim_startup_pages() {
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    let mut candidate: Option<(usize, usize)> = None;
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or_default();
        if let Some((start, end)) = first
            .split_once('-')
            .filter(|(start, _)| start.bytes().all(|byte| byte.is_ascii_hexdigit()))
        {
            let permissions = fields.next().unwrap_or_default();
            let path = fields.nth(3).unwrap_or_default();
            let clean_read_only = permissions.starts_with('r')
                && permissions.as_bytes().get(1) == Some(&b'-')
                && permissions.ends_with('p');
            candidate = match (
                usize::from_str_radix(start, 16),
                usize::from_str_radix(end, 16),
            ) {
                (Ok(start), Ok(end)) if clean_read_only && path.starts_with('/') => {
                    Some((start, end - start))
                }
                _ => None,
            };
            continue;
        }
        if first == "Anonymous:" {
            if let Some((start, length)) = candidate.take() {
                if fields.next() == Some("0") {
                    // SAFETY: the range is a whole read-only private file mapping without
                    // private pages; MADV_DONTNEED only unmaps pages the kernel can read again
                    // from the file, so no content changes.
                    unsafe {
                        libc::madvise(start as *mut libc::c_void, length, libc::MADV_DONTNEED)
                    };
                }
            }
        }
    }
}

/// The write end of the sync pipe, if the daemon passed one.
struct SyncPipe(Option<File>);

impl SyncPipe {
    fn inherited() -> SyncPipe {
        // SAFETY: fd 3 is checked to be open; nothing else in this process owns it.
        let is_open = unsafe { libc::fcntl(SYNC_FD, libc::F_GETFD) } >= 0;
        if !is_open {
            return SyncPipe(None);
        }
        // SAFETY: as above; from here on the File is its only owner.
        let fd = unsafe { OwnedFd::from_raw_fd(SYNC_FD) };
        // The OCI runtime and the workload must not hold it, or the daemon never sees EOF.
        let _ = fcntl(&fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
        SyncPipe(Some(File::from(fd)))
    }

    /// Writes the report and closes the pipe. The daemon may be gone: errors are ignored.
    fn report(self, message: &SyncMessage) {
        let Some(mut file) = self.0 else { return };
        let Ok(mut line) = serde_json::to_vec(message) else {
            return;
        };
        line.push(b'\n');
        let _ = file.write_all(&line);
    }
}

/// A started instance and what the monitor watches it with.
struct Running {
    paths: InstancePaths,
    config: MonitorConfig,
    runtime: OciProgram,
    pid: u32,
    signals: SignalFd,
    streams: [Stream; 2],
    log: LogWriter,
    /// For an instance on a terminal: stream 0 reads its master.
    terminal: Option<Terminal>,
}

/// The terminal of a `tty` instance and who is attached to it (see `terminal.rs`).
struct Terminal {
    master: OwnedFd,
    listener: std::os::unix::net::UnixListener,
    /// While someone is attached, the monitor leaves the master to them.
    attached: Option<std::os::unix::net::UnixStream>,
    /// What the terminal printed since the last attach.
    unseen: Vec<u8>,
    /// The run directory, through which the socket has its short path.
    run_dir: File,
}

struct Stream {
    pipe: Option<OwnedFd>,
    splitter: LineSplitter,
}

/// How the instance's first process ended.
#[derive(Clone, Copy, Debug)]
enum Ended {
    Exited(i32),
    Signaled(i32),
}

/// What every monitor sets up before it knows its instance: a spare does this while it waits.
struct ProcessSetup {
    signals: SignalFd,
    /// This process's start time (`/proc/self/stat`), for `state.json`.
    start_ticks: u64,
    /// The instance's network namespace at [`NETWORK_NAMESPACE_FD`], or why it could not be
    /// made (which fails the start of an instance that needs it).
    network_namespace: Result<OwnedFd, Errno>,
}

/// Where the OCI runtime and `ip` find the network namespace that monitor `monitor_pid` made
/// for its instance (see [`make_network_namespace`]).
pub(crate) fn network_namespace_path(monitor_pid: u32) -> PathBuf {
    PathBuf::from(format!("/proc/{monitor_pid}/fd/{NETWORK_NAMESPACE_FD}"))
}

/// Ignores SIGPIPE, blocks SIGHUP (so that it never arrives, while what the monitor starts
/// gets its default disposition back, and the standard library can start the runtime with
/// `posix_spawn` instead of a fork), takes SIGCHLD through a signalfd, becomes the subreaper
/// of what it starts, enters a mount namespace of its own (see [`private_mount_namespace`]),
/// makes the instance's network namespace and reads its own start time.
fn set_up_process() -> Result<ProcessSetup, (&'static str, Errno)> {
    // First, while nothing but the inherited descriptors is open and its number is free.
    let network_namespace = match make_network_namespace() {
        Ok(namespace) => Ok(namespace),
        Err(NamespaceError::NotMade(error)) => Err(error),
        Err(NamespaceError::Stranded(error)) => {
            return Err(("return to the host's network namespace", error))
        }
    };
    // SAFETY: no other threads exist; ignoring a signal installs no handler code.
    unsafe {
        signal(Signal::SIGPIPE, SigHandler::SigIgn).map_err(|error| ("ignore SIGPIPE", error))?;
    }
    let mut child_signals = SigSet::empty();
    child_signals.add(Signal::SIGCHLD);
    let mut blocked = child_signals;
    blocked.add(Signal::SIGHUP);
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&blocked), None)
        .map_err(|error| ("block SIGCHLD and SIGHUP", error))?;
    let signals = SignalFd::with_flags(
        &child_signals,
        SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC,
    )
    .map_err(|error| ("create signalfd", error))?;
    nix::sys::prctl::set_child_subreaper(true).map_err(|error| ("become subreaper", error))?;
    private_mount_namespace().map_err(|error| ("enter a mount namespace", error))?;
    Ok(ProcessSetup {
        signals,
        start_ticks: process_start_ticks(std::process::id()).unwrap_or(0),
        network_namespace,
    })
}

/// Why [`make_network_namespace`] failed.
enum NamespaceError {
    /// Nothing changed; the error is what failed.
    NotMade(Errno),
    /// The monitor is left in the new namespace: it cannot run the instance.
    Stranded(Errno),
}

/// Makes a network namespace with its loopback interface up, without staying in it, and holds
/// it at [`NETWORK_NAMESPACE_FD`]. A spare makes it while it waits, so that the OCI runtime
/// joins it (by [`network_namespace_path`]) instead of making one while the instance starts:
/// a new network namespace is the most expensive of a container's namespaces to make, about
/// 0.7 ms here. Unused (for a `host` workload), it is closed, and the kernel frees it.
fn make_network_namespace() -> Result<OwnedFd, NamespaceError> {
    let open_own = || {
        nix::fcntl::open(
            "/proc/self/ns/net",
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
    };
    let host = open_own().map_err(NamespaceError::NotMade)?;
    unshare(CloneFlags::CLONE_NEWNET).map_err(NamespaceError::NotMade)?;
    let made = open_own().and_then(|made| {
        loopback_up()?;
        unprivileged_ports_and_ping()?;
        Ok(made)
    });
    setns(&host, CloneFlags::CLONE_NEWNET).map_err(NamespaceError::Stranded)?;
    // It may hold the reserved number itself.
    drop(host);
    let made = made.map_err(NamespaceError::NotMade)?;
    if made.as_raw_fd() == NETWORK_NAMESPACE_FD {
        return Ok(made);
    }
    // SAFETY: F_GETFD only checks whether the number is taken.
    if unsafe { libc::fcntl(NETWORK_NAMESPACE_FD, libc::F_GETFD) } >= 0 {
        return Err(NamespaceError::NotMade(Errno::EBUSY));
    }
    // SAFETY: dup3 onto a free descriptor number (checked above; the monitor is one thread).
    let placed = unsafe { libc::dup3(made.as_raw_fd(), NETWORK_NAMESPACE_FD, libc::O_CLOEXEC) };
    if placed < 0 {
        return Err(NamespaceError::NotMade(Errno::last()));
    }
    // SAFETY: dup3 just opened this descriptor; from here on the OwnedFd is its only owner.
    Ok(unsafe { OwnedFd::from_raw_fd(NETWORK_NAMESPACE_FD) })
}

/// As Docker sets in every container's network namespace: any user may bind ports below 1024
/// and send pings. The namespace belongs to the host's user namespace, so root in a workload's
/// own user namespace has no capability in it and would otherwise be able to do neither.
fn unprivileged_ports_and_ping() -> Result<(), Errno> {
    let set = |path: &str, value: &str| {
        std::fs::write(path, value)
            .map_err(|error| Errno::from_raw(error.raw_os_error().unwrap_or(0)))
    };
    set("/proc/sys/net/ipv4/ip_unprivileged_port_start", "0")?;
    set("/proc/sys/net/ipv4/ping_group_range", "0 2147483647")
}

/// Brings up `lo` in the current network namespace, as the OCI runtime does in one it makes.
fn loopback_up() -> Result<(), Errno> {
    let socket = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // SAFETY: ifreq is plain data; zeroed, it names no interface and carries no flags.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(b"lo\0") {
        *slot = *byte as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS and SIOCSIFFLAGS read and write the ifreq passed, which lives across
    // both calls; the socket is open.
    unsafe {
        if libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut request) < 0 {
            return Err(Errno::last());
        }
        request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &request) < 0 {
            return Err(Errno::last());
        }
    }
    Ok(())
}

fn start(run_dir: &Path, setup: ProcessSetup) -> Result<Running, RuntimeError> {
    let ProcessSetup {
        signals,
        start_ticks,
        network_namespace,
    } = setup;
    let config_path = monitor_config_in(run_dir);
    let config: MonitorConfig = read_json(&config_path)?
        .ok_or_else(|| RuntimeError::io("read", &config_path, io::ErrorKind::NotFound.into()))?;
    let paths = &InstancePaths::new(config.instance_dir.clone(), run_dir.to_path_buf());
    show_in_command_line(&paths.dir);
    let id = config.container_id.clone();
    let runtime = OciProgram::inherited(config.oci_runtime.clone(), oci::SEALED_RUNTIME_FD);
    let os_error =
        |action: &'static str, error: Errno| RuntimeError::io(action, run_dir, error.into());

    if config.unmount_cgroup2 {
        hide_cgroup2_hierarchy()
            .map_err(|error| os_error("unmount the cgroup2 hierarchy", error))?;
    }
    if let Some(overlay) = &config.overlay {
        mount_overlay(overlay).map_err(|error| {
            RuntimeError::io(
                "mount the image's overlay on",
                &overlay.target,
                error.into(),
            )
        })?;
    }
    if let Some(copy) = &config.root_copy {
        let target = paths.container_root();
        mount(
            Some(copy.as_path()),
            &target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|error| RuntimeError::io("bind the image's copy on", &target, error.into()))?;
    }

    let log = LogWriter::new(&paths.log());
    let (stdout_read, stdout_write) = pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)
        .map_err(|error| os_error("create pipe", error))?;
    let (stderr_read, stderr_write) = pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)
        .map_err(|error| os_error("create pipe", error))?;
    // The workload's ends must block like ordinary stdio.
    for end in [&stdout_write, &stderr_write] {
        fcntl(end, FcntlArg::F_SETFL(OFlag::empty()))
            .map_err(|error| os_error("configure pipe", error))?;
    }
    // A terminal instance gets its terminal from the runtime on a console socket instead.
    let console =
        if config.terminal {
            Some(ConsoleListener::bind(run_dir).map_err(|source| {
                RuntimeError::io("listen for the terminal in", run_dir, source)
            })?)
        } else {
            None
        };
    for stale in [paths.container_pid(), paths.oci_log(), paths.state()] {
        remove_file_if_exists(&stale)?;
    }

    // Held until the runtime has joined it; dropped at once when the instance does not use it.
    let _network_namespace = if config.own_network() {
        Some(network_namespace.map_err(|error| os_error("make a network namespace", error))?)
    } else {
        drop(network_namespace);
        None
    };
    let started = connect_network(&config, &id).and_then(|address| {
        let console_path = console.as_ref().map(|console| console.path.as_path());
        run_oci(
            &config,
            &runtime,
            paths,
            stdout_write,
            stderr_write,
            console_path,
        )?;
        Ok((read_pid(paths)?, address))
    });
    let terminal = match (started.as_ref(), console) {
        (Ok(_), Some(console)) => Some(console.receive_terminal(run_dir)),
        _ => None,
    }
    .transpose();
    let ((pid, address), terminal) = match (started, terminal) {
        (Ok(started), Ok(terminal)) => (started, terminal),
        (Err(error), _) | (_, Err(error)) => {
            clean_up(&config, &runtime);
            return Err(error);
        }
    };

    let state = StateRecord {
        pid,
        pid_start_ticks: process_start_ticks(pid).unwrap_or(0),
        monitor_pid: std::process::id(),
        monitor_start_ticks: start_ticks,
        started_at: SystemTime::now(),
        address,
    };
    if let Err(error) = write_json(&paths.state(), &state) {
        clean_up(&config, &runtime);
        return Err(error);
    }
    Ok(Running {
        paths: paths.clone(),
        config,
        runtime,
        pid,
        signals,
        streams: [
            Stream {
                pipe: match &terminal {
                    Some(terminal) => Some(terminal.master.try_clone().map_err(|error| {
                        RuntimeError::io("share the terminal in", run_dir, error)
                    })?),
                    None => Some(stdout_read),
                },
                splitter: LineSplitter::new(LogStream::Stdout),
            },
            Stream {
                pipe: terminal.is_none().then_some(stderr_read),
                splitter: LineSplitter::new(LogStream::Stderr),
            },
        ],
        log,
        terminal,
    })
}

/// How many bytes can be read from `fd` without waiting (`FIONREAD`); 0 when unknown.
fn bytes_waiting(fd: &OwnedFd) -> usize {
    let mut waiting: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through a valid pointer; the fd is open.
    let result = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut waiting) };
    if result < 0 {
        return 0;
    }
    usize::try_from(waiting).unwrap_or(0)
}

impl Terminal {
    /// Hands the terminal to a new client, unless one is attached already (the newcomer's
    /// connection then closes without it).
    fn accept(&mut self) {
        let Ok((client, _)) = self.listener.accept() else {
            return;
        };
        if self.attached.is_some() {
            return;
        }
        let handed = crate::terminal::hand_over(&client, &self.master, &self.unseen)
            .and_then(|()| client.set_nonblocking(true));
        match handed {
            Ok(()) => {
                self.unseen.clear();
                self.attached = Some(client);
            }
            Err(error) => eprintln!("ward monitor: hand over the terminal: {error}"),
        }
    }

    /// Notices the attached client going away (it sends nothing).
    fn check_attached(&mut self) {
        let Some(client) = &self.attached else {
            return;
        };
        let mut buffer = [0u8; 64];
        match nix::unistd::read(client, &mut buffer) {
            Ok(read) if read > 0 => {}
            Err(Errno::EAGAIN | Errno::EINTR) => {}
            _ => self.attached = None,
        }
    }

    /// Closes the attach socket and removes its file.
    fn close(self) {
        let path = crate::terminal::short_path(
            std::process::id(),
            &self.run_dir,
            crate::terminal::ATTACH_SOCKET,
        );
        let _ = std::fs::remove_file(path);
    }
}

/// The socket on which the OCI runtime hands over the terminal of a `tty` instance.
struct ConsoleListener {
    listener: std::os::unix::net::UnixListener,
    /// A short path to it, through the run directory's descriptor in this process.
    path: PathBuf,
    _run_dir: File,
}

impl ConsoleListener {
    fn bind(run_dir: &Path) -> io::Result<ConsoleListener> {
        let dir = File::open(run_dir)?;
        let _ = std::fs::remove_file(run_dir.join("console.sock"));
        let path = crate::terminal::short_path(std::process::id(), &dir, "console.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path)?;
        Ok(ConsoleListener {
            listener,
            path,
            _run_dir: dir,
        })
    }

    /// Takes the terminal the runtime sent, and opens the attach socket.
    fn receive_terminal(self, run_dir: &Path) -> Result<Terminal, RuntimeError> {
        let failed = |message: String| RuntimeError::StartFailed {
            id: run_dir.display().to_string(),
            message,
        };
        self.listener
            .set_nonblocking(true)
            .map_err(|error| failed(format!("wait for the terminal: {error}")))?;
        // The runtime has exited: its connection, if it made one, is waiting.
        let (stream, _) = self
            .listener
            .accept()
            .map_err(|error| failed(format!("the runtime handed over no terminal: {error}")))?;
        let master = crate::exec::receive_fd(stream)
            .map_err(|message| failed(format!("terminal hand-over: {message}")))?;
        let _ = std::fs::remove_file(&self.path);
        let dir = File::open(run_dir).map_err(|error| RuntimeError::io("open", run_dir, error))?;
        let attach_path =
            crate::terminal::short_path(std::process::id(), &dir, crate::terminal::ATTACH_SOCKET);
        let _ = std::fs::remove_file(&attach_path);
        let listener = std::os::unix::net::UnixListener::bind(&attach_path)
            .and_then(|listener| listener.set_nonblocking(true).map(|()| listener))
            .map_err(|error| RuntimeError::io("listen for attaches in", run_dir, error))?;
        Ok(Terminal {
            master,
            listener,
            attached: None,
            unseen: Vec::new(),
            run_dir: dir,
        })
    }
}

/// A mount namespace of the monitor's own, a slave of the host's: what is mounted or
/// unmounted here stays here, while the host's mounts and unmounts still propagate in, so
/// a long-lived monitor does not pin a filesystem that the host unmounts later.
fn private_mount_namespace() -> Result<(), Errno> {
    unshare(CloneFlags::CLONE_NEWNS)?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )
}

/// Wires the instance's network namespace to the bridge when it uses it, before the instance
/// starts, so that its network is up from its first instruction; returns its address there.
fn connect_network(
    config: &MonitorConfig,
    id: &str,
) -> Result<Option<std::net::Ipv4Addr>, RuntimeError> {
    if !config.bridge() {
        return Ok(None);
    }
    let ports: Vec<ward_spec::PortMapping> =
        config.ports.iter().map(|port| port.to_mapping()).collect();
    let namespace = network_namespace_path(std::process::id());
    let address =
        network::attach_bridge(Path::new(network::HOST_STATE_DIR), id, &namespace, &ports)?;
    if let Some(hosts_file) = &config.hosts_file {
        hosts::join(Path::new(hosts::HOSTS_STATE_DIR), id, address, hosts_file).map_err(
            |source| {
                RuntimeError::io(
                    "list the instance in its project's hosts files",
                    hosts_file,
                    source,
                )
            },
        )?;
    }
    Ok(Some(address))
}

/// Mounts the container's root: the image's layers under its own writable upper directory;
/// with an id range, the layers are first shown idmapped into it (only here, in the
/// monitor's mount namespace), and the upper directory is already owned by it.
fn mount_overlay(overlay: &OverlayMount) -> Result<(), Errno> {
    if let Some(range) = overlay.id_range {
        let user_namespace = idmount::user_namespace(range)?;
        idmount::idmap_in_place(&overlay.layers_root, &user_namespace)?;
    }
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        overlay.lower_dirs.join(":"),
        overlay.upper.display(),
        overlay.work.display()
    );
    nix::unistd::chdir(&overlay.layers_root)?;
    let mounted = mount(
        Some("overlay"),
        &overlay.target,
        Some("overlay"),
        MsFlags::empty(),
        Some(options.as_str()),
    );
    nix::unistd::chdir("/")?;
    mounted
}

/// crun refuses hybrid hosts; in the monitor's mount namespace without the v2 hierarchy it
/// runs them as v1 hosts. Only the monitor and its children see the change.
fn hide_cgroup2_hierarchy() -> Result<(), Errno> {
    match umount2(HYBRID_UNIFIED_MOUNT, MntFlags::MNT_DETACH) {
        Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => Ok(()),
        Err(error) => Err(error),
    }
}

/// Runs the instance (`run --detach`) and waits for the OCI runtime to exit. The write ends of
/// the workload's stdout and stderr go to the runtime, and so to the workload.
fn run_oci(
    config: &MonitorConfig,
    runtime: &OciProgram,
    paths: &InstancePaths,
    stdout: OwnedFd,
    stderr: OwnedFd,
    console_socket: Option<&Path>,
) -> Result<(), RuntimeError> {
    let mut command = oci::command(runtime, &config.oci_root);
    command
        .arg("--log")
        .arg(paths.oci_log())
        .args(["--log-format", "json", "run", "--detach"]);
    if let Some(socket) = console_socket {
        command.arg("--console-socket").arg(socket);
    }
    command
        .arg("--bundle")
        .arg(&paths.run)
        .arg("--pid-file")
        .arg(paths.container_pid())
        .arg(&config.container_id)
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(stderr));
    // The child starts with an empty signal mask and default dispositions but SIGPIPE's,
    // which the standard library resets too; without a `pre_exec` hook it is started
    // with `posix_spawn`, which does not copy the monitor's page tables as a fork would.
    let status = command
        .status()
        .map_err(|source| RuntimeError::io("run", &config.oci_runtime, source))?;
    drop(command);
    if status.success() {
        return Ok(());
    }
    let message = oci::last_logged_error(&paths.oci_log())
        .unwrap_or_else(|| format!("{} run exited with {status}", config.oci_runtime.display()));
    Err(RuntimeError::OciCommand {
        id: config.container_id.clone(),
        action: "run",
        message,
    })
}

fn read_pid(paths: &InstancePaths) -> Result<u32, RuntimeError> {
    let path = paths.container_pid();
    let text =
        std::fs::read_to_string(&path).map_err(|source| RuntimeError::io("read", &path, source))?;
    text.trim()
        .parse()
        .map_err(|_| RuntimeError::io("parse", &path, io::ErrorKind::InvalidData.into()))
}

/// Removes what a failed or finished instance leaves in the OCI runtime and on the bridge.
fn clean_up(config: &MonitorConfig, runtime: &OciProgram) {
    if let Err(error) = oci::delete_force(runtime, &config.oci_root, &config.container_id) {
        eprintln!("ward monitor: {error}");
    }
    if config.bridge() {
        if let Err(error) = hosts::leave(Path::new(hosts::HOSTS_STATE_DIR), &config.container_id) {
            eprintln!(
                "ward monitor: cannot take the instance out of its project's hosts files: {error}"
            );
        }
        if let Err(error) =
            network::detach(Path::new(network::HOST_STATE_DIR), &config.container_id)
        {
            eprintln!("ward monitor: {error}");
        }
    }
}

impl Running {
    /// Copies output into the log until the first process has exited and the pipes are
    /// drained (or [`DRAIN_AFTER_EXIT`] has passed).
    fn supervise(&mut self) -> Ended {
        let mut ended: Option<Ended> = None;
        let mut drain_deadline: Option<Instant> = None;
        let mut trim_at = Some(Instant::now() + TRIM_AFTER_START);
        let mut buffer = [0u8; READ_CHUNK_BYTES];
        loop {
            let attached = self
                .terminal
                .as_ref()
                .is_some_and(|terminal| terminal.attached.is_some());
            let open_streams = self
                .streams
                .iter()
                .enumerate()
                .filter(|(index, stream)| stream.pipe.is_some() && !(*index == 0 && attached))
                .count();
            if let Some(ended) = ended {
                let drained = open_streams == 0
                    || drain_deadline.is_some_and(|deadline| Instant::now() >= deadline);
                if drained {
                    return ended;
                }
            }
            if trim_at.is_some_and(|at| Instant::now() >= at) {
                trim_startup_pages();
                trim_at = None;
            }
            let timeout = match drain_deadline.into_iter().chain(trim_at).min() {
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    PollTimeout::try_from(left.as_millis().saturating_add(1))
                        .unwrap_or(PollTimeout::MAX)
                }
                None => PollTimeout::NONE,
            };

            let mut poll_fds = Vec::with_capacity(5);
            poll_fds.push(PollFd::new(self.signals.as_fd(), PollFlags::POLLIN));
            let mut polled_streams = [false; 2];
            // An attached client reads the terminal itself.
            let attached = self
                .terminal
                .as_ref()
                .is_some_and(|terminal| terminal.attached.is_some());
            for (index, stream) in self.streams.iter().enumerate() {
                if let Some(pipe) = &stream.pipe {
                    if index == 0 && attached {
                        continue;
                    }
                    poll_fds.push(PollFd::new(pipe.as_fd(), PollFlags::POLLIN));
                    polled_streams[index] = true;
                }
            }
            if let Some(terminal) = &self.terminal {
                poll_fds.push(PollFd::new(terminal.listener.as_fd(), PollFlags::POLLIN));
                if let Some(client) = &terminal.attached {
                    poll_fds.push(PollFd::new(client.as_fd(), PollFlags::POLLIN));
                }
            }
            match poll(&mut poll_fds, timeout) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(error) => {
                    eprintln!("ward monitor: poll: {error}");
                    return ended.unwrap_or(Ended::Signaled(libc::SIGKILL));
                }
            }
            let ready: Vec<bool> = poll_fds
                .iter()
                .map(|poll_fd| poll_fd.any().unwrap_or(false))
                .collect();
            // A terminal whose other side closed reads EIO at once; one that merely looked
            // readable may have had its bytes taken by a client that just detached.
            let hung_up: Vec<bool> = poll_fds
                .iter()
                .map(|poll_fd| {
                    poll_fd.revents().is_some_and(|events| {
                        events.intersects(PollFlags::POLLHUP | PollFlags::POLLERR)
                    })
                })
                .collect();
            drop(poll_fds);

            let mut ready = ready.into_iter();
            if ready.next().unwrap_or(false) {
                while let Ok(Some(_)) = self.signals.read_signal() {}
                if let Some(reaped) = self.reap_children() {
                    ended = Some(reaped);
                    drain_deadline = Some(Instant::now() + DRAIN_AFTER_EXIT);
                }
            }
            let mut position = 1;
            for (index, polled) in polled_streams.into_iter().enumerate() {
                if !polled {
                    continue;
                }
                let hangup = hung_up.get(position).copied().unwrap_or(false);
                position += 1;
                if ready.next().unwrap_or(false) {
                    self.read_stream(index, &mut buffer, hangup);
                }
            }
            if let Some(terminal) = &mut self.terminal {
                if ready.next().unwrap_or(false) {
                    terminal.accept();
                }
                if attached && ready.next().unwrap_or(false) {
                    terminal.check_attached();
                }
            }
        }
    }

    /// Reaps every exited child; returns how the instance's first process ended, if it did.
    fn reap_children(&self) -> Option<Ended> {
        let mut ended = None;
        loop {
            match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid.as_raw() as u32 == self.pid => {
                    ended = Some(Ended::Exited(code))
                }
                Ok(WaitStatus::Signaled(pid, signal, _)) if pid.as_raw() as u32 == self.pid => {
                    ended = Some(Ended::Signaled(signal as i32))
                }
                Ok(WaitStatus::StillAlive) | Err(_) => return ended,
                Ok(_) => {}
            }
        }
    }

    fn read_stream(&mut self, index: usize, buffer: &mut [u8], hangup: bool) {
        let stream = &mut self.streams[index];
        let Some(pipe) = &stream.pipe else { return };
        // The terminal's master blocks (an attached client shares it): one read per wake-up,
        // and none when nothing is there to read (a client that just detached may have taken
        // it) unless the other side has closed.
        let terminal = if index == 0 {
            self.terminal.as_mut()
        } else {
            None
        };
        if terminal.is_some() && !hangup && bytes_waiting(pipe) == 0 {
            return;
        }
        let once = terminal.is_some();
        let mut terminal = terminal;
        loop {
            match nix::unistd::read(pipe, buffer) {
                Ok(0) => break,
                Ok(read) => {
                    if let Err(error) = stream.splitter.push(&buffer[..read], &mut self.log) {
                        eprintln!("ward monitor: write log: {error}");
                    }
                    if let Some(terminal) = terminal.as_mut() {
                        crate::terminal::remember(&mut terminal.unseen, &buffer[..read]);
                    }
                    if once {
                        return;
                    }
                }
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return,
                // The terminal's other side closed: every process on it has gone.
                Err(Errno::EIO) if once => break,
                Err(error) => {
                    eprintln!("ward monitor: read {:?}: {error}", stream.splitter.stream);
                    break;
                }
            }
        }
        // End of the stream.
        if let Err(error) = stream.splitter.finish(&mut self.log) {
            eprintln!("ward monitor: write log: {error}");
        }
        stream.pipe = None;
    }

    /// Records the exit, deletes the container and its network, and removes `state.json`.
    fn finish(&mut self, ended: Ended) {
        if let Some(terminal) = self.terminal.take() {
            terminal.close();
        }
        let paths = &self.paths;
        for stream in &mut self.streams {
            if let Err(error) = stream.splitter.finish(&mut self.log) {
                eprintln!("ward monitor: write log: {error}");
            }
            stream.pipe = None;
        }
        let (exit_code, signal) = match ended {
            Ended::Exited(code) => (Some(code), None),
            Ended::Signaled(signal) => (None, Some(signal)),
        };
        let killed = signal == Some(libc::SIGKILL);
        let record = ExitRecord {
            exit_code,
            signal,
            oom_killed: cgroup::oom_killed(
                self.config.cgroup_mode,
                &self.config.memory_cgroup,
                killed,
            ),
            finished_at: SystemTime::now(),
            monitor_pid: Some(std::process::id()),
        };
        if let Err(error) = paths.record_exit(&record) {
            eprintln!("ward monitor: {error}");
        }
        clean_up(&self.config, &self.runtime);
        if let Err(error) = remove_file_if_exists(&paths.state()) {
            eprintln!("ward monitor: {error}");
        }
    }
}
