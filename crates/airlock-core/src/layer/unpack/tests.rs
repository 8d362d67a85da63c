use super::*;
use std::os::unix::fs::MetadataExt;

/// A tar written byte by byte, so tests can hold names no honest writer emits.
#[derive(Default)]
struct Tar(Vec<u8>);

impl Tar {
    fn entry(&mut self, ty: EntryType, name: &str, link: &str, mode: u32, data: &[u8]) {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_entry_type(ty);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_000_000);
        h.set_size(data.len() as u64);
        h.set_cksum();
        self.0.extend_from_slice(h.as_bytes());
        self.0.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.0.extend(std::iter::repeat_n(0, pad));
    }
    fn dir(mut self, name: &str) -> Self {
        self.entry(EntryType::Directory, name, "", 0o755, b"");
        self
    }
    fn file(mut self, name: &str, data: &str) -> Self {
        self.entry(EntryType::Regular, name, "", 0o644, data.as_bytes());
        self
    }
    fn symlink(mut self, name: &str, target: &str) -> Self {
        self.entry(EntryType::Symlink, name, target, 0o777, b"");
        self
    }
    fn hardlink(mut self, name: &str, target: &str) -> Self {
        self.entry(EntryType::Link, name, target, 0o644, b"");
        self
    }
    fn bytes(mut self) -> Vec<u8> {
        self.0.extend_from_slice(&[0; 1024]);
        self.0
    }
}

/// `base/root` to unpack into and `base/outside` that must stay untouched.
struct Env {
    base: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        let base = tempfile::tempdir().unwrap();
        fs::create_dir(base.path().join("root")).unwrap();
        fs::create_dir(base.path().join("outside")).unwrap();
        fs::write(base.path().join("outside/secret"), "orig").unwrap();
        Env { base }
    }
    fn root(&self) -> PathBuf {
        self.base.path().join("root")
    }
    fn outside(&self) -> PathBuf {
        self.base.path().join("outside")
    }
    fn apply(&self, tar: Tar) -> Result<UnpackReport> {
        let bytes = tar.bytes();
        let opts = UnpackOptions {
            apply_ownership: false,
        };
        unpack_layer(&mut bytes.as_slice(), &self.root(), &opts)
    }
    fn exists(&self, rel: &str) -> bool {
        fs::symlink_metadata(self.root().join(rel)).is_ok()
    }
    fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.root().join(rel)).unwrap()
    }
    /// Nothing was created, changed or linked outside the root.
    fn assert_outside_untouched(&self) {
        let mut base: Vec<_> = fs::read_dir(self.base.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        base.sort();
        assert_eq!(base, ["outside", "root"]);
        let names: Vec<_> = fs::read_dir(self.outside())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["secret"]);
        let secret = self.outside().join("secret");
        assert_eq!(fs::read_to_string(&secret).unwrap(), "orig");
        assert_eq!(fs::metadata(&secret).unwrap().nlink(), 1);
    }
}

fn is_bad_tar(r: Result<UnpackReport>) -> bool {
    matches!(r, Err(Error::BadTar { .. }))
}

#[test]
fn basic_entries_modes_and_times() {
    let env = Env::new();
    let mut t = Tar::default()
        .dir("d/")
        .file("./d/f", "hi")
        .symlink("d/l", "/etc/passwd");
    t.entry(EntryType::Regular, "s", "", 0o4755, b"x");
    t.entry(EntryType::Directory, "ro/", "", 0o555, b"");
    t = t.file("ro/inner", "i");
    let rep = env.apply(t).unwrap();
    assert_eq!(rep.entries, 6);
    assert_eq!(env.read("d/f"), "hi");
    let link = fs::read_link(env.root().join("d/l")).unwrap();
    assert_eq!(link, Path::new("/etc/passwd"));
    let s = fs::metadata(env.root().join("s")).unwrap();
    assert_eq!(s.mode() & 0o7777, 0o4755, "setuid kept");
    assert_eq!(s.mtime(), 1_000_000);
    let ro = fs::metadata(env.root().join("ro")).unwrap();
    assert_eq!(ro.mode() & 0o7777, 0o555);
    assert_eq!(
        ro.mtime(),
        1_000_000,
        "directory mtime set after its children"
    );
    env.assert_outside_untouched();
}

