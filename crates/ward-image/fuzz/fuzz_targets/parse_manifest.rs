//! Feeds arbitrary bytes to the manifest, index and config parsers: they must never panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ward_image::manifest::{
    parse_document, select_platform, Document, ImageConfig, Platform, OCI_INDEX, OCI_MANIFEST,
};

fuzz_target!(|data: &[u8]| {
    let host = Platform::host();
    for transport_media_type in [None, Some(OCI_MANIFEST), Some(OCI_INDEX)] {
        match parse_document(data, transport_media_type) {
            Ok(Document::Index(index)) => {
                let _ = select_platform(&index, &host);
            }
            Ok(Document::Manifest(manifest)) => {
                if let Ok(config) = ImageConfig::parse(data) {
                    let _ = config.check(&manifest, &host);
                }
            }
            Err(_) => {}
        }
    }
    if let Ok(config) = ImageConfig::parse(data) {
        let _ = config.platform().to_string();
    }
});
