//! The monitor alone, as `ward-runtime-monitor monitor --spare PADDING`:
//! what the runtime's tests start in place of `ward monitor`, and a way to measure the
//! monitor without the rest of Ward.

fn main() {
    match ward_runtime::monitor::run_from_command_line(std::env::args_os().skip(1)) {
        Some(exit_code) => std::process::exit(exit_code),
        None => {
            eprintln!("usage: ward-runtime-monitor monitor --spare PADDING");
            std::process::exit(2);
        }
    }
}
