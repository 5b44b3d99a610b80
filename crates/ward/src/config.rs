//! How the client finds the daemon (CONTRACT §1): flags first, then the environment, then the
//! files the daemon wrote in its data directory, then defaults.
//!
//! Resolution is pure over an [`Environment`] snapshot and a file reader, so tests give it a map.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use crate::cli::{ClientOptions, OutputFormat};

pub const DEFAULT_HOST_URL: &str = "http://127.0.0.1:7380";
/// The file where the daemon writes the address it bound to (`host:port`).
pub const ADDRESS_FILE_NAME: &str = "ward.addr";
/// The file where the daemon writes its admin API key.
pub const ADMIN_TOKEN_FILE_NAME: &str = "admin.token";
/// The data directory of a daemon run as root.
pub const ROOT_DATA_DIR: &str = "/var/lib/ward";

/// The part of the process environment that resolution reads.
#[derive(Clone, Debug, Default)]
pub struct Environment {
    pub variables: BTreeMap<String, String>,
    /// Effective user id 0.
    pub is_root: bool,
}

impl Environment {
    pub fn current() -> Environment {
        let variables = std::env::vars_os()
            .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)))
            .collect();
        Environment {
            variables,
            is_root: nix::unistd::geteuid().is_root(),
        }
    }

    /// A variable's value; empty counts as unset.
    pub fn variable(&self, name: &str) -> Option<&str> {
        self.variables
            .get(name)
            .map(String::as_str)
            .filter(|value| !value.trim().is_empty())
    }
}

/// `--data-dir`, else `$WARD_DATA_DIR`, else `/var/lib/ward` as root, else `$XDG_DATA_HOME/ward`,
/// else `~/.local/share/ward`.
pub fn resolve_data_dir(flag: Option<&Path>, environment: &Environment) -> anyhow::Result<PathBuf> {
    if let Some(directory) = flag {
        return Ok(directory.to_path_buf());
    }
    if let Some(directory) = environment.variable("WARD_DATA_DIR") {
        return Ok(PathBuf::from(directory));
    }
    if environment.is_root {
        return Ok(PathBuf::from(ROOT_DATA_DIR));
    }
    // The XDG spec says to ignore relative values.
    if let Some(data_home) = environment
        .variable("XDG_DATA_HOME")
        .filter(|path| path.starts_with('/'))
    {
        return Ok(Path::new(data_home).join("ward"));
    }
    if let Some(home) = environment.variable("HOME") {
        return Ok(Path::new(home).join(".local/share/ward"));
    }
    anyhow::bail!(
        "cannot choose a data directory: $HOME is not set; pass --data-dir or set $WARD_DATA_DIR"
    )
}

/// Everything a client command needs to reach the daemon.
#[derive(Clone)]
pub struct ClientSettings {
    /// Like `http://127.0.0.1:7380`, without a trailing slash.
    pub base_url: String,
    pub token: Option<String>,
    /// The project named by `--project` or `$WARD_PROJECT`; otherwise the daemon takes the
    /// key's own project, or `default`.
    pub project: Option<String>,
    pub output: OutputFormat,
    /// Why there is no token, said when the daemon refuses the call.
    pub missing_token_reason: Option<String>,
    /// PEM certificates to trust for an `https` daemon: `$WARD_CA_CERT` (a file), else the
    /// daemon's own `DATA_DIR/tls/cert.pem` when it generated one.
    pub ca_certificate: Option<String>,
}

impl std::fmt::Debug for ClientSettings {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ClientSettings")
            .field("base_url", &self.base_url)
            .field("token", &self.token.as_ref().map(|_| "<hidden>"))
            .field("project", &self.project)
            .field("output", &self.output)
            .field("missing_token_reason", &self.missing_token_reason)
            .finish()
    }
}

/// Where the CLI keeps users' sessions: `$XDG_CONFIG_HOME/ward/sessions.json`, else
/// `~/.config/ward/sessions.json`.
pub fn session_file(environment: &Environment) -> Option<PathBuf> {
    if let Some(config_home) = environment
        .variable("XDG_CONFIG_HOME")
        .filter(|path| path.starts_with('/'))
    {
        return Some(Path::new(config_home).join("ward/sessions.json"));
    }
    environment
        .variable("HOME")
        .map(|home| Path::new(home).join(".config/ward/sessions.json"))
}

