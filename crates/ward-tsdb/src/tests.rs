//! The store against its promises: what goes in comes out, across reopen and kill -9.

use super::*;

fn key(workload: &str) -> SeriesKey {
    SeriesKey::new(MEMORY, &[("workload", workload), ("project", "default")])
}

fn small() -> Options {
    Options {
        chunk_samples: 16,
        wal_bytes: 4096,
        ..Options::default()
    }
}

const T0: i64 = 1_700_000_000_000;
const MEMORY: &str = "ward_workload_memory_bytes";

/// Writes `count` samples of workload `api`, `step` ms apart, then closes the store.
fn write_api(dir: &Path, count: i64, step: i64, value: fn(i64) -> f64) {
    let mut store = Store::open(dir, small()).unwrap();
    for i in 0..count {
        store
            .append(&[(key("api"), T0 + i * step, value(i))])
            .unwrap();
    }
}

/// Workload `api`'s memory from T0 + 10 s to T0 + 30 s in steps of 10 s.
fn api_steps(store: &Store, aggregation: Aggregation) -> Vec<(SeriesKey, Samples)> {
    let api = [("workload".to_owned(), "api".to_owned())];
    store
        .query(MEMORY, &api, T0 + 10_000, T0 + 30_000, 10_000, aggregation)
        .unwrap()
}

/// Every memory series' samples from T0 to `end`.
fn memory(store: &Store, end: i64) -> Vec<(SeriesKey, Samples)> {
    store.select(MEMORY, &[], T0, end).unwrap()
}

#[test]
fn samples_come_back_by_series_and_by_step() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path(), small()).unwrap();
    for i in 0..1000 {
        let batch = [
            (key("api"), T0 + i * 1000, i as f64),
            (key("db"), T0 + i * 1000, 2.0 * i as f64),
        ];
        assert_eq!(store.append(&batch).unwrap(), 2);
    }
    // Late and repeated samples are dropped.
    assert_eq!(store.append(&[(key("api"), T0, 5.0)]).unwrap(), 0);
    let all = memory(&store, T0 + 999_000);
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].1.len(), 1000);
    assert_eq!(all[0].1[500], (T0 + 500_000, 500.0));
    let db = store
        .select(
            MEMORY,
            &[("workload".into(), "db".into())],
            T0 + 10_000,
            T0 + 19_000,
        )
        .unwrap();
    assert_eq!(db.len(), 1);
    assert_eq!(db[0].0.label("workload"), Some("db"));
    assert_eq!(
        db[0].1.iter().map(|s| s.1).collect::<Vec<_>>(),
        (10..20).map(|i| 2.0 * f64::from(i)).collect::<Vec<_>>()
    );
    assert!(store
        .select("other", &[], T0, T0 + 1_000_000)
        .unwrap()
        .is_empty());

    let steps = api_steps(&store, Aggregation::Avg);
    // Each step stands for the samples in (t - 10 s, t]: 1..=10, 11..=20, 21..=30.
    assert_eq!(
        steps[0].1,
        vec![(T0 + 10_000, 5.5), (T0 + 20_000, 15.5), (T0 + 30_000, 25.5)]
    );
    let max = api_steps(&store, Aggregation::Max);
    assert_eq!(max[0].1[1], (T0 + 20_000, 20.0));
    let count = api_steps(&store, Aggregation::Count);
    assert_eq!(count[0].1[1], (T0 + 20_000, 10.0));
    assert!(matches!(
        store.query("x", &[], T0, T0 + 1, 0, Aggregation::Avg),
        Err(Error::Step)
    ));
}

#[test]
fn a_reopened_store_has_everything_and_expires_old_blocks() {
    let dir = tempfile::tempdir().unwrap();
    // Ten hours at 10 s: several blocks, several checkpoints, an open chunk at the end.
    write_api(dir.path(), 3605, 10_000, |i| (i % 50) as f64);
    let mut store = Store::open(dir.path(), small()).unwrap();
    let samples = &memory(&store, T0 + 40_000_000)[0].1;
    assert_eq!(samples.len(), 3605);
    assert!(samples
        .iter()
        .enumerate()
        .all(|(i, s)| *s == (T0 + i as i64 * 10_000, (i % 50) as f64)));
    // It goes on where it stopped.
    assert_eq!(
        store
            .append(&[(key("api"), T0 + 3605 * 10_000, 1.0)])
            .unwrap(),
        1
    );

    let blocks = store.blocks().unwrap().len();
    let removed = store
        .expire(T0 + 36_050_000 + store.options.retention_ms - 4 * 3_600_000)
        .unwrap();
    assert!(removed >= 2 && removed < blocks, "{removed} of {blocks}");
    let left = &memory(&store, T0 + 40_000_000)[0].1;
    assert!(left.len() < 3606 && left[left.len() - 1].0 == T0 + 3605 * 10_000);
}

