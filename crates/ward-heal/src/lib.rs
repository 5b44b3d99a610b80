//! The healer: watches OOM kills and memory forecasts and, as each workload's `heal` policy
//! allows, raises its memory limit, restarts it before an OOM kill, or says what it would do.
//!
//! It is a caller like any other: every change goes through the [`Door`] as the agent
//! `healer`, on behalf of the workload's policy (an operator of the workload's project and
//! nothing more), with its reason in the audit log and in the change's event. It never raises
//! past the spec's `heal.memory_max` or the project's quota, and every raise is at least half
//! again the old limit, so a workload reaches its bound in a few steps and is then reported,
//! never bumped in a loop.

pub mod scale;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;
use ward_core::access::{Principal, Role};
use ward_core::door::{Caller, Door};
use ward_core::events::{Event, EventKind};
use ward_core::ops::Operation;
use ward_core::services::{MetricQuery, MetricSeries, Workloads};
use ward_core::view::{Phase, WorkloadView};
use ward_core::Error;
use ward_detect::forecast::{self, History};
use ward_spec::units::format_size;
use ward_spec::{HealPolicy, WorkloadSpec};

/// The memory series the telemetry sampler records per instance.
const MEMORY_SERIES: &str = "ward_instance_memory_bytes";
const CPU_SERIES: &str = "ward_instance_cpu_usage_cores";
/// An autoscaling decision needs this many CPU samples of an instance's current run.
const SCALE_SAMPLES: usize = 3;
const MEBIBYTE: u64 = 1 << 20;
/// The least a raise adds, so small limits do not creep up a few bytes at a time.
const SMALLEST_RAISE: u64 = 16 * MEBIBYTE;
/// A forecast needs this many samples of the instance's current run.
const FORECAST_SAMPLES: usize = 8;
/// Below this share of its limit an instance is left alone, whatever its trend.
const FORECAST_FLOOR: f64 = 0.5;

/// How often and how far ahead the healer looks.
#[derive(Clone, Copy, Debug)]
pub struct HealerConfig {
    /// How often memory forecasts are checked.
    pub check_every: Duration,
    /// A limit forecast to be reached within this long is acted on now.
    pub lead: Duration,
    /// How much recent history a forecast is made from.
    pub history: Duration,
}

impl Default for HealerConfig {
    fn default() -> Self {
        HealerConfig {
            check_every: Duration::from_secs(10),
            lead: Duration::from_secs(120),
            history: Duration::from_secs(15 * 60),
        }
    }
}

/// What one workload's memory limit may become.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Raise {
    /// Up to this many bytes.
    To(u64),
    /// The limit is already `heal.memory_max`.
    AtCap(u64),
    /// `heal.memory_max` is not set: no raise is allowed.
    Unbounded,
}

/// The next limit after `limit`: half again (at least 16 MiB more), whole MiB, at most
/// `memory_max`.
pub fn next_limit(limit: u64, memory_max: Option<u64>) -> Raise {
    let Some(max) = memory_max else {
        return Raise::Unbounded;
    };
    if limit >= max {
        return Raise::AtCap(max);
    }
    let wanted = limit.saturating_add((limit / 2).max(SMALLEST_RAISE));
    let whole = wanted.div_ceil(MEBIBYTE).saturating_mul(MEBIBYTE);
    Raise::To(whole.min(max))
}

/// When, in seconds from the last sample, a series forecast from `times` and `values` first
/// reaches `limit` within `lead` seconds; `None` if it does not, or if there is too little
/// history or the series is far below the limit.
pub fn seconds_to_limit(times: &[f64], values: &[f64], limit: f64, lead: f64) -> Option<f64> {
    let (&last_time, &last_value) = (times.last()?, values.last()?);
    if times.len() < FORECAST_SAMPLES || last_value < limit * FORECAST_FLOOR {
        return None;
    }
    let history = History { times, values };
    let ahead = forecast::times_ahead(history, lead);
    let points = forecast::forecast(history, &ahead);
    forecast::time_to(&points, limit).map(|time| time - last_time)
}

