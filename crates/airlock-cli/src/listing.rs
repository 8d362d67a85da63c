//! `--format` for listings, as the docker CLI takes it: `table` (the default columns),
//! `json`, or a Go template ([`crate::template`]) over records whose fields are named as
//! docker names them. Here are the records each command offers, their column titles, and
//! the docker CLI's ways of writing sizes and ages.

use anyhow::Result;
use serde_json::{Map, Value};

use crate::hints::UsageError;
use crate::template::{Format, Schema};

/// What `--format` asked for.
#[derive(Debug)]
pub enum Layout {
    /// The command's own table (`--format table`, or no `--format`).
    Default,
    /// `--format json`: the command's JSON document.
    Json,
    /// A template.
    Template(Format),
}

impl Layout {
    /// Read a `--format` value; `command` is named in the error, for its `--help`.
    pub fn of(arg: Option<&str>, command: &str) -> Result<Layout> {
        Ok(match arg.map(str::trim) {
            None | Some("table") => Layout::Default,
            Some("json") => Layout::Json,
            Some(text) => Layout::Template(Format::parse(text).map_err(|e| {
                UsageError(format!(
                    "--format {text:?} is not a template airlock can read ({e}); `airlock {command} --help` lists the fields"
                ))
            })?),
        })
    }
}

/// The fields of a record kind and each one's column title in a `table`.
pub struct Fields(pub &'static [(&'static str, &'static str)]);

impl Fields {
    fn names(&self) -> Vec<&'static str> {
        self.0.iter().map(|(f, _)| *f).collect()
    }

    /// The record a table's header is made from: each field's title.
    fn header(&self) -> Value {
        Value::Object(
            self.0
                .iter()
                .map(|(f, h)| (f.to_string(), Value::from(*h)))
                .collect(),
        )
    }

    /// A record with these fields, in this order, from `values` in the same order.
    pub fn record(&self, values: Vec<Value>) -> Value {
        let mut m = Map::new();
        for ((f, _), v) in self.0.iter().zip(values) {
            m.insert(f.to_string(), v);
        }
        Value::Object(m)
    }
}

/// Print `records` through `format`; a field the records lack is an error naming them.
pub fn print(format: &Format, records: &[Value], fields: &Fields, command: &str) -> Result<()> {
    let names = fields.names();
    let text = format
        .render(records, &fields.header(), Schema::Fixed(&names))
        .map_err(|e| UsageError(format!("--format: {e} (see `airlock {command} --help`)")))?;
    use std::io::Write;
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(())
}

/// Print `inspect`'s documents, where a field the document leaves out is what the docker
/// CLI's typed image record has for it (see [`docker_zero`]).
pub fn print_free(format: &Format, records: &[Value], command: &str) -> Result<()> {
    let text = format
        .render(records, &Value::Null, Schema::Free(docker_zero))
        .map_err(|e| UsageError(format!("--format: {e} (see `airlock {command} --help`)")))?;
    use std::io::Write;
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(())
}

/// `images`: the docker CLI's image fields (sorted, as its `{{json .}}` sorts them).
pub const IMAGE_FIELDS: Fields = Fields(&[
    ("Containers", "CONTAINERS"),
    ("CreatedAt", "CREATED AT"),
    ("CreatedSince", "CREATED"),
    ("Digest", "DIGEST"),
    ("ID", "IMAGE ID"),
    ("Repository", "REPOSITORY"),
    ("SharedSize", "SHARED SIZE"),
    ("Size", "SIZE"),
    ("Tag", "TAG"),
    ("UniqueSize", "UNIQUE SIZE"),
    ("VirtualSize", "SIZE"),
]);

/// `docker images`' own columns, and with `--digests`.
pub const IMAGE_TABLE: &str =
    "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}";
/// `docker images --digests`' columns.
pub const IMAGE_TABLE_DIGESTS: &str =
    "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}";

/// `containers`: work containers, with docker's names where `docker ps` has the field.
pub const CONTAINER_FIELDS: Fields = Fields(&[
    ("Names", "NAMES"),
    ("Image", "IMAGE"),
    ("ImageID", "IMAGE ID"),
    ("CreatedAt", "CREATED AT"),
    ("RunningFor", "CREATED"),
    ("Path", "PATH"),
]);

