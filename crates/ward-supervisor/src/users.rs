//! Users: names with argon2-hashed passwords, roles granted per project (`*`: every
//! project), and sessions: expiring tokens signed with HMAC-SHA256 under a key of the
//! daemon's, each scoped to one grant like an API key.

use std::path::Path;
use std::time::{Duration, SystemTime};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use ward_store::{GrantRecord, Store, UserRecord};

pub use ward_core::view::{Grant, Session, UserView, DEFAULT_SESSION};

use crate::access::{AccessError, Capability, Principal, Role};
use crate::gate::{audited, Admission};
use crate::secrets::load_or_create_key_bytes;
use crate::time::to_millis;

/// What marks a session token.
const SESSION_PREFIX: &str = "ws_";
/// The grant project that means every project.
const EVERY_PROJECT: &str = "*";
/// The shortest password accepted.
const MIN_PASSWORD_CHARACTERS: usize = 8;
const MAX_SESSION: Duration = Duration::from_secs(30 * 24 * 60 * 60);

type HmacSha256 = Hmac<Sha256>;

#[derive(serde::Serialize, serde::Deserialize)]
struct SessionClaims {
    /// The user.
    u: String,
    /// The project of the session; absent: every project.
    p: Option<String>,
    /// The user's generation when the session began.
    g: i64,
    /// Expiry, milliseconds since the epoch.
    e: i64,
}

pub struct UserService {
    store: std::sync::Arc<Store>,
    session_key: [u8; 32],
}

impl std::fmt::Debug for UserService {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("UserService")
            .finish_non_exhaustive()
    }
}

fn grant_of(record: &GrantRecord) -> Result<Grant, AccessError> {
    Ok(Grant {
        project: (record.project != EVERY_PROJECT).then(|| record.project.clone()),
        role: Role::parse(&record.role)?,
        capabilities: Capability::parse_list(&record.capabilities)?,
    })
}

fn hash_password(password: &str) -> Result<String, AccessError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|error| AccessError::Invalid(format!("password: cannot be hashed: {error}")))
}

fn wrong_login() -> AccessError {
    AccessError::Forbidden("wrong username or password".to_string())
}

impl UserService {
    /// `key_path`: the key that signs sessions (created on first use, mode 0600).
    pub fn open(store: std::sync::Arc<Store>, key_path: &Path) -> Result<UserService, AccessError> {
        let session_key = load_or_create_key_bytes(key_path)
            .map_err(|error| AccessError::Invalid(error.to_string()))?;
        Ok(UserService { store, session_key })
    }

    /// Creates a user, or sets a new password (which ends the user's sessions).
    pub fn set_password(
        &self,
        name: &str,
        password: &str,
        admission: Option<&Admission>,
    ) -> Result<UserView, AccessError> {
        ward_spec::validate_name(name)
            .map_err(|reason| AccessError::Invalid(format!("name: {reason}")))?;
        if password.chars().count() < MIN_PASSWORD_CHARACTERS {
            return Err(AccessError::Invalid(format!(
                "password: use at least {MIN_PASSWORD_CHARACTERS} characters"
            )));
        }
        let hash = hash_password(password)?;
        let record = audited(admission, 200, |audit| {
            self.store
                .put_user(name, &hash, to_millis(SystemTime::now()), audit)
        })?;
        self.view(record)
    }

    pub fn list(&self) -> Result<Vec<UserView>, AccessError> {
        self.store
            .list_users()?
            .into_iter()
            .map(|record| self.view(record))
            .collect()
    }

    pub fn remove(&self, name: &str, admission: Option<&Admission>) -> Result<(), AccessError> {
        if !audited(admission, 200, |audit| self.store.delete_user(name, audit))? {
            return Err(AccessError::NotFound {
                id: format!("user {name}"),
            });
        }
        Ok(())
    }

    /// Gives `user` `grant` in its project (replacing what it held there).
    pub fn grant(
        &self,
        user: &str,
        grant: &Grant,
        admission: Option<&Admission>,
    ) -> Result<UserView, AccessError> {
        let record = self.user(user)?;
        if let Some(project) = &grant.project {
            ward_spec::validate_name(project)
                .map_err(|reason| AccessError::Invalid(format!("project: {reason}")))?;
            self.store.ensure_project(project, None)?;
        }
        let record_of_grant = GrantRecord {
            user: user.to_string(),
            project: grant
                .project
                .clone()
                .unwrap_or_else(|| EVERY_PROJECT.to_string()),
            role: grant.role.as_str().to_string(),
            capabilities: Capability::join(&grant.capabilities),
        };
        audited(admission, 200, |audit| {
            self.store.put_grant(&record_of_grant, audit)
        })?;
        self.view(record)
    }

