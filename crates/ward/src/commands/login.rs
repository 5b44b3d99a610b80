//! `ward login REGISTRY` and `ward logout REGISTRY`: registry logins the daemon keeps for the
//! pulls of a project; `ward login -u USER` and `ward logout`: a Ward user's session, kept
//! for this client; `ward user`: users and their roles.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{bail, Context as _};
use ward_client::wire::LoginRequest;

use crate::cli::{LoginArgs, LogoutArgs, UserCommand};
use crate::commands::Context;
use crate::output;
use crate::terminal::TerminalModeGuard;

pub async fn login(context: &Context, arguments: LoginArgs) -> anyhow::Result<i32> {
    let Some(registry) = arguments.registry.clone() else {
        return user_login(context, arguments).await;
    };
    let (username, password) = credentials(&arguments)?;
    let login = context
        .client
        .login(&LoginRequest {
            registry,
            username,
            password,
            plain_http: arguments.plain_http,
        })
        .await?;
    if context.json() {
        output::print_json(&login)?;
    } else {
        output::print_line(&format!(
            "Logged in to {} as {}",
            login.registry, login.username
        ))?;
    }
    Ok(0)
}

pub async fn logout(context: &Context, arguments: LogoutArgs) -> anyhow::Result<i32> {
    let Some(registry) = arguments.registry else {
        let removed = sessions::forget(&context.settings.base_url)?;
        output::print_line(if removed {
            "Logged out"
        } else {
            "No session to end"
        })?;
        return Ok(0);
    };
    let login = context.client.logout(&registry).await?;
    if context.json() {
        output::print_json(&login)?;
    } else {
        output::print_line(&format!("Removed the login to {}", login.registry))?;
    }
    Ok(0)
}

