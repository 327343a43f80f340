//! Wiring: builds every component from the config, connects them with channels, runs them, and
//! shuts them down in order.
//!
//! Shutdown order (bounded by `shutdown_grace`): readiness off → the Docker source cancelled
//! (its container tasks stop and drop their batch senders) → the pipeline drains, flushes the
//! sinks (or persists to the disk buffer) and drops the acknowledgement sender → the source
//! applies the last acknowledgements and persists its cursors → the supervisor shuts down → the
//! health server stops.

use std::{future::Future, sync::Arc, time::Duration};

use anyhow::{Context, Result};
use capture_core::{
    BoxError, ErrorChain,
    status::{DockerSnapshot, DockerState},
};
use docker_source::DockerSource;
use health_api::{HealthApi, Readiness};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sink_pipeline::{
    Pipeline, config::PipelineConfig, metric_names::SINK_REQUEST_DURATION_SECONDS,
};
use task_supervisor::{Supervisor, SupervisorConfig};
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
    time::Instant,
};
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

/// How long a pipeline that ended waits for the source's end, the failure that caused it.
const CAUSE_WAIT: Duration = Duration::from_secs(1);

/// Runs the agent until a signal (or a component's failure), then shuts down in order.
pub(crate) async fn run(config: Config, reload_inputs: reload::Inputs) -> Result<()> {
    // First, so a SIGHUP during start-up is a reload (applied once running), not the end.
    let hangups = signal::reload_signals().context("listen for SIGHUP")?;
    let prometheus = install_metrics_recorder()?;
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
    let mut parts = Parts {
        health: Part::spawn("health API", |stop| health.serve(stop)),
        pipeline: Part::spawn("sink pipeline", |stop| pipeline.run(batch_rx, ack_tx, stop)),
        source: Part::spawn("Docker source", |stop| {
            source.run(supervisor.clone(), batch_tx, ack_rx, stop)
        }),
    };
    let failure = parts
        .until_the_end(
            ready_once_connected(readiness.clone(), docker_rx),
            reloader.run(hangups),
        )
        .await;
    readiness.set_ready(false);
    parts.shut_down(&supervisor, config.shutdown_grace).await;
    info!("stopped");
    failure.map_or(Ok(()), Err)
}

/// Installs the Prometheus recorder every crate's metrics go to.
fn install_metrics_recorder() -> Result<PrometheusHandle> {
    PrometheusBuilder::new()
        // Buckets make the request duration a histogram rather than a summary, so it can be
        // aggregated across hosts (`histogram_quantile(0.99, sum by (le) (rate(...)))`).
        .set_buckets_for_metric(
            Matcher::Full(SINK_REQUEST_DURATION_SECONDS.to_owned()),
            SINK_REQUEST_BUCKETS,
        )
        .context("configure the metric buckets")?
        .install_recorder()
        .context("install the metrics recorder")
}

/// Sets the agent ready once Docker answers (the pipeline runs from the start), then never
/// completes.
async fn ready_once_connected(
    readiness: Readiness,
    mut docker_rx: watch::Receiver<DockerSnapshot>,
) {
    let _ = docker_rx
        .wait_for(|docker| docker.state == DockerState::Connected)
        .await;
    readiness.set_ready(true);
    info!("ready");
    std::future::pending::<()>().await
}

/// The agent's three parts, each a task of its own.
struct Parts {
    source: Part,
    pipeline: Part,
    health: Part,
}

impl Parts {
    /// Runs `readiness` and `reloads` beside the parts until a shutdown signal or a part's end
    /// (a part never ends on its own: that is a failure, returned). A source that fails ends
    /// the pipeline it feeds: the source's failure is the one reported (the cause), not "the
    /// pipeline stopped".
    async fn until_the_end(
        &mut self,
        readiness: impl Future<Output = ()>,
        reloads: impl Future<Output = ()>,
    ) -> Option<anyhow::Error> {
        tokio::select! {
            signal = signal::shutdown_signal() => match signal {
                Ok(name) => {
                    info!(signal = name, "shutting down");
                    None
                }
                Err(e) => {
                    error!(error = %e, "cannot listen for signals; shutting down");
                    Some(anyhow::Error::new(e).context("listen for signals"))
                }
            },
            failure = self.source.ended() => Some(failure),
            failure = self.pipeline.ended() => {
                // The pipeline ends when the source that feeds it is gone.
                let cause = self.source.ended_within(CAUSE_WAIT).await;
                Some(cause.unwrap_or(failure))
            }
            failure = self.health.ended() => Some(failure),
            () = readiness => None,
            () = reloads => None,
        }
    }

