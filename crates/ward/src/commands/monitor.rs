//! `ward monitor DIR`: the per-workload monitor process the daemon starts; entered straight from
//! `main`, before any async runtime exists, so that it stays small.

use std::path::Path;

/// Runs the monitor for the instance in `directory` and returns its exit status.
pub fn run(directory: &Path) -> i32 {
    ward_runtime::monitor::main(directory)
}
