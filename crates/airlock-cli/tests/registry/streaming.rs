//! A registry pull into an archive writes each byte once: nothing lands in the store.

use std::collections::BTreeMap;

use super::harness::RegistryServer;
use super::helpers::{big_image, Sandbox};
use crate::streaming::SmallDisk;
use crate::util::Airlock;

#[test]
fn copy_from_a_registry_to_an_archive_streams_past_a_small_store() {
    let reg = RegistryServer::start();
    let sb = Sandbox::new();
    let archive = sb.path().join("big.tar");
    big_image(
        &archive,
        "localhost/stream/reg:1",
        &[8 << 20, 8 << 20, 8 << 20],
        31,
    );
    let cli = sb.store("store");
    cli.ok(&["load", "-q", "-i", archive.to_str().unwrap()]);
    let id = cli.inspect("localhost/stream/reg:1")["Id"].clone();
    let remote = format!("{}/stream/reg:1", reg.host());
    cli.ok(&["push", "-q", "localhost/stream/reg:1", &remote]);

    let small = SmallDisk::new(4);
    let tiny = Airlock::new(&small.path().join("store"));
    let out = sb.path().join("out.tar.zst");
    let mark = reg.access_log().len();
    tiny.ok(&[
        "copy",
        "--compress",
        "zstd",
        &format!("docker://{remote}"),
        &format!("docker-archive:{}", out.display()),
    ]);
    assert!(
        small.used() < 1 << 20,
        "the pull staged {} bytes",
        small.used()
    );
    // Each blob came down once.
    let mut gets: BTreeMap<String, usize> = BTreeMap::new();
    for l in &reg.access_log()[mark..] {
        if l.method == "GET" && l.path().contains("/blobs/") {
            *gets.entry(l.path().to_string()).or_default() += 1;
        }
    }
    assert_eq!(gets.len(), 4, "config and three layers: {gets:?}");
    assert!(gets.values().all(|n| *n == 1), "{gets:?}");

    let back = Airlock::new(&sb.path().join("back"));
    let loaded = back.ok(&["load", "-i", out.to_str().unwrap()]);
    assert!(
        loaded.contains(&format!("Loaded image: {remote}")),
        "{loaded}"
    );
    assert_eq!(back.inspect(&remote)["Id"], id);
}
