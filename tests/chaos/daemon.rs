//! Faults on the Docker side: the daemon restarted, containers restarted, removed mid-stream,
//! and hundreds of short-lived containers.

use std::{
    process::Command,
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use test_support::ledger::Ledger;

use super::{
    process::{conclude, finish, settle},
    stage::Generators,
    stage::{Ctx, Outcome, Stage},
};
use test_support::wait;
use test_support::{
    capturer::{Capturer, each_container_task},
    docker::{self, TEST_LABEL_KEYS},
    procfs,
};

/// How long fds and tokio tasks may take to return to their baseline.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Open fds above the baseline still counted as "back" (a pooled daemon connection).
const FD_SLACK: u64 = 4;
/// Tokio tasks above the baseline still counted as "back" (a pooled connection's task).
const TASK_SLACK: f64 = 4.0;

/// Open fds and tokio tasks of the capturer.
fn resources(capturer: &Capturer) -> Result<(u64, f64)> {
    let fds = procfs::open_fds(capturer.pid())?;
    let tasks = capturer
        .scrape()?
        .sum("tokio_alive_tasks", &[])
        .context("no tokio_alive_tasks metric")?;
    Ok((fds, tasks))
}

/// Waits until fds and tasks are back within the slack of `baseline`; how long that took.
fn back_to_baseline(capturer: &Capturer, baseline: (u64, f64)) -> Result<Duration> {
    wait::until(SETTLE_TIMEOUT, "fds and tasks back to baseline", || {
        let (fds, tasks) = resources(capturer)?;
        Ok(fds <= baseline.0 + FD_SLACK && tasks <= baseline.1 + TASK_SLACK)
    })
}

/// Checks /health lists no running container task; returns how many tasks it still lists.
fn running_container_tasks(capturer: &Capturer) -> Result<usize> {
    capturer.container_tasks_in("running")
}

/// This process and its ancestors (the nextest and cargo that run this scenario), from `/proc`.
fn ancestors() -> Vec<u32> {
    let mut pids = vec![std::process::id()];
    // Bounded: a process tree is not deeper than this on a test machine.
    for _ in 0..64 {
        let Some(&pid) = pids.last() else { break };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // `pid (comm) state ppid ...`: comm may hold spaces, so read after its `)`.
        let parent = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|ppid| ppid.parse::<u32>().ok());
        match parent {
            Some(parent) if parent > 1 => pids.push(parent),
            _ => break,
        }
    }
    pids
}

