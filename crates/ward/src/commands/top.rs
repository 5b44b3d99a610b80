//! `ward top`: a live table of every workload's CPU, memory, processes, disk and network, like
//! `docker stats`, with workloads anomalous lately marked `!`; redrawn in place every interval
//! (each line overwritten, never the screen cleared, so nothing flickers) until Ctrl-C or
//! `q`, printed once when stdout is not a terminal.

use std::collections::HashMap;
use std::io::{IsTerminal, Read};
use std::time::Instant;

use serde_json::Value;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use ward_client::wire::WorkloadDocument;

use crate::cli::TopArgs;
use crate::commands::ps::select_workloads;
use crate::commands::Context;
use crate::output;
use crate::terminal::TerminalModeGuard;

pub const TOP_HEADERS: [&str; 9] = [
    "NAME",
    "STATE",
    "CPU%",
    "MEM",
    "MEM%",
    "PIDS",
    "DISK R/W",
    "NET RX/TX",
    "RESTARTS",
];

/// A workload anomalous this recently is marked.
const ANOMALY_SHOWN_FOR: std::time::Duration = std::time::Duration::from_secs(300);

/// Moves the cursor home, and clears the screen once at the start.
const HOME: &str = "\x1b[H";
const CLEAR_SCREEN: &str = "\x1b[H\x1b[2J";
/// Clears the rest of a line, and the rest of the screen.
const CLEAR_LINE_END: &str = "\x1b[K";
const CLEAR_SCREEN_END: &str = "\x1b[J";
const HIDE_CURSOR: &str = "\x1b[?25l";
const SHOW_CURSOR: &str = "\x1b[?25h";

pub async fn run(context: &Context, arguments: TopArgs) -> anyhow::Result<i32> {
    let mut cpu_meter = CpuMeter::default();
    let live = !arguments.once && !context.json() && std::io::stdout().is_terminal();
    if !live {
        let documents = fetch(context, arguments.all).await?;
        if context.json() {
            output::print_json(&documents)?;
        } else {
            output::print_text(&render_top_table(
                &documents,
                &cpu_meter.percentages(&documents),
            ))?;
        }
        return Ok(0);
    }

    let mut interrupts = signal(SignalKind::interrupt())?;
    // Read keys one at a time when stdin is this terminal; dropped (restored) on the way out.
    let (_single_keys, mut keys) = if std::io::stdin().is_terminal() {
        let guard = TerminalModeGuard::single_keys().ok();
        (guard, Some(spawn_key_reader()))
    } else {
        (None, None)
    };
    let _cursor = HiddenCursor::new()?;
    output::print_text(CLEAR_SCREEN)?;
    loop {
        let documents = fetch(context, arguments.all).await?;
        let table = render_top_table(&documents, &cpu_meter.percentages(&documents));
        output::print_text(&in_place(&table))?;
        tokio::select! {
            () = tokio::time::sleep(arguments.interval) => {}
            _ = interrupts.recv() => return Ok(0),
            key = next_key(&mut keys) => match key {
                Some(b'q' | b'Q') => return Ok(0),
                Some(_) => {}
                None => keys = None,
            },
        }
    }
}

async fn fetch(context: &Context, all: bool) -> anyhow::Result<Vec<WorkloadDocument>> {
    let documents = context.client.list_workloads(true).await?;
    let mut shown = select_workloads(documents, all);
    shown.sort_by(|left, right| left.name().cmp(right.name()));
    Ok(shown)
}

/// `table` drawn over the previous one: from the top, each line ending with a clear to its
/// end, then the rest of the screen cleared, in one write.
fn in_place(table: &str) -> String {
    let mut frame = String::with_capacity(table.len() + 64);
    frame.push_str(HOME);
    for line in table.lines() {
        frame.push_str(line);
        frame.push_str(CLEAR_LINE_END);
        frame.push('\n');
    }
    frame.push_str(CLEAR_SCREEN_END);
    frame
}

/// `12MiB/s`, `0B/s`, or `-` when unknown.
fn rate(bytes_per_second: Option<f64>) -> String {
    bytes_per_second.map_or("-".to_string(), |rate| {
        format!("{}/s", output::format_size(rate.max(0.0) as u64))
    })
}

/// Whether an RFC 3339 time is within `ANOMALY_SHOWN_FOR` of now.
fn recent(time: Option<&str>) -> bool {
    time.and_then(|time| humantime::parse_rfc3339_weak(time.trim_end_matches('Z')).ok())
        .and_then(|time| std::time::SystemTime::now().duration_since(time).ok())
        .is_some_and(|age| age < ANOMALY_SHOWN_FOR)
}

