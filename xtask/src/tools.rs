//! The one list of external programs that the tests and xtask run, with the Debian package (or
//! cargo crate) that brings each, and the installer behind "the README's two commands do all the
//! set-up".
//!
//! `cargo xtask run` installs what running needs ([`Need::Run`]); `cargo xtask test` also installs
//! what the tests need ([`Need::Test`]). Both install only what is missing, only as root, and say
//! in one line what they install (apt-get's and cargo's own output goes to
//! `target/xtask-install.log`). A package that starts a service on install (Debian's prometheus
//! and haproxy do) has that service stopped and disabled again: the tests run their own.
//!
//! The unit test in `tools/tests.rs` scans the sources of `tests/`, `crates/*/tests`,
//! `crates/*/examples`, `crates/test-support` and `xtask` for the programs they start and fails,
//! naming the program, when one is not on [`TOOLS`] (or, for the tests, not installed by
//! `cargo xtask test`).

use std::{
    fs::OpenOptions,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context, Result, bail};

use crate::util::{cargo, have, project_root};

#[cfg(test)]
mod tests;

/// Which command needs a program, and so installs it when it is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    /// `cargo xtask run` and every command that talks to Docker.
    Run,
    /// `cargo xtask test`: the tests (and what they run, such as `cargo xtask image`) call it.
    Test,
    /// Only other xtask commands (chaos, bench, deploy-check...) call it; they name the package
    /// when it is missing.
    Xtask,
    /// Used only where it is already installed (never installed for it).
    Optional,
}

/// Where a program comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// A Debian package, installed with `apt-get install --no-install-recommends`.
    Apt(&'static str),
    /// A crate installed with `cargo install --locked`.
    Cargo(&'static str),
}

/// An external program that the tests or xtask run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tool {
    /// The name looked up on `PATH`.
    pub(crate) program: &'static str,
    pub(crate) source: Source,
    pub(crate) need: Need,
    /// A service the package starts on install, which the installer stops again.
    pub(crate) service: Option<&'static str>,
}

const fn apt(program: &'static str, package: &'static str, need: Need) -> Tool {
    Tool {
        program,
        source: Source::Apt(package),
        need,
        service: None,
    }
}

const fn apt_service(program: &'static str, package: &'static str, need: Need) -> Tool {
    Tool {
        program,
        source: Source::Apt(package),
        need,
        service: Some(package),
    }
}

/// Every external program the tests and xtask start. `cargo` itself (and `rustc`) come with the
/// Rust toolchain, which the README assumes; the project's own binaries are built, not listed.
pub(crate) const TOOLS: &[Tool] = &[
    // The Docker daemon every Docker test and `cargo xtask run` use (`docker-up` starts it).
    apt("docker", "docker.io", Need::Run),
    apt("dockerd", "docker.io", Need::Run),
    apt("setsid", "util-linux", Need::Run),
    // Starts dockerd without the descriptors xtask inherited (`docker.rs`).
    apt("bash", "bash", Need::Run),
    // Test images are built FROM scratch around Debian's static busybox (never pulled).
    apt("busybox", "busybox-static", Need::Test),
    // The alert rules: promtool's checks, and a real Prometheus evaluating them.
    apt_service("promtool", "prometheus", Need::Test),
    apt_service("prometheus", "prometheus", Need::Test),
    // The compose files validate.
    apt("docker-compose", "docker-compose", Need::Test),
    // The TLS tests' certificate authorities, and the TLS and least-privilege proxies in front
    // of the Docker socket.
    apt("openssl", "openssl", Need::Test),
    apt_service("haproxy", "haproxy", Need::Test),
    // The dev image (`cargo xtask image`, which the deploy tests run): strip the debug info,
    // check the link is static.
    apt("strip", "binutils", Need::Test),
    apt("file", "file", Need::Test),
    // Signals, process lookups, a tmpfs for the disk-full tests, the ptrace helper.
    apt("kill", "procps", Need::Test),
    apt("mount", "mount", Need::Test),
    apt("umount", "mount", Need::Test),
    apt("perl", "perl-base", Need::Test),
    apt("sh", "dash", Need::Test),
    Tool {
        program: "cargo-nextest",
        source: Source::Cargo("cargo-nextest"),
        need: Need::Test,
        service: None,
    },
    // The chaos scenarios (tests/chaos) and the stream benchmark example.
    apt("pgrep", "procps", Need::Test),
    apt("chown", "coreutils", Need::Test),
    apt("setpriv", "util-linux", Need::Test),
    apt("curl", "curl", Need::Xtask),
    apt("apt-get", "apt", Need::Xtask),
    apt("systemctl", "systemd", Need::Optional),
    apt("invoke-rc.d", "init-system-helpers", Need::Optional),
    apt("systemd-analyze", "systemd", Need::Optional),
    // The stand-in binary in the unit file that `deploy-check` verifies.
    apt("true", "coreutils", Need::Optional),
];

/// The entry for `program`, if it is on the list.
#[cfg(test)]
pub(crate) fn find(program: &str) -> Option<&'static Tool> {
    TOOLS.iter().find(|tool| tool.program == program)
}

