//! `ward start | stop | restart | kill | rm`: act on every name, print each one that succeeded (like
//! Docker), then fail with the first error.

use ward_client::wire::WorkloadDocument;
use ward_client::ClientError;

use crate::commands::Context;
use crate::output;

#[derive(Clone, Debug)]
pub enum Action {
    Start,
    /// With the seconds between SIGTERM and SIGKILL, when given.
    Stop(Option<u64>),
    Restart,
    /// With the signal, when not SIGKILL.
    Kill(Option<String>),
}

pub async fn act(context: &Context, names: &[String], action: Action) -> anyhow::Result<i32> {
    let mut documents: Vec<WorkloadDocument> = Vec::with_capacity(names.len());
    let mut first_error = None;
    for name in names {
        let done = match &action {
            Action::Start => context.client.workload_action(name, "start").await,
            Action::Stop(timeout) => context.client.stop_workload(name, *timeout).await,
            Action::Restart => context.client.workload_action(name, "restart").await,
            Action::Kill(signal) => context.client.kill_workload(name, signal.as_deref()).await,
        };
        match done {
            Ok(document) => {
                if !context.json() {
                    output::print_line(name)?;
                }
                documents.push(document);
            }
            Err(error) => {
                let unreachable = matches!(error, ClientError::Unreachable { .. });
                first_error.get_or_insert(error);
                if unreachable {
                    break;
                }
            }
        }
    }
    if context.json() && !documents.is_empty() {
        output::print_json_one_or_many(&documents)?;
    }
    finish(first_error)
}

/// `rm`; a running workload needs `force`, which the daemon checks.
pub async fn remove(context: &Context, names: &[String], force: bool) -> anyhow::Result<i32> {
    let mut removed: Vec<&str> = Vec::with_capacity(names.len());
    let mut first_error = None;
    for name in names {
        match context.client.delete_workload(name, force).await {
            Ok(()) => {
                if !context.json() {
                    output::print_line(name)?;
                }
                removed.push(name);
            }
            Err(error) => {
                let unreachable = matches!(error, ClientError::Unreachable { .. });
                first_error.get_or_insert(error);
                if unreachable {
                    break;
                }
            }
        }
    }
    if context.json() && !removed.is_empty() {
        output::print_json(&removed)?;
    }
    finish(first_error)
}

fn finish(first_error: Option<ClientError>) -> anyhow::Result<i32> {
    match first_error {
        Some(error) => Err(error.into()),
        None => Ok(0),
    }
}
