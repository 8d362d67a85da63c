//! Shipment files (`airlock sync -f shipment.yaml`): what crosses, declared once.
//!
//! ```yaml
//! apiVersion: airlock.dev/v1
//! kind: Shipment
//! images:
//!   - source: registry.example.com/team/app
//!     tags: ["1.4.2", "1.5.*", "/^v2\\.[0-9]+$/", ">=1.4 <2"]
//!     latest: 2
//!     platforms: [linux/amd64]
//!     referrers: keep            # keep | drop | [artifactType, ...]
//!   - list: images.txt           # one reference per line
//!   - kubernetes: deploy/        # image: fields of the YAML files under it
//!   - docker-daemon: "*k8s*"     # engine images by glob
//!   - archive: vendor/tools.tar  # an archive or OCI layout on disk
//! rename: "registry.internal/mirror/{repo}"
//! ```
//!
//! Parsing and tag selection are pure; the remote part resolves what they name. Errors name
//! the line: serde's own carry it, and entry-level ones find the entry's line in the text.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

mod select;
mod sources;

pub use select::{select_tags, version_of, TagSelector};
pub use sources::{kubernetes_images, read_list, rename};

/// The `apiVersion` this reader takes.
pub const API_VERSION: &str = "airlock.dev/v1";

/// A shipment file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Shipment {
    /// Must be [`API_VERSION`].
    pub api_version: String,
    /// Must be `Shipment`.
    pub kind: String,
    /// What to ship.
    pub images: Vec<Entry>,
    /// Where the images go on the far side (`{repo}`: the repository path).
    #[serde(default)]
    pub rename: Option<String>,
}

/// One entry of `images:`; exactly one of its sources is given.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// A registry repository.
    #[serde(default)]
    pub source: Option<String>,
    /// Tags of `source`: exact, glob, `/regex/` or a semver range.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Also the newest N tags of `source` by semver.
    #[serde(default)]
    pub latest: Option<usize>,
    /// Platforms (`linux/amd64`, or `all`); the host's by default.
    #[serde(default)]
    pub platforms: Vec<String>,
    /// `keep` (default), `drop`, or the artifact types to keep.
    #[serde(default)]
    pub referrers: Option<Referrers>,
    /// A file of references, one per line.
    #[serde(default)]
    pub list: Option<PathBuf>,
    /// A directory (or file) of Kubernetes YAML.
    #[serde(default)]
    pub kubernetes: Option<PathBuf>,
    /// Docker Engine images by glob.
    #[serde(default, rename = "docker-daemon")]
    pub docker_daemon: Option<String>,
    /// An archive (any dialect `load` reads) or an OCI layout directory.
    #[serde(default)]
    pub archive: Option<PathBuf>,
}

/// What travels with an image.
#[derive(Debug, Deserialize, Clone, PartialEq)]
#[serde(untagged)]
pub enum Referrers {
    /// `keep` or `drop`.
    Mode(String),
    /// Only these artifact types.
    Types(Vec<String>),
}

/// A source, checked: what the remote part resolves.
#[derive(Debug)]
pub enum Source {
    /// A registry repository and its selectors (an entry with only exact tags needs no
    /// listing).
    Registry {
        /// `HOST/PATH`.
        repository: String,
        /// The selectors.
        tags: Vec<TagSelector>,
        /// Newest N by semver.
        latest: Option<usize>,
    },
    /// References read from a file.
    List(PathBuf),
    /// Kubernetes YAML under a path.
    Kubernetes(PathBuf),
    /// Engine images matching a glob.
    DockerDaemon(String),
    /// Every image of an archive or OCI layout on disk.
    Archive(PathBuf),
}

/// One checked entry.
#[derive(Debug)]
pub struct Planned {
    /// Where its images come from.
    pub source: Source,
    /// Its platforms (empty: the host's).
    pub platforms: Vec<String>,
    /// Its referrers rule.
    pub referrers: Referrers,
    /// The line of the file it starts on.
    pub line: usize,
}

/// Read and check a shipment file. Paths in it are made relative to its directory.
pub fn read(path: &Path) -> Result<(Shipment, Vec<Planned>)> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("read", path, e))?;
    parse(
        &text,
        &path.display().to_string(),
        path.parent().unwrap_or(Path::new(".")),
    )
}

