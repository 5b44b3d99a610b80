//! How the daemon starts monitors: every instance gets a monitor that was started before it
//! was known, a spare waiting since the last start or, when none is waiting, one started for it.
//!
//! Starting the monitor (fork of the daemon, exec of `ward`, dynamic linking) and making the
//! instance's network namespace are fixed costs of every start. A spare pays them before they
//! are needed: `ward monitor --spare` starts with the sync pipe as fd 3 and the sealed runtime as
//! fd 4, makes a network namespace, and blocks reading its orders on fd 5. The daemon reserves
//! it, writes the bundle (which names the spare's namespace), writes the instance directory to
//! fd 5 and closes the pipe; the spare then becomes that instance's monitor, and once the start
//! is over a new spare is started in the background. When the daemon goes away, the spare reads
//! end-of-file and exits, so spares never outlive it.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use nix::fcntl::OFlag;

use crate::instance::InstancePaths;
use crate::monitor::{ORDERS_FD, SPARE_FLAG, SYNC_FD};
use crate::oci::{self, OciProgram};
use crate::pidfd::reap_if_child;
use crate::RuntimeError;

/// Room reserved on a spare's command line for the instance directory it is given later
/// (beyond the data directory's own length): `instances/PROJECT/NAME/REPLICA`, each name at
/// most 63 bytes.
const COMMAND_LINE_ROOM: usize = 256;

/// How long after a start its replacement spare is started.
const REFILL_DELAY: Duration = Duration::from_millis(30);

/// Starts monitors; cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct MonitorLauncher {
    inner: Arc<LauncherInner>,
}

#[derive(Debug)]
struct LauncherInner {
    ward_executable: PathBuf,
    runtime: OciProgram,
    /// Bytes of padding on a spare's command line (see [`COMMAND_LINE_ROOM`]).
    spare_padding: usize,
    spare: Mutex<Option<Spare>>,
    /// Wakes the thread that starts replacement spares; it ends when this is dropped.
    refills: Sender<()>,
}

/// A monitor waiting for its orders.
#[derive(Debug)]
pub(crate) struct Spare {
    pid: u32,
    orders: File,
    sync_read: OwnedFd,
}

/// A monitor that was given an instance: its pid and the read end of its sync pipe.
pub(crate) struct Launched {
    pub pid: u32,
    pub sync_read: OwnedFd,
}

impl MonitorLauncher {
    /// A launcher of `ward_executable` monitors for instances under `data_dir`, with one spare
    /// started at once (if that fails, starts just take longer).
    pub fn new(ward_executable: PathBuf, runtime: OciProgram, data_dir: &Path) -> MonitorLauncher {
        let (refills, requests) = mpsc::channel();
        let launcher = MonitorLauncher {
            inner: Arc::new(LauncherInner {
                ward_executable,
                runtime,
                spare_padding: data_dir.as_os_str().len() + COMMAND_LINE_ROOM,
                spare: Mutex::new(None),
                refills,
            }),
        };
        let weak = Arc::downgrade(&launcher.inner);
        if let Err(error) = std::thread::Builder::new()
            .name("ward-spares".to_string())
            .spawn(move || refill_on_request(&weak, &requests))
        {
            tracing::warn!(%error, "cannot start the spare monitor thread; starts take longer");
        }
        launcher.refill_now();
        launcher
    }

    /// A monitor for an instance about to start: the spare if one is waiting, else one started
    /// now. Its pid goes into the instance's bundle (see `monitor::network_namespace_path`)
    /// before [`Spare::hand_over`] gives it the instance; the caller calls
    /// [`MonitorLauncher::refill`] once the start is over.
    pub fn reserve(&self, id: &str) -> Result<Spare, RuntimeError> {
        let taken = self
            .inner
            .spare
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .take();
        match taken {
            Some(spare) => Ok(spare),
            None => self.start_monitor(id),
        }
    }

    /// A monitor started now for the instance `id`.
    pub fn start_monitor(&self, id: &str) -> Result<Spare, RuntimeError> {
        self.spawn_spare()
            .map_err(|source| RuntimeError::MonitorSpawn {
                id: id.to_string(),
                executable: self.inner.ward_executable.clone(),
                source,
            })
    }

    /// Keeps a reserved monitor that was not handed an instance as the spare, unless another
    /// is already waiting.
    pub fn put_back(&self, spare: Spare) {
        let mut slot = self
            .inner
            .spare
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        match *slot {
            None => *slot = Some(spare),
            Some(_) => spare.retire(),
        }
    }

    /// Starts a new spare in the background, [`REFILL_DELAY`] from now, unless one is waiting
    /// by then. Called when a start is over, so that the fork and exec of the spare compete
    /// with neither the start nor the reply and the client's exit that follow it.
    pub fn refill(&self) {
        let _ = self.inner.refills.send(());
    }

