//! `wardd`: the Ward daemon, which `ward serve` hands over to (see the `ward` library).

fn main() {
    ward::main(ward::Executable::Wardd)
}