#[test]
fn setuid_survives_chown() {
    let env = Env::new();
    let mut t = Tar::default();
    t.entry(EntryType::Regular, "su", "", 0o6755, b"x");
    let bytes = t.bytes();
    let opts = UnpackOptions {
        apply_ownership: true,
    };
    unpack_layer(&mut bytes.as_slice(), &env.root(), &opts).unwrap();
    let md = fs::metadata(env.root().join("su")).unwrap();
    assert_eq!(md.mode() & 0o7777, 0o6755);
}

#[test]
fn unapplied_ownership_is_reported() {
    let env = Env::new();
    let (uid, gid) = process_ids(&env.root()).unwrap();
    let mut t = Tar::default().file("mine", "");
    let mut h = tar::Header::new_gnu();
    h.set_path("theirs").unwrap();
    h.set_uid(uid + 1000);
    h.set_gid(gid + 1000);
    h.set_size(0);
    h.set_mode(0o644);
    h.set_cksum();
    t.0.extend_from_slice(h.as_bytes());
    // `mine` is owned by 0:0 in the tar: reported unless we are root.
    let rep = env.apply(t).unwrap();
    assert_eq!(
        rep.unapplied_ownership.get("theirs"),
        Some(&(uid + 1000, gid + 1000))
    );
    assert_eq!(
        rep.unapplied_ownership.contains_key("mine"),
        (uid, gid) != (0, 0)
    );
}

#[test]
fn whiteouts_remove_lower_files_and_trees() {
    let env = Env::new();
    env.apply(
        Tar::default()
            .file("a/f", "1")
            .file("a/g", "2")
            .file("d/x/y", "3"),
    )
    .unwrap();
    let rep = env
        .apply(
            Tar::default()
                .file("a/.wh.f", "")
                .file(".wh.d", "")
                .file(".wh.missing", "")
                .file("new", "n")
                .file(".wh.new", ""),
        )
        .unwrap();
    assert_eq!(rep.entries, 5);
    assert!(!env.exists("a/f"));
    assert!(!env.exists("a/.wh.f"));
    assert!(env.exists("a/g"));
    assert!(!env.exists("d"));
    assert!(!env.exists(".wh.d"));
    assert_eq!(env.read("new"), "n", "a whiteout never hides its own layer");
    assert!(is_bad_tar(env.apply(Tar::default().file("a/.wh.", ""))));
}

