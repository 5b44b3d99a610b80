//! `ward detect`: a CSV series scored by the streaming anomaly detector, with no daemon.

use std::fs::File;
use std::io::{self, BufReader, BufWriter};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;

use crate::cli::{DetectArgs, ForecastArgs};

/// The series to read (`--input`, else standard input), buffered, and how to name it.
fn open_input(path: Option<&Path>) -> anyhow::Result<(BufReader<Box<dyn io::Read>>, String)> {
    let (input, source): (Box<dyn io::Read>, String) = match path {
        Some(path) => (
            Box::new(
                File::open(path)
                    .with_context(|| format!("cannot read --input {}", path.display()))?,
            ),
            path.display().to_string(),
        ),
        None => (Box::new(io::stdin().lock()), "standard input".to_owned()),
    };
    Ok((BufReader::with_capacity(1 << 16, input), source))
}

pub fn run(arguments: &DetectArgs) -> anyhow::Result<i32> {
    let stdout = io::stdout();
    let (input, source) = open_input(arguments.input.as_deref())?;
    let output: Box<dyn io::Write> = match &arguments.output {
        Some(path) => Box::new(
            File::create(path)
                .with_context(|| format!("cannot write --output {}", path.display()))?,
        ),
        None => Box::new(stdout.lock()),
    };
    let output = BufWriter::with_capacity(1 << 16, output);
    match ward_detect::csv::run(input, output) {
        Ok(_) => Ok(0),
        // A reader that went away (`ward detect | head`) is not an error.
        Err(ward_detect::csv::Error::Io(error)) if error.kind() == io::ErrorKind::BrokenPipe => {
            Ok(0)
        }
        Err(error) => Err(anyhow::anyhow!("{source}: {error}")),
    }
}

/// `ward forecast --input FILE`: the series' forecast as CSV.
pub fn forecast(arguments: &ForecastArgs) -> anyhow::Result<i32> {
    use std::io::Write as _;
    use ward_detect::forecast::{self, History};

    let (input, source) = open_input(arguments.input.as_deref())?;
    let (times, values) =
        ward_detect::csv::read(input).map_err(|error| anyhow::anyhow!("{source}: {error}"))?;
    let (times, values) = in_time_order(times, values);
    if times.len() < 3 {
        anyhow::bail!(
            "{source}: {} distinct times: a forecast needs at least 3",
            times.len()
        );
    }
    let history = History {
        times: &times,
        values: &values,
    };
    let ahead = forecast::times_ahead(history, arguments.horizon.as_secs_f64());
    let points = forecast::forecast(history, &ahead);
    let mut output = BufWriter::new(io::stdout().lock());
    writeln!(output, "timestamp,forecast,lower,upper")?;
    for point in &points {
        let time = ward_detect::time::format(point.time);
        writeln!(
            output,
            "{time},{},{},{}",
            point.value, point.lower, point.upper
        )?;
    }
    output.flush()?;
    if let Some(limit) = arguments.limit {
        let last = times[times.len() - 1];
        match forecast::time_to(&points, limit) {
            Some(when) => eprintln!(
                "reaches {limit} at {} UTC, {} after the last value",
                ward_detect::time::format(when),
                humanize(when - last)
            ),
            None => eprintln!("does not reach {limit} within the horizon"),
        }
    }
    Ok(0)
}

/// Whether `--metric` names a series of the host rather than of a workload.
pub fn is_host_metric(metric: &str) -> bool {
    metric == "host_disk" || metric.starts_with("ward_host_")
}

