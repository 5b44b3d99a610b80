//! Unpacking one image layer (a tar stream, possibly compressed) into a directory, refusing
//! every entry that would land outside it.
//!
//! Nothing here follows a symlink. Every parent directory is opened with `openat2`
//! (`RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS`) relative to the
//! destination, and the final component is created with `*at` calls relative to that parent,
//! so an entry cannot reach outside the destination through `..`, an absolute path, or a
//! symlink planted by an earlier entry or layer.
//!
//! Whiteouts (`.wh.NAME`, `.wh..wh..opq`) become overlayfs whiteouts
//! ([`WhiteoutFormat::Overlay`]) or are applied to a flattened tree ([`WhiteoutFormat::Apply`]).

use std::cell::Cell;
use std::collections::HashSet;
use std::ffi::{CStr, CString, OsStr, OsString};
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{self, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{self, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{self, Gid, Uid, UnlinkatFlags};
use tar::EntryType;
use tracing::{debug, warn};

use crate::digest::{Digest, HashingReader};
use crate::manifest::Compression;

/// Most bytes of tar headers and extension records (GNU long names, PAX records) read before
/// one entry. Go's `archive/tar` allows 1 MiB per extension record; an entry has at most
/// three of them. Without this bound a single long-name record could fill memory.
pub const MAX_HEADER_BYTES: u64 = 4 * 1024 * 1024;

/// Bounds on what one layer may contain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnpackLimits {
    /// Most bytes of uncompressed tar stream: headers, contents and padding.
    pub max_bytes: u64,
    /// Most tar entries.
    pub max_entries: u64,
}

impl Default for UnpackLimits {
    fn default() -> UnpackLimits {
        UnpackLimits {
            max_bytes: 64 * 1024 * 1024 * 1024,
            max_entries: 1_000_000,
        }
    }
}

/// What to do with whiteout entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhiteoutFormat {
    /// The destination will be an overlayfs lower directory: `.wh.NAME` becomes a 0:0
    /// character device `NAME`, `.wh..wh..opq` becomes `trusted.overlay.opaque=y` on its
    /// directory.
    Overlay,
    /// The destination is a flattened root that earlier layers were applied to: `.wh.NAME`
    /// removes `NAME`, `.wh..wh..opq` removes what earlier layers put in its directory.
    Apply,
}

/// What a layer turned out to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnpackOutcome {
    /// The digest of the uncompressed tar stream; compare with the config's `rootfs.diff_ids`.
    pub diff_id: Digest,
    /// Length of the uncompressed tar stream.
    pub bytes: u64,
    /// Tar entries in the layer, including skipped ones.
    pub entries: u64,
}

/// Why a layer could not be unpacked. `entry` names the tar entry involved, quoted.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("cannot open layer destination {path}: {source}")]
    Destination {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read layer stream at entry {entry}: {source}")]
    Stream {
        entry: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "layer is larger than the {limit} uncompressed bytes allowed (stopped at entry {entry})"
    )]
    TooManyBytes { entry: String, limit: u64 },
    #[error(
        "layer has more than {limit} bytes of tar headers before one entry (after entry {entry})"
    )]
    HeadersTooLarge { entry: String, limit: u64 },
    #[error("layer has more than {limit} entries (stopped at entry {entry})")]
    TooManyEntries { entry: String, limit: u64 },
    #[error("refusing layer entry {entry}: {reason}")]
    Refused { entry: String, reason: Refusal },
    #[error("cannot {action} for layer entry {entry}: {source}")]
    Write {
        entry: String,
        action: &'static str,
        #[source]
        source: io::Error,
    },
}

/// Why an entry was refused. Paths and targets are quoted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("its path is absolute")]
    AbsolutePath,
    #[error("its path has a `..` component")]
    ParentComponent,
    #[error("its path or link target contains a NUL byte")]
    NulByte,
    #[error("its {field} field is malformed")]
    BadHeader { field: &'static str },
    #[error("it names the layer root but is not a directory")]
    RootNotDirectory,
    #[error("its type flag {type_flag:?} is not one that layers may use")]
    UnsupportedType { type_flag: char },
    #[error("it is a whiteout that names nothing to delete")]
    InvalidWhiteout,
    #[error("its link target is empty")]
    EmptyLinkTarget,
    #[error("its symlink target {target} climbs above the layer root")]
    SymlinkEscapes { target: String },
    #[error("its hardlink target {target} is absolute")]
    HardlinkAbsolute { target: String },
    #[error("its hardlink target {target} has a `..` component")]
    HardlinkParentComponent { target: String },
    #[error("its hardlink target {target} does not exist in the layer")]
    HardlinkMissing { target: String },
    #[error("its hardlink target {target} is a directory")]
    HardlinkToDirectory { target: String },
    #[error("it is a hardlink to itself")]
    HardlinkToItself,
    #[error("it would be written through the symlink {at}")]
    ThroughSymlink { at: String },
    #[error("it would be written through {at}, which is not a directory")]
    ThroughNonDirectory { at: String },
    #[error("it resolves outside the layer root")]
    Escapes,
}

/// Unpacks one layer into `dest`.
///
/// `reader` is the layer blob as stored (compressed per `compression`). `dest` is an existing,
/// empty directory (for [`WhiteoutFormat::Overlay`]) or the flattened root being built (for
/// [`WhiteoutFormat::Apply`]). The whole stream is read, trailing padding included, so that
/// the returned `diff_id` covers it. On error, `dest` holds a partial layer; nothing outside
/// it has been touched.
pub fn unpack_layer(
    reader: impl Read,
    compression: Compression,
    dest: &Path,
    limits: &UnpackLimits,
    format: WhiteoutFormat,
) -> Result<UnpackOutcome, UnpackError> {
    let root = fcntl::open(
        dest,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|errno| UnpackError::Destination {
        path: dest.to_path_buf(),
        source: errno.into(),
    })?;
    let decompressed: Box<dyn Read + '_> = match compression {
        Compression::None => Box::new(BufReader::with_capacity(64 * 1024, reader)),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(reader)),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::new(reader).map_err(|source| {
                UnpackError::Stream {
                    entry: START.to_string(),
                    source,
                }
            })?)
        }
    };
    let guard = Rc::new(StreamGuard::new(limits.max_bytes));
    let guarded = GuardedReader {
        inner: decompressed,
        guard: Rc::clone(&guard),
    };
    let mut archive = tar::Archive::new(HashingReader::new(guarded));
    let mut unpacker = Unpacker {
        root,
        format,
        guard: Rc::clone(&guard),
        written: HashSet::new(),
        directory_times: Vec::new(),
        content_bytes: 0,
        buffer: vec![0; 64 * 1024],
    };
    let mut entry_count = 0u64;
    let mut last_entry = START.to_string();
    {
        let mut entries = archive
            .entries()
            .map_err(|source| guard.stream_error(&last_entry, source))?;
        loop {
            guard.begin_headers();
            let next = entries.next();
            guard.end_headers();
            let mut entry = match next {
                None => break,
                Some(Ok(entry)) => entry,
                Some(Err(source)) => return Err(guard.stream_error(&last_entry, source)),
            };
            last_entry = describe(&entry.path_bytes());
            entry_count += 1;
            if entry_count > limits.max_entries {
                return Err(UnpackError::TooManyEntries {
                    entry: last_entry,
                    limit: limits.max_entries,
                });
            }
            if entry.size() > limits.max_bytes {
                return Err(UnpackError::TooManyBytes {
                    entry: last_entry,
                    limit: limits.max_bytes,
                });
            }
            unpacker.unpack_entry(&mut entry, &last_entry)?;
            // Whatever the entry did not consume (data of a skipped entry) is read here, so
            // that only headers count against MAX_HEADER_BYTES.
            io::copy(&mut entry, &mut io::sink())
                .map_err(|source| guard.stream_error(&last_entry, source))?;
        }
    }
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink())
        .map_err(|source| guard.stream_error(&last_entry, source))?;
    unpacker.set_directory_times();
    let (diff_id, bytes) = rest.finish();
    Ok(UnpackOutcome {
        diff_id,
        bytes,
        entries: entry_count,
    })
}

/// How errors name the position before the first entry.
const START: &str = "(start of layer)";

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_WHITEOUT: &[u8] = b".wh..wh..opq";
const OVERLAY_OPAQUE_XATTR: &CStr = c"trusted.overlay.opaque";

/// Flags for every directory opened here: never through a symlink.
const DIRECTORY_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

/// Counts the uncompressed stream against the limits; shared between the reader inside the
/// tar parser and the code that turns its errors into [`UnpackError`]s.
struct StreamGuard {
    max_bytes: u64,
    total: Cell<u64>,
    /// Bytes read since the parser started looking for the next entry; `None` while an
    /// entry's contents are read.
    header_bytes: Cell<Option<u64>>,
    tripped: Cell<Option<Tripped>>,
}

#[derive(Clone, Copy)]
enum Tripped {
    Bytes,
    Headers,
}

impl StreamGuard {
    fn new(max_bytes: u64) -> StreamGuard {
        StreamGuard {
            max_bytes,
            total: Cell::new(0),
            header_bytes: Cell::new(None),
            tripped: Cell::new(None),
        }
    }

