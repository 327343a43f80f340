//! The soak's verdicts and reports: `report.json`, `report.md`, `resources.svg` and the summary
//! printed at the end.

use std::{fmt::Write, path::Path};

use anyhow::Result;
use serde_json::{Value, json};

use test_support::ledger::Tally;

use super::{
    Observations, Sample, Verdict,
    checks::{RUNNING_REQUIRED_FROM_CHECK, Rule},
    generators, trends,
};
use test_support::report::{
    Table, mib,
    svg::{self, Panel},
    write_file, write_json,
};
use test_support::time::clock;

/// Every verdict of the run, in report order.
pub(crate) fn verdicts(observations: &Observations) -> Vec<Verdict> {
    let mut verdicts = Vec::new();
    let checks = &observations.checks;
    for rule in Rule::ALL {
        let first_problem = checks
            .iter()
            .flat_map(|check| &check.problems)
            .find(|problem| problem.rule == rule);
        let (mut passed, mut detail) = match first_problem {
            Some(problem) => (false, problem.text.clone()),
            None => (true, format!("held in all {} checks", checks.len())),
        };
        if rule == Rule::SomeTaskRunning && passed && checks.len() < RUNNING_REQUIRED_FROM_CHECK {
            passed = false;
            detail = format!(
                "only {} checks ran; {RUNNING_REQUIRED_FROM_CHECK} are needed",
                checks.len()
            );
        }
        if rule == Rule::FreshHeartbeats && passed {
            let worst = checks
                .iter()
                .filter_map(|check| check.worst_heartbeat_age)
                .max()
                .unwrap_or_default();
            detail = format!("oldest heartbeat seen {:.2}s", worst.as_secs_f64());
        }
        verdicts.push(Verdict {
            name: rule.title().to_owned(),
            passed,
            detail,
        });
    }
    for trend in trends(observations) {
        verdicts.push(Verdict {
            name: format!("no leak: {}", trend.name),
            passed: !trend.leaking,
            detail: format!(
                "{:+.2} {}/min over the 2nd half ({:+.1} {}); fails if {}",
                trend.slope_per_minute, trend.unit, trend.growth, trend.unit, trend.limit
            ),
        });
    }
    let accounting = &observations.accounting;
    let tallies = tallies(observations);
    let total = |field: fn(&Tally) -> u64| tallies.iter().map(|(_, t)| field(t)).sum::<u64>();
    let ours: Vec<&str> = generators(observations)
        .iter()
        .filter_map(|generator| generator.id.as_deref())
        .collect();
    let others = accounting.records_of_others(&ours);
    let foreign = accounting.foreign();
    let imperfect: Vec<&str> = tallies
        .iter()
        .filter(|(_, tally)| !tally.is_perfect())
        .map(|(tag, _)| tag.as_str())
        .collect();
    let lines_ok = imperfect.is_empty()
        && foreign == 0
        && accounting.malformed == 0
        && accounting.truncated() == 0
        && others == 0
        && total(|t| t.expected) > 0;
    verdicts.push(Verdict {
        name: "every line exactly once, whole, in order".to_owned(),
        passed: lines_ok,
        detail: format!(
            "{} of {} lines; lost={} dup={} reordered={} wrong_stream={} wrong_size={} \
             foreign={foreign} malformed={} other_containers={others}{}",
            total(|t| t.received),
            total(|t| t.expected),
            total(|t| t.lost),
            total(|t| t.dup),
            total(|t| t.out_of_order),
            total(|t| t.wrong_stream),
            total(|t| t.wrong_size),
            accounting.malformed,
            if imperfect.is_empty() {
                String::new()
            } else {
                format!("; imperfect: {}", imperfect.join(", "))
            }
        ),
    });
    verdicts.push(Verdict {
        name: "drained after the generators stopped".to_owned(),
        passed: observations.drained.is_some(),
        detail: observations.drained.map_or_else(
            || {
                format!(
                    "{} of {} records",
                    accounting.records,
                    accounting.expected_total()
                )
            },
            |took| format!("in {:.1}s", took.as_secs_f64()),
        ),
    });
    verdicts.push(Verdict {
        name: "clean shutdown on SIGTERM (exit 0)".to_owned(),
        passed: observations.exit_code == Some(0) && observations.shutdown_error.is_none(),
        detail: match (&observations.exit_code, &observations.shutdown_error) {
            (_, Some(error)) => error.clone(),
            (Some(code), None) => format!("exit code {code}"),
            (None, None) => "unknown".to_owned(),
        },
    });
    verdicts.push(Verdict {
        name: "ran the full duration".to_owned(),
        passed: observations.aborted.is_none(),
        detail: observations
            .aborted
            .clone()
            .unwrap_or_else(|| format!("{:?}", observations.options.duration)),
    });
    verdicts
}

