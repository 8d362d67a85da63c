//! A registry client for the OCI Distribution API: auth (anonymous, basic, bearer token via
//! the `WWW-Authenticate` challenge), retries with backoff for transient failures, TLS
//! verified unless asked otherwise, plain HTTP for loopback registries.
//!
//! Credentials go only into `Authorization` headers; no error or message built here holds
//! them (URLs never carry them).

use std::collections::HashMap;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::auth::Credentials;
use super::token::{self, basic_header, parse_challenge, Challenge, TokenRequest};
pub use crate::http::is_loopback;
pub use crate::http::percent_encode as encode;
use crate::{RemoteError, Result};

/// How to reach a registry.
#[derive(Clone, Debug, Default)]
pub struct RegistryOptions {
    /// Skip TLS verification and allow plain HTTP (`--insecure`, `--tls-verify=false`).
    pub insecure: bool,
    /// Credentials to use, when not taken from the docker config.
    pub credentials: Option<Credentials>,
}

/// A connection to one registry host.
pub struct Registry {
    agent: ureq::Agent,
    base: String,
    host: String,
    credentials: Option<Credentials>,
    /// Bearer tokens by scope; "basic" once the registry asked for basic auth.
    tokens: Mutex<HashMap<String, String>>,
    challenge: Mutex<Option<Challenge>>,
    /// Bytes of blob bodies received, for a progress display.
    received: Option<Arc<AtomicU64>>,
    /// `--insecure` was given.
    insecure: bool,
    /// A body that delivers fewer bytes than this in a window of this length has stalled.
    stall: (Duration, u64),
}

/// How long a body may run below [`STALL_MIN_BYTES`] before it is given up: a registry
/// that drips a byte every few seconds must not keep a pull alive for hours.
const STALL_WINDOW: Duration = Duration::from_secs(60);
/// 16 KiB a minute: far below any link a pull is worth making over.
const STALL_MIN_BYTES: u64 = 16 << 10;