/// Asks on the terminal; with `hidden`, the answer is not echoed.
fn prompt(question: &str, hidden: bool) -> anyhow::Result<String> {
    let mut stderr = std::io::stderr();
    write!(stderr, "{question}")?;
    stderr.flush()?;
    let guard = if hidden {
        Some(TerminalModeGuard::no_echo().context("cannot turn off the terminal's echo")?)
    } else {
        None
    };
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    drop(guard);
    if hidden {
        writeln!(stderr)?;
    }
    read.context("cannot read from the terminal")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// One line of standard input, without its line ending: a password piped in.
fn stdin_line() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from standard input")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// Reads the username (flag or prompt) and password (stdin or prompt) of a login.
fn credentials(arguments: &LoginArgs) -> anyhow::Result<(String, String)> {
    let interactive = std::io::stdin().is_terminal();
    let username = match &arguments.username {
        Some(username) => username.clone(),
        None if interactive && !arguments.password_stdin => prompt("Username: ", false)?,
        None => bail!("give the username with --username (standard input is not a terminal)"),
    };
    let password = if arguments.password_stdin {
        stdin_line()?
    } else {
        match &arguments.password {
            Some(password) => password.clone(),
            None if interactive => prompt("Password: ", true)?,
            None => {
                bail!("give the password with --password-stdin (standard input is not a terminal)")
            }
        }
    };
    Ok((username, password))
}

/// Logs in to the daemon as a user and keeps the session for this daemon's address.
async fn user_login(context: &Context, arguments: LoginArgs) -> anyhow::Result<i32> {
    let (username, password) = credentials(&arguments)?;
    let session = context
        .client
        .login_user(&ward_client::wire::SessionRequest {
            username,
            password,
            project: context.settings.project.clone(),
            expires_in: arguments.expires.clone(),
        })
        .await?;
    sessions::remember(&context.settings.base_url, &session)?;
    if context.json() {
        let mut shown = serde_json::to_value(&session)?;
        shown["token"] = serde_json::Value::from("<kept in the sessions file>");
        output::print_json(&shown)?;
    } else {
        output::print_line(&format!(
            "Logged in as {} ({} of {}) until {}",
            session.username,
            session.role,
            session.project.as_deref().unwrap_or("every project"),
            output::format_timestamp(&session.expires_at)
        ))?;
    }
    Ok(0)
}

/// `ward user create|ls|rm|grant|revoke`.
pub async fn user(context: &Context, command: UserCommand) -> anyhow::Result<i32> {
    let shown = match command {
        UserCommand::Create { name } => {
            let password = if std::io::stdin().is_terminal() {
                let first = prompt("Password: ", true)?;
                if prompt("Again: ", true)? != first {
                    bail!("the two passwords differ; run 'ward user create {name}' again");
                }
                first
            } else {
                stdin_line()?
            };
            vec![context.client.set_user(&name, &password).await?]
        }
        UserCommand::Ls => context.client.list_users().await?,
        UserCommand::Rm { names } => {
            for name in &names {
                context.client.remove_user(name).await?;
                output::print_line(name)?;
            }
            return Ok(0);
        }
        UserCommand::Grant {
            name,
            role,
            capabilities,
            all_projects,
        } => {
            let project = if all_projects {
                None
            } else {
                Some(context.settings.project.clone().ok_or_else(|| {
                    anyhow::anyhow!("name the project with --project, or give --all-projects")
                })?)
            };
            let grant = ward_client::wire::GrantDocument {
                project,
                role,
                capabilities,
            };
            vec![context.client.grant(&name, &grant).await?]
        }
        UserCommand::Revoke { name, all_projects } => {
            let project = if all_projects {
                None
            } else {
                Some(context.settings.project.clone().ok_or_else(|| {
                    anyhow::anyhow!("name the project with --project, or give --all-projects")
                })?)
            };
            vec![
                context
                    .client
                    .revoke_grant(&name, project.as_deref())
                    .await?,
            ]
        }
    };
    if context.json() {
        output::print_json(&shown)?;
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = shown
        .iter()
        .map(|user| {
            let grants: Vec<String> = user
                .grants
                .iter()
                .map(|grant| {
                    let mut text =
                        format!("{}:{}", grant.project.as_deref().unwrap_or("*"), grant.role);
                    if !grant.capabilities.is_empty() {
                        text.push_str(&format!("+{}", grant.capabilities.join("+")));
                    }
                    text
                })
                .collect();
            vec![
                user.name.clone(),
                grants.join(" "),
                output::format_timestamp(&user.created_at),
            ]
        })
        .collect();
    output::print_text(&output::render_table(&["NAME", "ROLES", "CREATED"], &rows))?;
    Ok(0)
}

/// Sessions of this client, per daemon address, in a file only its user reads.
pub mod sessions {
    use std::collections::BTreeMap;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    use std::path::PathBuf;

    use anyhow::Context as _;
    use ward_client::wire::SessionDocument;

    use crate::config::{session_file, Environment};

    fn path() -> anyhow::Result<PathBuf> {
        session_file(&Environment::current())
            .context("cannot find a place for the sessions file: $HOME is not set")
    }

    fn read(path: &PathBuf) -> BTreeMap<String, serde_json::Value> {
        std::fs::read(path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    fn write(path: &PathBuf, sessions: &BTreeMap<String, serde_json::Value>) -> anyhow::Result<()> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let temporary = path.with_extension("json.new");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)
            .with_context(|| format!("cannot write {}", temporary.display()))?;
        file.write_all(&serde_json::to_vec_pretty(sessions)?)?;
        std::fs::rename(&temporary, path)
            .with_context(|| format!("cannot write {}", path.display()))
    }

    pub fn remember(base_url: &str, session: &SessionDocument) -> anyhow::Result<()> {
        let path = path()?;
        let mut sessions = read(&path);
        sessions.insert(
            base_url.to_string(),
            serde_json::json!({
                "token": session.token,
                "username": session.username,
                "expires_at": session.expires_at,
            }),
        );
        write(&path, &sessions)
    }

    /// Ends the session with `base_url`; false when there was none.
    pub fn forget(base_url: &str) -> anyhow::Result<bool> {
        let path = path()?;
        let mut sessions = read(&path);
        if sessions.remove(base_url).is_none() {
            return Ok(false);
        }
        write(&path, &sessions)?;
        Ok(true)
    }
}
