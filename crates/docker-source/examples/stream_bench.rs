//! Measures how fast the source follows one container's log stream, against a raw reader.
//!
//! ```text
//! cargo run --release -p docker-source --example stream_bench -- [LINES] [LINE_BYTES]
//! ```
//!
//! 1. Raw: a `loggen` container writes LINES lines of LINE_BYTES as fast as it can while
//!    `curl --unix-socket` follows its logs to /dev/null: the daemon's own rate.
//! 2. Source: the same with the `DockerSource` (stream worker, decoder, batches) and a pipeline
//!    that discards batches and acknowledges them. Reports lines/s, the ratio to the raw rate
//!    and the process's CPU time per line (utime + stime from /proc/self/stat).
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use docker_source::{DockerConfig, DockerSource, ReadFrom};
use task_supervisor::{Supervisor, SupervisorConfig};
use test_support::docker::{Container, loggen_image};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

fn cpu_seconds() -> f64 {
    test_support::procfs::cpu_seconds(std::process::id()).expect("this process's CPU time")
}

fn loggen_args(name: &str, label: &str, lines: &str, size: &str) -> Vec<String> {
    [
        "--name",
        name,
        "--label",
        label,
        loggen_image(),
        "--tag",
        "bench",
        "--lines",
        lines,
        "--size",
        size,
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

fn raw_rate(lines: u64, size: &str) -> f64 {
    let name = format!("lc-bench-raw-{}", std::process::id());
    let args = loggen_args(&name, "lc-bench=raw", &lines.to_string(), size);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let container = Container::create(&args);
    let url = format!(
        "http://localhost/v1.41/containers/{}/logs?follow=1&stdout=1&stderr=1&timestamps=1",
        container.id()
    );
    // Started first: a follow request on a container that is not running ends at once.
    let started = Instant::now();
    container.start();
    let status = Command::new("curl")
        .args(["-sf", "--unix-socket", "/var/run/docker.sock", &url])
        .stdout(Stdio::null())
        .status()
        .expect("run curl");
    assert!(status.success(), "curl failed");
    let elapsed = started.elapsed().as_secs_f64();
    lines as f64 / elapsed
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let lines: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let size = args.next().unwrap_or_else(|| "100".to_owned());
    loggen_image();

    let raw = raw_rate(lines, &size);
    println!("raw follower (curl):  {raw:>10.0} lines/s");

    let label = format!("lc-bench-{}", std::process::id());
    let config = DockerConfig {
        include_labels: vec![format!("lc-bench={label}")],
        read_from: ReadFrom::Beginning,
        ..DockerConfig::default()
    };
    let data_dir = std::env::temp_dir().join(format!("lc-bench-{}", std::process::id()));
    let source = DockerSource::new(config, &data_dir).expect("source");
    let mut status_rx = source.status();
    let supervisor = Supervisor::new(SupervisorConfig::default());
    let (batch_tx, mut batch_rx) = mpsc::channel(16);
    let (ack_tx, ack_rx) = mpsc::unbounded_channel();
    let shutdown = CancellationToken::new();
    let source_task = tokio::spawn(source.run(supervisor, batch_tx, ack_rx, shutdown.clone()));
    let _ = status_rx
        .wait_for(|s| s.state == capture_core::status::DockerState::Connected)
        .await;

    let name = format!("lc-bench-src-{}", std::process::id());
    let args = loggen_args(
        &name,
        &format!("lc-bench={label}"),
        &lines.to_string(),
        &size,
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let container = Container::create(&args);
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    container.start();
    let mut received = 0u64;
    let mut batches = 0u64;
    while received < lines {
        match tokio::time::timeout(Duration::from_secs(60), batch_rx.recv()).await {
            Ok(Some(batch)) => {
                received += batch.len() as u64;
                batches += 1;
                for ack in batch.acknowledgements() {
                    let _ = ack_tx.send(ack);
                }
            }
            _ => break,
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_before;
    let rate = received as f64 / elapsed;
    println!(
        "docker-source:        {rate:>10.0} lines/s ({:.2} of raw), {:.2} µs CPU/line, {received} lines in {batches} batches ({:.0} lines/batch)",
        rate / raw,
        cpu * 1e6 / received.max(1) as f64,
        received as f64 / batches.max(1) as f64,
    );
    drop(container);
    shutdown.cancel();
    drop(batch_rx);
    drop(ack_tx);
    let _ = source_task.await;
    let _ = std::fs::remove_dir_all(&data_dir);
}
