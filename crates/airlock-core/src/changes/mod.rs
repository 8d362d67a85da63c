//! Dockerfile instructions applied to an image config, as `docker import --change` and
//! `docker commit --change` do.
//!
//! Follows moby's classic builder (`builder/dockerfile` dispatchers), the buildkit
//! Dockerfile parser (JSON/shell forms, `KEY=VALUE` words, `--flags`) and its `shell`
//! lexer (quotes, escapes, `$VAR` expansion). Deliberate differences:
//! - `ENTRYPOINT` leaves `Cmd` alone (Docker nulls it unless an earlier change set `CMD`).
//! - `LABEL key value` (legacy form without `=`) is rejected; `ENV key value` is accepted.
//! - `STOPSIGNAL` numbers must be 1-64; `EXPOSE` rejects `host:container` mappings and
//!   extra `/` parts; `HEALTHCHECK NONE` rejects flags; an empty change is an error.
//! - `${VAR#..}`, `${VAR%..}`, `${VAR/..}` substitutions are not supported.
//!
//! `ExposedPorts`, `Labels` and `Volumes` keys are kept sorted, as Go marshals maps.

mod lexer;
#[cfg(test)]
mod tests;

use lexer::{expand_pairs, expand_word, expand_words, extract_flags, split_first_word};
use serde_json::{Map, Value};

const ALLOWED: &str =
    "CMD, ENTRYPOINT, HEALTHCHECK, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR";
const HEALTHCHECK_FLAGS: [&str; 5] = [
    "interval",
    "timeout",
    "start-period",
    "start-interval",
    "retries",
];
const NOT_STRINGS: &str = "when using JSON array syntax, arrays must be comprised of strings only";

/// A bad instruction: says which one and why.
#[derive(Debug, thiserror::Error)]
#[error("bad change '{instruction}': {reason}")]
pub struct ChangeError {
    /// The instruction as given.
    pub instruction: String,
    /// Why it was rejected.
    pub reason: String,
}

/// Apply Dockerfile instructions (as `docker import -c`/`docker commit -c` take them) to the
/// `config` object of an image config (the object under the "config" key: Cmd, Entrypoint,
/// Env, ExposedPorts, Labels, OnBuild, StopSignal, User, Volumes, WorkingDir, Healthcheck).
///
/// Instructions apply in order; each sees the `Env` left by the ones before it. On error
/// `config` holds the effect of the instructions before the bad one.
pub fn apply_changes(
    config: &mut Map<String, Value>,
    changes: &[String],
) -> Result<(), ChangeError> {
    for change in changes {
        apply_one(config, change).map_err(|reason| ChangeError {
            instruction: change.clone(),
            reason,
        })?;
    }
    Ok(())
}

