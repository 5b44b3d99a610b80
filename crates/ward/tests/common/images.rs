//! Test images and a test registry: OCI image layouts and `docker save` archives built from
//! layers described in code, and a real registry (`docker-registry`) on a free local port.
//!
//! The outside tools come from Debian packages that CI installs: `busybox-static`,
//! `docker-registry`, `skopeo` and `umoci`. A missing one fails the test with the package to
//! install; nothing here skips.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use super::http_get_status;

/// Modification time of every entry in every layer, so that the same description always gives
/// the same digests.
const FIXED_MTIME: u64 = 1_700_000_000;
/// [`FIXED_MTIME`] as the RFC 3339 time image configs carry.
const FIXED_CREATED: &str = "2023-11-14T22:13:20Z";

const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

/// How long the registry may take to answer `GET /v2/`.
const REGISTRY_START_DEADLINE: Duration = Duration::from_secs(20);
/// How often to try another port when the one picked was taken in between.
const REGISTRY_START_ATTEMPTS: usize = 5;
/// Pause between two looks at the registry while waiting on it.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// The host busybox copied into images; it must be statically linked to run in any rootfs.
const HOST_BUSYBOX: &str = "/bin/busybox";
/// The applets [`Layer::busybox`] links to `/bin/busybox`.
const BUSYBOX_APPLETS: [&str; 14] = [
    "sh", "echo", "cat", "sleep", "ls", "id", "env", "pwd", "wget", "nc", "httpd", "head", "dd",
    "test",
];

// ---------------------------------------------------------------------------------------------
// Outside tools
// ---------------------------------------------------------------------------------------------

/// A command for `binary`, found on PATH; panics naming the Debian `package` when it is absent.
pub fn required_tool(binary: &str, package: &str) -> Command {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|directory| directory.join(binary))
            .find(|candidate| candidate.is_file())
    });
    match found {
        Some(path) => Command::new(path),
        None => panic!(
            "`{binary}` is not on PATH: install the Debian package `{package}` \
             (apt-get install {package})"
        ),
    }
}

/// `skopeo`, from the Debian package of that name.
pub fn skopeo() -> Command {
    required_tool("skopeo", "skopeo")
}

/// `umoci`, from the Debian package of that name.
pub fn umoci() -> Command {
    required_tool("umoci", "umoci")
}

