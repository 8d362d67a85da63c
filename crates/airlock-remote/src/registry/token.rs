//! Answering a registry's `WWW-Authenticate` challenge: basic credentials, or a bearer
//! token from the token service the challenge names.
//!
//! Credentials go to a token service only over HTTPS (or on this machine): a realm in plain
//! HTTP would put them on the network in the clear. Its answer is read up to
//! [`MAX_TOKEN_ANSWER`]: a token is a few KiB, an endless answer must not exhaust memory.

use std::io::Read;

use base64::Engine as _;

use super::auth::Credentials;
use crate::http::{is_loopback, percent_encode as encode};
use crate::{RemoteError, Result};

/// The largest token answer read (real ones are a few KiB).
pub const MAX_TOKEN_ANSWER: u64 = 1 << 20;

/// What a registry asked for.
#[derive(Clone, Debug)]
pub enum Challenge {
    /// User name and password in every request.
    Basic,
    /// A token from `realm`.
    Bearer {
        /// The token service URL.
        realm: String,
        /// The `service` parameter to send it.
        service: Option<String>,
    },
}

/// One token to fetch.
pub struct TokenRequest<'a> {
    /// The registry host, for messages.
    pub registry: &'a str,
    /// The token service URL.
    pub realm: &'a str,
    /// Its `service` parameter.
    pub service: Option<&'a str>,
    /// Space-separated scopes.
    pub scope: &'a str,
    /// Credentials to present, if any.
    pub credentials: Option<&'a Credentials>,
    /// `--insecure`: the user accepts plain HTTP.
    pub insecure: bool,
}

/// Fetch a bearer token.
pub fn fetch(agent: &ureq::Agent, t: &TokenRequest<'_>) -> Result<String> {
    let fail = |status: u16, message: String| RemoteError::Registry {
        host: t.registry.to_string(),
        status,
        message,
        what: "get a token".into(),
    };
    let mut url = t.realm.to_string();
    let plain_http = url
        .get(..7)
        .is_some_and(|s| s.eq_ignore_ascii_case("http://"));
    let realm_host = url
        .split_once("://")
        .map(|(_, rest)| rest.split(['/', '?']).next().unwrap_or(""))
        .unwrap_or("");
    if t.credentials.is_some() && plain_http && !t.insecure && !is_loopback(realm_host) {
        return Err(fail(
            401,
            format!("its token service {realm_host} speaks plain HTTP, and airlock sends credentials only over HTTPS (give --insecure to send them anyway)"),
        ));
    }
    let refresh = t
        .credentials
        .filter(|c| c.username == super::auth::IDENTITY_TOKEN_USER);
    if let Some(c) = refresh {
        // An identity token: the OAuth2 refresh-token grant, as docker does for it.
        let mut form: Vec<(&str, &str)> = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", c.password.as_str()),
            ("client_id", "airlock"),
        ];
        if let Some(s) = t.service {
            form.push(("service", s));
        }
        let scope = t.scope.trim();
        if !scope.is_empty() {
            form.push(("scope", scope));
        }
        let resp = agent.post(&url).send_form(&form).map_err(|e| match e {
            ureq::Error::Status(code, _) => fail(
                code,
                if code == 401 || code == 403 {
                    "the token service refused the stored identity token (log in again)".into()
                } else {
                    format!("the token service answered HTTP {code}")
                },
            ),
            ureq::Error::Transport(t) => fail(0, t.to_string()),
        })?;
        return token_of(resp, &fail);
    }
    let mut sep = if url.contains('?') { '&' } else { '?' };
    if let Some(s) = t.service {
        url.push_str(&format!("{sep}service={}", encode(s)));
        sep = '&';
    }
    for s in t.scope.split(' ').filter(|s| !s.is_empty()) {
        url.push_str(&format!("{sep}scope={}", encode(s)));
        sep = '&';
    }
    let mut req = agent.get(&url);
    if let Some(c) = t.credentials {
        req = req.set("Authorization", &basic_header(c));
    }
    let resp = req.call().map_err(|e| match e {
        ureq::Error::Status(code, _) => fail(
            code,
            if code == 401 || code == 403 {
                "the token service refused the credentials".into()
            } else {
                format!("the token service answered HTTP {code}")
            },
        ),
        ureq::Error::Transport(t) => fail(0, t.to_string()),
    })?;
    token_of(resp, &fail)
}

