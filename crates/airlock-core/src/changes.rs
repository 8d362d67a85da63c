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

/// Splits at the first whitespace: (word, rest with leading whitespace removed).
fn split_first_word(s: &str) -> (&str, &str) {
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], s[i..].trim_start()),
        None => (s, ""),
    }
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

/// Peels leading `--flag[=value]` words off an instruction's arguments (quotes removed).
fn extract_flags(line: &str) -> (Vec<String>, &str) {
    let mut flags = Vec::new();
    let mut it = line.char_indices().peekable();
    loop {
        while it.next_if(|&(_, c)| c.is_whitespace()).is_some() {}
        let Some(&(start, _)) = it.peek() else {
            return (flags, "");
        };
        if !line[start..].starts_with("--") {
            return (flags, &line[start..]);
        }
        let mut word = String::new();
        let mut quote = None;
        while let Some((_, c)) = it.next_if(|&(_, c)| quote.is_some() || !c.is_whitespace()) {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (None, '\'' | '"') => quote = Some(c),
                (_, '\\') => word.extend(it.next().map(|(_, c)| c)),
                (_, c) => word.push(c),
            }
        }
        if word == "--" {
            return (flags, it.peek().map_or("", |&(i, _)| &line[i..]));
        }
        flags.push(word);
    }
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

/// Splits `rest` into words at unquoted whitespace, keeping quotes and escapes (buildkit's
/// `parseWords`).
fn parse_words(rest: &str) -> Vec<String> {
    let mut words = Vec::new();
    let (mut word, mut in_word, mut blank_ok, mut quote) = (String::new(), false, false, None);
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            None if c.is_whitespace() => {
                if in_word && (blank_ok || !word.is_empty()) {
                    words.push(std::mem::take(&mut word));
                }
                (in_word, blank_ok) = (false, false);
                continue;
            }
            None => {
                if c == '\'' || c == '"' {
                    (quote, blank_ok) = (Some(c), true);
                }
                if c == '\\' {
                    let Some(next) = chars.next() else { break };
                    word.push(c);
                    word.push(next);
                } else {
                    word.push(c);
                }
            }
            Some(q) => {
                if c == q {
                    quote = None;
                }
                if c == '\\' && q != '\'' {
                    let Some(next) = chars.next() else { break };
                    word.push(c);
                    word.push(next);
                } else {
                    word.push(c);
                }
            }
        }
        in_word = true;
    }
    if in_word && (blank_ok || !word.is_empty()) {
        words.push(word);
    }
    words
}

/// ENV/LABEL arguments as expanded (key, value) pairs, all expanded with the same `env`.
fn expand_pairs(args: &str, cmd: &str, env: &[String]) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    for (k, v) in parse_name_val(args, cmd, cmd == "ENV")? {
        let key = expand_word(&k, env)?;
        if key.is_empty() {
            return Err(format!("{cmd} names can not be blank"));
        }
        pairs.push((key, expand_word(&v, env)?));
    }
    Ok(pairs)
}

/// ENV/LABEL arguments as raw (key, value) pairs: `k=v ...`, or (when `legacy`) `k value`.
fn parse_name_val(rest: &str, cmd: &str, legacy: bool) -> Result<Vec<(String, String)>, String> {
    let words = parse_words(rest);
    let Some(first) = words.first() else {
        return Err(format!("{cmd} requires at least one argument"));
    };
    if !first.contains('=') {
        if !legacy {
            return Err(format!("{cmd} needs key=value (got {first:?})"));
        }
        let (key, value) = split_first_word(rest);
        if value.is_empty() {
            return Err(format!("{cmd} must have two arguments (or use key=value)"));
        }
        return Ok(vec![(key.to_string(), value.to_string())]);
    }
    words
        .iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) => Ok((k.to_string(), v.to_string())),
            None => Err(format!("{cmd} needs key=value (got {w:?})")),
        })
        .collect()
}

