//! A completion request as a runner takes it, and the runner's answer as callers hear it: the
//! response format or the tools become a grammar (and, for tools, a system message that
//! describes them); with tools, the model's JSON is read as it comes into calls and words.

use ward_core::inference::{
    ChatMessage, CompletionEvent, CompletionPrompt, CompletionRequest, FinishReason,
    ResponseFormat, ToolChoice,
};
use ward_core::{Error, ErrorKind};
use ward_model::runner::{self, Event};
use ward_model::tools::{self, Piece, Scanner};

/// The most calls one answer may make.
const MAX_CALLS: u32 = 4;

/// The runner's request for `request`, and whether its answer is read for tool calls.
pub fn runner_request(request: CompletionRequest) -> Result<(runner::Generate, bool), Error> {
    let calls_tools = !request.tools.is_empty() && request.tool_choice != ToolChoice::None;
    if calls_tools && request.format != ResponseFormat::Text {
        return Err(Error::invalid(
            "response_format: give it or tools, not both (tool calls have their own format)",
        )
        .with_field("response_format"));
    }
    let mut grammar = match &request.format {
        ResponseFormat::Text => None,
        ResponseFormat::JsonObject => Some(ward_model::schema::any_object()),
        ResponseFormat::JsonSchema(schema) => {
            Some(ward_model::schema::from_schema(schema).map_err(|reason| {
                Error::invalid(format!("response_format.json_schema: {reason}"))
                    .with_field("response_format")
            })?)
        }
    };
    let mut prompt = match request.prompt {
        CompletionPrompt::Text(text) => runner::Prompt::Text(text),
        CompletionPrompt::Chat(messages) => {
            runner::Prompt::Chat(messages.into_iter().map(runner_message).collect())
        }
    };
    if calls_tools {
        let offered: Vec<&ward_core::inference::ToolSpec> = match &request.tool_choice {
            ToolChoice::Named(name) => {
                let named: Vec<_> = request
                    .tools
                    .iter()
                    .filter(|tool| &tool.name == name)
                    .collect();
                if named.is_empty() {
                    return Err(Error::invalid(format!(
                        "tool_choice: no tool is named {name:?}; name one of tools"
                    ))
                    .with_field("tool_choice"));
                }
                named
            }
            _ => request.tools.iter().collect(),
        };
        let may_answer = request.tool_choice == ToolChoice::Auto;
        let described: Vec<tools::Tool> = offered
            .iter()
            .map(|tool| tools::Tool {
                name: tool.name.clone(),
                description: tool.description.clone(),
                parameters: tool.parameters.clone(),
            })
            .collect();
        let schemas: Vec<(String, serde_json::Value)> = described
            .iter()
            .map(|tool| (tool.name.clone(), tool.parameters.clone()))
            .collect();
        grammar = Some(
            ward_model::schema::tool_calls(&schemas, may_answer, MAX_CALLS)
                .map_err(|reason| Error::invalid(reason).with_field("tools"))?,
        );
        let system = tools::system_prompt(&described, may_answer);
        match &mut prompt {
            runner::Prompt::Chat(messages) => match messages.first_mut() {
                Some(first) if first.role == "system" => {
                    first.content = format!("{}\n\n{system}", first.content);
                }
                _ => messages.insert(
                    0,
                    runner::ChatMessage {
                        role: "system".into(),
                        content: system,
                    },
                ),
            },
            runner::Prompt::Text(_) => {
                return Err(
                    Error::invalid("tools: tools are for chat completions").with_field("tools")
                )
            }
        }
    }
    Ok((
        runner::Generate {
            prompt,
            max_tokens: request.max_tokens,
            temperature: request.temperature,
            top_p: request.top_p,
            seed: request.seed,
            stop: request.stop,
            grammar,
        },
        calls_tools,
    ))
}

/// A turn of the conversation as the model reads it: calls it made are written as it would
/// have written them.
fn runner_message(message: ChatMessage) -> runner::ChatMessage {
    if !message.tool_calls.is_empty() {
        let calls: Vec<tools::Call> = message
            .tool_calls
            .into_iter()
            .map(|call| tools::Call {
                name: call.name,
                arguments: call.arguments,
            })
            .collect();
        return runner::ChatMessage {
            role: message.role,
            content: tools::calls_message(&calls),
        };
    }
    runner::ChatMessage {
        role: message.role,
        content: message.content,
    }
}

/// Turns a runner's events into a caller's.
pub struct Translator {
    /// Set when the answer is read for tool calls.
    scanner: Option<Scanner>,
    /// Makes the calls' ids unique.
    id_base: String,
}

impl Translator {
    pub fn new(calls_tools: bool) -> Translator {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos());
        Translator {
            scanner: calls_tools.then(Scanner::default),
            id_base: format!("call_{nanos:x}"),
        }
    }

    pub fn translate(&mut self, event: Event) -> Vec<CompletionEvent> {
        match event {
            Event::Text(text) => match &mut self.scanner {
                None => vec![CompletionEvent::Text(text)],
                Some(scanner) => scanner
                    .push(&text)
                    .into_iter()
                    .map(|piece| match piece {
                        Piece::Text(text) => CompletionEvent::Text(text),
                        Piece::Call { index, name } => CompletionEvent::ToolCall {
                            index,
                            id: format!("{}_{index}", self.id_base),
                            name,
                        },
                        Piece::Arguments { index, text } => {
                            CompletionEvent::ToolArguments { index, text }
                        }
                    })
                    .collect(),
            },
            Event::Done {
                finish_reason,
                prompt_tokens,
                completion_tokens,
                cached_tokens,
            } => {
                let called = self
                    .scanner
                    .as_ref()
                    .is_some_and(|scanner| scanner.calls() > 0);
                vec![CompletionEvent::Done {
                    finish_reason: match finish_reason {
                        runner::FinishReason::Stop if called => FinishReason::ToolCalls,
                        runner::FinishReason::Stop => FinishReason::Stop,
                        runner::FinishReason::Length => FinishReason::Length,
                    },
                    prompt_tokens,
                    completion_tokens,
                    cached_tokens,
                }]
            }
            Event::Error(refusal) => {
                vec![CompletionEvent::Failed(crate::services::refused(refusal))]
            }
            Event::Embeddings { .. } => vec![CompletionEvent::Failed(Error::new(
                ErrorKind::Unavailable,
                "the model's runner answered embeddings to a completion",
            ))],
        }
    }
}
