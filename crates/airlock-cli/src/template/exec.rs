//! Running a parsed template over JSON data, with Go's rules: what is true, how fields are
//! looked up, how variables are scoped.

use serde_json::Value;

use super::funcs::{self, Mode};
use super::parse::{Command, List, Node, Operand, Pipeline};
use super::TemplateError;

/// What fields the data may have.
#[derive(Clone, Copy)]
pub enum Schema<'a> {
    /// A record with a known set of fields (docker's typed contexts): another is an error.
    Fixed(&'a [&'a str]),
    /// Free-form documents (`inspect`): a missing key is the zero value this gives for the
    /// field's name (as a typed Go struct would have it: `""`, `[]`, `map[]`), else nil,
    /// which prints `<no value>`.
    Free(fn(&str) -> Option<Value>),
}

pub struct Run<'a> {
    pub mode: Mode,
    pub schema: Schema<'a>,
    vars: Vec<(String, Value)>,
    /// Where the data the template started with is: only its fields are checked against
    /// [`Fields`].
    root_at: usize,
}

impl<'a> Run<'a> {
    pub fn new(mode: Mode, schema: Schema<'a>) -> Self {
        Run {
            mode,
            schema,
            vars: Vec::new(),
            root_at: 0,
        }
    }

    /// Write `list` run over `data` (dot and `$` both) to `out`.
    pub fn run(
        &mut self,
        list: &List,
        data: &Value,
        out: &mut String,
    ) -> Result<(), TemplateError> {
        self.vars = vec![("$".into(), data.clone())];
        self.root_at = data as *const Value as usize;
        self.scoped(list, data, data, out)
    }

    fn node(
        &mut self,
        node: &Node,
        dot: &Value,
        root: &Value,
        out: &mut String,
    ) -> Result<(), TemplateError> {
        match node {
            Node::Text(t) => out.push_str(t),
            Node::Action(p) => {
                let v = self.pipeline(p, dot)?;
                if p.declare.is_empty() {
                    out.push_str(&funcs::print(&v, true));
                }
            }
            Node::If {
                with,
                branches,
                otherwise,
            } => {
                for (cond, body) in branches {
                    let v = self.pipeline(cond, dot)?;
                    if funcs::truth(&v) {
                        let dot = if *with { &v } else { dot };
                        return self.scoped(body, dot, root, out);
                    }
                }
                self.scoped(otherwise, dot, root, out)?;
            }
            Node::Range {
                pipe,
                body,
                otherwise,
            } => {
                let declared = pipe.declare.clone();
                let bare = Pipeline {
                    declare: Vec::new(),
                    commands: pipe.commands.clone(),
                };
                let v = self.pipeline(&bare, dot)?;
                let pairs: Vec<(Value, Value)> = match &v {
                    v if funcs::nil_kind(v).is_some() => Vec::new(),
                    Value::Array(a) => a
                        .iter()
                        .enumerate()
                        .map(|(i, x)| (Value::from(i), x.clone()))
                        .collect(),
                    Value::Object(m) => {
                        let mut keys: Vec<&String> = m.keys().collect();
                        keys.sort();
                        keys.into_iter()
                            .map(|k| (Value::from(k.clone()), m[k].clone()))
                            .collect()
                    }
                    Value::Null => Vec::new(),
                    Value::Number(n) if n.as_u64().is_some() => (0..n.as_u64().unwrap_or(0))
                        .map(|i| (Value::from(i), Value::from(i)))
                        .collect(),
                    other => {
                        return Err(TemplateError::run(format!(
                            "range can't iterate over {}",
                            funcs::print(other, true)
                        )))
                    }
                };
                if pairs.is_empty() {
                    return self.scoped(otherwise, dot, root, out);
                }
                for (key, item) in pairs {
                    let mark = self.vars.len();
                    match declared.as_slice() {
                        [] => {}
                        [v] => self.vars.push((v.clone(), item.clone())),
                        [k, v, ..] => {
                            self.vars.push((k.clone(), key));
                            self.vars.push((v.clone(), item.clone()));
                        }
                    }
                    for n in body {
                        self.node(n, &item, root, out)?;
                    }
                    self.vars.truncate(mark);
                }
            }
        }
        Ok(())
    }

