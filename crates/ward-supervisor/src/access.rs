//! Who may do what: roles and capabilities, API keys (shown once, stored as a hash, scoped to a
//! project or to all, with an optional expiry, revocable), the principals they authenticate
//! as, and the hash-chained audit log every state-changing call is written to.

use std::fmt;
use std::time::SystemTime;

use sha2::{Digest, Sha256};
use ward_store::{ApiKeyRecord, AuditRecord, AuditVerification, NewAuditEntry, Store};

use crate::gate::{audited, Admission};

/// The prefix of every API key Ward hands out: `wk_<id>_<secret>`.
const KEY_PREFIX: &str = "wk_";
/// Hex digits of a key's public id and of its secret.
const KEY_ID_HEX: usize = 12;
const KEY_SECRET_HEX: usize = 40;

pub use ward_core::access::{Capability, Permission, Principal, Role};
pub use ward_core::view::{KeyView, NewKey};

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("no API key {id}")]
    NotFound { id: String },
    #[error("{0}")]
    Store(#[from] ward_store::StoreError),
    #[error(transparent)]
    Core(#[from] ward_core::Error),
}

/// Keys and the audit log, over a connection of their own to the daemon's database.
pub struct AccessService {
    store: std::sync::Arc<Store>,
}

impl fmt::Debug for AccessService {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("AccessService")
            .finish_non_exhaustive()
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn random_hex(digits: usize) -> String {
    let bytes: Vec<u8> = (0..digits.div_ceil(2))
        .map(|_| rand::random::<u8>())
        .collect();
    let mut hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    hex.truncate(digits);
    hex
}

/// Compares in constant time, so timing does not reveal how much of a hash matched.
fn same_bytes(left: &[u8], right: &[u8]) -> bool {
    let mut difference = left.len() ^ right.len();
    for (index, byte) in left.iter().enumerate() {
        difference |= (byte ^ right.get(index).copied().unwrap_or(0)) as usize;
    }
    difference == 0
}

impl AccessService {
    pub fn new(store: std::sync::Arc<Store>) -> AccessService {
        AccessService { store }
    }

    /// Creates a key for `request` on behalf of `creator`, who may hand out no more than it
    /// holds; returns the key's record and the key itself, which is never shown again.
    pub fn create_key(
        &self,
        creator: &Principal,
        request: &NewKey,
        admission: Option<&Admission>,
    ) -> Result<(KeyView, String), AccessError> {
        if request.name.trim().is_empty() || request.name.len() > 100 {
            return Err(AccessError::Invalid(
                "name: give the key a name of 1 to 100 characters".to_string(),
            ));
        }
        // A key of one project creates keys of that project unless told otherwise.
        let project = request.project.clone().or_else(|| creator.project.clone());
        match &project {
            Some(project) if !creator.reaches(project) => {
                return Err(AccessError::Forbidden(format!(
                    "project: this key cannot reach project {project}"
                )))
            }
            _ => {}
        }
        if request.role > creator.role {
            return Err(AccessError::Forbidden(format!(
                "role: a {} cannot create an {} key",
                creator.role.as_str(),
                request.role.as_str()
            )));
        }
        if let Some(missing) = request
            .capabilities
            .iter()
            .find(|capability| !creator.holds(**capability))
        {
            return Err(AccessError::Forbidden(format!(
                "capabilities: this key does not hold {} and cannot grant it",
                missing.as_str()
            )));
        }
        if let Some(project) = &project {
            self.store.ensure_project(project, None)?;
        }
        let id = random_hex(KEY_ID_HEX);
        let secret = random_hex(KEY_SECRET_HEX);
        let now = crate::time::to_millis(SystemTime::now());
        let record = ApiKeyRecord {
            id: id.clone(),
            name: request.name.trim().to_string(),
            project,
            role: request.role.as_str().to_string(),
            capabilities: Capability::join(&request.capabilities),
            secret_hash: sha256_hex(secret.as_bytes()),
            created_by: creator.actor.clone(),
            created_at_ms: now,
            expires_at_ms: request
                .expires_in
                .map(|expiry| now.saturating_add(expiry.as_millis() as i64)),
            revoked_at_ms: None,
        };
        audited(admission, 200, |audit| {
            self.store.put_api_key(&record, audit)
        })?;
        let view = KeyView {
            record,
            role: request.role,
            capabilities: request.capabilities.clone(),
        };
        Ok((view, format!("{KEY_PREFIX}{id}_{secret}")))
    }

    /// The principal of a presented key, if it is one of ours, unexpired and not revoked.
    pub fn authenticate(&self, presented: &str) -> Result<Option<Principal>, AccessError> {
        let Some((id, secret)) = presented
            .strip_prefix(KEY_PREFIX)
            .and_then(|rest| rest.split_once('_'))
        else {
            return Ok(None);
        };
        if id.len() != KEY_ID_HEX || !id.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let Some(record) = self.store.get_api_key(id)? else {
            return Ok(None);
        };
        if !same_bytes(
            sha256_hex(secret.as_bytes()).as_bytes(),
            record.secret_hash.as_bytes(),
        ) {
            return Ok(None);
        }
        let now = crate::time::to_millis(SystemTime::now());
        if record.revoked_at_ms.is_some()
            || record.expires_at_ms.is_some_and(|expiry| expiry <= now)
        {
            return Ok(None);
        }
        let view = self.view(record)?;
        Ok(Some(Principal {
            actor: format!("key:{}", view.record.id),
            project: view.record.project.clone(),
            role: view.role,
            capabilities: view.capabilities,
        }))
    }

    /// The keys `viewer` may see: those of its project, or every key for a global admin.
    pub fn list_keys(&self, viewer: &Principal) -> Result<Vec<KeyView>, AccessError> {
        self.store
            .list_api_keys(viewer.project.as_deref())?
            .into_iter()
            .map(|record| self.view(record))
            .collect()
    }

    /// Revokes key `id`, which must be within `revoker`'s reach.
    pub fn revoke_key(
        &self,
        revoker: &Principal,
        id: &str,
        admission: Option<&Admission>,
    ) -> Result<KeyView, AccessError> {
        let not_found = || AccessError::NotFound { id: id.to_string() };
        let record = self.store.get_api_key(id)?.ok_or_else(not_found)?;
        let reachable = match &record.project {
            Some(project) => revoker.reaches(project),
            None => revoker.is_global(),
        };
        if !reachable {
            return Err(not_found());
        }
        let now = crate::time::to_millis(SystemTime::now());
        audited(admission, 200, |audit| {
            self.store.revoke_api_key(id, now, audit)
        })?;
        let record = self.store.get_api_key(id)?.ok_or_else(not_found)?;
        self.view(record)
    }

    fn view(&self, record: ApiKeyRecord) -> Result<KeyView, AccessError> {
        let role = Role::parse(&record.role)?;
        let capabilities = Capability::parse_list(&record.capabilities)?;
        Ok(KeyView {
            record,
            role,
            capabilities,
        })
    }

    /// The projects `viewer` reaches.
    pub fn projects(&self, viewer: &Principal) -> Result<Vec<String>, AccessError> {
        Ok(self
            .store
            .list_projects()?
            .into_iter()
            .filter(|project| viewer.reaches(project))
            .collect())
    }

    /// Creates a project (idempotent).
    pub fn create_project(
        &self,
        name: &str,
        admission: Option<&Admission>,
    ) -> Result<(), AccessError> {
        ward_spec::validate_name(name)
            .map_err(|reason| AccessError::Invalid(format!("name: {reason}")))?;
        Ok(audited(admission, 200, |audit| {
            self.store.ensure_project(name, audit)
        })?)
    }

    /// Appends one entry to the audit log.
    pub fn record(&self, entry: &NewAuditEntry) -> Result<AuditRecord, AccessError> {
        Ok(self.store.append_audit(entry)?)
    }

    /// Entries `reader` may see (its project's, or all for a global principal).
    pub fn audit(
        &self,
        reader: &Principal,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, AccessError> {
        Ok(self
            .store
            .list_audit(reader.project.as_deref(), after_seq, limit)?)
    }

    pub fn verify_audit(&self) -> Result<AuditVerification, AccessError> {
        Ok(self.store.verify_audit()?)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn service() -> AccessService {
        AccessService::new(std::sync::Arc::new(
            Store::open_in_memory().expect("in-memory store"),
        ))
    }

    fn key(project: Option<&str>, role: Role, capabilities: &[Capability]) -> NewKey {
        NewKey {
            name: "test".to_string(),
            project: project.map(str::to_string),
            role,
            capabilities: capabilities.iter().copied().collect(),
            expires_in: None,
        }
    }

    #[test]
    fn keys_authenticate_as_their_scope_until_revoked() {
        let access = service();
        let admin = Principal::bootstrap_admin();
        let (view, secret) = access
            .create_key(
                &admin,
                &key(Some("alpha"), Role::Operator, &[Capability::Exec]),
                None,
            )
            .expect("create");
        assert!(!view.record.secret_hash.contains(&secret[3..]));
        let principal = access
            .authenticate(&secret)
            .expect("lookup")
            .expect("valid");
        assert_eq!(principal.project.as_deref(), Some("alpha"));
        assert_eq!(principal.role, Role::Operator);
        assert!(principal.reaches("alpha") && !principal.reaches("beta"));
        assert!(principal.allows(Permission::Capability(Role::Operator, Capability::Exec)));
        assert!(!principal.allows(Permission::Role(Role::Admin)));
        assert!(!principal.allows(Permission::Capability(Role::Viewer, Capability::AuditRead)));

        let mut wrong = secret.clone();
        wrong.pop();
        wrong.push(if secret.ends_with('0') { '1' } else { '0' });
        assert!(access.authenticate(&wrong).expect("lookup").is_none());
        assert!(access.authenticate("not-a-key").expect("lookup").is_none());

        access
            .revoke_key(&admin, &view.record.id, None)
            .expect("revoke");
        assert!(access.authenticate(&secret).expect("lookup").is_none());
    }

    #[test]
    fn expired_keys_stop_working() {
        let access = service();
        let mut request = key(Some("alpha"), Role::Viewer, &[]);
        request.expires_in = Some(Duration::ZERO);
        let (_, secret) = access
            .create_key(&Principal::bootstrap_admin(), &request, None)
            .expect("create");
        assert!(access.authenticate(&secret).expect("lookup").is_none());
    }

    #[test]
    fn a_key_hands_out_no_more_than_it_holds() {
        let access = service();
        let (_, operator_secret) = access
            .create_key(
                &Principal::bootstrap_admin(),
                &key(Some("alpha"), Role::Admin, &[]),
                None,
            )
            .expect("create");
        let project_admin = access
            .authenticate(&operator_secret)
            .expect("lookup")
            .expect("valid");
        let refused = |request: NewKey| {
            access
                .create_key(&project_admin, &request, None)
                .expect_err("refused")
                .to_string()
        };
        let (defaulted, _) = access
            .create_key(&project_admin, &key(None, Role::Viewer, &[]), None)
            .expect("a key of alpha creates keys of alpha");
        assert_eq!(defaulted.record.project.as_deref(), Some("alpha"));
        assert!(refused(key(Some("beta"), Role::Viewer, &[])).starts_with("project:"));
        let (viewer, _) = access
            .create_key(
                &project_admin,
                &key(Some("alpha"), Role::Viewer, &[Capability::AuditRead]),
                None,
            )
            .expect("an admin of alpha grants within alpha");
        assert_eq!(viewer.record.created_by, project_admin.actor);
        let (_, viewer_secret) = access
            .create_key(&project_admin, &key(Some("alpha"), Role::Viewer, &[]), None)
            .expect("create");
        let viewer = access
            .authenticate(&viewer_secret)
            .expect("lookup")
            .expect("valid");
        assert!(access
            .create_key(&viewer, &key(Some("alpha"), Role::Operator, &[]), None)
            .expect_err("a viewer cannot create an operator")
            .to_string()
            .starts_with("role:"));
        assert!(access
            .create_key(
                &viewer,
                &key(Some("alpha"), Role::Viewer, &[Capability::Exec]),
                None
            )
            .expect_err("a viewer cannot grant exec")
            .to_string()
            .starts_with("capabilities:"));
    }
}
