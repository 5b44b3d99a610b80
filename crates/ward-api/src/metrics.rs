//! `GET /metrics`: daemon health and per-instance CPU and memory, in Prometheus text format.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use ward_core::services::Workloads;
use ward_core::view::Phase;

use crate::error::ApiError;
use crate::ApiState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InstanceLabels {
    project: String,
    workload: String,
    instance: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

/// Counters that live as long as the daemon; everything else is read at scrape time.
#[derive(Default)]
pub struct Metrics {
    events: Family<KindLabels, Counter>,
    http_requests: AtomicU64,
}

impl Metrics {
    /// Counts every event the supervisor records: the event stream is the one place both the
    /// log line and this counter come from.
    pub fn count_events(self: &Arc<Self>, workloads: &Arc<dyn Workloads>) {
        let mut receiver = workloads.subscribe();
        let metrics = self.clone();
        tokio::spawn(async move {
            loop {
                match receiver.recv().await {
                    Ok(event) => {
                        metrics
                            .events
                            .get_or_create(&KindLabels { kind: event.kind })
                            .inc();
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }

    pub fn count_request(&self) {
        self.http_requests.fetch_add(1, Ordering::Relaxed);
    }
}

#[utoipa::path(get, path = "/metrics", tag = "daemon",
    responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain")))]
pub async fn metrics(State(state): State<Arc<ApiState>>) -> Result<Response, ApiError> {
    let mut registry = Registry::with_prefix("ward");

    let up = Gauge::<i64>::default();
    up.set(1);
    registry.register("up", "Whether the Ward daemon is up", up);

    let resident = Gauge::<i64>::default();
    resident.set(daemon_resident_bytes().unwrap_or(0) as i64);
    registry.register(
        "daemon_resident_memory_bytes",
        "Resident memory of the Ward daemon",
        resident,
    );

    let requests = Counter::<u64>::default();
    requests.inc_by(state.metrics.http_requests.load(Ordering::Relaxed));
    registry.register("http_requests", "HTTP requests served", requests);

    registry.register(
        "events",
        "Events recorded, by kind",
        state.metrics.events.clone(),
    );

    let workloads = Family::<StateLabels, Gauge>::default();
    let cpu = Family::<InstanceLabels, Counter<f64, AtomicU64>>::default();
    let memory = Family::<InstanceLabels, Gauge>::default();
    let restarts = Family::<InstanceLabels, Counter>::default();
    let instance_up = Family::<InstanceLabels, Gauge>::default();
    for view in state.workloads.list(None) {
        workloads
            .get_or_create(&StateLabels {
                state: view.phase().as_str().to_string(),
            })
            .inc();
        for instance in &view.instances {
            let labels = InstanceLabels {
                project: view.project.clone(),
                workload: view.spec.name.clone(),
                instance: instance.name.clone(),
            };
            instance_up
                .get_or_create(&labels)
                .set(i64::from(instance.phase == Phase::Running));
            restarts
                .get_or_create(&labels)
                .inc_by(u64::from(instance.restarts));
            if let Some(usage) = instance.usage {
                cpu.get_or_create(&labels).inc_by(usage.cpu_seconds);
                memory.get_or_create(&labels).set(usage.memory_bytes as i64);
            }
        }
    }
    registry.register("workloads", "Workloads by state", workloads);
    registry.register(
        "instance_up",
        "Whether the instance is running",
        instance_up,
    );
    registry.register("instance_restarts", "Restarts of the instance", restarts);
    registry.register("instance_cpu_seconds", "CPU time used by the instance", cpu);
    registry.register(
        "instance_memory_bytes",
        "Memory used by the instance",
        memory,
    );

    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)
        .map_err(|error| ApiError::internal(&error))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

fn daemon_resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * page_size.max(0) as u64)
}