/// Parse `text` (named `label` in errors), paths relative to `base`.
pub fn parse(text: &str, label: &str, base: &Path) -> Result<(Shipment, Vec<Planned>)> {
    let bad = |line: Option<usize>, what: String| {
        Error::Usage(match line {
            Some(l) => format!("{label}, line {l}: {what}"),
            None => format!("{label}: {what}"),
        })
    };
    let shipment: Shipment = serde_yaml::from_str(text).map_err(|e| {
        let line = e.location().map(|l| l.line());
        // serde_yaml's message ends with its own "at line N column M"; the line leads here.
        let msg = e.to_string();
        let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
        bad(line, msg)
    })?;
    if shipment.api_version != API_VERSION {
        return Err(bad(
            line_of(text, "apiVersion:"),
            format!(
                "apiVersion is {:?}; this airlock reads {API_VERSION}",
                shipment.api_version
            ),
        ));
    }
    if shipment.kind != "Shipment" {
        return Err(bad(
            line_of(text, "kind:"),
            format!("kind is {:?}, not Shipment", shipment.kind),
        ));
    }
    if shipment.images.is_empty() {
        return Err(bad(
            line_of(text, "images:"),
            "images: lists nothing to ship".into(),
        ));
    }
    if let Some(r) = &shipment.rename {
        if !r.contains("{repo}") {
            return Err(bad(
                line_of(text, "rename:"),
                format!("rename {r:?} has no {{repo}}: every image would get the same name"),
            ));
        }
    }
    let lines = entry_lines(text);
    let mut planned = Vec::new();
    for (i, e) in shipment.images.iter().enumerate() {
        let line = lines.get(i).copied();
        let err = |what: String| bad(line, format!("images[{i}]: {what}"));
        let kinds = [
            e.source.is_some(),
            e.list.is_some(),
            e.kubernetes.is_some(),
            e.docker_daemon.is_some(),
            e.archive.is_some(),
        ];
        let given = kinds.iter().filter(|k| **k).count();
        if given != 1 {
            return Err(err(format!(
                "give exactly one of source, list, kubernetes, docker-daemon, archive ({given} given)"
            )));
        }
        let registry_only = !e.tags.is_empty() || e.latest.is_some();
        if registry_only && e.source.is_none() {
            return Err(err(
                "tags and latest apply to a source: registry repository only".into(),
            ));
        }
        for p in &e.platforms {
            if p != "all" && crate::import::parse_platform(p).is_err() {
                return Err(err(format!(
                    "platform {p:?} is not os/arch[/variant] or all"
                )));
            }
        }
        let referrers = match &e.referrers {
            None => Referrers::Mode("keep".into()),
            Some(Referrers::Mode(m)) if m == "keep" || m == "drop" => Referrers::Mode(m.clone()),
            Some(Referrers::Mode(m)) => {
                return Err(err(format!(
                    "referrers: {m:?}; use keep, drop or a list of artifact types"
                )))
            }
            Some(t) => t.clone(),
        };
        let source = if let Some(repo) = &e.source {
            crate::Reference::parse(repo).map_err(|x| err(x.to_string()))?;
            if names_one_image(repo) && registry_only {
                return Err(err(format!(
                    "{repo} names a tag or digest already; list tags under tags:"
                )));
            }
            let tags = e
                .tags
                .iter()
                .map(|t| TagSelector::parse(t).map_err(&err))
                .collect::<Result<Vec<_>>>()?;
            Source::Registry {
                repository: repo.clone(),
                tags,
                latest: e.latest,
            }
        } else if let Some(l) = &e.list {
            Source::List(base.join(l))
        } else if let Some(k) = &e.kubernetes {
            Source::Kubernetes(base.join(k))
        } else if let Some(a) = &e.archive {
            Source::Archive(base.join(a))
        } else {
            Source::DockerDaemon(e.docker_daemon.clone().unwrap_or_default())
        };
        planned.push(Planned {
            source,
            platforms: e.platforms.clone(),
            referrers,
            line: line.unwrap_or(0),
        });
    }
    Ok((shipment, planned))
}

/// True when a `source:` names one image itself (`repo:tag` or `repo@digest`) rather than
/// a repository whose tags the entry selects.
pub fn names_one_image(source: &str) -> bool {
    source.contains('@') || source.rsplit('/').next().is_some_and(|l| l.contains(':'))
}

/// The first line (1-based) holding `key` at the start of its text.
fn line_of(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| l.trim_start().starts_with(key))
        .map(|i| i + 1)
}

