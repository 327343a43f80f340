//! Tests of the reload: which keys apply live and which wait for a restart, and a reload of
//! real (not running) components: refused files change nothing, valid ones apply their live
//! keys.

use std::{path::Path, sync::Arc, time::Duration};

use capture_core::status::{DockerSnapshot, SinkSnapshot, TaskSnapshot};
use clap::Parser;
use docker_source::DockerSource;
use health_api::{HealthApi, Readiness, StatusSource};
use metrics_exporter_prometheus::PrometheusBuilder;
use sink_pipeline::{INPUT_CHANNEL_CAPACITY, Pipeline, config::PipelineConfig};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Inputs, Reloader, diff};
use crate::{cli::Cli, config::Config};

fn cli(config: &Path) -> Cli {
    Cli::try_parse_from(["log-capturer", "--config", config.to_str().unwrap()]).unwrap()
}

fn load(config: &Path) -> Config {
    Config::load(&cli(config), Vec::new()).unwrap()
}

/// A configuration file under `dir` with a file sink `a` and the extra TOML `more`.
fn write_config(dir: &Path, more: &str) -> std::path::PathBuf {
    let path = dir.join("config.toml");
    let text = format!(
        "data_dir = \"{dir}\"\n{more}\n[[sinks]]\ntype = \"file\"\nname = \"a\"\npath = \"{dir}/a.jsonl\"\n",
        dir = dir.display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn live_keys_and_restart_only_keys_are_told_apart() {
    let dir = tempfile::tempdir().unwrap();
    let running = load(&write_config(dir.path(), ""));
    let next = load(&write_config(
        dir.path(),
        "shutdown_grace = \"20s\"\n\
         [docker]\nexclude_names = [\"db-*\"]\nstream_threads = 2\n\
         [supervisor]\ntask_timeout = \"10m\"\n\
         [health]\nsink_failure_window = \"1m\"\nlisten = \"127.0.0.1:9999\"\n",
    ));
    let applied = diff::with_live_settings(&running, &next);
    assert_eq!(
        diff::changed_keys(&running, &applied),
        ["docker.exclude_names", "health.sink_failure_window"]
    );
    assert_eq!(
        diff::changed_keys(&applied, &next),
        [
            "docker.stream_threads",
            "health.listen",
            "shutdown_grace",
            "supervisor.task_timeout"
        ]
    );
    assert_eq!(applied.shutdown_grace, running.shutdown_grace);
    assert_eq!(applied.docker.stream_threads, 1);
    assert_eq!(applied.docker.exclude_names, ["db-*"]);
    assert!(diff::changed_keys(&running, &running).is_empty());
}

#[test]
fn a_changed_sink_list_is_one_live_key() {
    let dir = tempfile::tempdir().unwrap();
    let running = load(&write_config(dir.path(), ""));
    let mut next = running.clone();
    next.sinks.pop();
    let applied = diff::with_live_settings(&running, &next);
    assert_eq!(diff::changed_keys(&running, &applied), ["sinks"]);
    assert!(diff::changed_keys(&applied, &next).is_empty());
}

#[test]
fn every_live_key_is_a_key_of_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let rendered = toml::Value::try_from(load(&write_config(dir.path(), ""))).unwrap();
    for key in diff::live_keys() {
        let found = key
            .split('.')
            .try_fold(&rendered, |value, part| value.get(part));
        assert!(found.is_some(), "{key} is not a configuration key");
    }
}

/// A status source for a health API that is never asked.
struct Idle;

impl StatusSource for Idle {
    fn tasks(&self) -> Vec<TaskSnapshot> {
        Vec::new()
    }
    fn sinks(&self) -> Vec<SinkSnapshot> {
        Vec::new()
    }
    fn docker(&self) -> DockerSnapshot {
        DockerSnapshot::default()
    }
}

#[tokio::test]
async fn a_reload_refuses_an_invalid_file_and_applies_a_valid_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "[docker]\ninclude_names = [\"web-*\"]\n");
    let config = load(&path);
    let source = DockerSource::new(config.docker.clone(), dir.path()).unwrap();
    let pipeline = Pipeline::new(
        PipelineConfig {
            batch: config.pipeline.clone(),
            sinks: config.effective_sinks(),
        },
        dir.path(),
    )
    .unwrap();
    let sinks = pipeline.status();
    let pipeline_reloader = pipeline.reloader();
    let (batch_tx, batch_rx) = mpsc::channel(INPUT_CHANNEL_CAPACITY);
    let (ack_tx, _ack_rx) = mpsc::unbounded_channel();
    let running = tokio::spawn(pipeline.run(batch_rx, ack_tx, CancellationToken::new()));
    let prometheus = PrometheusBuilder::new().build_recorder().handle();
    let health = HealthApi::new(
        config.health.clone(),
        Arc::new(Idle),
        Readiness::default(),
        prometheus,
    );
    let inputs = Inputs {
        cli: cli(&path),
        env: Vec::new(),
    };
    let mut reloader = Reloader::new(
        inputs,
        config.clone(),
        source.reloader(),
        pipeline_reloader,
        health.reloader(),
    );

    std::fs::write(&path, "[docker]\nread_from = \"middle\"\n").unwrap();
    let refused = reloader.reload().await.unwrap_err();
    assert_eq!(refused.key, "docker.read_from", "{refused}");
    let a = dir.path().join("a.jsonl");
    let two_on_one_file = format!(
        "[[sinks]]\ntype = \"file\"\npath = \"{a}\"\n[[sinks]]\ntype = \"file\"\npath = \"{a}\"\n",
        a = a.display()
    );
    std::fs::write(&path, two_on_one_file).unwrap();
    let refused = reloader.reload().await.unwrap_err();
    assert_eq!(refused.key, "sinks", "{refused}");
    assert!(refused.to_string().contains("both write"), "{refused}");
    assert_eq!(reloader.running.docker.include_names, ["web-*"]);
    assert_eq!(sinks.borrow().len(), 1);

    let more = format!(
        "shutdown_grace = \"1m\"\n[docker]\ninclude_names = [\"api-*\"]\n\
         [[sinks]]\ntype = \"file\"\nname = \"b\"\npath = \"{}/b.jsonl\"\n",
        dir.path().display()
    );
    write_config(dir.path(), &more);
    let applied = reloader.reload().await.unwrap();
    assert_eq!(applied.live, ["docker.include_names", "sinks"]);
    assert_eq!(applied.restart_only, ["shutdown_grace"]);
    assert_eq!(applied.sinks.added, ["b"]);
    assert_eq!(reloader.running.docker.include_names, ["api-*"]);
    assert_eq!(reloader.running.shutdown_grace, Duration::from_secs(10));
    assert_eq!(sinks.borrow().len(), 2);

    drop(batch_tx);
    running.await.unwrap().unwrap();
}