    fn begin_headers(&self) {
        self.header_bytes.set(Some(0));
    }

    fn end_headers(&self) {
        self.header_bytes.set(None);
    }

    /// How many bytes the next read may return: one past the limit, so that going over is
    /// seen.
    fn allowance(&self, wanted: usize) -> usize {
        let left = self
            .max_bytes
            .saturating_sub(self.total.get())
            .saturating_add(1);
        usize::try_from(left).map_or(wanted, |left| left.min(wanted))
    }

    fn count(&self, bytes: usize) -> io::Result<()> {
        let bytes = bytes as u64;
        self.total.set(self.total.get().saturating_add(bytes));
        if self.total.get() > self.max_bytes {
            return Err(self.trip(Tripped::Bytes));
        }
        if let Some(header_bytes) = self.header_bytes.get() {
            let header_bytes = header_bytes.saturating_add(bytes);
            self.header_bytes.set(Some(header_bytes));
            if header_bytes > MAX_HEADER_BYTES {
                return Err(self.trip(Tripped::Headers));
            }
        }
        Ok(())
    }

    fn trip(&self, tripped: Tripped) -> io::Error {
        self.tripped.set(Some(tripped));
        io::Error::other("layer limit exceeded")
    }

    /// The error for a failed read of the stream: a limit if one was hit, else the cause.
    fn stream_error(&self, entry: &str, source: io::Error) -> UnpackError {
        let entry = entry.to_string();
        match self.tripped.get() {
            Some(Tripped::Bytes) => UnpackError::TooManyBytes {
                entry,
                limit: self.max_bytes,
            },
            Some(Tripped::Headers) => UnpackError::HeadersTooLarge {
                entry,
                limit: MAX_HEADER_BYTES,
            },
            None => UnpackError::Stream { entry, source },
        }
    }
}

struct GuardedReader<R> {
    inner: R,
    guard: Rc<StreamGuard>,
}

impl<R: Read> Read for GuardedReader<R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        if self.guard.tripped.get().is_some() {
            return Err(io::Error::other("layer limit exceeded"));
        }
        let allowed = self.guard.allowance(buffer.len());
        let count = self.inner.read(&mut buffer[..allowed])?;
        self.guard.count(count)?;
        Ok(count)
    }
}

/// Ownership, mode, time and extended attributes of one entry.
struct Attributes {
    mode: Mode,
    owner: Uid,
    group: Gid,
    modified: TimeSpec,
    xattrs: Vec<(CString, Vec<u8>)>,
}

/// The state of one layer being unpacked.
struct Unpacker {
    root: OwnedFd,
    format: WhiteoutFormat,
    guard: Rc<StreamGuard>,
    /// Paths this layer created or declared (only for [`WhiteoutFormat::Apply`]), which an
    /// opaque whiteout in this layer keeps.
    written: HashSet<PathBuf>,
    /// Directory mtimes, set once everything inside them is written.
    directory_times: Vec<(PathBuf, TimeSpec)>,
    /// File contents written so far. The holes of sparse files are written out as zeros
    /// without being read from the stream, so they are counted here against the byte limit.
    content_bytes: u64,
    buffer: Vec<u8>,
}

