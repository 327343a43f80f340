//! The agent's own downtime: what happens on the host while the capturer is stopped (SIGTERM)
//! or killed (SIGKILL) must be read when it comes back, with the default `read_from = "end"`.
//!
//! - `agent-downtime`: containers started (and some exited) while the capturer is down.
//! - `exit-while-down`: containers the capturer was following keep writing and exit while it is
//!   down; a third start must not read them again.
//! - `stdout-only-quiet` (in [`super::quiet`]): the daemon's CPU for a quiet container.

use std::time::{Duration, Instant};

use anyhow::Result;

use test_support::ledger::Ledger;

use super::{
    process::finish,
    stage::{Ctx, Outcome, Stage},
};
use test_support::wait;
use test_support::{
    capturer::{Capturer, each_container_task},
    docker::{self},
};

/// How long the capturer may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the jobs started while the capturer is down may take to exit.
const EXIT_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the capturer stays down after the containers exited: longer than the few seconds of
/// events the capturer asks Docker to replay when it connects, so only its saved state can tell
/// it what happened (as after a real upgrade or crash).
const DOWN_AFTER_EXIT: Duration = Duration::from_secs(8);

/// How the capturer goes down.
#[derive(Debug, Clone, Copy)]
enum Down {
    Term,
    Kill,
}

impl Down {
    fn name(self) -> &'static str {
        match self {
            Down::Term => "SIGTERM",
            Down::Kill => "SIGKILL",
        }
    }

    fn apply(self, capturer: Capturer, outcome: &mut Outcome) -> Result<()> {
        match self {
            Down::Term => {
                let code = capturer.stop(STOP_TIMEOUT);
                outcome.expect(matches!(code, Ok(0)), format!("SIGTERM: {code:?}"));
            }
            Down::Kill => {
                capturer.send_signal("KILL")?;
                drop(capturer);
            }
        }
        Ok(())
    }
}

/// A stage whose capturer follows the default `read_from = "end"`: a downtime must not be
/// mistaken for a first start.
fn stage_from_end(ctx: &Ctx, name: &'static str) -> Result<Stage> {
    let mut stage = Stage::new(ctx, name)?;
    stage.config.read_from_beginning = false;
    Ok(stage)
}

/// loggen arguments: `lines` lines per stream at `rate` lines/s (0: full speed) on `stream`.
fn writer(tag: &str, lines: u64, rate: u64, stream: &str) -> Vec<String> {
    [
        "--tag",
        tag,
        "--lines",
        &lines.to_string(),
        "--rate",
        &rate.to_string(),
        "--stream",
        stream,
        "--size",
        "100",
    ]
    .map(str::to_owned)
    .to_vec()
}

fn run(stage: &Stage, ctx: &Ctx, name: &str, args: &[String]) -> Result<String> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    stage.loggen(ctx, name, &[], &args)
}

/// Waits until every container in `ids` has exited.
fn wait_exited(ids: &[String]) -> Result<Duration> {
    wait::until(EXIT_TIMEOUT, "the containers to exit", || {
        let mut args = vec!["inspect", "--format", "{{.State.Running}}"];
        args.extend(ids.iter().map(String::as_str));
        Ok(docker::cli(&args)?
            .lines()
            .all(|running| running == "false"))
    })
}

/// `agent-downtime`: the capturer goes down (SIGTERM, then SIGKILL); meanwhile a job writes
/// 3 000 lines per stream at full speed and exits, another at 1 000 lines/s, and a service
/// starts writing 500 lines/s; the capturer comes back on the same data dir.
pub(crate) fn agent_downtime(ctx: &Ctx, outcome: &mut Outcome) -> Result<()> {
    let mut stage = stage_from_end(ctx, "agent-downtime")?;
    let started = Instant::now();
    let mut ledger = Ledger::follow(stage.records_path());
    let mut capturer = stage.spawn()?;
    let mut ids = vec![run(
        &stage,
        ctx,
        "steady",
        &writer("steady", 0, 200, "both"),
    )?];
    wait::pace(Duration::from_secs(3), || ledger.poll().map(drop))?;
    let mut worst = Duration::ZERO;
    for (round, down) in [Down::Term, Down::Kill].into_iter().enumerate() {
        down.apply(capturer, outcome)?;
        let went_down = Instant::now();
        let jobs = vec![
            run(
                &stage,
                ctx,
                &format!("job-fast-{round}"),
                &writer(&format!("fast{round}"), 3000, 0, "both"),
            )?,
            run(
                &stage,
                ctx,
                &format!("job-paced-{round}"),
                &writer(&format!("paced{round}"), 3000, 1000, "out"),
            )?,
        ];
        let service = run(
            &stage,
            ctx,
            &format!("service-{round}"),
            &writer(&format!("service{round}"), 0, 500, "out"),
        )?;
        wait_exited(&jobs)?;
        wait::pace(DOWN_AFTER_EXIT, || ledger.poll().map(drop))?;
        let down_for = went_down.elapsed();
        ids.extend(jobs);
        ids.push(service);
        let restarted = Instant::now();
        capturer = stage.spawn()?;
        let before = ledger.records;
        wait::until(
            Duration::from_secs(60),
            "new records after the restart",
            || {
                ledger.poll()?;
                Ok(ledger.records > before)
            },
        )?;
        worst = worst.max(restarted.elapsed());
        outcome.note(format!(
            "{}: down {:.1}s while 2 jobs wrote and exited and a service started",
            down.name(),
            down_for.as_secs_f64()
        ));
        wait::pace(Duration::from_secs(3), || ledger.poll().map(drop))?;
    }
    finish(&stage, capturer, &mut ledger, &ids, outcome)?;
    outcome.recovered_in = Some(worst);
    outcome.note("jobs at full speed and at 1 000 lines/s; recovered_in = restart to new records");
    outcome.duration = started.elapsed();
    Ok(())
}

