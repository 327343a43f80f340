//! Latency: from the Docker timestamp of a line to its write into the file sink.
//!
//! Method. The capturer runs first; then 20 containers each write 1000 lines/s (20 k lines/s in
//! all) for 20 s (5 s with `--quick`). The sink's file is read every 5 ms; every complete record
//! read is stamped with the wall clock at that read, and its latency is that stamp minus the
//! record's `timestamp` (Docker's, taken when the daemon read the line from the container). Both
//! clocks are this machine's. Resolution: the 5 ms poll plus the time to read a batch, so each
//! figure is late by up to about 5 ms; the percentiles are therefore upper bounds.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde_json::json;

use super::{Bench, LABEL_KEY, SectionResult, Target};
use crate::{
    harness::{
        capturer::Capturer,
        containers::ContainerSet,
        tail::FileTail,
        time::{now_unix_nanos, parse_rfc3339_nanos},
    },
    report::{Table, stats::percentile},
};

const CONTAINERS: usize = 20;
const RATE_PER_CONTAINER: u64 = 1000;
/// How often the file is read.
const POLL: Duration = Duration::from_millis(5);
/// The p99 target.
const P99_TARGET_MS: f64 = 250.0;

pub(crate) fn run(bench: &Bench) -> Result<SectionResult> {
    let seconds: u64 = if bench.quick { 5 } else { 20 };
    let lines = RATE_PER_CONTAINER * seconds;
    let expected = lines * CONTAINERS as u64;
    let set = ContainerSet::new(LABEL_KEY, format!("{}-latency", bench.run_id));
    let config = bench.capturer_config("latency", set.label(), false)?;
    let capturer = Capturer::spawn(&config)?;
    let specs: Vec<Vec<String>> = (0..CONTAINERS)
        .map(|index| {
            vec![
                "--name".to_owned(),
                format!("lcbench-{}-latency-{index}", bench.run_id),
                bench.image.to_owned(),
                "--tag".to_owned(),
                format!("l{index}"),
                "--lines".to_owned(),
                lines.to_string(),
                "--rate".to_owned(),
                RATE_PER_CONTAINER.to_string(),
                "--size".to_owned(),
                "100".to_owned(),
            ]
        })
        .collect();
    eprintln!("latency: {CONTAINERS} containers x {RATE_PER_CONTAINER} lines/s for {seconds}s");
    set.run_many(&specs)?;
    let mut tail = FileTail::new(capturer.records_path());
    let mut latencies_ms: Vec<f64> = Vec::with_capacity(expected as usize);
    let mut unparsable = 0u64;
    let started = Instant::now();
    let deadline = Duration::from_secs(seconds + 60);
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
    capturer.stop(Duration::from_secs(30))?;
    drop(set);

    latencies_ms.sort_by(f64::total_cmp);
    let p50 = percentile(&latencies_ms, 0.50);
    let p99 = percentile(&latencies_ms, 0.99);
    let max = latencies_ms.last().copied().unwrap_or_default();
    let mut table = Table::new(&["records", "p50", "p90", "p99", "max"]);
    table.row(vec![
        latencies_ms.len().to_string(),
        format!("{p50:.1} ms"),
        format!("{:.1} ms", percentile(&latencies_ms, 0.90)),
        format!("{p99:.1} ms"),
        format!("{max:.1} ms"),
    ]);
    Ok(SectionResult {
        figures: json!({
            "method": "file read every 5 ms; latency = read time - record timestamp (Docker's); figures late by up to ~5 ms",
            "containers": CONTAINERS,
            "rate_per_container": RATE_PER_CONTAINER,
            "seconds": seconds,
            "records": latencies_ms.len(),
            "unparsable_records": unparsable,
            "p50_ms": p50,
            "p90_ms": percentile(&latencies_ms, 0.90),
            "p99_ms": p99,
            "max_ms": max,
        }),
        targets: vec![Target {
            figure: format!(
                "latency p99 at {} lines/s",
                RATE_PER_CONTAINER * CONTAINERS as u64
            ),
            measured: format!("{p99:.1} ms (p50 {p50:.1} ms)"),
            target: format!("<= {P99_TARGET_MS} ms"),
            met: p99 <= P99_TARGET_MS,
        }],
        table: Some(table),
    })
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
