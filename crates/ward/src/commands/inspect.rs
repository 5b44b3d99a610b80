//! `ward inspect NAME...`: the normalised document as pretty JSON; an object for one name, an
//! array for several; or, with `--format`, fields picked out by a Go-template-like text.

use crate::cli::InspectArgs;
use crate::commands::Context;
use crate::output;

pub async fn run(context: &Context, arguments: InspectArgs) -> anyhow::Result<i32> {
    let mut documents = Vec::with_capacity(arguments.names.len());
    let mut first_error = None;
    for name in &arguments.names {
        match context.client.get_workload(name).await {
            Ok(document) => documents.push(document),
            Err(error) => {
                first_error.get_or_insert(error);
            }
        }
    }
    // Like `docker inspect`: print what was found, then fail for what was not.
    if let Some(template) = &arguments.format {
        for document in &documents {
            let value = serde_json::to_value(document)?;
            output::print_line(&render_template(template, &value)?)?;
        }
    } else if !documents.is_empty() {
        output::print_json_one_or_many(&documents)?;
    }
    match first_error {
        Some(error) => Err(error.into()),
        None => Ok(0),
    }
}

/// Renders `{{.a.b}}` (a field's text: strings as they are, anything else as JSON) and
/// `{{json .a.b}}` (always JSON) of `document`; keys match in any case and with or without
/// underscores, so `{{.Status.ExitCode}}` finds `status.exit_code`.
pub fn render_template(template: &str, document: &serde_json::Value) -> anyhow::Result<String> {
    let mut rendered = String::new();
    let mut rest = template;
    // Go templates take \n and \t literally from a shell; people mean line breaks and tabs.
    let literal = |text: &str| text.replace("\\n", "\n").replace("\\t", "\t");
    while let Some(start) = rest.find("{{") {
        rendered.push_str(&literal(&rest[..start]));
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| anyhow::anyhow!("format: a {{{{ is not closed with }}}}"))?;
        let action = after[..end].trim();
        let (as_json, path) = match action.strip_prefix("json ") {
            Some(path) => (true, path.trim()),
            None => (false, action),
        };
        let value = field(document, path)?;
        match value {
            serde_json::Value::String(text) if !as_json => rendered.push_str(text),
            other => rendered.push_str(&serde_json::to_string(other)?),
        }
        rest = &after[end + 2..];
    }
    rendered.push_str(&literal(rest));
    Ok(rendered)
}

fn field<'a>(document: &'a serde_json::Value, path: &str) -> anyhow::Result<&'a serde_json::Value> {
    let Some(path) = path.strip_prefix('.') else {
        anyhow::bail!("format: {path:?} is not a field path; write it like .status.state");
    };
    let fold = |key: &str| key.replace('_', "").to_ascii_lowercase();
    let mut value = document;
    if path.is_empty() {
        return Ok(value);
    }
    for key in path.split('.') {
        let found = match value {
            serde_json::Value::Object(fields) => fields.get(key).or_else(|| {
                fields
                    .iter()
                    .find(|(candidate, _)| fold(candidate) == fold(key))
                    .map(|(_, value)| value)
            }),
            serde_json::Value::Array(items) => {
                key.parse::<usize>().ok().and_then(|index| items.get(index))
            }
            _ => None,
        };
        value = found.ok_or_else(|| {
            let known = match value {
                serde_json::Value::Object(fields) => {
                    let keys: Vec<&str> = fields.keys().map(String::as_str).collect();
                    format!("; it has {}", keys.join(", "))
                }
                _ => String::new(),
            };
            anyhow::anyhow!("format: no field {key} in .{path}{known}")
        })?;
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::render_template;

    #[test]
    fn templates_pick_fields_as_docker_inspect_format_does() {
        let document = json!({"name": "web", "image": null,
            "status": {"state": "running", "exit_code": 0, "instances": [{"pid": 42}]},
            "ports": [{"host": 8080, "port": 80}]});
        let render = |template: &str| render_template(template, &document).expect("renders");
        assert_eq!(render("{{.name}} is {{.status.state}}"), "web is running");
        assert_eq!(render("{{.Status.ExitCode}}"), "0");
        assert_eq!(render("{{ .status.instances.0.pid }}"), "42");
        assert_eq!(render("{{json .ports}}"), r#"[{"host":8080,"port":80}]"#);
        assert_eq!(render("{{json .name}}"), r#""web""#);
        assert_eq!(render("{{.image}}"), "null");
        let error = render_template("{{.status.phase}}", &document).expect_err("no such field");
        assert!(
            error.to_string().starts_with(
                "format: no field phase in .status.phase; it has exit_code, instances, state"
            ),
            "{error}"
        );
        assert!(render_template("{{status}}", &document).is_err());
    }
}
