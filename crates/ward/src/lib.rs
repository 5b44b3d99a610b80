//! Ward's command line and daemon, shared by the package's two executables: `ward` (every
//! command, linked at a fixed address so that each CLI call starts fast) and `wardd` (the same
//! program linked position-independent; `ward serve` hands over to it, so that the long-lived
//! daemon keeps address-space layout randomisation). [`main`] only parses the command line
//! and dispatches; the work happens in `commands` and `serve`.

mod cli;
mod commands;
mod compose;
mod config;
mod daemon_config;
mod failure;
mod output;
mod serve;
mod terminal;

use cli::Command;

/// Which of the package's executables is running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Executable {
    /// `ward`: not position-independent, which spares every start the relocation of tens of
    /// thousands of pointers (about a millisecond here).
    Ward,
    /// `wardd`: position-independent, for the daemon.
    Wardd,
}

pub fn main(executable: Executable) -> ! {
    // The daemon starts a monitor, `ward monitor --spare PADDING`, for every instance: it must
    // stay tiny (no async runtime, no client), so it skips building the command-line parser.
    if let Some(exit_code) =
        ward_runtime::monitor::run_from_command_line(std::env::args_os().skip(1))
    {
        std::process::exit(exit_code);
    }
    let command_line = cli::parse_command_line();
    if executable == Executable::Ward && matches!(command_line.command, Command::Serve(_)) {
        // Returns only where `wardd` cannot run; the daemon then runs here.
        serve::hand_over_to_wardd();
    }
    let exit_code = run_in_async_runtime(command_line.command, command_line.global_options);
    std::process::exit(exit_code)
}

fn run_in_async_runtime(command: Command, global_options: cli::ClientOptions) -> i32 {
    // The daemon serves many connections on every core; a client command does one thing at a
    // time and starts faster without worker threads.
    let mut builder = if matches!(command, Command::Serve(_)) {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}; check the process limits (ulimit -u)");
            return failure::FAILURE_EXIT_CODE;
        }
    };
    let result = runtime.block_on(commands::dispatch(command, global_options));
    // Threads still blocked on stdin (exec, top) must not hold up the exit.
    runtime.shutdown_background();
    failure::report(result)
}
