//! docker's `--format`: Go templates over JSON records, the subset scripts use
//! (`{{.Field}}`, `{{json .}}`, `{{if}}`/`{{range}}`/`{{with}}`, pipelines, variables, and
//! the docker CLI's functions), and its `table` prefix, which aligns tab-separated columns
//! under a header as `docker images --format 'table ...'` does.
//!
//! A format is taken as the docker CLI takes it: a leading `table` asks for a header and
//! columns; the spaces around the rest are dropped; `\t` and `\n` written as two
//! characters (as they arrive from a shell's single quotes) mean a tab and a newline; each
//! record's text is followed by a newline.

mod exec;
mod funcs;
mod parse;
mod table;

pub use exec::Schema;
pub use funcs::{truth, typed_nil};

use serde_json::Value;

/// What is wrong with a template, or with running it.
#[derive(Debug)]
pub struct TemplateError {
    column: Option<usize>,
    message: String,
}

impl TemplateError {
    fn at(column: usize, message: String) -> Self {
        TemplateError {
            column: Some(column),
            message,
        }
    }

    fn run(message: String) -> Self {
        TemplateError {
            column: None,
            message,
        }
    }
}

impl std::fmt::Display for TemplateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.column {
            Some(c) => write!(f, "at column {c}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// A parsed `--format`.
#[derive(Debug)]
pub struct Format {
    tree: parse::List,
    table: bool,
}

impl Format {
    /// Parse a `--format` value.
    pub fn parse(text: &str) -> Result<Format, TemplateError> {
        let (table, rest) = match text.strip_prefix("table") {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let rest = rest
            .trim_matches(' ')
            .replace("\\t", "\t")
            .replace("\\n", "\n");
        Ok(Format {
            tree: parse::parse(&rest)?,
            table,
        })
    }

    /// The text for `records`, each followed by a newline; a table's header comes first,
    /// made by running the template over `header` (each field's column title).
    pub fn render(
        &self,
        records: &[Value],
        header: &Value,
        schema: Schema,
    ) -> Result<String, TemplateError> {
        let mut out = String::new();
        if self.table {
            let mut run = exec::Run::new(funcs::Mode::Header, schema);
            run.run(&self.tree, header, &mut out)?;
            out.push('\n');
        }
        for r in records {
            let mut run = exec::Run::new(funcs::Mode::Row, schema);
            run.run(&self.tree, r, &mut out)?;
            out.push('\n');
        }
        Ok(if self.table { table::align(&out) } else { out })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(format: &str, data: Value) -> String {
        Format::parse(format)
            .unwrap()
            .render(&[data], &Value::Null, FREE)
            .unwrap()
    }

    const FREE: Schema = Schema::Free(|_| None);

    fn fails(format: &str, data: Value) -> String {
        match Format::parse(format).and_then(|f| f.render(&[data], &Value::Null, FREE)) {
            Ok(text) => panic!("{format} gave {text:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn fields_print_as_go_prints_them() {
        let d = json!({"A": "x", "N": 3, "F": 1.5, "Big": 1234567.0, "L": ["a", "b"],
            "M": {"z": "1", "a": "2"}, "Nil": null, "Deep": {"In": {"Most": true}}});
        assert_eq!(render("{{.A}}", d.clone()), "x\n");
        assert_eq!(
            render("{{.N}} {{.F}} {{.Big}}", d.clone()),
            "3 1.5 1.234567e+06\n"
        );
        assert_eq!(render("{{.L}} {{.M}}", d.clone()), "[a b] map[a:2 z:1]\n");
        assert_eq!(
            render("{{.Nil}} {{.Missing}}", d.clone()),
            "<no value> <no value>\n"
        );
        assert_eq!(render("{{.Deep.In.Most}}", d.clone()), "true\n");
        assert_eq!(
            render("{{json .L}} {{json .A}}", d.clone()),
            "[\"a\",\"b\"] \"x\"\n"
        );
    }

    #[test]
    fn control_structures_and_variables() {
        let d = json!({"L": ["a", "b"], "M": {"k2": "v2", "k1": "v1"}, "E": [], "T": "yes"});
        assert_eq!(render("{{range .L}}<{{.}}>{{end}}", d.clone()), "<a><b>\n");
        assert_eq!(
            render("{{range $i, $v := .L}}{{$i}}={{$v}} {{end}}", d.clone()),
            "0=a 1=b \n"
        );
        assert_eq!(
            render("{{range $k, $v := .M}}{{$k}}:{{$v}},{{end}}", d.clone()),
            "k1:v1,k2:v2,\n"
        );
        assert_eq!(
            render("{{range .E}}x{{else}}empty{{end}}", d.clone()),
            "empty\n"
        );
        assert_eq!(render("{{if .T}}t{{else}}f{{end}}", d.clone()), "t\n");
        assert_eq!(
            render("{{if .E}}1{{else if .T}}2{{else}}3{{end}}", d.clone()),
            "2\n"
        );
        assert_eq!(render("{{with .M}}{{.k1}}{{end}}", d.clone()), "v1\n");
        assert_eq!(render("{{range .L}}{{$.T}}{{end}}", d.clone()), "yesyes\n");
        assert_eq!(render("{{$x := .T}}{{$x}}", d.clone()), "yes\n");
        assert_eq!(render("a {{- \" b \" -}} c", d.clone()), "a b c\n");
        assert_eq!(render("{{/* a comment */}}x", d), "x\n");
    }

    #[test]
    fn functions_docker_scripts_use() {
        let d = json!({"R": "Docker.io/Library", "L": ["a", "b"], "M": {"k": "v"}, "N": 2});
        assert_eq!(
            render("{{lower .R}} {{upper .R}}", d.clone()),
            "docker.io/library DOCKER.IO/LIBRARY\n"
        );
        assert_eq!(
            render(
                "{{join .L \",\"}} {{index .L 1}} {{index .M \"k\"}}",
                d.clone()
            ),
            "a,b b v\n"
        );
        assert_eq!(
            render("{{index (split .R \"/\") 1}} {{len .L}}", d.clone()),
            "Library 2\n"
        );
        assert_eq!(render("{{truncate (.R | lower) 6}}", d.clone()), "docker\n");
        assert_eq!(
            render("{{title \"hello world\"}} {{pad \"x\" 1 2}}|", d.clone()),
            "Hello World  x  |\n"
        );
        assert_eq!(
            render("{{printf \"%-4s|%3d|%q\" \"ab\" .N \"q\"}}", d.clone()),
            "ab  |  2|\"q\"\n"
        );
        assert_eq!(
            render(
                "{{if eq .N 2}}two{{end}} {{if and .L (not .Z)}}ok{{end}}",
                d.clone()
            ),
            "two ok\n"
        );
        assert_eq!(render("{{println .N \"x\"}}", d), "2 x\n\n");
    }

    #[test]
    fn a_table_has_a_header_and_aligned_columns() {
        let f = Format::parse("table {{.Repository}}\\t{{lower .Tag}}").unwrap();
        let header = json!({"Repository": "REPOSITORY", "Tag": "TAG"});
        let rows = [json!({"Repository": "busybox", "Tag": "Latest"})];
        assert_eq!(
            f.render(&rows, &header, FREE).unwrap(),
            "REPOSITORY   TAG\nbusybox      latest\n"
        );
    }

    #[test]
    fn mistakes_are_named() {
        assert!(fails("{{.A", json!({})).contains("not closed"));
        assert!(fails("{{if .A}}x", json!({})).contains("no {{end}}"));
        assert!(fails("{{end}}", json!({})).contains("unexpected {{end}}"));
        assert!(fails("{{nosuch .A}}", json!({})).contains("no function nosuch"));
        let known = Format::parse("{{.Repo}}")
            .unwrap()
            .render(
                &[json!({"Repository": "x"})],
                &Value::Null,
                Schema::Fixed(&["Repository"]),
            )
            .unwrap_err()
            .to_string();
        assert!(
            known.contains("no field Repo (the fields are Repository)"),
            "{known}"
        );
    }
}
