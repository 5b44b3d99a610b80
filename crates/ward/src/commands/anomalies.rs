//! `ward anomalies`: what has behaved unlike its own history lately, the most unusual first:
//! the newest anomaly event of each instance's series within `--since`.

use std::collections::HashMap;
use std::time::SystemTime;

use futures_util::StreamExt;
use ward_client::wire::EventEntry;

use crate::cli::AnomaliesArgs;
use crate::commands::Context;
use crate::output;

pub async fn run(context: &Context, arguments: AnomaliesArgs) -> anyhow::Result<i32> {
    let events = context.client.events(None, false).await?;
    let mut events = std::pin::pin!(events);
    let now = SystemTime::now();
    let mut newest: HashMap<(String, String), EventEntry> = HashMap::new();
    while let Some(event) = events.next().await {
        let event = event?;
        if event.kind != "anomaly" {
            continue;
        }
        let recent =
            output::elapsed_since(&event.time, now).is_some_and(|age| age <= arguments.since);
        if !recent {
            continue;
        }
        let subject = event
            .instance
            .clone()
            .or(event.workload.clone())
            .unwrap_or_default();
        let series = event.data["series"].as_str().unwrap_or_default().to_owned();
        newest.insert((subject, series), event);
    }
    let mut ranked: Vec<EventEntry> = newest.into_values().collect();
    let score = |event: &EventEntry| event.data["score"].as_f64().unwrap_or(0.0);
    ranked.sort_by(|a, b| score(b).total_cmp(&score(a)).then_with(|| b.id.cmp(&a.id)));
    if context.json() {
        output::print_json(&ranked)?;
        return Ok(0);
    }
    if ranked.is_empty() {
        output::note(&format!(
            "nothing anomalous in the last {}",
            humantime::format_duration(arguments.since)
        ));
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = ranked
        .iter()
        .map(|event| {
            vec![
                format!("{:.4}", score(event)),
                output::format_timestamp(&event.time),
                event
                    .instance
                    .clone()
                    .or(event.workload.clone())
                    .unwrap_or_default(),
                event.data["series"].as_str().unwrap_or_default().to_owned(),
                event.message.clone(),
            ]
        })
        .collect();
    output::print_text(&output::render_table(
        &["SCORE", "TIME", "INSTANCE", "SERIES", "WHY"],
        &rows,
    ))?;
    Ok(0)
}
