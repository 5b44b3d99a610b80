//! Tool calls for models whose chat template knows no tools: the tools are described in a
//! system message, the model answers with a JSON object that a grammar holds to the
//! declared tools (`{"tool_calls": [{"name": …, "arguments": {…}}]}`, or `{"response": "…"}`
//! when it may answer in words), and [`Scanner`] reads that object as it is generated, so a
//! stream can carry each call's name as soon as it is known and its arguments piece by piece.

use serde_json::{json, Value};

/// A tool the model may call.
#[derive(Clone, Debug, PartialEq)]
pub struct Tool {
    pub name: String,
    pub description: Option<String>,
    /// A JSON Schema of an object.
    pub parameters: Value,
}

/// A call the model made (or made earlier in a conversation).
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    pub name: String,
    /// JSON text of an object.
    pub arguments: String,
}

/// The system message that tells the model of `tools` and how to call them.
pub fn system_prompt(tools: &[Tool], may_answer: bool) -> String {
    let listed: Vec<Value> = tools
        .iter()
        .map(|tool| {
            json!({"name": tool.name, "description": tool.description, "parameters": tool.parameters})
        })
        .collect();
    let listed = serde_json::to_string_pretty(&listed).unwrap_or_default();
    let mut prompt = format!(
        "You can call these tools:\n{listed}\n\nTo call tools, reply with only a JSON object: \
         {{\"tool_calls\": [{{\"name\": \"<tool name>\", \"arguments\": {{<arguments>}}}}]}}."
    );
    if may_answer {
        prompt.push_str(
            " To answer without a tool, reply with only {\"response\": \"<your answer>\"}.",
        );
    }
    prompt
}

/// An assistant turn that made `calls`, as the model writes it.
pub fn calls_message(calls: &[Call]) -> String {
    // Written out by hand: the name comes before the arguments, as the grammar has it.
    let calls: Vec<String> = calls
        .iter()
        .map(|call| {
            let arguments = serde_json::from_str::<Value>(&call.arguments)
                .unwrap_or_else(|_| Value::String(call.arguments.clone()));
            format!(
                "{{\"name\": {}, \"arguments\": {arguments}}}",
                Value::String(call.name.clone())
            )
        })
        .collect();
    format!("{{\"tool_calls\": [{}]}}", calls.join(", "))
}

/// What the model's JSON says, as it comes.
#[derive(Clone, Debug, PartialEq)]
pub enum Piece {
    /// Words of a `response`, unescaped.
    Text(String),
    /// Call `index` begins, to tool `name`.
    Call { index: u32, name: String },
    /// More of call `index`'s arguments (JSON text).
    Arguments { index: u32, text: String },
}

#[derive(Debug)]
enum State {
    /// Before the first key: not yet known whether it calls tools or answers.
    Opening(String),
    /// Inside the `response` string.
    Response {
        escape: Option<String>,
    },
    /// In the list of calls, between them.
    BetweenCalls,
    /// In a call object, before its arguments begin.
    CallHead(String),
    /// In a call's arguments.
    Arguments {
        depth: u32,
        in_string: bool,
        escaped: bool,
    },
    /// After a call's arguments, before the call object closes.
    CallTail,
    Done,
}

/// Reads the model's JSON object incrementally.
#[derive(Debug)]
pub struct Scanner {
    state: State,
    calls: u32,
    /// The high half of a UTF-16 surrogate pair, waiting for its low half.
    surrogate: Option<u16>,
}

impl Default for Scanner {
    fn default() -> Self {
        Scanner {
            state: State::Opening(String::new()),
            calls: 0,
            surrogate: None,
        }
    }
}

impl Scanner {
    /// Calls begun so far.
    pub fn calls(&self) -> u32 {
        self.calls
    }

    /// Takes the next text the model generated; returns what it completed.
    pub fn push(&mut self, text: &str) -> Vec<Piece> {
        let mut pieces = Vec::new();
        let mut words = String::new();
        let mut arguments = String::new();
        for character in text.chars() {
            let state = std::mem::replace(&mut self.state, State::Done);
            self.state = match state {
                State::Opening(mut seen) => {
                    if !character.is_whitespace() {
                        seen.push(character);
                    }
                    if seen == "{\"response\":\"" {
                        State::Response { escape: None }
                    } else if seen == "{\"tool_calls\":[" {
                        State::BetweenCalls
                    } else if "{\"response\":\"".starts_with(&seen)
                        || "{\"tool_calls\":[".starts_with(&seen)
                    {
                        State::Opening(seen)
                    } else {
                        State::Done
                    }
                }
                State::Response { escape: None } => match character {
                    '\\' => State::Response {
                        escape: Some(String::new()),
                    },
                    '"' => State::Done,
                    other => {
                        words.push(other);
                        State::Response { escape: None }
                    }
                },
                State::Response {
                    escape: Some(mut escape),
                } => {
                    escape.push(character);
                    match self.unescape(&escape) {
                        Unescaped::More => State::Response {
                            escape: Some(escape),
                        },
                        Unescaped::Character(decoded) => {
                            words.extend(decoded);
                            State::Response { escape: None }
                        }
                    }
                }
                State::BetweenCalls => match character {
                    '{' => State::CallHead(String::from("{")),
                    ']' => State::Done,
                    _ => State::BetweenCalls,
                },
                State::CallHead(mut seen) => {
                    if !character.is_whitespace() {
                        seen.push(character);
                    }
                    match call_name(&seen) {
                        Some(name) => {
                            flush(&mut pieces, &mut words, &mut arguments, self.calls);
                            pieces.push(Piece::Call {
                                index: self.calls,
                                name,
                            });
                            State::Arguments {
                                depth: 0,
                                in_string: false,
                                escaped: false,
                            }
                        }
                        None => State::CallHead(seen),
                    }
                }
                State::Arguments {
                    mut depth,
                    mut in_string,
                    mut escaped,
                } => {
                    if depth == 0 && character.is_whitespace() {
                        State::Arguments {
                            depth,
                            in_string,
                            escaped,
                        }
                    } else {
                        arguments.push(character);
                        if in_string {
                            if escaped {
                                escaped = false;
                            } else if character == '\\' {
                                escaped = true;
                            } else if character == '"' {
                                in_string = false;
                            }
                        } else {
                            match character {
                                '{' | '[' => depth += 1,
                                '}' | ']' => depth = depth.saturating_sub(1),
                                '"' => in_string = true,
                                _ => {}
                            }
                        }
                        if depth == 0 && !in_string {
                            flush(&mut pieces, &mut words, &mut arguments, self.calls);
                            self.calls += 1;
                            State::CallTail
                        } else {
                            State::Arguments {
                                depth,
                                in_string,
                                escaped,
                            }
                        }
                    }
                }
                State::CallTail => match character {
                    '}' => State::BetweenCalls,
                    _ => State::CallTail,
                },
                State::Done => State::Done,
            };
        }
        flush(&mut pieces, &mut words, &mut arguments, self.calls);
        pieces
    }

