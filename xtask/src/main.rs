//! Project automation, run as `cargo xtask <command>` (see `.cargo/config.toml`).
//!
//! One module per subcommand. Each finds the workspace root from `CARGO_MANIFEST_DIR`, runs
//! cargo through `$CARGO`, and sets up what it needs (a Docker daemon) on a fresh Debian machine.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod bench;
mod chaos;
mod docker;
mod image;
mod report;
mod run;
mod soak;
mod test;
mod tidy;
mod tools;
mod util;

use anyhow::{Result, bail};

const HELP: &str = "\
cargo xtask <command>

Commands:
  test [NEXTEST ARGS]
              fmt --check, clippy -D warnings, every test; as root, installs what the tests
              need (Debian packages, cargo-nextest) and starts Docker if needed. Extra
              arguments go to nextest: `-E 'test(promtool)'` runs only the matching tests
              (and skips the doc tests)
  run [ARGS]  runs log-capturer (release) on its embedded default, installing docker.io and
              starting Docker if needed
  docker-up   installs docker.io if missing and starts dockerd if no daemon answers
  soak [OPTIONS]
              runs log-capturer against a mix of log generators (default 10m), checks /health,
              resources and every line; reports in target/soak/ (`cargo xtask soak --help`)
  bench [throughput|cpu|scale|latency|pipeline]... [--quick]
              measures throughput vs a raw reader, CPU vs dockerd, RSS at scale, latency and the
              sink pipeline; report in target/bench/ (`cargo xtask bench --help`)
  image [--tag TAG]
              builds the log-capturer:dev image (static binary, FROM scratch) without a registry
  deploy-check
              checks deploy/: alert rules (promtool), compose files, dashboard, shipped configs
  chaos [--ci] [SCENARIO]...
              injects faults (kill -9, sink down, dockerd restart, ...) into real runs and counts
              every line; report in target/chaos/ (`cargo xtask chaos --help`)
";

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let command = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    match command.as_str() {
        "test" => test::run(&rest),
        "run" => run::run(&rest),
        "docker-up" => docker::ensure_daemon(),
        "soak" => soak::run(&rest),
        "bench" => bench::run(&rest),
        "chaos" => chaos::run(&rest),
        "image" => image::run(&rest),
        "deploy-check" => image::deploy_check::run(&rest),
        "" | "help" | "--help" | "-h" => {
            print!("{HELP}");
            Ok(())
        }
        other => bail!("unknown command {other:?}\n\n{HELP}"),
    }
}