/// Per workload, what the healer has already done, so it neither repeats a suggestion nor
/// acts twice on one cause.
#[derive(Debug, Default)]
struct Memory {
    /// The revision a suggestion or report was last made for.
    told_revision: Option<i64>,
    /// The run (revision, instance, start) the healer last acted on for a forecast: one
    /// action per run, as a raise makes a new revision and a restart a new run.
    forecast_run: Option<(i64, String, Option<SystemTime>)>,
    /// When the autoscaler last changed the replica count.
    last_scale: Option<Instant>,
}

/// The healer of every workload on this daemon.
pub struct Healer {
    door: Arc<dyn Door>,
    workloads: Arc<dyn Workloads>,
    config: HealerConfig,
    memory: HashMap<(String, String), Memory>,
}

impl Healer {
    pub fn new(door: Arc<dyn Door>, workloads: Arc<dyn Workloads>, config: HealerConfig) -> Self {
        Healer {
            door,
            workloads,
            config,
            memory: HashMap::new(),
        }
    }

    /// Runs until the event stream ends (the daemon stops).
    pub async fn run(mut self) {
        let mut events = self.workloads.subscribe();
        let mut tick = tokio::time::interval(self.config.check_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Ok(event) => self.on_event(&event).await,
                    Err(RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "the healer fell behind the event stream");
                    }
                    Err(RecvError::Closed) => return,
                },
                _ = tick.tick() => {
                    self.check_forecasts().await;
                    self.check_scaling();
                }
            }
        }
    }

    async fn on_event(&mut self, event: &Event) {
        if event.kind != EventKind::OomKilled.as_str() {
            return;
        }
        let Some(name) = &event.workload else {
            return;
        };
        let Ok(view) = self.workloads.get(&event.project, name) else {
            return;
        };
        // A kill of an older revision was answered already (or the spec changed since).
        let revision = event.data.get("revision").and_then(|value| value.as_i64());
        if revision.is_some_and(|revision| revision < view.revision) {
            return;
        }
        let spec = &view.spec;
        let (policy, Some(limit)) = (spec.heal.policy, spec.resources.memory) else {
            return;
        };
        if policy == HealPolicy::Off {
            return;
        }
        let instance = event
            .replica
            .map(|replica| format!("{name} (replica {replica})"))
            .unwrap_or_else(|| name.clone());
        let cause = format!(
            "{instance} was killed for memory at its limit {}",
            format_size(limit)
        );
        self.raise_or_report(&view, limit, &cause, false).await;
    }

    /// Raises `view`'s memory limit for `cause` (policy `auto`) or says it would (policy
    /// `suggest`); at the bound, reports it and, for an OOM kill under `auto`, stops the
    /// workload rather than restart it into the same kill. `forecast`: the cause is a
    /// forecast, and at the bound the workload is restarted before the kill instead.
    async fn raise_or_report(
        &mut self,
        view: &WorkloadView,
        limit: u64,
        cause: &str,
        forecast: bool,
    ) {
        let spec = &view.spec;
        let auto = spec.heal.policy == HealPolicy::Auto;
        match next_limit(limit, spec.heal.memory_max) {
            Raise::To(new_limit) if auto => {
                let reason = format!(
                    "{cause}: raised resources.memory from {} to {} (heal.memory_max {})",
                    format_size(limit),
                    format_size(new_limit),
                    format_size(spec.heal.memory_max.unwrap_or(new_limit))
                );
                let mut raised = spec.clone();
                raised.resources.memory = Some(new_limit);
                match self.apply(view, raised, &reason) {
                    Ok(()) => self.note(view, &reason, "raise_memory", true).await,
                    Err(error) => {
                        let message = format!(
                            "{cause}; raising resources.memory to {} was refused: {error}",
                            format_size(new_limit)
                        );
                        self.tell(view, &message, "raise_refused", false).await;
                    }
                }
            }
            Raise::To(new_limit) => {
                let message = format!(
                    "{cause}: raise resources.memory from {} to {} (heal.policy auto would)",
                    format_size(limit),
                    format_size(new_limit)
                );
                self.tell(view, &message, "suggest_raise", true).await;
            }
            Raise::AtCap(max) if auto && forecast => {
                let reason = format!(
                    "{cause}, and heal.memory_max {} allows no raise: restarted before an OOM kill",
                    format_size(max)
                );
                self.restart(view, &reason).await;
            }
            Raise::AtCap(max) => {
                let mut message = format!(
                    "{cause}; it needs more than heal.memory_max {}: raise heal.memory_max, or \
                     find what holds the memory",
                    format_size(max)
                );
                if auto && !forecast {
                    message.push_str("; stopped rather than restarted into the same kill");
                    self.tell(view, &message, "at_cap", false).await;
                    self.stop(view, &message).await;
                } else {
                    self.tell(view, &message, "at_cap", true).await;
                }
            }
            Raise::Unbounded => {
                let message = format!(
                    "{cause}; set heal.memory_max to let Ward raise the limit, or raise \
                     resources.memory"
                );
                self.tell(view, &message, "suggest_bound", true).await;
            }
        }
    }

    /// Checks every running workload with a memory limit and a policy: one forecast to reach
    /// its limit within the lead time is acted on before the kill.
    async fn check_forecasts(&mut self) {
        let now = SystemTime::now();
        let now_ms = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_millis() as i64);
        let lead = self.config.lead.as_secs_f64();
        for view in self.workloads.list(None) {
            let spec = &view.spec;
            let (policy, Some(limit)) = (spec.heal.policy, spec.resources.memory) else {
                continue;
            };
            let running: Vec<_> = view
                .instances
                .iter()
                .filter(|instance| instance.phase == Phase::Running)
                .collect();
            if policy == HealPolicy::Off || running.is_empty() {
                continue;
            }
            let key = (view.project.clone(), spec.name.clone());
            let acted = self
                .memory
                .get(&key)
                .and_then(|memory| memory.forecast_run.clone());
            let query = MetricQuery {
                name: MEMORY_SERIES.to_string(),
                workload: Some(spec.name.clone()),
                start: now_ms - self.config.history.as_millis() as i64,
                end: now_ms,
                step: 1000,
                aggregation: "max".to_string(),
            };
            let Ok(series) = self.workloads.query_metrics(&view.project, &query) else {
                continue;
            };
            let mut soonest: Option<(f64, String, f64, Option<SystemTime>)> = None;
            for instance in &running {
                let run = (view.revision, instance.name.clone(), instance.started_at);
                if acted.as_ref() == Some(&run) {
                    continue;
                }
                // Only this run: a restart frees what the run before held.
                let (times, values) = run_points(&series, instance.replica, instance.started_at);
                if let Some(seconds) = seconds_to_limit(&times, &values, limit as f64, lead) {
                    if soonest.as_ref().is_none_or(|(best, ..)| seconds < *best) {
                        let current = values.last().copied().unwrap_or_default();
                        soonest =
                            Some((seconds, instance.name.clone(), current, instance.started_at));
                    }
                }
            }
            let Some((seconds, instance, current, started_at)) = soonest else {
                continue;
            };
            self.memory.entry(key).or_default().forecast_run =
                Some((view.revision, instance.clone(), started_at));
            let cause = format!(
                "memory of {instance} is {} and forecast to reach its limit {} in {}",
                format_size(current as u64),
                format_size(limit),
                plain_seconds(seconds)
            );
            self.raise_or_report(&view, limit, &cause, true).await;
        }
    }

    /// The window CPU is averaged over for autoscaling: ten checks.
    fn scale_window(&self) -> Duration {
        self.config.check_every * 10
    }

    /// Scales each workload with `autoscale` from its replicas' CPU over the window: out
    /// after a window's cooldown, in only after three, each change a spec change through the
    /// door with its reason.
    fn check_scaling(&mut self) {
        let window = self.scale_window();
        for view in self.workloads.list(None) {
            let Some(autoscale) = view.spec.autoscale.clone() else {
                continue;
            };
            if view.desired != ward_core::view::DesiredState::Running {
                continue;
            }
            let key = (view.project.clone(), view.spec.name.clone());
            let since_change = self
                .memory
                .get(&key)
                .and_then(|memory| memory.last_scale)
                .map(|at| at.elapsed());
            if since_change.is_some_and(|elapsed| elapsed < window) {
                continue;
            }
            let request = view.spec.resources.cpu.unwrap_or(1.0);
            let Some((utilisation, forecast)) = self.utilisation(&view, request, window) else {
                continue;
            };
            let target = autoscale.cpu_percent / 100.0;
            let Some(wanted) = scale::decide(
                view.spec.replicas,
                autoscale.min,
                autoscale.max,
                utilisation,
                Some(forecast),
                target,
            ) else {
                continue;
            };
            let scaling_in = wanted < view.spec.replicas;
            if scaling_in && since_change.is_some_and(|elapsed| elapsed < window * 3) {
                continue;
            }
            let reason = format!(
                "CPU of {} is {:.0}% of its {} cores per replica over {}, against a target of {}%: \
                 scaled from {} to {wanted} replicas (autoscale {}..{})",
                view.spec.name,
                utilisation * 100.0,
                request,
                plain_seconds(window.as_secs_f64()),
                autoscale.cpu_percent,
                view.spec.replicas,
                autoscale.min,
                autoscale.max,
            );
            let mut scaled = view.spec.clone();
            scaled.replicas = wanted;
            match self.apply(&view, scaled, &reason) {
                Ok(()) => {
                    self.memory.entry(key).or_default().last_scale = Some(Instant::now());
                }
                Err(error) => {
                    tracing::warn!(workload = %view.spec.name, %error, "the autoscaler's change was refused");
                }
            }
        }
    }

    /// The mean CPU of `view`'s running replicas over `window`, as a share of `request`
    /// cores, and the same forecast one window ahead; `None` while no replica has enough
    /// samples of its current run.
    fn utilisation(
        &self,
        view: &WorkloadView,
        request: f64,
        window: Duration,
    ) -> Option<(f64, f64)> {
        let now_ms = epoch_ms(SystemTime::now());
        let query = MetricQuery {
            name: CPU_SERIES.to_string(),
            workload: Some(view.spec.name.clone()),
            start: now_ms - self.config.history.as_millis() as i64,
            end: now_ms,
            step: 1000,
            aggregation: "avg".to_string(),
        };
        let series = self.workloads.query_metrics(&view.project, &query).ok()?;
        let window_start = (now_ms - window.as_millis() as i64) as f64 / 1000.0;
        let (mut now_sum, mut ahead_sum, mut counted) = (0.0, 0.0, 0usize);
        for instance in view
            .instances
            .iter()
            .filter(|instance| instance.phase == Phase::Running)
        {
            let (times, values) = run_points(&series, instance.replica, instance.started_at);
            let recent: Vec<f64> = times
                .iter()
                .zip(&values)
                .filter(|(time, _)| **time >= window_start)
                .map(|(_, value)| *value)
                .collect();
            if recent.len() < SCALE_SAMPLES {
                continue;
            }
            let mean = recent.iter().sum::<f64>() / recent.len() as f64;
            let history = History {
                times: &times,
                values: &values,
            };
            let last = times.last().copied().unwrap_or_default();
            let ahead = forecast::forecast(history, &[last + window.as_secs_f64()])
                .first()
                .map_or(mean, |point| point.value.max(0.0));
            now_sum += mean / request;
            ahead_sum += ahead / request;
            counted += 1;
        }
        (counted > 0).then(|| (now_sum / counted as f64, ahead_sum / counted as f64))
    }

    /// The healer acting for `view`'s policy: an operator of its project, no more.
    fn caller(view: &WorkloadView, reason: &str) -> Caller {
        let principal = Principal {
            actor: format!("heal-policy:{}", view.spec.name),
            project: Some(view.project.clone()),
            role: Role::Operator,
            capabilities: Default::default(),
        };
        Caller::on_behalf_of("healer", principal).because(reason)
    }

    fn target(view: &WorkloadView, action: &str) -> String {
        format!("/api/v1/workloads/{}{action}", view.spec.name)
    }

    fn apply(&self, view: &WorkloadView, spec: WorkloadSpec, reason: &str) -> Result<(), Error> {
        let caller = Self::caller(view, reason);
        let admission = self.door.admit(
            &caller,
            Operation::WorkloadReplace,
            Some(&view.project),
            &Self::target(view, ""),
        )?;
        let result = self.workloads.apply(&admission, vec![spec], false);
        match &result {
            Ok(_) => {
                self.door.finish(&admission, 200, "ok");
                tracing::info!(project = %view.project, workload = %view.spec.name, "healer: {reason}");
            }
            Err(error) => self.door.finish(&admission, 409, &error.to_string()),
        }
        result.map(|_| ())
    }

    async fn restart(&self, view: &WorkloadView, reason: &str) {
        let caller = Self::caller(view, reason);
        let Ok(admission) = self.door.admit(
            &caller,
            Operation::WorkloadRestart,
            Some(&view.project),
            &Self::target(view, "/restart"),
        ) else {
            return;
        };
        // The restart's own events say it happened; this one says why.
        self.note(view, reason, "restart", true).await;
        match self.workloads.restart(&admission, &view.spec.name).await {
            Ok(_) => self.door.finish(&admission, 200, "ok"),
            Err(error) => self.door.finish(&admission, 409, &error.to_string()),
        }
    }

    async fn stop(&self, view: &WorkloadView, reason: &str) {
        let caller = Self::caller(view, reason);
        let Ok(admission) = self.door.admit(
            &caller,
            Operation::WorkloadStop,
            Some(&view.project),
            &Self::target(view, "/stop"),
        ) else {
            return;
        };
        match self.workloads.stop(&admission, &view.spec.name, None).await {
            Ok(_) => self.door.finish(&admission, 200, "ok"),
            Err(error) => self.door.finish(&admission, 409, &error.to_string()),
        }
    }

    /// A suggestion or report: once per revision of the workload, unless `always`.
    async fn tell(&mut self, view: &WorkloadView, message: &str, action: &str, once: bool) {
        let key = (view.project.clone(), view.spec.name.clone());
        let memory = self.memory.entry(key).or_default();
        if once && memory.told_revision == Some(view.revision) {
            return;
        }
        memory.told_revision = Some(view.revision);
        self.note(view, message, action, false).await;
    }

    /// Records a `heal` event on the workload through the door.
    async fn note(&self, view: &WorkloadView, message: &str, action: &str, applied: bool) {
        let caller = Self::caller(view, message);
        let admission = match self.door.admit(
            &caller,
            Operation::WorkloadNote,
            Some(&view.project),
            &Self::target(view, "/events"),
        ) {
            Ok(admission) => admission,
            Err(refusal) => {
                tracing::warn!(%refusal, "the healer may not record its note");
                return;
            }
        };
        let data = serde_json::json!({ "action": action, "applied": applied });
        if let Err(error) =
            self.workloads
                .record_event(&admission, &view.spec.name, EventKind::Heal, message, data)
        {
            self.door.finish(&admission, 409, &error.to_string());
        }
    }
}