/// `verify`: one record per image read.
pub const VERIFIED_FIELDS: Fields = Fields(&[
    ("Repository", "REPOSITORY"),
    ("Tag", "TAG"),
    ("Names", "NAMES"),
    ("ID", "IMAGE ID"),
    ("Digest", "DIGEST"),
    ("Platforms", "PLATFORMS"),
    ("Layers", "LAYERS"),
    ("Size", "SIZE"),
    ("Archive", "ARCHIVE"),
    ("Dialect", "DIALECT"),
]);

/// `review`: one record per image the transfer manifest lists.
pub const REVIEWED_FIELDS: Fields = Fields(&[
    ("Repository", "REPOSITORY"),
    ("Tag", "TAG"),
    ("Names", "NAMES"),
    ("Digest", "DIGEST"),
    ("Platforms", "PLATFORMS"),
    ("Size", "SIZE"),
    ("Shipped", "SHIPPED"),
    ("Signatures", "SIGNATURES"),
    ("Signed", "SIGNED"),
    ("SBOMs", "SBOMS"),
]);

/// `artifacts`: one record per artifact.
pub const ARTIFACT_FIELDS: Fields = Fields(&[
    ("Name", "NAME"),
    ("ArtifactType", "ARTIFACT TYPE"),
    ("RefersTo", "REFERS TO"),
    ("Digest", "DIGEST"),
    ("Size", "SIZE"),
]);

/// A name's repository and tag as docker lists them (`<none>` for what is missing).
pub fn repository_and_tag(name: Option<&airlock_core::Reference>) -> (String, String) {
    match name {
        Some(n) => (
            n.familiar_repository(),
            n.tag().unwrap_or("<none>").to_string(),
        ),
        None => ("<none>".into(), "<none>".into()),
    }
}

/// Bytes as `docker images` writes its SIZE: three significant digits, decimal units
/// (go-units' `HumanSizeWithPrecision(size, 3)`).
pub fn docker_size(bytes: u64) -> String {
    go_units(bytes, 3)
}

/// Bytes as go-units' `HumanSize` writes them (four significant digits), as docker
/// writes `VirtualSize`.
pub fn docker_size4(bytes: u64) -> String {
    go_units(bytes, 4)
}

fn go_units(bytes: u64, digits: usize) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1000.0 && unit < UNITS.len() - 1 {
        size /= 1000.0;
        unit += 1;
    }
    format!("{}{}", go_g(size, digits), UNITS[unit])
}