    /// Takes back what `user` held in `project` (`None`: its grant of every project).
    pub fn revoke(
        &self,
        user: &str,
        project: Option<&str>,
        admission: Option<&Admission>,
    ) -> Result<UserView, AccessError> {
        let record = self.user(user)?;
        let deleted = audited(admission, 200, |audit| {
            self.store
                .delete_grant(user, project.unwrap_or(EVERY_PROJECT), audit)
        })?;
        if !deleted {
            return Err(AccessError::NotFound {
                id: format!("grant of {user} in {}", project.unwrap_or("every project")),
            });
        }
        self.view(record)
    }

    /// Checks the password and signs a session for one of the user's grants: the one of
    /// `project` (or of every project, narrowed to `project`), else the user's only grant,
    /// else its grant of every project.
    pub fn login(
        &self,
        name: &str,
        password: &str,
        project: Option<&str>,
        lifetime: Duration,
    ) -> Result<Session, AccessError> {
        let record = self.store.get_user(name)?;
        // Hash even for an unknown name, so timing does not tell which names exist.
        let stored = record
            .as_ref()
            .map(|record| record.password_hash.clone())
            .unwrap_or_else(|| {
                "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$u5ymUPxPSGCeBe0yVbOtfx3kt2HD4SPUhlmkNmbdcrc"
                    .to_string()
            });
        let verified = PasswordHash::new(&stored)
            .map(|hash| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &hash)
                    .is_ok()
            })
            .unwrap_or(false);
        let Some(record) = record.filter(|_| verified) else {
            return Err(wrong_login());
        };
        let view = self.view(record.clone())?;
        let session_project = match project {
            Some(project) => Some(project.to_string()),
            None => match view.grants.as_slice() {
                [only] => only.project.clone(),
                grants if grants.iter().any(|grant| grant.project.is_none()) => None,
                [] => None,
                grants => {
                    let names: Vec<&str> = grants
                        .iter()
                        .filter_map(|grant| grant.project.as_deref())
                        .collect();
                    return Err(AccessError::Invalid(format!(
                        "project: {name} holds roles in {}; name one with --project",
                        names.join(", ")
                    )));
                }
            },
        };
        let lifetime = lifetime.min(MAX_SESSION);
        let expires_at = SystemTime::now() + lifetime;
        let claims = SessionClaims {
            u: record.name.clone(),
            p: session_project,
            g: record.generation,
            e: to_millis(expires_at),
        };
        let principal = self.principal_of(&claims, &view)?.ok_or_else(|| {
            AccessError::Forbidden(format!(
                "{name} holds no role in {}; an admin grants one with 'ward user grant'",
                claims.p.as_deref().unwrap_or("every project")
            ))
        })?;
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&claims).unwrap_or_default());
        let signature = self.sign(payload.as_bytes());
        Ok(Session {
            token: format!("{SESSION_PREFIX}{payload}.{signature}"),
            expires_at,
            principal,
        })
    }

    /// The principal of a session token that is ours, unexpired, of a user whose password
    /// has not changed since and who still holds the grant.
    pub fn authenticate(&self, token: &str) -> Result<Option<Principal>, AccessError> {
        let Some((payload, signature)) = token
            .strip_prefix(SESSION_PREFIX)
            .and_then(|rest| rest.split_once('.'))
        else {
            return Ok(None);
        };
        let Ok(signature) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(signature)
        else {
            return Ok(None);
        };
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        if mac.verify_slice(&signature).is_err() {
            return Ok(None);
        }
        let Some(claims) = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<SessionClaims>(&bytes).ok())
        else {
            return Ok(None);
        };
        if claims.e <= to_millis(SystemTime::now()) {
            return Ok(None);
        }
        let Some(record) = self.store.get_user(&claims.u)? else {
            return Ok(None);
        };
        if record.generation != claims.g {
            return Ok(None);
        }
        let view = self.view(record)?;
        self.principal_of(&claims, &view)
    }

    /// The principal a session acts as: the grant of its project, else the grant of every
    /// project (narrowed to the session's project when it names one).
    fn principal_of(
        &self,
        claims: &SessionClaims,
        view: &UserView,
    ) -> Result<Option<Principal>, AccessError> {
        let grant = view
            .grants
            .iter()
            .find(|grant| grant.project == claims.p)
            .or_else(|| view.grants.iter().find(|grant| grant.project.is_none()));
        Ok(grant.map(|grant| Principal {
            actor: format!("user:{}", view.name),
            project: claims.p.clone(),
            role: grant.role,
            capabilities: grant.capabilities.clone(),
        }))
    }

    fn mac(&self) -> HmacSha256 {
        <HmacSha256 as Mac>::new_from_slice(&self.session_key).expect("HMAC takes any key length")
    }

    /// The anti-forgery token of a session: what a browser holding the session in a cookie
    /// sends back in a header with every change, which another site cannot read or make.
    pub fn csrf_token(&self, session_token: &str) -> String {
        self.sign(format!("csrf:{session_token}").as_bytes())
    }

    fn sign(&self, payload: &[u8]) -> String {
        let mut mac = self.mac();
        mac.update(payload);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    fn user(&self, name: &str) -> Result<UserRecord, AccessError> {
        self.store
            .get_user(name)?
            .ok_or_else(|| AccessError::NotFound {
                id: format!("user {name}"),
            })
    }

    fn view(&self, record: UserRecord) -> Result<UserView, AccessError> {
        let grants = self
            .store
            .list_grants(&record.name)?
            .iter()
            .map(grant_of)
            .collect::<Result<_, _>>()?;
        Ok(UserView {
            name: record.name,
            created_at: crate::time::from_millis(record.created_at_ms),
            grants,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn service() -> (tempfile::TempDir, UserService) {
        let directory = tempfile::tempdir().expect("temporary directory");
        let store = Store::open(&directory.path().join("ward.db")).expect("store");
        let users = UserService::open(
            std::sync::Arc::new(store),
            &directory.path().join("session.key"),
        )
        .expect("open");
        (directory, users)
    }

    fn grant(project: Option<&str>, role: Role) -> Grant {
        Grant {
            project: project.map(str::to_string),
            role,
            capabilities: BTreeSet::new(),
        }
    }

    #[test]
    fn a_session_acts_as_the_users_grant_until_it_expires_or_the_password_changes() {
        let (_directory, users) = service();
        users
            .set_password("alice", "correct horse", None)
            .expect("create");
        users
            .grant("alice", &grant(Some("web"), Role::Operator), None)
            .expect("grant");
        assert!(users
            .login("alice", "wrong horse!", None, DEFAULT_SESSION)
            .is_err());
        assert!(users
            .login("mallory", "correct horse", None, DEFAULT_SESSION)
            .is_err());
        let session = users
            .login("alice", "correct horse", None, DEFAULT_SESSION)
            .expect("login");
        let principal = users
            .authenticate(&session.token)
            .expect("check")
            .expect("valid");
        assert_eq!(principal.actor, "user:alice");
        assert_eq!(principal.project.as_deref(), Some("web"));
        assert_eq!(principal.role, Role::Operator);

        // A changed byte of the signature or the claims is refused.
        let mut forged = session.token.clone();
        let last = forged.pop().expect("a character");
        forged.push(if last == 'A' { 'B' } else { 'A' });
        assert!(users.authenticate(&forged).expect("check").is_none());

        // A revoked grant and a new password end the session.
        users.revoke("alice", Some("web"), None).expect("revoke");
        assert!(users.authenticate(&session.token).expect("check").is_none());
        users
            .grant("alice", &grant(Some("web"), Role::Viewer), None)
            .expect("grant");
        let session = users
            .login("alice", "correct horse", Some("web"), DEFAULT_SESSION)
            .expect("login");
        assert_eq!(session.principal.role, Role::Viewer);
        users
            .set_password("alice", "another horse", None)
            .expect("new password");
        assert!(users.authenticate(&session.token).expect("check").is_none());

        let expired = users
            .login("alice", "another horse", Some("web"), Duration::ZERO)
            .expect("login");
        assert!(users.authenticate(&expired.token).expect("check").is_none());
    }

    #[test]
    fn a_user_of_several_projects_names_one() {
        let (_directory, users) = service();
        users
            .set_password("bob", "long enough", None)
            .expect("create");
        users
            .grant("bob", &grant(Some("web"), Role::Viewer), None)
            .expect("grant");
        users
            .grant("bob", &grant(Some("db"), Role::Admin), None)
            .expect("grant");
        let refused = users
            .login("bob", "long enough", None, DEFAULT_SESSION)
            .expect_err("ambiguous");
        assert!(refused.to_string().contains("db, web"), "{refused}");
        let session = users
            .login("bob", "long enough", Some("db"), DEFAULT_SESSION)
            .expect("login");
        assert_eq!(session.principal.role, Role::Admin);
        assert!(users
            .login("bob", "long enough", Some("other"), DEFAULT_SESSION)
            .is_err());
        assert!(users.set_password("bob", "short", None).is_err());
    }
}
