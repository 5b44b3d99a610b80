//! What happened to workloads, as every caller sees it: each state change is one event.

use std::time::SystemTime;

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Created,
    Updated,
    Deleted,
    Starting,
    Started,
    StartFailed,
    Exited,
    OomKilled,
    Restarting,
    Stopping,
    Stopped,
    HealthFailed,
    Unhealthy,
    Healthy,
    Scaled,
    Recovered,
    /// A series of the workload's behaves unlike its own history.
    Anomaly,
    /// An instance failed quickly too many times in a row: restarts end, with a diagnosis.
    CrashLoop,
    /// The healer changed a workload, or says what it would change, and why.
    Heal,
    /// A caller's note on a workload (a deploy, a change made elsewhere).
    Note,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Created => "created",
            EventKind::Updated => "updated",
            EventKind::Deleted => "deleted",
            EventKind::Starting => "starting",
            EventKind::Started => "started",
            EventKind::StartFailed => "start_failed",
            EventKind::Exited => "exited",
            EventKind::OomKilled => "oom_killed",
            EventKind::Restarting => "restarting",
            EventKind::Stopping => "stopping",
            EventKind::Stopped => "stopped",
            EventKind::HealthFailed => "health_failed",
            EventKind::Unhealthy => "unhealthy",
            EventKind::Healthy => "healthy",
            EventKind::Scaled => "scaled",
            EventKind::Recovered => "recovered",
            EventKind::Anomaly => "anomaly",
            EventKind::CrashLoop => "crash_loop",
            EventKind::Heal => "heal",
            EventKind::Note => "note",
        }
    }
}

/// One recorded event.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub id: i64,
    pub time: SystemTime,
    pub project: String,
    pub workload: Option<String>,
    pub replica: Option<u32>,
    pub kind: String,
    pub message: String,
    pub data: serde_json::Value,
}
