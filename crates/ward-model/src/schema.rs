//! JSON Schema to a GBNF grammar for llama.cpp's grammar sampler, so that a completion asked
//! for with `response_format` is JSON that a strict parser takes and the schema accepts.
//!
//! Strings never hold a raw control character (strict parsers refuse them), and every string,
//! array and number is bounded, so a completion ends well within its token budget: objects
//! carry every declared property, in order, and no other.

use std::fmt::Write;

use serde_json::Value;

/// The longest string a grammar lets through, in characters.
const MAX_STRING: u32 = 48;
/// The most items of an array without `maxItems`.
const MAX_ITEMS: u32 = 6;
/// How deep `json_object` mode nests objects and arrays.
const ANY_DEPTH: u32 = 2;

/// Rules every grammar shares.
const COMMON: &str = r#"ws ::= [ ]?
string ::= "\"" char{0,48} "\""
char ::= [^"\\\x00-\x1F\x7F] | "\\" ["\\/bfnrt] | "\\u" [0-9a-fA-F]{4}
integer ::= "-"? ("0" | [1-9] [0-9]{0,8})
number ::= integer ("." [0-9]{1,6})? ([eE] [-+]? [0-9]{1,2})?
boolean ::= "true" | "false"
null ::= "null"
"#;

/// A grammar for any JSON object (OpenAI's `response_format: {"type": "json_object"}`).
pub fn any_object() -> String {
    let mut grammar = String::from("root ::= object0\n");
    for depth in 0..=ANY_DEPTH {
        let value = if depth < ANY_DEPTH {
            format!(
                "string | number | boolean | null | object{next} | array{next}",
                next = depth + 1
            )
        } else {
            "string | number | boolean | null".to_string()
        };
        let _ = writeln!(grammar, "value{depth} ::= {value}");
        let _ = writeln!(
            grammar,
            "object{depth} ::= \"{{\" ws (string ws \":\" ws value{depth} (ws \",\" ws string ws \":\" ws value{depth}){{0,{}}})? ws \"}}\"",
            MAX_ITEMS - 1
        );
        let _ = writeln!(
            grammar,
            "array{depth} ::= \"[\" ws (value{depth} (ws \",\" ws value{depth}){{0,{}}})? ws \"]\"",
            MAX_ITEMS - 1
        );
    }
    grammar.push_str(COMMON);
    debug_assert!(COMMON.contains(&format!("{{0,{MAX_STRING}}}")));
    grammar
}

/// A grammar for what `schema` accepts; refuses what it cannot express, naming it.
pub fn from_schema(schema: &Value) -> Result<String, String> {
    let mut builder = Builder::default();
    let root = builder.rule_for(schema, "schema")?;
    let mut grammar = format!("root ::= {root}\n");
    for (name, body) in &builder.rules {
        let _ = writeln!(grammar, "{name} ::= {body}");
    }
    grammar.push_str(COMMON);
    Ok(grammar)
}

/// A grammar for a JSON object naming tool calls, `{"tool_calls": [{"name": …, "arguments":
/// {…}}, …]}` (at most `max_calls` of them, each of a declared tool with arguments its
/// parameters' schema accepts) and, when `answer` is set, `{"response": "…"}` besides.
pub fn tool_calls(
    tools: &[(String, Value)],
    answer: bool,
    max_calls: u32,
) -> Result<String, String> {
    if tools.is_empty() {
        return Err("tools: give at least one tool".into());
    }
    let mut builder = Builder::default();
    let mut calls = Vec::new();
    for (index, (name, parameters)) in tools.iter().enumerate() {
        let path = format!("tools[{index}].function.parameters");
        let is_object = match parameters.get("type") {
            None => true,
            Some(kind) => kind == "object",
        };
        if !parameters.is_object() || !is_object {
            return Err(format!(
                "{path}: give an object schema (\"type\": \"object\")"
            ));
        }
        let arguments = builder.rule_for(parameters, &path)?;
        let name = quote(&Value::String(name.clone()).to_string());
        calls.push(builder.add(
            &format!("tool-{index}"),
            format!(
                "\"{{\" ws \"\\\"name\\\"\" ws \":\" ws {name} ws \",\" ws \"\\\"arguments\\\"\" ws \":\" ws {arguments} ws \"}}\""
            ),
        ));
    }
    let call = calls.join(" | ");
    let mut grammar = format!(
        "calls ::= \"{{\" ws \"\\\"tool_calls\\\"\" ws \":\" ws \"[\" ws call (ws \",\" ws call){{0,{}}} ws \"]\" ws \"}}\"\ncall ::= {call}\n",
        max_calls.max(1) - 1
    );
    if answer {
        grammar.insert_str(0, "root ::= calls | answer\n");
        grammar.push_str(
            "answer ::= \"{\" ws \"\\\"response\\\"\" ws \":\" ws \"\\\"\" char* \"\\\"\" ws \"}\"\n",
        );
    } else {
        grammar.insert_str(0, "root ::= calls\n");
    }
    for (name, body) in &builder.rules {
        let _ = writeln!(grammar, "{name} ::= {body}");
    }
    grammar.push_str(COMMON);
    Ok(grammar)
}

