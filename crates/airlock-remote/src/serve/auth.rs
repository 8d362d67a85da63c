//! HTTP basic auth for `airlock serve` against an htpasswd file of bcrypt entries (what
//! `htpasswd -B` writes).
//!
//! bcrypt is slow by design (milliseconds at htpasswd's cost 5, a quarter second at cost
//! 12), and a registry client sends its credentials with every request: a pull of a hundred
//! blobs would pay it a hundred times. So a verified pair is remembered, as a keyed hash
//! (the key is random per process, so the cache holds nothing a leaked memory dump could
//! be searched against faster than the bcrypt entries themselves), in a bounded cache. Only
//! successes are cached; failures pay bcrypt every time, on the blocking pool, a few at
//! once, so guessing stays slow and cannot starve the server's other work.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use sha2::{Digest as _, Sha256};
use tokio::sync::Semaphore;

use crate::{RemoteError, Result};

/// How many verified credentials are remembered: far more than the users of one server.
const CACHE_ENTRIES: usize = 1024;

/// The users of an htpasswd file, with their bcrypt hashes.
#[derive(Clone)]
pub struct Htpasswd {
    path: PathBuf,
    users: Arc<HashMap<Vec<u8>, String>>,
    /// A hash to spend the time of a bcrypt check on when the user is unknown, so that an
    /// unknown user is not told apart from a wrong password by how fast the answer comes.
    decoy: String,
}

impl std::fmt::Debug for Htpasswd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Htpasswd")
            .field("path", &self.path)
            .field("users", &self.users.len())
            .finish()
    }
}

fn refused(message: String) -> RemoteError {
    RemoteError::ServeRefused(message)
}

/// What an htpasswd hash other than bcrypt is, for the sentence that refuses it.
fn other_scheme(hash: &str) -> &'static str {
    if hash.starts_with("$apr1$") {
        "MD5 ($apr1$, htpasswd -m)"
    } else if hash.starts_with("{SHA}") {
        "SHA-1 ({SHA}, htpasswd -s)"
    } else if hash.starts_with("$5$") || hash.starts_with("$6$") {
        "SHA-crypt ($5$/$6$, htpasswd -2/-5)"
    } else if hash.starts_with("$1$") {
        "MD5-crypt ($1$)"
    } else if hash.starts_with("$2x$") {
        "the flawed bcrypt variant $2x$"
    } else if hash.len() == 13 {
        "DES crypt (htpasswd -d)"
    } else {
        "no scheme airlock knows (plain text, htpasswd -p?)"
    }
}

impl Htpasswd {
    /// Read `path`: `user:hash` lines, `#` comments and blank lines ignored. Every hash must
    /// be bcrypt (`$2y$`, `$2a$` or `$2b$`); anything else is refused, naming the line.
    pub fn load(path: &Path) -> Result<Htpasswd> {
        let text = std::fs::read(path)
            .map_err(|e| refused(format!("cannot read {}: {e}", path.display())))?;
        Self::parse(path, &text)
    }

    fn parse(path: &Path, text: &[u8]) -> Result<Htpasswd> {
        let mut users = HashMap::new();
        let at = |n: usize| format!("{} line {n}", path.display());
        for (i, line) in text.split(|b| *b == b'\n').enumerate() {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let line_no = i + 1;
            if line.iter().all(u8::is_ascii_whitespace) || line.first() == Some(&b'#') {
                continue;
            }
            let Some(colon) = line.iter().position(|b| *b == b':') else {
                return Err(refused(format!("{} is not a user:hash entry", at(line_no))));
            };
            let (user, hash) = (&line[..colon], &line[colon + 1..]);
            let shown = String::from_utf8_lossy(user).into_owned();
            if user.is_empty() {
                return Err(refused(format!("{} has no user name", at(line_no))));
            }
            let hash = std::str::from_utf8(hash).unwrap_or("").trim_end();
            let bcrypt_prefix = ["$2y$", "$2a$", "$2b$"].iter().any(|p| hash.starts_with(p));
            if !bcrypt_prefix {
                return Err(refused(format!(
                    "{} (user {shown}) is hashed with {}, and airlock accepts only bcrypt: make the entry with htpasswd -B",
                    at(line_no),
                    other_scheme(hash)
                )));
            }
            match hash.parse::<bcrypt::HashParts>() {
                Ok(parts) if (4..=31).contains(&parts.get_cost()) => {}
                _ => {
                    return Err(refused(format!(
                        "{} (user {shown}) is not a well-formed bcrypt hash",
                        at(line_no)
                    )))
                }
            }
            if users.insert(user.to_vec(), hash.to_string()).is_some() {
                return Err(refused(format!(
                    "{} names user {shown} a second time",
                    at(line_no)
                )));
            }
        }
        let Some(decoy) = users.values().next().cloned() else {
            return Err(refused(format!("{} holds no user", path.display())));
        };
        Ok(Htpasswd {
            path: path.to_path_buf(),
            users: Arc::new(users),
            decoy,
        })
    }

    /// The number of users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// True when the file holds no user (never, once loaded: such a file is refused).
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// bcrypt's answer for `user` and `password` (slow: call it off the async threads).
    fn verify(&self, user: &[u8], password: &[u8]) -> bool {
        match self.users.get(user) {
            Some(hash) => bcrypt::verify(password, hash).unwrap_or(false),
            None => {
                let _ = bcrypt::verify(password, &self.decoy);
                false
            }
        }
    }
}

/// The check every request goes through when `--htpasswd` is given.
pub(crate) struct Gate {
    users: Htpasswd,
    key: [u8; 32],
    cache: Mutex<Cache>,
    /// bcrypt checks running at once: at most one per core.
    checks: Arc<Semaphore>,
}

