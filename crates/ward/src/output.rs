//! Rendering for people and scripts: aligned tables, short durations, sizes, percentages,
//! timestamps, and JSON; plus writing to stdout so that a closed pipe is an error, not a panic.

use std::io::{self, Write};
use std::time::{Duration, SystemTime};

use serde::Serialize;

/// Spaces between table columns, as `docker ps` uses.
const COLUMN_GAP: usize = 3;

/// Left-aligned columns under a header; the last column is not padded.
pub fn render_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers
        .iter()
        .map(|header| header.chars().count())
        .collect();
    for row in rows {
        for (index, cell) in row.iter().enumerate() {
            if let Some(width) = widths.get_mut(index) {
                *width = (*width).max(cell.chars().count());
            }
        }
    }
    let mut rendered = String::new();
    let header_row: Vec<String> = headers.iter().map(|header| header.to_string()).collect();
    for row in std::iter::once(&header_row).chain(rows) {
        let mut line = String::new();
        for (index, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if index + 1 < row.len() {
                let padding =
                    widths.get(index).copied().unwrap_or(0) - cell.chars().count() + COLUMN_GAP;
                line.push_str(&" ".repeat(padding));
            }
        }
        rendered.push_str(line.trim_end());
        rendered.push('\n');
    }
    rendered
}

/// The largest whole unit: `5s`, `3m`, `2h`, `4d`.
pub fn format_uptime(duration: Duration) -> String {
    let seconds = duration.as_secs();
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m", seconds / 60),
        3600..86400 => format!("{}h", seconds / 3600),
        _ => format!("{}d", seconds / 86400),
    }
}

/// Binary units with at most one decimal: `12.3MiB`, `256MiB`, `512B`.
pub fn format_size(bytes: u64) -> String {
    ward_spec::units::format_size(bytes)
}

/// One decimal: `0.5%`, `150.0%`.
pub fn format_percent(percent: f64) -> String {
    format!("{percent:.1}%")
}

/// Parses RFC 3339 with `Z` or a numeric offset (`+02:00`), any fraction of a second.
pub fn parse_timestamp(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    if text.ends_with('Z') || text.ends_with('z') {
        return humantime::parse_rfc3339(&text.replace('z', "Z")).ok();
    }
    // `±HH:MM` at the end: parse the local part as UTC, then take the offset off.
    let offset_start = text.len().checked_sub(6)?;
    let (local, offset) = text.split_at_checked(offset_start)?;
    let sign = match offset.as_bytes() {
        [b'+', _, _, b':', _, _] => 1i64,
        [b'-', _, _, b':', _, _] => -1i64,
        _ => return None,
    };
    let hours: u64 = offset.get(1..3)?.parse().ok()?;
    let minutes: u64 = offset.get(4..6)?.parse().ok()?;
    let offset = Duration::from_secs(hours * 3600 + minutes * 60);
    if local.len() < 19 || local.as_bytes().get(10) != Some(&b'T') {
        return None;
    }
    let as_if_utc = humantime::parse_rfc3339_weak(local).ok()?;
    if sign > 0 {
        as_if_utc.checked_sub(offset)
    } else {
        as_if_utc.checked_add(offset)
    }
}

/// `2025-05-01T12:00:00Z` at second precision; the text as it came when it does not parse.
pub fn format_timestamp(text: &str) -> String {
    match parse_timestamp(text) {
        Some(time) => humantime::format_rfc3339_seconds(time).to_string(),
        None => text.to_string(),
    }
}

/// How long ago `text` (RFC 3339) was, seen from `now`.
pub fn elapsed_since(text: &str, now: SystemTime) -> Option<Duration> {
    let then = parse_timestamp(text)?;
    Some(now.duration_since(then).unwrap_or(Duration::ZERO))
}

/// Writes text to stdout and flushes it.
pub fn print_text(text: &str) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()
}

/// A remark for the person at the terminal, on stderr so that scripts reading stdout do not
/// see it: `note: TEXT`.
pub fn note(text: &str) {
    eprintln!("note: {text}");
}

/// Writes one line to stdout.
pub fn print_line(line: &str) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    stdout.write_all(line.as_bytes())?;
    stdout.write_all(b"\n")?;
    stdout.flush()
}

/// Pretty JSON and a newline on stdout.
pub fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    print_line(&text)?;
    Ok(())
}

/// One compact JSON document per line (NDJSON) on stdout.
pub fn print_json_line(value: &impl Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string(value)?;
    print_line(&text)?;
    Ok(())
}

/// One document as an object, several as an array, like `kubectl get -o json` of one name.
pub fn print_json_one_or_many<T: Serialize>(values: &[T]) -> anyhow::Result<()> {
    match values {
        [single] => print_json(single),
        many => print_json(&many),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptimes_use_the_largest_whole_unit() {
        let check = |seconds: u64, expected: &str| {
            assert_eq!(format_uptime(Duration::from_secs(seconds)), expected)
        };
        check(0, "0s");
        check(5, "5s");
        check(59, "59s");
        check(60, "1m");
        check(3 * 60 + 59, "3m");
        check(2 * 3600 + 1, "2h");
        check(4 * 86400 + 7, "4d");
    }

    #[test]
    fn sizes_and_percentages_read_like_docker_stats() {
        assert_eq!(format_size(12_897_485), "12.3MiB");
        assert_eq!(format_size(256 * 1024 * 1024), "256MiB");
        assert_eq!(format_size(512), "512B");
        assert_eq!(format_percent(0.4999), "0.5%");
        assert_eq!(format_percent(150.0), "150.0%");
    }

    #[test]
    fn timestamps_with_offsets_mean_the_same_instant() {
        let utc = parse_timestamp("2025-05-01T12:00:00Z").expect("utc");
        assert_eq!(parse_timestamp("2025-05-01T14:00:00+02:00"), Some(utc));
        assert_eq!(parse_timestamp("2025-05-01T07:30:00.000-04:30"), Some(utc));
        assert_eq!(
            parse_timestamp("2025-05-01T12:00:00.123456789Z").map(|time| time > utc),
            Some(true)
        );
        assert_eq!(parse_timestamp("10m"), None);
        assert_eq!(parse_timestamp("2025-05-01"), None);
        assert_eq!(
            format_timestamp("2025-05-01T12:00:00.5+00:00"),
            "2025-05-01T12:00:00Z"
        );
        assert_eq!(format_timestamp("yesterday"), "yesterday");
    }

    #[test]
    fn tables_align_columns_and_trim_line_ends() {
        let rows = vec![
            vec!["web".to_string(), "running".to_string(), String::new()],
            vec![
                "database".to_string(),
                "exited".to_string(),
                "x".to_string(),
            ],
        ];
        assert_eq!(
            render_table(&["NAME", "STATE", "PORTS"], &rows),
            "NAME       STATE     PORTS\nweb        running\ndatabase   exited    x\n"
        );
    }
}
