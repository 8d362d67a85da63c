//! docker's `--format`: the same images loaded into the Docker Engine and into airlock,
//! and every format string printed by both. The docker CLI's own output is the oracle,
//! byte for byte: `docker images --format` for `airlock images --format`, `docker inspect
//! -f` for `airlock inspect -f`.

use std::path::Path;

use serde_json::json;

use crate::util::{
    append_file, docker, require_tool, scratch, sha256, Airlock, DockerTags as Tags,
};

fn layer(files: &[(&str, usize)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, len) in files {
        append_file(&mut b, name, &vec![b'x'; *len]);
    }
    b.into_inner().unwrap()
}

/// A `docker save`-shaped archive of one image with this config and these tags.
fn archive(path: &Path, tags: &[String], mut config: serde_json::Value, layers: &[Vec<u8>]) {
    let diff_ids: Vec<String> = layers.iter().map(|l| sha256(l)).collect();
    config["rootfs"] = json!({"type": "layers", "diff_ids": diff_ids});
    let config = serde_json::to_vec(&config).unwrap();
    let cfg = format!("{}.json", &sha256(&config)[7..]);
    let paths: Vec<String> = diff_ids
        .iter()
        .map(|d| format!("{}/layer.tar", &d[7..]))
        .collect();
    let manifest = json!([{"Config": cfg, "RepoTags": tags, "Layers": paths}]);
    let mut b = tar::Builder::new(std::fs::File::create(path).unwrap());
    append_file(&mut b, &cfg, &config);
    for (p, l) in paths.iter().zip(layers) {
        append_file(&mut b, p, l);
    }
    append_file(
        &mut b,
        "manifest.json",
        &serde_json::to_vec(&manifest).unwrap(),
    );
    b.finish().unwrap();
}

/// Two images, in the engine and in an airlock store: one with everything a config may
/// set (labels, ports, volumes, history with a comment), one with almost nothing (and
/// another platform).
struct Loaded {
    _dir: tempfile::TempDir,
    _tags: Tags,
    airlock: Airlock,
    repo: String,
    full: String,
    bare: String,
    archive: std::path::PathBuf,
}

/// `test` keeps the names of tests running at once apart: each removes its own.
fn loaded(test: &str) -> Loaded {
    require_tool("docker");
    let dir = scratch();
    let repo = format!("fmt.example/t{}-{test}/app", std::process::id());
    let full = format!("{repo}:1.5.3");
    let bare = format!("{repo}-bare:1");
    let rich = json!({
        "architecture": "amd64", "os": "linux", "created": "2023-05-01T12:34:56Z",
        "author": "ops <ops@example>",
        "config": {
            "Env": ["PATH=/usr/bin:/bin", "APP_MODE=prod"], "Cmd": ["/bin/hello", "--serve"],
            "Entrypoint": ["/bin/sh", "-c"], "WorkingDir": "/srv", "User": "1000:1000",
            "Labels": {"org.opencontainers.image.version": "1.5.3", "maintainer": "ops", "a.b": test},
            "ExposedPorts": {"8080/tcp": {}}, "Volumes": {"/data": {}}, "StopSignal": "SIGTERM",
        },
        "history": [
            {"created": "2023-05-01T12:00:00Z", "created_by": "ADD hello"},
            {"created": "2023-05-01T12:34:56Z", "created_by": "ADD conf", "comment": "conf"},
        ],
    });
    let full_tar = dir.path().join("full.tar");
    archive(
        &full_tar,
        &[full.clone(), format!("{repo}:latest")],
        rich,
        &[
            layer(&[("bin/hello", 5000)]),
            layer(&[("etc/app.conf", 123_456)]),
        ],
    );
    let minimal = json!({
        "architecture": "arm64", "variant": "v8", "os": "linux",
        "created": "2026-11-30T10:00:00.5Z", "config": {"Cmd": ["/x", test]},
    });
    let bare_tar = dir.path().join("bare.tar");
    archive(
        &bare_tar,
        std::slice::from_ref(&bare),
        minimal,
        &[layer(&[("x", 10)])],
    );
    let tags = Tags(vec![full.clone(), format!("{repo}:latest"), bare.clone()]);
    let airlock = Airlock::new(&dir.path().join("store"));
    for t in [&full_tar, &bare_tar] {
        docker(&["load", "-i", t.to_str().unwrap()]);
        airlock.ok(&["load", "-i", t.to_str().unwrap()]);
    }
    Loaded {
        _dir: dir,
        _tags: tags,
        airlock,
        repo,
        full,
        bare,
        archive: full_tar,
    }
}

