//! `GET /metrics`: daemon health and per-instance CPU and memory, in Prometheus text format.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    project: String,
    model: String,
}

/// Seconds to the first token, and between tokens: from 1 ms to about a minute.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// Counters that live as long as the daemon; everything else is read at scrape time.
pub struct Metrics {
    events: Family<KindLabels, Counter>,
    http_requests: AtomicU64,
    prompt_tokens: Family<ModelLabels, Counter>,
    completion_tokens: Family<ModelLabels, Counter>,
    first_token_seconds: Family<ModelLabels, Histogram, fn() -> Histogram>,
    token_seconds: Family<ModelLabels, Histogram, fn() -> Histogram>,
    rejected: Family<ModelLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            events: Family::default(),
            http_requests: AtomicU64::default(),
            prompt_tokens: Family::default(),
            completion_tokens: Family::default(),
            first_token_seconds: Family::new_with_constructor(latency_histogram),
            token_seconds: Family::new_with_constructor(latency_histogram),
            rejected: Family::default(),
        }
    }
}

/// What one completion contributes to the metrics.
pub struct CompletionMetrics {
    metrics: Arc<Metrics>,
    labels: ModelLabels,
    started: Instant,
    last: Option<Instant>,
}

impl CompletionMetrics {
    /// A piece of text arrived.
    pub fn piece(&mut self) {
        let now = Instant::now();
        match self.last {
            None => self
                .metrics
                .first_token_seconds
                .get_or_create(&self.labels)
                .observe(now.duration_since(self.started).as_secs_f64()),
            Some(last) => self
                .metrics
                .token_seconds
                .get_or_create(&self.labels)
                .observe(now.duration_since(last).as_secs_f64()),
        }
        self.last = Some(now);
    }

    pub fn done(&self, prompt_tokens: u32, completion_tokens: u32) {
        self.metrics
            .prompt_tokens
            .get_or_create(&self.labels)
            .inc_by(u64::from(prompt_tokens));
        self.metrics
            .completion_tokens
            .get_or_create(&self.labels)
            .inc_by(u64::from(completion_tokens));
    }
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

    /// Starts measuring a completion of `model` in `project`.
    pub fn completion(self: &Arc<Self>, project: &str, model: &str) -> CompletionMetrics {
        CompletionMetrics {
            metrics: self.clone(),
            labels: ModelLabels {
                project: project.to_string(),
                model: model.to_string(),
            },
            started: Instant::now(),
            last: None,
        }
    }

    /// A completion turned away because its model's queue was full.
    pub fn rejected(&self, project: &str, model: &str) {
        self.rejected
            .get_or_create(&ModelLabels {
                project: project.to_string(),
                model: model.to_string(),
            })
            .inc();
    }
}

/// Gauges of a rate per instance.
type RateFamily = Family<InstanceLabels, Gauge<f64, AtomicU64>>;

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
    let pids = Family::<InstanceLabels, Gauge>::default();
    // Rates over the last sampling interval, as the store keeps them.
    let rates: [(&str, &str, RateFamily); 4] = [
        (
            "instance_disk_read_bytes_per_second",
            "Bytes per second the instance read from disk",
            Family::default(),
        ),
        (
            "instance_disk_write_bytes_per_second",
            "Bytes per second the instance wrote to disk",
            Family::default(),
        ),
        (
            "instance_network_receive_bytes_per_second",
            "Bytes per second the instance received on its own network",
            Family::default(),
        ),
        (
            "instance_network_transmit_bytes_per_second",
            "Bytes per second the instance sent on its own network",
            Family::default(),
        ),
    ];
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
                pids.get_or_create(&labels)
                    .set(i64::try_from(usage.pids).unwrap_or(i64::MAX));
                let measured = [
                    usage.disk_read_rate,
                    usage.disk_write_rate,
                    usage.network_receive_rate,
                    usage.network_transmit_rate,
                ];
                for ((_, _, family), rate) in rates.iter().zip(measured) {
                    if let Some(rate) = rate {
                        family.get_or_create(&labels).set(rate);
                    }
                }
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
    registry.register("instance_pids", "Processes of the instance", pids);
    for (name, help, family) in rates {
        registry.register(name, help, family);
    }

    registry.register(
        "model_prompt_tokens",
        "Prompt tokens read by completions, by model",
        state.metrics.prompt_tokens.clone(),
    );
    registry.register(
        "model_completion_tokens",
        "Tokens generated by completions, by model",
        state.metrics.completion_tokens.clone(),
    );
    registry.register(
        "model_time_to_first_token_seconds",
        "Seconds from a completion's request to its first text",
        state.metrics.first_token_seconds.clone(),
    );
    registry.register(
        "model_time_per_token_seconds",
        "Seconds between a completion's pieces of text",
        state.metrics.token_seconds.clone(),
    );
    registry.register(
        "model_rejected_requests",
        "Completions turned away with 429 because the model's queue was full",
        state.metrics.rejected.clone(),
    );
    let failures = Counter::<u64>::default();
    failures.inc_by(state.inference.runner_failures());
    registry.register(
        "model_runner_failures",
        "Model runners that stopped on their own (crashed, killed, out of memory); the next request starts a new one",
        failures,
    );
    let loaded = Family::<ModelLabels, Gauge>::default();
    let loaded_memory = Family::<ModelLabels, Gauge>::default();
    let waiting = Family::<ModelLabels, Gauge>::default();
    let queued = Family::<ModelLabels, Gauge>::default();
    let inference = state.inference.clone();
    if let Ok(models) = crate::blocking(move || inference.loaded_everywhere()).await {
        for (project, model) in models {
            let labels = ModelLabels {
                project,
                model: model.name.clone(),
            };
            loaded.get_or_create(&labels).set(1);
            loaded_memory
                .get_or_create(&labels)
                .set(i64::try_from(model.memory_bytes).unwrap_or(i64::MAX));
            waiting
                .get_or_create(&labels)
                .set(i64::from(model.requests));
            queued
                .get_or_create(&labels)
                .set(i64::from(model.requests.saturating_sub(model.slots)));
        }
    }
    registry.register("model_loaded", "Whether the model is loaded", loaded);
    registry.register(
        "model_memory_bytes",
        "Resident memory of the model's runner",
        loaded_memory,
    );
    registry.register(
        "model_requests",
        "Completions of the model running or waiting now",
        waiting,
    );
    registry.register(
        "model_queue_depth",
        "Completions of the model waiting for a slot now",
        queued,
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
