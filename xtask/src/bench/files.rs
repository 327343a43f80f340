//! File mode against the API path, one run, side by side.
//!
//! - Catch-up: one container writes its history (2 M lines of 100 B; `--quick`: 200 k) and
//!   stays alive; then the raw API reader, the capturer with `read_mode = "api"` and the
//!   capturer with `read_mode = "files"` each read all of it to the file sink (fresh data dirs).
//!   Figures: host CPU per line (dockerd's CPU during the run plus the capturer's), and the
//!   catch-up rate from the first record to the last.
//! - Live: the capturer (api, then files; and none, for the baseline) follows N containers that
//!   write as fast as dockerd takes their lines. Figures: the capture rate (lines over the time
//!   until the sink holds them all) and dockerd's CPU per line beyond the baseline run's (what
//!   following costs the daemon).

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::json;

use super::{
    Bench, LABEL_KEY, SectionResult, Target,
    stream::{capture_phase, generate, raw_phase, wait_written},
};
use test_support::report::Table;
use test_support::{capturer::Capturer, docker::ContainerSet, procfs, tail::FileTail, wait};

/// Host CPU per line in file mode while catching up, at most (µs).
const HOST_CPU_TARGET_US: f64 = 1.5;
/// Catch-up rate in file mode, at least (lines per second).
const CATCH_UP_TARGET: f64 = 1_000_000.0;
/// dockerd's extra CPU per followed line in file mode, at most (µs): "about zero".
const LIVE_DOCKERD_TARGET_US: f64 = 0.3;

pub(crate) fn run(bench: &Bench) -> Result<SectionResult> {
    let mut table = Table::new(&["figure", "raw API reader", "api", "files"]);
    let mut targets = Vec::new();
    let catch_up = catch_up(bench, &mut table, &mut targets)?;
    let live = live(bench, &mut table, &mut targets)?;
    Ok(SectionResult {
        figures: json!({ "catch_up": catch_up, "live": live }),
        targets,
        table: Some(table),
    })
}

fn catch_up(
    bench: &Bench,
    table: &mut Table,
    targets: &mut Vec<Target>,
) -> Result<serde_json::Value> {
    let lines: u64 = if bench.quick { 200_000 } else { 2_000_000 };
    let name = format!("files-catchup-{lines}");
    let (set, ids) = generate(bench, &name, 1, lines)?;
    let raw = raw_phase(&name, &ids, lines)?;
    let api = capture_phase(bench, &name, set.label(), lines, "api")?;
    let files = capture_phase(bench, &name, set.label(), lines, "files")?;
    drop(set);
    let per_line = |cpu: f64| cpu / lines as f64 * 1e6;
    let rate = |seconds: f64| lines as f64 / seconds.max(1e-9);
    let host = |phase: &super::stream::CapturePhase| per_line(phase.cpu + phase.dockerd_cpu);
    table.row(vec![
        format!("catch-up {lines} lines: host CPU per line"),
        format!("{:.2} us (dockerd only)", per_line(raw.dockerd_cpu)),
        format!("{:.2} us", host(&api)),
        format!("{:.2} us", host(&files)),
    ]);
    table.row(vec![
        "catch-up: agent / dockerd CPU per line".to_owned(),
        "-".to_owned(),
        format!(
            "{:.2} / {:.2} us",
            per_line(api.cpu),
            per_line(api.dockerd_cpu)
        ),
        format!(
            "{:.2} / {:.2} us",
            per_line(files.cpu),
            per_line(files.dockerd_cpu)
        ),
    ]);
    table.row(vec![
        "catch-up rate (first to last record)".to_owned(),
        format!("{:.0} lines/s", rate(raw.seconds)),
        format!("{:.0} lines/s", rate(api.seconds - api.first_record)),
        format!("{:.0} lines/s", rate(files.seconds - files.first_record)),
    ]);
    targets.push(Target {
        figure: format!("file mode host CPU per line, catching up {lines} lines"),
        measured: format!("{:.2} us (api: {:.2})", host(&files), host(&api)),
        target: format!("<= {HOST_CPU_TARGET_US} us"),
        met: host(&files) <= HOST_CPU_TARGET_US,
    });
    let files_rate = rate(files.seconds - files.first_record);
    targets.push(Target {
        figure: format!("file mode catch-up rate, {lines} lines to the file sink"),
        measured: format!("{files_rate:.0} lines/s"),
        target: format!(">= {CATCH_UP_TARGET:.0} lines/s"),
        met: files_rate >= CATCH_UP_TARGET,
    });
    Ok(json!({
        "lines": lines,
        "raw_reader": { "seconds": raw.seconds, "dockerd_cpu_seconds": raw.dockerd_cpu },
        "api": phase_json(&api, lines),
        "files": phase_json(&files, lines),
    }))
}

fn phase_json(phase: &super::stream::CapturePhase, lines: u64) -> serde_json::Value {
    json!({
        "seconds_from_spawn": phase.seconds,
        "seconds_first_to_last_record": phase.seconds - phase.first_record,
        "capturer_cpu_seconds": phase.cpu,
        "dockerd_cpu_seconds": phase.dockerd_cpu,
        "host_cpu_us_per_line": (phase.cpu + phase.dockerd_cpu) / lines as f64 * 1e6,
    })
}

/// One live run: `containers` writers of `lines` lines each, as fast as they can, followed by
/// the capturer in `mode` (`None`: no capturer, the baseline).
#[derive(Debug, Clone, Copy)]
struct LiveRun {
    /// From the writers' start until the sink (or, without a capturer, Docker) holds every line.
    seconds: f64,
    dockerd_cpu: f64,
    capturer_cpu: f64,
}

