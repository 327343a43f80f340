//! Memory of the file sink's high-water marks under container churn: N containers (default
//! 50 000) each deliver one line through the pipeline to the file sink, in waves of 1 000, beside
//! one steady container; the resident set size is printed after a warm-up wave and at the end, once
//! `high_water_retention` (the second argument, in seconds; default 3600) has passed for the
//! churned containers. With a window longer than the run nothing is forgotten: that is the
//! memory the marks cost without retention.
//!
//! Run: `cargo run --release -p sink-pipeline --example marks_memory -- 50000 2` (forgetting)
//! and `... -- 50000 3600` (nothing forgotten within the run).

use std::{io::Write, sync::Arc, time::Duration};

use capture_core::{
    ContainerId, ContainerInfo, EventBatch, EventBatchBuilder, LogStream, Position,
};
use sink_pipeline::{
    INPUT_CHANNEL_CAPACITY, Pipeline,
    config::{FileSinkConfig, PipelineConfig, SinkConfig},
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use capture_core::BoxError;

const WAVE: u64 = 1_000;

fn main() -> Result<(), BoxError> {
    let mut args = std::env::args().skip(1);
    let containers: u64 = args.next().map_or(Ok(50_000), |n| n.parse())?;
    let retention = Duration::from_secs(args.next().map_or(Ok(3600), |n| n.parse())?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let data_dir = tempfile::tempdir()?;
    let file = FileSinkConfig {
        high_water_retention: retention,
        ..FileSinkConfig::default_for(data_dir.path())
    };
    let config = PipelineConfig {
        sinks: vec![SinkConfig::File(file)],
        ..PipelineConfig::default()
    };
    let pipeline = Pipeline::new(config, data_dir.path())?;
    let (start, end) = runtime.block_on(async move {
        let (batch_tx, batch_rx) = mpsc::channel(INPUT_CHANNEL_CAPACITY);
        let (ack_tx, mut ack_rx) = mpsc::unbounded_channel();
        let running = tokio::spawn(pipeline.run(batch_rx, ack_tx, CancellationToken::new()));
        let acks = tokio::spawn(async move { while ack_rx.recv().await.is_some() {} });
        let steady = info(u64::MAX);
        let mut tick = 0;
        let mut send_wave = async move |first: u64, count: u64| -> Result<(), BoxError> {
            for n in first..first + count {
                batch_tx.send(batch(&info(n), 1)).await?;
            }
            tick += 1;
            batch_tx.send(batch(&steady, tick)).await?;
            // Let the wave reach the sink before memory is sampled.
            tokio::time::sleep(Duration::from_millis(200)).await;
            Ok(())
        };
        send_wave(0, WAVE).await?;
        let start = test_support::procfs::rss_bytes(std::process::id())?;
        let mut sent = WAVE;
        while sent < WAVE + containers {
            let count = WAVE.min(WAVE + containers - sent);
            send_wave(sent, count).await?;
            sent += count;
        }
        // Past the window, the steady container's next batches trigger the sweep.
        if retention < Duration::from_secs(60) {
            tokio::time::sleep(retention + retention / 4 + Duration::from_millis(500)).await;
            send_wave(sent, 0).await?;
            tokio::time::sleep(retention / 4 + Duration::from_millis(500)).await;
            send_wave(sent, 0).await?;
        }
        let end = test_support::procfs::rss_bytes(std::process::id())?;
        drop(send_wave);
        running.await??;
        acks.await?;
        Ok::<_, BoxError>((start, end))
    })?;
    let mib = |bytes: u64| bytes as f64 / f64::from(1 << 20);
    writeln!(
        std::io::stdout().lock(),
        "{containers} containers, high_water_retention {}s: RSS after warm-up {:.1} MiB, end {:.1} MiB ({:+.1} MiB)",
        retention.as_secs(),
        mib(start),
        mib(end),
        mib(end) - mib(start)
    )?;
    Ok(())
}

fn info(n: u64) -> Arc<ContainerInfo> {
    let id = ContainerId::new(format!("{n:064x}")).expect("64 hex digits");
    Arc::new(ContainerInfo::new(id, format!("job-{n}"), "busybox:1.36"))
}

fn batch(info: &Arc<ContainerInfo>, timestamp: u64) -> EventBatch {
    let mut builder = EventBatchBuilder::new(Arc::clone(info));
    builder.push(
        LogStream::Stdout,
        Position::new(timestamp as i64, 0),
        b"a short-lived job's only line",
    );
    builder.finish()
}
