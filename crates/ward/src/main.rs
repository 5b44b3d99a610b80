//! `ward`: every command of the CLI, and the per-instance monitors the daemon starts.

fn main() {
    ward::main(ward::Executable::Ward)
}
