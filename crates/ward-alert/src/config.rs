//! The `alerts:` section of the daemon's config file: rules, receivers and timing, each
//! field checked with a message that names it.

use std::time::Duration;

use serde::Deserialize;

/// `alerts:` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsFile {
    evaluation_interval: Option<String>,
    group_wait: Option<String>,
    group_interval: Option<String>,
    repeat_interval: Option<String>,
    #[serde(default)]
    webhooks: Vec<String>,
    #[serde(default)]
    alertmanagers: Vec<String>,
    #[serde(default)]
    rules: Vec<RuleFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    alert: String,
    metric: Option<String>,
    above: Option<serde_json::Value>,
    below: Option<serde_json::Value>,
    anomaly: Option<String>,
    #[serde(rename = "for")]
    for_: Option<String>,
    hold: Option<String>,
    workload: Option<String>,
    severity: Option<String>,
    #[serde(default)]
    unusual: bool,
}

/// What a rule watches.
#[derive(Clone, Debug, PartialEq)]
pub enum Condition {
    /// A stored series above (or below) a value.
    Threshold {
        metric: String,
        above: bool,
        value: f64,
        /// Only while the same series is also anomalous: the anomaly score gates a noisy
        /// threshold.
        unusual: bool,
    },
    /// An anomaly of a series (`None`: of any series), held for `hold` after the last one.
    Anomaly { series: Option<String> },
}

/// One alert rule.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub name: String,
    pub condition: Condition,
    /// How long the condition must hold before the alert fires.
    pub for_: Duration,
    /// How long an anomaly keeps its alert active.
    pub hold: Duration,
    pub workload: Option<String>,
    pub severity: String,
}

/// Alerting, as configured.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertSettings {
    pub evaluation_interval: Duration,
    /// How often series are sampled: one silent for three samples has ended.
    pub sample_interval: Duration,
    pub group_wait: Duration,
    pub group_interval: Duration,
    pub repeat_interval: Duration,
    pub webhooks: Vec<String>,
    pub alertmanagers: Vec<String>,
    pub rules: Vec<Rule>,
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            evaluation_interval: Duration::from_secs(10),
            sample_interval: Duration::from_secs(5),
            group_wait: Duration::from_secs(30),
            group_interval: Duration::from_secs(5 * 60),
            repeat_interval: Duration::from_secs(4 * 3600),
            webhooks: Vec::new(),
            alertmanagers: Vec::new(),
            rules: Vec::new(),
        }
    }
}

fn duration(field: &str, text: Option<String>, default: Duration) -> Result<Duration, String> {
    match text {
        None => Ok(default),
        Some(text) => humantime::parse_duration(&text)
            .map_err(|error| format!("{field}: {text:?}: {error}; give a duration like 30s")),
    }
}

fn url(field: &str, text: &str) -> Result<String, String> {
    if text.starts_with("http://") || text.starts_with("https://") {
        Ok(text.trim_end_matches('/').to_string())
    } else {
        Err(format!(
            "{field}: {text:?} is not a URL; give one like http://127.0.0.1:9093"
        ))
    }
}

impl AlertsFile {
    /// The settings, or a message naming the first bad field, for a daemon that samples
    /// every `sample_interval`; rules are evaluated every two samples (at least each second)
    /// unless the file says otherwise.
    pub fn settings(self, sample_interval: Duration) -> Result<AlertSettings, String> {
        let evaluation = (sample_interval * 2).max(Duration::from_secs(1));
        let defaults = AlertSettings::default();
        let evaluation_interval = duration(
            "alerts.evaluation_interval",
            self.evaluation_interval,
            evaluation,
        )?;
        if evaluation_interval < Duration::from_millis(100) {
            return Err("alerts.evaluation_interval: give 100ms or more, like 10s".to_string());
        }
        let webhooks = self
            .webhooks
            .iter()
            .map(|text| url("alerts.webhooks", text))
            .collect::<Result<_, _>>()?;
        let alertmanagers = self
            .alertmanagers
            .iter()
            .map(|text| url("alerts.alertmanagers", text))
            .collect::<Result<_, _>>()?;
        let mut rules = Vec::new();
        for (index, rule) in self.rules.into_iter().enumerate() {
            let field = format!("alerts.rules[{index}]");
            rules.push(rule.rule(&field)?);
        }
        let mut names: Vec<&str> = rules.iter().map(|rule| rule.name.as_str()).collect();
        names.sort_unstable();
        if let Some(pair) = names.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(format!(
                "alerts.rules: two rules are called {:?}; give each its own alert name",
                pair[0]
            ));
        }
        Ok(AlertSettings {
            evaluation_interval,
            sample_interval,
            group_wait: duration("alerts.group_wait", self.group_wait, defaults.group_wait)?,
            group_interval: duration(
                "alerts.group_interval",
                self.group_interval,
                defaults.group_interval,
            )?,
            repeat_interval: duration(
                "alerts.repeat_interval",
                self.repeat_interval,
                defaults.repeat_interval,
            )?,
            webhooks,
            alertmanagers,
            rules,
        })
    }
}