fn live(bench: &Bench, table: &mut Table, targets: &mut Vec<Target>) -> Result<serde_json::Value> {
    let counts: &[(usize, u64)] = if bench.quick {
        &[(1, 100_000), (10, 10_000)]
    } else {
        &[(1, 500_000), (10, 50_000), (50, 10_000)]
    };
    let mut figures = Vec::new();
    for &(containers, lines) in counts {
        let total = containers as u64 * lines;
        let baseline = live_run(bench, containers, lines, None)?;
        let api = live_run(bench, containers, lines, Some("api"))?;
        let files = live_run(bench, containers, lines, Some("files"))?;
        let extra = |run: &LiveRun| (run.dockerd_cpu - baseline.dockerd_cpu) / total as f64 * 1e6;
        let rate = |run: &LiveRun| total as f64 / run.seconds.max(1e-9);
        table.row(vec![
            format!(
                "live {containers} x {lines}: rate (daemon ingest: {:.0}/s)",
                rate(&baseline)
            ),
            "-".to_owned(),
            format!("{:.0} lines/s", rate(&api)),
            format!("{:.0} lines/s", rate(&files)),
        ]);
        table.row(vec![
            format!("live {containers} x {lines}: extra dockerd CPU per line"),
            "-".to_owned(),
            format!("{:.2} us", extra(&api)),
            format!("{:.2} us", extra(&files)),
        ]);
        targets.push(Target {
            figure: format!("file mode live rate, {containers} containers"),
            measured: format!(
                "{:.0} lines/s (daemon ingest {:.0})",
                rate(&files),
                rate(&baseline)
            ),
            target: ">= 0.95x the daemon's ingest rate".to_owned(),
            met: rate(&files) >= 0.95 * rate(&baseline),
        });
        targets.push(Target {
            figure: format!("file mode extra dockerd CPU per line, {containers} live containers"),
            measured: format!("{:.2} us (api: {:.2})", extra(&files), extra(&api)),
            target: format!("<= {LIVE_DOCKERD_TARGET_US} us"),
            met: extra(&files) <= LIVE_DOCKERD_TARGET_US,
        });
        figures.push(json!({
            "containers": containers, "lines_each": lines,
            "baseline": { "seconds": baseline.seconds, "dockerd_cpu_seconds": baseline.dockerd_cpu },
            "api": { "seconds": api.seconds, "dockerd_cpu_seconds": api.dockerd_cpu, "capturer_cpu_seconds": api.capturer_cpu },
            "files": { "seconds": files.seconds, "dockerd_cpu_seconds": files.dockerd_cpu, "capturer_cpu_seconds": files.capturer_cpu },
        }));
    }
    Ok(json!(figures))
}

fn live_run(bench: &Bench, containers: usize, lines: u64, mode: Option<&str>) -> Result<LiveRun> {
    let name = format!("files-live-{containers}x{lines}-{}", mode.unwrap_or("none"));
    let set = ContainerSet::new(LABEL_KEY, format!("{}-{name}", bench.run_id));
    let capturer = match mode {
        Some(mode) => {
            let mut config = bench.capturer_config(&name, set.label(), false)?;
            config
                .extra_env
                .push(("LOG_CAPTURER_DOCKER_READ_MODE".to_owned(), mode.to_owned()));
            let capturer = Capturer::spawn(&config)?;
            // Discovery done before the writers start.
            std::thread::sleep(Duration::from_secs(2));
            Some(capturer)
        }
        None => None,
    };
    let dockerd = procfs::pid_of("dockerd")?;
    let cpu_before = procfs::cpu_seconds(dockerd)?;
    let started = Instant::now();
    let specs: Vec<Vec<String>> = (0..containers)
        .map(|index| {
            [
                "--name",
                &format!("lcbench-{}-{name}-{index}", bench.run_id),
                bench.image,
                "--tag",
                &format!("t{index}"),
                "--lines",
                &lines.to_string(),
                "--size",
                "100",
                "--hold-secs",
                "-1",
            ]
            .map(str::to_owned)
            .to_vec()
        })
        .collect();
    let ids = set.run_many(&specs)?;
    let total = containers as u64 * lines;
    match &capturer {
        Some(capturer) => wait_records(capturer, total)?,
        None => {
            for id in &ids {
                wait_written(id, lines, Duration::from_millis(20))?;
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let dockerd_cpu = procfs::cpu_seconds(dockerd)? - cpu_before;
    let capturer_cpu = match &capturer {
        Some(capturer) => procfs::cpu_seconds(capturer.pid())?,
        None => 0.0,
    };
    eprintln!("{name}: {seconds:.2}s, dockerd {dockerd_cpu:.2}s CPU, capturer {capturer_cpu:.2}s");
    if let Some(capturer) = capturer {
        capturer.stop(Duration::from_secs(30))?;
    }
    drop(set);
    Ok(LiveRun {
        seconds,
        dockerd_cpu,
        capturer_cpu,
    })
}

/// Waits until the capturer's file sink holds `expected` records (at least 2 minutes, more for
/// long runs), polling often: it is part of the measured time.
fn wait_records(capturer: &Capturer, expected: u64) -> Result<()> {
    // File mode can write faster than this tail polls: the sink may rotate before it looks.
    let mut tail = FileTail::from_oldest(capturer.records_path());
    let mut records = 0;
    let deadline = Duration::from_secs(120).max(Duration::from_secs(expected / 5_000));
    let what = format!("{expected} records");
    let waited = wait::until_every(Duration::from_millis(10), deadline, &what, || {
        records += tail.poll(|_| {})?;
        Ok(records >= expected)
    });
    waited.map(drop).with_context(|| {
        format!(
            "the capturer delivered {records} of {expected} lines; its log:\n{}",
            capturer.log_tail()
        )
    })
}