pub fn render_top_table(
    documents: &[WorkloadDocument],
    cpu_percentages: &HashMap<String, f64>,
) -> String {
    let dash = || "-".to_string();
    let rows: Vec<Vec<String>> = documents
        .iter()
        .map(|document| {
            let status = &document.status;
            let memory_limit = document
                .spec
                .get("resources")
                .and_then(|resources| resources.get("memory"))
                .and_then(Value::as_u64);
            let memory_percent = match (status.memory_bytes, memory_limit) {
                (Some(used), Some(limit)) if limit > 0 => {
                    output::format_percent(used as f64 * 100.0 / limit as f64)
                }
                _ => dash(),
            };
            let name = if recent(status.last_anomaly.as_deref()) {
                format!("{} !", document.name())
            } else {
                document.name().to_string()
            };
            vec![
                name,
                status.state.clone(),
                cpu_percentages
                    .get(document.name())
                    .copied()
                    .map(output::format_percent)
                    .unwrap_or_else(dash),
                status
                    .memory_bytes
                    .map(output::format_size)
                    .unwrap_or_else(dash),
                memory_percent,
                status
                    .process_count
                    .map(|count| count.to_string())
                    .unwrap_or_else(dash),
                format!(
                    "{} / {}",
                    rate(status.disk_read_bytes_per_second),
                    rate(status.disk_write_bytes_per_second)
                ),
                format!(
                    "{} / {}",
                    rate(status.network_receive_bytes_per_second),
                    rate(status.network_transmit_bytes_per_second)
                ),
                status.restarts.to_string(),
            ]
        })
        .collect();
    output::render_table(&TOP_HEADERS, &rows)
}

/// CPU percent per workload: the daemon's figure, else the change in CPU seconds since the
/// previous refresh.
#[derive(Default)]
struct CpuMeter {
    previous: HashMap<String, (f64, Instant)>,
}

impl CpuMeter {
    fn percentages(&mut self, documents: &[WorkloadDocument]) -> HashMap<String, f64> {
        let now = Instant::now();
        let mut percentages = HashMap::new();
        let mut readings = HashMap::new();
        for document in documents {
            let name = document.name().to_string();
            let status = &document.status;
            if let Some(cpu_seconds) = status.cpu_seconds {
                readings.insert(name.clone(), (cpu_seconds, now));
            }
            let measured = match (status.cpu_seconds, self.previous.get(&name)) {
                (Some(cpu_seconds), Some((previous_seconds, previous_time))) => {
                    let wall_seconds = now.duration_since(*previous_time).as_secs_f64();
                    (wall_seconds > 0.0 && cpu_seconds >= *previous_seconds)
                        .then(|| (cpu_seconds - previous_seconds) * 100.0 / wall_seconds)
                }
                _ => None,
            };
            if let Some(percent) = status.cpu_percent.or(measured) {
                percentages.insert(name, percent);
            }
        }
        self.previous = readings;
        percentages
    }
}

/// Hides the cursor while the table redraws and shows it again when dropped.
struct HiddenCursor;

impl HiddenCursor {
    fn new() -> std::io::Result<HiddenCursor> {
        output::print_text(HIDE_CURSOR)?;
        Ok(HiddenCursor)
    }
}

impl Drop for HiddenCursor {
    fn drop(&mut self) {
        let _ = output::print_text(SHOW_CURSOR);
    }
}

fn spawn_key_reader() -> mpsc::Receiver<u8> {
    let (keys, receiver) = mpsc::channel(16);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut key = [0u8; 1];
        while let Ok(1) = stdin.read(&mut key) {
            if keys.blocking_send(key[0]).is_err() {
                break;
            }
        }
    });
    receiver
}

/// The next key pressed, `None` once stdin has ended; never resolves without a terminal.
async fn next_key(keys: &mut Option<mpsc::Receiver<u8>>) -> Option<u8> {
    match keys {
        Some(receiver) => receiver.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::commands::ps::tests::document;

    #[test]
    fn top_table_shows_usage_against_the_memory_limit() {
        let anomaly = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
        let documents = vec![
            document(
                "web",
                "running",
                "running",
                json!({"memory_bytes": 67108864, "process_count": 3, "restarts": 1,
                    "disk_read_bytes_per_second": 0.0, "disk_write_bytes_per_second": 2097152.0,
                    "network_receive_bytes_per_second": 1024.0,
                    "network_transmit_bytes_per_second": 512.0, "last_anomaly": anomaly}),
                json!([]),
            ),
            document(
                "quiet",
                "running",
                "running",
                json!({"memory_bytes": 1048576, "last_anomaly": "2020-01-01T00:00:00Z"}),
                json!([]),
            ),
            document("idle", "stopped", "stopped", json!({}), json!([])),
        ];
        let cpu_percentages = HashMap::from([("web".to_string(), 12.5)]);
        insta::assert_snapshot!(render_top_table(&documents, &cpu_percentages), @r"
        NAME    STATE     CPU%    MEM     MEM%    PIDS   DISK R/W        NET RX/TX         RESTARTS
        web !   running   12.5%   64MiB   25.0%   3      0B/s / 2MiB/s   1KiB/s / 512B/s   1
        quiet   running   -       1MiB    0.4%    -      - / -           - / -             0
        idle    stopped   -       -       -       -      - / -           - / -             0
        ");
    }

    #[test]
    fn a_frame_overwrites_each_line_and_never_clears_the_screen() {
        let frame = in_place("a\nbb\n");
        assert_eq!(frame, "\x1b[Ha\x1b[K\nbb\x1b[K\n\x1b[J");
        assert!(!frame.contains("\x1b[2J"));
    }
}
