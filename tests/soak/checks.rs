//! The soak's verdicts: the periodic /health checks and the leak checks over the samples.
//!
//! /health, every check interval (the original verification, kept exactly, plus more):
//! - no `container_` task is `failed` (fails at once, as the original did);
//! - from the 13th check on, at least one `container_` task is `running` (the original);
//! - every generator that should be monitored has a `running` task (a restarted container and a
//!   newly started one get [`super::scenario::SETTLE`] to reappear; a removed one is not expected);
//! - no running task's `last_heartbeat` is older than two heartbeat intervals (measured against
//!   the document's own `timestamp`, so clocks cannot disagree);
//! - `task_failures_total` (summed over types) never changes from its first value;
//! - the document's `status` is not `unhealthy`.
//!
//! Leaks, over the samples of the second half of the run (start-up growth is not a leak), as the
//! least-squares slope and the growth that slope implies across that half:
//! - RSS: a leak when the slope exceeds [`RSS_SLOPE_LIMIT_MIB_PER_MIN`] AND the growth exceeds
//!   [`RSS_GROWTH_LIMIT`] of the value at the half's start (both: a small process may grow a lot
//!   relative to itself without mattering, a big one a lot in bytes within noise);
//! - open fds: growth beyond [`FD_ALLOWANCE`] plus [`FD_PER_CHURN`] per container restarted,
//!   created or removed during that half (each can hold a connection while it settles);
//! - `tokio_alive_tasks`: growth beyond [`TASK_ALLOWANCE`] plus [`TASKS_PER_CHURN`] per churn;
//! - sink lag (lines read minus records written): growth beyond [`LAG_ALLOWANCE_LINES`] or ten
//!   seconds of the generators' total rate, whichever is more: the capturer falling behind.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::scenario::Generator;
use test_support::report::stats::slope;
use test_support::{
    capturer::each_container_task,
    metrics::Metrics,
    time::{now_unix_nanos, parse_rfc3339_nanos},
};

/// RSS slope beyond which (together with [`RSS_GROWTH_LIMIT`]) memory leaks.
pub(crate) const RSS_SLOPE_LIMIT_MIB_PER_MIN: f64 = 1.0;
/// RSS growth over the second half, relative to its start, beyond which memory leaks.
pub(crate) const RSS_GROWTH_LIMIT: f64 = 0.10;
/// Open-fd growth over the second half tolerated without any container churn.
pub(crate) const FD_ALLOWANCE: f64 = 4.0;
/// Extra open-fd growth tolerated per container event in the second half.
pub(crate) const FD_PER_CHURN: f64 = 2.0;
/// Runtime-task growth over the second half tolerated without any container churn.
pub(crate) const TASK_ALLOWANCE: f64 = 8.0;
/// Extra runtime-task growth tolerated per container event in the second half.
pub(crate) const TASKS_PER_CHURN: f64 = 4.0;
/// Sink-lag growth over the second half tolerated (or ten seconds of lines, if more).
pub(crate) const LAG_ALLOWANCE_LINES: f64 = 5000.0;
/// The check from which on (1-based) some container task must be running: the original's 13th
/// check, 6.5 minutes into a 10-minute run, past the old 5-minute task timeout.
pub(crate) const RUNNING_REQUIRED_FROM_CHECK: usize = 13;

/// The rules a /health check enforces; each problem names the one it broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rule {
    NoFailedTask,
    SomeTaskRunning,
    EveryGeneratorRunning,
    FreshHeartbeats,
    NoTaskFailures,
    NotUnhealthy,
}

impl Rule {
    /// Every rule, in report order.
    pub(crate) const ALL: [Rule; 6] = [
        Rule::NoFailedTask,
        Rule::SomeTaskRunning,
        Rule::EveryGeneratorRunning,
        Rule::FreshHeartbeats,
        Rule::NoTaskFailures,
        Rule::NotUnhealthy,
    ];

    /// The rule in words, for reports.
    pub(crate) fn title(self) -> &'static str {
        match self {
            Rule::NoFailedTask => "no container task failed (original)",
            Rule::SomeTaskRunning => "a container task running from check 13 on (original)",
            Rule::EveryGeneratorRunning => "every monitored generator has a running task",
            Rule::FreshHeartbeats => "no heartbeat older than 2 heartbeat intervals",
            Rule::NoTaskFailures => "task_failures_total unchanged",
            Rule::NotUnhealthy => "/health answers 200, never unhealthy",
        }
    }
}

/// One broken rule, in words.
#[derive(Debug, Clone)]
pub(crate) struct Problem {
    pub(crate) rule: Rule,
    pub(crate) text: String,
}