impl Unpacker {
    fn unpack_entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        name: &str,
    ) -> Result<(), UnpackError> {
        let raw_path = entry.path_bytes().into_owned();
        // `/` alone names the root, as Docker and containerd read it (`umoci insert DIR /`
        // writes such an entry); every other absolute path is refused.
        let names_the_root = !raw_path.is_empty() && raw_path.iter().all(|byte| *byte == b'/');
        let path = if names_the_root {
            PathBuf::new()
        } else {
            normalise(&raw_path).map_err(|reason| refused(name, reason))?
        };
        let kind = entry.header().entry_type();
        let file_name = path.file_name().map(OsStr::as_bytes);
        if let Some(file_name) =
            file_name.filter(|file_name| file_name.starts_with(WHITEOUT_PREFIX))
        {
            return self.whiteout(name, &path, file_name);
        }
        match kind {
            EntryType::Char | EntryType::Block => {
                debug!(entry = %name, "skipping device node in layer");
                Ok(())
            }
            EntryType::XGlobalHeader => {
                debug!(entry = %name, "skipping pax global header in layer");
                Ok(())
            }
            EntryType::Directory => self.directory(entry, name, &path),
            // Old tar formats mark directories only by a trailing slash.
            EntryType::Regular if raw_path.ends_with(b"/") => self.directory(entry, name, &path),
            _ if file_name.is_none() => Err(refused(name, Refusal::RootNotDirectory)),
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.regular_file(entry, name, &path)
            }
            EntryType::Symlink => self.symlink(entry, name, &path),
            EntryType::Link => self.hardlink(entry, name, &path),
            EntryType::Fifo => self.fifo(entry, name, &path),
            other => Err(refused(
                name,
                Refusal::UnsupportedType {
                    type_flag: char::from(other.as_byte()),
                },
            )),
        }
    }

    fn regular_file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        name: &str,
        path: &Path,
    ) -> Result<(), UnpackError> {
        let attributes = attributes(entry, name)?;
        let (parent, file_name) = self.open_parent(name, path)?;
        self.make_room(name, &parent, file_name, false)?;
        let file = fcntl::openat(
            &parent,
            file_name,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(|errno| failed(name, "create file", errno))?;
        let mut file = File::from(file);
        loop {
            let count = match entry.read(&mut self.buffer) {
                Ok(0) => break,
                Ok(count) => count,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(self.guard.stream_error(name, source)),
            };
            self.content_bytes = self.content_bytes.saturating_add(count as u64);
            if self.content_bytes > self.guard.max_bytes {
                return Err(UnpackError::TooManyBytes {
                    entry: name.to_string(),
                    limit: self.guard.max_bytes,
                });
            }
            file.write_all(&self.buffer[..count])
                .map_err(|source| UnpackError::Write {
                    entry: name.to_string(),
                    action: "write file",
                    source,
                })?;
        }
        set_attributes(name, file.as_fd(), &attributes, true)?;
        stat::futimens(&file, &attributes.modified, &attributes.modified)
            .map_err(|errno| failed(name, "set modification time", errno))?;
        self.note_written(path);
        Ok(())
    }

    fn directory<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        name: &str,
        path: &Path,
    ) -> Result<(), UnpackError> {
        let attributes = attributes(entry, name)?;
        let directory = match path.file_name() {
            None => self.root.try_clone().map_err(|source| UnpackError::Write {
                entry: name.to_string(),
                action: "open layer root",
                source,
            })?,
            Some(file_name) => {
                let (parent, _) = self.open_parent(name, path)?;
                if !self.make_room(name, &parent, file_name, true)? {
                    stat::mkdirat(&parent, file_name, Mode::from_bits_truncate(0o700))
                        .map_err(|errno| failed(name, "create directory", errno))?;
                }
                open_beneath(parent.as_fd(), Path::new(file_name))
                    .map_err(|errno| failed(name, "open directory", errno))?
            }
        };
        set_attributes(name, directory.as_fd(), &attributes, true)?;
        self.directory_times
            .push((path.to_path_buf(), attributes.modified));
        self.note_written(path);
        Ok(())
    }

    fn symlink<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        name: &str,
        path: &Path,
    ) -> Result<(), UnpackError> {
        let attributes = attributes(entry, name)?;
        let target = link_target(entry, name)?;
        if !target.starts_with(b"/") {
            let depth = path.components().count() - 1;
            if climbs_above_root(depth, &target) {
                return Err(refused(
                    name,
                    Refusal::SymlinkEscapes {
                        target: describe(&target),
                    },
                ));
            }
        }
        let (parent, file_name) = self.open_parent(name, path)?;
        self.make_room(name, &parent, file_name, false)?;
        unistd::symlinkat(OsStr::from_bytes(&target), &parent, file_name)
            .map_err(|errno| failed(name, "create symlink", errno))?;
        unistd::fchownat(
            &parent,
            file_name,
            Some(attributes.owner),
            Some(attributes.group),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|errno| failed(name, "set symlink owner", errno))?;
        stat::utimensat(
            &parent,
            file_name,
            &attributes.modified,
            &attributes.modified,
            UtimensatFlags::NoFollowSymlink,
        )
        .map_err(|errno| failed(name, "set symlink modification time", errno))?;
        self.note_written(path);
        Ok(())
    }

    fn hardlink<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        name: &str,
        path: &Path,
    ) -> Result<(), UnpackError> {
        let raw_target = link_target(entry, name)?;
        let target_name = describe(&raw_target);
        let target = normalise(&raw_target).map_err(|reason| {
            let target = target_name.clone();
            refused(
                name,
                match reason {
                    Refusal::AbsolutePath => Refusal::HardlinkAbsolute { target },
                    Refusal::ParentComponent => Refusal::HardlinkParentComponent { target },
                    other => other,
                },
            )
        })?;
        if target == path {
            return Err(refused(name, Refusal::HardlinkToItself));
        }
        let Some(target_file_name) = target.file_name() else {
            return Err(refused(
                name,
                Refusal::HardlinkToDirectory {
                    target: target_name,
                },
            ));
        };
        let missing = || {
            refused(
                name,
                Refusal::HardlinkMissing {
                    target: target_name.clone(),
                },
            )
        };
        let target_parent = self
            .open_directory(name, target.parent().unwrap_or(Path::new("")), false)?
            .ok_or_else(missing)?;
        match stat::fstatat(
            &target_parent,
            target_file_name,
            AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(status) if is_directory(status.st_mode) => {
                return Err(refused(
                    name,
                    Refusal::HardlinkToDirectory {
                        target: target_name.clone(),
                    },
                ));
            }
            Ok(_) => {}
            Err(Errno::ENOENT) => return Err(missing()),
            Err(errno) => return Err(failed(name, "inspect hardlink target", errno)),
        }
        let (parent, file_name) = self.open_parent(name, path)?;
        self.make_room(name, &parent, file_name, false)?;
        unistd::linkat(
            &target_parent,
            target_file_name,
            &parent,
            file_name,
            AtFlags::empty(),
        )
        .map_err(|errno| failed(name, "create hardlink", errno))?;
        self.note_written(path);
        Ok(())
    }

    fn fifo<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        name: &str,
        path: &Path,
    ) -> Result<(), UnpackError> {
        let attributes = attributes(entry, name)?;
        let (parent, file_name) = self.open_parent(name, path)?;
        self.make_room(name, &parent, file_name, false)?;
        stat::mknodat(
            &parent,
            file_name,
            SFlag::S_IFIFO,
            Mode::from_bits_truncate(0o600),
            0,
        )
        .map_err(|errno| failed(name, "create fifo", errno))?;
        // Opening a FIFO without O_NONBLOCK would wait for a writer.
        let fifo = fcntl::openat(
            &parent,
            file_name,
            OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|errno| failed(name, "open fifo", errno))?;
        // The kernel allows user.* attributes only on files and directories.
        set_attributes(name, fifo.as_fd(), &attributes, false)?;
        stat::futimens(&fifo, &attributes.modified, &attributes.modified)
            .map_err(|errno| failed(name, "set modification time", errno))?;
        self.note_written(path);
        Ok(())
    }

    fn whiteout(&mut self, name: &str, path: &Path, file_name: &[u8]) -> Result<(), UnpackError> {
        let directory = path.parent().unwrap_or(Path::new(""));
        if file_name == OPAQUE_WHITEOUT {
            return self.opaque(name, directory);
        }
        if file_name.starts_with(b".wh..wh.") {
            debug!(entry = %name, "skipping aufs metadata in layer");
            return Ok(());
        }
        let hidden = &file_name[WHITEOUT_PREFIX.len()..];
        if hidden.is_empty() || hidden == b"." || hidden == b".." {
            return Err(refused(name, Refusal::InvalidWhiteout));
        }
        let hidden = OsStr::from_bytes(hidden);
        match self.format {
            WhiteoutFormat::Overlay => {
                let (parent, _) = self.open_parent(name, path)?;
                self.make_room(name, &parent, hidden, false)?;
                stat::mknodat(
                    &parent,
                    hidden,
                    SFlag::S_IFCHR,
                    Mode::empty(),
                    stat::makedev(0, 0),
                )
                .map_err(|errno| failed(name, "create whiteout device", errno))
            }
            WhiteoutFormat::Apply => {
                if let Some(parent) = self.open_directory(name, directory, false)? {
                    self.make_room(name, &parent, hidden, false)?;
                }
                Ok(())
            }
        }
    }

    fn opaque(&mut self, name: &str, directory: &Path) -> Result<(), UnpackError> {
        let Some(opened) = self.open_directory(name, directory, true)? else {
            return Ok(()); // With `create`, a missing directory is created.
        };
        match self.format {
            WhiteoutFormat::Overlay => set_xattr(opened.as_fd(), OVERLAY_OPAQUE_XATTR, b"y")
                .map_err(|errno| failed(name, "mark directory opaque", errno)),
            WhiteoutFormat::Apply => self
                .remove_lower(opened.as_fd(), directory)
                .map_err(|errno| failed(name, "clear opaque directory", errno)),
        }
    }

    /// Removes everything under `directory` (at `path`) that this layer did not write.
    fn remove_lower(&self, directory: BorrowedFd<'_>, path: &Path) -> nix::Result<()> {
        for child in list_directory(directory)? {
            let child_path = path.join(&child);
            if !self.written.contains(&child_path) {
                remove_tree(directory, &child)?;
                continue;
            }
            let status = stat::fstatat(directory, child.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)?;
            if is_directory(status.st_mode) {
                let child_directory = open_beneath(directory, Path::new(&child))?;
                self.remove_lower(child_directory.as_fd(), &child_path)?;
            }
        }
        Ok(())
    }

    fn note_written(&mut self, path: &Path) {
        if self.format == WhiteoutFormat::Apply {
            self.written.insert(path.to_path_buf());
        }
    }

    /// Opens the parent of `path`, creating missing directories; returns it with the final
    /// component. `path` must not be the root.
    fn open_parent<'path>(
        &mut self,
        name: &str,
        path: &'path Path,
    ) -> Result<(OwnedFd, &'path OsStr), UnpackError> {
        let file_name = path.file_name().unwrap_or_default();
        let parent = self
            .open_directory(name, path.parent().unwrap_or(Path::new("")), true)?
            // With `create`, a missing directory is created rather than reported.
            .ok_or_else(|| refused(name, Refusal::Escapes))?;
        Ok((parent, file_name))
    }

    /// Opens the directory at `path` below the root without following symlinks. Missing
    /// directories are created (mode 0755) when `create` is set; otherwise `None` is returned.
    fn open_directory(
        &mut self,
        name: &str,
        path: &Path,
        create: bool,
    ) -> Result<Option<OwnedFd>, UnpackError> {
        if let Ok(directory) = open_beneath(self.root.as_fd(), path) {
            return Ok(Some(directory));
        }
        // Walk one component at a time to create what is missing and to say what is wrong.
        let mut current = open_beneath(self.root.as_fd(), Path::new(""))
            .map_err(|errno| failed(name, "open layer root", errno))?;
        let mut walked = PathBuf::new();
        for component in path.components() {
            let component = component.as_os_str();
            walked.push(component);
            let next = match open_beneath(current.as_fd(), Path::new(component)) {
                Ok(next) => next,
                Err(Errno::ENOENT) if create => {
                    stat::mkdirat(&current, component, Mode::from_bits_truncate(0o755))
                        .map_err(|errno| failed(name, "create parent directory", errno))?;
                    let next = open_beneath(current.as_fd(), Path::new(component))
                        .map_err(|errno| failed(name, "open parent directory", errno))?;
                    stat::fchmod(&next, Mode::from_bits_truncate(0o755))
                        .map_err(|errno| failed(name, "set parent directory mode", errno))?;
                    self.note_written(&walked);
                    next
                }
                Err(Errno::ENOENT) => return Ok(None),
                // openat2 reports a symlink as ELOOP or, with O_DIRECTORY, ENOTDIR.
                Err(Errno::ELOOP | Errno::ENOTDIR) => {
                    let at = describe(walked.as_os_str().as_bytes());
                    let is_symlink =
                        stat::fstatat(&current, component, AtFlags::AT_SYMLINK_NOFOLLOW)
                            .is_ok_and(|status| status.st_mode & libc::S_IFMT == libc::S_IFLNK);
                    return Err(refused(
                        name,
                        if is_symlink {
                            Refusal::ThroughSymlink { at }
                        } else {
                            Refusal::ThroughNonDirectory { at }
                        },
                    ));
                }
                Err(Errno::EXDEV) => return Err(refused(name, Refusal::Escapes)),
                Err(errno) => return Err(failed(name, "open parent directory", errno)),
            };
            current = next;
        }
        Ok(Some(current))
    }

    /// Clears `file_name` in `parent` for a new entry, never following a symlink. Returns
    /// whether an existing directory was kept (only when `keep_directory`).
    fn make_room(
        &self,
        name: &str,
        parent: &OwnedFd,
        file_name: &OsStr,
        keep_directory: bool,
    ) -> Result<bool, UnpackError> {
        match stat::fstatat(parent, file_name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Err(Errno::ENOENT) => Ok(false),
            Err(errno) => Err(failed(name, "inspect existing path", errno)),
            Ok(status) if keep_directory && is_directory(status.st_mode) => Ok(true),
            Ok(_) => {
                remove_tree(parent.as_fd(), file_name)
                    .map_err(|errno| failed(name, "remove existing path", errno))?;
                Ok(false)
            }
        }
    }

    /// Sets directory mtimes last, since writing inside a directory changes its mtime.
    fn set_directory_times(&self) {
        for (path, modified) in &self.directory_times {
            // A directory replaced or removed by a later entry has nothing to set.
            let Ok(directory) = open_beneath(self.root.as_fd(), path) else {
                continue;
            };
            if let Err(errno) = stat::futimens(&directory, modified, modified) {
                debug!(path = %path.display(), %errno, "cannot set directory modification time");
            }
        }
    }
}

fn refused(name: &str, reason: Refusal) -> UnpackError {
    UnpackError::Refused {
        entry: name.to_string(),
        reason,
    }
}