/// A request body that can be produced again for a retry.
pub type BodyFn<'a> = &'a (dyn Fn() -> Result<(Box<dyn Read + Send + 'a>, u64)> + Sync);

const ATTEMPTS: u32 = 4;

impl Registry {
    /// Connect to `host` (`HOST[:PORT]`; `docker.io` means Docker Hub).
    pub fn new(host: &str, opts: &RegistryOptions) -> Result<Registry> {
        let api_host = if host == "docker.io" {
            "registry-1.docker.io"
        } else {
            host
        };
        let loopback = is_loopback(api_host);
        let scheme = if loopback || opts.insecure {
            "http"
        } else {
            "https"
        };
        // A credential helper that cannot be run is the user's to fix: said, not hidden
        // behind the registry's 401.
        let credentials = match opts.credentials.clone() {
            Some(c) => Some(c),
            None => super::auth::lookup(host)?,
        };
        let mut reg = Registry {
            agent: agent(opts.insecure, 8),
            base: format!("{scheme}://{api_host}"),
            host: host.to_string(),
            credentials,
            tokens: Mutex::new(HashMap::new()),
            challenge: Mutex::new(None),
            received: None,
            insecure: opts.insecure,
            stall: (STALL_WINDOW, STALL_MIN_BYTES),
        };
        // --insecure: prefer TLS without verification, fall back to plain HTTP (what docker
        // does for an "insecure registry"), but only when no TLS connection could be made.
        if opts.insecure && !loopback {
            reg.base = format!("https://{api_host}");
            // Redirects are not followed: one is an answer over TLS, and whether where it
            // leads can be reached must not decide.
            if falls_back_to_plain_http(probe(&agent(true, 0), &format!("{}/v2/", reg.base))) {
                reg.base = format!("http://{api_host}");
            }
        }
        Ok(reg)
    }

    /// Count the bytes of blob bodies received into `counter` (a progress display reads it).
    pub fn with_progress(mut self, counter: Arc<AtomicU64>) -> Self {
        self.received = Some(counter);
        self
    }

    /// A response body as a reader, counted when a progress counter is set.
    pub fn body(&self, r: ureq::Response) -> Box<dyn Read + Send> {
        let inner = StallGuard {
            inner: r.into_reader(),
            host: self.host.clone(),
            window: self.stall.0,
            min_bytes: self.stall.1,
            started: std::time::Instant::now(),
            in_window: 0,
        };
        match &self.received {
            Some(c) => Box::new(Counting {
                inner,
                counter: c.clone(),
            }),
            None => Box::new(inner),
        }
    }

    /// The host as the user named it.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// `GET /v2/`: checks the registry answers and the credentials work.
    pub fn ping(&self) -> Result<()> {
        let r = self.call("GET", "/v2/", "", &[], None)?;
        drop(r);
        Ok(())
    }

    /// Make a request to `path` (below the host), authenticating for `scope` as the registry
    /// asks, retrying transient failures. Returns responses with a 2xx/3xx status; others
    /// become errors (404 included: callers that expect it use [`Registry::call_allow`]).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        scope: &str,
        headers: &[(&str, String)],
        body: Option<BodyFn>,
    ) -> Result<ureq::Response> {
        match self.call_allow(method, path, scope, headers, body, &[])? {
            Ok(r) => Ok(r),
            Err((status, r)) => Err(self.status_error(method, path, status, r)),
        }
    }

    /// Like [`Registry::call`], but the statuses in `allowed` come back as `Err((status,
    /// response))` for the caller to handle (e.g. 404 on HEAD).
    #[allow(clippy::type_complexity)]
    pub fn call_allow(
        &self,
        method: &str,
        path: &str,
        scope: &str,
        headers: &[(&str, String)],
        body: Option<BodyFn>,
        allowed: &[u16],
    ) -> Result<std::result::Result<ureq::Response, (u16, ureq::Response)>> {
        let url = if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{}", self.base, path)
        };
        let mut auth_tried = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = self.agent.request(method, &url);
            for (k, v) in headers {
                req = req.set(k, v);
            }
            // Credentials and tokens go to the registry itself only: not to another host an
            // upload `Location` names, nor to it over plain HTTP when it speaks HTTPS.
            if same_origin(&url, &self.base) {
                if let Some(a) = self.authorization(scope) {
                    req = req.set("Authorization", &a);
                }
            }
            let result = match body {
                Some(produce) => {
                    let (reader, len) = produce()?;
                    req.set("Content-Length", &len.to_string()).send(reader)
                }
                None => req.call(),
            };
            match result {
                Ok(r) => return Ok(Ok(r)),
                Err(ureq::Error::Status(401, r)) if !auth_tried => {
                    auth_tried = true;
                    let header = r.header("WWW-Authenticate").unwrap_or("").to_string();
                    self.authenticate(&header, scope)?;
                }
                Err(ureq::Error::Status(code, r)) if allowed.contains(&code) => {
                    return Ok(Err((code, r)))
                }
                Err(ureq::Error::Status(code, r)) if is_transient(code) && attempt < ATTEMPTS => {
                    drop(r);
                    backoff(attempt);
                }
                Err(ureq::Error::Status(code, r)) => {
                    return Err(self.status_error(method, path, code, r))
                }
                Err(ureq::Error::Transport(_)) if attempt < ATTEMPTS => backoff(attempt),
                Err(ureq::Error::Transport(t)) => {
                    return Err(RemoteError::Registry {
                        host: self.host.clone(),
                        status: 0,
                        message: transport_message(&t),
                        what: format!("{method} {}", strip_query(path)),
                    })
                }
            }
        }
    }

    fn status_error(
        &self,
        method: &str,
        path: &str,
        status: u16,
        r: ureq::Response,
    ) -> RemoteError {
        let body = r.into_string().unwrap_or_default();
        let message = registry_message(&body).unwrap_or_else(|| match status {
            401 => "authentication required or refused".to_string(),
            403 => "access denied".to_string(),
            404 => "not found".to_string(),
            _ => format!("HTTP {status}"),
        });
        RemoteError::Registry {
            host: self.host.clone(),
            status,
            message,
            what: format!("{method} {}", strip_query(path)),
        }
    }

    fn authorization(&self, scope: &str) -> Option<String> {
        let challenge = self.challenge.lock().ok()?.clone()?;
        match challenge {
            Challenge::Basic => self.credentials.as_ref().map(basic_header),
            Challenge::Bearer { .. } => self
                .tokens
                .lock()
                .ok()?
                .get(scope)
                .map(|t| format!("Bearer {t}")),
        }
    }

    /// Answer a 401 challenge: remember basic auth, or fetch a bearer token for `scope`.
    fn authenticate(&self, header: &str, scope: &str) -> Result<()> {
        let challenge = parse_challenge(header).ok_or_else(|| RemoteError::Registry {
            host: self.host.clone(),
            status: 401,
            message:
                "authentication required, and the registry's challenge is not one airlock knows"
                    .into(),
            what: "authenticate".into(),
        })?;
        if let Challenge::Bearer { realm, service } = &challenge {
            let token = token::fetch(
                &self.agent,
                &TokenRequest {
                    registry: &self.host,
                    realm,
                    service: service.as_deref(),
                    scope,
                    credentials: self.credentials.as_ref(),
                    insecure: self.insecure,
                },
            )?;
            self.tokens
                .lock()
                .map_err(|_| RemoteError::Protocol("token cache poisoned".into()))?
                .insert(scope.to_string(), token);
        } else if self.credentials.is_none() {
            return Err(RemoteError::Registry {
                host: self.host.clone(),
                status: 401,
                message: "this registry needs a user name and password".into(),
                what: "authenticate".into(),
            });
        }
        *self
            .challenge
            .lock()
            .map_err(|_| RemoteError::Protocol("auth state poisoned".into()))? = Some(challenge);
        Ok(())
    }
}