/// Runs `command` and returns its stdout; panics with its stderr when it fails.
pub fn run_tool(command: &mut Command) -> Vec<u8> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|error| panic!("run {command:?}: {error}"));
    assert!(
        output.status.success(),
        "{command:?} failed with {}:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

// ---------------------------------------------------------------------------------------------
// Registry
// ---------------------------------------------------------------------------------------------

/// A registry on `127.0.0.1:<free port>` with its storage in a temporary directory; killed and
/// its directory removed when dropped.
pub struct Registry {
    /// `127.0.0.1:PORT`, as image references name it.
    pub address: String,
    child: Child,
    directory: tempfile::TempDir,
}

impl Registry {
    /// Starts `docker-registry serve CONFIG` without TLS or authentication and waits until
    /// `GET /v2/` answers 200.
    pub fn start() -> Registry {
        Registry::start_with_login(None)
    }

    /// Like [`Registry::start`], asking for `username` and `password` (HTTP basic, checked
    /// against an htpasswd file) on every request when `login` is given.
    pub fn start_with_login(login: Option<(&str, &str)>) -> Registry {
        for _ in 0..REGISTRY_START_ATTEMPTS {
            let directory = tempfile::tempdir().expect("create the registry directory");
            let address = free_local_address();
            let child = spawn_registry(directory.path(), address, login);
            let mut registry = Registry {
                address: address.to_string(),
                child,
                directory,
            };
            match registry.wait_until_ready(address) {
                Ok(()) => return registry,
                // Another process took the port between our look and the registry's bind.
                Err(log) if log.contains("address already in use") => continue,
                Err(log) => panic!("docker-registry exited before it was ready:\n{log}"),
            }
        }
        panic!("docker-registry found no free port in {REGISTRY_START_ATTEMPTS} attempts");
    }

    /// The registry's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The directory holding the registry's config, storage and log.
    pub fn directory(&self) -> &Path {
        self.directory.path()
    }

    /// The registry's output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.directory().join("registry.log")).unwrap_or_default()
    }

    /// Polls until `GET /v2/` answers 200; the log when the registry exits first.
    fn wait_until_ready(&mut self, address: SocketAddr) -> Result<(), String> {
        let deadline = Instant::now() + REGISTRY_START_DEADLINE;
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                return Err(self.log());
            }
            // 401: up, and asking for the login it was started with.
            if matches!(http_get_status(address, "/v2/"), Some(200 | 401)) {
                return Ok(());
            }
            if Instant::now() > deadline {
                panic!(
                    "docker-registry did not answer GET /v2/ on {address} within \
                     {REGISTRY_START_DEADLINE:?}:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port on 127.0.0.1 that nothing listens on right now.
fn free_local_address() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("find a free local port")
}

/// Writes the registry's config under `directory` and starts it on `address`.
fn spawn_registry(directory: &Path, address: SocketAddr, login: Option<(&str, &str)>) -> Child {
    let storage = directory.join("storage");
    std::fs::create_dir_all(&storage).expect("create the registry storage");
    let config_path = directory.join("config.yml");
    let mut config = format!(
        "version: 0.1\n\
         log:\n  level: error\n  formatter: text\n\
         storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
         http:\n  addr: {address}\n",
        storage.display()
    );
    if let Some((username, password)) = login {
        let hash = bcrypt::hash(password, 4).expect("hash the registry password");
        let htpasswd = directory.join("htpasswd");
        std::fs::write(&htpasswd, format!("{username}:{hash}\n")).expect("write the htpasswd file");
        config.push_str(&format!(
            "auth:\n  htpasswd:\n    realm: ward-test\n    path: {}\n",
            htpasswd.display()
        ));
    }
    std::fs::write(&config_path, config).expect("write the registry config");
    let log =
        std::fs::File::create(directory.join("registry.log")).expect("create the registry log");
    required_tool("docker-registry", "docker-registry")
        .arg("serve")
        .arg(&config_path)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone the registry log handle"))
        .stderr(log)
        .spawn()
        .expect("spawn docker-registry")
}

/// Pushes the image or index tagged `tag` in the OCI layout at `layout` to
/// `REGISTRY/repository:tag`, indexes whole (`skopeo copy --all`); panics with skopeo's stderr
/// when it fails.
pub fn push(layout: &Path, tag: &str, registry: &Registry, repository: &str) {
    push_with_login(layout, tag, registry, repository, None);
}

/// [`push`] to a registry that asks for `username` and `password`.
pub fn push_with_login(
    layout: &Path,
    tag: &str,
    registry: &Registry,
    repository: &str,
    login: Option<(&str, &str)>,
) {
    let mut command = skopeo();
    command
        .args(["--insecure-policy", "copy", "--all", "--quiet"])
        .arg("--dest-tls-verify=false");
    if let Some((username, password)) = login {
        command.arg(format!("--dest-creds={username}:{password}"));
    }
    run_tool(
        command
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{}/{repository}:{tag}", registry.address)),
    );
}

// ---------------------------------------------------------------------------------------------
// A slow network
// ---------------------------------------------------------------------------------------------

/// A TCP proxy on `127.0.0.1:<free port>` to `upstream` that sends the upstream's answers at
/// most `bytes_per_second` per connection, and counts them: a slow registry to interrupt a
/// pull of, and a meter of what a pull fetched. Stops accepting when dropped.
pub struct ThrottledProxy {
    pub address: String,
    delivered: Arc<AtomicU64>,
    stopped: Arc<AtomicBool>,
}

impl ThrottledProxy {
    pub fn start(upstream: &str, bytes_per_second: u64) -> ThrottledProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let address = listener.local_addr().expect("proxy address").to_string();
        let delivered = Arc::new(AtomicU64::new(0));
        let stopped = Arc::new(AtomicBool::new(false));
        let upstream = upstream.to_string();
        let (counter, stop) = (delivered.clone(), stopped.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let counter = counter.clone();
                let (client_reader, server_writer) = (
                    client.try_clone().expect("clone the client socket"),
                    server.try_clone().expect("clone the server socket"),
                );
                std::thread::spawn(move || copy_until_closed(client_reader, server_writer, None));
                std::thread::spawn(move || {
                    copy_until_closed(server, client, Some((bytes_per_second, counter)))
                });
            }
        });
        ThrottledProxy {
            address,
            delivered,
            stopped,
        }
    }

    /// Bytes sent from the upstream to clients so far.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::SeqCst)
    }
}

