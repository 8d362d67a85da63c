//! Go template text to a tree: the lexer for `{{ ... }}` actions (with `{{-`/`-}}` trim
//! markers and `{{/* */}}` comments) and the parser for the subset docker scripts use.

use super::TemplateError;

/// A parsed template: a list of nodes.
pub type List = Vec<Node>;

/// One piece of a template.
#[derive(Debug, Clone)]
pub enum Node {
    /// Literal text.
    Text(String),
    /// `{{pipeline}}`: print its value (nothing when it only declares variables).
    Action(Pipeline),
    /// `{{if}}`, or `{{with}}` (which also sets dot), with `{{else if}}`s and an `{{else}}`.
    If {
        with: bool,
        branches: Vec<(Pipeline, List)>,
        otherwise: List,
    },
    /// `{{range}}` over a list or a map, with an `{{else}}` for an empty one.
    Range {
        pipe: Pipeline,
        body: List,
        otherwise: List,
    },
}

/// Commands joined by `|`, each one's value passed as the next one's last argument;
/// optionally declaring variables (`$v :=`, or `$k, $v :=` in a range).
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub declare: Vec<String>,
    pub commands: Vec<Command>,
}

/// A function call with its arguments, or a single operand.
#[derive(Debug, Clone)]
pub struct Command {
    pub words: Vec<Operand>,
}

/// An argument.
#[derive(Debug, Clone)]
pub enum Operand {
    /// `.` followed by fields: `.`, `.Config.Env`.
    Dot(Vec<String>),
    /// `$` or `$name`, followed by fields.
    Var(String, Vec<String>),
    /// A function's name.
    Func(String),
    /// A value written in the template: string, number, bool or nil.
    Literal(serde_json::Value),
    /// `( pipeline )` followed by fields.
    Sub(Box<Pipeline>, Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Dot(Vec<String>),
    Var(String, Vec<String>),
    Ident(String),
    Str(String),
    Number(serde_json::Value),
    Open,
    Close(Vec<String>),
    Pipe,
    Declare,
    Comma,
}

enum Item {
    Text(String),
    Action(Vec<Token>, usize),
}

/// Parse `text` into a tree.
pub fn parse(text: &str) -> Result<List, TemplateError> {
    let items = split(text)?;
    let mut at = 0;
    let (list, end) = parse_list(&items, &mut at)?;
    match end {
        None => Ok(list),
        Some((word, col)) => Err(TemplateError::at(col, format!("unexpected {{{{{word}}}}}"))),
    }
}

/// The template as text and tokenised actions, trim markers applied.
fn split(text: &str) -> Result<Vec<Item>, TemplateError> {
    let mut items = Vec::new();
    let mut rest = text;
    let mut offset = 0;
    let mut trim_next = false;
    while !rest.is_empty() {
        let Some(open) = rest.find("{{") else {
            push_text(&mut items, rest, trim_next, false);
            break;
        };
        let inner = &rest[open + 2..];
        let trim_before =
            inner.starts_with("- ") || inner.starts_with("-\t") || inner.starts_with("-\n");
        push_text(&mut items, &rest[..open], trim_next, trim_before);
        let body_start = if trim_before { 2 } else { 0 };
        let col = offset + open + 1;
        let inner = &inner[body_start..];
        let (close, body, trim_after) = find_close(inner).ok_or_else(|| {
            TemplateError::at(
                col,
                "an action opened with {{ is not closed with }}".to_string(),
            )
        })?;
        let body_text = &inner[..body];
        trim_next = trim_after;
        let trimmed = body_text.trim();
        if !(trimmed.starts_with("/*") && trimmed.ends_with("*/")) {
            items.push(Item::Action(lex(body_text, col)?, col));
        }
        let consumed = open + 2 + body_start + close;
        offset += consumed;
        rest = &rest[consumed..];
    }
    Ok(items)
}

fn push_text(items: &mut Vec<Item>, text: &str, trim_start: bool, trim_end: bool) {
    let mut t = text;
    if trim_start {
        t = t.trim_start();
    }
    if trim_end {
        t = t.trim_end();
    }
    if !t.is_empty() {
        items.push(Item::Text(t.to_string()));
    }
}

/// Where the action ends (just past `}}`), where its body ends, and whether it is `-}}`.
/// `}}` inside a quoted string does not close it.
fn find_close(s: &str) -> Option<(usize, usize, bool)> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut quote: Option<u8> = None;
    while i < b.len() {
        match quote {
            Some(q) => {
                if b[i] == b'\\' && q == b'"' {
                    i += 1;
                } else if b[i] == q {
                    quote = None;
                }
            }
            None if b[i] == b'"' || b[i] == b'`' => quote = Some(b[i]),
            None if s[i..].starts_with("}}") => {
                let trim = i >= 2 && b[i - 1] == b'-' && b[i - 2].is_ascii_whitespace();
                return Some((i + 2, if trim { i - 1 } else { i }, trim));
            }
            None => {}
        }
        i += 1;
    }
    None
}

