//! The functions a template may call (Go's built-ins and the docker CLI's own: `json`,
//! `join`, `split`, `lower`, `upper`, `title`, `pad`, `truncate`) and how values print,
//! as Go's `fmt` prints them (`[a b]`, `map[k:v]`, `<no value>`).

use serde_json::Value;

use super::TemplateError;

/// Whether a row is being printed, or a table's header (where docker's functions leave
/// the header's words as they are, so `{{lower .Tag}}` still heads its column `TAG`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Row,
    Header,
}

/// The one key of the value standing for a typed Go nil: a list or map field a document
/// leaves out, which prints `[]` or `map[]`, is false and empty, and is `null` in JSON.
const NIL_KIND: &str = "\u{0}nil";

/// A typed nil of `kind` (`list` or `map`).
pub fn typed_nil(kind: &str) -> Value {
    let mut m = serde_json::Map::new();
    m.insert(NIL_KIND.into(), Value::from(kind));
    Value::Object(m)
}

/// Which typed nil `v` is, if it is one.
pub fn nil_kind(v: &Value) -> Option<&str> {
    v.as_object()
        .filter(|m| m.len() == 1)?
        .get(NIL_KIND)?
        .as_str()
}

const FUNCTIONS: &[&str] = &[
    "and", "eq", "ge", "gt", "index", "join", "json", "le", "len", "lower", "lt", "ne", "not",
    "or", "pad", "print", "printf", "println", "slice", "split", "title", "truncate", "upper",
];

/// Call the function `name`.
pub fn call(name: &str, args: Vec<Value>, mode: Mode) -> Result<Value, TemplateError> {
    if !FUNCTIONS.contains(&name) {
        return Err(TemplateError::run(format!(
            "there is no function {name} (there are {})",
            FUNCTIONS.join(", ")
        )));
    }
    let header_word = [
        "json", "join", "split", "lower", "upper", "title", "pad", "truncate",
    ];
    if mode == Mode::Header && header_word.contains(&name) {
        return Ok(args.into_iter().next().unwrap_or(Value::Null));
    }
    let want = |n: usize| -> Result<(), TemplateError> {
        if args.len() == n {
            Ok(())
        } else {
            Err(TemplateError::run(format!(
                "{name} takes {n} argument(s), not {}",
                args.len()
            )))
        }
    };
    let text = |v: &Value| print(v, true);
    Ok(match name {
        "json" => {
            want(1)?;
            Value::from(go_json(&args[0], false))
        }
        "lower" => {
            want(1)?;
            Value::from(text(&args[0]).to_lowercase())
        }
        "upper" => {
            want(1)?;
            Value::from(text(&args[0]).to_uppercase())
        }
        "title" => {
            want(1)?;
            Value::from(title(&text(&args[0])))
        }
        "split" => {
            want(2)?;
            let (s, sep) = (text(&args[0]), text(&args[1]));
            let parts: Vec<Value> = if sep.is_empty() {
                s.chars().map(|c| Value::from(c.to_string())).collect()
            } else {
                s.split(sep.as_str()).map(Value::from).collect()
            };
            Value::Array(parts)
        }
        "join" => {
            want(2)?;
            let items = match &args[0] {
                Value::Array(a) => a.iter().map(|v| print(v, false)).collect::<Vec<_>>(),
                Value::Null => Vec::new(),
                other => {
                    return Err(TemplateError::run(format!(
                        "join takes a list, not {}",
                        text(other)
                    )))
                }
            };
            Value::from(items.join(&text(&args[1])))
        }
        "truncate" => {
            want(2)?;
            let n = int(&args[1], name)?;
            Value::from(
                text(&args[0])
                    .chars()
                    .take(n.max(0) as usize)
                    .collect::<String>(),
            )
        }
        "pad" => {
            want(3)?;
            let (l, r) = (int(&args[1], name)?, int(&args[2], name)?);
            Value::from(format!(
                "{}{}{}",
                " ".repeat(l.max(0) as usize),
                text(&args[0]),
                " ".repeat(r.max(0) as usize)
            ))
        }
        "print" => Value::from(sprint(&args)),
        "println" => {
            let words: Vec<String> = args.iter().map(text).collect();
            Value::from(format!("{}\n", words.join(" ")))
        }
        "printf" => {
            let Some((f, rest)) = args.split_first() else {
                return Err(TemplateError::run("printf takes a format".into()));
            };
            Value::from(printf(&text(f), rest))
        }
        "index" => {
            let Some((first, keys)) = args.split_first() else {
                return Err(TemplateError::run("index takes a value".into()));
            };
            let mut v = first.clone();
            for k in keys {
                v = index(v, k)?;
            }
            v
        }
        "len" => {
            want(1)?;
            Value::from(match &args[0] {
                v if nil_kind(v).is_some() => 0,
                Value::String(s) => s.len(),
                Value::Array(a) => a.len(),
                Value::Object(m) => m.len(),
                Value::Null => 0,
                other => {
                    return Err(TemplateError::run(format!(
                        "len of {} (it has none)",
                        text(other)
                    )))
                }
            })
        }
        "slice" => {
            let Some((first, bounds)) = args.split_first() else {
                return Err(TemplateError::run("slice takes a value".into()));
            };
            slice(first, bounds)?
        }
        "not" => {
            want(1)?;
            Value::from(!truth(&args[0]))
        }
        "and" => args
            .iter()
            .find(|v| !truth(v))
            .or(args.last())
            .cloned()
            .unwrap_or(Value::Null),
        "or" => args
            .iter()
            .find(|v| truth(v))
            .or(args.last())
            .cloned()
            .unwrap_or(Value::Null),
        "eq" => {
            let Some((first, rest)) = args.split_first() else {
                return Err(TemplateError::run("eq takes two values".into()));
            };
            Value::from(rest.iter().any(|v| same(first, v)))
        }
        "ne" => {
            want(2)?;
            Value::from(!same(&args[0], &args[1]))
        }
        _ => {
            want(2)?;
            let ord = compare(&args[0], &args[1])
                .ok_or_else(|| TemplateError::run(format!("{name} compares numbers or strings")))?;
            use std::cmp::Ordering::*;
            Value::from(match name {
                "lt" => ord == Less,
                "le" => ord != Greater,
                "gt" => ord == Greater,
                _ => ord != Less,
            })
        }
    })
}