impl Drop for ThrottledProxy {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(&self.address);
    }
}

/// Copies `from` to `to` until either side closes; with a limit, paces the copy to that many
/// bytes per second and counts what it sent.
fn copy_until_closed(mut from: TcpStream, mut to: TcpStream, limit: Option<(u64, Arc<AtomicU64>)>) {
    let started = Instant::now();
    let mut sent = 0u64;
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let read = match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        if to.write_all(&buffer[..read]).is_err() {
            break;
        }
        sent += read as u64;
        if let Some((bytes_per_second, counter)) = &limit {
            counter.fetch_add(read as u64, Ordering::SeqCst);
            // Pacing, not waiting for a condition: the copy may not run ahead of its rate.
            let due = Duration::from_secs_f64(sent as f64 / *bytes_per_second as f64);
            if let Some(ahead) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(ahead);
            }
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
    let _ = from.shutdown(std::net::Shutdown::Both);
}

// ---------------------------------------------------------------------------------------------
// Layers
// ---------------------------------------------------------------------------------------------

/// How layer blobs are compressed; the layer media type follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Compression {
    #[default]
    Gzip,
    Zstd,
    None,
}

impl Compression {
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
        }
    }

    fn compress(self, tar: &[u8]) -> Vec<u8> {
        match self {
            Compression::Gzip => {
                let mut encoder =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                encoder.write_all(tar).expect("gzip a layer");
                encoder.finish().expect("gzip a layer")
            }
            Compression::Zstd => zstd::stream::encode_all(tar, 3).expect("zstd a layer"),
            Compression::None => tar.to_vec(),
        }
    }
}

/// One entry of a layer; paths are relative to the root, without a leading `/`.
#[derive(Clone, Debug)]
enum Entry {
    File {
        path: String,
        contents: Vec<u8>,
        mode: u32,
        uid: u64,
        gid: u64,
    },
    Directory {
        path: String,
        mode: u32,
        uid: u64,
        gid: u64,
    },
    Symlink {
        path: String,
        target: String,
    },
    Hardlink {
        path: String,
        target: String,
    },
}

impl Entry {
    fn path(&self) -> &str {
        match self {
            Entry::File { path, .. }
            | Entry::Directory { path, .. }
            | Entry::Symlink { path, .. }
            | Entry::Hardlink { path, .. } => path,
        }
    }
}

/// One layer, described entry by entry and written in that order.
///
/// Parent directories that the layer does not declare are written as `root:root 0755` just
/// before their first child, as `docker build` does; a declared `dir` takes their place wherever
/// it stands in the layer.
#[derive(Clone, Debug, Default)]
pub struct Layer {
    entries: Vec<Entry>,
}

impl Layer {
    pub fn new() -> Layer {
        Layer::default()
    }

    /// A regular file owned by root.
    pub fn file(self, path: &str, contents: impl Into<Vec<u8>>, mode: u32) -> Layer {
        self.file_owned(path, contents, mode, 0, 0)
    }

    /// A regular file owned by `uid:gid`.
    pub fn file_owned(
        mut self,
        path: &str,
        contents: impl Into<Vec<u8>>,
        mode: u32,
        uid: u64,
        gid: u64,
    ) -> Layer {
        self.entries.push(Entry::File {
            path: entry_path(path),
            contents: contents.into(),
            mode,
            uid,
            gid,
        });
        self
    }

    /// A directory, `root:root 0755`.
    pub fn dir(self, path: &str) -> Layer {
        self.dir_owned(path, 0o755, 0, 0)
    }

    /// A directory with the given mode (sticky and setgid bits included) and owner.
    pub fn dir_owned(mut self, path: &str, mode: u32, uid: u64, gid: u64) -> Layer {
        self.entries.push(Entry::Directory {
            path: entry_path(path),
            mode,
            uid,
            gid,
        });
        self
    }

    /// A symbolic link at `path` pointing to `target`, written as given (relative or absolute).
    pub fn symlink(mut self, path: &str, target: &str) -> Layer {
        self.entries.push(Entry::Symlink {
            path: entry_path(path),
            target: target.to_string(),
        });
        self
    }

