//! The monitor alone, as `ward-runtime-monitor monitor DIR`: what the runtime's tests start in
//! place of `ward monitor DIR`, and a way to measure the monitor without the rest of Ward.

fn main() {
    let mut arguments = std::env::args_os().skip(1);
    let (Some(command), Some(dir), None) = (arguments.next(), arguments.next(), arguments.next())
    else {
        eprintln!("usage: ward-runtime-monitor monitor DIR");
        std::process::exit(2);
    };
    if command != "monitor" {
        eprintln!("usage: ward-runtime-monitor monitor DIR");
        std::process::exit(2);
    }
    std::process::exit(ward_runtime::monitor::main(std::path::Path::new(&dir)));
}
