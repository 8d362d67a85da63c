//! Cells of section 2: what airlock saves loads into docker, podman, skopeo and umoci.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::util::{sh, tar_listing, Airlock, Podman};

use super::*;

// ------------------------------------------------------------------------------ 2. readers

/// `airlock save` (plain, gzip, zstd) then `docker load`, run, export, and back to airlock.
pub(super) fn readers_docker(
    m: &mut Matrix,
    eng: &EngineGuard,
    dir: &Path,
    i: &EngineImages,
    origin: &Airlock,
    orig: &BTreeMap<String, Listing>,
) {
    let names = [i.base.as_str(), i.app.as_str(), i.app2.as_str()];
    let plain = dir.join("airlock-save.tar");
    for (row, codec) in [
        ("`docker load` ← `airlock save`", "none"),
        ("`docker load` ← `airlock save --compress gzip`", "gzip"),
        ("`docker load` ← `airlock save --compress zstd`", "zstd"),
    ] {
        let x = if codec == "none" {
            plain.clone()
        } else {
            dir.join(format!("airlock-save.tar.{codec}"))
        };
        let loaded = m.check(S_READERS, row, "load / read", || {
            let mut args = vec!["save", "--compress", codec, "-o", s(&x)];
            args.extend(names);
            origin.ok(&args);
            let out = docker_output(&["load", "-i", s(&x)]);
            if out.status.success() {
                let text = String::from_utf8_lossy(&out.stdout);
                assert_loaded("docker load", &text, &names);
                return format!("`docker load -i` read it: {} names", names.len());
            }
            // Docker 20.10 reads no zstd archive at all: airlock's must fail exactly like
            // the zstd CLI's compression of the plain save, and load once decompressed.
            assert_eq!(codec, "zstd", "docker load failed: {}", stderr_of(&out));
            let control = dir.join("control.tar.zst");
            sh(Command::new("zstd")
                .args(["-q", "-f", "-o"])
                .arg(&control)
                .arg(&plain));
            let c = docker_output(&["load", "-i", s(&control)]);
            assert!(
                !c.status.success(),
                "docker loads zstd(1)'s archive but not airlock's: {}",
                stderr_of(&out)
            );
            assert_eq!(
                stderr_of(&out),
                stderr_of(&c),
                "docker fails differently on airlock's zstd archive than on zstd(1)'s"
            );
            let piped = output(
                Command::new("sh")
                    .arg("-c")
                    .arg(format!("zstd -dc '{}' | docker load", s(&x))),
            );
            assert!(
                piped.status.success(),
                "zstd -dc | docker load: {}",
                stderr_of(&piped)
            );
            assert_loaded(
                "docker load",
                &String::from_utf8_lossy(&piped.stdout),
                &names,
            );
            format!(
                "docker {} reads no zstd (`{}`, same for zstd(1)'s archive); \
                 `zstd -dc X | docker load` loads it",
                docker(&["version", "--format", "{{.Server.Version}}"]).trim(),
                stderr_of(&out)
            )
        });
        docker_checks(m, eng, dir, row, loaded, i, orig, codec);
        eng.rmi(&[&i.app2, &i.app, &i.base]);
    }
}

/// Id, layers, run, export and back-to-airlock of the images loaded into the engine.
#[allow(clippy::too_many_arguments)]
fn docker_checks(
    m: &mut Matrix,
    eng: &EngineGuard,
    dir: &Path,
    row: &str,
    loaded: bool,
    i: &EngineImages,
    orig: &BTreeMap<String, Listing>,
    tag: &str,
) {
    m.then(loaded, S_READERS, row, "Id", || {
        for (n, want) in [
            (&i.base, &i.base_id),
            (&i.app, &i.app_id),
            (&i.app2, &i.app_id),
        ] {
            assert_eq!(&docker_id(n), want, "{n}: docker's Id vs airlock's");
        }
        format!("{}, {} = airlock's", short(&i.base_id), short(&i.app_id))
    });
    m.then(loaded, S_READERS, row, "RootFS.Layers", || {
        assert_eq!(docker_layers(&i.base), i.base_layers, "base");
        assert_eq!(docker_layers(&i.app), i.app_layers, "app");
        "= airlock inspect".to_string()
    });
    m.then(loaded, S_READERS, row, "runs", || {
        assert_eq!(
            docker(&["run", "--rm", &i.base]),
            BASE_OUT,
            "docker run base"
        );
        assert_eq!(docker(&["run", "--rm", &i.app2]), APP_OUT, "docker run app");
        "`docker run --rm` base and app print their CMD's output".to_string()
    });
    m.then(loaded, S_READERS, row, "rootfs", || {
        let mut d = Vec::new();
        for (k, image) in [("base", &i.base), ("app", &i.app)] {
            let got = eng.export(image, &dir.join(format!("dx-{tag}-{k}.tar")));
            d.push(format!("{k}: {}", same_rootfs(k, &orig[k], &got, true)));
        }
        format!("docker export = airlock export; {}", d.join("; "))
    });
    m.then(loaded, S_READERS, row, "back to airlock", || {
        let back = Airlock::new(&dir.join(format!("back-docker-{tag}")));
        back.ok(&[
            "copy",
            &format!("docker-daemon:{}", i.app),
            &format!("store:{}", i.app),
        ]);
        assert_eq!(
            airlock_id(&back, &i.app),
            i.app_id,
            "Id after docker → airlock"
        );
        let got = airlock_export(&back, &i.app, &dir.join(format!("bx-{tag}.tar")));
        format!(
            "`airlock copy docker-daemon:…`: same Id, {}",
            same_rootfs("app", &orig["app"], &got, false)
        )
    });
}

