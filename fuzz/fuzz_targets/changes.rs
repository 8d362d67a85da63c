//! `-c` instructions (CMD, ENV, HEALTHCHECK, ...) on a config: applied or refused, never a
//! panic, and what is applied still serialises.
#![no_main]

use airlock_core::changes::apply_changes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|changes: Vec<String>| {
    let mut config = serde_json::Map::new();
    config.insert("Env".into(), serde_json::json!(["PATH=/usr/bin", "A=1"]));
    let _ = apply_changes(&mut config, &changes);
    serde_json::to_vec(&config).expect("a config serialises");
});