/// Go's `%.Ng`: `digits` significant digits, trailing zeros dropped.
fn go_g(f: f64, digits: usize) -> String {
    if f == 0.0 {
        return "0".into();
    }
    let e = format!("{f:.prec$e}", prec = digits - 1);
    let (mantissa, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if exp < -4 || exp >= digits as i32 {
        let m = mantissa.trim_end_matches('0').trim_end_matches('.');
        return format!("{m}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    }
    let decimals = (digits as i32 - 1 - exp).max(0) as usize;
    let s = format!("{f:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// How long ago, as the docker CLI writes it (go-units' `HumanDuration` and " ago").
pub fn docker_since(created: Option<&str>) -> String {
    let Some(t) = created.and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok()) else {
        return "N/A".into();
    };
    let d = chrono::Utc::now() - t.with_timezone(&chrono::Utc);
    format!(
        "{} ago",
        human_duration(d.num_milliseconds().max(0) as f64 / 1000.0)
    )
}

fn human_duration(seconds: f64) -> String {
    let s = seconds as i64;
    let minutes = (seconds / 60.0) as i64;
    let hours = (seconds / 3600.0 + 0.5) as i64;
    match () {
        _ if s < 1 => "Less than a second".into(),
        _ if s == 1 => "1 second".into(),
        _ if s < 60 => format!("{s} seconds"),
        _ if minutes == 1 => "About a minute".into(),
        _ if minutes < 60 => format!("{minutes} minutes"),
        _ if hours == 1 => "About an hour".into(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", (seconds / 3600.0) as i64 / 24 / 365),
    }
}

/// When, as the docker CLI writes a creation time (Go's `time.Time.String()` of whole
/// seconds), in UTC.
pub fn docker_time(created: Option<&str>) -> String {
    match created.and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok()) {
        Some(t) => t
            .with_timezone(&chrono::Utc)
            .format("%Y-%m-%d %H:%M:%S +0000 UTC")
            .to_string(),
        None => "N/A".into(),
    }
}

/// What the docker CLI's typed image record holds for a field an image leaves out: the
/// zero value of the field's Go type, which is what `docker inspect -f` prints.
pub fn docker_zero(field: &str) -> Option<Value> {
    const TEXT: &[&str] = &[
        "User",
        "WorkingDir",
        "StopSignal",
        "Variant",
        "Comment",
        "Author",
        "Parent",
        "DockerVersion",
        "Os",
        "Architecture",
        "OsVersion",
        "Hostname",
        "Domainname",
        "Image",
        "MacAddress",
    ];
    const LISTS: &[&str] = &[
        "Env",
        "Entrypoint",
        "Cmd",
        "OnBuild",
        "Shell",
        "RepoTags",
        "RepoDigests",
        "Layers",
    ];
    const MAPS: &[&str] = &["Labels", "Volumes", "ExposedPorts"];
    const FLAGS: &[&str] = &[
        "ArgsEscaped",
        "AttachStdin",
        "AttachStdout",
        "AttachStderr",
        "Tty",
        "OpenStdin",
        "StdinOnce",
        "NetworkDisabled",
    ];
    Some(if TEXT.contains(&field) {
        Value::from("")
    } else if LISTS.contains(&field) {
        crate::template::typed_nil("list")
    } else if MAPS.contains(&field) {
        crate::template::typed_nil("map")
    } else if FLAGS.contains(&field) {
        Value::Bool(false)
    } else {
        return None;
    })
}

/// An image config's `config` as the docker CLI's inspect shows it: the OCI image config's
/// fields and docker's additions, in that order, each only when set, maps' keys sorted as
/// Go writes them. Fields other tools add (`Hostname`, ...) are left out, as there.
pub fn docker_container_config(config: Option<&Value>) -> Value {
    const ORDER: [&str; 13] = [
        "User",
        "ExposedPorts",
        "Env",
        "Entrypoint",
        "Cmd",
        "Volumes",
        "WorkingDir",
        "Labels",
        "StopSignal",
        "ArgsEscaped",
        "Healthcheck",
        "OnBuild",
        "Shell",
    ];
    let empty = Map::new();
    let c = config.and_then(Value::as_object).unwrap_or(&empty);
    let mut out = Map::new();
    for k in ORDER {
        let v = match c.get(k) {
            Some(Value::Object(m)) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                Value::Object(
                    keys.into_iter()
                        .map(|k| (k.clone(), m[k].clone()))
                        .collect(),
                )
            }
            Some(v) => v.clone(),
            None => continue,
        };
        if crate::template::truth(&v) {
            out.insert(k.to_string(), v);
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_ages_as_the_docker_cli_writes_them() {
        assert_eq!(docker_size(0), "0B");
        assert_eq!(docker_size(584), "584B");
        assert_eq!(docker_size(1234), "1.23kB");
        assert_eq!(docker_size(12_345), "12.3kB");
        assert_eq!(docker_size(7_800_000), "7.8MB");
        assert_eq!(docker_size(1_000_000), "1MB");
        assert_eq!(docker_size(999_999), "1e+03kB");
        assert_eq!(docker_size4(128_456), "128.5kB");
        assert_eq!(docker_size4(5_000), "5kB");
        assert_eq!(human_duration(0.2), "Less than a second");
        assert_eq!(human_duration(59.0), "59 seconds");
        assert_eq!(human_duration(90.0), "About a minute");
        assert_eq!(human_duration(3.0 * 3600.0), "3 hours");
        assert_eq!(human_duration(10.0 * 86_400.0), "10 days");
        assert_eq!(human_duration(20.0 * 86_400.0), "2 weeks");
        assert_eq!(human_duration(100.0 * 86_400.0), "3 months");
        assert_eq!(human_duration(800.0 * 86_400.0), "2 years");
    }
}