/// JSON as Go's `encoding/json` writes it: compact; with `escape_html`, `<`, `>`, `&`,
/// U+2028 and U+2029 escaped. The docker CLI's `json` turns that escaping off, but its
/// listing records (`{{json .}}` in `images`) marshal themselves with it on.
pub fn go_json(v: &Value, escape_html: bool) -> String {
    if nil_kind(v).is_some() {
        return "null".into();
    }
    let text = serde_json::to_string(v).unwrap_or_default();
    if !escape_html {
        return text;
    }
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

fn int(v: &Value, name: &str) -> Result<i64, TemplateError> {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .ok_or_else(|| {
            TemplateError::run(format!(
                "{name} takes a whole number, not {}",
                print(v, true)
            ))
        })
}

/// Go's `strings.Title`: each word's first letter upper-cased.
fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if start && c.is_alphanumeric() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = !(c.is_alphanumeric() || c == '_' || c == '\'');
    }
    out
}

fn index(v: Value, key: &Value) -> Result<Value, TemplateError> {
    if nil_kind(&v).is_some() {
        return Ok(Value::from(""));
    }
    Ok(match (v, key) {
        (Value::Array(a), k) => {
            let i = k
                .as_u64()
                .ok_or_else(|| TemplateError::run("a list's index is a number".into()))?;
            a.get(i as usize).cloned().ok_or_else(|| {
                TemplateError::run(format!("index {i} out of range (the list has {})", a.len()))
            })?
        }
        (Value::Object(mut m), k) => {
            let key = print(k, true);
            // A map of strings (labels, annotations) gives "" for a missing key, as the
            // docker CLI's typed `map[string]string` does.
            let strings = m.values().all(Value::is_string);
            match m.remove(&key) {
                Some(v) => v,
                None if strings => Value::from(""),
                None => Value::Null,
            }
        }
        // A nil map (an image without labels) indexes as empty, as in the docker CLI.
        (Value::Null, _) => Value::from(""),
        (other, _) => {
            return Err(TemplateError::run(format!(
                "can't index {}",
                print(&other, true)
            )))
        }
    })
}

fn slice(v: &Value, bounds: &[Value]) -> Result<Value, TemplateError> {
    let n = match v {
        Value::String(s) => s.len(),
        Value::Array(a) => a.len(),
        _ => return Err(TemplateError::run("slice takes a string or a list".into())),
    };
    let get = |i: usize, default: usize| -> Result<usize, TemplateError> {
        match bounds.get(i) {
            None => Ok(default),
            Some(b) => b
                .as_u64()
                .map(|x| x as usize)
                .filter(|x| *x <= n)
                .ok_or_else(|| {
                    TemplateError::run(format!("slice bound out of range (length {n})"))
                }),
        }
    };
    let (from, to) = (get(0, 0)?, get(1, n)?);
    if from > to {
        return Err(TemplateError::run("slice bounds are reversed".into()));
    }
    Ok(match v {
        Value::String(s) => Value::from(s.get(from..to).unwrap_or("")),
        Value::Array(a) => Value::Array(a[from..to].to_vec()),
        _ => Value::Null,
    })
}