fn fields_after(chars: &[char], i: &mut usize) -> Vec<String> {
    let mut fields = Vec::new();
    while *i < chars.len() && chars[*i] == '.' {
        let start = *i + 1;
        let mut j = start;
        while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_') {
            j += 1;
        }
        if j == start {
            break;
        }
        fields.push(chars[start..j].iter().collect());
        *i = j;
    }
    fields
}

fn lex(body: &str, col: usize) -> Result<Vec<Token>, TemplateError> {
    let chars: Vec<char> = body.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    let err = |what: String| TemplateError::at(col, what);
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '.' => {
                let fields = fields_after(&chars, &mut i);
                if fields.is_empty() {
                    i += 1;
                }
                tokens.push(Token::Dot(fields));
            }
            '$' => {
                let start = i;
                i += 1;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                let name: String = chars[start..i].iter().collect();
                tokens.push(Token::Var(name, fields_after(&chars, &mut i)));
            }
            '"' => {
                let mut s = String::new();
                i += 1;
                loop {
                    let Some(&c) = chars.get(i) else {
                        return Err(err("a string is not closed with \"".into()));
                    };
                    i += 1;
                    match c {
                        '"' => break,
                        '\\' => {
                            let e = chars.get(i).copied().unwrap_or('\\');
                            i += 1;
                            s.push(match e {
                                'n' => '\n',
                                't' => '\t',
                                'r' => '\r',
                                '0' => '\0',
                                other => other,
                            });
                        }
                        c => s.push(c),
                    }
                }
                tokens.push(Token::Str(s));
            }
            '`' => {
                let start = i + 1;
                let end = chars[start..]
                    .iter()
                    .position(|&c| c == '`')
                    .ok_or_else(|| err("a raw string is not closed with `".into()))?;
                tokens.push(Token::Str(chars[start..start + end].iter().collect()));
                i = start + end + 1;
            }
            '(' => {
                tokens.push(Token::Open);
                i += 1;
            }
            ')' => {
                i += 1;
                tokens.push(Token::Close(fields_after(&chars, &mut i)));
            }
            '|' => {
                tokens.push(Token::Pipe);
                i += 1;
            }
            ',' => {
                tokens.push(Token::Comma);
                i += 1;
            }
            ':' if chars.get(i + 1) == Some(&'=') => {
                tokens.push(Token::Declare);
                i += 2;
            }
            c if c.is_ascii_digit() || c == '-' || c == '+' => {
                let start = i;
                i += 1;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                let n = if let Ok(n) = text.parse::<i64>() {
                    serde_json::Value::from(n)
                } else if let Ok(f) = text.parse::<f64>() {
                    serde_json::Value::from(f)
                } else {
                    return Err(err(format!("{text} is not a number")));
                };
                tokens.push(Token::Number(n));
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                tokens.push(Token::Ident(chars[start..i].iter().collect()));
            }
            other => return Err(err(format!("unexpected {other:?} in an action"))),
        }
    }
    Ok(tokens)
}

/// Nodes up to an `{{end}}` or `{{else ...}}`, which is returned (with its column) for the
/// caller to handle.
type Ending = Option<(String, usize)>;

fn parse_list(items: &[Item], at: &mut usize) -> Result<(List, Ending), TemplateError> {
    let mut list = Vec::new();
    while *at < items.len() {
        let (tokens, col) = match &items[*at] {
            Item::Text(t) => {
                list.push(Node::Text(t.clone()));
                *at += 1;
                continue;
            }
            Item::Action(tokens, col) => (tokens.as_slice(), *col),
        };
        *at += 1;
        match tokens.first() {
            Some(Token::Ident(w)) if w == "end" => return Ok((list, Some(("end".into(), col)))),
            Some(Token::Ident(w)) if w == "else" => {
                return Ok((list, Some((format!("else{}", *at - 1), col))))
            }
            Some(Token::Ident(w)) if w == "if" || w == "with" => {
                list.push(parse_if(items, at, &tokens[1..], w == "with", col)?)
            }
            Some(Token::Ident(w)) if w == "range" => {
                let pipe = pipeline(&tokens[1..], col)?;
                let (body, end) = parse_list(items, at)?;
                let otherwise = match end {
                    Some((e, _)) if e == "end" => Vec::new(),
                    Some((e, c)) if e.starts_with("else") => {
                        if else_tokens(items, &e).len() > 1 {
                            return Err(TemplateError::at(
                                c,
                                "{{else if}} inside {{range}}".into(),
                            ));
                        }
                        expect_end(items, at, c)?
                    }
                    _ => return Err(TemplateError::at(col, "{{range}} has no {{end}}".into())),
                };
                list.push(Node::Range {
                    pipe,
                    body,
                    otherwise,
                });
            }
            Some(Token::Ident(w))
                if ["define", "template", "block", "break", "continue"].contains(&w.as_str()) =>
            {
                return Err(TemplateError::at(
                    col,
                    format!("{{{{{w}}}}} is not supported"),
                ))
            }
            _ => list.push(Node::Action(pipeline(tokens, col)?)),
        }
    }
    Ok((list, None))
}

