//! `second-instance`: one agent per data dir. A second capturer started on the data dir of a
//! running one must exit 73 naming the directory and the holder's pid, without disturbing the
//! first; after the first is killed (SIGKILL: the kernel releases its `flock`), a new one starts
//! at once and the file sink ends with every line exactly once.

use std::{
    io::Read,
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};

use test_support::ledger::Ledger;

use super::{
    process::finish,
    stage::Generators,
    stage::{Ctx, Outcome, Stage},
};
use test_support::capturer::{Capturer, command};
use test_support::wait;

/// EX_CANTCREAT: what a refused second agent exits with.
const EXIT_LOCKED: i32 = 73;
/// How long a refused second agent may take to exit.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(20);
/// Second agents tried against each holder.
const ATTEMPTS: usize = 3;

/// What a second agent did: its exit code (`None` if it had to be killed) and its stderr.
struct Refusal {
    code: Option<i32>,
    stderr: String,
    took: Duration,
}

/// Runs a second capturer with the stage's settings (same data dir) until it exits.
fn second_agent(stage: &Stage) -> Result<Refusal> {
    let started = Instant::now();
    let mut child = command(&stage.config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("start a second capturer")?;
    let code = loop {
        if let Some(status) = child.try_wait()? {
            break status.code();
        }
        if started.elapsed() > REFUSAL_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        // Polling a child's exit: std offers no wait with a timeout.
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    Ok(Refusal {
        code,
        stderr,
        took: started.elapsed(),
    })
}

/// Tries [`ATTEMPTS`] second agents against `holder` and checks each refusal; the holder must
/// keep capturing meanwhile.
fn refuse_seconds(
    stage: &Stage,
    holder: &Capturer,
    ledger: &mut Ledger,
    outcome: &mut Outcome,
) -> Result<()> {
    let dir = std::fs::canonicalize(&stage.config.data_dir)?;
    let pid = format!("pid {}", holder.pid());
    for attempt in 1..=ATTEMPTS {
        let refusal = second_agent(stage)?;
        let first_line = refusal.stderr.lines().next().unwrap_or_default().to_owned();
        outcome.expect(
            refusal.code == Some(EXIT_LOCKED),
            format!(
                "second agent {attempt}: exit {:?}, {first_line}",
                refusal.code
            ),
        );
        outcome.expect(
            refusal.stderr.contains(&dir.display().to_string()) && refusal.stderr.contains(&pid),
            format!("second agent {attempt} names neither the dir nor {pid}: {first_line}"),
        );
        if attempt == 1 {
            outcome.note(format!(
                "refused in {:.2}s: {first_line}",
                refusal.took.as_secs_f64()
            ));
        }
        let before = ledger.records;
        wait::until(
            Duration::from_secs(30),
            "the holder to keep capturing",
            || {
                ledger.poll()?;
                Ok(ledger.records > before)
            },
        )?;
    }
    outcome.expect(
        holder
            .health_status()
            .is_ok_and(|(status, _)| status == 200),
        "the holder's /health is not 200 after the refusals",
    );
    Ok(())
}

pub(crate) fn second_instance(ctx: &Ctx, outcome: &mut Outcome) -> Result<()> {
    let mut stage = Stage::new(ctx, "second-instance")?;
    let started = Instant::now();
    let mut ledger = Ledger::follow(stage.records_path());
    let first = stage.spawn()?;
    let ids = Generators {
        extra: &["--size", "100"],
        ..Generators::forever("load", 2, 1000)
    }
    .run(ctx, &stage)?;
    wait::pace(Duration::from_secs(3), || ledger.poll().map(drop))?;
    refuse_seconds(&stage, &first, &mut ledger, outcome)?;

    // A holder killed outright leaves its lock file, not its lock.
    first.send_signal("KILL")?;
    drop(first);
    let killed = Instant::now();
    let before = ledger.records;
    let next = stage.spawn()?;
    wait::until(
        Duration::from_secs(60),
        "records from the new agent",
        || {
            ledger.poll()?;
            Ok(ledger.records > before)
        },
    )?;
    outcome.recovered_in = Some(killed.elapsed());
    refuse_seconds(&stage, &next, &mut ledger, outcome)?;
    wait::pace(Duration::from_secs(3), || ledger.poll().map(drop))?;
    finish(&stage, next, &mut ledger, &ids, outcome)?;
    outcome.note(format!(
        "{ATTEMPTS} second agents refused per holder (before and after a SIGKILL of the first); \
         recovered_in = SIGKILL to the new agent's first records"
    ));
    outcome.duration = started.elapsed();
    Ok(())
}
