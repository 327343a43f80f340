//! Throughput benchmark: pushes N events of about 100 bytes (default 10 million; the first
//! argument overrides) through the pipeline to the file sink in a temporary directory, and
//! prints events per second, CPU seconds per million events and peak RSS, then one JSON line.
//!
//! Run: `cargo run --release -p sink-pipeline --example pipeline_bench -- 10000000`.

use std::{io::Write, sync::Arc, time::Instant};

use capture_core::{ContainerId, ContainerInfo, EventBatchBuilder, LogStream, Position};
use sink_pipeline::{
    INPUT_CHANNEL_CAPACITY, Pipeline,
    config::{FileSinkConfig, PipelineConfig, SinkConfig},
};
use test_support::procfs;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Lines per input batch, about what the Docker source sends under load.
const LINES_PER_BATCH: u64 = 500;
const CONTAINERS: u64 = 8;

use capture_core::BoxError;

fn main() -> Result<(), BoxError> {
    let events: u64 = match std::env::args().nth(1) {
        Some(count) => count.parse()?,
        None => 10_000_000,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let data_dir = tempfile::tempdir()?;
    let config = PipelineConfig {
        sinks: vec![SinkConfig::File(FileSinkConfig::default_for(
            data_dir.path(),
        ))],
        ..PipelineConfig::default()
    };
    let pipeline = Pipeline::new(config, data_dir.path())?;

    let cpu_before = procfs::cpu_seconds(std::process::id())?;
    let started = Instant::now();
    let acknowledged = runtime.block_on(async move {
        let (batch_tx, batch_rx) = mpsc::channel(INPUT_CHANNEL_CAPACITY);
        let (ack_tx, mut ack_rx) = mpsc::unbounded_channel();
        let running = tokio::spawn(pipeline.run(batch_rx, ack_tx, CancellationToken::new()));
        let acks = tokio::spawn(async move {
            let mut count = 0u64;
            while ack_rx.recv().await.is_some() {
                count += 1;
            }
            count
        });
        produce(batch_tx, events).await?;
        running.await??;
        Ok::<u64, BoxError>(acks.await?)
    })?;
    let seconds = started.elapsed().as_secs_f64();
    let cpu = procfs::cpu_seconds(std::process::id())? - cpu_before;
    let peak_rss = procfs::peak_rss_bytes(std::process::id())?;
    let per_second = events as f64 / seconds;
    let cpu_per_million = cpu / (events as f64 / 1e6);

    let mut out = std::io::stdout().lock();
    writeln!(out, "events:                  {events}")?;
    writeln!(out, "acknowledgements:        {acknowledged}")?;
    writeln!(out, "wall seconds:            {seconds:.3}")?;
    writeln!(out, "events/s:                {per_second:.0}")?;
    writeln!(out, "CPU s per million:       {cpu_per_million:.3}")?;
    writeln!(
        out,
        "peak RSS:                {:.1} MiB",
        peak_rss as f64 / 1048576.0
    )?;
    let summary = serde_json::json!({
        "bench": "pipeline",
        "events": events,
        "seconds": seconds,
        "events_per_second": per_second,
        "cpu_seconds_per_million_events": cpu_per_million,
        "peak_rss_bytes": peak_rss,
    });
    writeln!(out, "{summary}")?;
    Ok(())
}

/// Sends `events` lines of about 100 bytes in batches, spread over a few containers, the
/// way the source would: the message bytes are a template with a counter written in place.
async fn produce(
    batch_tx: mpsc::Sender<capture_core::EventBatch>,
    events: u64,
) -> Result<(), BoxError> {
    let containers: Vec<Arc<ContainerInfo>> = (0..CONTAINERS)
        .map(|n| {
            let id = ContainerId::new(format!("{:064x}", n + 1)).expect("64 hex digits");
            let mut info = ContainerInfo::new(id, format!("web-{n}"), "nginx:1.27");
            info.labels.insert("com.example.team".into(), "web".into());
            Arc::new(info)
        })
        .collect();
    let mut message = *b"10.0.0.1 - - \"GET /api/v1/items/00000000 HTTP/1.1\" 200 1234 \"-\" \"Mozilla/5.0 (X11; Linux x86_64)\" 0.012";
    let digits_at = 33;
    let base = 1_795_460_400_000_000_000i64;
    let mut sent = 0u64;
    while sent < events {
        let count = LINES_PER_BATCH.min(events - sent);
        let container = &containers[(sent / LINES_PER_BATCH % CONTAINERS) as usize];
        let mut builder = EventBatchBuilder::with_capacity(
            Arc::clone(container),
            count as usize,
            count as usize * message.len(),
        );
        for index in sent..sent + count {
            let mut value = index;
            for digit in message[digits_at..digits_at + 8].iter_mut().rev() {
                *digit = b'0' + (value % 10) as u8;
                value /= 10;
            }
            builder.push(
                LogStream::Stdout,
                Position::new(base + index as i64 * 1000, 0),
                &message,
            );
        }
        batch_tx.send(builder.finish()).await?;
        sent += count;
    }
    Ok(())
}
