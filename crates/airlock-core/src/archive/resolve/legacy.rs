//! Docker's archive format before 1.10 (`repositories` and `<id>/json`, `<id>/layer.tar`,
//! no `manifest.json`), which Docker still loads. An image is a chain of v1 images, each
//! with a parent; its config is made the way Docker's legacy loader makes it
//! (`MakeConfigFromV1Config`): the top image's JSON without its v1 fields, plus `rootfs`
//! (the layers' diffIDs) and `history` (one entry per v1 image), keys sorted and values
//! compacted as Go's encoding/json writes them. So the image ID is Docker's.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{layer_type, BlobLookup};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::reference::Reference;
use crate::spec::{media_type, Descriptor};
use crate::transport::SourceImage;

/// The fields of a v1 image JSON the loader reads.
#[derive(Deserialize, Default)]
struct V1Image {
    #[serde(default)]
    parent: Option<String>,
    #[serde(default)]
    created: Option<String>,
    #[serde(default)]
    author: Option<String>,
    #[serde(default)]
    comment: Option<String>,
    #[serde(default)]
    container_config: Option<V1ContainerConfig>,
    /// schema 1: a history entry without a layer of its own.
    #[serde(default)]
    throwaway: bool,
}

#[derive(Deserialize, Default)]
struct V1ContainerConfig {
    #[serde(rename = "Cmd", default)]
    cmd: Option<Vec<String>>,
}

/// Images of a pre-1.10 archive, one per `repositories` name.
pub(super) fn from_repositories(
    lookup: &BlobLookup,
    repositories: &[u8],
) -> Result<Vec<SourceImage>> {
    let repos: BTreeMap<String, BTreeMap<String, String>> =
        crate::spec::parse_json(repositories, "repositories", "repositories file")?;
    let mut images: Vec<SourceImage> = Vec::new();
    for (repo, tags) in &repos {
        for (tag, id) in tags {
            let name = Reference::parse(&format!("{repo}:{tag}"))?;
            let img = image_of(lookup, id)?;
            match images.iter_mut().find(|i| i.root.digest == img.root.digest) {
                Some(i) => i.names.push(name),
                None => images.push(SourceImage {
                    names: vec![name],
                    ..img
                }),
            }
        }
    }
    if images.is_empty() {
        return Err(Error::NoImage {
            detail: "its 'repositories' file names no image".into(),
        });
    }
    Ok(images)
}

/// The image whose top v1 image is `top`: its chain, base first, made into a config and an
/// OCI manifest (handed on as generated, like a docker-archive's).
fn image_of(lookup: &BlobLookup, top: &str) -> Result<SourceImage> {
    let mut chain: Vec<(String, Vec<u8>, V1Image)> = Vec::new();
    let mut next = Some(top.to_string());
    while let Some(id) = next {
        if chain.len() > 512 || chain.iter().any(|(c, _, _)| *c == id) {
            return Err(Error::BadMetadata {
                path_in_archive: format!("{id}/json"),
                what: "v1 image",
                detail: "its parents loop or run deeper than 512".into(),
            });
        }
        let path = format!("{id}/json");
        let (_, bytes) = lookup.read_path(&path, "repositories")?;
        let v1: V1Image = crate::spec::parse_json(&bytes, &path, "v1 image")?;
        next = v1.parent.clone().filter(|p| !p.is_empty());
        chain.push((id, bytes, v1));
    }
    chain.reverse();
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    let mut history = Vec::new();
    for (id, _, v1) in &chain {
        let path = format!("{id}/layer.tar");
        let f = lookup.file(&path).ok_or_else(|| Error::MissingBlob {
            referenced_by: format!("{id}/json"),
            missing: path.clone(),
        })?;
        let (codec, diff) = lookup.layer_facts(&f.digest, &path)?;
        layers.push(Descriptor::new(layer_type(codec), f.digest.clone(), f.size));
        diff_ids.push(diff);
        history.push(history_entry(v1, false));
    }
    let top_json = &chain.last().expect("the chain holds the top image").1;
    let config = make_config(top_json, &diff_ids, &history, top)?;
    Ok(generated_image(lookup, config, layers, diff_ids))
}