#[test]
fn opaque_keeps_same_layer_children_wherever_the_marker_is() {
    let env = Env::new();
    env.apply(
        Tar::default()
            .file("o/old", "1")
            .file("o/sub/old2", "2")
            .file("o/sub/x", "3"),
    )
    .unwrap();
    env.apply(
        Tar::default()
            .dir("o/")
            .file("o/before", "b")
            .file("o/sub/x", "new x")
            .file("o/.wh..wh..opq", "")
            .file("o/after", "a"),
    )
    .unwrap();
    let mut names: Vec<_> = fs::read_dir(env.root().join("o"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["after", "before", "sub"]);
    assert!(
        !env.exists("o/sub/old2"),
        "lower grandchildren are hidden too"
    );
    assert_eq!(env.read("o/sub/x"), "new x");
    // Marker first, at the root of the layer.
    env.apply(Tar::default().file(".wh..wh..opq", "").file("z", "z"))
        .unwrap();
    let names: Vec<_> = fs::read_dir(env.root()).unwrap().collect();
    assert_eq!(names.len(), 1);
    assert_eq!(env.read("z"), "z");
}

#[test]
fn file_replaces_dir_and_dir_replaces_file() {
    let env = Env::new();
    env.apply(Tar::default().file("p/child", "c").file("q", "file"))
        .unwrap();
    env.apply(
        Tar::default()
            .file("p", "now a file")
            .dir("q/")
            .file("q/c", "c"),
    )
    .unwrap();
    assert_eq!(env.read("p"), "now a file");
    assert!(fs::metadata(env.root().join("q")).unwrap().is_dir());
    assert_eq!(env.read("q/c"), "c");
}

#[test]
fn hardlink_pair_shares_the_inode() {
    let env = Env::new();
    env.apply(Tar::default().file("f", "data").hardlink("sub/h", "./f"))
        .unwrap();
    let a = fs::metadata(env.root().join("f")).unwrap();
    let b = fs::metadata(env.root().join("sub/h")).unwrap();
    assert_eq!((a.ino(), a.nlink()), (b.ino(), 2));
    assert!(is_bad_tar(env.apply(Tar::default().hardlink("x", "nope"))));
    assert!(is_bad_tar(env.apply(Tar::default().hardlink("x", "sub"))));
}

#[test]
fn devices_and_fifos_are_skipped() {
    let env = Env::new();
    env.apply(Tar::default().file("dev/null", "a lower file"))
        .unwrap();
    let mut t = Tar::default();
    t.entry(EntryType::Char, "dev/null", "", 0o666, b"");
    t.entry(EntryType::Fifo, "dev/fifo", "", 0o600, b"");
    let rep = env.apply(t).unwrap();
    assert_eq!(rep.skipped_devices, ["dev/null", "dev/fifo"]);
    assert!(!env.exists("dev/null"));
    assert!(!env.exists("dev/fifo"));
}

#[test]
fn dotdot_and_absolute_names_stay_inside() {
    let env = Env::new();
    assert!(is_bad_tar(env.apply(Tar::default().file("../evil", "x"))));
    assert!(is_bad_tar(
        env.apply(Tar::default().file("a/../../evil", "x"))
    ));
    let abs = format!("{}/evil", env.outside().display());
    env.apply(Tar::default().file(&abs, "x")).unwrap();
    assert_eq!(env.read(abs.trim_start_matches('/')), "x");
    env.assert_outside_untouched();
}

#[test]
fn symlinked_parents_resolve_inside_the_root() {
    let env = Env::new();
    let out = env.outside().display().to_string();
    env.apply(
        Tar::default()
            .symlink("x", &out)
            .file("x/pwned", "p")
            .symlink("y", "../../..")
            .file("y/pwned2", "p")
            .symlink("x2", &format!("{out}/secret"))
            .file("x2", "replaced"),
    )
    .unwrap();
    // chroot semantics: `x` means <root><outside>, `y` means <root>.
    assert_eq!(
        env.read(&format!("{}/pwned", out.trim_start_matches('/'))),
        "p"
    );
    assert_eq!(env.read("pwned2"), "p");
    let x2 = fs::symlink_metadata(env.root().join("x2")).unwrap();
    assert!(x2.is_file(), "the link was replaced, not written through");
    assert_eq!(env.read("x2"), "replaced");
    // Whiteouts and opaque markers through a link this layer made are refused; through a
    // lower layer's link, the link gives way to the directory (overlayfs semantics).
    assert!(is_bad_tar(
        env.apply(
            Tar::default()
                .symlink("w", &out)
                .file("w/.wh.secret", "")
                .file("w/.wh..wh..opq", ""),
        )
    ));
    env.apply(Tar::default().symlink("w2", &out)).unwrap();
    env.apply(
        Tar::default()
            .file("w2/.wh.secret", "")
            .file("w2/.wh..wh..opq", ""),
    )
    .unwrap();
    assert!(env.root().join("w2").is_dir());
    // Loops end in an error, not a hang.
    let loops = Tar::default()
        .symlink("l1", "l2")
        .symlink("l2", "l1")
        .file("l1/f", "");
    assert!(is_bad_tar(env.apply(loops)));
    env.assert_outside_untouched();
}

#[test]
fn hardlinks_cannot_reach_outside() {
    let env = Env::new();
    let out = env.outside().display().to_string();
    assert!(is_bad_tar(
        env.apply(Tar::default().hardlink("h", "../outside/secret"))
    ));
    let abs = format!("{out}/secret");
    // Absolute targets are inside the root, where nothing is.
    assert!(is_bad_tar(env.apply(Tar::default().hardlink("h", &abs))));
    let via_dir = Tar::default().symlink("z", &out).hardlink("h", "z/secret");
    assert!(is_bad_tar(env.apply(via_dir)));
    // A hardlink to a symlink links the symlink itself.
    env.apply(Tar::default().symlink("s", &abs).hardlink("h2", "s"))
        .unwrap();
    let h2 = fs::symlink_metadata(env.root().join("h2")).unwrap();
    assert!(h2.file_type().is_symlink());
    env.assert_outside_untouched();
}

#[test]
fn a_whiteout_makes_the_directory_it_stands_in() {
    let env = Env::new();
    env.apply(
        Tar::default()
            .file("x/.wh.y", "")
            .file("lib/.wh.y", "")
            .file("o/p/.wh..wh..opq", ""),
    )
    .unwrap();
    assert!(env.root().join("x").is_dir());
    assert!(env.root().join("lib").is_dir());
    assert!(env.root().join("o/p").is_dir());
}
