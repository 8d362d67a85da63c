//! Quoting, word splitting and `$VAR` expansion for change instructions: buildkit's
//! Dockerfile word rules (`parseWords`, `KEY=VALUE` pairs, `--flags`) and its `shell` lexer
//! (`ProcessWord`/`ProcessWords`).

/// Splits at the first whitespace: (word, rest with leading whitespace removed).
pub(super) fn split_first_word(s: &str) -> (&str, &str) {
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], s[i..].trim_start()),
        None => (s, ""),
    }
}

/// Peels leading `--flag[=value]` words off an instruction's arguments (quotes removed).
pub(super) fn extract_flags(line: &str) -> (Vec<String>, &str) {
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

/// Splits `rest` into words at unquoted whitespace, keeping quotes and escapes (buildkit's
/// `parseWords`).
pub(super) fn parse_words(rest: &str) -> Vec<String> {
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
pub(super) fn expand_pairs(
    args: &str,
    cmd: &str,
    env: &[String],
) -> Result<Vec<(String, String)>, String> {
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
pub(super) fn expand_word(word: &str, env: &[String]) -> Result<String, String> {
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
pub(super) fn expand_words(word: &str, env: &[String]) -> Result<Vec<String>, String> {
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
