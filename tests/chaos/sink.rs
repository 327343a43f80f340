//! Faults of the destination: Loki answering 503 for minutes, and a full disk under the data dir.

use std::{
    collections::BTreeSet,
    io::Write,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use test_support::ledger::Ledger;

use super::{
    loki::LokiReceiver,
    process::{DRAIN_TIMEOUT, conclude},
    stage::Generators,
    stage::{Ctx, Outcome, Stage, kill_all},
};
use test_support::wait;
use test_support::{capturer::Capturer, procfs};

/// Lines per second per stream of each generator.
const RATE: u64 = 100;
/// Generators (both streams each).
const GENERATORS: usize = 4;
/// How long the sink is up before the fault and after recovery while the generators write.
const BEFORE: Duration = Duration::from_secs(5);
const AFTER: Duration = Duration::from_secs(5);
/// The longest wait for the sink to be `ok` with an empty buffer after the fault ends.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(120);

/// Starts finite generators that write for `writing` and then stay alive, silent.
fn generators(ctx: &Ctx, stage: &Stage, writing: Duration) -> Result<Vec<String>> {
    Generators {
        lines: RATE * writing.as_secs(),
        extra: &["--size", "120", "--hold-secs", "-1"],
        ..Generators::forever("gen", GENERATORS, RATE)
    }
    .run(ctx, stage)
}

/// The first sink's state and buffered events in /health.
fn sink_status(capturer: &Capturer) -> Result<(u16, String, u64)> {
    let (status, health) = capturer.health_status()?;
    let sink = &health["sinks"][0];
    Ok((
        status,
        sink["state"].as_str().unwrap_or("?").to_owned(),
        sink["buffered_events"].as_u64().unwrap_or(0),
    ))
}

/// Watches /health through a fault: the states and HTTP codes seen, the most buffered.
#[derive(Debug, Default)]
struct FaultWatch {
    states: BTreeSet<String>,
    codes: BTreeSet<u16>,
    max_buffered: u64,
    died: bool,
}

impl FaultWatch {
    fn sample(&mut self, capturer: &Capturer) {
        if !procfs::is_alive(capturer.pid()) {
            self.died = true;
            return;
        }
        if let Ok((code, state, buffered)) = sink_status(capturer) {
            self.codes.insert(code);
            self.states.insert(state);
            self.max_buffered = self.max_buffered.max(buffered);
        }
    }

    fn describe(&self) -> String {
        format!(
            "/health during the fault: sink {:?}, HTTP {:?}, up to {} buffered",
            self.states, self.codes, self.max_buffered
        )
    }
}

/// `sink-down`: the Loki receiver answers 503 for 5 min (CI: 20 s); the disk buffer holds and
/// everything arrives after recovery, once.
pub(crate) fn sink_down(ctx: &Ctx, outcome: &mut Outcome) -> Result<()> {
    let down = if ctx.ci {
        Duration::from_secs(20)
    } else {
        Duration::from_secs(300)
    };
    let mut stage = Stage::new(ctx, "sink-down")?;
    let started = Instant::now();
    let receiver = LokiReceiver::start()?;
    stage.set_sinks(&format!(
        "[[sinks]]\ntype = \"loki\"\nendpoint = \"{}\"\n\
         labels = {{ job = \"chaos\", container_id = \"{{container_id}}\", stream = \"{{stream}}\" }}\n\
         retry = {{ max_backoff = \"2s\", failing_after = \"10s\" }}\n",
        receiver.endpoint()
    ))?;
    let capturer = stage.spawn()?;
    let ids = generators(ctx, &stage, BEFORE + down + AFTER)?;
    let writing = Instant::now();
    std::thread::sleep(BEFORE);
    receiver.set_up(false);
    let mut watch = FaultWatch::default();
    wait::pace(down, || {
        watch.sample(&capturer);
        Ok(())
    })?;
    receiver.set_up(true);
    let recovered = wait::until(RECOVERY_TIMEOUT, "the sink ok with an empty buffer", || {
        let (_, state, buffered) = sink_status(&capturer)?;
        Ok(state == "ok" && buffered == 0)
    });
    outcome.recovered_in = recovered.as_ref().ok().copied();
    outcome.expect(recovered.is_ok(), "the sink did not recover");
    outcome.expect(!watch.died, "the capturer exited during the fault");
    outcome.expect(
        watch.states.contains("failing"),
        format!(
            "the sink never turned failing (failing_after 10s, down for {}s)",
            down.as_secs()
        ),
    );
    std::thread::sleep(
        (BEFORE + down + AFTER + Duration::from_secs(1)).saturating_sub(writing.elapsed()),
    );
    kill_all(&ids);
    receiver.state().ledger.add_truth(&ids)?;
    let drained = wait::until(DRAIN_TIMEOUT, "every line at the receiver", || {
        Ok(receiver.state().ledger.tally().lost == 0)
    });
    // Resends arriving late would still be counted.
    std::thread::sleep(Duration::from_secs(2));
    let code = capturer.stop(Duration::from_secs(20));
    let state = receiver.state();
    let tally = state.ledger.tally();
    outcome.lines(tally.lost, tally.dup);
    outcome.expect(drained.is_ok(), "not every line reached the receiver");
    outcome.expect(matches!(code, Ok(0)), format!("final SIGTERM: {code:?}"));
    outcome.note(format!(
        "down {}s; {}; {} lines, {} pushes accepted, {} refused, {} bad; {} identical resends; \
         recovered_in = receiver up to sink ok with an empty buffer",
        down.as_secs(),
        watch.describe(),
        tally.expected,
        state.accepted_requests,
        state.refused_requests,
        state.bad_requests,
        state.identical_resends,
    ));
    outcome.duration = started.elapsed();
    Ok(())
}

/// The tmpfs under the data dir; unmounted when dropped.
#[derive(Debug)]
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Result<Tmpfs> {
        std::fs::create_dir_all(dir)?;
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .context("run mount")?;
        if !status.success() {
            bail!(
                "mount -t tmpfs on {} failed (root is needed)",
                dir.display()
            );
        }
        Ok(Tmpfs {
            dir: dir.to_path_buf(),
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // A lazy unmount also succeeds while a killed capturer's files are still being closed.
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// Fills the file system holding `path` until it refuses more bytes.
fn fill(path: &Path) -> Result<u64> {
    let mut file = std::fs::File::create(path)?;
    let chunk = vec![0u8; 256 * 1024];
    let mut written = 0;
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(bytes) => written += bytes as u64,
            Err(_) => break,
        }
    }
    Ok(written)
}

/// `disk-full`: the data dir is a small tmpfs, filled up while lines flow: a clear error, the
/// sink visibly `failing` (after its `failing_after`), the process up, the streams pushed back
/// (not held in memory); when space returns everything is written.
/// With the default `block` policy nothing may be lost; what is dropped must equal the metric.
pub(crate) fn disk_full(ctx: &Ctx, outcome: &mut Outcome) -> Result<()> {
    let full_for = if ctx.ci {
        Duration::from_secs(15)
    } else {
        Duration::from_secs(30)
    };
    let mut stage = Stage::new(ctx, "disk-full")?;
    let started = Instant::now();
    let data_dir = stage.config.data_dir.clone();
    let tmpfs = Tmpfs::mount(&data_dir, "64m")?;
    stage.set_sinks(&format!(
        "[[sinks]]\ntype = \"file\"\npath = \"{}/logs/containers.jsonl\"\nmax_bytes = 8589934592\n\
         retry = {{ max_backoff = \"2s\", failing_after = \"10s\" }}\n",
        data_dir.display()
    ))?;
    let mut ledger = Ledger::follow(stage.records_path());
    let capturer = stage.spawn()?;
    let ids = generators(ctx, &stage, BEFORE + full_for + AFTER)?;
    let writing = Instant::now();
    wait::pace(BEFORE, || ledger.poll().map(drop))?;
    let filler = data_dir.join("filler");
    let filled = fill(&filler)?;
    let mut watch = FaultWatch::default();
    wait::pace(full_for, || {
        watch.sample(&capturer);
        ledger.poll().map(drop)
    })?;
    std::fs::remove_file(&filler)?;
    let records_at_free = ledger.records;
    let recovered = wait::until(RECOVERY_TIMEOUT, "the sink ok and new records", || {
        ledger.poll()?;
        let (_, state, _) = sink_status(&capturer)?;
        Ok(state == "ok" && ledger.records > records_at_free)
    });
    outcome.recovered_in = recovered.as_ref().ok().copied();
    outcome.expect(recovered.is_ok(), "no recovery after space returned");
    outcome.expect(!watch.died, "the capturer exited on a full disk");
    outcome.expect(
        watch.states.contains("failing"),
        format!(
            "the sink never turned failing (failing_after 10s, full for {}s)",
            full_for.as_secs()
        ),
    );
    let log = stage.capturer_logs();
    let error = log
        .lines()
        .find(|line| line.contains("No space left") || line.contains("ENOSPC"))
        .map(|line| line.chars().take(240).collect::<String>());
    outcome.expect(error.is_some(), "no clear 'No space left' error logged");
    // One error per episode, not one per attempt: a long outage must not flood the log.
    let error_lines = log.lines().filter(|line| line.contains("ERROR")).count();
    outcome.expect(
        error_lines <= 10,
        format!(
            "{error_lines} ERROR lines logged during a {}s outage",
            full_for.as_secs()
        ),
    );
    wait::pace(
        (BEFORE + full_for + AFTER + Duration::from_secs(1)).saturating_sub(writing.elapsed()),
        || ledger.poll().map(drop),
    )?;
    let dropped = capturer
        .scrape()?
        .sum("log_capturer_sink_events_total", &[("result", "dropped")])
        .unwrap_or(0.0);
    let (drained, complete) = {
        kill_all(&ids);
        ledger.add_truth(&ids)?;
        ledger.drain(DRAIN_TIMEOUT, Duration::from_secs(30))?
    };
    outcome.expect(complete, format!("not caught up after {drained:?}"));
    conclude(&stage, capturer, &mut ledger, ids.len(), outcome)?;
    let lost = outcome.lost.unwrap_or(0) as f64;
    outcome.expect(
        (dropped - lost).abs() < 0.5,
        format!("lost {lost} but the metrics counted {dropped} dropped"),
    );
    outcome.note(format!(
        "tmpfs 64m filled with {} MiB for {}s; {}; {error_lines} ERROR lines; dropped metric {dropped}; error: {}",
        filled >> 20,
        full_for.as_secs(),
        watch.describe(),
        error.unwrap_or_default()
    ));
    drop(tmpfs);
    outcome.duration = started.elapsed();
    Ok(())
}
