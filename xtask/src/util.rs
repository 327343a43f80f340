//! Helpers shared by the subcommands: the workspace root, running commands, the release binary.
//! The reusable harness (the capturer process, Docker, accounting) lives in `test-support`.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

/// The workspace root: the parent of this crate's directory.
pub(crate) fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// `cargo` as the outer invocation was run (rustup's proxy may not be on PATH in CI).
pub(crate) fn cargo() -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(project_root());
    command
}

/// Runs a command to completion, failing with its rendering if it does not succeed.
pub(crate) fn run(command: &mut Command) -> Result<()> {
    let rendered = format!("{command:?}");
    eprintln!("$ {rendered}");
    let status = command
        .status()
        .with_context(|| format!("cannot start {rendered}"))?;
    if !status.success() {
        bail!("{rendered} failed: {status}");
    }
    Ok(())
}

/// Whether a program is on PATH.
pub(crate) fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program} >/dev/null 2>&1")])
        .status()
        .is_ok_and(|status| status.success())
}

/// Builds `log-capturer` in release mode and returns the binary's path.
pub(crate) fn build_release() -> Result<PathBuf> {
    run(cargo().args(["build", "--release", "-p", "log-capturer"]))?;
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map_or_else(
            || project_root().join("target"),
            |dir| project_root().join(dir),
        );
    let binary = target_dir.join("release").join("log-capturer");
    if !binary.is_file() {
        bail!(
            "the build succeeded but {} does not exist",
            binary.display()
        );
    }
    Ok(binary)
}

/// An id for one run of a command (hex seconds since the epoch), in container labels and
/// reports.
pub(crate) fn run_id() -> String {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    format!("{seconds:x}")
}