/// One /health check.
#[derive(Debug, Clone)]
pub(crate) struct HealthCheck {
    /// 1-based, as the original numbered them.
    pub(crate) number: usize,
    pub(crate) elapsed: Duration,
    pub(crate) running: usize,
    pub(crate) failed: usize,
    pub(crate) worst_heartbeat_age: Option<Duration>,
    pub(crate) task_failures_total: f64,
    /// Each violated rule, in words; empty when the check held.
    pub(crate) problems: Vec<Problem>,
}

impl HealthCheck {
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "number": self.number,
            "elapsed_seconds": self.elapsed.as_secs_f64(),
            "running": self.running,
            "failed": self.failed,
            "worst_heartbeat_age_seconds": self.worst_heartbeat_age.map(|age| age.as_secs_f64()),
            "task_failures_total": self.task_failures_total,
            "problems": self.problems.iter().map(|problem| &problem.text).collect::<Vec<_>>(),
        })
    }
}

/// What a health check compares against.
#[derive(Debug)]
pub(crate) struct HealthContext<'a> {
    pub(crate) number: usize,
    pub(crate) elapsed: Duration,
    pub(crate) now: Instant,
    pub(crate) generators: &'a [Generator],
    pub(crate) heartbeat_interval: Duration,
    /// `task_failures_total` at the first check.
    pub(crate) failures_baseline: Option<f64>,
}

/// Evaluates one /health answer (status code and document) and one /metrics scrape.
pub(crate) fn health_check(
    context: &HealthContext<'_>,
    status_code: u16,
    health: &Value,
    metrics: &Metrics,
) -> HealthCheck {
    let mut problems = Vec::new();
    let mut problem = |rule: Rule, text: String| problems.push(Problem { rule, text });
    let tasks: Vec<&Value> = each_container_task(health).collect();
    let in_state = |state: &str| tasks.iter().filter(|task| task["state"] == state).count();
    let running = in_state("running");
    let failed = in_state("failed");

    // The original verification, unchanged.
    if failed > 0 {
        let names: Vec<&str> = tasks
            .iter()
            .filter(|task| task["state"] == "failed")
            .map(|task| task["name"].as_str().unwrap_or("?"))
            .collect();
        problem(
            Rule::NoFailedTask,
            format!("{failed} container task(s) failed: {}", names.join(", ")),
        );
    }
    if context.number >= RUNNING_REQUIRED_FROM_CHECK && running == 0 {
        problem(
            Rule::SomeTaskRunning,
            format!("check {}: no container task is running", context.number),
        );
    }

    // Every generator that should be monitored has a running task.
    for generator in context.generators {
        if !generator.expects_running_task(context.now) {
            continue;
        }
        let Some(id) = &generator.id else { continue };
        let task_id = format!("container_{id}");
        let state = tasks
            .iter()
            .find(|task| task["id"] == task_id.as_str())
            .and_then(|task| task["state"].as_str());
        if state != Some("running") {
            problem(
                Rule::EveryGeneratorRunning,
                format!(
                    "{}: no running task (state: {})",
                    generator.tag,
                    state.unwrap_or("absent")
                ),
            );
        }
    }

    // Heartbeats of running tasks, against the document's own clock.
    let now_nanos = health["timestamp"]
        .as_str()
        .and_then(parse_rfc3339_nanos)
        .unwrap_or_else(now_unix_nanos);
    let mut worst: Option<(Duration, String)> = None;
    for task in health["tasks"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        if task["state"] != "running" {
            continue;
        }
        let Some(beat) = task["last_heartbeat"]
            .as_str()
            .and_then(parse_rfc3339_nanos)
        else {
            continue;
        };
        let age = Duration::from_nanos(u64::try_from(now_nanos - beat).unwrap_or(0));
        if worst.as_ref().is_none_or(|(oldest, _)| age > *oldest) {
            let name = task["name"].as_str().or(task["id"].as_str()).unwrap_or("?");
            worst = Some((age, name.to_owned()));
        }
    }
    if let Some((age, name)) = &worst
        && *age > context.heartbeat_interval * 2
    {
        problem(
            Rule::FreshHeartbeats,
            format!(
                "task {name}: last heartbeat {:.1}s old (limit {:.1}s)",
                age.as_secs_f64(),
                (context.heartbeat_interval * 2).as_secs_f64()
            ),
        );
    }

    // Failures counted by the supervisor (absent until the first one).
    let failures = metrics.sum("task_failures_total", &[]).unwrap_or(0.0);
    if let Some(baseline) = context.failures_baseline
        && failures != baseline
    {
        problem(
            Rule::NoTaskFailures,
            format!("task_failures_total went from {baseline} to {failures}"),
        );
    }

    if status_code != 200 || health["status"] == "unhealthy" {
        problem(
            Rule::NotUnhealthy,
            format!(
                "/health answered {status_code} with status {}",
                health["status"]
            ),
        );
    }

    HealthCheck {
        number: context.number,
        elapsed: context.elapsed,
        running,
        failed,
        worst_heartbeat_age: worst.map(|(age, _)| age),
        task_failures_total: failures,
        problems,
    }
}

