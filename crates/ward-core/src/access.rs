//! Who may do what: roles, the capabilities granted on top of them, and the principal a
//! caller authenticates as.

use std::collections::BTreeSet;
use std::fmt;

use crate::Error;

/// What a principal may do in its projects, each role including the ones below it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Read only: list, inspect, logs, events, metrics.
    Viewer,
    /// Manage workloads and images as well.
    Operator,
    /// Everything, keys and audit included.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Result<Role, Error> {
        match text {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            other => Err(Error::invalid(format!(
                "role: unknown role {other:?}; use admin, operator or viewer"
            ))
            .with_field("role")),
        }
    }
}

/// Powers that need a grant of their own on top of a role (admins hold them all).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Capability {
    /// Run commands inside workloads (`ward exec`).
    Exec,
    /// Read secret values.
    SecretsRead,
    /// Read the audit log.
    AuditRead,
    /// Mount host paths into workloads. Not implied by a project's admin role: only keys of
    /// every project with role admin hold it without a grant, and only they can grant it.
    HostPaths,
}

impl Capability {
    pub const ALL: [Capability; 4] = [
        Capability::Exec,
        Capability::SecretsRead,
        Capability::AuditRead,
        Capability::HostPaths,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Exec => "exec",
            Capability::SecretsRead => "secrets:read",
            Capability::AuditRead => "audit:read",
            Capability::HostPaths => "host-paths",
        }
    }

    /// The stored form of a set: names joined with commas.
    pub fn join(capabilities: &BTreeSet<Capability>) -> String {
        capabilities
            .iter()
            .map(|capability| capability.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The set [`Capability::join`] stored.
    pub fn parse_list(text: &str) -> Result<BTreeSet<Capability>, Error> {
        Capability::parse_each(text.split(',').filter(|part| !part.is_empty()))
    }

    /// The set of capabilities named one by one (as a request lists them).
    pub fn parse_each<'a>(
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<BTreeSet<Capability>, Error> {
        names.into_iter().map(Capability::parse).collect()
    }

    pub fn parse(text: &str) -> Result<Capability, Error> {
        Capability::ALL
            .into_iter()
            .find(|capability| capability.as_str() == text)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "capabilities: unknown capability {text:?}; use exec, secrets:read, audit:read or host-paths"
                ))
                .with_field("capabilities")
            })
    }
}

/// What one API call needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permission {
    /// Any valid key.
    Authenticated,
    Role(Role),
    /// A role and a capability.
    Capability(Role, Capability),
}

/// Who is calling, once their key checked out.
#[derive(Clone, PartialEq, Eq)]
pub struct Principal {
    /// `admin-token` or `key:<id>`: what the audit log names.
    pub actor: String,
    /// `None`: every project.
    pub project: Option<String>,
    pub role: Role,
    pub capabilities: BTreeSet<Capability>,
}

impl fmt::Debug for Principal {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Principal")
            .field("actor", &self.actor)
            .field("project", &self.project)
            .field("role", &self.role)
            .finish()
    }
}

impl Principal {
    /// The actor name of the bootstrap key.
    pub const BOOTSTRAP_ACTOR: &'static str = "admin-token";

    /// The bootstrap key of `DATA_DIR/admin.token`: admin of every project.
    pub fn bootstrap_admin() -> Principal {
        Principal {
            actor: Self::BOOTSTRAP_ACTOR.to_string(),
            project: None,
            role: Role::Admin,
            capabilities: Capability::ALL.into_iter().collect(),
        }
    }

    pub fn is_global(&self) -> bool {
        self.project.is_none()
    }

    /// Whether this principal reaches `project` at all.
    pub fn reaches(&self, project: &str) -> bool {
        self.project.as_deref().is_none_or(|own| own == project)
    }

    /// An admin of every project: what only the host's own administrators should be.
    pub fn is_every_project_admin(&self) -> bool {
        self.is_global() && self.role == Role::Admin
    }

    /// Whether this principal holds `capability`: granted, or implied by its admin role (for
    /// [`Capability::HostPaths`], only an admin of every project's).
    pub fn holds(&self, capability: Capability) -> bool {
        let implied = match capability {
            Capability::HostPaths => self.is_every_project_admin(),
            _ => self.role == Role::Admin,
        };
        implied || self.capabilities.contains(&capability)
    }

    /// Whether this principal may do what `permission` names (in a project it reaches).
    pub fn allows(&self, permission: Permission) -> bool {
        match permission {
            Permission::Authenticated => true,
            Permission::Role(role) => self.role >= role,
            Permission::Capability(role, capability) => self.role >= role && self.holds(capability),
        }
    }
}
