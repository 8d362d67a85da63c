//! The engine HTTP client against unix-socket servers made in the test.
use super::*;
use std::path::Path;

#[test]
fn chunked_round_trip() {
    let mut out = Vec::new();
    {
        let mut w = ChunkedWriter { inner: &mut out };
        w.write_all(b"hello ").unwrap();
        w.write_all(b"world").unwrap();
        w.finish().unwrap();
    }
    assert_eq!(out, b"6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n");
    let mut r = ChunkedReader {
        inner: &out[..],
        left: 0,
        done: false,
    };
    let mut s = String::new();
    r.read_to_string(&mut s).unwrap();
    assert_eq!(s, "hello world");
}

#[test]
fn a_chunked_body_is_not_ended_by_dropping_the_writer() {
    let mut out = Vec::new();
    {
        let mut w = ChunkedWriter { inner: &mut out };
        w.write_all(b"hello").unwrap();
    }
    assert_eq!(out, b"5\r\nhello\r\n");
}

/// A directory for test sockets, removed on drop (no tempfile dependency for this).
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("airlock-http-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn socket(&self) -> std::path::PathBuf {
        self.0.join("engine.sock")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An engine that takes one request, reading until `done` says the request is over (or
/// 5 s passed, so that a test fails rather than hangs), then gives `answer`. Returns
/// what it received.
fn one_shot_engine(
    socket: &Path,
    done: fn(&[u8]) -> bool,
    answer: String,
) -> std::thread::JoinHandle<Vec<u8>> {
    let listener = std::os::unix::net::UnixListener::bind(socket).unwrap();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !done(&got) {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        let _ = s.write_all(answer.as_bytes());
        got
    })
}

fn error_answer(status: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn a_failed_body_is_cut_off_and_the_local_error_wins() {
    let dir = TempDir::new("cut");
    let socket = dir.socket();
    // Reads until the client shuts its write half down: only then does it answer.
    let engine = one_shot_engine(
        &socket,
        |_| false,
        error_answer(
            "500 Internal Server Error",
            r#"{"message":"unexpected EOF"}"#,
        ),
    );
    let result = request_with_body(
        &Endpoint::Unix(socket.clone()),
        None,
        "POST",
        "/images/load",
        "application/x-tar",
        |mut w| {
            w.write_all(b"partial").map_err(|e| io_err("write", e))?;
            w.flush().map_err(|e| io_err("write", e))?;
            w.write_all(b"never sent").map_err(|e| io_err("write", e))?;
            Err(RemoteError::Protocol("the source broke".into()))
        },
    );
    let got = engine.join().unwrap();
    assert!(
        got.ends_with(b"\r\n\r\n7\r\npartial\r\n"),
        "the body must stop after the flushed chunk, without the last chunk: {:?}",
        String::from_utf8_lossy(&got)
    );
    match result {
        Err(e @ RemoteError::BodyAborted { .. }) => {
            assert_eq!(
                e.to_string(),
                "unexpected answer from the Docker Engine: the source broke; \
                 the Docker Engine said: unexpected EOF (HTTP 500)"
            );
            let RemoteError::BodyAborted { source, status, .. } = e else {
                unreachable!()
            };
            assert_eq!(status, 500);
            assert!(matches!(*source, RemoteError::Protocol(_)));
        }
        Err(other) => panic!("the local error must win: {other:?}"),
        Ok(r) => panic!("a failed body was accepted: HTTP {}", r.status),
    }
}

#[test]
fn a_failed_body_without_an_engine_message_keeps_the_local_error() {
    let dir = TempDir::new("cut-quiet");
    let socket = dir.socket();
    let engine = one_shot_engine(&socket, |_| false, String::new());
    let result = request_with_body(
        &Endpoint::Unix(socket.clone()),
        None,
        "POST",
        "/images/load",
        "application/x-tar",
        |_| Err(RemoteError::Protocol("the source broke".into())),
    );
    let got = engine.join().unwrap();
    assert!(got.ends_with(b"Transfer-Encoding: chunked\r\n\r\n"));
    assert!(
        matches!(&result, Err(RemoteError::Protocol(m)) if m == "the source broke"),
        "{:?}",
        result.map(|r| r.status)
    );
}

#[test]
fn a_produced_body_ends_cleanly() {
    let dir = TempDir::new("whole");
    let socket = dir.socket();
    let engine = one_shot_engine(
        &socket,
        |got| got.ends_with(b"0\r\n\r\n"),
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}".into(),
    );
    let r = request_with_body(
        &Endpoint::Unix(socket.clone()),
        None,
        "POST",
        "/images/load",
        "application/x-tar",
        |mut w| w.write_all(b"hello").map_err(|e| io_err("write", e)),
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.text().unwrap(), "{}");
    let got = engine.join().unwrap();
    assert!(got.ends_with(b"\r\n\r\n5\r\nhello\r\n0\r\n\r\n"));
}

/// An engine that accepts connections and then neither reads nor answers, until the
/// returned sender is dropped.
fn silent_engine(socket: &Path) -> std::sync::mpsc::Sender<()> {
    let listener = std::os::unix::net::UnixListener::bind(socket).unwrap();
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let (_connection, _) = listener.accept().unwrap();
        let _ = stopped.recv();
    });
    stop
}