#[test]
fn series_past_the_limit_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(
        dir.path(),
        Options {
            max_series: 3,
            ..small()
        },
    )
    .unwrap();
    let batch: Vec<_> = (0..5).map(|i| (key(&format!("w{i}")), T0, 1.0)).collect();
    assert_eq!(store.append(&batch).unwrap(), 3);
    let error = store
        .append(&[(key("w9"), T0 + 1, 1.0)])
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("limit of 3 series") && error.contains(MEMORY),
        "{error}"
    );
    assert_eq!(store.series_count(), 3);
    // Known series still take samples.
    assert_eq!(store.append(&[(key("w0"), T0 + 1, 2.0)]).unwrap(), 1);
}

#[test]
fn a_torn_tail_is_cut_off_and_the_rest_kept() {
    let dir = tempfile::tempdir().unwrap();
    write_api(dir.path(), 100, 1000, |i| i as f64);
    // Half a record at the end of every file, and garbage after it.
    for path in [dir.path().join("wal"), dir.path().join("series")] {
        let mut file = OpenOptions::new().append(true).open(path).unwrap();
        file.write_all(&[200, 0, 0, 0, 1, 2, 3, 4, 5]).unwrap();
    }
    let mut store = Store::open(dir.path(), small()).unwrap();
    let samples = &memory(&store, T0 + 100_000)[0].1;
    assert_eq!(samples.len(), 100);
    assert_eq!(
        store
            .append(&[(key("api"), T0 + 100_000, 1.0), (key("db"), T0, 1.0)])
            .unwrap(),
        2
    );
    drop(store);
    let store = Store::open(dir.path(), small()).unwrap();
    assert_eq!(memory(&store, T0 + 100_000).len(), 2);
}