/// One word after quote removal and `$VAR` expansion (buildkit `ProcessWord`).
fn expand_word(word: &str, env: &[String]) -> Result<String, String> {
    let mut out = Words {
        split: false,
        ..Words::default()
    };
    Lexer {
        chars: word.chars().collect(),
        pos: 0,
        env,
    }
    .run(None, &mut out)?;
    Ok(out.cur)
}

/// Words after expansion, split at unquoted whitespace, also inside values (`ProcessWords`).
fn expand_words(word: &str, env: &[String]) -> Result<Vec<String>, String> {
    let mut out = Words {
        split: true,
        ..Words::default()
    };
    Lexer {
        chars: word.chars().collect(),
        pos: 0,
        env,
    }
    .run(None, &mut out)?;
    out.flush();
    Ok(out.words)
}

#[derive(Default)]
struct Words {
    split: bool,
    words: Vec<String>,
    cur: String,
}

impl Words {
    /// An unquoted character: whitespace ends the word in splitting mode.
    fn plain(&mut self, c: char) {
        if self.split && c.is_whitespace() {
            self.flush();
        } else {
            self.cur.push(c);
        }
    }
    fn flush(&mut self) {
        if !self.cur.is_empty() {
            self.words.push(std::mem::take(&mut self.cur));
        }
    }
}

