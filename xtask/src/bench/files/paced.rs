//! dockerd's extra CPU per line while file mode follows live containers, measured in windows
//! of one run: 10 containers write 100 B lines at 10 000 lines/s each, and dockerd's CPU per
//! line Docker wrote is read over windows with no capturer, with the capturer reading files,
//! with none again, with the capturer on the API path, and with none again. A reader's figure
//! is its window against the mean of the two windows around it.
//!
//! Why windows of one run and not separate runs: at a paced rate dockerd's CPU per line
//! depends on how many lines each read of a container's pipe finds, which changes from run to
//! run (4.0 to 7.4 us per line over three runs with nobody reading, 2026-12-01), while windows
//! of one run with nobody reading agree to within 0.1-0.8 us. The windows with nobody reading
//! are shown, so the spread the figure stands on is in the report. The capturers start with no
//! saved state, so they follow from the end: no history is read in their window.

use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{Value, json};

use super::super::{Bench, LABEL_KEY, Target};
use test_support::{
    capturer::Capturer,
    docker::{self, ContainerSet},
    procfs,
    report::Table,
    wait,
};

/// Writers, and lines per second each.
const CONTAINERS: usize = 10;
const RATE: u64 = 10_000;
/// dockerd's extra CPU per followed line in file mode, at most (µs): "about zero".
const TARGET_US: f64 = 0.3;

/// dockerd's CPU per line (µs) in each window.
#[derive(Debug, Clone, Copy)]
struct Windows {
    alone: [f64; 3],
    files: f64,
    api: f64,
}

impl Windows {
    fn files_extra(&self) -> f64 {
        self.files - (self.alone[0] + self.alone[1]) / 2.0
    }

    fn api_extra(&self) -> f64 {
        self.api - (self.alone[1] + self.alone[2]) / 2.0
    }
}

pub(super) fn paced(bench: &Bench, table: &mut Table, targets: &mut Vec<Target>) -> Result<Value> {
    let window = Duration::from_secs(if bench.quick { 2 } else { 6 });
    let name = "files-paced";
    let set = ContainerSet::new(LABEL_KEY, format!("{}-{name}", bench.run_id));
    // Enough for the five windows and the capturers' starts and stops; removed when done.
    let lines = RATE * (5 * window.as_secs() + 60);
    let ids = set.run_many(&super::writer_specs(bench, name, CONTAINERS, lines, RATE))?;
    let meter = Meter::new(&ids)?;
    // The writers settle first.
    std::thread::sleep(Duration::from_secs(2));
    let alone0 = meter.window(window)?;
    let files = following(bench, &set, "files", || meter.window(window))?;
    let alone1 = meter.window(window)?;
    let api = following(bench, &set, "api", || meter.window(window))?;
    let alone2 = meter.window(window)?;
    drop(set);
    let windows = Windows {
        alone: [alone0, alone1, alone2],
        files,
        api,
    };
    eprintln!("{name}: {windows:?}");
    rows(table, targets, &windows);
    Ok(json!({
        "method": "10 writers at 10 000 lines/s each; dockerd CPU per line Docker wrote, in \
                   windows of one run: alone, files, alone, api, alone; a reader's extra is its \
                   window minus the mean of the two around it",
        "window_seconds": window.as_secs(),
        "alone_us_per_line": windows.alone,
        "files_us_per_line": windows.files,
        "api_us_per_line": windows.api,
        "files_extra_us_per_line": windows.files_extra(),
        "api_extra_us_per_line": windows.api_extra(),
    }))
}

