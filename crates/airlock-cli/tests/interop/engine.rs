//! Cells of section 3: the Docker Engine transport.

use std::collections::BTreeMap;
use std::path::Path;

use crate::util::{expected, sha256, tar_listing, Airlock};

use super::*;

// ------------------------------------------------------------------------------ 3. engine

/// An OCI-only archive (skopeo's, from the fixtures): `docker load` 20.10 cannot read it,
/// `airlock load --into docker-daemon` can.
pub(super) fn engine_oci_only(m: &mut Matrix, eng: &EngineGuard, dir: &Path, fx: &Path) {
    let fixture = "skopeo-oci-archive.tar";
    let want = expected()[fixture][0].clone();
    // skopeo renames it under this run's prefix (same manifest and config bytes), so the
    // run never touches another test's `localhost/airlock-test/...` names in the engine.
    let name = eng.name("skopeo-oci:1");
    let x = dir.join("skopeo-oci-renamed.tar");
    let row = "`docker load` ← skopeo OCI-only archive (fixture)";
    let made = m.check(S_ENGINE, row, "result", || {
        skopeo(&[
            "copy",
            "-q",
            &format!("oci-archive:{}", s(&fx.join(fixture))),
            &format!("oci-archive:{}:{name}", s(&x)),
        ]);
        let md = sha256(&skopeo(&[
            "inspect",
            "--raw",
            &format!("oci-archive:{}", s(&x)),
        ]));
        assert_eq!(
            Some(md.as_str()),
            want["manifest_digest"].as_str(),
            "skopeo's renamed copy has another manifest"
        );
        let out = docker_output(&["load", "-i", s(&x)]);
        assert!(
            !out.status.success(),
            "docker load read an OCI-only archive: is this engine newer than 20.10? {}",
            String::from_utf8_lossy(&out.stdout)
        );
        format!("fails, as expected of docker 20.10: `{}`", stderr_of(&out))
    });
    let row = "`airlock load --into docker-daemon` ← same archive";
    let loaded = m.then(made, S_ENGINE, row, "result", || {
        let a = Airlock::new(&dir.join("store-into"));
        let out = a.ok(&["load", "--into", "docker-daemon", "-i", s(&x)]);
        assert_loaded("airlock load --into docker-daemon", &out, &[&name]);
        "loaded into the engine".to_string()
    });
    m.then(loaded, S_ENGINE, row, "Id", || {
        let id = docker_id(&name);
        assert_eq!(
            Some(id.as_str()),
            want["config_digest"].as_str(),
            "docker's Id"
        );
        format!("{} = skopeo inspect --config", short(&id))
    });
    m.then(loaded, S_ENGINE, row, "RootFS.Layers", || {
        let want: Vec<String> = serde_json::from_value(want["diff_ids"].clone()).unwrap();
        assert_eq!(docker_layers(&name), want, "docker's RootFS.Layers");
        format!("{} diffIDs = the config's", want.len())
    });
    m.then(loaded, S_ENGINE, row, "runs", || {
        assert_eq!(
            docker(&["run", "--rm", &name]),
            FIXTURE_APP_OUT,
            "docker run"
        );
        "`docker run --rm` prints the CMD's output".to_string()
    });
    m.then(loaded, S_ENGINE, row, "rootfs", || {
        let got = eng.export(&name, &dir.join("dx-into.tar"));
        let want = tar_listing(&fx.join("export-rootfs.tar"));
        format!(
            "docker export = podman export of the fixture; {}",
            same_rootfs("app", &want, &got, true)
        )
    });
    eng.rmi(&[&name]);
}

