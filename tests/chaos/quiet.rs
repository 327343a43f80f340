//! `stdout-only-quiet`: what a quiet container with a long history costs the daemon.
//!
//! A stdout-only busybox container writes its history (1 M lines; CI: 200 000) in loggen's line
//! format, then stays silent. The
//! daemon's CPU (`utime + stime` of dockerd from `/proc`) is measured over a window of silence
//! without the capturer, then again with the capturer following the container with
//! `inactivity_timeout = "5s"` once it has read the whole history. Before the fix every
//! inactivity reopen asked for `since=0` and the daemon sent the whole history again; and even
//! with `since`, Docker 20.10's json-file reader decodes the whole file for every request that
//! is not a `tail`. The expectation: the capturer adds less than [`CPU_TOLERANCE`] of a core.
//! A last burst is then written into the container's stdout (`docker exec ... > /proc/1/fd/1`)
//! and must arrive on the stream that was kept open.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use test_support::ledger::Ledger;

use super::{
    process::finish,
    stage::{Ctx, Outcome, Stage},
};
use test_support::wait;
use test_support::{
    docker::{self},
    procfs,
};

/// The daemon's CPU the capturer may add, in cores (5 % of a core), over the window of silence.
const CPU_TOLERANCE: f64 = 0.05;
/// The inactivity timeout under test.
const INACTIVITY: &str = "5s";
/// Lines after the silence, written as a last burst.
const LAST_BURST: u64 = 10;

/// The daemon's CPU use, in cores, over `window` (the ledger is polled meanwhile).
fn daemon_cores(pid: u32, window: Duration, ledger: &mut Ledger) -> Result<f64> {
    let before = procfs::cpu_seconds(pid)?;
    let started = Instant::now();
    wait::pace(window, || ledger.poll().map(drop))?;
    let after = procfs::cpu_seconds(pid)?;
    Ok((after - before) / started.elapsed().as_secs_f64())
}

/// The last line Docker has for the container (`docker logs --tail 1`, cheap however long the
/// history).
fn last_line(id: &str) -> Result<String> {
    docker::cli(&["logs", "--tail", "1", id])
}

/// A busybox script printing lines `from..to` in loggen's format (`quiet r1 out SEQ`).
fn lines_script(from: u64, to: u64) -> String {
    format!("awk 'BEGIN{{for(i={from};i<{to};i++) print \"quiet r1 out \" i}}'")
}

pub(crate) fn stdout_only_quiet(ctx: &Ctx, outcome: &mut Outcome) -> Result<()> {
    let (history, window) = if ctx.ci {
        (200_000_u64, Duration::from_secs(20))
    } else {
        (1_000_000_u64, Duration::from_secs(60))
    };
    let image = test_support::docker::busybox_image();
    let mut stage = Stage::new(ctx, "stdout-only-quiet")?;
    stage.set_env("LOG_CAPTURER_DOCKER_INACTIVITY_TIMEOUT", INACTIVITY);
    let started = Instant::now();
    let mut ledger = Ledger::follow(stage.records_path());
    let dockerd = procfs::daemon_pid()?;
    // The history at full speed on stdout only, then silence.
    let script = format!("{}; exec sleep 100000", lines_script(0, history));
    let id = stage
        .containers
        .run(&stage.run_args("quiet", &[], image, &["sh", "-c", &script]))?;
    let last_of_history = format!(" out {}", history - 1);
    wait::until(Duration::from_secs(120), "the history written", || {
        Ok(last_line(&id)?.ends_with(&last_of_history))
    })?;
    let without = daemon_cores(dockerd, window, &mut ledger)?;

    let capturer = stage.spawn()?;
    let caught_up_in = wait::until(Duration::from_secs(300), "the history captured", || {
        ledger.poll()?;
        Ok(ledger.records >= history)
    })?;
    // The first inactivity check comes `inactivity_timeout` after the last line.
    wait::pace(Duration::from_secs(6), || ledger.poll().map(drop))?;
    let with = daemon_cores(dockerd, window, &mut ledger)?;
    let metrics = capturer.scrape()?;
    let reopened = metrics
        .sum(
            "log_capturer_stream_reconnects_total",
            &[("reason", "inactivity")],
        )
        .unwrap_or(0.0);
    let checks = metrics
        .sum(
            "log_capturer_stream_idle_checks_total",
            &[("result", "current")],
        )
        .unwrap_or(0.0);
    outcome.expect(
        with - without <= CPU_TOLERANCE,
        format!(
            "dockerd used {:.1} % of a core with the capturer, {:.1} % without",
            with * 100.0,
            without * 100.0
        ),
    );
    // A last burst, written into the container's stdout, must come on the stream kept open.
    let full = history + LAST_BURST;
    let burst = format!("{} > /proc/1/fd/1", lines_script(history, full));
    docker::cli(&["exec", &id, "/bin/busybox", "sh", "-c", &burst])?;
    wait::until(
        Duration::from_secs(30),
        "the burst after the silence",
        || {
            ledger.poll()?;
            Ok(ledger.records >= full)
        },
    )
    .context("the lines written after the silence")?;
    finish(&stage, capturer, &mut ledger, &[id], outcome)?;
    outcome.recovered_in = Some(caught_up_in);
    outcome.note(format!(
        "{history} lines of history, inactivity_timeout {INACTIVITY}; dockerd over {}s of \
         silence: {:.1} % of a core without the capturer, {:.1} % with it; {reopened} inactivity \
         reopens, {checks} idle checks; recovered_in = start until the history is captured",
        window.as_secs(),
        without * 100.0,
        with * 100.0
    ));
    outcome.duration = started.elapsed();
    Ok(())
}
