//! containers-policy.json, the format `/etc/containers/policy.json` is in (what podman,
//! skopeo and CRI-O read), so a site reuses the policy it already has.
//!
//! What is read: `default`, and the `transports.docker` scopes (an image is judged by each
//! of its names as a `docker://` reference: the most specific scope that matches, else
//! `transports.docker[""]`, else `default`; an unnamed image by `default`). Requirements:
//! `insecureAcceptAnything`, `reject`, `signedBy` with `keyType: GPGKeys` and
//! `sigstoreSigned` with a public key (from `keyPath`, `keyPaths` or `keyData`) or keyless
//! (`fulcio` with `rekorPublicKeyPath`/`Data`) or by a site's own CA (`pki`), and every
//! `signedIdentity` rule. A requirement airlock cannot check (`signedBaseLayer`, X.509
//! keys) is refused when the policy is read, so a policy is never half applied.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine;
use serde::Deserialize;
use serde_json::Value;

use super::cosign::{self, ValidSignature};
use super::{gpg, PublicKey, TrustedKeys};
use crate::error::{Error, Result};
use crate::reference::Reference;

/// A parsed policy.
#[derive(Debug)]
pub struct Policy {
    default: Vec<Requirement>,
    docker: BTreeMap<String, Vec<Requirement>>,
    /// The file it came from.
    pub label: String,
}

#[derive(Debug)]
enum Requirement {
    Accept,
    Reject,
    Signed {
        keys: TrustedKeys,
        identity: IdentityRule,
        /// `signedBy` (GPG) or `sigstoreSigned` (cosign).
        gpg: bool,
    },
}

#[derive(Debug)]
enum IdentityRule {
    MatchRepoDigestOrExact,
    MatchExact,
    MatchRepository,
    ExactReference(String),
    ExactRepository(String),
    Remap {
        prefix: String,
        signed_prefix: String,
    },
}

#[derive(Deserialize)]
struct PolicyFile {
    #[serde(default)]
    default: Vec<Value>,
    #[serde(default)]
    transports: BTreeMap<String, BTreeMap<String, Vec<Value>>>,
}

fn bad(label: &str, detail: impl std::fmt::Display) -> Error {
    Error::Usage(format!(
        "{label} is not a policy airlock can apply: {detail}"
    ))
}

impl Policy {
    /// Read a policy file.
    pub fn from_file(path: &Path) -> Result<Policy> {
        let bytes = std::fs::read(path).map_err(|e| Error::io("read", path, e))?;
        Policy::parse(&bytes, &path.display().to_string())
    }

    /// Parse a policy's bytes, named `label` in messages.
    pub fn parse(bytes: &[u8], label: &str) -> Result<Policy> {
        let file: PolicyFile =
            serde_json::from_slice(bytes).map_err(|e| bad(label, format!("{e}")))?;
        if file.default.is_empty() {
            return Err(bad(
                label,
                "it has no \"default\" requirements (containers/image refuses such a policy too)",
            ));
        }
        let reqs = |list: &[Value], scope: &str| -> Result<Vec<Requirement>> {
            if list.is_empty() {
                return Err(bad(
                    label,
                    format!("scope \"{scope}\" lists no requirement"),
                ));
            }
            list.iter().map(|v| requirement(v, label, scope)).collect()
        };
        let default = reqs(&file.default, "default")?;
        let mut docker = BTreeMap::new();
        for (transport, scopes) in &file.transports {
            for (scope, list) in scopes {
                // Other transports' scopes are parsed too: a typo anywhere is an error.
                let parsed = reqs(list, &format!("{transport}:{scope}"))?;
                if transport == "docker" {
                    docker.insert(scope.clone(), parsed);
                }
            }
        }
        Ok(Policy {
            default,
            docker,
            label: label.to_string(),
        })
    }

    /// The requirements for an image named `name` (none: `default`), and the scope chosen.
    fn requirements_for(&self, name: Option<&Reference>) -> (&[Requirement], String) {
        let Some(name) = name else {
            return (&self.default, "default".into());
        };
        for scope in scopes_of(name) {
            if let Some(r) = self.docker.get(&scope) {
                return (r, format!("transports.docker \"{scope}\""));
            }
        }
        match self.docker.get("") {
            Some(r) => (r, "transports.docker \"\"".into()),
            None => (&self.default, "default".into()),
        }
    }

