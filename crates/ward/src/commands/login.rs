//! `ward login REGISTRY` and `ward logout REGISTRY`: registry logins the daemon keeps for the
//! pulls of a project.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{bail, Context as _};
use ward_client::wire::LoginRequest;

use crate::cli::{LoginArgs, LogoutArgs};
use crate::commands::Context;
use crate::output;
use crate::terminal::TerminalModeGuard;

pub async fn login(context: &Context, arguments: LoginArgs) -> anyhow::Result<i32> {
    let interactive = std::io::stdin().is_terminal();
    let username = match arguments.username {
        Some(username) => username,
        None if interactive && !arguments.password_stdin => prompt("Username: ", false)?,
        None => bail!("give the username with --username (standard input is not a terminal)"),
    };
    let password = if arguments.password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        line.trim_end_matches(['\r', '\n']).to_string()
    } else {
        match arguments.password {
            Some(password) => password,
            None if interactive => prompt("Password: ", true)?,
            None => {
                bail!("give the password with --password-stdin (standard input is not a terminal)")
            }
        }
    };
    let login = context
        .client
        .login(&LoginRequest {
            registry: arguments.registry,
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
    let login = context.client.logout(&arguments.registry).await?;
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