/// A response body that fails once it delivers fewer than `min_bytes` in a `window`.
struct StallGuard<R> {
    inner: R,
    host: String,
    window: Duration,
    min_bytes: u64,
    started: std::time::Instant,
    in_window: u64,
}

impl<R: Read> Read for StallGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.in_window += n as u64;
        if n > 0 && self.started.elapsed() >= self.window {
            if self.in_window < self.min_bytes {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "{} sent only {} bytes in {} s: the transfer has stalled",
                        self.host,
                        self.in_window,
                        self.window.as_secs()
                    ),
                ));
            }
            self.started = std::time::Instant::now();
            self.in_window = 0;
        }
        Ok(n)
    }
}

/// True when `url` has the scheme, host and port of `base` (the registry's own address).
fn same_origin(url: &str, base: &str) -> bool {
    fn origin(u: &str) -> Option<(String, String)> {
        let (scheme, rest) = u.split_once("://")?;
        let authority = rest.split(['/', '?', '#']).next()?;
        Some((scheme.to_ascii_lowercase(), authority.to_ascii_lowercase()))
    }
    origin(url).is_some_and(|o| Some(o) == origin(base))
}

struct Counting<R> {
    inner: R,
    counter: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// What probing a registry's `/v2/` got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Probe {
    /// An HTTP answer, with its status (whatever it is).
    Answered(u16),
    /// No HTTP answer: the transport failed, in this way.
    NoAnswer(ureq::ErrorKind),
}

/// The HTTP agent for a registry: TLS verified unless `insecure`.
fn agent(insecure: bool, redirects: u32) -> ureq::Agent {
    let mut builder = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(30))
        .timeout_read(Duration::from_secs(300))
        .redirects(redirects);
    if insecure {
        builder = builder.tls_config(Arc::new(insecure_tls()));
    }
    builder.build()
}