    /// Whether `image` (under `name`) meets the policy: the signers it was accepted on (or
    /// the rule that asks for none, and `true`), or why not.
    pub fn judge(
        &self,
        image: &crate::transport::SourceImage,
        name: Option<&Reference>,
        all: &[crate::transport::SourceImage],
        read: &dyn Fn(&crate::Digest) -> Result<Vec<u8>>,
    ) -> std::result::Result<(String, bool), String> {
        let (reqs, scope) = self.requirements_for(name);
        let mut signers = Vec::new();
        for req in reqs {
            match req {
                Requirement::Accept => {}
                Requirement::Reject => return Err(format!("{} {scope} rejects it", self.label)),
                Requirement::Signed {
                    keys,
                    identity,
                    gpg,
                } => {
                    let (valid, mut problems) = cosign::signatures(image, all, keys, read);
                    let kind = if *gpg { "GPG" } else { "sigstore" };
                    let matching: Vec<&ValidSignature> = valid
                        .iter()
                        .filter(|v| v.gpg == *gpg)
                        .filter(|v| match identity_matches(identity, name, &v.identity) {
                            Ok(()) => true,
                            Err(why) => {
                                problems.push(why);
                                false
                            }
                        })
                        .collect();
                    match matching.first() {
                        Some(v) => signers.push(v.signer.clone()),
                        None => {
                            if problems.is_empty() {
                                problems.push(format!("no {kind} signature found"));
                            }
                            return Err(format!(
                                "{scope} requires a {kind} signature: {}",
                                problems.join("; ")
                            ));
                        }
                    }
                }
            }
        }
        Ok(if signers.is_empty() {
            (format!("{} {scope} accepts it unsigned", self.label), true)
        } else {
            (signers.join(", "), false)
        })
    }
}

/// The scopes a docker reference falls in, most specific first: `host/ns/repo:tag` (or
/// `@digest`), `host/ns/repo`, `host/ns`, `host`, then `*.domain` wildcards of the host.
fn scopes_of(name: &Reference) -> Vec<String> {
    let mut out = vec![name.to_string()];
    let repo = name.repository();
    let mut cut = repo.as_str();
    out.push(cut.to_string());
    while let Some((head, _)) = cut.rsplit_once('/') {
        out.push(head.to_string());
        cut = head;
    }
    let host = name.domain().split(':').next().unwrap_or("");
    let mut rest = host;
    while let Some((_, tail)) = rest.split_once('.') {
        out.push(format!("*.{tail}"));
        rest = tail;
    }
    out
}

/// A signed identity as written (`repo` or `repo:tag` or `repo@digest`): its repository,
/// and the whole reference when it names a tag or digest.
fn identity_parts(s: &str) -> Option<(String, Option<String>)> {
    let r = Reference::parse(s).ok()?;
    let last = s.rsplit('/').next().unwrap_or(s);
    let tagged = s.contains('@') || last.contains(':');
    Some((r.repository(), tagged.then(|| r.to_string())))
}

/// Whether a signature naming `signed` counts for an image named `name` under `rule`.
fn identity_matches(
    rule: &IdentityRule,
    name: Option<&Reference>,
    signed: &str,
) -> std::result::Result<(), String> {
    let (signed_repo, signed_exact) = identity_parts(signed)
        .ok_or_else(|| format!("it signs '{signed}', which is no image name"))?;
    let mismatch = |want: &str| Err(format!("it signs '{signed}', not '{want}'"));
    let need_name =
        || name.ok_or_else(|| "the image has no name to match its signature against".to_string());
    match rule {
        IdentityRule::MatchRepository => {
            let n = need_name()?;
            if signed_repo == n.repository() {
                Ok(())
            } else {
                mismatch(&n.repository())
            }
        }
        IdentityRule::MatchExact => {
            let n = need_name()?;
            if signed_exact.as_deref() == Some(n.to_string().as_str()) {
                Ok(())
            } else {
                mismatch(&n.to_string())
            }
        }
        IdentityRule::MatchRepoDigestOrExact => {
            let n = need_name()?;
            if n.digest().is_some() && n.tag().is_none() {
                if signed_repo == n.repository() {
                    Ok(())
                } else {
                    mismatch(&n.repository())
                }
            } else if signed_exact.as_deref() == Some(n.to_string().as_str()) {
                Ok(())
            } else {
                mismatch(&n.to_string())
            }
        }
        IdentityRule::ExactReference(want) => match identity_parts(want) {
            Some((_, Some(w))) if signed_exact.as_deref() == Some(w.as_str()) => Ok(()),
            _ => mismatch(want),
        },
        IdentityRule::ExactRepository(want) => match identity_parts(want) {
            Some((w, _)) if w == signed_repo => Ok(()),
            _ => mismatch(want),
        },
        IdentityRule::Remap {
            prefix,
            signed_prefix,
        } => {
            let n = need_name()?;
            let full = n.to_string();
            let remapped = match full.strip_prefix(prefix.as_str()) {
                Some(rest) if rest.is_empty() || rest.starts_with(['/', ':', '@']) => {
                    Reference::parse(&format!("{signed_prefix}{rest}"))
                        .map_err(|e| e.to_string())?
                }
                _ => n.clone(),
            };
            identity_matches(
                &IdentityRule::MatchRepoDigestOrExact,
                Some(&remapped),
                signed,
            )
        }
    }
}

