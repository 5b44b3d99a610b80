//! Links the `ward` executable at a fixed address (see `Executable::Ward`); `wardd` stays
//! position-independent.

fn main() {
    println!("cargo:rustc-link-arg-bin=ward=-no-pie");
}
