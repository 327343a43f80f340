//! Opening sinks from their configuration, with their disk buffer: at start and on a reload.

use std::path::Path;

use capture_core::status::{SinkSnapshot, SinkState};
use tracing::info;

use crate::{
    buffer::DiskBuffer,
    config::SinkConfig,
    error::{Error, Result},
    metric_names::SINK_EVENTS_TOTAL,
    sink::{DynSink, SinkError},
    sinks::{file::FileSink, loki::LokiSink, otlp::OtlpSink, stdout::StdoutSink},
    worker::{PreparedSink, SinkOptions},
};

/// Builds the sink a configuration describes. A file sink opens its file and recovers its
/// high-water marks now, so no other sink may be writing that file. `name` labels its metrics.
pub(crate) fn build_sink(config: &SinkConfig, name: &str) -> Result<Box<dyn DynSink>, SinkError> {
    Ok(match config {
        SinkConfig::File(file) => Box::new(FileSink::open(file, name)?),
        SinkConfig::Stdout(stdout) => Box::new(StdoutSink::new(stdout)),
        SinkConfig::Loki(loki) => Box::new(LokiSink::new(loki.clone())?),
        SinkConfig::Otlp(otlp) => Box::new(OtlpSink::new(otlp.clone())?),
    })
}

/// The name, type, buffer and retry settings of a configured sink.
pub(crate) fn sink_options(config: &SinkConfig, name: &str) -> SinkOptions {
    SinkOptions {
        name: name.to_owned(),
        kind: config.kind().to_owned(),
        buffer: config.buffer().clone(),
        retry: config.retry().clone(),
    }
}

/// Builds a configured sink and opens its disk buffer.
pub(crate) fn open_configured(
    data_dir: &Path,
    config: &SinkConfig,
    name: &str,
) -> Result<PreparedSink> {
    let sink = build_sink(config, name).map_err(|source| Error::SinkOpen {
        sink: name.to_owned(),
        source,
    })?;
    prepare(data_dir, sink_options(config, name), sink)
}

/// Opens the sink's disk buffer under `data_dir/buffer/<name>/` (counting what a previous run
/// left in it) and makes its first snapshot.
pub(crate) fn prepare(
    data_dir: &Path,
    options: SinkOptions,
    sink: Box<dyn DynSink>,
) -> Result<PreparedSink> {
    let path = data_dir.join("buffer").join(&options.name);
    let mut buffer =
        DiskBuffer::open(&path, &options.buffer).map_err(|source| Error::BufferOpen {
            sink: options.name.clone(),
            path: path.clone(),
            source,
        })?;
    let dropped = buffer.take_dropped_events();
    if dropped > 0 {
        metrics::counter!(SINK_EVENTS_TOTAL, "sink" => options.name.clone(), "result" => "dropped")
            .increment(dropped);
    }
    if buffer.unread_events() > 0 {
        info!(sink = %options.name, events = buffer.unread_events(), "disk buffer holds events from a previous run");
    }
    let snapshot = SinkSnapshot {
        name: options.name.clone(),
        kind: options.kind.clone(),
        state: SinkState::Ok,
        last_success: None,
        last_error: None,
        failing_since: None,
        buffered_events: buffer.unread_events(),
        dropped_events: dropped,
    };
    Ok(PreparedSink {
        options,
        sink,
        buffer,
        snapshot,
    })
}