#[derive(Default)]
struct Cache {
    known: HashSet<[u8; 32]>,
    order: VecDeque<[u8; 32]>,
}

impl Cache {
    fn insert(&mut self, k: [u8; 32]) {
        if self.known.insert(k) {
            self.order.push_back(k);
            while self.order.len() > CACHE_ENTRIES {
                if let Some(old) = self.order.pop_front() {
                    self.known.remove(&old);
                }
            }
        }
    }
}

impl Gate {
    pub(crate) fn new(users: Htpasswd) -> Result<Gate> {
        let mut key = [0u8; 32];
        rustls::crypto::ring::default_provider()
            .secure_random
            .fill(&mut key)
            .map_err(|_| refused("no random bytes for the credentials cache".into()))?;
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(Gate {
            users,
            key,
            cache: Mutex::new(Cache::default()),
            checks: Arc::new(Semaphore::new(cores)),
        })
    }

    fn cache_key(&self, user: &[u8], password: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.key);
        h.update((user.len() as u64).to_be_bytes());
        h.update(user);
        h.update(password);
        h.finalize().into()
    }

    /// Whether the `Authorization` header value carries a user and password of the file.
    pub(crate) async fn allows(self: &Arc<Self>, authorization: Option<&str>) -> bool {
        let Some((user, password)) = authorization.and_then(basic_credentials) else {
            return false;
        };
        let k = self.cache_key(&user, &password);
        if self.cache.lock().is_ok_and(|c| c.known.contains(&k)) {
            return true;
        }
        let Ok(_permit) = self.checks.clone().acquire_owned().await else {
            return false;
        };
        let gate = self.clone();
        let ok = tokio::task::spawn_blocking(move || gate.users.verify(&user, &password))
            .await
            .unwrap_or(false);
        if ok {
            if let Ok(mut c) = self.cache.lock() {
                c.insert(k);
            }
        }
        ok
    }
}

/// `Basic base64(user:password)`: the user and password, as bytes (a password need not be
/// UTF-8; the user name ends at the first colon, as RFC 7617 has it).
fn basic_credentials(header: &str) -> Option<(Vec<u8>, Vec<u8>)> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let colon = raw.iter().position(|b| *b == b':')?;
    Some((raw[..colon].to_vec(), raw[colon + 1..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> std::result::Result<Htpasswd, String> {
        Htpasswd::parse(Path::new("users"), text.as_bytes()).map_err(|e| e.to_string())
    }

    #[test]
    fn only_bcrypt_entries_are_taken_and_others_are_named() {
        let good = bcrypt::hash("pw", 4).unwrap();
        let y = good.replacen("$2b$", "$2y$", 1);
        let a = good.replacen("$2b$", "$2a$", 1);
        let file = parse(&format!("# users\n\nann:{good}\nbob:{y}\r\ncid:{a}\n")).unwrap();
        assert_eq!(file.len(), 3);
        for user in ["ann", "bob", "cid"] {
            assert!(file.verify(user.as_bytes(), b"pw"), "{user}");
            assert!(!file.verify(user.as_bytes(), b"wrong"), "{user}");
        }
        assert!(!file.verify(b"nobody", b"pw"));

        for (line, says) in [
            ("dan:$apr1$abc$def", "MD5"),
            ("dan:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", "SHA-1"),
            ("dan:$6$salt$hash", "SHA-crypt"),
            ("dan:abJnggxhB/yWI", "DES crypt"),
            ("dan:plaintext", "plain text"),
        ] {
            let err = parse(&format!("ann:{good}\n{line}\n")).unwrap_err();
            assert!(
                err.contains("users line 2 (user dan)") && err.contains(says),
                "{err}"
            );
        }
        let err = parse("ann:$2y$05$short\n").unwrap_err();
        assert!(err.contains("not a well-formed bcrypt"), "{err}");
        let err = parse(&format!("ann:{good}\nann:{good}\n")).unwrap_err();
        assert!(err.contains("second time"), "{err}");
        assert!(parse("# nobody\n").unwrap_err().contains("holds no user"));
        assert!(parse("just-a-name\n").unwrap_err().contains("line 1"));
    }

    #[test]
    fn basic_header_is_split_at_the_first_colon() {
        let h = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("ann:pa:ss")
        );
        assert_eq!(
            basic_credentials(&h),
            Some((b"ann".to_vec(), b"pa:ss".to_vec()))
        );
        assert_eq!(basic_credentials("Bearer abc"), None);
        assert_eq!(basic_credentials("Basic !!!"), None);
    }

    #[tokio::test]
    async fn verified_credentials_are_cached_and_the_cache_is_bounded() {
        let hash = bcrypt::hash("pw", 4).unwrap();
        let gate = Arc::new(Gate::new(parse(&format!("ann:{hash}\n")).unwrap()).unwrap());
        let header = |u: &str, p: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        };
        assert!(gate.allows(Some(&header("ann", "pw"))).await);
        assert!(gate.cache.lock().unwrap().known.len() == 1);
        assert!(gate.allows(Some(&header("ann", "pw"))).await);
        assert!(!gate.allows(Some(&header("ann", "px"))).await);
        assert!(!gate.allows(None).await);
        assert_eq!(gate.cache.lock().unwrap().known.len(), 1);
        let mut c = Cache::default();
        for i in 0..(CACHE_ENTRIES + 10) {
            let mut k = [0u8; 32];
            k[..8].copy_from_slice(&(i as u64).to_be_bytes());
            c.insert(k);
        }
        assert_eq!(c.known.len(), CACHE_ENTRIES);
        assert_eq!(c.order.len(), CACHE_ENTRIES);
    }
}
