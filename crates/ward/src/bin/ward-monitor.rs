//! `ward-monitor`: the program every instance's monitor runs, a small position-independent
//! build of the monitor alone, so that a root process that reads workload output keeps
//! address-space layout randomisation and few private pages (see ARCHITECTURE.md).

fn main() {
    match ward_runtime::monitor::run_from_command_line(std::env::args_os().skip(1)) {
        Some(exit_code) => std::process::exit(exit_code),
        None => {
            eprintln!("usage: ward-monitor monitor --spare PADDING (started by the Ward daemon)");
            std::process::exit(2);
        }
    }
}
