//! `ward metrics NAME`: a stored metric of the project's workloads, one row per step.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::cli::MetricsArgs;
use crate::commands::Context;
use crate::output;

pub async fn run(context: &Context, arguments: MetricsArgs) -> anyhow::Result<i32> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    let start = now.saturating_sub(arguments.since);
    let mut parameters = vec![
        ("name", arguments.name.clone()),
        ("start", format!("{:.3}", start.as_secs_f64())),
        ("end", format!("{:.3}", now.as_secs_f64())),
        ("aggregation", arguments.aggregation.clone()),
    ];
    if let Some(workload) = &arguments.workload {
        parameters.push(("workload", workload.clone()));
    }
    if let Some(step) = arguments.step {
        parameters.push(("step", step.as_secs_f64().to_string()));
    }
    let result = context.client.query_metrics(&parameters).await?;
    if context.json() {
        output::print_json(&result)?;
        return Ok(0);
    }
    let name = result["name"].as_str().unwrap_or_default();
    let mut rows = Vec::new();
    for series in result["series"].as_array().into_iter().flatten() {
        let label = |key: &str| series["labels"][key].as_str().unwrap_or("-").to_owned();
        for point in series["points"].as_array().into_iter().flatten() {
            let (Some(time), Some(value)) = (point[0].as_f64(), point[1].as_f64()) else {
                continue;
            };
            rows.push(vec![
                ward_detect::time::format(time),
                label("workload"),
                label("replica"),
                shown(name, value, &arguments.aggregation),
            ]);
        }
    }
    if rows.is_empty() {
        output::note(&format!(
            "no samples of {name} in the last {}: running workloads are sampled every metrics.interval",
            humantime::format_duration(arguments.since)
        ));
        return Ok(0);
    }
    output::print_text(&output::render_table(
        &["TIME (UTC)", "WORKLOAD", "REPLICA", "VALUE"],
        &rows,
    ))?;
    Ok(0)
}

/// A value in its unit: bytes as sizes, cores with two decimals, counts whole.
pub(crate) fn shown(name: &str, value: f64, aggregation: &str) -> String {
    if aggregation == "count" {
        return format!("{value:.0}");
    }
    if name.ends_with("_bytes") {
        output::format_size(value.max(0.0) as u64)
    } else if name.ends_with("_cores") {
        format!("{value:.2}")
    } else {
        format!("{value:.0}")
    }
}