/// An OCI manifest over a made config, both handed on as generated.
fn generated_image(
    lookup: &BlobLookup,
    config: Vec<u8>,
    layers: Vec<Descriptor>,
    diff_ids: Vec<Digest>,
) -> SourceImage {
    let digest = Digest::of(&config);
    let desc = Descriptor::new(media_type::OCI_CONFIG, digest.clone(), config.len() as u64);
    lookup.generated.borrow_mut().insert(digest, config);
    super::generated_image(lookup, desc, layers, diff_ids)
}

/// A registry's schema 1 manifest (as skopeo's `dir:` keeps it): `fsLayers` and
/// `history` top first, each history entry a v1 image JSON. Made into an image the way
/// Docker's schema 1 pull does: `throwaway` entries are empty layers, the config comes from
/// the top entry. The manifest's own digest (over its signed payload) does not survive:
/// Docker drops it too.
pub(super) fn from_schema1(lookup: &BlobLookup, bytes: &[u8]) -> Result<SourceImage> {
    #[derive(Deserialize)]
    struct FsLayer {
        #[serde(rename = "blobSum")]
        blob_sum: Digest,
    }
    #[derive(Deserialize)]
    struct History {
        #[serde(rename = "v1Compatibility")]
        v1_compatibility: String,
    }
    #[derive(Deserialize)]
    struct Schema1 {
        #[serde(rename = "fsLayers")]
        fs_layers: Vec<FsLayer>,
        history: Vec<History>,
    }
    let bad = |detail: String| Error::BadMetadata {
        path_in_archive: "manifest.json".into(),
        what: "schema 1 manifest",
        detail,
    };
    let m: Schema1 = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
    if m.fs_layers.len() != m.history.len() || m.history.is_empty() {
        return Err(bad(format!(
            "it lists {} layers but {} history entries",
            m.fs_layers.len(),
            m.history.len()
        )));
    }
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    let mut history = Vec::new();
    for (layer, h) in m.fs_layers.iter().zip(&m.history).rev() {
        let v1: V1Image =
            serde_json::from_str(&h.v1_compatibility).map_err(|e| bad(e.to_string()))?;
        history.push(history_entry(&v1, v1.throwaway));
        if v1.throwaway {
            continue;
        }
        let path = layer.blob_sum.hex().to_string();
        let f = lookup.file(&path).ok_or_else(|| Error::MissingBlob {
            referenced_by: "manifest.json".into(),
            missing: layer.blob_sum.to_string(),
        })?;
        let (codec, diff) = lookup.layer_facts(&f.digest, &path)?;
        layers.push(Descriptor::new(layer_type(codec), f.digest.clone(), f.size));
        diff_ids.push(diff);
    }
    let top = m.history[0].v1_compatibility.as_bytes();
    let config = make_config(top, &diff_ids, &history, "the top history entry")?;
    Ok(generated_image(lookup, config, layers, diff_ids))
}

/// Docker's `image.History` for one v1 image, its fields in Go's order.
fn history_entry(v1: &V1Image, empty_layer: bool) -> String {
    let mut h = format!(
        "{{\"created\":{}",
        go_string(&go_time(v1.created.as_deref()))
    );
    let mut field = |k: &str, v: Option<&str>| {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            h.push_str(&format!(",\"{k}\":{}", go_string(v)));
        }
    };
    field("author", v1.author.as_deref());
    let created_by = v1
        .container_config
        .as_ref()
        .and_then(|c| c.cmd.as_ref())
        .map(|c| c.join(" "));
    field("created_by", created_by.as_deref());
    field("comment", v1.comment.as_deref());
    if empty_layer {
        h.push_str(",\"empty_layer\":true");
    }
    h.push('}');
    h
}

