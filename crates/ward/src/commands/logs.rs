//! `ward logs`: prints a workload's output as it wrote it, stdout lines to stdout and stderr
//! lines to stderr; with several instances each line starts with `NAME-i | `.

use std::io::Write;

use futures_util::StreamExt;
use ward_client::wire::LogEntry;
use ward_client::LogOptions;

use crate::cli::{LogsArgs, TailLines};
use crate::commands::Context;
use crate::output;

pub async fn run(context: &Context, arguments: LogsArgs) -> anyhow::Result<i32> {
    let options = LogOptions {
        follow: arguments.follow,
        tail: match arguments.tail {
            Some(TailLines::Last(lines)) => Some(lines),
            Some(TailLines::All) | None => None,
        },
        since: arguments.since.clone(),
    };
    print_logs(context, &arguments.name, &options, arguments.timestamps).await?;
    Ok(0)
}

/// Prints a workload's log lines, each instance's prefixed with its name when it has several.
pub async fn print_logs(
    context: &Context,
    name: &str,
    options: &LogOptions,
    timestamps: bool,
) -> anyhow::Result<()> {
    let document = context.client.get_workload(name).await?;
    let instance_names: Vec<&str> = document
        .status
        .instances
        .iter()
        .map(|instance| instance.name.as_str())
        .collect();
    let replicas = document
        .spec
        .get("replicas")
        .and_then(|replicas| replicas.as_u64())
        .unwrap_or(1);
    let prefix_width = if instance_names.len() > 1 || replicas > 1 {
        Some(
            instance_names
                .iter()
                .map(|name| name.len())
                .max()
                .unwrap_or(0),
        )
    } else {
        None
    };
    let entries = context.client.logs(name, options).await?;
    let mut entries = std::pin::pin!(entries);
    while let Some(entry) = entries.next().await {
        let entry = entry?;
        if context.json() {
            output::print_json_line(&entry)?;
            continue;
        }
        print_entry(&entry, prefix_width, timestamps)?;
    }
    Ok(())
}

/// Prints one log line as people read it: stdout lines to stdout, stderr lines to stderr.
pub fn print_entry(
    entry: &LogEntry,
    prefix_width: Option<usize>,
    timestamps: bool,
) -> anyhow::Result<()> {
    let line = render_log_line(entry, prefix_width, timestamps);
    if entry.stream == "stderr" {
        let mut stderr = std::io::stderr().lock();
        stderr.write_all(line.as_bytes())?;
        stderr.flush()?;
    } else {
        output::print_text(&line)?;
    }
    Ok(())
}

/// One line with its newline: `[instance | ][time ]text`.
pub fn render_log_line(entry: &LogEntry, prefix_width: Option<usize>, timestamps: bool) -> String {
    let mut line = String::with_capacity(entry.line.len() + 48);
    if let Some(width) = prefix_width {
        line.push_str(&format!("{:<width$} | ", entry.instance));
    }
    if timestamps {
        line.push_str(&entry.time);
        line.push(' ');
    }
    line.push_str(&entry.line);
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(instance: &str, line: &str) -> LogEntry {
        LogEntry {
            time: "2025-05-01T12:00:00.000000001Z".to_string(),
            stream: "stdout".to_string(),
            instance: instance.to_string(),
            line: line.to_string(),
        }
    }

    #[test]
    fn log_lines_are_prefixed_only_with_several_instances() {
        assert_eq!(
            render_log_line(&entry("web-0", "hello"), None, false),
            "hello\n"
        );
        assert_eq!(
            render_log_line(&entry("web-0", "hello"), Some(6), false),
            "web-0  | hello\n"
        );
        assert_eq!(
            render_log_line(&entry("web-1", "hello"), Some(5), true),
            "web-1 | 2025-05-01T12:00:00.000000001Z hello\n"
        );
    }
}
