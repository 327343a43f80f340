//! The cost of the multiline stage: the capturer's rate with a multiline rule on for every
//! container, against the same capturer without, over the same logs, in one session.
//!
//! Method. Generators write their lines first (as in [`super::stream`]); then the capturer reads
//! them all (`read_from = beginning`, a fresh data dir each time), timed from spawn until the
//! file sink holds every line, once per configuration: without multiline, with the Java preset
//! on every container (`match_names = ["*"]`: every line is checked, none starts a trace), with a
//! custom `start_pattern` regex on every container (a regex run per line), and with a rule that
//! holds every line (each line starts an event that the next one ends: the copy and the
//! hand-over of every line). The configurations run in turn, [`ROUNDS`] times, each round starting
//! one configuration later (so each runs once in each position: the first run of a round
//! measured slower), and each keeps its fastest run: on a shared machine, other work only ever
//! slows a run down, so the fastest is the one least disturbed. CPU time per line (the median run's) is reported beside. Loggen lines
//! never join, so every run writes the same records.

use anyhow::Result;
use serde_json::{Value, json};

use super::{
    Bench, SectionResult, Target,
    stream::{CaptureRun, capture, generate},
};
use test_support::report::Table;

/// The target: with multiline on for every container, at least this fraction of the rate
/// without.
const MULTILINE_TARGET: f64 = 0.9;

/// How many times each configuration runs (the fastest counts): once in each position.
const ROUNDS: usize = CONFIGURATIONS.len();

/// The environment variable that sets `[[docker.multiline]]` (an inline TOML array).
const MULTILINE_ENV: &str = "LOG_CAPTURER_DOCKER_MULTILINE";

/// One configuration: its name, its rules (`None`: multiline off) and whether it has a target.
const CONFIGURATIONS: [(&str, Option<&str>, bool); 4] = [
    ("off", None, false),
    (
        "java preset, every container",
        Some(r#"[{ name = "bench", match_names = ["*"], preset = "java" }]"#),
        true,
    ),
    (
        "start_pattern regex, every container",
        Some(
            r#"[{ name = "bench", match_names = ["*"], start_pattern = '^\d{4}-\d{2}-\d{2}[T ]' }]"#,
        ),
        true,
    ),
    (
        "every line held (worst case)",
        Some(r#"[{ name = "bench", match_names = ["*"], start_pattern = '^t\d+ ' }]"#),
        false,
    ),
];

pub(crate) fn run(bench: &Bench) -> Result<SectionResult> {
    let (containers, lines, rounds) = if bench.quick {
        (10, 10_000, 1)
    } else {
        (10, 100_000, ROUNDS)
    };
    let expected = containers as u64 * lines;
    let (set, _ids) = generate(bench, "multiline", containers, lines)?;
    let mut runs: Vec<Vec<CaptureRun>> = vec![Vec::new(); CONFIGURATIONS.len()];
    for round in 0..rounds {
        for turn in 0..CONFIGURATIONS.len() {
            let index = (round + turn) % CONFIGURATIONS.len();
            let (name, rules, _) = CONFIGURATIONS[index];
            let dir = format!("multiline-{round}-{index}");
            let mut config = bench.capturer_config(&dir, set.label(), true)?;
            if let Some(rules) = rules {
                config
                    .extra_env
                    .push((MULTILINE_ENV.to_owned(), rules.to_owned()));
            }
            let run = capture(&config, expected)?;
            eprintln!(
                "multiline round {round}, {name}: {:.2}s ({:.0} lines/s)",
                run.seconds,
                expected as f64 / run.seconds
            );
            runs[index].push(run);
        }
    }
    drop(set);
    Ok(report(&runs, expected))
}

/// One configuration's figures over its runs.
#[derive(Debug, Clone, Copy)]
struct Summary {
    /// The fastest run's rate.
    best_rate: f64,
    /// The median run's CPU time per line.
    cpu_us_per_line: f64,
}

fn summarize(runs: &[CaptureRun], lines: f64) -> Summary {
    let best_rate = runs
        .iter()
        .map(|run| lines / run.seconds)
        .fold(0.0, f64::max);
    let mut cpu: Vec<f64> = runs.iter().map(|run| run.cpu / lines * 1e6).collect();
    cpu.sort_by(f64::total_cmp);
    Summary {
        best_rate,
        cpu_us_per_line: cpu.get(cpu.len() / 2).copied().unwrap_or(0.0),
    }
}

fn report(runs: &[Vec<CaptureRun>], expected: u64) -> SectionResult {
    let lines = expected as f64;
    let summaries: Vec<Summary> = runs.iter().map(|runs| summarize(runs, lines)).collect();
    let off = summaries[0];
    let mut table = Table::new(&[
        "multiline",
        "lines/s (best)",
        "vs off",
        "CPU us/line (median)",
        "vs off",
    ]);
    let mut targets = Vec::new();
    let mut figures = Vec::new();
    for (((name, rules, has_target), summary), runs) in
        CONFIGURATIONS.iter().zip(&summaries).zip(runs)
    {
        let ratio = summary.best_rate / off.best_rate;
        let cpu_ratio = summary.cpu_us_per_line / off.cpu_us_per_line;
        table.row(vec![
            (*name).to_owned(),
            format!("{:.0}", summary.best_rate),
            format!("{ratio:.2}"),
            format!("{:.2}", summary.cpu_us_per_line),
            format!("{cpu_ratio:.2}"),
        ]);
        figures.push(json!({
            "configuration": name,
            "rules": rules,
            "best_lines_per_second": summary.best_rate,
            "ratio_to_off": ratio,
            "median_cpu_us_per_line": summary.cpu_us_per_line,
            "cpu_ratio_to_off": cpu_ratio,
            "seconds_from_spawn": runs.iter().map(|run| run.seconds).collect::<Vec<_>>(),
            "cpu_seconds": runs.iter().map(|run| run.cpu).collect::<Vec<_>>(),
        }));
        if *has_target {
            targets.push(Target {
                figure: format!("multiline ({name}) vs off, {expected} lines"),
                measured: format!("{ratio:.2}x"),
                target: format!(">= {MULTILINE_TARGET}x"),
                met: ratio >= MULTILINE_TARGET,
            });
        }
    }
    SectionResult {
        figures: json!({
            "method": "generators finish first; the capturer (read_from=beginning) reads the same \
                       logs once per configuration and round, timed from spawn until the file \
                       sink holds every line; each configuration keeps its fastest run",
            "lines": expected,
            "rounds": runs.first().map_or(0, Vec::len),
            "off_lines_per_second": Value::from(off.best_rate),
            "runs": figures,
        }),
        targets,
        table: Some(table),
    }
}
