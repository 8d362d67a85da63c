//! No module of any crate imports one that imports it back (directly or round a longer
//! loop). Parent and child modules may name each other (`super::`, `mod x;`); siblings and
//! cousins may not close a circle. Read from the sources, so a new cycle fails the suite.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::util::repo_root;

type Module = Vec<String>;

/// Every module of a crate's `src/` and the modules it names through `crate::` or `super::`.
fn module_graph(src: &Path) -> BTreeMap<Module, BTreeSet<Module>> {
    let mut files = Vec::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                files.push(p);
            }
        }
    }
    let module_of = |p: &Path| -> Module {
        let rel = p.strip_prefix(src).unwrap().with_extension("");
        let mut parts: Module = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if matches!(
            parts.last().map(String::as_str),
            Some("mod" | "lib" | "main")
        ) {
            parts.pop();
        }
        parts
    };
    let modules: BTreeSet<Module> = files.iter().map(|f| module_of(f)).collect();
    let mut graph = BTreeMap::new();
    for f in &files {
        let me = module_of(f);
        let text = std::fs::read_to_string(f).unwrap();
        // Inline unit tests may reach anywhere; comments are not imports.
        let code = text.split("#[cfg(test)]\nmod tests").next().unwrap();
        let mut deps = BTreeSet::new();
        for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for (prefix, base) in [("crate::", Vec::new()), ("super::", parent(&me))] {
                for (i, _) in line.match_indices(prefix) {
                    let path: Vec<String> = line[i + prefix.len()..]
                        .split(|c: char| !(c.is_ascii_lowercase() || c == '_' || c == ':'))
                        .next()
                        .unwrap_or("")
                        .split("::")
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect();
                    let mut full = base.clone();
                    full.extend(path);
                    // The longest prefix that is a module is what is imported.
                    while !full.is_empty() && !modules.contains(&full) {
                        full.pop();
                    }
                    if full != me {
                        deps.insert(full);
                    }
                }
            }
        }
        graph.insert(me, deps);
    }
    graph
}

fn parent(m: &Module) -> Module {
    m[..m.len().saturating_sub(1)].to_vec()
}

fn related(a: &Module, b: &Module) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// A cycle among unrelated modules, if any (depth-first search for a back edge).
fn find_cycle(graph: &BTreeMap<Module, BTreeSet<Module>>) -> Option<Vec<Module>> {
    fn visit(
        m: &Module,
        graph: &BTreeMap<Module, BTreeSet<Module>>,
        path: &mut Vec<Module>,
        done: &mut BTreeSet<Module>,
    ) -> Option<Vec<Module>> {
        if let Some(i) = path.iter().position(|p| p == m) {
            return Some(path[i..].to_vec());
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.clone());
        for d in graph.get(m).into_iter().flatten() {
            if related(m, d) {
                continue;
            }
            if let Some(c) = visit(d, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.clone());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|m| visit(m, graph, &mut Vec::new(), &mut done))
}

/// The same graph between top-level modules only (`archive::reader` counts as `archive`):
/// the layers of a crate must not form a circle either.
fn top_level(graph: &BTreeMap<Module, BTreeSet<Module>>) -> BTreeMap<Module, BTreeSet<Module>> {
    let top = |m: &Module| -> Module { m.iter().take(1).cloned().collect() };
    let mut out: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (m, deps) in graph {
        let me = top(m);
        let entry = out.entry(me.clone()).or_default();
        entry.extend(deps.iter().map(top).filter(|d| d != &me));
    }
    out
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    for krate in ["airlock-core", "airlock-remote", "airlock-cli"] {
        let graph = module_graph(&repo_root().join("crates").join(krate).join("src"));
        assert!(
            graph.len() > 5,
            "{krate}: found only {} modules",
            graph.len()
        );
        for g in [&graph, &top_level(&graph)] {
            if let Some(cycle) = find_cycle(g) {
                let names: Vec<String> = cycle.iter().map(|m| m.join("::")).collect();
                panic!("{krate}: import cycle {}", names.join(" -> "));
            }
        }
    }
}

#[test]
fn the_cycle_finder_finds_a_cycle() {
    let m = |s: &str| -> Module { s.split("::").map(str::to_string).collect() };
    let mut g: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    g.insert(m("a"), [m("b")].into());
    g.insert(m("b"), [m("c")].into());
    g.insert(m("c"), [m("a")].into());
    assert_eq!(find_cycle(&g).map(|c| c.len()), Some(3));
    g.insert(m("c"), [m("c::d")].into());
    assert_eq!(find_cycle(&g), None);
}