    /// A hard link at `path` to `target`, an absolute path in this or a lower layer.
    pub fn hardlink(mut self, path: &str, target: &str) -> Layer {
        self.entries.push(Entry::Hardlink {
            path: entry_path(path),
            target: entry_path(target),
        });
        self
    }

    /// Deletes `path` from the layers below: an empty file `.wh.NAME` beside it.
    pub fn whiteout(self, path: &str) -> Layer {
        let path = entry_path(path);
        let (parent, name) = match path.rsplit_once('/') {
            Some((parent, name)) => (format!("{parent}/"), name),
            None => (String::new(), path.as_str()),
        };
        self.file(&format!("{parent}.wh.{name}"), Vec::new(), 0o644)
    }

    /// Hides everything the layers below have in `directory`: an empty file `.wh..wh..opq`
    /// inside it.
    pub fn opaque(self, directory: &str) -> Layer {
        let directory = entry_path(directory);
        self.file(&format!("{directory}/.wh..wh..opq"), Vec::new(), 0o644)
    }

    /// A minimal userland: the host's static `/bin/busybox` with its applets linked beside it,
    /// `/etc/passwd` and `/etc/group` with `root`, `app` (1000) and `nobody` (65534), a
    /// sticky `/tmp`, and the usual top-level directories.
    pub fn busybox(self) -> Layer {
        let mut layer = self.dir("/bin").file("/bin/busybox", host_busybox(), 0o755);
        for applet in BUSYBOX_APPLETS {
            layer = layer.symlink(&format!("/bin/{applet}"), "busybox");
        }
        layer
            .dir("/etc")
            .file(
                "/etc/passwd",
                "root:x:0:0:root:/root:/bin/sh\n\
                 app:x:1000:1000:app:/home/app:/bin/sh\n\
                 nobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n",
                0o644,
            )
            .file(
                "/etc/group",
                "root:x:0:\napp:x:1000:\nnobody:x:65534:\n",
                0o644,
            )
            .dir_owned("/tmp", 0o1777, 0, 0)
            .dir_owned("/root", 0o700, 0, 0)
            .dir("/home")
            .dir_owned("/home/app", 0o755, 1000, 1000)
            .dir("/dev")
            .dir("/proc")
            .dir("/sys")
    }

    /// The uncompressed tar of this layer.
    pub fn tar(&self) -> Vec<u8> {
        let declared: BTreeMap<&str, &Entry> = self
            .entries
            .iter()
            .filter(|entry| matches!(entry, Entry::Directory { .. }))
            .map(|entry| (entry.path(), entry))
            .collect();
        let mut written_directories: BTreeSet<String> = BTreeSet::new();
        let mut builder = tar::Builder::new(Vec::new());
        for entry in &self.entries {
            let path = entry.path();
            let mut ancestors: Vec<&str> = path
                .match_indices('/')
                .map(|(index, _)| &path[..index])
                .collect();
            if matches!(entry, Entry::Directory { .. }) {
                ancestors.push(path);
            }
            for directory in ancestors {
                if !written_directories.insert(directory.to_string()) {
                    continue;
                }
                match declared.get(directory) {
                    Some(declared) => append_entry(&mut builder, declared),
                    None => append_entry(
                        &mut builder,
                        &Entry::Directory {
                            path: directory.to_string(),
                            mode: 0o755,
                            uid: 0,
                            gid: 0,
                        },
                    ),
                }
            }
            if !matches!(entry, Entry::Directory { .. }) {
                append_entry(&mut builder, entry);
            }
        }
        builder.into_inner().expect("finish a layer tar")
    }
}

/// `path` without leading or trailing slashes; panics on one that leaves the root.
fn entry_path(path: &str) -> String {
    let trimmed = path.trim_matches('/');
    assert!(
        !trimmed.is_empty()
            && !trimmed
                .split('/')
                .any(|part| part == ".." || part.is_empty()),
        "layer entry path {path:?} must name something under the root"
    );
    trimmed.to_string()
}