/// The token in a token service's answer, read with a size cap.
fn token_of(resp: ureq::Response, fail: &dyn Fn(u16, String) -> RemoteError) -> Result<String> {
    let mut bytes = Vec::new();
    resp.into_reader()
        .take(MAX_TOKEN_ANSWER + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(0, format!("reading the token service's answer: {e}")))?;
    if bytes.len() as u64 > MAX_TOKEN_ANSWER {
        return Err(fail(
            0,
            "the token service's answer is larger than 1 MiB; real ones are a few KiB".into(),
        ));
    }
    let v: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| RemoteError::Protocol(format!("token answer: {e}")))?;
    v.get("token")
        .or_else(|| v.get("access_token"))
        .and_then(|t| t.as_str())
        .map(str::to_string)
        .ok_or_else(|| RemoteError::Protocol("the token answer holds no token".into()))
}

/// The `Authorization` value for basic auth.
pub fn basic_header(c: &Credentials) -> String {
    let raw = format!("{}:{}", c.username, c.password);
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// Parse a `WWW-Authenticate` header; None for schemes airlock does not speak.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let (scheme, rest) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut realm = None;
    let mut service = None;
    for part in split_params(rest) {
        if let Some((k, v)) = part.split_once('=') {
            let v = v.trim().trim_matches('"').to_string();
            match k.trim().to_ascii_lowercase().as_str() {
                "realm" => realm = Some(v),
                "service" => service = Some(v),
                _ => {}
            }
        }
    }
    Some(Challenge::Bearer {
        realm: realm?,
        service,
    })
}

/// Split `a="x,y",b=z` on commas outside quotes.
fn split_params(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_and_basic_challenges() {
        match parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a:pull""#,
        ) {
            Some(Challenge::Bearer { realm, service }) => {
                assert_eq!(realm, "https://auth.example/token");
                assert_eq!(service.as_deref(), Some("registry.example"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_challenge(r#"Basic realm="Registry""#),
            Some(Challenge::Basic)
        ));
        assert!(parse_challenge("Negotiate").is_none());
    }

    #[test]
    fn an_endless_token_answer_is_cut_at_one_mib() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let Ok((mut conn, _)) = listener.accept() else {
                return;
            };
            let _ = std::io::Read::read(&mut conn, &mut [0u8; 4096]);
            let head = b"HTTP/1.1 200 OK\r\nContent-Length: 1073741824\r\nConnection: close\r\n\r\n{\"token\":\"";
            let _ = std::io::Write::write_all(&mut conn, head);
            let chunk = vec![b'a'; 64 << 10];
            while std::io::Write::write_all(&mut conn, &chunk).is_ok() {}
        });
        let agent = ureq::AgentBuilder::new().build();
        let realm = format!("http://127.0.0.1:{port}/token");
        let err = fetch(
            &agent,
            &TokenRequest {
                registry: "127.0.0.1",
                realm: &realm,
                service: None,
                scope: "repository:a:pull",
                credentials: None,
                insecure: false,
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("larger than 1 MiB"), "{err}");
    }

    #[test]
    fn credentials_go_to_a_plain_http_token_service_only_on_loopback_or_when_insecure() {
        let creds = Credentials {
            username: "u".into(),
            password: "p".into(),
        };
        let agent = ureq::AgentBuilder::new().build();
        let req = |realm, insecure| TokenRequest {
            registry: "registry.example",
            realm,
            service: None,
            scope: "repository:a:pull",
            credentials: Some(&creds),
            insecure,
        };
        // Refused before any connection is made (the host does not exist).
        match fetch(&agent, &req("http://auth.invalid/token", false)) {
            Err(RemoteError::Registry { message, .. }) => {
                assert!(message.contains("plain HTTP"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        // With --insecure, or over HTTPS, the request is made (and fails on the name).
        for (realm, insecure) in [
            ("http://auth.invalid/token", true),
            ("https://auth.invalid/t", false),
        ] {
            match fetch(&agent, &req(realm, insecure)) {
                Err(RemoteError::Registry { message, .. }) => {
                    assert!(!message.contains("plain HTTP"), "{message}")
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
