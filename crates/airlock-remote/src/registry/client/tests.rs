//! The registry client against small loopback servers: probes, auth, limits.
use super::*;

#[test]
fn insecure_registries_fall_back_to_plain_http_only_without_a_tls_connection() {
    use ureq::ErrorKind;
    assert!(falls_back_to_plain_http(Probe::NoAnswer(
        ErrorKind::ConnectionFailed
    )));
    for status in [200, 301, 401, 403, 404, 500, 503] {
        assert!(
            !falls_back_to_plain_http(Probe::Answered(status)),
            "HTTP {status}"
        );
    }
    for kind in [ErrorKind::Dns, ErrorKind::Io, ErrorKind::BadStatus] {
        assert!(!falls_back_to_plain_http(Probe::NoAnswer(kind)), "{kind:?}");
    }
}

/// A server on 127.0.0.1 that speaks plain HTTP: it gives `answer` to whatever arrives
/// (a TLS ClientHello included), then hangs up; `connections` times.
fn plain_http_server(answer: &'static [u8], connections: usize) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().take(connections) {
            let Ok(mut conn) = conn else { continue };
            let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = std::io::Read::read(&mut conn, &mut [0u8; 4096]);
            let _ = std::io::Write::write_all(&mut conn, answer);
        }
    });
    port
}

#[test]
fn probes_tell_a_missing_tls_connection_from_an_answer() {
    let port = plain_http_server(
        b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        2,
    );
    let agent = agent(true, 0);
    // TLS to a plain HTTP server: the handshake fails, no TLS connection.
    let tls = probe_once(&agent, &format!("https://127.0.0.1:{port}/v2/"));
    assert_eq!(tls, Probe::NoAnswer(ureq::ErrorKind::ConnectionFailed));
    assert!(falls_back_to_plain_http(tls));
    // The same server in plain HTTP: an answer, the 401 included.
    let plain = probe_once(&agent, &format!("http://127.0.0.1:{port}/v2/"));
    assert_eq!(plain, Probe::Answered(401));
    assert!(!falls_back_to_plain_http(plain));
}

#[test]
fn probes_do_not_follow_redirects() {
    // Where the redirect leads cannot be reached: following it would look like no
    // connection at all.
    let port = plain_http_server(
        b"HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1:1/v2/\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        1,
    );
    let plain = probe_once(&agent(true, 0), &format!("http://127.0.0.1:{port}/v2/"));
    assert_eq!(plain, Probe::Answered(307));
}

/// A server on 127.0.0.1 that answers the i-th connection with `answers[i]` and keeps
/// the request heads it got.
fn recording_server(answers: Vec<&'static [u8]>) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = heads.clone();
    std::thread::spawn(move || {
        for answer in answers {
            let Ok((mut conn, _)) = listener.accept() else {
                return;
            };
            let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = [0u8; 8192];
            let n = std::io::Read::read(&mut conn, &mut buf).unwrap_or(0);
            seen.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&buf[..n]).into_owned());
            let _ = std::io::Write::write_all(&mut conn, answer);
        }
    });
    (port, heads)
}

#[test]
fn credentials_go_to_the_registry_host_only() {
    let (reg_port, reg_heads) = recording_server(vec![
        b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"r\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    ]);
    let (other_port, other_heads) = recording_server(vec![
        b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    ]);
    let opts = RegistryOptions {
        insecure: false,
        credentials: Some(Credentials {
            username: "user".into(),
            password: "hunter2".into(),
        }),
    };
    let reg = Registry::new(&format!("127.0.0.1:{reg_port}"), &opts).unwrap();
    reg.call("GET", "/v2/", "", &[], None).unwrap();
    // An upload `Location` on another host gets no Authorization header.
    reg.call(
        "PUT",
        &format!("http://127.0.0.1:{other_port}/upload?x=1"),
        "",
        &[],
        None,
    )
    .unwrap();
    let reg_heads = reg_heads.lock().unwrap();
    assert!(
        reg_heads[1].contains("Authorization: Basic"),
        "{}",
        reg_heads[1]
    );
    let other = other_heads.lock().unwrap();
    assert!(
        !other[0].to_ascii_lowercase().contains("authorization"),
        "{}",
        other[0]
    );
    assert!(same_origin(
        "http://127.0.0.1:5000/v2/x",
        "http://127.0.0.1:5000"
    ));
    assert!(!same_origin(
        "http://127.0.0.1:5001/v2/x",
        "http://127.0.0.1:5000"
    ));
    assert!(!same_origin("http://r.example/v2/x", "https://r.example"));
    assert!(!same_origin(
        "https://r.example.evil/v2",
        "https://r.example"
    ));
}

#[test]
fn a_body_that_drips_is_given_up_with_a_clear_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let Ok((mut conn, _)) = listener.accept() else {
            return;
        };
        let _ = std::io::Read::read(&mut conn, &mut [0u8; 4096]);
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n";
        let _ = std::io::Write::write_all(&mut conn, head);
        for _ in 0..1000 {
            if std::io::Write::write_all(&mut conn, b"x").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let mut reg = Registry::new(&format!("127.0.0.1:{port}"), &RegistryOptions::default()).unwrap();
    reg.stall = (Duration::from_secs(1), 16 << 10);
    let started = std::time::Instant::now();
    let r = reg.call("GET", "/v2/a/blobs/x", "", &[], None).unwrap();
    let err = reg.body(r).read_to_end(&mut Vec::new()).unwrap_err();
    assert!(err.to_string().contains("has stalled"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn loopback_hosts() {
    assert!(is_loopback("127.0.0.1:5000"));
    assert!(is_loopback("localhost:5000"));
    assert!(is_loopback("[::1]:5000"));
    assert!(!is_loopback("registry.example:5000"));
    assert!(is_loopback("127.0.0.2:5000"));
    assert!(!is_loopback("127.evil.example:5000"));
    assert!(!is_loopback("127.0.0.1.nip.io:443"));
}

#[test]
fn credentials_in_registry_errors_are_not_printed() {
    let body = r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad header Basic dXNlcjpodW50ZXIy for user"}]}"#;
    let said = registry_message(body).unwrap();
    assert!(!said.contains("dXNlcjpodW50ZXIy"), "{said}");
    assert!(
        said.contains("[redacted]") && said.contains("UNAUTHORIZED"),
        "{said}"
    );
    let token =
        r#"{"errors":[{"message":"token eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2ln expired"}]}"#;
    assert!(!registry_message(token).unwrap().contains("eyJhbGci"));
    // Digests and ordinary words stay.
    let plain =
        r#"{"errors":[{"message":"blob sha256:0123456789abcdef0123456789abcdef unknown"}]}"#;
    assert!(registry_message(plain)
        .unwrap()
        .contains("sha256:0123456789abcdef"));
}

#[test]
fn registry_errors_read_the_json_message() {
    let body = r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#;
    assert_eq!(
        registry_message(body).unwrap(),
        "manifest unknown (MANIFEST_UNKNOWN)"
    );
}
