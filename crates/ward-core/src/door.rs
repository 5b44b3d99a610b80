//! The one door every caller goes through: [`Door::admit`] checks a [`Caller`] against an
//! [`Operation`]'s declaration (permission and project reach), records refusals in the audit
//! log, and hands out the [`Admission`] that the operations themselves require. A change is
//! audited in the same store transaction as the change; [`Door::finish`] records the calls
//! whose outcome was not written that way (failures, and changes outside the database).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::access::{Permission, Principal};
use crate::ops::{Access, Audit, Operation, Reach};
use crate::records::NewAuditEntry;
use crate::Error;

/// The project of a call that names none, for principals of every project.
pub const DEFAULT_PROJECT: &str = "default";

/// Who is calling: the principal whose rights apply, and the agent acting for it, if any.
#[derive(Clone, Debug)]
pub struct Caller {
    pub principal: Principal,
    /// `planner`, `healer`, `mcp`…: the audit log names it as the actor, on behalf of the
    /// principal.
    pub agent: Option<String>,
    /// Why an agent makes the call, in plain words: the audit log and the change's event
    /// carry it.
    pub reason: Option<String>,
}

impl Caller {
    /// A principal calling for itself.
    pub fn new(principal: Principal) -> Caller {
        Caller {
            principal,
            agent: None,
            reason: None,
        }
    }

    /// `agent` acting on behalf of `principal`, with `principal`'s rights and no more.
    pub fn on_behalf_of(agent: &str, principal: Principal) -> Caller {
        Caller {
            principal,
            agent: Some(agent.to_string()),
            reason: None,
        }
    }

    /// The same caller, giving `reason` for its call.
    pub fn because(mut self, reason: impl Into<String>) -> Caller {
        self.reason = Some(reason.into());
        self
    }

    /// The audit log's actor and, for an agent, the principal it acts for.
    pub fn actor(&self) -> (String, Option<String>) {
        match &self.agent {
            Some(agent) => (agent.clone(), Some(self.principal.actor.clone())),
            None => (self.principal.actor.clone(), None),
        }
    }
}

/// Leave to make one call of one operation, for one project. Only [`Admission::decide`], which
/// the engine's [`Door::admit`] calls, makes one.
#[derive(Clone, Debug)]
pub struct Admission {
    inner: Arc<AdmissionInner>,
}

#[derive(Debug)]
struct AdmissionInner {
    caller: Caller,
    operation: Operation,
    project: Option<String>,
    target: String,
    /// Whether the audit entry of this call has been written.
    recorded: AtomicBool,
    /// Whether the handler records the entry itself (see [`Admission::defer_audit`]).
    deferred: AtomicBool,
}

impl Admission {
    pub fn principal(&self) -> &Principal {
        &self.inner.caller.principal
    }

    pub fn caller(&self) -> &Caller {
        &self.inner.caller
    }

    pub fn operation(&self) -> Operation {
        self.inner.operation
    }

    /// The project the call was admitted to; `None` for calls that reach no single project.
    pub fn project(&self) -> Option<&str> {
        self.inner.project.as_deref()
    }

    /// The project of a project-scoped call.
    pub fn project_or_default(&self) -> &str {
        self.project().unwrap_or(DEFAULT_PROJECT)
    }

    /// Fails unless this admission is for one of `operations`: leave to read is no leave to
    /// write.
    pub fn require(&self, operations: &[Operation]) -> Result<(), Error> {
        if operations.contains(&self.inner.operation) {
            Ok(())
        } else {
            Err(Error::forbidden(format!(
                "this call was admitted for {}, not for {}",
                self.inner.operation.action(),
                operations
                    .iter()
                    .map(|operation| operation.action())
                    .collect::<Vec<_>>()
                    .join(" or ")
            )))
        }
    }

    /// The audit entry of a successful call, to be written in the same transaction as its
    /// change; `None` if the operation is not audited or the entry is already written. Marks
    /// it written: the caller commits it or fails.
    pub fn success_entry(&self, status: u16) -> Option<NewAuditEntry> {
        if self.inner.operation.policy().audit != Audit::Each
            || self.inner.recorded.swap(true, Ordering::SeqCst)
        {
            return None;
        }
        Some(self.entry(status, "ok".to_string()))
    }

    /// Leaves the call's audit entry to its handler, for a call that goes on after its answer
    /// has begun (a streamed pull): [`Door::finish`] then does nothing, and the handler ends
    /// with [`Door::finish_deferred`].
    pub fn defer_audit(&self) {
        self.inner.deferred.store(true, Ordering::SeqCst);
    }

    /// Takes back the mark of [`Admission::success_entry`] after its transaction failed.
    pub fn unrecord(&self) {
        self.inner.recorded.store(false, Ordering::SeqCst);
    }

    /// The entry of an audited call not yet recorded, marked recorded; `None` otherwise, or
    /// while the handler has deferred it and `deferred_too` is false.
    pub fn unrecorded_entry(
        &self,
        status: u16,
        outcome: &str,
        deferred_too: bool,
    ) -> Option<NewAuditEntry> {
        if (!deferred_too && self.inner.deferred.load(Ordering::SeqCst))
            || self.inner.operation.policy().audit != Audit::Each
            || self.inner.recorded.swap(true, Ordering::SeqCst)
        {
            return None;
        }
        Some(self.entry(status, outcome.to_string()))
    }

