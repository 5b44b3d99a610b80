//! Feeds arbitrary bytes to `unpack_layer` as an uncompressed layer: it must never panic, and
//! never write anything outside its destination.

#![no_main]

use std::fs;

use libfuzzer_sys::fuzz_target;
use ward_image::manifest::Compression;
use ward_image::unpack::{unpack_layer, UnpackLimits, WhiteoutFormat};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, layer)) = data.split_first() else {
        return;
    };
    let format = if selector & 1 == 0 {
        WhiteoutFormat::Overlay
    } else {
        WhiteoutFormat::Apply
    };
    let temp = tempfile::tempdir().expect("create temporary directory");
    let dest = temp.path().join("dest");
    let outside = temp.path().join("outside");
    fs::create_dir(&dest).expect("create dest");
    fs::create_dir(&outside).expect("create outside");
    let limits = UnpackLimits {
        max_bytes: 4 * 1024 * 1024,
        max_entries: 1000,
    };
    let _ = unpack_layer(layer, Compression::None, &dest, &limits, format);
    let mut siblings: Vec<_> = fs::read_dir(temp.path())
        .expect("list temporary directory")
        .map(|child| child.expect("list temporary directory").file_name())
        .collect();
    siblings.sort();
    assert_eq!(
        siblings,
        ["dest", "outside"],
        "a layer wrote next to its destination"
    );
    assert!(
        fs::read_dir(&outside)
            .expect("list outside")
            .next()
            .is_none(),
        "a layer wrote outside its destination"
    );
});
