//! The one writer of instance records and events: it writes them to the store on a blocking
//! thread, in the order the state changed, so the state lock and the async threads never wait
//! for SQLite.
//!
//! A change is queued while the state lock is held (the queue's order is the order of the
//! changes) and written after the lock is let go, by one drainer at a time on tokio's
//! blocking pool (where a test's paused clock waits for it). Events are broadcast once
//! stored, under the ids the store gave them.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::runtime::Handle;
use tokio::sync::{broadcast, oneshot};
use ward_runtime::InstanceKey;
use ward_store::{InstanceRecord, Store};

use crate::events::{Event, PendingEvent};

enum Write {
    /// An instance's record (when given) with the events that go with it, one transaction.
    Record {
        instance: Option<InstanceRecord>,
        events: Vec<PendingEvent>,
    },
    DeleteInstance(InstanceKey),
    /// Deletes a deleted workload's row (see [`Store::forget_deleted_workload`]), then
    /// records `event` unless that failed.
    Forget {
        project: String,
        name: String,
        event: PendingEvent,
        done: oneshot::Sender<Result<bool, String>>,
    },
    /// Keeps the newest `n` events.
    PruneEvents(usize),
    /// Answers once everything queued before it is written.
    Flush(oneshot::Sender<()>),
}

pub(crate) struct Recorder {
    shared: Arc<Shared>,
    runtime: Handle,
}

struct Shared {
    queue: Mutex<Queue>,
    store: Arc<Store>,
    events: broadcast::Sender<Event>,
}

#[derive(Default)]
struct Queue {
    writes: VecDeque<Write>,
    /// Whether a drainer is at work; it takes every write queued until the queue is empty.
    draining: bool,
}

impl Recorder {
    /// Must be called inside the tokio runtime whose blocking pool does the writing.
    pub fn start(store: Arc<Store>, events: broadcast::Sender<Event>) -> Recorder {
        Recorder {
            shared: Arc::new(Shared {
                queue: Mutex::default(),
                store,
                events,
            }),
            runtime: Handle::current(),
        }
    }

    /// Queues an instance record and events; call it while the change is still under the
    /// state lock, so records reach the store in the order the state changed.
    pub fn record(&self, instance: Option<InstanceRecord>, events: Vec<PendingEvent>) {
        self.send(Write::Record { instance, events });
    }

    pub fn delete_instance(&self, key: InstanceKey) {
        self.send(Write::DeleteInstance(key));
    }

    /// Deletes a deleted workload's row once the writes queued before are done, and records
    /// `event` unless the deletion failed.
    pub async fn forget(
        &self,
        project: &str,
        name: &str,
        event: PendingEvent,
    ) -> Result<bool, String> {
        let (done, answer) = oneshot::channel();
        self.send(Write::Forget {
            project: project.to_string(),
            name: name.to_string(),
            event,
            done,
        });
        answer
            .await
            .unwrap_or_else(|_| Err("the runtime is shutting down".to_string()))
    }

    pub fn prune_events(&self, keep: usize) {
        self.send(Write::PruneEvents(keep));
    }

    /// Waits until everything queued so far is written.
    pub async fn flush(&self) {
        let (done, answer) = oneshot::channel();
        self.send(Write::Flush(done));
        let _ = answer.await;
    }

    fn send(&self, write: Write) {
        let mut queue = self.shared.lock();
        queue.writes.push_back(write);
        if !queue.draining {
            queue.draining = true;
            let shared = self.shared.clone();
            self.runtime.spawn_blocking(move || shared.drain());
        }
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn drain(&self) {
        loop {
            let write = {
                let mut queue = self.lock();
                match queue.writes.pop_front() {
                    Some(write) => write,
                    None => {
                        queue.draining = false;
                        return;
                    }
                }
            };
            // A write that panics loses itself, not the queue behind it.
            let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                apply(&self.store, &self.events, write)
            }));
            if applied.is_err() {
                tracing::error!("a state write panicked; it was not stored");
            }
        }
    }
}

fn apply(store: &Store, events: &broadcast::Sender<Event>, write: Write) {
    match write {
        Write::Record {
            instance,
            events: pending,
        } => {
            let now = SystemTime::now();
            let stored: Vec<_> = pending.iter().map(|event| event.to_store(now)).collect();
            let result = match &instance {
                Some(record) => store.put_instance(record, &stored),
                None => store.append_events(&stored),
            };
            match result {
                Ok(ids) => broadcast(events, ids, pending, now),
                Err(error) => tracing::error!(%error, "cannot record instance state"),
            }
        }
        Write::DeleteInstance(key) => {
            if let Err(error) = store.delete_instance(&key.project, &key.workload, key.replica) {
                tracing::error!(%error, instance = %key.instance_name(), "cannot delete instance record");
            }
        }
        Write::Forget {
            project,
            name,
            event,
            done,
        } => {
            let forgotten = store.forget_deleted_workload(&project, &name);
            if forgotten.is_ok() {
                apply(
                    store,
                    events,
                    Write::Record {
                        instance: None,
                        events: vec![event],
                    },
                );
            }
            let _ = done.send(forgotten.map_err(|error| error.to_string()));
        }
        Write::PruneEvents(keep) => match store.prune_events(keep) {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "pruned old events"),
            Err(error) => tracing::warn!(%error, "cannot prune old events"),
        },
        Write::Flush(done) => {
            let _ = done.send(());
        }
    }
}

pub(crate) fn broadcast(
    events: &broadcast::Sender<Event>,
    ids: Vec<i64>,
    pending: Vec<PendingEvent>,
    time: SystemTime,
) {
    for (id, event) in ids.into_iter().zip(pending) {
        tracing::info!(
            project = %event.project,
            workload = %event.workload,
            replica = ?event.replica,
            kind = event.kind.as_str(),
            "{}",
            event.message
        );
        let _ = events.send(Event {
            id,
            time,
            project: event.project,
            workload: Some(event.workload),
            replica: event.replica,
            kind: event.kind.as_str().to_string(),
            message: event.message,
            data: event.data,
        });
    }
}