/// A resource series over the run and its leak verdict.
#[derive(Debug, Clone)]
pub(crate) struct Trend {
    pub(crate) name: &'static str,
    pub(crate) unit: &'static str,
    pub(crate) start: f64,
    pub(crate) end: f64,
    /// Least-squares slope over the second half, per minute.
    pub(crate) slope_per_minute: f64,
    /// The slope times the second half's span.
    pub(crate) growth: f64,
    /// The rule, in words.
    pub(crate) limit: String,
    pub(crate) leaking: bool,
}

impl Trend {
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "unit": self.unit,
            "start": self.start,
            "end": self.end,
            "slope_per_minute_second_half": self.slope_per_minute,
            "growth_second_half": self.growth,
            "limit": self.limit,
            "leaking": self.leaking,
        })
    }
}

/// How a series may grow before it counts as a leak.
#[derive(Debug, Clone, Copy)]
pub(crate) enum LeakRule {
    /// Slope per minute above the first AND growth above the second fraction of the start value.
    SlopeAndRelativeGrowth(f64, f64),
    /// Growth across the second half above this many units.
    AbsoluteGrowth(f64),
}

/// Fits `points` ((seconds, value), in time order) over the second half of `run_length`.
pub(crate) fn trend(
    name: &'static str,
    unit: &'static str,
    points: &[(f64, f64)],
    run_length: Duration,
    rule: LeakRule,
) -> Trend {
    let half = run_length.as_secs_f64() / 2.0;
    let second_half: Vec<(f64, f64)> = points.iter().copied().filter(|(t, _)| *t >= half).collect();
    let per_second = slope(&second_half);
    let span = match (second_half.first(), second_half.last()) {
        (Some(first), Some(last)) => last.0 - first.0,
        _ => 0.0,
    };
    let growth = per_second * span;
    let half_start = second_half.first().map_or(0.0, |(_, value)| *value);
    let (leaking, limit) = match rule {
        LeakRule::SlopeAndRelativeGrowth(slope_limit, growth_limit) => (
            per_second * 60.0 > slope_limit && growth > growth_limit * half_start,
            format!(
                "slope > {slope_limit} {unit}/min and growth > {:.0}%",
                growth_limit * 100.0
            ),
        ),
        LeakRule::AbsoluteGrowth(allowed) => (
            growth > allowed,
            format!("growth over 2nd half > {allowed:.0} {unit}"),
        ),
    };
    Trend {
        name,
        unit,
        start: points.first().map_or(0.0, |(_, value)| *value),
        end: points.last().map_or(0.0, |(_, value)| *value),
        slope_per_minute: per_second * 60.0,
        growth,
        limit,
        // Too few samples to fit say nothing either way.
        leaking: leaking && second_half.len() >= 6,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{LeakRule, trend};

    #[test]
    fn a_steady_climb_in_the_second_half_is_a_leak_and_start_up_growth_is_not() {
        let run = Duration::from_secs(600);
        // Grows fast during start-up, then flat with noise.
        let flat: Vec<(f64, f64)> = (0..120)
            .map(|i| {
                let t = f64::from(i) * 5.0;
                let value = if t < 120.0 {
                    10.0 + t / 12.0
                } else {
                    20.0 + f64::from(i % 2) * 0.1
                };
                (t, value)
            })
            .collect();
        assert!(
            !trend(
                "rss",
                "MiB",
                &flat,
                run,
                LeakRule::SlopeAndRelativeGrowth(1.0, 0.1)
            )
            .leaking
        );
        // Two MiB a minute, all along.
        let climbing: Vec<(f64, f64)> = (0..120)
            .map(|i| (f64::from(i) * 5.0, 20.0 + f64::from(i) * 5.0 / 30.0))
            .collect();
        let verdict = trend(
            "rss",
            "MiB",
            &climbing,
            run,
            LeakRule::SlopeAndRelativeGrowth(1.0, 0.1),
        );
        assert!(verdict.leaking, "{verdict:?}");
        assert!((verdict.slope_per_minute - 2.0).abs() < 1e-6);
        // Four fds more over the second half is within an allowance of 8.
        let fds: Vec<(f64, f64)> = (0..120)
            .map(|i| (f64::from(i) * 5.0, 30.0 + f64::from(i) / 30.0))
            .collect();
        assert!(!trend("fds", "fds", &fds, run, LeakRule::AbsoluteGrowth(8.0)).leaking);
        assert!(trend("fds", "fds", &fds, run, LeakRule::AbsoluteGrowth(1.0)).leaking);
    }
}
