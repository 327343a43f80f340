//! The sink pipeline's own benchmark, run as its example and quoted.
//!
//! `cargo run --release -p sink-pipeline --example pipeline_bench -- <N>` prints a final JSON line
//! with its figures; that object goes into the report as it is, and its numbers are printed.

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::{Bench, SectionResult};
use crate::util::cargo;
use test_support::report::Table;

pub(crate) fn run(bench: &Bench) -> Result<SectionResult> {
    let events: u64 = if bench.quick { 100_000 } else { 1_000_000 };
    let mut command = cargo();
    command.args([
        "run",
        "--release",
        "-p",
        "sink-pipeline",
        "--example",
        "pipeline_bench",
        "--",
        &events.to_string(),
    ]);
    eprintln!("$ {command:?}");
    let output = command
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("run the pipeline benchmark")?;
    if !output.status.success() {
        bail!("the pipeline benchmark failed: {}", output.status);
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .context("the pipeline benchmark printed nothing")?;
    let figures: Value =
        serde_json::from_str(last).with_context(|| format!("its last line is not JSON: {last}"))?;
    let mut table = Table::new(&["figure", "value"]);
    if let Some(object) = figures.as_object() {
        for (key, value) in object {
            table.row(vec![key.clone(), value.to_string()]);
        }
    }
    Ok(SectionResult {
        figures,
        targets: Vec::new(),
        table: Some(table),
    })
}