/// `GET url` without credentials, retrying transport failures as [`Registry::call`] does:
/// whether and how the registry answered.
///
/// Not [`Registry::ping`]: its errors cannot tell "no TLS connection" from the rest (a
/// token service that cannot be reached after the registry's 401 is a status 0 too), and a
/// probe has no business authenticating.
fn probe(agent: &ureq::Agent, url: &str) -> Probe {
    let mut attempt = 1;
    loop {
        let probe = probe_once(agent, url);
        if matches!(probe, Probe::Answered(_)) || attempt >= ATTEMPTS {
            return probe;
        }
        backoff(attempt);
        attempt += 1;
    }
}

fn probe_once(agent: &ureq::Agent, url: &str) -> Probe {
    match agent.get(url).call() {
        Ok(r) => Probe::Answered(r.status()),
        Err(ureq::Error::Status(code, _)) => Probe::Answered(code),
        Err(ureq::Error::Transport(t)) => Probe::NoAnswer(t.kind()),
    }
}

/// Whether an `--insecure` registry whose probe over TLS got `probe` is to be spoken to in
/// plain HTTP: only when the TLS connection itself could not be made (ureq reports a
/// refused or timed-out TCP connection, and a failed TLS handshake, the one against a plain
/// HTTP server included, as `ConnectionFailed`). A registry that answered over TLS speaks
/// TLS, whatever it said: after a 401 or 403 above all, going to plain HTTP would only send
/// the credentials the registry asked for in the clear. Other transport failures (DNS, a
/// connection broken after the handshake) would fail over plain HTTP too, or mean that TLS
/// works.
fn falls_back_to_plain_http(probe: Probe) -> bool {
    matches!(probe, Probe::NoAnswer(ureq::ErrorKind::ConnectionFailed))
}

fn is_transient(code: u16) -> bool {
    matches!(code, 408 | 429 | 500 | 502 | 503 | 504)
}

fn backoff(attempt: u32) {
    std::thread::sleep(Duration::from_millis(200 * (1 << attempt.min(5))));
}

fn strip_query(path: &str) -> &str {
    path.split('?').next().unwrap_or(path)
}

fn transport_message(t: &ureq::Transport) -> String {
    // ureq's message holds the URL, never credentials (they travel in headers only).
    t.to_string()
}

/// The first `message` of a registry's JSON `errors` body.
fn registry_message(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let e = v.get("errors")?.get(0)?;
    let code = e.get("code").and_then(|c| c.as_str()).unwrap_or("");
    let msg = e.get("message").and_then(|m| m.as_str()).unwrap_or("");
    Some(redact(&if code.is_empty() {
        msg.to_string()
    } else {
        format!("{msg} ({code})")
    }))
}

/// What a registry said, with anything shaped like a credential taken out: some echo the
/// request's `Authorization` header back in their error text.
fn redact(text: &str) -> String {
    let mut out = Vec::new();
    let mut hide_next = false;
    for word in text.split(' ') {
        if hide_next && !word.is_empty() {
            out.push("[redacted]".to_string());
            hide_next = false;
            continue;
        }
        let lower = word.to_ascii_lowercase();
        hide_next = lower == "basic" || lower == "bearer";
        let secretish = word.len() >= 24
            && word
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+/=-_.".contains(&b))
            && word.bytes().any(|b| b.is_ascii_digit())
            && word.bytes().any(|b| b.is_ascii_alphabetic());
        if secretish && !word.starts_with("sha256") {
            out.push("[redacted]".to_string());
        } else {
            out.push(word.to_string());
        }
    }
    out.join(" ")
}

/// TLS that accepts any certificate: only for `--insecure`.
fn insecure_tls() -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(crate::http::tls::accept_any(provider))
        .with_no_client_auth()
}

#[cfg(test)]
mod tests;