fn epoch_ms(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as i64)
}

/// The points of replica `replica`'s series since `started_at` (its current run), as
/// seconds and values.
fn run_points(
    series: &[MetricSeries],
    replica: u32,
    started_at: Option<SystemTime>,
) -> (Vec<f64>, Vec<f64>) {
    let replica = replica.to_string();
    let Some(found) = series.iter().find(|series| {
        series
            .labels
            .iter()
            .any(|(name, value)| name == "replica" && *value == replica)
    }) else {
        return (Vec::new(), Vec::new());
    };
    let since_ms = started_at.map_or(0, epoch_ms);
    found
        .points
        .iter()
        .filter(|(time, _)| *time >= since_ms)
        .map(|&(time, value)| (time as f64 / 1000.0, value))
        .unzip()
}

/// `12 s`, `3 min`, `2 h`.
fn plain_seconds(seconds: f64) -> String {
    let seconds = seconds.max(0.0).round() as u64;
    match seconds {
        0..=119 => format!("{seconds} s"),
        120..=7199 => format!("{} min", seconds / 60),
        _ => format!("{} h", seconds / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raises_by_half_in_whole_mebibytes_up_to_the_bound() {
        let mib = MEBIBYTE;
        assert_eq!(next_limit(64 * mib, Some(256 * mib)), Raise::To(96 * mib));
        assert_eq!(next_limit(20 * mib, Some(256 * mib)), Raise::To(36 * mib));
        assert_eq!(next_limit(200 * mib, Some(256 * mib)), Raise::To(256 * mib));
        assert_eq!(
            next_limit(256 * mib, Some(256 * mib)),
            Raise::AtCap(256 * mib)
        );
        assert_eq!(next_limit(64 * mib, None), Raise::Unbounded);
        // From the smallest limit to a large bound in a handful of steps: no creeping.
        let (mut limit, mut steps) = (6 * mib, 0);
        while let Raise::To(next) = next_limit(limit, Some(64 << 30)) {
            assert!(next > limit);
            limit = next;
            steps += 1;
        }
        assert_eq!(limit, 64 << 30);
        assert!(steps <= 25, "{steps} raises");
    }

    #[test]
    fn a_leak_is_forecast_to_reach_the_limit_before_it_does() {
        // 4 MiB a second from 10 MiB, sampled each second for 12 s: 58 MiB of a 96 MiB limit.
        let times: Vec<f64> = (0..12).map(|i| 1_700_000_000.0 + i as f64).collect();
        let values: Vec<f64> = (0..12).map(|i| (10 + 4 * i) as f64 * 1048576.0).collect();
        let limit = 96.0 * 1048576.0;
        let seconds = seconds_to_limit(&times, &values, limit, 120.0).expect("a forecast hit");
        assert!((5.0..=15.0).contains(&seconds), "{seconds} s");
        // The same usage held flat is never forecast to reach it.
        let flat = vec![58.0 * 1048576.0; 12];
        assert_eq!(seconds_to_limit(&times, &flat, limit, 120.0), None);
        // Too few samples, or far below the limit: no call yet.
        assert_eq!(
            seconds_to_limit(&times[..4], &values[..4], limit, 120.0),
            None
        );
        assert_eq!(seconds_to_limit(&times, &values, limit * 4.0, 120.0), None);
    }

    #[test]
    fn a_sawtooth_that_frees_its_memory_is_not_forecast_to_run_out() {
        // Grows 2 MiB a second to 70 MiB, freed to 40, again and again: a cache, not a leak.
        let times: Vec<f64> = (0..120).map(|i| i as f64).collect();
        let values: Vec<f64> = (0..120)
            .map(|i| (40 + 2 * (i % 15)) as f64 * 1048576.0)
            .collect();
        let limit = 96.0 * 1048576.0;
        assert_eq!(seconds_to_limit(&times, &values, limit, 30.0), None);
    }
}