    fn scoped(
        &mut self,
        list: &List,
        dot: &Value,
        root: &Value,
        out: &mut String,
    ) -> Result<(), TemplateError> {
        let mark = self.vars.len();
        for n in list {
            self.node(n, dot, root, out)?;
        }
        self.vars.truncate(mark);
        Ok(())
    }

    fn pipeline(&mut self, p: &Pipeline, dot: &Value) -> Result<Value, TemplateError> {
        let mut value: Option<Value> = None;
        for c in &p.commands {
            value = Some(self.command(c, dot, value)?);
        }
        let v = value.unwrap_or(Value::Null);
        if let Some(name) = p.declare.first() {
            self.vars.push((name.clone(), v.clone()));
        }
        Ok(v)
    }

    fn command(
        &mut self,
        c: &Command,
        dot: &Value,
        piped: Option<Value>,
    ) -> Result<Value, TemplateError> {
        if let Operand::Func(name) = &c.words[0] {
            let mut args = Vec::with_capacity(c.words.len());
            for w in &c.words[1..] {
                args.push(self.operand(w, dot)?);
            }
            args.extend(piped);
            // `{{json .}}` of a listing record: docker's records marshal themselves.
            if name == "json" && self.mode == Mode::Row && matches!(self.schema, Schema::Fixed(_)) {
                if let ([arg], Some((_, root))) = (args.as_slice(), self.vars.first()) {
                    if arg == root {
                        return Ok(Value::from(funcs::go_json(arg, true)));
                    }
                }
            }
            return funcs::call(name, args, self.mode);
        }
        if c.words.len() > 1 || piped.is_some() {
            return Err(TemplateError::run(
                "only a function takes arguments (a value was given some)".into(),
            ));
        }
        self.operand(&c.words[0], dot)
    }

    fn operand(&mut self, o: &Operand, dot: &Value) -> Result<Value, TemplateError> {
        match o {
            Operand::Dot(fields) => {
                let at_root = dot as *const Value as usize == self.root_at;
                self.fields(dot, fields, at_root)
            }
            Operand::Var(name, fields) => {
                let v = self
                    .vars
                    .iter()
                    .rev()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
                    .ok_or_else(|| TemplateError::run(format!("undefined variable {name}")))?;
                self.fields(&v, fields, name == "$")
            }
            Operand::Func(name) => funcs::call(name, Vec::new(), self.mode),
            Operand::Literal(v) => Ok(v.clone()),
            Operand::Sub(p, fields) => {
                let v = self.pipeline(p, dot)?;
                self.fields(&v, fields, false)
            }
        }
    }

    fn fields(
        &self,
        start: &Value,
        fields: &[String],
        check: bool,
    ) -> Result<Value, TemplateError> {
        let mut v = start.clone();
        for (i, f) in fields.iter().enumerate() {
            if i == 0 && check {
                if let Schema::Fixed(known) = self.schema {
                    if !known.contains(&f.as_str()) {
                        return Err(TemplateError::run(format!(
                            "there is no field {f} (the fields are {})",
                            known.join(", ")
                        )));
                    }
                }
            }
            v = match v {
                Value::Object(mut m) => match m.remove(f) {
                    Some(v) => v,
                    None => match self.schema {
                        Schema::Free(zero) => zero(f).unwrap_or(Value::Null),
                        Schema::Fixed(_) => Value::Null,
                    },
                },
                Value::Null => Value::Null,
                other => {
                    return Err(TemplateError::run(format!(
                        "can't take field {f} of {}",
                        funcs::print(&other, true)
                    )))
                }
            };
        }
        Ok(v)
    }
}
