//! Start latency of a `true` process workload, from the `Driver::start` call to the returned
//! handle: p50 and p95 over 50 starts with each OCI runtime installed. A measurement, not a
//! check: run it alone on a quiet machine with
//! `cargo test -p ward-runtime --release --test start_latency -- --ignored --nocapture`.

mod support;

use std::time::{Duration, Instant};

use support::*;
use ward_runtime::Driver;

const STARTS: usize = 50;

#[tokio::test]
#[ignore = "a measurement: run alone with --ignored --nocapture"]
async fn start_latency_of_a_true_workload() {
    for oci_runtime in ["crun", "runc"] {
        let Some(fixture) = fixture_with("start_latency_of_a_true_workload", Some(oci_runtime))
        else {
            continue;
        };
        let spec = spec("latency", &["true"]);
        let key = fixture.key("latency");
        let mut took = Vec::with_capacity(STARTS);
        for _ in 0..STARTS + 1 {
            let started = Instant::now();
            let handle = fixture.runtime.start(&key, &spec).await.expect("start");
            took.push(started.elapsed());
            let status = fixture.runtime.wait(&handle).await.expect("wait");
            assert!(status.success(), "{status:?}");
        }
        took.remove(0); // The first start also creates the cgroup parents.
        took.sort();
        let percentile = |p: usize| took[(took.len() * p / 100).min(took.len() - 1)];
        let info = fixture.runtime.info();
        eprintln!(
            "{oci_runtime} {} ({:?} cgroups): start p50 {:.1} ms, p95 {:.1} ms, min {:.1} ms",
            info.oci_runtime_version,
            info.cgroup_mode,
            millis(percentile(50)),
            millis(percentile(95)),
            millis(took[0])
        );
    }
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