fn apply_one(config: &mut Map<String, Value>, change: &str) -> Result<(), String> {
    let (keyword, rest) = split_first_word(change.trim());
    let kw = keyword.to_ascii_uppercase();
    if kw.is_empty() || !ALLOWED.split(", ").any(|a| a == kw) {
        let what = if kw.is_empty() {
            "an empty instruction".to_string()
        } else {
            kw
        };
        return Err(format!(
            "{what} is not allowed in a change; allowed: {}",
            ALLOWED
        ));
    }
    let (flag_words, args) = extract_flags(rest);
    let args = args.trim();
    let known: &[&str] = if kw == "HEALTHCHECK" {
        &HEALTHCHECK_FLAGS
    } else {
        &[]
    };
    let flags = parse_flags(&flag_words, known)?;
    let env = str_list(config, "Env");
    match kw.as_str() {
        "CMD" => {
            let cmd = resolve_cmd(config, parse_maybe_json(args)?);
            config.insert("Cmd".into(), strings(cmd));
        }
        "ENTRYPOINT" => {
            let cmd = resolve_cmd(config, parse_maybe_json(args)?);
            config.insert("Entrypoint".into(), strings(cmd));
        }
        "HEALTHCHECK" => {
            let health = healthcheck(args, &flags)?;
            config.insert("Healthcheck".into(), Value::Object(health));
        }
        "ENV" => {
            let mut env = env;
            for (key, value) in expand_pairs(args, "ENV", &env)? {
                let entry = format!("{key}={value}");
                match env
                    .iter_mut()
                    .find(|e| e.split('=').next() == Some(key.as_str()))
                {
                    Some(slot) => *slot = entry,
                    None => env.push(entry),
                }
            }
            config.insert("Env".into(), strings(env));
        }
        "EXPOSE" => {
            if args.is_empty() {
                return Err("EXPOSE requires at least one argument".into());
            }
            let mut ports = Vec::new();
            for word in args.split_whitespace() {
                for spec in expand_words(word, &env)? {
                    ports.extend(parse_port(&spec)?);
                }
            }
            insert_sorted(
                config,
                "ExposedPorts",
                ports.into_iter().map(|p| (p, Value::Object(Map::new()))),
            );
        }
        "LABEL" => {
            let labels = expand_pairs(args, "LABEL", &env)?;
            let labels = labels.into_iter().map(|(k, v)| (k, Value::String(v)));
            insert_sorted(config, "Labels", labels);
        }
        "ONBUILD" => {
            let (trigger, _) = split_first_word(args);
            match trigger.to_ascii_uppercase().as_str() {
                "" => return Err("ONBUILD requires at least one argument".into()),
                "ONBUILD" => {
                    return Err("chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".into())
                }
                t @ ("FROM" | "MAINTAINER") => {
                    return Err(format!("{t} isn't allowed as an ONBUILD trigger"))
                }
                _ => {}
            }
            let mut triggers = match config.remove("OnBuild") {
                Some(Value::Array(a)) => a,
                _ => Vec::new(),
            };
            triggers.push(Value::String(args.to_string()));
            config.insert("OnBuild".into(), Value::Array(triggers));
        }
        "STOPSIGNAL" => {
            let signal = expand_word(one_arg(args, "STOPSIGNAL")?, &env)?;
            if !valid_signal(&signal) {
                return Err(format!(
                    "invalid signal: {signal:?} (want a Linux signal name or 1-64)"
                ));
            }
            config.insert("StopSignal".into(), Value::String(signal));
        }
        "USER" => {
            let user = expand_word(one_arg(args, "USER")?, &env)?;
            config.insert("User".into(), Value::String(user));
        }
        "WORKDIR" => {
            let requested = expand_word(one_arg(args, "WORKDIR")?, &env)?;
            if requested.is_empty() {
                return Err("WORKDIR expands to an empty path".into());
            }
            let current = config
                .get("WorkingDir")
                .and_then(Value::as_str)
                .unwrap_or("");
            let dir = if requested.starts_with('/') {
                clean_path(&requested)
            } else {
                clean_path(&format!("/{current}/{requested}"))
            };
            config.insert("WorkingDir".into(), Value::String(dir));
        }
        "VOLUME" => {
            let raw = match parse_json(args) {
                Some(Ok(list)) => list,
                Some(Err(e)) if e == NOT_STRINGS => return Err(e),
                _ => args.split_whitespace().map(str::to_string).collect(),
            };
            if raw.is_empty() {
                return Err("VOLUME requires at least one argument".into());
            }
            let mut volumes = Vec::new();
            for v in raw {
                let v = v.trim();
                let path = if v.is_empty() {
                    String::new()
                } else {
                    expand_word(v, &env)?
                };
                if path.is_empty() {
                    return Err("VOLUME specified can not be an empty string".into());
                }
                volumes.push((path, Value::Object(Map::new())));
            }
            insert_sorted(config, "Volumes", volumes);
        }
        _ => unreachable!("keyword checked against ALLOWED"),
    }
    Ok(())
}

fn one_arg<'a>(args: &'a str, name: &str) -> Result<&'a str, String> {
    if args.is_empty() {
        Err(format!("{name} requires exactly one argument"))
    } else {
        Ok(args)
    }
}

fn strings(list: Vec<String>) -> Value {
    Value::Array(list.into_iter().map(Value::String).collect())
}

