//! The matrix of cells and the markdown report (written to target/interop.md, published to
//! docs/interop.md by `bench/update-interop-doc.sh`).

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use super::*;

// ------------------------------------------------------------------------------ the matrix

pub(super) struct Cell {
    section: &'static str,
    row: String,
    col: &'static str,
    pub(super) ok: bool,
    pub(super) known_bug: Option<&'static str>,
    detail: String,
}

#[derive(Default)]
pub(super) struct Matrix {
    pub(super) cells: Vec<Cell>,
}

impl Matrix {
    /// Run one cell: `f` returns a value for later cells and the detail to report, or panics
    /// with the failure.
    pub(super) fn run<T>(
        &mut self,
        section: &'static str,
        row: &str,
        col: &'static str,
        f: impl FnOnce() -> (T, String),
    ) -> Option<T> {
        let t0 = Instant::now();
        let (value, ok, detail) = match catch_unwind(AssertUnwindSafe(f)) {
            Ok((v, d)) => (Some(v), true, d),
            Err(p) => (None, false, panic_text(p.as_ref())),
        };
        eprintln!(
            "interop: {} {row} | {col} ({:.1}s): {}",
            if ok { "ok  " } else { "FAIL" },
            t0.elapsed().as_secs_f64(),
            one_line(&detail, 300)
        );
        self.push(section, row, col, ok, detail);
        value
    }

    pub(super) fn check(
        &mut self,
        section: &'static str,
        row: &str,
        col: &'static str,
        f: impl FnOnce() -> String,
    ) -> bool {
        self.run(section, row, col, || ((), f())).is_some()
    }

    /// `check` when `ready`; otherwise a failed cell saying it could not run.
    pub(super) fn then(
        &mut self,
        ready: bool,
        section: &'static str,
        row: &str,
        col: &'static str,
        f: impl FnOnce() -> String,
    ) -> bool {
        if ready {
            self.check(section, row, col, f)
        } else {
            let why = "not run: an earlier step of this row failed".to_string();
            self.push(section, row, col, false, why);
            false
        }
    }

    fn push(&mut self, section: &'static str, row: &str, col: &'static str, ok: bool, d: String) {
        let known_bug = KNOWN_BUGS
            .iter()
            .find(|(r, c, _)| *r == row && *c == col)
            .map(|(_, _, why)| *why);
        self.cells.push(Cell {
            section,
            row: row.to_string(),
            col,
            ok,
            known_bug,
            detail: d,
        });
    }

    /// Failures that fail the run: broken cells, and known bugs that no longer fail.
    pub(super) fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        for c in &self.cells {
            match (c.ok, c.known_bug) {
                (false, None) => out.push(format!(
                    "{} | {}: {}",
                    c.row,
                    c.col,
                    one_line(&c.detail, 600)
                )),
                (true, Some(_)) => out.push(format!(
                    "{} | {}: passes now; remove it from KNOWN_BUGS in interop.rs",
                    c.row, c.col
                )),
                _ => {}
            }
        }
        out
    }

    pub(super) fn render(&self, header: &str) -> String {
        let mut md = header.to_string();
        for (section, first, note) in SECTIONS {
            let cells: Vec<&Cell> = self
                .cells
                .iter()
                .filter(|c| c.section == *section)
                .collect();
            if cells.is_empty() {
                continue;
            }
            let mut cols: Vec<&str> = Vec::new();
            let mut rows: Vec<&str> = Vec::new();
            for c in &cells {
                if !cols.contains(&c.col) {
                    cols.push(c.col);
                }
                if !rows.contains(&c.row.as_str()) {
                    rows.push(&c.row);
                }
            }
            md.push_str(&format!("\n## {section}\n\n{note}\n\n| {first} |"));
            for c in &cols {
                md.push_str(&format!(" {c} |"));
            }
            md.push_str(&format!("\n|---|{}\n", "---|".repeat(cols.len())));
            for r in rows {
                md.push_str(&format!("| {} |", cell_text(r, 200)));
                for col in &cols {
                    let text = match cells.iter().find(|c| c.row == r && c.col == *col) {
                        None => "—".to_string(),
                        Some(c) if c.ok => format!("✅ {}", cell_text(&c.detail, 160)),
                        Some(c) => match c.known_bug {
                            Some(_) => format!("❌ known bug: {}", cell_text(&c.detail, 160)),
                            None => format!("❌ {}", cell_text(&c.detail, 160)),
                        },
                    };
                    md.push_str(&format!(" {text} |"));
                }
                md.push('\n');
            }
        }
        let bad: Vec<&Cell> = self.cells.iter().filter(|c| !c.ok).collect();
        if !bad.is_empty() {
            md.push_str("\n## Failures in full\n");
            for c in bad {
                md.push_str(&format!("\n### {} — {}\n\n", c.row, c.col));
                if let Some(bug) = c.known_bug {
                    md.push_str(&format!("Known airlock bug: {bug}.\n\n"));
                }
                let mut d = c.detail.clone();
                if d.len() > 3000 {
                    let mut cut = 3000;
                    while !d.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    d.truncate(cut);
                    d.push('…');
                }
                md.push_str(&format!("```text\n{}\n```\n", d.replace("```", "'''")));
            }
        }
        md
    }
}

fn panic_text(p: &(dyn Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else {
        "panicked".to_string()
    }
}

/// `s` on one line, at most `max` characters.
pub(super) fn one_line(s: &str, max: usize) -> String {
    let flat: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        flat
    } else {
        format!("{}…", flat.chars().take(max).collect::<String>())
    }
}

/// `s` fit for a markdown table cell.
fn cell_text(s: &str, max: usize) -> String {
    one_line(s, max).replace('|', "\\|")
}
