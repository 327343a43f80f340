//! Live capture: N containers write as fast as dockerd takes their lines, then exit; the
//! capturer (api, then files) follows them, and a run without a capturer is the baseline.
//!
//! Times come from Docker's own clock, not from polling: a run's lines start at the earliest
//! `State.StartedAt` of its containers and end at the timestamp Docker gave the last line
//! (`docker logs --timestamps --tail 1`). So
//! - the daemon's *ingest rate* is the lines over that span (in the baseline: what dockerd
//!   takes with nobody reading; in a capture run: what it took while the capturer read, so a
//!   capturer that slows the writers shows there);
//! - the *capture rate* is the lines over the span from the first start until the file sink
//!   held every line (the sink's files are read every 10 ms as they grow), and the *lag* is how
//!   long after Docker's last line the sink had it.
//!
//! The target compares the capture rate in file mode with the daemon's ingest rate in the same
//! run: whether the capturer keeps up with what dockerd takes (the API path does not: dockerd
//! serving the logs API is the limit). The baseline's ingest rate (nobody reading) is shown
//! beside it, and how much the capturer slowed the writers: on a machine whose cores the writers
//! and dockerd saturate, any reader's CPU slows them. Runs last several seconds, so the lag at
//! the end (a batch's latency, in the table) does not stand for a rate. dockerd's CPU is
//! measured from the first `docker run` until the sink (the baseline: `docker wait`) has every
//! line; the extra CPU per line is the difference with the baseline's.
//!
//! The target on dockerd's extra CPU is measured with paced writers in windows of one run
//! (`paced.rs`). With writers as fast as dockerd takes their lines, the two cores are saturated
//! and any reader's CPU slows the writers and changes how dockerd's copier batches their pipes,
//! so the difference between separate runs spreads by more than the target (-0.1 to 0.6 us
//! per line over this project's runs, with no change on either side); it is shown in the table.

use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{Value, json};

use super::{Bench, LABEL_KEY, Target};
use test_support::report::Table;
use test_support::{
    capturer::Capturer,
    checker::LineChecker,
    docker::{self, ContainerSet},
    procfs,
    tail::FileTail,
    time::{now_unix_nanos, parse_rfc3339_nanos},
    wait,
};

/// The capture rate in file mode against the daemon's ingest rate in the same run, at least.
const LIVE_RATE_TARGET: f64 = 0.95;
/// How often the sink's files are read while waiting for the last line.
const POLL: Duration = Duration::from_millis(10);

/// One live run's figures.
#[derive(Debug, Clone, Copy)]
struct LiveRun {
    lines: u64,
    /// Docker's span: the first container's start to the last line's timestamp (seconds).
    ingest: f64,
    /// The first container's start until the sink held every line; `None` without a capturer.
    capture: Option<f64>,
    dockerd_cpu: f64,
    capturer_cpu: f64,
    /// This process's CPU seconds (reading the sink's files) during the run.
    observer_cpu: f64,
    /// Lines lost and duplicated in the sink, counted after the run; `None` without a capturer.
    counted: Option<(u64, u64)>,
}

impl LiveRun {
    fn ingest_rate(&self) -> f64 {
        self.lines as f64 / self.ingest.max(1e-9)
    }

    fn capture_rate(&self) -> f64 {
        self.lines as f64 / self.capture.unwrap_or(f64::INFINITY).max(1e-9)
    }

    /// How long after Docker's last line the sink held it (seconds).
    fn lag(&self) -> f64 {
        self.capture.map_or(0.0, |capture| capture - self.ingest)
    }

    fn to_json(self) -> Value {
        json!({
            "ingest_seconds": self.ingest,
            "ingest_lines_per_second": self.ingest_rate(),
            "capture_seconds": self.capture,
            "capture_lines_per_second": self.capture.map(|_| self.capture_rate()),
            "dockerd_cpu_seconds": self.dockerd_cpu,
            "capturer_cpu_seconds": self.capturer_cpu,
            "observer_cpu_seconds": self.observer_cpu,
            "lost": self.counted.map(|(lost, _)| lost),
            "duplicated": self.counted.map(|(_, dup)| dup),
        })
    }
}