fn append_entry(builder: &mut tar::Builder<Vec<u8>>, entry: &Entry) {
    let header = |entry_type: tar::EntryType, mode: u32, uid: u64, gid: u64, size: u64| {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(entry_type);
        header.set_mode(mode);
        header.set_uid(uid);
        header.set_gid(gid);
        header.set_mtime(FIXED_MTIME);
        header.set_size(size);
        header
    };
    let result = match entry {
        Entry::File {
            path,
            contents,
            mode,
            uid,
            gid,
        } => {
            let mut header = header(
                tar::EntryType::Regular,
                *mode,
                *uid,
                *gid,
                contents.len() as u64,
            );
            builder.append_data(&mut header, path, contents.as_slice())
        }
        Entry::Directory {
            path,
            mode,
            uid,
            gid,
        } => {
            let mut header = header(tar::EntryType::Directory, *mode, *uid, *gid, 0);
            builder.append_data(&mut header, format!("{path}/"), std::io::empty())
        }
        Entry::Symlink { path, target } => {
            let mut header = header(tar::EntryType::Symlink, 0o777, 0, 0, 0);
            builder.append_link(&mut header, path, target)
        }
        Entry::Hardlink { path, target } => {
            let mut header = header(tar::EntryType::Link, 0o644, 0, 0, 0);
            builder.append_link(&mut header, path, target)
        }
    };
    result.unwrap_or_else(|error| panic!("write {:?} into a layer: {error}", entry.path()));
}

/// The host's busybox; panics unless it is there and statically linked.
fn host_busybox() -> Vec<u8> {
    let bytes = std::fs::read(HOST_BUSYBOX).unwrap_or_else(|error| {
        panic!(
            "cannot read {HOST_BUSYBOX} ({error}): install the Debian package `busybox-static` \
             (apt-get install busybox-static)"
        )
    });
    assert!(
        is_static_elf(&bytes),
        "{HOST_BUSYBOX} is not a statically linked ELF, so it cannot run inside an image: \
         install the Debian package `busybox-static` (apt-get install busybox-static)"
    );
    bytes
}

/// Whether `bytes` is a 64-bit little-endian ELF without a program interpreter.
fn is_static_elf(bytes: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    let read = |offset: usize, length: usize| -> Option<u64> {
        let field = bytes.get(offset..offset + length)?;
        Some(
            field
                .iter()
                .rev()
                .fold(0u64, |value, byte| (value << 8) | u64::from(*byte)),
        )
    };
    if bytes.get(..6) != Some(b"\x7fELF\x02\x01".as_slice()) {
        return false;
    }
    let (Some(table), Some(entry_size), Some(count)) =
        (read(0x20, 8), read(0x36, 2), read(0x38, 2))
    else {
        return false;
    };
    (0..count).all(|index| {
        let offset = (table + index * entry_size) as usize;
        read(offset, 4).is_some_and(|kind| kind != u64::from(PT_INTERP))
    })
}

// ---------------------------------------------------------------------------------------------
// Images
// ---------------------------------------------------------------------------------------------

/// What [`ImageBuilder::write_layout`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageInfo {
    pub manifest_digest: String,
    pub config_digest: String,
    /// Digests of the layer blobs as stored, compressed.
    pub layer_digests: Vec<String>,
    /// Digests of the uncompressed layer tars, as the config lists them.
    pub diff_ids: Vec<String>,
    /// Bytes of the config and layer blobs together, as a registry stores them.
    pub total_bytes: u64,
}

/// An image built from [`Layer`]s, written as an OCI layout or a `docker save` archive.
#[derive(Clone, Debug)]
pub struct ImageBuilder {
    layers: Vec<Layer>,
    architecture: String,
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    env: Vec<String>,
    working_dir: Option<String>,
    user: Option<String>,
    exposed_ports: Vec<String>,
    compression: Compression,
}

impl Default for ImageBuilder {
    fn default() -> Self {
        ImageBuilder::new()
    }
}

/// An image in memory: its blobs and the facts about them.
struct BuiltImage {
    config: Vec<u8>,
    /// (uncompressed tar, blob) per layer.
    layers: Vec<(Vec<u8>, Vec<u8>)>,
    manifest: Vec<u8>,
    info: ImageInfo,
}

impl ImageBuilder {
    /// An image for the host's architecture with no layers and an empty config.
    pub fn new() -> ImageBuilder {
        ImageBuilder {
            layers: Vec::new(),
            architecture: host_architecture().to_string(),
            entrypoint: None,
            cmd: None,
            env: Vec::new(),
            working_dir: None,
            user: None,
            exposed_ports: Vec::new(),
            compression: Compression::default(),
        }
    }

