//! Every operation Ward offers, declared once: who may call it, which projects it reaches,
//! whether each call goes into the audit log, and where the HTTP API serves it.
//!
//! The HTTP router is built from this table, the API's authorisation looks calls up in it,
//! and every other caller (the planner, MCP tools, the healer, the dashboard) names an
//! [`Operation`] when it asks the [`Door`](crate::door::Door) for admission. Reads are not
//! audited: a high-volume read (a log follow, an event stream) would otherwise add a
//! permanent row per call. Changes, refusals, exec and the reading of a secret's value are.

use crate::access::{Capability, Permission, Role};

/// Which projects an operation works on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// One project, named by the caller (or the key's own, else `default`).
    Project,
    /// Every project at once: only principals of every project.
    AllProjects,
    /// No project, or the operation filters by the principal itself.
    Principal,
}

/// Who may call an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone, before authentication (health, and logging in, which limits and audits itself).
    Open,
    /// A principal with this permission.
    Requires(Permission),
}

/// Whether calls go into the audit log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Audit {
    /// One entry per call, written in the same transaction as the change it records where
    /// the change is a database write.
    Each,
    /// No entry for calls that are let through; a refusal is always recorded.
    Refusals,
}

/// The declaration of one operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    pub access: Access,
    pub reach: Reach,
    pub audit: Audit,
    /// The HTTP method and route template that serve it.
    pub method: &'static str,
    pub route: &'static str,
}