fn same(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn compare(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// Go's `fmt.Sprint`: a space between operands when neither is a string.
fn sprint(args: &[Value]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 && !a.is_string() && !args[i - 1].is_string() {
            out.push(' ');
        }
        out.push_str(&print(a, true));
    }
    out
}

/// Go's `fmt.Sprintf` for the verbs scripts use: `%s %v %d %q %x %f %t %%`, with `-`,
/// `0`, a width and a precision.
fn printf(format: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut args = args.iter();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let (mut left, mut zero, mut width, mut prec) =
            (false, false, String::new(), None::<String>);
        while let Some(&f) = chars.peek() {
            match f {
                '-' => left = true,
                '0' if width.is_empty() && prec.is_none() => zero = true,
                d if d.is_ascii_digit() => match &mut prec {
                    Some(p) => p.push(d),
                    None => width.push(d),
                },
                '.' => prec = Some(String::new()),
                _ => break,
            }
            chars.next();
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.next() else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        let prec: Option<usize> = prec.map(|p| p.parse().unwrap_or(0));
        let mut s = match verb {
            'q' => serde_json::to_string(&print(arg, true)).unwrap_or_default(),
            'x' => match arg {
                Value::Number(n) => format!("{:x}", n.as_i64().unwrap_or(0)),
                other => print(other, true)
                    .bytes()
                    .map(|b| format!("{b:02x}"))
                    .collect(),
            },
            'f' => format!("{:.*}", prec.unwrap_or(6), arg.as_f64().unwrap_or(0.0)),
            'd' if !arg.is_number() => format!("%!d({})", print(arg, true)),
            _ => {
                let s = print(arg, true);
                match prec {
                    Some(p) if verb == 's' || verb == 'v' => s.chars().take(p).collect(),
                    _ => s,
                }
            }
        };
        let width: usize = width.parse().unwrap_or(0);
        let len = s.chars().count();
        if len < width {
            let fill = width - len;
            if left {
                s.push_str(&" ".repeat(fill));
            } else if zero && arg.is_number() {
                s = format!("{}{s}", "0".repeat(fill));
            } else {
                s = format!("{}{s}", " ".repeat(fill));
            }
        }
        out.push_str(&s);
    }
    for extra in args {
        out.push_str(&format!("%!(EXTRA {})", print(extra, true)));
    }
    out
}

/// A value as Go's `fmt` prints it in a template: `top` is the value an action prints
/// (where nil is `<no value>`), not one inside a list or map (where it is `<nil>`).
pub fn print(v: &Value, top: bool) -> String {
    match nil_kind(v) {
        Some("list") => return "[]".into(),
        Some(_) => return "map[]".into(),
        None => {}
    }
    match v {
        Value::Null if top => "<no value>".into(),
        Value::Null => "<nil>".into(),
        Value::Bool(b) => b.to_string(),
        Value::String(s) => s.clone(),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => i.to_string(),
            (_, Some(u)) => u.to_string(),
            _ => go_float(n.as_f64().unwrap_or(0.0)),
        },
        Value::Array(a) => {
            let items: Vec<String> = a.iter().map(|x| print(x, false)).collect();
            format!("[{}]", items.join(" "))
        }
        // An empty value inside a map is a Go `struct{}` (`ExposedPorts`, `Volumes`).
        Value::Object(m) if m.is_empty() && !top => "{}".into(),
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let items: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{k}:{}", print(&m[k], false)))
                .collect();
            format!("map[{}]", items.join(" "))
        }
    }
}

/// Go's `%v` of a float64 (`strconv`'s shortest `%g`): exponent form from 1e6 up and
/// below 1e-4, as `1.234567e+06`.
fn go_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    if f == 0.0 {
        return "0".into();
    }
    let s = format!("{f:e}");
    let (mantissa, e) = s.split_once('e').unwrap_or((&s, "0"));
    let e: i32 = e.parse().unwrap_or(0);
    if (-4..6).contains(&e) {
        return format!("{f}");
    }
    format!("{mantissa}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs())
}

/// Go's truth: false, 0, nil and empty strings, lists and maps are false.
pub fn truth(v: &Value) -> bool {
    if nil_kind(v).is_some() {
        return false;
    }
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => !m.is_empty(),
    }
}