/// Each generator's tag and tally, for the generators that were started.
fn tallies(observations: &Observations) -> Vec<(String, Tally)> {
    generators(observations)
        .iter()
        .filter_map(|generator| {
            let id = generator.id.as_deref()?;
            Some((generator.tag.clone(), observations.accounting.tally_for(id)))
        })
        .collect()
}

fn container_table(observations: &Observations) -> Table {
    let mut table = Table::new(&[
        "container",
        "expected",
        "received",
        "lost",
        "dup",
        "reordered",
        "wrong stream",
        "wrong size",
        "restarts",
    ]);
    let restarts = |tag: &str| {
        generators(observations)
            .iter()
            .find(|generator| generator.tag == tag)
            .map_or(0, |generator| generator.restarts)
    };
    for (tag, tally) in tallies(observations) {
        table.row(vec![
            tag.clone(),
            tally.expected.to_string(),
            tally.received.to_string(),
            tally.lost.to_string(),
            tally.dup.to_string(),
            tally.out_of_order.to_string(),
            tally.wrong_stream.to_string(),
            tally.wrong_size.to_string(),
            restarts(&tag).to_string(),
        ]);
    }
    table
}

fn resource_table(observations: &Observations) -> Table {
    let mut table = Table::new(&[
        "figure",
        "start",
        "end",
        "slope (2nd half)",
        "leak if",
        "result",
    ]);
    for trend in trends(observations) {
        table.row(vec![
            format!("{} ({})", trend.name, trend.unit),
            format!("{:.1}", trend.start),
            format!("{:.1}", trend.end),
            format!("{:+.3}/min", trend.slope_per_minute),
            trend.limit.clone(),
            if trend.leaking { "LEAK" } else { "ok" }.to_owned(),
        ]);
    }
    table
}

fn verdict_table(verdicts: &[Verdict]) -> Table {
    let mut table = Table::new(&["check", "result", "detail"]);
    for verdict in verdicts {
        table.row(vec![
            verdict.name.clone(),
            if verdict.passed { "PASS" } else { "FAIL" }.to_owned(),
            verdict.detail.replace('|', "/"),
        ]);
    }
    table
}

