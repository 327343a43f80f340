//! Every shipped deployment runs the agent on an absolute `data_dir`, the one its volume or
//! state directory keeps, so cursors never depend on the working directory.

use std::process::Command;

use end_to_end::capturer_binary;

use crate::deploy_dir;

/// Where every deployment keeps the agent's state.
const DATA_DIR: &str = "/var/lib/log-capturer";

/// The effective `data_dir` of `config` (under `deploy/log-capturer/`) with `env` set, as
/// `--check-config` prints it.
fn effective_data_dir(config: &str, env: &[(&str, &str)]) -> String {
    let mut command = Command::new(capturer_binary());
    command
        .arg("--check-config")
        .arg("--config")
        .arg(deploy_dir().join("log-capturer").join(config));
    for (key, _) in std::env::vars() {
        if key.starts_with("LOG_CAPTURER_") {
            command.env_remove(key);
        }
    }
    let output = command
        .envs(env.iter().copied())
        .output()
        .expect("run --check-config");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{config}: {output:?}");
    let line = stdout
        .lines()
        .find(|line| line.starts_with("data_dir = "))
        .unwrap_or_else(|| panic!("{config}: no data_dir in\n{stdout}"));
    line.trim_start_matches("data_dir = ")
        .trim_matches('"')
        .to_owned()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(deploy_dir().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn every_deployment_uses_an_absolute_data_dir_that_its_volume_keeps() {
    // The image: set by the environment, declared as a volume.
    let dockerfile = read("Dockerfile");
    let image_env = format!("LOG_CAPTURER_DATA_DIR={DATA_DIR}");
    assert!(
        dockerfile.contains(&image_env),
        "the image does not set {image_env}"
    );
    assert!(
        dockerfile.contains(&format!("VOLUME [\"{DATA_DIR}\"]")),
        "the image does not declare {DATA_DIR} a volume"
    );
    // Compose and swarm run that image with their own config and a volume at the same place.
    for (stack, config, mount) in [
        ("docker-compose.yml", "compose.toml", format!(":{DATA_DIR}")),
        (
            "swarm-stack.yml",
            "swarm.toml",
            format!("target: {DATA_DIR}"),
        ),
    ] {
        assert!(
            read(stack).contains(&mount),
            "{stack} does not mount {DATA_DIR}"
        );
        let effective = effective_data_dir(config, &[("LOG_CAPTURER_DATA_DIR", DATA_DIR)]);
        assert_eq!(
            effective, DATA_DIR,
            "{config} overrides the image's data_dir"
        );
    }
    // systemd: the unit's environment and state directory, and the host config itself.
    let unit = read("systemd/log-capturer.service");
    assert!(unit.contains(&format!("Environment={image_env}")), "{unit}");
    assert!(unit.contains("StateDirectory=log-capturer"), "{unit}");
    assert_eq!(effective_data_dir("host.toml", &[]), DATA_DIR);
    assert_eq!(
        effective_data_dir("host.toml", &[("LOG_CAPTURER_DATA_DIR", DATA_DIR)]),
        DATA_DIR
    );
}