/// Run `f` on a thread: its result, or a panic if it takes over 10 s (a test of a
/// timeout must fail, not hang, when the timeout is gone).
fn within_10s<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("no timeout within 10 s")
}

#[test]
fn an_engine_that_never_answers_times_out() {
    let dir = TempDir::new("silent");
    let socket = dir.socket();
    let _engine = silent_engine(&socket);
    let start = std::time::Instant::now();
    let s = socket.clone();
    let result = within_10s(move || {
        request(
            &Endpoint::Unix(s),
            Some(Duration::from_secs(1)),
            "GET",
            "/images/get?names=a",
        )
        .map(|r| r.status)
    });
    assert!(start.elapsed() < Duration::from_secs(5));
    match result {
        Err(e @ RemoteError::EngineTimeout { .. }) => assert_eq!(
            e.to_string(),
            format!(
                "the Docker Engine at unix://{} did not respond for 1 s while reading the \
                 answer to GET /images/get (AIRLOCK_ENGINE_TIMEOUT sets the limit in seconds; \
                 0 removes it)",
                socket.display()
            )
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_engine_that_stops_reading_the_body_times_out() {
    let dir = TempDir::new("stuck");
    let socket = dir.socket();
    let _engine = silent_engine(&socket);
    let start = std::time::Instant::now();
    let s = socket.clone();
    let result = within_10s(move || {
        request_with_body(
            &Endpoint::Unix(s),
            Some(Duration::from_secs(1)),
            "POST",
            "/images/load?quiet=1",
            "application/x-tar",
            |mut w| {
                // Far more than the socket buffers hold, so writing must block.
                let block = vec![0u8; 1 << 20];
                for _ in 0..256 {
                    w.write_all(&block)
                        .map_err(|e| io_err("send the archive to the engine", e))?;
                }
                Ok(())
            },
        )
        .map(|r| r.status)
    });
    // One timeout for the write, at most one more for the engine's answer.
    assert!(start.elapsed() < Duration::from_secs(5));
    match result {
        Err(RemoteError::EngineTimeout {
            socket: s,
            doing,
            seconds,
        }) => {
            assert_eq!(s, format!("unix://{}", socket.display()));
            assert_eq!(doing, "sending POST /images/load");
            assert_eq!(seconds, 1);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn error_message_prefers_the_json_message() {
    assert_eq!(
        error_message(r#"{"message":"No such image: x"}"#),
        "No such image: x"
    );
    assert_eq!(error_message("plain text\n"), "plain text");
}