    /// Decodes the escape after a backslash, once it is whole.
    fn unescape(&mut self, escape: &str) -> Unescaped {
        let simple = match escape {
            "\"" => Some('"'),
            "\\" => Some('\\'),
            "/" => Some('/'),
            "b" => Some('\u{8}'),
            "f" => Some('\u{c}'),
            "n" => Some('\n'),
            "r" => Some('\r'),
            "t" => Some('\t'),
            _ => None,
        };
        if let Some(character) = simple {
            self.surrogate = None;
            return Unescaped::Character(Some(character));
        }
        let Some(hex) = escape.strip_prefix('u') else {
            return Unescaped::Character(None);
        };
        if hex.len() < 4 {
            return Unescaped::More;
        }
        let Ok(unit) = u16::from_str_radix(hex, 16) else {
            return Unescaped::Character(None);
        };
        match (self.surrogate.take(), unit) {
            (_, 0xD800..=0xDBFF) => {
                self.surrogate = Some(unit);
                Unescaped::Character(None)
            }
            (Some(high), 0xDC00..=0xDFFF) => {
                Unescaped::Character(char::decode_utf16([high, unit]).next().and_then(Result::ok))
            }
            (_, unit) => Unescaped::Character(char::from_u32(u32::from(unit))),
        }
    }
}

enum Unescaped {
    More,
    Character(Option<char>),
}

/// Sends the words and arguments gathered so far as pieces.
fn flush(pieces: &mut Vec<Piece>, words: &mut String, arguments: &mut String, index: u32) {
    if !words.is_empty() {
        pieces.push(Piece::Text(std::mem::take(words)));
    }
    if !arguments.is_empty() {
        pieces.push(Piece::Arguments {
            index,
            text: std::mem::take(arguments),
        });
    }
}

/// The tool's name once a call's head (without whitespace) reads `{"name":"…","arguments":`.
fn call_name(head: &str) -> Option<String> {
    let rest = head.strip_prefix("{\"name\":")?;
    let rest = rest.strip_suffix(",\"arguments\":")?;
    serde_json::from_str::<String>(rest).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `text` in pieces of `size` characters; returns the merged result.
    fn scan(text: &str, size: usize) -> (String, Vec<(String, String)>) {
        let mut scanner = Scanner::default();
        let characters: Vec<char> = text.chars().collect();
        let mut words = String::new();
        let mut calls: Vec<(String, String)> = Vec::new();
        for chunk in characters.chunks(size) {
            for piece in scanner.push(&chunk.iter().collect::<String>()) {
                match piece {
                    Piece::Text(text) => words.push_str(&text),
                    Piece::Call { index, name } => {
                        assert_eq!(index as usize, calls.len());
                        calls.push((name, String::new()));
                    }
                    Piece::Arguments { index, text } => calls[index as usize].1.push_str(&text),
                }
            }
        }
        (words, calls)
    }

    #[test]
    fn calls_come_out_whole_however_the_text_is_cut() {
        let text = r#"{ "tool_calls" : [ {"name": "get_weather", "arguments": {"city": "Paris \"}\" [", "days": [1, 2]}}, {"name":"time","arguments":{}} ] }"#;
        for size in 1..8 {
            let (words, calls) = scan(text, size);
            assert_eq!(words, "");
            assert_eq!(calls.len(), 2, "{size}");
            assert_eq!(calls[0].0, "get_weather");
            let arguments: Value = serde_json::from_str(&calls[0].1).expect("JSON");
            assert_eq!(arguments, json!({"city": "Paris \"}\" [", "days": [1, 2]}));
            assert_eq!(calls[1], ("time".to_string(), "{}".to_string()));
        }
    }

    #[test]
    fn an_answer_comes_out_unescaped() {
        let text = r#"{"response": "caf\u00e9 \"ok\"\n\ud83d\ude00 done"}"#;
        for size in 1..6 {
            let (words, calls) = scan(text, size);
            assert_eq!(words, "café \"ok\"\n😀 done", "{size}");
            assert!(calls.is_empty());
        }
    }

    #[test]
    fn a_call_message_reads_back_as_the_model_would_write_it() {
        let message = calls_message(&[Call {
            name: "f".into(),
            arguments: r#"{"a": 1}"#.into(),
        }]);
        let (_, calls) = scan(&message, 3);
        assert_eq!(calls, vec![("f".to_string(), r#"{"a":1}"#.to_string())]);
    }
}
