//! `cargo xtask image`: the `log-capturer:dev` image, built on this machine without any registry.
//!
//! `deploy/Dockerfile` builds the image for users with registry access: a Rust build stage, then
//! a runtime stage on distroless. This command builds the same runtime stage on `FROM scratch`:
//!
//! 1. a static `log-capturer` (glibc, `crt-static`, `--target x86_64-unknown-linux-gnu`) in
//!    `target/static`, the directory (and `RUSTFLAGS`) the `loggen` test image uses, so the two
//!    share their compiled dependencies;
//! 2. a build context in `target/static/log-capturer-image/` whose `out/` holds what the
//!    Dockerfile's build stage would produce: the binary without its debug info, a static busybox
//!    (the health probe runs `busybox wget`), the host's CA bundle and the empty data dir;
//! 3. a Dockerfile made of a two-line build stage (`FROM scratch AS build`, `COPY out/ /out/`)
//!    and deploy/Dockerfile's runtime stage verbatim, so ENV, VOLUME, EXPOSE, USER,
//!    HEALTHCHECK and ENTRYPOINT cannot drift apart.
//!
//! [`deploy_check`] holds the companion `cargo xtask deploy-check` (static checks of `deploy/`).

pub(crate) mod deploy_check;

use std::{
    fs::File,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use test_support::docker::cli as docker_cli;

use crate::{
    docker,
    util::{cargo, project_root, run as run_command},
};

/// The tag of the image this command builds.
pub(crate) const IMAGE_TAG: &str = "log-capturer:dev";

/// The target triple of the static build (the one `loggen`'s image uses).
const STATIC_TARGET: &str = "x86_64-unknown-linux-gnu";

/// `RUSTFLAGS` of the static build; it must equal `loggen`'s so both reuse one build cache.
const STATIC_RUSTFLAGS: &str = "-C target-feature=+crt-static";

/// The first line of deploy/Dockerfile's runtime stage; everything from it on is reused.
const RUNTIME_STAGE: &str = "FROM ${RUNTIME_IMAGE} AS runtime";

/// Debian's static busybox (package `busybox-static`, which `cargo xtask test` installs).
const BUSYBOX: &str = "/bin/busybox";

/// The CA bundle for `https://` Loki endpoints (package `ca-certificates`).
const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

pub(crate) fn run(tag: &str) -> Result<()> {
    docker::ensure_daemon()?;
    build_image(tag)?;
    let size = docker_cli(&["image", "inspect", tag, "--format", "{{.Size}}"])?;
    let megabytes = size.parse::<f64>().unwrap_or(0.0) / 1e6;
    println!("built {tag} ({megabytes:.1} MB)");
    Ok(())
}

/// Builds the static binary and the image, under a file lock: tests in parallel processes may
/// ask for the image at the same time.
fn build_image(tag: &str) -> Result<()> {
    let root = project_root();
    let target_dir = root.join("target").join("static");
    std::fs::create_dir_all(&target_dir)
        .with_context(|| format!("create {}", target_dir.display()))?;
    let lock_path = target_dir.join("log-capturer-image.lock");
    let lock =
        File::create(&lock_path).with_context(|| format!("create {}", lock_path.display()))?;
    lock.lock()
        .with_context(|| format!("lock {}", lock_path.display()))?;

    let binary = build_static_binary(&target_dir)?;
    let dockerfile = std::fs::read_to_string(root.join("deploy").join("Dockerfile"))
        .context("read deploy/Dockerfile")?;
    let context = target_dir.join("log-capturer-image");
    write_context(&context, &binary, &dev_dockerfile(&dockerfile)?)?;
    let context = context.to_string_lossy();
    eprintln!("$ docker build --tag {tag} {context}");
    docker_cli(&["build", "--quiet", "--tag", tag, &context])?;
    Ok(())
}

fn build_static_binary(target_dir: &Path) -> Result<PathBuf> {
    run_command(
        cargo()
            .args([
                "build",
                "--release",
                "--locked",
                "--package",
                "log-capturer",
            ])
            .args(["--target", STATIC_TARGET])
            .env("CARGO_TARGET_DIR", target_dir)
            .env("RUSTFLAGS", STATIC_RUSTFLAGS),
    )?;
    let binary = target_dir
        .join(STATIC_TARGET)
        .join("release")
        .join("log-capturer");
    // A scratch image has no dynamic loader: make sure the link really was static.
    let file = Command::new("file").arg(&binary).output();
    if let Ok(output) = file {
        let description = String::from_utf8_lossy(&output.stdout);
        if description.contains("dynamically linked") {
            bail!("{} is dynamically linked: {description}", binary.display());
        }
    }
    Ok(binary)
}

/// Lays out the build context: `Dockerfile` and `out/` as deploy/Dockerfile's build stage makes it.
fn write_context(context: &Path, binary: &Path, dockerfile: &str) -> Result<()> {
    if context.exists() {
        std::fs::remove_dir_all(context).with_context(|| format!("clear {}", context.display()))?;
    }
    let out = context.join("out");
    std::fs::create_dir_all(out.join("data"))
        .with_context(|| format!("create {}", out.display()))?;
    copy(binary, &out.join("log-capturer"), "")?;
    // The release profile keeps line tables (58 MB); the image keeps the symbols, so a panic's
    // backtrace still names its functions, but not the debug info (14 MB).
    run_command(
        Command::new("strip")
            .arg("--strip-debug")
            .arg(out.join("log-capturer")),
    )?;
    copy(
        Path::new(BUSYBOX),
        &out.join("busybox"),
        "install Debian's busybox-static (`cargo xtask test` does)",
    )?;
    copy(
        Path::new(CA_BUNDLE),
        &out.join("ca-certificates.crt"),
        "install Debian's ca-certificates",
    )?;
    // deploy/Dockerfile's build stage makes the data dir 0750 (`install -d -m 0750`).
    std::fs::set_permissions(out.join("data"), std::fs::Permissions::from_mode(0o750))
        .context("chmod the data dir")?;
    std::fs::write(context.join("Dockerfile"), dockerfile).context("write the Dockerfile")?;
    Ok(())
}

fn copy(from: &Path, to: &Path, hint: &str) -> Result<()> {
    std::fs::copy(from, to)
        .map(drop)
        .with_context(|| format!("copy {} to {} {hint}", from.display(), to.display()))
}

/// The dev image's Dockerfile: `out/` stands in for the build stage, followed by deploy/Dockerfile's
/// runtime stage unchanged, on `scratch`.
fn dev_dockerfile(deploy_dockerfile: &str) -> Result<String> {
    let start = deploy_dockerfile
        .lines()
        .position(|line| line.trim() == RUNTIME_STAGE)
        .with_context(|| format!("deploy/Dockerfile has no line {RUNTIME_STAGE:?}"))?;
    let runtime_stage: Vec<&str> = deploy_dockerfile.lines().skip(start).collect();
    if let Some(run) = runtime_stage
        .iter()
        .find(|line| line.trim_start().starts_with("RUN "))
    {
        bail!(
            "deploy/Dockerfile's runtime stage must not RUN anything (scratch has no shell): {run}"
        );
    }
    Ok(format!(
        "# Generated by `cargo xtask image` from deploy/Dockerfile: a static build of log-capturer\n\
         # from the host stands in for the build stage; the runtime stage is deploy/Dockerfile's.\n\
         ARG RUNTIME_IMAGE=scratch\n\
         FROM scratch AS build\n\
         COPY out/ /out/\n\n\
         {}\n",
        runtime_stage.join("\n")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_dockerfile_reuses_the_runtime_stage_on_scratch() {
        let deploy = "ARG RUNTIME_IMAGE=distroless\nFROM rust AS build\nRUN cargo build\n\
                      FROM ${RUNTIME_IMAGE} AS runtime\nUSER 65532:65532\nENTRYPOINT [\"/x\"]\n";
        let dev = dev_dockerfile(deploy).unwrap();
        assert!(
            dev.contains("ARG RUNTIME_IMAGE=scratch\nFROM scratch AS build\nCOPY out/ /out/\n")
        );
        assert!(dev.ends_with(
            "FROM ${RUNTIME_IMAGE} AS runtime\nUSER 65532:65532\nENTRYPOINT [\"/x\"]\n"
        ));
        assert!(!dev.contains("cargo build"), "{dev}");
    }

    #[test]
    fn dev_dockerfile_refuses_a_dockerfile_without_the_runtime_stage_or_with_run() {
        assert!(dev_dockerfile("FROM rust\nRUN true\n").is_err());
        let with_run = "FROM ${RUNTIME_IMAGE} AS runtime\nRUN chown 1 /x\n";
        assert!(dev_dockerfile(with_run).is_err());
    }

    #[test]
    fn the_real_dockerfile_has_a_runtime_stage_the_dev_image_can_reuse() {
        let text = std::fs::read_to_string(project_root().join("deploy/Dockerfile")).unwrap();
        let dev = dev_dockerfile(&text).unwrap();
        for instruction in [
            "ENV ",
            "VOLUME ",
            "EXPOSE ",
            "USER ",
            "HEALTHCHECK ",
            "ENTRYPOINT ",
        ] {
            assert!(dev.contains(instruction), "no {instruction} in\n{dev}");
        }
    }
}