/// `dockerd-restart`: dockerd is stopped and started again while streaming; the capturer
/// reconnects, lists again, and the `--restart always` containers' lines all arrive.
pub(crate) fn dockerd_restart(ctx: &Ctx, outcome: &mut Outcome) -> Result<()> {
    for label in TEST_LABEL_KEYS {
        let busy = docker::cli(&["ps", "-aq", "--filter", &format!("label={label}")])?;
        if !busy.is_empty() {
            bail!("not run: containers labelled {label} exist (other tests use the daemon)");
        }
    }
    let tests = Command::new("pgrep")
        .args(["-f", "nextest|cargo test"])
        .output()?;
    let ours = ancestors();
    let others = String::from_utf8_lossy(&tests.stdout)
        .split_whitespace()
        .any(|pid| pid.parse().is_ok_and(|pid: u32| !ours.contains(&pid)));
    if others {
        bail!("not run: other tests are running (pgrep -f 'nextest|cargo test')");
    }
    let mut stage = Stage::new(ctx, "dockerd-restart")?;
    let started = Instant::now();
    let mut ledger = Ledger::follow(stage.records_path());
    let capturer = stage.spawn()?;
    let ids = Generators {
        flags: &["--restart", "always"],
        ..Generators::forever("gen", 3, 100)
    }
    .run(ctx, &stage)?;
    wait::pace(Duration::from_secs(5), || ledger.poll().map(drop))?;
    let dockerd = procfs::daemon_pid()?;
    let stopping = Instant::now();
    test_support::procfs::signal(dockerd, "TERM")?;
    if wait::until(Duration::from_secs(60), "dockerd to exit", || {
        Ok(!procfs::is_alive(dockerd))
    })
    .is_err()
    {
        test_support::procfs::signal(dockerd, "KILL")?;
    }
    let down_health = capturer
        .health_status()
        .map(|(code, health)| (code, health["docker"].clone()));
    if !docker::daemon_answers() {
        let log = ctx.out_root.join("dockerd-restart").join("dockerd.log");
        docker::start_daemon(&log)?;
    }
    let daemon_down = stopping.elapsed();
    let up = Instant::now();
    // Every container came back and the capture has lines of a new loggen run from each.
    let before = ledger.records;
    let recovered = wait::until(
        Duration::from_secs(120),
        "new records from every container",
        || {
            ledger.poll()?;
            Ok(ledger.records > before && running_container_tasks(&capturer)? == ids.len())
        },
    );
    outcome.recovered_in = recovered.as_ref().ok().map(|_| up.elapsed());
    outcome.expect(
        recovered.is_ok(),
        "streams did not resume for every container",
    );
    wait::pace(Duration::from_secs(5), || ledger.poll().map(drop))?;
    let (_, health) = capturer.health_status()?;
    outcome.expect(
        health["docker"]["state"] == "connected",
        format!(
            "docker state {} after the restart",
            health["docker"]["state"]
        ),
    );
    let reconnects = capturer
        .scrape()?
        .sum("log_capturer_docker_reconnects_total", &[])
        .unwrap_or(0.0);
    finish(&stage, capturer, &mut ledger, &ids, outcome)?;
    outcome.note(format!(
        "dockerd down {:.1}s (/health meanwhile: {down_health:?}); discovery reconnects {reconnects}; \
         recovered_in = daemon up to every task running with new records",
        daemon_down.as_secs_f64()
    ));
    outcome.duration = started.elapsed();
    Ok(())
}