pub(super) fn live(bench: &Bench, table: &mut Table, targets: &mut Vec<Target>) -> Result<Value> {
    let counts: &[(usize, u64)] = if bench.quick {
        &[(1, 100_000), (10, 10_000)]
    } else {
        &[(1, 2_000_000), (10, 200_000), (50, 20_000)]
    };
    let mut figures = Vec::new();
    for &(containers, lines) in counts {
        let baseline = live_run(bench, containers, lines, None)?;
        let api = live_run(bench, containers, lines, Some("api"))?;
        let files = live_run(bench, containers, lines, Some("files"))?;
        rows(table, targets, containers, lines, [&baseline, &api, &files]);
        figures.push(json!({
            "containers": containers, "lines_each": lines,
            "baseline": baseline.to_json(), "api": api.to_json(), "files": files.to_json(),
        }));
    }
    Ok(json!({
        "method": "writers exit after their lines; times from Docker (first State.StartedAt, \
                   last line's timestamp) and from the sink's last line; dockerd CPU from the \
                   first docker run until every line is in the sink (baseline: docker wait)",
        "runs": figures,
    }))
}

/// The table rows and targets of one count.
fn rows(
    table: &mut Table,
    targets: &mut Vec<Target>,
    containers: usize,
    lines: u64,
    [baseline, api, files]: [&LiveRun; 3],
) {
    let total = baseline.lines as f64;
    let extra = |run: &LiveRun| (run.dockerd_cpu - baseline.dockerd_cpu) / total * 1e6;
    let label = format!("live {containers} x {lines}");
    table.row(vec![
        format!(
            "{label}: capture rate, lag (daemon alone: {:.0}/s)",
            baseline.ingest_rate()
        ),
        "-".to_owned(),
        format!("{:.0} lines/s, {:.2} s", api.capture_rate(), api.lag()),
        format!("{:.0} lines/s, {:.2} s", files.capture_rate(), files.lag()),
    ]);
    table.row(vec![
        format!("{label}: daemon ingest rate meanwhile"),
        "-".to_owned(),
        format!("{:.0} lines/s", api.ingest_rate()),
        format!("{:.0} lines/s", files.ingest_rate()),
    ]);
    let slowed = |run: &LiveRun| run.ingest_rate() / baseline.ingest_rate().max(1e-9);
    table.row(vec![
        format!("{label}: ingest rate against the daemon alone"),
        "-".to_owned(),
        format!("{:.2}x", slowed(api)),
        format!("{:.2}x", slowed(files)),
    ]);
    table.row(vec![
        format!("{label}: extra dockerd CPU per line"),
        "-".to_owned(),
        format!("{:.2} us", extra(api)),
        format!("{:.2} us", extra(files)),
    ]);
    targets.push(Target {
        figure: format!("file mode live rate, {containers} containers"),
        measured: format!(
            "{:.0} lines/s = {:.2}x the daemon's {:.0} (alone: {:.0}); lag {:.2} s; {}",
            files.capture_rate(),
            files.capture_rate() / files.ingest_rate().max(1e-9),
            files.ingest_rate(),
            baseline.ingest_rate(),
            files.lag(),
            counted(files.counted)
        ),
        target: format!(">= {LIVE_RATE_TARGET}x the daemon's ingest rate, lost=0 dup=0"),
        met: files.capture_rate() >= LIVE_RATE_TARGET * files.ingest_rate()
            && files.counted == Some((0, 0)),
    });
}

fn live_run(bench: &Bench, containers: usize, lines: u64, mode: Option<&str>) -> Result<LiveRun> {
    let name = format!("files-live-{containers}x{lines}-{}", mode.unwrap_or("none"));
    let set = ContainerSet::new(LABEL_KEY, format!("{}-{name}", bench.run_id));
    let capturer = match mode {
        Some(mode) => Some(spawn_capturer(bench, &name, &set, mode)?),
        None => None,
    };
    let dockerd = procfs::daemon_pid()?;
    let cpu_before = procfs::cpu_seconds(dockerd)?;
    let observer_before = procfs::cpu_seconds(std::process::id())?;
    let ids = set.run_many(&super::writer_specs(bench, &name, containers, lines, 0))?;
    let total = containers as u64 * lines;
    let done = match &capturer {
        Some(capturer) => Some(wait_records(capturer, total)?),
        None => {
            let mut wait = vec!["wait"];
            wait.extend(ids.iter().map(String::as_str));
            docker::cli(&wait)?;
            None
        }
    };
    let dockerd_cpu = procfs::cpu_seconds(dockerd)? - cpu_before;
    let observer_cpu = procfs::cpu_seconds(std::process::id())? - observer_before;
    let capturer_cpu = match &capturer {
        Some(capturer) => procfs::cpu_seconds(capturer.pid())?,
        None => 0.0,
    };
    let counted = match capturer {
        Some(capturer) => {
            let records = capturer.records_path();
            capturer.stop(Duration::from_secs(30))?;
            Some(count_sink(records, &ids, lines)?)
        }
        None => None,
    };
    let (first, last) = docker_span(&ids)?;
    drop(set);
    let run = LiveRun {
        lines: total,
        ingest: (last - first) as f64 / 1e9,
        capture: done.map(|done| (done - first) as f64 / 1e9),
        dockerd_cpu,
        capturer_cpu,
        observer_cpu,
        counted,
    };
    eprintln!(
        "{name}: ingest {:.2}s, capture {:?}, dockerd {dockerd_cpu:.2}s CPU, capturer {capturer_cpu:.2}s, observer {observer_cpu:.2}s",
        run.ingest, run.capture
    );
    Ok(run)
}

