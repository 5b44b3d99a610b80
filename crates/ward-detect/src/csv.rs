//! `ward detect`'s stream: a CSV series in, the same rows with their scores out.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};

use crate::{time, Detector};

/// Why a series could not be read; every one names the line and what to fix.
#[derive(Debug)]
pub enum Error {
    Io(io::Error),
    Empty,
    MissingColumn(&'static str),
    Timestamp {
        line: u64,
        text: String,
    },
    Value {
        line: u64,
        text: String,
    },
    Columns {
        line: u64,
        found: usize,
        wanted: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(error) => write!(f, "{error}"),
            Error::Empty => write!(
                f,
                "the input is empty: it needs a header line with `timestamp` and `value` columns"
            ),
            Error::MissingColumn(column) => write!(
                f,
                "the header has no `{column}` column: the first line must name the columns, \
                 e.g. `timestamp,value`"
            ),
            Error::Timestamp { line, text } => write!(
                f,
                "line {line}: timestamp {text:?} is not a time: use `YYYY-MM-DD HH:MM:SS`, \
                 RFC 3339 (`2026-01-02T03:04:05Z`) or seconds since the epoch"
            ),
            Error::Value { line, text } => {
                write!(f, "line {line}: value {text:?} is not a number (an empty value or `nan` marks a gap)")
            }
            Error::Columns {
                line,
                found,
                wanted,
            } => {
                write!(
                    f,
                    "line {line}: {found} columns, but the header names the column {wanted}"
                )
            }
        }
    }
}

impl std::error::Error for Error {}

impl From<io::Error> for Error {
    fn from(error: io::Error) -> Error {
        Error::Io(error)
    }
}

/// What a run saw.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub rows: u64,
    pub anomalies: u64,
}

fn unquote(field: &str) -> &str {
    let field = field.trim();
    field
        .strip_prefix('"')
        .and_then(|f| f.strip_suffix('"'))
        .unwrap_or(field)
}

/// Where the columns are.
struct Columns {
    timestamp: usize,
    value: usize,
}

/// One data row.
struct Row<'a> {
    timestamp: &'a str,
    value: &'a str,
    time: f64,
    number: f64,
}

fn header(input: &mut impl BufRead, line: &mut String) -> Result<Columns, Error> {
    if input.read_line(line)? == 0 {
        return Err(Error::Empty);
    }
    let header: Vec<String> = line
        .trim_end_matches(['\r', '\n'])
        .split(',')
        .map(|f| unquote(f).to_ascii_lowercase())
        .collect();
    let column = |name: &'static str| {
        header
            .iter()
            .position(|h| h == name)
            .ok_or(Error::MissingColumn(name))
    };
    Ok(Columns {
        timestamp: column("timestamp")?,
        value: column("value")?,
    })
}

/// Row `number` (1 is the header); `None` for a blank line.
fn row<'a>(columns: &Columns, text: &'a str, number: u64) -> Result<Option<Row<'a>>, Error> {
    let text = text.trim_end_matches(['\r', '\n']);
    if text.trim().is_empty() {
        return Ok(None);
    }
    let (mut timestamp, mut value, mut found) = (None, None, 0);
    for (index, field) in text.split(',').enumerate() {
        found = index + 1;
        if index == columns.timestamp {
            timestamp = Some(unquote(field));
        } else if index == columns.value {
            value = Some(unquote(field));
        }
    }
    let (Some(timestamp), Some(value)) = (timestamp, value) else {
        let wanted = columns.timestamp.max(columns.value) + 1;
        return Err(Error::Columns {
            line: number,
            found,
            wanted,
        });
    };
    let time = time::parse(timestamp).ok_or_else(|| Error::Timestamp {
        line: number,
        text: timestamp.to_owned(),
    })?;
    let number = if value.is_empty() || value.eq_ignore_ascii_case("nan") {
        f64::NAN
    } else {
        value.parse::<f64>().map_err(|_| Error::Value {
            line: number,
            text: value.to_owned(),
        })?
    };
    Ok(Some(Row {
        timestamp,
        value,
        time,
        number,
    }))
}

