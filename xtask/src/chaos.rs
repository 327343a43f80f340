//! `cargo xtask chaos`: runs the chaos scenarios, the end-to-end test binary `tests/chaos`
//! (one test per scenario, what each measures is documented there and in `docs/guarantees.md`).
//!
//! Builds the release capturer, then runs the binary with nextest, one scenario at a time and
//! with their output shown (each prints `scenario lost=N dup=N recovered_in=Xs`), the options in
//! the environment (`LC_CHAOS_*`). The CI subset is the tests in the binary's `ci` module. Then
//! gathers each scenario's `target/chaos/<scenario>/outcome.json` of this run into
//! `target/chaos/report.{json,md}`.

use std::{path::Path, process::Command};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use test_support::report::{Table, write_file, write_json};

use crate::{
    docker as docker_daemon,
    flags::ChaosOptions,
    util::{build_release, cargo, project_root, run as run_command, run_id},
};

/// The chaos test binary, as nextest names it.
const BINARY: &str = "binary_id(end-to-end::chaos)";

pub(crate) fn run(options: ChaosOptions) -> Result<()> {
    let filter = filter(&options);
    if options.list {
        return list(&filter);
    }
    docker_daemon::ensure_daemon()?;
    let binary = match options.binary {
        Some(binary) => binary,
        None => build_release()?,
    };
    let run = run_id();
    let tests = run_command(
        nextest("run")
            .arg("--no-fail-fast")
            .args(["--no-capture", "--test-threads", "1", "--no-tests", "fail"])
            .args(["-E", &filter])
            .env("LC_CHAOS_BINARY", &binary)
            .env("LC_CHAOS_RUN", &run)
            .env("LC_CHAOS_CI", if options.ci { "1" } else { "" })
            .env("LC_CHAOS_READ_MODE", options.read_mode.unwrap_or_default()),
    );
    let out_root = project_root().join("target").join("chaos");
    let outcomes = outcomes(&out_root, &run)?;
    println!("\n{}", table(&outcomes, Some(TERMINAL_NOTES)).to_text());
    write_reports(&out_root, &run, options.ci, &outcomes)?;
    tests.context("chaos failed (see target/chaos/report.md)")?;
    if outcomes.is_empty() {
        bail!("chaos: no scenario reported an outcome");
    }
    eprintln!("chaos passed (target/chaos/report.md)");
    Ok(())
}

/// `cargo nextest <command>` on the chaos binary alone (outside the default filter).
fn nextest(command: &str) -> Command {
    let mut nextest = cargo();
    nextest
        .args([
            "nextest",
            command,
            "--package",
            "end-to-end",
            "--test",
            "chaos",
        ])
        .arg("--ignore-default-filter");
    nextest
}

/// Prints the scenarios `filter` selects by their command-line names, the CI subset marked.
fn list(filter: &str) -> Result<()> {
    let output = nextest("list")
        .args(["-E", filter])
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("cannot run cargo nextest list")?;
    if !output.status.success() {
        bail!("cargo nextest list failed: {}", output.status);
    }
    for test in String::from_utf8_lossy(&output.stdout).lines() {
        let test = test.rsplit(' ').next().unwrap_or_default();
        if let Some((group, name)) = test.split_once("::") {
            let ci = if group == "ci" { " (ci)" } else { "" };
            println!("{}{ci}", name.replace('_', "-"));
        }
    }
    Ok(())
}

/// The nextest filter: the named scenarios, else the CI subset or every scenario.
fn filter(options: &ChaosOptions) -> String {
    let scenarios = if !options.scenarios.is_empty() {
        let names: Vec<String> = options
            .scenarios
            .iter()
            .map(|name| format!("test(/::{}$/)", name.replace('-', "_")))
            .collect();
        names.join(" or ")
    } else if options.ci {
        "test(/^ci::/)".to_owned()
    } else {
        "test(/^(ci|full)::/)".to_owned()
    };
    format!("{BINARY} and ({scenarios})")
}

/// The outcomes the scenarios of run `run` wrote, by scenario name.
fn outcomes(out_root: &Path, run: &str) -> Result<Vec<Value>> {
    let mut outcomes = Vec::new();
    let Ok(entries) = std::fs::read_dir(out_root) else {
        return Ok(outcomes);
    };
    for entry in entries {
        let path = entry?.path().join("outcome.json");
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let outcome: Value =
            serde_json::from_str(&text).with_context(|| format!("read {}", path.display()))?;
        if outcome["run"] == run {
            outcomes.push(outcome);
        }
    }
    outcomes.sort_by_key(|outcome| outcome["scenario"].as_str().map(str::to_owned));
    Ok(outcomes)
}

/// How many characters of notes the terminal table shows (the reports have them all).
const TERMINAL_NOTES: usize = 160;

fn table(outcomes: &[Value], notes_limit: Option<usize>) -> Table {
    let mut table = Table::new(&[
        "scenario",
        "lost",
        "dup",
        "recovered_in",
        "verdict",
        "duration",
        "notes",
    ]);
    let text = |value: &Value| match value {
        Value::Null => "-".to_owned(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    let seconds = |value: &Value, decimals: usize| {
        value
            .as_f64()
            .map_or("-".to_owned(), |seconds| format!("{seconds:.decimals$}s"))
    };
    for outcome in outcomes {
        let notes: Vec<String> = outcome["notes"]
            .as_array()
            .map_or(Vec::new(), |notes| notes.iter().map(text).collect());
        let notes = notes.join("; ").replace('|', "/").replace('\n', " ");
        let notes = match notes_limit {
            Some(limit) if notes.chars().count() > limit => {
                notes.chars().take(limit).collect::<String>() + "..."
            }
            _ => notes,
        };
        table.row(vec![
            text(&outcome["scenario"]),
            text(&outcome["lost"]),
            text(&outcome["dup"]),
            seconds(&outcome["recovered_in_seconds"], 1),
            text(&outcome["verdict"]),
            seconds(&outcome["duration_seconds"], 0),
            notes,
        ]);
    }
    table
}

fn write_reports(out_root: &Path, run: &str, ci: bool, outcomes: &[Value]) -> Result<()> {
    let passed = !outcomes.is_empty() && outcomes.iter().all(|outcome| outcome["passed"] == true);
    write_json(
        &out_root.join("report.json"),
        &json!({ "run": run, "ci": ci, "passed": passed, "scenarios": outcomes }),
    )?;
    let markdown = format!(
        "# log-capturer chaos report\n\nRun `{run}`{}: {}.\n\n{}\n`pass*`: met its expectation \
         apart from the documented deviations noted.\n\nWhat each scenario measures and every \
         accepted deviation: `docs/guarantees.md`.\n",
        if ci { " (CI subset)" } else { "" },
        if passed {
            "every scenario met its expectation"
        } else {
            "FAILED"
        },
        table(outcomes, None).to_markdown()
    );
    write_file(&out_root.join("report.md"), &markdown)
}
