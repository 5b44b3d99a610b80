//! `ward chat MODEL`: a conversation with a model, as `ollama run` has one. Each line read is
//! a user message; the answer streams to standard output as it comes, and joins the
//! conversation, so the model sees everything said so far.

use std::io::Write;

use anyhow::bail;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::cli::ChatArgs;
use crate::commands::Context;

pub async fn run(context: &Context, arguments: ChatArgs) -> anyhow::Result<i32> {
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stdin());
    let mut system = arguments.system.clone();
    let mut history: Vec<Value> = Vec::new();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        if interactive {
            eprint!(">>> ");
        }
        let Some(line) = lines.next_line().await? else {
            break;
        };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match line
            .split_once(' ')
            .map_or((line, ""), |(word, rest)| (word, rest))
        {
            ("/exit" | "/bye", _) => break,
            ("/reset", _) => {
                history.clear();
                if interactive {
                    eprintln!("(the conversation starts over)");
                }
                continue;
            }
            ("/system", text) => {
                system = Some(text.trim().to_string()).filter(|text| !text.is_empty());
                history.clear();
                if interactive {
                    eprintln!("(the system prompt is set; the conversation starts over)");
                }
                continue;
            }
            (command, _) if command.starts_with('/') => {
                eprintln!("unknown command {command}: use /system TEXT, /reset or /exit");
                continue;
            }
            _ => {}
        }
        history.push(json!({"role": "user", "content": line}));
        let mut messages: Vec<Value> = Vec::new();
        if let Some(system) = &system {
            messages.push(json!({"role": "system", "content": system}));
        }
        messages.extend(history.iter().cloned());
        let mut request = json!({
            "model": arguments.model,
            "messages": messages,
            "max_tokens": arguments.max_tokens,
        });
        if let Some(temperature) = arguments.temperature {
            request["temperature"] = json!(temperature);
        }
        if let Some(seed) = arguments.seed {
            request["seed"] = json!(seed);
        }
        let answer = stream_answer(context, &request).await?;
        history.push(json!({"role": "assistant", "content": answer}));
    }
    Ok(0)
}

/// Prints the answer as it streams; returns it whole.
async fn stream_answer(context: &Context, request: &Value) -> anyhow::Result<String> {
    let mut chunks = Box::pin(context.client.chat_stream(request).await?);
    let mut answer = String::new();
    let mut out = std::io::stdout();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk?;
        if let Some(error) = chunk.get("error") {
            println!();
            bail!(
                "{}",
                error["message"].as_str().unwrap_or("the answer broke off")
            );
        }
        let piece = chunk["choices"][0]["delta"]["content"]
            .as_str()
            .unwrap_or_default();
        if !piece.is_empty() {
            answer.push_str(piece);
            out.write_all(piece.as_bytes())?;
            out.flush()?;
        }
    }
    writeln!(out)?;
    Ok(answer)
}