/// Reads `timestamp,value` rows from `input` and writes `timestamp,value,anomaly_score,
/// is_anomaly` rows to `output`, one per input row, in order. Output is flushed whenever the
/// input has nothing more to give for now, so a live pipe sees each score at once.
pub fn run<R: Read>(mut input: BufReader<R>, mut output: impl Write) -> Result<Summary, Error> {
    let mut line = String::new();
    let columns = header(&mut input, &mut line)?;
    output.write_all(b"timestamp,value,anomaly_score,is_anomaly\n")?;
    if input.buffer().is_empty() {
        output.flush()?;
    }

    let mut detector = Detector::new();
    let mut summary = Summary::default();
    let mut number = 1;
    let mut out = Vec::with_capacity(64);
    loop {
        line.clear();
        if input.read_line(&mut line)? == 0 {
            break;
        }
        number += 1;
        let Some(row) = row(&columns, &line, number)? else {
            continue;
        };
        let verdict = detector.update(row.time, row.number);
        summary.rows += 1;
        summary.anomalies += u64::from(verdict.anomaly);

        out.clear();
        out.extend_from_slice(row.timestamp.as_bytes());
        out.push(b',');
        out.extend_from_slice(row.value.as_bytes());
        out.push(b',');
        push_score(&mut out, verdict.score);
        out.extend_from_slice(if verdict.anomaly { b",1\n" } else { b",0\n" });
        output.write_all(&out)?;
        if input.buffer().is_empty() {
            output.flush()?;
        }
    }
    output.flush()?;
    Ok(summary)
}

/// A whole series, gaps left out: (times, values), in the order read.
pub fn read(mut input: impl BufRead) -> Result<(Vec<f64>, Vec<f64>), Error> {
    let mut line = String::new();
    let columns = header(&mut input, &mut line)?;
    let (mut times, mut values) = (Vec::new(), Vec::new());
    let mut number = 1;
    loop {
        line.clear();
        if input.read_line(&mut line)? == 0 {
            break;
        }
        number += 1;
        if let Some(row) = row(&columns, &line, number)? {
            if row.number.is_finite() {
                times.push(row.time);
                values.push(row.number);
            }
        }
    }
    Ok((times, values))
}

/// `score` in [0, 1] with six decimals, written without the float formatter.
fn push_score(row: &mut Vec<u8>, score: f64) {
    let micros = (score.clamp(0.0, 1.0) * 1e6).round() as u32;
    if micros >= 1_000_000 {
        row.extend_from_slice(b"1.000000");
        return;
    }
    row.extend_from_slice(b"0.");
    let mut digits = [b'0'; 6];
    let mut rest = micros;
    for digit in digits.iter_mut().rev() {
        *digit = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    row.extend_from_slice(&digits);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detect(input: &str) -> Result<String, Error> {
        let mut output = Vec::new();
        run(BufReader::new(input.as_bytes()), &mut output)?;
        Ok(String::from_utf8(output).unwrap())
    }

    #[test]
    fn rows_come_out_in_order_with_scores() {
        let mut input = String::from("value,timestamp\n");
        for i in 0..300 {
            input.push_str(&format!(
                "{},2026-01-01 00:{:02}:{:02}\n",
                i % 7,
                i / 60,
                i % 60
            ));
        }
        let output = detect(&input).unwrap();
        let lines: Vec<&str> = output.lines().collect();
        assert_eq!(lines[0], "timestamp,value,anomaly_score,is_anomaly");
        assert_eq!(lines.len(), 301);
        assert_eq!(lines[1], "2026-01-01 00:00:00,0,0.000000,0");
        assert!(lines[300].starts_with("2026-01-01 00:04:59,5,"));
    }

    #[test]
    fn bad_input_names_the_line_and_the_fix() {
        assert!(matches!(detect(""), Err(Error::Empty)));
        let error = detect("time,value\n1,2\n").unwrap_err().to_string();
        assert!(error.contains("no `timestamp` column"), "{error}");
        let error = detect("timestamp,value\n1,2\n2,abc\n")
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("line 3: value \"abc\""), "{error}");
        let error = detect("timestamp,value\nyesterday,2\n")
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("line 2: timestamp \"yesterday\""),
            "{error}"
        );
        let error = detect("timestamp,other,value\n1,2\n")
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("line 2: 2 columns"), "{error}");
    }

    #[test]
    fn gaps_score_zero() {
        let output = detect("timestamp,value\n1,\n2,nan\n3,4\n").unwrap();
        assert_eq!(output.lines().nth(1), Some("1,,0.000000,0"));
        assert_eq!(output.lines().nth(2), Some("2,nan,0.000000,0"));
    }

    #[test]
    fn scores_have_six_decimals() {
        let mut row = Vec::new();
        for score in [0.0, 0.5, 0.9999994, 0.9999996, 1.0, 0.000_001] {
            push_score(&mut row, score);
            row.push(b' ');
        }
        assert_eq!(
            String::from_utf8(row).unwrap(),
            "0.000000 0.500000 0.999999 1.000000 1.000000 0.000001 "
        );
    }
}