/// `exit-while-down`: the capturer follows writers at 300, 1 000 and 10 000 lines/s; it goes
/// down (SIGTERM, then SIGKILL) while they write; they exit meanwhile; it comes back and must
/// read the rest of each exactly once; a last start must read none of them again.
pub(crate) fn exit_while_down(ctx: &Ctx, outcome: &mut Outcome) -> Result<()> {
    let mut stage = stage_from_end(ctx, "exit-while-down")?;
    let started = Instant::now();
    let mut ledger = Ledger::follow(stage.records_path());
    let mut capturer = stage.spawn()?;
    let mut ids = Vec::new();
    let mut worst = Duration::ZERO;
    for (round, down) in [Down::Term, Down::Kill].into_iter().enumerate() {
        let writers = [(300, 1500), (1000, 3000), (10_000, 30_000)]
            .into_iter()
            .map(|(rate, lines)| {
                run(
                    &stage,
                    ctx,
                    &format!("writer-{rate}-{round}"),
                    &writer(&format!("w{rate}r{round}"), lines, rate, "out"),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        // Followed for a moment, then the capturer goes down while they write.
        wait::pace(Duration::from_millis(1500), || ledger.poll().map(drop))?;
        down.apply(capturer, outcome)?;
        wait_exited(&writers)?;
        wait::pace(DOWN_AFTER_EXIT, || ledger.poll().map(drop))?;
        ids.extend(writers);
        let restarted = Instant::now();
        capturer = stage.spawn()?;
        let (drained, complete) = {
            ledger.add_truth(&ids)?;
            ledger.drain(Duration::from_secs(120), Duration::from_secs(30))?
        };
        worst = worst.max(restarted.elapsed());
        outcome.expect(
            complete,
            format!("{}: not caught up after {drained:?}", down.name()),
        );
    }
    // A last start: everything was read to the end of each stop; nothing is read again. (A
    // drain that a shutdown interrupts is read again, harmlessly: wait until every drain
    // completed.)
    wait::until(Duration::from_secs(60), "every drain to complete", || {
        Ok(capturer.container_tasks_in("running")? == 0)
    })?;
    let code = capturer.stop(STOP_TIMEOUT);
    outcome.expect(matches!(code, Ok(0)), format!("SIGTERM: {code:?}"));
    let capturer = stage.spawn()?;
    wait::pace(Duration::from_secs(5), || ledger.poll().map(drop))?;
    let (_, health) = capturer.health_status()?;
    let tasks = each_container_task(&health)
        .filter(|task| {
            task["id"]
                .as_str()
                .is_some_and(|id| ids.iter().any(|writer| id.ends_with(writer.as_str())))
        })
        .count();
    let read_again = capturer
        .scrape()?
        .sum("log_capturer_lines_total", &[])
        .unwrap_or(0.0);
    outcome.expect(
        tasks == 0 && read_again == 0.0,
        format!("the last start read drained containers again: {tasks} tasks, {read_again} lines"),
    );
    finish(&stage, capturer, &mut ledger, &ids, outcome)?;
    outcome.recovered_in = Some(worst);
    outcome.note(format!(
        "writers at 300, 1 000 and 10 000 lines/s exited while the capturer was down (SIGTERM, \
         then SIGKILL); the last start found {tasks} tasks and read {read_again} lines of them; \
         recovered_in = restart until caught up"
    ));
    outcome.duration = started.elapsed();
    Ok(())
}