/// The child side of the kill test: appends batches of 50 series forever, saying after each
/// which batch is stored.
#[test]
#[ignore = "run by kill_9_while_writing_loses_at_most_the_batch_in_flight"]
fn writer_child() {
    let Some(dir) = std::env::var_os("WARD_TSDB_CHILD_DIR") else {
        return;
    };
    let mut store = Store::open(Path::new(&dir), small()).unwrap();
    let mut out = io::stdout();
    for batch in 0.. {
        let samples: Vec<_> = (0..50)
            .map(|s| (key(&format!("w{s}")), T0 + batch * 1000, (batch * s) as f64))
            .collect();
        store.append(&samples).unwrap();
        writeln!(out, "{batch}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn kill_9_while_writing_loses_at_most_the_batch_in_flight() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    for round in 0..3 {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "tests::writer_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("WARD_TSDB_CHILD_DIR", dir.path())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = io::BufReader::new(child.stdout.take().unwrap()).lines();
        let mut done = -1i64;
        // Kill it at a different point each round: mid-run, after checkpoints.
        while done < 300 + round * 137 {
            match lines.next() {
                Some(Ok(line)) => done = line.trim().parse().unwrap_or(done),
                _ => panic!("writer stopped early"),
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let store = Store::open(dir.path(), small()).unwrap();
        let all = memory(&store, T0 + 10_000_000);
        assert_eq!(all.len(), 50, "round {round}");
        for (key, samples) in &all {
            let s: i64 = key.label("workload").unwrap()[1..].parse().unwrap();
            // Every acknowledged batch is there, in order, with its value.
            assert!(
                samples.len() as i64 > done,
                "round {round}: {} samples, {done} acknowledged",
                samples.len()
            );
            for (batch, sample) in samples.iter().enumerate() {
                assert_eq!(
                    *sample,
                    (T0 + batch as i64 * 1000, (batch as i64 * s) as f64)
                );
            }
        }
        // The next writer starts over from the same times, which are dropped as repeats.
    }
}

/// A start on the hour, so hourly steps hold whole minute and hour buckets.
const HOUR_ALIGNED: i64 = 1_699_999_200_000;

#[test]
fn expired_samples_are_folded_into_tiers_and_queries_stay_exact() {
    let dir = tempfile::tempdir().unwrap();
    let hour = 3_600_000;
    let options = Options {
        retention_ms: 6 * hour,
        tiers: [
            Tier {
                step_ms: 60_000,
                block_ms: 86_400_000,
                retention_ms: 24 * hour,
            },
            Tier {
                step_ms: hour,
                block_ms: 30 * 86_400_000,
                retention_ms: 365 * 86_400_000,
            },
        ],
        ..small()
    };
    // Two days at 10 s of a value that climbs and falls each hour.
    let count = 2 * 24 * 360;
    let value = |i: i64| ((i % 360) as f64 - 180.0).abs();
    let mut store = Store::open(dir.path(), options).unwrap();
    for i in 0..count {
        store
            .append(&[(key("api"), HOUR_ALIGNED + i * 10_000, value(i))])
            .unwrap();
    }
    let end = HOUR_ALIGNED + count * 10_000;
    // The whole range, by hour, as it stands with every raw sample.
    let hourly = |store: &Store, aggregation| {
        store
            .query(MEMORY, &[], HOUR_ALIGNED + hour, end, hour, aggregation)
            .unwrap()
            .remove(0)
            .1
    };
    let aggregations = [
        Aggregation::Avg,
        Aggregation::Min,
        Aggregation::Max,
        Aggregation::Sum,
        Aggregation::Count,
        Aggregation::Last,
    ];
    let before: Vec<_> = aggregations
        .iter()
        .map(|&aggregation| hourly(&store, aggregation))
        .collect();
    assert_eq!(before[0].len(), 48);

    // Past the raw retention into the minute tier, then past that into the hour tier.
    let removed = store.expire(end).unwrap();
    assert!(removed >= 18, "{removed} raw blocks folded");
    assert!(store
        .select(MEMORY, &[], HOUR_ALIGNED, HOUR_ALIGNED + 30 * hour)
        .unwrap()[0]
        .1
        .is_empty());
    let after_minutes: Vec<_> = aggregations
        .iter()
        .map(|&aggregation| hourly(&store, aggregation))
        .collect();
    let reopened = Store::open(dir.path(), options).unwrap();
    for (index, aggregation) in aggregations.iter().enumerate() {
        let close = |left: &Samples, right: &Samples| {
            left.len() == right.len()
                && left
                    .iter()
                    .zip(right)
                    .all(|(a, b)| a.0 == b.0 && (a.1 - b.1).abs() < 1e-9)
        };
        assert!(
            close(&before[index], &after_minutes[index]),
            "{aggregation:?} by hour from the minute tier: {:?} vs {:?}",
            &before[index][..3],
            &after_minutes[index][..3]
        );
        assert!(close(&before[index], &hourly(&reopened, *aggregation)));
    }
    // Past the minute tier's retention: hours only, still exact by hour.
    let mut store = reopened;
    // Sealed first, as a series long gone is: its open chunk in a block, to be folded too.
    store.checkpoint().unwrap();
    store.expire(end + 30 * hour).unwrap();
    assert!(tiers::blocks(dir.path(), &options.tiers[0]).unwrap().len() <= 2);
    let avg = hourly(&store, Aggregation::Avg);
    let max = hourly(&store, Aggregation::Max);
    assert!(avg.len() >= 40, "{} hours", avg.len());
    for (point, expected) in avg.iter().zip(&before[0]) {
        assert!(
            (point.1 - expected.1).abs() < 1e-9,
            "{point:?} vs {expected:?}"
        );
    }
    assert_eq!(max, before[2]);
}

#[test]
fn queries_beside_a_fold_on_another_thread_always_count_every_sample() {
    let dir = tempfile::tempdir().unwrap();
    let hour = 3_600_000;
    let options = Options {
        retention_ms: 2 * hour,
        ..small()
    };
    let count = 24 * 360;
    let mut store = Store::open(dir.path(), options).unwrap();
    for i in 0..count {
        store
            .append(&[(key("api"), HOUR_ALIGNED + i * 10_000, (i % 7) as f64)])
            .unwrap();
    }
    store.checkpoint().unwrap();
    let end = HOUR_ALIGNED + count * 10_000;
    let counted = |store: &Store| {
        store
            .query(
                MEMORY,
                &[],
                HOUR_ALIGNED,
                end,
                24 * hour,
                Aggregation::Count,
            )
            .unwrap()[0]
            .1
            .iter()
            .map(|point| point.1)
            .sum::<f64>()
    };
    let expected = counted(&store);
    assert_eq!(expected, count as f64);
    let folder = {
        let dir = dir.path().to_path_buf();
        std::thread::spawn(move || expire(&dir, &options, end).unwrap())
    };
    let mut queries = 0;
    while !folder.is_finished() {
        assert_eq!(counted(&store), expected, "after {queries} queries");
        queries += 1;
    }
    assert!(folder.join().unwrap() >= 8);
    assert_eq!(counted(&store), expected);
}