/// `airlock save docker-daemon:`, `airlock copy docker-daemon:`, `airlock export
/// docker-daemon:CONTAINER`, while the engine holds the engine-made images.
pub(super) fn engine_daemon(
    m: &mut Matrix,
    eng: &EngineGuard,
    dir: &Path,
    i: &EngineImages,
    orig: &BTreeMap<String, Listing>,
) {
    let row = "`airlock save docker-daemon:NAME…` → `airlock load`";
    let a = Airlock::new(&dir.join("store-daemon-save"));
    let x = dir.join("daemon-save.tar");
    let ok = m.check(S_ENGINE, row, "result", || {
        a.ok(&[
            "save",
            "-o",
            s(&x),
            &format!("docker-daemon:{}", i.base),
            &format!("docker-daemon:{}", i.app),
            &format!("docker-daemon:{}", i.app2),
        ]);
        let out = a.ok(&["load", "-i", s(&x)]);
        assert_loaded("airlock load", &out, &[&i.base, &i.app, &i.app2]);
        "3 names saved from the engine, loaded".to_string()
    });
    m.then(ok, S_ENGINE, row, "Id", || {
        for (n, want) in [
            (&i.base, &i.base_id),
            (&i.app, &i.app_id),
            (&i.app2, &i.app_id),
        ] {
            assert_eq!(&airlock_id(&a, n), want, "{n}: Id vs docker inspect");
        }
        format!(
            "{}, {} = docker inspect",
            short(&i.base_id),
            short(&i.app_id)
        )
    });
    m.then(ok, S_ENGINE, row, "RootFS.Layers", || {
        assert_eq!(airlock_layers(&a, &i.base), i.base_layers, "base");
        assert_eq!(airlock_layers(&a, &i.app), i.app_layers, "app");
        "= docker inspect".to_string()
    });
    m.then(ok, S_ENGINE, row, "rootfs", || {
        let got = airlock_export(&a, &i.app, &dir.join("x-daemon-save.tar"));
        format!(
            "app: airlock export = original's, {}",
            same_rootfs("app", &orig["app"], &got, false)
        )
    });

    let row = "`airlock copy docker-daemon:NAME store:OTHER`";
    let a = Airlock::new(&dir.join("store-daemon-copy"));
    let other = "localhost/interop/copied:1";
    let ok = m.check(S_ENGINE, row, "result", || {
        let out = a.ok(&[
            "copy",
            &format!("docker-daemon:{}", i.app),
            &format!("store:{other}"),
        ]);
        assert_loaded("airlock copy", &out, &[other]);
        format!("copied as {other}")
    });
    m.then(ok, S_ENGINE, row, "Id", || {
        assert_eq!(airlock_id(&a, other), i.app_id, "Id vs docker inspect");
        format!("{} = docker inspect", short(&i.app_id))
    });
    m.then(ok, S_ENGINE, row, "RootFS.Layers", || {
        assert_eq!(airlock_layers(&a, other), i.app_layers);
        "= docker inspect".to_string()
    });
    m.then(ok, S_ENGINE, row, "rootfs", || {
        let got = airlock_export(&a, other, &dir.join("x-daemon-copy.tar"));
        format!(
            "airlock export = original's, {}",
            same_rootfs("app", &orig["app"], &got, false)
        )
    });

    let row = "`airlock export docker-daemon:CONTAINER`";
    let a = Airlock::new(&dir.join("store-daemon-export"));
    m.check(S_ENGINE, row, "rootfs", || {
        let cid = eng.create(
            &i.app,
            &[
                "/bin/sh",
                "-c",
                "echo changed > /data/changed.txt && rm /added.txt",
            ],
        );
        docker(&["start", "-a", &cid]);
        let (d, x) = (dir.join("dx-ctr.tar"), dir.join("ax-ctr.tar"));
        docker(&["export", "-o", s(&d), &cid]);
        a.ok(&["export", "-o", s(&x), &format!("docker-daemon:{cid}")]);
        eng.rm(&cid);
        let (want, got) = (tar_listing(&d), tar_listing(&x));
        assert!(
            want.contains_key("data/changed.txt") && !want.contains_key("added.txt"),
            "docker export does not show the container's changes"
        );
        format!(
            "= `docker export` of the same (changed) container, {}",
            same_rootfs("container", &want, &got, false)
        )
    });
}