fn spawn_capturer(bench: &Bench, name: &str, set: &ContainerSet, mode: &str) -> Result<Capturer> {
    let mut config = bench.capturer_config(name, set.label(), false)?;
    config
        .extra_env
        .push(("LOG_CAPTURER_DOCKER_READ_MODE".to_owned(), mode.to_owned()));
    // The default file sink, keeping every record of the run until it is counted: 2 M records
    // are about 700 MB, more than its default 5 rotated files of 100 MB.
    let sink = bench.out_dir.join(format!("config-{name}.toml"));
    let records = config.data_dir.join("logs").join("containers.jsonl");
    std::fs::write(
        &sink,
        format!(
            "[[sinks]]\ntype = \"file\"\npath = {:?}\nmax_files = 20\n",
            records.display().to_string()
        ),
    )
    .with_context(|| format!("write {}", sink.display()))?;
    config
        .extra_env
        .push(("LOG_CAPTURER_CONFIG".to_owned(), sink.display().to_string()));
    let capturer = Capturer::spawn(&config)?;
    // Discovery done before the writers start.
    std::thread::sleep(Duration::from_secs(2));
    Ok(capturer)
}

/// The earliest start of the containers and the latest timestamp of their last lines, in
/// nanoseconds since the epoch, as Docker recorded them.
fn docker_span(ids: &[String]) -> Result<(i128, i128)> {
    let mut inspect = vec!["inspect", "--format", "{{.State.StartedAt}}"];
    inspect.extend(ids.iter().map(String::as_str));
    let first = docker::cli(&inspect)?
        .lines()
        .map(|line| parse_rfc3339_nanos(line.trim()).context("a StartedAt that is no timestamp"))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .min()
        .context("no container")?;
    let mut last = first;
    for id in ids {
        let tail = docker::cli(&["logs", "--timestamps", "--tail", "1", id])?;
        let stamp = tail.split(' ').next().unwrap_or_default();
        last = last.max(
            parse_rfc3339_nanos(stamp)
                .with_context(|| format!("no timestamp on the last line of {id}: {tail:?}"))?,
        );
    }
    Ok((first, last))
}

fn counted(counted: Option<(u64, u64)>) -> String {
    counted.map_or("not counted".to_owned(), |(lost, dup)| {
        format!("lost={lost} dup={dup}")
    })
}

/// Every line in the capturer's file sink (`records`) against what the writers (tags `t0`,
/// `t1`, ...) wrote: (lost, duplicated). Read after the run: parsing millions of records
/// meanwhile would slow the run it measures.
fn count_sink(records: std::path::PathBuf, ids: &[String], lines: u64) -> Result<(u64, u64)> {
    let mut checker = LineChecker::default();
    for (index, id) in ids.iter().enumerate() {
        checker.expect(id, &format!("t{index}"), lines);
    }
    let mut malformed = 0u64;
    FileTail::from_oldest(records).poll(|line| {
        let record: Value = serde_json::from_slice(line).unwrap_or_default();
        match (
            record["container_id"].as_str(),
            record["stream"].as_str(),
            record["message"].as_str(),
        ) {
            (Some(id), Some(stream), Some(message)) => checker.record(id, stream, message),
            _ => malformed += 1,
        }
    })?;
    anyhow::ensure!(
        malformed == 0,
        "{malformed} sink records are not log records"
    );
    let report = checker.report();
    Ok((report.lost(), report.duplicated()))
}

/// Waits until the capturer's file sink holds `expected` lines (at least 2 minutes, more for
/// long runs); returns when it saw the last one (nanoseconds since the epoch).
fn wait_records(capturer: &Capturer, expected: u64) -> Result<i128> {
    // File mode can write faster than this tail polls: the sink may rotate before it looks.
    let mut tail = FileTail::from_oldest(capturer.records_path());
    let mut records = 0;
    let deadline = Duration::from_secs(120).max(Duration::from_secs(expected / 5_000));
    let what = format!("{expected} records");
    wait::until_every(POLL, deadline, &what, || {
        records += tail.poll(|_| {})?;
        Ok(records >= expected)
    })
    .map(|_| now_unix_nanos())
    .with_context(|| {
        format!(
            "the capturer delivered {records} of {expected} lines; its log:\n{}",
            capturer.log_tail()
        )
    })
}
