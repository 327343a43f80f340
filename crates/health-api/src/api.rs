//! [`HealthApi`]: the routes, answered synchronously and without a socket.

use std::fmt;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use capture_core::status::{DockerSnapshot, SinkSnapshot, TaskSnapshot, UnreadableContainer};
use http::header::{ALLOW, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, Method, Response, StatusCode};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::{runtime::Handle, sync::watch};

use crate::report::evaluate;
use crate::{HealthConfig, HealthReloader, HealthReport, Readiness, process_metrics};

/// What the health endpoint reports; the binary implements it over the supervisor, the pipeline
/// status watch and the docker status watch.
///
/// Every method is called on each `/health` request, from the server's task: implementations
/// must return promptly (clone the latest value of a `watch`, take a short lock) and never wait
/// for the data path.
pub trait StatusSource: Send + Sync + 'static {
    /// Every supervised task.
    fn tasks(&self) -> Vec<TaskSnapshot>;
    /// Every sink.
    fn sinks(&self) -> Vec<SinkSnapshot>;
    /// The Docker connection.
    fn docker(&self) -> DockerSnapshot;
    /// The containers whose logs cannot be read by design (no task, not a failure). None by
    /// default.
    fn unreadable(&self) -> Vec<UnreadableContainer> {
        Vec::new()
    }
}

const JSON: &str = "application/json";
const TEXT: &str = "text/plain; charset=utf-8";
/// The content type of the Prometheus text exposition format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
const ALLOWED_METHODS: &str = "GET, HEAD";

/// The health API: configuration, status sources and the routes over them.
///
/// [`HealthApi::handle`] answers a request without a socket; [`HealthApi::bind`] puts the same
/// routes behind an HTTP/1.1 server.
pub struct HealthApi {
    pub(crate) config: HealthConfig,
    /// The configuration as reloads change it; only its live keys (the status thresholds) are
    /// read from here.
    live_tx: watch::Sender<HealthConfig>,
    status: Arc<dyn StatusSource>,
    pub(crate) readiness: Readiness,
    prometheus: PrometheusHandle,
    /// The runtimes whose alive tasks `tokio_alive_tasks` sums.
    runtimes: Vec<Handle>,
    /// Whether `runtimes` holds the runtime `new` or `bind` ran on, so it is counted once.
    counts_own_runtime: bool,
    version: &'static str,
    started: Instant,
}

impl fmt::Debug for HealthApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthApi")
            .field("config", &self.config)
            .field("readiness", &self.readiness)
            .field("runtimes", &self.runtimes.len())
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl HealthApi {
    /// Creates the API over its status source, readiness latch and metrics recorder.
    ///
    /// Called inside a tokio runtime, that runtime is counted by `tokio_alive_tasks`; otherwise
    /// the runtime that calls [`HealthApi::bind`] is. Register further runtimes with
    /// [`HealthApi::register_runtime`].
    pub fn new(
        config: HealthConfig,
        status: Arc<dyn StatusSource>,
        readiness: Readiness,
        prometheus: PrometheusHandle,
    ) -> HealthApi {
        let runtimes: Vec<Handle> = Handle::try_current().into_iter().collect();
        HealthApi {
            live_tx: watch::Sender::new(config.clone()),
            config,
            status,
            readiness,
            prometheus,
            counts_own_runtime: !runtimes.is_empty(),
            runtimes,
            version: env!("CARGO_PKG_VERSION"),
            started: Instant::now(),
        }
    }

    /// Sets the `version` reported by `/health` (default: this crate's version).
    #[must_use]
    pub fn with_version(mut self, version: &'static str) -> HealthApi {
        self.version = version;
        self
    }

    /// The handle a configuration reload uses to change the status thresholds
    /// ([`HealthConfig::LIVE_KEYS`]).
    pub fn reloader(&self) -> HealthReloader {
        HealthReloader {
            config_tx: self.live_tx.clone(),
        }
    }

    /// Adds a runtime (other than the one the API was created on) to `tokio_alive_tasks`.
    pub fn register_runtime(&mut self, handle: Handle) {
        self.runtimes.push(handle);
    }

    /// Counts the current runtime if no runtime was current when the API was created.
    pub(crate) fn count_current_runtime(&mut self) {
        if !self.counts_own_runtime
            && let Ok(handle) = Handle::try_current()
        {
            self.runtimes.push(handle);
            self.counts_own_runtime = true;
        }
    }

    /// The `/health` body as of now.
    pub fn report(&self) -> HealthReport {
        let now = SystemTime::now();
        let tasks = self.status.tasks();
        let sinks = self.status.sinks();
        let docker = self.status.docker();
        let unreadable = self.status.unreadable();
        let config = self.live_tx.borrow().clone();
        HealthReport {
            status: evaluate(&config, &tasks, &sinks, &docker, now),
            version: self.version,
            timestamp: now,
            uptime_seconds: self.started.elapsed().as_secs_f64(),
            tasks,
            sinks,
            docker,
            unreadable,
        }
    }

    /// Answers one request: method and path (without the query) in, the full response out.
    ///
    /// This is the whole routing of the server; requests carry no body worth reading, so none is
    /// taken. `HEAD` answers like `GET` with the body left out.
    pub fn handle(&self, method: &Method, path: &str) -> Response<Bytes> {
        let route: fn(&HealthApi) -> Response<Bytes> = match path {
            "/health" => HealthApi::health,
            "/live" => HealthApi::live,
            "/ready" => HealthApi::ready,
            "/metrics" => HealthApi::metrics,
            _ => return plain(StatusCode::NOT_FOUND, "not found\n"),
        };
        if method == Method::GET {
            route(self)
        } else if method == Method::HEAD {
            let mut response = route(self);
            let length = HeaderValue::from(response.body().len());
            response.headers_mut().insert(CONTENT_LENGTH, length);
            *response.body_mut() = Bytes::new();
            response
        } else {
            let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static(ALLOWED_METHODS));
            response
        }
    }

    fn health(&self) -> Response<Bytes> {
        let report = self.report();
        match serde_json::to_vec(&report) {
            Ok(body) => response(report.status.http_status(), JSON, Bytes::from(body)),
            Err(error) => {
                // Serialising plain structs of strings and numbers cannot fail in practice; if it
                // ever does, the client gets a clear 500 rather than a dropped connection.
                tracing::error!(error = %error, "cannot serialise the health report");
                plain(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "cannot serialise report\n",
                )
            }
        }
    }

    fn live(&self) -> Response<Bytes> {
        plain(StatusCode::OK, "live\n")
    }

    fn ready(&self) -> Response<Bytes> {
        if self.readiness.is_ready() {
            plain(StatusCode::OK, "ready\n")
        } else {
            plain(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
        }
    }

    fn metrics(&self) -> Response<Bytes> {
        process_metrics::refresh(&self.runtimes);
        let body = self.prometheus.render();
        response(StatusCode::OK, PROMETHEUS_TEXT, Bytes::from(body))
    }
}

fn plain(status: StatusCode, body: &'static str) -> Response<Bytes> {
    response(status, TEXT, Bytes::from_static(body.as_bytes()))
}

fn response(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Bytes> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Every answer describes the present moment; a cached one would mislead a probe.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
