//! Alerts: rules over the stored metrics and the anomaly events, evaluated every interval;
//! active alerts grouped by rule and project and sent to webhooks in Alertmanager's webhook
//! format (version 4) and to Alertmanagers' `/api/v2/alerts`; silences that mute them.
//!
//! It is a caller of the engine like the API: it reads metrics and events through
//! `ward-core`'s [`Workloads`] and serves the [`Alerts`] trait. A group is notified once
//! when it starts firing (after `group_wait`), again when its alerts change (at most every
//! `group_interval`), and again after `repeat_interval` while it fires; silenced alerts are
//! neither notified nor reported resolved.

pub mod config;
mod notify;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::broadcast::error::RecvError;
use ward_core::door::Admission;
use ward_core::events::Event;
use ward_core::ops::Operation;
use ward_core::services::{Alerts, MetricQuery, Workloads};
use ward_core::view::{AlertState, AlertView, SilenceView};
use ward_core::{Error, ErrorKind};

pub use config::{AlertSettings, AlertsFile, Condition, Rule};

/// A silence that ended this long ago is forgotten.
const SILENCE_KEPT_AFTER_END: Duration = Duration::from_secs(86_400);
/// The most silences one project may hold.
const MAXIMUM_SILENCES: usize = 1000;

/// One alert as tracked between evaluations.
#[derive(Clone, Debug)]
struct Active {
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    active_at: SystemTime,
    firing: bool,
}

/// An alert whose condition holds now: its labels, annotations and its rule's `for`.
type Holding = (BTreeMap<String, String>, BTreeMap<String, String>, Duration);

/// Alerts with their fingerprints.
type Keyed = Vec<(String, Active)>;

/// What a group was last told.
#[derive(Clone, Debug, Default)]
struct Group {
    /// The fingerprints of the firing alerts in the last notification.
    sent: BTreeSet<String>,
    sent_at: Option<SystemTime>,
    /// When the group first had a firing alert to tell (for `group_wait`).
    first_firing: Option<SystemTime>,
}

#[derive(Debug, Default)]
struct State {
    active: BTreeMap<String, Active>,
    /// Alerts that stopped firing since their group was last told, to report resolved.
    resolved: BTreeMap<String, Active>,
    groups: BTreeMap<(String, String), Group>,
    silences: Vec<SilenceView>,
    /// The last anomaly of each (project, workload, replica, series): its time and words.
    anomalies: HashMap<(String, String, String, String), (SystemTime, String)>,
}

/// The alert manager of one daemon.
pub struct AlertManager {
    settings: AlertSettings,
    workloads: Arc<dyn Workloads>,
    state: Mutex<State>,
    silences_path: PathBuf,
    client: reqwest::Client,
    /// The daemon's own address, for the payloads' links.
    external_url: String,
}

impl AlertManager {
    /// The manager, with the silences kept in `dir` (made if missing).
    pub fn open(
        settings: AlertSettings,
        workloads: Arc<dyn Workloads>,
        dir: PathBuf,
        external_url: String,
    ) -> std::io::Result<Arc<AlertManager>> {
        std::fs::create_dir_all(&dir)?;
        let silences_path = dir.join("silences.json");
        let silences = match std::fs::read(&silences_path) {
            Ok(bytes) => notify::silences_from_json(&bytes).unwrap_or_else(|error| {
                tracing::warn!(%error, path = %silences_path.display(), "silences unreadable; starting without");
                Vec::new()
            }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(error) => return Err(error),
        };
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(std::io::Error::other)?;
        Ok(Arc::new(AlertManager {
            settings,
            workloads,
            state: Mutex::new(State {
                silences,
                ..State::default()
            }),
            silences_path,
            client,
            external_url,
        }))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Evaluates and notifies every interval, and follows anomaly events, until the event
    /// stream ends.
    pub async fn run(self: Arc<Self>) {
        let mut events = self.workloads.subscribe();
        let mut tick = tokio::time::interval(self.settings.evaluation_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Ok(event) => self.on_event(&event),
                    Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return,
                },
                _ = tick.tick() => {
                    let now = SystemTime::now();
                    self.evaluate(now);
                    self.notify(now).await;
                }
            }
        }
    }

    fn on_event(&self, event: &Event) {
        if event.kind != "anomaly" {
            return;
        }
        let (Some(workload), Some(series)) = (
            event.workload.clone(),
            event.data.get("series").and_then(|value| value.as_str()),
        ) else {
            return;
        };
        let replica = event
            .replica
            .map(|replica| replica.to_string())
            .unwrap_or_default();
        self.lock().anomalies.insert(
            (event.project.clone(), workload, replica, series.to_string()),
            (event.time, event.message.clone()),
        );
    }

