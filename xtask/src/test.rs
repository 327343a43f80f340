//! `cargo xtask test`: the project's whole test command, as CI runs it.
//!
//! Installs what the tests need (as root, see [`tools`](crate::tools)) and starts Docker, then
//! formatting, clippy with warnings denied, every test with nextest (one process per test), and
//! the doc tests (nextest does not run them). Extra arguments go to nextest; a filter expression
//! among them (`-E 'test(promtool)'`) narrows the test run and skips the doc tests.

use anyhow::{Result, bail};

use crate::{
    docker,
    tools::{self, Need},
    util::{cargo, project_root, run as run_command},
};

/// The integration-test binary (of docker-source) whose tests restart the Docker daemon.
const DAEMON_RESTART_BINARY: &str = "daemon_restart";

/// nextest's flags that take a filter expression.
const FILTER_FLAGS: &[&str] = &["-E", "--filter-expr", "--filterset"];

pub(crate) fn run(extra: &[String]) -> Result<()> {
    let (filter, extra) = split_filter(extra)?;
    tools::ensure(&[Need::Run, Need::Test])?;
    docker::ensure_daemon()?;
    docker::remove_left_test_containers()?;
    run_command(cargo().args(["fmt", "--all", "--check"]))?;
    run_command(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--locked",
        "--",
        "-D",
        "warnings",
    ]))?;
    // The end-to-end tests drive this binary; build it once, up front.
    run_command(cargo().args(["build", "--locked", "--package", "log-capturer"]))?;
    // Tests that restart the Docker daemon would break every other Docker test running at the
    // time, so they run on their own, after the rest.
    let restarts = format!("binary({DAEMON_RESTART_BINARY})");
    nextest(
        &narrowed(filter.as_deref(), &format!("not {restarts}")),
        &extra,
    )?;
    // Left out by the default filter (.config/nextest.toml), so a plain `cargo nextest run`
    // never restarts the daemon under someone else's tests.
    let mut restart_extra = vec!["--ignore-default-filter".to_owned()];
    restart_extra.extend_from_slice(&extra);
    nextest(&narrowed(filter.as_deref(), &restarts), &restart_extra)?;
    if filter.is_some() {
        eprintln!("xtask: a filter was given; the doc tests are skipped");
        return Ok(());
    }
    run_command(cargo().args(["test", "--workspace", "--locked", "--doc"]))
}

/// One nextest run over the workspace with `filter` (an empty selection passes).
fn nextest(filter: &str, extra: &[String]) -> Result<()> {
    let binary = project_root().join("target/debug/log-capturer");
    run_command(
        cargo()
            .args([
                "nextest",
                "run",
                "--workspace",
                "--locked",
                "--no-fail-fast",
            ])
            .args(["-E", filter])
            .args(["--no-tests", "pass"])
            .args(extra)
            .env("CAPTURER_BIN_UNDER_TEST", &binary),
    )
}

/// `part` within the user's filter: nextest ORs repeated `-E`s, so they are combined here.
fn narrowed(filter: Option<&str>, part: &str) -> String {
    match filter {
        Some(filter) => format!("({filter}) and ({part})"),
        None => part.to_owned(),
    }
}

/// Takes the filter expressions out of the extra arguments (several are ORed, as nextest does).
fn split_filter(extra: &[String]) -> Result<(Option<String>, Vec<String>)> {
    let mut filters = Vec::new();
    let mut rest = Vec::new();
    let mut args = extra.iter();
    while let Some(arg) = args.next() {
        if FILTER_FLAGS.contains(&arg.as_str()) {
            let Some(expression) = args.next() else {
                bail!("{arg} needs a filter expression");
            };
            filters.push(format!("({expression})"));
        } else if let Some(expression) = FILTER_FLAGS
            .iter()
            .find_map(|flag| arg.strip_prefix(&format!("{flag}=")))
        {
            filters.push(format!("({expression})"));
        } else {
            rest.push(arg.clone());
        }
    }
    let filter = (!filters.is_empty()).then(|| filters.join(" or "));
    Ok((filter, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|arg| (*arg).to_owned()).collect()
    }

    #[test]
    fn filters_are_taken_out_and_combined_with_the_daemon_restart_split() {
        let (filter, rest) = split_filter(&strings(&[
            "-E",
            "test(promtool)",
            "--no-capture",
            "--filter-expr=package(xtask)",
        ]))
        .unwrap();
        assert_eq!(
            filter.as_deref(),
            Some("(test(promtool)) or (package(xtask))")
        );
        assert_eq!(rest, ["--no-capture"]);
        assert_eq!(
            narrowed(filter.as_deref(), "not binary(daemon_restart)"),
            "((test(promtool)) or (package(xtask))) and (not binary(daemon_restart))"
        );
        assert_eq!(narrowed(None, "binary(x)"), "binary(x)");
        assert!(split_filter(&strings(&["-E"])).is_err());
        assert_eq!(split_filter(&[]).unwrap(), (None, Vec::new()));
    }
}
