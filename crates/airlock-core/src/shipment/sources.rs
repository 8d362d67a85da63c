//! What a shipment's entries name besides registries: list files and Kubernetes YAML;
//! and the rename rule that gives images their far-side names.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

/// The references a list file names: one per line; blank lines and `#` comments skipped.
pub fn read_list(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("read", path, e))?;
    Ok(text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

/// The images Kubernetes YAML under `path` (a file, or every `.yaml`/`.yml` below a
/// directory) runs: the `image:` of every container, init container and ephemeral
/// container, whatever the workload kind (a Pod, a Deployment's template, a CronJob's job
/// template). Sorted, without repeats.
pub fn kubernetes_images(path: &Path) -> Result<Vec<String>> {
    let mut files = Vec::new();
    collect_yaml(path, &mut files)?;
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).map_err(|e| Error::io("read", &f, e))?;
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = serde_yaml::Value::deserialize(doc)
                .map_err(|e| Error::Usage(format!("{}: {e}", f.display())))?;
            images_in(&value, &mut out);
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn collect_yaml(path: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    if path.is_file() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| Error::io("read", path, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            collect_yaml(&p, out)?;
        } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            out.push(p);
        }
    }
    Ok(())
}

fn images_in(v: &serde_yaml::Value, out: &mut Vec<String>) {
    match v {
        serde_yaml::Value::Mapping(m) => {
            for (k, child) in m {
                let containers = matches!(
                    k.as_str(),
                    Some("containers" | "initContainers" | "ephemeralContainers")
                );
                if let (true, serde_yaml::Value::Sequence(items)) = (containers, child) {
                    for item in items {
                        if let Some(image) = item.get("image").and_then(|i| i.as_str()) {
                            out.push(image.to_string());
                        }
                    }
                }
                images_in(child, out);
            }
        }
        serde_yaml::Value::Sequence(items) => items.iter().for_each(|i| images_in(i, out)),
        _ => {}
    }
}

/// The far-side name of `name` under a rename rule: `{repo}` is its repository path (the
/// part after the registry host: `team/app`, `library/redis`), the tag or digest is kept.
/// `registry.internal/mirror/{repo}` makes `registry.example.com/team/app:1.4` into
/// `registry.internal/mirror/team/app:1.4`.
pub fn rename(rule: &str, name: &crate::Reference) -> Result<crate::Reference> {
    let mut target = rule.replace("{repo}", name.path());
    if let Some(t) = name.tag() {
        target.push(':');
        target.push_str(t);
    }
    if let Some(d) = name.digest() {
        target.push('@');
        target.push_str(&d.to_string());
    }
    crate::Reference::parse(&target).map_err(|e| {
        Error::Usage(format!(
            "rename {rule:?} makes {name} into {target:?}, which is no image name: {e}"
        ))
    })
}
