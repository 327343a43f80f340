//! `reload`: 20 configuration reloads (SIGHUP) in a minute under 8 000 lines/s. Every line is
//! counted in the main file sink; a second file sink is added, changed and removed in turn, and
//! a filter that matches no generator is changed, so every kind of live change happens while the
//! lines flow.

use std::time::{Duration, Instant};

use anyhow::Result;

use test_support::ledger::Ledger;

use super::{
    process::finish,
    stage::Generators,
    stage::{Ctx, Outcome, Stage, file_sink},
};
use test_support::capturer::Capturer;
use test_support::wait;

/// Reloads, and the pause between two.
const RELOADS: usize = 20;
const EVERY: Duration = Duration::from_secs(3);
/// Generators, each writing this many lines per second on each of its two streams.
const GENERATORS: usize = 4;
const RATE: u64 = 1000;
/// How long a reload may take to be applied (counted in /metrics).
const APPLIED_TIMEOUT: Duration = Duration::from_secs(15);

/// The config of reload `index`: the main sink, and in turn a second sink added, changed,
/// removed, and a filter that matches none of the generators.
fn config(stage: &Stage, index: usize) -> String {
    let main = file_sink(&stage.config.data_dir);
    let extra = |max_bytes: u64| {
        format!(
            "[[sinks]]\ntype = \"file\"\nname = \"extra\"\npath = \"{}\"\nmax_bytes = {max_bytes}\n",
            stage.dir.join("extra.jsonl").display()
        )
    };
    match index % 4 {
        0 => format!("{main}{}", extra(8 << 30)),
        1 => format!("{main}{}", extra((8 << 30) + 1)),
        2 => format!("{main}[docker]\nexclude_names = [\"lcchaos-nomatch-{index}\"]\n"),
        _ => format!("{main}[docker]\nexclude_labels = [\"lcchaos-nomatch={index}\"]\n"),
    }
}

/// Applied reloads, by result, from `/metrics`.
fn reloads(capturer: &Capturer, result: &str) -> Result<u64> {
    let metrics = capturer.scrape()?;
    let value = metrics
        .sum("log_capturer_config_reloads_total", &[("result", result)])
        .unwrap_or(0.0);
    Ok(value as u64)
}

/// `reload`: see the module documentation.
pub(crate) fn reload(ctx: &Ctx, outcome: &mut Outcome) -> Result<()> {
    let started = Instant::now();
    let mut stage = Stage::new(ctx, "reload")?;
    let mut ledger = Ledger::follow(stage.records_path());
    let mut extra = Ledger::follow(stage.dir.join("extra.jsonl"));
    let capturer = stage.spawn()?;
    let ids = Generators {
        extra: &["--size", "100"],
        ..Generators::forever("load", GENERATORS, RATE)
    }
    .run(ctx, &stage)?;
    let config_path = stage.dir.join("config.toml");
    let mut slowest = Duration::ZERO;
    for index in 0..RELOADS {
        wait::pace(EVERY, || {
            ledger.poll()?;
            extra.poll().map(drop)
        })?;
        std::fs::write(&config_path, config(&stage, index))?;
        let sent = Instant::now();
        capturer.send_signal("HUP")?;
        wait::until(APPLIED_TIMEOUT, "the reload to be applied", || {
            Ok(reloads(&capturer, "success")? + reloads(&capturer, "error")? > index as u64)
        })?;
        slowest = slowest.max(sent.elapsed());
    }
    let refused = reloads(&capturer, "error")?;
    let applied = reloads(&capturer, "success")?;
    outcome.expect(
        refused == 0 && applied == RELOADS as u64,
        format!("{applied} reloads applied, {refused} refused"),
    );
    let tasks = capturer.container_tasks_in("running")?;
    outcome.expect(tasks == GENERATORS, format!("{tasks} running tasks"));
    finish(&stage, capturer, &mut ledger, &ids, outcome)?;
    extra.poll()?;
    let extra_tally = extra.tally();
    outcome.expect(extra.records > 0, "the added sink received no line");
    outcome.expect(
        extra_tally.dup == 0,
        format!("{} lines doubled in the added sink", extra_tally.dup),
    );
    outcome.recovered_in = Some(slowest);
    outcome.note(format!(
        "{RELOADS} reloads every {}s at {} lines/s (second sink added, changed, removed; filters \
         changed); recovered_in = slowest reload to be applied; the added sink got {} records",
        EVERY.as_secs(),
        GENERATORS * 2 * 1000,
        extra.records
    ));
    outcome.duration = started.elapsed();
    Ok(())
}