/// The line each item of the top-level `images:` list starts on.
fn entry_lines(text: &str) -> Vec<usize> {
    let mut out = Vec::new();
    let mut inside = false;
    let mut indent = None;
    for (i, l) in text.lines().enumerate() {
        let trimmed = l.trim_start();
        let depth = l.len() - trimmed.len();
        if depth == 0
            && !trimmed.is_empty()
            && !trimmed.starts_with('#')
            && !trimmed.starts_with('-')
        {
            inside = trimmed.starts_with("images:");
            continue;
        }
        if inside && trimmed.starts_with('-') && indent.is_none_or(|d| d == depth) {
            indent = Some(depth);
            out.push(i + 1);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn selectors_pick_exact_glob_regex_range_and_latest() {
        let all = tags(&[
            "1.4.1",
            "1.4.2",
            "1.5.0",
            "1.5.3",
            "2.0.0",
            "v2.1",
            "v2.10",
            "2.1.0-rc.1",
            "latest",
            "nightly",
        ]);
        let sel = |specs: &[&str], latest| {
            let s: Vec<TagSelector> = specs
                .iter()
                .map(|x| TagSelector::parse(x).unwrap())
                .collect();
            select_tags(&all, &s, latest)
        };
        assert_eq!(sel(&["1.4.2"], None), tags(&["1.4.2"]));
        assert_eq!(sel(&["1.5.*"], None), tags(&["1.5.0", "1.5.3"]));
        assert_eq!(sel(&["/^v2\\.[0-9]+$/"], None), tags(&["v2.1", "v2.10"]));
        assert_eq!(
            sel(&[">=1.4.2 <2"], None),
            tags(&["1.4.2", "1.5.0", "1.5.3"])
        );
        // Newest two releases by semver (v2.10 > v2.1 > 2.0.0; the rc is no release).
        assert_eq!(sel(&[], Some(2)), tags(&["v2.1", "v2.10"]));
        assert_eq!(sel(&["1.4.1"], Some(1)), tags(&["1.4.1", "v2.10"]));
        assert!(TagSelector::parse("/(/").is_err());
        assert!(TagSelector::parse(">=x").is_err());
        assert!(TagSelector::parse("a b").is_err());
    }

    #[test]
    fn the_example_of_the_issue_parses_and_mistakes_name_their_line() {
        let text = "apiVersion: airlock.dev/v1\nkind: Shipment\nimages:\n  - source: registry.example.com/team/app\n    tags: [\"1.4.2\", \"1.5.*\", \"/^v2\\\\.[0-9]+$/\", \">=1.4 <2\"]\n    latest: 2\n    platforms: [linux/amd64]\n    referrers: keep\n  - list: images.txt\n  - kubernetes: deploy/\n  - docker-daemon: \"*k8s*\"\nrename: \"registry.internal/mirror/{repo}\"\n";
        let (s, planned) = parse(text, "s.yaml", Path::new("/base")).unwrap();
        assert_eq!(planned.len(), 4);
        assert_eq!(s.rename.as_deref(), Some("registry.internal/mirror/{repo}"));
        assert!(
            matches!(&planned[0].source, Source::Registry { tags, latest: Some(2), .. } if tags.len() == 4)
        );
        assert!(
            matches!(&planned[1].source, Source::List(p) if p == Path::new("/base/images.txt"))
        );
        assert_eq!(planned[2].line, 10);

        let err = |t: &str| parse(t, "s.yaml", Path::new(".")).unwrap_err().to_string();
        let head = "apiVersion: airlock.dev/v1\nkind: Shipment\nimages:\n";
        let e = err(&format!(
            "{head}  - source: a/b\n  - list: x\n    tags: [\"1\"]\n"
        ));
        assert!(
            e.contains("line 5") && e.contains("images[1]") && e.contains("tags and latest"),
            "{e}"
        );
        let e = err(&format!("{head}  - source: a/b\n    tagz: [\"1\"]\n"));
        assert!(e.contains("line 5") && e.contains("tagz"), "{e}");
        let e = err(&format!("{head}  - source: a/b\n    list: x\n"));
        assert!(e.contains("line 4") && e.contains("exactly one"), "{e}");
        let e = err(&format!("{head}  - source: a/b\n    tags: [\"/(/\"]\n"));
        assert!(
            e.contains("line 4") && e.contains("regular expression"),
            "{e}"
        );
        let e = err("apiVersion: v2\nkind: Shipment\nimages: []\n");
        assert!(e.contains("line 1") && e.contains("airlock.dev/v1"), "{e}");
        let e = err(&format!("{head}  - source: a/b\n    platforms: [linux]\n"));
        assert!(e.contains("platform \"linux\""), "{e}");
    }

    #[test]
    fn rename_keeps_the_repository_path_and_the_tag() {
        let to = |n: &str| {
            rename(
                "registry.internal/mirror/{repo}",
                &crate::Reference::parse(n).unwrap(),
            )
            .map(|r| r.to_string())
        };
        assert_eq!(
            to("registry.example.com/team/app:1.4").unwrap(),
            "registry.internal/mirror/team/app:1.4"
        );
        assert_eq!(
            to("redis:7").unwrap(),
            "registry.internal/mirror/library/redis:7"
        );
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            to(&format!("quay.io/x/y@{d}")).unwrap(),
            format!("registry.internal/mirror/x/y@{d}")
        );
        let e = rename(
            "Bad Host/{repo}",
            &crate::Reference::parse("a/b:1").unwrap(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("no image name"), "{e}");
    }

    #[test]
    fn kubernetes_workloads_give_every_container_image() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("a.yaml"), "apiVersion: apps/v1\nkind: Deployment\nspec:\n  template:\n    spec:\n      initContainers:\n        - name: init\n          image: busybox:1.36\n      containers:\n        - name: app\n          image: registry.example/app:1\n---\napiVersion: v1\nkind: Pod\nspec:\n  containers:\n    - image: nginx:1.25\n").unwrap();
        std::fs::write(dir.path().join("sub/cron.yml"), "kind: CronJob\nspec:\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          containers:\n            - image: registry.example/job:2\n").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "image: not-this:1\n").unwrap();
        assert_eq!(
            kubernetes_images(dir.path()).unwrap(),
            tags(&[
                "busybox:1.36",
                "nginx:1.25",
                "registry.example/app:1",
                "registry.example/job:2"
            ])
        );
    }
}
