//! Error reporting: one sentence saying what went wrong, then a hint saying what to do.

use airlock_core::Error;

/// A mistake in how the command was used (exit code 1, like any error, but no hint needed
/// beyond the sentence itself).
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// What to do about a core error.
fn hint(e: &Error) -> Option<&'static str> {
    Some(match e {
        Error::FilesystemSnapshot { .. } => {
            "to make an image from a filesystem snapshot, use `airlock import FILE NAME:TAG`"
        }
        Error::ImageArchiveNotSnapshot { .. } => {
            "to load an image archive use `airlock load -i FILE`; if this really is a root filesystem that holds such files, add --force"
        }
        Error::NotATar { .. } => {
            "give an archive written by `docker save`, `podman save`, `skopeo copy` or `airlock save`"
        }
        // A layer that matches its own digest (an OCI blob) but not the config's diffID
        // was written that way; nothing happened to it on the way.
        Error::DiffIdMismatch {
            path_in_archive, ..
        } if path_in_archive.starts_with("blobs/") => {
            "the archive is inconsistent as written: its layer matches its own digest but not the diffID its config lists; build or save it again at the source; nothing was loaded"
        }
        Error::DigestMismatch { .. }
        | Error::DiffIdMismatch { .. }
        | Error::SizeMismatch { .. }
        | Error::Truncated { .. }
        | Error::BadTar { .. }
        | Error::Decompress { .. } => {
            "the archive was damaged on the way (or changed after it was written): copy it again and compare `sha256sum` on both sides; nothing was loaded"
        }
        Error::MissingBlob { .. } | Error::LayerCountMismatch { .. } | Error::BadMetadata { .. } => {
            "the archive is incomplete or inconsistent as written: save it again at the source; nothing was loaded"
        }
        Error::IncrementalBaseMissing { .. } => {
            "load the images it builds on (or a full archive) into this store first; `airlock inventory` there tells the sending side what it has"
        }
        Error::ImageNotFound { .. } | Error::NothingMatches { .. } => {
            "run `airlock images` to see what the store holds"
        }
        Error::AmbiguousId { .. } => "give more characters of the ID, or a name",
        Error::BadReference { .. } => "names look like `redis:alpine`, `registry.example.com/team/app:1.2`",
        Error::NoImage { .. } => "check that this is the archive you meant to load; a filesystem tar becomes an image with `airlock import FILE NAME:TAG`",
        Error::AmbiguousArchive { .. } => "docker, podman, skopeo and containerd would not all read this archive the way airlock does, so it is not trusted; make it again with docker save, podman save, skopeo or airlock save; nothing was loaded",
        Error::OutsideInput { .. } => "a layout directory may hold links only within itself; copy the files it should hold into it",
        Error::NotAnImage { .. } => "`airlock artifacts` lists artifacts; `airlock save` and `push` carry them as they are",
        Error::DamagedBlob { .. } => "the store's disk copy changed after it was verified: `airlock fsck` lists the damage; load the image's archive again (it replaces damaged blobs) or `airlock fsck --repair` to drop what is broken",
        Error::TransferNotTrusted { .. } => "check that --trusted-key is the public half of the key `save --sign-key` used, and that the archive is the one that was signed; do not load it otherwise",
        Error::NotSigned { .. } => "sign the images at the source (`cosign sign --key ...`) and carry their signatures with them (`save` and `pull` take them unless --no-referrers), or check against the key they were signed with; nothing was loaded",
        Error::BadStore { .. } => "point --store (or AIRLOCK_STORE) at an empty or an airlock store directory",
        _ => return None,
    })
}

/// What to do about a remote error.
fn remote_hint(r: &airlock_remote::RemoteError) -> Option<&'static str> {
    use airlock_remote::RemoteError;
    match r {
        RemoteError::NoEngine { socket, .. } if socket.starts_with("ssh://") => Some(
            "check that `ssh HOST docker version` works from this shell (keys, known hosts, docker on the far side's PATH)",
        ),
        RemoteError::NoEngine { socket, .. } if socket.starts_with("tcp://") => Some(
            "check that the engine listens on that address (dockerd -H tcp://...), or choose another with DOCKER_HOST or --context",
        ),
        RemoteError::NoEngine { .. } => {
            Some("start the Docker Engine, or point DOCKER_HOST at its socket (unix:///run/docker.sock, or podman's), or choose a context with --context")
        }
        RemoteError::EngineTls { .. } => Some(
            "the files must be the engine's CA (ca.pem) and a client certificate it accepts (cert.pem, key.pem), as `docker --tlsverify` uses them",
        ),
        RemoteError::Core(Error::Transport { source }) => source
            .downcast_ref::<RemoteError>()
            .and_then(remote_hint),
        RemoteError::Core(c) => hint(c),
        RemoteError::Registry { status: 401, .. } => {
            Some("log in first: echo \"$PASSWORD\" | airlock login -u USER --password-stdin HOST")
        }
        RemoteError::Corrupt { .. } => Some(
            "the registry, or something between it and you, served damaged content; nothing was stored: try again, or check the registry's storage",
        ),
        // rustls's words for a certificate whose CA is not in the trust store.
        RemoteError::Registry {
            status: 0, message, ..
        } if message.contains("UnknownIssuer") => Some(
            "the registry's certificate comes from a CA this machine does not trust: add the CA to the system store (cp CA.crt /usr/local/share/ca-certificates/ && update-ca-certificates) or point SSL_CERT_FILE at it; --insecure skips the check",
        ),
        RemoteError::Registry { status: 0, .. } => {
            Some("check the registry address; a registry without TLS needs --insecure (loopback ones work as they are)")
        }
        _ => None,
    }
}

/// Print an error chain to stderr: the sentence, then the hint.
pub fn report(e: &anyhow::Error) {
    let core = e.chain().find_map(|c| c.downcast_ref::<Error>());
    let mut msg = e.to_string();
    // Context added by the CLI ("cannot open X") plus its cause, in one sentence.
    if let Some(cause) = e.chain().nth(1) {
        let cause = cause.to_string();
        if core.is_none() && !msg.contains(&cause) {
            msg = format!("{msg}: {cause}");
        }
    }
    eprintln!("airlock: error: {msg}");
    // The first error in the chain (or behind a core error a transport raised) that has a
    // hint gives it.
    let remote_hint = e
        .chain()
        .filter_map(|c| c.downcast_ref::<airlock_remote::RemoteError>())
        .find_map(remote_hint);
    if let Some(h) = core.and_then(hint).or(remote_hint) {
        eprintln!("hint: {h}");
    }
}
