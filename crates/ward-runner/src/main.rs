//! `ward-runner`: runs one model on llama.cpp for the Ward daemon, in a process of its own, so
//! a model that crashes, hangs or runs out of memory takes only its own requests with it.
//!
//! `ward-runner --model FILE (--socket PATH | --listen-fd N) [--context N] [--slots N]
//! [--threads N] [--batch N]` loads the model, then answers on the Unix socket: one it makes
//! at PATH once the model is loaded, or one the daemon made and handed over as descriptor N
//! (so that the runner, which runs as an unprivileged user, needs no path of the daemon's).
//! Each connection sends one request line and reads [`protocol`] lines until its last.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{mpsc, Arc, OnceLock};

use ward_runner::engine::{self, EngineConfig, Event, Job, ModelInfo, Task};
use ward_runner::protocol::Request;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("ward-runner: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    // Started from a descriptor, the process would be named after it ("5"): name it.
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
    unsafe {
        libc::prctl(libc::PR_SET_NAME, c"ward-runner".as_ptr(), 0, 0, 0);
    }
    let (config, socket) = parse_arguments(std::env::args().skip(1))?;
    let (jobs, incoming) = mpsc::channel::<Job>();
    let info: Arc<OnceLock<ModelInfo>> = Arc::default();
    let listener_info = info.clone();
    let socket_path = socket;
    let engine = std::thread::Builder::new()
        .name("engine".into())
        .spawn(move || {
            engine::run(&config, incoming, |loaded| {
                let _ = listener_info.set(loaded.clone());
            })
        })
        .map_err(|error| format!("cannot start the engine thread: {error}"))?;
    // The socket appears once the model is loaded: its existence says the runner is ready.
    while info.get().is_none() {
        if engine.is_finished() {
            return match engine.join() {
                Ok(Err(error)) => Err(error.to_string()),
                _ => Err("the engine stopped before the model loaded".into()),
            };
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let listener = match socket_path {
        Listen::Path(path) => {
            let _ = std::fs::remove_file(&path);
            UnixListener::bind(&path)
                .map_err(|error| format!("cannot listen on {}: {error}", path.display()))?
        }
        // SAFETY: the daemon opened this descriptor as a listening Unix socket for this
        // process, and nothing else here owns it.
        Listen::Descriptor(fd) => unsafe { UnixListener::from_raw_fd(fd) },
    };
    let info = info.get().cloned().expect("set before the loop ended");
    for connection in listener.incoming() {
        let Ok(connection) = connection else { continue };
        let jobs = jobs.clone();
        let info = info.clone();
        std::thread::spawn(move || serve(connection, &jobs, &info));
    }
    Ok(())
}

/// Answers one request on `connection`.
fn serve(connection: UnixStream, jobs: &mpsc::Sender<Job>, info: &ModelInfo) {
    let Ok(reader) = connection.try_clone() else {
        return;
    };
    let mut line = String::new();
    if BufReader::new(reader).read_line(&mut line).is_err() {
        return;
    }
    let mut out = std::io::BufWriter::new(connection);
    match serde_json::from_str::<Request>(&line) {
        Err(error) => {
            reply(
                &mut out,
                &Event::Error(engine::Refusal::Invalid(format!("bad request: {error}"))),
            );
        }
        Ok(Request::Info) => {
            if let Ok(mut text) = serde_json::to_vec(info) {
                text.push(b'\n');
                let _ = out.write_all(&text).and_then(|_| out.flush());
            }
        }
        Ok(Request::Generate(request)) => relay(Task::Generate(request), jobs, &mut out),
        Ok(Request::Embed(request)) => relay(Task::Embed(request), jobs, &mut out),
    }
}

/// Hands `task` to the engine and writes its events until the last.
fn relay(task: Task, jobs: &mpsc::Sender<Job>, out: &mut impl Write) {
    let (events, receiver) = mpsc::channel();
    if jobs.send(Job { task, events }).is_err() {
        return;
    }
    for event in receiver {
        let last = event.is_last();
        // A client that left drops the receiver here, which frees its slot.
        if !reply(out, &event) || last {
            return;
        }
    }
}

/// Writes one event line; false once the client has gone.
fn reply(out: &mut impl Write, event: &Event) -> bool {
    let Ok(mut text) = serde_json::to_vec(event) else {
        return false;
    };
    text.push(b'\n');
    out.write_all(&text).and_then(|_| out.flush()).is_ok()
}

/// Where the runner answers.
enum Listen {
    Path(PathBuf),
    Descriptor(RawFd),
}

fn parse_arguments(
    mut arguments: impl Iterator<Item = String>,
) -> Result<(EngineConfig, Listen), String> {
    let mut model = None;
    let mut socket = None;
    let threads = std::thread::available_parallelism().map_or(1, |count| count.get() as i32);
    let mut config = EngineConfig {
        model: PathBuf::new(),
        context: 4096,
        slots: 4,
        threads,
        batch: 512,
    };
    while let Some(flag) = arguments.next() {
        let mut value = || {
            arguments
                .next()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        let number = |text: String| {
            text.parse::<u32>()
                .map_err(|_| format!("{flag}: {text:?} is not a whole number"))
        };
        match flag.as_str() {
            "--model" => model = Some(PathBuf::from(value()?)),
            "--socket" => socket = Some(Listen::Path(PathBuf::from(value()?))),
            "--listen-fd" => socket = Some(Listen::Descriptor(number(value()?)? as RawFd)),
            "--context" => config.context = number(value()?)?.max(16),
            "--slots" => config.slots = number(value()?)?.max(1),
            "--threads" => config.threads = number(value()?)?.max(1) as i32,
            "--batch" => config.batch = number(value()?)?.max(1),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    config.model = model.ok_or("--model FILE is required")?;
    Ok((
        config,
        socket.ok_or("--socket PATH or --listen-fd N is required")?,
    ))
}
