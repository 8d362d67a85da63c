//! Docs that work offline (issue 15, 5): shell completions that bash really completes with,
//! and man pages that `man` really renders, both made from the command-line definitions.

use std::process::Command;

use crate::util::{airlock_bin, require_tool, scratch, sh};

#[test]
fn bash_completes_subcommands_and_flags_from_the_generated_script() {
    require_tool("bash");
    let dir = scratch();
    let script = dir.path().join("airlock.bash");
    let out = Command::new(airlock_bin())
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(out.status.success());
    std::fs::write(&script, &out.stdout).unwrap();
    // What bash offers at `airlock lo<TAB>` and `airlock save --incr<TAB>`.
    let complete = |words: &str, cword: usize| {
        sh(Command::new("bash").arg("-c").arg(format!(
            "source {}; COMP_WORDS=({words}); COMP_CWORD={cword}; COMP_LINE='{words}'; \
             COMP_POINT=${{#COMP_LINE}}; _airlock airlock \"${{COMP_WORDS[$COMP_CWORD]}}\" \
             \"${{COMP_WORDS[$COMP_CWORD-1]}}\"; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script.display()
        )))
    };
    let subs = complete("airlock lo", 1);
    let subs: Vec<&str> = subs.lines().collect();
    for want in ["load", "login", "logout"] {
        assert!(subs.contains(&want), "{subs:?}");
    }
    assert!(!subs.contains(&"save"), "{subs:?}");
    let flags = complete("airlock save --incr", 2);
    assert!(flags.lines().any(|l| l == "--incremental-from"), "{flags}");
    // The other shells get a script too.
    for shell in ["zsh", "fish", "powershell"] {
        let out = Command::new(airlock_bin())
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success() && out.stdout.len() > 1000, "{shell}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("incremental-from"));
    }
}

#[test]
fn man_renders_a_page_for_airlock_and_each_subcommand() {
    require_tool("man");
    let dir = scratch();
    let pages = dir.path().join("man1");
    let out = Command::new(airlock_bin())
        .args(["man", "--dir", pages.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for page in [
        "airlock.1",
        "airlock-load.1",
        "airlock-save.1",
        "airlock-sync.1",
    ] {
        assert!(pages.join(page).exists(), "{page}");
    }
    let render = |page: &str| {
        sh(Command::new("man")
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100")
            .arg("-l")
            .arg(pages.join(page)))
    };
    // (man justifies lines: compare with runs of spaces as one)
    let save = render("airlock-save.1")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(save.contains("--incremental-from"), "{save}");
    assert!(
        save.contains("Examples:") && save.contains("airlock save app:1 -o app.tar"),
        "{save}"
    );
    let top = render("airlock.1");
    assert!(
        top.contains("airlock-load(1)") || top.contains("load"),
        "{top}"
    );
    // Without --dir: the top page on standard output, which man reads from a pipe.
    let out = Command::new(airlock_bin()).arg("man").output().unwrap();
    assert!(out.status.success() && out.stdout.starts_with(b".ie"));
}
