//! `ward events`: what happened to workloads, one line each (`TIME  KIND  WORKLOAD/INSTANCE
//! MESSAGE`) or NDJSON; `-f` keeps following the daemon's event stream.

use futures_util::StreamExt;
use ward_client::wire::EventEntry;

use crate::cli::EventsArgs;
use crate::commands::Context;
use crate::output;

pub async fn run(context: &Context, arguments: EventsArgs) -> anyhow::Result<i32> {
    let events = context
        .client
        .events(arguments.since, arguments.follow)
        .await?;
    let mut events = std::pin::pin!(events);
    while let Some(event) = events.next().await {
        let event = event?;
        if context.json() {
            output::print_json_line(&event)?;
        } else {
            output::print_line(&render_event(&event))?;
        }
    }
    Ok(0)
}

/// Fixed-width columns, so that lines printed one at a time still line up.
pub fn render_event(event: &EventEntry) -> String {
    let subject = event
        .instance
        .as_deref()
        .or(event.workload.as_deref())
        .unwrap_or("-");
    let line = format!(
        "{:<20}  {:<13}  {:<20}  {}",
        output::format_timestamp(&event.time),
        event.kind,
        subject,
        event.message
    );
    line.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event(
        kind: &str,
        workload: Option<&str>,
        instance: Option<&str>,
        message: &str,
    ) -> EventEntry {
        EventEntry {
            id: 7,
            time: "2025-05-01T12:00:00.123456789Z".to_string(),
            project: "default".to_string(),
            workload: workload.map(str::to_string),
            instance: instance.map(str::to_string),
            kind: kind.to_string(),
            message: message.to_string(),
            data: json!({}),
        }
    }

    #[test]
    fn event_lines_have_time_kind_subject_message() {
        assert_eq!(
            render_event(&event(
                "exited",
                Some("web"),
                Some("web-0"),
                "exited with code 1"
            )),
            "2025-05-01T12:00:00Z  exited         web-0                 exited with code 1"
        );
        assert_eq!(
            render_event(&event("created", Some("web"), None, "")),
            "2025-05-01T12:00:00Z  created        web"
        );
    }
}