    /// The rules' conditions now: alerts start, fire after their `for`, or resolve.
    fn evaluate(&self, now: SystemTime) {
        let mut holding: BTreeMap<String, Holding> = BTreeMap::new();
        let projects: BTreeSet<String> = self
            .workloads
            .list(None)
            .into_iter()
            .map(|view| view.project)
            .collect();
        let anomalies = self.lock().anomalies.clone();
        for rule in &self.settings.rules {
            match &rule.condition {
                Condition::Threshold {
                    metric,
                    above,
                    value,
                    unusual,
                } => {
                    let now_ms = epoch_ms(now);
                    // A series with no sample in three samplings has ended (its instance
                    // stopped): its alert resolves.
                    let lookback = (self.settings.sample_interval * 3)
                        .max(Duration::from_secs(1))
                        .as_millis() as i64;
                    for project in &projects {
                        let query = MetricQuery {
                            name: metric.clone(),
                            workload: rule.workload.clone(),
                            start: now_ms - lookback,
                            end: now_ms,
                            step: lookback + 1,
                            aggregation: "last".to_string(),
                        };
                        let Ok(series) = self.workloads.query_metrics(project, &query) else {
                            continue;
                        };
                        for series in series {
                            let Some(&(_, current)) = series.points.last() else {
                                continue;
                            };
                            let crossed = if *above {
                                current > *value
                            } else {
                                current < *value
                            };
                            if !crossed {
                                continue;
                            }
                            let label = |name: &str| {
                                series
                                    .labels
                                    .iter()
                                    .find(|(key, _)| key == name)
                                    .map(|(_, value)| value.clone())
                                    .unwrap_or_default()
                            };
                            let (workload, replica) = (label("workload"), label("replica"));
                            if *unusual {
                                let key = (
                                    project.clone(),
                                    workload.clone(),
                                    replica.clone(),
                                    metric.clone(),
                                );
                                let recent = anomalies.get(&key).is_some_and(|(at, _)| {
                                    now.duration_since(*at).unwrap_or_default() < rule.hold
                                });
                                if !recent {
                                    continue;
                                }
                            }
                            let labels = rule_labels(rule, project, &workload, &replica);
                            let summary = format!(
                                "{} of {workload} (replica {replica}) is {}, {} {}",
                                short_metric(metric),
                                shown(metric, current),
                                if *above { "above" } else { "below" },
                                shown(metric, *value)
                            );
                            let annotations = BTreeMap::from([
                                ("summary".to_string(), summary),
                                ("value".to_string(), current.to_string()),
                            ]);
                            holding.insert(fingerprint(&labels), (labels, annotations, rule.for_));
                        }
                    }
                }
                Condition::Anomaly { series } => {
                    for ((project, workload, replica, name), (at, message)) in &anomalies {
                        if series.as_ref().is_some_and(|series| series != name)
                            || rule.workload.as_ref().is_some_and(|only| only != workload)
                            || now.duration_since(*at).unwrap_or_default() >= rule.hold
                        {
                            continue;
                        }
                        let mut labels = rule_labels(rule, project, workload, replica);
                        labels.insert("series".to_string(), name.clone());
                        let annotations =
                            BTreeMap::from([("summary".to_string(), message.clone())]);
                        holding.insert(fingerprint(&labels), (labels, annotations, rule.for_));
                    }
                }
            }
        }
        let mut state = self.lock();
        let before = std::mem::take(&mut state.active);
        for (key, alert) in &before {
            if !holding.contains_key(key) && alert.firing {
                let mut ended = alert.clone();
                ended.annotations.insert("ended".to_string(), rfc3339(now));
                state.resolved.insert(key.clone(), ended);
            }
        }
        for (key, (labels, annotations, for_)) in holding {
            let active_at = before.get(&key).map_or(now, |alert| alert.active_at);
            let firing = now.duration_since(active_at).unwrap_or_default() >= for_;
            state.resolved.remove(&key);
            state.active.insert(
                key,
                Active {
                    labels,
                    annotations,
                    active_at,
                    firing,
                },
            );
        }
        let ended_long_ago = |silence: &SilenceView| {
            now.duration_since(silence.ends_at).unwrap_or_default() > SILENCE_KEPT_AFTER_END
        };
        state.silences.retain(|silence| !ended_long_ago(silence));
    }

    /// The silences muting alert `labels` now.
    fn silenced_by(
        silences: &[SilenceView],
        labels: &BTreeMap<String, String>,
        now: SystemTime,
    ) -> Vec<String> {
        silences
            .iter()
            .filter(|silence| silence.starts_at <= now && now < silence.ends_at)
            .filter(|silence| {
                silence
                    .matchers
                    .iter()
                    .all(|(name, value)| labels.get(name) == Some(value))
            })
            .map(|silence| silence.id.clone())
            .collect()
    }