/// The unexpired session token this client keeps for `base_url`.
fn session_token(
    environment: &Environment,
    base_url: &str,
    read_file: ReadFile<'_>,
) -> Option<String> {
    let text = read_file(&session_file(environment)?).ok()?;
    let sessions: serde_json::Value = serde_json::from_str(&text).ok()?;
    let session = sessions.get(base_url)?;
    let expired = session
        .get("expires_at")
        .and_then(serde_json::Value::as_str)
        .and_then(|text| humantime::parse_rfc3339_weak(text).ok())
        .is_some_and(|expiry| expiry <= std::time::SystemTime::now());
    if expired {
        return None;
    }
    session
        .get("token")
        .and_then(serde_json::Value::as_str)
        .map(str::to_string)
}

/// Reads a whole file; tests pass a map lookup instead of the file system.
pub type ReadFile<'a> = &'a dyn Fn(&Path) -> io::Result<String>;

/// Resolves host, token, project and output format for a client command.
pub fn resolve_client_settings(
    options: &ClientOptions,
    environment: &Environment,
    read_file: ReadFile<'_>,
) -> ClientSettings {
    let data_dir = resolve_data_dir(options.data_dir.as_deref(), environment).ok();

    let base_url = match options
        .host
        .as_deref()
        .or_else(|| environment.variable("WARD_HOST"))
    {
        Some(host) => normalize_host_url(host),
        None => data_dir
            .as_ref()
            .and_then(|directory| read_file(&directory.join(ADDRESS_FILE_NAME)).ok())
            .map(|address| address.trim().to_string())
            .filter(|address| !address.is_empty())
            .map(|address| normalize_host_url(&address))
            .unwrap_or_else(|| DEFAULT_HOST_URL.to_string()),
    };

    let ca_certificate = match environment.variable("WARD_CA_CERT") {
        Some(path) => read_file(Path::new(path)).ok(),
        None if base_url.starts_with("https://") => data_dir
            .as_ref()
            .and_then(|directory| read_file(&directory.join("tls").join("cert.pem")).ok()),
        None => None,
    };

    let mut missing_token_reason = None;
    let flagged_token = options
        .token
        .as_deref()
        .or_else(|| environment.variable("WARD_TOKEN"))
        .map(|token| token.trim().to_string())
        .or_else(|| session_token(environment, &base_url, read_file));
    let token = match flagged_token {
        Some(token) => Some(token),
        None => match &data_dir {
            Some(directory) => {
                let token_file = directory.join(ADMIN_TOKEN_FILE_NAME);
                match read_file(&token_file) {
                    Ok(token) if !token.trim().is_empty() => Some(token.trim().to_string()),
                    Ok(_) => {
                        missing_token_reason = Some(format!("{} is empty", token_file.display()));
                        None
                    }
                    Err(error) if error.kind() == io::ErrorKind::NotFound => {
                        missing_token_reason =
                            Some(format!("{} does not exist", token_file.display()));
                        None
                    }
                    Err(error) => {
                        missing_token_reason =
                            Some(format!("cannot read {}: {error}", token_file.display()));
                        None
                    }
                }
            }
            None => {
                missing_token_reason =
                    Some("no data directory to read admin.token from".to_string());
                None
            }
        },
    };

    let project = options
        .project
        .clone()
        .or_else(|| environment.variable("WARD_PROJECT").map(str::to_string));

    ClientSettings {
        base_url,
        token,
        project,
        output: options.output.unwrap_or(OutputFormat::Table),
        missing_token_reason,
        ca_certificate,
    }
}

