//! Cells of section 1: images written by docker, podman, skopeo and umoci load into airlock.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::util::{expected, tar_listing, Airlock};

use super::*;

// ------------------------------------------------------------------------------ 1. writers

/// `docker save` of one image, of two images, of two tags of one image.
pub(super) fn writers_docker(
    m: &mut Matrix,
    dir: &Path,
    i: &EngineImages,
    refs: &BTreeMap<String, Listing>,
) {
    let rows: [(&str, &str, Vec<&str>); 3] = [
        (
            "`docker save` (1 image)",
            "save-one.tar",
            vec![i.app.as_str()],
        ),
        (
            "`docker save` (2 images)",
            "save-multi.tar",
            vec![i.base.as_str(), i.app.as_str()],
        ),
        (
            "`docker save` (2 tags, 1 ID)",
            "save-tags.tar",
            vec![i.app.as_str(), i.app2.as_str()],
        ),
    ];
    for (row, file, names) in rows {
        let archive = dir.join(file);
        let a = Airlock::new(&dir.join(format!("store-{file}")));
        let want = |n: &str| {
            if n == i.base {
                ("base", &i.base_id, &i.base_layers)
            } else {
                ("app", &i.app_id, &i.app_layers)
            }
        };
        let loaded = m.check(S_WRITERS, row, "airlock load", || {
            let mut args = vec!["save", "-o", s(&archive)];
            args.extend(names.iter().copied());
            docker(&args);
            let out = a.ok(&["load", "-i", s(&archive)]);
            assert_loaded("airlock load", &out, &names);
            format!("{} name(s) loaded", names.len())
        });
        m.then(loaded, S_WRITERS, row, "Id", || {
            let mut ids = BTreeSet::new();
            for n in &names {
                let got = airlock_id(&a, n);
                assert_eq!(&got, want(n).1, "{n}: airlock Id vs docker inspect .Id");
                ids.insert(got);
            }
            if row.contains("tags") {
                let tags = a.inspect(names[0])["RepoTags"].clone();
                for n in &names {
                    assert!(
                        tags.as_array().unwrap().iter().any(|t| t == n),
                        "RepoTags {tags} lacks {n}"
                    );
                }
                return format!("both tags → {} = docker", short(&i.app_id));
            }
            let ids: Vec<&str> = ids.iter().map(|i| short(i)).collect();
            format!("{} = docker inspect", ids.join(", "))
        });
        m.then(loaded, S_WRITERS, row, "RootFS.Layers", || {
            for n in &names {
                assert_eq!(&airlock_layers(&a, n), want(n).2, "{n}: RootFS.Layers");
            }
            "= docker inspect .RootFS.Layers".to_string()
        });
        m.then(loaded, S_WRITERS, row, "rootfs", || {
            let mut d = Vec::new();
            let kinds: BTreeSet<&str> = names.iter().map(|n| want(n).0).collect();
            for k in kinds {
                let image = if k == "base" { &i.base } else { &i.app };
                let got = airlock_export(&a, image, &dir.join(format!("x-{file}-{k}.tar")));
                // `got` is airlock's; the docker side is the reference.
                d.push(format!("{k}: {}", same_rootfs(k, &got, &refs[k], true)));
            }
            format!("airlock export = docker export; {}", d.join("; "))
        });
    }
}

/// One row per dialect podman, skopeo and umoci write (archives made by make-fixtures.sh).
pub(super) fn writers_fixtures(m: &mut Matrix, dir: &Path, fx: &Path) {
    let rows = [
        (
            "`podman save --format docker-archive`",
            "podman-docker-archive.tar",
        ),
        ("`podman save -m` (2 images)", "podman-multi.tar"),
        (
            "`podman save --format oci-archive`",
            "podman-oci-archive.tar",
        ),
        ("`podman save --format oci-dir`", "podman-oci-dir"),
        ("skopeo `docker-archive:`", "skopeo-docker-archive.tar"),
        ("skopeo `oci-archive:`", "skopeo-oci-archive.tar"),
        ("skopeo `oci:` dir", "skopeo-oci-dir"),
        ("umoci layout (3 images)", "umoci-layout"),
    ];
    let want_rootfs = tar_listing(&fx.join("export-rootfs.tar"));
    for (row, name) in rows {
        let a = Airlock::new(&dir.join(format!("store-{name}")));
        let images = expected()[name].as_array().cloned().unwrap_or_default();
        let tags: Vec<String> = images
            .iter()
            .map(|img| img["names"][0].as_str().unwrap().to_string())
            .collect();
        let loaded = m.check(S_WRITERS, row, "airlock load", || {
            assert!(!images.is_empty(), "{name} missing from expected.json");
            a.ok(&["load", "-i", s(&fx.join(name))]);
            format!("{} image(s) loaded", images.len())
        });
        m.then(loaded, S_WRITERS, row, "Id", || {
            for (img, tag) in images.iter().zip(&tags) {
                assert_eq!(
                    airlock_id(&a, tag),
                    img["config_digest"].as_str().unwrap(),
                    "{tag}: airlock Id vs skopeo inspect --config"
                );
            }
            let ids: Vec<&str> = images
                .iter()
                .map(|img| short(img["config_digest"].as_str().unwrap()))
                .collect();
            format!("{} = skopeo inspect --config", ids.join(", "))
        });
        m.then(loaded, S_WRITERS, row, "RootFS.Layers", || {
            let mut n = 0;
            for (img, tag) in images.iter().zip(&tags) {
                let want: Vec<String> = serde_json::from_value(img["diff_ids"].clone()).unwrap();
                assert_eq!(airlock_layers(&a, tag), want, "{tag}: RootFS.Layers");
                n += want.len();
            }
            format!("{n} diffIDs = the config's")
        });
        m.then(loaded, S_WRITERS, row, "rootfs", || {
            let app = tags
                .iter()
                .find(|t| *t == FIXTURE_APP || *t == "app")
                .unwrap_or_else(|| panic!("{name}: no app image in {tags:?}"));
            let got = airlock_export(&a, app, &dir.join(format!("x-{name}.tar")));
            format!(
                "app: airlock export = podman export, {}",
                same_rootfs(name, &want_rootfs, &got, false)
            )
        });
    }
}
