//! `cargo xtask deploy-check`: the quick static checks of `deploy/`, for editing it by hand.
//!
//! It runs what the `deploy` end-to-end test binary (tests/deploy/) checks without Docker
//! containers or a running agent: the alert rules (`promtool check rules`, `promtool test
//! rules`), the Prometheus configuration's syntax, the compose files (`docker-compose config`),
//! the dashboard's JSON, the shipped agent configurations (`log-capturer --check-config`) and,
//! where systemd and HAProxy are installed, the unit (`systemd-analyze verify`) and the socket
//! proxy's configuration (`haproxy -c`).
//! The test binary additionally builds and runs the image and evaluates the rules in a real
//! Prometheus against a real agent.

use std::{path::Path, process::Command};

use anyhow::{Context, Result, bail};

use crate::util::{cargo, have, project_root, run as run_command};

/// The Debian packages that provide the tools, for the error message.
const APT_HINT: &str = "apt-get install -y --no-install-recommends prometheus docker-compose";

pub(crate) fn run() -> Result<()> {
    for tool in ["promtool", "docker-compose"] {
        if !have(tool) {
            bail!("{tool} is not installed; on Debian: {APT_HINT}");
        }
    }
    let deploy = project_root().join("deploy");
    run_command(
        Command::new("promtool")
            .args(["check", "rules", "alerts.yml"])
            .current_dir(deploy.join("prometheus")),
    )?;
    run_command(
        Command::new("promtool")
            .args(["test", "rules", "alerts.test.yml"])
            .current_dir(deploy.join("prometheus")),
    )?;
    // The rule file's path is the one inside the Prometheus container; check the syntax only.
    run_command(
        Command::new("promtool")
            .args(["check", "config", "--syntax-only", "prometheus.yml"])
            .current_dir(deploy.join("prometheus")),
    )?;
    for compose in [
        "docker-compose.yml",
        "docker-compose.socket-proxy.yml",
        "swarm-stack.yml",
    ] {
        run_command(
            Command::new("docker-compose")
                .args(["--file", compose, "config", "--quiet"])
                .current_dir(&deploy),
        )?;
    }
    let dashboard = std::fs::read_to_string(deploy.join("grafana").join("dashboard.json"))
        .context("read deploy/grafana/dashboard.json")?;
    serde_json::from_str::<serde_json::Value>(&dashboard)
        .context("deploy/grafana/dashboard.json is not JSON")?;
    for config in
        std::fs::read_dir(deploy.join("log-capturer")).context("list deploy/log-capturer")?
    {
        let path = config?.path();
        if path.extension().is_some_and(|ext| ext == "toml") {
            run_command(
                cargo()
                    .args([
                        "run",
                        "--quiet",
                        "--locked",
                        "--package",
                        "log-capturer",
                        "--",
                    ])
                    .arg("--check-config")
                    .arg("--config")
                    .arg(&path)
                    .stdout(std::process::Stdio::null()),
            )?;
        }
    }
    if have("systemd-analyze") {
        verify_systemd_unit(&deploy)?;
    }
    if have("haproxy") {
        // `-c` parses and checks the file without binding or connecting.
        run_command(
            Command::new("haproxy")
                .args(["-c", "-q", "-f", "socket-proxy/haproxy.cfg"])
                .current_dir(&deploy),
        )?;
    }
    println!("deploy/ checks passed");
    Ok(())
}

/// `systemd-analyze verify` on a copy of the unit whose `ExecStart` names a binary that exists
/// here (verify insists on it), so unknown or misspelt directives are caught.
fn verify_systemd_unit(deploy: &Path) -> Result<()> {
    let unit = std::fs::read_to_string(deploy.join("systemd").join("log-capturer.service"))
        .context("read deploy/systemd/log-capturer.service")?;
    let dir =
        std::env::temp_dir().join(format!("log-capturer-deploy-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let copy = dir.join("log-capturer.service");
    std::fs::write(
        &copy,
        unit.replace("/usr/local/bin/log-capturer", "/bin/true"),
    )
    .context("write the unit's copy")?;
    eprintln!("$ systemd-analyze verify deploy/systemd/log-capturer.service");
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .context("run systemd-analyze");
    let _ = std::fs::remove_dir_all(&dir);
    let output = output?;
    // verify exits 0 for unknown keys and only warns, so any message is a failure here.
    let messages = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() || !messages.trim().is_empty() {
        bail!("systemd-analyze verify complains about the unit:\n{messages}");
    }
    Ok(())
}