    /// Adds a layer on top of the ones so far.
    pub fn layer(mut self, layer: Layer) -> ImageBuilder {
        self.layers.push(layer);
        self
    }

    pub fn entrypoint<S: Into<String>>(mut self, arguments: impl IntoIterator<Item = S>) -> Self {
        self.entrypoint = Some(arguments.into_iter().map(Into::into).collect());
        self
    }

    pub fn cmd<S: Into<String>>(mut self, arguments: impl IntoIterator<Item = S>) -> Self {
        self.cmd = Some(arguments.into_iter().map(Into::into).collect());
        self
    }

    /// Adds `NAME=VALUE` to the config's `Env`.
    pub fn env(mut self, name: &str, value: &str) -> ImageBuilder {
        self.env.push(format!("{name}={value}"));
        self
    }

    pub fn workdir(mut self, directory: &str) -> ImageBuilder {
        self.working_dir = Some(directory.to_string());
        self
    }

    /// The config's `User`: `name`, `uid`, `uid:gid` or `name:group`.
    pub fn user(mut self, user: &str) -> ImageBuilder {
        self.user = Some(user.to_string());
        self
    }

    /// Adds a port such as `8080/tcp` to the config's `ExposedPorts`.
    pub fn exposed_port(mut self, port: &str) -> ImageBuilder {
        self.exposed_ports.push(port.to_string());
        self
    }

    /// The architecture in the config, `amd64`, `arm64`, ...; the host's by default.
    pub fn architecture(mut self, architecture: &str) -> ImageBuilder {
        self.architecture = architecture.to_string();
        self
    }

    pub fn compression(mut self, compression: Compression) -> ImageBuilder {
        self.compression = compression;
        self
    }

    /// Writes the image into the OCI layout at `dir` (created if needed) and names it `tag`
    /// in `index.json`; other tags already in the layout stay.
    pub fn write_layout(&self, dir: &Path, tag: &str) -> ImageInfo {
        let image = self.build();
        write_image_blobs(dir, &image);
        write_blob(dir, &image.manifest);
        add_to_layout_index(dir, tag, descriptor(MANIFEST_MEDIA_TYPE, &image.manifest));
        image.info
    }

    /// Writes the image as the archive `docker save` made before it wrote OCI layouts:
    /// `manifest.json`, `<config hex>.json`, `<layer id>/layer.tar` (uncompressed) with its
    /// `VERSION` and `json`, and `repositories`. `repo_tag` is `repository:tag`.
    pub fn write_docker_save(&self, file: &Path, repo_tag: &str) {
        let image = self.build();
        let (repository, tag) = repo_tag
            .rsplit_once(':')
            .unwrap_or_else(|| panic!("{repo_tag:?} is not REPOSITORY:TAG"));
        let mut entries: Vec<(String, Vec<u8>)> = Vec::new();
        let config_name = format!("{}.json", hex_of(&image.info.config_digest));
        entries.push((config_name.clone(), image.config.clone()));
        let mut layer_paths = Vec::new();
        let mut parent: Option<String> = None;
        for (diff_id, (tar, _)) in image.info.diff_ids.iter().zip(&image.layers) {
            // The chain id: unique per layer position, as docker's own layer ids are.
            let id = match &parent {
                None => hex_of(diff_id).to_string(),
                Some(parent) => {
                    hex_of(&sha256_digest(format!("{parent} {diff_id}").as_bytes())).to_string()
                }
            };
            let mut legacy = json!({ "id": id, "created": FIXED_CREATED });
            if let Some(parent) = &parent {
                legacy["parent"] = json!(parent);
            }
            entries.push((format!("{id}/VERSION"), b"1.0".to_vec()));
            entries.push((format!("{id}/json"), to_json_bytes(&legacy)));
            entries.push((format!("{id}/layer.tar"), tar.clone()));
            layer_paths.push(format!("{id}/layer.tar"));
            parent = Some(id);
        }
        let manifest = json!([{
            "Config": config_name,
            "RepoTags": [repo_tag],
            "Layers": layer_paths,
        }]);
        entries.push(("manifest.json".to_string(), to_json_bytes(&manifest)));
        if let Some(top) = &parent {
            let repositories = json!({ repository: { tag: top } });
            entries.push(("repositories".to_string(), to_json_bytes(&repositories)));
        }

        let mut builder = tar::Builder::new(Vec::new());
        let mut directories = BTreeSet::new();
        for (path, contents) in &entries {
            if let Some((directory, _)) = path.split_once('/') {
                if directories.insert(directory.to_string()) {
                    append_entry(
                        &mut builder,
                        &Entry::Directory {
                            path: directory.to_string(),
                            mode: 0o755,
                            uid: 0,
                            gid: 0,
                        },
                    );
                }
            }
            append_entry(
                &mut builder,
                &Entry::File {
                    path: path.clone(),
                    contents: contents.clone(),
                    mode: 0o644,
                    uid: 0,
                    gid: 0,
                },
            );
        }
        let archive = builder
            .into_inner()
            .expect("finish the docker save archive");
        std::fs::write(file, archive)
            .unwrap_or_else(|error| panic!("write {}: {error}", file.display()));
    }