struct Lexer<'a> {
    chars: Vec<char>,
    pos: usize,
    env: &'a [String],
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }
    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        self.pos += usize::from(c.is_some());
        c
    }
    fn getenv(&self, name: &str) -> Option<&str> {
        self.env.iter().rev().find_map(|e| match e.split_once('=') {
            Some((k, v)) if k == name => Some(v),
            None if e == name => Some(""),
            _ => None,
        })
    }

    /// Processes up to `stop` (consumed) or the end.
    fn run(&mut self, stop: Option<char>, out: &mut Words) -> Result<(), String> {
        while let Some(c) = self.peek() {
            if Some(c) == stop {
                self.pos += 1;
                return Ok(());
            }
            match c {
                '\'' => {
                    self.pos += 1;
                    loop {
                        match self.next() {
                            None => return Err("unexpected end of statement while looking for matching single-quote".into()),
                            Some('\'') => break,
                            Some(c) => out.cur.push(c),
                        }
                    }
                }
                '"' => {
                    self.pos += 1;
                    let text = self.double_quoted()?;
                    out.cur.push_str(&text);
                }
                '$' => {
                    let value = self.dollar()?;
                    value.chars().for_each(|c| out.plain(c));
                }
                '\\' => {
                    self.pos += 1;
                    match self.next() {
                        Some(c) => out.cur.push(c),
                        None => break,
                    }
                }
                c => {
                    self.pos += 1;
                    out.plain(c);
                }
            }
        }
        match stop {
            Some(s) => Err(format!(
                "unexpected end of statement while looking for matching {s}"
            )),
            None => Ok(()),
        }
    }

    fn double_quoted(&mut self) -> Result<String, String> {
        let mut text = String::new();
        loop {
            match self.peek() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching double-quote"
                            .into(),
                    )
                }
                Some('"') => {
                    self.pos += 1;
                    return Ok(text);
                }
                Some('$') => text.push_str(&self.dollar()?),
                Some(c) => {
                    self.pos += 1;
                    if c == '\\' && matches!(self.peek(), Some('"' | '$' | '\\')) {
                        text.extend(self.next());
                    } else {
                        text.push(c);
                    }
                }
            }
        }
    }

    /// `$NAME`, `${NAME}`, `${NAME:-word}`, `${NAME:+word}`, `${NAME:?word}` (also without `:`).
    fn dollar(&mut self) -> Result<String, String> {
        self.pos += 1;
        if self.peek() != Some('{') {
            let name = self.name();
            return Ok(if name.is_empty() {
                "$".into()
            } else {
                self.getenv(&name).unwrap_or("").into()
            });
        }
        self.pos += 1;
        match self.peek() {
            None => return Err("syntax error: missing '}'".into()),
            Some('{' | '}' | ':') => return Err("syntax error: bad substitution".into()),
            _ => {}
        }
        let name = self.name();
        let value = self.getenv(&name).map(str::to_string);
        let (colon, modifier) = match self.next() {
            Some('}') => return Ok(value.unwrap_or_default()),
            Some(':') => (true, self.next()),
            m => (false, m),
        };
        let Some(modifier @ ('-' | '+' | '?')) = modifier else {
            return Err(match modifier {
                None => "syntax error: missing '}'".into(),
                Some(m) => format!("unsupported modifier ({m}) in substitution"),
            });
        };
        let mut word = Words::default();
        self.run(Some('}'), &mut word)?;
        let word = word.cur;
        // With ':' an empty value counts as unset.
        let set = value.as_ref().is_some_and(|v| !colon || !v.is_empty());
        Ok(match (modifier, set) {
            ('-', true) | ('?', true) => value.unwrap_or_default(),
            ('-', false) | ('+', true) => word,
            ('?', false) if word.is_empty() => {
                return Err(format!("{name}: is not allowed to be unset"))
            }
            ('?', false) => return Err(format!("{name}: {word}")),
            _ => String::new(),
        })
    }

    /// A variable name: letters/digits/_; a run of digits; or one special character.
    fn name(&mut self) -> String {
        let mut name = String::new();
        match self.peek() {
            Some(c) if c.is_ascii_digit() => {
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    name.push(d);
                    self.pos += 1;
                }
            }
            Some(c @ ('@' | '*' | '#' | '?' | '-' | '$' | '!')) => {
                self.pos += 1;
                name.push(c);
            }
            _ => {
                while let Some(c) = self.peek().filter(|c| c.is_alphanumeric() || *c == '_') {
                    name.push(c);
                    self.pos += 1;
                }
            }
        }
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn apply(base: Value, changes: &[&str]) -> Result<Value, ChangeError> {
        let Value::Object(mut config) = base else {
            panic!("base must be an object")
        };
        let changes: Vec<String> = changes.iter().map(|c| c.to_string()).collect();
        apply_changes(&mut config, &changes)?;
        Ok(Value::Object(config))
    }
    fn ok(changes: &[&str]) -> Value {
        apply(json!({}), changes).unwrap()
    }
    fn err(changes: &[&str]) -> String {
        apply(json!({}), changes).unwrap_err().to_string()
    }

    #[test]
    fn keywords() {
        assert_eq!(
            ok(&["cmd echo hi"])["Cmd"],
            json!(["/bin/sh", "-c", "echo hi"])
        );
        let e = err(&["RUN make"]);
        assert!(
            e.starts_with("bad change 'RUN make': RUN is not allowed"),
            "{e}"
        );
        assert!(e.contains("allowed: CMD, ENTRYPOINT"), "{e}");
        assert!(err(&["copy a b"]).contains("COPY is not allowed"));
        assert!(err(&["FROM x"]).contains("FROM is not allowed"));
        assert!(err(&["  "]).contains("empty instruction"));
        assert!(err(&["CMD [\"a\"]", "bogus"]).contains("BOGUS is not allowed"));
        assert!(err(&["CMD --foo bar"]).contains("unknown flag: foo"));
    }

    #[test]
    fn cmd_and_entrypoint() {
        let c = ok(&[
            r#"CMD ["nginx", "-g", "daemon off;"]"#,
            "ENTRYPOINT  /entry.sh  $HOME ",
        ]);
        assert_eq!(c["Cmd"], json!(["nginx", "-g", "daemon off;"]));
        assert_eq!(
            c["Entrypoint"],
            json!(["/bin/sh", "-c", "/entry.sh  $HOME"])
        );
        // Not JSON: shell form. JSON but not strings: error.
        assert_eq!(
            ok(&["CMD [ \"a\""])["Cmd"],
            json!(["/bin/sh", "-c", "[ \"a\""])
        );
        assert_eq!(
            ok(&["CMD [a, b]"])["Cmd"],
            json!(["/bin/sh", "-c", "[a, b]"])
        );
        assert!(err(&["ENTRYPOINT [1, 2]"]).contains("strings only"));
        assert_eq!(ok(&["CMD []"])["Cmd"], json!([]));
        assert_eq!(ok(&["ENTRYPOINT"])["Entrypoint"], json!([]));
        // ENTRYPOINT leaves Cmd alone; a config Shell is honoured.
        let c = apply(
            json!({"Cmd": ["x"], "Shell": ["/bin/bash", "-c"]}),
            &["ENTRYPOINT run"],
        )
        .unwrap();
        assert_eq!(c["Cmd"], json!(["x"]));
        assert_eq!(c["Entrypoint"], json!(["/bin/bash", "-c", "run"]));
    }

    #[test]
    fn env_forms() {
        let c = ok(&[
            r#"ENV A=1 B="two words" C='$A' D=x\ y E="q\"q""#,
            "ENV LEGACY some value  here",
        ]);
        assert_eq!(
            c["Env"],
            json!([
                "A=1",
                "B=two words",
                "C=$A",
                "D=x y",
                "E=q\"q",
                "LEGACY=some value  here"
            ])
        );
        let c = apply(
            json!({"Env": ["PATH=/bin", "X=1"]}),
            &["ENV PATH=/usr/bin:$PATH"],
        )
        .unwrap();
        assert_eq!(c["Env"], json!(["PATH=/usr/bin:/bin", "X=1"]));
        assert!(err(&["ENV"]).contains("at least one argument"));
        assert!(err(&["ENV A"]).contains("two arguments"));
        assert!(err(&["ENV =x"]).contains("names can not be blank"));
        assert!(err(&["ENV A=1 B"]).contains("needs key=value"));
        assert!(err(&["ENV A=\"open"]).contains("double-quote"));
        assert!(err(&["ENV A='open"]).contains("single-quote"));
    }

    #[test]
    fn expansion() {
        let env = [
            "A=1".to_string(),
            "EMPTY=".to_string(),
            "SP=a b".to_string(),
        ];
        let x = |w: &str| expand_word(w, &env).unwrap();
        assert_eq!(x("$A-${A}-$UNSET-${UNSET}"), "1-1--");
        assert_eq!(
            x("${UNSET:-def}|${A:-def}|${EMPTY:-def}|${EMPTY-def}"),
            "def|1|def|"
        );
        assert_eq!(
            x("${A:+alt}|${UNSET:+alt}|${EMPTY:+alt}|${EMPTY+alt}"),
            "alt|||alt"
        );
        assert_eq!(x("${UNSET:-$A$A}|${UNSET:-\"q }\"}"), "11|q }");
        assert_eq!(x(r"\$A|'$A'|\\|a\b"), r"$A|$A|\|ab");
        assert_eq!(x(r#""$A \$A \x '$A'""#), r"1 $A \x '1'");
        assert_eq!(x("$ $1 a$"), "$  a$");
        assert_eq!(x("${A}b${SP}"), "1ba b");
        for bad in ["${A", "${}", "${A/x/y}", "${UNSET:?boom}", "${A:-x"] {
            assert!(expand_word(bad, &env).is_err(), "{bad}");
        }
        assert_eq!(
            expand_words(r#"$SP "x y" ''"#, &env).unwrap(),
            ["a", "b", "x y"]
        );
    }

    #[test]
    fn later_instructions_see_earlier_env() {
        let c = ok(&[
            "ENV BASE=/srv PORT=8080",
            "ENV APP=$BASE/app LATE=$APP",
            "WORKDIR $APP",
            "EXPOSE ${PORT}",
            "USER ${USERNAME:-nobody}",
            "LABEL dir=$APP quoted='$APP'",
            "VOLUME $BASE/data",
            "STOPSIGNAL ${SIG:-SIGQUIT}",
            "CMD echo $APP",
        ]);
        // Within one ENV the pairs see the env from before it (LATE is empty), as Docker.
        assert_eq!(
            c["Env"],
            json!(["BASE=/srv", "PORT=8080", "APP=/srv/app", "LATE="])
        );
        assert_eq!(c["WorkingDir"], "/srv/app");
        assert_eq!(c["ExposedPorts"], json!({"8080/tcp": {}}));
        assert_eq!(c["User"], "nobody");
        assert_eq!(c["Labels"], json!({"dir": "/srv/app", "quoted": "$APP"}));
        assert_eq!(c["Volumes"], json!({"/srv/data": {}}));
        assert_eq!(c["StopSignal"], "SIGQUIT");
        assert_eq!(c["Cmd"], json!(["/bin/sh", "-c", "echo $APP"]));
    }

    #[test]
    fn expose() {
        let c = ok(&[
            "EXPOSE 80 443/tcp 53/UDP 8000-8002 9/sctp 7/",
            "ENV P=\"1 2\"",
            "EXPOSE $P",
        ]);
        let keys: Vec<&String> = c["ExposedPorts"].as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "1/tcp", "2/tcp", "443/tcp", "53/udp", "7/tcp", "80/tcp", "8000/tcp", "8001/tcp",
                "8002/tcp", "9/sctp"
            ]
        );
        let c = apply(json!({"ExposedPorts": {"22/tcp": {}}}), &["EXPOSE 22 23"]).unwrap();
        assert_eq!(c["ExposedPorts"], json!({"22/tcp": {}, "23/tcp": {}}));
        for bad in [
            "EXPOSE",
            "EXPOSE 80/icmp",
            "EXPOSE http",
            "EXPOSE 70000",
            "EXPOSE 9-8",
            "EXPOSE 1:80",
            "EXPOSE 80/tcp/x",
        ] {
            assert!(apply(json!({}), &[bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn label() {
        let c = apply(
            json!({"Labels": {"z": "old", "a": "1"}}),
            &[r#"LABEL z=new "my key"="a b" k=v\ w e="""#],
        )
        .unwrap();
        assert_eq!(
            c["Labels"],
            json!({"a": "1", "e": "", "k": "v w", "my key": "a b", "z": "new"})
        );
        assert_eq!(c["Labels"].as_object().unwrap().keys().next().unwrap(), "a");
        assert!(err(&["LABEL k v"]).contains("LABEL needs key=value"));
        assert!(err(&["LABEL"]).contains("at least one argument"));
        assert!(err(&["LABEL =v"]).contains("blank"));
    }

    #[test]
    fn onbuild() {
        let c = ok(&["ONBUILD RUN make  all", "onbuild COPY . /src"]);
        assert_eq!(c["OnBuild"], json!(["RUN make  all", "COPY . /src"]));
        assert!(err(&["ONBUILD ONBUILD RUN x"]).contains("chaining ONBUILD"));
        assert!(err(&["ONBUILD FROM x"]).contains("FROM isn't allowed"));
        assert!(err(&["ONBUILD maintainer me"]).contains("MAINTAINER isn't allowed"));
        assert!(err(&["ONBUILD"]).contains("at least one argument"));
    }

    #[test]
    fn stopsignal() {
        for good in [
            "SIGTERM",
            "term",
            "SIGRTMIN+3",
            "RTMAX-1",
            "9",
            "64",
            "sigkill",
        ] {
            assert_eq!(ok(&[&format!("STOPSIGNAL {good}")])["StopSignal"], good);
        }
        for bad in [
            "STOPSIGNAL SIGFOO",
            "STOPSIGNAL 0",
            "STOPSIGNAL 65",
            "STOPSIGNAL -1",
            "STOPSIGNAL",
            "STOPSIGNAL RTMIN+16",
        ] {
            assert!(
                err(&[bad]).contains(if bad == "STOPSIGNAL" {
                    "exactly one"
                } else {
                    "invalid signal"
                }),
                "{bad}"
            );
        }
    }

    #[test]
    fn user_and_workdir() {
        assert_eq!(ok(&["USER app:app"])["User"], "app:app");
        assert!(err(&["USER"]).contains("exactly one argument"));
        assert_eq!(ok(&["WORKDIR rel"])["WorkingDir"], "/rel");
        assert_eq!(ok(&["WORKDIR /a/./b/../c/"])["WorkingDir"], "/a/c");
        assert_eq!(
            ok(&["WORKDIR /a", "WORKDIR b", "WORKDIR ../../../c"])["WorkingDir"],
            "/c"
        );
        let c = apply(json!({"WorkingDir": "/srv"}), &["WORKDIR x//y"]).unwrap();
        assert_eq!(c["WorkingDir"], "/srv/x/y");
        assert!(err(&["WORKDIR"]).contains("exactly one argument"));
        assert!(err(&["WORKDIR $UNSET"]).contains("empty"));
    }

    #[test]
    fn volume() {
        let c = ok(&[
            r#"VOLUME ["/data", "/logs"]"#,
            "VOLUME /a  /b",
            "VOLUME [/x",
        ]);
        assert_eq!(
            c["Volumes"],
            json!({"/a": {}, "/b": {}, "/data": {}, "/logs": {}, "[/x": {}})
        );
        assert!(err(&["VOLUME []"]).contains("at least one argument"));
        assert!(err(&["VOLUME"]).contains("at least one argument"));
        assert!(err(&[r#"VOLUME [" "]"#]).contains("empty string"));
        assert!(err(&["VOLUME [1]"]).contains("strings only"));
    }

    #[test]
    fn healthcheck_forms() {
        assert_eq!(
            ok(&["HEALTHCHECK none"])["Healthcheck"],
            json!({"Test": ["NONE"]})
        );
        let c = ok(&["HEALTHCHECK --interval=1m30s --timeout=500ms --start-period=0 --start-interval=1.5s --retries=3 CMD curl -f http://x/ || exit 1"]);
        assert_eq!(
            c["Healthcheck"],
            json!({"Test": ["CMD-SHELL", "curl -f http://x/ || exit 1"], "Interval": 90_000_000_000i64,
                   "Timeout": 500_000_000, "StartInterval": 1_500_000_000, "Retries": 3})
        );
        let c = ok(&[r#"HEALTHCHECK cmd ["/bin/check", "--deep"]"#]);
        assert_eq!(
            c["Healthcheck"],
            json!({"Test": ["CMD", "/bin/check", "--deep"]})
        );
        for (bad, why) in [
            ("HEALTHCHECK", "at least one argument"),
            ("HEALTHCHECK CMD", "missing command"),
            ("HEALTHCHECK CMD []", "missing command"),
            ("HEALTHCHECK NONE x", "no arguments"),
            ("HEALTHCHECK --interval=5s NONE", "no arguments"),
            ("HEALTHCHECK --foo=1 CMD x", "unknown flag: foo"),
            ("HEALTHCHECK --interval 5s CMD x", "missing a value"),
            (
                "HEALTHCHECK --retries=1 --retries=2 CMD x",
                "duplicate flag",
            ),
            ("HEALTHCHECK --retries=-1 CMD x", "negative"),
            ("HEALTHCHECK --retries=x CMD x", "--retries"),
            ("HEALTHCHECK --interval=10 CMD x", "missing unit"),
            ("HEALTHCHECK --interval=10us CMD x", "less than 1ms"),
            ("HEALTHCHECK CHECK x", "try CMD"),
        ] {
            let e = err(&[bad]);
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("1h2m3s4ms5us6ns").unwrap(),
            3_723_004_005_006
        );
        assert_eq!(parse_duration("1.5m").unwrap(), 90_000_000_000);
        assert_eq!(parse_duration(".5s").unwrap(), 500_000_000);
        assert_eq!(parse_duration("-2s").unwrap(), -2_000_000_000);
        assert_eq!(parse_duration("0").unwrap(), 0);
        for bad in ["", "s", "1x", "1", ".s", "99999999999999999999h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn flags_and_words() {
        let (flags, rest) = extract_flags(r#"--a=1 --b="x y" -- --not-a-flag"#);
        assert_eq!(flags, ["--a=1", "--b=x y"]);
        assert_eq!(rest, " --not-a-flag");
        assert_eq!(extract_flags("CMD --x").1, "CMD --x");
        assert_eq!(
            parse_words(r#"a="b c" d\ e  'f g'"#),
            [r#"a="b c""#, r"d\ e", "'f g'"]
        );
    }
}