    /// Starts a spare unless one is waiting.
    fn refill_now(&self) {
        let mut slot = self
            .inner
            .spare
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if slot.is_some() {
            return;
        }
        match self.spawn_spare() {
            Ok(spare) => *slot = Some(spare),
            Err(error) => tracing::warn!(%error, "cannot start a spare monitor"),
        }
    }

    fn spawn_spare(&self) -> io::Result<Spare> {
        let (sync_read, sync_write) = pipe()?;
        let (orders_read, orders_write) = pipe()?;
        let mut command = Command::new(&self.inner.ward_executable);
        command
            .arg("monitor")
            .arg(SPARE_FLAG)
            .arg("-".repeat(self.inner.spare_padding))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let pid = self.spawn(command, sync_write, Some(orders_read))?;
        Ok(Spare {
            pid,
            orders: File::from(orders_write),
            sync_read,
        })
    }

    /// Spawns `command` in its own session with stdin from /dev/null, `sync_write` as fd 3,
    /// the sealed runtime (if any) as fd 4 and `orders` (if any) as fd 5.
    fn spawn(
        &self,
        mut command: Command,
        sync_write: OwnedFd,
        orders: Option<OwnedFd>,
    ) -> io::Result<u32> {
        // The sources are moved above the descriptors the child gets, so that placing one
        // never overwrites another (a daemon started with stdio closed can also get a pipe end
        // below 3, which the child's stdio set-up would overwrite).
        let sync_write = oci::above_monitor_descriptors(sync_write)?;
        let orders = orders.map(oci::above_monitor_descriptors).transpose()?;
        let placements: [(Option<RawFd>, RawFd); 3] = [
            (Some(sync_write.as_raw_fd()), SYNC_FD),
            (self.inner.runtime.sealed_fd(), oci::SEALED_RUNTIME_FD),
            (orders.as_ref().map(AsRawFd::as_raw_fd), ORDERS_FD),
        ];
        command.stdin(Stdio::null());
        // SAFETY: setsid, dup2 and fcntl are async-signal-safe and touch only descriptors this
        // closure was given; dup2 leaves the new descriptors inheritable.
        unsafe {
            command.pre_exec(move || {
                if libc::setsid() < 0 {
                    return Err(io::Error::last_os_error());
                }
                for (source, target) in placements {
                    let Some(source) = source else { continue };
                    // dup2 onto itself changes nothing, close-on-exec included: clear it.
                    let placed = if source == target {
                        libc::fcntl(target, libc::F_SETFD, 0)
                    } else {
                        libc::dup2(source, target)
                    };
                    if placed < 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = command.spawn()?;
        Ok(child.id())
    }
}

/// The spare thread: for each request, waits [`REFILL_DELAY`] (requests arriving meanwhile
/// count as one), then starts a spare unless one is waiting. Returns when the launcher is gone.
fn refill_on_request(launcher: &Weak<LauncherInner>, requests: &Receiver<()>) {
    while requests.recv().is_ok() {
        std::thread::sleep(REFILL_DELAY);
        while requests.try_recv().is_ok() {}
        let Some(inner) = launcher.upgrade() else {
            return;
        };
        MonitorLauncher { inner }.refill_now();
    }
}

impl Spare {
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Sends the spare away: it exits as its orders pipe closes, and a thread reaps it.
    fn retire(self) {
        let pid = self.pid;
        drop(self);
        let reaped = std::thread::Builder::new()
            .name("ward-spare-reap".into())
            .spawn(move || {
                if let Ok(raw) = libc::pid_t::try_from(pid) {
                    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(raw), None);
                }
            });
        if let Err(error) = reaped {
            tracing::debug!(%error, pid, "cannot reap a retired spare monitor");
        }
    }

    /// Gives the spare the instance at `paths`; fails if the spare has died.
    pub fn hand_over(mut self, paths: &InstancePaths) -> io::Result<Launched> {
        let mut order = paths.run.as_os_str().as_encoded_bytes().to_vec();
        order.push(b'\n');
        if let Err(error) = self.orders.write_all(&order) {
            // How it ended says why: a signal from elsewhere, or an exit of its own.
            let ended = match reap_if_child(self.pid) {
                Some(status) => format!("{status:?}"),
                None => "not reaped here".to_string(),
            };
            return Err(io::Error::new(
                error.kind(),
                format!("monitor {} is gone ({ended}): {error}", self.pid),
            ));
        }
        Ok(Launched {
            pid: self.pid,
            sync_read: self.sync_read,
        })
    }
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(io::Error::from)
}
