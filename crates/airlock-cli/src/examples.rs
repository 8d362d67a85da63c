//! The examples every subcommand's `--help` ends with (and its man page): what a user
//! on a machine with no internet would otherwise have to look up.

/// `airlock load`.
pub const LOAD: &str = "Examples:
  airlock load -i images.tar                  # any dialect, plain or compressed
  airlock load -i ship.tar.000                # split volumes; resumes after a stop
  docker save app:1 | airlock load            # from standard input
  airlock load -i images.tar --into docker-daemon";
/// `airlock save`.
pub const SAVE: &str = "Examples:
  airlock save app:1 -o app.tar               # loads in docker, podman, containerd, skopeo
  airlock save --all --compress zstd --split 4G -o ship.tar
  airlock save app:2 --incremental-from far-inventory.json -o delta.tar
  airlock save app:1 --sign-key ops.key -o app.tar";
/// `airlock verify`.
pub const VERIFY: &str = "Examples:
  airlock verify -i app.tar
  airlock verify -i ship.tar.000 --trusted-key ops.pub
  airlock verify -i app.tar --format '{{.Repository}}:{{.Tag}}\\t{{.ID}}'";
/// `airlock review`.
pub const REVIEW: &str = "Examples:
  airlock review ship.tar
  airlock review ship.tar --trusted-key ops.pub --json
  airlock review ship.tar --format '{{.Repository}}:{{.Tag}}\\t{{.Signed}}'";
/// `airlock sign`.
pub const SIGN: &str = "Examples:
  airlock sign registry.example/app:1 --key cosign.key";
/// `airlock images`.
pub const IMAGES: &str = "Examples:
  airlock images
  airlock images 'registry.internal/*'
  airlock images -q
  airlock images --format '{{.Repository}}:{{.Tag}}'
  airlock images --format 'table {{.Repository}}\\t{{.Tag}}\\t{{.Size}}'
  airlock images --format '{{json .}}' | jq -r .ID";
/// `airlock artifacts`.
pub const ARTIFACTS: &str = "Examples:
  airlock artifacts
  airlock artifacts --format '{{.Name}}\\t{{.ArtifactType}}'";
/// `airlock inspect`.
pub const INSPECT: &str = "Examples:
  airlock inspect app:1
  airlock inspect app:1 | jq '.[0].RootFS.Layers'
  airlock inspect -f '{{.Os}}/{{.Architecture}}' app:1
  airlock inspect -f '{{index .Config.Labels \"org.opencontainers.image.version\"}}' app:1
  airlock inspect -f '{{range .Config.Env}}{{println .}}{{end}}' app:1";
/// `airlock tag`.
pub const TAG: &str = "Examples:
  airlock tag app:1 registry.internal/team/app:1";
/// `airlock rmi`.
pub const RMI: &str = "Examples:
  airlock rmi app:1
  airlock rmi 3e608150fbaa";
/// `airlock gc`.
pub const GC: &str = "Examples:
  airlock gc";
/// `airlock fsck`.
pub const FSCK: &str = "Examples:
  airlock fsck";
/// `airlock export`.
pub const EXPORT: &str = "Examples:
  airlock export app:1 -o rootfs.tar          # layers flattened, whiteouts applied
  airlock export --dir ./evidence -o snapshot.tar";
/// `airlock import`.
pub const IMPORT: &str = "Examples:
  airlock import rootfs.tar myimage:1
  airlock import ./rootfs-dir myimage:1";
/// `airlock create`.
pub const CREATE: &str = "Examples:
  airlock create app:1 --name work";
/// `airlock containers`.
pub const CONTAINERS: &str = "Examples:
  airlock containers
  airlock containers --format '{{.Names}}\\t{{.Path}}'";
/// `airlock rm`.
pub const RM: &str = "Examples:
  airlock rm work";
/// `airlock commit`.
pub const COMMIT: &str = "Examples:
  airlock commit work app:2";
/// `airlock copy`.
pub const COPY: &str = "Examples:
  airlock copy docker-archive:ship.tar docker://registry.internal:5000/airgap
  airlock copy docker://registry.example/app:1 oci-archive:app.oci.tar
  airlock copy oci:./layout:app:1 dir:./app";
/// `airlock pull`.
pub const PULL: &str = "Examples:
  airlock pull registry.example.com/team/app:1.4
  airlock pull --all-platforms docker.io/library/redis:7";
/// `airlock push`.
pub const PUSH: &str = "Examples:
  airlock push app:1 registry.internal:5000/team/app:1
  airlock push --all --registry registry.internal:5000 --prefix airgap";
/// `airlock login`.
pub const LOGIN: &str = "Examples:
  echo \"$PASSWORD\" | airlock login -u ci --password-stdin registry.internal:5000
  echo \"$PASSWORD\" | airlock login --authfile auth.json -u ci --password-stdin registry.internal:5000";
/// `airlock logout`.
pub const LOGOUT: &str = "Examples:
  airlock logout registry.internal:5000";
/// `airlock inventory`.
pub const INVENTORY: &str = "Examples:
  airlock inventory -o far-inventory.json     # on the far side; carry it back";
/// `airlock serve`.
pub const SERVE: &str = "Examples:
  airlock serve --listen 127.0.0.1:5000
  airlock serve --listen 0.0.0.0:5000 --read-write --tls-cert cert.pem --tls-key key.pem";
/// `airlock sync`.
pub const SYNC: &str = "Examples:
  airlock sync -f shipment.yaml --dry-run
  airlock sync -f shipment.yaml --incremental-from far-inventory.json -o ship.tar";
/// `airlock completions`.
pub const COMPLETIONS: &str = "Examples:
  airlock completions bash > /etc/bash_completion.d/airlock
  airlock completions zsh > \"${fpath[1]}/_airlock\"
  airlock completions fish > ~/.config/fish/completions/airlock.fish";
/// `airlock man`.
pub const MAN: &str = "Examples:
  airlock man | man -l -                       # read it now
  airlock man --dir /usr/local/share/man/man1 # one page per subcommand";
