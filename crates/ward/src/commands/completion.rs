//! `ward completion SHELL`: the shell completion script, generated from the clap definition.

use clap::CommandFactory;

use crate::cli::{CommandLine, CompletionArgs};

pub fn run(arguments: &CompletionArgs) -> anyhow::Result<i32> {
    let mut script = Vec::new();
    clap_complete::generate(
        arguments.shell,
        &mut CommandLine::command(),
        "ward",
        &mut script,
    );
    crate::output::print_text(&String::from_utf8_lossy(&script))?;
    Ok(0)
}
