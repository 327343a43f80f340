//! The Docker CLI, with errors instead of panics, and labelled sets of containers.
//!
//! Every container the soak or the benchmarks start carries a label (`log-capturer-soak=<run>`,
//! `log-capturer-bench=<run>`). A [`ContainerSet`] removes every container with its label when it
//! drops, also when the command fails half-way. An interrupted run (Ctrl-C kills xtask before any
//! guard runs; std has no signal API) is cleaned by the next run, which first removes whatever
//! still carries the label key ([`remove_labelled`]).

use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use super::parallel_map;

/// How many `docker` commands run at once when creating or removing many containers; the
/// daemon serialises much of the work, so more threads only add contention on two cores.
const PARALLEL_DOCKER_COMMANDS: usize = 8;

/// Containers removed per `docker rm` command.
const REMOVE_BATCH: usize = 50;

/// The label keys the project's tests put on every container they start (`test-support`'s
/// guards and the end-to-end tests' `--include-label`).
pub(crate) const TEST_LABEL_KEYS: [&str; 2] = ["log-capturer-test", "log-capturer-e2e"];

/// Runs `docker ARGS` and returns its trimmed stdout, or an error carrying its stderr.
pub(crate) fn docker(args: &[&str]) -> Result<String> {
    let output = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("cannot run the docker CLI")?;
    if !output.status.success() {
        bail!(
            "docker {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Both output streams of a container as Docker kept them (`docker logs`), as raw bytes.
pub(crate) fn logs(id: &str) -> Result<(Vec<u8>, Vec<u8>)> {
    let output = Command::new("docker")
        .args(["logs", id])
        .stdin(Stdio::null())
        .output()
        .context("cannot run the docker CLI")?;
    if !output.status.success() {
        bail!(
            "docker logs {id} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok((output.stdout, output.stderr))
}

/// Removes every container (running or not) that carries `label` (`key` or `key=value`), and
/// returns how many there were.
pub(crate) fn remove_labelled(label: &str) -> Result<usize> {
    remove_where(&[&format!("label={label}")])
}

/// Removes every container `docker ps --all` lists under `filters` (`--filter` values: the same
/// key twice is either, different keys are both), and returns how many there were.
pub(crate) fn remove_where(filters: &[&str]) -> Result<usize> {
    let mut args = vec!["ps", "--all", "--quiet"];
    for filter in filters {
        args.extend(["--filter", filter]);
    }
    let listed = docker(&args)?;
    let ids: Vec<&str> = listed.split_whitespace().collect();
    let batches: Vec<&[&str]> = ids.chunks(REMOVE_BATCH).collect();
    for group in batches.chunks(PARALLEL_DOCKER_COMMANDS) {
        parallel_map(group, "docker rm", |batch| {
            let mut args = vec!["rm", "--force", "--volumes"];
            args.extend_from_slice(batch);
            docker(&args)
        })?;
    }
    Ok(ids.len())
}

/// The containers of one run, all labelled `key=value`; removed when this guard drops.
#[derive(Debug)]
pub(crate) struct ContainerSet {
    key: &'static str,
    value: String,
}

impl ContainerSet {
    /// A set labelled `key=value`, where `value` should be unique to this run.
    pub(crate) fn new(key: &'static str, value: impl Into<String>) -> ContainerSet {
        ContainerSet {
            key,
            value: value.into(),
        }
    }

    /// `key=value`, for `--include-label` and `docker ps --filter label=`.
    pub(crate) fn label(&self) -> String {
        format!("{}={}", self.key, self.value)
    }

    /// `docker run --detach --label key=value ARGS` (name, flags, image and command in `args`);
    /// returns the full container id.
    pub(crate) fn run(&self, args: &[String]) -> Result<String> {
        let label = self.label();
        let mut full = vec!["run", "--detach", "--label", &label];
        full.extend(args.iter().map(String::as_str));
        docker(&full)
    }

    /// Runs many containers, [`PARALLEL_DOCKER_COMMANDS`] at a time; ids in the order given.
    pub(crate) fn run_many(&self, specs: &[Vec<String>]) -> Result<Vec<String>> {
        let mut ids = Vec::with_capacity(specs.len());
        for group in specs.chunks(PARALLEL_DOCKER_COMMANDS) {
            ids.extend(parallel_map(group, "docker run", |spec| self.run(spec))?);
        }
        Ok(ids)
    }

    /// Removes every container of the set now (what dropping the guard does).
    pub(crate) fn remove_all(&self) -> Result<usize> {
        remove_labelled(&self.label())
    }
}

impl Drop for ContainerSet {
    fn drop(&mut self) {
        // Best effort: a failure here must not hide the error that is unwinding, and the next
        // run removes leftovers by label anyway.
        if let Err(error) = self.remove_all() {
            eprintln!(
                "warning: cannot remove the containers labelled {}: {error:#}",
                self.label()
            );
        }
    }
}