/// The tokens of the `{{else ...}}` item an ending names.
fn else_tokens<'a>(items: &'a [Item], ending: &str) -> &'a [Token] {
    let index: usize = ending["else".len()..].parse().unwrap_or(0);
    match &items[index] {
        Item::Action(t, _) => t,
        Item::Text(_) => &[],
    }
}

fn expect_end(items: &[Item], at: &mut usize, col: usize) -> Result<List, TemplateError> {
    match parse_list(items, at)? {
        (list, Some((e, _))) if e == "end" => Ok(list),
        (_, Some((_, c))) => Err(TemplateError::at(c, "a second {{else}}".into())),
        _ => Err(TemplateError::at(col, "{{else}} has no {{end}}".into())),
    }
}

fn parse_if(
    items: &[Item],
    at: &mut usize,
    tokens: &[Token],
    with: bool,
    col: usize,
) -> Result<Node, TemplateError> {
    let mut branches = vec![(pipeline(tokens, col)?, Vec::new())];
    loop {
        let (body, end) = parse_list(items, at)?;
        branches.last_mut().expect("one branch").1 = body;
        match end {
            Some((e, _)) if e == "end" => {
                return Ok(Node::If {
                    with,
                    branches,
                    otherwise: Vec::new(),
                })
            }
            Some((e, c)) if e.starts_with("else") => {
                let t = else_tokens(items, &e);
                let keyword = if with { "with" } else { "if" };
                if matches!(t.get(1), Some(Token::Ident(w)) if w == keyword) {
                    branches.push((pipeline(&t[2..], c)?, Vec::new()));
                    continue;
                }
                let otherwise = expect_end(items, at, c)?;
                return Ok(Node::If {
                    with,
                    branches,
                    otherwise,
                });
            }
            _ => {
                return Err(TemplateError::at(
                    col,
                    format!(
                        "{{{{{}}}}} has no {{{{end}}}}",
                        if with { "with" } else { "if" }
                    ),
                ))
            }
        }
    }
}

fn pipeline(tokens: &[Token], col: usize) -> Result<Pipeline, TemplateError> {
    let mut tokens = tokens;
    let mut declare = Vec::new();
    if let Some(p) = tokens.iter().position(|t| *t == Token::Declare) {
        for t in &tokens[..p] {
            match t {
                Token::Var(name, f) if f.is_empty() => declare.push(name.clone()),
                Token::Comma => {}
                _ => {
                    return Err(TemplateError::at(
                        col,
                        "only variables may stand before :=".into(),
                    ))
                }
            }
        }
        tokens = &tokens[p + 1..];
    }
    let mut commands = Vec::new();
    let mut at = 0;
    loop {
        let mut words = Vec::new();
        while at < tokens.len() && tokens[at] != Token::Pipe {
            words.push(operand(tokens, &mut at, col)?);
        }
        if words.is_empty() {
            return Err(TemplateError::at(col, "missing value in an action".into()));
        }
        commands.push(Command { words });
        if at >= tokens.len() {
            break;
        }
        at += 1;
    }
    Ok(Pipeline { declare, commands })
}

fn operand(tokens: &[Token], at: &mut usize, col: usize) -> Result<Operand, TemplateError> {
    let t = tokens[*at].clone();
    *at += 1;
    Ok(match t {
        Token::Dot(f) => Operand::Dot(f),
        Token::Var(n, f) => Operand::Var(n, f),
        Token::Str(s) => Operand::Literal(s.into()),
        Token::Number(n) => Operand::Literal(n),
        Token::Ident(w) => match w.as_str() {
            "true" => Operand::Literal(true.into()),
            "false" => Operand::Literal(false.into()),
            "nil" => Operand::Literal(serde_json::Value::Null),
            _ => Operand::Func(w),
        },
        Token::Open => {
            let start = *at;
            let mut depth = 1;
            while *at < tokens.len() {
                match tokens[*at] {
                    Token::Open => depth += 1,
                    Token::Close(_) => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                *at += 1;
            }
            let Some(Token::Close(fields)) = tokens.get(*at).cloned() else {
                return Err(TemplateError::at(col, "( is not closed with )".into()));
            };
            let inner = pipeline(&tokens[start..*at], col)?;
            *at += 1;
            Operand::Sub(Box::new(inner), fields)
        }
        Token::Close(_) => return Err(TemplateError::at(col, "unexpected )".into())),
        Token::Pipe | Token::Declare | Token::Comma => {
            return Err(TemplateError::at(col, "missing value in an action".into()))
        }
    })
}
