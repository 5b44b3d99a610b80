//! Telemetry: every sample the usage sampler takes goes into the time-series store, and
//! through one streaming detector per series; an anomaly becomes an event that says which
//! series, how unusual, and why in plain words.

use std::collections::HashMap;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use ward_core::events::EventKind;
use ward_detect::{Detector, Verdict};
use ward_tsdb::{SeriesKey, Store};

use crate::events::PendingEvent;

/// The instance series, Prometheus-style names.
pub const CPU: &str = "ward_instance_cpu_usage_cores";
pub const MEMORY: &str = "ward_instance_memory_bytes";
pub const PIDS: &str = "ward_instance_pids";
/// Bytes per second over the last interval, per instance.
pub const DISK_READ: &str = "ward_instance_disk_read_bytes_per_second";
pub const DISK_WRITE: &str = "ward_instance_disk_write_bytes_per_second";
pub const NETWORK_RECEIVE: &str = "ward_instance_network_receive_bytes_per_second";
pub const NETWORK_TRANSMIT: &str = "ward_instance_network_transmit_bytes_per_second";
/// Restarts of the instance so far: stored, not watched (each has its own event).
pub const RESTARTS: &str = "ward_instance_restarts_total";
/// How long the newest health check took.
pub const HEALTH_CHECK: &str = "ward_instance_health_check_seconds";
/// Per instance, the highest anomaly score of its series at each sampling: how unusual it
/// was, stored with the data it was judged on.
pub const ANOMALY_SCORE: &str = "ward_instance_anomaly_score";
/// The prefix of the host's own series.
pub const HOST_PREFIX: &str = "ward_host_";

/// One instance's reading at one sampling.
#[derive(Debug, Clone)]
pub(crate) struct Reading {
    pub project: String,
    pub workload: String,
    pub replica: u32,
    /// Cores in use over the last interval; `None` at an instance's first reading.
    pub cpu_cores: Option<f64>,
    pub memory_bytes: u64,
    pub pids: u64,
    /// Disk read, disk write, network receive and network transmit, in bytes per second
    /// (`None` at the first reading, and for network on the host's).
    pub rates: [Option<f64>; 4],
    pub restarts: u32,
    /// How long the newest health check took, where the workload has one.
    pub health_check_seconds: Option<f64>,
}

/// The store and the detectors.
pub(crate) struct Telemetry {
    store: Store,
    detectors: HashMap<SeriesKey, Detector>,
    /// When blocks past the retention were last deleted.
    expired_at: Option<std::time::Instant>,
    /// Where every sample is also sent, if anywhere.
    remote: Option<crate::remote_write::RemoteWriter>,
    /// The host's own series.
    host: crate::host_metrics::HostSampler,
    /// The thread folding old blocks into the tiers, while it runs.
    expiring: Option<std::thread::JoinHandle<()>>,
}

/// How often blocks past the retention are looked for.
const EXPIRE_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("series", &self.detectors.len())
            .finish()
    }
}

/// What a series measures, in words and with its unit.
fn describe(name: &str, value: f64) -> (&'static str, String) {
    match name {
        MEMORY => ("memory", bytes(value)),
        CPU => ("CPU", format!("{value:.2} cores")),
        DISK_READ => ("disk reads", format!("{}/s", bytes(value))),
        DISK_WRITE => ("disk writes", format!("{}/s", bytes(value))),
        NETWORK_RECEIVE => ("network receive", format!("{}/s", bytes(value))),
        NETWORK_TRANSMIT => ("network transmit", format!("{}/s", bytes(value))),
        HEALTH_CHECK => ("health check time", format!("{:.0} ms", value * 1000.0)),
        _ => ("processes", format!("{value:.0}")),
    }
}

/// Whether a change between `usual` and `value` is big enough for a person to care: a few
/// packets on an idle interface or a blip of CPU on an idle process are unusual for that
/// series, yet nothing to act on.
fn matters(name: &str, value: f64, usual: f64) -> bool {
    let floor = match name {
        CPU => 0.05,
        DISK_READ | DISK_WRITE | NETWORK_RECEIVE | NETWORK_TRANSMIT => 64.0 * 1024.0,
        HEALTH_CHECK => 0.05,
        MEMORY => 4.0 * 1024.0 * 1024.0,
        _ => 0.0,
    };
    value.max(usual) >= floor && (value - usual).abs() >= floor / 2.0
}

