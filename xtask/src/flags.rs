//! The one command line of every xtask command (clap's derive; rust-analyzer's `flags.rs` is
//! the model): each command's options are a struct here, and `main` hands them to the command's
//! module. `cargo xtask`, `cargo xtask help` and `cargo xtask <command> --help` print the help.

use std::{path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum, builder::PossibleValuesParser};
use test_support::time::parse_duration;

/// Project automation for log-capturer.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
pub(crate) struct Xtask {
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// fmt --check, clippy -D warnings, every test; as root, installs what the tests need
    /// (Debian packages, cargo-nextest) and starts Docker if needed.
    ///
    /// Extra arguments go to nextest: `-E 'test(promtool)'` runs only the matching tests (and
    /// skips the doc tests).
    Test {
        /// Arguments for `cargo nextest run`.
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "NEXTEST ARGS"
        )]
        nextest: Vec<String>,
    },
    /// Runs log-capturer (release) on its embedded default, installing docker.io and starting
    /// Docker if needed.
    Run {
        /// Arguments for log-capturer.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Installs docker.io if missing and starts dockerd if no daemon answers.
    DockerUp,
    /// Runs log-capturer against a mix of log generators (default 10m), checks /health,
    /// resources and every line; reports in target/soak/.
    ///
    /// Runs log-capturer (release) against steady, bursty, silent, TTY, 40 KiB-line, restarted,
    /// late-created and removed log generators; checks /health, resources and every line (the
    /// test binary tests/soak, run with nextest). Reports: target/soak/report.{json,md},
    /// target/soak/resources.svg. Exit 0 only if all held.
    Soak(SoakOptions),
    /// Measures throughput vs a raw reader, CPU vs dockerd, RSS at scale, latency and the sink
    /// pipeline; report in target/bench/.
    ///
    /// Measures log-capturer (release) on this machine; prints each target with PASS/MISS and
    /// writes target/bench/report.json. With no section named, runs them all.
    Bench(BenchOptions),
    /// Builds the log-capturer:dev image (static binary, FROM scratch) without a registry.
    ///
    /// A static binary (target/static) in a FROM scratch image with deploy/Dockerfile's runtime
    /// stage (user 65532, data volume /var/lib/log-capturer, health API on 0.0.0.0:8401,
    /// HEALTHCHECK on /live).
    Image {
        /// The image tag.
        #[arg(long, default_value = crate::image::IMAGE_TAG)]
        tag: String,
    },
    /// Checks deploy/: alert rules (promtool), compose files, dashboard, shipped configs.
    DeployCheck,
    /// Injects faults (kill -9, sink down, dockerd restart, ...) into real runs and counts every
    /// line; report in target/chaos/.
    ///
    /// Injects faults into a real run of log-capturer (release) against the real Docker daemon
    /// and counts every line: `scenario lost=N dup=N recovered_in=Xs`. Each scenario is a test
    /// of the binary tests/chaos, run with nextest one at a time. With no scenario, runs them all
    /// (dockerd-restart restarts the daemon: do not run it while other Docker tests run).
    /// Reports: target/chaos/report.{json,md}. Exit 0 only if every scenario met its
    /// expectation.
    Chaos(ChaosOptions),
}

/// `docker.read_mode` values the capturer takes.
const READ_MODES: [&str; 3] = ["auto", "api", "files"];

/// `cargo xtask soak`.
#[derive(Debug, Clone, Args)]
#[command(
    after_help = "A compressed run reproduces the old 6-minute failure window in seconds:\n  \
                  cargo xtask soak --duration 2m --heartbeat-interval 1s --task-timeout 5s"
)]
pub(crate) struct SoakOptions {
    /// How long to run (at least 20s; e.g. 90s, 10m, 1h).
    #[arg(long, value_name = "D", default_value = "10m", value_parser = parse_duration)]
    pub(crate) duration: Duration,
    /// Steady generators.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub(crate) containers: usize,
    /// Lines/s per steady generator.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub(crate) rate: u64,
    /// Passed to log-capturer.
    #[arg(long, value_name = "D", default_value = "30s", value_parser = parse_duration)]
    pub(crate) heartbeat_interval: Duration,
    /// Passed to log-capturer.
    #[arg(long, value_name = "D", default_value = "5m", value_parser = parse_duration)]
    pub(crate) task_timeout: Duration,
    /// Leave the containers for debugging (the next run removes them).
    #[arg(long)]
    pub(crate) keep: bool,
    /// Also push to the Loki at URL (lines are counted in the file sink).
    #[arg(long, value_name = "URL")]
    pub(crate) sink_loki: Option<String>,
    /// docker.read_mode of the capturer (default: its own default, auto).
    #[arg(long, value_name = "MODE", value_parser = PossibleValuesParser::new(READ_MODES))]
    pub(crate) read_mode: Option<String>,
}

/// A section of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Section {
    /// 1 container x 1M lines of 100 B, 10 x 100k, 50 x 20k: capturer vs a raw reader.
    Throughput,
    /// Capturer CPU seconds vs dockerd's for the same stream, and us per line.
    Cpu,
    /// RSS, open fds and idle CPU with 100 and 500 idle containers monitored.
    Scale,
    /// p50/p99 from Docker's timestamp to the file sink, 20 containers x 1000 lines/s.
    Latency,
    /// 10 x 100k lines with a multiline rule on every container vs without (4 rounds).
    Multiline,
    /// The sink pipeline's own benchmark (sink-pipeline example pipeline_bench).
    Pipeline,
    /// File mode vs the API path: catch-up on 2M lines (host CPU/line, rate), live 1/10/50
    /// containers (rate, extra dockerd CPU/line).
    Files,
}

