//! Latency: from the Docker timestamp of a line to its write into the file sink.
//!
//! Docker's own latency comes first, as the floor: the same generators followed by one raw
//! reader per container (a blocking HTTP/1.0 `follow=1` request), stamping each frame when it
//! arrives. Then log-capturer's.
//!
//! Method. The capturer runs first; then 20 containers each write 1000 lines/s (20 k lines/s in
//! all) for 20 s (5 s with `--quick`). The sink's file is read every 5 ms, from before the
//! containers are started (starting 20 takes seconds, and their first lines must not wait for
//! it); every complete record
//! read is stamped with the wall clock at that read, and its latency is that stamp minus the
//! record's `timestamp` (Docker's, taken when the daemon read the line from the container). Both
//! clocks are this machine's. Resolution: the 5 ms poll plus the time to read a batch, so each
//! figure is late by up to about 5 ms; the percentiles are therefore upper bounds.

use std::{
    io::{Read, Write},
    os::unix::net::UnixStream,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Result, bail};
use serde_json::json;

use super::{Bench, LABEL_KEY, SectionResult, Target};
use test_support::report::{Table, stats::percentile};
use test_support::{
    capturer::Capturer,
    docker::ContainerSet,
    parallel::parallel_map,
    tail::FileTail,
    time::{now_unix_nanos, parse_rfc3339_nanos},
};

const CONTAINERS: usize = 20;
const RATE_PER_CONTAINER: u64 = 1000;
/// How often the file is read.
const POLL: Duration = Duration::from_millis(5);
/// How long each generator waits before writing (starting 20 containers takes a few seconds).
const START_DELAY_SECS: u64 = 10;
/// The p99 target.
const P99_TARGET_MS: f64 = 250.0;

pub(crate) fn run(bench: &Bench) -> Result<SectionResult> {
    let seconds: u64 = if bench.quick { 5 } else { 20 };
    eprintln!(
        "latency: {CONTAINERS} containers x {RATE_PER_CONTAINER} lines/s for {seconds}s, raw readers"
    );
    let raw = measure(bench, seconds, "raw", |set, specs, expected| {
        raw_latencies(set, specs, expected)
    })?;
    eprintln!(
        "latency: {CONTAINERS} containers x {RATE_PER_CONTAINER} lines/s for {seconds}s, log-capturer"
    );
    let capturer = measure(bench, seconds, "capturer", |set, specs, expected| {
        let config = bench.capturer_config("latency", set.label(), false)?;
        let capturer = Capturer::spawn(&config)?;
        let latencies = capturer_latencies(&capturer, set, specs, expected)?;
        capturer.stop(Duration::from_secs(30))?;
        Ok(latencies)
    })?;

    let mut table = Table::new(&["reader", "records", "p50", "p90", "p99", "max"]);
    for (name, figures) in [
        ("raw reader (Docker's own)", &raw),
        ("log-capturer", &capturer),
    ] {
        table.row(vec![
            name.to_owned(),
            figures.records.to_string(),
            format!("{:.1} ms", figures.p50),
            format!("{:.1} ms", figures.p90),
            format!("{:.1} ms", figures.p99),
            format!("{:.1} ms", figures.max),
        ]);
    }
    Ok(SectionResult {
        figures: json!({
            "method": "capturer: file read every 5 ms, latency = read time - record timestamp (Docker's), late by up to ~5 ms; raw: one blocking HTTP/1.0 follow per container, latency = arrival time - frame timestamp",
            "containers": CONTAINERS,
            "rate_per_container": RATE_PER_CONTAINER,
            "seconds": seconds,
            "capturer": capturer.to_json(),
            "raw_reader": raw.to_json(),
            "records": capturer.records,
            "p50_ms": capturer.p50,
            "p90_ms": capturer.p90,
            "p99_ms": capturer.p99,
            "max_ms": capturer.max,
        }),
        targets: vec![Target {
            figure: format!(
                "latency p99 at {} lines/s",
                RATE_PER_CONTAINER * CONTAINERS as u64
            ),
            measured: format!(
                "{:.1} ms (p50 {:.1} ms; Docker's own p99 {:.1} ms)",
                capturer.p99, capturer.p50, raw.p99
            ),
            target: format!("<= {P99_TARGET_MS} ms"),
            met: capturer.p99 <= P99_TARGET_MS,
        }],
        table: Some(table),
    })
}

