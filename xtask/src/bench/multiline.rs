//! The cost of the multiline stage: the capturer's rate with a multiline rule on for every
//! container, against the same capturer without, over the same logs, in one session.
//!
//! Method. Generators write their lines first (as in [`super::stream`]); then the capturer reads
//! them all (`read_from = beginning`, a fresh data dir each time), timed from spawn until the
//! file sink holds every line, once per configuration, in this order: without multiline, with
//! the Java preset on every container (`match_names = ["*"]`: every line is checked, none starts
//! a trace), with a custom `start_pattern` regex on every container (a regex run per line), with
//! a rule that holds every line (each line starts an event that the next one ends: the copy and
//! the hand-over of every line), and without multiline again. The rates are compared with the
//! mean of the two runs without, which brackets the others in time. Loggen lines never join,
//! so every run writes the same records.

use anyhow::Result;
use serde_json::{Value, json};

use super::{
    Bench, SectionResult, Target,
    stream::{CaptureRun, capture, generate},
};
use crate::report::Table;

/// The target: with multiline on for every container, at least this fraction of the rate
/// without.
const MULTILINE_TARGET: f64 = 0.9;

/// The environment variable that sets `[[docker.multiline]]` (an inline TOML array).
const MULTILINE_ENV: &str = "LOG_CAPTURER_DOCKER_MULTILINE";

/// One configuration: its name, its rules (`None`: multiline off) and whether it has a target.
const CONFIGURATIONS: [(&str, Option<&str>, bool); 5] = [
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
    ("off (again)", None, false),
];

pub(crate) fn run(bench: &Bench) -> Result<SectionResult> {
    let (containers, lines) = if bench.quick {
        (10, 10_000)
    } else {
        (10, 100_000)
    };
    let expected = containers as u64 * lines;
    let (set, _ids) = generate(bench, "multiline", containers, lines)?;
    let mut runs = Vec::new();
    for (index, (name, rules, _)) in CONFIGURATIONS.iter().enumerate() {
        let mut config = bench.capturer_config(&format!("multiline-{index}"), set.label(), true)?;
        if let Some(rules) = rules {
            config
                .extra_env
                .push((MULTILINE_ENV.to_owned(), (*rules).to_owned()));
        }
        let run = capture(&config, expected)?;
        eprintln!(
            "multiline {name}: {:.2}s ({:.0} lines/s)",
            run.seconds,
            expected as f64 / run.seconds
        );
        runs.push(run);
    }
    drop(set);
    Ok(report(&runs, expected))
}

fn report(runs: &[CaptureRun], expected: u64) -> SectionResult {
    let lines = expected as f64;
    let offs: Vec<f64> = CONFIGURATIONS
        .iter()
        .zip(runs)
        .filter(|((_, rules, _), _)| rules.is_none())
        .map(|(_, run)| lines / run.seconds)
        .collect();
    let baseline = offs.iter().sum::<f64>() / offs.len() as f64;
    let mut table = Table::new(&["multiline", "lines/s", "vs off", "CPU us/line"]);
    let mut targets = Vec::new();
    let mut figures = Vec::new();
    for ((name, rules, has_target), run) in CONFIGURATIONS.iter().zip(runs) {
        let rate = lines / run.seconds;
        let ratio = rate / baseline;
        let per_line = run.cpu / lines * 1e6;
        table.row(vec![
            (*name).to_owned(),
            format!("{rate:.0}"),
            format!("{ratio:.2}"),
            format!("{per_line:.2}"),
        ]);
        figures.push(json!({
            "configuration": name,
            "rules": rules,
            "seconds_from_spawn": run.seconds,
            "seconds_first_to_last_record": run.first_to_last,
            "lines_per_second": rate,
            "ratio_to_off": ratio,
            "cpu_seconds": run.cpu,
            "cpu_us_per_line": per_line,
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
                       logs once per configuration, timed from spawn until the file sink holds \
                       every line; ratios against the mean of the two runs without multiline",
            "lines": expected,
            "off_lines_per_second": Value::from(baseline),
            "runs": figures,
        }),
        targets,
        table: Some(table),
    }
}