/// `docker images --format` strings scripts use. SIZE is left out: airlock's is what the
/// image takes in the store (and in an archive), docker's the unpacked filesystem.
const IMAGE_FORMATS: &[&str] = &[
    "{{.Repository}}:{{.Tag}}",
    "{{.ID}}",
    "{{.Repository}}\\t{{.Tag}}\\t{{.ID}}",
    "{{.Repository}}:{{.Tag}} {{.Digest}} {{.CreatedAt}}",
    "{{.CreatedSince}}|{{.Containers}}|{{.SharedSize}}|{{.UniqueSize}}",
    "table {{.Repository}}\\t{{.Tag}}",
    "table {{.Repository}}\\t{{.Tag}}\\t{{.ID}}\\t{{.CreatedSince}}\\t{{.CreatedAt}}",
    "table {{.ID}}\\t{{.Digest}}\\t{{.Containers}}\\t{{.SharedSize}}\\t{{.UniqueSize}}",
    "table {{lower .Repository}}\\t{{upper .Tag}}",
    "table {{.Repository}}:{{.Tag}}",
    "  {{.Repository}}  ",
    "{{lower .Repository}} {{upper .Tag}} {{title .Tag}}",
    "{{if eq .Tag \"latest\"}}{{.Repository}} is latest{{else}}{{.Tag}}{{end}}",
    "{{join (split .Repository \"/\") \"|\"}}",
    "{{index (split .Repository \"/\") 0}}",
    "{{truncate .ID 4}} {{pad .Tag 1 1}}|",
    "{{printf \"%-12s|%s\" .Tag .ID}}",
    "{{range split .Repository \"/\"}}<{{.}}>{{end}}",
    "{{with .Tag}}tag={{.}}{{end}}",
    "{{- .Tag -}}",
    "{{json .Tag}} {{json .ID}} {{json .Digest}}",
];

#[test]
fn images_format_prints_what_docker_images_format_prints() {
    let l = loaded("images");
    for (what, filter) in [
        ("full", l.repo.clone()),
        ("bare", format!("{}-bare", l.repo)),
    ] {
        for f in IMAGE_FORMATS {
            let theirs = docker(&["images", "--format", f, &filter]);
            let ours = l.airlock.ok(&["images", "--format", f, &filter]);
            assert_eq!(ours, theirs, "{what}: images --format {f:?}");
        }
    }
    // `{{json .}}` carries every field, byte for byte the same but the sizes' figures.
    let blank_sizes = |text: String| -> String {
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut text = text;
        for k in ["Size", "VirtualSize"] {
            let was = format!("\"{k}\":\"{}\"", v[k].as_str().unwrap());
            assert!(text.contains(&was), "{text}");
            text = text.replace(&was, &format!("\"{k}\":\"\""));
        }
        text
    };
    let theirs = blank_sizes(docker(&["images", "--format", "{{json .}}", &l.full]));
    let ours = blank_sizes(l.airlock.ok(&["images", "--format", "{{json .}}", &l.full]));
    assert_eq!(ours, theirs, "images --format '{{{{json .}}}}'");
    // docker's default table, but for the SIZE column's figures.
    let columns = |text: &str| -> Vec<String> {
        text.lines()
            .map(|l| l.rsplit_once("   ").map_or(l, |(a, _)| a).to_string())
            .collect()
    };
    let filter = format!("{}-bare", l.repo);
    assert_eq!(
        columns(&l.airlock.ok(&["images", &filter])),
        columns(&docker(&["images", &filter])),
        "the default table"
    );
    assert_eq!(
        columns(&l.airlock.ok(&["images", "--digests", &filter])),
        columns(&docker(&["images", "--digests", &filter])),
        "--digests"
    );
    assert_eq!(
        l.airlock
            .ok(&["images", "--no-trunc", "--format", "{{.ID}}", &filter]),
        docker(&["images", "--no-trunc", "--format", "{{.ID}}", &filter]),
        "--no-trunc"
    );
}

/// `docker inspect -f` strings scripts use.
const INSPECT_FORMATS: &[&str] = &[
    "{{.Id}}",
    "{{.Os}}/{{.Architecture}}",
    "{{.Created}}",
    "{{.Author}} {{json .Author}}",
    "{{.Comment}}|{{.Parent}}|{{.DockerVersion}}|{{.Variant}}",
    "{{json .RepoTags}} {{.RepoTags}} {{.RepoDigests}}",
    "{{json .Config}}",
    "{{.Config.Env}} {{.Config.Cmd}} {{.Config.Entrypoint}}",
    "{{json .Config.Entrypoint}} {{json .Config.Cmd}}",
    "{{.Config.WorkingDir}}|{{.Config.User}}|{{.Config.StopSignal}}",
    "{{.Config.Labels}}",
    "{{index .Config.Labels \"org.opencontainers.image.version\"}}",
    "{{index .Config.Labels \"missing\"}}",
    "{{range $k, $v := .Config.Labels}}{{$k}}={{$v}};{{end}}",
    "{{range .Config.Env}}{{println .}}{{end}}",
    "{{range $i, $e := .Config.Env}}{{if $i}},{{end}}{{$e}}{{end}}",
    "{{range .RootFS.Layers}}{{.}} {{end}}",
    "{{len .RootFS.Layers}} {{.RootFS.Type}} {{json .RootFS}}",
    "{{.Config.ExposedPorts}} {{json .Config.ExposedPorts}} {{.Config.Volumes}}",
    "{{if .Config.Labels}}labelled{{else}}bare{{end}}",
    "{{with .Config.WorkingDir}}in {{.}}{{else}}nowhere{{end}}",
    "{{join .Config.Cmd \" \"}}",
    "{{upper .Os}} {{lower .Config.StopSignal}} {{title .Os}}",
    "{{index (split .Config.User \":\") 0}}",
    "{{.Config.OnBuild}} {{.Config.Shell}}",
    "{{printf \"%s-%s\" .Os .Architecture}}",
    "{{- range .RootFS.Layers -}} {{slice . 7 19}} {{- end}}",
    "{{if eq .Os \"linux\"}}linux{{end}} {{if ne .Architecture \"arm64\"}}not arm{{end}}",
    "{{json (index .RepoTags 0)}}",
    "{{$id := .Id}}{{range .RepoTags}}{{.}}={{$id}} {{end}}",
    "{{truncate .Id 19}} {{pad .Os 2 3}}|",
    "{{range .Config.Env}}{{if eq . \"APP_MODE=prod\"}}found{{end}}{{end}}",
    "{{or .Config.WorkingDir \"none\"}} {{and .Os .Architecture}} {{not .Config.Labels}}",
];