/// `ward forecast NAME`: the workload's stored series, one forecast per instance, with when
/// memory reaches the workload's limit (or `--limit`).
pub async fn forecast_workload(
    context: &crate::commands::Context,
    arguments: &ForecastArgs,
) -> anyhow::Result<i32> {
    use ward_detect::forecast::{self, History};

    let host = is_host_metric(&arguments.metric);
    let name = match (&arguments.name, host) {
        (Some(name), false) => name.as_str(),
        (None, true) => "host",
        (Some(_), true) => anyhow::bail!(
            "--metric {}: a host series belongs to no workload; leave out NAME",
            arguments.metric
        ),
        (None, false) => anyhow::bail!("give a workload's NAME, or --input FILE"),
    };
    let memory_limit = if host {
        None
    } else {
        let document = context.client.get_workload(name).await?;
        document.spec["resources"]["memory"].as_f64()
    };
    let metric_name = match arguments.metric.as_str() {
        "host_disk" => "ward_host_disk_used_bytes".to_string(),
        other => other.to_string(),
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let history = arguments.history.as_secs_f64();
    let query = |start: f64, step: f64| {
        let mut parameters = vec![("name", metric_name.clone())];
        if !host {
            parameters.push(("workload", name.to_string()));
        }
        parameters.extend([
            ("start", format!("{start:.3}")),
            ("end", format!("{now:.3}")),
            ("step", step.to_string()),
            ("aggregation", "avg".to_string()),
        ]);
        parameters
    };
    // About a thousand points over the history there is (a young workload has less than
    // --history), none finer than a second.
    let step = (history / 1000.0).max(1.0);
    let mut result = context
        .client
        .query_metrics(&query(now - history, step))
        .await?;
    let oldest = result["series"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|series| series["points"][0][0].as_f64())
        .fold(now, f64::min);
    let span = now - oldest + step;
    if span < history / 2.0 {
        let finer = (span / 1000.0).max(1.0);
        result = context
            .client
            .query_metrics(&query(now - span, finer))
            .await?;
    }
    let metric = result["name"].as_str().unwrap_or_default().to_string();
    // The disk's limit is its capacity now.
    let capacity = if metric == "ward_host_disk_used_bytes" && arguments.limit.is_none() {
        let parameters = [
            ("name", "ward_host_disk_capacity_bytes".to_string()),
            ("start", format!("{:.3}", now - 3600.0)),
            ("end", format!("{now:.3}")),
            ("aggregation", "last".to_string()),
        ];
        let result = context.client.query_metrics(&parameters).await?;
        result["series"][0]["points"]
            .as_array()
            .and_then(|points| points.last())
            .and_then(|point| point[1].as_f64())
    } else {
        None
    };
    let limit = arguments
        .limit
        .or(memory_limit.filter(|_| metric.ends_with("memory_bytes")))
        .or(capacity);
    let mut forecasts = Vec::new();
    for series in result["series"].as_array().into_iter().flatten() {
        let (times, values): (Vec<f64>, Vec<f64>) = series["points"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|point| Some((point[0].as_f64()?, point[1].as_f64()?)))
            .unzip();
        if times.len() < 3 {
            continue;
        }
        let instance = match series["labels"]["replica"].as_str() {
            Some(replica) => format!("{name}-{replica}"),
            None => name.to_string(),
        };
        let history = History {
            times: &times,
            values: &values,
        };
        let ahead = forecast::times_ahead(history, arguments.horizon.as_secs_f64());
        let points = forecast::forecast(history, &ahead);
        let reaches = limit.and_then(|limit| forecast::time_to(&points, limit));
        forecasts.push(serde_json::json!({
            "instance": instance,
            "metric": metric,
            "now": values.last(),
            "limit": limit,
            "reaches_limit_at": reaches,
            "forecast": points
                .iter()
                .map(|point| [point.time, point.value, point.lower, point.upper])
                .collect::<Vec<_>>(),
        }));
    }
    if context.json() {
        crate::output::print_json(&forecasts)?;
        return Ok(0);
    }
    if forecasts.is_empty() {
        crate::output::note(&format!(
            "no history of {metric} for {name} yet: running instances are sampled every metrics.interval"
        ));
        return Ok(0);
    }
    let shown = |value: f64| crate::commands::metrics::shown(&metric, value, "avg");
    let horizon = humantime::format_duration(arguments.horizon).to_string();
    let rows: Vec<Vec<String>> = forecasts
        .iter()
        .map(|forecast| {
            let last = forecast["forecast"]
                .as_array()
                .and_then(|points| points.last());
            let value_at = |index: usize| {
                last.and_then(|point| point[index].as_f64())
                    .map_or("-".to_string(), shown)
            };
            let reaches = match (
                forecast["limit"].as_f64(),
                forecast["reaches_limit_at"].as_f64(),
            ) {
                (None, _) => "-".to_string(),
                (Some(_), None) => format!("not within {horizon}"),
                (Some(_), Some(when)) => format!(
                    "in {} ({} UTC)",
                    humanize(when - now),
                    ward_detect::time::format(when)
                ),
            };
            vec![
                forecast["instance"].as_str().unwrap_or("-").to_string(),
                forecast["now"].as_f64().map_or("-".to_string(), shown),
                format!("{} ({}..{})", value_at(1), value_at(2), value_at(3)),
                forecast["limit"].as_f64().map_or("-".to_string(), shown),
                reaches,
            ]
        })
        .collect();
    let header = format!("IN {horizon}");
    crate::output::print_text(&crate::output::render_table(
        &["INSTANCE", "NOW", &header, "LIMIT", "REACHES LIMIT"],
        &rows,
    ))?;
    Ok(0)
}

fn humanize(seconds: f64) -> String {
    let minutes = (seconds / 60.0).round() as u64;
    match minutes {
        0..=119 => format!("{minutes}m"),
        120..=2879 => format!("{}h{}m", minutes / 60, minutes % 60),
        _ => format!("{}d{}h", minutes / 1440, minutes / 60 % 24),
    }
}

/// The points sorted by time, those at the same time averaged into one.
fn in_time_order(times: Vec<f64>, values: Vec<f64>) -> (Vec<f64>, Vec<f64>) {
    let mut points: Vec<(f64, f64)> = times.into_iter().zip(values).collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (mut times, mut values, mut counts) = (Vec::new(), Vec::new(), Vec::new());
    for (time, value) in points {
        if times.last() == Some(&time) {
            let last = values.len() - 1;
            counts[last] += 1.0;
            values[last] += (value - values[last]) / counts[last];
        } else {
            times.push(time);
            values.push(value);
            counts.push(1.0);
        }
    }
    (times, values)
}