/// One requirement of `scope`.
fn requirement(v: &Value, label: &str, scope: &str) -> Result<Requirement> {
    let field = |k: &str| v.get(k).and_then(Value::as_str);
    let here = |detail: String| bad(label, format!("in \"{scope}\": {detail}"));
    let kind = field("type").ok_or_else(|| here("a requirement has no \"type\"".into()))?;
    Ok(match kind {
        "insecureAcceptAnything" => Requirement::Accept,
        "reject" => Requirement::Reject,
        "signedBy" | "sigstoreSigned" => {
            let gpg_kind = kind == "signedBy";
            if gpg_kind && field("keyType") != Some("GPGKeys") {
                return Err(here(format!(
                    "signedBy with keyType {:?}: only GPGKeys is defined for it",
                    field("keyType").unwrap_or("(none)")
                )));
            }
            let keys = match (v.get("fulcio"), v.get("pki")) {
                (Some(f), _) if !gpg_kind => fulcio(f, v).map_err(here)?,
                (_, Some(p)) if !gpg_kind => pki(p).map_err(here)?,
                _ => key_material(v, gpg_kind).map_err(here)?,
            };
            let identity = identity_rule(v.get("signedIdentity")).map_err(here)?;
            Requirement::Signed {
                keys,
                identity,
                gpg: gpg_kind,
            }
        }
        other => {
            return Err(here(format!(
                "requirement type \"{other}\" is not one airlock checks"
            )))
        }
    })
}

/// The keys of a `signedBy` or `sigstoreSigned` requirement.
fn key_material(v: &Value, gpg_kind: bool) -> std::result::Result<TrustedKeys, String> {
    let mut blobs: Vec<(Vec<u8>, String)> = Vec::new();
    if let Some(p) = v.get("keyPath").and_then(Value::as_str) {
        blobs.push((
            std::fs::read(p).map_err(|e| format!("keyPath {p}: {e}"))?,
            p.to_string(),
        ));
    }
    if let Some(list) = v.get("keyPaths").and_then(Value::as_array) {
        for p in list.iter().filter_map(Value::as_str) {
            blobs.push((
                std::fs::read(p).map_err(|e| format!("keyPaths {p}: {e}"))?,
                p.to_string(),
            ));
        }
    }
    if let Some(d) = v.get("keyData").and_then(Value::as_str) {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(d)
            .map_err(|_| "keyData is not base64".to_string())?;
        blobs.push((bytes, "keyData".to_string()));
    }
    if blobs.len() != 1 {
        return Err("give exactly one of keyPath, keyPaths and keyData".into());
    }
    let mut keys = TrustedKeys::default();
    for (bytes, label) in blobs {
        if gpg_kind {
            keys.gpg
                .push(gpg::Keyring::from_bytes(&bytes, &label).map_err(|e| e.to_string())?);
        } else {
            let text = String::from_utf8_lossy(&bytes);
            keys.pem
                .push(PublicKey::from_pem(&text, &label).map_err(|e| e.to_string())?);
        }
    }
    Ok(keys)
}

/// The data a `path` or `data` (base64) field pair of `v` gives.
fn path_or_data(
    v: &Value,
    path: &str,
    data: &str,
) -> std::result::Result<(Vec<u8>, String), String> {
    match (
        v.get(path).and_then(Value::as_str),
        v.get(data).and_then(Value::as_str),
    ) {
        (Some(p), None) => Ok((
            std::fs::read(p).map_err(|e| format!("{path} {p}: {e}"))?,
            p.to_string(),
        )),
        (None, Some(d)) => Ok((
            base64::engine::general_purpose::STANDARD
                .decode(d)
                .map_err(|_| format!("{data} is not base64"))?,
            data.to_string(),
        )),
        _ => Err(format!("give exactly one of {path} and {data}")),
    }
}