fn rows(table: &mut Table, targets: &mut Vec<Target>, windows: &Windows) {
    let [a0, a1, a2] = windows.alone;
    table.row(vec![
        format!(
            "paced {CONTAINERS} x {RATE} lines/s: dockerd CPU per line (windows alone: {a0:.2} / {a1:.2} / {a2:.2} us)"
        ),
        "-".to_owned(),
        format!("{:.2} us ({:+.2})", windows.api, windows.api_extra()),
        format!("{:.2} us ({:+.2})", windows.files, windows.files_extra()),
    ]);
    targets.push(Target {
        figure: format!(
            "file mode extra dockerd CPU per line, {CONTAINERS} containers at {RATE} lines/s"
        ),
        measured: format!(
            "{:+.2} us (api: {:+.2}; windows alone {a0:.2} / {a1:.2} / {a2:.2} us)",
            windows.files_extra(),
            windows.api_extra()
        ),
        target: format!("<= {TARGET_US} us"),
        met: windows.files_extra() <= TARGET_US,
    });
}

/// Runs `measure` while a capturer in `mode` follows every writer, then stops it.
fn following(
    bench: &Bench,
    set: &ContainerSet,
    mode: &str,
    measure: impl FnOnce() -> Result<f64>,
) -> Result<f64> {
    let name = format!("files-paced-{mode}");
    let mut config = bench.capturer_config(&name, set.label(), false)?;
    config
        .extra_env
        .push(("LOG_CAPTURER_DOCKER_READ_MODE".to_owned(), mode.to_owned()));
    let capturer = Capturer::spawn(&config)?;
    wait::until(
        Duration::from_secs(30),
        "the capturer following every writer",
        || Ok(capturer.container_tasks_in("running")? >= CONTAINERS),
    )?;
    // Its first reads are done.
    std::thread::sleep(Duration::from_secs(1));
    let figure = measure()?;
    capturer.stop(Duration::from_secs(30))?;
    Ok(figure)
}

/// dockerd's CPU and the lines Docker wrote to the writers' log files.
struct Meter {
    dockerd: u32,
    paths: Vec<String>,
    bytes_per_line: f64,
}

impl Meter {
    fn new(ids: &[String]) -> Result<Meter> {
        let mut inspect = vec!["inspect", "--format", "{{.LogPath}}"];
        inspect.extend(ids.iter().map(String::as_str));
        let paths: Vec<String> = docker::cli(&inspect)?
            .lines()
            .map(|line| line.trim().to_owned())
            .collect();
        let first = paths.first().context("no writer")?;
        // A json-file line of a 100 B message: Docker's time varies by a byte or two.
        let mut first_line = None;
        wait::until_every(
            Duration::from_millis(50),
            Duration::from_secs(30),
            "the first writer's first line",
            || {
                first_line = first_line_len(first)?;
                Ok(first_line.is_some())
            },
        )?;
        let bytes_per_line = first_line.context("no first line")? as f64;
        Ok(Meter {
            dockerd: procfs::daemon_pid()?,
            paths,
            bytes_per_line,
        })
    }

    /// dockerd's CPU per line written over `window` (µs).
    fn window(&self, window: Duration) -> Result<f64> {
        let (cpu, bytes) = (procfs::cpu_seconds(self.dockerd)?, self.bytes()?);
        std::thread::sleep(window);
        let cpu = procfs::cpu_seconds(self.dockerd)? - cpu;
        let lines = (self.bytes()? - bytes) as f64 / self.bytes_per_line;
        Ok(cpu / lines.max(1.0) * 1e6)
    }

    fn bytes(&self) -> Result<u64> {
        self.paths
            .iter()
            .map(|path| {
                Ok(std::fs::metadata(path)
                    .with_context(|| format!("stat {path}"))?
                    .len())
            })
            .sum()
    }
}

/// The length of the first line of `path` with its newline, once it has one.
fn first_line_len(path: &str) -> Result<Option<usize>> {
    use std::io::Read;
    let mut head = Vec::new();
    std::fs::File::open(path)
        .with_context(|| format!("open {path}"))?
        .take(64 * 1024)
        .read_to_end(&mut head)
        .with_context(|| format!("read {path}"))?;
    Ok(head
        .iter()
        .position(|byte| *byte == b'\n')
        .map(|end| end + 1))
}
