//! Wiring: builds every component from the config, connects them with channels, runs them, and
//! shuts them down in order.
//!
//! Shutdown order (bounded by `shutdown_grace`): readiness off → the Docker source cancelled
//! (its container tasks stop and drop their batch senders) → the pipeline drains, flushes the
//! sinks (or persists to the disk buffer) and drops the acknowledgement sender → the source
//! applies the last acknowledgements and persists its cursors → the supervisor shuts down → the
//! health server stops.

use std::{sync::Arc, time::Duration};

use anyhow::{Context, Result};
use capture_core::status::DockerState;
use docker_source::DockerSource;
use health_api::{HealthApi, Readiness};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use sink_pipeline::{Pipeline, PipelineConfig, metric_names::SINK_REQUEST_DURATION_SECONDS};
use task_supervisor::{Supervisor, SupervisorConfig};
use tokio::{sync::mpsc, time::Instant};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::{
    config::Config,
    reload::{self, Reloader},
    signal,
    status::AgentStatus,
};

/// Bucket bounds (seconds) of `log_capturer_sink_request_duration_seconds`: from a file write
/// (sub-millisecond) to a slow Loki push (seconds).
const SINK_REQUEST_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Runs the agent until a signal (or a component's failure), then shuts down in order.
pub(crate) async fn run(config: Config, reload_inputs: reload::Inputs) -> Result<()> {
    // First, so a SIGHUP during start-up is a reload (applied once running), not the end.
    let hangups = signal::reload_signals().context("listen for SIGHUP")?;
    let prometheus = PrometheusBuilder::new()
        // Buckets make the request duration a histogram rather than a summary, so it can be
        // aggregated across hosts (`histogram_quantile(0.99, sum by (le) (rate(...)))`).
        .set_buckets_for_metric(
            Matcher::Full(SINK_REQUEST_DURATION_SECONDS.to_owned()),
            SINK_REQUEST_BUCKETS,
        )
        .context("configure the metric buckets")?
        .install_recorder()
        .context("install the metrics recorder")?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("create the data dir {}", config.data_dir.display()))?;

    let supervisor = Supervisor::new(SupervisorConfig {
        heartbeat_interval: config.supervisor.heartbeat_interval,
        task_timeout: config.supervisor.task_timeout,
        ..SupervisorConfig::default()
    });
    let pipeline = Pipeline::new(
        PipelineConfig {
            batch: config.pipeline.clone(),
            sinks: config.effective_sinks(),
        },
        &config.data_dir,
    )
    .context("start the sink pipeline")?;
    let source = DockerSource::new(config.docker.clone(), &config.data_dir)
        .context("start the Docker source")?;

    let readiness = Readiness::default();
    let docker_rx = source.status();
    let status = AgentStatus {
        supervisor: supervisor.clone(),
        sinks_rx: pipeline.status(),
        docker_rx: docker_rx.clone(),
        unreadable_rx: source.unreadable(),
    };
    let mut health = HealthApi::new(
        config.health.clone(),
        Arc::new(status),
        readiness.clone(),
        prometheus,
    )
    .with_version(env!("CARGO_PKG_VERSION"));
    // The main runtime counts already; the stream workers are extra runtimes.
    for handle in source.runtime_handles() {
        health.register_runtime(handle);
    }
    let reloader = Reloader::new(
        reload_inputs,
        config.clone(),
        source.reloader(),
        pipeline.reloader(),
        health.reloader(),
    );
    let health = health.bind().await.context("bind the health API")?;
    info!(listen = %health.local_addr(), data_dir = %config.data_dir.display(), "log-capturer starting");

    let (batch_tx, batch_rx) = mpsc::channel(sink_pipeline::INPUT_CHANNEL_CAPACITY);
    // Unbounded on purpose: acknowledgements are bounded by the batches in flight, which the
    // bounded batch channel and the sink queues limit; a bounded channel here could deadlock the
    // pipeline against a source that is itself blocked sending batches.
    let (ack_tx, ack_rx) = mpsc::unbounded_channel();

    let source_shutdown = CancellationToken::new();
    let pipeline_shutdown = CancellationToken::new();
    let health_shutdown = CancellationToken::new();
    let mut health_task = tokio::spawn(health.serve(health_shutdown.clone()));
    let mut pipeline_task = tokio::spawn(pipeline.run(batch_rx, ack_tx, pipeline_shutdown.clone()));
    let mut source_task = tokio::spawn(source.run(
        supervisor.clone(),
        batch_tx,
        ack_rx,
        source_shutdown.clone(),
    ));

    // Ready once Docker answers and the pipeline runs (it runs from here on).
    let readiness_latch = {
        let readiness = readiness.clone();
        let mut docker_rx = docker_rx;
        async move {
            let _ = docker_rx
                .wait_for(|docker| docker.state == DockerState::Connected)
                .await;
            readiness.set_ready(true);
            info!("ready");
            std::future::pending::<()>().await
        }
    };

    let mut failure = None;
    // Which task already ended (a finished JoinHandle must not be awaited again).
    let (mut source_done, mut pipeline_done, mut health_done) = (false, false, false);
    tokio::select! {
        signal = signal::shutdown_signal() => match signal {
            Ok(name) => info!(signal = name, "shutting down"),
            Err(e) => {
                error!(error = %e, "cannot listen for signals; shutting down");
                failure = Some(anyhow::Error::new(e).context("listen for signals"));
            }
        },
        result = &mut source_task => {
            source_done = true;
            failure = Some(ended("Docker source", result));
        }
        result = &mut pipeline_task => {
            pipeline_done = true;
            failure = Some(ended("sink pipeline", result));
        }
        result = &mut health_task => {
            health_done = true;
            failure = Some(ended("health API", result));
        }
        () = readiness_latch => {}
        () = reloader.run(hangups) => {}
    }

    // The ordered shutdown, bounded by the grace period as a whole.
    readiness.set_ready(false);
    let deadline = Instant::now() + config.shutdown_grace;
    source_shutdown.cancel();
    let drained = tokio::time::timeout_at(deadline, async {
        if !source_done {
            log_outcome("Docker source", (&mut source_task).await);
            source_done = true;
        }
        if !pipeline_done {
            log_outcome("sink pipeline", (&mut pipeline_task).await);
            pipeline_done = true;
        }
    })
    .await;
    if drained.is_err() {
        warn!(grace = ?config.shutdown_grace, "shutdown grace exceeded; cancelling the sinks");
        pipeline_shutdown.cancel();
        // The pipeline stops retrying and persists what it can; give it a moment to return.
        if !pipeline_done {
            let _ = tokio::time::timeout(Duration::from_secs(1), &mut pipeline_task).await;
        }
        if !source_done {
            let _ = tokio::time::timeout(Duration::from_secs(1), &mut source_task).await;
        }
        source_task.abort();
        pipeline_task.abort();
    }
    let remaining = deadline.saturating_duration_since(Instant::now());
    let report = supervisor
        .shutdown(remaining.max(Duration::from_millis(100)))
        .await;
    if !report.aborted.is_empty() {
        warn!(tasks = ?report.aborted, "tasks aborted at shutdown");
    }
    health_shutdown.cancel();
    if !health_done {
        let _ = tokio::time::timeout(Duration::from_secs(2), &mut health_task).await;
    }
    health_task.abort();
    info!("stopped");
    match failure {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

fn ended<E: std::fmt::Display>(
    what: &str,
    result: Result<Result<(), E>, tokio::task::JoinError>,
) -> anyhow::Error {
    match result {
        Ok(Ok(())) => anyhow::anyhow!("the {what} stopped unexpectedly"),
        Ok(Err(e)) => anyhow::anyhow!("the {what} failed: {e}"),
        Err(e) => anyhow::anyhow!("the {what} panicked: {e}"),
    }
}

fn log_outcome<E: std::error::Error + 'static>(
    what: &str,
    result: Result<Result<(), E>, tokio::task::JoinError>,
) {
    match result {
        Ok(Ok(())) => info!(component = what, "stopped cleanly"),
        Ok(Err(e)) => {
            error!(component = what, error = %capture_core::ErrorChain(&e), "stopped with an error")
        }
        Err(e) => error!(component = what, error = %e, "task failed"),
    }
}