/// Installs every program that one of `needs` names and that is missing.
pub(crate) fn ensure(needs: &[Need]) -> Result<()> {
    let missing: Vec<&Tool> = TOOLS
        .iter()
        .filter(|tool| needs.contains(&tool.need))
        .filter(|tool| !have(tool.program))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let plan = Plan::new(&missing);
    if !test_support::procfs::running_as_root() {
        bail!(
            "missing {}; run this command as root, or install them yourself: {}",
            plan.programs(),
            plan.commands()
        );
    }
    eprintln!(
        "xtask: installing {} (for {}; log: {})",
        plan.summary(),
        plan.programs(),
        log_path().display()
    );
    plan.install()?;
    let still_missing: Vec<&str> = missing
        .iter()
        .filter(|tool| !have(tool.program))
        .map(|tool| tool.program)
        .collect();
    if !still_missing.is_empty() {
        bail!(
            "still missing after the installation: {}; see {}",
            still_missing.join(", "),
            log_path().display()
        );
    }
    Ok(())
}

/// What [`ensure`] installs: packages and crates, each once.
#[derive(Debug, Default)]
struct Plan<'a> {
    tools: Vec<&'a Tool>,
    packages: Vec<&'static str>,
    crates: Vec<&'static str>,
    services: Vec<&'static str>,
}

impl<'a> Plan<'a> {
    fn new(missing: &[&'a Tool]) -> Plan<'a> {
        let mut plan = Plan {
            tools: missing.to_vec(),
            ..Plan::default()
        };
        for tool in missing {
            let list = match tool.source {
                Source::Apt(package) => {
                    push_once(&mut plan.services, tool.service);
                    (&mut plan.packages, package)
                }
                Source::Cargo(name) => (&mut plan.crates, name),
            };
            push_once(list.0, Some(list.1));
        }
        plan
    }

    fn programs(&self) -> String {
        let names: Vec<&str> = self.tools.iter().map(|tool| tool.program).collect();
        names.join(", ")
    }

    fn summary(&self) -> String {
        let mut parts = Vec::new();
        if !self.packages.is_empty() {
            parts.push(format!("Debian's {}", self.packages.join(" ")));
        }
        if !self.crates.is_empty() {
            parts.push(format!("{} (cargo install)", self.crates.join(" ")));
        }
        parts.join(" and ")
    }

    fn commands(&self) -> String {
        let mut commands = Vec::new();
        if !self.packages.is_empty() {
            commands.push(format!(
                "apt-get install -y --no-install-recommends {}",
                self.packages.join(" ")
            ));
        }
        for name in &self.crates {
            commands.push(format!("cargo install --locked {name}"));
        }
        commands.join("; ")
    }

    fn install(&self) -> Result<()> {
        if !self.packages.is_empty() {
            quiet(Command::new("apt-get").args(["update", "-qq"]))?;
            quiet(
                Command::new("apt-get")
                    .args(["install", "-y", "-qq", "--no-install-recommends"])
                    // Another run may be installing at the same time: wait for its lock.
                    .args(["-o", "DPkg::Lock::Timeout=300"])
                    .args(&self.packages)
                    .env("DEBIAN_FRONTEND", "noninteractive"),
            )?;
            for service in &self.services {
                stop_service(service);
            }
        }
        for name in &self.crates {
            quiet(cargo().args(["install", "--locked", name]))?;
        }
        Ok(())
    }
}

fn push_once(list: &mut Vec<&'static str>, item: Option<&'static str>) {
    if let Some(item) = item
        && !list.contains(&item)
    {
        list.push(item);
    }
}

/// Stops (and disables) a service a package started on install: the tests start their own
/// Prometheus and HAProxy on ports of their choosing, and a stray one only costs the machine.
/// Best effort: without systemd, `invoke-rc.d` asks the init script (a `policy-rc.d` that forbids
/// services, as in containers, had kept it from starting at all).
fn stop_service(service: &str) {
    let systemd = Path::new("/run/systemd/system").exists();
    let mut command = if systemd {
        let mut command = Command::new("systemctl");
        command.args(["disable", "--now", service]);
        command
    } else {
        let mut command = Command::new("invoke-rc.d");
        command.args([service, "stop"]);
        command
    };
    // The outcome is in the log; a service that did not start needs no stopping.
    let _ = quiet(&mut command);
}

/// Runs a command with its output appended to the install log, failing with the log's tail.
fn quiet(command: &mut Command) -> Result<()> {
    let rendered = format!("{command:?}");
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path())
        .with_context(|| format!("open {}", log_path().display()))?;
    let status = command
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()
        .with_context(|| format!("cannot start {rendered}"))?;
    if !status.success() {
        let text = std::fs::read_to_string(log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(20)..].join("\n");
        bail!("{rendered} failed: {status}\n{tail}");
    }
    Ok(())
}

fn log_path() -> PathBuf {
    let target = project_root().join("target");
    // The log is only a convenience: a failure to create `target/` shows up when it is opened.
    let _ = std::fs::create_dir_all(&target);
    target.join("xtask-install.log")
}
