//! What hostile or careless clients get from `airlock serve`: the spec's errors, nothing
//! read outside the store, nothing changed, and no connection held for ever.

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::{busybox_store, raw, Served};
use crate::util::{scratch, tree_hash};

#[test]
fn bad_names_digests_and_writes_get_the_specs_errors_and_change_nothing() {
    let dir = scratch();
    let store = busybox_store(dir.path(), "registry.example/team/app:1", "hi");
    // Something outside the store a traversal would reach.
    std::fs::write(dir.path().join("secret"), "not for clients").unwrap();
    let before = tree_hash(&store.store);
    let served = Served::start(&store, &[]);
    let d = format!("sha256:{}", "a".repeat(64));
    let cases: &[(&str, &str, u16, &str)] = &[
        ("GET", "/v2/../secret/manifests/1", 400, "NAME_INVALID"),
        (
            "GET",
            "/v2/registry.example/../../secret/manifests/1",
            400,
            "NAME_INVALID",
        ),
        (
            "GET",
            "/v2/%2e%2e/%2e%2e/secret/manifests/1",
            400,
            "NAME_INVALID",
        ),
        ("GET", "/v2//etc/passwd/manifests/1", 400, "NAME_INVALID"),
        ("GET", "/v2/Team/App/manifests/1", 400, "NAME_INVALID"),
        (
            "GET",
            "/v2/registry.example/team/app/blobs/sha256:../../../secret",
            400,
            "DIGEST_INVALID",
        ),
        (
            "GET",
            "/v2/registry.example/team/app/blobs/sha512:abcd",
            400,
            "DIGEST_INVALID",
        ),
        (
            "GET",
            "/v2/registry.example/team/app/manifests/sha256:XYZ",
            400,
            "DIGEST_INVALID",
        ),
        (
            "GET",
            "/v2/registry.example/team/app/manifests/-bad",
            400,
            "TAG_INVALID",
        ),
        (
            "GET",
            "/v2/registry.example/team/app/manifests/2",
            404,
            "MANIFEST_UNKNOWN",
        ),
        ("GET", "/v2/nobody/here/manifests/1", 404, "NAME_UNKNOWN"),
        ("GET", "/v2/nobody/here/tags/list", 404, "NAME_UNKNOWN"),
        (
            "HEAD",
            &format!("/v2/registry.example/team/app/blobs/{d}"),
            404,
            "",
        ),
        (
            "GET",
            &format!("/v2/registry.example/team/app/blobs/{d}"),
            404,
            "BLOB_UNKNOWN",
        ),
        (
            "GET",
            &format!("/v2/registry.example/team/app/manifests/{d}"),
            404,
            "MANIFEST_UNKNOWN",
        ),
        (
            "GET",
            "/v2/registry.example/team/app/elsewhere",
            404,
            "NOT_FOUND",
        ),
        ("GET", "/etc/passwd", 404, "NOT_FOUND"),
        // Read-only: every write is refused.
        (
            "POST",
            "/v2/registry.example/team/app/blobs/uploads/",
            405,
            "UNSUPPORTED",
        ),
        (
            "PUT",
            "/v2/registry.example/team/app/manifests/2",
            405,
            "UNSUPPORTED",
        ),
        (
            "DELETE",
            "/v2/registry.example/team/app/manifests/1",
            405,
            "UNSUPPORTED",
        ),
    ];
    for (method, path, status, code) in cases {
        let (got, head, body) = raw(served.port, method, path, &["Content-Length: 0"]);
        let body = String::from_utf8_lossy(&body);
        assert_eq!(got, *status, "{method} {path}: {head}\n{body}");
        assert!(body.contains(code), "{method} {path}: {body}");
        assert!(
            !body.contains("not for clients"),
            "{method} {path} read outside the store"
        );
        if !code.is_empty() {
            assert!(body.starts_with("{\"errors\":[{\"code\":"), "{body}");
        }
    }
    // A range past the end: 416 with the size.
    let layer = store.inspect("registry.example/team/app:1")["Layers"][0]["Digest"]
        .as_str()
        .unwrap()
        .to_string();
    let (got, head, _) = raw(
        served.port,
        "GET",
        &format!("/v2/registry.example/team/app/blobs/{layer}"),
        &["Range: bytes=999999999-"],
    );
    assert_eq!(got, 416, "{head}");
    assert!(head.contains("bytes */"), "{head}");
    drop(served);
    assert_eq!(tree_hash(&store.store), before, "the store changed");
}

/// Seconds until the server closes a connection that sends `prefix` and then nothing.
fn closed_after(port: u16, prefix: &[u8]) -> Duration {
    let start = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    std::io::Write::write_all(&mut s, prefix).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return start.elapsed(),
            Ok(_) => {}
        }
    }
}

#[test]
fn idle_and_slow_clients_are_cut_off_and_a_connection_limit_holds() {
    let dir = scratch();
    let store = busybox_store(dir.path(), "registry.example/team/app:1", "hi");
    let served = Served::start(&store, &["--header-timeout", "2", "--max-connections", "3"]);
    // Opens and sends nothing; sends half a request line; half the headers.
    for prefix in [
        &b""[..],
        b"GET /v2/ HT",
        b"GET /v2/ HTTP/1.1\r\nHost: x\r\n",
    ] {
        let took = closed_after(served.port, prefix);
        assert!(
            took >= Duration::from_millis(1500) && took < Duration::from_secs(10),
            "{:?}: closed after {took:?}",
            String::from_utf8_lossy(prefix)
        );
    }
    // Three idle connections hold every slot: a fourth is closed at once, unanswered...
    let idle: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(("127.0.0.1", served.port)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let took = closed_after(served.port, b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(
        took < Duration::from_secs(1),
        "the fourth connection waited {took:?}"
    );
    // ...and once they time out, the server answers again.
    drop(idle);
    std::thread::sleep(Duration::from_millis(2500));
    let (status, _, _) = raw(served.port, "GET", "/v2/", &[]);
    assert_eq!(status, 200);
}