/// Writes `report.json`, `report.md` and `resources.svg` into `dir`.
pub(crate) fn write_reports(
    dir: &Path,
    observations: &Observations,
    verdicts: &[Verdict],
) -> Result<()> {
    let passed = verdicts.iter().all(|verdict| verdict.passed);
    let options = &observations.options;
    let document = json!({
        "run_id": observations.run_id,
        "passed": passed,
        "options": {
            "duration_seconds": options.duration.as_secs_f64(),
            "containers": options.containers,
            "rate": options.rate,
            "heartbeat_interval_seconds": options.heartbeat_interval.as_secs_f64(),
            "task_timeout_seconds": options.task_timeout.as_secs_f64(),
            "check_interval_seconds": options.check_interval().as_secs_f64(),
            "sample_interval_seconds": options.sample_interval().as_secs_f64(),
        },
        "timeline": {
            "restart_interval_seconds": observations.plan.restart_interval.as_secs_f64(),
            "silent_for_seconds": observations.plan.silent_for.as_secs_f64(),
            "late_at_seconds": observations.plan.late_at.as_secs_f64(),
            "doomed_at_seconds": observations.plan.doomed_at.as_secs_f64(),
            "churn_at_seconds": observations.churn,
        },
        "verdicts": verdicts.iter().map(|verdict| json!({
            "name": verdict.name, "passed": verdict.passed, "detail": verdict.detail,
        })).collect::<Vec<_>>(),
        "containers": tallies(observations).iter().map(|(tag, tally)| json!({
            "container": tag,
            "expected": tally.expected,
            "received": tally.received,
            "records": tally.records,
            "lost": tally.lost,
            "dup": tally.dup,
            "reordered": tally.out_of_order,
            "wrong_stream": tally.wrong_stream,
            "wrong_size": tally.wrong_size,
        })).collect::<Vec<_>>(),
        "records": observations.accounting.records,
        "foreign_records": observations.accounting.foreign(),
        "malformed_records": observations.accounting.malformed,
        "resources": trends(observations).iter().map(|trend| trend.to_json()).collect::<Vec<_>>(),
        "checks": observations.checks.iter().map(|check| check.to_json()).collect::<Vec<_>>(),
        "samples": observations.samples.iter().map(sample_json).collect::<Vec<_>>(),
        "drain_seconds": observations.drained.map(|took| took.as_secs_f64()),
        "exit_code": observations.exit_code,
        "aborted": observations.aborted,
    });
    write_json(&dir.join("report.json"), &document)?;

    let mut markdown = String::new();
    let _ = writeln!(
        markdown,
        "# Soak {}: {}\n",
        observations.run_id,
        if passed { "PASSED" } else { "FAILED" }
    );
    let _ = writeln!(
        markdown,
        "{} with {} steady generators at {} lines/s, heartbeat interval {:?}, task timeout {:?}; \
         /health checked every {:?}, resources sampled every {:?}.\n",
        clock(options.duration),
        options.containers,
        options.rate,
        options.heartbeat_interval,
        options.task_timeout,
        options.check_interval(),
        options.sample_interval()
    );
    let _ = writeln!(
        markdown,
        "## Checks\n\n{}",
        verdict_table(verdicts).to_markdown()
    );
    let _ = writeln!(
        markdown,
        "## Lines per container\n\nExpected = what Docker kept (`docker logs`).\n\n{}",
        container_table(observations).to_markdown()
    );
    let _ = writeln!(
        markdown,
        "## Resources\n\n{}\n![resources](resources.svg)\n",
        resource_table(observations).to_markdown()
    );
    write_file(&dir.join("report.md"), &markdown)?;
    write_file(&dir.join("resources.svg"), &chart(observations))
}

fn sample_json(sample: &Sample) -> Value {
    json!({
        "elapsed_seconds": sample.elapsed,
        "rss_bytes": sample.rss_bytes,
        "open_fds": sample.open_fds,
        "tokio_alive_tasks": sample.tokio_tasks,
        "sink_buffered_events": sample.buffered_events,
        "lines_read": sample.lines_read,
        "records": sample.records,
        "lag": sample.lag(),
    })
}

fn chart(observations: &Observations) -> String {
    let in_minutes = observations.options.duration.as_secs() >= 300;
    let scale = if in_minutes { 60.0 } else { 1.0 };
    let series = |value: &dyn Fn(&Sample) -> Option<f64>| -> Vec<(f64, f64)> {
        observations
            .samples
            .iter()
            .filter_map(|sample| value(sample).map(|value| (sample.elapsed / scale, value)))
            .collect()
    };
    let panels = [
        Panel {
            title: "RSS (MiB)".to_owned(),
            points: series(&|sample| Some(sample.rss_bytes as f64 / (1024.0 * 1024.0))),
        },
        Panel {
            title: "open fds".to_owned(),
            points: series(&|sample| Some(sample.open_fds as f64)),
        },
        Panel {
            title: "tokio_alive_tasks".to_owned(),
            points: series(&|sample| sample.tokio_tasks),
        },
        Panel {
            title: "sink lag (lines read - records written)".to_owned(),
            points: series(&Sample::lag),
        },
    ];
    svg::render(
        &format!("log-capturer soak {}", observations.run_id),
        if in_minutes { "minutes" } else { "seconds" },
        &panels,
    )
}

/// Prints the per-container counts, the resources and the verdicts.
pub(crate) fn print_summary(observations: &Observations, verdicts: &[Verdict]) {
    println!("\nLines per container (expected = docker logs):");
    for (tag, tally) in tallies(observations) {
        println!(
            "  {tag:<10} expected={} received={} lost={} dup={} reordered={} wrong_size={}",
            tally.expected,
            tally.received,
            tally.lost,
            tally.dup,
            tally.out_of_order,
            tally.wrong_size
        );
    }
    if let (Some(first), Some(last)) = (observations.samples.first(), observations.samples.last()) {
        println!(
            "\nResources (RSS {} -> {}):\n{}",
            mib(first.rss_bytes as f64),
            mib(last.rss_bytes as f64),
            resource_table(observations).to_text()
        );
    }
    println!("Checks:\n{}", verdict_table(verdicts).to_text());
}