/// A `sigstoreSigned` requirement's `fulcio` (with the Rekor key beside it): keyless.
fn fulcio(f: &Value, v: &Value) -> std::result::Result<TrustedKeys, String> {
    let (ca, ca_label) = path_or_data(f, "caPath", "caData")?;
    let (rekor, _) = path_or_data(v, "rekorPublicKeyPath", "rekorPublicKeyData")
        .map_err(|e| format!("fulcio needs Rekor's key: {e}"))?;
    let field = |k: &str| {
        f.get(k)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| format!("fulcio needs \"{k}\""))
    };
    let root =
        super::keyless::TrustedRoot::from_pem(&ca, &String::from_utf8_lossy(&rekor), &ca_label)
            .map_err(|e| e.to_string())?;
    Ok(TrustedKeys {
        keyless: vec![super::keyless::Keyless {
            root,
            identity: super::keyless::KeylessIdentity {
                issuer: field("oidcIssuer")?,
                subject: field("subjectEmail")?,
            },
        }],
        ..TrustedKeys::default()
    })
}

/// A `sigstoreSigned` requirement's `pki`: a site's own CA.
fn pki(p: &Value) -> std::result::Result<TrustedKeys, String> {
    let (roots, label) = path_or_data(p, "caRootsPath", "caRootsData")?;
    let intermediates = match (p.get("caIntermediatesPath"), p.get("caIntermediatesData")) {
        (None, None) => None,
        _ => Some(path_or_data(p, "caIntermediatesPath", "caIntermediatesData")?.0),
    };
    let field = |k: &str| p.get(k).and_then(Value::as_str).map(str::to_string);
    let pki = super::pki::Pki::from_pem(
        &roots,
        intermediates.as_deref(),
        field("subjectEmail"),
        field("subjectHostname"),
        &label,
    )
    .map_err(|e| e.to_string())?;
    Ok(TrustedKeys {
        pki: vec![pki],
        ..TrustedKeys::default()
    })
}

/// A `signedIdentity` object (absent: `matchRepoDigestOrExact`).
fn identity_rule(v: Option<&Value>) -> std::result::Result<IdentityRule, String> {
    let Some(v) = v else {
        return Ok(IdentityRule::MatchRepoDigestOrExact);
    };
    let s = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| format!("signedIdentity needs \"{k}\""))
    };
    Ok(match v.get("type").and_then(Value::as_str) {
        Some("matchRepoDigestOrExact") => IdentityRule::MatchRepoDigestOrExact,
        Some("matchExact") => IdentityRule::MatchExact,
        Some("matchRepository") => IdentityRule::MatchRepository,
        Some("exactReference") => IdentityRule::ExactReference(s("dockerReference")?),
        Some("exactRepository") => IdentityRule::ExactRepository(s("dockerRepository")?),
        Some("remapIdentity") => IdentityRule::Remap {
            prefix: s("prefix")?,
            signed_prefix: s("signedPrefix")?,
        },
        other => return Err(format!("signedIdentity type {other:?} is not defined")),
    })
}

/// The policy as a gate: every container image must meet it under each of its names.
#[derive(Debug)]
pub struct PolicyGate {
    policy: Policy,
    verdicts: super::VerdictLog,
}

impl PolicyGate {
    /// Gate copies on `policy`.
    pub fn new(policy: Policy) -> PolicyGate {
        PolicyGate {
            policy,
            verdicts: Default::default(),
        }
    }

    /// The verdicts of the last check.
    pub fn verdicts(&self) -> Vec<(String, cosign::Verdict)> {
        self.verdicts.all()
    }
}

impl crate::copy::Gate for PolicyGate {
    fn check(
        &self,
        images: &[crate::transport::SourceImage],
        read: &dyn Fn(&crate::Digest) -> Result<Vec<u8>>,
    ) -> Result<()> {
        let mut verdicts = Vec::new();
        for img in images.iter().filter(|i| i.artifact_type().is_none()) {
            let names: Vec<Option<&Reference>> = if img.names.is_empty() {
                vec![None]
            } else {
                img.names.iter().map(Some).collect()
            };
            for name in names {
                let label = name.map_or_else(|| img.root.digest.to_string(), |n| n.familiar());
                let verdict = match self.policy.judge(img, name, images, read) {
                    Ok((by, unsigned_ok)) => cosign::Verdict {
                        image: img.root.digest.clone(),
                        signed_by: Some(by),
                        problems: Vec::new(),
                        unsigned_ok,
                    },
                    Err(why) => cosign::Verdict {
                        image: img.root.digest.clone(),
                        signed_by: None,
                        problems: vec![why],
                        unsigned_ok: false,
                    },
                };
                verdicts.push((label, verdict));
            }
        }
        self.verdicts.record(verdicts)
    }
}

impl crate::transfer::SignatureChecks for PolicyGate {
    fn status_of(&self, root: &crate::Digest) -> Option<crate::transfer::SignatureStatus> {
        self.verdicts.status_of(root)
    }
}
