//! Unit tests of the spec documents: Go's way of reading keys, nulls and nesting.

use super::*;

#[test]
fn manifest_json_keys_match_as_docker_matches_them() {
    // jib's spelling, a duplicate (the last wins, as in Go) and nulls for lists.
    let text = br#"[{"config":"a.json","repoTags":null,"Layers":["x.tar"],"layers":["y.tar"]},
                    {"CONFIG":"b.json","Layers":null}]"#;
    let entries: Vec<DockerArchiveEntry> = serde_json::from_slice(text).unwrap();
    assert_eq!(entries[0].config, "a.json");
    assert!(entries[0].repo_tags.is_empty());
    assert_eq!(entries[0].layers, ["y.tar"]);
    assert_eq!(entries[1].config, "b.json");
    assert!(entries[1].layers.is_empty());
    let e = serde_json::from_slice::<Vec<DockerArchiveEntry>>(br#"[{"Layers":[]}]"#).unwrap_err();
    assert!(e.to_string().contains("Config"), "{e}");
    // Written back with Docker's own names.
    let out = serde_json::to_string(&entries[0]).unwrap();
    assert!(
        out.contains(r#""Config":"a.json""#) && out.contains(r#""RepoTags":[]"#),
        "{out}"
    );
}

#[test]
fn artifacts_are_told_from_images_by_type_config_and_layers() {
    let m = |artifact: Option<&str>, config: &str, layer: &str| Manifest {
        schema_version: 2,
        media_type: Some(media_type::OCI_MANIFEST.into()),
        config: Descriptor::new(config, Digest::of(b"c"), 1),
        layers: vec![Descriptor::new(layer, Digest::of(b"l"), 1)],
        annotations: None,
        artifact_type: artifact.map(str::to_string),
        subject: None,
    };
    let tar = media_type::OCI_LAYER_GZIP;
    assert_eq!(m(None, media_type::OCI_CONFIG, tar).artifact_type(), None);
    assert_eq!(
        m(
            None,
            media_type::DOCKER_CONFIG,
            media_type::DOCKER_LAYER_GZIP
        )
        .artifact_type(),
        None
    );
    // Old writers leave the config's media type out: still an image.
    assert_eq!(m(None, "", tar).artifact_type(), None);
    // OCI 1.1 artifactType wins.
    let sbom = m(
        Some("application/spdx+json"),
        media_type::OCI_EMPTY,
        "application/spdx+json",
    );
    assert_eq!(
        sbom.artifact_type().as_deref(),
        Some("application/spdx+json")
    );
    // Without it, the config's type (a Helm chart) ...
    let helm = "application/vnd.cncf.helm.config.v1+json";
    assert_eq!(m(None, helm, tar).artifact_type().as_deref(), Some(helm));
    // ... or, under an image config, a layer that is no filesystem (cosign, in-toto).
    let cosign = "application/vnd.dev.cosign.simplesigning.v1+json";
    assert_eq!(
        m(None, media_type::OCI_CONFIG, cosign)
            .artifact_type()
            .as_deref(),
        Some(cosign)
    );
}

#[test]
fn keys_go_would_match_ignoring_case_are_refused() {
    let d = format!(
        r#"{{"mediaType":"x","digest":"{}","size":1}}"#,
        Digest::of(b"c")
    );
    // docker reads `Layers` as the layers; serde would not: refused, naming the key.
    let m = format!(r#"{{"schemaVersion":2,"config":{d},"layers":[],"Layers":[{d}]}}"#);
    let e = parse_document(m.as_bytes(), "m").err().unwrap().to_string();
    assert!(e.contains("\"Layers\"") && e.contains("\"layers\""), "{e}");
    let m = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"x","Digest":"{}","size":1}}]}}"#,
        Digest::of(b"c")
    );
    assert!(parse_document(m.as_bytes(), "i").is_err());
    let c = br#"{"architecture":"amd64","os":"linux","RootFS":{"type":"layers","diff_ids":[]}}"#;
    assert!(parse_config(c, "c").is_err());
    // What airlock does not read (labels, annotations) may be spelt any way.
    let c = br#"{"architecture":"amd64","os":"linux","config":{"Labels":{"OS":"x","Layers":"y"}},"rootfs":{"type":"layers","diff_ids":[]}}"#;
    assert!(parse_config(c, "c").is_ok());
    let m =
        format!(r#"{{"schemaVersion":2,"config":{d},"layers":[],"annotations":{{"Layers":"x"}}}}"#);
    assert!(parse_document(m.as_bytes(), "m").is_ok());
}

#[test]
fn null_lists_are_empty_lists() {
    let idx: Index = serde_json::from_slice(br#"{"schemaVersion":2,"manifests":null}"#).unwrap();
    assert!(idx.manifests.is_empty());
    let c = format!(
        r#"{{"schemaVersion":2,"config":{{"mediaType":"x","digest":"{}","size":1}},"layers":null}}"#,
        Digest::of(b"c")
    );
    let m: Manifest = serde_json::from_str(&c).unwrap();
    assert!(m.layers.is_empty());
}

#[test]
fn documents_nested_too_deep_are_refused_and_the_key_check_is_never_skipped() {
    let nested = |depth: usize, extra: &str| {
        format!(
            r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}}{extra},"x":{}{}}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        )
    };
    // Brackets inside strings are not nesting.
    let c = nested(100, r#","y":"[[[[\"[[[[""#);
    assert!(parse_config(c.as_bytes(), "c").is_ok());
    // serde would skip the unknown field at any depth; Go refuses past 10,000.
    let e = parse_config(nested(10_001, "").as_bytes(), "c").unwrap_err();
    assert!(e.to_string().contains("10002 levels deep"), "{e}");
    // Past serde_json's limit a Value cannot be parsed: the key Go would take for
    // `rootfs` must still be refused, so the document is.
    let c = nested(200, r#","RootFS":{"type":"layers","diff_ids":[]}"#);
    assert!(parse_config(c.as_bytes(), "c").is_err());
    let c = nested(100, r#","RootFS":{"type":"layers","diff_ids":[]}"#);
    assert!(parse_config(c.as_bytes(), "c")
        .unwrap_err()
        .to_string()
        .contains("RootFS"));
    let m = format!(
        r#"{{"schemaVersion":2,"manifests":[],"x":{}{}}}"#,
        "{\"a\":".repeat(200),
        "}".repeat(200)
    );
    let e = parse_document(m.as_bytes(), "i").err().unwrap();
    assert!(e.to_string().contains("levels deep"), "{e}");
}