impl RuleFile {
    fn rule(self, field: &str) -> Result<Rule, String> {
        let valid_name = !self.alert.is_empty()
            && self
                .alert
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid_name {
            return Err(format!(
                "{field}.alert: {:?} is not a name; use letters, digits, _ and -, like HighMemory",
                self.alert
            ));
        }
        let condition = match (self.metric, self.anomaly) {
            (Some(_), Some(_)) => {
                return Err(format!(
                    "{field}: give metric (with above or below) or anomaly, not both"
                ))
            }
            (None, None) => {
                return Err(format!(
                    "{field}: give metric: NAME with above: or below:, or anomaly: NAME (or any)"
                ))
            }
            (None, Some(anomaly)) => {
                if self.above.is_some() || self.below.is_some() || self.unusual {
                    return Err(format!(
                        "{field}: above, below and unusual go with metric, not anomaly"
                    ));
                }
                Condition::Anomaly {
                    series: (anomaly != "any")
                        .then(|| ward_core::services::metric_name(&anomaly).to_string()),
                }
            }
            (Some(metric), None) => {
                let metric = ward_core::services::metric_name(&metric).to_string();
                let (above, value) = match (self.above, self.below) {
                    (Some(value), None) => (true, value),
                    (None, Some(value)) => (false, value),
                    _ => {
                        return Err(format!(
                            "{field}: give one of above: or below: with metric {metric}"
                        ))
                    }
                };
                let which = if above { "above" } else { "below" };
                let value = threshold(&metric, &value).ok_or_else(|| {
                    format!(
                        "{field}.{which}: {value} is not a value of {metric}; give a number{}",
                        if metric.ends_with("_bytes") {
                            " or a size like 200MiB"
                        } else {
                            ""
                        }
                    )
                })?;
                Condition::Threshold {
                    metric,
                    above,
                    value,
                    unusual: self.unusual,
                }
            }
        };
        Ok(Rule {
            name: self.alert,
            condition,
            for_: duration(&format!("{field}.for"), self.for_, Duration::ZERO)?,
            hold: duration(
                &format!("{field}.hold"),
                self.hold,
                Duration::from_secs(5 * 60),
            )?,
            workload: self.workload,
            severity: self.severity.unwrap_or_else(|| "warning".to_string()),
        })
    }
}

fn threshold(metric: &str, value: &serde_json::Value) -> Option<f64> {
    match value {
        serde_json::Value::Number(number) => number.as_f64(),
        serde_json::Value::String(text) if metric.ends_with("_bytes") => {
            ward_spec::units::parse_size(text)
                .ok()
                .map(|bytes| bytes as f64)
        }
        serde_json::Value::String(text) => text.trim().parse().ok(),
        _ => None,
    }
    .filter(|value: &f64| value.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<AlertSettings, String> {
        let file: AlertsFile = serde_json::from_str(yaml).map_err(|error| error.to_string())?;
        file.settings(Duration::from_secs(5))
    }

    #[test]
    fn rules_are_read_and_bad_ones_name_their_field() {
        let settings = parse(
            r#"{"webhooks": ["http://127.0.0.1:9000/hook/"], "rules": [
                {"alert": "HighMemory", "metric": "memory", "above": "200MiB", "for": "30s"},
                {"alert": "Odd", "anomaly": "any"}]}"#,
        )
        .unwrap();
        assert_eq!(settings.webhooks, ["http://127.0.0.1:9000/hook"]);
        assert_eq!(
            settings.rules[0].condition,
            Condition::Threshold {
                metric: "ward_instance_memory_bytes".into(),
                above: true,
                value: 200.0 * 1048576.0,
                unusual: false
            }
        );
        assert_eq!(settings.rules[0].for_, Duration::from_secs(30));
        assert_eq!(
            settings.rules[1].condition,
            Condition::Anomaly { series: None }
        );

        for (yaml, field) in [
            (
                r#"{"rules": [{"alert": "A"}]}"#,
                "alerts.rules[0]: give metric",
            ),
            (
                r#"{"rules": [{"alert": "A", "metric": "memory", "above": "lots"}]}"#,
                "alerts.rules[0].above",
            ),
            (
                r#"{"rules": [{"alert": "a b", "anomaly": "any"}]}"#,
                "alerts.rules[0].alert",
            ),
            (r#"{"webhooks": ["ftp://x"]}"#, "alerts.webhooks"),
            (
                r#"{"rules": [{"alert": "A", "anomaly": "any"}, {"alert": "A", "anomaly": "cpu"}]}"#,
                "two rules are called",
            ),
            (
                r#"{"rules": [{"alert": "A", "metric": "cpu", "above": 1, "for": "soon"}]}"#,
                "alerts.rules[0].for",
            ),
        ] {
            let error = parse(yaml).unwrap_err();
            assert!(error.contains(field), "{yaml}: {error}");
        }
    }
}
