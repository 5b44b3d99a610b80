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
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/make-test-model.py");
    let status = Command::new(python())
        .arg(&script)
        .arg(path)
        .status()
        .expect("run make-test-model.py (scripts/install-deps.sh installs its packages)");
    assert!(status.success(), "make-test-model.py failed");
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
