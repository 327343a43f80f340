//! What every scenario needs: its directory, its labelled containers, the capturer, a verdict.
//!
//! A scenario gets a fresh `target/chaos/<name>/` (data dir, config, the capturer's logs, one
//! per start: `log-capturer.1.log`, ...), a [`ContainerSet`] labelled
//! `log-capturer-chaos=<run>-<name>` that the capturer watches exclusively and that is removed
//! when the scenario ends, and an [`Outcome`] it fills in.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result};
use serde_json::{Value, json};

use test_support::{
    capturer::{Capturer, CapturerConfig},
    docker::{self, ContainerSet},
};

/// The label key on every chaos container; the value is `<run>-<scenario>`.
pub(crate) const LABEL_KEY: &str = "log-capturer-chaos";

/// A file sink that does not rotate within a scenario, at the default sink's path.
pub(crate) fn file_sink(data_dir: &Path) -> String {
    format!(
        "[[sinks]]\ntype = \"file\"\npath = \"{}/logs/containers.jsonl\"\nmax_bytes = 8589934592\n",
        data_dir.display()
    )
}

/// What the whole run shares.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub(crate) binary: PathBuf,
    pub(crate) loggen: &'static str,
    pub(crate) run_id: String,
    pub(crate) out_root: PathBuf,
    /// The shortened CI variants.
    pub(crate) ci: bool,
    /// `docker.read_mode` of every capturer (`--read-mode`); `None`: its default.
    pub(crate) read_mode: Option<String>,
}

/// The result of one scenario.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    pub(crate) name: &'static str,
    /// `None` where lines are not what the scenario measures.
    pub(crate) lost: Option<u64>,
    pub(crate) dup: Option<u64>,
    pub(crate) recovered_in: Option<Duration>,
    pub(crate) passed: bool,
    /// Known, documented product deviations (see `docs/guarantees.md`) seen in this run.
    pub(crate) deviations: usize,
    pub(crate) notes: Vec<String>,
    pub(crate) duration: Duration,
}

impl Outcome {
    pub(crate) fn new(name: &'static str) -> Outcome {
        Outcome {
            name,
            lost: None,
            dup: None,
            recovered_in: None,
            passed: true,
            deviations: 0,
            notes: Vec::new(),
            duration: Duration::ZERO,
        }
    }

    /// Adds a note.
    pub(crate) fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    /// Records a known deviation: a product shortcoming documented in `docs/guarantees.md` and
    /// reported, which does not fail the scenario.
    pub(crate) fn deviation(&mut self, message: impl Into<String>) {
        self.deviations += 1;
        self.notes.push(format!("DEVIATION: {}", message.into()));
    }

    /// Fails the scenario with `message` unless `ok`.
    pub(crate) fn expect(&mut self, ok: bool, message: impl Into<String>) {
        if !ok {
            self.passed = false;
            self.notes.push(format!("FAIL: {}", message.into()));
        }
    }

    /// Sets lost and dup, failing unless both are zero.
    pub(crate) fn lines(&mut self, lost: u64, dup: u64) {
        self.lost = Some(lost);
        self.dup = Some(dup);
        self.expect(lost == 0, format!("{lost} lines lost"));
        self.expect(dup == 0, format!("{dup} lines duplicated"));
    }

    /// `pass`, `pass*` (with documented deviations) or `FAIL`.
    pub(crate) fn verdict(&self) -> &'static str {
        match (self.passed, self.deviations) {
            (false, _) => "FAIL",
            (true, 0) => "pass",
            (true, _) => "pass*",
        }
    }

    /// What the runner's report shows of this scenario (`target/chaos/<name>/outcome.json`).
    pub(crate) fn to_json(&self, ctx: &Ctx) -> Value {
        json!({
            "run": ctx.run_id,
            "ci": ctx.ci,
            "scenario": self.name,
            "passed": self.passed,
            "lost": self.lost,
            "dup": self.dup,
            "recovered_in_seconds": self.recovered_in.map(|elapsed| elapsed.as_secs_f64()),
            "verdict": self.verdict(),
            "deviations": self.deviations,
            "duration_seconds": self.duration.as_secs_f64(),
            "notes": self.notes,
        })
    }

    /// The one-line summary the issue asks for.
    pub(crate) fn summary(&self) -> String {
        let number = |value: Option<u64>| value.map_or("-".to_owned(), |value| value.to_string());
        format!(
            "{} lost={} dup={} recovered_in={}",
            self.name,
            number(self.lost),
            number(self.dup),
            self.recovered_in.map_or("-".to_owned(), |elapsed| format!(
                "{:.1}s",
                elapsed.as_secs_f64()
            ))
        )
    }
}

/// One scenario's directory, containers and capturer settings.
#[derive(Debug)]
pub(crate) struct Stage {
    pub(crate) dir: PathBuf,
    pub(crate) containers: ContainerSet,
    pub(crate) config: CapturerConfig,
    starts: u32,
}

