//! `ward detect` as a user runs it: CSV in, scores out, no daemon; strictly online (a row's
//! score is the same however much input follows), live on a pipe, and bad input refused
//! with the line and the fix.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{assert_one_error_line, ward_command};

/// A day-periodic series every five minutes with noise, a spike, a level shift and a
/// flat stretch, as CSV rows (no header).
fn series(rows: usize) -> Vec<String> {
    let mut seed = 11u64;
    (0..rows)
        .map(|i| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let noise = ((seed >> 33) as f64 / f64::from(1u32 << 31) - 0.5) * 4.0;
            let t = 1_700_000_000 + i as u64 * 300;
            let wave = 40.0 + 15.0 * ((i % 288) as f64 / 288.0 * std::f64::consts::TAU).sin();
            let value = match i {
                1500 => 400.0,
                2500..=2600 => 40.0,
                _ if i > 3000 => wave + noise + 60.0,
                _ => wave + noise,
            };
            format!("{t},{value:.3}")
        })
        .collect()
}

/// `ward detect` reading a pipe and writing one.
fn spawn_detect() -> std::process::Child {
    ward_command()
        .arg("detect")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run ward detect")
}

fn detect(rows: &[String]) -> String {
    let mut child = spawn_detect();
    let mut input = child.stdin.take().unwrap();
    let text = format!("timestamp,value\n{}\n", rows.join("\n"));
    let writer = std::thread::spawn(move || input.write_all(text.as_bytes()));
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn scores_of_the_first_rows_do_not_depend_on_the_rows_after() {
    let rows = series(4000);
    let whole = detect(&rows);
    let lines: Vec<&str> = whole.lines().collect();
    assert_eq!(lines[0], "timestamp,value,anomaly_score,is_anomaly");
    assert_eq!(lines.len(), rows.len() + 1);
    for k in [1, 200, 1501, 2550, 3001, 3999] {
        let part = detect(&rows[..k]);
        assert_eq!(
            part.lines().collect::<Vec<_>>(),
            lines[..=k],
            "the first {k} rows scored differently"
        );
    }
    // It finds what was put there, and stays quiet on the plain wave before it.
    let flagged: Vec<usize> = lines[1..]
        .iter()
        .enumerate()
        .filter(|(_, line)| line.ends_with(",1"))
        .map(|(index, _)| index)
        .collect();
    for (what, range) in [
        ("spike", 1500..1502),
        ("flat stretch", 2500..2560),
        ("level shift", 3001..3010),
    ] {
        assert!(
            flagged.iter().any(|i| range.contains(i)),
            "{what} at {range:?} not flagged: {flagged:?}"
        );
    }
    let before = flagged
        .iter()
        .filter(|&&i| (300..1500).contains(&i))
        .count();
    assert!(
        before <= 2,
        "{before} alarms on the plain wave: {flagged:?}"
    );
    for line in &lines[1..] {
        let score: f64 = line.split(',').nth(2).unwrap().parse().unwrap();
        assert!((0.0..=1.0).contains(&score), "{line}");
    }
}

#[test]
fn a_live_pipe_gets_each_score_before_the_input_ends() {
    let mut child = spawn_detect();
    let mut input = child.stdin.take().unwrap();
    let mut output = BufReader::new(child.stdout.take().unwrap());
    writeln!(input, "timestamp,value").unwrap();
    let mut line = String::new();
    output.read_line(&mut line).unwrap();
    assert_eq!(line, "timestamp,value,anomaly_score,is_anomaly\n");
    let deadline = Instant::now() + Duration::from_secs(30);
    for (index, row) in series(50).iter().enumerate() {
        writeln!(input, "{row}").unwrap();
        input.flush().unwrap();
        line.clear();
        // Blocks until ward answers this row while the input stays open.
        output.read_line(&mut line).unwrap();
        assert!(
            line.starts_with(row.as_str()),
            "row {index}: {line:?} for {row:?}"
        );
        assert!(Instant::now() < deadline);
    }
    drop(input);
    assert!(child.wait().unwrap().success());
}

#[test]
fn files_in_and_out_and_bad_input_refused_by_line() {
    let directory = tempfile::tempdir().unwrap();
    let input = directory.path().join("cpu.csv");
    let output = directory.path().join("scores.csv");
    std::fs::write(
        &input,
        "\"value\",\"timestamp\",host\n1.5,2026-01-01 00:00:00,a\n2.5,2026-01-01T00:05:00Z,a\n",
    )
    .unwrap();
    let status = ward_command()
        .args(["detect", "--input"])
        .arg(&input)
        .arg("--output")
        .arg(&output)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        std::fs::read_to_string(&output).unwrap(),
        "timestamp,value,anomaly_score,is_anomaly\n\
         2026-01-01 00:00:00,1.5,0.000000,0\n\
         2026-01-01T00:05:00Z,2.5,0.000000,0\n"
    );

    let cases: &[(&str, &str)] = &[
        ("time,value\n1,2\n", "no `timestamp` column"),
        (
            "timestamp,value\n1,2\n2,high\n",
            "line 3: value \"high\" is not a number",
        ),
        (
            "timestamp,value\nlater,2\n",
            "line 2: timestamp \"later\" is not a time",
        ),
        ("", "the input is empty"),
    ];
    for (text, expected) in cases {
        std::fs::write(&input, text).unwrap();
        let result = ward_command()
            .args(["detect", "--input"])
            .arg(&input)
            .output()
            .unwrap();
        assert_eq!(result.status.code(), Some(1), "{text:?}");
        assert_one_error_line(&result, expected);
    }
    let missing = ward_command()
        .args(["detect", "--input", "/nonexistent/cpu.csv"])
        .output()
        .unwrap();
    assert_one_error_line(&missing, "cannot read --input /nonexistent/cpu.csv");
}