    /// Tells each group's receivers what changed, as the group's timers allow.
    async fn notify(&self, now: SystemTime) {
        let mut messages = Vec::new();
        {
            let mut guard = self.lock();
            let state = &mut *guard;
            let mut by_group: BTreeMap<(String, String), (Keyed, Keyed)> = BTreeMap::new();
            for (key, alert) in &state.active {
                if alert.firing && Self::silenced_by(&state.silences, &alert.labels, now).is_empty()
                {
                    by_group
                        .entry(group_key(&alert.labels))
                        .or_default()
                        .0
                        .push((key.clone(), alert.clone()));
                }
            }
            for (key, alert) in &state.resolved {
                by_group
                    .entry(group_key(&alert.labels))
                    .or_default()
                    .1
                    .push((key.clone(), alert.clone()));
            }
            let mut told_resolved = Vec::new();
            for (group_key, (firing, resolved)) in by_group {
                let group = state.groups.entry(group_key.clone()).or_default();
                let firing_keys: BTreeSet<String> =
                    firing.iter().map(|(key, _)| key.clone()).collect();
                // Resolved alerts the group was told of; others resolve silently.
                let resolved: Vec<(String, Active)> = resolved
                    .into_iter()
                    .filter(|(key, _)| group.sent.contains(key))
                    .collect();
                if firing.is_empty() {
                    group.first_firing = None;
                } else if group.first_firing.is_none() {
                    group.first_firing = Some(now);
                }
                let since = |at: Option<SystemTime>| {
                    at.map_or(Duration::MAX, |at| {
                        now.duration_since(at).unwrap_or_default()
                    })
                };
                let new = !firing_keys.is_subset(&group.sent);
                let due = match group.sent_at {
                    // The first notification of a group waits for its alerts to gather.
                    None => new && since(group.first_firing) >= self.settings.group_wait,
                    Some(sent_at) => {
                        let elapsed = since(Some(sent_at));
                        ((new || !resolved.is_empty()) && elapsed >= self.settings.group_interval)
                            || (!firing.is_empty() && elapsed >= self.settings.repeat_interval)
                    }
                };
                if !due {
                    continue;
                }
                told_resolved.extend(resolved.iter().map(|(key, _)| key.clone()));
                group.sent = firing_keys;
                group.sent_at = Some(now);
                if group.sent.is_empty() {
                    group.sent_at = None;
                }
                let told = |(key, alert): (String, Active), ended: Option<SystemTime>| {
                    notify::Alert::of(
                        key,
                        &alert.labels,
                        &alert.annotations,
                        alert.active_at,
                        ended,
                    )
                };
                messages.push(notify::Message {
                    group: group_key,
                    firing: firing.into_iter().map(|alert| told(alert, None)).collect(),
                    resolved: resolved
                        .into_iter()
                        .map(|alert| told(alert, Some(now)))
                        .collect(),
                });
            }
            for key in told_resolved {
                state.resolved.remove(&key);
            }
        }
        for message in messages {
            for webhook in &self.settings.webhooks {
                let payload = message.webhook_payload(&self.external_url);
                if let Err(error) = self
                    .client
                    .post(webhook)
                    .json(&payload)
                    .send()
                    .await
                    .and_then(|response| response.error_for_status())
                {
                    tracing::warn!(%error, %webhook, "an alert webhook failed");
                }
            }
            for alertmanager in &self.settings.alertmanagers {
                let url = format!("{alertmanager}/api/v2/alerts");
                let payload =
                    message.alertmanager_payload(&self.external_url, self.settings.repeat_interval);
                if let Err(error) = self
                    .client
                    .post(&url)
                    .json(&payload)
                    .send()
                    .await
                    .and_then(|response| response.error_for_status())
                {
                    tracing::warn!(%error, %url, "forwarding alerts to an Alertmanager failed");
                }
            }
        }
    }

    fn save_silences(&self, silences: &[SilenceView]) -> Result<(), Error> {
        let bytes = notify::silences_to_json(silences);
        let temporary = self.silences_path.with_extension("json.tmp");
        std::fs::write(&temporary, bytes)
            .and_then(|()| std::fs::rename(&temporary, &self.silences_path))
            .map_err(|error| Error::internal(&format!("cannot keep the silences: {error}")))
    }
}

impl Alerts for AlertManager {
    fn alerts(&self, project: &str) -> Vec<AlertView> {
        let state = self.lock();
        let now = SystemTime::now();
        state
            .active
            .values()
            .filter(|alert| alert.labels.get("project").map(String::as_str) == Some(project))
            .map(|alert| AlertView {
                labels: alert.labels.clone(),
                annotations: alert.annotations.clone(),
                state: if alert.firing {
                    AlertState::Firing
                } else {
                    AlertState::Pending
                },
                active_at: alert.active_at,
                silenced_by: Self::silenced_by(&state.silences, &alert.labels, now),
            })
            .collect()
    }

