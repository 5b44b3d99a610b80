//! Typed events: every state change is recorded once, persisted and broadcast from here.

use std::time::SystemTime;

pub use ward_core::events::{Event, EventKind};

/// An event not yet recorded.
#[derive(Clone, Debug)]
pub(crate) struct PendingEvent {
    pub project: String,
    pub workload: String,
    pub replica: Option<u32>,
    pub kind: EventKind,
    pub message: String,
    pub data: serde_json::Value,
}

impl PendingEvent {
    pub fn new(
        project: &str,
        workload: &str,
        replica: Option<u32>,
        kind: EventKind,
        message: impl Into<String>,
    ) -> PendingEvent {
        PendingEvent {
            project: project.to_string(),
            workload: workload.to_string(),
            replica,
            kind,
            message: message.into(),
            data: serde_json::Value::Object(Default::default()),
        }
    }

    /// An event about one instance.
    pub fn for_instance(
        key: &ward_runtime::InstanceKey,
        kind: EventKind,
        message: impl Into<String>,
    ) -> PendingEvent {
        PendingEvent::new(
            &key.project,
            &key.workload,
            Some(key.replica),
            kind,
            message,
        )
    }

    pub fn with_data(mut self, data: serde_json::Value) -> PendingEvent {
        self.data = data;
        self
    }

    pub fn to_store(&self, time: SystemTime) -> ward_store::NewEvent {
        ward_store::NewEvent {
            time_ms: crate::time::to_millis(time),
            project: self.project.clone(),
            workload: Some(self.workload.clone()),
            replica: self.replica,
            kind: self.kind.as_str().to_string(),
            message: self.message.clone(),
            data_json: self.data.to_string(),
        }
    }
}

pub(crate) fn from_store(record: ward_store::EventRecord) -> Event {
    Event {
        id: record.id,
        time: crate::time::from_millis(record.time_ms),
        project: record.project,
        workload: record.workload,
        replica: record.replica,
        kind: record.kind,
        message: record.message,
        data: serde_json::from_str(&record.data_json).unwrap_or(serde_json::Value::Null),
    }
}
