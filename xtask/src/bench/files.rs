//! File mode against the API path, one run, side by side.
//!
//! - Catch-up: one container writes its history (2 M lines of 100 B; `--quick`: 200 k) and
//!   stays alive; then the raw API reader, the capturer with `read_mode = "api"` and the
//!   capturer with `read_mode = "files"` each read all of it to the file sink (fresh data dirs).
//!   Figures: host CPU per line (dockerd's CPU during the run plus the capturer's), and the
//!   catch-up rate: lines over the time from the capturer's spawn (the raw reader's connect)
//!   until the sink holds the last line; the time from the first line to the last is shown
//!   too.
//! - Live (`live.rs`): the capturer (api, then files; and none, for the baseline) follows N
//!   containers that write as fast as dockerd takes their lines. Figures: the capture rate
//!   against the daemon's ingest rate in the same run, both on Docker's clock, the ingest rate
//!   against the daemon's alone (how much the capturer's CPU slowed the writers), and dockerd's
//!   CPU per line beyond the baseline run's; after each run, every line in the sink is counted
//!   against what the writers wrote (lost, duplicated).
//! - Paced (`paced.rs`): what following costs the daemon, the target's figure: dockerd's CPU
//!   per line while 10 containers write 10 000 lines/s each, in windows of one run with no
//!   capturer, the capturer in file mode and on the API path.
//!
//! dockerd's CPU is that of the daemon `$DOCKER_HOST` names. On a daemon other work shares (other
//! users' containers, tests, builds) it counts their work too: for the dockerd figures run the
//! bench against a private daemon (`DOCKER_HOST=unix:///tmp/<name>/docker.sock`).

mod live;
mod paced;

use anyhow::Result;
use serde_json::json;

use super::{
    Bench, LABEL_KEY, SectionResult, Target,
    stream::{capture_phase, generate, raw_phase},
};
use test_support::report::Table;

/// Host CPU per line in file mode while catching up, at most (µs).
const HOST_CPU_TARGET_US: f64 = 1.5;
/// Catch-up rate in file mode, at least (lines per second).
const CATCH_UP_TARGET: f64 = 1_000_000.0;

pub(crate) fn run(bench: &Bench) -> Result<SectionResult> {
    let mut table = Table::new(&["figure", "raw API reader", "api", "files"]);
    let mut targets = Vec::new();
    let catch_up = catch_up(bench, &mut table, &mut targets)?;
    let live = live::live(bench, &mut table, &mut targets)?;
    let paced = paced::paced(bench, &mut table, &mut targets)?;
    Ok(SectionResult {
        figures: json!({ "catch_up": catch_up, "live": live, "paced": paced }),
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
        "catch-up rate (start to last line)".to_owned(),
        format!("{:.0} lines/s", rate(raw.seconds)),
        format!("{:.0} lines/s", rate(api.seconds)),
        format!("{:.0} lines/s", rate(files.seconds)),
    ]);
    table.row(vec![
        "catch-up rate (first to last line)".to_owned(),
        "-".to_owned(),
        format!("{:.0} lines/s", rate(api.seconds - api.first_record)),
        format!("{:.0} lines/s", rate(files.seconds - files.first_record)),
    ]);
    targets.push(Target {
        figure: format!("file mode host CPU per line, catching up {lines} lines"),
        measured: format!("{:.2} us (api: {:.2})", host(&files), host(&api)),
        target: format!("<= {HOST_CPU_TARGET_US} us"),
        met: host(&files) <= HOST_CPU_TARGET_US,
    });
    // From the capturer's spawn (process start and discovery included) to the last line in
    // the sink: the wall time a user waits.
    let files_rate = rate(files.seconds);
    targets.push(Target {
        figure: format!("file mode catch-up rate, {lines} lines to the file sink"),
        measured: format!(
            "{files_rate:.0} lines/s ({:.2} s from start, first line after {:.2} s)",
            files.seconds, files.first_record
        ),
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
        "observer_cpu_seconds": phase.observer_cpu,
        "host_cpu_us_per_line": (phase.cpu + phase.dockerd_cpu) / lines as f64 * 1e6,
    })
}

/// `containers` writers of `lines` lines of 100 B each, at `rate` lines per second each (0: as
/// fast as dockerd takes them), that exit when done.
fn writer_specs(
    bench: &Bench,
    name: &str,
    containers: usize,
    lines: u64,
    rate: u64,
) -> Vec<Vec<String>> {
    (0..containers)
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
                "--rate",
                &rate.to_string(),
            ]
            .map(str::to_owned)
            .to_vec()
        })
        .collect()
}
