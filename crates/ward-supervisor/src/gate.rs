//! The engine's side of the door ([`ward_core::door`]): the [`Gate`] writes the audit log
//! entries of admissions, refusals and outcomes, and [`audited`] / [`audited_ahead`] put a
//! call's entry in the same transaction as its change, or before a change outside the
//! database.

use std::sync::Arc;

use ward_store::{NewAuditEntry, Store};

use ward_core::door::now_ms;
pub use ward_core::door::{Admission, Caller, Door, Refusal, DEFAULT_PROJECT};
use ward_core::ops::Operation;

use crate::SupervisorError;

/// Runs `write` with the audit entry of `admission`'s call (when it is audited and not yet
/// written), for the store to commit in the same transaction as the change; if the write
/// fails, the entry is left for [`Door::finish`] to record with the failure. `None`: a caller
/// of Ward's own (start-up, tests), whose writes are not calls.
pub fn audited<T, E>(
    admission: Option<&Admission>,
    status: u16,
    write: impl FnOnce(Option<&NewAuditEntry>) -> Result<T, E>,
) -> Result<T, E> {
    let entry = admission.and_then(|admission| admission.success_entry(status));
    let written = write(entry.as_ref());
    if written.is_err() {
        if let Some(admission) = admission {
            admission.unrecord();
        }
    }
    written
}

/// Runs `change`, a change outside the database (files, a registry login), after writing
/// `admission`'s audit entry: no such change is ever left without its entry. If the change
/// then fails, the entry is handed back to [`Door::finish`], which records the failure as a
/// second entry; a crash in between leaves an entry for a change that may not have happened,
/// never the reverse.
pub fn audited_ahead<T, E: From<ward_store::StoreError>>(
    store: &Store,
    admission: Option<&Admission>,
    change: impl FnOnce() -> Result<T, E>,
) -> Result<T, E> {
    let Some(admission) = admission else {
        return change();
    };
    if let Some(entry) = admission.success_entry(200) {
        store
            .append_audit(&entry)
            .inspect_err(|_| admission.unrecord())?;
    }
    change().inspect_err(|_| admission.unrecord())
}

impl From<Refusal> for SupervisorError {
    fn from(refusal: Refusal) -> SupervisorError {
        match refusal {
            Refusal::Invalid(message) => SupervisorError::Invalid {
                field: "project".to_string(),
                message,
            },
            Refusal::Forbidden(message) => SupervisorError::Forbidden { message },
        }
    }
}

/// Checks calls against the operations' declarations and writes the audit log.
#[derive(Clone)]
pub struct Gate {
    store: Arc<Store>,
}

impl Gate {
    pub fn new(store: Arc<Store>) -> Gate {
        Gate { store }
    }

    fn write(&self, entry: &NewAuditEntry) {
        if let Err(error) = self.store.append_audit(entry) {
            tracing::error!(%error, action = %entry.action, "cannot write the audit log");
        }
    }
}

impl Door for Gate {
    fn admit(
        &self,
        caller: &Caller,
        operation: Operation,
        project: Option<&str>,
        target: &str,
    ) -> Result<Admission, Refusal> {
        Admission::decide(caller, operation, project, target).map_err(|(admission, refusal)| {
            self.write(&admission.refusal_entry(&refusal));
            refusal
        })
    }

    fn finish(&self, admission: &Admission, status: u16, outcome: &str) {
        if let Some(entry) = admission.unrecorded_entry(status, outcome, false) {
            self.write(&entry);
        }
    }

    fn finish_deferred(&self, admission: &Admission, status: u16, outcome: &str) {
        if let Some(entry) = admission.unrecorded_entry(status, outcome, true) {
            self.write(&entry);
        }
    }

    fn record_open(
        &self,
        operation: Operation,
        actor: &str,
        project: Option<&str>,
        status: u16,
        outcome: &str,
    ) {
        self.write(&NewAuditEntry {
            time_ms: now_ms(),
            actor: actor.to_string(),
            on_behalf_of: None,
            project: project.map(str::to_string),
            action: operation.action(),
            target: operation.policy().route.to_string(),
            status,
            outcome: outcome.to_string(),
        });
    }
}
