//! Turning any failure into the one `error: ` line of CONTRACT §1, with what to do about it.

use std::io;

use ward_client::ClientError;

use crate::config::ClientSettings;

/// Exit status of a command that failed.
pub const FAILURE_EXIT_CODE: i32 = 1;

/// The exit status for a command's result, printing the error line when there is one.
/// A closed stdout (`ward logs web | head -1`) ends the command quietly and successfully.
pub fn report(result: anyhow::Result<i32>) -> i32 {
    match result {
        Ok(exit_code) => exit_code,
        Err(error) if is_broken_pipe(&error) => 0,
        Err(error) => {
            eprintln!("error: {}", one_line(&format!("{error:#}")));
            FAILURE_EXIT_CODE
        }
    }
}

/// Rewrites a client error into what the user should read, with the daemon's address and the
/// way to fix it; other errors pass through.
pub fn explain(error: anyhow::Error, settings: &ClientSettings) -> anyhow::Error {
    let Some(client_error) = error.downcast_ref::<ClientError>() else {
        return error;
    };
    match client_error {
        ClientError::Unreachable { reason, .. } => anyhow::anyhow!(
            "cannot reach the Ward daemon at {}: {reason}; start it with 'ward serve', or point --host or $WARD_HOST at a running daemon",
            settings.base_url
        ),
        ClientError::Api { status: 401, message, .. } => match &settings.missing_token_reason {
            Some(reason) => anyhow::anyhow!(
                "{message}; this client found no key ({reason}): pass --token, set $WARD_TOKEN or point --data-dir at the daemon's data directory"
            ),
            None => error,
        },
        _ => error,
    }
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|io_error| io_error.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// Collapses line breaks and runs of blanks so the message stays one line.
fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::OutputFormat;

    fn settings(missing_token_reason: Option<&str>) -> ClientSettings {
        ClientSettings {
            base_url: "http://127.0.0.1:1".to_string(),
            token: None,
            project: None,
            output: OutputFormat::Table,
            missing_token_reason: missing_token_reason.map(str::to_string),
            ca_certificate: None,
        }
    }

    #[test]
    fn unreachable_daemon_says_how_to_start_it() {
        let error = ClientError::Unreachable {
            url: "http://127.0.0.1:1/api/v1/workloads".to_string(),
            reason: "Connection refused (os error 111)".to_string(),
        };
        let explained = explain(error.into(), &settings(None)).to_string();
        assert_eq!(
            explained,
            "cannot reach the Ward daemon at http://127.0.0.1:1: Connection refused (os error 111); start it with 'ward serve', or point --host or $WARD_HOST at a running daemon"
        );
    }

    #[test]
    fn unauthorized_without_a_key_says_where_it_looked() {
        let error = ClientError::Api {
            status: 401,
            code: "unauthorized".to_string(),
            message: "missing API key".to_string(),
            field: None,
        };
        let explained = explain(
            error.into(),
            &settings(Some("/data/admin.token does not exist")),
        )
        .to_string();
        assert!(
            explained.starts_with(
                "missing API key; this client found no key (/data/admin.token does not exist)"
            ),
            "{explained}"
        );
    }

    #[test]
    fn api_errors_keep_the_daemon_message() {
        let error = ClientError::Api {
            status: 404,
            code: "not_found".to_string(),
            message: "workload \"web\" not found".to_string(),
            field: None,
        };
        assert_eq!(
            explain(error.into(), &settings(None)).to_string(),
            "workload \"web\" not found"
        );
    }

    #[test]
    fn messages_stay_on_one_line() {
        assert_eq!(one_line("first\n  second\tthird "), "first second third");
    }
}
