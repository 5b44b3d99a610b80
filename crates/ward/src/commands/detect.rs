//! `ward detect`: a CSV series scored by the streaming anomaly detector, with no daemon.

use std::fs::File;
use std::io::{self, BufReader, BufWriter};
use std::path::Path;

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