    /// The ordered shutdown, bounded by `grace` as a whole: the source, then the pipeline it
    /// feeds (which cancels the sinks if the grace runs out), then the supervisor's tasks, then
    /// the health API.
    async fn shut_down(mut self, supervisor: &Supervisor, grace: Duration) {
        let deadline = Instant::now() + grace;
        self.source.stop.cancel();
        let drained = tokio::time::timeout_at(deadline, async {
            self.source.join().await;
            self.pipeline.join().await;
        })
        .await;
        if drained.is_err() {
            warn!(grace = ?grace, "shutdown grace exceeded; cancelling the sinks");
            self.pipeline.stop.cancel();
            // The pipeline stops retrying and persists what it can; give it a moment to return.
            self.pipeline.join_within(Duration::from_secs(1)).await;
            self.source.join_within(Duration::from_secs(1)).await;
            self.source.task.abort();
            self.pipeline.task.abort();
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        let report = supervisor
            .shutdown(remaining.max(Duration::from_millis(100)))
            .await;
        if !report.aborted.is_empty() {
            warn!(tasks = ?report.aborted, "tasks aborted at shutdown");
        }
        self.health.stop.cancel();
        self.health.join_within(Duration::from_secs(2)).await;
    }
}

/// One part running as a task, with the token that asks it to stop. Dropping it aborts a task
/// that is still running.
struct Part {
    name: &'static str,
    task: JoinHandle<Result<(), BoxError>>,
    stop: CancellationToken,
    /// The task has ended (a finished `JoinHandle` must not be awaited again).
    done: bool,
}

impl Part {
    fn spawn<F, E>(name: &'static str, run: impl FnOnce(CancellationToken) -> F) -> Part
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: std::error::Error + Send + Sync + 'static,
    {
        let stop = CancellationToken::new();
        let future = run(stop.clone());
        let task = tokio::spawn(async move { future.await.map_err(BoxError::from) });
        Part {
            name,
            task,
            stop,
            done: false,
        }
    }

    /// Waits for the part to end on its own, which is always a failure: returns it.
    async fn ended(&mut self) -> anyhow::Error {
        let result = (&mut self.task).await;
        self.done = true;
        match result {
            Ok(Ok(())) => anyhow::anyhow!("the {} stopped unexpectedly", self.name),
            Ok(Err(e)) => anyhow::anyhow!("the {} failed: {}", self.name, ErrorChain(&*e)),
            Err(e) => anyhow::anyhow!("the {} panicked: {e}", self.name),
        }
    }

    /// [`Part::ended`], if the part ends within `bound`.
    async fn ended_within(&mut self, bound: Duration) -> Option<anyhow::Error> {
        if self.done {
            return None;
        }
        tokio::time::timeout(bound, self.ended()).await.ok()
    }

    /// Waits for the part's end after it was asked to stop, and logs how it ended.
    async fn join(&mut self) {
        if self.done {
            return;
        }
        let result = (&mut self.task).await;
        self.done = true;
        let what = self.name;
        match result {
            Ok(Ok(())) => info!(component = what, "stopped cleanly"),
            Ok(Err(e)) => {
                error!(component = what, error = %ErrorChain(&*e), "stopped with an error")
            }
            Err(e) => error!(component = what, error = %e, "task failed"),
        }
    }

    /// [`Part::join`] for at most `bound`.
    async fn join_within(&mut self, bound: Duration) {
        let _ = tokio::time::timeout(bound, self.join()).await;
    }
}

impl Drop for Part {
    fn drop(&mut self) {
        self.task.abort();
    }
}