    fn silences(&self, project: &str) -> Vec<SilenceView> {
        let now = SystemTime::now();
        self.lock()
            .silences
            .iter()
            .filter(|silence| silence.matchers.get("project").map(String::as_str) == Some(project))
            .filter(|silence| silence.ends_at > now)
            .cloned()
            .collect()
    }

    fn silence(
        &self,
        admission: &Admission,
        mut matchers: BTreeMap<String, String>,
        duration: Duration,
        comment: &str,
    ) -> Result<SilenceView, Error> {
        admission.require(&[Operation::SilenceCreate])?;
        let project = admission.project_or_default().to_string();
        if matchers.is_empty() {
            return Err(Error::new(
                ErrorKind::Invalid,
                "give at least one matcher, like alertname=HighMemory",
            )
            .with_field("matchers"));
        }
        if let Some((name, _)) = matchers
            .iter()
            .find(|(name, value)| name.is_empty() || name.len() > 128 || value.len() > 1024)
        {
            return Err(Error::new(
                ErrorKind::Invalid,
                format!("matcher {name:?}: give a label name and a value of at most 1 KiB"),
            )
            .with_field("matchers"));
        }
        if matchers
            .get("project")
            .is_some_and(|named| *named != project)
        {
            return Err(Error::forbidden(format!(
                "a silence of project {project} cannot match another project's alerts"
            )));
        }
        if duration.is_zero() || duration > Duration::from_secs(366 * 86_400) {
            return Err(Error::new(
                ErrorKind::Invalid,
                "give a duration above 0 and at most a year, like 2h",
            )
            .with_field("duration"));
        }
        if comment.len() > 1024 {
            return Err(
                Error::new(ErrorKind::Invalid, "keep the comment under 1 KiB")
                    .with_field("comment"),
            );
        }
        matchers.insert("project".to_string(), project.clone());
        let now = SystemTime::now();
        let (actor, _) = admission.caller().actor();
        let silence = SilenceView {
            id: format!("{:016x}", rand::random::<u64>()),
            matchers,
            starts_at: now,
            ends_at: now + duration,
            created_by: actor,
            comment: comment.to_string(),
        };
        let mut state = self.lock();
        let held = state
            .silences
            .iter()
            .filter(|held| held.matchers.get("project") == Some(&project))
            .count();
        if held >= MAXIMUM_SILENCES {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!("project {project} holds {MAXIMUM_SILENCES} silences: expire some first"),
            ));
        }
        let mut silences = state.silences.clone();
        silences.push(silence.clone());
        self.save_silences(&silences)?;
        state.silences = silences;
        Ok(silence)
    }

    fn expire(&self, admission: &Admission, id: &str) -> Result<SilenceView, Error> {
        admission.require(&[Operation::SilenceExpire])?;
        let project = admission.project_or_default();
        let now = SystemTime::now();
        let mut state = self.lock();
        let mut silences = state.silences.clone();
        let Some(silence) = silences.iter_mut().find(|silence| {
            silence.id == id && silence.matchers.get("project").map(String::as_str) == Some(project)
        }) else {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("no silence {id} in project {project}: see ward alert silences"),
            ));
        };
        silence.ends_at = silence.ends_at.min(now);
        let expired = silence.clone();
        self.save_silences(&silences)?;
        state.silences = silences;
        Ok(expired)
    }
}

fn rule_labels(
    rule: &Rule,
    project: &str,
    workload: &str,
    replica: &str,
) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("alertname".to_string(), rule.name.clone()),
        ("project".to_string(), project.to_string()),
        ("workload".to_string(), workload.to_string()),
        ("replica".to_string(), replica.to_string()),
        ("severity".to_string(), rule.severity.clone()),
    ])
}

/// Alerts are grouped by rule and project.
fn group_key(labels: &BTreeMap<String, String>) -> (String, String) {
    let label = |name: &str| labels.get(name).cloned().unwrap_or_default();
    (label("alertname"), label("project"))
}

/// An alert's identity: its labels, in order.
fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn short_metric(metric: &str) -> &str {
    match metric {
        "ward_instance_memory_bytes" => "memory",
        "ward_instance_cpu_usage_cores" => "CPU",
        "ward_instance_pids" => "processes",
        other => other,
    }
}

fn shown(metric: &str, value: f64) -> String {
    if metric.ends_with("_bytes") {
        ward_spec::units::format_size(value.max(0.0) as u64)
    } else if metric.ends_with("_cores") {
        format!("{value:.2} cores")
    } else {
        format!("{value}")
    }
}

fn epoch_ms(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as i64)
}

/// RFC 3339 in UTC with milliseconds, as Alertmanager writes times.
pub fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_as_alertmanager_writes_them() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_millis(1_796_681_781_468)),
            "2026-12-07T22:16:21.468Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000Z"
        );
    }
}