    /// Checks `caller` against `operation`'s declaration for `project` (the caller's own, or
    /// `default`, when `None`). A refusal comes with the admission it would have been, for
    /// its audit entry ([`Admission::refusal_entry`]).
    pub fn decide(
        caller: &Caller,
        operation: Operation,
        project: Option<&str>,
        target: &str,
    ) -> Result<Admission, (Admission, Refusal)> {
        let principal = &caller.principal;
        let policy = operation.policy();
        let (scoped, checked) = match scope(principal, policy.reach, project) {
            Ok(scoped) => (scoped, Ok(())),
            // The refusal is recorded against the project the caller named.
            Err(refusal) => (project.map(str::to_string), Err(refusal)),
        };
        let admission = Admission {
            inner: Arc::new(AdmissionInner {
                caller: caller.clone(),
                operation,
                project: scoped,
                target: target.to_string(),
                recorded: AtomicBool::new(false),
                deferred: AtomicBool::new(false),
            }),
        };
        let checked = checked.and_then(|_| match policy.access {
            Access::Open => Ok(()),
            Access::Requires(permission) if principal.allows(permission) => Ok(()),
            Access::Requires(permission) => Err(Refusal::Forbidden(denial(principal, permission))),
        });
        match checked {
            Ok(()) => Ok(admission),
            Err(refusal) => Err((admission, refusal)),
        }
    }

    /// The audit entry of a refused call (every refusal is recorded: who tried what is the
    /// point of an audit log).
    pub fn refusal_entry(&self, refusal: &Refusal) -> NewAuditEntry {
        self.inner.recorded.store(true, Ordering::SeqCst);
        self.entry(refusal.status(), refusal.to_string())
    }

    fn entry(&self, status: u16, outcome: String) -> NewAuditEntry {
        let (actor, on_behalf_of) = self.inner.caller.actor();
        NewAuditEntry {
            time_ms: now_ms(),
            actor,
            on_behalf_of,
            project: self.inner.project.clone(),
            action: self.inner.operation.action(),
            target: self.inner.target.clone(),
            status,
            outcome: match &self.inner.caller.reason {
                Some(reason) => format!("{outcome} ({reason})"),
                None => outcome,
            },
        }
    }
}

/// Why a call was not admitted.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The request itself is malformed (a project name that is not a name).
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Forbidden(String),
}

impl Refusal {
    /// The status the audit log gives it, as HTTP would.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::Invalid(_) => 400,
            Refusal::Forbidden(_) => 403,
        }
    }
}

impl From<Refusal> for Error {
    fn from(refusal: Refusal) -> Error {
        match refusal {
            Refusal::Invalid(message) => {
                Error::new(crate::ErrorKind::InvalidSpec, message).with_field("project")
            }
            Refusal::Forbidden(message) => Error::forbidden(message),
        }
    }
}

/// The door: what every caller of the engine goes through, and the audit log behind it.
pub trait Door: Send + Sync {
    /// Admits `caller` to one call of `operation` on `project` (the caller's own, or
    /// `default`, when `None`), or refuses and records the refusal. `target` is what the
    /// call acts on, as the audit log shows it.
    fn admit(
        &self,
        caller: &Caller,
        operation: Operation,
        project: Option<&str>,
        target: &str,
    ) -> Result<Admission, Refusal>;

    /// Records the outcome of an audited call whose entry was not written with its change:
    /// a failure, or a change outside the database. Does nothing for unaudited operations, a
    /// call already recorded, or one whose handler deferred its entry.
    fn finish(&self, admission: &Admission, status: u16, outcome: &str);

    /// [`Door::finish`] for a call whose handler took its audit entry over.
    fn finish_deferred(&self, admission: &Admission, status: u16, outcome: &str);

    /// Records a call of an open operation (a login, which authenticates itself), made by
    /// `actor`.
    fn record_open(
        &self,
        operation: Operation,
        actor: &str,
        project: Option<&str>,
        status: u16,
        outcome: &str,
    );
}

/// The project a call addresses, checked against the principal's reach.
fn scope(
    principal: &Principal,
    reach: Reach,
    named: Option<&str>,
) -> Result<Option<String>, Refusal> {
    match reach {
        Reach::Principal => Ok(None),
        Reach::AllProjects if principal.is_global() => Ok(None),
        Reach::AllProjects => Err(Refusal::Forbidden(
            "this call spans every project; a key of one project cannot make it".to_string(),
        )),
        Reach::Project => {
            let project = named
                .map(str::to_string)
                .or_else(|| principal.project.clone())
                .unwrap_or_else(|| DEFAULT_PROJECT.to_string());
            ward_spec::validate_name(&project)
                .map_err(|reason| Refusal::Invalid(format!("project: {reason}")))?;
            if !principal.reaches(&project) {
                return Err(Refusal::Forbidden(format!(
                    "this key is for project {}, not {project}",
                    principal.project.as_deref().unwrap_or_default()
                )));
            }
            Ok(Some(project))
        }
    }
}

/// Why `principal` may not do what needs `permission`.
fn denial(principal: &Principal, permission: Permission) -> String {
    match permission {
        Permission::Authenticated => "this key cannot make this call".to_string(),
        Permission::Role(role) => format!(
            "this key's role is {}; this call needs {}",
            principal.role.as_str(),
            role.as_str()
        ),
        Permission::Capability(role, capability) if principal.role >= role => format!(
            "this call needs the {} capability, which this key was not granted",
            capability.as_str()
        ),
        Permission::Capability(role, capability) => format!(
            "this key's role is {}; this call needs {} with the {} capability",
            principal.role.as_str(),
            role.as_str(),
            capability.as_str()
        ),
    }
}

/// Milliseconds since the Unix epoch, as audit entries carry time.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or(0)
}