#[derive(Default)]
struct Builder {
    rules: Vec<(String, String)>,
}

impl Builder {
    /// A rule name (or inline expression) for `schema`, found at `path`.
    fn rule_for(&mut self, schema: &Value, path: &str) -> Result<String, String> {
        let Some(object) = schema.as_object() else {
            return match schema {
                Value::Bool(true) => Ok(self.add("any", any_value())),
                _ => Err(format!("{path}: a schema is an object")),
            };
        };
        if let Some(values) = object.get("enum").and_then(Value::as_array) {
            return self.literals(values, path);
        }
        if let Some(value) = object.get("const") {
            return self.literals(std::slice::from_ref(value), path);
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(options) = object.get(key).and_then(Value::as_array) {
                let mut rules = Vec::new();
                for (index, option) in options.iter().enumerate() {
                    rules.push(self.rule_for(option, &format!("{path}.{key}[{index}]"))?);
                }
                return Ok(self.add(path, rules.join(" | ")));
            }
        }
        if object.contains_key("$ref") || object.contains_key("allOf") {
            return Err(format!(
                "{path}: $ref and allOf are not supported; write the schema out"
            ));
        }
        let types: Vec<&str> = match object.get("type") {
            Some(Value::String(kind)) => vec![kind.as_str()],
            Some(Value::Array(kinds)) => kinds.iter().filter_map(Value::as_str).collect(),
            None if object.contains_key("properties") => vec!["object"],
            None if object.contains_key("items") => vec!["array"],
            None => return Ok(self.add("any", any_value())),
            Some(_) => return Err(format!("{path}.type: give a type name or a list of them")),
        };
        let mut rules = Vec::new();
        for kind in types {
            rules.push(match kind {
                "string" => self.string(object, path)?,
                "integer" => "integer".to_string(),
                "number" => "number".to_string(),
                "boolean" => "boolean".to_string(),
                "null" => "null".to_string(),
                "array" => self.array(object, path)?,
                "object" => self.object(object, path)?,
                other => return Err(format!("{path}.type: {other:?} is not a JSON Schema type")),
            });
        }
        Ok(if rules.len() == 1 {
            rules.remove(0)
        } else {
            self.add(path, rules.join(" | "))
        })
    }

    fn add(&mut self, path: &str, body: String) -> String {
        if let Some((name, _)) = self.rules.iter().find(|(_, existing)| *existing == body) {
            return name.clone();
        }
        let name = format!("r{}-{}", self.rules.len(), sanitize(path));
        self.rules.push((name.clone(), body));
        name
    }

    fn literals(&mut self, values: &[Value], path: &str) -> Result<String, String> {
        if values.is_empty() {
            return Err(format!("{path}.enum: give at least one value"));
        }
        let alternatives: Vec<String> = values
            .iter()
            .map(|value| quote(&value.to_string()))
            .collect();
        Ok(self.add(path, alternatives.join(" | ")))
    }