impl Section {
    /// The section's name on the command line and in the report.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Section::Throughput => "throughput",
            Section::Cpu => "cpu",
            Section::Scale => "scale",
            Section::Latency => "latency",
            Section::Multiline => "multiline",
            Section::Pipeline => "pipeline",
            Section::Files => "files",
        }
    }
}

/// `cargo xtask bench`.
#[derive(Debug, Clone, Args)]
pub(crate) struct BenchOptions {
    /// The sections to run (all when none is named).
    #[arg(value_enum)]
    pub(crate) sections: Vec<Section>,
    /// Smaller counts, for trying it out.
    #[arg(long)]
    pub(crate) quick: bool,
}

/// `cargo xtask chaos`.
#[derive(Debug, Clone, Args)]
pub(crate) struct ChaosOptions {
    /// The scenarios to run (`--list` prints them, as tests: `kill-9` is `ci::kill_9`).
    #[arg(value_name = "SCENARIO")]
    pub(crate) scenarios: Vec<String>,
    /// The short CI subset: bad-config, bad-lines, kill-9 (3 kills), sink-down (20 s), rotation
    /// (2 rates), rm-burst (2 + 2 jobs), reload (20 reloads in a minute), second-instance,
    /// agent-downtime, exit-while-down, stdout-only-quiet (200 000 lines, 20 s windows).
    #[arg(long)]
    pub(crate) ci: bool,
    /// Print the scenarios.
    #[arg(long)]
    pub(crate) list: bool,
    /// Use this log-capturer binary instead of building the release one.
    #[arg(long, value_name = "PATH")]
    pub(crate) binary: Option<PathBuf>,
    /// docker.read_mode of the capturer (default: its own default, auto).
    #[arg(long, value_name = "MODE", value_parser = PossibleValuesParser::new(READ_MODES))]
    pub(crate) read_mode: Option<String>,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::Parser;

    use super::{Command, Section, SoakOptions, Xtask};

    fn parse(args: &[&str]) -> Result<Option<Command>, clap::Error> {
        Xtask::try_parse_from(["cargo xtask"].iter().chain(args)).map(|xtask| xtask.command)
    }

    fn soak(args: &[&str]) -> Result<SoakOptions, clap::Error> {
        match parse(&[&["soak"][..], args].concat())? {
            Some(Command::Soak(options)) => Ok(options),
            other => panic!("not soak: {other:?}"),
        }
    }

    #[test]
    fn soak_defaults_to_the_ten_minute_run_and_takes_every_flag() {
        let defaults = soak(&[]).unwrap();
        assert_eq!(defaults.duration, Duration::from_secs(600));
        assert_eq!(defaults.task_timeout, Duration::from_secs(300));
        assert_eq!(defaults.sink_loki, None);
        let options = soak(&[
            "--duration",
            "2m",
            "--heartbeat-interval",
            "1s",
            "--task-timeout",
            "5s",
            "--sink-loki",
            "http://127.0.0.1:3100",
            "--read-mode",
            "files",
            "--keep",
        ])
        .unwrap();
        assert_eq!(options.read_mode.as_deref(), Some("files"));
        assert_eq!(options.duration, Duration::from_secs(120));
        assert_eq!(options.heartbeat_interval, Duration::from_secs(1));
        assert_eq!(options.task_timeout, Duration::from_secs(5));
        assert_eq!(options.sink_loki.as_deref(), Some("http://127.0.0.1:3100"));
        assert!(options.keep);
    }

    #[test]
    fn bad_options_are_refused() {
        for args in [
            &["soak", "--sink-loki"][..],
            &["soak", "--bogus", "1"][..],
            &["soak", "--read-mode", "disk"][..],
            &["soak", "--duration", "10 parsecs"][..],
            &["bench", "everything"][..],
            &["chaos", "--bogus"][..],
            &["image", "--tag"][..],
            &["deploy-check", "extra"][..],
            &["frobnicate"][..],
        ] {
            assert!(parse(args).is_err(), "{args:?}");
        }
    }

    #[test]
    fn every_command_the_docs_give_parses() {
        let Some(Command::Test { nextest }) = parse(&["test", "-E", "package(tests)"]).unwrap()
        else {
            panic!("not test");
        };
        assert_eq!(nextest, ["-E", "package(tests)"]);
        let Some(Command::Bench(bench)) = parse(&["bench", "--quick", "scale", "latency"]).unwrap()
        else {
            panic!("not bench");
        };
        assert_eq!(bench.sections, [Section::Scale, Section::Latency]);
        assert!(bench.quick);
        let Some(Command::Chaos(chaos)) = parse(&["chaos", "--ci"]).unwrap() else {
            panic!("not chaos");
        };
        assert!(chaos.ci && chaos.scenarios.is_empty());
        let Some(Command::Chaos(chaos)) = parse(&["chaos", "kill-9", "rotation"]).unwrap() else {
            panic!("not chaos");
        };
        assert_eq!(chaos.scenarios, ["kill-9", "rotation"]);
        assert!(
            matches!(parse(&["image"]).unwrap(), Some(Command::Image { tag }) if tag == "log-capturer:dev")
        );
        assert!(
            matches!(parse(&["run", "--check-config"]).unwrap(), Some(Command::Run { args }) if args == ["--check-config"])
        );
        assert!(matches!(
            parse(&["docker-up"]).unwrap(),
            Some(Command::DockerUp)
        ));
        assert!(matches!(
            parse(&["deploy-check"]).unwrap(),
            Some(Command::DeployCheck)
        ));
        assert!(parse(&[]).unwrap().is_none());
    }
}
