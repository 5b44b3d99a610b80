//! What receivers get: Alertmanager's webhook payload (version 4) and its `/api/v2/alerts`
//! body, and the silences file.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use ward_core::view::SilenceView;

use crate::rfc3339;

/// One alert in a notification.
#[derive(Clone, Debug)]
pub struct Alert {
    fingerprint: String,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    starts_at: SystemTime,
    /// `Some` for a resolved alert.
    ends_at: Option<SystemTime>,
}

impl Alert {
    pub fn of(
        key: String,
        labels: &BTreeMap<String, String>,
        annotations: &BTreeMap<String, String>,
        starts_at: SystemTime,
        ends_at: Option<SystemTime>,
    ) -> Alert {
        Alert {
            fingerprint: fingerprint_hex(&key),
            labels: labels.clone(),
            annotations: annotations.clone(),
            starts_at,
            ends_at,
        }
    }

    fn generator_url(&self, external_url: &str) -> String {
        let project = self.labels.get("project").map_or("", String::as_str);
        format!("{external_url}/api/v1/alerts?project={project}")
    }
}

/// One group's notification: its firing alerts and those resolved since it was last told.
#[derive(Clone, Debug)]
pub struct Message {
    /// (alertname, project).
    pub group: (String, String),
    pub firing: Vec<Alert>,
    pub resolved: Vec<Alert>,
}

impl Message {
    /// The body Alertmanager posts to a webhook receiver (version 4).
    pub fn webhook_payload(&self, external_url: &str) -> Value {
        let alerts: Vec<&Alert> = self.firing.iter().chain(&self.resolved).collect();
        let common = |pick: fn(&Alert) -> &BTreeMap<String, String>| {
            let mut common = alerts
                .first()
                .map(|alert| pick(alert).clone())
                .unwrap_or_default();
            for alert in &alerts[1.min(alerts.len())..] {
                common.retain(|name, value| pick(alert).get(name) == Some(value));
            }
            common
        };
        let (alertname, project) = &self.group;
        json!({
            "version": "4",
            "groupKey": format!("{{}}:{{alertname=\"{alertname}\", project=\"{project}\"}}"),
            "truncatedAlerts": 0,
            "status": if self.firing.is_empty() { "resolved" } else { "firing" },
            "receiver": "ward",
            "groupLabels": {"alertname": alertname, "project": project},
            "commonLabels": common(|alert| &alert.labels),
            "commonAnnotations": common(|alert| &alert.annotations),
            "externalURL": external_url,
            "alerts": alerts.iter().map(|alert| json!({
                "status": if alert.ends_at.is_some() { "resolved" } else { "firing" },
                "labels": alert.labels,
                "annotations": alert.annotations,
                "startsAt": rfc3339(alert.starts_at),
                "endsAt": alert.ends_at.map_or("0001-01-01T00:00:00Z".to_string(), rfc3339),
                "generatorURL": alert.generator_url(external_url),
                "fingerprint": alert.fingerprint,
            })).collect::<Vec<_>>(),
        })
    }

    /// The body of Alertmanager's `POST /api/v2/alerts`: a firing alert is valid for
    /// `valid_for` unless sent again, a resolved one ends now.
    pub fn alertmanager_payload(&self, external_url: &str, valid_for: Duration) -> Value {
        let now = SystemTime::now();
        Value::Array(
            self.firing
                .iter()
                .chain(&self.resolved)
                .map(|alert| {
                    json!({
                        "labels": alert.labels,
                        "annotations": alert.annotations,
                        "startsAt": rfc3339(alert.starts_at),
                        "endsAt": rfc3339(alert.ends_at.unwrap_or(now + valid_for)),
                        "generatorURL": alert.generator_url(external_url),
                    })
                })
                .collect(),
        )
    }
}

/// A stable 16-hex-digit fingerprint of an alert's labels (FNV-1a).
fn fingerprint_hex(key: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

fn millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

pub fn silences_to_json(silences: &[SilenceView]) -> Vec<u8> {
    let list: Vec<Value> = silences
        .iter()
        .map(|silence| {
            json!({
                "id": silence.id,
                "matchers": silence.matchers,
                "starts_at_ms": millis(silence.starts_at),
                "ends_at_ms": millis(silence.ends_at),
                "created_by": silence.created_by,
                "comment": silence.comment,
            })
        })
        .collect();
    serde_json::to_vec_pretty(&list).unwrap_or_default()
}

pub fn silences_from_json(bytes: &[u8]) -> Result<Vec<SilenceView>, String> {
    let list: Vec<Value> = serde_json::from_slice(bytes).map_err(|error| error.to_string())?;
    list.iter()
        .map(|item| {
            let time = |name: &str| {
                item[name]
                    .as_u64()
                    .map(|ms| UNIX_EPOCH + Duration::from_millis(ms))
                    .ok_or_else(|| format!("a silence without {name}"))
            };
            Ok(SilenceView {
                id: item["id"]
                    .as_str()
                    .ok_or("a silence without an id")?
                    .to_string(),
                matchers: serde_json::from_value(item["matchers"].clone())
                    .map_err(|error| error.to_string())?,
                starts_at: time("starts_at_ms")?,
                ends_at: time("ends_at_ms")?,
                created_by: item["created_by"].as_str().unwrap_or_default().to_string(),
                comment: item["comment"].as_str().unwrap_or_default().to_string(),
            })
        })
        .collect()
}
