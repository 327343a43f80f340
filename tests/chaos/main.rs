//! The chaos scenarios: reliability measured, not claimed. Each injects one fault into a real
//! run (the capturer binary, the real Docker daemon, loggen containers) and counts every line
//! against Docker's own logs: `scenario lost=N dup=N recovered_in=Xs`.
//!
//! One `#[test]` per scenario: those the CI runs (`cargo xtask chaos --ci`) are in [`ci`], the
//! longer ones in [`full`]. They run one at a time (the `chaos` test group of
//! `.config/nextest.toml`) and are left out of the default filter, so `cargo xtask test` does not
//! run them: `cargo xtask chaos [--ci] [--read-mode M] [scenario...]` runs them with nextest and
//! passes its options in the environment:
//!
//! - `LC_CHAOS_BINARY`: the capturer under test (the runner builds the release one); else
//!   test-support's [`capturer_binary`].
//! - `LC_CHAOS_RUN`: the run's id, in labels and the reports; else a fresh one per scenario.
//! - `LC_CHAOS_CI=1`: the shortened CI variants.
//! - `LC_CHAOS_READ_MODE`: `docker.read_mode` of every capturer.
//!
//! The scenarios, by module:
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
//! scenario ends; containers left by an interrupted run are removed when the next scenario
//! starts. Each scenario's data dir, config, capturer logs and outcome (`outcome.json`, gathered
//! by the runner into `target/chaos/report.{json,md}`) go to `target/chaos/<scenario>/`. What
//! each scenario guarantees is written up in `docs/guarantees.md`.
#![allow(clippy::print_stdout, clippy::print_stderr)]

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

use anyhow::Result;
use test_support::{
    capturer::capturer_binary,
    docker::{loggen_image, remove_labelled, require_daemon, unique_name, workspace_root},
    report::write_file,
};

use self::stage::{Ctx, LABEL_KEY, Outcome};

/// Runs scenario `name`: prints its summary line, writes its outcome, fails unless it met its
/// expectation.
fn scenario(name: &'static str, body: fn(&Ctx, &mut Outcome) -> Result<()>) {
    require_daemon();
    let leftovers = remove_labelled(LABEL_KEY).expect("remove earlier chaos containers");
    if leftovers > 0 {
        eprintln!("removed {leftovers} container(s) left by an earlier chaos run");
    }
    let ctx = ctx_from_env();
    let mut outcome = Outcome::new(name);
    let started = Instant::now();
    if let Err(error) = body(&ctx, &mut outcome) {
        outcome.passed = false;
        outcome.note(format!("ERROR: {error:#}"));
    }
    outcome.duration = started.elapsed();
    println!("{}", outcome.summary());
    let path = ctx.out_root.join(name).join("outcome.json");
    if let Err(error) = write_file(&path, &outcome.to_json(&ctx).to_string()) {
        outcome.passed = false;
        outcome.note(format!("ERROR: {error:#}"));
    }
    assert!(outcome.passed, "{name}: {}", outcome.notes.join("; "));
}

/// The shared settings, from the runner's environment variables (see the crate docs).
fn ctx_from_env() -> Ctx {
    let var = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
    Ctx {
        binary: var("LC_CHAOS_BINARY").map_or_else(capturer_binary, Into::into),
        loggen: loggen_image(),
        run_id: var("LC_CHAOS_RUN").unwrap_or_else(|| unique_name("run")),
        out_root: workspace_root().join("target").join("chaos"),
        ci: var("LC_CHAOS_CI").is_some_and(|value| value == "1"),
        read_mode: var("LC_CHAOS_READ_MODE"),
    }
}

/// The CI subset (`cargo xtask chaos --ci`: shortened variants).
mod ci {
    use super::{
        downtime, input, instance, process, quiet, reload, removal, rotation, scenario, sink,
    };

    /// malformed configs exit 64 naming the key; unusable Docker socket: up, unhealthy
    #[test]
    fn bad_config() {
        scenario("bad-config", input::bad_config);
    }

    /// invalid UTF-8, NUL, ANSI, a 5 MiB line, 100k empty lines
    #[test]
    fn bad_lines() {
        scenario("bad-lines", input::bad_lines);
    }

    /// SIGKILL every 20 s for 3 min under load (CI: 3 kills, every 10 s)
    #[test]
    fn kill_9() {
        scenario("kill-9", process::kill_9);
    }

    /// Loki answers 503 for 5 min (CI: 20 s); buffer holds, all delivered once
    #[test]
    fn sink_down() {
        scenario("sink-down", sink::sink_down);
    }

    /// max-size=1m, max-file 1 and 3, at 2k, 20k lines/s and full speed (CI: 2k, 20k)
    #[test]
    fn rotation() {
        scenario("rotation", rotation::rotation);
    }

    /// --rm jobs of 50k lines through a Loki answering after 500 ms
    #[test]
    fn rm_burst() {
        scenario("rm-burst", removal::rm_burst);
    }

    /// 20 SIGHUP reloads in a minute at 8000 lines/s: sinks added/changed/removed, filters
    #[test]
    fn reload() {
        scenario("reload", reload::reload);
    }

    /// a second agent on a data dir in use exits 73 naming it and the holder's pid
    #[test]
    fn second_instance() {
        scenario("second-instance", instance::second_instance);
    }

    /// containers start, write and exit while the capturer is down (SIGTERM, SIGKILL)
    #[test]
    fn agent_downtime() {
        scenario("agent-downtime", downtime::agent_downtime);
    }

    /// followed containers keep writing and exit while the capturer is down
    #[test]
    fn exit_while_down() {
        scenario("exit-while-down", downtime::exit_while_down);
    }

    /// dockerd CPU for a quiet stdout-only container with 1 M lines of history
    #[test]
    fn stdout_only_quiet() {
        scenario("stdout-only-quiet", quiet::stdout_only_quiet);
    }
}

/// The longer scenarios, and those CI must not run (`dockerd-restart` restarts the shared
/// daemon).
mod full {
    use super::{daemon, memory, process, scenario, sink};

    /// SIGTERM at 50k lines/s: exit within grace, restart, nothing lost or doubled
    #[test]
    fn sigterm_under_load() {
        scenario("sigterm-under-load", process::sigterm_under_load);
    }

    /// dockerd stopped and started while streaming; --restart always containers
    #[test]
    fn dockerd_restart() {
        scenario("dockerd-restart", daemon::dockerd_restart);
    }

    /// 100 container restarts in a minute across 10 containers
    #[test]
    fn restart_storm() {
        scenario("restart-storm", daemon::restart_storm);
    }

    /// containers force-removed while streaming; fds and tasks back to baseline
    #[test]
    fn remove_mid_stream() {
        scenario("remove-mid-stream", daemon::remove_mid_stream);
    }

    /// data dir on a tmpfs filled up for 30 s; visible, up, recovers
    #[test]
    fn disk_full() {
        scenario("disk-full", sink::disk_full);
    }

    /// checkpoints.json truncated, then garbled, between runs
    #[test]
    fn corrupt_checkpoint() {
        scenario("corrupt-checkpoint", process::corrupt_checkpoint);
    }

    /// 5000 short-lived containers in waves, removed after capture; RSS within 5 MiB
    #[test]
    fn churn_memory() {
        scenario("churn-memory", memory::churn_memory);
    }

    /// 500 containers living 1-3 s over 5 minutes; no fd/task growth
    #[test]
    fn churn() {
        scenario("churn", daemon::churn);
    }
}