#[test]
fn inspect_format_prints_what_docker_inspect_format_prints() {
    let l = loaded("inspect");
    for image in [&l.full, &l.bare] {
        for f in INSPECT_FORMATS {
            let theirs = docker(&["inspect", "-f", f, image]);
            let ours = l.airlock.ok(&["inspect", "-f", f, image]);
            assert_eq!(ours, theirs, "{image}: inspect -f {f:?}");
        }
    }
    // Several images: one line each, in the order asked.
    let both = [
        "inspect",
        "--format",
        "{{.Id}} {{.Architecture}}",
        &l.bare,
        &l.full,
    ];
    assert_eq!(l.airlock.ok(&both), docker(&both));
}

#[test]
fn a_bad_format_is_one_sentence_and_exit_1() {
    let l = loaded("errors");
    let e = l.airlock.fails(&["images", "--format", "{{.Repo}}"]);
    assert!(
        e.contains("there is no field Repo") && e.contains("Repository, SharedSize"),
        "{e}"
    );
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    let e = l.airlock.fails(&["images", "--format", "{{.Repository"]);
    assert!(e.contains("not closed with }}"), "{e}");
    let e = l.airlock.fails(&["inspect", "-f", "{{if .Os}}x", &l.full]);
    assert!(e.contains("{{if}} has no {{end}}"), "{e}");
    let e = l
        .airlock
        .fails(&["inspect", "-f", "{{frobnicate .Os}}", &l.full]);
    assert!(e.contains("there is no function frobnicate"), "{e}");
}

/// `verify`, `review`, `containers` and `artifacts` take `--format` over their own records;
/// the values are checked against what `images` and `inspect` say of the same image.
#[test]
fn verify_review_and_containers_take_format_too() {
    let l = loaded("others");
    let a = &l.airlock;
    let archive = l.archive.to_str().unwrap();
    let verified = a.ok(&[
        "verify",
        "-i",
        archive,
        "--format",
        "{{.Repository}}:{{.Tag}} {{.ID}} {{.Layers}} {{.Digest}} {{.Dialect}}",
    ]);
    let id = a.ok(&["images", "--format", "{{.ID}}", &l.full]);
    let id = id.trim();
    assert_eq!(
        verified,
        format!(
            "{0}:1.5.3 {id} 2 <none> docker-archive\n{0}:latest {id} 2 <none> docker-archive\n",
            l.repo
        )
    );
    let table = a.ok(&[
        "verify",
        "-i",
        archive,
        "--format",
        "table {{.Tag}}\\t{{.Layers}}",
    ]);
    assert_eq!(table, "TAG       LAYERS\n1.5.3     2\nlatest    2\n");

    let dir = scratch();
    let saved = dir.path().join("ship.tar");
    a.ok(&["save", &l.full, "-o", saved.to_str().unwrap()]);
    let reviewed = a.ok(&[
        "review",
        saved.to_str().unwrap(),
        "--format",
        "{{.Repository}}:{{.Tag}}|{{.Digest}}|{{.Signatures}}|{{.Signed}}|{{json .Names}}",
    ]);
    let digest = a.ok(&["inspect", "-f", "{{.ManifestDigest}}", &l.full]);
    assert_eq!(
        reviewed,
        format!("{0}:1.5.3|{1}|0||[\"{0}:1.5.3\"]\n", l.repo, digest.trim())
    );

    a.ok(&["create", &l.full, "--name", "work"]);
    let listed = a.ok(&[
        "containers",
        "--format",
        "{{.Names}} {{.ImageID}} {{.Image}}",
    ]);
    assert_eq!(listed, format!("work {id} {}\n", l.full));
    let e = a.fails(&["containers", "--format", "{{.Nope}}"]);
    assert!(e.contains("there is no field Nope"), "{e}");
}
