//! Registry credentials per project (`ward login REGISTRY`): one JSON file that only the
//! daemon's user can read, as Docker's `config.json` and Podman's `auth.json` are, and the
//! check that a username and password open a registry before they are kept.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::pull::Credentials;

/// How long a login check may wait on the registry.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("invalid registry {registry:?}: {reason}")]
    Registry { registry: String, reason: String },
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a credentials file: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("registry {registry}: {message}")]
    Unreachable { registry: String, message: String },
    #[error("registry {registry} refused the username and password (HTTP {status})")]
    Refused { registry: String, status: u16 },
}

/// The registry part of an image reference or a login argument, as Ward keys credentials:
/// lower-case `host[:port]`, with Docker Hub's several names folded into `docker.io`.
/// Accepts a URL (`https://ghcr.io/v2/`) as `docker login` does.
pub fn canonical_registry(input: &str) -> Result<String, CredentialError> {
    let invalid = |reason: &str| CredentialError::Registry {
        registry: input.to_string(),
        reason: reason.to_string(),
    };
    let trimmed = input.trim();
    let without_scheme = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"))
        .unwrap_or(trimmed);
    let host = without_scheme
        .split('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if host.is_empty() {
        return Err(invalid(
            "give a registry host such as ghcr.io or 127.0.0.1:5000",
        ));
    }
    let allowed = |byte: u8| byte.is_ascii_alphanumeric() || b".-:[]".contains(&byte);
    if !host.bytes().all(allowed) {
        return Err(invalid(
            "a registry is a host name or address with an optional :port",
        ));
    }
    Ok(match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_string()
        }
        _ => host,
    })
}

/// Whether `registry` (`host[:port]`) is this machine, where Ward speaks plain HTTP unless told
/// otherwise, as Docker does for 127.0.0.0/8.
pub fn is_loopback_registry(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => registry.split(':').next().unwrap_or_default(),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback())
}

#[derive(Clone, Default, Serialize, Deserialize)]
struct CredentialsFile {
    /// Project → registry → login.
    #[serde(default)]
    projects: BTreeMap<String, BTreeMap<String, StoredLogin>>,
}

#[derive(Clone, Serialize, Deserialize)]
struct StoredLogin {
    username: String,
    password: String,
}

/// The logins of every project, in one file of mode 0600.
#[derive(Debug)]
pub struct CredentialStore {
    path: PathBuf,
    /// Serialises read-modify-write cycles of the file within the daemon.
    write_lock: Mutex<()>,
}

