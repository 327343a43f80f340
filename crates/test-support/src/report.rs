//! Writing results for people and scripts: tables, JSON files, statistics and SVG charts (the
//! soak, chaos and the benchmarks).
//!
//! - [`stats`]: least-squares slopes (leak detection) and percentiles (latency).
//! - [`svg`]: small line charts written by hand, one panel per series.
//! - [`Table`] (here): aligned plain-text tables for the terminal, and Markdown for reports.

pub mod stats;
pub mod svg;

use std::path::Path;

use anyhow::{Context, Result};

/// A table of strings, rendered as aligned text or as Markdown.
#[derive(Debug, Clone, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column names.
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|&name| name.to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row (one cell per column).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn widths(&self) -> Vec<usize> {
        let mut widths: Vec<usize> = self
            .header
            .iter()
            .map(|cell| cell.chars().count())
            .collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        widths
    }

    /// Aligned columns for a terminal.
    pub fn to_text(&self) -> String {
        let widths = self.widths();
        let render = |cells: &[String]| {
            let padded: Vec<String> = cells
                .iter()
                .zip(&widths)
                .map(|(cell, &width)| format!("{cell:<width$}"))
                .collect();
            padded.join("  ").trim_end().to_owned() + "\n"
        };
        let mut text = render(&self.header);
        let rule: Vec<String> = widths.iter().map(|&width| "-".repeat(width)).collect();
        text += &render(&rule);
        for row in &self.rows {
            text += &render(row);
        }
        text
    }

    /// A GitHub-flavoured Markdown table.
    pub fn to_markdown(&self) -> String {
        let render = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
        let mut text = render(&self.header);
        text += &render(&vec!["---".to_owned(); self.header.len()]);
        for row in &self.rows {
            text += &render(row);
        }
        text
    }
}

/// Makes `dir` an empty directory (a run's output directory).
pub fn fresh_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("remove {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))
}

/// Writes a file, creating its directory.
pub fn write_file(path: &Path, contents: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    std::fs::write(path, contents).with_context(|| format!("write {}", path.display()))
}

/// Writes a JSON document, pretty-printed.
pub fn write_json(path: &Path, document: &serde_json::Value) -> Result<()> {
    write_file(path, &(serde_json::to_string_pretty(document)? + "\n"))
}

/// Bytes as MiB with one decimal.
pub fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::Table;

    #[test]
    fn tables_align_and_render_markdown() {
        let mut table = Table::new(&["name", "lost"]);
        table.row(vec!["steady-0".to_owned(), "0".to_owned()]);
        assert_eq!(
            table.to_text(),
            "name      lost\n--------  ----\nsteady-0  0\n"
        );
        assert_eq!(
            table.to_markdown(),
            "| name | lost |\n| --- | --- |\n| steady-0 | 0 |\n"
        );
    }
}