    fn string(
        &mut self,
        object: &serde_json::Map<String, Value>,
        path: &str,
    ) -> Result<String, String> {
        if object.contains_key("pattern") || object.contains_key("format") {
            return Err(format!(
                "{path}: pattern and format are not supported on strings"
            ));
        }
        let min = bound(object, "minLength", 0).min(MAX_STRING);
        let max = bound(object, "maxLength", MAX_STRING)
            .min(MAX_STRING)
            .max(min);
        if (min, max) == (0, MAX_STRING) {
            return Ok("string".to_string());
        }
        Ok(self.add(path, format!("\"\\\"\" char{{{min},{max}}} \"\\\"\"")))
    }

    fn array(
        &mut self,
        object: &serde_json::Map<String, Value>,
        path: &str,
    ) -> Result<String, String> {
        let item = match object.get("items") {
            Some(items) => self.rule_for(items, &format!("{path}.items"))?,
            None => self.add("any", any_value()),
        };
        let min = bound(object, "minItems", 0);
        let max = bound(object, "maxItems", MAX_ITEMS.max(min)).max(min);
        let body = match (min, max) {
            (_, 0) => "\"[\" ws \"]\"".to_string(),
            (0, max) => format!(
                "\"[\" ws ({item} (ws \",\" ws {item}){{0,{}}})? ws \"]\"",
                max - 1
            ),
            (min, max) => format!(
                "\"[\" ws {item} (ws \",\" ws {item}){{{},{}}} ws \"]\"",
                min - 1,
                max - 1
            ),
        };
        Ok(self.add(path, body))
    }

    fn object(
        &mut self,
        object: &serde_json::Map<String, Value>,
        path: &str,
    ) -> Result<String, String> {
        let properties = object
            .get("properties")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        if properties.is_empty() {
            return Ok(self.add("empty-object", "\"{\" ws \"}\"".to_string()));
        }
        let mut members = Vec::new();
        for (name, schema) in &properties {
            let value = self.rule_for(schema, &format!("{path}.properties.{name}"))?;
            let key = quote(&Value::String(name.clone()).to_string());
            members.push(format!("{key} ws \":\" ws {value}"));
        }
        let body = format!("\"{{\" ws {} ws \"}}\"", members.join(" ws \",\" ws "));
        Ok(self.add(path, body))
    }
}

/// Any JSON value, bounded as `json_object` mode bounds it.
fn any_value() -> String {
    "string | number | boolean | null".to_string()
}

fn bound(object: &serde_json::Map<String, Value>, key: &str, default: u32) -> u32 {
    object
        .get(key)
        .and_then(Value::as_u64)
        .map_or(default, |value| u32::try_from(value).unwrap_or(u32::MAX))
}

/// `text` as a GBNF string literal.
fn quote(text: &str) -> String {
    let mut quoted = String::from("\"");
    for character in text.chars() {
        match character {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\r' => quoted.push_str("\\r"),
            '\t' => quoted.push_str("\\t"),
            other => quoted.push(other),
        }
    }
    quoted.push('"');
    quoted
}

/// A rule name from a schema path: letters, digits and dashes.
fn sanitize(path: &str) -> String {
    path.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect::<String>()
        .trim_matches('-')
        .chars()
        .take(40)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_schema_becomes_rules_for_each_part() {
        let grammar = from_schema(&json!({
            "type": "object",
            "properties": {
                "name": {"type": "string", "maxLength": 10},
                "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 3},
                "size": {"type": "integer"}
            }
        }))
        .unwrap();
        assert!(grammar.starts_with("root ::= r"), "{grammar}");
        assert!(grammar.contains(r#""\"name\"""#), "{grammar}");
        assert!(grammar.contains("char{0,10}"), "{grammar}");
        assert!(grammar.contains(r#""\"a\"" | "\"b\"""#), "{grammar}");
        assert!(grammar.contains("{0,2}"), "{grammar}");
        // No raw control character can enter a string.
        assert!(grammar.contains(r#"[^"\\\x00-\x1F\x7F]"#), "{grammar}");
    }

    #[test]
    fn what_cannot_be_expressed_is_refused_by_path() {
        let error = from_schema(&json!({"type": "object", "properties": {
            "id": {"type": "string", "pattern": "^a+$"}}}))
        .unwrap_err();
        assert!(error.contains("schema.properties.id"), "{error}");
        assert!(from_schema(&json!({"$ref": "#/defs/x"})).is_err());
        assert!(from_schema(&json!({"type": "colour"})).is_err());
    }
}
