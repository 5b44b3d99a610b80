//! `ward completion SHELL`: the shell completion script, generated from the clap definition,
//! plus the names of the current project's workloads (from `ward ps -a -q`) wherever a command
//! takes a workload (`logs`, `stop`, `exec`, …).

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::{CommandLine, CompletionArgs};

/// The commands whose positional arguments are workload names.
const WORKLOAD_COMMANDS: &[&str] = &[
    "inspect", "logs", "start", "stop", "restart", "kill", "rm", "remove", "exec",
];

pub fn run(arguments: &CompletionArgs) -> anyhow::Result<i32> {
    let mut script = Vec::new();
    clap_complete::generate(
        arguments.shell,
        &mut CommandLine::command(),
        "ward",
        &mut script,
    );
    let script = with_workload_names(arguments.shell, &String::from_utf8_lossy(&script));
    crate::output::print_text(&script)?;
    Ok(0)
}

/// The generated script, taught to offer workload names.
fn with_workload_names(shell: Shell, script: &str) -> String {
    let commands = WORKLOAD_COMMANDS.join(" ");
    match shell {
        Shell::Bash => {
            // Wraps the generated function: a workload command's positional words are names.
            let registration = script
                .find("\nif [[ \"${BASH_VERSINFO[0]}\"")
                .unwrap_or(script.len());
            let (functions, _) = script.split_at(registration);
            format!(
                r#"{functions}
_ward_workloads() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" word command="" skip=0 i
    for ((i = 1; i < COMP_CWORD; i++)); do
        word="${{COMP_WORDS[i]}}"
        if ((skip)); then skip=0; continue; fi
        case "$word" in
            --) [[ -n "$command" ]] && {{ _ward "$@"; return; }} ;;
            --host|--token|--data-dir|--project|-o|--output|--replica|--tail|--since|-t|--time|-s|--signal|-f|--format|-e|--env|-u|--user|-w|--workdir) skip=1 ;;
            -*) ;;
            *) [[ -z "$command" ]] && command="$word" ;;
        esac
    done
    case " {commands} " in
        *" $command "*)
            if [[ -n "$command" && "$cur" != -* ]]; then
                COMPREPLY=( $(compgen -W "$(ward ps -a -q 2>/dev/null)" -- "$cur") )
                return 0
            fi ;;
    esac
    _ward "$@"
}}

complete -F _ward_workloads -o bashdefault -o default ward
"#
            )
        }
        Shell::Zsh => {
            let completer = "_ward_workloads() {\n    local -a names\n    names=(${(f)\"$(ward ps -a -q 2>/dev/null)\"})\n    compadd -a names\n}\n\n";
            let script = script
                .replace("'*::workloads:_default'", "'*::workloads:_ward_workloads'")
                .replace("':workload:_default'", "':workload:_ward_workloads'");
            // Defined before the generated function, which the script then calls.
            match script.find("_ward() {") {
                Some(start) => format!("{}{completer}{}", &script[..start], &script[start..]),
                None => script,
            }
        }
        Shell::Fish => format!(
            "{script}\ncomplete -c ward -n \"__fish_ward_using_subcommand {commands}\" -f -a \"(ward ps -a -q 2>/dev/null)\" -d workload\n"
        ),
        _ => script.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generated(shell: Shell) -> String {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut CommandLine::command(), "ward", &mut script);
        with_workload_names(shell, &String::from_utf8_lossy(&script))
    }

    #[test]
    fn every_shell_offers_workload_names_where_a_command_takes_one() {
        let bash = generated(Shell::Bash);
        assert!(bash.contains("complete -F _ward_workloads"), "bash");
        assert!(
            !bash.contains("complete -F _ward -o"),
            "the wrapper replaces the registration"
        );
        let zsh = generated(Shell::Zsh);
        assert!(zsh.contains("'*::workloads:_ward_workloads'"), "zsh: names");
        assert!(zsh.contains("':workload:_ward_workloads'"), "zsh: one name");
        assert!(
            !zsh.contains("workloads:_default"),
            "zsh: every workload argument"
        );
        let fish = generated(Shell::Fish);
        assert!(
            fish.contains("__fish_ward_using_subcommand inspect logs"),
            "fish"
        );
    }
}
