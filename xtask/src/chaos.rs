//! `cargo xtask chaos`: reliability measured, not claimed. Each scenario injects one fault into
//! a real run (the release binary, the real Docker daemon, loggen containers) and counts every
//! line against Docker's own logs: `scenario lost=N dup=N recovered_in=Xs`.
//!
//! - [`stage`]: a scenario's directory, labelled containers, capturer settings, its outcome.
//! - [`loki`]: test-support's receiver as a Loki switched down (503) and up (204), counted in a
//!   ledger.
//! - [`input`]: `bad-config`, `bad-lines`.
//! - [`process`]: `kill-9`, `sigterm-under-load`, `corrupt-checkpoint`.
//! - [`daemon`]: `dockerd-restart`, `restart-storm`, `remove-mid-stream`, `churn`.
//! - [`sink`]: `sink-down`, `disk-full`.
//! - [`rotation`]: `rotation` (Docker's `max-size`/`max-file` at several rates).
//! - [`removal`]: `rm-burst` (`--rm` jobs through a slow Loki).
//! - [`reload`]: `reload` (20 SIGHUP reloads in a minute under load).
//! - [`instance`]: `second-instance` (one agent per data dir).
//! - [`memory`]: `churn-memory` (RSS flat while 5 000 containers come and go).
//! - [`downtime`]: `agent-downtime`, `exit-while-down`; [`quiet`]: `stdout-only-quiet`.
//!
//! Every container carries `log-capturer-chaos=<run>-<scenario>` and is removed when its
//! scenario ends; containers left by an interrupted run are removed at the start. Reports go to
//! `target/chaos/report.{json,md}`; each scenario's data dir, config and capturer logs to
//! `target/chaos/<scenario>/`. What each scenario guarantees is written up in
//! `docs/guarantees.md`.

mod daemon;
mod downtime;
mod input;
mod instance;
mod loki;
mod memory;
mod process;
mod quiet;
mod reload;
mod removal;
mod rotation;
mod sink;
mod stage;

use std::time::Instant;

use anyhow::{Result, bail};
use serde_json::json;

use self::stage::{Ctx, LABEL_KEY, Outcome};
use crate::{
    docker as docker_daemon,
    flags::ChaosOptions,
    report::{Table, write_file, write_json},
    util::build_release,
    util::project_root,
    util::run_id,
};
use test_support::docker::remove_labelled;

/// A scenario: its name, whether CI runs it, and its body.
struct Scenario {
    name: &'static str,
    in_ci: bool,
    about: &'static str,
    run: fn(&Ctx, &mut Outcome) -> Result<()>,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "bad-config",
        in_ci: true,
        about: "malformed configs exit 64 naming the key; unusable Docker socket: up, unhealthy",
        run: input::bad_config,
    },
    Scenario {
        name: "bad-lines",
        in_ci: true,
        about: "invalid UTF-8, NUL, ANSI, a 5 MiB line, 100k empty lines",
        run: input::bad_lines,
    },
    Scenario {
        name: "kill-9",
        in_ci: true,
        about: "SIGKILL every 20 s for 3 min under load (CI: 3 kills, every 10 s)",
        run: process::kill_9,
    },
    Scenario {
        name: "sink-down",
        in_ci: true,
        about: "Loki answers 503 for 5 min (CI: 20 s); buffer holds, all delivered once",
        run: sink::sink_down,
    },
    Scenario {
        name: "rotation",
        in_ci: true,
        about: "max-size=1m, max-file 1 and 3, at 2k, 20k lines/s and full speed (CI: 2k, 20k)",
        run: rotation::rotation,
    },
    Scenario {
        name: "rm-burst",
        in_ci: true,
        about: "--rm jobs of 50k lines through a Loki answering after 500 ms",
        run: removal::rm_burst,
    },
    Scenario {
        name: "reload",
        in_ci: true,
        about: "20 SIGHUP reloads in a minute at 8000 lines/s: sinks added/changed/removed, filters",
        run: reload::reload,
    },
    Scenario {
        name: "second-instance",
        in_ci: true,
        about: "a second agent on a data dir in use exits 73 naming it and the holder's pid",
        run: instance::second_instance,
    },
    Scenario {
        name: "agent-downtime",
        in_ci: true,
        about: "containers start, write and exit while the capturer is down (SIGTERM, SIGKILL)",
        run: downtime::agent_downtime,
    },
    Scenario {
        name: "exit-while-down",
        in_ci: true,
        about: "followed containers keep writing and exit while the capturer is down",
        run: downtime::exit_while_down,
    },
    Scenario {
        name: "stdout-only-quiet",
        in_ci: true,
        about: "dockerd CPU for a quiet stdout-only container with 1 M lines of history",
        run: quiet::stdout_only_quiet,
    },
    Scenario {
        name: "sigterm-under-load",
        in_ci: false,
        about: "SIGTERM at 50k lines/s: exit within grace, restart, nothing lost or doubled",
        run: process::sigterm_under_load,
    },
    Scenario {
        name: "dockerd-restart",
        in_ci: false,
        about: "dockerd stopped and started while streaming; --restart always containers",
        run: daemon::dockerd_restart,
    },
    Scenario {
        name: "restart-storm",
        in_ci: false,
        about: "100 container restarts in a minute across 10 containers",
        run: daemon::restart_storm,
    },
    Scenario {
        name: "remove-mid-stream",
        in_ci: false,
        about: "containers force-removed while streaming; fds and tasks back to baseline",
        run: daemon::remove_mid_stream,
    },
    Scenario {
        name: "disk-full",
        in_ci: false,
        about: "data dir on a tmpfs filled up for 30 s; visible, up, recovers",
        run: sink::disk_full,
    },
    Scenario {
        name: "corrupt-checkpoint",
        in_ci: false,
        about: "checkpoints.json truncated, then garbled, between runs",
        run: process::corrupt_checkpoint,
    },
    Scenario {
        name: "churn-memory",
        in_ci: false,
        about: "5000 short-lived containers in waves, removed after capture; RSS within 5 MiB",
        run: memory::churn_memory,
    },
    Scenario {
        name: "churn",
        in_ci: false,
        about: "500 containers living 1-3 s over 5 minutes; no fd/task growth",
        run: daemon::churn,
    },
];