    fn build(&self) -> BuiltImage {
        let layers: Vec<(Vec<u8>, Vec<u8>)> = self
            .layers
            .iter()
            .map(|layer| {
                let tar = layer.tar();
                let blob = self.compression.compress(&tar);
                (tar, blob)
            })
            .collect();
        let diff_ids: Vec<String> = layers.iter().map(|(tar, _)| sha256_digest(tar)).collect();

        let mut container_config = serde_json::Map::new();
        if let Some(entrypoint) = &self.entrypoint {
            container_config.insert("Entrypoint".into(), json!(entrypoint));
        }
        if let Some(cmd) = &self.cmd {
            container_config.insert("Cmd".into(), json!(cmd));
        }
        if !self.env.is_empty() {
            container_config.insert("Env".into(), json!(self.env));
        }
        if let Some(working_dir) = &self.working_dir {
            container_config.insert("WorkingDir".into(), json!(working_dir));
        }
        if let Some(user) = &self.user {
            container_config.insert("User".into(), json!(user));
        }
        if !self.exposed_ports.is_empty() {
            let ports: serde_json::Map<String, Value> = self
                .exposed_ports
                .iter()
                .map(|port| (port.clone(), json!({})))
                .collect();
            container_config.insert("ExposedPorts".into(), Value::Object(ports));
        }
        let history: Vec<Value> = (1..=layers.len())
            .map(|number| {
                json!({
                    "created": FIXED_CREATED,
                    "created_by": format!("ward test fixture layer {number}"),
                })
            })
            .collect();
        let config = to_json_bytes(&json!({
            "created": FIXED_CREATED,
            "architecture": self.architecture,
            "os": "linux",
            "config": container_config,
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
            "history": history,
        }));

        let manifest = to_json_bytes(&json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": descriptor(CONFIG_MEDIA_TYPE, &config),
            "layers": layers
                .iter()
                .map(|(_, blob)| descriptor(self.compression.media_type(), blob))
                .collect::<Vec<_>>(),
        }));

        let info = ImageInfo {
            manifest_digest: sha256_digest(&manifest),
            config_digest: sha256_digest(&config),
            layer_digests: layers.iter().map(|(_, blob)| sha256_digest(blob)).collect(),
            diff_ids,
            total_bytes: config.len() as u64
                + layers
                    .iter()
                    .map(|(_, blob)| blob.len() as u64)
                    .sum::<u64>(),
        };
        BuiltImage {
            config,
            layers,
            manifest,
            info,
        }
    }
}

/// The standard fixture: busybox, then a layer with `/etc/ward-fixture/{keep,gone}` and
/// `/srv/index.html`, then a layer that deletes `/etc/ward-fixture/gone` and adds
/// `/srv/second`; it runs `echo hello from busybox` in `/srv` and exposes 8080/tcp.
pub fn busybox_image() -> ImageBuilder {
    ImageBuilder::new()
        .layer(Layer::new().busybox())
        .layer(
            Layer::new()
                .file("/etc/ward-fixture/keep", "keep\n", 0o644)
                .file("/etc/ward-fixture/gone", "gone\n", 0o644)
                .file("/srv/index.html", "hello from the image\n", 0o644),
        )
        .layer(Layer::new().whiteout("/etc/ward-fixture/gone").file(
            "/srv/second",
            "second layer\n",
            0o644,
        ))
        .cmd(["/bin/sh", "-c", "echo hello from busybox"])
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("FIXTURE", "1")
        .workdir("/srv")
        .exposed_port("8080/tcp")
}