/// Percentiles of one run.
struct Figures {
    records: usize,
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

impl Figures {
    fn new(mut latencies_ms: Vec<f64>) -> Figures {
        latencies_ms.sort_by(f64::total_cmp);
        Figures {
            records: latencies_ms.len(),
            p50: percentile(&latencies_ms, 0.50),
            p90: percentile(&latencies_ms, 0.90),
            p99: percentile(&latencies_ms, 0.99),
            max: latencies_ms.last().copied().unwrap_or_default(),
        }
    }

    fn to_json(&self) -> serde_json::Value {
        json!({
            "records": self.records,
            "p50_ms": self.p50,
            "p90_ms": self.p90,
            "p99_ms": self.p99,
            "max_ms": self.max,
        })
    }
}

/// One run: a fresh set of generators, read by `read`.
fn measure(
    bench: &Bench,
    seconds: u64,
    what: &str,
    read: impl FnOnce(&ContainerSet, &[Vec<String>], u64) -> Result<Vec<f64>>,
) -> Result<Figures> {
    let lines = RATE_PER_CONTAINER * seconds;
    let expected = lines * CONTAINERS as u64;
    let set = ContainerSet::new(LABEL_KEY, format!("{}-latency-{what}", bench.run_id));
    let specs: Vec<Vec<String>> = (0..CONTAINERS)
        .map(|index| {
            vec![
                "--name".to_owned(),
                format!("lcbench-{}-latency-{what}-{index}", bench.run_id),
                bench.image.to_owned(),
                "--tag".to_owned(),
                format!("l{index}"),
                "--lines".to_owned(),
                lines.to_string(),
                "--rate".to_owned(),
                RATE_PER_CONTAINER.to_string(),
                "--size".to_owned(),
                "100".to_owned(),
                // Write only once every container is up: the figure is for a steady 20 k
                // lines/s, not for a machine busy starting containers.
                "--delay-secs".to_owned(),
                START_DELAY_SECS.to_string(),
            ]
        })
        .collect();
    let latencies = read(&set, &specs, expected)?;
    drop(set);
    Ok(Figures::new(latencies))
}

/// Starts the generators while reading the capturer's file: records are stamped when they
/// appear (starting 20 containers takes seconds, and their first lines must not wait for it).
fn capturer_latencies(
    capturer: &Capturer,
    set: &ContainerSet,
    specs: &[Vec<String>],
    expected: u64,
) -> Result<Vec<f64>> {
    let mut tail = FileTail::new(capturer.records_path());
    let mut latencies_ms: Vec<f64> = Vec::with_capacity(expected as usize);
    let mut unparsable = 0u64;
    std::thread::scope(|scope| -> Result<()> {
        let starting = scope.spawn(|| set.run_many(specs));
        let started = Instant::now();
        let deadline = deadline(expected);
        while (latencies_ms.len() as u64 + unparsable) < expected {
            let arrived = now_unix_nanos();
            tail.poll(|record| match record_timestamp(record) {
                Some(written) => latencies_ms.push((arrived - written) as f64 / 1e6),
                None => unparsable += 1,
            })?;
            if started.elapsed() > deadline {
                bail!(
                    "only {} of {expected} records within {deadline:?}",
                    latencies_ms.len()
                );
            }
            std::thread::sleep(POLL);
        }
        match starting.join() {
            Ok(result) => result.map(drop),
            Err(_) => bail!("starting the containers panicked"),
        }
    })?;
    if unparsable > 0 {
        eprintln!("latency: {unparsable} records without a readable timestamp");
    }
    Ok(latencies_ms)
}

/// Docker's own latency: a blocking reader per container stamps every frame on arrival.
fn raw_latencies(set: &ContainerSet, specs: &[Vec<String>], expected: u64) -> Result<Vec<f64>> {
    let socket = test_support::docker::socket_path();
    let ids = set.run_many(specs)?;
    let lines = expected / ids.len().max(1) as u64;
    let per_container = parallel_map(&ids, "a raw latency reader", |id| {
        raw_follow(&socket, id, lines, deadline(expected))
    })?;
    Ok(per_container.into_iter().flatten().collect())
}

fn deadline(expected: u64) -> Duration {
    // Writing takes expected / rate seconds after the start delay; starting counts too.
    let writing = expected / (RATE_PER_CONTAINER * CONTAINERS as u64);
    Duration::from_secs(writing + START_DELAY_SECS + 90)
}

/// Follows one container's logs (HTTP/1.0, so the body is the raw multiplexed stream) until
/// `lines` frames arrived, returning each frame's latency: arrival minus its timestamp.
fn raw_follow(socket: &Path, id: &str, lines: u64, deadline: Duration) -> Result<Vec<f64>> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(deadline))?;
    write!(
        stream,
        "GET /containers/{id}/logs?follow=1&stdout=1&stderr=1&timestamps=1 HTTP/1.0\r\n\
         Host: docker\r\n\r\n"
    )?;
    let mut buffer = vec![0; 256 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    let mut in_body = false;
    let mut latencies = Vec::with_capacity(lines as usize);
    while (latencies.len() as u64) < lines {
        let read = stream.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        let arrived = now_unix_nanos();
        pending.extend_from_slice(&buffer[..read]);
        if !in_body {
            let Some(end) = pending.windows(4).position(|window| window == b"\r\n\r\n") else {
                continue;
            };
            if !pending.starts_with(b"HTTP/1.0 200") && !pending.starts_with(b"HTTP/1.1 200") {
                bail!(
                    "Docker answered {:?}",
                    String::from_utf8_lossy(&pending[..end])
                );
            }
            pending.drain(..end + 4);
            in_body = true;
        }
        // Whole frames only: an 8-byte header (big-endian length at 4..8), then the payload,
        // which starts with Docker's timestamp and a space.
        let mut at = 0;
        while pending.len() >= at + 8 {
            let length = u32::from_be_bytes([
                pending[at + 4],
                pending[at + 5],
                pending[at + 6],
                pending[at + 7],
            ]) as usize;
            if pending.len() < at + 8 + length {
                break;
            }
            let payload = &pending[at + 8..at + 8 + length];
            let stamp = payload.iter().position(|&byte| byte == b' ').unwrap_or(0);
            if let Some(written) = std::str::from_utf8(&payload[..stamp])
                .ok()
                .and_then(parse_rfc3339_nanos)
            {
                latencies.push((arrived - written) as f64 / 1e6);
            }
            at += 8 + length;
        }
        pending.drain(..at);
    }
    Ok(latencies)
}

/// The record's `timestamp` in Unix nanoseconds, found without parsing the whole record (the
/// field's value is an RFC 3339 string without escapes).
fn record_timestamp(record: &[u8]) -> Option<i128> {
    const KEY: &[u8] = b"\"timestamp\":\"";
    let start = record.windows(KEY.len()).position(|window| window == KEY)? + KEY.len();
    let length = record[start..].iter().position(|&byte| byte == b'"')?;
    parse_rfc3339_nanos(std::str::from_utf8(&record[start..start + length]).ok()?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_timestamp_is_found_in_a_record() {
        let record = br#"{"timestamp":"1970-01-01T00:00:01.5Z","container_id":"c","message":"m"}"#;
        assert_eq!(super::record_timestamp(record), Some(1_500_000_000));
        assert_eq!(super::record_timestamp(b"{}"), None);
    }
}