/// Every scenario's name, for the command line.
pub(crate) fn scenario_names() -> impl Iterator<Item = &'static str> {
    SCENARIOS.iter().map(|scenario| scenario.name)
}

pub(crate) fn run(options: ChaosOptions) -> Result<()> {
    let ChaosOptions {
        scenarios: names,
        ci,
        list,
        binary,
        read_mode,
    } = options;
    if list {
        for scenario in SCENARIOS {
            let ci = if scenario.in_ci { " (ci)" } else { "" };
            println!("{:<20} {}{ci}", scenario.name, scenario.about);
        }
        return Ok(());
    }
    let selected: Vec<&Scenario> = SCENARIOS
        .iter()
        .filter(|scenario| {
            if names.is_empty() {
                !ci || scenario.in_ci
            } else {
                names.iter().any(|name| name == scenario.name)
            }
        })
        .collect();

    docker_daemon::ensure_daemon()?;
    let leftovers = remove_labelled(LABEL_KEY)?;
    if leftovers > 0 {
        eprintln!("removed {leftovers} container(s) left by an earlier chaos run");
    }
    let ctx = Ctx {
        binary: match binary {
            Some(binary) => binary,
            None => build_release()?,
        },
        loggen: test_support::docker::loggen_image(),
        run_id: run_id(),
        out_root: project_root().join("target").join("chaos"),
        ci,
        read_mode,
    };
    let mut outcomes = Vec::new();
    for scenario in selected {
        eprintln!("chaos: {} ({})", scenario.name, scenario.about);
        let mut outcome = Outcome::new(scenario.name);
        let started = Instant::now();
        if let Err(error) = (scenario.run)(&ctx, &mut outcome) {
            outcome.passed = false;
            outcome.note(format!("ERROR: {error:#}"));
        }
        outcome.duration = started.elapsed();
        println!("{}", outcome.summary());
        outcomes.push(outcome);
    }
    println!("\n{}", table(&outcomes, Some(TERMINAL_NOTES)).to_text());
    write_reports(&ctx, &outcomes, &table(&outcomes, None))?;
    let failed: Vec<&str> = outcomes
        .iter()
        .filter(|outcome| !outcome.passed)
        .map(|outcome| outcome.name)
        .collect();
    if !failed.is_empty() {
        bail!(
            "chaos failed: {} (see target/chaos/report.md)",
            failed.join(", ")
        );
    }
    eprintln!("chaos passed (target/chaos/report.md)");
    Ok(())
}

/// How many characters of notes the terminal table shows (the reports have them all).
const TERMINAL_NOTES: usize = 160;

fn table(outcomes: &[Outcome], notes_limit: Option<usize>) -> Table {
    let mut table = Table::new(&[
        "scenario",
        "lost",
        "dup",
        "recovered_in",
        "verdict",
        "duration",
        "notes",
    ]);
    let number = |value: Option<u64>| value.map_or("-".to_owned(), |value| value.to_string());
    for outcome in outcomes {
        table.row(vec![
            outcome.name.to_owned(),
            number(outcome.lost),
            number(outcome.dup),
            outcome.recovered_in.map_or("-".to_owned(), |elapsed| {
                format!("{:.1}s", elapsed.as_secs_f64())
            }),
            outcome.verdict().to_owned(),
            format!("{:.0}s", outcome.duration.as_secs_f64()),
            {
                let notes = outcome
                    .notes
                    .join("; ")
                    .replace('|', "/")
                    .replace('\n', " ");
                match notes_limit {
                    Some(limit) if notes.chars().count() > limit => {
                        notes.chars().take(limit).collect::<String>() + "..."
                    }
                    _ => notes,
                }
            },
        ]);
    }
    table
}

fn write_reports(ctx: &Ctx, outcomes: &[Outcome], table: &Table) -> Result<()> {
    let scenarios: Vec<_> = outcomes
        .iter()
        .map(|outcome| {
            json!({
                "scenario": outcome.name,
                "lost": outcome.lost,
                "dup": outcome.dup,
                "recovered_in_seconds": outcome.recovered_in.map(|elapsed| elapsed.as_secs_f64()),
                "verdict": outcome.verdict(),
                "deviations": outcome.deviations,
                "duration_seconds": outcome.duration.as_secs_f64(),
                "notes": outcome.notes,
            })
        })
        .collect();
    let passed = outcomes.iter().all(|outcome| outcome.passed);
    write_json(
        &ctx.out_root.join("report.json"),
        &json!({ "run": ctx.run_id, "ci": ctx.ci, "passed": passed, "scenarios": scenarios }),
    )?;
    let markdown = format!(
        "# log-capturer chaos report\n\nRun `{}`{}: {}.\n\n{}\nWhat each scenario measures and \
         every accepted deviation: `docs/guarantees.md`.\n",
        ctx.run_id,
        if ctx.ci { " (CI subset)" } else { "" },
        if passed {
            "every scenario met its expectation"
        } else {
            "FAILED"
        },
        table.to_markdown()
    );
    let markdown = markdown.replace(
        "\nWhat each",
        "\n`pass*`: met its expectation apart from the documented deviations noted.\n\nWhat each",
    );
    write_file(&ctx.out_root.join("report.md"), &markdown)
}