/// The strings in the array at `key` (non-strings dropped; empty if not an array).
fn str_list(config: &Map<String, Value>, key: &str) -> Vec<String> {
    let items = config
        .get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten();
    items
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

/// Merges entries into the object at `key` (made if missing), then sorts its keys.
fn insert_sorted(
    config: &mut Map<String, Value>,
    key: &str,
    entries: impl IntoIterator<Item = (String, Value)>,
) {
    let mut map = match config.remove(key) {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    map.extend(entries);
    let mut all: Vec<(String, Value)> = map.into_iter().collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    config.insert(key.to_string(), Value::Object(all.into_iter().collect()));
}

/// `--name=value` words into (name, value), checked against the names `known`.
fn parse_flags(words: &[String], known: &[&str]) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    for word in words {
        let body = word.strip_prefix("--").unwrap_or(word);
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        if !known.contains(&name) {
            return Err(format!("unknown flag: {name}"));
        }
        if out.iter().any(|(n, _)| n == name) {
            return Err(format!("duplicate flag specified: {name}"));
        }
        let value = value.ok_or_else(|| format!("missing a value on flag: {name}"))?;
        out.push((name.to_string(), value.to_string()));
    }
    Ok(out)
}

/// `Some(Ok)` for a JSON array of strings, `Some(Err)` for text starting with `[` that is
/// not one, `None` otherwise.
fn parse_json(s: &str) -> Option<Result<Vec<String>, String>> {
    if !s.starts_with('[') {
        return None;
    }
    Some(match serde_json::from_str::<Vec<Value>>(s) {
        Ok(items) => items
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                _ => Err(NOT_STRINGS.to_string()),
            })
            .collect(),
        Err(e) => Err(e.to_string()),
    })
}

enum CmdLine {
    Exec(Vec<String>),
    Shell(String),
}

/// JSON form if the text is a JSON array of strings; shell form if it is not JSON at all.
fn parse_maybe_json(s: &str) -> Result<CmdLine, String> {
    match parse_json(s) {
        Some(Ok(list)) => Ok(CmdLine::Exec(list)),
        Some(Err(e)) if e == NOT_STRINGS => Err(e),
        _ => Ok(CmdLine::Shell(s.to_string())),
    }
}

/// Exec form as is; shell form behind the config's `Shell` (default `/bin/sh -c`).
fn resolve_cmd(config: &Map<String, Value>, line: CmdLine) -> Vec<String> {
    match line {
        CmdLine::Exec(list) => list,
        CmdLine::Shell(text) if text.is_empty() => Vec::new(),
        CmdLine::Shell(text) => {
            let mut cmd = str_list(config, "Shell");
            if cmd.is_empty() {
                cmd = vec!["/bin/sh".into(), "-c".into()];
            }
            cmd.push(text);
            cmd
        }
    }
}