/// The host's architecture as OCI names it.
pub fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        other => other,
    }
}

/// The architecture of the second image in [`write_multi_platform_layout`]: `arm64`, or
/// `amd64` on an arm64 host.
pub fn foreign_architecture() -> &'static str {
    if host_architecture() == "arm64" {
        "amd64"
    } else {
        "arm64"
    }
}

/// Writes an index of two images into the OCI layout at `dir`, tagged `tag`: `host` for
/// linux/<host architecture>, and one for linux/[`foreign_architecture`] whose only layer is a
/// file `/platform` holding that architecture's name. Returns the index digest.
pub fn write_multi_platform_layout(host: &ImageBuilder, dir: &Path, tag: &str) -> String {
    let foreign_architecture = foreign_architecture();
    let foreign = ImageBuilder::new()
        .architecture(foreign_architecture)
        .compression(host.compression)
        .layer(Layer::new().file("/platform", foreign_architecture, 0o644));
    let mut manifests = Vec::new();
    for image in [host, &foreign] {
        let built = image.build();
        write_image_blobs(dir, &built);
        write_blob(dir, &built.manifest);
        let mut manifest_descriptor = descriptor(MANIFEST_MEDIA_TYPE, &built.manifest);
        manifest_descriptor["platform"] = json!({
            "architecture": image.architecture,
            "os": "linux",
        });
        manifests.push(manifest_descriptor);
    }
    let index = to_json_bytes(&json!({
        "schemaVersion": 2,
        "mediaType": INDEX_MEDIA_TYPE,
        "manifests": manifests,
    }));
    let digest = write_blob(dir, &index);
    add_to_layout_index(dir, tag, descriptor(INDEX_MEDIA_TYPE, &index));
    digest
}

// ---------------------------------------------------------------------------------------------
// OCI layout
// ---------------------------------------------------------------------------------------------

/// Writes the config and layer blobs of `image` into the layout at `dir`.
fn write_image_blobs(dir: &Path, image: &BuiltImage) {
    write_blob(dir, &image.config);
    for (_, blob) in &image.layers {
        write_blob(dir, blob);
    }
}

/// Writes `bytes` to `dir/blobs/sha256/<hex>` and `dir/oci-layout`; returns the digest.
fn write_blob(dir: &Path, bytes: &[u8]) -> String {
    let digest = sha256_digest(bytes);
    let blobs = dir.join("blobs").join("sha256");
    std::fs::create_dir_all(&blobs)
        .unwrap_or_else(|error| panic!("create {}: {error}", blobs.display()));
    write_file(
        &dir.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    );
    write_file(&blobs.join(hex_of(&digest)), bytes);
    digest
}

/// Names `descriptor` `tag` in the layout's `index.json`, replacing what had that name.
fn add_to_layout_index(dir: &Path, tag: &str, mut descriptor: Value) {
    let path = dir.join("index.json");
    let mut manifests: Vec<Value> = match std::fs::read(&path) {
        Ok(bytes) => {
            let index: Value = serde_json::from_slice(&bytes)
                .unwrap_or_else(|error| panic!("parse {}: {error}", path.display()));
            index["manifests"].as_array().cloned().unwrap_or_default()
        }
        Err(_) => Vec::new(),
    };
    manifests.retain(|existing| existing["annotations"][REF_NAME_ANNOTATION] != tag);
    descriptor["annotations"] = json!({ REF_NAME_ANNOTATION: tag });
    manifests.push(descriptor);
    let index = json!({
        "schemaVersion": 2,
        "mediaType": INDEX_MEDIA_TYPE,
        "manifests": manifests,
    });
    write_file(&path, &to_json_bytes(&index));
}

fn descriptor(media_type: &str, bytes: &[u8]) -> Value {
    json!({
        "mediaType": media_type,
        "digest": sha256_digest(bytes),
        "size": bytes.len(),
    })
}

fn write_file(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap_or_else(|error| panic!("write {}: {error}", path.display()));
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// The hex part of a `sha256:<hex>` digest.
fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

fn to_json_bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).expect("serialise JSON")
}

/// The path of blob `digest` in the OCI layout at `dir`.
pub fn blob_path(dir: &Path, digest: &str) -> PathBuf {
    dir.join("blobs").join("sha256").join(hex_of(digest))
}
