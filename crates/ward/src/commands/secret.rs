//! `ward secret set|ls|get|rm`.

use std::io::{IsTerminal, Read, Write};

use anyhow::{bail, Context as _};
use ward_client::wire::SecretValue;

use crate::cli::SecretCommand;
use crate::commands::Context;
use crate::output;
use crate::terminal::TerminalModeGuard;

pub async fn run(context: &Context, command: SecretCommand) -> anyhow::Result<i32> {
    match command {
        SecretCommand::Set { name, from_file } => {
            let bytes = match from_file {
                Some(path) => std::fs::read(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?,
                None if std::io::stdin().is_terminal() => read_hidden(&name)?.into_bytes(),
                None => {
                    let mut bytes = Vec::new();
                    std::io::stdin()
                        .read_to_end(&mut bytes)
                        .context("cannot read the value from standard input")?;
                    // `echo value | ward secret set NAME` means the value, not its newline.
                    if bytes.ends_with(b"\n") {
                        bytes.pop();
                    }
                    bytes
                }
            };
            let value = match String::from_utf8(bytes) {
                Ok(text) => SecretValue {
                    value: Some(text),
                    value_base64: None,
                },
                Err(error) => SecretValue {
                    value: None,
                    value_base64: Some(base64_encode(error.as_bytes())),
                },
            };
            let secret = context.client.set_secret(&name, &value).await?;
            if context.json() {
                output::print_json(&secret)?;
            } else {
                output::print_line(&secret.name)?;
            }
        }
        SecretCommand::Ls => {
            let secrets = context.client.list_secrets().await?;
            if context.json() {
                output::print_json(&secrets)?;
                return Ok(0);
            }
            let rows: Vec<Vec<String>> = secrets
                .iter()
                .map(|secret| {
                    vec![
                        secret.name.clone(),
                        output::format_timestamp(&secret.created_at),
                        output::format_timestamp(&secret.updated_at),
                    ]
                })
                .collect();
            output::print_text(&output::render_table(
                &["NAME", "CREATED", "UPDATED"],
                &rows,
            ))?;
        }
        SecretCommand::Get { name } => {
            let value = context.client.secret_value(&name).await?;
            if context.json() {
                output::print_json(&value)?;
                return Ok(0);
            }
            let mut stdout = std::io::stdout().lock();
            match (value.value, value.value_base64) {
                (Some(text), _) => stdout.write_all(text.as_bytes())?,
                (None, Some(encoded)) => bail!(
                    "secret {name} is binary; print it with -o json (value_base64: {} bytes of base64)",
                    encoded.len()
                ),
                (None, None) => bail!("the daemon sent no value for secret {name}"),
            }
            stdout.flush()?;
        }
        SecretCommand::Rm { names } => {
            for name in &names {
                let secret = context.client.remove_secret(name).await?;
                output::print_line(&secret.name)?;
            }
        }
    }
    Ok(0)
}

/// Asks for the value on the terminal without echoing it.
fn read_hidden(name: &str) -> anyhow::Result<String> {
    eprint!("Value of {name}: ");
    let guard = TerminalModeGuard::no_echo().context("cannot turn off the terminal's echo")?;
    let mut line = String::new();
    let read = std::io::stdin().read_line(&mut line);
    drop(guard);
    eprintln!();
    read.context("cannot read from the terminal")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
