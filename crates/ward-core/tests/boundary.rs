//! The crate boundaries ARCHITECTURE.md states: callers of the engine reach it only through
//! `ward-core`, and the vocabulary itself depends on no Ward crate that does IO.

use std::collections::BTreeMap;
use std::path::Path;

/// The Ward crates `crate_dir`'s manifest depends on (normal dependencies).
fn ward_dependencies(crate_dir: &str) -> Vec<String> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(crate_dir)
        .join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).expect("read the manifest");
    let mut section = String::new();
    let mut found = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            section = line.to_string();
            continue;
        }
        if section == "[dependencies]" && line.starts_with("ward-") {
            let name = line.split(['.', ' ', '=']).next().unwrap_or_default();
            found.push(name.to_string());
        }
    }
    found.sort();
    found
}

#[test]
fn callers_reach_the_engine_only_through_the_vocabulary() {
    let allowed: BTreeMap<&str, &[&str]> = BTreeMap::from([
        ("ward-api", &["ward-client", "ward-core", "ward-spec"][..]),
        ("ward-core", &["ward-spec"][..]),
        ("ward-alert", &["ward-core", "ward-spec"][..]),
        ("ward-heal", &["ward-core", "ward-detect", "ward-spec"][..]),
        ("ward-spec", &[][..]),
        ("ward-client", &[][..]),
        ("ward-model", &[][..]),
        ("ward-runner", &["ward-model"][..]),
    ]);
    for (crate_dir, expected) in allowed {
        assert_eq!(
            ward_dependencies(crate_dir),
            expected.to_vec(),
            "{crate_dir} depends on Ward crates beyond its boundary"
        );
    }
}