/// `airlock save` then `podman load` (podman 4.3 reads no compressed archive).
pub(super) fn readers_podman(
    m: &mut Matrix,
    dir: &Path,
    i: &EngineImages,
    origin: &Airlock,
    orig: &BTreeMap<String, Listing>,
) {
    let row = "`podman load` ← `airlock save`";
    let names = [i.base.as_str(), i.app.as_str(), i.app2.as_str()];
    let podman = Podman::new();
    let x = dir.join("airlock-save-podman.tar");
    let loaded = m.check(S_READERS, row, "load / read", || {
        let mut args = vec!["save", "-o", s(&x)];
        args.extend(names);
        origin.ok(&args);
        let out = podman.ok(&["load", "-i", s(&x)]);
        assert_loaded("podman load", &out, &names);
        format!("{} names", names.len())
    });
    m.then(loaded, S_READERS, row, "Id", || {
        for (n, want) in [
            (&i.base, &i.base_id),
            (&i.app, &i.app_id),
            (&i.app2, &i.app_id),
        ] {
            let id = podman.ok(&["image", "inspect", "--format", "{{.Id}}", n]);
            assert_eq!(&format!("sha256:{}", id.trim()), want, "{n}: podman's Id");
        }
        format!("{}, {} = airlock's", short(&i.base_id), short(&i.app_id))
    });
    m.then(loaded, S_READERS, row, "RootFS.Layers", || {
        for (n, want) in [(&i.base, &i.base_layers), (&i.app, &i.app_layers)] {
            let j = podman.ok(&["image", "inspect", "--format", "{{json .RootFS.Layers}}", n]);
            let got: Vec<String> = serde_json::from_str(&j).unwrap();
            assert_eq!(&got, want, "{n}: podman's RootFS.Layers");
        }
        "= airlock inspect".to_string()
    });
    m.then(loaded, S_READERS, row, "runs", || {
        for (image, want) in [(&i.base, BASE_OUT), (&i.app2, APP_OUT)] {
            assert_eq!(podman.run_image(image), want, "podman run {image}");
        }
        "`podman --runtime runc run` base and app print their CMD's output".to_string()
    });
    m.then(loaded, S_READERS, row, "rootfs", || {
        let mut d = Vec::new();
        for (k, image) in [("base", &i.base), ("app", &i.app)] {
            let cid = podman.ok(&["create", image, "/bin/sh"]).trim().to_string();
            let p = dir.join(format!("px-{k}.tar"));
            podman.ok(&["export", "-o", s(&p), &cid]);
            podman.ok(&["rm", &cid]);
            d.push(format!(
                "{k}: {}",
                same_rootfs(k, &orig[k], &tar_listing(&p), false)
            ));
        }
        format!("podman export = airlock export; {}", d.join("; "))
    });
    m.then(loaded, S_READERS, row, "back to airlock", || {
        let y = dir.join("podman-resave.tar");
        podman.ok(&["save", "--format", "docker-archive", "-o", s(&y), &i.app]);
        let back = Airlock::new(&dir.join("back-podman"));
        back.ok(&["load", "-i", s(&y)]);
        assert_eq!(airlock_id(&back, &i.app), i.app_id, "Id after podman save");
        let got = airlock_export(&back, &i.app, &dir.join("bx-podman.tar"));
        format!(
            "`podman save` → airlock: same Id, {}",
            same_rootfs("app", &orig["app"], &got, false)
        )
    });
}