#[test]
fn a_forecast_says_when_a_rising_series_reaches_its_limit() {
    let directory = tempfile::tempdir().unwrap();
    let input = directory.path().join("memory.csv");
    // Ten days every ten minutes, rising 10 a day from 100 with a daily wave of ±5, with a
    // duplicated row and the rows out of order.
    let mut rows: Vec<String> = (0..1440)
        .map(|i| {
            let t = 1_700_006_400 + i * 600;
            let day = f64::from(i) / 144.0;
            let value = 100.0 + 10.0 * day + 5.0 * (day * std::f64::consts::TAU).sin();
            format!("{t},{value}")
        })
        .collect();
    rows.push(rows[5].clone());
    rows.swap(10, 20);
    std::fs::write(&input, format!("timestamp,value\n{}\n", rows.join("\n"))).unwrap();
    let output = ward_command()
        .args(["forecast", "--horizon", "2d", "--limit", "205", "--input"])
        .arg(&input)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "timestamp,forecast,lower,upper");
    assert_eq!(lines.len(), 1 + 288, "two days at ten minutes");
    assert!(lines[1].starts_with("2023-11-25 00:00:00,"), "{}", lines[1]);
    for line in &lines[1..] {
        let fields: Vec<f64> = line
            .split(',')
            .skip(1)
            .map(|f| f.parse().unwrap())
            .collect();
        assert!(fields[1] <= fields[0] && fields[0] <= fields[2], "{line}");
        assert!((190.0..240.0).contains(&fields[0]), "{line}");
    }
    let said = String::from_utf8(output.stderr).unwrap();
    assert!(said.starts_with("reaches 205 at 2023-11-2"), "{said}");

    let flat = ward_command()
        .args(["forecast", "--input"])
        .arg(&input)
        .args(["--horizon", "0s"])
        .output()
        .unwrap();
    assert_one_error_line(&flat, "horizon \"0s\" must be more than 0");
    std::fs::write(&input, "timestamp,value\n1,2\n").unwrap();
    let short = ward_command()
        .args(["forecast", "--input"])
        .arg(&input)
        .output()
        .unwrap();
    assert_one_error_line(&short, "a forecast needs at least 3");
}
