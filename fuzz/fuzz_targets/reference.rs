//! Image references: whatever parses must print back to itself, both in full and in the
//! familiar form docker shows (`redis:alpine`), or two images could be confused by name.
#![no_main]

use airlock_core::Reference;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|s: &str| {
    if let Ok(r) = Reference::parse(s) {
        let full = Reference::parse(&r.to_string()).expect("the full form parses");
        assert_eq!(full, r, "full form of {s:?}");
        let familiar = Reference::parse(&r.familiar()).expect("the familiar form parses");
        assert_eq!(familiar, r, "familiar form {:?} of {s:?}", r.familiar());
    }
});
