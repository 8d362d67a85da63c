//! Cosign signatures made with a certificate of a site's own CA (containers-policy.json
//! `pki`): no Fulcio and no Rekor. The certificate's key must have made the signature, the
//! certificate must chain to one of the site's roots now, and name the e-mail address or
//! host name required.

use std::collections::BTreeMap;

use x509_cert::Certificate;

use super::keyless::{chain_to, identity_of, signing_certificate, unusable};
use crate::error::Result;

/// A site's own CA for cosign certificates (containers-policy.json `pki`): no Rekor, the
/// chain checked now.
#[derive(Clone, Debug)]
pub struct Pki {
    /// Trusted roots, and intermediates the chain may go through.
    pub cas: Vec<Certificate>,
    /// The e-mail address the certificate must name, if any.
    pub email: Option<String>,
    /// The host name it must name, if any.
    pub hostname: Option<String>,
    /// Where the roots came from.
    pub label: String,
}

impl Pki {
    /// Roots (PEM) and optional intermediates (PEM) and the identity required.
    pub fn from_pem(
        roots: &[u8],
        intermediates: Option<&[u8]>,
        email: Option<String>,
        hostname: Option<String>,
        label: &str,
    ) -> Result<Pki> {
        let mut cas = Certificate::load_pem_chain(roots).map_err(|e| unusable(label, e))?;
        if let Some(i) = intermediates {
            cas.extend(Certificate::load_pem_chain(i).map_err(|e| unusable(label, e))?);
        }
        if email.is_none() && hostname.is_none() {
            return Err(unusable(label, "pki needs subjectEmail or subjectHostname"));
        }
        Ok(Pki {
            cas,
            email,
            hostname,
            label: label.to_string(),
        })
    }
}

/// Check a cosign signature made with a certificate of a site's own CA.
pub fn check(
    payload: &[u8],
    signature_b64: &str,
    annotations: &BTreeMap<String, String>,
    pki: &Pki,
) -> std::result::Result<String, String> {
    let (cert, chain) = signing_certificate(payload, signature_b64, annotations)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    chain_to(&cert, &chain, &pki.cas, &pki.label, now)?;
    let (_, subjects, code_signing) = identity_of(&cert);
    if !code_signing {
        return Err("its certificate is not for code signing".into());
    }
    for (want, shown) in [
        (pki.email.clone(), pki.email.clone()),
        (
            pki.hostname.as_ref().map(|h| format!("dns:{h}")),
            pki.hostname.clone(),
        ),
    ] {
        if let Some(w) = want {
            if !subjects.contains(&w) {
                return Err(format!(
                    "its certificate was issued to {}, not {}",
                    subjects.join(", "),
                    shown.unwrap_or_default()
                ));
            }
        }
    }
    let who = [pki.email.clone(), pki.hostname.clone()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(", ");
    Ok(format!("{who} (certificate of {})", pki.label))
}