macro_rules! operations {
    ($($(#[doc = $doc:literal])* $name:ident = $method:literal $route:literal, $access:expr, $reach:ident, $audit:ident;)*) => {
        /// One operation of Ward's API, whoever calls it.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Operation {
            $($(#[doc = $doc])* $name,)*
        }

        impl Operation {
            /// Every operation, in declaration order.
            pub const ALL: &'static [Operation] = &[$(Operation::$name,)*];

            /// The operation's declaration.
            pub fn policy(self) -> Policy {
                match self {
                    $(Operation::$name => Policy {
                        access: $access,
                        reach: Reach::$reach,
                        audit: Audit::$audit,
                        method: $method,
                        route: $route,
                    },)*
                }
            }
        }
    };
}

const OPEN: Access = Access::Open;
const AUTHENTICATED: Access = Access::Requires(Permission::Authenticated);
const VIEWER: Access = Access::Requires(Permission::Role(Role::Viewer));
const OPERATOR: Access = Access::Requires(Permission::Role(Role::Operator));
const ADMIN: Access = Access::Requires(Permission::Role(Role::Admin));
const EXEC: Access = Access::Requires(Permission::Capability(Role::Operator, Capability::Exec));
const SECRETS_READ: Access = Access::Requires(Permission::Capability(
    Role::Viewer,
    Capability::SecretsRead,
));
const AUDIT_READ: Access =
    Access::Requires(Permission::Capability(Role::Viewer, Capability::AuditRead));

operations! {
    /// Whether the daemon is up.
    Health = "GET" "/healthz", OPEN, Principal, Refusals;
    /// Prometheus metrics of every project.
    Metrics = "GET" "/metrics", VIEWER, AllProjects, Refusals;
    /// The OpenAPI document.
    OpenApi = "GET" "/openapi.json", AUTHENTICATED, Principal, Refusals;
    WorkloadList = "GET" "/api/v1/workloads", VIEWER, Project, Refusals;
    WorkloadCreate = "POST" "/api/v1/workloads", OPERATOR, Project, Each;
    WorkloadApply = "POST" "/api/v1/apply", OPERATOR, Project, Each;
    WorkloadGet = "GET" "/api/v1/workloads/{name}", VIEWER, Project, Refusals;
    WorkloadReplace = "PUT" "/api/v1/workloads/{name}", OPERATOR, Project, Each;
    WorkloadDelete = "DELETE" "/api/v1/workloads/{name}", OPERATOR, Project, Each;
    WorkloadStart = "POST" "/api/v1/workloads/{name}/start", OPERATOR, Project, Each;
    WorkloadStop = "POST" "/api/v1/workloads/{name}/stop", OPERATOR, Project, Each;
    WorkloadRestart = "POST" "/api/v1/workloads/{name}/restart", OPERATOR, Project, Each;
    /// A note in a workload's events, from a person or a tool (a deploy, a change made
    /// elsewhere); the healer records what it does this way.
    WorkloadNote = "POST" "/api/v1/workloads/{name}/events", OPERATOR, Project, Each;
    /// A signal to a workload's instances; SIGKILL stops it.
    WorkloadKill = "POST" "/api/v1/workloads/{name}/kill", OPERATOR, Project, Each;
    /// Log lines, followed or not: a high-volume read, not audited.
    WorkloadLogs = "GET" "/api/v1/workloads/{name}/logs", VIEWER, Project, Refusals;
    /// A command inside a workload: audited, as `docker exec` is not.
    WorkloadExec = "GET" "/api/v1/workloads/{name}/exec", EXEC, Project, Each;
    /// The terminal of a workload that runs on one: input into it, so as exec is.
    WorkloadAttach = "GET" "/api/v1/workloads/{name}/attach", EXEC, Project, Each;
    /// The event stream: a high-volume read, not audited.
    Events = "GET" "/api/v1/events", VIEWER, Project, Refusals;
    /// Stored metrics of the project's workloads.
    MetricsQuery = "GET" "/api/v1/metrics/query", VIEWER, Project, Refusals;
    /// The project's pending and firing alerts.
    AlertList = "GET" "/api/v1/alerts", VIEWER, Project, Refusals;
    SilenceList = "GET" "/api/v1/alerts/silences", VIEWER, Project, Refusals;
    /// Mutes the project's alerts that match, for a while.
    SilenceCreate = "POST" "/api/v1/alerts/silences", OPERATOR, Project, Each;
    SilenceExpire = "DELETE" "/api/v1/alerts/silences/{silence}", OPERATOR, Project, Each;
    ImageList = "GET" "/api/v1/images", VIEWER, Project, Refusals;
    ImagePull = "POST" "/api/v1/images/pull", OPERATOR, Project, Each;
    ImageImport = "POST" "/api/v1/images/import", OPERATOR, Project, Each;
    ImagePrune = "POST" "/api/v1/images/prune", ADMIN, AllProjects, Each;
    /// Reads images and writes nothing.
    ImageExport = "POST" "/api/v1/images/export", VIEWER, Project, Refusals;
    ImageGet = "GET" "/api/v1/images/{reference}", VIEWER, Project, Refusals;
    ImageRemove = "DELETE" "/api/v1/images/{reference}", OPERATOR, Project, Each;
    ModelList = "GET" "/api/v1/models", VIEWER, Project, Refusals;
    ModelImport = "POST" "/api/v1/models/import", OPERATOR, Project, Each;
    /// The project's models a runner holds now.
    ModelLoaded = "GET" "/api/v1/models/loaded", VIEWER, Project, Refusals;
    ModelGet = "GET" "/api/v1/models/{name}", VIEWER, Project, Refusals;
    ModelLoad = "POST" "/api/v1/models/{name}/load", OPERATOR, Project, Each;
    ModelUnload = "POST" "/api/v1/models/{name}/unload", OPERATOR, Project, Each;
    /// A model from a URL, Hugging Face or a registry; progress as NDJSON when asked.
    ModelPull = "POST" "/api/v1/models/pull", OPERATOR, Project, Each;
    /// A model to a registry, in Docker Model Runner's layout.
    ModelPush = "POST" "/api/v1/models/{name}/push", OPERATOR, Project, Each;
    ModelRemove = "DELETE" "/api/v1/models/{name}", OPERATOR, Project, Each;
    OpenAiModels = "GET" "/v1/models", VIEWER, Project, Refusals;
    /// A completion: a high-volume read of a model, not audited per call.
    OpenAiChat = "POST" "/v1/chat/completions", VIEWER, Project, Refusals;
    /// A completion of plain text: as a chat's.
    OpenAiText = "POST" "/v1/completions", VIEWER, Project, Refusals;
    /// Vectors of texts: a read of a model, as a completion is.
    OpenAiEmbeddings = "POST" "/v1/embeddings", VIEWER, Project, Refusals;
    RegistryList = "GET" "/api/v1/registries", VIEWER, Project, Refusals;
    RegistryLogin = "POST" "/api/v1/registries/login", OPERATOR, Project, Each;
    RegistryLogout = "DELETE" "/api/v1/registries/{registry}", OPERATOR, Project, Each;
    VolumeList = "GET" "/api/v1/volumes", VIEWER, Project, Refusals;
    /// Removes a named volume no workload mounts, with its files.
    VolumeRemove = "DELETE" "/api/v1/volumes/{name}", OPERATOR, Project, Each;
    /// Removes the project's named volumes that no workload mounts.
    VolumePrune = "POST" "/api/v1/volumes/prune", OPERATOR, Project, Each;
    KeyList = "GET" "/api/v1/keys", ADMIN, Principal, Refusals;
    KeyCreate = "POST" "/api/v1/keys", ADMIN, Principal, Each;
    KeyRevoke = "DELETE" "/api/v1/keys/{id}", ADMIN, Principal, Each;
    SecretList = "GET" "/api/v1/secrets", VIEWER, Project, Refusals;
    SecretGet = "GET" "/api/v1/secrets/{name}", VIEWER, Project, Refusals;
    SecretSet = "PUT" "/api/v1/secrets/{name}", OPERATOR, Project, Each;
    SecretRemove = "DELETE" "/api/v1/secrets/{name}", OPERATOR, Project, Each;
    /// A secret's value: a read, and audited.
    SecretReveal = "GET" "/api/v1/secrets/{name}/value", SECRETS_READ, Project, Each;
    /// A project sees its quota; only a principal of every project sets one.
    QuotaGet = "GET" "/api/v1/quota", VIEWER, Project, Refusals;
    QuotaSet = "PUT" "/api/v1/quota", ADMIN, AllProjects, Each;
    /// A user's login: open, limited per name, and audited by itself.
    SessionCreate = "POST" "/api/v1/sessions", OPEN, Principal, Each;
    /// Logging out of a browser session (bearer sessions simply forget their token).
    SessionDelete = "DELETE" "/api/v1/sessions", AUTHENTICATED, Principal, Each;
    UserList = "GET" "/api/v1/users", ADMIN, AllProjects, Refusals;
    UserSet = "POST" "/api/v1/users", ADMIN, AllProjects, Each;
    UserRemove = "DELETE" "/api/v1/users/{name}", ADMIN, AllProjects, Each;
    UserGrant = "POST" "/api/v1/users/{name}/grants", ADMIN, AllProjects, Each;
    UserRevoke = "DELETE" "/api/v1/users/{name}/grants", ADMIN, AllProjects, Each;
    AuditList = "GET" "/api/v1/audit", AUDIT_READ, Principal, Refusals;
    AuditVerify = "GET" "/api/v1/audit/verify", AUDIT_READ, Principal, Refusals;
    ProjectList = "GET" "/api/v1/projects", VIEWER, Principal, Refusals;
    ProjectCreate = "POST" "/api/v1/projects", ADMIN, AllProjects, Each;
}

impl Operation {
    /// The operation the HTTP API serves at `method` and the route template `route`.
    pub fn for_http(method: &str, route: &str) -> Option<Operation> {
        Operation::ALL.iter().copied().find(|operation| {
            let policy = operation.policy();
            policy.method == method && policy.route == route
        })
    }

    /// How the audit log names it: the method and route that serve it, whoever called.
    pub fn action(self) -> String {
        let policy = self.policy();
        format!("{} {}", policy.method, policy.route)
    }

    /// Whether the operation only reads.
    pub fn is_read(self) -> bool {
        matches!(self.policy().method, "GET" | "HEAD")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_method_and_route_is_declared_once() {
        let mut seen = std::collections::BTreeSet::new();
        for operation in Operation::ALL {
            let policy = operation.policy();
            assert!(
                seen.insert((policy.method, policy.route)),
                "{} {} is declared twice",
                policy.method,
                policy.route
            );
            assert_eq!(
                Operation::for_http(policy.method, policy.route),
                Some(*operation)
            );
        }
    }

    #[test]
    fn every_change_is_audited() {
        for operation in Operation::ALL {
            let policy = operation.policy();
            assert!(
                matches!(policy.method, "GET" | "POST" | "PUT" | "DELETE"),
                "{operation:?}: the router serves GET, POST, PUT and DELETE"
            );
            // An export and a completion are POSTs that only read.
            let reads = [
                Operation::ImageExport,
                Operation::OpenAiChat,
                Operation::OpenAiText,
                Operation::OpenAiEmbeddings,
            ];
            if !operation.is_read() && !reads.contains(operation) {
                assert_eq!(policy.audit, Audit::Each, "{operation:?} changes state");
            }
        }
    }
}