impl CredentialStore {
    pub fn open_at(path: impl Into<PathBuf>) -> CredentialStore {
        CredentialStore {
            path: path.into(),
            write_lock: Mutex::new(()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The login of `project` for `registry` (canonical), if there is one.
    pub fn get(
        &self,
        project: &str,
        registry: &str,
    ) -> Result<Option<Credentials>, CredentialError> {
        Ok(self
            .read()?
            .projects
            .get(project)
            .and_then(|logins| logins.get(registry))
            .map(|login| Credentials {
                username: login.username.clone(),
                password: login.password.clone(),
            }))
    }

    /// `(registry, username)` of every login of `project`.
    pub fn list(&self, project: &str) -> Result<Vec<(String, String)>, CredentialError> {
        Ok(self
            .read()?
            .projects
            .get(project)
            .map(|logins| {
                logins
                    .iter()
                    .map(|(registry, login)| (registry.clone(), login.username.clone()))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Keeps `credentials` for `registry` in `project`, replacing an earlier login.
    pub fn set(
        &self,
        project: &str,
        registry: &str,
        credentials: &Credentials,
    ) -> Result<(), CredentialError> {
        let _guard = self
            .write_lock
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let mut file = self.read()?;
        file.projects
            .entry(project.to_string())
            .or_default()
            .insert(
                registry.to_string(),
                StoredLogin {
                    username: credentials.username.clone(),
                    password: credentials.password.clone(),
                },
            );
        self.write(&file)
    }

    /// Forgets the login of `project` for `registry`; false when there was none.
    pub fn remove(&self, project: &str, registry: &str) -> Result<bool, CredentialError> {
        let _guard = self
            .write_lock
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let mut file = self.read()?;
        let Some(logins) = file.projects.get_mut(project) else {
            return Ok(false);
        };
        if logins.remove(registry).is_none() {
            return Ok(false);
        }
        if logins.is_empty() {
            file.projects.remove(project);
        }
        self.write(&file)?;
        Ok(true)
    }

    fn read(&self) -> Result<CredentialsFile, CredentialError> {
        match fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|error| CredentialError::Corrupt {
                path: self.path.clone(),
                reason: error.to_string(),
            }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                Ok(CredentialsFile::default())
            }
            Err(source) => Err(CredentialError::Io {
                action: "read",
                path: self.path.clone(),
                source,
            }),
        }
    }

    /// Writes a new file of mode 0600 beside the old one and renames it into place, so a crash
    /// leaves the old logins or the new ones, never half of either.
    fn write(&self, file: &CredentialsFile) -> Result<(), CredentialError> {
        let io_error = |action, source| CredentialError::Io {
            action,
            path: self.path.clone(),
            source,
        };
        let bytes = serde_json::to_vec_pretty(file)
            .map_err(|error| io_error("serialise", std::io::Error::other(error.to_string())))?;
        let directory = self.path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(directory)
            .map_err(|source| io_error("create the directory of", source))?;
        let temporary = self.path.with_extension("json.new");
        let mut out = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)
            .map_err(|source| io_error("create", source))?;
        out.write_all(&bytes)
            .and_then(|()| out.sync_all())
            .map_err(|source| io_error("write", source))?;
        fs::rename(&temporary, &self.path).map_err(|source| io_error("replace", source))
    }
}

/// Checks that `credentials` open `registry` the way `docker login` does: `GET /v2/`, then,
/// when the registry sends clients to a token service, a token request with the credentials.
/// A registry that asks for no credentials accepts any.
pub async fn check_login(
    registry: &str,
    credentials: &Credentials,
    plain_http: bool,
) -> Result<(), CredentialError> {
    let host = if registry == "docker.io" {
        "registry-1.docker.io"
    } else {
        registry
    };
    let scheme = if plain_http { "http" } else { "https" };
    let unreachable = |error: reqwest::Error| CredentialError::Unreachable {
        registry: registry.to_string(),
        message: root_cause(&error),
    };
    let client = reqwest::Client::builder()
        .timeout(LOGIN_TIMEOUT)
        .build()
        .map_err(unreachable)?;
    let url = format!("{scheme}://{host}/v2/");
    let response = client.get(&url).send().await.map_err(unreachable)?;
    if response.status().is_success() {
        return Ok(());
    }
    let refused = |status: reqwest::StatusCode| CredentialError::Refused {
        registry: registry.to_string(),
        status: status.as_u16(),
    };
    if response.status() != reqwest::StatusCode::UNAUTHORIZED {
        return Err(CredentialError::Unreachable {
            registry: registry.to_string(),
            message: format!("GET {url} answered HTTP {}", response.status().as_u16()),
        });
    }
    let challenge = response
        .headers()
        .get(reqwest::header::WWW_AUTHENTICATE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let request = match bearer_challenge(&challenge) {
        Some((realm, service)) => {
            let mut query = vec![("account", credentials.username.as_str())];
            if let Some(service) = &service {
                query.push(("service", service.as_str()));
            }
            client.get(realm).query(&query)
        }
        None => client.get(&url),
    };
    let answer = request
        .basic_auth(&credentials.username, Some(&credentials.password))
        .send()
        .await
        .map_err(unreachable)?;
    if answer.status().is_success() {
        Ok(())
    } else {
        Err(refused(answer.status()))
    }
}

/// `realm` and `service` of a `Bearer realm="…",service="…"` challenge.
fn bearer_challenge(header: &str) -> Option<(String, Option<String>)> {
    let (scheme, parameters) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut realm = None;
    let mut service = None;
    let mut rest = parameters.trim();
    while let Some((name, after)) = rest.split_once('=') {
        let name = name
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, remainder) = match after.strip_prefix('"') {
            Some(quoted) => {
                let end = quoted.find('"')?;
                (&quoted[..end], &quoted[end + 1..])
            }
            None => {
                let end = after.find(',').unwrap_or(after.len());
                (&after[..end], &after[end..])
            }
        };
        match name.as_str() {
            "realm" => realm = Some(value.to_string()),
            "service" => service = Some(value.to_string()),
            _ => {}
        }
        rest = remainder.trim_start_matches(',').trim();
    }
    Some((realm?, service))
}

fn root_cause(error: &dyn std::error::Error) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_are_keyed_the_way_docker_names_them() {
        let check = |input: &str, expected: &str| {
            assert_eq!(canonical_registry(input).expect(input), expected, "{input}");
        };
        check("ghcr.io", "ghcr.io");
        check("https://GHCR.io/v2/", "ghcr.io");
        check("index.docker.io", "docker.io");
        check("https://index.docker.io/v1/", "docker.io");
        check("registry-1.docker.io", "docker.io");
        check("127.0.0.1:5000", "127.0.0.1:5000");
        check("[::1]:5000", "[::1]:5000");
        assert!(canonical_registry("").is_err());
        assert!(canonical_registry("bad host").is_err());
        assert!(canonical_registry("user@host").is_err());
    }

    #[test]
    fn loopback_registries_are_recognised() {
        for registry in [
            "localhost:5000",
            "127.0.0.1:5000",
            "127.1.2.3",
            "[::1]:5000",
        ] {
            assert!(is_loopback_registry(registry), "{registry}");
        }
        for registry in [
            "docker.io",
            "10.0.0.1:5000",
            "ghcr.io",
            "localhost.example.com",
        ] {
            assert!(!is_loopback_registry(registry), "{registry}");
        }
    }

    #[test]
    fn bearer_challenges_give_realm_and_service() {
        assert_eq!(
            bearer_challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io""#
            ),
            Some((
                "https://auth.docker.io/token".to_string(),
                Some("registry.docker.io".to_string())
            ))
        );
        assert_eq!(
            bearer_challenge(r#"Bearer realm="https://ghcr.io/token""#),
            Some(("https://ghcr.io/token".to_string(), None))
        );
        assert_eq!(bearer_challenge(r#"Basic realm="registry""#), None);
        assert_eq!(bearer_challenge("Bearer service=x"), None);
    }

    #[test]
    fn logins_are_kept_per_project_in_a_private_file() {
        use std::os::unix::fs::PermissionsExt;
        let directory = tempfile::tempdir().expect("temporary directory");
        let store = CredentialStore::open_at(directory.path().join("registries.json"));
        let alice = Credentials {
            username: "alice".into(),
            password: "s3cret".into(),
        };
        store.set("default", "ghcr.io", &alice).expect("set");
        let mode = fs::metadata(store.path())
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let found = store
            .get("default", "ghcr.io")
            .expect("get")
            .expect("a login");
        assert_eq!(
            (found.username.as_str(), found.password.as_str()),
            ("alice", "s3cret")
        );
        assert!(store.get("other", "ghcr.io").expect("get").is_none());
        assert_eq!(
            store.list("default").expect("list"),
            vec![("ghcr.io".to_string(), "alice".to_string())]
        );
        assert!(store.remove("default", "ghcr.io").expect("remove"));
        assert!(!store.remove("default", "ghcr.io").expect("remove again"));
        assert!(store.get("default", "ghcr.io").expect("get").is_none());
    }
}