/// `skopeo inspect` and `skopeo copy docker-archive:X oci:D` of airlock's save.
pub(super) fn readers_skopeo(
    m: &mut Matrix,
    dir: &Path,
    i: &EngineImages,
    origin: &Airlock,
    orig: &BTreeMap<String, Listing>,
) {
    let row = "skopeo ← `airlock save`";
    let names = [i.base.as_str(), i.app.as_str(), i.app2.as_str()];
    let x = dir.join("airlock-save-skopeo.tar");
    let oci = dir.join("skopeo-oci");
    let loaded = m.check(S_READERS, row, "load / read", || {
        let mut args = vec!["save", "-o", s(&x)];
        args.extend(names);
        origin.ok(&args);
        for n in names {
            skopeo(&["inspect", &format!("docker-archive:{}:{n}", s(&x))]);
        }
        skopeo(&[
            "copy",
            "-q",
            &format!("docker-archive:{}:{}", s(&x), i.app),
            &format!("oci:{}:app", s(&oci)),
        ]);
        "`skopeo inspect` of each name; `skopeo copy docker-archive:X:NAME oci:D:app`".to_string()
    });
    m.then(loaded, S_READERS, row, "Id", || {
        for (n, want) in [
            (&i.base, &i.base_id),
            (&i.app, &i.app_id),
            (&i.app2, &i.app_id),
        ] {
            let (got, _) = skopeo_config(&format!("docker-archive:{}:{n}", s(&x)));
            assert_eq!(&got, want, "{n}: config digest skopeo reads");
        }
        // skopeo converts the config to OCI when it writes oci: (new digest): what it makes
        // of airlock's archive must be byte-identical to what it makes of `docker save`'s.
        let reference = dir.join("skopeo-oci-of-docker-save");
        skopeo(&[
            "copy",
            "-q",
            &format!("docker-archive:{}:{}", s(&dir.join("save-one.tar")), i.app),
            &format!("oci:{}:app", s(&reference)),
        ]);
        let (ours, theirs) = (format!("oci:{}:app", s(&oci)), format!("oci:{}:app", s(&reference)));
        for flag in ["--raw", "--config"] {
            let mut a = vec!["inspect", flag];
            if flag == "--config" {
                a.push("--raw");
            }
            assert!(
                skopeo(&[a.as_slice(), &[ours.as_str()]].concat())
                    == skopeo(&[a.as_slice(), &[theirs.as_str()]].concat()),
                "skopeo's oci: copy of airlock's save differs ({flag}) from its copy of `docker save`'s"
            );
        }
        format!(
            "{}, {} = airlock's; skopeo's `oci:` copy = its copy of `docker save`'s",
            short(&i.base_id),
            short(&i.app_id)
        )
    });
    m.then(loaded, S_READERS, row, "RootFS.Layers", || {
        for (n, want) in [(&i.base, &i.base_layers), (&i.app, &i.app_layers)] {
            let (_, cfg) = skopeo_config(&format!("docker-archive:{}:{n}", s(&x)));
            let got: Vec<String> =
                serde_json::from_value(cfg["rootfs"]["diff_ids"].clone()).unwrap();
            assert_eq!(&got, want, "{n}: diff_ids skopeo reads");
        }
        "= airlock inspect".to_string()
    });
    m.then(loaded, S_READERS, row, "back to airlock", || {
        let back = Airlock::new(&dir.join("back-skopeo"));
        back.ok(&["load", "-i", s(&oci)]);
        let (want, _) = skopeo_config(&format!("oci:{}:app", s(&oci)));
        assert_eq!(airlock_id(&back, "app"), want, "Id of skopeo's oci: copy");
        let got = airlock_export(&back, "app", &dir.join("bx-skopeo.tar"));
        format!(
            "skopeo's `oci:` dir → airlock: Id = skopeo's, {}",
            same_rootfs("app", &orig["app"], &got, false)
        )
    });
}