/// `127.0.0.1:7380` → `http://127.0.0.1:7380`; `tcp://` (Docker's spelling) → `http://`.
pub fn normalize_host_url(host: &str) -> String {
    let host = host.trim().trim_end_matches('/');
    if let Some(address) = host.strip_prefix("tcp://") {
        return format!("http://{address}");
    }
    if host.contains("://") {
        host.to_string()
    } else {
        format!("http://{host}")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn environment(variables: &[(&str, &str)], is_root: bool) -> Environment {
        Environment {
            variables: variables
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
            is_root,
        }
    }

    fn check_data_dir(
        flag: Option<&str>,
        variables: &[(&str, &str)],
        is_root: bool,
        expected: &str,
    ) {
        let resolved = resolve_data_dir(flag.map(Path::new), &environment(variables, is_root))
            .expect("resolves");
        assert_eq!(
            resolved,
            PathBuf::from(expected),
            "flag {flag:?}, env {variables:?}, root {is_root}"
        );
    }

    #[test]
    fn data_dir_resolution_follows_flag_env_root_xdg_home() {
        let home = ("HOME", "/home/ada");
        check_data_dir(
            Some("/flag"),
            &[("WARD_DATA_DIR", "/env"), home],
            true,
            "/flag",
        );
        check_data_dir(None, &[("WARD_DATA_DIR", "/env"), home], true, "/env");
        check_data_dir(
            None,
            &[("XDG_DATA_HOME", "/xdg"), home],
            true,
            "/var/lib/ward",
        );
        check_data_dir(None, &[("XDG_DATA_HOME", "/xdg"), home], false, "/xdg/ward");
        check_data_dir(
            None,
            &[("XDG_DATA_HOME", "relative"), home],
            false,
            "/home/ada/.local/share/ward",
        );
        check_data_dir(
            None,
            &[("WARD_DATA_DIR", ""), home],
            false,
            "/home/ada/.local/share/ward",
        );
        check_data_dir(None, &[home], false, "/home/ada/.local/share/ward");
    }

    #[test]
    fn data_dir_without_home_says_what_to_set() {
        let error = resolve_data_dir(None, &environment(&[], false)).expect_err("no home");
        assert!(error.to_string().contains("--data-dir"), "{error}");
    }

    fn check_client(
        options: ClientOptions,
        variables: &[(&str, &str)],
        files: &[(&str, &str)],
        expected_url: &str,
        expected_token: Option<&str>,
    ) -> ClientSettings {
        let files: HashMap<PathBuf, String> = files
            .iter()
            .map(|(path, contents)| (PathBuf::from(path), contents.to_string()))
            .collect();
        let read_file = |path: &Path| {
            files
                .get(path)
                .cloned()
                .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
        };
        let settings =
            resolve_client_settings(&options, &environment(variables, false), &read_file);
        assert_eq!(settings.base_url, expected_url, "{options:?} {variables:?}");
        assert_eq!(
            settings.token.as_deref(),
            expected_token,
            "{options:?} {variables:?}"
        );
        settings
    }

    #[test]
    fn client_resolution_follows_flag_env_files_default() {
        let data_dir = ("WARD_DATA_DIR", "/data");
        let files = [
            ("/data/ward.addr", "127.0.0.1:40123\n"),
            ("/data/admin.token", "  secret-from-file\n"),
        ];
        let flags = ClientOptions {
            host: Some("http://flag:1".to_string()),
            token: Some("flag-token".to_string()),
            ..ClientOptions::default()
        };
        let env_host = ("WARD_HOST", "env:2");
        let env_token = ("WARD_TOKEN", "env-token");

        check_client(
            flags,
            &[data_dir, env_host, env_token],
            &files,
            "http://flag:1",
            Some("flag-token"),
        );
        check_client(
            ClientOptions::default(),
            &[data_dir, env_host, env_token],
            &files,
            "http://env:2",
            Some("env-token"),
        );
        check_client(
            ClientOptions::default(),
            &[data_dir],
            &files,
            "http://127.0.0.1:40123",
            Some("secret-from-file"),
        );
        let settings = check_client(
            ClientOptions::default(),
            &[data_dir],
            &[],
            "http://127.0.0.1:7380",
            None,
        );
        assert_eq!(
            settings.missing_token_reason.as_deref(),
            Some("/data/admin.token does not exist")
        );
        assert_eq!(settings.project, None);
        assert_eq!(settings.output, OutputFormat::Table);
    }

    #[test]
    fn client_data_dir_flag_points_at_the_daemon_files() {
        let options = ClientOptions {
            data_dir: Some(PathBuf::from("/other")),
            ..ClientOptions::default()
        };
        let files = [
            ("/other/ward.addr", "[::1]:7400"),
            ("/other/admin.token", "other-token"),
        ];
        check_client(
            options,
            &[("WARD_DATA_DIR", "/data")],
            &files,
            "http://[::1]:7400",
            Some("other-token"),
        );
    }

    #[test]
    fn project_comes_from_flag_then_env() {
        let options = ClientOptions {
            project: Some("flag".to_string()),
            ..ClientOptions::default()
        };
        let variables = [("WARD_DATA_DIR", "/data"), ("WARD_PROJECT", "env")];
        assert_eq!(
            check_client(options, &variables, &[], DEFAULT_HOST_URL, None).project,
            Some("flag".to_string())
        );
        assert_eq!(
            check_client(
                ClientOptions::default(),
                &variables,
                &[],
                DEFAULT_HOST_URL,
                None
            )
            .project,
            Some("env".to_string())
        );
    }

    #[test]
    fn host_urls_get_a_scheme() {
        assert_eq!(
            normalize_host_url("127.0.0.1:7380"),
            "http://127.0.0.1:7380"
        );
        assert_eq!(
            normalize_host_url("tcp://10.0.0.1:7380"),
            "http://10.0.0.1:7380"
        );
        assert_eq!(
            normalize_host_url("https://ward.example/"),
            "https://ward.example"
        );
    }
}