impl Stage {
    /// A fresh stage whose capturer uses a file sink (no rotation) and reads containers that
    /// were already running from their beginning.
    pub(crate) fn new(ctx: &Ctx, name: &'static str) -> Result<Stage> {
        let dir = ctx.out_root.join(name);
        test_support::report::fresh_dir(&dir)?;
        let containers = ContainerSet::new(LABEL_KEY, format!("{}-{name}", ctx.run_id));
        let data_dir = dir.join("data");
        let config = CapturerConfig {
            binary: ctx.binary.clone(),
            data_dir: data_dir.clone(),
            include_label: containers.label(),
            heartbeat_interval: None,
            task_timeout: None,
            read_from_beginning: true,
            log_file: dir.join("log-capturer.log"),
            extra_env: Vec::new(),
        };
        let mut stage = Stage {
            dir,
            containers,
            config,
            starts: 0,
        };
        stage.set_sinks(&file_sink(&data_dir))?;
        if let Some(mode) = &ctx.read_mode {
            stage.set_env("LOG_CAPTURER_DOCKER_READ_MODE", mode);
        }
        Ok(stage)
    }

    /// Writes `sinks` (TOML) as the capturer's config file.
    pub(crate) fn set_sinks(&mut self, sinks: &str) -> Result<()> {
        let path = self.dir.join("config.toml");
        std::fs::write(&path, sinks).with_context(|| format!("write {}", path.display()))?;
        self.set_env("LOG_CAPTURER_CONFIG", &path.to_string_lossy());
        Ok(())
    }

    /// Sets (or replaces) an environment variable of the capturer.
    pub(crate) fn set_env(&mut self, key: &str, value: &str) {
        self.config.extra_env.retain(|(name, _)| name != key);
        self.config
            .extra_env
            .push((key.to_owned(), value.to_owned()));
    }

    /// The file sink's active file.
    pub(crate) fn records_path(&self) -> PathBuf {
        self.config.data_dir.join("logs").join("containers.jsonl")
    }

    /// Starts the capturer, with its log in a new numbered file.
    pub(crate) fn spawn(&mut self) -> Result<Capturer> {
        self.starts += 1;
        let mut config = self.config.clone();
        config.log_file = self.dir.join(format!("log-capturer.{}.log", self.starts));
        Capturer::spawn(&config)
    }

    /// The log of the latest start.
    pub(crate) fn last_log(&self) -> PathBuf {
        self.dir.join(format!("log-capturer.{}.log", self.starts))
    }

    /// Every log the capturer wrote in this stage, concatenated.
    pub(crate) fn capturer_logs(&self) -> String {
        (1..=self.starts)
            .filter_map(|start| {
                std::fs::read_to_string(self.dir.join(format!("log-capturer.{start}.log"))).ok()
            })
            .collect()
    }

    /// Runs a loggen container named `<stage>-<name>` with `flags` before the image.
    pub(crate) fn loggen(
        &self,
        ctx: &Ctx,
        name: &str,
        flags: &[&str],
        args: &[&str],
    ) -> Result<String> {
        self.containers
            .run(&self.run_args(name, flags, ctx.loggen, args))
    }

    /// The `docker run` arguments after `--detach --label`.
    pub(crate) fn run_args(
        &self,
        name: &str,
        flags: &[&str],
        image: &str,
        args: &[&str],
    ) -> Vec<String> {
        let mut full = vec![
            "--name".to_owned(),
            format!(
                "lcchaos-{}-{name}",
                self.containers.label().replace('=', "-")
            ),
        ];
        full.extend(flags.iter().map(|&flag| flag.to_owned()));
        full.push(image.to_owned());
        full.extend(args.iter().map(|&arg| arg.to_owned()));
        full
    }
}

/// Loggen generators writing both streams: `count` of them named `<prefix>-<i>` with tag
/// `<prefix><i>`, `rate` lines/s and `lines` lines (0: forever) per stream each.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Generators<'a> {
    pub(crate) prefix: &'a str,
    pub(crate) count: usize,
    pub(crate) rate: u64,
    pub(crate) lines: u64,
    /// `docker run` flags before the image (`--restart always`).
    pub(crate) flags: &'a [&'a str],
    /// Further loggen arguments (`--size 100`).
    pub(crate) extra: &'a [&'a str],
}

impl<'a> Generators<'a> {
    /// Generators writing forever.
    pub(crate) fn forever(prefix: &'a str, count: usize, rate: u64) -> Generators<'a> {
        Generators {
            prefix,
            count,
            rate,
            lines: 0,
            flags: &[],
            extra: &[],
        }
    }

    /// Loggen's arguments for generator `index`.
    pub(crate) fn args(&self, index: impl std::fmt::Display) -> Vec<String> {
        let mut args: Vec<String> = [
            "--tag",
            &format!("{}{index}", self.prefix),
            "--lines",
            &self.lines.to_string(),
            "--rate",
            &self.rate.to_string(),
            "--stream",
            "both",
        ]
        .map(str::to_owned)
        .to_vec();
        args.extend(self.extra.iter().map(|&arg| arg.to_owned()));
        args
    }

    /// Starts them in `stage`; their ids in order.
    pub(crate) fn run(&self, ctx: &Ctx, stage: &Stage) -> Result<Vec<String>> {
        (0..self.count)
            .map(|index| {
                let args = self.args(index);
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                stage.loggen(ctx, &format!("{}-{index}", self.prefix), self.flags, &args)
            })
            .collect()
    }
}

/// `docker kill` (running ones only; errors for stopped ones are ignored).
pub(crate) fn kill_all(ids: &[String]) {
    for group in ids.chunks(20) {
        let mut args = vec!["kill"];
        args.extend(group.iter().map(String::as_str));
        let _ = docker::cli(&args);
    }
}