/// `umoci unpack` of airlock's OCI output, the bundle run with runc.
pub(super) fn readers_umoci(
    m: &mut Matrix,
    dir: &Path,
    i: &EngineImages,
    origin: &Airlock,
    orig: &BTreeMap<String, Listing>,
) {
    let root = is_root();
    let unpack = |layout: &Path, r: &str, bundle: &Path| {
        let mut c = Command::new("umoci");
        c.arg("unpack");
        if !root {
            c.arg("--rootless");
        }
        c.arg("--image")
            .arg(format!("{}:{r}", s(layout)))
            .arg(bundle);
        let out = output(&mut c);
        assert!(
            out.status.success(),
            "umoci unpack --image {}:{r}: {}",
            s(layout),
            stderr_of(&out)
        );
    };
    let runc_root = dir.join("runc");
    let runs = |bundle: &Path, id: &str| -> String {
        let cfg_path = bundle.join("config.json");
        let mut cfg: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
        cfg["process"]["terminal"] = serde_json::Value::Bool(false);
        std::fs::write(&cfg_path, serde_json::to_vec(&cfg).unwrap()).unwrap();
        let id = format!("airlock-interop-{}-{id}", std::process::id());
        let out = output(
            Command::new("runc")
                .arg("--root")
                .arg(&runc_root)
                .args(["run", "--bundle", s(bundle), &id])
                .stdin(Stdio::null()),
        );
        let _ = Command::new("runc")
            .arg("--root")
            .arg(&runc_root)
            .args(["delete", "-f", &id])
            .output();
        assert!(out.status.success(), "runc run: {}", stderr_of(&out));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            APP_OUT,
            "runc run output"
        );
        "`runc run` of umoci's bundle prints the CMD's output".to_string()
    };
    let rootfs = |bundle: &Path, tag: &str| -> String {
        let out = dir.join(format!("ux-{tag}.tar"));
        origin.ok(&["export", "--dir", s(&bundle.join("rootfs")), "-o", s(&out)]);
        format!(
            "unpacked rootfs = airlock export; {}",
            same_rootfs("app", &orig["app"], &tar_listing(&out), false)
        )
    };

    // --format oci, turned into a layout dir by skopeo.
    let row = "umoci ← `airlock save --format oci` → `skopeo copy` → `oci:D:app`";
    let (o, layout, bundle) = (dir.join("airlock-oci.tar"), dir.join("u1"), dir.join("b1"));
    let ok = m.check(S_READERS, row, "load / read", || {
        origin.ok(&["save", "--format", "oci", "-o", s(&o), &i.app]);
        skopeo(&[
            "copy",
            "-q",
            &format!("oci-archive:{}:{}", s(&o), i.app),
            &format!("oci:{}:app", s(&layout)),
        ]);
        unpack(&layout, "app", &bundle);
        "`umoci unpack --image D:app` of skopeo's copy of the OCI archive".to_string()
    });
    m.then(ok, S_READERS, row, "Id", || {
        let (got, _) = skopeo_config(&format!("oci-archive:{}:{}", s(&o), i.app));
        assert_eq!(got, i.app_id, "config digest in airlock's OCI archive");
        assert_eq!(
            layout_config_digest(&layout, "app"),
            i.app_id,
            "config in the layout"
        );
        format!("{} = airlock's (archive and layout)", short(&i.app_id))
    });
    // rootfs first: runc adds /dev, /proc, /sys mount points to the bundle.
    m.then(ok, S_READERS, row, "rootfs", || rootfs(&bundle, "u1"));
    m.then(ok, S_READERS, row, "runs", || runs(&bundle, "u1"));

    // airlock's own oci: transport, the full name as the ref.
    let row = "umoci ← `airlock copy NAME oci:DIR:NAME`";
    let (layout, bundle) = (dir.join("u2"), dir.join("b2"));
    let ok = m.check(S_READERS, row, "load / read", || {
        origin.ok(&["copy", &i.app, &format!("oci:{}:{}", s(&layout), i.app)]);
        unpack(&layout, &i.app, &bundle);
        "`umoci unpack --image DIR:NAME`".to_string()
    });
    m.then(ok, S_READERS, row, "Id", || {
        assert_eq!(
            layout_config_digest(&layout, &i.app),
            i.app_id,
            "config in the layout"
        );
        let (got, _) = skopeo_config(&format!("oci:{}:{}", s(&layout), i.app));
        assert_eq!(got, i.app_id, "config skopeo reads");
        format!("{} = airlock's (layout and skopeo)", short(&i.app_id))
    });
    m.then(ok, S_READERS, row, "rootfs", || rootfs(&bundle, "u2"));
    m.then(ok, S_READERS, row, "runs", || runs(&bundle, "u2"));

    // The skopeo spelling `oci:DIR:tag`: the tag must be the ref.name umoci and skopeo find.
    let (layout, bundle) = (dir.join("u3"), dir.join("b3"));
    m.check(S_READERS, ROW_UMOCI_SHORT_REF, "load / read", || {
        origin.ok(&["copy", &i.app, &format!("oci:{}:app", s(&layout))]);
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
        let refs: Vec<&str> = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|d| d["annotations"]["org.opencontainers.image.ref.name"].as_str())
            .collect();
        let mut c = Command::new("umoci");
        c.arg("unpack");
        if !root {
            c.arg("--rootless");
        }
        let out = output(
            c.arg("--image")
                .arg(format!("{}:app", s(&layout)))
                .arg(&bundle),
        );
        assert!(
            refs == ["app"] && out.status.success(),
            "`airlock copy IMAGE oci:DIR:app` wrote ref.name {refs:?} into index.json \
             (skopeo writes \"app\"); `umoci unpack --image DIR:app`: {}",
            if out.status.success() {
                "ok".to_string()
            } else {
                stderr_of(&out)
            }
        );
        assert_eq!(
            layout_config_digest(&layout, "app"),
            i.app_id,
            "config in the layout"
        );
        runs(&bundle, "u3");
        format!(
            "ref.name `app`; umoci unpacks it; {} runs",
            short(&i.app_id)
        )
    });
}