/// `restart-storm`: 100 container restarts within a minute across 10 containers.
pub(crate) fn restart_storm(ctx: &Ctx, outcome: &mut Outcome) -> Result<()> {
    const CONTAINERS: usize = 10;
    const RESTARTS_EACH: u32 = 10;
    const EVERY: Duration = Duration::from_secs(6);
    let mut stage = Stage::new(ctx, "restart-storm")?;
    let started = Instant::now();
    let mut ledger = Ledger::follow(stage.records_path());
    let capturer = stage.spawn()?;
    let ids = Generators::forever("gen", CONTAINERS, 50).run(ctx, &stage)?;
    wait::pace(Duration::from_secs(3), || ledger.poll().map(drop))?;
    let storm = Instant::now();
    let restarted = AtomicUsize::new(0);
    let errors = std::thread::scope(|scope| {
        let workers: Vec<_> = ids
            .iter()
            .enumerate()
            .map(|(index, id)| {
                let restarted = &restarted;
                scope.spawn(move || -> Result<()> {
                    // Staggered, so restarts are spread over the minute.
                    let offset = EVERY.mul_f64(index as f64 / CONTAINERS as f64);
                    for round in 0..RESTARTS_EACH {
                        let due = offset + EVERY * round;
                        std::thread::sleep(due.saturating_sub(storm.elapsed()));
                        docker::cli(&["restart", "--time", "0", id])?;
                        restarted.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(())
                })
            })
            .collect();
        while !workers.iter().all(|worker| worker.is_finished()) {
            let _ = ledger.poll();
            // Reading the file while the workers restart containers.
            std::thread::sleep(Duration::from_millis(200));
        }
        workers
            .into_iter()
            .filter_map(|worker| worker.join().ok().and_then(Result::err))
            .map(|error| format!("{error:#}"))
            .collect::<Vec<_>>()
    });
    let storm_took = storm.elapsed();
    outcome.expect(errors.is_empty(), format!("restart errors: {errors:?}"));
    let all_running = wait::until(
        Duration::from_secs(30),
        "a running task per container",
        || Ok(running_container_tasks(&capturer)? == CONTAINERS),
    );
    outcome.expect(
        all_running.is_ok(),
        "not every container has a running task after the storm",
    );
    wait::pace(Duration::from_secs(3), || ledger.poll().map(drop))?;
    let failures = capturer
        .scrape()?
        .sum("task_failures_total", &[("type", "container")])
        .unwrap_or(0.0);
    let drained = finish(&stage, capturer, &mut ledger, &ids, outcome)?;
    outcome.recovered_in = Some(drained);
    outcome.note(format!(
        "{} restarts in {:.0}s; container task failures {failures}; recovered_in = drain after the storm",
        restarted.load(Ordering::SeqCst),
        storm_took.as_secs_f64()
    ));
    outcome.duration = started.elapsed();
    Ok(())
}

/// `remove-mid-stream`: containers force-removed while streaming; their tasks end cleanly and
/// fds and tokio tasks return to the baseline.
pub(crate) fn remove_mid_stream(ctx: &Ctx, outcome: &mut Outcome) -> Result<()> {
    const CONTAINERS: usize = 10;
    let mut stage = Stage::new(ctx, "remove-mid-stream")?;
    let started = Instant::now();
    let mut ledger = Ledger::follow(stage.records_path());
    let capturer = stage.spawn()?;
    wait::pace(Duration::from_secs(3), || ledger.poll().map(drop))?;
    let baseline = resources(&capturer)?;
    let failures_before = capturer
        .scrape()?
        .sum("task_failures_total", &[("type", "container")])
        .unwrap_or(0.0);
    let ids = Generators::forever("gen", CONTAINERS, 200).run(ctx, &stage)?;
    wait::until(
        Duration::from_secs(30),
        "a running task per container",
        || {
            ledger.poll()?;
            Ok(running_container_tasks(&capturer)? == CONTAINERS)
        },
    )?;
    wait::pace(Duration::from_secs(5), || ledger.poll().map(drop))?;
    let loaded = resources(&capturer)?;
    // The truth is what Docker has just before the removal; later lines cannot be known.
    ledger.add_truth(&ids)?;
    let removing = Instant::now();
    let mut args = vec!["rm", "--force"];
    args.extend(ids.iter().map(String::as_str));
    docker::cli(&args)?;
    let ended = wait::until(Duration::from_secs(30), "no container task left", || {
        ledger.poll()?;
        let (_, health) = capturer.health_status()?;
        Ok(each_container_task(&health).all(|task| task["state"] != "running"))
    });
    outcome.expect(ended.is_ok(), "container tasks still running after removal");
    let settled = back_to_baseline(&capturer, baseline);
    let after = resources(&capturer)?;
    outcome.recovered_in = settled.as_ref().ok().map(|_| removing.elapsed());
    outcome.expect(
        settled.is_ok(),
        format!("fds/tasks {after:?} did not return to baseline {baseline:?}"),
    );
    let (_, health) = capturer.health_status()?;
    let states: Vec<String> = each_container_task(&health)
        .map(|task| task["state"].as_str().unwrap_or("?").to_owned())
        .collect();
    let failures = capturer
        .scrape()?
        .sum("task_failures_total", &[("type", "container")])
        .unwrap_or(0.0)
        - failures_before;
    outcome.expect(
        failures == 0.0 && !states.iter().any(|state| state == "failed"),
        format!("{failures} container task failures, states {states:?}"),
    );
    wait::pace(Duration::from_secs(2), || ledger.poll().map(drop))?;
    conclude(&stage, capturer, &mut ledger, ids.len(), outcome)?;
    outcome.note(format!(
        "fds/tokio tasks: baseline {baseline:?}, loaded {loaded:?}, after {after:?}; tasks left \
         in /health: {states:?}; recovered_in = rm to back at baseline"
    ));
    outcome.duration = started.elapsed();
    Ok(())
}

/// `churn`: 500 containers living 1-3 s each over 5 minutes; every line captured, no fd or
/// task growth afterwards.
pub(crate) fn churn(ctx: &Ctx, outcome: &mut Outcome) -> Result<()> {
    let (count, over) = if ctx.ci {
        (50, Duration::from_secs(30))
    } else {
        (500, Duration::from_secs(300))
    };
    const WORKERS: usize = 4;
    let mut stage = Stage::new(ctx, "churn")?;
    let started = Instant::now();
    let mut ledger = Ledger::follow(stage.records_path());
    let capturer = stage.spawn()?;
    wait::pace(Duration::from_secs(3), || ledger.poll().map(drop))?;
    let baseline = resources(&capturer)?;
    let specs: Vec<Vec<String>> = (0..count)
        .map(|index| {
            // 100 lines/s for 1 to 3 s.
            let lines = 100 + (index * 53) % 200;
            let args = Generators {
                lines,
                ..Generators::forever("c", 1, 100)
            }
            .args(index);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            stage.run_args(&format!("c{index}"), &[], ctx.loggen, &args)
        })
        .collect();
    let next = AtomicUsize::new(0);
    let churning = Instant::now();
    let spacing = over.div_f64(count as f64);
    let (ids, errors) = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..WORKERS)
            .map(|_| {
                let (next, specs, containers) = (&next, &specs, &stage.containers);
                scope.spawn(move || {
                    let mut ids = Vec::new();
                    let mut errors = Vec::new();
                    loop {
                        let index = next.fetch_add(1, Ordering::SeqCst);
                        let Some(spec) = specs.get(index) else { break };
                        std::thread::sleep(
                            (spacing * index as u32).saturating_sub(churning.elapsed()),
                        );
                        match containers.run(spec) {
                            Ok(id) => ids.push(id),
                            Err(error) => errors.push(format!("{error:#}")),
                        }
                    }
                    (ids, errors)
                })
            })
            .collect();
        while !workers.iter().all(|worker| worker.is_finished()) {
            let _ = ledger.poll();
            // Reading the file while the workers start containers.
            std::thread::sleep(Duration::from_millis(200));
        }
        let mut ids = Vec::new();
        let mut errors = Vec::new();
        for worker in workers {
            if let Ok((started, failed)) = worker.join() {
                ids.extend(started);
                errors.extend(failed);
            }
        }
        (ids, errors)
    });
    let churn_took = churning.elapsed();
    outcome.expect(
        errors.is_empty(),
        format!("{} docker run errors: {:?}", errors.len(), errors.first()),
    );
    // The last containers live up to 3 s more.
    wait::pace(Duration::from_secs(5), || ledger.poll().map(drop))?;
    let last_exit = Instant::now();
    let (drained, complete) = settle(&mut ledger, &ids)?;
    outcome.expect(complete, format!("not caught up after {drained:?}"));
    let settled = back_to_baseline(&capturer, baseline);
    let after = resources(&capturer)?;
    outcome.recovered_in = Some(last_exit.elapsed());
    outcome.expect(
        settled.is_ok(),
        format!("fds/tasks {after:?} did not return to baseline {baseline:?}"),
    );
    let (_, health) = capturer.health_status()?;
    let listed = each_container_task(&health).count();
    let running = running_container_tasks(&capturer)?;
    outcome.expect(
        running == 0,
        format!("{running} container tasks still running"),
    );
    let rss = procfs::rss_bytes(capturer.pid()).unwrap_or(0);
    conclude(&stage, capturer, &mut ledger, ids.len(), outcome)?;
    outcome.note(format!(
        "{} containers started in {:.0}s; fds/tokio tasks baseline {baseline:?}, after {after:?}; \
         {listed} finished tasks still listed in /health; RSS {} MiB; recovered_in = last exit to \
         all lines captured and resources back",
        ids.len(),
        churn_took.as_secs_f64(),
        rss >> 20
    ));
    outcome.duration = started.elapsed();
    Ok(())
}