fn failed(name: &str, action: &'static str, errno: Errno) -> UnpackError {
    UnpackError::Write {
        entry: name.to_string(),
        action,
        source: errno.into(),
    }
}

/// A path or target for messages: quoted, lossy, and cut short.
fn describe(raw: &[u8]) -> String {
    const LIMIT: usize = 256;
    let text = String::from_utf8_lossy(&raw[..raw.len().min(LIMIT)]);
    if raw.len() > LIMIT {
        format!("{text:?}...")
    } else {
        format!("{text:?}")
    }
}

/// The entry path relative to the root, with `.` and empty components dropped; empty for the
/// root itself.
fn normalise(raw: &[u8]) -> Result<PathBuf, Refusal> {
    if raw.contains(&0) {
        return Err(Refusal::NulByte);
    }
    if raw.starts_with(b"/") {
        return Err(Refusal::AbsolutePath);
    }
    let mut path = PathBuf::new();
    for component in raw.split(|byte| *byte == b'/') {
        match component {
            b"" | b"." => {}
            b".." => return Err(Refusal::ParentComponent),
            component => path.push(OsStr::from_bytes(component)),
        }
    }
    Ok(path)
}

fn link_target<R: Read>(entry: &tar::Entry<'_, R>, name: &str) -> Result<Vec<u8>, UnpackError> {
    let target = entry.link_name_bytes().unwrap_or_default().into_owned();
    if target.is_empty() {
        return Err(refused(name, Refusal::EmptyLinkTarget));
    }
    if target.contains(&0) {
        return Err(refused(name, Refusal::NulByte));
    }
    Ok(target)
}

/// Whether a relative symlink target, resolved lexically from a directory `depth` levels
/// below the root, climbs above the root.
fn climbs_above_root(depth: usize, target: &[u8]) -> bool {
    let mut depth = depth;
    for component in target.split(|byte| *byte == b'/') {
        match component {
            b"" | b"." => {}
            b".." => match depth.checked_sub(1) {
                Some(parent) => depth = parent,
                None => return true,
            },
            _ => depth += 1,
        }
    }
    false
}

fn attributes<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    name: &str,
) -> Result<Attributes, UnpackError> {
    let bad = |field| refused(name, Refusal::BadHeader { field });
    let header = entry.header();
    let mode = header.mode().map_err(|_| bad("mode"))?;
    let owner = header
        .uid()
        .ok()
        .and_then(|uid| u32::try_from(uid).ok())
        .ok_or_else(|| bad("uid"))?;
    let group = header
        .gid()
        .ok()
        .and_then(|gid| u32::try_from(gid).ok())
        .ok_or_else(|| bad("gid"))?;
    let modified = header
        .mtime()
        .ok()
        .and_then(|mtime| i64::try_from(mtime).ok())
        .ok_or_else(|| bad("mtime"))?;
    let mut xattrs = Vec::new();
    if let Some(extensions) = entry.pax_extensions().map_err(|_| bad("pax extensions"))? {
        for extension in extensions {
            let extension = extension.map_err(|_| bad("pax extensions"))?;
            let Some(xattr) = extension.key_bytes().strip_prefix(b"SCHILY.xattr.") else {
                continue;
            };
            // trusted.* would let an image forge overlayfs metadata; security.* other than
            // file capabilities (SELinux labels) is the host's business.
            if !(xattr.starts_with(b"user.") || xattr == b"security.capability") {
                debug!(entry = %name, xattr = %String::from_utf8_lossy(xattr), "skipping extended attribute");
                continue;
            }
            let xattr = CString::new(xattr).map_err(|_| bad("pax extensions"))?;
            xattrs.push((xattr, extension.value_bytes().to_vec()));
        }
    }
    Ok(Attributes {
        mode: Mode::from_bits_truncate(mode & 0o7777),
        owner: Uid::from_raw(owner),
        group: Gid::from_raw(group),
        modified: TimeSpec::new(modified, 0),
        xattrs,
    })
}

/// Sets owner, then mode (a chown clears set-id bits), then extended attributes (a chown
/// clears `security.capability`).
fn set_attributes(
    name: &str,
    fd: BorrowedFd<'_>,
    attributes: &Attributes,
    with_xattrs: bool,
) -> Result<(), UnpackError> {
    unistd::fchown(fd, Some(attributes.owner), Some(attributes.group))
        .map_err(|errno| failed(name, "set owner", errno))?;
    stat::fchmod(fd, attributes.mode).map_err(|errno| failed(name, "set mode", errno))?;
    if !with_xattrs {
        return Ok(());
    }
    for (xattr, value) in &attributes.xattrs {
        match set_xattr(fd, xattr, value) {
            Ok(()) => {}
            Err(Errno::EOPNOTSUPP) => {
                warn!(entry = %name, xattr = %xattr.to_string_lossy(), "filesystem does not support extended attribute; skipped");
            }
            Err(errno) => return Err(failed(name, "set extended attribute", errno)),
        }
    }
    Ok(())
}

fn set_xattr(fd: BorrowedFd<'_>, xattr: &CStr, value: &[u8]) -> nix::Result<()> {
    // SAFETY: `fd` is open for the duration of the call, `xattr` is NUL-terminated and
    // `value` points to `value.len()` readable bytes.
    let result = unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            xattr.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    Errno::result(result).map(drop)
}

fn is_directory(mode: libc::mode_t) -> bool {
    mode & libc::S_IFMT == libc::S_IFDIR
}

/// Opens the directory at `path` (only normal components) below `directory`, never through a
/// symlink.
fn open_beneath(directory: BorrowedFd<'_>, path: &Path) -> nix::Result<OwnedFd> {
    let path = if path.as_os_str().is_empty() {
        Path::new(".")
    } else {
        path
    };
    let how = OpenHow::new().flags(DIRECTORY_FLAGS).resolve(
        ResolveFlag::RESOLVE_BENEATH
            | ResolveFlag::RESOLVE_NO_SYMLINKS
            | ResolveFlag::RESOLVE_NO_MAGICLINKS,
    );
    match fcntl::openat2(directory, path, how) {
        // Kernels before 5.6, or a seccomp filter that hides openat2: one O_NOFOLLOW open per
        // component is equivalent, since `path` has no `..` and every component is checked.
        Err(Errno::ENOSYS) => {
            let mut current = fcntl::openat(directory, ".", DIRECTORY_FLAGS, Mode::empty())?;
            for component in path.components() {
                current = fcntl::openat(
                    &current,
                    component.as_os_str(),
                    DIRECTORY_FLAGS,
                    Mode::empty(),
                )?;
            }
            Ok(current)
        }
        result => result,
    }
}

/// Names in `directory`, without `.` and `..`.
fn list_directory(directory: BorrowedFd<'_>) -> nix::Result<Vec<OsString>> {
    let mut listing = Dir::openat(directory, ".", DIRECTORY_FLAGS, Mode::empty())?;
    let mut names = Vec::new();
    for child in listing.iter() {
        let child = child?;
        let child_name = child.file_name().to_bytes();
        if child_name != b"." && child_name != b".." {
            names.push(OsStr::from_bytes(child_name).to_os_string());
        }
    }
    Ok(names)
}