/// `MakeConfigFromV1Config`: the v1 JSON's fields but the v1-only ones, with `rootfs` and
/// `history`, keys sorted, as Go marshals a `map[string]*json.RawMessage`.
fn make_config(v1: &[u8], diff_ids: &[Digest], history: &[String], id: &str) -> Result<Vec<u8>> {
    let mut fields: BTreeMap<String, Box<RawValue>> =
        serde_json::from_slice(v1).map_err(|e| Error::BadMetadata {
            path_in_archive: format!("{id}/json"),
            what: "v1 image",
            detail: e.to_string(),
        })?;
    for k in ["id", "parent", "Size", "parent_id", "layer_id", "throwaway"] {
        fields.remove(k);
    }
    let diffs: Vec<String> = diff_ids.iter().map(|d| go_string(&d.to_string())).collect();
    let rootfs = format!("{{\"type\":\"layers\",\"diff_ids\":[{}]}}", diffs.join(","));
    let mut out = String::from("{");
    let mut entries: Vec<(String, String)> = fields
        .iter()
        .map(|(k, v)| (k.clone(), go_compact(v.get())))
        .collect();
    entries.push(("rootfs".into(), rootfs));
    entries.push(("history".into(), format!("[{}]", history.join(","))));
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    for (i, (k, v)) in entries.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&go_string(k));
        out.push(':');
        out.push_str(v);
    }
    out.push('}');
    Ok(out.into_bytes())
}

/// A JSON string as Go's encoder writes it: `<`, `>`, `&`, U+2028 and U+2029 escaped.
fn go_string(s: &str) -> String {
    go_compact(&serde_json::to_string(s).unwrap_or_default())
}

/// Compact raw JSON as Go's `json.Compact` with HTML escaping (what `json.Marshal` does to
/// a `json.RawMessage`).
fn go_compact(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in raw.chars() {
        if in_string {
            match c {
                '<' => out.push_str("\\u003c"),
                '>' => out.push_str("\\u003e"),
                '&' => out.push_str("\\u0026"),
                '\u{2028}' => out.push_str("\\u2028"),
                '\u{2029}' => out.push_str("\\u2029"),
                _ => out.push(c),
            }
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if !c.is_ascii_whitespace() {
            in_string = c == '"';
            out.push(c);
        }
    }
    out
}

/// A time as Go's `time.Time` marshals it (RFC 3339 with nanoseconds, trailing zeros cut,
/// `Z` for UTC); Go's zero time when there is none.
fn go_time(t: Option<&str>) -> String {
    let Some(parsed) = t.and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()) else {
        return "0001-01-01T00:00:00Z".into();
    };
    let mut s = parsed.format("%Y-%m-%dT%H:%M:%S").to_string();
    let nanos = parsed.timestamp_subsec_nanos();
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    let offset = parsed.offset().local_minus_utc();
    if offset == 0 {
        s.push('Z');
    } else {
        let (sign, off) = if offset < 0 {
            ('-', -offset)
        } else {
            ('+', offset)
        };
        s.push_str(&format!("{sign}{:02}:{:02}", off / 3600, (off % 3600) / 60));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_times_come_out_as_go_writes_them() {
        assert_eq!(
            go_compact("{ \"a\" : [1, 2],\n \"b\": \"x <y> & z\" }"),
            r#"{"a":[1,2],"b":"x \u003cy\u003e \u0026 z"}"#
        );
        assert_eq!(go_compact(r#""a \" <""#), r#""a \" \u003c""#);
        assert_eq!(
            go_time(Some("2015-03-04T21:38:56.769279623Z")),
            "2015-03-04T21:38:56.769279623Z"
        );
        assert_eq!(
            go_time(Some("2013-06-13T14:03:50.821769-07:00")),
            "2013-06-13T14:03:50.821769-07:00"
        );
        assert_eq!(
            go_time(Some("2016-01-01T00:00:00.500+00:00")),
            "2016-01-01T00:00:00.5Z"
        );
        assert_eq!(go_time(None), "0001-01-01T00:00:00Z");
    }
}
