//! The engine transport against podman's Docker-compatible API socket (`podman system
//! service`): the same code that talks to the Docker Engine.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::util::{fixtures, require_tool, scratch, Airlock, Podman};

const APP: &str = "localhost/airlock-test/app:1";

/// `podman system service` on a socket of its own, stopped when dropped.
struct Service {
    child: Child,
    socket: std::path::PathBuf,
}

impl Service {
    fn start(podman: &Podman) -> Service {
        let socket = podman.root.path().join("api.sock");
        let child = podman
            .cmd()
            .args(["system", "service", "--time=0"])
            .arg(format!("unix://{}", socket.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while !socket.exists() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "podman's API socket never appeared"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Service { child, socket }
    }

    fn docker_host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn podman_socket_serves_as_the_engine() {
    require_tool("podman");
    let podman = Podman::new();
    let service = Service::start(&podman);
    let dir = scratch();
    let airlock = Airlock::new(&dir.path().join("store"));
    let with_host = |args: &[&str]| {
        let out = airlock
            .cmd()
            .env("DOCKER_HOST", service.docker_host())
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "airlock {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // An OCI archive goes in through the API, verified and converted on the way.
    let oci = fixtures().join("skopeo-oci-archive.tar");
    let id = crate::util::expected()["skopeo-oci-archive.tar"][0]["config_digest"]
        .as_str()
        .unwrap()
        .to_string();
    with_host(&[
        "load",
        "--into",
        "docker-daemon",
        "-i",
        oci.to_str().unwrap(),
    ]);
    let listed = podman.ok(&["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]);
    assert!(
        listed.contains(&format!("{APP} {}", &id[7..19])),
        "{listed}"
    );
    // ...and comes back out with the same image ID.
    let out = dir.path().join("from-podman.tar");
    with_host(&[
        "save",
        &format!("docker-daemon:{APP}"),
        "-o",
        out.to_str().unwrap(),
    ]);
    let back = Airlock::new(&dir.path().join("back"));
    back.ok(&["load", "-i", out.to_str().unwrap()]);
    assert_eq!(back.inspect(APP)["Id"], id.as_str());
    // Without a socket the error names the path tried.
    let missing = airlock
        .cmd()
        .env("DOCKER_HOST", "unix:///nonexistent/airlock-test.sock")
        .args(["save", "docker-daemon:x", "-o", "/dev/null"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(
        err.contains("no Docker Engine answers at unix:///nonexistent/airlock-test.sock"),
        "{err}"
    );
}