/// Removes `file_name` in `parent` and, for a directory, everything in it, never following a
/// symlink.
fn remove_tree(parent: BorrowedFd<'_>, file_name: &OsStr) -> nix::Result<()> {
    let status = stat::fstatat(parent, file_name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
    if !is_directory(status.st_mode) {
        return unistd::unlinkat(parent, file_name, UnlinkatFlags::NoRemoveDir);
    }
    let directory = fcntl::openat(parent, file_name, DIRECTORY_FLAGS, Mode::empty())?;
    for child in list_directory(directory.as_fd())? {
        remove_tree(directory.as_fd(), &child)?;
    }
    unistd::unlinkat(parent, file_name, UnlinkatFlags::RemoveDir)
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    use std::panic::{self, AssertUnwindSafe};

    use tempfile::TempDir;

    use super::*;

    const MTIME: u64 = 1_600_000_000;

    /// A `security.capability` value (revision 2, effective, CAP_NET_RAW permitted).
    const CAPABILITY: [u8; 20] = [
        1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];

    fn running_as_root(test: &str) -> bool {
        let root = unistd::geteuid().is_root();
        if !root {
            eprintln!("skipping {test}: unpacking sets owners, device nodes and trusted.* xattrs, which needs root");
        }
        root
    }

    /// A layer tar built in memory.
    struct Layer {
        builder: tar::Builder<Vec<u8>>,
    }

    impl Layer {
        fn new() -> Layer {
            Layer {
                builder: tar::Builder::new(Vec::new()),
            }
        }

        fn header(kind: EntryType, mode: u32) -> tar::Header {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(kind);
            header.set_mode(mode);
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(MTIME);
            header.set_size(0);
            header
        }

        fn entry(mut self, mut header: tar::Header, path: &str, content: &[u8]) -> Layer {
            header.set_size(content.len() as u64);
            self.builder
                .append_data(&mut header, path, content)
                .unwrap();
            self
        }

        fn file(self, path: &str, mode: u32, content: &str) -> Layer {
            self.entry(
                Layer::header(EntryType::Regular, mode),
                path,
                content.as_bytes(),
            )
        }

        fn owned_file(self, path: &str, mode: u32, owner: u64, content: &str) -> Layer {
            let mut header = Layer::header(EntryType::Regular, mode);
            header.set_uid(owner);
            header.set_gid(owner + 1);
            self.entry(header, path, content.as_bytes())
        }

        fn directory(self, path: &str, mode: u32) -> Layer {
            self.entry(Layer::header(EntryType::Directory, mode), path, b"")
        }

        fn link(mut self, kind: EntryType, path: &str, target: &str) -> Layer {
            let mut header = Layer::header(kind, 0o777);
            header.set_uid(1000);
            header.set_gid(1001);
            self.builder.append_link(&mut header, path, target).unwrap();
            self
        }

        fn symlink(self, path: &str, target: &str) -> Layer {
            self.link(EntryType::Symlink, path, target)
        }

        fn hardlink(self, path: &str, target: &str) -> Layer {
            self.link(EntryType::Link, path, target)
        }

        fn special(self, kind: EntryType, path: &str, mode: u32) -> Layer {
            self.entry(Layer::header(kind, mode), path, b"")
        }

        fn pax(mut self, records: &[(&str, &[u8])]) -> Layer {
            self.builder
                .append_pax_extensions(records.iter().copied())
                .unwrap();
            self
        }

        /// An entry written without the builder's path checks, for hostile names.
        fn raw(mut self, kind: EntryType, path: &[u8], target: &[u8], content: &[u8]) -> Layer {
            let mut header = Layer::header(kind, 0o644);
            header.set_size(content.len() as u64);
            let old = header.as_old_mut();
            old.name[..path.len()].copy_from_slice(path);
            old.linkname[..target.len()].copy_from_slice(target);
            header.set_cksum();
            self.builder.append(&header, content).unwrap();
            self
        }

        fn bytes(self) -> Vec<u8> {
            self.builder.into_inner().unwrap()
        }
    }

    /// A destination with a sibling directory holding one file, which no layer may touch.
    struct Sandbox {
        temp: TempDir,
        dest: PathBuf,
        outside: PathBuf,
    }

    impl Sandbox {
        fn new() -> Sandbox {
            let temp = tempfile::tempdir().unwrap();
            let dest = temp.path().join("dest");
            let outside = temp.path().join("outside");
            fs::create_dir(&dest).unwrap();
            fs::create_dir(&outside).unwrap();
            fs::write(outside.join("secret"), "secret").unwrap();
            Sandbox {
                temp,
                dest,
                outside,
            }
        }

        fn unpack(
            &self,
            layer: &[u8],
            format: WhiteoutFormat,
        ) -> Result<UnpackOutcome, UnpackError> {
            unpack_layer(
                layer,
                Compression::None,
                &self.dest,
                &UnpackLimits::default(),
                format,
            )
        }

        fn outside(&self) -> String {
            self.outside.to_str().unwrap().to_string()
        }

        fn assert_outside_untouched(&self) {
            let mut siblings: Vec<_> = fs::read_dir(self.temp.path())
                .unwrap()
                .map(|child| child.unwrap().file_name())
                .collect();
            siblings.sort();
            assert_eq!(siblings, ["dest", "outside"]);
            assert_eq!(tree(&self.outside), "0644 0:0 secret = \"secret\"");
            let secret = fs::symlink_metadata(self.outside.join("secret")).unwrap();
            assert_eq!(secret.nlink(), 1, "a hardlink to the outside file was made");
        }
    }

    /// One line per path below `root`: mode, owner, path, and what it holds.
    fn tree(root: &Path) -> String {
        let mut lines = Vec::new();
        walk(root, Path::new(""), &mut lines);
        lines.join("\n")
    }

    fn walk(root: &Path, relative: &Path, lines: &mut Vec<String>) {
        let mut names: Vec<_> = fs::read_dir(root.join(relative))
            .unwrap()
            .map(|child| child.unwrap().file_name())
            .collect();
        names.sort();
        for name in names {
            let path = relative.join(name);
            let full = root.join(&path);
            let metadata = fs::symlink_metadata(&full).unwrap();
            let kind = metadata.file_type();
            let holds = if kind.is_dir() {
                "/".to_string()
            } else if kind.is_symlink() {
                format!(" -> {}", fs::read_link(&full).unwrap().display())
            } else if kind.is_file() {
                format!(
                    " = {:?}",
                    String::from_utf8_lossy(&fs::read(&full).unwrap())
                )
            } else if kind.is_fifo() {
                " (fifo)".to_string()
            } else if kind.is_char_device() {
                format!(
                    " (char {}:{})",
                    stat::major(metadata.rdev()),
                    stat::minor(metadata.rdev())
                )
            } else {
                " (other)".to_string()
            };
            lines.push(format!(
                "{:04o} {}:{} {}{holds}",
                metadata.mode() & 0o7777,
                metadata.uid(),
                metadata.gid(),
                path.display()
            ));
            if kind.is_dir() {
                walk(root, &path, lines);
            }
        }
    }

    fn xattr(path: &Path, name: &CStr) -> Option<Vec<u8>> {
        let path = CString::new(path.as_os_str().as_bytes()).unwrap();
        let mut value = vec![0u8; 256];
        // SAFETY: both strings are NUL-terminated and `value` has `value.len()` writable bytes.
        let length = unsafe {
            libc::lgetxattr(
                path.as_ptr(),
                name.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        let length = usize::try_from(length).ok()?;
        value.truncate(length);
        Some(value)
    }

    fn mtime(path: &Path) -> i64 {
        fs::symlink_metadata(path).unwrap().mtime()
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    fn zstd(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    /// Unpacks `layer` in both formats and checks it is refused for `expected`, with nothing
    /// written outside the destination.
    fn check_refused(layer: &[u8], expected: Refusal) {
        for format in [WhiteoutFormat::Overlay, WhiteoutFormat::Apply] {
            let sandbox = Sandbox::new();
            match sandbox.unpack(layer, format) {
                Err(UnpackError::Refused { reason, .. }) => {
                    assert_eq!(reason, expected, "{format:?}")
                }
                other => panic!("{format:?}: expected refusal {expected:?}, got {other:?}"),
            }
            sandbox.assert_outside_untouched();
        }
    }

    fn quoted(text: &str) -> String {
        format!("{text:?}")
    }

    /// A name component long enough to need GNU or PAX long-name records.
    fn long_component() -> String {
        "x".repeat(120)
    }

    fn sample_layer() -> Vec<u8> {
        Layer::new()
            .directory("./", 0o750)
            .directory("etc", 0o755)
            .file("etc/passwd", 0o644, "root:x:0:0")
            .directory("bin", 0o755)
            .file("bin/busybox", 0o755, "#!busybox")
            .owned_file("bin/su", 0o4755, 0, "su")
            .symlink("bin/sh", "busybox")
            .symlink("bin/abs", "/bin/busybox")
            .hardlink("bin/ls", "bin/busybox")
            .directory("tmp", 0o1777)
            .owned_file("home/user/notes", 0o600, 1000, "notes")
            .special(EntryType::Fifo, "run/fifo", 0o620)
            .special(EntryType::Char, "dev/null", 0o666)
            .pax(&[
                ("SCHILY.xattr.user.comment", b"hello"),
                ("SCHILY.xattr.security.capability", &CAPABILITY),
                ("SCHILY.xattr.trusted.overlay.opaque", b"y"),
                (
                    "SCHILY.xattr.security.selinux",
                    b"system_u:object_r:bin_t:s0",
                ),
            ])
            .file("bin/ping", 0o755, "ping")
            .file(&format!("gnu/{}", long_component()), 0o644, "long")
            .symlink("gnu/link", &format!("/gnu/{}", long_component()))
            .pax(&[("path", format!("pax/{}", long_component()).as_bytes())])
            .file("short", 0o644, "pax long")
            .bytes()
    }

    #[test]
    fn unpacks_files_directories_and_links_with_their_metadata() {
        if !running_as_root("unpacks_files_directories_and_links_with_their_metadata") {
            return;
        }
        let sandbox = Sandbox::new();
        let outcome = sandbox
            .unpack(&sample_layer(), WhiteoutFormat::Overlay)
            .unwrap();
        assert_eq!(outcome.entries, 17);
        assert_eq!(
            tree(&sandbox.dest).replace(&long_component(), "LONG"),
            [
                "0755 0:0 bin/",
                "0777 1000:1001 bin/abs -> /bin/busybox",
                "0755 0:0 bin/busybox = \"#!busybox\"",
                "0755 0:0 bin/ls = \"#!busybox\"",
                "0755 0:0 bin/ping = \"ping\"",
                "0777 1000:1001 bin/sh -> busybox",
                "4755 0:1 bin/su = \"su\"",
                "0755 0:0 etc/",
                "0644 0:0 etc/passwd = \"root:x:0:0\"",
                "0755 0:0 gnu/",
                "0777 1000:1001 gnu/link -> /gnu/LONG",
                "0644 0:0 gnu/LONG = \"long\"",
                "0755 0:0 home/",
                "0755 0:0 home/user/",
                "0600 1000:1001 home/user/notes = \"notes\"",
                "0755 0:0 pax/",
                "0644 0:0 pax/LONG = \"pax long\"",
                "0755 0:0 run/",
                "0620 0:0 run/fifo (fifo)",
                "1777 0:0 tmp/",
            ]
            .join("\n")
        );
        let root = fs::metadata(&sandbox.dest).unwrap();
        assert_eq!(root.mode() & 0o7777, 0o750, "./ sets the root's mode");
        for path in [
            "",
            "etc",
            "bin",
            "tmp",
            "bin/busybox",
            "bin/sh",
            "bin/ls",
            "run/fifo",
            "gnu/link",
        ] {
            assert_eq!(
                mtime(&sandbox.dest.join(path)),
                MTIME as i64,
                "mtime of {path:?}"
            );
        }
        let busybox = fs::metadata(sandbox.dest.join("bin/busybox")).unwrap();
        let ls = fs::metadata(sandbox.dest.join("bin/ls")).unwrap();
        assert_eq!((busybox.ino(), busybox.nlink()), (ls.ino(), 2));

        let ping = sandbox.dest.join("bin/ping");
        assert_eq!(
            xattr(&ping, c"user.comment").as_deref(),
            Some(&b"hello"[..])
        );
        assert_eq!(
            xattr(&ping, c"security.capability").as_deref(),
            Some(&CAPABILITY[..])
        );
        assert_eq!(xattr(&ping, c"trusted.overlay.opaque"), None);
        assert_ne!(
            xattr(&ping, c"security.selinux").as_deref(),
            Some(&b"system_u:object_r:bin_t:s0"[..])
        );
        sandbox.assert_outside_untouched();
    }

    #[test]
    fn compressions_give_the_same_tree_and_the_diff_id_of_the_tar() {
        if !running_as_root("compressions_give_the_same_tree_and_the_diff_id_of_the_tar") {
            return;
        }
        let layer = sample_layer();
        let mut trees = Vec::new();
        for (compression, blob) in [
            (Compression::None, layer.clone()),
            (Compression::Gzip, gzip(&layer)),
            (Compression::Zstd, zstd(&layer)),
        ] {
            let sandbox = Sandbox::new();
            let outcome = unpack_layer(
                &blob[..],
                compression,
                &sandbox.dest,
                &UnpackLimits::default(),
                WhiteoutFormat::Overlay,
            )
            .unwrap();
            assert_eq!(
                outcome,
                UnpackOutcome {
                    diff_id: Digest::of(&layer),
                    bytes: layer.len() as u64,
                    entries: 17,
                },
                "{compression:?}"
            );
            trees.push(tree(&sandbox.dest));
        }
        assert_eq!(trees[0], trees[1]);
        assert_eq!(trees[0], trees[2]);
    }

    #[test]
    fn trailing_padding_is_part_of_the_diff_id() {
        if !running_as_root("trailing_padding_is_part_of_the_diff_id") {
            return;
        }
        let mut layer = Layer::new().file("a", 0o644, "a").bytes();
        layer.resize(10240, 0);
        let sandbox = Sandbox::new();
        let outcome = sandbox.unpack(&layer, WhiteoutFormat::Apply).unwrap();
        assert_eq!(
            (outcome.diff_id, outcome.bytes),
            (Digest::of(&layer), 10240)
        );
    }

    #[test]
    fn a_layer_without_end_of_archive_blocks_unpacks_as_docker_does() {
        if !running_as_root("a_layer_without_end_of_archive_blocks_unpacks_as_docker_does") {
            return;
        }
        let mut layer = Layer::new().file("a", 0o644, "a").bytes();
        assert!(layer.ends_with(&[0; 1024]));
        layer.truncate(layer.len() - 1024);
        let sandbox = Sandbox::new();
        let outcome = sandbox.unpack(&layer, WhiteoutFormat::Apply).unwrap();
        assert_eq!(outcome.entries, 1);
        assert_eq!(fs::read_to_string(sandbox.dest.join("a")).unwrap(), "a");
        // A header cut short is still an error.
        layer.truncate(layer.len() - 1024 + 100);
        assert!(Sandbox::new()
            .unpack(&layer, WhiteoutFormat::Apply)
            .is_err());
    }

    #[test]
    fn refuses_hostile_paths() {
        if !running_as_root("refuses_hostile_paths") {
            return;
        }
        let outside = Sandbox::new().outside();
        for path in ["../x", "a/../../x", "a/../b", "./../x"] {
            let layer = Layer::new()
                .raw(EntryType::Regular, path.as_bytes(), b"", b"x")
                .bytes();
            check_refused(&layer, Refusal::ParentComponent);
        }
        // The refusal must not depend on the sandbox: this path names a real directory.
        let absolute = format!("{outside}/pwned");
        for path in ["/etc/ward-unpack-test", &absolute, "//etc/x"] {
            let layer = Layer::new()
                .raw(EntryType::Regular, path.as_bytes(), b"", b"x")
                .bytes();
            check_refused(&layer, Refusal::AbsolutePath);
        }
        assert!(!Path::new("/etc/ward-unpack-test").exists());
        let layer = Layer::new()
            .pax(&[("path", b"a\0b")])
            .file("a", 0o644, "x")
            .bytes();
        check_refused(&layer, Refusal::NulByte);
        for kind in [EntryType::Regular, EntryType::Symlink] {
            let layer = Layer::new().raw(kind, b".", b"target", b"").bytes();
            check_refused(&layer, Refusal::RootNotDirectory);
        }
        // A directory entry `/` is the root, as Docker reads it; the layer unpacks.
        let sandbox = Sandbox::new();
        let layer = Layer::new()
            .raw(EntryType::Directory, b"/", b"", b"")
            .file("inside", 0o644, "x")
            .bytes();
        sandbox
            .unpack(&layer, WhiteoutFormat::Apply)
            .expect("a layer whose first entry is `/` unpacks");
        assert_eq!(
            fs::read_to_string(sandbox.dest.join("inside")).unwrap(),
            "x"
        );
        let layer = Layer::new()
            .raw(EntryType::new(b'V'), b"volume", b"", b"")
            .bytes();
        check_refused(&layer, Refusal::UnsupportedType { type_flag: 'V' });
        for whiteout in [".wh.", "a/.wh...", "a/.wh.."] {
            let layer = Layer::new()
                .raw(EntryType::Regular, whiteout.as_bytes(), b"", b"")
                .bytes();
            check_refused(&layer, Refusal::InvalidWhiteout);
        }
    }

    #[test]
    fn refuses_symlinks_that_climb_out_and_writes_through_symlinks() {
        if !running_as_root("refuses_symlinks_that_climb_out_and_writes_through_symlinks") {
            return;
        }
        let outside = Sandbox::new().outside();
        for (path, target) in [
            ("a", "../outside"),
            ("d/a", "../../outside"),
            ("d/a", "x/../../.."),
            ("a", ".."),
        ] {
            let layer = Layer::new().symlink(path, target).bytes();
            check_refused(
                &layer,
                Refusal::SymlinkEscapes {
                    target: quoted(target),
                },
            );
        }
        // An absolute target is fine as a link (it resolves inside the container), but
        // nothing is written through it.
        let layer = Layer::new()
            .symlink("a", &outside)
            .file("a/pwned", 0o644, "x")
            .bytes();
        check_refused(&layer, Refusal::ThroughSymlink { at: quoted("a") });
        let layer = Layer::new()
            .symlink("d/up", "..")
            .directory("d/up/x", 0o755)
            .bytes();
        check_refused(&layer, Refusal::ThroughSymlink { at: quoted("d/up") });
        let layer = Layer::new()
            .symlink("a", &outside)
            .raw(EntryType::Regular, b"a/.wh..wh..opq", b"", b"")
            .bytes();
        check_refused(&layer, Refusal::ThroughSymlink { at: quoted("a") });
        let layer = Layer::new()
            .file("f", 0o644, "x")
            .file("f/x", 0o644, "x")
            .bytes();
        check_refused(&layer, Refusal::ThroughNonDirectory { at: quoted("f") });
    }

    #[test]
    fn refuses_hardlinks_to_anything_but_a_file_in_the_layer() {
        if !running_as_root("refuses_hardlinks_to_anything_but_a_file_in_the_layer") {
            return;
        }
        let outside = Sandbox::new().outside();
        let layer = Layer::new().hardlink("h", "/etc/passwd").bytes();
        check_refused(
            &layer,
            Refusal::HardlinkAbsolute {
                target: quoted("/etc/passwd"),
            },
        );
        let layer = Layer::new().hardlink("h", "../outside/secret").bytes();
        check_refused(
            &layer,
            Refusal::HardlinkParentComponent {
                target: quoted("../outside/secret"),
            },
        );
        let layer = Layer::new()
            .symlink("l", &outside)
            .hardlink("h", "l/secret")
            .bytes();
        check_refused(&layer, Refusal::ThroughSymlink { at: quoted("l") });
        let layer = Layer::new().hardlink("h", "missing").bytes();
        check_refused(
            &layer,
            Refusal::HardlinkMissing {
                target: quoted("missing"),
            },
        );
        let layer = Layer::new().hardlink("h", "d/missing").bytes();
        check_refused(
            &layer,
            Refusal::HardlinkMissing {
                target: quoted("d/missing"),
            },
        );
        let layer = Layer::new()
            .directory("d", 0o755)
            .hardlink("h", "d")
            .bytes();
        check_refused(
            &layer,
            Refusal::HardlinkToDirectory {
                target: quoted("d"),
            },
        );
        let layer = Layer::new().hardlink("h", ".").bytes();
        check_refused(
            &layer,
            Refusal::HardlinkToDirectory {
                target: quoted("."),
            },
        );
        let layer = Layer::new()
            .file("h", 0o644, "x")
            .hardlink("h", "./h")
            .bytes();
        check_refused(&layer, Refusal::HardlinkToItself);
    }

    #[test]
    fn a_hardlink_to_a_symlink_links_the_symlink_itself() {
        if !running_as_root("a_hardlink_to_a_symlink_links_the_symlink_itself") {
            return;
        }
        let sandbox = Sandbox::new();
        let layer = Layer::new()
            .symlink("l", &format!("{}/secret", sandbox.outside()))
            .hardlink("h", "l")
            .bytes();
        sandbox.unpack(&layer, WhiteoutFormat::Overlay).unwrap();
        let link = fs::symlink_metadata(sandbox.dest.join("h")).unwrap();
        assert!(link.file_type().is_symlink());
        assert_eq!(link.nlink(), 2);
        sandbox.assert_outside_untouched();
    }

    #[test]
    fn a_symlink_from_an_earlier_layer_is_never_followed() {
        if !running_as_root("a_symlink_from_an_earlier_layer_is_never_followed") {
            return;
        }
        let sandbox = Sandbox::new();
        let lower = Layer::new().symlink("lib", &sandbox.outside()).bytes();
        sandbox.unpack(&lower, WhiteoutFormat::Apply).unwrap();
        for upper in [
            Layer::new().file("lib/pwned", 0o644, "x").bytes(),
            Layer::new()
                .raw(EntryType::Regular, b"lib/.wh.secret", b"", b"")
                .bytes(),
            Layer::new()
                .raw(EntryType::Regular, b"lib/.wh..wh..opq", b"", b"")
                .bytes(),
            Layer::new().hardlink("h", "lib/secret").bytes(),
        ] {
            match sandbox.unpack(&upper, WhiteoutFormat::Apply) {
                Err(UnpackError::Refused { reason, .. }) => {
                    assert_eq!(reason, Refusal::ThroughSymlink { at: quoted("lib") })
                }
                other => panic!("expected a refusal, got {other:?}"),
            }
            sandbox.assert_outside_untouched();
        }
        // Replacing the symlink removes the link, not what it points to.
        let upper = Layer::new()
            .directory("lib", 0o755)
            .file("lib/x", 0o644, "x")
            .bytes();
        sandbox.unpack(&upper, WhiteoutFormat::Apply).unwrap();
        assert_eq!(tree(&sandbox.dest), "0755 0:0 lib/\n0644 0:0 lib/x = \"x\"");
        sandbox.assert_outside_untouched();
    }

    #[test]
    fn a_gzip_bomb_stops_at_the_byte_limit() {
        if !running_as_root("a_gzip_bomb_stops_at_the_byte_limit") {
            return;
        }
        let limits = UnpackLimits {
            max_bytes: 1024 * 1024,
            max_entries: 100,
        };
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let zeros = vec![0; 1024 * 1024];
        for _ in 0..64 {
            encoder.write_all(&zeros).unwrap();
        }
        let bomb = encoder.finish().unwrap();
        let sandbox = Sandbox::new();
        let mut reader = io::Cursor::new(&bomb);
        let error = unpack_layer(
            &mut reader,
            Compression::Gzip,
            &sandbox.dest,
            &limits,
            WhiteoutFormat::Overlay,
        )
        .unwrap_err();
        assert!(
            matches!(error, UnpackError::TooManyBytes { limit, .. } if limit == 1024 * 1024),
            "{error}"
        );
        assert!(
            reader.position() < bomb.len() as u64 / 8,
            "read {} of {} compressed bytes",
            reader.position(),
            bomb.len()
        );

        // A file announcing more than the limit is refused before it is written; one that
        // merely runs past it stops where the limit is.
        let layer = Layer::new()
            .file("big", 0o644, &"x".repeat(2 * 1024 * 1024))
            .bytes();
        let sandbox = Sandbox::new();
        let error = unpack_layer(
            &layer[..],
            Compression::None,
            &sandbox.dest,
            &limits,
            WhiteoutFormat::Overlay,
        )
        .unwrap_err();
        assert!(
            matches!(error, UnpackError::TooManyBytes { ref entry, .. } if entry == "\"big\""),
            "{error}"
        );
        assert!(!sandbox.dest.join("big").exists());
        let half = "x".repeat(700 * 1024);
        let layer = Layer::new()
            .file("one", 0o644, &half)
            .file("two", 0o644, &half)
            .bytes();
        let error = unpack_layer(
            &layer[..],
            Compression::None,
            &sandbox.dest,
            &limits,
            WhiteoutFormat::Overlay,
        )
        .unwrap_err();
        assert!(
            matches!(error, UnpackError::TooManyBytes { ref entry, .. } if entry == "\"two\""),
            "{error}"
        );
        assert!(fs::metadata(sandbox.dest.join("two")).unwrap().len() < 400 * 1024);
        assert_eq!(
            error.to_string(),
            "layer is larger than the 1048576 uncompressed bytes allowed (stopped at entry \"two\")"
        );
    }

    /// A GNU sparse file of `size` bytes whose last 512 bytes are `byte` and the rest a hole.
    fn sparse_entry(layer: Layer, path: &str, size: u64, byte: u8) -> Layer {
        fn octal(field: &mut [u8], value: u64) {
            let text = format!("{value:0width$o}\0", width = field.len() - 1);
            field.copy_from_slice(text.as_bytes());
        }
        let mut header = Layer::header(EntryType::GNUSparse, 0o644);
        let gnu = header.as_gnu_mut().unwrap();
        octal(&mut gnu.sparse[0].offset, size - 512);
        octal(&mut gnu.sparse[0].numbytes, 512);
        octal(&mut gnu.realsize, size);
        header.set_path(path).unwrap();
        header.set_size(512);
        header.set_cksum();
        let mut layer = layer;
        layer.builder.append(&header, &[byte; 512][..]).unwrap();
        layer
    }

    #[test]
    fn sparse_files_are_expanded_and_count_against_the_byte_limit() {
        if !running_as_root("sparse_files_are_expanded_and_count_against_the_byte_limit") {
            return;
        }
        let size = 700 * 1024;
        let layer = sparse_entry(Layer::new(), "one", size, b'1');
        let layer = sparse_entry(layer, "two", size, b'2').bytes();
        let sandbox = Sandbox::new();
        sandbox.unpack(&layer, WhiteoutFormat::Overlay).unwrap();
        let two = fs::read(sandbox.dest.join("two")).unwrap();
        assert_eq!(two.len() as u64, size);
        assert!(two[..two.len() - 512].iter().all(|byte| *byte == 0));
        assert!(two[two.len() - 512..].iter().all(|byte| *byte == b'2'));

        let limits = UnpackLimits {
            max_bytes: 1024 * 1024,
            max_entries: 100,
        };
        let sandbox = Sandbox::new();
        let error = unpack_layer(
            &layer[..],
            Compression::None,
            &sandbox.dest,
            &limits,
            WhiteoutFormat::Overlay,
        )
        .unwrap_err();
        assert!(
            matches!(error, UnpackError::TooManyBytes { ref entry, .. } if entry == "\"two\""),
            "{error}"
        );
    }

    #[test]
    fn a_huge_long_name_record_stops_at_the_header_limit() {
        let layer = Layer::new()
            .raw(
                EntryType::GNULongName,
                b"././@LongLink",
                b"",
                &vec![b'a'; 8 * 1024 * 1024],
            )
            .file("a", 0o644, "x")
            .bytes();
        let sandbox = Sandbox::new();
        let error = sandbox.unpack(&layer, WhiteoutFormat::Overlay).unwrap_err();
        assert!(
            matches!(
                error,
                UnpackError::HeadersTooLarge {
                    limit: MAX_HEADER_BYTES,
                    ..
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn too_many_entries_are_refused() {
        if !running_as_root("too_many_entries_are_refused") {
            return;
        }
        let limits = UnpackLimits {
            max_bytes: 1024 * 1024,
            max_entries: 3,
        };
        let layer = ["a", "b", "c", "d", "e"]
            .iter()
            .fold(Layer::new(), |layer, name| layer.file(name, 0o644, name))
            .bytes();
        let sandbox = Sandbox::new();
        let error = unpack_layer(
            &layer[..],
            Compression::None,
            &sandbox.dest,
            &limits,
            WhiteoutFormat::Apply,
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "layer has more than 3 entries (stopped at entry \"d\")"
        );
    }

    #[test]
    fn overlay_whiteouts_become_devices_and_opaque_directories() {
        if !running_as_root("overlay_whiteouts_become_devices_and_opaque_directories") {
            return;
        }
        let layer = Layer::new()
            .directory("a", 0o755)
            .file("a/.wh.gone", 0o644, "")
            .file("a/kept", 0o644, "kept")
            .directory("b", 0o700)
            .file("b/.wh..wh..opq", 0o644, "")
            .file("b/new", 0o644, "new")
            .file("c/d/.wh..wh..opq", 0o644, "")
            .file("e/.wh..wh.plnk", 0o644, "")
            .file("f", 0o644, "file")
            .file(".wh.f", 0o644, "")
            .bytes();
        let sandbox = Sandbox::new();
        sandbox.unpack(&layer, WhiteoutFormat::Overlay).unwrap();
        assert_eq!(
            tree(&sandbox.dest),
            [
                "0755 0:0 a/",
                "0000 0:0 a/gone (char 0:0)",
                "0644 0:0 a/kept = \"kept\"",
                "0700 0:0 b/",
                "0644 0:0 b/new = \"new\"",
                "0755 0:0 c/",
                "0755 0:0 c/d/",
                "0000 0:0 f (char 0:0)",
            ]
            .join("\n")
        );
        assert_eq!(
            xattr(&sandbox.dest.join("b"), OVERLAY_OPAQUE_XATTR).as_deref(),
            Some(&b"y"[..])
        );
        assert_eq!(
            xattr(&sandbox.dest.join("c/d"), OVERLAY_OPAQUE_XATTR).as_deref(),
            Some(&b"y"[..])
        );
        assert_eq!(xattr(&sandbox.dest.join("a"), OVERLAY_OPAQUE_XATTR), None);
        sandbox.assert_outside_untouched();
    }

    #[test]
    fn apply_whiteouts_remove_what_lower_layers_wrote() {
        if !running_as_root("apply_whiteouts_remove_what_lower_layers_wrote") {
            return;
        }
        let sandbox = Sandbox::new();
        let lower = Layer::new()
            .file("a/gone", 0o644, "gone")
            .file("a/kept", 0o644, "kept")
            .file("a/dir/deep", 0o644, "deep")
            .file("b/old", 0o644, "old")
            .file("b/sub/old", 0o644, "old")
            .file("b/redeclared/old", 0o644, "old")
            .file("c/old", 0o644, "old")
            .file("file-then-dir", 0o644, "file")
            .file("dir-then-file/inner", 0o644, "inner")
            .symlink("b/link", &sandbox.outside())
            .bytes();
        sandbox.unpack(&lower, WhiteoutFormat::Apply).unwrap();
        let upper = Layer::new()
            .file("a/.wh.gone", 0o644, "")
            .file("a/.wh.dir", 0o644, "")
            .file("a/.wh.never-existed", 0o644, "")
            .file("missing/.wh.x", 0o644, "")
            .directory("b", 0o755)
            .file("b/new", 0o644, "new")
            .directory("b/redeclared", 0o755)
            .file("b/redeclared/new", 0o644, "new")
            .file("b/.wh..wh..opq", 0o644, "")
            .file("b/later", 0o644, "later")
            .directory("file-then-dir", 0o755)
            .file("file-then-dir/inner", 0o644, "inner")
            .file("dir-then-file", 0o644, "file")
            .bytes();
        sandbox.unpack(&upper, WhiteoutFormat::Apply).unwrap();
        assert_eq!(
            tree(&sandbox.dest),
            [
                "0755 0:0 a/",
                "0644 0:0 a/kept = \"kept\"",
                "0755 0:0 b/",
                "0644 0:0 b/later = \"later\"",
                "0644 0:0 b/new = \"new\"",
                "0755 0:0 b/redeclared/",
                "0644 0:0 b/redeclared/new = \"new\"",
                "0755 0:0 c/",
                "0644 0:0 c/old = \"old\"",
                "0644 0:0 dir-then-file = \"file\"",
                "0755 0:0 file-then-dir/",
                "0644 0:0 file-then-dir/inner = \"inner\"",
            ]
            .join("\n")
        );
        sandbox.assert_outside_untouched();
    }

    #[test]
    fn a_later_entry_replaces_an_earlier_one_in_the_same_layer() {
        if !running_as_root("a_later_entry_replaces_an_earlier_one_in_the_same_layer") {
            return;
        }
        let layer = Layer::new()
            .file("file-then-file", 0o644, "one")
            .file("file-then-file", 0o600, "two")
            .file("file-then-dir", 0o644, "file")
            .directory("file-then-dir", 0o755)
            .file("file-then-dir/inner", 0o644, "inner")
            .file("dir-then-file/inner", 0o644, "inner")
            .file("dir-then-file", 0o644, "file")
            .directory("dir-then-symlink", 0o755)
            .symlink("dir-then-symlink", "elsewhere")
            .directory("dir-then-dir", 0o700)
            .file("dir-then-dir/kept", 0o644, "kept")
            .directory("dir-then-dir", 0o755)
            .symlink("symlink-then-dir", "/")
            .directory("symlink-then-dir", 0o755)
            .bytes();
        for format in [WhiteoutFormat::Overlay, WhiteoutFormat::Apply] {
            let sandbox = Sandbox::new();
            sandbox.unpack(&layer, format).unwrap();
            assert_eq!(
                tree(&sandbox.dest),
                [
                    "0755 0:0 dir-then-dir/",
                    "0644 0:0 dir-then-dir/kept = \"kept\"",
                    "0644 0:0 dir-then-file = \"file\"",
                    "0777 1000:1001 dir-then-symlink -> elsewhere",
                    "0755 0:0 file-then-dir/",
                    "0644 0:0 file-then-dir/inner = \"inner\"",
                    "0600 0:0 file-then-file = \"two\"",
                    "0755 0:0 symlink-then-dir/",
                ]
                .join("\n"),
                "{format:?}"
            );
            sandbox.assert_outside_untouched();
        }
    }

    /// A fixed-seed xorshift generator, so that every run tries the same cases.
    struct Random(u64);

    impl Random {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, bound: usize) -> usize {
            (self.next() % bound as u64) as usize
        }
    }

    /// Recomputes the checksum of every block that looks like a header, so that mutations
    /// reach the code behind the parser's checksum test.
    fn fix_checksums(layer: &mut [u8]) {
        for block in layer.chunks_exact_mut(512) {
            if &block[257..262] == b"ustar" {
                block[148..156].fill(b' ');
                let sum: u32 = block.iter().map(|byte| u32::from(*byte)).sum();
                block[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
            }
        }
    }

    #[test]
    fn mutated_layers_never_panic_or_write_outside() {
        if !running_as_root("mutated_layers_never_panic_or_write_outside") {
            return;
        }
        let base = Layer::new()
            .directory("a", 0o755)
            .file("a/f", 0o644, "hello")
            .symlink("a/s", "f")
            .symlink("a/up", "..")
            .symlink("abs", "/bin/sh")
            .hardlink("a/h", "a/f")
            .special(EntryType::Fifo, "p", 0o644)
            .file("a/.wh.gone", 0o644, "")
            .file("b/.wh..wh..opq", 0o644, "")
            .file("b/x", 0o644, "x")
            .file(&format!("gnu/{}", long_component()), 0o644, "long")
            .pax(&[("SCHILY.xattr.user.a", b"b")])
            .file("c", 0o644, "x")
            .bytes();
        let headers: Vec<usize> = (0..base.len() / 512)
            .filter(|block| &base[block * 512 + 257..block * 512 + 262] == b"ustar")
            .collect();
        let hostile: [&[u8]; 6] = [b"../", b"/", b"..", b"a/up/", b".wh.", b"\0"];
        let limits = UnpackLimits {
            max_bytes: 256 * 1024,
            max_entries: 64,
        };
        let mut random = Random(0x5eed_1a7e_0dd5_eed5);
        for case in 0..3000 {
            let mut layer = base.clone();
            match random.below(4) {
                0 => layer.truncate(random.below(base.len())),
                1 => {
                    // A hostile prefix over a name or link name.
                    let block = headers[random.below(headers.len())] * 512;
                    let field = if random.below(2) == 0 { 0 } else { 157 };
                    let prefix = hostile[random.below(hostile.len())];
                    layer[block + field..block + field + prefix.len()].copy_from_slice(prefix);
                    fix_checksums(&mut layer);
                }
                _ => {
                    for _ in 0..1 + random.below(4) {
                        let position = if random.below(4) == 0 {
                            random.below(layer.len())
                        } else {
                            headers[random.below(headers.len())] * 512 + random.below(512)
                        };
                        layer[position] = random.next() as u8;
                    }
                    fix_checksums(&mut layer);
                }
            }
            let format = if case % 2 == 0 {
                WhiteoutFormat::Overlay
            } else {
                WhiteoutFormat::Apply
            };
            let sandbox = Sandbox::new();
            let result = panic::catch_unwind(AssertUnwindSafe(|| {
                unpack_layer(
                    &layer[..],
                    Compression::None,
                    &sandbox.dest,
                    &limits,
                    format,
                )
            }));
            assert!(result.is_ok(), "case {case} panicked");
            sandbox.assert_outside_untouched();
        }
    }
}
