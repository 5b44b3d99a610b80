//! `ward top`: a live table of every workload's CPU, memory and processes, like `docker stats`;
//! redrawn every interval until Ctrl-C or `q`, printed once when stdout is not a terminal.

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

pub const TOP_HEADERS: [&str; 7] = ["NAME", "STATE", "CPU%", "MEM", "MEM%", "PIDS", "RESTARTS"];

/// Moves the cursor home and clears the screen.
const CLEAR_SCREEN: &str = "\x1b[H\x1b[2J";
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
    loop {
        let documents = fetch(context, arguments.all).await?;
        let table = render_top_table(&documents, &cpu_meter.percentages(&documents));
        output::print_text(&format!("{CLEAR_SCREEN}{table}"))?;
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
            vec![
                document.name().to_string(),
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
        let documents = vec![
            document(
                "web",
                "running",
                "running",
                json!({"memory_bytes": 67108864, "process_count": 3, "restarts": 1}),
                json!([]),
            ),
            document("idle", "stopped", "stopped", json!({}), json!([])),
        ];
        let cpu_percentages = HashMap::from([("web".to_string(), 12.5)]);
        insta::assert_snapshot!(render_top_table(&documents, &cpu_percentages), @r"
        NAME   STATE     CPU%    MEM     MEM%    PIDS   RESTARTS
        web    running   12.5%   64MiB   25.0%   3      1
        idle   stopped   -       -       -       -      0
        ");
    }
}