fn healthcheck(args: &str, flags: &[(String, String)]) -> Result<Map<String, Value>, String> {
    let (typ, rest) = split_first_word(args);
    let mut health = Map::new();
    match typ.to_ascii_uppercase().as_str() {
        "" => return Err("HEALTHCHECK requires at least one argument".into()),
        "NONE" => {
            if !rest.is_empty() || !flags.is_empty() {
                return Err("HEALTHCHECK NONE takes no arguments".into());
            }
            health.insert("Test".into(), strings(vec!["NONE".into()]));
            return Ok(health);
        }
        "CMD" => {}
        other => return Err(format!("unknown type {other:?} in HEALTHCHECK (try CMD)")),
    }
    let test = match parse_maybe_json(rest)? {
        CmdLine::Exec(list) if !list.is_empty() => [vec!["CMD".to_string()], list].concat(),
        CmdLine::Shell(text) if !text.is_empty() => vec!["CMD-SHELL".into(), text],
        _ => return Err("missing command after HEALTHCHECK CMD".into()),
    };
    health.insert("Test".into(), strings(test));
    let flag = |name: &str| {
        flags
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    for (name, key) in [
        ("interval", "Interval"),
        ("timeout", "Timeout"),
        ("start-period", "StartPeriod"),
        ("start-interval", "StartInterval"),
    ] {
        let Some(text) = flag(name).filter(|t| !t.is_empty()) else {
            continue;
        };
        let nanos = parse_duration(text)?;
        if nanos != 0 && nanos < 1_000_000 {
            return Err(format!("--{name} cannot be less than 1ms"));
        }
        if nanos != 0 {
            health.insert(key.into(), nanos.into());
        }
    }
    if let Some(text) = flag("retries").filter(|t| !t.is_empty()) {
        let retries: i32 = text
            .parse()
            .map_err(|_| format!("invalid --retries value {text:?}"))?;
        if retries < 0 {
            return Err(format!("--retries cannot be negative ({retries})"));
        }
        if retries != 0 {
            health.insert("Retries".into(), retries.into());
        }
    }
    Ok(health)
}

/// A Go `time.ParseDuration` string (`1m30s`, `1.5h`, `500ms`, `0`) in nanoseconds.
fn parse_duration(text: &str) -> Result<i64, String> {
    let bad = |why: &str| format!("invalid duration {text:?}: {why}");
    let (negative, mut rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(bad("empty"));
    }
    let digits = |s: &str| s.bytes().take_while(u8::is_ascii_digit).count();
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let n = digits(rest);
        let (int_part, after) = rest.split_at(n);
        rest = after;
        let mut frac = "";
        if let Some(after_dot) = rest.strip_prefix('.') {
            let f = digits(after_dot);
            (frac, rest) = after_dot.split_at(f);
        }
        if int_part.is_empty() && frac.is_empty() {
            return Err(bad("expected a number"));
        }
        let unit_len = rest
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (unit, after) = rest.split_at(unit_len);
        rest = after;
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(bad("missing unit")),
            _ => return Err(bad(&format!("unknown unit {unit:?}"))),
        };
        if int_part.len() > 20 {
            return Err(bad("out of range"));
        }
        total += int_part.parse::<u128>().unwrap_or(0) * scale;
        let frac = &frac[..frac.len().min(18)];
        if !frac.is_empty() {
            total += frac.parse::<u128>().unwrap_or(0) * scale / 10u128.pow(frac.len() as u32);
        }
        if total > i64::MAX as u128 {
            return Err(bad("out of range"));
        }
    }
    let total = total as i64;
    Ok(if negative { -total } else { total })
}

/// `port[-port][/proto]` as the ExposedPorts keys it stands for.
fn parse_port(spec: &str) -> Result<Vec<String>, String> {
    if spec.contains(':') {
        return Err(format!(
            "EXPOSE takes container ports only, not mappings: {spec:?}"
        ));
    }
    let mut parts = spec.split('/');
    let range = parts.next().unwrap_or("");
    let proto = parts
        .next()
        .filter(|p| !p.is_empty())
        .unwrap_or("tcp")
        .to_ascii_lowercase();
    if parts.next().is_some() {
        return Err(format!("invalid port spec: {spec:?}"));
    }
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!(
            "invalid protocol in {spec:?} (want tcp, udp or sctp)"
        ));
    }
    let port = |p: &str| -> Result<u16, String> {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("invalid port {p:?} in {spec:?}"));
        }
        p.parse()
            .map_err(|_| format!("port {p} out of range in {spec:?}"))
    };
    let (start, end) = match range.split_once('-') {
        Some((a, b)) => (port(a)?, port(b)?),
        None => (port(range)?, port(range)?),
    };
    if end < start {
        return Err(format!("invalid port range {range:?}"));
    }
    Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

fn valid_signal(signal: &str) -> bool {
    const NAMES: &str =
        "ABRT ALRM BUS CHLD CLD CONT FPE HUP ILL INT IO IOT KILL PIPE POLL PROF PWR QUIT \
        SEGV STKFLT STOP SYS TERM TRAP TSTP TTIN TTOU UNUSED URG USR1 USR2 VTALRM WINCH XCPU XFSZ";
    if !signal.is_empty() && signal.bytes().all(|b| b.is_ascii_digit()) {
        return signal.parse::<u8>().is_ok_and(|n| (1..=64).contains(&n));
    }
    let upper = signal.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let offset_ok = |n: &str, max: u8| n.parse::<u8>().is_ok_and(|n| (1..=max).contains(&n));
    NAMES.split_whitespace().any(|n| n == name)
        || name == "RTMIN"
        || name == "RTMAX"
        || name
            .strip_prefix("RTMIN+")
            .is_some_and(|n| offset_ok(n, 15))
        || name
            .strip_prefix("RTMAX-")
            .is_some_and(|n| offset_ok(n, 14))
}

/// Go's `path.Clean` for an absolute path.
fn clean_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}
