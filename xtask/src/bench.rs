//! `cargo xtask bench`: the capturer's figures, measured side by side on this machine.
//!
//! Sections (all by default; name some to run a subset), each in its own module:
//! - [`stream`] `throughput` and `cpu`: delivering finished containers' logs to the file sink,
//!   against a raw reader of the same Docker stream; CPU seconds against dockerd's.
//! - [`scale`] `scale`: RSS and open fds with 100 and 500 idle containers monitored.
//! - [`latency`] `latency`: Docker timestamp to file-sink write, p50/p99, at 20 k lines/s.
//! - [`multiline`] `multiline`: the capturer's rate with a multiline rule on every container,
//!   against the rate without.
//! - [`pipeline`] `pipeline`: the sink pipeline's own benchmark (an example of `sink-pipeline`).
//! - [`files`] `files`: file mode against the API path and the raw API reader: host CPU per line
//!   and rate catching up on history, rate and dockerd's extra CPU following live containers.
//!
//! `throughput` and `cpu` measure the API path (`read_mode = "api"`); `scale` measures the
//! default mode (`auto`: file mode when the bench runs as root).
//!
//! Each target is printed with PASS or MISS, including misses; the figures go to
//! `target/bench/report.json`. The command fails only when a section could not run; a MISS is a
//! measurement, not an error. Every container carries the label `log-capturer-bench=<run>` and is
//! removed when its section ends; the next run removes leftovers of an interrupted one.

mod files;
mod latency;
mod multiline;
mod pipeline;
mod scale;
mod stream;

use std::path::PathBuf;

use anyhow::{Result, bail};
use serde_json::{Map, Value, json};

use clap::ValueEnum;

use crate::{
    docker as daemon,
    flags::{BenchOptions, Section},
    util::{build_release, project_root, run_id},
};
use test_support::{
    capturer::CapturerConfig,
    docker::remove_labelled,
    report::{Table, fresh_dir, write_json},
};

/// The label key on every bench container; the value names the run and the section.
pub(crate) const LABEL_KEY: &str = "log-capturer-bench";

/// What every section needs.
#[derive(Debug)]
pub(crate) struct Bench {
    pub(crate) quick: bool,
    pub(crate) run_id: String,
    pub(crate) image: &'static str,
    pub(crate) binary: PathBuf,
    pub(crate) out_dir: PathBuf,
}

impl Bench {
    /// A capturer configuration on a fresh data dir named after `name`, watching `label`.
    pub(crate) fn capturer_config(
        &self,
        name: &str,
        label: String,
        read_from_beginning: bool,
    ) -> Result<CapturerConfig> {
        let data_dir = self.out_dir.join(format!("data-{name}"));
        fresh_dir(&data_dir)?;
        Ok(CapturerConfig {
            binary: self.binary.clone(),
            data_dir,
            include_label: label,
            heartbeat_interval: None,
            task_timeout: None,
            read_from_beginning,
            log_file: self.out_dir.join(format!("log-capturer-{name}.log")),
            extra_env: Vec::new(),
        })
    }
}

/// A target figure and whether it was met.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) figure: String,
    pub(crate) measured: String,
    pub(crate) target: String,
    pub(crate) met: bool,
}

impl Target {
    fn to_json(&self) -> Value {
        json!({
            "figure": self.figure,
            "measured": self.measured,
            "target": self.target,
            "result": if self.met { "PASS" } else { "MISS" },
        })
    }
}

/// What a section hands back: figures for the report, targets, and a table to print.
#[derive(Debug, Default)]
pub(crate) struct SectionResult {
    pub(crate) figures: Value,
    pub(crate) targets: Vec<Target>,
    pub(crate) table: Option<Table>,
}

pub(crate) fn run(options: &BenchOptions) -> Result<()> {
    let quick = options.quick;
    let mut sections = options.sections.clone();
    if sections.is_empty() {
        sections = Section::value_variants().to_vec();
    }
    let out_dir = project_root().join("target").join("bench");
    std::fs::create_dir_all(&out_dir)?;
    let needs_docker = sections.iter().any(|section| *section != Section::Pipeline);
    let (binary, image) = if needs_docker {
        daemon::ensure_daemon()?;
        let leftovers = remove_labelled(LABEL_KEY)?;
        if leftovers > 0 {
            eprintln!("removed {leftovers} container(s) left by an earlier bench run");
        }
        (build_release()?, test_support::docker::loggen_image())
    } else {
        (PathBuf::new(), "")
    };
    let bench = Bench {
        quick,
        run_id: run_id(),
        image,
        binary,
        out_dir: out_dir.clone(),
    };

    let mut figures = Map::new();
    let mut targets = Vec::new();
    let mut errors = Vec::new();
    let mut tables = Vec::new();
    // The CPU figures come from the single-container throughput run when both are asked for.
    let mut single_stream = None;
    for section in &sections {
        eprintln!("\n== bench {} ==", section.name());
        let result = match section {
            Section::Throughput => stream::throughput(&bench).map(|(result, single)| {
                single_stream = single;
                result
            }),
            Section::Cpu => stream::cpu(&bench, single_stream.take()),
            Section::Scale => scale::run(&bench),
            Section::Latency => latency::run(&bench),
            Section::Multiline => multiline::run(&bench),
            Section::Pipeline => pipeline::run(&bench),
            Section::Files => files::run(&bench),
        };
        match result {
            Ok(result) => {
                figures.insert(section.name().to_owned(), result.figures);
                targets.extend(result.targets);
                if let Some(table) = result.table {
                    tables.push((section.name(), table));
                }
            }
            Err(error) => {
                eprintln!("bench {} failed: {error:#}", section.name());
                figures.insert(
                    section.name().to_owned(),
                    json!({ "error": format!("{error:#}") }),
                );
                errors.push(format!("{}: {error:#}", section.name()));
            }
        }
    }

    for (name, table) in &tables {
        println!("\n{name}:\n{}", table.to_text());
    }
    let mut summary = Table::new(&["figure", "measured", "target", "result"]);
    for target in &targets {
        summary.row(vec![
            target.figure.clone(),
            target.measured.clone(),
            target.target.clone(),
            if target.met { "PASS" } else { "MISS" }.to_owned(),
        ]);
    }
    println!(
        "\ntargets{} (load average at the end: {}):\n{}",
        if quick { " (--quick)" } else { "" },
        machine()["load_average"].as_str().unwrap_or("?"),
        summary.to_text()
    );
    let report = json!({
        "run_id": bench.run_id,
        "quick": quick,
        "machine": machine(),
        "sections": figures,
        "targets": targets.iter().map(Target::to_json).collect::<Vec<_>>(),
        "errors": errors,
    });
    let report_path = out_dir.join("report.json");
    write_json(&report_path, &report)?;
    eprintln!("report: {}", report_path.display());
    if !errors.is_empty() {
        bail!("some sections could not run: {}", errors.join("; "));
    }
    Ok(())
}

/// What the figures were measured on.
fn machine() -> Value {
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split(':').nth(1))
                .map(|model| model.trim().to_owned())
        });
    let docker = test_support::docker::cli(&["version", "--format", "{{.Server.Version}}"]).ok();
    // Other work on the machine skews every figure; the load average says how much there was.
    let load_average = std::fs::read_to_string("/proc/loadavg").ok().map(|load| {
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    });
    json!({ "cpus": cpus, "cpu_model": model, "docker": docker, "load_average": load_average })
}