fn bytes(value: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = value;
    let mut unit = 0;
    while value.abs() >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{value:.0} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

impl Telemetry {
    pub fn open(
        dir: &Path,
        options: ward_tsdb::Options,
        remote: Option<crate::remote_write::RemoteWriter>,
    ) -> Result<Telemetry, ward_tsdb::Error> {
        Ok(Telemetry {
            store: Store::open(dir, options)?,
            detectors: HashMap::new(),
            expired_at: None,
            remote,
            host: crate::host_metrics::HostSampler::new(dir.to_path_buf()),
            expiring: None,
        })
    }

    /// Stores one sampling's readings and scores each series; returns the anomaly events.
    pub fn record(&mut self, at: SystemTime, readings: &[Reading]) -> Vec<PendingEvent> {
        let seconds = at
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let ms = (seconds * 1000.0) as i64;
        // One pass per instance: its samples, each scored, then its highest score and its
        // restarts (stored, not watched).
        let mut batch = Vec::with_capacity(readings.len() * 8);
        let mut events = Vec::new();
        for reading in readings {
            let replica = reading.replica.to_string();
            let labels = [
                ("project", reading.project.as_str()),
                ("workload", reading.workload.as_str()),
                ("replica", replica.as_str()),
            ];
            let watched = [
                (CPU, reading.cpu_cores),
                (MEMORY, Some(reading.memory_bytes as f64)),
                (PIDS, Some(reading.pids as f64)),
                (DISK_READ, reading.rates[0]),
                (DISK_WRITE, reading.rates[1]),
                (NETWORK_RECEIVE, reading.rates[2]),
                (NETWORK_TRANSMIT, reading.rates[3]),
                (HEALTH_CHECK, reading.health_check_seconds),
            ];
            let mut highest: f64 = 0.0;
            for (name, value) in watched {
                let Some(value) = value else {
                    continue;
                };
                let key = SeriesKey::new(name, &labels);
                let verdict = self
                    .detectors
                    .entry(key.clone())
                    .or_default()
                    .update(seconds, value);
                if verdict.anomaly && matters(name, value, verdict.usual) {
                    events.push(anomaly_event(&key, value, &verdict));
                }
                highest = highest.max(verdict.score);
                batch.push((key, ms, value));
            }
            batch.push((SeriesKey::new(ANOMALY_SCORE, &labels), ms, highest));
            batch.push((
                SeriesKey::new(RESTARTS, &labels),
                ms,
                f64::from(reading.restarts),
            ));
        }
        for (name, value) in self.host.sample() {
            batch.push((SeriesKey::new(name, &[]), ms, value));
        }
        if let Err(error) = self.store.append(&batch) {
            tracing::warn!(%error, "cannot store metrics");
        }
        // Folding old blocks into the tiers is seconds of work at scale: a thread of its own
        // does it beside sampling and queries, one at a time.
        let folding = self
            .expiring
            .as_ref()
            .is_some_and(|thread| !thread.is_finished());
        if !folding
            && self
                .expired_at
                .is_none_or(|at| at.elapsed() >= EXPIRE_EVERY)
        {
            self.expired_at = Some(std::time::Instant::now());
            let (dir, options) = self.store.location();
            self.expiring = std::thread::Builder::new()
                .name("ward-tsdb-expire".into())
                .spawn(move || {
                    if let Err(error) = ward_tsdb::expire(&dir, &options, ms) {
                        tracing::warn!(%error, "cannot fold or delete metrics past their retention");
                    }
                })
                .ok();
        }
        if let Some(remote) = &self.remote {
            remote.send(batch);
        }
        events
    }

    /// The project's samples of one metric, in steps.
    pub fn query(
        &self,
        project: &str,
        query: &ward_core::services::MetricQuery,
    ) -> Result<Vec<ward_core::services::MetricSeries>, crate::SupervisorError> {
        use ward_tsdb::Aggregation;
        let aggregation = match query.aggregation.as_str() {
            "avg" => Aggregation::Avg,
            "min" => Aggregation::Min,
            "max" => Aggregation::Max,
            "sum" => Aggregation::Sum,
            "last" => Aggregation::Last,
            "count" => Aggregation::Count,
            other => {
                return Err(crate::SupervisorError::Invalid {
                    field: "aggregation".into(),
                    message: format!("{other:?} is not one of avg, min, max, sum, last, count"),
                })
            }
        };
        // The host's series belong to no project; the API lets only principals of every
        // project ask for them.
        let mut matchers = if query.name.starts_with(HOST_PREFIX) {
            Vec::new()
        } else {
            vec![("project".to_owned(), project.to_owned())]
        };
        if let Some(workload) = &query.workload {
            matchers.push(("workload".to_owned(), workload.clone()));
        }
        let found = self
            .store
            .query(
                &query.name,
                &matchers,
                query.start,
                query.end,
                query.step,
                aggregation,
            )
            .map_err(|error| match error {
                ward_tsdb::Error::Step => crate::SupervisorError::Invalid {
                    field: "step".into(),
                    message:
                        "give a step above 0 that makes at most 11,000 points from start to end"
                            .into(),
                },
                other => other.into(),
            })?;
        Ok(found
            .into_iter()
            .map(|(key, points)| ward_core::services::MetricSeries {
                labels: key.labels,
                points,
            })
            .collect())
    }

    /// Forgets the detectors of series no longer sampled (their instances are gone).
    pub fn forget_except(&mut self, readings: &[Reading]) {
        let live: std::collections::HashSet<(&str, &str, String)> = readings
            .iter()
            .map(|r| {
                (
                    r.project.as_str(),
                    r.workload.as_str(),
                    r.replica.to_string(),
                )
            })
            .collect();
        self.detectors.retain(|key, _| {
            let label = |name| key.label(name).unwrap_or_default();
            live.contains(&(
                label("project"),
                label("workload"),
                label("replica").to_owned(),
            ))
        });
    }
}

fn anomaly_event(key: &SeriesKey, value: f64, verdict: &Verdict) -> PendingEvent {
    let label = |name| key.label(name).unwrap_or_default();
    let (what, shown) = describe(&key.name, value);
    let subject = format!(
        "{what} of {} (replica {})",
        label("workload"),
        label("replica")
    );
    let usual = describe(&key.name, verdict.usual).1;
    let explanation = verdict.explain(&subject, &shown, &usual);
    let replica = label("replica").parse().ok();
    let mut event = PendingEvent::new(
        label("project"),
        label("workload"),
        replica,
        EventKind::Anomaly,
        explanation,
    );
    event.data = serde_json::json!({
        "series": key.name,
        "score": verdict.score,
        "value": value,
        "usual": verdict.usual,
        "sign": verdict.sign.as_str(),
    });
    event
}
