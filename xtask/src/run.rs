//! `cargo xtask run`: the capturer on its embedded default, after making sure Docker answers
//! (installing Debian's `docker.io` and starting `dockerd` as root when needed).

use anyhow::Result;

use crate::{
    docker,
    util::{cargo, run as run_command},
};

pub(crate) fn run(args: &[String]) -> Result<()> {
    docker::ensure_daemon()?;
    run_command(
        cargo()
            .args([
                "run",
                "--release",
                "--locked",
                "--package",
                "log-capturer",
                "--",
            ])
            .args(args),
    )
}
