//! An engine on another machine, reached as the docker CLI reaches `ssh://` hosts: `ssh`
//! runs `docker system dial-stdio` there, which joins its standard input and output to that
//! machine's engine socket. One ssh process per connection; the user's ssh configuration
//! (keys, agent, known hosts, jump hosts) applies unchanged.
//!
//! Pipes have no timeouts of their own, so each read and write first waits, with `poll`,
//! for at most the engine timeout.

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// How much of ssh's error output is kept for messages.
const STDERR_KEPT: usize = 8 << 10;

/// The running `ssh HOST docker system dial-stdio`.
pub(crate) struct SshPipe {
    child: Mutex<Child>,
    stdin: Mutex<Option<ChildStdin>>,
    stdout: Mutex<ChildStdout>,
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_reader: Mutex<Option<std::thread::JoinHandle<()>>>,
    read_timeout: Mutex<Option<Duration>>,
    write_timeout: Option<Duration>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl SshPipe {
    /// Start ssh. It fails here only if ssh cannot be run; a host that refuses shows as an
    /// answer that never comes, explained by [`SshPipe::diagnostics`].
    pub(crate) fn spawn(
        user: Option<&str>,
        host: &str,
        port: Option<u16>,
        timeout: Option<Duration>,
    ) -> io::Result<SshPipe> {
        let mut cmd = Command::new("ssh");
        // No terminal on the far side: the pipe carries HTTP, byte for byte.
        cmd.args(["-o", "ConnectTimeout=30", "-T"]);
        if let Some(u) = user {
            cmd.args(["-l", u]);
        }
        if let Some(p) = port {
            cmd.args(["-p", &p.to_string()]);
        }
        cmd.args(["--", host, "docker", "system", "dial-stdio"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                io::Error::new(e.kind(), "ssh is not installed (the ssh client runs `docker system dial-stdio` on the engine's machine)")
            } else {
                e
            }
        })?;
        let take = |what: &str| io::Error::other(format!("ssh's {what} is not a pipe"));
        let stdin = child.stdin.take().ok_or_else(|| take("input"))?;
        let stdout = child.stdout.take().ok_or_else(|| take("output"))?;
        let mut err = child.stderr.take().ok_or_else(|| take("error output"))?;
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let kept = stderr.clone();
        // Read all along, so that a chatty ssh never blocks on a full pipe.
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let mut k = lock(&kept);
                let room = STDERR_KEPT.saturating_sub(k.len());
                k.extend_from_slice(&buf[..n.min(room)]);
            }
        });
        let timeout = timeout.filter(|t| !t.is_zero());
        Ok(SshPipe {
            child: Mutex::new(child),
            stdin: Mutex::new(Some(stdin)),
            stdout: Mutex::new(stdout),
            stderr,
            stderr_reader: Mutex::new(Some(reader)),
            read_timeout: Mutex::new(timeout),
            write_timeout: timeout,
        })
    }

    pub(crate) fn set_read_timeout(&self, t: Option<Duration>) {
        *lock(&self.read_timeout) = t.filter(|t| !t.is_zero());
    }

    /// End the request: the far side's dial-stdio half-closes the engine socket in turn.
    pub(crate) fn close_stdin(&self) {
        lock(&self.stdin).take();
    }

    /// What ssh printed, once it has exited (waited for briefly: it usually has by the
    /// time its output ended).
    pub(crate) fn diagnostics(&self) -> Option<String> {
        self.close_stdin();
        for _ in 0..50 {
            if !matches!(lock(&self.child).try_wait(), Ok(None)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(40));
        }
        if let Some(reader) = lock(&self.stderr_reader).take() {
            if reader.is_finished() || matches!(lock(&self.child).try_wait(), Ok(Some(_))) {
                let _ = reader.join();
            }
        }
        let text = String::from_utf8_lossy(&lock(&self.stderr)).into_owned();
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        (!lines.is_empty()).then(|| lines.join("; "))
    }

    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut out = lock(&self.stdout);
        wait_for(out.as_raw_fd(), libc::POLLIN, *lock(&self.read_timeout))?;
        out.read(buf)
    }

    pub(crate) fn write(&self, buf: &[u8]) -> io::Result<usize> {
        let mut input = lock(&self.stdin);
        let pipe = input.as_mut().ok_or_else(|| {
            io::Error::new(io::ErrorKind::BrokenPipe, "the request was already ended")
        })?;
        wait_for(pipe.as_raw_fd(), libc::POLLOUT, self.write_timeout)?;
        pipe.write(buf)
    }

    pub(crate) fn flush(&self) -> io::Result<()> {
        match lock(&self.stdin).as_mut() {
            Some(p) => p.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for SshPipe {
    fn drop(&mut self) {
        self.close_stdin();
        let child = self
            .child
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // The answer was read (or given up on): the far side has nothing more to say.
        if matches!(child.try_wait(), Ok(None)) {
            let _ = child.kill();
        }
        let _ = child.wait();
        if let Some(reader) = lock(&self.stderr_reader).take() {
            let _ = reader.join();
        }
    }
}

/// Wait until `fd` is ready for `events`, for at most `timeout` (`None`: forever); a
/// timeout is an `io::ErrorKind::TimedOut` error, which the connection turns into the
/// engine timeout's message.
#[allow(unsafe_code)]
fn wait_for(fd: i32, events: libc::c_short, timeout: Option<Duration>) -> io::Result<()> {
    let millis = match timeout {
        None => -1,
        Some(t) => i32::try_from(t.as_millis()).unwrap_or(i32::MAX),
    };
    let mut p = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    loop {
        // SAFETY: `p` is one valid pollfd that lives across the call, and the count says 1.
        let n = unsafe { libc::poll(&mut p, 1, millis) };
        match n {
            0 => return Err(io::Error::from(io::ErrorKind::TimedOut)),
            n if n > 0 => return Ok(()),
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
}
